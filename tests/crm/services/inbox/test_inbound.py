"""Inbound messages, receipts and preferences: stored once, in any order, in the right place."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest

from crm.messaging import (
    BusinessConnectionUpdate,
    ConnectionInfo,
    DeliveryStatus,
    InboundEdit,
    InboundMessage,
    InboundPreference,
    InboundStatus,
    MediaRef,
)
from crm.models import (
    Consent,
    Contact,
    Conversation,
    ConversationStatus,
    Event,
    Message,
    PendingStatus,
    Role,
)
from crm.services.contacts.contacts import do_create_contact
from crm.services.inbox import business_links, delivery_receipts, inbound_messages, lead_preferences
from tests.support.inbox import NOW, telegram_connection, wa_text, whatsapp_connection
from tests.support.workspace import Workspace


async def test_a_lead_message_creates_contact_conversation_and_event(
    workspace: Workspace,
) -> None:
    connection = await whatsapp_connection(workspace)
    received = await inbound_messages.receive_message(connection, wa_text("wamid.1", "Hi, price?"))
    assert received.created
    contact = await Contact.get(id=received.contact_id)
    assert (contact.name, contact.whatsapp_id, contact.phone, contact.source) == (
        "Anna Lead",
        "4915112345678",
        "+4915112345678",
        "whatsapp",
    )
    conversation = await Conversation.get(id=received.conversation_id)
    assert conversation.unread_count == 1
    assert conversation.last_inbound_at == NOW
    assert conversation.last_message_preview == "Hi, price?"
    assert conversation.peer_id == "4915112345678"
    event = await Event.get(type="message.received", entity_id=received.message.id)
    assert event.after is not None and event.after["text"] == "Hi, price?"


async def test_the_same_message_twice_is_stored_once(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    first = await inbound_messages.receive_message(connection, wa_text("wamid.dup"))
    second = await inbound_messages.receive_message(connection, wa_text("wamid.dup"))
    assert not second.created and second.message.id == first.message.id
    assert await Message.filter(external_id="wamid.dup").count() == 1
    assert (await Conversation.get(id=first.conversation_id)).unread_count == 1
    assert await Event.filter(type="message.received").count() == 1


async def test_concurrent_deliveries_of_a_new_lead_store_one_of_each(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    messages = [wa_text(f"wamid.{i}", f"m{i}") for i in range(5)]
    deliveries = [m for m in messages for _ in range(3)]
    random.Random(7).shuffle(deliveries)
    await asyncio.gather(*(inbound_messages.receive_message(connection, m) for m in deliveries))
    assert await Contact.filter(tenant_id=workspace.tenant_id).count() == 1
    assert await Conversation.filter(tenant_id=workspace.tenant_id).count() == 1
    assert await Message.filter(tenant_id=workspace.tenant_id).count() == 5
    conversation = await Conversation.get(tenant_id=workspace.tenant_id)
    assert conversation.unread_count == 5


async def test_a_known_contact_is_found_by_phone_and_completed(workspace: Workspace) -> None:
    record = await do_create_contact(workspace.actor, {"name": "Anna", "phone": "+4915112345678"})
    connection = await whatsapp_connection(workspace)
    received = await inbound_messages.receive_message(connection, wa_text("wamid.p"))
    assert received.contact_id == record.contact.id
    contact = await Contact.get(id=record.contact.id)
    assert contact.whatsapp_id == "4915112345678"
    assert contact.name == "Anna"  # never overwritten by the profile name


async def test_an_older_message_arriving_late_keeps_the_latest_preview(
    workspace: Workspace,
) -> None:
    connection = await whatsapp_connection(workspace)
    await inbound_messages.receive_message(connection, wa_text("wamid.new", "second", at=NOW))
    earlier = NOW - dt.timedelta(minutes=5)
    received = await inbound_messages.receive_message(
        connection, wa_text("wamid.old", "first", at=earlier)
    )
    conversation = await Conversation.get(id=received.conversation_id)
    assert conversation.last_message_preview == "second"
    assert conversation.last_inbound_at == NOW


async def test_a_lead_writing_reopens_a_closed_conversation(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    received = await inbound_messages.receive_message(connection, wa_text("wamid.a"))
    await Conversation.filter(id=received.conversation_id).update(status=ConversationStatus.CLOSED)
    await inbound_messages.receive_message(connection, wa_text("wamid.b", "again"))
    conversation = await Conversation.get(id=received.conversation_id)
    assert conversation.status is ConversationStatus.OPEN


@pytest.mark.parametrize("text", ["STOP", "stop", " Unsubscribe! ", "СТОП", "отписаться"])
async def test_stop_keywords_opt_the_contact_out(workspace: Workspace, text: str) -> None:
    connection = await whatsapp_connection(workspace)
    received = await inbound_messages.receive_message(connection, wa_text("wamid.stop", text))
    contact = await Contact.get(id=received.contact_id)
    assert contact.consent is Consent.OPTED_OUT
    assert contact.opted_out_at == NOW


@pytest.mark.parametrize("text", ["stop sending me the old price", "please don't stop"])
async def test_stop_inside_a_sentence_is_not_an_opt_out(workspace: Workspace, text: str) -> None:
    connection = await whatsapp_connection(workspace)
    received = await inbound_messages.receive_message(connection, wa_text("wamid.s", text))
    assert (await Contact.get(id=received.contact_id)).consent is not Consent.OPTED_OUT


async def test_marketing_preference_stop_and_resume(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    received = await inbound_messages.receive_message(connection, wa_text("wamid.x"))
    stop = InboundPreference(sender_id="4915112345678", opted_out=True, at=NOW)
    assert await lead_preferences.apply_preference(connection, stop)
    assert not await lead_preferences.apply_preference(connection, stop)
    assert (await Contact.get(id=received.contact_id)).consent is Consent.OPTED_OUT
    resume = InboundPreference(sender_id="4915112345678", opted_out=False, at=NOW)
    assert await lead_preferences.apply_preference(connection, resume)
    assert (await Contact.get(id=received.contact_id)).consent is Consent.GRANTED


async def _outbound(connection: ConnectionInfo, external_id: str | None) -> Message:
    received = await inbound_messages.receive_message(
        connection, wa_text(f"wamid.in-{external_id}")
    )
    return await Message.create(
        tenant_id=connection.tenant_id,
        conversation_id=received.conversation_id,
        connection_id=connection.id,
        direction="out",
        text="reply",
        status=DeliveryStatus.SENT if external_id else DeliveryStatus.QUEUED,
        external_id=external_id,
        author_type="user",
    )


def receipt(external_id: str, status: DeliveryStatus, **extra: object) -> InboundStatus:
    return InboundStatus(external_id=external_id, status=status, at=NOW, **extra)  # type: ignore[arg-type]


async def test_receipts_only_move_forward(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    message = await _outbound(connection, "wamid.out")
    for status in (DeliveryStatus.READ, DeliveryStatus.DELIVERED, DeliveryStatus.SENT):
        await delivery_receipts.apply_status(connection, receipt("wamid.out", status))
    assert (await Message.get(id=message.id)).status is DeliveryStatus.READ
    changes = await Event.filter(type="message.status_changed", entity_id=message.id).count()
    assert changes == 1


async def test_a_failed_receipt_carries_the_provider_error(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    message = await _outbound(connection, "wamid.f")
    failed = receipt(
        "wamid.f", DeliveryStatus.FAILED, error_code=131026, error_title="Message undeliverable"
    )
    await delivery_receipts.apply_status(connection, failed)
    stored = await Message.get(id=message.id)
    assert (stored.status, stored.error_code, stored.error_title) == (
        DeliveryStatus.FAILED,
        131026,
        "Message undeliverable",
    )


async def test_a_receipt_before_the_id_is_known_waits_and_applies(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    message = await _outbound(connection, None)
    early = receipt("wamid.early", DeliveryStatus.DELIVERED)
    assert await delivery_receipts.apply_status(connection, early) is None
    assert await delivery_receipts.apply_status(connection, early) is None
    assert await PendingStatus.filter(external_id="wamid.early").count() == 1
    await Message.filter(id=message.id).update(external_id="wamid.early")
    await delivery_receipts.apply_pending_statuses(await Message.get(id=message.id))
    assert (await Message.get(id=message.id)).status is DeliveryStatus.DELIVERED
    assert not await PendingStatus.exists(external_id="wamid.early")


async def test_edits_and_deletions_of_lead_messages(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    received = await inbound_messages.receive_message(connection, wa_text("wamid.e", "teh price"))
    sender = "4915112345678"
    edit = InboundEdit(external_id="wamid.e", sender_id=sender, at=NOW, text="the price")
    await inbound_messages.apply_edit(connection, edit)
    stored = await Message.get(id=received.message.id)
    assert (stored.text, stored.edited) == ("the price", True)
    await inbound_messages.apply_edit(
        connection, InboundEdit(external_id="wamid.e", sender_id=sender, at=NOW, deleted=True)
    )
    assert (await Message.get(id=received.message.id)).deleted


async def test_telegram_business_chats_are_assigned_to_the_rep(workspace: Workspace) -> None:
    rep_id, _ = await workspace.member(Role.BIDI, telegram_id=777001)
    connection = await telegram_connection(workspace)
    link = await business_links.apply_business_connection(
        connection,
        BusinessConnectionUpdate(
            business_connection_id="bc-1",
            rep_telegram_id=777001,
            rep_name="Rep",
            enabled=True,
            can_reply=True,
            at=NOW,
        ),
    )
    assert link.user_id == rep_id
    lead = InboundMessage(
        external_id="555:10",
        sender_id="555",
        sender_name="Lead",
        sent_at=NOW,
        text="hi rep",
        business_connection_id="bc-1",
    )
    received = await inbound_messages.receive_message(connection, lead)
    conversation = await Conversation.get(id=received.conversation_id)
    assert conversation.assignee_id == rep_id
    assert conversation.business_connection_id == "bc-1"
    assert (await Contact.get(id=received.contact_id)).telegram_id == 555


async def test_update_ids_are_claimed_once(workspace: Workspace) -> None:
    connection = await telegram_connection(workspace)
    assert await inbound_messages.claim_update(connection.id, "42")
    assert not await inbound_messages.claim_update(connection.id, "42")
    await inbound_messages.release_update(connection.id, "42")
    assert await inbound_messages.claim_update(connection.id, "42")


async def test_tenants_do_not_share_contacts(
    workspace: Workspace, other_workspace: Workspace
) -> None:
    mine = await whatsapp_connection(workspace, "111111")
    theirs = await whatsapp_connection(other_workspace, "222222")
    a = await inbound_messages.receive_message(mine, wa_text("wamid.t1"))
    b = await inbound_messages.receive_message(theirs, wa_text("wamid.t1"))
    assert a.created and b.created
    assert a.contact_id != b.contact_id
    assert (await Contact.get(id=b.contact_id)).tenant_id == other_workspace.tenant_id


async def test_nul_control_and_bidi_characters_are_stripped_never_the_message(
    workspace: Workspace,
) -> None:
    # PostgreSQL refuses NUL; U+202E would reverse what follows the name in every notification.
    connection = await telegram_connection(workspace)
    inbound = InboundMessage(
        external_id="77:nul",
        sender_id="77",
        sender_name="Ann\x00a \u202eevil\u2066",
        sent_at=NOW,
        text="price\x00 of\u202e gnp.exe\x07\nplease\t!",
        payload={"caption\x00": ["a\x00b", {"k": "\u202ev"}]},
        media=MediaRef(provider_media_id="f1", filename="doc\x00\u202efdp.exe"),
    )
    received = await inbound_messages.receive_message(
        connection, inbound, {"filename": "doc\x00.pdf", "key": "k"}
    )
    message = await Message.get(id=received.message.id)
    assert message.text == "price of gnp.exe\nplease\t!"
    assert message.payload == {"caption": ["ab", {"k": "v"}]}
    assert message.media == {"filename": "doc.pdf", "key": "k"}
    contact = await Contact.get(id=received.contact_id)
    assert contact.name == "Anna evil"
    conversation = await Conversation.get(id=received.conversation_id)
    assert conversation.last_message_preview == "price of gnp.exe please !"
    event = await Event.get(type="message.received", entity_id=message.id)
    assert event.after is not None and event.after["text"] == message.text
    # A redelivery finds the stored message: the cleaning does not break the dedupe.
    again = await inbound_messages.receive_message(connection, inbound)
    assert not again.created and again.message.id == message.id

    edit = InboundEdit(external_id="77:nul", sender_id="77", at=NOW, text="new\x00 \u202dtext")
    await inbound_messages.apply_edit(connection, edit)
    assert (await Message.get(id=message.id)).text == "new text"
