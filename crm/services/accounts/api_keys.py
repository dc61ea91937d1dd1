"""API keys: issued once in clear, stored as a SHA-256 hash, looked up by a public prefix."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from tortoise.transactions import in_transaction

from crm.errors import NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from crm.models import ApiKey, Membership, Role
from crm.services.access import Actor, ActorType, Scope
from crm.services.events.catalog import ApiKeyCreated, ApiKeyRevoked
from crm.services.events.recording import record_event

KEY_MARKER = "crm"
# Touch last_used_at at most this often, so reads do not turn into writes on every request.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: ``token`` is shown this once and never stored."""

    api_key: ApiKey
    token: str


def _hash_secret(secret: str) -> str:
    # The secret is 32 random bytes, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(scopes: list[str] | None) -> list[Scope]:
    """Validate scope names; no scopes given means read and write."""
    if scopes is None:
        return [Scope.READ, Scope.WRITE]
    parsed: list[Scope] = []
    for name in scopes:
        try:
            parsed.append(Scope(name))
        except ValueError:
            allowed = ", ".join(s.value for s in Scope)
            raise ValidationFailed(
                "scopes", f"unknown scope '{name}' (allowed: {allowed})"
            ) from None
    return sorted(set(parsed))


async def do_create_api_key(
    actor: Actor, name: str = "", scopes: list[str] | None = None, *, for_user_id: int | None = None
) -> IssuedKey:
    """Issue a key acting for a member (the actor by default); only admins issue for others."""
    user_id = for_user_id if for_user_id is not None else actor.user_id
    if user_id is None:
        raise ValidationFailed("user_id", "a key must act for a member of the organization")
    if user_id != actor.user_id:
        actor.require_admin()
    elif actor.actor_type is ActorType.API_KEY:
        # A key may not mint a key with wider scopes than its own.
        actor.require_admin()
    parsed = parse_scopes(scopes)
    if Scope.ADMIN in parsed and actor.actor_type is not ActorType.SYSTEM:
        actor.require_admin()
    if not await Membership.exists(tenant_id=actor.tenant_id, user_id=user_id):
        raise NotFound("member", user_id)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    async with in_transaction() as conn:
        api_key = await ApiKey.create(
            tenant_id=actor.tenant_id,
            user_id=user_id,
            name=name[:100],
            prefix=prefix,
            secret_hash=_hash_secret(secret),
            scopes=[s.value for s in parsed],
            using_db=conn,
        )
        await record_event(
            actor,
            ApiKeyCreated,
            api_key.id,
            after={
                "name": api_key.name,
                "prefix": prefix,
                "user_id": user_id,
                "scopes": api_key.scopes,
            },
            using_db=conn,
        )
    return IssuedKey(api_key=api_key, token=f"{KEY_MARKER}_{prefix}_{secret}")


async def list_api_keys(actor: Actor) -> list[ApiKey]:
    """Keys of the workspace (admin), or the actor's own keys."""
    actor.require_read()
    query = ApiKey.filter(tenant_id=actor.tenant_id)
    if not actor.has_role(Role.ADMIN):
        query = query.filter(user_id=actor.user_id)
    return await query.order_by("id")


async def do_revoke_api_key(actor: Actor, api_key_id: int) -> ApiKey:
    """Revoke a key: the actor's own (write or admin scope), or any key for an admin."""
    async with in_transaction() as conn:
        api_key = (
            await ApiKey.filter(id=api_key_id, tenant_id=actor.tenant_id).using_db(conn).first()
        )
        if api_key is None:
            raise NotFound("api_key", api_key_id)
        if api_key.user_id != actor.user_id:
            actor.require_admin()
        elif not actor.scopes & {Scope.WRITE, Scope.ADMIN}:
            # A read-only key (one handed to a reporting tool, say) must not be able to cut
            # off its member's other integrations.
            raise PermissionDenied("revoking an API key needs the 'write' or 'admin' scope")
        if api_key.revoked_at is None:
            api_key.revoked_at = dt.datetime.now(dt.UTC)
            await api_key.save(using_db=conn, update_fields=["revoked_at"])
            await record_event(
                actor,
                ApiKeyRevoked,
                api_key.id,
                after={"prefix": api_key.prefix},
                using_db=conn,
            )
    return api_key


async def authenticate_api_key(token: str) -> Actor:
    """Turn a bearer token into the Actor it stands for, or raise Unauthenticated."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_MARKER:
        raise Unauthenticated("the API key is malformed")
    _, prefix, secret = parts
    api_key = await ApiKey.get_or_none(prefix=prefix)
    if (
        api_key is None
        or api_key.revoked_at is not None
        or not secrets.compare_digest(api_key.secret_hash, _hash_secret(secret))
    ):
        raise Unauthenticated("the API key is unknown or revoked")
    membership = await Membership.get_or_none(tenant_id=api_key.tenant_id, user_id=api_key.user_id)
    if membership is None:
        raise PermissionDenied("the member this API key acts for has left the organization")
    now = dt.datetime.now(dt.UTC)
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        await ApiKey.filter(id=api_key.id).update(last_used_at=now)
    return Actor(
        tenant_id=api_key.tenant_id,
        user_id=api_key.user_id,
        role=membership.role,
        actor_type=ActorType.API_KEY,
        api_key_id=api_key.id,
        scopes=frozenset(Scope(s) for s in api_key.scopes),
    )
