"""Operators of the Telegram bot: registration, workspaces, invites, who gets notified.

The operator bot (``bot/``) calls these; they know nothing of Telegram beyond numeric ids.
A person may belong to several workspaces: ``User.current_tenant`` is the one the bot acts in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from crm.errors import NotFound, ServiceError, ValidationFailed
from crm.messaging import DeliveryStatus
from crm.models import (
    Conversation,
    Deal,
    Invite,
    Membership,
    Message,
    NotificationState,
    OperatorNotification,
    Role,
    StageKind,
    Tenant,
    User,
)
from crm.services.access import Actor
from crm.services.accounts.workspaces import do_create_tenant
from crm.services.events.catalog import InviteCreated, InviteDeclined, MemberAdded
from crm.services.events.recording import record_event

logger = logging.getLogger(__name__)

INVITE_LIFETIME = dt.timedelta(days=7)
INVITE_ROLES = (Role.ADMIN, Role.BIDI, Role.VIEWER)
LANGUAGES = ("en", "ru")

# What the composition root runs after a workspace was created (sandbox channels, say).
WorkspaceHook = Callable[[int], Awaitable[object]]


class InviteInvalid(ServiceError):
    """An invite link that is unknown, already used or expired."""

    status = 410
    title = "Invite not valid"

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def hash_invite_token(token: str) -> str:
    """The stored form of an invite token."""
    return hashlib.sha256(token.encode()).hexdigest()


def language_of(code: str | None) -> str:
    """A supported language for a Telegram language code (``en`` when unknown)."""
    short = (code or "").split("-", 1)[0].lower()
    return short if short in LANGUAGES else "en"


async def find_operator(telegram_id: int) -> User | None:
    """The user with this Telegram id, if any."""
    return await User.get_or_none(telegram_id=telegram_id)


async def do_register_operator(
    telegram_id: int, name: str, language: str | None
) -> tuple[User, Tenant | None]:
    """The user of a Telegram id (created when new) and their current workspace."""
    user = await User.get_or_none(telegram_id=telegram_id)
    if user is None:
        try:
            user = await User.create(
                telegram_id=telegram_id, name=name[:200], language=language_of(language)
            )
        except IntegrityError:  # a concurrent /start created it
            user = await User.get(telegram_id=telegram_id)
    tenant = await current_workspace(user)
    return user, tenant


async def current_workspace(user: User) -> Tenant | None:
    """The workspace the user acts in: the chosen one, else their oldest membership."""
    current = user.current_tenant_id
    if current is not None and await Membership.exists(user_id=user.id, tenant_id=current):
        return await Tenant.get_or_none(id=current)
    membership = await Membership.filter(user_id=user.id).order_by("id").first()
    if membership is None:
        return None
    if user.current_tenant_id != membership.tenant_id:
        user.current_tenant_id = membership.tenant_id
        await user.save(update_fields=["current_tenant_id"])
    return await Tenant.get_or_none(id=membership.tenant_id)


async def do_create_workspace_for(
    user: User, name: str, on_created: WorkspaceHook | None = None
) -> Tenant:
    """A new workspace owned by ``user``, made current; ``on_created`` runs after it commits."""
    if user.telegram_id is None:
        raise ValidationFailed("telegram_id", "the operator has no Telegram id")
    created = await do_create_tenant(
        (name.strip() or "My workspace")[:200],
        owner_telegram_id=user.telegram_id,
        owner_name=user.name,
        language=user.language,  # Telegram's language_code at /start, or the /lang choice
    )
    user.current_tenant_id = created.tenant.id
    await user.save(update_fields=["current_tenant_id"])
    if on_created is not None:
        await on_created(created.tenant.id)
    return created.tenant


async def workspaces_of(user: User) -> list[tuple[Tenant, Role]]:
    """Every workspace of the user with their role there, oldest membership first."""
    memberships = await Membership.filter(user_id=user.id).prefetch_related("tenant").order_by("id")
    return [(m.tenant, Role(m.role)) for m in memberships]


async def do_switch_workspace(user: User, tenant_id: int) -> Tenant:
    """Make one of the user's workspaces the current one."""
    membership = (
        await Membership.filter(user_id=user.id, tenant_id=tenant_id)
        .prefetch_related("tenant")
        .first()
    )
    if membership is None:
        raise NotFound("workspace", tenant_id)
    user.current_tenant_id = tenant_id
    await user.save(update_fields=["current_tenant_id"])
    return membership.tenant


