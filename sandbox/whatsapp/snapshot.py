"""The emulator's state as JSON for the state file, and back."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

from sandbox.whatsapp.records import EmulatedConnection, OutboxEntry, StoredMedia, Template
from sandbox.whatsapp.store import WhatsAppStore

# How many of the latest outbox entries survive a restart.
PERSISTED_OUTBOX = 5000


class StateSnapshots(WhatsAppStore):
    """Snapshot and restore (see sandbox.persist)."""

    def _snapshot(self) -> dict[str, Any]:
        assert self._state is not None
        for stored in self._media.values():
            self._state.put_blob(stored.id, stored.data)
        return {
            "connections": [asdict(c) for c in self.connections.values()],
            "templates": [asdict(t) for t in self.templates.values()],
            # The latest sends only: what the sandbox page shows of each lead's thread.
            "outbox": [
                {**e.to_json(), "category": e.category} for e in self._outbox[-PERSISTED_OUTBOX:]
            ],
            "media": [
                {
                    "id": m.id,
                    "phone_id": m.phone_id,
                    "mime_type": m.mime_type,
                    "filename": m.filename,
                }
                for m in self._media.values()
            ],
            "last_inbound": [[*key, at.isoformat()] for key, at in self._last_inbound.items()],
            "conversations": [
                [*key, conversation_id, expires.isoformat()]
                for key, (conversation_id, expires) in self._conversations.items()
            ],
        }

    def _restore(self, saved: dict[str, Any]) -> None:
        assert self._state is not None
        for raw in saved.get("connections", []):
            connection = EmulatedConnection(**raw)
            self.connections[connection.connection_id] = connection
        for raw in saved.get("templates", []):
            template = Template(**raw)
            self.templates[(template.name, template.language)] = template
        for raw in saved.get("outbox", []):
            fields = {k: v for k, v in raw.items() if k != "created_at"}
            self._outbox.append(
                OutboxEntry(**fields, created_at=dt.datetime.fromisoformat(raw["created_at"]))
            )
        for raw in saved.get("media", []):
            data = self._state.get_blob(raw["id"])
            if data is not None:
                self._media[raw["id"]] = StoredMedia(data=data, **raw)
        for phone_id, wa_id, at in saved.get("last_inbound", []):
            self._last_inbound[(phone_id, wa_id)] = dt.datetime.fromisoformat(at)
        for phone_id, wa_id, conversation_id, expires in saved.get("conversations", []):
            self._conversations[(phone_id, wa_id)] = (
                conversation_id,
                dt.datetime.fromisoformat(expires),
            )
