"""Leads' marketing preferences: opt-outs by keyword, by the channel's button, or by a member."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from crm.messaging import ChannelKind, ConnectionInfo, InboundPreference
from crm.models import Consent, Contact
from crm.services.access import Actor
from crm.services.events.catalog import ContactOptedIn, ContactOptedOut
from crm.services.events.recording import record_event, snapshot
from crm.services.references import lock_in_tenant

logger = logging.getLogger(__name__)

# Whole-message opt-out keywords (compared case-insensitively, surrounding punctuation ignored).
OPT_OUT_KEYWORDS = frozenset({"stop", "unsubscribe", "стоп", "отписаться"})


def is_opt_out(text: str) -> bool:
    """True when a whole message asks to stop messages (STOP, СТОП, ...)."""
    return text.strip().strip(".!?\"' ").casefold() in OPT_OUT_KEYWORDS


async def set_opted_out(
    actor: Actor,
    contact: Contact,
    opted_out: bool,
    at: dt.datetime,
    reason: str,
    conn: BaseDBAsyncClient,
) -> bool:
    """Opt a locked contact out (or back in) and record why; False when it already was so."""
    if opted_out == (contact.consent is Consent.OPTED_OUT):
        return False
    before = snapshot(contact, exclude=frozenset({"search_text"}))
    contact.consent = Consent.OPTED_OUT if opted_out else Consent.GRANTED
    contact.opted_out_at = at if opted_out else None
    await contact.save(using_db=conn, update_fields=["consent", "opted_out_at", "updated_at"])
    after = snapshot(contact, exclude=frozenset({"search_text"}))
    after["reason"] = reason
    event = ContactOptedOut if opted_out else ContactOptedIn
    await record_event(actor, event, contact.id, before=before, after=after, using_db=conn)
    return True


async def do_set_opted_out(actor: Actor, contact_id: int, opted_out: bool, reason: str) -> bool:
    """Opt a contact out of (or back into) marketing; False when it already was so."""
    async with in_transaction() as conn:
        contact = await lock_in_tenant(actor, Contact, contact_id, "contact", conn)
        return await set_opted_out(actor, contact, opted_out, dt.datetime.now(dt.UTC), reason, conn)


async def apply_preference(connection: ConnectionInfo, preference: InboundPreference) -> bool:
    """A lead stopped or resumed marketing messages; True when the contact changed."""
    actor = Actor.system(connection.tenant_id)
    async with in_transaction() as conn:
        lookups: list[dict[str, Any]] = [{"whatsapp_id": preference.sender_id}]
        if connection.kind is ChannelKind.WHATSAPP:
            user_id = preference.user_id or preference.sender_id
            lookups += [{"whatsapp_user_id": user_id}, {"phone": f"+{preference.sender_id}"}]
        contact = None
        for lookup in lookups:
            contact = (
                await Contact.filter(tenant_id=connection.tenant_id, **lookup)
                .using_db(conn)
                .select_for_update()
                .first()
            )
            if contact is not None:
                break
        if contact is None:
            logger.info("marketing preference for an unknown lead on connection %s", connection.id)
            return False
        return await set_opted_out(
            actor, contact, preference.opted_out, preference.at, "marketing_preference", conn
        )
