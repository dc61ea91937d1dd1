"""Workspaces and their members: creation with a default pipeline, membership management."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import phonenumbers
from babel.numbers import is_currency
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from crm.models import Invite, Membership, Pipeline, Role, Stage, StageKind, Tenant, User
from crm.services.access import Actor, ActorType
from crm.services.events.catalog import (
    InviteCreated,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    TenantCreated,
    TenantUpdated,
)
from crm.services.events.recording import record_event, snapshot

# How long a person added through the API has to accept, as for invite links.
ADDED_INVITE_LIFETIME = dt.timedelta(days=7)

# The default pipeline, stage by stage: its kind and its name in each language of the bot.
DEFAULT_STAGE_KINDS: tuple[StageKind, ...] = (
    StageKind.OPEN,
    StageKind.OPEN,
    StageKind.OPEN,
    StageKind.OPEN,
    StageKind.WON,
    StageKind.LOST,
)
DEFAULT_STAGE_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Cold", "Replied", "Qualified", "Meeting", "Won", "Lost"),
    "ru": ("Холодный контакт", "Есть ответ", "Квалифицирован", "Встреча", "Выиграна", "Проиграна"),
}
# Names the default stages had before (the won stage was "Deal" until migration 0013).
FORMER_STAGE_NAMES: dict[int, tuple[str, ...]] = {4: ("Deal",)}
# What a new workspace starts with, by the owner's language: phone region, currency.
LANGUAGE_DEFAULTS: dict[str, tuple[str, str]] = {"en": ("US", "USD"), "ru": ("RU", "RUB")}


def default_stages(language: str = "en") -> tuple[tuple[str, StageKind], ...]:
    """The default pipeline's stages named in ``language`` (English when it has none)."""
    names = DEFAULT_STAGE_NAMES.get(language, DEFAULT_STAGE_NAMES["en"])
    return tuple(zip(names, DEFAULT_STAGE_KINDS, strict=True))


DEFAULT_STAGES = default_stages("en")


def same_default_stage(name: str) -> frozenset[str]:
    """Every name (casefolded) of the default stage called ``name`` in any language.

    Pipeline rules name stages in English ("Cold", "Replied", "Meeting"); a Russian workspace
    calls them otherwise, so a rule matches a stage by any of its default names. A name that is
    no default stage's stands for itself only.
    """
    wanted = name.strip().casefold()
    for position in range(len(DEFAULT_STAGE_KINDS)):
        names = [n[position] for n in DEFAULT_STAGE_NAMES.values()]
        names += FORMER_STAGE_NAMES.get(position, ())
        folded = frozenset(n.casefold() for n in names)
        if wanted in folded:
            return folded
    return frozenset({wanted})


@dataclass(frozen=True)
class WorkspaceDefaults:
    """What a new workspace starts with: phone region, currency, default stage names."""

    region: str
    currency: str
    stages: tuple[tuple[str, StageKind], ...]


def workspace_defaults(language: str | None, phone: str | None = None) -> WorkspaceDefaults:
    """Defaults that follow the owner's language, and the country of their phone if known."""
    code = (language or "en").split("-", 1)[0].lower()
    code = code if code in LANGUAGE_DEFAULTS else "en"
    region, currency = LANGUAGE_DEFAULTS[code]
    if phone:
        try:
            parsed = phonenumbers.parse(phone if phone.startswith("+") else "+" + phone, None)
        except phonenumbers.NumberParseException:
            parsed = None
        country = phonenumbers.region_code_for_number(parsed) if parsed is not None else None
        if country and country != "001":
            region = country
    return WorkspaceDefaults(region, currency, default_stages(code))


def clean_region(code: str) -> str:
    """A phone region (ISO 3166 country code) that phone numbers can be read in."""
    cleaned = code.strip().upper()
    if cleaned not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationFailed("default_region", f"'{code.strip()[:8]}' is not a country code")
    return cleaned


def clean_default_currency(code: str) -> str:
    """An ISO 4217 currency code."""
    cleaned = code.strip().upper()
    if len(cleaned) != 3 or not is_currency(cleaned):
        raise ValidationFailed(
            "default_currency", f"'{code.strip()[:8]}' is not an ISO 4217 currency code"
        )
    return cleaned


@dataclass(frozen=True)
class CreatedTenant:
    """A new workspace and the owner created with it."""

    tenant: Tenant
    owner: User


async def _find_or_create_user(
    telegram_id: int | None, email: str | None, name: str, conn: BaseDBAsyncClient
) -> User:
    """The user with this Telegram id (or else email), created when there is none."""
    user = None
    if telegram_id is not None:
        user = await User.filter(telegram_id=telegram_id).using_db(conn).first()
    if user is None and email:
        user = await User.filter(email=email.lower()).using_db(conn).first()
    if user is None:
        user = await User.create(
            telegram_id=telegram_id,
            email=email.lower() if email else None,
            name=name,
            using_db=conn,
        )
    return user