async def actor_for(user: User, tenant_id: int | None = None) -> Actor | None:
    """The user acting in ``tenant_id`` (default: their current workspace), or None."""
    if tenant_id is None:
        tenant = await current_workspace(user)
        if tenant is None:
            return None
        tenant_id = tenant.id
    membership = await Membership.filter(user_id=user.id, tenant_id=tenant_id).first()
    if membership is None:
        return None
    return Actor(tenant_id=tenant_id, user_id=user.id, role=Role(membership.role))


async def tenant_of_conversation(conversation_id: int) -> int | None:
    """The workspace a conversation belongs to (callers check membership with actor_for)."""
    conversation = await Conversation.filter(id=conversation_id).only("id", "tenant_id").first()
    return conversation.tenant_id if conversation is not None else None


async def actor_for_conversation(user: User | None, conversation_id: int) -> Actor | None:
    """The user acting in the workspace of a conversation (any of theirs), or None."""
    if user is None:
        return None
    tenant_id = await tenant_of_conversation(conversation_id)
    return None if tenant_id is None else await actor_for(user, tenant_id)


async def do_set_language(user: User, language: str) -> User:
    """Store the language the bot speaks to the user."""
    user.language = language_of(language)
    await user.save(update_fields=["language"])
    return user


async def do_create_invite(actor: Actor, role: Role) -> str:
    """A single-use invite token to join the actor's workspace as ``role`` (admin)."""
    actor.require_admin()
    if role not in INVITE_ROLES:
        raise ValidationFailed("role", "invite as admin, bidi or viewer")
    if role is Role.ADMIN and actor.role is not Role.OWNER:
        raise ValidationFailed("role", "only an owner may invite an admin")
    token = secrets.token_urlsafe(16)
    now = dt.datetime.now(dt.UTC)
    async with in_transaction() as conn:
        invite = await Invite.create(
            tenant_id=actor.tenant_id,
            token_hash=hash_invite_token(token),
            role=role,
            created_by_id=actor.user_id,
            expires_at=now + INVITE_LIFETIME,
            using_db=conn,
        )
        await record_event(
            actor,
            InviteCreated,
            invite.id,
            after={"role": role.value, "expires_at": invite.expires_at.isoformat()},
            using_db=conn,
        )
    return token


async def do_accept_invite(
    token: str, telegram_id: int, name: str, language: str | None = None
) -> Membership:
    """Join the invite's workspace with its role; the invite is used up."""
    now = dt.datetime.now(dt.UTC)
    async with in_transaction() as conn:
        invite = (
            await Invite.filter(token_hash=hash_invite_token(token))
            .using_db(conn)
            .select_for_update()
            .first()
        )
        invite = _open_invite(invite, now, "this invite link")
        user = await User.filter(telegram_id=telegram_id).using_db(conn).first()
        if user is None:
            user = await User.create(
                telegram_id=telegram_id,
                name=name[:200],
                language=language_of(language),
                using_db=conn,
            )
        membership = await _join(invite, user, now, conn)
    membership.user = user
    return membership


def _open_invite(invite: Invite | None, now: dt.datetime, what: str) -> Invite:
    """The invite if it can still be answered; InviteInvalid saying why not otherwise."""
    if invite is None:
        raise InviteInvalid("invite_unknown", f"{what} is not valid")
    if invite.used_at is not None:
        raise InviteInvalid("invite_used", f"{what} was already used")
    if invite.expires_at <= now:
        raise InviteInvalid("invite_expired", f"{what} has expired")
    return invite


