"""CSV import from the chat: an owner, admin or member sends a .csv file, the bot imports it.

The handler only checks (workspace, role, file type, size, one import at a time), answers a
progress message and hands the job to the ``OperatorBot``'s background tasks: the webhook answers
at once, while the job downloads the file, runs ``importer.do_import_contacts`` and edits the
progress message in place. Edits are throttled (at most one per ``progress_interval`` seconds, and
only when the text changed): a bot that edits on every tick earns retry_after of minutes. At the
end the progress message becomes the summary, and the rejected rows come as ``rejected-rows.csv``.

Why a background task and not the task queue: the job needs the live Bot to edit its message and
reports progress as it goes, and the file (up to 20 MB) would first have to be stored for a
worker in another process. The task is tracked and cancelled when the bot stops; the operator is
told, and sending the file again finishes the job (rows already imported are skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, BinaryIO, cast

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramRetryAfter
from aiogram.types import BufferedInputFile, Document, Message
from aiogram.utils.i18n import I18n, get_i18n
from aiogram.utils.i18n import gettext as _
from babel.numbers import format_decimal

from bot.background import BackgroundTasks
from bot.handling import CURRENT_ACTOR, PRIVATE_CHATS, feature_router
from crm.errors import PermissionDenied, ServiceError
from crm.models import Role
from crm.services.access import Actor
from crm.services.contacts import csv_import as importer

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024  # also the largest file the Bot API lets a bot download
PROGRESS_INTERVAL = 3.0
REJECTED_FILE_NAME = "rejected-rows.csv"
CSV_MIME_TYPES = frozenset(
    {"text/csv", "text/comma-separated-values", "application/csv", "text/x-csv"}
)
_MAX_RETRY_WAIT = 600.0
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SPOOL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ImportOptions:
    """Limits and pacing of imports; the dispatcher's ``import_options`` overrides the default."""

    max_bytes: int = MAX_FILE_BYTES
    progress_interval: float = PROGRESS_INTERVAL
    batch_size: int = importer.BATCH_SIZE
    clock: Callable[[], float] = time.monotonic


def _number(n: float, *, fraction: bool = False) -> str:
    """``n`` written the way the operator's language writes numbers (12,000 / 12 000)."""
    pattern = "#,##0.#" if fraction else "#,##0"
    return str(format_decimal(n, format=pattern, locale=get_i18n().current_locale))


def _megabytes(size: int) -> str:
    return _number(size / (1024 * 1024), fraction=True)


def is_csv(document: Document) -> bool:
    """A .csv file name, or a CSV MIME type when the file has no name."""
    name = (document.file_name or "").strip().lower()
    if name:
        return name.endswith(".csv")
    return (document.mime_type or "").lower() in CSV_MIME_TYPES


def _short_name(document: Document) -> str:
    name = (document.file_name or "contacts.csv").strip() or "contacts.csv"
    return name if len(name) <= 64 else name[:30] + "…" + name[-30:]


def progress_text(file_name: str, rows: int, total: int | None = None) -> str:
    """The progress message while ``rows`` of ``total`` rows (when known) have been read."""
    if rows <= 0:
        return _("Importing {file}…").format(file=file_name)
    if total:
        # The total is counted before the import; a file with odd lines may read a few more.
        total = max(total, rows)
        return _(
            "Importing {file}… {n} of {total} row", "Importing {file}… {n} of {total} rows", total
        ).format(file=file_name, n=_number(rows), total=_number(total))
    return _("Importing {file}… {n} row", "Importing {file}… {n} rows", rows).format(
        file=file_name, n=_number(rows)
    )


def summary_text(file_name: str, result: importer.ImportResult) -> str:
    """What the progress message says once the import is done."""
    lines = [
        _("Import of {file} finished.").format(file=file_name),
        _("{n} contact created", "{n} contacts created", result.created).format(
            n=_number(result.created)
        ),
        _("{n} contact updated", "{n} contacts updated", result.updated).format(
            n=_number(result.updated)
        ),
        _("{n} row skipped: nothing new", "{n} rows skipped: nothing new", result.skipped).format(
            n=_number(result.skipped)
        ),
        _("{n} row rejected", "{n} rows rejected", result.rejected).format(
            n=_number(result.rejected)
        ),
    ]
    if result.warned:
        lines.append(
            _(
                "{n} row imported without a bad field",
                "{n} rows imported without a bad field",
                result.warned,
            ).format(n=_number(result.warned))
        )
    if result.errors:
        lines.append(
            _("The rejected rows and the reasons are in {file}.").format(file=REJECTED_FILE_NAME)
        )
    return "\n".join(lines)


