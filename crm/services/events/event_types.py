"""The base of the event catalog (crm.services.events.catalog) and the payloads types share.

Each catalog class names its stored type (``contact.created``, the string the API shows) and
its entity, and declares the shape of the event's ``after`` payload (its own fields) and of
its ``before`` (``before_shape``). ``record_event`` takes a class and validates both at emit
time, so a typo fails on import and a wrong key fails at once; handlers subscribe by class.

A payload that is a whole record's snapshot (``crm.services.events.recording.snapshot``) is
declared as
``SNAPSHOT``: an explicitly untyped ``dict[str, object]``, since its keys follow the columns.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

SNAPSHOT: Literal["snapshot"] = "snapshot"
Shape = type[BaseModel] | Literal["snapshot"] | None

_snapshot = TypeAdapter(dict[str, object])


class Payload(BaseModel):
    """A payload with known keys: a missing, mistyped or unknown key fails validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EventType(Payload):
    """One event type; its fields are the keys of the event's ``after`` payload."""

    type: ClassVar[str]
    entity_type: ClassVar[str]
    # The after payload: the class's own fields, or a record's snapshot.
    after_snapshot: ClassVar[bool] = False
    # The before payload: None (the event has none), SNAPSHOT or a Payload class.
    before_shape: ClassVar[Shape] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("type")
        if name is None:
            return  # an abstract base of several types
        if not isinstance(name, str) or "." not in name:
            raise TypeError(f"{cls.__name__}.type must be a dotted name: {name!r}")
        if name in EVENT_TYPES:
            raise TypeError(f"event type {name!r} is declared twice: {cls.__name__}")
        EVENT_TYPES[name] = cls

    @classmethod
    def check(cls, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        """Raise ``InvalidEventPayload`` unless ``before`` and ``after`` fit this type."""
        try:
            if cls.after_snapshot:
                _snapshot.validate_python(after, strict=True)
            else:
                cls.model_validate(after or {})
            _check_shape(cls.before_shape, before)
        except (ValueError, TypeError) as exc:
            raise InvalidEventPayload(f"{cls.type}: {exc}") from exc


class InvalidEventPayload(ValueError):
    """An event's before or after does not fit its declared shape."""


def _check_shape(shape: Shape, value: dict[str, Any] | None) -> None:
    if shape is None:
        if value is not None:
            raise ValueError("this event records no 'before'")
    elif shape == SNAPSHOT:
        _snapshot.validate_python(value, strict=True)
    else:
        assert not isinstance(shape, str)
        shape.model_validate(value)


# Every declared type by its stored name, filled as crm.services.events.catalog is imported.
EVENT_TYPES: dict[str, type[EventType]] = {}


class SnapshotCreated(EventType):
    """A record was created: ``after`` is its snapshot."""

    after_snapshot = True


class SnapshotUpdated(EventType):
    """A record changed: ``before`` and ``after`` are its snapshots (or their changed part)."""

    after_snapshot = True
    before_shape = SNAPSHOT


class SnapshotDeleted(EventType):
    """A record was deleted: ``before`` is its last snapshot."""

    before_shape = SNAPSHOT


# Shared payloads


class Tags(Payload):
    """A contact's tag names."""

    tags: list[str]


class StageIds(Payload):
    """A pipeline's stages in order."""

    stage_ids: list[int]


class MemberRole(Payload):
    """A member and their role."""

    user_id: int
    role: str


class DocSummary(Payload):
    """A knowledge document, its text cut short."""

    title: str
    text: str
    chars: int


class AiControlBefore(Payload):
    """The AI's standing in a conversation before a change."""

    mode: str
    handed_off: bool


class MessageTextBefore(Payload):
    """A message's text before an edit or a delete."""

    text: str
    deleted: bool


class TeamInboxChat(Payload):
    """The group a team inbox posted to."""

    chat_id: int
    title: str | None
