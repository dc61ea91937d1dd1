"""Workspaces and their members: creation with a default pipeline, membership management."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from crm.models import Invite, Membership, Pipeline, Role, Stage, StageKind, Tenant, User
from crm.services.access import Actor, ActorType
from crm.services.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from crm.services.events import record_event, snapshot

# How long a person added through the API has to accept, as for invite links.
ADDED_INVITE_LIFETIME = dt.timedelta(days=7)

DEFAULT_STAGES: tuple[tuple[str, StageKind], ...] = (
    ("Cold", StageKind.OPEN),
    ("Replied", StageKind.OPEN),
    ("Qualified", StageKind.OPEN),
    ("Meeting", StageKind.OPEN),
    ("Deal", StageKind.WON),
    ("Lost", StageKind.LOST),
)


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
    default_region: str = "US",
) -> CreatedTenant:
    """Create a workspace, its owner membership and the default pipeline, in one transaction."""
    name = name.strip()
    if not name:
        raise ValidationFailed("name", "must not be empty")
    if len(name) > 200:
        raise ValidationFailed("name", "must be at most 200 characters")
    async with in_transaction() as conn:
        tenant = await Tenant.create(
            name=name, default_region=default_region.upper(), using_db=conn
        )
        owner = await _find_or_create_user(owner_telegram_id, owner_email, owner_name, conn)
        await Membership.create(tenant=tenant, user=owner, role=Role.OWNER, using_db=conn)
        pipeline = await Pipeline.create(
            tenant=tenant, name="Sales", is_default=True, using_db=conn
        )
        await Stage.bulk_create(
            [
                Stage(tenant=tenant, pipeline=pipeline, name=stage_name, position=i, kind=kind)
                for i, (stage_name, kind) in enumerate(DEFAULT_STAGES)
            ],
            using_db=conn,
        )
        actor = Actor(
            tenant_id=tenant.id, user_id=owner.id, role=Role.OWNER, actor_type=ActorType.SYSTEM
        )
        await record_event(
            actor, "tenant.created", "tenant", tenant.id, after=snapshot(tenant), using_db=conn
        )
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
            tenant.default_region = default_region.upper()
        if default_currency is not None:
            tenant.default_currency = default_currency.upper()
        await tenant.save(using_db=conn)
        await record_event(
            actor,
            "tenant.updated",
            "tenant",
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
            "member.added",
            "membership",
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
        "invite.created",
        "invite",
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
            "member.role_changed",
            "membership",
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
            "member.removed",
            "membership",
            membership.id,
            before={"user_id": user_id, "role": membership.role.value},
            using_db=conn,
        )
