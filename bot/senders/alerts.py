"""Operator alerts: deal stage moves, assignments, the AI's drafts and hand-offs, the digest.

Like ``bot/senders/notifications.py`` the event handlers run on task workers, outside any update, so
each message is rendered in its recipient's language with ``i18n.use_locale``. Handlers are
at-least-once: before sending, each (event, recipient) pair is claimed with a ``HandledEvent`` row
named after the handler and the user, so a redelivered event tells nobody twice. A send that fails
for a reason that may pass (a 5xx, a timeout) gives the claim back and raises, and the retry of the
event tries that recipient again; a chat Telegram refuses for good is not retried.

The daily digest goes out in rounds of the periodic task ``crm.tasks.periodic.DIGEST_TASK``:
``install`` makes ``send_due_digests`` its job in this process. See
``crm/services/inbox/digest.py`` for when a member is due and how a digest is claimed.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from bot.callbacks import ConvAct, ConvAction, DealOpen
from bot.keyboards import draft_keyboard, notification_keyboard
from bot.texts import render_draft
from crm.models import (
    Agent,
    Contact,
    Conversation,
    ConversationStatus,
    Deal,
    Draft,
    DraftStatus,
    Event,
    HandledEvent,
    Membership,
    Role,
    Stage,
    User,
)
from crm.services.accounts import operators
from crm.services.events.catalog import (
    AiHandedOff,
    ConversationAssigned,
    DealStageChanged,
    DraftCreated,
)
from crm.services.inbox import digest, operator_notifications
from crm.services.inbox.digest import WorkspaceDigest
from crm.tasks.handlers import HandlerRegistry, Order
from crm.tasks.periodic import DIGEST_TASK
from telegram_transport.logs import redact

logger = logging.getLogger(__name__)

Rendered = tuple[str, InlineKeyboardMarkup]  # an alert's HTML and its buttons

STAGE_HANDLER = "bot.alert_deal_moved"
ASSIGN_HANDLER = "bot.alert_assigned"
AGENT_DRAFT_HANDLER = "bot.alert_agent_draft"
HANDED_OFF_HANDLER = "bot.alert_ai_handed_off"
MAX_TITLE = 200


def rule_condition(rule: str) -> str:
    """What a pipeline rule reacts to, in words (``reply``, ``intent:meeting_request``)."""
    conditions = {
        "reply": _("lead replied"),
        "intent:interested": _("lead is interested"),
        "intent:meeting_request": _("lead asks for a meeting"),
        "intent:question": _("lead asks a question"),
        "intent:not_now": _("lead says not now"),
        "intent:not_interested": _("lead is not interested"),
        "intent:unsubscribe": _("lead unsubscribes"),
        "intent:out_of_office": _("lead is out of office"),
        "intent:wrong_person": _("lead is the wrong person"),
    }
    return conditions.get(rule, rule)


def render_stage_move(
    *, deal: str, from_stage: str, to_stage: str, mover: str, rule: str | None = None
) -> str:
    """The HTML of a stage move alert, naming the rule that made it if one did (escaped)."""
    names = {
        "deal": html.escape(deal[:MAX_TITLE]),
        "from_stage": html.escape(from_stage),
        "to_stage": html.escape(to_stage),
    }
    if rule:
        described = f"{rule_condition(rule)}: {from_stage} → {to_stage}"
        return _("📊 <b>{deal}</b> moved: {from_stage} → {to_stage} by the rule “{rule}”").format(
            rule=html.escape(described), **names
        )
    return _("📊 <b>{deal}</b> moved: {from_stage} → {to_stage} by {name}").format(
        name=html.escape(mover), **names
    )


def render_assignment(*, lead: str, assigner: str, preview: str) -> str:
    """The HTML of an assignment alert, with the last message of the conversation."""
    text = _("🙋 {name} assigned you the conversation with <b>{lead}</b>.").format(
        name=html.escape(assigner), lead=html.escape(lead)
    )
    if preview:
        text += "\n\n" + html.escape(preview)
    return text


def render_digest(parts: list[WorkspaceDigest], zone: str) -> str:
    """The HTML of a daily digest: one block per workspace, real plural forms."""
    lines = [_("☀️ <b>Good morning! Your daily digest</b>")]
    for part in parts:
        lines += ["", f"<b>{html.escape(part.workspace)}</b>"]
        if part.new_leads:
            n = part.new_leads
            lines.append("• " + _("{n} new lead", "{n} new leads", n).format(n=n))
        if part.waiting:
            n = part.waiting
            lines.append(
                "• "
                + _(
                    "{n} conversation waiting for a reply",
                    "{n} conversations waiting for a reply",
                    n,
                ).format(n=n)
            )
        if part.deals_moved:
            n = part.deals_moved
            lines.append("• " + _("{n} deal moved", "{n} deals moved", n).format(n=n))
    lines += [
        "",
        _("New leads and deal moves: the last 24 hours. Time zone: {zone} (/timezone).").format(
            zone=html.escape(digest.zone_label(zone))
        ),
    ]
    return "\n".join(lines)


def render_agent_draft(*, agent: str, lead: str, draft: Draft) -> str:
    """The HTML of a reply an agent proposes, waiting for the operator's decision."""
    head = _("🤖 <b>{agent}</b> proposes a reply to <b>{lead}</b>:").format(
        agent=html.escape(agent), lead=html.escape(lead)
    )
    return head + "\n\n" + render_draft(draft)


