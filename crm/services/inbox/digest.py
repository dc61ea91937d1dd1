"""The daily digest of an operator, at their local morning, and the time zone it follows.

Every minute a loop (``bot/senders/alerts.py``) asks ``due_members(now)`` who is in their digest
hour: local time from ``DIGEST_HOUR`` until ``MORNING_ENDS`` in ``User.timezone`` (UTC when
unset), with no digest yet for that local date. Each one is claimed with ``claim_digest``: a
single conditional UPDATE of ``User.digest_sent_on``, so of two workers (or a worker and its
restart) only the one whose UPDATE changed the row sends. A morning missed entirely (the service
was down until noon) is skipped rather than sent in the afternoon.

``daily_digest(user_id, now)`` counts, per workspace of the member: contacts created in the
last 24 hours (new leads), conversations waiting for a reply (open, the last message is the
lead's, assigned to the member or to nobody) and deals moved to another stage in the last 24
hours. Workspaces with nothing to report are left out; a member with nothing anywhere gets no
digest (the claim still stands, so the loop does not count again every minute that morning).

Every function takes ``now`` from the caller, so tests pass the moment they need.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from dataclasses import dataclass

from tortoise.expressions import Q

from crm.errors import ValidationFailed
from crm.models import (
    Contact,
    Conversation,
    ConversationStatus,
    DealStageChange,
    Membership,
    Tenant,
    User,
)

DIGEST_HOUR = 9
MORNING_ENDS = 12
LOOKBACK = dt.timedelta(hours=24)
UTC_NAME = "UTC"
# "+3", "-5", "UTC+3", "GMT-11", "+03:00": whole hours only (Etc/GMT zones have no minutes).
OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-]?)\s*(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)
ETC_OFFSET = re.compile(r"^Etc/GMT([+-])(\d{1,2})$")
MAX_EAST = 14
MAX_WEST = 12


@functools.cache
def _known_zones() -> dict[str, str]:
    """Every IANA zone name of this system, by its lower-cased spelling."""
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def _load_zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def parse_timezone(text: str) -> str:
    """The IANA name for what an operator typed: a zone name (any case) or a UTC offset.

    ``+3`` means UTC+3, which the tz database spells ``Etc/GMT-3`` (POSIX signs are inverted).
    """
    value = text.strip()
    if not value:
        raise ValidationFailed("timezone", "name a time zone, e.g. Europe/Berlin or +3")
    match = OFFSET.match(value)
    if match is not None:
        sign, hours_text, minutes = match.groups()
        hours = int(hours_text)
        if minutes and int(minutes) != 0:
            raise ValidationFailed(
                "timezone", "offsets with minutes need a zone name, e.g. Asia/Kolkata"
            )
        if hours == 0:
            return UTC_NAME
        if sign == "-":
            if hours > MAX_WEST:
                raise ValidationFailed("timezone", f"offsets go from -{MAX_WEST} to +{MAX_EAST}")
            return f"Etc/GMT+{hours}"
        if hours > MAX_EAST:
            raise ValidationFailed("timezone", f"offsets go from -{MAX_WEST} to +{MAX_EAST}")
        return f"Etc/GMT-{hours}"
    if value.upper() in ("UTC", "GMT", "Z"):
        return UTC_NAME
    name = _known_zones().get(value.lower())
    if name is None and "/" in value and ".." not in value and _load_zone(value) is not None:
        name = value  # a system without the zone list (no tzdata index) still loads zones
    if name is None:
        raise ValidationFailed("timezone", f"unknown time zone {value!r}")
    return name


def zone_of(name: str | None) -> dt.tzinfo:
    """The zone of a stored name; UTC when unset or no longer known."""
    if not name:
        return dt.UTC
    return _load_zone(name) or dt.UTC


def zone_label(name: str | None) -> str:
    """How to show a stored zone: ``UTC+3`` for ``Etc/GMT-3``, the IANA name otherwise."""
    if not name:
        return UTC_NAME
    match = ETC_OFFSET.match(name)
    if match is None:
        return name
    sign, hours = match.groups()
    return f"UTC{'-' if sign == '+' else '+'}{int(hours)}"


def local_time(name: str | None, now: dt.datetime) -> dt.datetime:
    """``now`` on the wall clock of a stored zone."""
    return now.astimezone(zone_of(name))


async def do_set_timezone(user: User, text: str) -> User:
    """Store the operator's time zone (a zone name or a UTC offset; see ``parse_timezone``)."""
    user.timezone = parse_timezone(text)
    await user.save(update_fields=["timezone"])
    return user


