"""Attachment bytes on the local disk, addressed by opaque keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from crm.services.access import Actor
from crm.services.errors import ValidationFailed

MAX_UPLOAD = 16 * 1024 * 1024
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


async def do_upload(actor: Actor, store: LocalMediaStore, name: str, data: bytes) -> str:
    """Keep an attachment an operator will send; returns its key."""
    actor.require_write()
    if len(data) > MAX_UPLOAD:
        raise ValidationFailed("file", f"must be at most {MAX_UPLOAD // (1024 * 1024)} MiB")
    if not data:
        raise ValidationFailed("file", "is empty")
    return await store.put(actor.tenant_id, name, data)


def _check_key_shape(key: str) -> None:
    """Refuse keys that are not plain relative paths (the prefix check would not hold)."""
    if "\x00" in key:
        raise ValidationFailed("media_key", "must not contain NUL characters")
    if key.startswith("/") or "\\" in key or re.match(r"[A-Za-z]:", key):
        raise ValidationFailed("media_key", "must be a key from POST /media, not a path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValidationFailed("media_key", "must not contain '..', '.' or empty path segments")


def access_upload(
    actor: Actor, store: LocalMediaStore, key: str, filename: str | None
) -> dict[str, object]:
    """An upload of the actor's tenant, as a message's media (key, file name, size)."""
    _check_key_shape(key)
    foreign = ValidationFailed("media_key", "is not an upload of this organization")
    if key.split("/", 1)[0] != f"t{actor.tenant_id}":
        raise foreign
    try:
        path = store.path_of(key)
    except ValueError:
        raise foreign from None
    # Checked on the resolved file too: a symlink inside the store must not lead elsewhere.
    if not path.is_relative_to(store.root / f"t{actor.tenant_id}"):
        raise foreign
    if not path.is_file():
        raise ValidationFailed("media_key", "no such upload")
    stored_name = path.name.split("-", 1)[-1]
    return {"key": key, "filename": filename or stored_name, "size": path.stat().st_size}


MIB = 1024 * 1024
# What each messenger accepts per attachment kind, in bytes (the store's own cap applies too).
CHANNEL_MEDIA_LIMITS: dict[str, dict[str, int]] = {
    "whatsapp": {
        "image": 5 * MIB,
        "video": 16 * MIB,
        "audio": 16 * MIB,
        "voice": 16 * MIB,
        "document": 100 * MIB,
    },
    "telegram": {
        "image": 10 * MIB,
        "video": 50 * MIB,
        "audio": 50 * MIB,
        "voice": 50 * MIB,
        "document": 50 * MIB,
    },
}


def upload_limit(channel: str | None, kind: str) -> int:
    """The largest attachment of ``kind`` the store keeps and the lead's messenger accepts."""
    limits = CHANNEL_MEDIA_LIMITS.get(channel or "", {})
    return min(MAX_UPLOAD, limits.get(kind, MAX_UPLOAD))


async def stored_bytes(store: LocalMediaStore, media: Mapping[str, object] | None) -> bytes | None:
    """The bytes of a message's stored attachment; None when it was not (or not yet) stored."""
    key = (media or {}).get("key")
    if not isinstance(key, str) or not key:
        return None
    try:
        return await store.get(key)
    except (OSError, ValueError):
        return None
