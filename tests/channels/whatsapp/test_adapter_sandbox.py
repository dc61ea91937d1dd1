"""The adapter through the real pywa client, against the emulator over loopback HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from channels.whatsapp import WhatsAppAdapter
from crm.messaging import (
    Button,
    DeliveryStatus,
    InboundMessage,
    InboundPreference,
    InboundStatus,
    MediaRef,
    MessageKind,
    OutboundKind,
    OutboundMessage,
    SendError,
)
from tests.support.whatsapp import CONNECTION_ID, LEAD, Sandbox, whatsapp_connection


def _statuses(sandbox: Sandbox, external_id: str) -> list[DeliveryStatus]:
    return [
        u.status
        for u in sandbox.updates()
        if isinstance(u, InboundStatus) and u.external_id == external_id
    ]


async def test_text_send_and_statuses_through_signed_webhooks(sandbox: Sandbox) -> None:
    await sandbox.lead_writes()
    result = await sandbox.adapter.send(
        sandbox.connection, OutboundMessage(to=LEAD, text="Hello from the CRM")
    )
    await sandbox.emulator.drain()

    [entry] = sandbox.emulator.outbox(LEAD)
    assert (entry.id, entry.type, entry.text, entry.status) == (
        result.external_id,
        "text",
        "Hello from the CRM",
        "read",
    )
    assert _statuses(sandbox, result.external_id) == [
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.READ,
    ]
    status = next(u for u in sandbox.updates() if isinstance(u, InboundStatus))
    assert status.recipient_id == LEAD and status.at.tzinfo is not None


async def test_plus_prefixed_number_and_reply_context(sandbox: Sandbox) -> None:
    wamid = await sandbox.lead_writes("question?")
    await sandbox.adapter.send(
        sandbox.connection,
        OutboundMessage(to=f"+{LEAD}", text="answer", reply_to_external_id=wamid),
    )
    [entry] = sandbox.emulator.outbox(LEAD)
    assert entry.reply_to == wamid
    assert entry.payload["to"] == LEAD and entry.payload["recipient_type"] == "individual"


async def test_template_known_renders_without_a_window(sandbox: Sandbox) -> None:
    message = OutboundMessage(
        to=LEAD,
        kind=OutboundKind.TEMPLATE,
        template_name="follow_up",
        template_language="en",
        template_params=("Dana",),
    )
    result = await sandbox.adapter.send(sandbox.connection, message)
    [entry] = sandbox.emulator.outbox(LEAD)
    assert entry.id == result.external_id
    assert entry.text == "Hi Dana, just following up on our conversation."
    assert entry.template == {"name": "follow_up", "language": "en", "params": ["Dana"]}

    hello = OutboundMessage(
        to=LEAD, kind=OutboundKind.TEMPLATE, template_name="hello_world", template_language="en_US"
    )
    await sandbox.adapter.send(sandbox.connection, hello)
    assert sandbox.emulator.outbox(LEAD)[-1].text == "Hello World"


async def test_template_unknown_name_is_132001(sandbox: Sandbox) -> None:
    message = OutboundMessage(
        to=LEAD, kind=OutboundKind.TEMPLATE, template_name="nope", template_language="en"
    )
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.send(sandbox.connection, message)
    assert caught.value.code == 132001 and not caught.value.retryable
    assert caught.value.title == "Template name does not exist in the translation"


async def test_template_unknown_language_is_refused_before_any_request(sandbox: Sandbox) -> None:
    message = OutboundMessage(
        to=LEAD, kind=OutboundKind.TEMPLATE, template_name="follow_up", template_language="xx"
    )
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.send(sandbox.connection, message)
    assert caught.value.code is None and not caught.value.retryable


async def test_free_form_outside_the_window_is_131047(sandbox: Sandbox) -> None:
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.send(sandbox.connection, OutboundMessage(to=LEAD, text="hi?"))
    assert caught.value.code == 131047 and not caught.value.retryable
    assert sandbox.emulator.outbox() == []


async def test_image_from_a_path_is_uploaded_then_sent(sandbox: Sandbox, tmp_path: Path) -> None:
    await sandbox.lead_writes()
    picture = tmp_path / "offer.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n fake png")
    message = OutboundMessage(
        to=LEAD, kind=OutboundKind.IMAGE, text="Our offer", media_path=str(picture)
    )
    await sandbox.adapter.send(sandbox.connection, message)
    [entry] = sandbox.emulator.outbox(LEAD)
    assert entry.type == "image" and entry.text == "Our offer"
    assert entry.media is not None and entry.media["mime_type"] == "image/png"
    assert sandbox.emulator.media_bytes(entry.media["id"]) == picture.read_bytes()


async def test_document_by_url_and_missing_file(sandbox: Sandbox, tmp_path: Path) -> None:
    await sandbox.lead_writes()
    by_link = OutboundMessage(
        to=LEAD,
        kind=OutboundKind.DOCUMENT,
        text="terms",
        media_url="https://example.com/files/terms.pdf",
    )
    await sandbox.adapter.send(sandbox.connection, by_link)
    [entry] = sandbox.emulator.outbox(LEAD)
    assert entry.media == {"link": "https://example.com/files/terms.pdf", "filename": "terms.pdf"}

    missing = dataclasses.replace(by_link, media_url=None, media_path=str(tmp_path / "gone.pdf"))
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.send(sandbox.connection, missing)
    assert not caught.value.retryable


async def test_buttons_and_long_option_lists(sandbox: Sandbox) -> None:
    await sandbox.lead_writes()
    two = OutboundMessage(
        to=LEAD,
        kind=OutboundKind.BUTTONS,
        text="Book a call?",
        buttons=(Button("yes", "Yes"), Button("later", "Later")),
    )
    await sandbox.adapter.send(sandbox.connection, two)
    five = dataclasses.replace(two, buttons=tuple(Button(f"s{i}", f"Slot {i}") for i in range(5)))
    await sandbox.adapter.send(sandbox.connection, five)
    first, second = sandbox.emulator.outbox(LEAD)
    assert first.payload["interactive"]["type"] == "button"
    assert first.buttons == ["Yes", "Later"] and first.text == "Book a call?"
    replies = [b["reply"]["id"] for b in first.payload["interactive"]["action"]["buttons"]]
    assert replies == ["yes", "later"]
    assert second.payload["interactive"]["type"] == "list"
    assert second.buttons == [f"Slot {i}" for i in range(5)]


@pytest.mark.parametrize(
    ("kind", "code", "extra"),
    [
        ("rate_limit", 130429, {}),
        ("pair_rate_limit", 131056, {}),
        ("server_error", 1, {}),
        ("server_error", 2, {"status": 503}),
    ],
)
async def test_injected_faults_are_retryable_and_not_retried(
    sandbox: Sandbox, kind: str, code: int, extra: dict[str, int]
) -> None:
    await sandbox.lead_writes()
    sandbox.emulator.add_fault(kind, 1, **extra)  # type: ignore[arg-type]
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.send(sandbox.connection, OutboundMessage(to=LEAD, text="x"))
    assert caught.value.code == code and caught.value.retryable
    assert caught.value.retry_after is None
    assert sandbox.emulator.outbox() == []  # the adapter did not retry behind the caller's back
    await sandbox.adapter.send(sandbox.connection, OutboundMessage(to=LEAD, text="x"))
    assert len(sandbox.emulator.outbox()) == 1


async def test_a_connection_that_never_opened_is_retryable(sandbox: Sandbox) -> None:
    dead = whatsapp_connection("http://127.0.0.1:9/sandbox/graph")
    adapter = WhatsAppAdapter(timeout=2)
    try:
        with pytest.raises(SendError) as caught:
            await adapter.send(dead, OutboundMessage(to=LEAD, text="x"))
    finally:
        await adapter.close()
    assert caught.value.code is None and caught.value.retryable
    assert "ConnectError" in caught.value.title


async def test_wrong_token_is_190_not_retryable(sandbox: Sandbox) -> None:
    await sandbox.lead_writes()
    wrong = dataclasses.replace(
        sandbox.connection, credentials={**sandbox.connection.credentials, "token": "stale"}
    )
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.send(wrong, OutboundMessage(to=LEAD, text="x"))
    assert caught.value.code == 190 and not caught.value.retryable


async def test_clients_are_cached_per_connection_and_credentials(sandbox: Sandbox) -> None:
    first = await sandbox.adapter.client(sandbox.connection)
    assert await sandbox.adapter.client(sandbox.connection) is first
    rotated = dataclasses.replace(
        sandbox.connection, credentials={**sandbox.connection.credentials, "token": "new"}
    )
    assert await sandbox.adapter.client(rotated) is not first


async def test_status_can_arrive_before_the_send_returns(sandbox: Sandbox) -> None:
    sandbox.emulator.status_before_response = True
    await sandbox.lead_writes()
    result = await sandbox.adapter.send(sandbox.connection, OutboundMessage(to=LEAD, text="x"))
    # Our webhook view accepted the receipt before the adapter even knew the id.
    assert _statuses(sandbox, result.external_id) == [DeliveryStatus.SENT]
    await sandbox.emulator.drain()
    assert _statuses(sandbox, result.external_id)[-1] == DeliveryStatus.READ


async def test_duplicated_shuffled_pushes_all_pass_our_webhook(sandbox: Sandbox) -> None:
    sandbox.emulator.configure_delivery(duplicates=2, shuffle=True)
    ids = [await sandbox.lead_writes(f"m{i}") for i in range(4)]
    await sandbox.emulator.drain()
    messages = [u for u in sandbox.updates() if isinstance(u, InboundMessage)]
    assert sorted(m.external_id for m in messages) == sorted(ids * 2)
    assert all(d.ok for d in sandbox.emulator.deliveries)


async def test_inbound_text_parses_into_an_inbound_message(sandbox: Sandbox) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    wamid = await sandbox.lead_writes("I'd like a quote", name="Dana Lead")
    await sandbox.emulator.drain()
    [message] = sandbox.updates()
    assert isinstance(message, InboundMessage)
    assert message == InboundMessage(
        external_id=wamid,
        sender_id=LEAD,
        sent_at=message.sent_at,
        kind=MessageKind.TEXT,
        text="I'd like a quote",
        sender_name="Dana Lead",
        phone=f"+{LEAD}",
    )
    assert message.sent_at >= before and message.sent_at.tzinfo is not None


async def test_inbound_image_parses_and_downloads_the_same_bytes(sandbox: Sandbox) -> None:
    data = b"\xff\xd8\xff\xe0 jpeg from the lead"
    wamid = await sandbox.emulator.inbound(
        str(CONNECTION_ID), LEAD, "look", kind="image", media=data, reply_to="wamid.earlier"
    )
    await sandbox.emulator.drain()
    [message] = sandbox.updates()
    assert isinstance(message, InboundMessage)
    assert (message.external_id, message.kind, message.text) == (wamid, MessageKind.IMAGE, "look")
    assert message.reply_to_external_id == "wamid.earlier"
    assert message.media is not None and message.media.mime_type == "image/jpeg"
    assert await sandbox.adapter.download_media(sandbox.connection, message.media) == data


async def test_download_of_an_unknown_media_id_is_a_send_error(sandbox: Sandbox) -> None:
    with pytest.raises(SendError) as caught:
        await sandbox.adapter.download_media(
            sandbox.connection, MediaRef(provider_media_id="123456")
        )
    assert caught.value.code == 100


async def test_marketing_stop_and_resume(sandbox: Sandbox) -> None:
    await sandbox.emulator.marketing_preference(str(CONNECTION_ID), LEAD, stop=True)
    await sandbox.emulator.marketing_preference(str(CONNECTION_ID), LEAD, stop=False)
    await sandbox.emulator.drain()
    preferences = sandbox.updates()
    assert [
        (p.sender_id, p.opted_out) for p in preferences if isinstance(p, InboundPreference)
    ] == [
        (LEAD, True),
        (LEAD, False),
    ]


async def test_a_timeout_after_the_request_left_is_not_retried(sandbox: Sandbox) -> None:
    await sandbox.lead_writes()
    sandbox.emulator.add_fault("slow", 1, delay=1.0)
    impatient = WhatsAppAdapter(timeout=0.2)
    try:
        with pytest.raises(SendError) as caught:
            await impatient.send(sandbox.connection, OutboundMessage(to=LEAD, text="maybe sent"))
    finally:
        await impatient.close()
    # The emulator may still accept it: retrying could deliver it twice.
    assert not caught.value.retryable
    assert "delivery state unknown" in caught.value.title


async def test_a_username_lead_is_answered_by_user_id_with_a_tracker(sandbox: Sandbox) -> None:
    user_id = "US.13491208655302741918"
    await sandbox.emulator.inbound(str(CONNECTION_ID), user_id, "hi, no phone", name="Sheena")
    await sandbox.emulator.drain()
    [inbound] = [u for u in sandbox.updates() if isinstance(u, InboundMessage)]
    assert (inbound.sender_id, inbound.phone, inbound.whatsapp_user_id) == (user_id, None, user_id)

    result = await sandbox.adapter.send(
        sandbox.connection, OutboundMessage(to=user_id, text="Hello Sheena", tracker="crm:5")
    )
    await sandbox.emulator.drain()
    [entry] = sandbox.emulator.outbox(user_id)
    # Sent by "recipient" (the user id), not "to": there is no phone to send to.
    assert entry.payload["recipient"] == user_id and "to" not in entry.payload
    statuses = [
        u
        for u in sandbox.updates()
        if isinstance(u, InboundStatus) and u.external_id == result.external_id
    ]
    assert [s.status for s in statuses] == [
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.READ,
    ]
    assert {(s.recipient_user_id, s.recipient_id, s.tracker) for s in statuses} == {
        (user_id, None, "crm:5")
    }
