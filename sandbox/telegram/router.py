"""The emulator over HTTP: the Bot API, file downloads and the control API."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from sandbox.telegram.control import control_float, control_int
from sandbox.telegram.wire import PREFIX, TelegramApiError, UploadedFile

if TYPE_CHECKING:
    from sandbox.telegram.emulator import TelegramEmulator


async def read_params(request: Request) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    """A Bot API call's parameters and uploads, whatever the encoding aiogram chose."""
    params: dict[str, Any] = dict(request.query_params)
    files: dict[str, UploadedFile] = {}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await request.body()
        if body:
            try:
                loaded = json.loads(body)
            except ValueError:
                raise TelegramApiError(400, "Bad Request: can't parse JSON") from None
            if not isinstance(loaded, dict):
                raise TelegramApiError(400, "Bad Request: JSON body must be an object")
            params.update(loaded)
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        async with request.form() as form:  # closes the spooled upload files
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    files[key] = UploadedFile(
                        await value.read(), value.filename, value.content_type
                    )
                else:
                    params[key] = value
    return params, files


def build_router(emulator: TelegramEmulator) -> APIRouter:
    """The Bot API, file downloads and the control API of ``emulator``, under PREFIX."""
    router = APIRouter()

    @router.api_route(
        PREFIX + "/bot{token}/{method}", methods=["GET", "POST"], include_in_schema=False
    )
    async def bot_api(token: str, method: str, request: Request) -> Response:
        try:
            params, files = await read_params(request)
        except TelegramApiError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        status, body = await emulator.call_method(token, method, params, files)
        return JSONResponse(body, status_code=status)

    @router.get(PREFIX + "/file/bot{token}/{file_path:path}", include_in_schema=False)
    async def download(token: str, file_path: str) -> Response:
        bot = emulator._by_token.get(token)
        if bot is None:
            return JSONResponse(TelegramApiError(401, "Unauthorized").body(), 401)
        for record in bot.files.values():
            if record.file_path == file_path:
                return Response(
                    record.data, media_type=record.mime_type or "application/octet-stream"
                )
        return JSONResponse(TelegramApiError(404, "Not Found").body(), 404)

    @router.post(PREFIX + "/bots")
    async def register(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            return emulator.register_bot(
                str(payload["connection_id"]), str(payload["token"]), payload.get("username")
            )
        except (KeyError, ValueError) as exc:
            raise HTTPException(400, f"connection_id and a valid token needed: {exc}") from None

    @router.post(PREFIX + "/chats")
    async def chats(payload: dict[str, Any]) -> dict[str, Any]:
        chat_id = control_int(payload, "chat_id", required=True)
        assert chat_id is not None
        bot_rights = payload.get("bot_rights")
        if bot_rights is not None and not isinstance(bot_rights, dict):
            raise HTTPException(422, "bot_rights: must be an object of right names")
        return emulator.register_chat(
            str(payload.get("connection_id", "")),
            chat_id,
            chat_type=payload.get("type"),
            title=payload.get("title"),
            is_forum=payload.get("is_forum"),
            bot_status=payload.get("bot_status"),
            bot_rights=bot_rights,
            first_name=payload.get("first_name"),
            username=payload.get("username"),
        )

    @router.post(PREFIX + "/blocks")
    async def blocks(payload: dict[str, Any]) -> dict[str, bool]:
        user_id = control_int(payload, "user_id", required=True)
        assert user_id is not None
        emulator.block_user(
            str(payload.get("connection_id", "")), user_id, bool(payload.get("blocked", True))
        )
        return {"ok": True}

    @router.post(PREFIX + "/updates")
    async def post_update(payload: dict[str, Any]) -> dict[str, Any]:
        return await emulator.post_update(payload)

    @router.get(PREFIX + "/updates")
    async def list_updates(connection_id: str) -> list[dict[str, Any]]:
        return emulator.updates(connection_id)

    @router.post(PREFIX + "/business_connections")
    async def business(payload: dict[str, Any]) -> dict[str, Any]:
        return await emulator.connect_business(payload)

    @router.get(PREFIX + "/sent")
    async def sent(connection_id: str, chat_id: int | None = None) -> list[dict[str, Any]]:
        return emulator.sent(connection_id, chat_id)

    @router.get(PREFIX + "/commands")
    async def commands(connection_id: str) -> list[dict[str, Any]]:
        return emulator.commands(connection_id)

    @router.get(PREFIX + "/topics")
    async def topics(connection_id: str, chat_id: int) -> list[dict[str, Any]]:
        return emulator.topics(connection_id, chat_id)

    @router.get(PREFIX + "/callback_answers")
    async def callback_answers(connection_id: str) -> list[dict[str, Any]]:
        return emulator.callback_answers(connection_id)

    @router.get(PREFIX + "/state")
    async def state(connection_id: str) -> dict[str, Any]:
        return emulator.state(connection_id)

    @router.post(PREFIX + "/faults")
    async def add_fault(payload: dict[str, Any]) -> dict[str, bool]:
        methods = payload.get("methods")
        if methods is not None and not (
            isinstance(methods, list) and all(isinstance(m, str) for m in methods)
        ):
            raise HTTPException(422, "methods: must be a list of method names")
        try:
            emulator.add_fault(
                str(payload.get("kind")),
                control_int(payload, "count") or 1,
                connection_id=None
                if payload.get("connection_id") is None
                else str(payload["connection_id"]),
                retry_after=control_int(payload, "retry_after") or 1,
                delay=control_float(payload, "delay") if "delay" in payload else 1.0,
                status=control_int(payload, "status") or 500,
                methods=methods,
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"ok": True}

    @router.delete(PREFIX + "/faults")
    async def clear_faults() -> dict[str, bool]:
        emulator.clear_faults()
        return {"ok": True}

    @router.post(PREFIX + "/delivery")
    async def delivery(payload: dict[str, Any]) -> dict[str, bool]:
        emulator.set_delivery(
            duplicates=control_int(payload, "duplicates") or 0,
            shuffle=bool(payload.get("shuffle", False)),
        )
        return {"ok": True}

    @router.post(PREFIX + "/limits")
    async def limits(payload: dict[str, Any]) -> dict[str, bool]:
        emulator.enforce_limits = bool(payload.get("enforce", True))
        return {"ok": True}

    @router.post(PREFIX + "/reset")
    async def reset(payload: dict[str, Any] | None = None) -> dict[str, bool]:
        emulator.reset(keep_bots=bool((payload or {}).get("keep_bots", True)))
        return {"ok": True}

    @router.post(PREFIX + "/drain")
    async def drain() -> dict[str, bool]:
        await emulator.drain()
        return {"ok": True}

    return router
