"""Companies, contacts, tags and notes."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from crm.models.accounts import Tenant, User


class Consent(StrEnum):
    """Whether a contact agreed to be messaged."""

    UNKNOWN = "unknown"
    GRANTED = "granted"
    OPTED_OUT = "opted_out"


class Company(Model):
    """An organisation that contacts and deals belong to."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    # Lower-cased name: companies are matched by name case-insensitively within a tenant.
    name_key = fields.CharField(max_length=200)
    domain = fields.CharField(max_length=200, null=True)
    owner: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    custom_fields: dict[str, object] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int
    owner_id: int | None

    class Meta:
        table = "company"
        unique_together = (("tenant", "name_key"),)


class Tag(Model):
    """A label on contacts, unique per tenant regardless of case."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=64)
    name_key = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int

    class Meta:
        table = "tag"
        unique_together = (("tenant", "name_key"),)


class Contact(Model):
    """A person the business talks to."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200, default="")
    title = fields.CharField(max_length=200, null=True)
    company: fields.ForeignKeyNullableRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="contacts", null=True, on_delete=fields.SET_NULL
    )
    phone = fields.CharField(max_length=20, null=True, description="E.164")
    email = fields.CharField(max_length=254, null=True, description="lower-cased")
    telegram_username = fields.CharField(max_length=64, null=True, description="lower-cased, no @")
    telegram_id = fields.BigIntField(null=True)
    whatsapp_id = fields.CharField(max_length=32, null=True)
    # WhatsApp's business-scoped user id ("US.1349..."): the lead's id when they hide their
    # phone behind a username; the parent id is the same person across linked businesses.
    whatsapp_user_id = fields.CharField(max_length=64, null=True)
    whatsapp_parent_user_id = fields.CharField(max_length=64, null=True)
    whatsapp_username = fields.CharField(max_length=64, null=True, description="no @")
    custom_fields: dict[str, object] = fields.JSONField(default=dict)
    owner: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    source = fields.CharField(max_length=64, null=True)
    consent = fields.CharEnumField(Consent, max_length=16, default=Consent.UNKNOWN)
    opted_out_at = fields.DatetimeField(null=True)
    timezone = fields.CharField(max_length=64, null=True)
    score = fields.IntField(default=0)
    # Lower-cased name, email, phone, username joined: what contact search matches against.
    search_text = fields.TextField(default="")
    tags: fields.ManyToManyRelation[Tag] = fields.ManyToManyField(
        "models.Tag", related_name="contacts", through="contact_tag"
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int
    company_id: int | None
    owner_id: int | None

    class Meta:
        table = "contact"
        unique_together = (
            ("tenant", "email"),
            ("tenant", "phone"),
            ("tenant", "telegram_username"),
            ("tenant", "telegram_id"),
            ("tenant", "whatsapp_id"),
            ("tenant", "whatsapp_user_id"),
        )
        # Keyset pagination walks (tenant, sort key, id); filters lead with the tenant.
        indexes = (
            ("tenant_id", "owner_id", "created_at", "id"),
            ("tenant_id", "company_id"),
            ("tenant_id", "name", "id"),
            ("tenant_id", "created_at", "id"),
            ("tenant_id", "updated_at", "id"),
            ("tenant_id", "whatsapp_parent_user_id"),
        )


class Note(Model):
    """A free-text note on a contact, a company or a deal."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    contact: fields.ForeignKeyNullableRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="notes", null=True, on_delete=fields.CASCADE
    )
    company: fields.ForeignKeyNullableRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="notes", null=True, on_delete=fields.CASCADE
    )
    deal: fields.ForeignKeyNullableRelation[Model] = fields.ForeignKeyField(
        "models.Deal", related_name="notes", null=True, on_delete=fields.CASCADE
    )
    author: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    body = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int
    contact_id: int | None
    company_id: int | None
    deal_id: int | None
    author_id: int | None

    class Meta:
        table = "note"
