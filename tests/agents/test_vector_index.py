"""TenantIndex against numpy brute force (flat and IVF), persistence, and the IndexRegistry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from agents.index_registry import IndexRegistry
from agents.tenant_index import TenantIndex

DIM = 384


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _random(n: int, seed: int) -> np.ndarray:
    return _unit(np.random.default_rng(seed).standard_normal((n, DIM)))


CENTERS = _unit(np.random.default_rng(0).standard_normal((40, DIM)))


def _clustered(n: int, seed: int) -> np.ndarray:
    """Vectors around a few dozen topics, like embeddings of chat about a handful of subjects."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(CENTERS), n)
    return _unit(CENTERS[picks] + 0.04 * rng.standard_normal((n, DIM)))


def _brute(ids: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ (query / np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(ids[i]) for i in order]


def _recall(index: TenantIndex, ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray) -> float:
    hits = 0
    for q in queries:
        exact = set(_brute(ids, vectors, q, 10))
        hits += len(exact & {i for i, _ in index.search(q, 10)})
    return hits / (10 * len(queries))


# -- TenantIndex ----------------------------------------------------------------------------------


def test_flat_search_matches_brute_force() -> None:
    vectors = _random(2000, 1)
    ids = np.arange(2000, dtype=np.int64) * 7 + 3
    index = TenantIndex()
    index.add(ids[:1000], vectors[:1000])
    index.add(ids[1000:], vectors[1000:])
    assert (index.kind, index.ntotal) == ("flat", 2000)
    for q in _random(20, 2):
        got = index.search(q, 10)
        assert [i for i, _ in got] == _brute(ids, vectors, q, 10)
        scores = [s for _, s in got]
        assert scores == sorted(scores, reverse=True)
        np.testing.assert_allclose(
            scores[0], float(vectors[ids == got[0][0]][0] @ _unit(q[None])[0]), atol=1e-5
        )


def test_scores_are_cosines_even_for_unnormalised_input() -> None:
    index = TenantIndex()
    index.add(np.array([1, 2]), np.vstack([np.full(DIM, 3.0), -np.full(DIM, 0.5)]))
    result = index.search(np.full(DIM, 0.01), 2)
    assert [i for i, _ in result] == [1, 2]
    np.testing.assert_allclose([s for _, s in result], [1.0, -1.0], atol=1e-5)


def test_re_adding_an_id_replaces_its_vector() -> None:
    vectors = _random(300, 3)
    index = TenantIndex()
    index.add(np.arange(300), vectors)
    new = _random(1, 4)
    index.add(np.array([42]), new)
    assert index.ntotal == 300
    top = index.search(new[0], 1)[0]
    assert top[0] == 42 and top[1] == pytest.approx(1.0, abs=1e-5)
    assert 42 not in [i for i, _ in index.search(vectors[42], 5)]


def test_repeated_id_within_one_batch_keeps_the_last() -> None:
    vectors = _random(3, 5)
    index = TenantIndex()
    index.add(np.array([9, 9, 8]), vectors)
    assert index.ntotal == 2
    assert index.search(vectors[1], 1)[0][0] == 9
    assert all(score < 0.99 for _, score in index.search(vectors[0], 2))  # the first is gone


def test_remove() -> None:
    vectors = _random(500, 6)
    ids = np.arange(500, dtype=np.int64)
    index = TenantIndex()
    index.add(ids, vectors)
    assert index.remove([3, 4, 4, 100_000]) == 2
    assert index.ntotal == 498
    keep = ~np.isin(ids, [3, 4])
    for q in (vectors[3], vectors[4], _random(1, 7)[0]):
        assert [i for i, _ in index.search(q, 10)] == _brute(ids[keep], vectors[keep], q, 10)
    assert index.remove([]) == 0


def test_edge_cases() -> None:
    index = TenantIndex()
    query = _random(1, 8)[0]
    assert index.search(query, 5) == []
    assert index.search_many(_random(3, 9), 5) == [[], [], []]
    index.add(np.array([1, 2]), _random(2, 10))
    assert len(index.search(query, 50)) == 2
    assert index.search(query, 0) == []
    with pytest.raises(ValueError):
        index.add(np.array([1]), np.zeros((1, 10), dtype=np.float32))
    with pytest.raises(ValueError):
        index.add(np.array([1, 2]), _random(1, 11))
    with pytest.raises(ValueError):
        index.add(np.array([-1]), _random(1, 12))
    with pytest.raises(ValueError):
        index.search(_random(2, 13), 3)


def test_search_many_equals_search() -> None:
    vectors = _random(800, 14)
    index = TenantIndex()
    index.add(np.arange(800), vectors)
    queries = _random(40, 15)
    many = index.search_many(queries, 5)
    assert len(many) == 40
    for q, got in zip(queries, many, strict=True):
        single = index.search(q, 5)
        assert [i for i, _ in got] == [i for i, _ in single]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in single], atol=1e-5)


