"""Attachment bytes on the local disk, addressed by opaque keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 80


class LocalMediaStore:
    """Stores each attachment as a file under ``root/t<tenant>/<yyyy-mm>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    async def put(self, tenant_id: int, name: str, data: bytes) -> str:
        """Write ``data``; the key keeps the tenant and a sanitized file name."""
        safe = _UNSAFE.sub("_", name).strip("._")[-MAX_NAME:] or "file"
        month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
        key = f"t{tenant_id}/{month}/{secrets.token_hex(8)}-{safe}"
        path = self.path_of(key)
        await asyncio.to_thread(_write, path, data)
        return key

    async def get(self, key: str) -> bytes:
        """The bytes stored under ``key``."""
        return await asyncio.to_thread(self.path_of(key).read_bytes)

    def path_of(self, key: str) -> Path:
        """The file of a key; refuses keys that would leave the store."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"media key {key!r} points outside the media store")
        return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


async def stored_bytes(store: LocalMediaStore, media: Mapping[str, object] | None) -> bytes | None:
    """The bytes of a message's stored attachment; None when it was not (or not yet) stored."""
    key = (media or {}).get("key")
    if not isinstance(key, str) or not key:
        return None
    try:
        return await store.get(key)
    except (OSError, ValueError):
        return None
