"""The event catalog: one class per event type, the only place a type's name is spelled.

Emit with ``record_event(actor, ContactCreated, contact.id, after=...)``; subscribe with
``registry.add(ContactCreated, handler, name=...)``. The stored ``type`` strings are what
``GET /api/v1/events`` shows and integrators script against: never rename one.
"""

from __future__ import annotations

from crm.services.events.catalog.inbox import *  # noqa: F403
from crm.services.events.catalog.records import *  # noqa: F403
from crm.services.events.event_types import EVENT_TYPES, EventType


def event_type(name: str) -> type[EventType]:
    """The catalog class of a stored type name; KeyError for a name nobody declared."""
    return EVENT_TYPES[name]
