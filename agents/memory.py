"""Memory over a workspace's own chats, notes and knowledge base: embed, index, retrieve.

Retrieval fuses two rankings by their scores: the dense FAISS index (meaning, good in English)
and keyword search in the database (names, numbers, and Russian, which the English-trained
all-MiniLM-L6-v2 handles poorly). Vectors are stored in the database; the per-tenant FAISS
index is derived from them and caught up or rebuilt by any process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.embeddings import Embedder, vector_from_bytes, vector_to_bytes
from agents.index_registry import IndexRegistry
from agents.languages import detect_language
from agents.multilingual import MULTILINGUAL_LANGUAGES, MultilingualEncoder
from crm.models import MemoryChunk, MemorySource
from crm.services.ai import memory as store

logger = logging.getLogger(__name__)

CANDIDATES = 40  # per ranking, before fusion and filters
# Share of the dense ranking in the fused score; keyword search has the rest. Chosen with
# bench.eval_retrieval on one seed and checked on another: meaning leads, words break ties.
# Rank fusion (RRF, k=60) let keyword matches of the same wording with other names and numbers
# push the right passages out of the top 10 (English hit@10 0.62 against 0.73 for this).
DENSE_WEIGHT = 0.7


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with where it came from and why it ranked."""

    chunk: MemoryChunk
    score: float
    dense: float | None
    keyword: float | None

    @property
    def text(self) -> str:
        """The passage's text."""
        return self.chunk.text


