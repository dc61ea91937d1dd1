"""The team inbox: ``/teaminbox`` links a forum group, and members answer leads in its topics.

``/teaminbox`` in a forum supergroup where the bot is an administrator that may manage topics
makes it the team inbox of the sender's current workspace (owners and admins); ``/teaminbox
off`` unlinks it. In a private chat the command tells which group is linked.

A message a member writes in a lead's topic goes to the lead. Telegram marks every message in
a topic as a reply to the topic's "created" service message, so these messages must never
reach ``bot/routers/inbox/lead_notifications.py`` (which reads replies as answers to
notifications): this router takes every message of a group chat that no dialogue (a deal's
title, a draft's edit, started by a button in the group) answers; every other router takes
messages of private chats only (``bot.handling.feature_router``).

Answers of the bot in a linked group (refusals) go through the group's queue
(``bot/senders/team_inbox.py``) like every other post; only the answers to ``/teaminbox``
itself are sent directly.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.enums import ChatMemberStatus, ChatType
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from bot.callbacks import ConvAct, ConvAction
from bot.handling import CURRENT_ACTOR, GROUP_CHATS, PRIVATE_CHATS, feature_router
from bot.texts import refusal
from crm.errors import NotFound, PermissionDenied
from crm.models import User
from crm.services.access import Actor
from crm.services.accounts import operators
from crm.services.inbox import team_inbox, team_posts
from crm.services.inbox.team_inbox import LinkedElsewhere, TopicOutcome


def _only_admins() -> str:
    return _("Only owners and admins of a workspace can link or unlink its team inbox.")


def _not_operator() -> str:
    return _(
        "Only members of a workspace can link a team inbox. "
        "Write /start to me in a private chat first."
    )


async def teaminbox_in_group(
    message: Message, command: CommandObject, user: User | None, actor: Actor | None, bot: Bot
) -> None:
    """``/teaminbox`` or ``/teaminbox off`` in a group: link or unlink it."""
    off = (command.args or "").strip().lower() == "off"
    if user is None or actor is None:
        await message.answer(_not_operator())
        return
    if off:
        await _unlink_group(message, user)
        return
    try:
        actor.require_admin()
    except PermissionDenied:
        await message.answer(_only_admins())
        return
    problem = await _group_problem(bot, message.chat.id)
    if problem is not None:
        await message.answer(problem)
        return
    try:
        linked = await team_inbox.do_link_group(
            actor,
            message.chat.id,
            message.chat.title or "",
            operators.language_of(user.language),
        )
    except LinkedElsewhere:
        await message.answer(
            _(
                "This group is already the team inbox of another workspace. "
                "Unlink it there first with /teaminbox off."
            )
        )
        return
    except PermissionDenied:
        await message.answer(_only_admins())
        return
    text = _(
        "✅ This group is now the team inbox of “{workspace}”. Each lead gets a topic here; "
        "write in a topic to answer the lead."
    ).format(workspace=linked.workspace)
    if linked.previous_chat_id is not None:
        text += "\n" + _("It moved here from “{group}”.").format(group=linked.previous_title or "")
    await message.answer(text)


async def _group_problem(bot: Bot, chat_id: int) -> str | None:
    """Why the group cannot be a team inbox, or None."""
    try:
        chat = await bot.get_chat(chat_id)
        me = await bot.me()
        member = await bot.get_chat_member(chat_id, me.id)
    except TelegramAPIError:
        return _("I could not check this group. Make sure I am a member, then try again.")
    if chat.type != ChatType.SUPERGROUP or not chat.is_forum:
        return _(
            "This group has no topics. Turn on Topics in the group settings, "
            "then send /teaminbox again."
        )
    if member.status != ChatMemberStatus.ADMINISTRATOR:
        return _(
            "Make me an administrator of this group with the right to manage topics, "
            "then send /teaminbox again."
        )
    if not getattr(member, "can_manage_topics", False):
        return _(
            "I am an administrator here but may not manage topics. Give me that right, "
            "then send /teaminbox again."
        )
    return None


async def _unlink_group(message: Message, user: User) -> None:
    inbox = await team_inbox.inbox_of_chat(message.chat.id)
    if inbox is None:
        await message.answer(_("This group is not a team inbox."))
        return
    actor = await operators.actor_for(user, inbox.tenant_id)
    if actor is None:
        await message.answer(_only_admins())
        return
    try:
        unlinked = await team_inbox.do_unlink_group(actor, message.chat.id)
    except PermissionDenied:
        await message.answer(_only_admins())
        return
    except NotFound:
        await message.answer(_("This group is not a team inbox."))
        return
    await message.answer(
        _("This group is no longer the team inbox of “{workspace}”.").format(
            workspace=unlinked.workspace
        )
    )


async def teaminbox_in_private(message: Message, command: CommandObject, actor: Actor) -> None:
    """``/teaminbox`` in a private chat tells which group is linked; ``off`` unlinks it."""
    if (command.args or "").strip().lower() == "off":
        try:
            unlinked = await team_inbox.do_unlink_group(actor)
        except PermissionDenied:
            await message.answer(_only_admins())
            return
        except NotFound:
            await message.answer(_("This workspace has no team inbox."))
            return
        await message.answer(
            _("“{group}” is no longer the team inbox of “{workspace}”.").format(
                group=unlinked.inbox.title, workspace=unlinked.workspace
            )
        )
        return
    inbox = await team_inbox.access_team_inbox(actor)
    if inbox is None:
        await message.answer(
            _(
                "This workspace has no team inbox. Add me to a forum supergroup as an "
                "administrator that may manage topics, then send /teaminbox there."
            )
        )
        return
    await message.answer(
        _(
            "The team inbox of this workspace is “{group}”. Send /teaminbox off to stop using it."
        ).format(group=inbox.title)
    )


async def topic_message(message: Message) -> None:
    """A message in a topic of a team inbox group goes to the topic's lead.

    The reply to the topic's "created" service message that Telegram puts on every topic
    message means nothing here and is not looked at.
    """
    sender = message.from_user
    if sender is None or sender.is_bot or message.text is None:
        return
    result = await team_inbox.do_send_from_topic(
        sender.id,
        message.chat.id,
        message.message_thread_id,
        message.text,
        f"tg:{message.chat.id}:{message.message_id}",
    )
    topic = result.topic
    if topic is None:
        return
    if result.outcome is TopicOutcome.REFUSED and result.error is not None:
        text = refusal(result.error, result.actor)
    elif result.outcome is TopicOutcome.STRANGER:
        text = _(
            "Only members of this workspace can answer leads here. Ask an owner or admin "
            "for an invite."
        )
    else:
        return
    await team_posts.enqueue_reply(topic, text, message.message_id)


async def group_message(message: Message) -> None:
    """Any other message in a group: not for the bot (and never an answer to a lead)."""


async def reply_button_in_group(query: CallbackQuery, callback_answer: CallbackAnswer) -> None:
    """The Reply button of a lead message in a topic: writing in the topic is the reply."""
    callback_answer.text = _("Write in this topic: your message goes to the lead.")
    callback_answer.show_alert = True


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher): one sub-router for
    group chats, where it takes every message, and one for ``/teaminbox`` in private chats."""
    in_group = feature_router("topics_in_groups", chats=GROUP_CHATS)
    in_group.callback_query.filter(F.message.chat.type.in_(GROUP_CHATS))
    in_group.message.register(teaminbox_in_group, Command("teaminbox"))
    in_group.message.register(
        topic_message, F.chat.type == ChatType.SUPERGROUP, F.is_topic_message.is_(True)
    )
    in_group.message.register(group_message)
    in_group.callback_query.register(
        reply_button_in_group, ConvAction.filter(F.act == ConvAct.REPLY)
    )
    in_private = feature_router("topics_in_private", chats=PRIVATE_CHATS)
    in_private.message.register(teaminbox_in_private, Command("teaminbox"), flags=CURRENT_ACTOR)
    router = Router(name="topics")
    router.include_routers(in_group, in_private)
    return router
