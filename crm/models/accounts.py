"""Tenants (workspaces), users, memberships with roles, API keys, and invites."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class Role(StrEnum):
    """The role of a member in a workspace, strongest first."""

    OWNER = "owner"
    ADMIN = "admin"
    BIDI = "bidi"
    VIEWER = "viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.BIDI: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Tenant(Model):
    """A workspace: every other row belongs to exactly one."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    default_region = fields.CharField(max_length=2, default="US")
    default_currency = fields.CharField(max_length=3, default="USD")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "tenant"


class User(Model):
    """A person who operates the CRM, identified by Telegram id and/or email."""

    id = fields.IntField(primary_key=True)
    telegram_id = fields.BigIntField(null=True, unique=True)
    email = fields.CharField(max_length=254, null=True, unique=True)
    name = fields.CharField(max_length=200, default="")
    language = fields.CharField(max_length=8, default="en")
    # IANA zone of the operator (set with /timezone), for the daily digest at their morning.
    timezone = fields.CharField(max_length=64, null=True)
    # The local date of the last daily digest sent, so a restart never sends two in a day.
    digest_sent_on = fields.DateField(null=True)
    # The workspace the operator bot acts in, for people in several (``/workspace``).
    current_tenant: fields.ForeignKeyNullableRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    current_tenant_id: int | None

    class Meta:
        table = "app_user"


class Membership(Model):
    """The role of a user in one tenant."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="memberships", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="memberships", on_delete=fields.CASCADE
    )
    role = fields.CharEnumField(Role, max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    user_id: int

    class Meta:
        table = "membership"
        unique_together = (("tenant", "user"),)


class ApiKey(Model):
    """A bearer key acting for a member, limited by scopes, stored as a hash only."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name="api_keys", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="api_keys", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100, default="")
    prefix = fields.CharField(max_length=16, unique=True)
    secret_hash = fields.CharField(max_length=64)
    scopes: list[str] = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    tenant_id: int
    user_id: int

    class Meta:
        table = "api_key"


class SignInLink(Model):
    """A single-use, short-lived link that signs a member in to a web page, stored as a hash."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    user_id: int

    class Meta:
        table = "sign_in_link"


class Invite(Model):
    """A single-use invitation to join a workspace with a role, stored as a hash of its token."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    role = fields.CharEnumField(Role, max_length=16)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    expires_at = fields.DatetimeField()
    used_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    used_at = fields.DatetimeField(null=True)
    # Set when an admin added someone who already has an account: only they may accept it, in
    # the bot. Such an invite has no link (its token is never shown).
    invitee: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.CASCADE
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    created_by_id: int | None
    used_by_id: int | None
    invitee_id: int | None

    class Meta:
        table = "invite"
