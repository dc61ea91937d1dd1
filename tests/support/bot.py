"""Playing operators against the sandbox Telegram emulator of a running service."""

from __future__ import annotations

import base64
import re
from typing import Any

from crm.models import ChannelConnection, Membership, User
from tests.support.polling import eventually
from tests.support.service import RunningService

OPERATOR = "operator"
LEAD = "4915112345678"


async def say(service: RunningService, user_id: int, text: str, **extra: Any) -> dict[str, Any]:
    """A Telegram user writes to the operator bot."""
    reply = await service.http.post(
        "/sandbox/telegram/updates",
        json={"connection_id": OPERATOR, "from_user_id": user_id, "text": text} | extra,
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def press(
    service: RunningService, user_id: int, data: str, message_id: int
) -> dict[str, Any]:
    """A Telegram user presses an inline button of a bot message."""
    reply = await service.http.post(
        "/sandbox/telegram/updates",
        json={
            "connection_id": OPERATOR,
            "from_user_id": user_id,
            "callback_data": data,
            "message_id": message_id,
        },
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def sent(service: RunningService, chat_id: int) -> list[dict[str, Any]]:
    """What the operator bot sent to one chat, oldest first."""
    reply = await service.http.get(
        "/sandbox/telegram/sent", params={"connection_id": OPERATOR, "chat_id": chat_id}
    )
    assert reply.status_code == 200, reply.text
    return list(reply.json())


async def wait_for(service: RunningService, chat_id: int, needle: str) -> dict[str, Any]:
    """The latest message to ``chat_id`` whose text contains ``needle``, once it is there."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        found[:] = [m for m in await sent(service, chat_id) if needle in (m.get("text") or "")]
        return bool(found)

    await eventually(arrived)
    return found[-1]


def buttons(message: dict[str, Any]) -> list[str]:
    """The callback data of every inline button of a sent message."""
    markup = message.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


async def onboard_owner(service: RunningService, user_id: int, first_name: str) -> User:
    """``/start`` from a new Telegram user: their workspace exists once the welcome arrives."""
    await say(service, user_id, "/start", first_name=first_name)
    await wait_for(service, user_id, "Welcome")
    return await User.get(telegram_id=user_id)


async def invite_link(service: RunningService, owner_id: int, role: str) -> str:
    """The owner asks for an invite link; returns its ``/start`` parameter."""
    before = len(await sent(service, owner_id))
    await say(service, owner_id, f"/invite {role}")

    async def answered() -> bool:
        return len(await sent(service, owner_id)) > before

    await eventually(answered)
    text = (await sent(service, owner_id))[-1]["text"]
    match = re.search(r"https://t\.me/crm_operator_bot\?start=(inv_[A-Za-z0-9_-]+)", text)
    assert match, text
    return match.group(1)


async def join(service: RunningService, user_id: int, first_name: str, start: str) -> None:
    """A colleague opens an invite link."""
    await say(service, user_id, f"/start {start}", first_name=first_name)
    await wait_for(service, user_id, "You joined")


async def role_of(user_id: int, tenant_id: int) -> str | None:
    """The role of a Telegram user in a workspace."""
    user = await User.get_or_none(telegram_id=user_id)
    if user is None:
        return None
    membership = await Membership.get_or_none(user_id=user.id, tenant_id=tenant_id)
    return None if membership is None else str(membership.role)


async def whatsapp_connection(tenant_id: int) -> int:
    """The sandbox WhatsApp number /start gave a workspace."""
    connection = await ChannelConnection.get(tenant_id=tenant_id, kind="whatsapp")
    return connection.id


async def lead_writes(service: RunningService, connection_id: int, name: str, text: str) -> None:
    """A lead writes on WhatsApp in the sandbox."""
    reply = await service.http.post(
        "/sandbox/whatsapp/inbound",
        json={"connection_id": str(connection_id), "from": LEAD, "name": name, "text": text},
    )
    assert reply.status_code == 200, reply.text


async def lead_received(service: RunningService) -> list[str]:
    """The texts the lead got on WhatsApp."""
    reply = await service.http.get("/sandbox/whatsapp/outbox", params={"to": LEAD})
    assert reply.status_code == 200, reply.text
    return [entry.get("text") for entry in reply.json()]


async def count(service: RunningService, chat_id: int) -> int:
    """How many messages the operator bot sent to ``chat_id`` so far."""
    return len(await sent(service, chat_id))


async def next_message(
    service: RunningService, chat_id: int, before: int, needle: str = ""
) -> dict[str, Any]:
    """The first message sent after the first ``before`` ones that contains ``needle``."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        later = (await sent(service, chat_id))[before:]
        found[:] = [m for m in later if needle in (m.get("text") or "")]
        return bool(found)

    await eventually(arrived)
    return found[0]


async def lead_sends(
    service: RunningService, connection_id: int, *, name: str = "Anna", **fields: Any
) -> None:
    """The lead writes (or sends media) on WhatsApp; ``fields`` go to the emulator as is."""
    data = fields.pop("data", None)
    payload = {"connection_id": str(connection_id), "from": LEAD, "name": name} | fields
    if data is not None:
        payload["media_base64"] = base64.b64encode(data).decode()
    reply = await service.http.post("/sandbox/whatsapp/inbound", json=payload)
    assert reply.status_code == 200, reply.text


async def arrived(
    service: RunningService, chat_id: int, count: int, **match: Any
) -> list[dict[str, Any]]:
    """The messages to ``chat_id`` with these fields (``method="sendPhoto"``...), once ``count``
    of them are there."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        found[:] = [
            m
            for m in await sent(service, chat_id)
            if all(m.get(key) == value for key, value in match.items())
        ]
        return len(found) >= count

    await eventually(enough)
    return found


async def arrived_with(service: RunningService, chat_id: int, needle: str) -> dict[str, Any]:
    """The latest message to ``chat_id`` whose text or caption contains ``needle``."""
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        found[:] = [
            m
            for m in await sent(service, chat_id)
            if needle in (m.get("text") or m.get("caption") or "")
        ]
        return bool(found)

    await eventually(there)
    return found[-1]


async def onboard_in_russian(service: RunningService, user_id: int) -> User:
    """``/start`` from a Telegram user whose app speaks Russian."""
    await say(service, user_id, "/start", first_name="Ольга", language_code="ru")
    await arrived(service, user_id, 1)
    user = await User.get(telegram_id=user_id)
    assert user.language == "ru"
    return user


async def answers(service: RunningService) -> list[dict[str, Any]]:
    """Every answered callback query of the operator bot, oldest first."""
    reply = await service.http.get(
        "/sandbox/telegram/callback_answers", params={"connection_id": "operator"}
    )
    assert reply.status_code == 200, reply.text
    return list(reply.json())


async def answer_to(service: RunningService, data: str, count: int) -> dict[str, Any]:
    """The answer to the press of ``data`` once there are more than ``count`` answers."""

    async def answered() -> bool:
        return len(await answers(service)) > count

    await eventually(answered)
    latest = (await answers(service))[-1]
    assert latest["data"] == data
    return latest


async def click(
    service: RunningService, user_id: int, data: str, message_id: int
) -> dict[str, Any]:
    """Press a button and wait for the bot's answer to it."""
    count = len(await answers(service))
    await press(service, user_id, data, message_id)
    return await answer_to(service, data, count)


async def message(service: RunningService, chat_id: int, message_id: int) -> dict[str, Any]:
    """The message ``message_id`` the operator bot sent to ``chat_id``."""
    (found,) = [m for m in await sent(service, chat_id) if m["message_id"] == message_id]
    return found


async def lead_wrote(service: RunningService, owner_tg: int) -> int:
    """A lead writes on WhatsApp; returns the id of the owner's notification."""
    owner = await User.get(telegram_id=owner_tg)
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    await lead_writes(service, connection_id, "Anna", "Can you send the plan?")
    notification = await wait_for(service, owner_tg, "Can you send the plan?")
    return int(notification["message_id"])


async def send_file(
    service: RunningService,
    user_id: int,
    data: bytes,
    filename: str = "contacts.csv",
    mime_type: str = "text/csv",
    **extra: Any,
) -> dict[str, Any]:
    """A Telegram user sends the operator bot a file."""
    return await say(
        service,
        user_id,
        "",
        document_base64=base64.b64encode(data).decode(),
        filename=filename,
        mime_type=mime_type,
        **extra,
    )
