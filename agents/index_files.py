"""The on-disk form of a tenant's vector index: the faiss file and its JSON metadata beside it.

Each is written atomically (temp file, fsync, rename); the metadata records the size of the
index file, so a crash between the two renames is noticed on load and the index is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agents.lazy_faiss import faiss, hashtable_map

log = logging.getLogger(__name__)

Kind = Literal["flat", "ivf"]

META_FORMAT = 1


@dataclass(frozen=True)
class SavedIndex:
    """An index read back from disk: the faiss object and what its metadata says of it."""

    raw: Any
    kind: Kind
    dimension: int
    stamp: str
    trained_on: int


def meta_path(path: Path) -> Path:
    """Where the metadata of the index file at ``path`` lives."""
    return path.with_name(path.name + ".meta.json")


def write_index(path: Path, raw: Any) -> int:
    """Write the faiss index atomically, dropping temp files of dead saves; returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temp files of a save that died half way (crash, kill) would otherwise pile up.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    _atomic_write(path, lambda tmp: faiss.write_index(raw, str(tmp)))
    return path.stat().st_size


def write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Write the metadata of the index file at ``path`` atomically."""
    data = json.dumps({"format": META_FORMAT, **meta}).encode()
    _atomic_write(meta_path(path), lambda tmp: tmp.write_bytes(data))


def read_index(path: Path) -> SavedIndex | None:
    """The index saved at ``path``, or None when it is missing, partial or corrupt."""
    meta_file = meta_path(path)
    if not path.is_file() or not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
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
            if raw.direct_map.type != hashtable_map():
                return None
            raw.nprobe = int(meta["nprobe"])
        return SavedIndex(
            raw, kind, int(meta["dimension"]), str(meta["stamp"]), int(meta["trained_on"])
        )
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
