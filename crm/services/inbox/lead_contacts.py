"""The contact a lead's message comes from: found by its channel identifiers, or created."""

from __future__ import annotations

from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from crm.messaging import ChannelKind, ConnectionInfo, InboundMessage
from crm.models import Contact
from crm.services.access import Actor
from crm.services.contacts.identifiers import build_search_text
from crm.services.events.catalog import ContactCreated, ContactUpdated
from crm.services.events.recording import record_event, snapshot

# Not identities: a parent user id is shared with nobody else but is a weaker key (looked up
# last, not unique); a username can change hands, so it is shown, never matched on.
_WEAK_FIELDS = ("whatsapp_parent_user_id", "whatsapp_username")


def _identity_filters(connection: ConnectionInfo, inbound: InboundMessage) -> list[dict[str, Any]]:
    """Contact lookups, strongest identifier first."""
    values = _identifiers_of(connection, inbound)
    lookups = [{f: v} for f, v in values.items() if f not in _WEAK_FIELDS]
    if "whatsapp_parent_user_id" in values:
        lookups.append({"whatsapp_parent_user_id": values["whatsapp_parent_user_id"]})
    return lookups


async def _identity_taken(
    tenant_id: int, field: str, value: Any, contact_id: int, conn: BaseDBAsyncClient
) -> bool:
    query = Contact.filter(tenant_id=tenant_id, **{field: value}).exclude(id=contact_id)
    return await query.using_db(conn).exists()


async def find_or_create_contact(
    actor: Actor, connection: ConnectionInfo, inbound: InboundMessage, conn: BaseDBAsyncClient
) -> Contact:
    """The lead's contact by its strongest identifier, completed; or a new one, recorded."""
    for lookup in _identity_filters(connection, inbound):
        contact = (
            await Contact.filter(tenant_id=connection.tenant_id, **lookup).using_db(conn).first()
        )
        if contact is not None:
            await _fill_identifiers(actor, connection, contact, inbound, conn)
            return contact
    values = _identifiers_of(connection, inbound)
    name = (
        inbound.sender_name
        or inbound.phone
        or values.get("telegram_username")
        or values.get("whatsapp_username")
        or ""
    )
    contact = Contact(
        tenant_id=connection.tenant_id,
        name=name[:200],
        source=connection.kind.value,
        **values,
    )
    contact.search_text = build_search_text(
        contact.name, contact.email, contact.phone, contact.telegram_username
    )
    await contact.save(using_db=conn)
    await record_event(
        actor,
        ContactCreated,
        contact.id,
        after=snapshot(contact, exclude=frozenset({"search_text"})),
        using_db=conn,
    )
    return contact


def _identifiers_of(connection: ConnectionInfo, inbound: InboundMessage) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if connection.kind is ChannelKind.WHATSAPP:
        # The sender is a wa_id (digits), or a user id when the lead shows only a username.
        if inbound.sender_id.isdigit():
            values["whatsapp_id"] = inbound.sender_id
        user_id = inbound.whatsapp_user_id or (
            None if inbound.sender_id.isdigit() else inbound.sender_id
        )
        if user_id:
            values["whatsapp_user_id"] = user_id[:64]
        if inbound.whatsapp_parent_user_id:
            values["whatsapp_parent_user_id"] = inbound.whatsapp_parent_user_id[:64]
        if inbound.whatsapp_username:
            values["whatsapp_username"] = inbound.whatsapp_username.lower()[:64]
    elif inbound.sender_id.isdigit():
        values["telegram_id"] = int(inbound.sender_id)
    if inbound.phone:
        values["phone"] = inbound.phone
    if inbound.telegram_username:
        values["telegram_username"] = inbound.telegram_username.lower()
    return values


async def _fill_identifiers(
    actor: Actor,
    connection: ConnectionInfo,
    contact: Contact,
    inbound: InboundMessage,
    conn: BaseDBAsyncClient,
) -> None:
    """Complete a known contact with what the channel revealed, never overwriting."""
    before = snapshot(contact, exclude=frozenset({"search_text"}))
    changed = False
    for field, value in _identifiers_of(connection, inbound).items():
        current = getattr(contact, field)
        if field == "whatsapp_username" and current != value:
            pass  # the lead's current username, whatever it was before
        elif current is not None:
            continue
        elif field not in _WEAK_FIELDS and await _identity_taken(
            contact.tenant_id, field, value, contact.id, conn
        ):
            continue  # another contact holds it; merging people is an operator's decision
        setattr(contact, field, value)
        changed = True
    if not contact.name and inbound.sender_name:
        contact.name = inbound.sender_name[:200]
        changed = True
    if not changed:
        return
    contact.search_text = build_search_text(
        contact.name, contact.email, contact.phone, contact.telegram_username
    )
    await contact.save(using_db=conn)
    await record_event(
        actor,
        ContactUpdated,
        contact.id,
        before=before,
        after=snapshot(contact, exclude=frozenset({"search_text"})),
        using_db=conn,
    )
