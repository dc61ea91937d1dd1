"""The control API: play the lead, read the outbox, inject faults, tune delivery."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from sandbox.whatsapp.wire import CONTROL_PREFIX, USER_ID_RE, FaultKind, digits

if TYPE_CHECKING:
    from sandbox.whatsapp.emulator import WhatsAppEmulator


class ConnectionIn(BaseModel):
    """``POST /sandbox/whatsapp/connections``."""

    connection_id: str | int
    phone_id: str | int
    token: str
    app_secret: str
    webhook_url: str
    waba_id: str | int | None = None
    display_phone_number: str | None = None


class InboundIn(BaseModel):
    """``POST /sandbox/whatsapp/inbound``: what the lead does."""

    model_config = ConfigDict(populate_by_name=True)

    connection_id: str | int
    from_: str | int = Field(alias="from")
    name: str = ""
    text: str = ""
    type: str = "text"
    media_base64: str | None = None
    mime_type: str | None = None
    filename: str | None = None
    reply_to: str | None = None
    button_payload: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    emoji: str | None = None
    message_id: str | None = None
    marketing: Literal["stop", "resume"] | None = None


class FaultIn(BaseModel):
    """``POST /sandbox/whatsapp/faults``."""

    connection_id: str | int | None = None
    kind: FaultKind
    count: int = Field(default=1, ge=1)
    delay: float = Field(default=1.0, ge=0)
    status: Literal[500, 503] = 500


class DeliveryIn(BaseModel):
    """``POST /sandbox/whatsapp/delivery``: how webhooks reach the service."""

    duplicates: int = Field(default=1, ge=1, le=10)
    shuffle: bool = False
    auto_read: bool | None = None
    status_before_response: bool | None = None


class TemplateIn(BaseModel):
    """``POST /sandbox/whatsapp/templates``."""

    name: str
    language: str
    body: str
    category: str = "utility"


def build_control_router(emulator: WhatsAppEmulator) -> APIRouter:
    """The ``/sandbox/whatsapp/...`` routes driving ``emulator``."""
    control = APIRouter(prefix=CONTROL_PREFIX, tags=["sandbox: whatsapp"])

    @control.post("/connections")
    async def register(data: ConnectionIn) -> dict[str, Any]:
        """Register (or replace) a business number and its webhook URL."""
        connection = emulator.register_connection(
            str(data.connection_id),
            str(data.phone_id),
            data.token,
            data.app_secret,
            data.webhook_url,
            waba_id=str(data.waba_id) if data.waba_id is not None else None,
            display_phone_number=data.display_phone_number,
        )
        return connection.public()

    @control.get("/connections")
    async def list_connections() -> list[dict[str, str]]:
        """Registered numbers (without tokens or secrets)."""
        return [c.public() for c in emulator.connections.values()]

    @control.post("/inbound")
    async def inbound(data: InboundIn) -> dict[str, Any]:
        """Play the lead: send a message (or a marketing preference) to the business."""
        sender = str(data.from_).strip()
        if not (USER_ID_RE.match(sender) or 5 <= len(digits(sender)) <= 15):
            raise HTTPException(
                422,
                "from: must be the lead's phone number (5 to 15 digits) "
                "or a business-scoped user id (US.1349...)",
            )
        try:
            if data.marketing is not None:
                await emulator.marketing_preference(
                    str(data.connection_id),
                    str(data.from_),
                    stop=data.marketing == "stop",
                    name=data.name,
                )
                return {"message_id": None}
            media = base64.b64decode(data.media_base64) if data.media_base64 else None
            wamid = await emulator.inbound(
                str(data.connection_id),
                str(data.from_),
                data.text,
                name=data.name,
                kind=data.type,
                media=media,
                mime_type=data.mime_type,
                filename=data.filename,
                reply_to=data.reply_to,
                button_payload=data.button_payload,
                latitude=data.latitude,
                longitude=data.longitude,
                emoji=data.emoji,
                message_id=data.message_id,
            )
        except KeyError as error:
            raise HTTPException(404, str(error.args[0])) from None
        except (ValueError, binascii.Error) as error:
            raise HTTPException(422, str(error)) from None
        return {"message_id": wamid}

    @control.get("/outbox")
    async def outbox(
        to: str | None = None, connection_id: str | None = None
    ) -> list[dict[str, Any]]:
        """What the business sent, oldest first."""
        return [e.to_json() for e in emulator.outbox(to, connection_id)]

    @control.post("/faults")
    async def add_fault(data: FaultIn) -> dict[str, bool]:
        """Make the next send calls fail or slow down."""
        emulator.add_fault(
            data.kind,
            data.count,
            connection_id=str(data.connection_id) if data.connection_id else None,
            delay=data.delay,
            status=data.status,
        )
        return {"ok": True}

    @control.delete("/faults")
    async def clear_faults() -> dict[str, bool]:
        """Forget every pending fault."""
        emulator.clear_faults()
        return {"ok": True}

    @control.post("/delivery")
    async def delivery(data: DeliveryIn) -> dict[str, Any]:
        """Duplicate and/or shuffle webhook pushes; toggle read receipts and early statuses."""
        emulator.configure_delivery(duplicates=data.duplicates, shuffle=data.shuffle)
        if data.auto_read is not None:
            emulator.auto_read = data.auto_read
        if data.status_before_response is not None:
            emulator.status_before_response = data.status_before_response
        return {
            "duplicates": emulator.duplicates,
            "shuffle": emulator.shuffle,
            "auto_read": emulator.auto_read,
            "status_before_response": emulator.status_before_response,
        }

    @control.post("/templates")
    async def add_template(data: TemplateIn) -> dict[str, Any]:
        """Approve one more template."""
        template = emulator.add_template(data.name, data.language, data.body, data.category)
        return {
            "name": template.name,
            "language": template.language,
            "param_count": template.param_count,
        }

    @control.post("/reset")
    async def reset() -> dict[str, bool]:
        """Clear all state."""
        await emulator.reset()
        return {"ok": True}

    @control.post("/drain")
    async def drain() -> dict[str, bool]:
        """Answer once every pending webhook push was delivered."""
        try:
            await emulator.drain()
        except TimeoutError:
            raise HTTPException(504, "pushes still pending") from None
        return {"ok": True}

    return control