async def do_create_tenant(
    name: str,
    *,
    owner_telegram_id: int | None = None,
    owner_email: str | None = None,
    owner_name: str = "",
    default_region: str | None = None,
    default_currency: str | None = None,
    language: str | None = None,
    owner_phone: str | None = None,
) -> CreatedTenant:
    """Create a workspace, its owner membership and the default pipeline, in one transaction.

    Region, currency and stage names follow the owner's ``language`` (and ``owner_phone``'s
    country) unless given.
    """
    name = name.strip()
    if not name:
        raise ValidationFailed("name", "must not be empty")
    if len(name) > 200:
        raise ValidationFailed("name", "must be at most 200 characters")
    defaults = workspace_defaults(language, owner_phone)
    region = clean_region(default_region) if default_region else defaults.region
    currency = clean_default_currency(default_currency) if default_currency else defaults.currency
    async with in_transaction() as conn:
        tenant = await Tenant.create(
            name=name, default_region=region, default_currency=currency, using_db=conn
        )
        owner = await _find_or_create_user(owner_telegram_id, owner_email, owner_name, conn)
        await Membership.create(tenant=tenant, user=owner, role=Role.OWNER, using_db=conn)
        pipeline = await Pipeline.create(
            tenant=tenant, name="Sales", is_default=True, using_db=conn
        )
        await Stage.bulk_create(
            [
                Stage(tenant=tenant, pipeline=pipeline, name=stage_name, position=i, kind=kind)
                for i, (stage_name, kind) in enumerate(defaults.stages)
            ],
            using_db=conn,
        )
        actor = Actor(
            tenant_id=tenant.id, user_id=owner.id, role=Role.OWNER, actor_type=ActorType.SYSTEM
        )
        await record_event(actor, TenantCreated, tenant.id, after=snapshot(tenant), using_db=conn)
    return CreatedTenant(tenant=tenant, owner=owner)


async def access_tenant(actor: Actor) -> Tenant:
    """The actor's own workspace."""
    actor.require_read()
    tenant = await Tenant.get_or_none(id=actor.tenant_id)
    if tenant is None:
        raise NotFound("organization", actor.tenant_id)
    return tenant


async def do_update_tenant(
    actor: Actor,
    *,
    name: str | None = None,
    default_region: str | None = None,
    default_currency: str | None = None,
) -> Tenant:
    """Rename the workspace or change its defaults (admin)."""
    actor.require_admin()
    async with in_transaction() as conn:
        tenant = await Tenant.select_for_update().using_db(conn).get(id=actor.tenant_id)
        before = snapshot(tenant)
        if name is not None:
            if not name.strip():
                raise ValidationFailed("name", "must not be empty")
            tenant.name = name.strip()
        if default_region is not None:
            tenant.default_region = clean_region(default_region)
        if default_currency is not None:
            tenant.default_currency = clean_default_currency(default_currency)
        await tenant.save(using_db=conn)
        await record_event(
            actor,
            TenantUpdated,
            tenant.id,
            before=before,
            after=snapshot(tenant),
            using_db=conn,
        )
    return tenant


async def list_members(actor: Actor) -> list[Membership]:
    """Every membership of the actor's workspace with its user, oldest first."""
    actor.require_read()
    return (
        await Membership.filter(tenant_id=actor.tenant_id).prefetch_related("user").order_by("id")
    )


async def access_membership(actor: Actor, user_id: int) -> Membership:
    """One member of the actor's workspace."""
    actor.require_read()
    membership = (
        await Membership.filter(tenant_id=actor.tenant_id, user_id=user_id)
        .prefetch_related("user")
        .first()
    )
    if membership is None:
        raise NotFound("member", user_id)
    return membership


def _check_role_change_allowed(actor: Actor, current: Role | None, new: Role) -> None:
    if (new is Role.OWNER or current is Role.OWNER) and actor.role is not Role.OWNER:
        raise PermissionDenied("only an owner may grant or take away the owner role")


@dataclass(frozen=True)
class PendingMember:
    """Someone who already has an account: invited, not attached, until they accept in the bot."""

    invite: Invite