def test_ivf_path_recall_replace_remove() -> None:
    vectors = _clustered(4000, 16)
    ids = np.arange(4000, dtype=np.int64) + 1_000_000
    index = TenantIndex(ivf_threshold=1000)
    for start in range(0, 4000, 500):
        index.add(ids[start : start + 500], vectors[start : start + 500])
    assert (index.kind, index.ntotal) == ("ivf", 4000)
    assert 1 < index.nlist < 4000 and 1 <= index.nprobe <= index.nlist
    assert index.calibrated_recall is not None and index.calibrated_recall >= 0.95
    queries = _clustered(50, 17)
    assert _recall(index, ids, vectors, queries) >= 0.95

    replacement = _clustered(1, 18)
    index.add(ids[:1], replacement)
    assert index.ntotal == 4000
    assert index.search(replacement[0], 1)[0] == (int(ids[0]), pytest.approx(1.0, abs=1e-5))
    vectors[0] = replacement[0]

    gone = ids[10:20]
    assert index.remove(gone) == 10
    assert index.ntotal == 3990
    for q in vectors[10:20]:
        assert not {i for i, _ in index.search(q, 20)} & set(gone.tolist())
    keep = ~np.isin(ids, gone)
    assert _recall(index, ids[keep], vectors[keep], queries) >= 0.95


def test_ivf_retrains_when_it_outgrows_its_lists_and_shrinks_back_to_flat() -> None:
    vectors = _clustered(6000, 19)
    ids = np.arange(6000, dtype=np.int64)
    index = TenantIndex.build(ids[:1200], vectors[:1200], ivf_threshold=1000)
    assert index.kind == "ivf"
    first_nlist = index.nlist
    index.add(ids[1200:], vectors[1200:])  # 6000 > 4 x 1200: trained again, more lists
    assert index.kind == "ivf" and index.nlist > first_nlist and index.ntotal == 6000
    assert _recall(index, ids, vectors, _clustered(30, 20)) >= 0.95
    index.remove(ids[400:])  # 400 < half the threshold: back to exact search
    assert (index.kind, index.ntotal) == ("flat", 400)
    for q in _clustered(5, 21):
        assert [i for i, _ in index.search(q, 10)] == _brute(ids[:400], vectors[:400], q, 10)


@pytest.mark.parametrize("threshold", [100_000, 500])
def test_save_and_load_round_trip(tmp_path: Path, threshold: int) -> None:
    vectors = _clustered(1500, 22)
    ids = np.arange(1500, dtype=np.int64) * 2
    index = TenantIndex.build(ids, vectors, stamp="v7", ivf_threshold=threshold)
    path = tmp_path / "t1.faiss"
    index.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.faiss", "t1.faiss.meta.json"]
    loaded = TenantIndex.load(path, ivf_threshold=threshold)
    assert loaded is not None
    assert (loaded.stamp, loaded.kind, loaded.ntotal, loaded.nprobe) == (
        "v7",
        index.kind,
        1500,
        index.nprobe,
    )
    queries = _clustered(10, 23)
    assert loaded.search_many(queries, 10) == index.search_many(queries, 10)
    # A loaded IVF index still supports removal and replacement.
    assert loaded.remove([0, 2]) == 2
    loaded.add(np.array([4]), vectors[:1])
    assert loaded.search(vectors[0], 1)[0][0] == 4


