"""Notes on exactly one contact, company or deal.

Role rules: every member reads every note of the tenant; a bidi or above writes notes on any
record of the tenant (a note adds to a record without changing it), and the author of the note
is the acting member. Only the author, or an admin or owner, edits or deletes a note; a note
without an author (written by the system, or whose author was removed) is for admins only.
"""

from __future__ import annotations

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.transactions import in_transaction

from crm.errors import NotFound, PermissionDenied, ValidationFailed
from crm.infrastructure.pagination import Page, SortSpec, paginate_sorted
from crm.models import Company, Contact, Deal, Note, Role
from crm.services.access import Actor
from crm.services.events.catalog import NoteCreated, NoteDeleted, NoteUpdated
from crm.services.events.recording import record_event, snapshot
from crm.services.references import lock_in_tenant, require_in_tenant
from crm.services.text import clean_text

MAX_BODY = 20_000
TARGETS: dict[str, type[Model]] = {"contact_id": Contact, "company_id": Company, "deal_id": Deal}
NOTE_SORTS = {"created_at": SortSpec("created_at", "datetime")}


def _clean_body(body: str) -> str:
    cleaned = clean_text(body).strip()
    if not cleaned:
        raise ValidationFailed("body", "must not be empty")
    if len(cleaned) > MAX_BODY:
        raise ValidationFailed("body", f"must be at most {MAX_BODY} characters")
    return cleaned


def _check_may_change(actor: Actor, note: Note) -> None:
    actor.require_write()
    if note.author_id is not None and note.author_id == actor.user_id:
        return
    if not actor.has_role(Role.ADMIN):
        raise PermissionDenied("only the author of a note or an admin may change it")


async def _lock_note(actor: Actor, note_id: int, conn: BaseDBAsyncClient) -> Note:
    note = await lock_in_tenant(actor, Note, note_id, "note", conn)
    return note


async def access_note(actor: Actor, note_id: int) -> Note:
    """One note of the actor's tenant."""
    actor.require_read()
    note = await Note.get_or_none(id=note_id, tenant_id=actor.tenant_id)
    if note is None:
        raise NotFound("note", note_id)
    return note


async def list_notes(
    actor: Actor,
    *,
    contact_id: int | None = None,
    company_id: int | None = None,
    deal_id: int | None = None,
    sort: str = "-created_at",
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Note]:
    """Notes of the tenant, newest first by default, optionally those on one record."""
    actor.require_read()
    query = Note.filter(tenant_id=actor.tenant_id)
    if contact_id is not None:
        query = query.filter(contact_id=contact_id)
    if company_id is not None:
        query = query.filter(company_id=company_id)
    if deal_id is not None:
        query = query.filter(deal_id=deal_id)
    return await paginate_sorted(query, sort, NOTE_SORTS, cursor, limit)


async def do_create_note(
    actor: Actor,
    body: str,
    *,
    contact_id: int | None = None,
    company_id: int | None = None,
    deal_id: int | None = None,
) -> Note:
    """Write a note on exactly one of a contact, a company or a deal."""
    actor.require_write()
    given = {
        name: value
        for name, value in (
            ("contact_id", contact_id),
            ("company_id", company_id),
            ("deal_id", deal_id),
        )
        if value is not None
    }
    if len(given) != 1:
        field = list(given)[1] if given else "contact_id"
        raise ValidationFailed(field, "give exactly one of contact_id, company_id, deal_id")
    ((target_field, target_id),) = given.items()
    cleaned = _clean_body(body)
    async with in_transaction() as conn:
        await require_in_tenant(actor, TARGETS[target_field], target_id, target_field, conn)
        note = await Note.create(
            tenant_id=actor.tenant_id,
            body=cleaned,
            author_id=actor.user_id,
            using_db=conn,
            **given,
        )
        await record_event(actor, NoteCreated, note.id, after=snapshot(note), using_db=conn)
    return note


async def do_update_note(actor: Actor, note_id: int, body: str) -> Note:
    """Change the text of a note (its author or an admin)."""
    actor.require_read()
    async with in_transaction() as conn:
        note = await _lock_note(actor, note_id, conn)
        _check_may_change(actor, note)
        cleaned = _clean_body(body)
        if cleaned == note.body:
            return note
        before = snapshot(note)
        note.body = cleaned
        await note.save(using_db=conn)
        await record_event(
            actor,
            NoteUpdated,
            note.id,
            before=before,
            after=snapshot(note),
            using_db=conn,
        )
    return note


async def do_delete_note(actor: Actor, note_id: int) -> None:
    """Delete a note (its author or an admin)."""
    actor.require_read()
    async with in_transaction() as conn:
        note = await _lock_note(actor, note_id, conn)
        _check_may_change(actor, note)
        before = snapshot(note)
        await note.delete(using_db=conn)
        await record_event(actor, NoteDeleted, note_id, before=before, using_db=conn)
