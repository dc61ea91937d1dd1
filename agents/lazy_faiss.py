"""faiss, imported on first use, and the few faiss settings the vector index modules share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


class _LazyFaiss:
    """faiss, imported on first use: a process that never searches memory never loads it."""

    def __getattr__(self, name: str) -> Any:
        import faiss as module

        return getattr(module, name)


if TYPE_CHECKING:
    import faiss
else:
    faiss = _LazyFaiss()


def hashtable_map() -> int:
    """The hashtable direct-map type of faiss (IVF indexes use it to find an id's list)."""
    # faiss ships partial type stubs; the SWIG enums it leaves out are read through an Any alias.
    untyped: Any = faiss
    return int(untyped.DirectMap.Hashtable)


def use_threads(threads: int) -> None:
    """Let faiss calls of the current thread use this many OpenMP threads."""
    # OpenMP's thread count is per calling thread, so each worker thread sets its own.
    faiss.omp_set_num_threads(threads)
