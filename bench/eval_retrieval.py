"""Retrieval quality per language through the product's own search: dense, keyword and fused.

A workspace's memory holds ``--pool`` generated outreach messages per language plus ``--pairs``
labelled documents; each labelled document has a paraphrase (another template of the same
intent filled with the same names, companies, numbers) that is asked as the query. Relevant to
a query is every stored line that says the same thing: its paraphrase, and any generated line of
the same intent with the same values (the generator draws from small pools, so a line worded as
the query itself turns up too). A hit@k is a relevant line among the top k of:
- dense: ``Memory.dense_search`` (FAISS over all-MiniLM-L6-v2 vectors; an English-trained model);
- keyword: ``crm.services.ai.memory.keyword_search`` (SQLite FTS5 with prefix terms, stop words
  left out; PostgreSQL full text behaves the same way);
- fused: ``Memory.search``, the drafts' and /ask's relative score fusion (each ranking's scores
  scaled to 0..1, dense weighted ``DENSE_WEIGHT``); beside it variants computed here from the
  same two rankings: other dense weights ("rsf dW"), reciprocal rank fusion with k=60 ("rrf",
  the product's fusion before; "rrf kw x0.5" with the keyword ranking weighted 0.5) and plain
  interleaving. MRR@10 is the mean of 1 / rank of the first relevant line (0 beyond 10).
Baseline in the same run: a random ranking's expected hit@10 (10 x relevant / corpus size).
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
from agents.memory import CANDIDATES, DENSE_WEIGHT, Memory, fuse
from bench.bench_memory import Meaning, labelled_chat_line, paraphrase_cases
from crm.db import close_db, init_db, migrate_db
from crm.models import MemorySource
from crm.services.accounts.workspaces import do_create_tenant
from crm.services.ai import memory as store
from crm.services.ai.memory import SourceText

DEPTH = 50
RRF_K = 60  # the usual reciprocal-rank-fusion constant (the product's fusion before this one)
# Dense weights of the relative-score-fusion variants printed beside the product's own.
DENSE_WEIGHTS = (0.5, 0.85)


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


def _hit(relevant: set[int], ranked: list[int], k: int) -> bool:
    return not relevant.isdisjoint(ranked[:k])


def _reciprocal_rank(relevant: set[int], ranked: list[int], k: int) -> float:
    for rank, chunk_id in enumerate(ranked[:k], start=1):
        if chunk_id in relevant:
            return 1.0 / rank
    return 0.0


def _rrf(dense: list[int], keyword: list[int], keyword_weight: float) -> list[int]:
    """Reciprocal rank fusion, the keyword ranking weighted (ties: newer first)."""
    scores: dict[int, float] = {}
    for weight, ranking in ((1.0, dense), (keyword_weight, keyword)):
        for rank, chunk_id in enumerate(ranking):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (RRF_K + rank + 1)
    return sorted(scores, key=lambda c: (-scores[c], -c))


async def _language(memory: Memory, lang: str, pool: int, pairs: int, seed: int) -> None:
    created = await do_create_tenant(f"Eval {lang}", owner_telegram_id=seed)
    tenant_id = created.tenant.id
    rng = random.Random(seed)
    labelled = paraphrase_cases(pairs, lang, seed)
    generated = [labelled_chat_line(rng, lang) for _ in range(pool)]
    started = time.perf_counter()
    pool_ids = await _store(memory, tenant_id, [text for text, _ in generated], first_id=1)
    docs = [doc for _, doc, _ in labelled]
    target_ids = await _store(memory, tenant_id, docs, first_id=pool + 1)
    loaded = time.perf_counter() - started
    # Relevant to a query: every stored line that says the same thing (same intent, same values),
    # its paraphrase and any pool line that happens to match, wording aside.
    by_meaning: dict[Meaning, set[int]] = {}
    meanings = [m for _, m in generated] + [m for _, _, m in labelled]
    for chunk_id, meaning in zip(pool_ids + target_ids, meanings, strict=True):
        by_meaning.setdefault(meaning, set()).add(chunk_id)
    rsf = [f"rsf d{w:g}" for w in DENSE_WEIGHTS]
    names = ("dense", "keyword", "fused", *rsf, "rrf", "rrf kw x0.5", "interleave")
    hits = {name: [0.0, 0.0, 0.0] for name in names}
    relevant_counts = []
    for query, _, meaning in labelled:
        relevant = by_meaning[meaning]
        relevant_counts.append(len(relevant))
        dense_scored = await memory.dense_search(tenant_id, query, CANDIDATES)
        keyword_scored = await store.keyword_search(tenant_id, query, CANDIDATES)
        dense = [i for i, _ in dense_scored]
        keyword = [i for i, _ in keyword_scored]
        fused = [p.chunk.id for p in await memory.search(tenant_id, query, DEPTH)]
        rankings = [("dense", dense), ("keyword", keyword), ("fused", fused)]
        for w in DENSE_WEIGHTS:
            fused_w = fuse(dense_scored, keyword_scored, dense_weight=w)
            rankings.append((f"rsf d{w:g}", [chunk_id for chunk_id, _ in fused_w]))
        rankings.append(("rrf", _rrf(dense, keyword, 1.0)))
        rankings.append(("rrf kw x0.5", _rrf(dense, keyword, 0.5)))
        inter: list[int] = []
        for pair in zip(dense, keyword, strict=False):
            inter += [c for c in pair if c not in inter]
        rankings.append(("interleave", inter))
        for name, ranked in rankings:
            hits[name][0] += _hit(relevant, ranked, 1)
            hits[name][1] += _hit(relevant, ranked, 10)
            hits[name][2] += _reciprocal_rank(relevant, ranked, 10)
    size = pool + pairs
    language = {"en": "English", "ru": "Russian"}[lang]
    per_query = sum(relevant_counts) / len(relevant_counts)
    print(
        f"\n{language}: {size} messages, {per_query:.2f} relevant per query, random hit@10 "
        f"{10 * per_query / size:.4f}, loaded in {loaded:.0f} s"
    )
    for name, (at1, at10, mrr) in hits.items():
        print(f"  {name:<12}{at1 / pairs:>9.3f}{at10 / pairs:>9.3f}{mrr / pairs:>9.3f}", flush=True)


async def run(pool: int, pairs: int, seed: int) -> None:
    """Both languages, one tenant each, in a fresh SQLite database."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite://{Path(folder) / 'eval.sqlite3'}"
        await migrate_db(url)
        await init_db(url)
        try:
            memory = Memory(Embedder(), Path(folder) / "index")
            print(f"{pairs} labelled paraphrase queries per language; corpus = pool + labelled")
            print(f"(fused = Memory.search, dense weight {DENSE_WEIGHT:g})")
            print(f"{'':<14}{'hit@1':>9}{'hit@10':>9}{'MRR@10':>9}")
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