def test_load_missing_corrupt_or_half_written(tmp_path: Path) -> None:
    path = tmp_path / "t.faiss"
    assert TenantIndex.load(path) is None
    index = TenantIndex.build(np.arange(50), _random(50, 24), stamp="s")
    index.save(path)
    good = path.read_bytes()

    path.write_bytes(b"not a faiss index at all")
    assert TenantIndex.load(path) is None  # size no longer matches the metadata
    path.write_bytes(good[: len(good) // 2] + b"\0" * (len(good) - len(good) // 2))
    assert TenantIndex.load(path) is None  # same size, garbled content
    path.write_bytes(good)
    assert TenantIndex.load(path) is not None
    TenantIndex.meta_path(path).write_text("{broken json")
    assert TenantIndex.load(path) is None
    TenantIndex.meta_path(path).unlink()
    assert TenantIndex.load(path) is None


def test_a_crash_mid_save_leaves_the_old_file_usable(tmp_path: Path) -> None:
    path = tmp_path / "t.faiss"
    TenantIndex.build(np.arange(10), _random(10, 25), stamp="old").save(path)
    # What a process killed while writing leaves behind: a partial temp file beside the index.
    leftover = tmp_path / ".t.faiss.abc123.tmp"
    leftover.write_bytes(b"partial")
    loaded = TenantIndex.load(path)
    assert loaded is not None and loaded.stamp == "old"
    # Only a temp file, no index: nothing to load.
    lonely = tmp_path / "other.faiss"
    (tmp_path / ".other.faiss.x.tmp").write_bytes(b"partial")
    assert TenantIndex.load(lonely) is None
    # The next save clears the leftovers.
    loaded.save(path)
    assert not leftover.exists()


# -- IndexRegistry --------------------------------------------------------------------------------


class FakeDatabase:
    """Vectors and a version stamp per tenant, as the database side would serve them."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[int, np.ndarray]] = {}
        self.stamps: dict[int, str] = {}
        self.loads = 0

    def put(self, tenant: int, ids: np.ndarray, vectors: np.ndarray) -> str:
        rows = self.rows.setdefault(tenant, {})
        for i, v in zip(ids.tolist(), vectors, strict=True):
            rows[i] = v
        self.stamps[tenant] = f"{tenant}:{len(rows)}:{sum(rows)}"
        return self.stamps[tenant]

    async def load(self, tenant: int) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        self.loads += 1
        rows = sorted(self.rows.get(tenant, {}).items())
        for start in range(0, len(rows), 100):
            chunk = rows[start : start + 100]
            await asyncio.sleep(0)  # a real loader awaits the database between batches
            yield (
                np.array([i for i, _ in chunk], dtype=np.int64),
                np.vstack([v for _, v in chunk]),
            )

    async def stamp_of(self, tenant: int) -> str:
        return self.stamps.get(tenant, "empty")


def _registry(tmp_path: Path, db: FakeDatabase, **kwargs: object) -> IndexRegistry:
    return IndexRegistry(tmp_path, db.load, db.stamp_of, **kwargs)  # type: ignore[arg-type]


async def test_registry_builds_once_for_concurrent_gets(tmp_path: Path) -> None:
    db = FakeDatabase()
    vectors = _random(350, 26)
    db.put(1, np.arange(350), vectors)
    registry = _registry(tmp_path, db, save_delay=None)
    got = await asyncio.gather(*(registry.get(1) for _ in range(8)))
    assert db.loads == 1 and registry.rebuilds == 1
    assert all(g is got[0] for g in got)
    assert got[0].ntotal == 350 and got[0].stamp == db.stamps[1]
    assert registry.path_for(1).exists()  # a rebuild is saved at once
    result = await registry.search(1, vectors[5], 3)
    assert result[0][0] == 5


async def test_registry_loads_the_file_when_the_stamp_matches(tmp_path: Path) -> None:
    db = FakeDatabase()
    db.put(1, np.arange(100), _random(100, 27))
    await _registry(tmp_path, db, save_delay=None).get(1)
    fresh = _registry(tmp_path, db, save_delay=None)  # as after a restart
    index = await fresh.get(1)
    assert (db.loads, fresh.rebuilds, index.ntotal) == (1, 0, 100)


async def test_registry_rebuilds_when_the_stamp_differs(tmp_path: Path) -> None:
    db = FakeDatabase()
    db.put(1, np.arange(100), _random(100, 28))
    await _registry(tmp_path, db, save_delay=None).get(1)
    # Another process wrote rows this one never heard about: the file's stamp is now stale.
    extra = _random(5, 29)
    db.put(1, np.arange(1000, 1005), extra)
    fresh = _registry(tmp_path, db, save_delay=None)
    index = await fresh.get(1)
    assert (db.loads, fresh.rebuilds, index.ntotal, index.stamp) == (2, 1, 105, db.stamps[1])
    assert index.search(extra[2], 1)[0][0] == 1002
    # A cached index is trusted until asked to revalidate.
    db.put(1, np.array([2000]), _random(1, 30))
    assert (await fresh.get(1)).ntotal == 105
    assert (await fresh.get(1, revalidate=True)).ntotal == 106


async def test_registry_rebuilds_a_corrupt_file(tmp_path: Path) -> None:
    db = FakeDatabase()
    db.put(3, np.arange(60), _random(60, 31))
    registry = _registry(tmp_path, db, save_delay=None)
    await registry.get(3)
    path = registry.path_for(3)
    path.write_bytes(b"\0" * path.stat().st_size)
    fresh = _registry(tmp_path, db, save_delay=None)
    index = await fresh.get(3)
    assert (fresh.rebuilds, index.ntotal) == (1, 60)
    assert TenantIndex.load(path) is not None  # and the rebuilt index replaced the bad file


async def test_registry_add_remove_flush(tmp_path: Path) -> None:
    db = FakeDatabase()
    vectors = _random(200, 32)
    db.put(1, np.arange(200), vectors)
    db.put(2, np.arange(10), _random(10, 33))
    registry = _registry(tmp_path, db, save_delay=None)
    await registry.get(1)
    await registry.get(2)

    new = _random(3, 34)
    stamp = db.put(1, np.array([500, 501, 502]), new)
    await registry.add(1, np.array([500, 501, 502]), new, stamp)
    index = await registry.get(1)
    assert (index.ntotal, index.stamp) == (203, stamp)
    del db.rows[1][7]
    db.stamps[1] = stamp = "after-delete"
    await registry.remove(1, [7], stamp)
    assert index.ntotal == 202 and 7 not in [i for i, _ in index.search(vectors[7], 5)]
    # Not saved yet (no delay configured): the file still has the old stamp.
    loaded = TenantIndex.load(registry.path_for(1))
    assert loaded is not None and loaded.stamp != stamp

    await registry.flush()
    loaded = TenantIndex.load(registry.path_for(1))
    assert loaded is not None and (loaded.stamp, loaded.ntotal) == (stamp, 202)
    fresh = _registry(tmp_path, db, save_delay=None)
    assert (await fresh.get(1)).ntotal == 202 and fresh.rebuilds == 0
    # Tenants stay apart.
    assert (await fresh.get(2)).ntotal == 10


async def test_registry_saves_after_the_debounce_delay(tmp_path: Path) -> None:
    db = FakeDatabase()
    db.put(1, np.arange(20), _random(20, 35))
    registry = _registry(tmp_path, db, save_delay=0.05)
    await registry.get(1)
    for n in range(3):
        vec = _random(1, 36 + n)
        await registry.add(1, np.array([100 + n]), vec, db.put(1, np.array([100 + n]), vec))
    await asyncio.sleep(0.3)
    loaded = TenantIndex.load(registry.path_for(1))
    assert loaded is not None and (loaded.ntotal, loaded.stamp) == (23, db.stamps[1])


async def test_registry_add_crossing_the_ivf_threshold(tmp_path: Path) -> None:
    db = FakeDatabase()
    vectors = _clustered(1500, 40)
    db.put(1, np.arange(900), vectors[:900])
    registry = _registry(tmp_path, db, save_delay=None, ivf_threshold=1000)
    assert (await registry.get(1)).kind == "flat"
    stamp = db.put(1, np.arange(900, 1500), vectors[900:])
    await registry.add(1, np.arange(900, 1500), vectors[900:], stamp)
    index = await registry.get(1)
    assert (index.kind, index.ntotal) == ("ivf", 1500)
    assert (await registry.search(1, vectors[1200], 1))[0][0] == 1200


async def test_forget_drops_the_cached_index(tmp_path: Path) -> None:
    db = FakeDatabase()
    db.put(1, np.arange(30), _random(30, 41))
    registry = _registry(tmp_path, db, save_delay=10.0)
    first = await registry.get(1)
    vec = _random(1, 42)
    await registry.add(1, np.array([99]), vec, "unsaved")
    registry.forget(1)
    again = await registry.get(1)
    assert again is not first
    # The unsaved add was dropped with it; the file matched the database, so no rebuild.
    assert (again.ntotal, registry.rebuilds) == (30, 1)
    await registry.flush()


async def test_empty_tenant(tmp_path: Path) -> None:
    registry = _registry(tmp_path, FakeDatabase(), save_delay=None)
    index = await registry.get(9)
    assert index.ntotal == 0 and index.search(_random(1, 43)[0], 5) == []
