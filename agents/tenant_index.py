"""One tenant's vectors in memory: exact search while small, IVF when large; add, remove, search.

Sizing (measured on the 2-core box with all-MiniLM-L6-v2 vectors of generated chat, see
bench/bench_memory.py): exact single-query search over IndexFlatIP costs ~0.07 ms per 1k vectors
on one core (p95 1.1 ms at 20k, 3.6 ms at 50k, 7.3 ms at 100k, 63 ms at 1M), so exact search
stays well inside a 5 ms budget only up to a few tens of thousands of vectors. Past
``IVF_THRESHOLD`` (30k) a tenant moves to IndexIVFFlat (see agents.ivf_training): vectors kept
whole (no quantisation error, scores are exact cosines), trained and calibrated so that
recall@10 against exact search is at least ``TARGET_RECALL`` plus a margin. The file format is
in agents.index_files; agents.index_registry keeps the indexes of all tenants.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents import index_files
from agents.embeddings import DIMENSION
from agents.index_files import Kind
from agents.ivf_training import TRAIN_POINTS_PER_LIST, train_ivf
from agents.lazy_faiss import faiss, use_threads

# Exact search up to here (p95 ~2 ms at 30k on one core, leaving room on a busy box); IVF above.
IVF_THRESHOLD = 30_000
# An IVF tenant that shrinks below half the threshold goes back to exact search; the gap keeps a
# tenant hovering around the threshold from retraining on every add/remove.
FLAT_BELOW_SHARE = 0.5
# nlist is fixed at training; once the index holds this many times what it was trained on, lists
# are ~4x longer than planned (about twice the latency at the same nprobe), so it is retrained.
RETRAIN_GROWTH = 4
TARGET_RECALL = 0.95
# FAISS threads. A single query on two OpenMP threads measured ~3x slower than on one here
# (thread wake-up costs more than the scan on a shared 2-core box), so single queries use one;
# building, training, calibration and large query batches use both cores.
SEARCH_THREADS = 1
BUILD_THREADS = max(1, min(2, os.cpu_count() or 1))
BATCH_PARALLEL_FROM = 32


def normalized(vectors: np.ndarray, dimension: int, *, copy: bool = True) -> np.ndarray:
    """Unit float32 rows of ``vectors``, checked for shape and finiteness."""
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


def ids_array(ids: np.ndarray | Sequence[int]) -> np.ndarray:
    """The ids as a one-dimensional int64 array, checked to be non-negative."""
    arr = np.ascontiguousarray(np.asarray(ids), dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"ids must be one-dimensional, got shape {arr.shape}")
    if (arr < 0).any():
        raise ValueError("ids must be non-negative (faiss uses -1 for 'no result')")
    return arr


def last_occurrence(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated ids within one batch, keeping the last (a later write wins)."""
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    if len(first_in_reversed) == len(ids):
        return ids, vectors
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    return ids[keep], vectors[keep]


class ReadWriteLock:
    """Many concurrent searches (FAISS allows that) or one mutation; waiting writers go first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared, for a search."""
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
        """Hold the lock alone, for a mutation."""
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
        self._lock = ReadWriteLock()
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
        id_arr = ids_array(ids)
        # copy=False normalises a float32 caller array in place: one copy of the data less
        # (1.5 GB at 1M vectors) for callers that own the array, like the registry's rebuild.
        vecs = (
            normalized(vectors, dimension, copy=copy)
            if len(id_arr)
            else np.zeros((0, dimension), np.float32)
        )
        if len(id_arr) != len(vecs):
            raise ValueError(f"{len(id_arr)} ids for {len(vecs)} vectors")
        id_arr, vecs = last_occurrence(id_arr, vecs)
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
        ivf, self.calibrated_recall = train_ivf(
            ids, vectors, dimension=self.dimension, seed=self._seed,
            target_recall=self.target_recall, threads=BUILD_THREADS,
        )  # fmt: skip
        return ivf

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
        id_arr = ids_array(ids)
        if not len(id_arr):
            return
        vecs = normalized(vectors, self.dimension)
        if len(id_arr) != len(vecs):
            raise ValueError(f"{len(id_arr)} ids for {len(vecs)} vectors")
        id_arr, vecs = last_occurrence(id_arr, vecs)
        with self._lock.write():
            use_threads(BUILD_THREADS)
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
        id_arr = ids_array(ids)
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
        qs = normalized(queries, self.dimension)
        if k <= 0 or not len(qs):
            return [[] for _ in range(len(qs))]
        with self._lock.read():
            total = self._index.ntotal
            if not total:
                return [[] for _ in range(len(qs))]
            use_threads(BUILD_THREADS if len(qs) >= BATCH_PARALLEL_FROM else SEARCH_THREADS)
            scores, ids = self._index.search(qs, min(k, total))
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    # -- persistence ----------------------------------------------------------------------------

    @staticmethod
    def meta_path(path: Path) -> Path:
        """Where the metadata of the index file at ``path`` lives."""
        return index_files.meta_path(path)

    def save(self, path: Path) -> None:
        """Write the index and then its metadata, each atomically (temp file, fsync, rename)."""
        with self._lock.read():
            index_bytes = index_files.write_index(path, self._index)
            meta = {
                "stamp": self.stamp,
                "kind": self._kind,
                "count": self.ntotal,
                "dimension": self.dimension,
                "nprobe": self.nprobe,
                "trained_on": self._trained_on,
                # Size of the file just written: a crash between the two renames leaves a meta
                # that does not describe the index beside it, and load() notices.
                "index_bytes": index_bytes,
            }
        index_files.write_meta(path, meta)

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
        saved = index_files.read_index(path)
        if saved is None:
            return None
        index = cls(
            saved.dimension, stamp=saved.stamp, ivf_threshold=ivf_threshold,
            target_recall=target_recall, seed=seed,
        )  # fmt: skip
        index._index = saved.raw
        index._kind = saved.kind
        index._trained_on = saved.trained_on
        return index
