"""Operators of the Telegram bot: registration, their workspaces, the language they read.

The operator bot (``bot/``) calls these; they know nothing of Telegram beyond numeric ids.
A person may belong to several workspaces: ``User.current_tenant`` is the one the bot acts in.
Invites are in ``crm.services.accounts.invites``; who is told of a lead message in
``crm.services.inbox.lead_recipients``, what was sent to them in
``crm.services.inbox.operator_notifications``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tortoise.exceptions import IntegrityError

from crm.errors import NotFound, ValidationFailed
from crm.models import Conversation, Membership, Role, Tenant, User
from crm.services.access import Actor
from crm.services.accounts.workspaces import do_create_tenant

LANGUAGES = ("en", "ru")

# What the composition root runs after a workspace was created (sandbox channels, say).
WorkspaceHook = Callable[[int], Awaitable[object]]


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
