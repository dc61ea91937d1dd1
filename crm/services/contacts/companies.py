"""Companies: CRUD, search by name, counts of linked contacts and deals.

Role rules: every member reads; a bidi creates companies and changes or deletes only companies
they own or that nobody owns; admins and owners change any. A new company is owned by its
creator unless ``owner_id`` says otherwise, and a bidi may assign only themselves or nobody
(otherwise a bidi could hand records to colleagues they may then no longer touch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from crm.errors import (
    Conflict,
    NotFound,
    ValidationFailed,
)
from crm.infrastructure.pagination import Page, SortSpec, paginate_sorted
from crm.models import Company, Contact, Deal
from crm.services.access import Actor
from crm.services.events.catalog import CompanyCreated, CompanyDeleted, CompanyUpdated
from crm.services.events.recording import record_event, save_if_changed, snapshot
from crm.services.references import (
    UNSET,
    Unset,
    check_owner_assignable,
    default_owner,
    lock_in_tenant,
)
from crm.services.text import clean_json, clean_text

COMPANY_SORTS = {
    "name": SortSpec("name_key", "str"),
    "created_at": SortSpec("created_at", "datetime"),
}
_DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")


@dataclass(frozen=True)
class CompanyCounts:
    """How many contacts and deals point at a company."""

    contacts: int
    deals: int


def name_key(name: str) -> str:
    """The case-insensitive key companies are matched by within a tenant."""
    return name.strip().lower()


def _clean_name(name: str) -> str:
    cleaned = clean_text(name).strip()
    if not cleaned:
        raise ValidationFailed("name", "must not be empty")
    if len(cleaned) > 200:
        raise ValidationFailed("name", "must be at most 200 characters")
    return cleaned


def _clean_domain(domain: str | None) -> str | None:
    if domain is None or not domain.strip():
        return None
    cleaned = clean_text(domain).strip().lower()
    for prefix in ("https://", "http://"):
        cleaned = cleaned.removeprefix(prefix)
    cleaned = cleaned.removeprefix("www.").rstrip("/")
    if len(cleaned) > 200 or not _DOMAIN_RE.match(cleaned):
        raise ValidationFailed("domain", f"'{domain.strip()}' is not a domain name")
    return cleaned


async def _check_name_free(
    actor: Actor, key: str, conn: BaseDBAsyncClient, exclude_id: int | None = None
) -> None:
    query = Company.filter(tenant_id=actor.tenant_id, name_key=key).using_db(conn)
    if exclude_id is not None:
        query = query.exclude(id=exclude_id)
    if await query.exists():
        raise Conflict("name", "another company already has this name")


async def access_company(actor: Actor, company_id: int) -> Company:
    """One company of the actor's tenant."""
    actor.require_read()
    company = await Company.get_or_none(id=company_id, tenant_id=actor.tenant_id)
    if company is None:
        raise NotFound("company", company_id)
    return company


async def count_company_links(actor: Actor, company: Company) -> CompanyCounts:
    """Contacts and deals of a company."""
    actor.require_read()
    contacts = await Contact.filter(tenant_id=actor.tenant_id, company_id=company.id).count()
    deals = await Deal.filter(tenant_id=actor.tenant_id, company_id=company.id).count()
    return CompanyCounts(contacts=contacts, deals=deals)


async def list_companies(
    actor: Actor,
    *,
    q: str | None = None,
    sort: str = "name",
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Company]:
    """Companies of the tenant, optionally those whose name contains ``q``."""
    actor.require_read()
    query = Company.filter(tenant_id=actor.tenant_id)
    if q and q.strip():
        query = query.filter(name_key__contains=q.strip().lower())
    return await paginate_sorted(query, sort, COMPANY_SORTS, cursor, limit)


async def do_create_company(
    actor: Actor,
    name: str,
    *,
    domain: str | None = None,
    owner_id: int | Unset | None = UNSET,
    custom_fields: dict[str, Any] | None = None,
) -> Company:
    """Create a company; its name must be new in the tenant, whatever its case."""
    actor.require_write()
    cleaned = _clean_name(name)
    owner = default_owner(actor, owner_id)
    async with in_transaction() as conn:
        await check_owner_assignable(actor, owner, conn)
        await _check_name_free(actor, name_key(cleaned), conn)
        try:
            company = await Company.create(
                tenant_id=actor.tenant_id,
                name=cleaned,
                name_key=name_key(cleaned),
                domain=_clean_domain(domain),
                owner_id=owner,
                custom_fields=clean_json(custom_fields or {}),
                using_db=conn,
            )
        except IntegrityError:
            # Lost a race with a concurrent create of the same name.
            raise Conflict("name", "another company already has this name") from None
        await record_event(
            actor, CompanyCreated, company.id, after=snapshot(company), using_db=conn
        )
    return company


async def do_update_company(
    actor: Actor,
    company_id: int,
    *,
    name: str | Unset = UNSET,
    domain: str | Unset | None = UNSET,
    owner_id: int | Unset | None = UNSET,
    custom_fields: dict[str, Any] | Unset = UNSET,
) -> Company:
    """Change a company (its owner, an unowned company's bidi, or an admin)."""
    actor.require_read()
    async with in_transaction() as conn:
        company = await lock_in_tenant(actor, Company, company_id, "company", conn)
        actor.require_owner_or_admin_of(company.owner_id)
        before = snapshot(company)
        if not isinstance(name, Unset):
            cleaned = _clean_name(name)
            await _check_name_free(actor, name_key(cleaned), conn, exclude_id=company.id)
            company.name = cleaned
            company.name_key = name_key(cleaned)
        if not isinstance(domain, Unset):
            company.domain = _clean_domain(domain)
        if not isinstance(owner_id, Unset) and owner_id != company.owner_id:
            await check_owner_assignable(actor, owner_id, conn)
            company.owner_id = owner_id
        if not isinstance(custom_fields, Unset):
            company.custom_fields = clean_json(custom_fields)
        try:
            await save_if_changed(actor, company, before, CompanyUpdated, using_db=conn)
        except IntegrityError:
            raise Conflict("name", "another company already has this name") from None
    return company


async def do_delete_company(actor: Actor, company_id: int) -> None:
    """Delete a company; its contacts and deals stay, without a company (its notes go)."""
    actor.require_read()
    async with in_transaction() as conn:
        company = await lock_in_tenant(actor, Company, company_id, "company", conn)
        actor.require_owner_or_admin_of(company.owner_id)
        before = snapshot(company)
        await company.delete(using_db=conn)
        await record_event(actor, CompanyDeleted, company_id, before=before, using_db=conn)
