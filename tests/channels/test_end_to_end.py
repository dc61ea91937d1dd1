"""A lead writes, the operator answers: the real service, pywa and aiogram, the emulators, HTTP.

Each test serves the whole app on a loopback port with the sandbox emulators inside, so every
webhook is signed and posted over HTTP, and every reply goes out through the real SDK.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from crm.models import Contact, Message, Role
from crm.settings import Settings
from tests.support.polling import eventually
from tests.support.service import RunningService, running_service
from tests.support.workspace import Workspace

LEAD = "4915112345678"


@pytest.fixture
async def service(settings: Settings, tmp_path: Path) -> Any:
    async with running_service(settings, media_dir=tmp_path / "media") as running:
        yield running


async def add_sandbox_channel(service: RunningService, workspace: Workspace, kind: str) -> int:
    reply = await service.http.post(
        "/api/v1/channels", json={"kind": kind, "sandbox": True}, headers=workspace.headers
    )
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["setup_error"] is None
    assert "token" not in json.dumps(body["settings"])
    return int(body["id"])


async def lead_writes(service: RunningService, connection_id: int, text: str, **extra: Any) -> str:
    reply = await service.http.post(
        "/sandbox/whatsapp/inbound",
        json={"connection_id": str(connection_id), "from": LEAD, "name": "Anna", "text": text}
        | extra,
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["message_id"])


async def conversations(service: RunningService, workspace: Workspace) -> list[dict[str, Any]]:
    reply = await service.http.get("/api/v1/conversations", headers=workspace.headers)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["items"])


async def messages(
    service: RunningService, workspace: Workspace, conversation_id: int
) -> list[dict[str, Any]]:
    reply = await service.http.get(
        f"/api/v1/conversations/{conversation_id}/messages?order=oldest", headers=workspace.headers
    )
    assert reply.status_code == 200, reply.text
    return list(reply.json()["items"])


async def the_conversation(service: RunningService, workspace: Workspace) -> dict[str, Any]:
    """Wait until the workspace's one conversation shows in the inbox, and return it."""

    async def arrived() -> bool:
        return len(await conversations(service, workspace)) == 1

    await eventually(arrived)
    (conversation,) = await conversations(service, workspace)
    return conversation


async def outbox(service: RunningService) -> list[dict[str, Any]]:
    reply = await service.http.get("/sandbox/whatsapp/outbox", params={"to": LEAD})
    assert reply.status_code == 200
    return list(reply.json())


async def test_whatsapp_lead_and_operator_round_trip(
    service: RunningService, workspace: Workspace
) -> None:
    connection_id = await add_sandbox_channel(service, workspace, "whatsapp")
    await lead_writes(service, connection_id, "Hi! How much is the Pro plan?")

    conversation = await the_conversation(service, workspace)
    assert conversation["channel"] == "whatsapp" and conversation["unread_count"] == 1
    (inbound,) = await messages(service, workspace, conversation["id"])
    assert (inbound["direction"], inbound["text"]) == ("in", "Hi! How much is the Pro plan?")

    sent = await service.http.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"text": "Hi Anna, it is 49 EUR a month."},
        headers=workspace.headers,
    )
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["id"]

    async def read_by_lead() -> bool:
        stored = await Message.get(id=message_id)
        return stored.status.value == "read"

    await eventually(read_by_lead)
    entries = await outbox(service)
    assert [e["text"] for e in entries] == ["Hi Anna, it is 49 EUR a month."]
    assert entries[0]["status"] == "read"


async def test_every_webhook_three_times_shuffled_stores_each_message_once(
    service: RunningService, workspace: Workspace
) -> None:
    connection_id = await add_sandbox_channel(service, workspace, "whatsapp")
    await service.http.post("/sandbox/whatsapp/delivery", json={"duplicates": 3, "shuffle": True})
    texts = [f"message {i}" for i in range(12)]
    for text in texts:
        await lead_writes(service, connection_id, text)
    await service.http.post("/sandbox/whatsapp/drain")

    async def all_stored() -> bool:
        return await Message.filter(direction="in").count() >= len(texts)

    await eventually(all_stored)
    await service.http.post("/sandbox/whatsapp/drain")
    stored = await Message.filter(direction="in").values_list("text", flat=True)
    assert sorted(stored) == sorted(texts)
    (conversation,) = await conversations(service, workspace)
    assert conversation["unread_count"] == len(texts)


async def test_rate_limits_and_server_errors_still_deliver_each_reply_once(
    service: RunningService, workspace: Workspace
) -> None:
    connection_id = await add_sandbox_channel(service, workspace, "whatsapp")
    await lead_writes(service, connection_id, "hello")

    conversation = await the_conversation(service, workspace)
    for kind in ("rate_limit", "server_error", "pair_rate_limit"):
        reply = await service.http.post("/sandbox/whatsapp/faults", json={"kind": kind, "count": 1})
        assert reply.status_code == 200, reply.text
    replies = [f"answer {i}" for i in range(3)]
    for text in replies:
        sent = await service.http.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            json={"text": text},
            headers=workspace.headers,
        )
        assert sent.status_code == 202

    async def all_sent() -> bool:
        return await Message.filter(direction="out", external_id__isnull=False).count() == 3

    await eventually(all_sent, within=60)
    assert sorted(e["text"] for e in await outbox(service)) == replies


