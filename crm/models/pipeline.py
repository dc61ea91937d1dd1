"""Pipelines, their ordered stages, deals and each deal's stage history."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

from crm.models.accounts import Tenant, User
from crm.models.contacts import Company, Contact


class StageKind(StrEnum):
    """Whether a deal in a stage is still open, won or lost."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class Pipeline(Model):
    """An ordered set of stages deals move through."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100)
    is_default = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int

    class Meta:
        table = "pipeline"


class Stage(Model):
    """One step of a pipeline, ``position`` orders the stages from 0."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    pipeline: fields.ForeignKeyRelation[Pipeline] = fields.ForeignKeyField(
        "models.Pipeline", related_name="stages", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100)
    position = fields.IntField()
    kind = fields.CharEnumField(StageKind, max_length=8, default=StageKind.OPEN)

    tenant_id: int
    pipeline_id: int

    class Meta:
        table = "stage"
        ordering = ["position", "id"]


class Deal(Model):
    """An opportunity with a value, moving through the stages of a pipeline."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    title = fields.CharField(max_length=200)
    pipeline: fields.ForeignKeyRelation[Pipeline] = fields.ForeignKeyField(
        "models.Pipeline", related_name="deals", on_delete=fields.RESTRICT
    )
    stage: fields.ForeignKeyRelation[Stage] = fields.ForeignKeyField(
        "models.Stage", related_name="deals", on_delete=fields.RESTRICT
    )
    contact: fields.ForeignKeyNullableRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="deals", null=True, on_delete=fields.SET_NULL
    )
    company: fields.ForeignKeyNullableRelation[Company] = fields.ForeignKeyField(
        "models.Company", related_name="deals", null=True, on_delete=fields.SET_NULL
    )
    owner: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    value = fields.DecimalField(max_digits=18, decimal_places=2, default=0)
    currency = fields.CharField(max_length=3, default="USD")
    stage_changed_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    tenant_id: int
    pipeline_id: int
    stage_id: int
    contact_id: int | None
    company_id: int | None
    owner_id: int | None

    class Meta:
        table = "deal"
        indexes = (
            ("tenant_id", "stage_id"),
            ("tenant_id", "contact_id"),
            ("tenant_id", "owner_id"),
        )


class DealStageChange(Model):
    """One move of a deal from a stage to another: its stage history."""

    id = fields.IntField(primary_key=True)
    tenant: fields.ForeignKeyRelation[Tenant] = fields.ForeignKeyField(
        "models.Tenant", related_name=False, on_delete=fields.CASCADE
    )
    deal: fields.ForeignKeyRelation[Deal] = fields.ForeignKeyField(
        "models.Deal", related_name="stage_history", on_delete=fields.CASCADE
    )
    from_stage: fields.ForeignKeyNullableRelation[Stage] = fields.ForeignKeyField(
        "models.Stage", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    to_stage: fields.ForeignKeyNullableRelation[Stage] = fields.ForeignKeyField(
        "models.Stage", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    changed_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL
    )
    changed_at = fields.DatetimeField(auto_now_add=True)

    tenant_id: int
    deal_id: int
    from_stage_id: int | None
    to_stage_id: int | None
    changed_by_id: int | None

    class Meta:
        table = "deal_stage_change"
        ordering = ["changed_at", "id"]
