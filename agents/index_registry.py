"""The vector indexes of all tenants: kept in memory, saved to disk, rebuilt from the database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

from agents.embeddings import DIMENSION
from agents.tenant_index import IVF_THRESHOLD, TARGET_RECALL, TenantIndex, ids_array

log = logging.getLogger(__name__)

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
            id_arr = ids_array(ids)
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
