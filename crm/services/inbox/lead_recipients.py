"""Who of a workspace is told of a lead message, and what they are told about its lead.

The conversation's assignee hears of it, every member when nobody (with a Telegram id) is
assigned; nobody is told twice of one lead message (``not_yet_notified``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from crm.models import (
    Conversation,
    Deal,
    Membership,
    NotificationState,
    OperatorNotification,
    Role,
    StageKind,
    User,
)

logger = logging.getLogger(__name__)


async def recipients_for(conversation: Conversation) -> list[User]:
    """Who hears of a lead message: the assignee, else every member, with a Telegram id."""
    if conversation.assignee_id is not None:
        users = await User.filter(id=conversation.assignee_id, telegram_id__isnull=False)
        if users:
            return list(users)
    members = await Membership.filter(tenant_id=conversation.tenant_id).order_by("id")
    ids = [m.user_id for m in members]
    users = await User.filter(id__in=ids, telegram_id__isnull=False)
    order = {user_id: i for i, user_id in enumerate(ids)}
    return sorted(users, key=lambda u: order[u.id])


async def roles_in(tenant_id: int, user_ids: list[int]) -> dict[int, Role]:
    """The role of each of ``user_ids`` in a workspace (members only)."""
    if not user_ids:
        return {}
    rows = await Membership.filter(tenant_id=tenant_id, user_id__in=user_ids).values_list(
        "user_id", "role"
    )
    return {user_id: Role(role) for user_id, role in rows}


async def name_of(user_id: int | None) -> str | None:
    """A member's display name (None for nobody)."""
    if user_id is None:
        return None
    names = await User.filter(id=user_id).values_list("name", flat=True)
    return str(names[0]) if names else None


@dataclass(frozen=True)
class OpenDeal:
    """The latest open deal of a contact and its stage."""

    title: str
    stage: str


async def open_deal_of(tenant_id: int, contact_id: int) -> OpenDeal | None:
    """The contact's latest open deal, if any (one query: the deal with its stage)."""
    deal = (
        await Deal.filter(tenant_id=tenant_id, contact_id=contact_id, closed_at__isnull=True)
        .select_related("stage")
        .order_by("-id")
        .first()
    )
    if deal is None:
        return None
    if deal.stage.kind is not StageKind.OPEN:
        return None
    return OpenDeal(deal.title, deal.stage.name)


async def not_yet_notified(users: list[User], message_id: int) -> list[User]:
    """Those of ``users`` not yet told of this lead message (one query for all of them).

    A notification whose intent was recorded but whose send was never confirmed is not sent
    again (at most once per user and lead message): it is logged instead.
    """
    if not users:
        return []
    told: set[int] = set()
    rows = await OperatorNotification.filter(
        lead_message_id=message_id, user_id__in=[u.id for u in users]
    ).values_list("id", "user_id", "state")
    for row_id, user_id, state in rows:
        told.add(user_id)
        if state == NotificationState.PENDING.value:
            logger.warning(
                "notification %s of lead message %s to user %s was begun by an earlier delivery "
                "and never confirmed (still in flight, or that worker stopped before or after "
                "the Telegram call): not sent again",
                row_id,
                message_id,
                user_id,
            )
    return [user for user in users if user.id not in told]
