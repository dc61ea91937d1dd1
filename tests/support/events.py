"""Event types only tests emit: the backbone's tests need events no feature has."""

from __future__ import annotations

from crm.services.events.event_types import EventType


class Ping(EventType):
    """A test event with no payload."""

    type = "test.ping"
    entity_type = "contact"


class Pong(EventType):
    """What a test handler writes in its transaction, about the event it handled."""

    type = "test.pong"
    entity_type = "event"


class Nudged(EventType):
    """A test event that wakes the relay."""

    type = "test.nudged"
    entity_type = "contact"


class Slow(EventType):
    """A test event whose handler never ends."""

    type = "test.slow"
    entity_type = "contact"
