"""The knowledge base of a workspace: documents the AI answers from (prices, FAQ, terms)."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from crm.errors import NotFound, ValidationFailed
from crm.infrastructure.pagination import Page, paginate_by_id
from crm.models import KnowledgeDoc
from crm.services.access import Actor
from crm.services.events.catalog import KnowledgeCreated, KnowledgeDeleted, KnowledgeUpdated
from crm.services.events.recording import record_event, snapshot
from crm.services.references import lock_in_tenant
from crm.services.text import clean_text

MAX_TITLE = 200
MAX_TEXT = 200_000
EVENT_CHARS = 200


def _clean(title: str, text: str) -> tuple[str, str]:
    title, text = clean_text(title).strip(), clean_text(text).strip()
    if not title:
        raise ValidationFailed("title", "must not be empty")
    if len(title) > MAX_TITLE:
        raise ValidationFailed("title", f"must be at most {MAX_TITLE} characters")
    if not text:
        raise ValidationFailed("text", "must not be empty")
    if len(text) > MAX_TEXT:
        raise ValidationFailed("text", f"must be at most {MAX_TEXT} characters")
    return title, text


def _summary(doc: KnowledgeDoc) -> dict[str, object]:
    return {"title": doc.title, "text": doc.text[:EVENT_CHARS], "chars": len(doc.text)}


async def access_doc(actor: Actor, doc_id: int) -> KnowledgeDoc:
    """A document of the actor's workspace."""
    actor.require_read()
    doc = await KnowledgeDoc.get_or_none(id=doc_id, tenant_id=actor.tenant_id)
    if doc is None:
        raise NotFound("knowledge document", doc_id)
    return doc


async def list_docs(actor: Actor, cursor: str | None, limit: int) -> Page[KnowledgeDoc]:
    """The workspace's documents, newest first."""
    actor.require_read()
    query = KnowledgeDoc.filter(tenant_id=actor.tenant_id)
    return await paginate_by_id(query, cursor, limit, descending=True)


async def do_create_doc(actor: Actor, title: str, text: str) -> KnowledgeDoc:
    """Add a document; workers embed it for retrieval."""
    actor.require_write()
    title, text = _clean(title, text)
    async with in_transaction() as conn:
        doc = await KnowledgeDoc.create(
            tenant_id=actor.tenant_id,
            title=title,
            text=text,
            created_by_id=actor.user_id,
            using_db=conn,
        )
        await record_event(actor, KnowledgeCreated, doc.id, after=_summary(doc), using_db=conn)
    return doc


async def do_update_doc(
    actor: Actor, doc_id: int, title: str | None, text: str | None
) -> KnowledgeDoc:
    """Change a document's title or text; its passages are re-embedded."""
    actor.require_write()
    async with in_transaction() as conn:
        doc = await lock_in_tenant(actor, KnowledgeDoc, doc_id, "knowledge document", conn)
        before = _summary(doc)
        doc.title, doc.text = _clean(
            doc.title if title is None else title, doc.text if text is None else text
        )
        await doc.save(using_db=conn)
        await record_event(
            actor,
            KnowledgeUpdated,
            doc.id,
            before=before,
            after=_summary(doc),
            using_db=conn,
        )
    return doc


async def do_delete_doc(actor: Actor, doc_id: int) -> None:
    """Delete a document; its passages leave the AI's memory."""
    actor.require_write()
    async with in_transaction() as conn:
        doc = await lock_in_tenant(actor, KnowledgeDoc, doc_id, "knowledge document", conn)
        before = snapshot(doc)
        await doc.delete(using_db=conn)
        await record_event(actor, KnowledgeDeleted, doc_id, before=before, using_db=conn)