async def test_bad_or_missing_signatures_store_nothing(
    service: RunningService, workspace: Workspace
) -> None:
    connection_id = await add_sandbox_channel(service, workspace, "whatsapp")
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"display_phone_number": "1", "phone_number_id": "1"},
                                "contacts": [{"profile": {"name": "X"}, "wa_id": LEAD}],
                                "messages": [
                                    {
                                        "from": LEAD,
                                        "id": "wamid.forged",
                                        "timestamp": "1700000000",
                                        "type": "text",
                                        "text": {"body": "forged"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()
    url = f"/webhooks/whatsapp/{connection_id}"
    missing = await service.http.post(url, content=body)
    wrong_sig = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    wrong = await service.http.post(url, content=body, headers={"X-Hub-Signature-256": wrong_sig})
    assert (missing.status_code, wrong.status_code) == (401, 403)
    assert not await Message.exists(external_id="wamid.forged")


async def test_a_reply_outside_the_window_is_refused_with_the_reason(
    service: RunningService, workspace: Workspace
) -> None:
    connection_id = await add_sandbox_channel(service, workspace, "whatsapp")
    await lead_writes(service, connection_id, "hello")

    conversation = await the_conversation(service, workspace)
    import datetime as dt

    from crm.models import Conversation

    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    await Conversation.filter(id=conversation["id"]).update(last_inbound_at=old)
    refused = await service.http.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"text": "still interested?"},
        headers=workspace.headers,
    )
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["code"] == "window_closed"
    assert "25.0 hours ago" in problem["detail"] and "template" in problem["detail"]
    template = await service.http.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"kind": "template", "template": {"name": "hello_world", "language": "en_US"}},
        headers=workspace.headers,
    )
    assert template.status_code == 202, template.text

    async def template_sent() -> bool:
        return len(await outbox(service)) == 1

    await eventually(template_sent)


async def tg_lead_writes(
    service: RunningService, connection_id: int, text: str, user_id: int = 5550001
) -> dict[str, Any]:
    reply = await service.http.post(
        "/sandbox/telegram/updates",
        json={
            "connection_id": str(connection_id),
            "from_user_id": user_id,
            "first_name": "Boris",
            "username": "Boris_Lead",
            "language_code": "ru",
            "text": text,
        },
    )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def test_telegram_lead_and_operator_round_trip(
    service: RunningService, workspace: Workspace
) -> None:
    connection_id = await add_sandbox_channel(service, workspace, "telegram")
    await service.http.post("/sandbox/telegram/delivery", json={"duplicates": 2, "shuffle": True})
    for text in ("Здравствуйте!", "Сколько стоит?"):
        await tg_lead_writes(service, connection_id, text)
    await service.http.post("/sandbox/telegram/drain")

    async def arrived() -> bool:
        return await Message.filter(direction="in").count() >= 2

    await eventually(arrived)
    await service.http.post("/sandbox/telegram/drain")
    assert sorted(await Message.filter(direction="in").values_list("text", flat=True)) == [
        "Здравствуйте!",
        "Сколько стоит?",
    ]
    (conversation,) = await conversations(service, workspace)
    assert conversation["channel"] == "telegram"
    from crm.models import Contact

    contact = await Contact.get(id=conversation["contact_id"])
    assert (contact.name, contact.telegram_id, contact.telegram_username) == (
        "Boris",
        5550001,
        "boris_lead",
    )
    sent = await service.http.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"text": "Добрый день! <b>49</b> EUR"},
        headers=workspace.headers,
    )
    assert sent.status_code == 202, sent.text

    async def delivered() -> bool:
        reply = await service.http.get(
            "/sandbox/telegram/sent",
            params={"connection_id": str(connection_id), "chat_id": "5550001"},
        )
        return [m.get("text") for m in reply.json()] == ["Добрый день! <b>49</b> EUR"]

    await eventually(delivered)

    async def recorded() -> bool:
        stored = await Message.get(id=sent.json()["id"])
        return stored.status.value == "sent" and stored.external_id is not None

    await eventually(recorded)


async def test_telegram_webhook_without_the_secret_stores_nothing(
    service: RunningService, workspace: Workspace
) -> None:
    connection_id = await add_sandbox_channel(service, workspace, "telegram")
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1700000000,
            "chat": {"id": 42, "type": "private", "first_name": "X"},
            "from": {"id": 42, "is_bot": False, "first_name": "X"},
            "text": "forged",
        },
    }
    url = f"/webhooks/telegram/{connection_id}"
    missing = await service.http.post(url, json=update)
    wrong = await service.http.post(
        url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "guess"}
    )
    assert (missing.status_code, wrong.status_code) in {(401, 403), (403, 403)}
    assert not await Message.exists(text="forged")


