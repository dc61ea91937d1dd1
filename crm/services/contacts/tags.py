"""Tags (labels on contacts, unique per tenant ignoring case) and tagging contacts.

Role rules: every member reads tags; a bidi or above creates tags, and tags or untags the
contacts they may change (their own or unowned ones; admins any). Renaming or deleting a tag is
for admins and owners: a tag is shared by the whole tenant, and renaming or deleting it changes
contacts of every member, which a bidi could not change one by one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from crm.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from crm.infrastructure.pagination import Page, SortSpec, paginate_sorted
from crm.models import Contact, Role, Tag
from crm.services.access import Actor
from crm.services.events.catalog import (
    ContactTagRemoved,
    ContactTagsAdded,
    TagCreated,
    TagDeleted,
    TagUpdated,
)
from crm.services.events.recording import record_event, snapshot
from crm.services.references import lock_in_tenant
from crm.services.text import clean_text

MAX_TAGS_PER_REQUEST = 100
MAX_IDS_IN_EVENT = 1000
TAG_SORTS = {"name": SortSpec("name_key", "str")}


@dataclass(frozen=True)
class TagView:
    """A tag with the number of contacts carrying it."""

    tag: Tag
    contact_count: int


def tag_key(name: str) -> str:
    """The case-insensitive key tags are matched by within a tenant."""
    return name.strip().lower()


def _clean_name(name: str, field: str = "name") -> str:
    cleaned = " ".join(clean_text(name).split())
    if not cleaned:
        raise ValidationFailed(field, "must not be empty")
    if len(cleaned) > 64:
        raise ValidationFailed(field, "must be at most 64 characters")
    return cleaned


def _require_tag_admin(actor: Actor) -> None:
    actor.require_write()
    if not actor.has_role(Role.ADMIN):
        raise PermissionDenied("renaming or deleting a tag needs the role admin or owner")


async def _counts(tag_ids: Sequence[int], conn: BaseDBAsyncClient | None = None) -> dict[int, int]:
    if not tag_ids:
        return {}
    rows = (
        await Tag.filter(id__in=list(tag_ids))
        .using_db(conn)
        .annotate(contact_count=Count("contacts"))
        .group_by("id")
        .values("id", "contact_count")
    )
    return {int(r["id"]): int(r["contact_count"]) for r in rows}


async def _lock_tag(actor: Actor, tag_id: int, conn: BaseDBAsyncClient) -> Tag:
    tag = await lock_in_tenant(actor, Tag, tag_id, "tag", conn)
    return tag


async def _lock_contact(actor: Actor, contact_id: int, conn: BaseDBAsyncClient) -> Contact:
    contact = await lock_in_tenant(actor, Contact, contact_id, "contact", conn)
    return contact


async def _contact_tags(contact: Contact, conn: BaseDBAsyncClient) -> list[Tag]:
    return await contact.tags.all().using_db(conn).order_by("name_key", "id")


async def list_tags(
    actor: Actor, *, q: str | None = None, cursor: str | None = None, limit: int = 50
) -> Page[TagView]:
    """Tags of the tenant by name, each with its number of contacts."""
    actor.require_read()
    query = Tag.filter(tenant_id=actor.tenant_id)
    if q and q.strip():
        query = query.filter(name_key__contains=tag_key(q))
    page = await paginate_sorted(query, "name", TAG_SORTS, cursor, limit)
    counts = await _counts([t.id for t in page.items])
    return Page([TagView(t, counts.get(t.id, 0)) for t in page.items], page.next_cursor)


async def access_tag(actor: Actor, tag_id: int) -> TagView:
    """One tag of the actor's tenant with its number of contacts."""
    actor.require_read()
    tag = await Tag.get_or_none(id=tag_id, tenant_id=actor.tenant_id)
    if tag is None:
        raise NotFound("tag", tag_id)
    return TagView(tag, (await _counts([tag.id])).get(tag.id, 0))


async def _create_tag(actor: Actor, name: str, conn: BaseDBAsyncClient) -> Tag:
    try:
        tag = await Tag.create(
            tenant_id=actor.tenant_id, name=name, name_key=tag_key(name), using_db=conn
        )
    except IntegrityError:
        # A concurrent request created the same tag first.
        raise Conflict("name", f"the tag '{name}' was just created; try again") from None
    await record_event(actor, TagCreated, tag.id, after=snapshot(tag), using_db=conn)
    return tag


async def do_create_tag(actor: Actor, name: str) -> TagView:
    """Create a tag; its name must be new in the tenant, whatever its case."""
    actor.require_write()
    cleaned = _clean_name(name)
    async with in_transaction() as conn:
        exists = (
            await Tag.filter(tenant_id=actor.tenant_id, name_key=tag_key(cleaned))
            .using_db(conn)
            .exists()
        )
        if exists:
            raise Conflict("name", "another tag already has this name")
        tag = await _create_tag(actor, cleaned, conn)
    return TagView(tag, 0)


