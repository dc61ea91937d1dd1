"""``/inbox``: conversations with unread messages (else open ones), opened from a paged list.

An opened conversation shows its last messages with the notification buttons, and is recorded
like a notification, so replying to it in Telegram answers the lead (``inbox.reply_to_lead``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiogram import Bot, F, Router
from aiogram.enums import ChatType, ParseMode
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import InboxOpen, InboxPage
from bot.handling import CURRENT_ACTOR, PRIVATE_CHATS, feature_router
from bot.keyboards import notification_keyboard, pager_row
from bot.long_messages import edit_in_place
from bot.senders.notification_content import CHANNEL_NAMES, media_label
from bot.texts import no_workspace
from crm.errors import NotFound, ServiceError
from crm.messaging import DeliveryStatus, MessageKind
from crm.models import Conversation, ConversationStatus, Direction, User
from crm.models import Message as LeadMessage
from crm.services.access import Actor
from crm.services.inbox import conversations, lead_recipients, operator_notifications
from crm.services.inbox.conversations import ConversationView, InboxSlice

PAGE_SIZE = 8
LAST_MESSAGES = 10
BUTTON_NAME_CHARS = 32
# Telegram takes 4096 characters; each message is cut shorter until the view fits.
MAX_VIEW_CHARS = 4000
MESSAGE_CHARS = (400, 200, 80, 30)
ARROWS = {Direction.IN: "⬅️", Direction.OUT: "➡️", Direction.NOTE: "📝"}


def local_time(value: dt.datetime, user: User | None) -> str:
    """``dd.mm HH:MM`` in the operator's time zone (UTC when they set none)."""
    zone: dt.tzinfo = dt.UTC
    if user is not None and user.timezone:
        try:
            zone = ZoneInfo(user.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = dt.UTC
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(zone).strftime("%d.%m %H:%M")


def state_texts(
    conversation: Conversation, user: User | None, assignee: str | None, *, private: bool
) -> tuple[str | None, str]:
    """The short state row of a notification (None for an open, unassigned conversation) and
    the sentence a press on it shows: closed or snoozed until when, and who has it."""
    short: list[str] = []
    long: list[str] = []
    if conversation.status is ConversationStatus.CLOSED:
        short.append(_("✅ Closed"))
        long.append(_("Closed."))
    elif conversation.status is ConversationStatus.SNOOZED and conversation.snoozed_until:
        until = local_time(conversation.snoozed_until, user)
        short.append(_("⏰ until {time}").format(time=until))
        long.append(_("Snoozed until {time}.").format(time=until))
    if conversation.assignee_id is not None:
        if private and user is not None and conversation.assignee_id == user.id:
            short.append(_("🙋 you"))
            long.append(_("Assigned to you."))
        else:
            name = assignee or "?"
            short.append(_("🙋 {name}").format(name=name))
            long.append(_("Assigned to {name}.").format(name=name))
    if not short:
        return None, _("Open, assigned to nobody.")
    return " · ".join(short), " ".join(long)


async def conversation_keyboard(
    conversation: Conversation, actor: Actor, user: User | None, *, private: bool
) -> tuple[InlineKeyboardMarkup, str]:
    """The buttons of a notification for ``actor`` now, and the sentence of its state.

    In a group (a team inbox topic, several readers) every button is shown.
    """
    assignee = await lead_recipients.name_of(conversation.assignee_id)
    state, sentence = state_texts(conversation, user, assignee, private=private)
    markup = notification_keyboard(
        conversation.id,
        closed=conversation.status is ConversationStatus.CLOSED,
        role=actor.role if private else None,
        mine=private and conversation.assignee_id == actor.user_id,
        taken=private and conversation.assignee_id not in (None, actor.user_id),
        state=state,
    )
    return markup, sentence


def channel_name(channel: str) -> str:
    """WhatsApp, Telegram, or the channel's own name."""
    return CHANNEL_NAMES.get(channel, channel)


def _pages(total: int) -> int:
    return max(1, math.ceil(total / PAGE_SIZE))


def render_inbox(view: InboxSlice, page: int) -> tuple[str, InlineKeyboardMarkup | None]:
    """The text and buttons of one page of the inbox list."""
    if view.total == 0:
        return _("No open conversations: you are all caught up."), None
    n = view.total
    if view.unread:
        text = _(
            "{n} conversation with unread messages, newest first:",
            "{n} conversations with unread messages, newest first:",
            n,
        ).format(n=n)
    else:
        text = _(
            "Nothing unread. {n} open conversation, newest first:",
            "Nothing unread. {n} open conversations, newest first:",
            n,
        ).format(n=n)
    rows = []
    for entry in view.entries:
        conversation = entry.conversation
        name = entry.lead_name
        if len(name) > BUTTON_NAME_CHARS:
            name = name[: BUTTON_NAME_CHARS - 1] + "…"
        label = f"{name} · {channel_name(conversation.channel.value)} · {conversation.unread_count}"
        rows.append(
            [InlineKeyboardButton(text=label, callback_data=InboxOpen(id=conversation.id).pack())]
        )
    pages = _pages(view.total)
    if pages > 1:
        rows.append(pager_row(page, pages, lambda p: InboxPage(page=p).pack()))
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


async def _inbox_page(actor: Actor, page: int) -> tuple[InboxSlice, int]:
    """The slice of ``page`` (clamped to the last page when the list got shorter)."""
    page = max(1, page)
    view = await conversations.inbox_slice(actor, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    last = _pages(view.total)
    if page > last:
        page = last
        view = await conversations.inbox_slice(
            actor, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
    return view, page


async def show_inbox(message: Message, actor: Actor) -> None:
    """List the conversations that need attention."""
    view, page = await _inbox_page(actor, 1)
    text, markup = render_inbox(view, page)
    await message.answer(text, reply_markup=markup)


async def turn_page(query: CallbackQuery, callback_data: InboxPage, actor: Actor) -> None:
    """Show another page of the list in the same message."""
    view, page = await _inbox_page(actor, callback_data.page)
    text, markup = render_inbox(view, page)
    if isinstance(query.message, Message):
        await edit_in_place(query.message, text, reply_markup=markup)


def _message_line(message: LeadMessage, user: User | None, limit: int) -> str:
    body = message.text or ""
    if len(body) > limit:
        body = body[:limit] + "…"
    body = html.escape(body)
    if message.kind is not MessageKind.TEXT:
        body = f"{html.escape(media_label(message.kind.value))} {body}".strip()
    if not body:
        body = _("(empty message)")
    if message.deleted:
        body += " " + _("(deleted)")
    if message.direction is Direction.OUT and message.status is DeliveryStatus.FAILED:
        body += " ⚠️ " + _("(not delivered)")
    arrow = ARROWS.get(message.direction, "•")
    return f"{arrow} <i>{local_time(message.created_at, user)}</i> {body}"


def render_conversation(view: ConversationView, user: User | None) -> str:
    """The HTML of an opened conversation; everything a lead or member wrote is escaped."""
    conversation = view.conversation
    head = [
        _("💬 <b>{name}</b> via {channel}").format(
            name=html.escape(view.lead_name), channel=channel_name(conversation.channel.value)
        ),
    ]
    if conversation.status is ConversationStatus.CLOSED:
        head.append(_("This conversation is closed."))
    foot = [
        "",
        _("⬅️ from the lead, ➡️ to the lead, 📝 team note."),
        _("Reply to this message to answer the lead."),
    ]
    if not view.messages:
        return "\n".join([*head, "", _("No messages yet."), *foot])
    text = ""
    for limit in MESSAGE_CHARS:
        lines = [_message_line(m, user, limit) for m in view.messages]
        text = "\n".join([*head, "", *lines, *foot])
        if len(text) <= MAX_VIEW_CHARS:
            break
    return text


async def open_conversation(
    query: CallbackQuery,
    callback_data: InboxOpen,
    actor: Actor,
    user: User | None,
    bot: Bot,
    callback_answer: CallbackAnswer,
) -> None:
    """Show the last messages of a conversation with the notification buttons."""
    if user is None or query.message is None:
        callback_answer.text, callback_answer.show_alert = no_workspace(), True
        return
    try:
        view = await conversations.access_conversation_view(
            actor, callback_data.id, last=LAST_MESSAGES
        )
    except NotFound:
        callback_answer.text = _("This conversation is not in your current workspace.")
        callback_answer.show_alert = True
        return
    conversation = view.conversation
    private = query.message.chat.type == ChatType.PRIVATE
    sent = await bot.send_message(
        chat_id=query.message.chat.id,
        text=render_conversation(view, user),
        parse_mode=ParseMode.HTML,
        reply_markup=(await conversation_keyboard(conversation, actor, user, private=private))[0],
    )
    # A Telegram reply to this message answers the lead, as one to a notification does.
    await operator_notifications.record_notification(
        user=user,
        bot_id=bot.id,
        chat_id=sent.chat.id,
        telegram_message_id=sent.message_id,
        conversation=conversation,
    )
    if conversation.unread_count > 0:
        # Viewers, and members on a colleague's conversation, read without marking it read.
        with contextlib.suppress(ServiceError):
            await conversations.do_mark_read(actor, conversation.id)


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("conversations", chats=PRIVATE_CHATS)
    router.message.register(show_inbox, Command("inbox"), flags=CURRENT_ACTOR)
    router.callback_query.register(turn_page, InboxPage.filter(), flags=CURRENT_ACTOR)
    router.callback_query.register(
        open_conversation, InboxOpen.filter(F.id > 0), flags=CURRENT_ACTOR
    )
    return router
