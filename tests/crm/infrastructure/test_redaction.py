"""Personal data out of logs: what is replaced, and what is left alone."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from uvicorn.config import LOGGING_CONFIG

from crm.infrastructure.cipher import CredentialCipher
from crm.infrastructure.redaction import (
    install_log_redaction,
    redact,
    redact_value,
    register_secret,
)
from telegram_transport.logs import redact_tokens_in_logs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at anna.schmidt+crm@example.co.uk", "mail me at [email]"),
        ("call +49 151 2345 6789 today", "call [phone] today"),
        ("звоните 8 (916) 123-45-67", "звоните [phone]"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [card] exp 12/29"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [iban] please"),
    ],
)
def test_contact_details_and_payment_numbers_become_placeholders(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "12 seats for 49 EUR",
        "order 2026-12-07 at 10:30",
        "version 1.106.2",
        "deal 123456",  # too short for a phone number
    ],
)
def test_ordinary_numbers_stay(text: str) -> None:
    assert redact(text) == text


def test_nested_values_are_redacted_everywhere() -> None:
    value = {"a": ["x@y.io", {"b": "+1 415 555 0100"}], "n": 3}
    assert redact_value(value) == {"a": ["[email]", {"b": "[phone]"}], "n": 3}


def test_log_records_are_redacted_with_their_arguments_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_redaction()
    install_log_redaction()  # twice is harmless
    log = logging.getLogger("tests.redaction")
    with caplog.at_level(logging.INFO):
        log.info("lead %s, phone %s", "anna@example.com", "+49 151 2345 6789")
        try:
            raise ValueError("bad address anna@example.com")
        except ValueError:
            log.exception("failed")
    assert caplog.records[0].getMessage() == "lead [email], phone [phone]"
    assert "anna@example.com" not in caplog.text
    assert "bad address [email]" in caplog.text


def test_a_date_beside_a_time_is_not_a_phone() -> None:
    assert (
        redact("call on 2026-12-07 10:30 or 07.12.2026") == "call on 2026-12-07 10:30 or 07.12.2026"
    )


TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


async def _serve_and_request(paths: list[str]) -> None:
    """Run a real uvicorn with its own logging config and send it ``paths``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=LOGGING_CONFIG, access_log=True, lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):  # uvicorn offers no event to wait on
            if server.started:
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for path in paths:
                assert (await http.get(path)).status_code == 200
    finally:
        server.should_exit = True
        await serving
        sock.close()


async def test_uvicorn_access_lines_survive_redaction_without_the_token(
    capfd: pytest.CaptureFixture[str],
) -> None:
    install_log_redaction()
    redact_tokens_in_logs()
    encoded = TOKEN.replace(":", "%3A")
    await _serve_and_request(
        [
            f"/sandbox/telegram/bot{encoded}/getMe",
            "/api/v1/contacts?email=anna%40example.com",
            "/healthz",
        ]
    )
    out, err = capfd.readouterr()
    logged = out + err
    assert "Logging error" not in logged
    assert '"GET /sandbox/telegram/bot<redacted>/getMe HTTP/1.1" 200' in logged
    assert '"GET /api/v1/contacts?email=[email] HTTP/1.1" 200' in logged
    assert '"GET /healthz HTTP/1.1" 200' in logged
    assert TOKEN.split(":")[1] not in logged
    assert "anna" not in logged


def test_a_record_with_the_url_encoded_token_shows_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_redaction()
    redact_tokens_in_logs()
    secret = TOKEN.split(":")[1]
    with caplog.at_level(logging.INFO):
        logging.getLogger("aiohttp.client").info(
            "POST %s", f"http://127.0.0.1/bot{TOKEN.replace(':', '%3A')}/sendMessage"
        )
        logging.getLogger("x").info(f"callback https%3A%2F%2Fh%2Fbot{TOKEN.replace(':', '%253A')}")
    assert secret not in caplog.text
    assert caplog.text.count("bot<redacted>") == 2


SECRET = "whatsapp-access-token-EAAG0123456789abcdefXYZ"


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"Authorization: Basic user:"])
def test_a_known_secret_is_scrubbed_from_base64_at_any_alignment(prefix: bytes) -> None:
    """A token logged inside a base64 blob (a basic-auth header, an encoded payload)."""
    register_secret(SECRET)
    raw = prefix + SECRET.encode() + b"&more=1"
    for blob in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        clean = redact(f"sending {blob}")
        assert "<secret>" in clean
        # Nothing of the secret's own base64 remains: decode what is left and look.
        rest = clean.replace("sending ", "").split("<secret>")
        assert all(SECRET[:8] not in _decoded(part) for part in rest)


def _decoded(text: str) -> str:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_").decode(errors="replace")
    except ValueError:
        return ""


def test_a_known_secret_is_scrubbed_plain_url_encoded_and_hex() -> None:
    register_secret(SECRET)
    quoted = quote(SECRET, safe="")
    for written in (SECRET, quoted, quote(quoted, safe=""), SECRET.encode().hex()):
        assert redact(f"token={written}!") == "token=<secret>!"


def test_decrypted_channel_credentials_become_known_secrets() -> None:
    cipher = CredentialCipher("test-secret-key-0123456789abcdef0123")
    token = "8123456789:AAH-secret-bot-token-for-redaction"
    stored = cipher.encrypt({"bot_token": token, "phone_number_id": "1234567890123"})
    assert cipher.decrypt(stored)["bot_token"] == token
    encoded = base64.b64encode(token.encode()).decode()
    assert redact(f"x {encoded}") == "x <secret>"
    assert redact("id 1234567890123") != "id <secret>"  # an id is not a secret