class Memory:
    """Embeds sources into the database and the tenant's index; answers hybrid searches."""

    def __init__(
        self,
        embedder: Embedder,
        index_dir: Path,
        multilingual: MultilingualEncoder | None = None,
    ) -> None:
        self.embedder = embedder
        # Russian messages also get a multilingual vector, for the offline drafter.
        self.multilingual = multilingual
        self.registry = IndexRegistry(index_dir, self._load_vectors, store.index_stamp)
        self._tenant_locks: dict[int, asyncio.Lock] = {}

    async def _load_vectors(self, tenant_id: int) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        async for ids, blobs in store.stored_vectors(tenant_id):
            vectors = np.vstack([vector_from_bytes(b) for b in blobs]).astype(np.float32)
            yield np.asarray(ids, dtype=np.int64), vectors

    def _lock(self, tenant_id: int) -> asyncio.Lock:
        lock = self._tenant_locks.get(tenant_id)
        if lock is None:
            lock = self._tenant_locks[tenant_id] = asyncio.Lock()
        return lock

    async def remember(self, source: MemorySource, source_id: int) -> int:
        """Embed a source's current text into memory (or forget it); returns chunks written."""
        current = await store.source_text(source, source_id)
        if current is None:
            tenant_id = await _tenant_of_chunks(source, source_id)
            if tenant_id is None:
                return 0
            current = store.SourceText(tenant_id, source, source_id, "")
        parts = store.split_text(current.text)
        vectors = await self.embedder.aencode(parts) if parts else np.zeros((0, 0))
        chunks = [(text, vector_to_bytes(vectors[i])) for i, text in enumerate(parts)]
        multilingual = await self._multilingual_vectors(source, parts)
        async with self._lock(current.tenant_id):
            stored, removed = await store.do_store_chunks(
                current, chunks, self.embedder.name, multilingual
            )
            if stored or removed:
                stamp = await store.index_stamp(current.tenant_id)
                if removed:
                    await self.registry.remove(current.tenant_id, removed, stamp)
                if stored:
                    ids = np.asarray([c.id for c in stored], dtype=np.int64)
                    rows = [parts.index(c.text) for c in stored]
                    await self.registry.add(current.tenant_id, ids, vectors[rows], stamp)
        return len(stored)

    async def _multilingual_vectors(
        self, source: MemorySource, parts: Sequence[str]
    ) -> list[bytes | None]:
        """Multilingual vectors of the message parts in a language MiniLM misses, else None."""
        if self.multilingual is None or source is not MemorySource.MESSAGE:
            return []
        wanted = [p for p in parts if detect_language(p) in MULTILINGUAL_LANGUAGES]
        if not wanted:
            return []
        vectors = await self.multilingual.aencode(wanted)
        return [vector_to_bytes(vectors[p]) if p in vectors else None for p in parts]

    async def search(
        self,
        tenant_id: int,
        query: str,
        k: int = 8,
        *,
        sources: Sequence[MemorySource] | None = None,
        direction: str | None = None,
        exclude_conversation: int | None = None,
        query_source: tuple[MemorySource, int] | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[Passage]:
        """The ``k`` passages of the tenant that best match ``query``, best first.

        ``query_source`` names the record the query's text comes from (a lead message): when
        a worker already embedded it, its stored vector is used instead of encoding again.
        ``query_vector``, when the caller has the query's embedding already, skips both.
        """
        query = query.strip()
        if not query:
            return []
        dense = await self.dense_search(tenant_id, query, CANDIDATES, query_source, query_vector)
        keyword = await store.keyword_search(tenant_id, query, CANDIDATES)
        fused = fuse(dense, keyword, depth=CANDIDATES)
        dense_scores = dict(dense)
        keyword_scores = dict(keyword)
        chunks = await store.chunks_by_id(tenant_id, [chunk_id for chunk_id, _ in fused])
        passages = []
        for chunk_id, score in fused:
            chunk = chunks.get(chunk_id)
            if chunk is None:
                continue  # deleted since it was indexed
            if sources is not None and chunk.source not in sources:
                continue
            if direction is not None and chunk.direction != direction:
                continue
            if exclude_conversation is not None and chunk.conversation_id == exclude_conversation:
                continue
            passages.append(
                Passage(chunk, score, dense_scores.get(chunk_id), keyword_scores.get(chunk_id))
            )
            if len(passages) >= k:
                break
        return passages

    async def dense_search(
        self,
        tenant_id: int,
        query: str,
        k: int,
        query_source: tuple[MemorySource, int] | None = None,
        query_vector: np.ndarray | None = None,
    ) -> list[tuple[int, float]]:
        """Nearest chunks by meaning: (chunk id, cosine similarity), best first."""
        vector = (
            query_vector
            if query_vector is not None
            else await self._query_vector(tenant_id, query, query_source)
        )
        index = await self.registry.get(tenant_id)
        if index.ntotal == 0:
            return []
        return index.search(vector, k)

    async def query_vector(
        self, tenant_id: int, query: str, query_source: tuple[MemorySource, int] | None = None
    ) -> np.ndarray:
        """The query's embedding: the stored vector of ``query_source`` when it matches."""
        return await self._query_vector(tenant_id, query, query_source)

    async def _query_vector(
        self, tenant_id: int, query: str, query_source: tuple[MemorySource, int] | None
    ) -> np.ndarray:
        if query_source is not None:
            stored = await store.sole_chunk(tenant_id, *query_source)
            # Only when the stored vector embeds exactly this text, with this model.
            if (
                stored is not None
                and stored.vector
                and stored.model == self.embedder.name
                and store.split_text(query) == [stored.text]
            ):
                return vector_from_bytes(stored.vector)
        return (await self.embedder.aencode([query]))[0]

    async def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts' embeddings."""
        vectors = await self.embedder.aencode([a, b])
        return float(np.dot(vectors[0], vectors[1]))

    async def flush(self) -> None:
        """Write changed indexes to disk."""
        await self.registry.flush()


def fuse(
    dense: Sequence[tuple[int, float]],
    keyword: Sequence[tuple[int, float]],
    dense_weight: float = DENSE_WEIGHT,
    depth: int = CANDIDATES,
) -> list[tuple[int, float]]:
    """Relative score fusion: each ranking's scores scaled to 0..1, then weighted and added.

    A ranking's best score maps to 1. Its floor is its last candidate's score when it returned
    ``depth`` of them (worse chunks exist beyond), else 0: a short list holds every match, and
    its weakest match is still a match. A chunk missing from a ranking scores 0 there.
    Returns (chunk id, fused score), best first; ties go to the newer chunk.
    """
    fused: dict[int, float] = {}
    for weight, ranking in ((dense_weight, dense), (1.0 - dense_weight, keyword)):
        if not ranking:
            continue
        top = max(score for _, score in ranking)
        low = min(score for _, score in ranking) if len(ranking) >= depth else 0.0
        spread = top - low
        for chunk_id, score in ranking:
            scaled = max(0.0, (score - low) / spread) if spread > 0 else 1.0
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight * scaled
    return sorted(fused.items(), key=lambda item: (-item[1], -item[0]))


async def _tenant_of_chunks(source: MemorySource, source_id: int) -> int | None:
    row = await MemoryChunk.filter(source=source, source_id=source_id).first()
    return row.tenant_id if row is not None else None
