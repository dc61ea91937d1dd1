"""The typed event catalog: every type declared once, with a schema, and checked at emit time."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest
from tortoise.backends.base.client import BaseDBAsyncClient

from crm.models import Event
from crm.services.access import Actor
from crm.services.events import catalog as event_catalog
from crm.services.events.catalog import (
    ContactCreated,
    ContactTagsAdded,
    MessageReceived,
    event_type,
)
from crm.services.events.event_types import EVENT_TYPES, EventType, InvalidEventPayload, Payload
from crm.services.events.recording import record_event
from crm.tasks.handlers import ANY_EVENT, HandlerRegistry, Order

ROOT = Path(__file__).resolve().parents[4]
CATALOG = ROOT / "crm" / "services" / "events" / "catalog"
# The packages of the product: outside the catalog none spells an event type.
PACKAGES = ("crm", "bot", "channels", "agents", "miniapp", "sandbox", "telegram_transport")


def catalog_types() -> list[type[EventType]]:
    """The product's own types (tests declare a few more in tests/support/events.py)."""
    return [
        cls for cls in EVENT_TYPES.values() if cls.__module__.startswith(event_catalog.__name__)
    ]


def test_every_type_is_a_class_with_a_schema() -> None:
    types = catalog_types()
    assert len(types) >= 70
    for cls in types:
        assert EVENT_TYPES[cls.type] is cls
        assert event_type(cls.type) is cls
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+", cls.type), cls.type
        assert re.fullmatch(r"[a-z_]+", cls.entity_type), cls
        assert cls.__doc__, f"{cls.__name__} says what happened"
        assert cls.model_config.get("extra") == "forbid", cls
        schema = cls.model_json_schema()
        assert schema["type"] == "object"
        before = cls.before_shape
        assert before is None or before == "snapshot" or issubclass(before, Payload), cls


def test_a_type_is_declared_once() -> None:
    with pytest.raises(TypeError, match="declared twice"):

        class Again(EventType):
            """A second contact.created."""

            type = "contact.created"
            entity_type = "contact"


def test_nothing_outside_the_catalog_spells_an_event_type() -> None:
    names = {cls.type for cls in catalog_types()}
    spelled = re.compile(r"""["']([a-z_]+\.[a-z_]+)["']""")
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if CATALOG in path.parents:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                found += [
                    f"{path.relative_to(ROOT)}:{number}: {name}"
                    for name in spelled.findall(line)
                    if name in names
                ]
    assert found == []


async def test_a_wrong_payload_fails_at_emit_time() -> None:
    actor = Actor.system(1)
    # No database is reached: the check comes before the insert.
    no_db = cast(BaseDBAsyncClient, None)
    good = {
        "conversation_id": 1,
        "contact_id": 2,
        "connection_id": 3,
        "channel": "whatsapp",
        "kind": "text",
        "text": "hi",
        "reopened": False,
        "assignee_id": None,
    }
    MessageReceived.check(None, good)
    wrong: list[tuple[type[EventType], dict[str, Any] | None, dict[str, Any] | None]] = [
        (MessageReceived, None, {**good, "txet": "hi"}),  # an unknown key
        (MessageReceived, None, {k: v for k, v in good.items() if k != "text"}),  # a missing one
        (MessageReceived, None, {**good, "conversation_id": "one"}),  # a wrong type
        (MessageReceived, {"text": "hi"}, good),  # a before the type has none of
        (ContactTagsAdded, {"tag": ["a"]}, {"tags": ["a", "b"]}),
        (ContactCreated, None, None),  # a snapshot is required
    ]
    for cls, before, after in wrong:
        with pytest.raises(InvalidEventPayload, match=re.escape(cls.type)):
            await record_event(actor, cls, 7, before=before, after=after, using_db=no_db)


def test_a_handler_of_an_unknown_type_is_refused() -> None:
    registry = HandlerRegistry()

    async def noop(event: Event, conn: BaseDBAsyncClient) -> None:
        return None

    class NotAnEvent(Payload):
        """A payload, but no event type."""

    for unknown in ("message.received", "message.recieved", NotAnEvent, EventType.__base__):
        with pytest.raises(TypeError, match="not an event type"):
            registry.add(cast(Any, unknown), noop, name="h")
    with pytest.raises(TypeError, match="not an event type"):
        registry.before_dispatch(noop_hook, [cast(Any, "message.received")])
    registry.add(MessageReceived, noop, name="h")
    registry.add(ANY_EVENT, noop, name="any")
    assert registry.event_types() == {MessageReceived, ANY_EVENT}


async def noop_hook() -> None:
    return None


def test_handlers_run_by_order_then_by_registration() -> None:
    registry = HandlerRegistry()

    async def noop(event: Event, conn: BaseDBAsyncClient) -> None:
        return None

    registry.add(MessageReceived, noop, name="notify", order=Order.NOTIFY)
    registry.add(ANY_EVENT, noop, name="audit")
    registry.add(MessageReceived, noop, name="ai", order=Order.AI)
    registry.add(MessageReceived, noop, name="ai-2", order=Order.AI)
    registry.add(MessageReceived, noop, name="deliver", order=Order.DELIVER)
    order = [h.name for h in registry.matching(MessageReceived)]
    assert order == ["deliver", "ai", "ai-2", "audit", "notify"]
    assert [h.name for h in registry.matching(MessageReceived.type)] == order
