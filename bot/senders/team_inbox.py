"""The team inbox in Telegram: event handlers that queue posts, and the worker that sends them.

Installed like ``bot.senders.notifications.Notifier``: ``OperatorBot.install_handlers`` registers
the handlers, and ``run_once`` as the job of the periodic task
``crm.tasks.periodic.TEAM_INBOX_TASK``; ``stop`` ends the sending. The handlers write queue rows
(``crm.services.inbox.team_posts``) and start their group's sender at once; each round of the
task starts one for every other group with waiting posts. A sender holds its group's lease, so
one worker sends a group's posts, in order, within the group's budget (about 20 Bot API calls a
minute, Telegram's limit for a bot in a group), and tells the group once per lag episode when
its backlog is more than one budget window can send.

Posts are rendered when they are sent, in the language of the member who linked the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from tortoise.backends.base.client import BaseDBAsyncClient

from bot.keyboards import notification_keyboard
from bot.senders.notification_content import CHANNEL_NAMES, render_notification
from crm.models import Event, TeamPost, TeamPostKind, TeamPostStatus, TeamTopic
from crm.services.accounts.operators import language_of
from crm.services.events.catalog import (
    ConversationClosed,
    ConversationReopened,
    DealCreated,
    DealStageChanged,
    MessageReceived,
)
from crm.services.inbox import team_inbox, team_posts
from crm.services.inbox.lead_recipients import OpenDeal
from crm.services.inbox.team_inbox import TopicView
from crm.services.inbox.team_posts import GroupBudget
from crm.tasks.handlers import HandlerRegistry, Order
from crm.tasks.periodic import TEAM_INBOX_TASK
from telegram_transport.logs import redact

logger = logging.getLogger(__name__)

MESSAGE_HANDLER = "bot.team_inbox_message"
DEAL_CREATED_HANDLER = "bot.team_inbox_deal_created"
STAGE_HANDLER = "bot.team_inbox_stage"
CLOSED_HANDLER = "bot.team_inbox_closed"
REOPENED_HANDLER = "bot.team_inbox_reopened"
HANDLERS = (MESSAGE_HANDLER, DEAL_CREATED_HANDLER, STAGE_HANDLER, CLOSED_HANDLER, REOPENED_HANDLER)
TOPIC_GONE = ("thread not found", "topic_deleted", "topic_id_invalid")
NOT_MODIFIED = "topic_not_modified"
PRUNE_EVERY = 600.0
# A lead message longer than this is cut in its topic: one post stays one message (and one
# call of the group's budget); the whole text is in the CRM.
MAX_TOPIC_TEXT = 3000


def topic_name(view: TopicView) -> str:
    """``<lead name> · <stage or channel>``, at most 128 characters (the lead name gives way)."""
    label = view.stage or CHANNEL_NAMES.get(view.channel, view.channel)
    suffix = f" · {label}"[: team_inbox.TOPIC_NAME_MAX - 1]
    lead = view.lead_name[: team_inbox.TOPIC_NAME_MAX - len(suffix)] or "?"
    return (lead + suffix)[: team_inbox.TOPIC_NAME_MAX]


def lag_notice(behind: int) -> str:
    """What the group is told when its queue is more than a minute long."""
    return _(
        "⏳ The team inbox is {n} message behind: Telegram lets a bot post about 20 messages "
        "a minute in a group.",
        "⏳ The team inbox is {n} messages behind: Telegram lets a bot post about 20 messages "
        "a minute in a group.",
        behind,
    ).format(n=behind)


class _TopicGone(Exception):
    """Telegram no longer knows the topic (a person deleted it)."""


class TeamInboxPoster:
    """Queues team inbox posts from events and sends them, group by group."""

    def __init__(
        self,
        bot: Bot,
        i18n: I18n,
        *,
        budget: GroupBudget | None = None,
        lease_seconds: float = 30.0,
        stop_grace: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bot = bot
        self.i18n = i18n
        self.budget = budget or GroupBudget()
        self.lease_seconds = lease_seconds
        self.stop_grace = stop_grace
        self.clock = clock
        self.owner = uuid.uuid4().hex
        self._stopping = asyncio.Event()
        self._groups: dict[int, asyncio.Task[None]] = {}
        self._pruned_at = 0.0

    # ---- event handlers ---------------------------------------------------------------------

    def install(self, registry: HandlerRegistry) -> None:
        """Register the handlers and the sending round's job (replacing an earlier poster's)."""
        self.uninstall(registry)
        registry.add_job(TEAM_INBOX_TASK, self.run_once)
        # Not atomic: each commits its own rows and then starts the group's sender; a repeated
        # event queues nothing twice (the rows carry the event id).
        for event_type, handler, name in (
            (MessageReceived, self._on_message, MESSAGE_HANDLER),
            (DealCreated, self._on_deal, DEAL_CREATED_HANDLER),
            (DealStageChanged, self._on_deal, STAGE_HANDLER),
            (ConversationClosed, self._on_status, CLOSED_HANDLER),
            (ConversationReopened, self._on_status, REOPENED_HANDLER),
        ):
            registry.add(event_type, handler, name=name, atomic=False, order=Order.NOTIFY)

    @staticmethod
    def uninstall(registry: HandlerRegistry) -> None:
        """Unregister the handlers and the job."""
        registry.remove_job(TEAM_INBOX_TASK)
        for name in HANDLERS:
            registry.remove(name)

    async def _on_message(self, event: Event, conn: BaseDBAsyncClient) -> None:
        post = await team_posts.enqueue_lead_message(event)
        if post is not None:
            self.send_soon(post.chat_id)

    async def _on_deal(self, event: Event, conn: BaseDBAsyncClient) -> None:
        for post in await team_posts.enqueue_deal_change(event):
            self.send_soon(post.chat_id)

    async def _on_status(self, event: Event, conn: BaseDBAsyncClient) -> None:
        post = await team_posts.enqueue_conversation_status(event)
        if post is not None:
            self.send_soon(post.chat_id)

    # ---- the senders ------------------------------------------------------------------------

    def send_soon(self, chat_id: int) -> None:
        """Start the group's sender now unless one runs here (or the poster is stopped)."""
        if self._stopping.is_set():
            return
        task = self._groups.get(chat_id)
        if task is None or task.done():
            self._groups[chat_id] = asyncio.create_task(
                self._drain(chat_id), name=f"team-inbox:{chat_id}"
            )

    async def start(self) -> None:
        """Send again after ``stop``: the next round starts the groups' senders."""
        self._stopping.clear()

    async def stop(self) -> None:
        """Let the posts being sent finish (for ``stop_grace`` seconds), then stop sending.

        Rounds and events start no sender until ``start``; the posts wait in the database.
        """
        self._stopping.set()
        tasks = list(self._groups.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.stop_grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._groups.clear()

    async def run_once(self) -> None:
        """One round: start a sender for every group with waiting posts that has none here."""
        if self._stopping.is_set():
            return
        for chat_id in await team_posts.groups_with_pending():
            self.send_soon(chat_id)
        now = self.clock()
        if now - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = now
            await team_posts.prune_posts()

    async def _drain(self, chat_id: int) -> None:
        """Send a group's posts in order while this worker holds the group's lease."""
        try:
            if not await self._renew(chat_id, 0.0):
                return
            try:
                await team_posts.fail_abandoned(chat_id)
                while not self._stopping.is_set():
                    post = await team_posts.next_post(chat_id)
                    if post is None:
                        await team_posts.end_lag(chat_id)
                        return
                    if not await self._renew(chat_id, 0.0):
                        return
                    behind = await team_posts.backlog(chat_id)
                    if behind > self.budget.posts and await team_posts.start_lag(chat_id):
                        await self._tell_lag(chat_id, behind)
                    calls = await self._calls_needed(post)
                    if calls and not await self._wait_budget(chat_id, calls):
                        return
                    if not await team_posts.claim_post(post.id):
                        continue
                    await self._send(post)
            finally:
                await team_posts.release_lease(chat_id, self.owner)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("team inbox: sending to group %s failed; trying again later", chat_id)

    async def _renew(self, chat_id: int, extra: float) -> bool:
        now = dt.datetime.now(dt.UTC)
        return await team_posts.take_lease(chat_id, self.owner, now, self.lease_seconds + extra)

    async def _wait_budget(self, chat_id: int, calls: int) -> bool:
        """Wait until ``calls`` more calls fit the group's budget; False when stopping."""
        while True:
            times = await team_posts.call_times(chat_id)
            wait = team_posts.budget_wait(times, self.budget, calls, self.clock())
            if wait <= 0:
                return True
            if not await self._renew(chat_id, wait):
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)
            if self._stopping.is_set():
                return False

    async def _call(self, chat_id: int) -> None:
        """Count one Bot API call into the group."""
        await team_posts.record_call(chat_id, self.clock())

    async def _tell_lag(self, chat_id: int, behind: int) -> None:
        inbox = await team_inbox.inbox_of_chat(chat_id)
        if inbox is None:
            return
        if not await self._wait_budget(chat_id, 1):
            await team_posts.end_lag(chat_id)  # stopping: the next worker tells the group
            return
        with self.i18n.context(), self.i18n.use_locale(language_of(inbox.language)):
            text = lag_notice(behind)
        await self._call(chat_id)
        try:
            await self.bot.send_message(chat_id=chat_id, text=text)
        except TelegramAPIError as exc:
            logger.info("team inbox: lag notice to %s not sent: %s", chat_id, redact(str(exc)))

    async def _calls_needed(self, post: TeamPost) -> int:
        """How many Bot API calls the post takes now (0: nothing left to do)."""
        if post.kind is TeamPostKind.REPLY:
            return 1
        if post.conversation_id is None:
            return 0
        topic = await team_inbox.topic_for(post.conversation_id, post.chat_id)
        view = await team_inbox.topic_view(post.conversation_id)
        if view is None:
            return 0
        if post.kind is TeamPostKind.MESSAGE:
            if topic is None:
                return 2
            return 2 if topic.closed and not view.closed else 1
        if topic is None:
            return 0
        if post.kind is TeamPostKind.NAME:
            return 0 if topic.name == topic_name(view) else 1
        return 0 if topic.closed == view.closed else 1

    async def _send(self, post: TeamPost) -> None:
        """Send one claimed post and record how it went."""
        final_started = False

        def final() -> None:
            nonlocal final_started
            final_started = True

        try:
            status, message_id = await self._execute(post, final)
        except asyncio.CancelledError:
            if not final_started:
                await asyncio.shield(team_posts.release_post(post.id))
            raise
        except TelegramRetryAfter as exc:
            await team_posts.release_post(post.id)
            await self._pause(float(exc.retry_after))
            return
        except (TelegramNetworkError, TelegramServerError) as exc:
            reason = redact(str(exc))
            if await team_posts.release_post(post.id, reason):
                await self._pause(min(2.0 ** (post.attempts + 1), 30.0))
            logger.info("team inbox: post %s not sent yet: %s", post.id, reason)
            return
        except _TopicGone:
            await team_posts.release_post(post.id)
            return
        except TelegramAPIError as exc:
            reason = redact(str(exc))
            logger.info("team inbox: post %s refused: %s", post.id, reason)
            await team_posts.finish_post(post.id, TeamPostStatus.FAILED, error=reason)
            return
        await team_posts.finish_post(post.id, status, telegram_message_id=message_id)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _execute(
        self, post: TeamPost, final: Callable[[], None]
    ) -> tuple[TeamPostStatus, int | None]:
        inbox = await team_inbox.inbox_of_chat(post.chat_id)
        if inbox is None:
            return TeamPostStatus.CANCELLED, None
        with self.i18n.context(), self.i18n.use_locale(language_of(inbox.language)):
            if post.kind is TeamPostKind.REPLY:
                return await self._reply(post, final)
            if post.conversation_id is None:
                return TeamPostStatus.SKIPPED, None
            view = await team_inbox.topic_view(post.conversation_id)
            if view is None:
                return TeamPostStatus.SKIPPED, None
            topic = await team_inbox.topic_for(post.conversation_id, post.chat_id)
            if post.kind is TeamPostKind.MESSAGE:
                return await self._lead_message(post, view, topic, final)
            if topic is None:
                return TeamPostStatus.SKIPPED, None
            if post.kind is TeamPostKind.NAME:
                return await self._rename(topic, view, final)
            return await self._sync_state(topic, view.closed, final)

    async def _lead_message(
        self,
        post: TeamPost,
        view: TopicView,
        topic: TeamTopic | None,
        final: Callable[[], None],
    ) -> tuple[TeamPostStatus, int | None]:
        message = await team_posts.lead_message_of(post)
        if message is None:
            return TeamPostStatus.SKIPPED, None
        chat_id = post.chat_id
        if topic is None:
            name = topic_name(view)
            await self._call(chat_id)
            created = await self.bot.create_forum_topic(chat_id=chat_id, name=name)
            topic = await team_inbox.record_topic(
                view.conversation, chat_id, created.message_thread_id, name
            )
        elif topic.closed and not view.closed:
            await self._sync_state(topic, False, lambda: None)
        deal = OpenDeal(view.deal_title, view.stage or "") if view.deal_title else None
        text = render_notification(
            lead_name=view.lead_name,
            channel=view.channel,
            deal=deal,
            kind=message.kind.value,
            text=message.text
            if len(message.text) <= MAX_TOPIC_TEXT
            else message.text[:MAX_TOPIC_TEXT] + "…",
        )
        await self._call(chat_id)
        final()
        try:
            sent = await self.bot.send_message(
                chat_id=chat_id,
                message_thread_id=topic.message_thread_id,
                text=text,
                parse_mode=ParseMode.HTML,
                reply_markup=notification_keyboard(view.conversation.id, closed=view.closed),
            )
        except TelegramBadRequest as exc:
            await self._check_topic_gone(topic, exc)
            raise
        return TeamPostStatus.SENT, sent.message_id

    async def _rename(
        self, topic: TeamTopic, view: TopicView, final: Callable[[], None]
    ) -> tuple[TeamPostStatus, int | None]:
        name = topic_name(view)
        if name == topic.name:
            return TeamPostStatus.SKIPPED, None
        await self._call(topic.chat_id)
        final()
        try:
            await self.bot.edit_forum_topic(
                chat_id=topic.chat_id, message_thread_id=topic.message_thread_id, name=name
            )
        except TelegramBadRequest as exc:
            if NOT_MODIFIED not in str(exc).lower():
                await self._check_topic_gone(topic, exc, requeue=False)
                raise
        await team_inbox.set_topic_name(topic, name)
        return TeamPostStatus.SENT, None

    async def _sync_state(
        self, topic: TeamTopic, closed: bool, final: Callable[[], None]
    ) -> tuple[TeamPostStatus, int | None]:
        if topic.closed == closed:
            return TeamPostStatus.SKIPPED, None
        await self._call(topic.chat_id)
        final()
        try:
            if closed:
                await self.bot.close_forum_topic(
                    chat_id=topic.chat_id, message_thread_id=topic.message_thread_id
                )
            else:
                await self.bot.reopen_forum_topic(
                    chat_id=topic.chat_id, message_thread_id=topic.message_thread_id
                )
        except TelegramBadRequest as exc:
            if NOT_MODIFIED not in str(exc).lower():
                await self._check_topic_gone(topic, exc, requeue=False)
                raise
        await team_inbox.set_topic_closed(topic, closed)
        return TeamPostStatus.SENT, None

    async def _reply(
        self, post: TeamPost, final: Callable[[], None]
    ) -> tuple[TeamPostStatus, int | None]:
        payload: dict[str, Any] = dict(post.payload)
        text = str(payload.get("text") or "")
        if not text:
            return TeamPostStatus.SKIPPED, None
        reply_to = payload.get("reply_to_message_id")
        await self._call(post.chat_id)
        final()
        sent = await self.bot.send_message(
            chat_id=post.chat_id,
            message_thread_id=payload.get("thread_id"),
            text=text,
            reply_to_message_id=int(reply_to) if reply_to is not None else None,
            allow_sending_without_reply=True,
        )
        return TeamPostStatus.SENT, sent.message_id

    @staticmethod
    async def _check_topic_gone(
        topic: TeamTopic, exc: TelegramBadRequest, *, requeue: bool = True
    ) -> None:
        """A topic deleted by a person is forgotten; a lead message then goes to a new one."""
        if any(marker in str(exc).lower() for marker in TOPIC_GONE):
            await team_inbox.forget_topic(topic)
            if requeue:
                raise _TopicGone() from exc
