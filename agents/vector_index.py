"""Per-tenant FAISS indexes of message embeddings, persisted on disk and rebuilt from the database.

Sizing (measured on the 2-core box with all-MiniLM-L6-v2 vectors of generated chat, see
bench/bench_memory.py): exact single-query search over IndexFlatIP costs ~0.07 ms per 1k vectors
on one core (p95 1.1 ms at 20k, 3.6 ms at 50k, 7.3 ms at 100k, 63 ms at 1M), so exact search
stays well inside a 5 ms budget only up to a few tens of thousands of vectors. Past
``IVF_THRESHOLD`` (30k) a tenant moves to IndexIVFFlat: vectors kept whole (no quantisation
error, scores are exact cosines), nlist = 4·sqrt(n), so probing a few dozen lists reads ~1-3% of
the data (0.3-1 ms at 1M), and nprobe is calibrated at build time on the tenant's own vectors
so that recall@10 against exact search is at least ``TARGET_RECALL`` plus a margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from agents.embeddings import DIMENSION

log = logging.getLogger(__name__)

Kind = Literal["flat", "ivf"]

# Exact search up to here (p95 ~2 ms at 30k on one core, leaving room on a busy box); IVF above.
IVF_THRESHOLD = 30_000
# An IVF tenant that shrinks below half the threshold goes back to exact search; the gap keeps a
# tenant hovering around the threshold from retraining on every add/remove.
FLAT_BELOW_SHARE = 0.5
# nlist is fixed at training; once the index holds this many times what it was trained on, lists
# are ~4x longer than planned (about twice the latency at the same nprobe), so it is retrained.
RETRAIN_GROWTH = 4
LISTS_PER_SQRT_N = 4
# k-means: faiss warns below 39 training points per centroid; 40 is enough for stable centroids
# and keeps training of 1M vectors (nlist 4000, 160k points) near half a minute on two cores.
TRAIN_POINTS_PER_LIST = 40
# Ten Lloyd iterations instead of faiss's 25: the assignment barely moves after ten on these
# vectors, and the calibration below makes up any loss with nprobe.
KMEANS_ITERATIONS = 10
TARGET_RECALL = 0.95
# Calibration measures recall on a sample of queries made from the tenant's own vectors; real
# queries are new texts, so the nprobe picked must clear the target by a margin.
CALIBRATION_MARGIN = 0.02
CALIBRATION_QUERIES = 256
NPROBE_LADDER = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# FAISS threads. A single query on two OpenMP threads measured ~3x slower than on one here
# (thread wake-up costs more than the scan on a shared 2-core box), so single queries use one;
# building, training, calibration and large query batches use both cores.
SEARCH_THREADS = 1
BUILD_THREADS = max(1, min(2, os.cpu_count() or 1))
BATCH_PARALLEL_FROM = 32
META_FORMAT = 1


class _LazyFaiss:
    """faiss, imported on first use: a process that never searches memory never loads it."""

    def __getattr__(self, name: str) -> Any:
        import faiss as module

        return getattr(module, name)


if TYPE_CHECKING:
    import faiss
else:
    faiss = _LazyFaiss()


def _hashtable_map() -> int:
    # faiss ships partial type stubs; the SWIG enums it leaves out are read through an Any alias.
    untyped: Any = faiss
    return int(untyped.DirectMap.Hashtable)


def _omp(threads: int) -> None:
    # OpenMP's thread count is per calling thread, so each worker thread sets its own.
    faiss.omp_set_num_threads(threads)


def _normalized(vectors: np.ndarray, dimension: int, *, copy: bool = True) -> np.ndarray:
    # copy=None: numpy copies only when dtype or layout have to change.
    arr = np.array(vectors, dtype=np.float32, order="C", ndmin=2, copy=True if copy else None)
    if arr.ndim != 2 or arr.shape[1] != dimension:
        raise ValueError(f"expected vectors of dimension {dimension}, got shape {arr.shape}")
    # Row sums carry any NaN/inf through without a full-size boolean temporary.
    if not np.isfinite(arr.sum(axis=1, dtype=np.float64)).all():
        raise ValueError("vectors contain NaN or infinity")
    # Scores are cosines only for unit vectors; normalising again is cheap and idempotent.
    faiss.normalize_L2(arr)
    return arr


def _ids_array(ids: np.ndarray | Sequence[int]) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(ids), dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {arr.shape}")
    if (arr < 0).any():
        raise ValueError("ids must be non-negative (faiss uses -1 for 'no result')")
    return arr


def _last_occurrence(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated ids within one batch, keeping the last (a later write wins)."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    if len(first_in_reversed) == len(ids):
        return ids, vectors
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    return ids[keep], vectors[keep]


def _nlist_for(n: int) -> int:
    return max(1, min(round(LISTS_PER_SQRT_N * math.sqrt(n)), n // TRAIN_POINTS_PER_LIST))


class _ReadWriteLock:
    """Many concurrent searches (FAISS allows that) or one mutation; waiting writers go first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class TenantIndex:
    """One tenant's vectors: exact (IndexIDMap2 over IndexFlatIP) while small, IVF when large."""

    stamp: str

    def __init__(
        self,
        dimension: int = DIMENSION,
        *,
        stamp: str = "",
        ivf_threshold: int = IVF_THRESHOLD,
        target_recall: float = TARGET_RECALL,
        seed: int = 0,
    ) -> None:
        self.dimension = dimension
        self.stamp = stamp
        self.ivf_threshold = ivf_threshold
        self.target_recall = target_recall
        self._seed = seed
        self._lock = _ReadWriteLock()
        self._index: Any = self._new_flat()
        self._kind: Kind = "flat"
        self._trained_on = 0
        # Recall measured by the last calibration (IVF only), for logs and the benchmark.
        self.calibrated_recall: float | None = None

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        vectors: np.ndarray,
        *,
        stamp: str = "",
        dimension: int = DIMENSION,
        ivf_threshold: int = IVF_THRESHOLD,
        target_recall: float = TARGET_RECALL,
        seed: int = 0,
        copy: bool = True,
    ) -> TenantIndex:
        """An index of all these vectors at once, of the kind their count calls for."""
        index = cls(
            dimension, stamp=stamp, ivf_threshold=ivf_threshold, target_recall=target_recall,
            seed=seed,
        )  # fmt: skip
        id_arr = _ids_array(ids)
        # copy=False normalises a float32 caller array in place: one copy of the data less
        # (1.5 GB at 1M vectors) for callers that own the array, like the registry's rebuild.
        vecs = (
            _normalized(vectors, dimension, copy=copy)
            if len(id_arr)
            else np.zeros((0, dimension), np.float32)
        )
        if len(id_arr) != len(vecs):
            raise ValueError(f"{len(id_arr)} ids for {len(vecs)} vectors")
        id_arr, vecs = _last_occurrence(id_arr, vecs)
        with index._lock.write():
            index._rebuild(id_arr, vecs)
        return index

    def _new_flat(self) -> Any:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    def _rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole index with one of the right kind for ``len(ids)`` vectors."""
        # IVF needs a few dozen vectors per list to train; tiny thresholds (tests) stay exact.
        if len(ids) > self.ivf_threshold and len(ids) >= 2 * TRAIN_POINTS_PER_LIST:
            self._index = self._train_ivf(ids, vectors)
            self._kind = "ivf"
            self._trained_on = len(ids)
        else:
            flat = self._new_flat()
            if len(ids):
                flat.add_with_ids(vectors, ids)
            self._index = flat
            self._kind = "flat"
            self._trained_on = 0
            self.calibrated_recall = None

    def _train_ivf(self, ids: np.ndarray, vectors: np.ndarray) -> Any:
        _omp(BUILD_THREADS)
        n = len(ids)
        nlist = _nlist_for(n)
        rng = np.random.default_rng(self._seed)
        train_n = min(n, nlist * TRAIN_POINTS_PER_LIST)
        sample = vectors if train_n == n else vectors[np.sort(rng.choice(n, train_n, False))]
        quantizer = faiss.IndexFlatIP(self.dimension)
        ivf = faiss.IndexIVFFlat(quantizer, self.dimension, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.niter = KMEANS_ITERATIONS
        ivf.cp.seed = self._seed
        ivf.train(sample)
        # A hashtable direct map lets remove_ids find an id's list without scanning every list.
        ivf.set_direct_map_type(_hashtable_map())
        ivf.add_with_ids(vectors, ids)
        ivf.nprobe, self.calibrated_recall = self._calibrate(ivf, ids, vectors, rng)
        log.info(
            "IVF index: %d vectors, nlist %d, nprobe %d (calibrated recall@10 %.3f)",
            n, nlist, ivf.nprobe, self.calibrated_recall,
        )  # fmt: skip
        return ivf

    def _calibrate(
        self, ivf: Any, ids: np.ndarray, vectors: np.ndarray, rng: np.random.Generator
    ) -> tuple[int, float]:
        """Smallest nprobe from the ladder whose recall@10 on sample queries clears the target."""
        n = len(ids)
        k = min(10, n - 1)
        m = min(CALIBRATION_QUERIES, n)
        # Half the queries are stored vectors (their own entry left out); half are mixes of two
        # stored vectors, which sit between topics the way a new message often does and are
        # harder for IVF than any stored point, so the chosen nprobe is not optimistic.
        own = rng.choice(n, m - m // 2, False)
        a, b = rng.integers(0, n, (2, m // 2))
        w = rng.uniform(0.3, 0.7, (m // 2, 1)).astype(np.float32)
        queries = np.vstack([vectors[own], w * vectors[a] + (1 - w) * vectors[b]])
        faiss.normalize_L2(queries)
        skip = np.concatenate([ids[own], np.full(m // 2, -2, dtype=np.int64)])
        # Exact neighbours straight from the array (no second copy of the data in an index).
        exact_scores, exact_rows = faiss.knn(
            queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT
        )
        # The k-th exact score of each query (its own row left out); a result at least that good
        # counts as a hit, so duplicate texts (equal scores) do not read as misses.
        kth = np.array(
            [
                scores[ids[rows] != skip[q]][:k][-1]
                for q, (scores, rows) in enumerate(zip(exact_scores, exact_rows, strict=True))
            ],
            dtype=np.float32,
        )
        for candidate in NPROBE_LADDER:
            if candidate >= ivf.nlist:
                break
            ivf.nprobe = candidate
            found_scores, found_ids = ivf.search(queries, k + 1)
            hits = 0
            for q in range(m):
                keep = (found_ids[q] != skip[q]) & (found_ids[q] >= 0)
                hits += int((found_scores[q][keep][:k] >= kth[q] - 1e-6).sum())
            recall = hits / (k * m)
            if recall >= self.target_recall + CALIBRATION_MARGIN:
                return candidate, recall
        # Nothing on the ladder was good enough: probe every list (exact, just slower).
        return int(ivf.nlist), 1.0

    # -- properties -----------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        """How many vectors the index holds."""
        return int(self._index.ntotal)

    @property
    def kind(self) -> Kind:
        """'flat' (exact) or 'ivf'."""
        return self._kind

    @property
    def nprobe(self) -> int:
        """Lists probed per query (0 for exact search)."""
        return int(self._index.nprobe) if self._kind == "ivf" else 0

    @property
    def nlist(self) -> int:
        """Inverted lists of the IVF index (0 for exact search)."""
        return int(self._index.nlist) if self._kind == "ivf" else 0

    def memory_bytes(self) -> int:
        """Approximate resident size: vectors, ids and the id map."""
        per_vector = self.dimension * 4 + 8 + (48 if self._kind == "ivf" else 16)
        centroids = self.nlist * self.dimension * 4
        return self.ntotal * per_vector + centroids

    # -- mutation -------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under int64 ids; an id already present is replaced."""
        id_arr = _ids_array(ids)
        if not len(id_arr):
            return
        vecs = _normalized(vectors, self.dimension)
        if len(id_arr) != len(vecs):
            raise ValueError(f"{len(id_arr)} ids for {len(vecs)} vectors")
        id_arr, vecs = _last_occurrence(id_arr, vecs)
        with self._lock.write():
            _omp(BUILD_THREADS)
            if self._index.ntotal:
                self._remove_locked(id_arr)
            grown = self._index.ntotal + len(id_arr)
            if self._kind == "flat" and grown > self.ivf_threshold:
                old_ids, old_vecs = self._contents_locked()
                self._rebuild(np.concatenate([old_ids, id_arr]), np.concatenate([old_vecs, vecs]))
                return
            self._index.add_with_ids(vecs, id_arr)
            if self._kind == "ivf" and self.ntotal > RETRAIN_GROWTH * self._trained_on:
                self._rebuild(*self._contents_locked())

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove these ids (absent ones are ignored); returns how many were removed."""
        id_arr = _ids_array(ids)
        if not len(id_arr):
            return 0
        with self._lock.write():
            removed = self._remove_locked(np.unique(id_arr))
            if self._kind == "ivf" and self.ntotal < self.ivf_threshold * FLAT_BELOW_SHARE:
                self._rebuild(*self._contents_locked())
            return removed

    def _remove_locked(self, ids: np.ndarray) -> int:
        if self._kind == "ivf":
            # The hashtable direct map only accepts an explicit id array (no batch selector).
            return int(self._index.remove_ids(faiss.IDSelectorArray(ids)))
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def _contents_locked(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) the index holds, copied out (to retrain or change kind)."""
        n = self.ntotal
        if self._kind == "flat":
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            # Rows of the flat storage in id_map order (a virtual call, no downcast needed).
            vectors = self._index.index.reconstruct_n(0, n)
            return ids, np.ascontiguousarray(vectors, dtype=np.float32)
        invlists = self._index.invlists
        id_parts: list[np.ndarray] = []
        vec_parts: list[np.ndarray] = []
        code_size = self._index.code_size
        for lst in range(self._index.nlist):
            size = invlists.list_size(lst)
            if not size:
                continue
            id_parts.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy())
            codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * code_size).copy()
            vec_parts.append(codes.view(np.float32).reshape(size, self.dimension))
        if not id_parts:
            return np.zeros(0, np.int64), np.zeros((0, self.dimension), np.float32)
        return np.concatenate(id_parts), np.concatenate(vec_parts)

    # -- search ---------------------------------------------------------------------------------

    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k nearest ids to one query vector as (id, cosine score), best first."""
        q = np.asarray(query)
        if q.ndim == 2 and q.shape[0] != 1:
            raise ValueError(f"search takes one query vector, got shape {q.shape}")
        return self.search_many(q.reshape(1, -1), k)[0]

    def search_many(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """search() for each row of ``queries``."""
        qs = _normalized(queries, self.dimension)
        if k <= 0 or not len(qs):
            return [[] for _ in range(len(qs))]
        with self._lock.read():
            total = self._index.ntotal
            if not total:
                return [[] for _ in range(len(qs))]
            _omp(BUILD_THREADS if len(qs) >= BATCH_PARALLEL_FROM else SEARCH_THREADS)
            scores, ids = self._index.search(qs, min(k, total))
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    # -- persistence ----------------------------------------------------------------------------

    @staticmethod
    def meta_path(path: Path) -> Path:
        """Where the metadata of the index file at ``path`` lives."""
        return path.with_name(path.name + ".meta.json")

    def save(self, path: Path) -> None:
        """Write the index and then its metadata, each atomically (temp file, fsync, rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temp files of a save that died half way (crash, kill) would otherwise pile up.
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        with self._lock.read():
            _atomic_write(path, lambda tmp: faiss.write_index(self._index, str(tmp)))
            meta = {
                "format": META_FORMAT,
                "stamp": self.stamp,
                "kind": self._kind,
                "count": self.ntotal,
                "dimension": self.dimension,
                "nprobe": self.nprobe,
                "trained_on": self._trained_on,
                # Size of the file just written: a crash between the two renames leaves a meta
                # that does not describe the index beside it, and load() notices.
                "index_bytes": path.stat().st_size,
            }
        data = json.dumps(meta).encode()
        _atomic_write(self.meta_path(path), lambda tmp: tmp.write_bytes(data))

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        ivf_threshold: int = IVF_THRESHOLD,
        target_recall: float = TARGET_RECALL,
        seed: int = 0,
    ) -> TenantIndex | None:
        """The index saved at ``path``, or None when it is missing, partial or corrupt."""
        meta_path = cls.meta_path(path)
        if not path.is_file() or not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != META_FORMAT:
                return None
            if path.stat().st_size != meta["index_bytes"]:
                log.warning("vector index %s does not match its metadata; ignoring it", path)
                return None
            kind = meta["kind"]
            if kind not in ("flat", "ivf"):
                return None
            # read_index already returns the concrete class (and owns it): downcasting that
            # temporary would leave a wrapper over freed memory once the owner is collected.
            raw: Any = faiss.read_index(str(path))
            if not _is_kind(raw, kind) or raw.d != meta["dimension"]:
                return None
            if raw.ntotal != meta["count"]:
                return None
            if kind == "ivf":
                if raw.direct_map.type != _hashtable_map():
                    return None
                raw.nprobe = int(meta["nprobe"])
            index = cls(
                int(meta["dimension"]), stamp=str(meta["stamp"]), ivf_threshold=ivf_threshold,
                target_recall=target_recall, seed=seed,
            )  # fmt: skip
            index._index = raw
            index._kind = kind
            index._trained_on = int(meta["trained_on"])
            return index
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            # faiss raises RuntimeError on a truncated or garbled file.
            log.warning("vector index %s unreadable (%s); it will be rebuilt", path, exc)
            return None


