"""Attachments operators upload: size limits per messenger, and keys checked against the tenant."""

from __future__ import annotations

import re

from crm.errors import ValidationFailed
from crm.infrastructure.media_store import LocalMediaStore
from crm.services.access import Actor

MAX_UPLOAD = 16 * 1024 * 1024


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