async def test_a_receipt_pushed_before_the_send_call_returns_is_not_lost(
    service: RunningService, workspace: Workspace
) -> None:
    connection_id = await add_sandbox_channel(service, workspace, "whatsapp")
    reply = await service.http.post(
        "/sandbox/whatsapp/delivery", json={"status_before_response": True, "auto_read": False}
    )
    assert reply.status_code == 200, reply.text
    await lead_writes(service, connection_id, "hello")

    conversation = await the_conversation(service, workspace)
    sent = await service.http.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"text": "fast receipts"},
        headers=workspace.headers,
    )

    async def delivered() -> bool:
        stored = await Message.get(id=sent.json()["id"])
        return stored.status.value == "delivered"

    await eventually(delivered)
    from crm.models import PendingStatus

    # A later receipt can apply to the stored id while an earlier parked one is still being
    # consumed by the sender (right after it records the id): wait for the parked ones to go.
    async def nothing_parked() -> bool:
        return not await PendingStatus.exists()

    await eventually(nothing_parked)


async def test_telegram_business_chats_land_with_the_rep_and_replies_go_through_them(
    service: RunningService, workspace: Workspace
) -> None:
    from crm.models import BusinessLink, Conversation

    rep_id, _ = await workspace.member(Role.BIDI, telegram_id=880001)
    connection_id = await add_sandbox_channel(service, workspace, "telegram")
    linked = await service.http.post(
        "/sandbox/telegram/business_connections",
        json={"connection_id": str(connection_id), "user_id": 880001, "first_name": "Rita"},
    )
    assert linked.status_code == 200, linked.text
    business_id = linked.json()["business_connection_id"]

    async def link_stored() -> bool:
        return await BusinessLink.exists(business_connection_id=business_id, user_id=rep_id)

    await eventually(link_stored)
    await service.http.post(
        "/sandbox/telegram/updates",
        json={
            "connection_id": str(connection_id),
            "from_user_id": 990001,
            "first_name": "Lead",
            "text": "Hi Rita, about your offer",
            "business_connection_id": business_id,
        },
    )
    conversation = await the_conversation(service, workspace)
    assert conversation["assignee_id"] == rep_id
    assert conversation["business_connection_id"] == business_id
    sent = await service.http.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"text": "Hello! Rita here."},
        headers=workspace.headers,
    )
    assert sent.status_code == 202, sent.text

    async def sent_as_rep() -> bool:
        reply = await service.http.get(
            "/sandbox/telegram/sent",
            params={"connection_id": str(connection_id), "chat_id": "990001"},
        )
        return any(
            m.get("text") == "Hello! Rita here." and m.get("business_connection_id") == business_id
            for m in reply.json()
        )

    await eventually(sent_as_rep)
    assert (await Conversation.get(id=conversation["id"])).assignee_id == rep_id


async def test_a_lead_photo_is_downloaded_and_kept(
    service: RunningService, workspace: Workspace, tmp_path: Path
) -> None:
    import base64

    connection_id = await add_sandbox_channel(service, workspace, "whatsapp")
    picture = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100
    await lead_writes(
        service,
        connection_id,
        "our office",
        type="image",
        media_base64=base64.b64encode(picture).decode(),
        mime_type="image/png",
    )

    async def stored() -> bool:
        return await Message.filter(kind="image").exists()

    await eventually(stored)
    message = await Message.get(kind="image")
    assert message.media is not None and message.media["mime_type"] == "image/png"
    key = str(message.media["key"])
    assert (tmp_path / "media" / key).read_bytes() == picture
    assert message.text == "our office"


async def test_a_username_lead_without_a_phone_is_stored_and_answered(
    service: RunningService, workspace: Workspace
) -> None:
    user_id = "US.13491208655302741918"
    connection_id = await add_sandbox_channel(service, workspace, "whatsapp")
    await lead_writes(service, connection_id, "Hi, no phone here", **{"from": user_id})
    conversation = await the_conversation(service, workspace)
    contact = await Contact.get(id=conversation["contact_id"])
    assert (contact.whatsapp_user_id, contact.whatsapp_id, contact.phone) == (user_id, None, None)

    sent = await service.http.post(
        f"/api/v1/conversations/{conversation['id']}/messages",
        json={"text": "Hello!"},
        headers=workspace.headers,
    )
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["id"]

    async def read_by_lead() -> bool:
        return (await Message.get(id=message_id)).status.value == "read"

    await eventually(read_by_lead)
    reply = await service.http.get("/sandbox/whatsapp/outbox", params={"to": user_id})
    [entry] = reply.json()
    assert entry["text"] == "Hello!"