async def _join(
    invite: Invite, user: User, now: dt.datetime, conn: BaseDBAsyncClient
) -> Membership:
    """Make ``user`` a member with the invite's role, use the invite up, make it their current."""
    if await Membership.filter(tenant_id=invite.tenant_id, user_id=user.id).using_db(conn).exists():
        raise InviteInvalid("already_member", "you are already a member of this workspace")
    membership = await Membership.create(
        tenant_id=invite.tenant_id, user_id=user.id, role=invite.role, using_db=conn
    )
    invite.used_by_id = user.id
    invite.used_at = now
    await invite.save(using_db=conn, update_fields=["used_by_id", "used_at"])
    user.current_tenant_id = invite.tenant_id
    await user.save(using_db=conn, update_fields=["current_tenant_id"])
    actor = Actor(tenant_id=invite.tenant_id, user_id=user.id, role=Role(invite.role))
    await record_event(
        actor,
        MemberAdded,
        membership.id,
        after={"user_id": user.id, "role": Role(invite.role).value, "invite_id": invite.id},
        using_db=conn,
    )
    return membership


async def pending_invites_of(user: User) -> list[Invite]:
    """Open invites addressed to ``user`` (added by an admin through the API), with workspaces."""
    return (
        await Invite.filter(
            invitee_id=user.id, used_at__isnull=True, expires_at__gt=dt.datetime.now(dt.UTC)
        )
        .prefetch_related("tenant")
        .order_by("id")
    )


async def do_answer_invite(user: User, invite_id: int, accept: bool) -> Membership | None:
    """Accept (join with its role, made current) or decline an invite addressed to ``user``."""
    now = dt.datetime.now(dt.UTC)
    async with in_transaction() as conn:
        invite = (
            await Invite.filter(id=invite_id, invitee_id=user.id)
            .using_db(conn)
            .select_for_update()
            .first()
        )
        invite = _open_invite(invite, now, "this invite")
        if not accept:
            invite.used_at = now
            await invite.save(using_db=conn, update_fields=["used_at"])
            actor = Actor(tenant_id=invite.tenant_id, user_id=user.id, role=Role(invite.role))
            await record_event(actor, InviteDeclined, invite.id, using_db=conn)
            return None
        membership = await _join(invite, user, now, conn)
    membership.user = user
    return membership


async def recipients_for(conversation: Conversation) -> list[User]:
    """Who hears of a lead message: the assignee, else every member, with a Telegram id."""
    if conversation.assignee_id is not None:
        users = await User.filter(id=conversation.assignee_id, telegram_id__isnull=False)
        if users:
            return list(users)
    members = await Membership.filter(tenant_id=conversation.tenant_id).order_by("id")
    ids = [m.user_id for m in members]
    users = await User.filter(id__in=ids, telegram_id__isnull=False)
    order = {user_id: i for i, user_id in enumerate(ids)}
    return sorted(users, key=lambda u: order[u.id])


async def roles_in(tenant_id: int, user_ids: list[int]) -> dict[int, Role]:
    """The role of each of ``user_ids`` in a workspace (members only)."""
    if not user_ids:
        return {}
    rows = await Membership.filter(tenant_id=tenant_id, user_id__in=user_ids).values_list(
        "user_id", "role"
    )
    return {user_id: Role(role) for user_id, role in rows}


async def name_of(user_id: int | None) -> str | None:
    """A member's display name (None for nobody)."""
    if user_id is None:
        return None
    names = await User.filter(id=user_id).values_list("name", flat=True)
    return str(names[0]) if names else None


@dataclass(frozen=True)
class OpenDeal:
    """The latest open deal of a contact and its stage."""

    title: str
    stage: str


async def open_deal_of(tenant_id: int, contact_id: int) -> OpenDeal | None:
    """The contact's latest open deal, if any (one query: the deal with its stage)."""
    deal = (
        await Deal.filter(tenant_id=tenant_id, contact_id=contact_id, closed_at__isnull=True)
        .select_related("stage")
        .order_by("-id")
        .first()
    )
    if deal is None:
        return None
    if deal.stage.kind is not StageKind.OPEN:
        return None
    return OpenDeal(deal.title, deal.stage.name)


