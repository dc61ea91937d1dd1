"""Invites of the operator bot: single-use links, and invites addressed to a member.

An admin creates a link (``do_create_invite``) that a person opens in the bot to join
(``do_accept_invite``); an invite an admin added through the API for a known user is answered
in the bot (``do_answer_invite``). Either way the invite is used up and its workspace becomes
the person's current one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from crm.errors import ServiceError, ValidationFailed
from crm.models import Invite, Membership, Role, User
from crm.services.access import Actor
from crm.services.accounts.operators import language_of
from crm.services.events.catalog import InviteCreated, InviteDeclined, MemberAdded
from crm.services.events.recording import record_event

INVITE_LIFETIME = dt.timedelta(days=7)
INVITE_ROLES = (Role.ADMIN, Role.BIDI, Role.VIEWER)


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
