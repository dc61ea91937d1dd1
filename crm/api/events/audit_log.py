"""The audit log: every write, who made it, before and after (admins only)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from crm.api.dependencies import ActorDep
from crm.api.schemas import BigId, Id, ListOut, PageLimit
from crm.models import Event
from crm.services.events import audit_log as audit

router = APIRouter(tags=["events"])


class EventOut(BaseModel):
    id: int
    type: str
    entity_type: str
    entity_id: int | None
    actor_type: str
    actor_user_id: int | None
    actor_api_key_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    created_at: dt.datetime


@router.get("/events", response_model=ListOut[EventOut])
async def get_events(
    actor: ActorDep,
    type: Annotated[
        str | None, Query(max_length=64, description="e.g. deal.created, or deal.* for all")
    ] = None,
    entity_type: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: BigId | None = None,
    actor_user_id: Id | None = None,
    since: Annotated[
        dt.datetime | None, Query(description="ISO 8601, inclusive; no zone means UTC")
    ] = None,
    until: Annotated[dt.datetime | None, Query(description="ISO 8601, exclusive")] = None,
    cursor: str | None = None,
    limit: PageLimit = 50,
) -> ListOut[EventOut]:
    """Audit events, newest first (admins and owners)."""
    page = await audit.list_events(
        actor,
        event_type=type,
        entity_type=entity_type,
        entity_id=entity_id,
        actor_user_id=actor_user_id,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return ListOut(
        items=[_out(e) for e in page.items],
        next_cursor=page.next_cursor,
    )


def _out(event: Event) -> EventOut:
    return EventOut.model_validate(event, from_attributes=True)
