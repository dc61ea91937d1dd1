"""Where an emulator keeps its state between restarts: one JSON file, written atomically.

A restart of ``crm up`` must not make the emulators forget the bots' chats (the operator bot
could no longer reach an operator until they sent /start again) or restart message ids (a reply
to an old notification would point at another one). Writes are coalesced: at most one per
``delay`` seconds while the emulator is busy, and a final one when it closes. Files (media
bytes) go next to the JSON, one file each, written once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# A save blocks the event loop while it runs: wait this many times its duration before the next
# one, so a big sandbox spends at most a few percent of its time saving.
SAVE_SPACING = 20


class StateFile:
    """A JSON snapshot on disk (readable by its owner only: it holds bot tokens and secrets)."""

    def __init__(
        self, path: Path, snapshot: Callable[[], dict[str, Any]], *, delay: float = 0.5
    ) -> None:
        self.path = Path(path)
        self.blobs = self.path.with_name(self.path.stem + "-files")
        self.delay = delay
        self._snapshot = snapshot
        self._pending: asyncio.TimerHandle | None = None
        self._last_duration = 0.0

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none (an unreadable file is set aside)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError("unknown format")
        except ValueError as exc:
            aside = self.path.with_suffix(".unreadable")
            os.replace(self.path, aside)
            logger.warning("sandbox state %s not loaded (%s); moved to %s", self.path, exc, aside)
            return None
        return data

    def changed(self) -> None:
        """Save soon: now when no event loop runs, else within ``delay`` seconds."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        if self._pending is None:
            delay = max(self.delay, SAVE_SPACING * self._last_duration)
            self._pending = loop.call_later(delay, self.save)

    def save(self) -> None:
        """Write the snapshot now (atomically: a crash leaves the previous one)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        started = time.perf_counter()
        data = {"version": FORMAT_VERSION, **self._snapshot()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, ensure_ascii=False, separators=(",", ":"))
        os.replace(tmp, self.path)
        self._last_duration = time.perf_counter() - started

    def _blob(self, key: str) -> Path:
        return self.blobs / hashlib.sha256(key.encode()).hexdigest()

    def put_blob(self, key: str, data: bytes) -> None:
        """Keep the bytes of ``key`` (once: a file's bytes never change)."""
        path = self._blob(key)
        if path.exists():
            return
        self.blobs.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def get_blob(self, key: str) -> bytes | None:
        """The kept bytes of ``key``, or None."""
        try:
            return self._blob(key).read_bytes()
        except FileNotFoundError:
            return None

    def drop_blob(self, key: str) -> None:
        """Forget the bytes of ``key``."""
        self._blob(key).unlink(missing_ok=True)