async def do_rename_tag(actor: Actor, tag_id: int, name: str) -> TagView:
    """Rename a tag (admin); changing only its case is allowed."""
    actor.require_read()
    async with in_transaction() as conn:
        tag = await _lock_tag(actor, tag_id, conn)
        _require_tag_admin(actor)
        cleaned = _clean_name(name)
        taken = (
            await Tag.filter(tenant_id=actor.tenant_id, name_key=tag_key(cleaned))
            .exclude(id=tag.id)
            .using_db(conn)
            .exists()
        )
        if taken:
            raise Conflict("name", "another tag already has this name")
        if cleaned != tag.name:
            before = snapshot(tag)
            tag.name = cleaned
            tag.name_key = tag_key(cleaned)
            await tag.save(using_db=conn)
            await record_event(
                actor,
                TagUpdated,
                tag.id,
                before=before,
                after=snapshot(tag),
                using_db=conn,
            )
        count = (await _counts([tag.id], conn)).get(tag.id, 0)
    return TagView(tag, count)


async def do_delete_tag(actor: Actor, tag_id: int) -> None:
    """Delete a tag (admin), taking it off every contact."""
    actor.require_read()
    async with in_transaction() as conn:
        tag = await _lock_tag(actor, tag_id, conn)
        _require_tag_admin(actor)
        tagged = Contact.filter(tenant_id=actor.tenant_id, tags__id=tag.id).using_db(conn)
        count = await tagged.count()
        # The ids of the contacts it came off, capped so one event stays a reasonable size.
        contact_ids = (
            await tagged.order_by("id").limit(MAX_IDS_IN_EVENT).values_list("id", flat=True)
        )
        before = {**snapshot(tag), "contact_count": count, "contact_ids": list(contact_ids)}
        # contact_tag rows go with the tag (ON DELETE CASCADE).
        await tag.delete(using_db=conn)
        await record_event(actor, TagDeleted, tag_id, before=before, using_db=conn)


async def do_tag_contact(actor: Actor, contact_id: int, names: Sequence[str]) -> list[TagView]:
    """Put tags on a contact by name, creating the ones the tenant lacks; returns its tags."""
    actor.require_read()
    async with in_transaction() as conn:
        contact = await _lock_contact(actor, contact_id, conn)
        actor.require_owner_or_admin_of(contact.owner_id)
        if not names:
            raise ValidationFailed("tags", "give at least one tag name")
        if len(names) > MAX_TAGS_PER_REQUEST:
            raise ValidationFailed("tags", f"at most {MAX_TAGS_PER_REQUEST} tags at once")
        wanted: dict[str, str] = {}
        for i, raw in enumerate(names):
            cleaned = _clean_name(raw, f"tags.{i}")
            wanted.setdefault(tag_key(cleaned), cleaned)
        existing = await Tag.filter(tenant_id=actor.tenant_id, name_key__in=list(wanted)).using_db(
            conn
        )
        by_key = {t.name_key: t for t in existing}
        for key, name in wanted.items():
            if key not in by_key:
                by_key[key] = await _create_tag(actor, name, conn)
        before = [t.name for t in await _contact_tags(contact, conn)]
        await contact.tags.add(*by_key.values(), using_db=conn)
        tags = await _contact_tags(contact, conn)
        after = [t.name for t in tags]
        if after != before:
            await (
                Contact.filter(id=contact.id)
                .using_db(conn)
                .update(updated_at=dt.datetime.now(dt.UTC))
            )
            await record_event(
                actor,
                ContactTagsAdded,
                contact.id,
                before={"tags": before},
                after={"tags": after},
                using_db=conn,
            )
        counts = await _counts([t.id for t in tags], conn)
    return [TagView(t, counts.get(t.id, 0)) for t in tags]


async def do_untag_contact(actor: Actor, contact_id: int, tag_id: int) -> None:
    """Take a tag off a contact; a tag the contact does not carry is a no-op."""
    actor.require_read()
    async with in_transaction() as conn:
        contact = await _lock_contact(actor, contact_id, conn)
        tag = await Tag.filter(id=tag_id, tenant_id=actor.tenant_id).using_db(conn).first()
        if tag is None:
            raise NotFound("tag", tag_id)
        actor.require_owner_or_admin_of(contact.owner_id)
        before = [t.name for t in await _contact_tags(contact, conn)]
        if tag.name not in before:
            return
        await contact.tags.remove(tag, using_db=conn)
        after = [t.name for t in await _contact_tags(contact, conn)]
        await (
            Contact.filter(id=contact.id).using_db(conn).update(updated_at=dt.datetime.now(dt.UTC))
        )
        await record_event(
            actor,
            ContactTagRemoved,
            contact.id,
            before={"tags": before},
            after={"tags": after},
            using_db=conn,
        )