def render_handed_off(*, lead: str, reason: str) -> str:
    """The HTML of the AI handing a conversation to a human."""
    text = _("🙋 The AI handed the conversation with <b>{lead}</b> to you.").format(
        lead=html.escape(lead)
    )
    if reason:
        text += "\n" + _("Reason: {reason}").format(reason=html.escape(reason))
    return text + "\n" + _("It stays silent there until someone hands it back.")


def deal_keyboard(deal_id: int) -> InlineKeyboardMarkup:
    """One button that opens the deal card."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("💼 Open deal"), callback_data=DealOpen(id=deal_id).pack()
                )
            ]
        ]
    )


def _claim_name(handler: str, user_id: int) -> str:
    return f"{handler}:u{user_id}"


async def _claim(event_id: int, handler: str, user_id: int) -> bool:
    """Take the (event, recipient) pair; False when a delivery of the event already did."""
    try:
        await HandledEvent.create(event_id=event_id, handler=_claim_name(handler, user_id))
    except IntegrityError:
        return False
    return True


async def _release(event_id: int, handler: str, user_id: int) -> None:
    await HandledEvent.filter(event_id=event_id, handler=_claim_name(handler, user_id)).delete()


async def _member_users(tenant_id: int, user_ids: list[int]) -> list[User]:
    """The users among ``user_ids`` still in the workspace and reachable in Telegram."""
    if not user_ids:
        return []
    members = set(
        await Membership.filter(tenant_id=tenant_id, user_id__in=user_ids).values_list(
            "user_id", flat=True
        )
    )
    users = await User.filter(id__in=list(members), telegram_id__isnull=False)
    order = {user_id: i for i, user_id in enumerate(user_ids)}
    return sorted(users, key=lambda u: order[u.id])


async def _lead_name(conversation: Conversation) -> str:
    contact = await Contact.get_or_none(id=conversation.contact_id)
    return (contact.name if contact is not None else "") or conversation.peer_id


async def _responsible(conversation: Conversation) -> list[User]:
    """Who answers a conversation: its assignee, else the workspace's owners and admins."""
    if conversation.assignee_id is not None:
        assigned = await _member_users(conversation.tenant_id, [conversation.assignee_id])
        if assigned:
            return assigned
    leads = await Membership.filter(
        tenant_id=conversation.tenant_id, role__in=[Role.OWNER, Role.ADMIN]
    ).values_list("user_id", flat=True)
    return await _member_users(
        conversation.tenant_id, [u for u in (_int(v) for v in leads) if u is not None]
    )


async def _actor_name(event: Event) -> str:
    """Who did it: the member's name, else a word for the product acting by itself."""
    if event.actor_user_id is not None:
        user = await User.get_or_none(id=event.actor_user_id)
        if user is not None:
            return user.name or _("a colleague")
    if event.actor_type == "agent":
        return _("the AI agent")
    return _("an automation")


