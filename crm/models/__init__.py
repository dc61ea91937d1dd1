"""Tortoise models of the CRM, one module per aggregate."""

from crm.models.contacts import Company, Consent, Contact, Note, Tag
from crm.models.events import Event, HandledEvent, OutboxEntry
from crm.models.pipelines import Deal, DealStageChange, Pipeline, Stage, StageKind
from crm.models.tenancy import ROLE_RANK, ApiKey, Membership, Role, Tenant, User

__all__ = [
    "ROLE_RANK",
    "ApiKey",
    "Company",
    "Consent",
    "Contact",
    "Deal",
    "DealStageChange",
    "Event",
    "HandledEvent",
    "Membership",
    "Note",
    "OutboxEntry",
    "Pipeline",
    "Role",
    "Stage",
    "StageKind",
    "Tag",
    "Tenant",
    "User",
]
