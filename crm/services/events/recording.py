"""Recording events: every write appends one (audit log) and queues it (outbox), atomically."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model

from crm.models import Event, OutboxEntry
from crm.services.access import Actor
from crm.services.events.event_types import EventType


def to_jsonable(value: Any) -> Any:
    """Turn a model field value into something JSON can store."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def snapshot(instance: Model, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The stored columns of a record as a JSON-safe dict, for before/after in the audit log."""
    data: dict[str, Any] = {}
    for name in instance._meta.db_fields:
        if name in exclude:
            continue
        field_name = instance._meta.fields_db_projection_reverse.get(name, name)
        data[field_name] = to_jsonable(getattr(instance, field_name, None))
    return data


# Outbox entries written by this process: a task worker compares it before and after a task
# to wake its relay at once instead of at the next poll (crm.tasks.relay.RelayNudgeMiddleware).
_outbox_writes = 0


def outbox_writes() -> int:
    """How many outbox entries this process has written so far."""
    return _outbox_writes


async def record_event(
    actor: Actor,
    event_type: type[EventType],
    entity_id: int | None,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    using_db: BaseDBAsyncClient,
) -> Event:
    """Append an event of a catalog type and its outbox entry in the caller's transaction.

    ``before`` and ``after`` must fit the type's declared shape (``InvalidEventPayload``
    otherwise); they are stored as given. ``using_db`` is required: written outside a
    transaction, a cut connection between the two inserts would leave an event that the
    relay never hands on.
    """
    event_type.check(before, after)
    event = await Event.create(
        tenant_id=actor.tenant_id,
        type=event_type.type,
        entity_type=event_type.entity_type,
        entity_id=entity_id,
        actor_type=actor.actor_type.value,
        actor_user_id=actor.user_id,
        actor_api_key_id=actor.api_key_id,
        before=before,
        after=after,
        using_db=using_db,
    )
    await OutboxEntry.create(event_id=event.id, using_db=using_db)
    global _outbox_writes
    _outbox_writes += 1
    return event


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``before`` whose values differ in ``after`` (for compact update events)."""
    return {k: v for k, v in before.items() if after.get(k) != v and k != "updated_at"}


async def save_if_changed(
    actor: Actor,
    record: Model,
    before: dict[str, Any],
    event_type: type[EventType],
    *,
    using_db: BaseDBAsyncClient,
) -> bool:
    """Save ``record`` and append ``event_type`` with before/after, if a column changed."""
    if snapshot(record) == before:
        return False
    await record.save(using_db=using_db)
    await record_event(
        actor,
        event_type,
        record.pk,
        before=before,
        after=snapshot(record),
        using_db=using_db,
    )
    return True
