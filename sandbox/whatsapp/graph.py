"""The business's side: the Graph endpoints pywa calls (messages, media)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.whatsapp.records import EmulatedConnection, OutboxEntry, StoredMedia
from sandbox.whatsapp.webhooks import WebhookPushes
from sandbox.whatsapp.wire import (
    FREE_FORM_TYPES,
    GRAPH_PREFIX,
    MEDIA_TYPES,
    USER_ID_RE,
    VERSION_RE,
    WINDOW,
    GraphError,
    digits,
    invalid_parameter,
    json_body,
    lead_id,
    new_numeric_id,
    new_wamid,
    no_object,
)

logger = logging.getLogger(__name__)


class GraphMethods(WebhookPushes):
    """Sends, uploads and media downloads, answered in Meta's format."""

    async def _send(self, request: Request, version: str, phone_id: str) -> Response:
        connection = self._graph_connection(request, version, phone_id)
        body = await json_body(request)
        if body.get("status") == "read":
            # Mark-as-read (and typing indicators) share the messages endpoint.
            message_id = body.get("message_id")
            if not isinstance(message_id, str) or not message_id:
                raise invalid_parameter("The parameter message_id is required.")
            self.read_marks.append(message_id)
            return JSONResponse({"success": True})
        await self._apply_faults(connection)
        if body.get("messaging_product") != "whatsapp":
            raise invalid_parameter("The parameter messaging_product is required.")
        raw_to = body.get("to") or body.get("recipient")
        if not isinstance(raw_to, str | int) or not digits(str(raw_to)):
            raise invalid_parameter("The parameter to is required.")
        to = lead_id(str(raw_to))
        kind = body.get("type", "text")
        if kind != "template" and kind not in FREE_FORM_TYPES:
            raise invalid_parameter(
                f"Param type must be one of {{{', '.join(FREE_FORM_TYPES)}, template}}"
            )
        content = body.get(kind)
        if not isinstance(content, dict):
            raise invalid_parameter(f"The parameter {kind} is required.")
        entry = OutboxEntry(
            id=new_wamid(),
            connection_id=connection.connection_id,
            phone_id=connection.phone_id,
            to=to,
            type=kind,
            text="",
            created_at=self.clock(),
            payload=body,
        )
        context = body.get("context")
        if isinstance(context, dict):
            entry.reply_to = context.get("message_id")
        self._render(connection, kind, content, entry)
        if kind != "template":
            self._check_window(connection, to)
        self._outbox.append(entry)
        self._changed()
        answer: dict[str, Any] = {"id": entry.id}
        if kind == "template":
            answer["message_status"] = "accepted"
        if self.status_before_response:
            # The service must cope with a receipt for an id it has not been told yet.
            done = self._push_status(connection, entry, "sent", wait=True)
            assert done is not None
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout=self.push_timeout * 3)
            except TimeoutError:
                logger.warning("the early 'sent' status for %s is still pending", entry.id)
            self._progress_statuses(connection, entry, ("delivered", "read"))
        else:
            self._progress_statuses(connection, entry, ("sent", "delivered", "read"))
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [
                    {"input": str(raw_to), "user_id" if USER_ID_RE.match(to) else "wa_id": to}
                ],
                "messages": [answer],
            }
        )

    def _graph_connection(
        self, request: Request, version: str, phone_id: str
    ) -> EmulatedConnection:
        if not VERSION_RE.match(version):
            raise GraphError(400, 2500, "Unknown path components: /" + version)
        connection = self._by_phone(phone_id)
        if connection is None:
            raise no_object(phone_id, request.method.lower())
        self._check_token(request, connection)
        return connection

    async def _apply_faults(self, connection: EmulatedConnection) -> None:
        for fault in self._faults:
            if fault.remaining <= 0 or fault.connection_id not in (None, connection.connection_id):
                continue
            fault.remaining -= 1
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
                return
            if fault.kind == "rate_limit":
                raise GraphError(
                    400,
                    130429,
                    "(#130429) Rate limit hit",
                    "Cloud API message throughput has been reached.",
                )
            if fault.kind == "pair_rate_limit":
                raise GraphError(
                    400,
                    131056,
                    "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                    "Too many messages sent from the sender phone number to the same recipient "
                    "phone number in a short period of time.",
                )
            if fault.status == 503:
                raise GraphError(503, 2, "Service temporarily unavailable", transient=True)
            raise GraphError(500, 1, "An unknown error has occurred.", transient=True)

    def _check_window(self, connection: EmulatedConnection, to: str) -> None:
        last = self._last_inbound.get((connection.phone_id, to))
        if last is None or self.clock() - last > WINDOW:
            raise GraphError(
                400,
                131047,
                "(#131047) Re-engagement message",
                "Message failed to send because more than 24 hours have passed since the "
                "customer last replied to this number.",
            )

    def _render(
        self,
        connection: EmulatedConnection,
        kind: str,
        content: dict[str, Any],
        entry: OutboxEntry,
    ) -> None:
        if kind == "text":
            text = content.get("body")
            if not isinstance(text, str) or not text:
                raise invalid_parameter("The parameter text['body'] is required.")
            if len(text) > 4096:
                raise invalid_parameter("Param text['body'] must be at most 4096 characters long.")
            entry.text = text
        elif kind in MEDIA_TYPES:
            entry.media = self._render_media(connection, kind, content)
            entry.text = str(content.get("caption") or "")
        elif kind == "template":
            self._render_template(content, entry)
        elif kind == "interactive":
            self._render_interactive(content, entry)
        elif kind == "reaction":
            if not content.get("message_id"):
                raise invalid_parameter("The parameter reaction['message_id'] is required.")
            entry.text = str(content.get("emoji") or "")
        elif kind == "location":
            entry.text = str(
                content.get("name") or f"{content.get('latitude')},{content.get('longitude')}"
            )

    def _render_media(
        self, connection: EmulatedConnection, kind: str, content: dict[str, Any]
    ) -> dict[str, Any]:
        media_id, link = content.get("id"), content.get("link")
        if bool(media_id) == bool(link):
            raise invalid_parameter(f"Exactly one of {kind}['id'] or {kind}['link'] is required.")
        if media_id:
            stored = self._media.get(str(media_id))
            if stored is None or stored.phone_id != connection.phone_id:
                raise invalid_parameter(
                    f"Param {kind}['id'] is not a valid whatsapp business account media "
                    "attachment ID"
                )
            return {
                "id": stored.id,
                "mime_type": stored.mime_type,
                "filename": content.get("filename") or stored.filename,
                "size": len(stored.data),
            }
        return {"link": link, "filename": content.get("filename")}

    def _render_template(self, content: dict[str, Any], entry: OutboxEntry) -> None:
        name = content.get("name")
        language = (content.get("language") or {}).get("code")
        if not isinstance(name, str) or not isinstance(language, str):
            raise invalid_parameter(
                "The parameters template['name'] and template['language'] are required."
            )
        template = self.templates.get((name, language))
        if template is None:
            raise GraphError(
                400,
                132001,
                "(#132001) Template name does not exist in the translation",
                f"template name ({name}) does not exist in {language}",
            )
        params: list[str] = []
        for component in content.get("components") or []:
            if isinstance(component, dict) and component.get("type") == "body":
                for parameter in component.get("parameters") or []:
                    params.append(str(parameter.get("text", "")))
        if len(params) != template.param_count:
            raise GraphError(
                400,
                132000,
                "(#132000) Number of parameters does not match the expected number of params",
                f"body: number of localizable_params ({len(params)}) does not match the "
                f"expected number of params ({template.param_count})",
            )
        entry.text = template.render(params)
        entry.template = {"name": name, "language": language, "params": params}
        entry.category = template.category

    @staticmethod
    def _render_interactive(content: dict[str, Any], entry: OutboxEntry) -> None:
        body = (content.get("body") or {}).get("text")
        sub = content.get("type")
        action = content.get("action") or {}
        if not isinstance(body, str) or not body:
            raise invalid_parameter("The parameter interactive['body']['text'] is required.")
        if sub == "button":
            buttons = action.get("buttons") or []
            if not 1 <= len(buttons) <= 3:
                raise GraphError(
                    400,
                    131009,
                    "(#131009) Parameter value is not valid",
                    "Buttons count invalid. Min: 1, Max: 3",
                )
            titles = [str((b.get("reply") or {}).get("title", "")) for b in buttons]
            if any(not 1 <= len(t) <= 20 for t in titles):
                raise GraphError(
                    400,
                    131009,
                    "(#131009) Parameter value is not valid",
                    "Button title length invalid. Min length: 1, Max length: 20",
                )
            entry.buttons = titles
        elif sub == "list":
            rows = [r for s in action.get("sections") or [] for r in s.get("rows") or []]
            if not 1 <= len(rows) <= 10:
                raise GraphError(
                    400,
                    131009,
                    "(#131009) Parameter value is not valid",
                    "Total row count exceed max allowed count: 10",
                )
            entry.buttons = [str(r.get("title", "")) for r in rows]
        entry.text = body

    async def _upload(self, request: Request, version: str, phone_id: str) -> Response:
        connection = self._graph_connection(request, version, phone_id)
        form = await request.form()
        if form.get("messaging_product") != "whatsapp":
            raise invalid_parameter("The parameter messaging_product is required.")
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise invalid_parameter("The parameter file is required.")
        declared = form.get("type")
        mime_type = declared if isinstance(declared, str) and declared else upload.content_type
        stored = StoredMedia(
            id=new_numeric_id(),
            phone_id=connection.phone_id,
            data=await upload.read(),
            mime_type=mime_type or "application/octet-stream",
            filename=upload.filename,
        )
        self._media[stored.id] = stored
        self._changed()
        return JSONResponse({"id": stored.id})

    def _owned_media(self, request: Request, media_id: str, method: str) -> StoredMedia:
        stored = self._media.get(media_id)
        if stored is None:
            raise no_object(media_id, method)
        owner = self._by_phone(stored.phone_id)
        if owner is None:
            raise no_object(media_id, method)
        self._check_token(request, owner)
        return stored

    def _graph_router(self) -> APIRouter:
        router = APIRouter()
        graph = GRAPH_PREFIX

        @router.post(graph + "/{version}/{phone_id}/messages", include_in_schema=False)
        async def send_message(request: Request, version: str, phone_id: str) -> Response:
            try:
                return await self._send(request, version, phone_id)
            except GraphError as error:
                return error.response()

        @router.post(graph + "/{version}/{phone_id}/media", include_in_schema=False)
        async def upload_media(request: Request, version: str, phone_id: str) -> Response:
            try:
                return await self._upload(request, version, phone_id)
            except GraphError as error:
                return error.response()

        # Declared before /{version}/{media_id}, which would otherwise swallow it.
        @router.get(graph + "/media-download/{media_id}", include_in_schema=False)
        async def download_media(request: Request, media_id: str) -> Response:
            try:
                stored = self._owned_media(request, media_id, "get")
            except GraphError as error:
                return error.response()
            headers = {}
            if stored.filename:
                headers["Content-Disposition"] = f'attachment; filename="{stored.filename}"'
            return Response(stored.data, media_type=stored.mime_type, headers=headers)

        @router.get(graph + "/{version}/{media_id}", include_in_schema=False)
        async def media_url(request: Request, version: str, media_id: str) -> Response:
            try:
                if not VERSION_RE.match(version):
                    raise GraphError(400, 2500, "Unknown path components: /" + version)
                stored = self._owned_media(request, media_id, "get")
            except GraphError as error:
                return error.response()
            base = str(request.base_url).rstrip("/")
            return JSONResponse(
                {
                    "messaging_product": "whatsapp",
                    "url": f"{base}{graph}/media-download/{stored.id}",
                    "mime_type": stored.mime_type,
                    "sha256": stored.sha256_hex,
                    "file_size": len(stored.data),
                    "id": stored.id,
                }
            )

        @router.delete(graph + "/{version}/{media_id}", include_in_schema=False)
        async def delete_media(request: Request, version: str, media_id: str) -> Response:
            try:
                self._owned_media(request, media_id, "delete")
            except GraphError as error:
                return error.response()
            del self._media[media_id]
            if self._state is not None:
                self._state.drop_blob(media_id)
            self._changed()
            return JSONResponse({"success": True})

        return router
