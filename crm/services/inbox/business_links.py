"""Telegram Business connections: which rep's account the lead bot serves."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from crm.messaging import BusinessConnectionUpdate, ConnectionInfo
from crm.models import BusinessLink, User
from crm.services.access import Actor
from crm.services.events.catalog import BusinessConnected, BusinessDisconnected
from crm.services.events.recording import record_event
from crm.services.text import clean_text


async def apply_business_connection(
    connection: ConnectionInfo, update: BusinessConnectionUpdate
) -> BusinessLink:
    """Telegram Business: remember which rep's account the bot now serves.

    The rep is matched to a member of the tenant by Telegram id; chats of an unknown rep
    still land in the inbox, unassigned.
    """
    async with in_transaction() as conn:
        user = (
            await User.filter(
                telegram_id=update.rep_telegram_id,
                memberships__tenant_id=connection.tenant_id,
            )
            .using_db(conn)
            .first()
        )
        link = (
            await BusinessLink.filter(
                connection_id=connection.id,
                business_connection_id=update.business_connection_id,
            )
            .using_db(conn)
            .select_for_update()
            .first()
        )
        if link is None:
            link = BusinessLink(
                tenant_id=connection.tenant_id,
                connection_id=connection.id,
                business_connection_id=update.business_connection_id,
                rep_telegram_id=update.rep_telegram_id,
            )
        link.rep_name = clean_text(update.rep_name or "")[:200]
        link.user_id = user.id if user is not None else None
        link.enabled = update.enabled
        link.can_reply = update.can_reply
        await link.save(using_db=conn)
        await record_event(
            Actor.system(connection.tenant_id),
            BusinessConnected if update.enabled else BusinessDisconnected,
            link.id,
            after={
                "connection_id": connection.id,
                "rep_telegram_id": update.rep_telegram_id,
                "user_id": link.user_id,
                "can_reply": update.can_reply,
            },
            using_db=conn,
        )
    return link