async def not_yet_notified(users: list[User], message_id: int) -> list[User]:
    """Those of ``users`` not yet told of this lead message (one query for all of them).

    A notification whose intent was recorded but whose send was never confirmed is not sent
    again (at most once per user and lead message): it is logged instead.
    """
    if not users:
        return []
    told: set[int] = set()
    rows = await OperatorNotification.filter(
        lead_message_id=message_id, user_id__in=[u.id for u in users]
    ).values_list("id", "user_id", "state")
    for row_id, user_id, state in rows:
        told.add(user_id)
        if state == NotificationState.PENDING.value:
            logger.warning(
                "notification %s of lead message %s to user %s was begun by an earlier delivery "
                "and never confirmed (still in flight, or that worker stopped before or after "
                "the Telegram call): not sent again",
                row_id,
                message_id,
                user_id,
            )
    return [user for user in users if user.id not in told]


async def begin_notification(
    *, user: User, bot_id: int, chat_id: int, conversation: Conversation, message_id: int
) -> OperatorNotification | None:
    """Record the intent to tell ``user`` of a lead message, before the Telegram call.

    None when a delivery of the same event already began it: it is never sent twice.
    """
    try:
        return await OperatorNotification.create(
            tenant_id=conversation.tenant_id,
            user_id=user.id,
            bot_id=bot_id,
            chat_id=chat_id,
            telegram_message_id=None,
            conversation_id=conversation.id,
            lead_message_id=message_id,
            state=NotificationState.PENDING,
        )
    except IntegrityError:
        return None


async def _supersede(bot_id: int, chat_id: int, telegram_message_id: int, conn: Any) -> None:
    """Free a Telegram message id for the newest record: older rows with it stop answering.

    Message ids count per bot and chat and start again when the Bot API forgets its chats
    (a restarted emulator) or for a new bot; rows from before 0012 carry no bot.
    """
    stale = OperatorNotification.filter(
        Q(bot_id=bot_id) | Q(bot_id__isnull=True),
        chat_id=chat_id,
        telegram_message_id=telegram_message_id,
    )
    replaced = await stale.using_db(conn).update(telegram_message_id=None)
    if replaced:
        logger.info(
            "Telegram message %s in chat %s of bot %s now answers a newer notification "
            "(%s older record(s) replaced)",
            telegram_message_id,
            chat_id,
            bot_id,
            replaced,
        )


async def record_sent(notification: OperatorNotification, telegram_message_id: int) -> None:
    """Telegram took the notification whose intent was recorded: keep its message id."""
    assert notification.bot_id is not None
    notification.telegram_message_id = telegram_message_id
    notification.state = NotificationState.SENT
    try:
        # One statement in the usual case: this runs for every lead message (bench_notify).
        await notification.save(update_fields=["telegram_message_id", "state"])
    except IntegrityError:
        async with in_transaction() as conn:
            await _supersede(notification.bot_id, notification.chat_id, telegram_message_id, conn)
            await notification.save(using_db=conn, update_fields=["telegram_message_id", "state"])


async def record_failed(notification: OperatorNotification, reason: str) -> None:
    """Telegram refused the notification for good (or its fate is unknown): keep why."""
    notification.state = NotificationState.FAILED
    notification.error = reason[:500]
    await notification.save(update_fields=["state", "error"])


async def release_notification(notification: OperatorNotification) -> None:
    """Forget an intent whose message surely did not go out, so a retry of the event sends it."""
    await OperatorNotification.filter(id=notification.id, state=NotificationState.PENDING).delete()


async def record_notification(
    *,
    user: User,
    bot_id: int,
    chat_id: int,
    telegram_message_id: int,
    conversation: Conversation,
    message_id: int | None = None,
) -> OperatorNotification | None:
    """Remember a sent message that answers a conversation's lead when replied to.

    The newest record of a Telegram message id wins. None when ``message_id`` (a lead
    message, or an outgoing one for a confirmation) was already recorded for the user.
    """
    values: dict[str, Any] = {
        "tenant_id": conversation.tenant_id,
        "user_id": user.id,
        "bot_id": bot_id,
        "chat_id": chat_id,
        "telegram_message_id": telegram_message_id,
        "conversation_id": conversation.id,
        "lead_message_id": message_id,
    }
    return await _create_newest(values)


