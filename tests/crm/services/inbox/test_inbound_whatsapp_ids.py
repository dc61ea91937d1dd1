"""WhatsApp's business-scoped user ids: one lead, one contact, whichever id they write with."""

from __future__ import annotations

import datetime as dt

from crm.messaging import InboundMessage, InboundPreference
from crm.models import Consent, Contact, Conversation
from crm.services.inbox import inbound_messages, lead_preferences
from tests.support.inbox import NOW, whatsapp_connection
from tests.support.workspace import Workspace

PHONE = "4915112345678"
USER_ID = "DE.13491208655302741918"
PARENT_ID = "DE.ENT.11815799212886844830"


def from_lead(
    external_id: str,
    *,
    wa_id: str | None = None,
    user_id: str | None = None,
    parent: str | None = None,
    username: str | None = None,
    at: dt.datetime = NOW,
) -> InboundMessage:
    """A WhatsApp text as the parser gives it for a lead known by these ids."""
    sender = wa_id or user_id
    assert sender is not None
    return InboundMessage(
        external_id=external_id,
        sender_id=sender,
        sent_at=at,
        text="hello",
        sender_name="Sheena",
        phone=f"+{wa_id}" if wa_id else None,
        whatsapp_user_id=user_id,
        whatsapp_parent_user_id=parent,
        whatsapp_username=username,
    )


async def test_a_user_id_only_lead_gets_a_contact_keyed_by_that_id(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    first = await inbound_messages.receive_message(
        connection, from_lead("wamid.1", user_id=USER_ID, parent=PARENT_ID, username="sheena")
    )
    again = await inbound_messages.receive_message(
        connection, from_lead("wamid.2", user_id=USER_ID)
    )
    assert first.contact_id == again.contact_id
    assert first.conversation_id == again.conversation_id
    contact = await Contact.get(id=first.contact_id)
    assert (contact.whatsapp_user_id, contact.whatsapp_parent_user_id) == (USER_ID, PARENT_ID)
    assert (contact.whatsapp_id, contact.phone, contact.whatsapp_username) == (
        None,
        None,
        "sheena",
    )
    conversation = await Conversation.get(id=first.conversation_id)
    assert conversation.peer_id == USER_ID  # replies go to the user id


async def test_phone_then_both_then_user_id_only_is_one_contact(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    by_phone = await inbound_messages.receive_message(connection, from_lead("wamid.a", wa_id=PHONE))
    both = await inbound_messages.receive_message(
        connection, from_lead("wamid.b", wa_id=PHONE, user_id=USER_ID, username="sheena")
    )
    by_user_id = await inbound_messages.receive_message(
        connection, from_lead("wamid.c", user_id=USER_ID)
    )
    assert by_phone.contact_id == both.contact_id == by_user_id.contact_id
    assert by_phone.conversation_id == by_user_id.conversation_id
    assert await Contact.filter(tenant_id=workspace.tenant_id).count() == 1
    contact = await Contact.get(id=by_phone.contact_id)
    assert (contact.whatsapp_id, contact.phone, contact.whatsapp_user_id) == (
        PHONE,
        f"+{PHONE}",
        USER_ID,
    )


async def test_user_id_first_then_phone_revealed_is_one_contact(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    first = await inbound_messages.receive_message(
        connection, from_lead("wamid.x", user_id=USER_ID)
    )
    later = await inbound_messages.receive_message(
        connection, from_lead("wamid.y", wa_id=PHONE, user_id=USER_ID)
    )
    assert first.contact_id == later.contact_id
    contact = await Contact.get(id=first.contact_id)
    assert (contact.whatsapp_id, contact.phone) == (PHONE, f"+{PHONE}")


async def test_a_parent_user_id_finds_the_lead_from_a_linked_business(
    workspace: Workspace,
) -> None:
    connection = await whatsapp_connection(workspace)
    other = await whatsapp_connection(workspace, "999888777")
    first = await inbound_messages.receive_message(
        connection, from_lead("wamid.p1", user_id=USER_ID, parent=PARENT_ID)
    )
    # The same person through another business of the group: another user id, same parent.
    linked = await inbound_messages.receive_message(
        other, from_lead("wamid.p2", user_id="DE.777", parent=PARENT_ID)
    )
    assert first.contact_id == linked.contact_id


async def test_a_user_id_only_lead_can_opt_out(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace)
    received = await inbound_messages.receive_message(
        connection, from_lead("wamid.o", user_id=USER_ID)
    )
    changed = await lead_preferences.apply_preference(
        connection, InboundPreference(sender_id=USER_ID, opted_out=True, at=NOW, user_id=USER_ID)
    )
    assert changed
    contact = await Contact.get(id=received.contact_id)
    assert contact.consent is Consent.OPTED_OUT