def _is_kind(raw: Any, kind: str) -> bool:
    expected = faiss.IndexIDMap2 if kind == "flat" else faiss.IndexIVFFlat
    return isinstance(raw, expected)


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temp file in the same folder, fsync it, rename over ``path``, fsync dir."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


VectorLoader = Callable[[int], AsyncIterator[tuple[np.ndarray, np.ndarray]]]


class IndexRegistry:
    """Tenant indexes kept in memory, persisted under ``directory``, rebuilt from the database."""

    # The in-memory index is what this process searches; add()/remove() keep it current and take
    # the stamp the database reports once the change is committed. A file whose stamp differs
    # from stamp_of (another process changed the tenant, or a save was lost) is rebuilt from the
    # loader. A cached index is trusted as is (one writer per tenant is the assumption: checking
    # the database on every search would cost a query, and every foreign write a full rebuild);
    # get(revalidate=True) or forget() make it check again.

    def __init__(
        self,
        directory: Path,
        loader: VectorLoader,
        stamp_of: Callable[[int], Awaitable[str]],
        *,
        save_delay: float | None = 30.0,
        dimension: int = DIMENSION,
        ivf_threshold: int = IVF_THRESHOLD,
        target_recall: float = TARGET_RECALL,
        inline_search_below: int = 5_000,
    ) -> None:
        self.directory = directory
        self._loader = loader
        self._stamp_of = stamp_of
        # Saves are debounced: a 1M-vector index is 1.5 GB, too much to write on every message.
        self._save_delay = save_delay
        self._dimension = dimension
        self._ivf_threshold = ivf_threshold
        self._target_recall = target_recall
        # Below this size a search takes well under a millisecond: a thread hop would cost more.
        self._inline_search_below = inline_search_below
        self._indexes: dict[int, TenantIndex] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._dirty: set[int] = set()
        self._save_tasks: dict[int, asyncio.Task[None]] = {}
        self.rebuilds = 0

    def path_for(self, tenant_id: int) -> Path:
        """The index file of one tenant."""
        return self.directory / f"tenant-{int(tenant_id)}.faiss"

    def _lock(self, tenant_id: int) -> asyncio.Lock:
        lock = self._locks.get(tenant_id)
        if lock is None:
            lock = self._locks[tenant_id] = asyncio.Lock()
        return lock

    async def get(self, tenant_id: int, *, revalidate: bool = False) -> TenantIndex:
        """The tenant's index: from memory, else from its file, else rebuilt from the loader."""
        cached = self._indexes.get(tenant_id)
        if cached is not None and not revalidate:
            return cached
        async with self._lock(tenant_id):
            return await self._get_locked(tenant_id, revalidate=revalidate)

    async def _get_locked(self, tenant_id: int, *, revalidate: bool = False) -> TenantIndex:
        cached = self._indexes.get(tenant_id)
        if cached is not None and not revalidate:
            return cached
        # The stamp is read before the vectors: rows written meanwhile make the index newer
        # than its stamp, never older, and the add() that follows them brings the new stamp.
        expected = await self._stamp_of(tenant_id)
        if cached is not None and cached.stamp == expected:
            return cached
        path = self.path_for(tenant_id)
        index = None
        if cached is None:
            index = await asyncio.to_thread(
                TenantIndex.load,
                path,
                ivf_threshold=self._ivf_threshold,
                target_recall=self._target_recall,
            )
        if index is None or index.stamp != expected:
            index = await self._rebuild(tenant_id, expected)
        self._indexes[tenant_id] = index
        return index

    async def _rebuild(self, tenant_id: int, stamp: str) -> TenantIndex:
        id_parts: list[np.ndarray] = []
        vec_parts: list[np.ndarray] = []
        async for ids, vectors in self._loader(tenant_id):
            id_arr = _ids_array(ids)
            vecs = np.asarray(vectors, dtype=np.float32).reshape(len(id_arr), self._dimension)
            id_parts.append(id_arr)
            vec_parts.append(vecs)
        all_ids = np.concatenate(id_parts) if id_parts else np.zeros(0, np.int64)
        all_vecs = (
            np.concatenate(vec_parts) if vec_parts else np.zeros((0, self._dimension), np.float32)
        )
        del id_parts, vec_parts
        index = await asyncio.to_thread(
            TenantIndex.build,
            all_ids,
            all_vecs,
            stamp=stamp,
            dimension=self._dimension,
            ivf_threshold=self._ivf_threshold,
            target_recall=self._target_recall,
            copy=False,
        )
        self.rebuilds += 1
        # Saved at once: a rebuild is the expensive path, and the next start should not repeat it.
        await asyncio.to_thread(index.save, self.path_for(tenant_id))
        self._dirty.discard(tenant_id)
        return index

    async def search(self, tenant_id: int, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Nearest ids to one query vector in the tenant's index (large ones in a thread)."""
        index = await self.get(tenant_id)
        if index.ntotal < self._inline_search_below:
            return index.search(query, k)
        return await asyncio.to_thread(index.search, query, k)

    async def add(self, tenant_id: int, ids: np.ndarray, vectors: np.ndarray, stamp: str) -> None:
        """Add (or replace) vectors in the cached index and take ``stamp`` as its version."""
        async with self._lock(tenant_id):
            index = await self._get_locked(tenant_id)
            # In a thread: crossing the IVF threshold trains k-means, seconds at that size.
            await asyncio.to_thread(index.add, ids, vectors)
            index.stamp = stamp
            self._mark_dirty(tenant_id)

    async def remove(self, tenant_id: int, ids: Sequence[int], stamp: str) -> None:
        """Remove ids from the cached index and take ``stamp`` as its version."""
        async with self._lock(tenant_id):
            index = await self._get_locked(tenant_id)
            await asyncio.to_thread(index.remove, ids)
            index.stamp = stamp
            self._mark_dirty(tenant_id)

    def _mark_dirty(self, tenant_id: int) -> None:
        self._dirty.add(tenant_id)
        if self._save_delay is None or tenant_id in self._save_tasks:
            return
        task = asyncio.get_running_loop().create_task(self._save_later(tenant_id))
        self._save_tasks[tenant_id] = task
        task.add_done_callback(lambda done: self._drop_task(tenant_id, done))

    def _drop_task(self, tenant_id: int, task: asyncio.Task[None]) -> None:
        if self._save_tasks.get(tenant_id) is task:
            del self._save_tasks[tenant_id]

    async def _save_later(self, tenant_id: int) -> None:
        assert self._save_delay is not None
        await asyncio.sleep(self._save_delay)
        try:
            # Shielded: flush() cancels pending saves, and one already writing must finish
            # (holding the tenant lock) before flush writes the file again.
            await asyncio.shield(self._save(tenant_id))
        except Exception:
            log.exception("saving the vector index of tenant %s failed", tenant_id)

    async def _save(self, tenant_id: int) -> None:
        async with self._lock(tenant_id):
            index = self._indexes.get(tenant_id)
            if index is None or tenant_id not in self._dirty:
                return
            self._dirty.discard(tenant_id)
            try:
                await asyncio.to_thread(index.save, self.path_for(tenant_id))
            except BaseException:
                self._dirty.add(tenant_id)
                raise

    async def flush(self) -> None:
        """Save every index changed since it was last saved."""
        current = asyncio.current_task()
        for task in list(self._save_tasks.values()):
            if task is not current:
                task.cancel()
        for tenant_id in sorted(self._dirty):
            await self._save(tenant_id)

    def forget(self, tenant_id: int) -> None:
        """Drop the tenant from memory (unsaved changes too); the next get() checks again."""
        self._indexes.pop(tenant_id, None)
        self._dirty.discard(tenant_id)
        task = self._save_tasks.pop(tenant_id, None)
        if task is not None:
            task.cancel()