async def _create_newest(values: dict[str, Any]) -> OperatorNotification | None:
    """Create a sent notification row; an older row with its Telegram message id gives way."""
    try:
        return await OperatorNotification.create(**values)
    except IntegrityError:
        pass
    try:
        async with in_transaction() as conn:
            await _supersede(
                values["bot_id"], values["chat_id"], values["telegram_message_id"], conn
            )
            return await OperatorNotification.create(**values, using_db=conn)
    except IntegrityError:
        return None  # the (user, lead or outgoing message) pair is recorded already


async def conversation_for_reply(
    bot_id: int, chat_id: int, message_id: int
) -> OperatorNotification | None:
    """The notification a Telegram reply answers (by bot, chat and replied-to message id)."""
    rows = await OperatorNotification.filter(
        Q(bot_id=bot_id) | Q(bot_id__isnull=True),
        chat_id=chat_id,
        telegram_message_id=message_id,
    ).order_by("-id")
    exact = [row for row in rows if row.bot_id == bot_id]
    found = exact or rows
    return found[0] if found else None


# Messages an operator sent by replying to a notification in the bot's private chat carry this
# idempotency key prefix: their "sent" confirmation shows how they fare. (Messages written in a
# team inbox topic use "tg:" and have no confirmation.)
TELEGRAM_REPLY_PREFIX = "tgr:"


def telegram_reply_key(chat_id: int, message_id: int) -> str:
    """The idempotency key of a reply sent from Telegram message ``message_id`` in ``chat_id``."""
    return f"{TELEGRAM_REPLY_PREFIX}{chat_id}:{message_id}"


async def channel_of_conversation(conversation_id: int) -> str | None:
    """The messenger of a conversation (``whatsapp``, ``telegram``), if it exists."""
    conversation = await Conversation.filter(id=conversation_id).only("id", "channel").first()
    return conversation.channel.value if conversation is not None else None


async def record_confirmation(
    notification: OperatorNotification,
    bot_id: int,
    chat_id: int,
    telegram_message_id: int,
    message_id: int,
) -> OperatorNotification | None:
    """Remember the "sent" confirmation of a reply (``message_id``, the outgoing message).

    It is found again by the reply's status changes; a Telegram reply to it answers the lead
    of the same conversation. None when that reply already has a confirmation.
    """
    return await _create_newest(
        {
            "tenant_id": notification.tenant_id,
            "user_id": notification.user_id,
            "bot_id": bot_id,
            "chat_id": chat_id,
            "telegram_message_id": telegram_message_id,
            "conversation_id": notification.conversation_id,
            "lead_message_id": message_id,
        }
    )


@dataclass(frozen=True)
class ReplyDelivery:
    """Where an operator's outgoing message stands, and the confirmation that shows it."""

    status: DeliveryStatus
    error_title: str | None
    # Sent by replying to a notification in the bot: its confirmation shows the status.
    bot_reply: bool
    language: str
    chat_id: int | None = None
    telegram_message_id: int | None = None


async def reply_delivery(message_id: int) -> ReplyDelivery | None:
    """The status of an outgoing message and its author's confirmation in Telegram, if any."""
    message = (
        await Message.filter(id=message_id)
        .only("id", "status", "error_title", "idempotency_key", "author_user_id")
        .first()
    )
    if message is None or message.author_user_id is None:
        return None
    author = await User.filter(id=message.author_user_id).only("id", "language").first()
    confirmation = await OperatorNotification.filter(
        user_id=message.author_user_id, lead_message_id=message.id
    ).first()
    return ReplyDelivery(
        status=DeliveryStatus(message.status),
        error_title=message.error_title,
        bot_reply=(message.idempotency_key or "").startswith(TELEGRAM_REPLY_PREFIX),
        language=author.language if author is not None else "en",
        chat_id=confirmation.chat_id if confirmation is not None else None,
        telegram_message_id=(
            confirmation.telegram_message_id if confirmation is not None else None
        ),
    )