def rejected_rows_csv(errors: list[importer.RowError]) -> bytes:
    """The rejected rows and warnings as CSV: row, field, reason, level (UTF-8 with a BOM)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["row", "field", "reason", "level"])
    for error in errors:
        reason = error.reason
        if reason.startswith(_FORMULA_START):  # a spreadsheet must not run it as a formula
            reason = "'" + reason
        writer.writerow([error.row, error.field, reason, error.level])
    return buffer.getvalue().encode("utf-8-sig")


class ProgressMessage:
    """The progress message of one import, edited at most once per ``interval`` seconds."""

    def __init__(
        self, bot: Bot, chat_id: int, message_id: int, file_name: str, options: ImportOptions
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.message_id = message_id
        self.file_name = file_name
        self.interval = options.progress_interval
        self.clock = options.clock
        self.rows = 0
        self.total: int | None = None  # the file's data rows, once counted
        self._last_at = self.clock()  # sending the message counts as its first change
        self._last_text = progress_text(file_name, 0)
        self._blocked_until = float("-inf")
        self._editing: asyncio.Task[None] | None = None

    def update(self, rows: int) -> None:
        """The importer's progress callback: edit when the interval passed and the text changed."""
        self.rows = rows
        now = self.clock()
        if now - self._last_at < self.interval or now < self._blocked_until:
            return
        if self._editing is not None and not self._editing.done():
            return
        text = progress_text(self.file_name, rows, self.total)
        if text == self._last_text:
            return
        self._last_at = now
        self._last_text = text
        self._editing = asyncio.create_task(self._edit(text))

    async def _edit(self, text: str) -> None:
        try:
            await self.bot.edit_message_text(
                text=text, chat_id=self.chat_id, message_id=self.message_id
            )
        except TelegramRetryAfter as exc:
            # Flood control: no more progress until Telegram allows it again.
            self._blocked_until = self.clock() + exc.retry_after
        except TelegramAPIError as exc:
            logger.info("import progress not shown: %s", exc)

    async def settle(self) -> None:
        """Let an edit in flight finish (its outcome, even its cancellation, does not matter)."""
        if self._editing is not None:
            await asyncio.wait({self._editing})

    def abandon(self) -> None:
        """Stop an edit in flight."""
        if self._editing is not None:
            self._editing.cancel()

    async def finish(self, text: str, *, attempts: int = 3) -> None:
        """Replace the progress by ``text``; a new message if the old one cannot be edited."""
        await self.settle()
        for _attempt in range(attempts):
            try:
                await self.bot.edit_message_text(
                    text=text, chat_id=self.chat_id, message_id=self.message_id
                )
                return
            except TelegramRetryAfter as exc:
                await asyncio.sleep(min(float(exc.retry_after), _MAX_RETRY_WAIT))
            except TelegramAPIError as exc:
                logger.info("import summary not edited in (%s); sent anew", exc)
                break
        await self.bot.send_message(self.chat_id, text)


async def import_document(
    message: Message,
    actor: Actor,
    bot: Bot,
    background: BackgroundTasks,
    import_options: ImportOptions | None = None,
) -> None:
    """Check the file and the sender's role, answer the progress message, start the import."""
    document = message.document
    if document is None or message.from_user is None:
        return
    options = import_options or ImportOptions()
    try:
        actor.require_write()
    except PermissionDenied:
        if actor.role is Role.VIEWER:
            await message.answer(_("Viewers cannot import contacts."))
        else:
            await message.answer(_("You may not import contacts into this workspace."))
        return
    if not is_csv(document):
        await message.answer(
            _(
                "Only CSV files can be imported. Save the table as CSV (comma- or "
                "semicolon-separated) and send that file."
            )
        )
        return
    if document.file_size is not None and document.file_size > options.max_bytes:
        await message.answer(_too_large(document.file_size, options.max_bytes))
        return
    key = ("import", message.from_user.id)
    if background.running(key):
        await message.answer(
            _("An import of yours is still running. Wait for its summary, then send the next file.")
        )
        return
    name = _short_name(document)
    i18n = get_i18n()
    # No await between the check above and this: a second file cannot slip in between.
    job = _ImportJob(bot, message.chat.id, actor, document, name, options)
    background.spawn(job.run(i18n, i18n.current_locale), key=key, name=f"import:{name}")


