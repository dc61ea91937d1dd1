"""Sending: the rules checked before a message is queued, and delivery exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field

import pytest

from crm.errors import PermissionDenied, ValidationFailed
from crm.messaging import (
    ChannelKind,
    ConnectionInfo,
    DeliveryStatus,
    InboundStatus,
    MediaRef,
    OutboundKind,
    OutboundMessage,
    SendError,
    SendResult,
)
from crm.models import Contact, Conversation, Message, Role
from crm.services.access import Actor
from crm.services.inbox import delivery_receipts, inbound_messages
from crm.services.inbox.outbound import (
    DeliveryDeps,
    LocalRateLimiter,
    OptedOut,
    Outgoing,
    WindowClosed,
    deliver_message,
    do_send_message,
    fail_stale_sends,
)
from tests.support.inbox import telegram_connection, wa_text, whatsapp_connection
from tests.support.workspace import Workspace


@dataclass
class ScriptedAdapter:
    """A channel adapter (our own port) whose provider refuses as scripted, then accepts."""

    kind: ChannelKind = ChannelKind.WHATSAPP
    refusals: list[SendError] = field(default_factory=list)
    sent: list[OutboundMessage] = field(default_factory=list)

    def parse(self, connection: ConnectionInfo, body: bytes) -> list[object]:
        return []

    async def send(self, connection: ConnectionInfo, message: OutboundMessage) -> SendResult:
        if self.refusals:
            raise self.refusals.pop(0)
        self.sent.append(message)
        return SendResult(external_id=f"wamid.sent-{len(self.sent)}")

    async def download_media(self, connection: ConnectionInfo, media: MediaRef) -> bytes:
        return b""


def deps_for(adapter: ScriptedAdapter, connection: ConnectionInfo) -> DeliveryDeps:
    async def load(connection_id: int) -> ConnectionInfo | None:
        return connection if connection_id == connection.id else None

    async def no_sleep(seconds: float) -> None:
        return None

    return DeliveryDeps(
        adapter_for=lambda kind: adapter,  # type: ignore[arg-type, return-value]
        load_connection=load,
        limiter=LocalRateLimiter(),
        media_path=lambda key: f"/media/{key}",
        sleep=no_sleep,
    )


async def fresh_conversation(workspace: Workspace, at: dt.datetime | None = None) -> int:
    connection = await whatsapp_connection(workspace)
    when = at or dt.datetime.now(dt.UTC)
    received = await inbound_messages.receive_message(connection, wa_text("wamid.lead", at=when))
    return received.conversation_id


async def test_a_reply_is_queued_and_marks_the_conversation_read(workspace: Workspace) -> None:
    conversation_id = await fresh_conversation(workspace)
    message = await do_send_message(workspace.actor, conversation_id, Outgoing(text="Hello!"))
    assert message.status is DeliveryStatus.QUEUED
    assert message.author_user_id == workspace.owner_id
    assert (await Conversation.get(id=conversation_id)).unread_count == 0


async def test_free_form_outside_the_24_hour_window_is_refused(workspace: Workspace) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=30)
    conversation_id = await fresh_conversation(workspace, at=old)
    with pytest.raises(WindowClosed) as refused:
        await do_send_message(workspace.actor, conversation_id, Outgoing(text="Still there?"))
    assert "template" in refused.value.detail
    assert "30.0 hours ago" in refused.value.detail
    assert not await Message.filter(direction="out").exists()
    template = Outgoing(kind=OutboundKind.TEMPLATE, template_name="follow_up")
    queued = await do_send_message(workspace.actor, conversation_id, template)
    assert queued.payload["template"]["name"] == "follow_up"  # type: ignore[index]


async def test_an_opted_out_lead_gets_no_marketing_but_answers_after_writing(
    workspace: Workspace,
) -> None:
    connection = await whatsapp_connection(workspace)
    now = dt.datetime.now(dt.UTC)
    received = await inbound_messages.receive_message(
        connection, wa_text("wamid.s", "STOP", at=now)
    )
    with pytest.raises(OptedOut):
        await do_send_message(workspace.actor, received.conversation_id, Outgoing(text="Sorry"))
    later = now + dt.timedelta(seconds=5)
    await inbound_messages.receive_message(
        connection, wa_text("wamid.q", "one more question", at=later)
    )
    answer = await do_send_message(workspace.actor, received.conversation_id, Outgoing(text="Sure"))
    assert answer.status is DeliveryStatus.QUEUED
    with pytest.raises(OptedOut, match="marketing"):
        await do_send_message(
            workspace.actor, received.conversation_id, Outgoing(text="Sale!", marketing=True)
        )


async def test_a_viewer_cannot_send_and_a_bidi_not_in_a_colleagues_conversation(
    workspace: Workspace,
) -> None:
    conversation_id = await fresh_conversation(workspace)
    viewer_id, _ = await workspace.member(Role.VIEWER)
    viewer = Actor(tenant_id=workspace.tenant_id, user_id=viewer_id, role=Role.VIEWER)
    with pytest.raises(PermissionDenied):
        await do_send_message(viewer, conversation_id, Outgoing(text="hi"))
    await Conversation.filter(id=conversation_id).update(assignee_id=workspace.owner_id)
    bidi_id, _ = await workspace.member(Role.BIDI)
    bidi = Actor(tenant_id=workspace.tenant_id, user_id=bidi_id, role=Role.BIDI)
    with pytest.raises(PermissionDenied):
        await do_send_message(bidi, conversation_id, Outgoing(text="hi"))


async def test_the_idempotency_key_queues_one_message(workspace: Workspace) -> None:
    conversation_id = await fresh_conversation(workspace)
    outgoing = Outgoing(text="once", idempotency_key="client-1")
    first, second = await asyncio.gather(
        do_send_message(workspace.actor, conversation_id, outgoing),
        do_send_message(workspace.actor, conversation_id, outgoing),
    )
    assert first.id == second.id
    assert await Message.filter(direction="out").count() == 1


async def test_empty_text_is_refused_naming_the_field(workspace: Workspace) -> None:
    conversation_id = await fresh_conversation(workspace)
    with pytest.raises(ValidationFailed) as refused:
        await do_send_message(workspace.actor, conversation_id, Outgoing(text="  "))
    assert refused.value.errors[0].field == "text"


async def test_delivery_retries_rate_limits_and_sends_once(workspace: Workspace) -> None:
    connection = await whatsapp_connection(workspace, "999000")
    received = await inbound_messages.receive_message(
        connection, wa_text("wamid.r", at=dt.datetime.now(dt.UTC))
    )
    message = await do_send_message(
        workspace.actor, received.conversation_id, Outgoing(text="Hi Anna")
    )
    adapter = ScriptedAdapter(
        refusals=[
            SendError(130429, "Rate limit hit", retryable=True),
            SendError(500, "Internal error", retryable=True),
        ]
    )
    deps = deps_for(adapter, connection)
    status = await deliver_message(message.id, deps)
    assert status is DeliveryStatus.SENT
    assert [m.text for m in adapter.sent] == ["Hi Anna"]
    assert adapter.sent[0].to == "4915112345678"
    stored = await Message.get(id=message.id)
    assert (stored.external_id, stored.attempts) == ("wamid.sent-1", 3)
    # A redelivered event finds the message sent and sends nothing.
    assert await deliver_message(message.id, deps) is None
    assert len(adapter.sent) == 1


async def test_concurrent_deliveries_of_one_message_send_once(workspace: Workspace) -> None:
    conversation_id = await fresh_conversation(workspace)
    message = await do_send_message(workspace.actor, conversation_id, Outgoing(text="x"))
    conversation = await Conversation.get(id=conversation_id)
    connection = await _info(conversation.connection_id, workspace)
    adapter = ScriptedAdapter()
    results = await asyncio.gather(
        *(deliver_message(message.id, deps_for(adapter, connection)) for _ in range(5))
    )
    assert len(adapter.sent) == 1
    assert results.count(DeliveryStatus.SENT) == 1


async def _info(connection_id: int, workspace: Workspace) -> ConnectionInfo:
    from crm.services.inbox.connections import load_connection
    from tests.support.inbox import CIPHER

    info = await load_connection(CIPHER, connection_id)
    assert info is not None and info.tenant_id == workspace.tenant_id
    return info


async def test_a_refusal_marks_the_message_failed_with_the_reason(workspace: Workspace) -> None:
    conversation_id = await fresh_conversation(workspace)
    message = await do_send_message(workspace.actor, conversation_id, Outgoing(text="x"))
    connection = await _info((await Conversation.get(id=conversation_id)).connection_id, workspace)
    adapter = ScriptedAdapter(refusals=[SendError(131026, "Message undeliverable")])
    assert await deliver_message(message.id, deps_for(adapter, connection)) is (
        DeliveryStatus.FAILED
    )
    stored = await Message.get(id=message.id)
    assert (stored.error_code, stored.error_title) == (131026, "Message undeliverable")
    assert adapter.sent == []


async def test_retries_give_up_after_the_last_attempt(workspace: Workspace) -> None:
    conversation_id = await fresh_conversation(workspace)
    message = await do_send_message(workspace.actor, conversation_id, Outgoing(text="x"))
    connection = await _info((await Conversation.get(id=conversation_id)).connection_id, workspace)
    adapter = ScriptedAdapter(refusals=[SendError(503, "down", retryable=True)] * 10)
    await deliver_message(message.id, deps_for(adapter, connection))
    stored = await Message.get(id=message.id)
    assert stored.status is DeliveryStatus.FAILED and stored.attempts == 6


async def test_a_send_left_claimed_by_a_dead_worker_is_failed_not_resent(
    workspace: Workspace,
) -> None:
    conversation_id = await fresh_conversation(workspace)
    message = await do_send_message(workspace.actor, conversation_id, Outgoing(text="x"))
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    await Message.filter(id=message.id).update(sending_since=long_ago)
    connection = await _info((await Conversation.get(id=conversation_id)).connection_id, workspace)
    adapter = ScriptedAdapter()
    assert await deliver_message(message.id, deps_for(adapter, connection)) is None
    assert await fail_stale_sends() == 1
    stored = await Message.get(id=message.id)
    assert stored.status is DeliveryStatus.FAILED and "unknown" in (stored.error_title or "")
    assert adapter.sent == []


async def test_telegram_replies_go_to_the_chat_id(workspace: Workspace) -> None:
    connection = await telegram_connection(workspace)
    from crm.messaging import InboundMessage

    received = await inbound_messages.receive_message(
        connection,
        InboundMessage(
            external_id="42:1", sender_id="42", sent_at=dt.datetime.now(dt.UTC), text="hey"
        ),
    )
    message = await do_send_message(workspace.actor, received.conversation_id, Outgoing(text="yo"))
    adapter = ScriptedAdapter(kind=ChannelKind.TELEGRAM)
    await deliver_message(message.id, deps_for(adapter, connection))
    assert adapter.sent[0].to == "42"
    assert (await Contact.get(id=received.contact_id)).telegram_id == 42


async def test_the_rate_limiter_spaces_sends_per_connection() -> None:
    clock = [100.0]
    limiter = LocalRateLimiter(clock=lambda: clock[0])
    slots = []
    for _ in range(3):
        before = clock[0]
        task = asyncio.create_task(limiter.acquire("c1", 4))
        await asyncio.sleep(0)
        slots.append(limiter._next_free["c1"] - before)
        task.cancel()
    assert slots == [0.25, 0.5, 0.75]
    await limiter.acquire("c2", 4)  # another connection does not wait behind c1
    assert limiter._next_free["c2"] == 100.25


async def _sent_by_a_worker_that_died(workspace: Workspace) -> tuple[Message, ConnectionInfo]:
    """A message the provider accepted while its worker died before recording the id."""
    conversation_id = await fresh_conversation(workspace)
    message = await do_send_message(workspace.actor, conversation_id, Outgoing(text="x"))
    connection = await _info((await Conversation.get(id=conversation_id)).connection_id, workspace)
    adapter = ScriptedAdapter()
    outbound = None

    async def dying_send(connection: ConnectionInfo, sent: OutboundMessage) -> SendResult:
        nonlocal outbound
        outbound = sent
        raise asyncio.CancelledError  # the worker is killed with the provider's answer in flight

    adapter.send = dying_send  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await deliver_message(message.id, deps_for(adapter, connection))
    assert outbound is not None and outbound.tracker
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    await Message.filter(id=message.id).update(sending_since=long_ago)
    assert await fail_stale_sends() == 1
    stored = await Message.get(id=message.id)
    assert stored.status is DeliveryStatus.FAILED and stored.external_id is None
    return stored, connection


def _receipt(status: DeliveryStatus, tracker: str | None, **extra: object) -> InboundStatus:
    return InboundStatus(
        external_id="wamid.late",
        status=status,
        at=dt.datetime.now(dt.UTC),
        tracker=tracker,
        **extra,  # type: ignore[arg-type]
    )


async def test_a_late_receipt_moves_a_failed_unknown_send_to_its_true_state(
    workspace: Workspace,
) -> None:
    message, connection = await _sent_by_a_worker_that_died(workspace)
    tracker = f"crm-message:{message.id}"
    await delivery_receipts.apply_status(connection, _receipt(DeliveryStatus.DELIVERED, tracker))
    stored = await Message.get(id=message.id)
    assert (stored.status, stored.external_id) == (DeliveryStatus.DELIVERED, "wamid.late")
    assert stored.error_title is None and stored.error_code is None
    # Later receipts find it by the recorded provider id, with or without the tracker.
    await delivery_receipts.apply_status(connection, _receipt(DeliveryStatus.READ, None))
    assert (await Message.get(id=message.id)).status is DeliveryStatus.READ


async def test_a_provider_failure_replaces_the_unknown_one_and_delivered_beats_it(
    workspace: Workspace,
) -> None:
    message, connection = await _sent_by_a_worker_that_died(workspace)
    tracker = f"crm-message:{message.id}"
    failed = _receipt(
        DeliveryStatus.FAILED, tracker, error_code=131026, error_title="Message undeliverable"
    )
    await delivery_receipts.apply_status(connection, failed)
    stored = await Message.get(id=message.id)
    assert (stored.status, stored.error_code) == (DeliveryStatus.FAILED, 131026)
    # A "sent" arriving after the failure is old news; "delivered" proves it arrived.
    await delivery_receipts.apply_status(connection, _receipt(DeliveryStatus.SENT, tracker))
    assert (await Message.get(id=message.id)).status is DeliveryStatus.FAILED
    await delivery_receipts.apply_status(connection, _receipt(DeliveryStatus.DELIVERED, tracker))
    stored = await Message.get(id=message.id)
    assert (stored.status, stored.error_code) == (DeliveryStatus.DELIVERED, None)
    # ...and a failure arriving after that no longer undoes it.
    await delivery_receipts.apply_status(connection, failed)
    assert (await Message.get(id=message.id)).status is DeliveryStatus.DELIVERED


async def test_a_tracker_cannot_touch_a_message_with_a_provider_id_or_elsewhere(
    workspace: Workspace,
) -> None:
    message, connection = await _sent_by_a_worker_that_died(workspace)
    other = await whatsapp_connection(workspace, "555444")
    tracker = f"crm-message:{message.id}"
    # Another connection's receipt naming our message id does nothing to it.
    await delivery_receipts.apply_status(other, _receipt(DeliveryStatus.READ, tracker))
    assert (await Message.get(id=message.id)).status is DeliveryStatus.FAILED
    for bad in ("crm-message:", "crm-message:x", "other:1", "crm-message:" + "9" * 30):
        await delivery_receipts.apply_status(connection, _receipt(DeliveryStatus.READ, bad))
    assert (await Message.get(id=message.id)).status is DeliveryStatus.FAILED
