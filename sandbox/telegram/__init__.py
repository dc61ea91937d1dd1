"""A local Telegram Bot API: the parts the product uses, on loopback (DESIGN section 6).

aiogram reaches it unchanged through ``TelegramAPIServer.from_base(".../sandbox/telegram")``:
bot methods arrive at ``/sandbox/telegram/bot{token}/{method}`` and file downloads at
``/sandbox/telegram/file/bot{token}/{file_path}``. A control API under the same prefix plays the
users (``POST /updates``), connects Telegram Business accounts, injects faults and shows what
the bots sent (``GET /sent``), so tests, benchmarks and the sandbox page can drive both sides.

State lives in memory, per registered bot, and with a ``state_path`` also on disk (bots, users,
chats, messages, files, undelivered updates), so a restarted service keeps its chats and its
message ids go on increasing. Answers are real Bot API objects and errors carry Telegram's
status codes and descriptions, so the SDK's own error handling runs as in production.

One module per API area: ``store`` (bots, chats), ``files``, ``messages``, ``chats`` (members,
topics, business), ``bots`` (settings, commands, query answers), ``delivery`` (getUpdates,
webhooks), ``users`` (the control API's users), ``inspection``, ``snapshot`` (the state file),
``router`` (HTTP); ``emulator`` puts them together in ``TelegramEmulator``.
"""

from sandbox.telegram.emulator import TelegramEmulator, create_emulator_app
from sandbox.telegram.formatting import check_html, check_markdown, check_markdown_v2
from sandbox.telegram.snapshot import PERSISTED_MESSAGES_PER_CHAT
from sandbox.telegram.wire import PREFIX, SECRET_HEADER, TelegramApiError, UploadedFile

__all__ = [
    "PERSISTED_MESSAGES_PER_CHAT",
    "PREFIX",
    "SECRET_HEADER",
    "TelegramApiError",
    "TelegramEmulator",
    "UploadedFile",
    "check_html",
    "check_markdown",
    "check_markdown_v2",
    "create_emulator_app",
]