def _int(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class Alerts:
    """Stage moves and assignments told to the operators concerned; the daily digest."""

    def __init__(self, bot: Bot, i18n: I18n) -> None:
        self.bot = bot
        self.i18n = i18n

    def install(self, registry: HandlerRegistry, *, digest: bool = True) -> None:
        """Register the handlers, and with ``digest`` the digest's job (replacing those of an
        earlier instance in this process)."""
        self.uninstall(registry)
        if digest:
            registry.add_job(DIGEST_TASK, self.send_due_digests)
        for event_type, handler, name in (
            (DealStageChanged, self.deal_moved, STAGE_HANDLER),
            (ConversationAssigned, self.assigned, ASSIGN_HANDLER),
            (DraftCreated, self.agent_drafted, AGENT_DRAFT_HANDLER),
            (AiHandedOff, self.handed_off, HANDED_OFF_HANDLER),
        ):
            registry.add(event_type, handler, name=name, atomic=False, order=Order.NOTIFY)

    @staticmethod
    def uninstall(registry: HandlerRegistry) -> None:
        """Unregister the handlers and the digest's job."""
        registry.remove_job(DIGEST_TASK)
        registry.remove(STAGE_HANDLER)
        registry.remove(ASSIGN_HANDLER)
        registry.remove(AGENT_DRAFT_HANDLER)
        registry.remove(HANDED_OFF_HANDLER)

    # ---- events ----------------------------------------------------------------------------

    async def deal_moved(self, event: Event, conn: BaseDBAsyncClient) -> None:
        """Tell the deal's owner and the contact's assignees, not the mover, of a stage move."""
        if event.entity_id is None:
            return
        before: dict[str, Any] = dict(event.before or {})
        after: dict[str, Any] = dict(event.after or {})
        deal = await Deal.filter(id=event.entity_id, tenant_id=event.tenant_id).first()
        if deal is None:
            return  # deleted since: its card would not open
        wanted: list[int] = []
        if deal.owner_id is not None:
            wanted.append(deal.owner_id)
        if deal.contact_id is not None:
            assignees = await Conversation.filter(
                tenant_id=event.tenant_id,
                contact_id=deal.contact_id,
                status__in=[ConversationStatus.OPEN, ConversationStatus.SNOOZED],
                assignee_id__isnull=False,
            ).values_list("assignee_id", flat=True)
            wanted += [a for a in (_int(v) for v in assignees) if a is not None]
        wanted = [u for u in dict.fromkeys(wanted) if u != event.actor_user_id]
        recipients = await _member_users(event.tenant_id, wanted)
        if not recipients:
            return
        stage_ids = [s for s in (_int(before.get("stage_id")), _int(after.get("stage_id"))) if s]
        names = dict(await Stage.filter(id__in=stage_ids).values_list("id", "name"))
        from_name = names.get(_int(before.get("stage_id")) or 0, "?")
        to_name = names.get(_int(after.get("stage_id")) or 0, "?")
        title = str(after.get("title") or deal.title)
        rule = str(after["rule"]) if after.get("rule") else None

        async def render() -> Rendered:
            mover = "" if rule else await _actor_name(event)
            text = render_stage_move(
                deal=title, from_stage=from_name, to_stage=to_name, mover=mover, rule=rule
            )
            return text, deal_keyboard(deal.id)

        await self._tell_each(event.id, STAGE_HANDLER, recipients, render)

    async def assigned(self, event: Event, conn: BaseDBAsyncClient) -> None:
        """Tell the new assignee of a conversation, unless they took it themselves."""
        if event.entity_id is None:
            return
        assignee_id = _int(dict(event.after or {}).get("assignee_id"))
        if assignee_id is None or assignee_id == event.actor_user_id:
            return
        conversation = await Conversation.filter(
            id=event.entity_id, tenant_id=event.tenant_id
        ).first()
        if conversation is None or conversation.assignee_id != assignee_id:
            return  # reassigned meanwhile: the newer event tells the newer assignee
        recipients = await _member_users(event.tenant_id, [assignee_id])
        if not recipients:
            return
        (user,) = recipients
        if not await _claim(event.id, ASSIGN_HANDLER, user.id):
            return
        contact = await Contact.get_or_none(id=conversation.contact_id)
        lead = (contact.name if contact is not None else "") or conversation.peer_id
        with self.i18n.context(), self.i18n.use_locale(operators.language_of(user.language)):
            text = render_assignment(
                lead=lead,
                assigner=await _actor_name(event),
                preview=conversation.last_message_preview,
            )
            keyboard = notification_keyboard(
                conversation.id, closed=conversation.status is ConversationStatus.CLOSED
            )
        sent = await self._send_claimed(
            event.id, ASSIGN_HANDLER, user, text, reply_markup=keyboard, parse_mode=ParseMode.HTML
        )
        if sent is not None:
            # A Telegram reply to this alert goes to the lead, as for a lead notification.
            await operator_notifications.record_notification(
                user=user,
                bot_id=self.bot.id,
                chat_id=sent.chat.id,
                telegram_message_id=sent.message_id,
                conversation=conversation,
            )

    async def agent_drafted(self, event: Event, conn: BaseDBAsyncClient) -> None:
        """Show a reply an agent proposes to whoever answers the conversation, with buttons."""
        agent_id = _int(dict(event.after or {}).get("agent_id"))
        if event.entity_id is None or agent_id is None:
            return  # an operator's own draft: they asked for it and got it in the chat
        draft = await Draft.filter(id=event.entity_id, tenant_id=event.tenant_id).first()
        if draft is None or draft.status is not DraftStatus.PENDING:
            return  # decided meanwhile (in the API or the Mini App)
        conversation = await Conversation.get_or_none(id=draft.conversation_id)
        if conversation is None:
            return
        agent = await Agent.get_or_none(id=agent_id)
        lead = await _lead_name(conversation)

        async def render() -> Rendered:
            name = agent.name if agent else _("the AI agent")
            return render_agent_draft(agent=name, lead=lead, draft=draft), draft_keyboard(draft.id)

        recipients = await _responsible(conversation)
        await self._tell_each(event.id, AGENT_DRAFT_HANDLER, recipients, render)

    async def handed_off(self, event: Event, conn: BaseDBAsyncClient) -> None:
        """Tell whoever answers the conversation that the AI handed it to a human."""
        if event.entity_id is None or event.actor_type != "agent":
            return  # an operator took it over: they know
        conversation = await Conversation.get_or_none(id=event.entity_id)
        if conversation is None or conversation.tenant_id != event.tenant_id:
            return
        reason = str(dict(event.after or {}).get("reason") or "")
        lead = await _lead_name(conversation)
        closed = conversation.status is ConversationStatus.CLOSED

        async def render() -> Rendered:
            text = render_handed_off(lead=lead, reason=reason)
            buttons = notification_keyboard(conversation.id, closed=closed).inline_keyboard
            back = InlineKeyboardButton(
                text=_("🤖 Hand back to the AI"),
                callback_data=ConvAction(act=ConvAct.HAND_BACK, id=conversation.id).pack(),
            )
            return text, InlineKeyboardMarkup(inline_keyboard=[*buttons, [back]])

        recipients = await _responsible(conversation)
        await self._tell_each(event.id, HANDED_OFF_HANDLER, recipients, render)

    async def _tell_each(
        self,
        event_id: int,
        handler: str,
        recipients: list[User],
        render: Callable[[], Awaitable[Rendered]],
    ) -> None:
        """Send each recipient, once per event, what ``render`` gives in their language."""
        for user in recipients:
            if not await _claim(event_id, handler, user.id):
                continue
            with self.i18n.context(), self.i18n.use_locale(operators.language_of(user.language)):
                text, keyboard = await render()
            await self._send_claimed(
                event_id, handler, user, text, reply_markup=keyboard, parse_mode=ParseMode.HTML
            )

    async def _send_claimed(
        self, event_id: int, handler: str, user: User, text: str, **kwargs: Any
    ) -> Any:
        """Send under a claim; a failure that may pass releases it and raises for a retry."""
        try:
            return await self._send(user, text, **kwargs)
        except Exception:
            await _release(event_id, handler, user.id)
            raise

    async def _send(self, user: User, text: str, **kwargs: Any) -> Any:
        """Send to the user's private chat; None when Telegram refuses that chat for good."""
        assert user.telegram_id is not None
        try:
            return await self.bot.send_message(chat_id=user.telegram_id, text=text, **kwargs)
        except (TelegramForbiddenError, TelegramBadRequest) as exc:
            logger.info("operator %s not alerted: %s", user.id, redact(str(exc)))
            return None

    # ---- the daily digest ------------------------------------------------------------------

    async def send_due_digests(self, now: dt.datetime | None = None) -> int:
        """Send the digest of every member due at ``now``; returns how many were sent."""
        now = now or dt.datetime.now(dt.UTC)
        sent = 0
        for due in await digest.due_members(now):
            user = due.user
            if not await digest.claim_digest(user.id, due.local_date):
                continue  # another worker (or an earlier round) has it
            try:
                parts = await digest.daily_digest(user.id, now)
                if not parts:
                    continue  # nothing to report: no digest today
                language = operators.language_of(user.language)
                with self.i18n.context(), self.i18n.use_locale(language):
                    text = render_digest(parts, user.timezone or "")
                message = await self._send(user, text, parse_mode=ParseMode.HTML)
            except Exception:
                logger.exception("daily digest of operator %s failed; next round retries", user.id)
                await digest.release_digest(user.id, due.local_date, due.previous)
                continue
            if message is not None:
                sent += 1
        return sent