async def do_add_member(
    actor: Actor,
    role: Role,
    *,
    telegram_id: int | None = None,
    email: str | None = None,
    name: str = "",
) -> Membership | PendingMember:
    """Add a person to the workspace with a role (admin).

    A person new to the product is created and added. Someone who already has an account (in
    another workspace, say) is never attached without consent: they get a pending invite to
    accept in the operator bot, and nothing about them is returned.
    """
    actor.require_admin()
    if telegram_id is None and not email:
        raise ValidationFailed("telegram_id", "a member needs a telegram_id or an email")
    _check_role_change_allowed(actor, None, role)
    async with in_transaction() as conn:
        user = None
        if telegram_id is not None:
            user = await User.filter(telegram_id=telegram_id).using_db(conn).first()
        if user is None and email:
            user = await User.filter(email=email.lower()).using_db(conn).first()
        if user is not None:
            if (
                await Membership.filter(tenant_id=actor.tenant_id, user_id=user.id)
                .using_db(conn)
                .exists()
            ):
                raise Conflict("user", "is already a member of this organization")
            invite = await _invite_existing_user(actor, user, role, conn)
            return PendingMember(invite)
        user = await User.create(
            telegram_id=telegram_id,
            email=email.lower() if email else None,
            name=name,
            using_db=conn,
        )
        membership = await Membership.create(
            tenant_id=actor.tenant_id, user=user, role=role, using_db=conn
        )
        await record_event(
            actor,
            MemberAdded,
            membership.id,
            after={"user_id": user.id, "role": role.value},
            using_db=conn,
        )
    membership.user = user
    return membership


async def _invite_existing_user(
    actor: Actor, user: User, role: Role, conn: BaseDBAsyncClient
) -> Invite:
    """The pending invite of ``user`` to the actor's workspace: the open one, or a new one."""
    now = dt.datetime.now(dt.UTC)
    invite = (
        await Invite.filter(
            tenant_id=actor.tenant_id, invitee_id=user.id, used_at__isnull=True, expires_at__gt=now
        )
        .using_db(conn)
        .select_for_update()
        .first()
    )
    if invite is not None:
        invite.role = role
        invite.expires_at = now + ADDED_INVITE_LIFETIME
        await invite.save(using_db=conn, update_fields=["role", "expires_at"])
    else:
        invite = await Invite.create(
            tenant_id=actor.tenant_id,
            # No link for this invite: a random value nobody holds the preimage of.
            token_hash=secrets.token_hex(32),
            role=role,
            created_by_id=actor.user_id,
            invitee_id=user.id,
            expires_at=now + ADDED_INVITE_LIFETIME,
            using_db=conn,
        )
    # The audit log names no user: who holds an account elsewhere is not the workspace's to see.
    await record_event(
        actor,
        InviteCreated,
        invite.id,
        after={"role": role.value, "expires_at": invite.expires_at.isoformat(), "addressed": True},
        using_db=conn,
    )
    return invite


async def _count_owners(tenant_id: int, conn: object) -> int:
    return await Membership.filter(tenant_id=tenant_id, role=Role.OWNER).using_db(conn).count()  # type: ignore[arg-type]


async def do_change_member_role(actor: Actor, user_id: int, role: Role) -> Membership:
    """Change a member's role (admin; owner role only by an owner; never the last owner)."""
    actor.require_admin()
    async with in_transaction() as conn:
        membership = (
            await Membership.filter(tenant_id=actor.tenant_id, user_id=user_id)
            .using_db(conn)
            .select_for_update()
            .first()
        )
        if membership is None:
            raise NotFound("member", user_id)
        _check_role_change_allowed(actor, membership.role, role)
        before = membership.role
        if (
            before is Role.OWNER
            and role is not Role.OWNER
            and (await _count_owners(actor.tenant_id, conn) <= 1)
        ):
            raise ValidationFailed("role", "the last owner cannot be demoted")
        membership.role = role
        await membership.save(using_db=conn)
        await record_event(
            actor,
            MemberRoleChanged,
            membership.id,
            before={"user_id": user_id, "role": before.value},
            after={"user_id": user_id, "role": role.value},
            using_db=conn,
        )
    await membership.fetch_related("user")
    return membership


async def do_remove_member(actor: Actor, user_id: int) -> None:
    """Remove a member (admin; an owner only by an owner; never the last owner)."""
    actor.require_admin()
    async with in_transaction() as conn:
        membership = (
            await Membership.filter(tenant_id=actor.tenant_id, user_id=user_id)
            .using_db(conn)
            .select_for_update()
            .first()
        )
        if membership is None:
            raise NotFound("member", user_id)
        if membership.role is Role.OWNER:
            if actor.role is not Role.OWNER:
                raise PermissionDenied("only an owner may remove an owner")
            if await _count_owners(actor.tenant_id, conn) <= 1:
                raise ValidationFailed("user_id", "the last owner cannot be removed")
        await membership.delete(using_db=conn)
        await record_event(
            actor,
            MemberRemoved,
            membership.id,
            before={"user_id": user_id, "role": membership.role.value},
            using_db=conn,
        )
