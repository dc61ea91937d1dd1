"""Event handlers: a registry by event type, and the task that runs them idempotently.

The registry also holds the jobs of periodic tasks that an edge provides (the operator bot's
digest and team inbox rounds, see ``crm.tasks.periodic``): a process runs those it installed.

Delivery is at-least-once (the relay and the Redis broker may both deliver twice), so each
handler runs under a claim: a HandledEvent row (unique on event id and handler name) inserted in
the same transaction as the handler's own writes. A redelivered event finds the row and skips
the handler; a handler that failed left no row and runs again on the retry.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from taskiq import async_shared_broker
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from crm.models import Event, HandledEvent
from crm.services.events.catalog import EVENT_TYPES
from crm.services.events.event_types import EventType

logger = logging.getLogger(__name__)

DISPATCH_TASK = "crm.dispatch_event"
# Subscribing to the catalog's base class means every event type.
ANY_EVENT: type[EventType] = EventType
HANDLER_NAME_MAX = 128

EventHandler = Callable[[Event, BaseDBAsyncClient], Awaitable[None]]
PeriodicJob = Callable[[], Awaitable[object]]


class Order(enum.IntEnum):
    """When a handler runs among those of one event: lower first, then by registration."""

    DELIVER = 0  # hand a queued message to its messenger before anything else
    AI = 10  # classify, draft, remember: notifications then show the intent
    DEFAULT = 30
    NOTIFY = 50  # tell the operators (bot notifications, alerts, team inbox)


@dataclass(frozen=True)
class Handler:
    """A registered handler: its stable name is what marks an event as handled by it."""

    name: str
    event_type: type[EventType]
    func: EventHandler
    atomic: bool = True
    order: int = Order.DEFAULT


def _known(event_type: type[EventType]) -> type[EventType]:
    """``event_type`` if it is a catalog class or ``ANY_EVENT``; TypeError otherwise."""
    if event_type is ANY_EVENT:
        return event_type
    name = getattr(event_type, "type", None)
    if not isinstance(name, str) or EVENT_TYPES.get(name) is not event_type:
        raise TypeError(f"not an event type of the catalog: {event_type!r}")
    return event_type


class HandlerRegistry:
    """Handlers by catalog event type (``ANY_EVENT`` matches every type), in explicit order,
    and the jobs of periodic tasks by task name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._jobs: dict[str, PeriodicJob] = {}
        self._before: list[tuple[Callable[[], Awaitable[object]], frozenset[str] | None]] = []

    def before_dispatch(
        self,
        hook: Callable[[], Awaitable[object]],
        event_types: Iterable[type[EventType]] | None = None,
    ) -> None:
        """Await ``hook`` before dispatching an event of ``event_types`` (None: every event).

        A part loaded on first need (the operator bot) installs its handlers there, so no
        event it handles skips them; the types keep an unrelated event from loading it.
        """
        wanted = None if event_types is None else [_known(t) for t in event_types]
        every = wanted is None or ANY_EVENT in wanted
        names = None if every else frozenset(t.type for t in wanted or ())
        self._before.append((hook, names))

    def remove_before_dispatch(self, hook: Callable[[], Awaitable[object]]) -> None:
        """Forget a ``before_dispatch`` hook; unknown hooks are ignored."""
        self._before = [entry for entry in self._before if entry[0] != hook]

    async def prepare(self, event_type: str | None = None) -> None:
        """Run the ``before_dispatch`` hooks a stored ``event_type`` needs (None: all of them).

        Each hook returns at once after its first time.
        """
        for hook, types in list(self._before):
            if event_type is None or types is None or event_type in types:
                await hook()

    def add(
        self,
        event_type: type[EventType],
        func: EventHandler,
        *,
        name: str,
        atomic: bool = True,
        order: int = Order.DEFAULT,
    ) -> Handler:
        """Register ``func`` for a catalog ``event_type`` under a unique, stable ``name``.

        Anything but a catalog class or ``ANY_EVENT`` raises TypeError. Handlers of one event
        run by ``order`` (see ``Order``), then in registration order.

        With ``atomic`` (the default) the handler gets the transaction its HandledEvent row
        commits in, so its writes happen exactly once. A handler that must not hold a
        transaction (a slow call to another service) passes ``atomic=False``: it then runs
        at least once and must make its own effect idempotent.
        """
        if not name or len(name) > HANDLER_NAME_MAX:
            raise ValueError(f"a handler name needs 1 to {HANDLER_NAME_MAX} characters: {name!r}")
        if name in self._handlers:
            raise ValueError(f"a handler named {name!r} is already registered")
        handler = Handler(
            name=name, event_type=_known(event_type), func=func, atomic=atomic, order=order
        )
        self._handlers[name] = handler
        return handler

    def register(
        self,
        event_type: type[EventType],
        *,
        name: str,
        atomic: bool = True,
        order: int = Order.DEFAULT,
    ) -> Callable[[EventHandler], EventHandler]:
        """Decorator form of ``add``."""

        def decorate(func: EventHandler) -> EventHandler:
            self.add(event_type, func, name=name, atomic=atomic, order=order)
            return func

        return decorate

    def remove(self, name: str) -> None:
        """Unregister a handler; unknown names are ignored."""
        self._handlers.pop(name, None)

    def add_job(self, task_name: str, job: PeriodicJob) -> None:
        """Let the periodic task ``task_name`` run ``job`` in this process (replacing another)."""
        self._jobs[task_name] = job

    def remove_job(self, task_name: str) -> None:
        """Forget the job of a periodic task; unknown names are ignored."""
        self._jobs.pop(task_name, None)

    def job(self, task_name: str) -> PeriodicJob | None:
        """The job installed for the periodic task ``task_name``; None when there is none."""
        return self._jobs.get(task_name)

    def event_types(self) -> set[type[EventType]]:
        """Every event type a handler is registered for."""
        return {h.event_type for h in self._handlers.values()}

    def matching(self, event_type: str | type[EventType]) -> list[Handler]:
        """The handlers an event of ``event_type`` (a class or a stored name) goes to, in order."""
        name = event_type if isinstance(event_type, str) else event_type.type
        found = [
            h
            for h in self._handlers.values()
            if h.event_type is ANY_EVENT or h.event_type.type == name
        ]
        return sorted(found, key=lambda h: h.order)  # stable: registration order within one


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
