"""Event handlers: a registry by event type, and the task that runs them idempotently.

Delivery is at-least-once (the relay and the Redis broker may both deliver twice), so each
handler runs under a claim: a HandledEvent row (unique on event id and handler name) inserted in
the same transaction as the handler's own writes. A redelivered event finds the row and skips
the handler; a handler that failed left no row and runs again on the retry.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from taskiq import async_shared_broker
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from crm.models import Event, HandledEvent

logger = logging.getLogger(__name__)

DISPATCH_TASK = "crm.dispatch_event"
ANY_EVENT = "*"
HANDLER_NAME_MAX = 128

EventHandler = Callable[[Event, BaseDBAsyncClient], Awaitable[None]]


@dataclass(frozen=True)
class Handler:
    """A registered handler: its stable name is what marks an event as handled by it."""

    name: str
    event_type: str
    func: EventHandler
    atomic: bool = True


class HandlerRegistry:
    """Handlers by event type (``"*"`` matches every type), in registration order."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._before: list[tuple[Callable[[], Awaitable[object]], frozenset[str] | None]] = []

    def before_dispatch(
        self,
        hook: Callable[[], Awaitable[object]],
        event_types: Iterable[str] | None = None,
    ) -> None:
        """Await ``hook`` before dispatching an event of ``event_types`` (None: every event).

        A part loaded on first need (the operator bot) installs its handlers there, so no
        event it handles skips them; the types keep an unrelated event from loading it.
        """
        self._before.append((hook, None if event_types is None else frozenset(event_types)))

    def remove_before_dispatch(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Forget a ``before_dispatch`` hook; unknown hooks are ignored."""
        self._before = [entry for entry in self._before if entry[0] != hook]

    async def prepare(self, event_type: str | None = None) -> None:
        """Run the ``before_dispatch`` hooks that ``event_type`` needs (None: all of them).

        Each hook returns at once after its first time.
        """
        for hook, types in list(self._before):
            if event_type is None or types is None or event_type in types:
                await hook()

    def add(
        self, event_type: str, func: EventHandler, *, name: str, atomic: bool = True
    ) -> Handler:
        """Register ``func`` for ``event_type`` under a unique, stable ``name``.

        With ``atomic`` (the default) the handler gets the transaction its HandledEvent row
        commits in, so its writes happen exactly once. A handler that must not hold a
        transaction (a slow call to another service) passes ``atomic=False``: it then runs
        at least once and must make its own effect idempotent.
        """
        if not name or len(name) > HANDLER_NAME_MAX:
            raise ValueError(f"a handler name needs 1 to {HANDLER_NAME_MAX} characters: {name!r}")
        if name in self._handlers:
            raise ValueError(f"a handler named {name!r} is already registered")
        handler = Handler(name=name, event_type=event_type, func=func, atomic=atomic)
        self._handlers[name] = handler
        return handler

    def register(
        self, event_type: str, *, name: str, atomic: bool = True
    ) -> Callable[[EventHandler], EventHandler]:
        """Decorator form of ``add``."""

        def decorate(func: EventHandler) -> EventHandler:
            self.add(event_type, func, name=name, atomic=atomic)
            return func

        return decorate

    def remove(self, name: str) -> None:
        """Unregister a handler; unknown names are ignored."""
        self._handlers.pop(name, None)

    def event_types(self) -> set[str]:
        """Every event type a handler is registered for."""
        return {h.event_type for h in self._handlers.values()}

    def matching(self, event_type: str) -> list[Handler]:
        """The handlers an event of ``event_type`` goes to."""
        return [h for h in self._handlers.values() if h.event_type in (event_type, ANY_EVENT)]


registry = HandlerRegistry()


class HandlerFailedError(Exception):
    """One or more handlers of an event failed; raised so the retry middleware retries."""

    def __init__(self, event_id: int, errors: dict[str, BaseException]) -> None:
        self.event_id = event_id
        self.errors = errors
        detail = "; ".join(f"{name}: {exc!r}" for name, exc in errors.items())
        super().__init__(f"event {event_id}: {len(errors)} handler(s) failed: {detail}")


@dataclass
class DispatchReport:
    """What one dispatch of an event did, handler by handler."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class _AlreadyHandled(Exception):
    """Another delivery of the event committed this handler first."""


async def _claim(event_id: int, name: str, conn: BaseDBAsyncClient) -> None:
    try:
        await HandledEvent.create(event_id=event_id, handler=name, using_db=conn)
    except IntegrityError as exc:
        # On PostgreSQL a concurrent claim waits for the other transaction and fails here
        # only if it committed; if it rolled back, this claim goes through.
        raise _AlreadyHandled from exc


async def _run_handler(event: Event, handler: Handler) -> bool:
    """Run one handler under its claim; False when another delivery already ran it."""
    if handler.atomic:
        try:
            async with in_transaction() as conn:
                await _claim(event.id, handler.name, conn)
                await handler.func(event, conn)
        except _AlreadyHandled:
            return False
        return True
    await handler.func(event, connections.get("default"))
    # IntegrityError: a concurrent delivery finished it too; such a handler tolerates that.
    with contextlib.suppress(IntegrityError):
        await HandledEvent.create(event_id=event.id, handler=handler.name)
    return True


async def dispatch(event_id: int, handlers: HandlerRegistry | None = None) -> DispatchReport:
    """Run every handler of the event that has not handled it yet; raise if any failed.

    A failing handler does not stop the others; the raised HandlerFailedError makes the retry
    middleware send the event again, and the retry skips the handlers that succeeded.
    """
    handlers = handlers or registry
    report = DispatchReport()
    event = await Event.get_or_none(id=event_id)
    if event is None:
        # Its tenant was deleted (the cascade took the event with it): nothing to do.
        logger.info("event %s no longer exists; nothing to dispatch", event_id)
        return report
    await handlers.prepare(event.type)
    todo = handlers.matching(event.type)
    if not todo:
        return report
    done = set(
        await HandledEvent.filter(
            event_id=event_id, handler__in=[h.name for h in todo]
        ).values_list("handler", flat=True)
    )
    errors: dict[str, BaseException] = {}
    for handler in todo:
        if handler.name in done:
            report.skipped.append(handler.name)
            continue
        try:
            ran = await _run_handler(event, handler)
        except Exception as exc:
            logger.exception("handler %s failed on event %s", handler.name, event_id)
            errors[handler.name] = exc
            report.failed.append(handler.name)
            continue
        (report.ran if ran else report.skipped).append(handler.name)
    if errors:
        raise HandlerFailedError(event_id, errors)
    return report


@async_shared_broker.task(task_name=DISPATCH_TASK, retry_on_error=True)
async def dispatch_event(event_id: int) -> None:
    """Hand one event to its handlers (the task the outbox relay sends)."""
    await dispatch(event_id)
