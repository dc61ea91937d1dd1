"""Keep bot tokens out of logs.

A Telegram bot token sits in the URL path of every Bot API call (``/bot<token>/<method>``)
and every file download, so any library that logs a URL (httpx and aiohttp clients, uvicorn's
access log when the sandbox emulator is served, an exception carrying a URL) would leak it.
``redact_tokens_in_logs`` installs a log record factory that scrubs tokens from every record,
whichever logger made it, before any handler formats it.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

# The colon of a token, as written or URL-encoded once or twice (a URL path segment, a URL in
# a query parameter): uvicorn's access log shows "/bot123%3Aabc/..." as the client sent it.
_COLON = r"(?::|%(?:25)?3[Aa])"
# "bot<digits>:<secret>" in a URL, and a bare "<digits>:<35-ish chars>" token anywhere.
_TOKEN_RE = re.compile(
    rf"(?:(?<=\bbot)|(?<=%2[Ff]bot)|(?<=%252[Ff]bot))\d+{_COLON}[A-Za-z0-9_-]+|\b\d{{5,}}{_COLON}[A-Za-z0-9_-]{{30,}}"
)
REDACTED = "<redacted>"
_MARK = "_telegram_token_redaction"


def redact(text: str) -> str:
    """``text`` with every bot token (plain or URL-encoded) replaced by ``<redacted>``."""
    if ":" not in text and "%" not in text:
        return text
    return _TOKEN_RE.sub(REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    # URL objects (httpx.URL, yarl.URL) and exceptions render the token when formatted.
    rendered = str(value)
    scrubbed = redact(rendered)
    return value if scrubbed == rendered else scrubbed


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Scrub tokens from a record's message, arguments and exception text, in place."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    else:
        record.msg = _redact_value(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_redact_value(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _redact_value(v) for k, v in record.args.items()}
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    return record


class TokenRedactingFilter(logging.Filter):
    """A logging filter for handlers that must scrub records made before the factory was set."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the record and let it through."""
        redact_record(record)
        return True


def redact_tokens_in_logs() -> None:
    """Scrub bot tokens from every log record of this process (idempotent)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, _MARK, False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(factory(*args, **kwargs))

    setattr(redacting_factory, _MARK, True)
    logging.setLogRecordFactory(redacting_factory)
