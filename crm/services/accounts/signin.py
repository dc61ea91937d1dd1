"""Single-use sign-in links: a chat carries a short-lived link, never a reusable API key.

The operator bot's welcome links to the sandbox page with a token; the page exchanges it once
for an API key of its own, scoped to that member and workspace. Only a hash of the token is
stored, and a used or expired token gets a clear error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from crm.errors import FieldError, ServiceError, ValidationFailed
from crm.models import Membership, Role, SignInLink
from crm.services.access import Actor
from crm.services.accounts.api_keys import IssuedKey, do_create_api_key

SIGN_IN_LIFETIME = dt.timedelta(minutes=15)


class SignInInvalid(ServiceError):
    """A sign-in token that is unknown, already used or expired."""

    status = 410
    title = "Sign-in link not valid"

    def __init__(self, code: str, detail: str, *, status: int = 410) -> None:
        super().__init__(detail, [FieldError("token", detail)])
        self.code = code
        self.status = status


def _hash(token: str) -> str:
    # 32 random bytes: a fast hash is enough, there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


async def do_issue_sign_in(actor: Actor, lifetime: dt.timedelta = SIGN_IN_LIFETIME) -> str:
    """A single-use token that signs the actor in to their workspace within ``lifetime``."""
    if actor.user_id is None:
        raise ValidationFailed("user_id", "only a member can be signed in")
    token = secrets.token_urlsafe(32)
    await SignInLink.create(
        tenant_id=actor.tenant_id,
        user_id=actor.user_id,
        token_hash=_hash(token),
        expires_at=dt.datetime.now(dt.UTC) + lifetime,
    )
    return token


async def do_redeem_sign_in(token: str, key_name: str = "sandbox page") -> IssuedKey:
    """Use up ``token``: a read/write API key acting for its member, or SignInInvalid."""
    if not token or len(token) > 200:
        raise SignInInvalid("signin_unknown", "this sign-in link is not valid", status=400)
    link = await SignInLink.get_or_none(token_hash=_hash(token))
    if link is None:
        raise SignInInvalid("signin_unknown", "this sign-in link is not valid", status=400)
    now = dt.datetime.now(dt.UTC)
    if link.used_at is not None:
        raise SignInInvalid("signin_used", "this sign-in link was already used")
    if link.expires_at <= now:
        raise SignInInvalid("signin_expired", "this sign-in link has expired")
    # Conditional update: of two tabs opening the link at once, exactly one signs in.
    claimed = await SignInLink.filter(id=link.id, used_at__isnull=True).update(used_at=now)
    if not claimed:
        raise SignInInvalid("signin_used", "this sign-in link was already used")
    membership = await Membership.get_or_none(tenant_id=link.tenant_id, user_id=link.user_id)
    if membership is None:
        raise SignInInvalid("signin_member_left", "the member of this link left the workspace")
    actor = Actor(tenant_id=link.tenant_id, user_id=link.user_id, role=Role(membership.role))
    return await do_create_api_key(actor, key_name, ["read", "write"])
