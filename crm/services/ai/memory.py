"""The AI's memory in the database: passages of messages, notes and knowledge, with vectors.

Workers cut each source into chunks, embed them (the AI edge) and store vector and text here;
the FAISS index of a tenant is derived state, rebuilt from these rows by any process. Keyword
search runs here too (SQLite FTS5, PostgreSQL full text), because the embedding model misses
exact names, numbers and most Russian paraphrases.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from tortoise import connections
from tortoise.transactions import in_transaction

from crm.models import (
    Contact,
    Conversation,
    Direction,
    KnowledgeDoc,
    MemoryChunk,
    MemorySource,
    Message,
    Note,
)

CHUNK_CHARS = 700
CHUNK_OVERLAP = 100
# Words longer than this lose their last two letters as a query term (a prefix of 4 or more).
STEM_FROM = 6
_WORD_RE = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SourceText:
    """One source to remember: where it is from and its text (empty: forget it)."""

    tenant_id: int
    source: MemorySource
    source_id: int
    text: str
    conversation_id: int | None = None
    contact_id: int | None = None
    direction: str = ""


@dataclass(frozen=True)
class StoredChunk:
    """A chunk written to the database, ready to go into the tenant's index."""

    id: int
    text: str


def split_text(text: str, limit: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """Cut a long text into passages of about ``limit`` characters, at paragraph or word ends."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    parts: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + limit)
        if end < len(text):
            cut = max(text.rfind("\n", start, end), text.rfind(". ", start, end))
            if cut <= start + limit // 2:
                cut = text.rfind(" ", start, end)
            if cut > start + limit // 2:
                end = cut + 1
        parts.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
        # Start the overlap at a word boundary.
        space = text.find(" ", start, end)
        if space != -1:
            start = space + 1
    return [p for p in parts if p]


async def source_text(source: MemorySource, source_id: int) -> SourceText | None:
    """Load what a source says now (None when it no longer exists)."""
    if source is MemorySource.MESSAGE:
        message = await Message.get_or_none(id=source_id)
        if message is None:
            return None
        conversation = await Conversation.get_or_none(id=message.conversation_id)
        text = "" if message.deleted else (message.text or "")
        return SourceText(
            tenant_id=message.tenant_id,
            source=source,
            source_id=source_id,
            text=text,
            conversation_id=message.conversation_id,
            contact_id=conversation.contact_id if conversation else None,
            direction=message.direction.value,
        )
    if source is MemorySource.NOTE:
        note = await Note.get_or_none(id=source_id)
        if note is None:
            return None
        return SourceText(
            tenant_id=note.tenant_id,
            source=source,
            source_id=source_id,
            text=note.body,
            contact_id=note.contact_id,
            direction=Direction.NOTE.value,
        )
    doc = await KnowledgeDoc.get_or_none(id=source_id)
    if doc is None:
        return None
    return SourceText(
        tenant_id=doc.tenant_id,
        source=source,
        source_id=source_id,
        text=f"{doc.title}\n{doc.text}",
    )


async def do_store_chunks(
    source: SourceText,
    chunks: Sequence[tuple[str, bytes]],
    model: str,
    multilingual: Sequence[bytes | None] = (),
) -> tuple[list[StoredChunk], list[int]]:
    """Replace the chunks of a source with ``chunks`` (text, vector); returns (new, removed ids).

    ``multilingual`` gives each chunk's multilingual vector (None or missing: none). Unchanged
    chunks keep their ids (a redelivered event changes nothing; a multilingual vector it lacked
    is added in place); changed or dropped ones are deleted and the new ones inserted, in one
    transaction.
    """
    async with in_transaction() as conn:
        existing = (
            await MemoryChunk.filter(
                tenant_id=source.tenant_id, source=source.source, source_id=source.source_id
            )
            .using_db(conn)
            .order_by("part")
        )
        by_part = {chunk.part: chunk for chunk in existing}
        removed: list[int] = []
        stored: list[StoredChunk] = []
        for part, (text, vector) in enumerate(chunks):
            meaning = multilingual[part] if part < len(multilingual) else None
            old = by_part.pop(part, None)
            if old is not None and old.text == text and old.vector == vector:
                if meaning is not None and old.multilingual_vector != meaning:
                    old.multilingual_vector = meaning
                    await old.save(update_fields=["multilingual_vector"], using_db=conn)
                continue
            if old is not None:
                removed.append(old.id)
                await old.delete(using_db=conn)
            row = await MemoryChunk.create(
                tenant_id=source.tenant_id,
                source=source.source,
                source_id=source.source_id,
                part=part,
                conversation_id=source.conversation_id,
                contact_id=source.contact_id,
                direction=source.direction,
                text=text,
                vector=vector,
                model=model,
                multilingual_vector=meaning,
                using_db=conn,
            )
            stored.append(StoredChunk(row.id, text))
        for leftover in by_part.values():
            removed.append(leftover.id)
            await leftover.delete(using_db=conn)
    return stored, removed


async def sole_chunk(tenant_id: int, source: MemorySource, source_id: int) -> MemoryChunk | None:
    """The one stored chunk of a source; None when it has none or several."""
    rows = await MemoryChunk.filter(tenant_id=tenant_id, source=source, source_id=source_id).limit(
        2
    )
    return rows[0] if len(rows) == 1 else None


async def index_stamp(tenant_id: int) -> str:
    """A version of a tenant's stored vectors: their count and highest id."""
    conn = connections.get("default")
    _, rows = await conn.execute_query(
        "SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS top FROM memory_chunk "
        "WHERE tenant_id = $1 AND vector IS NOT NULL"
        if conn.capabilities.dialect == "postgres"
        else "SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS top FROM memory_chunk "
        "WHERE tenant_id = ? AND vector IS NOT NULL",
        [tenant_id],
    )
    row = rows[0]
    return f"{int(row['n'])}:{int(row['top'])}"


async def stored_vectors(
    tenant_id: int, batch: int = 5000
) -> AsyncIterator[tuple[list[int], list[bytes]]]:
    """Every stored vector of a tenant, in id order, ``batch`` rows at a time."""
    last = 0
    while True:
        rows = (
            await MemoryChunk.filter(tenant_id=tenant_id, id__gt=last, vector__isnull=False)
            .order_by("id")
            .limit(batch)
            .values_list("id", "vector")
        )
        if not rows:
            return
        yield [int(r[0]) for r in rows], [bytes(r[1]) for r in rows]
        last = int(rows[-1][0])


async def chunks_by_id(tenant_id: int, ids: Sequence[int]) -> dict[int, MemoryChunk]:
    """Chunks of the tenant among ``ids`` (others are silently left out)."""
    if not ids:
        return {}
    rows = await MemoryChunk.filter(tenant_id=tenant_id, id__in=list(ids))
    return {row.id: row for row in rows}


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().replace("ё", "е")


# Words nearly every chat message has (English and Russian): as query terms they match most
# of a tenant's history, which costs time and tells the ranking nothing.
_STOPWORD_TEXT = """
a an the and or but of to in on at for from by with about as is are was be been am do
does did can could would will shall should may might must it its this that these those
i im me my we our us you your he she they them his her their what which who how when
where why so if then than not no yes just also very hi hello hey dear thanks thank please
ok okay there here have has had get got let lets
и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только
ее её мне было вот от меня еще ещё нет о об из ему когда даже ну ли если уже или ни быть был
до вас вам ведь там потом себя ей может они тут где есть надо для мы тебя их чем была сам
без чего раз тоже себе под будет тогда кто этот это эти мой наш ваш вашей нам нас добрый
день здравствуйте привет спасибо пожалуйста
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def query_terms(query: str, limit: int = 12) -> list[str]:
    """The words of a query as prefixes: a poor man's stemmer that works in any language.

    Words longer than five letters lose their last two (цены, цена -> цен; pricing -> prici),
    so inflected forms match without a language-specific stemmer. Numbers stay whole (an
    invoice 174420 is not 1744...). Stop words are left out, unless the query has nothing else.
    """
    words = _WORD_RE.findall(_normalize(query))
    meaningful = [w for w in words if w.replace("ё", "е") not in STOPWORDS]
    terms: list[str] = []
    for word in meaningful or words:
        if word.isdigit():
            stem = word
        elif len(word) < 2:
            continue
        else:
            stem = word[:-2] if len(word) >= STEM_FROM else word
        if stem not in terms:
            terms.append(stem)
    return terms[:limit]


def _matches_by_prefix(term: str) -> bool:
    """Words match their inflections by prefix; numbers (kept whole by query_terms) only as is."""
    return not term.isdigit()


async def keyword_search(tenant_id: int, query: str, limit: int = 20) -> list[tuple[int, float]]:
    """Chunks whose words match the query's, best first: (chunk id, score)."""
    terms = query_terms(query)
    if not terms:
        return []
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        tsquery = " | ".join(f"{t}:*" if _matches_by_prefix(t) else t for t in terms)
        # text_tsv is a stored generated column (migration 0011): nothing is parsed per row.
        sql = (
            "SELECT id, ts_rank(text_tsv, to_tsquery('simple', $2)) AS score "
            "FROM memory_chunk WHERE tenant_id = $1 "
            "AND text_tsv @@ to_tsquery('simple', $2) "
            "ORDER BY score DESC, id DESC LIMIT $3"
        )
        _, rows = await conn.execute_query(sql, [tenant_id, tsquery, limit])
        return [(int(r["id"]), float(r["score"])) for r in rows]
    match = " OR ".join(f'"{t}"*' if _matches_by_prefix(t) else f'"{t}"' for t in terms)
    sql = (
        "SELECT c.id AS id, -bm25(memory_chunk_fts) AS score FROM memory_chunk_fts "
        "JOIN memory_chunk c ON c.id = memory_chunk_fts.rowid "
        "WHERE memory_chunk_fts MATCH ? AND c.tenant_id = ? "
        "ORDER BY bm25(memory_chunk_fts), c.id DESC LIMIT ?"
    )
    _, rows = await conn.execute_query(sql, [match, tenant_id, limit])
    return [(int(r["id"]), float(r["score"])) for r in rows]


async def reply_after(tenant_id: int, chunk: MemoryChunk) -> MemoryChunk | None:
    """The business's first reply after a lead message chunk, in the same conversation."""
    if chunk.source is not MemorySource.MESSAGE or chunk.conversation_id is None:
        return None
    return (
        await MemoryChunk.filter(
            tenant_id=tenant_id,
            conversation_id=chunk.conversation_id,
            source=MemorySource.MESSAGE,
            direction=Direction.OUT.value,
            source_id__gt=chunk.source_id,
        )
        .order_by("source_id", "part")
        .first()
    )


async def contact_names(contact_ids: Sequence[int]) -> dict[int, str]:
    """Names of contacts by id (for adjusting a reuse of another lead's reply)."""
    if not contact_ids:
        return {}
    rows = await Contact.filter(id__in=list(set(contact_ids))).values_list("id", "name")
    return {int(r[0]): str(r[1] or "") for r in rows}
