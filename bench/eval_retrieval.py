"""Retrieval quality per language through the product's own search: dense, keyword and fused.

A workspace's memory holds ``--pool`` generated outreach messages per language plus ``--pairs``
labelled documents; each labelled document has a paraphrase (another template of the same
intent filled with the same names, companies, numbers) that is asked as the query. A hit@k is
the document among the top k of:
- dense: ``Memory.dense_search`` (FAISS over all-MiniLM-L6-v2 vectors; an English-trained model);
- keyword: ``crm.services.memory.keyword_search`` (SQLite FTS5 with prefix terms, stop words
  left out; PostgreSQL full text behaves the same way);
- fused: ``Memory.search``, the reciprocal rank fusion the drafts and /ask use; beside it
  variants computed here from the same two rankings: the keyword ranking weighted 1, 0.5 and
  0.25 ("kw xW"), fusion of only the top 5/10/20 of each ("rrf@N"), and plain interleaving.
Baseline in the same run: a random ranking's expected hit@10 (10 / corpus size).
Run: ``python -m bench.eval_retrieval [--quick]`` (a throw-away SQLite database; no services).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.embeddings import Embedder, vector_to_bytes
from agents.memory import CANDIDATES, RRF_K, Memory
from bench.bench_memory import chat_line, paraphrase_pairs
from crm.db import close_db, init_db, migrate_db
from crm.models import MemorySource
from crm.services import memory as store
from crm.services.memory import SourceText
from crm.services.tenants import do_create_tenant

DEPTH = 50
# Keyword weights of the offline fusion variants printed beside the product's own fusion.
KEYWORD_WEIGHTS = (1.0, 0.5, 0.25)


async def _store(memory: Memory, tenant_id: int, texts: list[str], first_id: int) -> list[int]:
    """Embed and store texts as notes of the tenant; their chunk ids, in order."""
    vectors = memory.embedder.encode(texts)
    chunk_ids: list[int] = []
    for offset, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
        source = SourceText(tenant_id, MemorySource.NOTE, first_id + offset, text)
        stored, _ = await store.do_store_chunks(
            source, [(text, vector_to_bytes(vector))], memory.embedder.name
        )
        chunk_ids.append(stored[0].id)
    stamp = await store.index_stamp(tenant_id)
    await memory.registry.add(tenant_id, np.asarray(chunk_ids, dtype=np.int64), vectors, stamp)
    return chunk_ids


def _hit(target: int, ranked: list[int], k: int) -> bool:
    return target in ranked[:k]


def _weighted_rrf(dense: list[int], keyword: list[int], keyword_weight: float) -> list[int]:
    """Reciprocal rank fusion with the keyword ranking down-weighted (ties: newer first)."""
    scores: dict[int, float] = {}
    for weight, ranking in ((1.0, dense), (keyword_weight, keyword)):
        for rank, chunk_id in enumerate(ranking):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (RRF_K + rank + 1)
    return sorted(scores, key=lambda c: (-scores[c], -c))


async def _language(memory: Memory, lang: str, pool: int, pairs: int, seed: int) -> None:
    created = await do_create_tenant(f"Eval {lang}", owner_telegram_id=seed)
    tenant_id = created.tenant.id
    rng = random.Random(seed)
    labelled = paraphrase_pairs(pairs, lang, seed)
    texts = [chat_line(rng, lang) for _ in range(pool)]
    started = time.perf_counter()
    await _store(memory, tenant_id, texts, first_id=1)
    targets = await _store(memory, tenant_id, [doc for _, doc in labelled], first_id=pool + 1)
    loaded = time.perf_counter() - started
    variants = [f"kw x{w:g}" for w in KEYWORD_WEIGHTS]
    names = ("dense", "keyword", "fused", *variants, "rrf@5", "rrf@10", "rrf@20", "interleave")
    hits = {name: [0, 0] for name in names}
    for (query, _), target in zip(labelled, targets, strict=True):
        dense = [i for i, _ in await memory.dense_search(tenant_id, query, CANDIDATES)]
        keyword = [i for i, _ in await store.keyword_search(tenant_id, query, CANDIDATES)]
        fused = [p.chunk.id for p in await memory.search(tenant_id, query, DEPTH)]
        rankings = [("dense", dense), ("keyword", keyword), ("fused", fused)]
        rankings += [
            (name, _weighted_rrf(dense, keyword, w))
            for name, w in zip(variants, KEYWORD_WEIGHTS, strict=True)
        ]
        for depth in (5, 10, 20):
            rankings.append((f"rrf@{depth}", _weighted_rrf(dense[:depth], keyword[:depth], 1.0)))
        inter: list[int] = []
        for pair in zip(dense, keyword, strict=False):
            inter += [c for c in pair if c not in inter]
        rankings.append(("interleave", inter))
        for name, ranked in rankings:
            hits[name][0] += _hit(target, ranked, 1)
            hits[name][1] += _hit(target, ranked, 10)
    size = pool + pairs
    language = {"en": "English", "ru": "Russian"}[lang]
    print(f"\n{language}: {size} messages, random hit@10 {10 / size:.4f}, loaded in {loaded:.0f} s")
    for name, (at1, at10) in hits.items():
        print(f"  {name:<10}{at1 / pairs:>9.3f}{at10 / pairs:>9.3f}", flush=True)


async def run(pool: int, pairs: int, seed: int) -> None:
    """Both languages, one tenant each, in a fresh SQLite database."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite://{Path(folder) / 'eval.sqlite3'}"
        await migrate_db(url)
        await init_db(url)
        try:
            memory = Memory(Embedder(), Path(folder) / "index")
            print(f"{pairs} labelled paraphrase queries per language; corpus = pool + labelled")
            print(f"{'':<12}{'hit@1':>9}{'hit@10':>9}   (fused = Memory.search; kw xW: offline")
            print(f"{'':<12}{'':>18}   fusion with the keyword ranking weighted W)")
            await _language(memory, "en", pool, pairs, seed=seed)
            await _language(memory, "ru", pool, pairs, seed=seed + 2)
        finally:
            await close_db()


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=3000, help="generated messages per language")
    parser.add_argument("--pairs", type=int, default=300, help="labelled queries per language")
    parser.add_argument("--quick", action="store_true", help="500 messages, 60 queries")
    parser.add_argument("--seed", type=int, default=41, help="English seed (Russian: +2)")
    args = parser.parse_args(argv)
    if args.quick:
        args.pool, args.pairs = 500, 60
    asyncio.run(run(args.pool, args.pairs, args.seed))


if __name__ == "__main__":
    main()
