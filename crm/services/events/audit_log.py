"""Reading the audit log: who did what to which record, with before and after.

Only admins and owners read it (with an API key that has at least the read scope): the log
holds the before and after of every record, member and API key change of the tenant, including
records a bidi may not change, so it is treated like the workspace settings.
"""

from __future__ import annotations

import datetime as dt

from crm.errors import PermissionDenied, ValidationFailed
from crm.infrastructure.pagination import Page, check_limit, paginate_by_id
from crm.models import Event, Role
from crm.services.access import Actor


def _as_utc(value: dt.datetime) -> dt.datetime:
    # A datetime without a zone is taken as UTC. Others are converted, because SQLite compares
    # the stored UTC text and would misorder a time written with another offset.
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


async def list_events(
    actor: Actor,
    *,
    event_type: str | None = None,
    entity_type: str | None = None,
    entity_id: int | None = None,
    actor_user_id: int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Event]:
    """Events of the tenant, newest first; ``type`` ending in ``.*`` matches a prefix.

    ``since`` is inclusive and ``until`` exclusive.
    """
    actor.require_read()
    if not actor.has_role(Role.ADMIN):
        raise PermissionDenied("the audit log is for admins and owners")
    check_limit(limit)
    query = Event.filter(tenant_id=actor.tenant_id)
    if event_type:
        if event_type.endswith(".*"):
            query = query.filter(type__startswith=event_type[:-1])
        else:
            query = query.filter(type=event_type)
    if entity_type:
        query = query.filter(entity_type=entity_type)
    if entity_id is not None:
        query = query.filter(entity_id=entity_id)
    if actor_user_id is not None:
        query = query.filter(actor_user_id=actor_user_id)
    if since is not None and until is not None and _as_utc(since) >= _as_utc(until):
        raise ValidationFailed("until", "must be later than since")
    if since is not None:
        query = query.filter(created_at__gte=_as_utc(since))
    if until is not None:
        query = query.filter(created_at__lt=_as_utc(until))
    # Ids grow with time, so the id order is the time order and a stable keyset.
    return await paginate_by_id(query, cursor, limit, descending=True)
