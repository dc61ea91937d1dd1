"""Files: uploads, file ids and URLs stored per bot, and ``getFile``."""

from __future__ import annotations

import hashlib
import mimetypes
from typing import Any

from sandbox.telegram.records import BotState, FileRecord
from sandbox.telegram.store import TelegramStore
from sandbox.telegram.wire import Params, UploadedFile, bad_request


class FileMethods(TelegramStore):
    """Stores media and describes it as Bot API objects."""

    def _store_file(
        self,
        bot: BotState,
        data: bytes,
        *,
        kind: str,
        filename: str | None,
        mime_type: str | None,
        url: str | None = None,
    ) -> FileRecord:
        n = next(self._ids)
        ext = ""
        if filename and "." in filename:
            ext = "." + filename.rsplit(".", 1)[1]
        elif kind == "photo":
            ext = ".jpg"
        digest = hashlib.sha256(data + str(n).encode()).hexdigest()
        record = FileRecord(
            file_id=f"{kind[:3].upper()}{bot.id}_{n}_{digest[:16]}",
            file_unique_id=f"U{digest[16:28]}",
            file_path=f"{kind}s/file_{n}{ext}",
            data=data,
            mime_type=mime_type or (mimetypes.guess_type(filename)[0] if filename else None),
            filename=filename,
            url=url,
        )
        bot.files[record.file_id] = record
        return record

    def _media_object(self, bot: BotState, kind: str, record: FileRecord) -> Any:
        """The Bot API object (or PhotoSize list) describing a stored file."""
        base = {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "file_size": len(record.data),
        }
        if kind == "photo":
            thumb = self._store_file(
                bot, record.data, kind="photo", filename=record.filename, mime_type="image/jpeg"
            )
            small = {
                "file_id": thumb.file_id,
                "file_unique_id": thumb.file_unique_id,
                "file_size": len(thumb.data),
                "width": 90,
                "height": 90,
            }
            return [small, {**base, "width": 800, "height": 800}]
        if kind == "sticker":
            return {
                **base,
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "🙂",
            }
        obj = dict(base)
        if record.mime_type:
            obj["mime_type"] = record.mime_type
        if kind in ("document", "audio", "video") and record.filename:
            obj["file_name"] = record.filename
        if kind in ("voice", "audio", "video"):
            obj["duration"] = 1
        if kind == "video":
            obj["width"], obj["height"] = 640, 360
        return obj

    def _input_file(self, bot: BotState, params: Params, kind: str) -> FileRecord:
        """Resolve a media parameter: an upload (``attach://``), a file_id or a URL."""
        raw = params.raw.get(kind)
        upload: UploadedFile | None = None
        if isinstance(raw, str) and raw.startswith("attach://"):
            upload = params.files.get(raw.removeprefix("attach://"))
            if upload is None:
                raise bad_request(f"file {raw!r} not found in the request")
        elif raw is None and kind in params.files:
            upload = params.files[kind]
        if upload is not None:
            if not upload.data:
                raise bad_request("file must be non-empty")
            return self._store_file(
                bot,
                upload.data,
                kind=kind,
                filename=upload.filename,
                mime_type=upload.content_type
                if upload.content_type not in (None, "application/octet-stream")
                else None,
            )
        if not isinstance(raw, str) or not raw:
            raise bad_request(f"there is no {kind} in the request")
        if raw in bot.files:
            return bot.files[raw]
        if raw.startswith(("http://", "https://")):
            name = raw.rsplit("/", 1)[-1].split("?", 1)[0] or None
            return self._store_file(bot, b"", kind=kind, filename=name, mime_type=None, url=raw)
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _m_getfile(self, bot: BotState, params: Params) -> Any:
        file_id = params.string("file_id", required=True)
        record = bot.files.get(file_id or "")
        if record is None:
            raise bad_request("invalid file_id")
        return {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "file_size": len(record.data),
            "file_path": record.file_path,
        }
