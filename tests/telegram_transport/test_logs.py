"""Bot tokens never reach the logs, whichever library logs the URL."""

from __future__ import annotations

import logging

import httpx
import pytest

from telegram_transport.logs import TokenRedactingFilter, redact, redact_tokens_in_logs
from tests.support.telegram import TOKEN, Sandbox

SECRET_PART = TOKEN.split(":", 1)[1]


def test_redact() -> None:
    url = f"https://api.telegram.org/bot{TOKEN}/sendMessage"
    assert redact(url) == "https://api.telegram.org/bot<redacted>/sendMessage"
    assert redact(f"file/bot{TOKEN}/photos/a.jpg") == "file/bot<redacted>/photos/a.jpg"
    assert redact(f"token={TOKEN}") == "token=<redacted>"
    assert redact("meeting at 12:30, see bot docs") == "meeting at 12:30, see bot docs"


def test_records_of_any_logger_are_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    redact_tokens_in_logs()
    redact_tokens_in_logs()  # idempotent
    url = httpx.URL(f"http://127.0.0.1/sandbox/telegram/bot{TOKEN}/getMe")
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        logging.getLogger("httpx").info("HTTP Request: %s %s", "POST", url)
        logging.getLogger("aiohttp.client").warning(f"GET {url} failed")
        logging.getLogger("aiohttp.access").info("%s - %s", "127.0.0.1", {"path": str(url)})
        try:
            raise RuntimeError(f"cannot reach {url}")
        except RuntimeError:
            logging.getLogger("some.library").exception("request failed")
    assert SECRET_PART not in caplog.text
    assert caplog.text.count("bot<redacted>") == 4


def test_filter_for_handlers() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET %s", (f"/bot{TOKEN}/x",), None)
    assert TokenRedactingFilter().filter(record) is True
    assert record.getMessage() == "GET /bot<redacted>/x"


async def test_real_requests_log_no_token(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    redact_tokens_in_logs()
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
            await http.get(f"/sandbox/telegram/bot{TOKEN}/getMe")
        await sandbox.adapter.bot_for(sandbox.connection).get_me()
    assert "HTTP Request" in caplog.text  # httpx did log the call...
    assert SECRET_PART not in caplog.text  # ...without the token