def _too_large(size: int, limit: int) -> str:
    return _(
        "The file is {size} MB; files up to {limit} MB can be imported. "
        "Split it into smaller files and send them one by one."
    ).format(size=_megabytes(size), limit=_megabytes(limit))


@dataclass
class _ImportJob:
    """One import running in the background."""

    bot: Bot
    chat_id: int
    actor: Actor
    document: Document
    file_name: str
    options: ImportOptions
    progress: ProgressMessage = field(init=False)

    async def run(self, i18n: I18n, locale: str) -> None:
        """Answer the progress message, download, import, summarize in it."""
        with i18n.context(), i18n.use_locale(locale):
            sent = await self.bot.send_message(self.chat_id, progress_text(self.file_name, 0))
            self.progress = ProgressMessage(
                self.bot, self.chat_id, sent.message_id, self.file_name, self.options
            )
            try:
                await self._run()
            except asyncio.CancelledError:
                self.progress.abandon()
                text = _(
                    "The import of {file} was interrupted because the bot is restarting. "
                    "Rows imported so far are kept: send the file again to finish."
                ).format(file=self.file_name)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.progress.finish(text, attempts=1), timeout=5)
                raise

    async def _run(self) -> None:
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            source = cast(BinaryIO, spool)
            if not await self._download(source):
                return
            # Counted in a thread (a 20 MB file takes a moment) so the bot stays responsive;
            # a file the count cannot read gets the import's own error below.
            with contextlib.suppress(Exception):
                self.progress.total = await asyncio.to_thread(importer.count_rows, source)
            try:
                result = await importer.do_import_contacts(
                    self.actor,
                    source,
                    progress=self.progress.update,
                    batch_size=self.options.batch_size,
                )
            # An empty or unreadable file, a role changed meanwhile. This runs in the background
            # after the handler returned: no refusal middleware is there to show it.
            except ServiceError as exc:
                await self.progress.finish(
                    _("Could not import {file}: {reason}").format(
                        file=self.file_name, reason=exc.detail
                    )
                )
                return
            except Exception:
                logger.exception("import of %s failed", self.file_name)
                await self.progress.finish(
                    _(
                        "The import of {file} failed unexpectedly. Rows imported before the "
                        "failure are kept: send the file again to finish."
                    ).format(file=self.file_name)
                )
                return
        await self.progress.finish(summary_text(self.file_name, result))
        if result.errors:
            await self.bot.send_document(
                self.progress.chat_id,
                BufferedInputFile(rejected_rows_csv(result.errors), filename=REJECTED_FILE_NAME),
                caption=_(
                    "Rejected rows and warnings of {file}: row, field, reason, level."
                ).format(file=self.file_name),
            )

    async def _download(self, destination: IO[bytes]) -> bool:
        """The file into ``destination``; False (and the operator told) when that fails."""
        try:
            await self.bot.download(self.document, destination=cast(BinaryIO, destination))
        except TelegramBadRequest as exc:
            if "too big" in exc.message.lower():
                size = self.document.file_size or self.options.max_bytes + 1
                await self.progress.finish(_too_large(size, self.options.max_bytes))
                return False
            return await self._download_failed(exc)
        except Exception as exc:  # the network, the Bot API
            return await self._download_failed(exc)
        size = destination.seek(0, io.SEEK_END)
        destination.seek(0)
        if size > self.options.max_bytes:
            await self.progress.finish(_too_large(size, self.options.max_bytes))
            return False
        return True

    async def _download_failed(self, exc: Exception) -> bool:
        logger.warning("import file download failed: %s", exc)
        await self.progress.finish(
            _("Could not download {file} from Telegram. Send it again.").format(file=self.file_name)
        )
        return False


def build_router() -> Router:
    """A fresh router with this module's handlers (one per Dispatcher)."""
    router = feature_router("imports", chats=PRIVATE_CHATS)
    # Replies are left to the inbox (an attachment for a lead); imports come as plain messages.
    router.message.register(
        import_document,
        F.document,
        ~F.reply_to_message,
        flags=CURRENT_ACTOR,
    )
    return router