def in_digest_hours(local: dt.datetime) -> bool:
    """True during the local morning the digest is sent in."""
    return DIGEST_HOUR <= local.hour < MORNING_ENDS


@dataclass(frozen=True)
class DueMember:
    """A member whose digest is due: the local date it is for, and the date it replaces."""

    user: User
    local_date: dt.date
    previous: dt.date | None


async def due_members(now: dt.datetime) -> list[DueMember]:
    """Members (with a Telegram id and a workspace) in their digest hours without one today."""
    rows = (
        await User.filter(telegram_id__isnull=False).distinct().values_list("timezone", flat=True)
    )
    zones: set[str | None] = {str(z) if z else None for z in rows}
    due: list[DueMember] = []
    for zone in sorted(zones, key=lambda z: z or ""):
        local = local_time(zone, now)
        if not in_digest_hours(local):
            continue
        today = local.date()
        same_zone = Q(timezone__isnull=True) if zone is None else Q(timezone=zone)
        not_sent = Q(digest_sent_on__isnull=True) | Q(digest_sent_on__lt=today)
        users = await User.filter(same_zone, not_sent, telegram_id__isnull=False).order_by("id")
        if not users:
            continue
        members = set(
            await Membership.filter(user_id__in=[u.id for u in users]).values_list(
                "user_id", flat=True
            )
        )
        due += [DueMember(u, today, u.digest_sent_on) for u in users if u.id in members]
    return due


async def claim_digest(user_id: int, local_date: dt.date) -> bool:
    """Mark the digest of ``local_date`` as this caller's to send; False when another has it.

    One UPDATE guarded by the date: concurrent callers serialize on the row, and only the first
    changes it (on PostgreSQL the second re-checks the condition after the first commits).
    """
    not_sent = Q(digest_sent_on__isnull=True) | Q(digest_sent_on__lt=local_date)
    changed = await User.filter(not_sent, id=user_id).update(digest_sent_on=local_date)
    return bool(changed)


async def release_digest(user_id: int, local_date: dt.date, previous: dt.date | None) -> None:
    """Give back a claim whose digest could not be sent, so the next round tries again."""
    await User.filter(id=user_id, digest_sent_on=local_date).update(digest_sent_on=previous)


@dataclass(frozen=True)
class WorkspaceDigest:
    """What one workspace has for a member this morning."""

    tenant_id: int
    workspace: str
    new_leads: int
    waiting: int
    deals_moved: int

    @property
    def empty(self) -> bool:
        """True when there is nothing to tell."""
        return not (self.new_leads or self.waiting or self.deals_moved)


async def _waiting_for(tenant_id: int, user_id: int, now: dt.datetime) -> int:
    """Open conversations whose last message is the lead's, the member's or nobody's."""
    open_now = Q(status=ConversationStatus.OPEN) | Q(
        status=ConversationStatus.SNOOZED, snoozed_until__lte=now
    )
    mine = Q(assignee_id=user_id) | Q(assignee_id__isnull=True)
    rows = await Conversation.filter(
        open_now, mine, tenant_id=tenant_id, last_inbound_at__isnull=False
    ).values_list("last_inbound_at", "last_message_at")
    # Receiving sets last_message_at to the lead's message time; a reply moves it past that.
    return sum(1 for inbound, last in rows if inbound is not None and inbound >= last)


async def workspace_digest(tenant: Tenant, user_id: int, now: dt.datetime) -> WorkspaceDigest:
    """The counts of one workspace for one member, for the 24 hours before ``now``."""
    since = now - LOOKBACK
    new_leads = await Contact.filter(
        tenant_id=tenant.id, created_at__gte=since, created_at__lt=now
    ).count()
    moved = await DealStageChange.filter(
        tenant_id=tenant.id,
        changed_at__gte=since,
        changed_at__lt=now,
        from_stage_id__isnull=False,  # the row a new deal starts with is not a move
    ).values_list("deal_id", flat=True)
    return WorkspaceDigest(
        tenant_id=tenant.id,
        workspace=tenant.name,
        new_leads=new_leads,
        waiting=await _waiting_for(tenant.id, user_id, now),
        deals_moved=len(set(moved)),
    )


async def daily_digest(user_id: int, now: dt.datetime) -> list[WorkspaceDigest]:
    """The member's workspaces that have something to report, oldest membership first."""
    memberships = await Membership.filter(user_id=user_id).prefetch_related("tenant").order_by("id")
    digests = [await workspace_digest(m.tenant, user_id, now) for m in memberships]
    return [d for d in digests if not d.empty]
