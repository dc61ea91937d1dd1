"""The knowledge base: documents the AI answers and drafts from, once a worker embedded them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from crm.api.dependencies import ActorDep
from crm.api.schemas import Id, ListOut, PageLimit, StrictModel
from crm.models import KnowledgeDoc
from crm.services.ai import knowledge

router = APIRouter(tags=["ai"])


class DocIn(StrictModel):
    title: str = Field(min_length=1, max_length=knowledge.MAX_TITLE)
    text: str = Field(min_length=1, max_length=knowledge.MAX_TEXT)


class DocPatch(StrictModel):
    title: str | None = Field(default=None, min_length=1, max_length=knowledge.MAX_TITLE)
    text: str | None = Field(default=None, min_length=1, max_length=knowledge.MAX_TEXT)


class DocOut(BaseModel):
    id: int
    title: str
    text: str
    lead: str | None = None  # the name of the lead the passage is about
    created_at: dt.datetime
    updated_at: dt.datetime


def _doc_out(doc: KnowledgeDoc) -> DocOut:
    return DocOut(
        id=doc.id,
        title=doc.title,
        text=doc.text,
        created_at=doc.created_at,
        updated_at=doc.updated_at,
    )


@router.get("/knowledge", response_model=ListOut[DocOut])
async def list_docs(actor: ActorDep, cursor: str | None = None, limit: PageLimit = 50) -> Any:
    """The knowledge base, newest first."""
    page = await knowledge.list_docs(actor, cursor, limit)
    return ListOut(items=[_doc_out(d) for d in page.items], next_cursor=page.next_cursor)


@router.post("/knowledge", response_model=DocOut, status_code=status.HTTP_201_CREATED)
async def post_doc(body: DocIn, actor: ActorDep) -> DocOut:
    """Add a document; it is searchable once a worker embedded it."""
    return _doc_out(await knowledge.do_create_doc(actor, body.title, body.text))


@router.get("/knowledge/{doc_id}", response_model=DocOut)
async def get_doc(doc_id: Id, actor: ActorDep) -> DocOut:
    """One document."""
    return _doc_out(await knowledge.access_doc(actor, doc_id))


@router.patch("/knowledge/{doc_id}", response_model=DocOut)
async def patch_doc(doc_id: Id, body: DocPatch, actor: ActorDep) -> DocOut:
    """Change a document."""
    return _doc_out(await knowledge.do_update_doc(actor, doc_id, body.title, body.text))


@router.delete("/knowledge/{doc_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_doc(doc_id: Id, actor: ActorDep) -> None:
    """Delete a document and its passages."""
    await knowledge.do_delete_doc(actor, doc_id)
