"""Personal data and secrets out of logs.

E-mail addresses, phone, card and IBAN numbers become placeholders; known secrets (the
service's keys, decrypted channel credentials) become ``<secret>`` however they are written:
plain, URL-encoded, base64 (standard or URL-safe, at any alignment inside a longer blob) or
hex. Applied to agent run logs before they are stored and, through ``install_log_redaction``,
to every log record the process writes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from typing import Any
from urllib.parse import quote, unquote

_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Runs of digits with the usual separators; a phone has 7 to 15 digits.
_NUMBER_RE = re.compile(r"(?<![\w/:])\+?\d[\d\s().-]{5,22}\d(?![\w/:])")
# Dates look like digit runs with separators too: 2026-12-07, 07.12.2026.
_DATE_RE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,3})?\b")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, ch in enumerate(reversed(digits)):
        value = int(ch)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _number(match: re.Match[str]) -> str:
    text = match.group(0)
    if _DATE_RE.fullmatch(text.strip()):
        return text
    digits = "".join(ch for ch in text if ch.isdigit())
    if 13 <= len(digits) <= 19 and _luhn_ok(digits):
        return "[card]"
    if 7 <= len(digits) <= 15:
        return "[phone]"
    return text


# Shorter values are not secrets worth the false positives (a 4-digit PIN is in every log).
SECRET_MIN_CHARS = 12
SECRET_PLACEHOLDER = "<secret>"
_secrets: set[str] = set()
_secret_lock = threading.Lock()
# Every form of every secret by its first characters: a scan costs one lookup per position of
# the text, however many secrets there are (a regex alternation of them cost 1 ms a record at
# 200 secrets).
_KEY_CHARS = SECRET_MIN_CHARS // 2
_forms_by_key: dict[str, list[str]] = {}


def _base64_forms(raw: bytes) -> set[str]:
    """What ``raw`` looks like inside any base64 text: at each of the 3 byte alignments, the
    characters that depend on its bytes only, in both alphabets."""
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw + b"\0\0").decode()
        first = -(-8 * offset // 6)  # the first character made of the secret's bits alone
        last = (8 * (offset + len(raw)) - 6) // 6
        core = encoded[first : last + 1]
        forms.add(core)
        forms.add(core.replace("+", "-").replace("/", "_"))
    return forms


def secret_forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` the log scrubber looks for."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote(quote(secret, safe=""), safe="")}
    forms |= _base64_forms(raw)
    forms.add(binascii.hexlify(raw).decode())
    return {form for form in forms if len(form) >= _KEY_CHARS}


def register_secret(secret: str | None) -> None:
    """Scrub ``secret`` (in every encoding) from every log record from now on."""
    global _forms_by_key
    if not secret or len(secret) < SECRET_MIN_CHARS or secret in _secrets:
        return
    with _secret_lock:
        _secrets.add(secret)
        index = {key: list(forms) for key, forms in _forms_by_key.items()}
        for form in secret_forms(secret):
            index.setdefault(form[:_KEY_CHARS], []).append(form)
        for forms in index.values():
            forms.sort(key=len, reverse=True)  # a whole form wins over a part of it
        _forms_by_key = index  # swapped whole: readers never see a half-built index


def redact_secrets(text: str) -> str:
    """``text`` with every registered secret, in any encoding, replaced by ``<secret>``."""
    index = _forms_by_key
    if not index or not text:
        return text
    parts: list[str] = []
    start = position = 0
    end = len(text) - _KEY_CHARS
    while position <= end:
        forms = index.get(text[position : position + _KEY_CHARS])
        found = next((f for f in forms if text.startswith(f, position)), None) if forms else None
        if found is None:
            position += 1
            continue
        parts += (text[start:position], SECRET_PLACEHOLDER)
        position = start = position + len(found)
    if not parts:
        return text
    parts.append(text[start:])
    return "".join(parts)


def redact(text: str) -> str:
    """``text`` with secrets, e-mail addresses, phone, card and IBAN numbers replaced."""
    if not text:
        return text
    text = redact_secrets(text)
    text = _EMAIL_RE.sub("[email]", text)
    text = _IBAN_RE.sub("[iban]", text)
    return _NUMBER_RE.sub(_number, text)


def redact_value(value: object) -> object:
    """A JSON-like value with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value


def _redact_arg(value: object) -> object:
    """One log argument redacted, keeping its type when there is nothing to hide."""
    if value is None or isinstance(value, (int, float, bool)):
        return value
    rendered = value if isinstance(value, str) else str(value)
    scrubbed = redact_encoded(rendered)
    return value if scrubbed == rendered else scrubbed


def redact_encoded(text: str) -> str:
    """``redact`` that also finds data written URL-encoded (``anna%40example.com``)."""
    scrubbed = redact(text)
    if "%" not in text:
        return scrubbed
    decoded = unquote(unquote(text))  # once more for a URL inside a query parameter
    if decoded == text or redact(decoded) == decoded:
        return scrubbed
    return redact(decoded)  # shown decoded: a placeholder cannot be URL-encoded back in place


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:
        return  # a malformed record: logging reports it itself when it is handled
    clean = redact_encoded(message)
    if clean != message:
        _redact_parts(record, clean)
    if record.exc_info and not record.exc_text:
        # Formatted now, redacted once: handlers reuse exc_text instead of formatting again.
        record.exc_text = redact_encoded(logging.Formatter().formatException(record.exc_info))


def _redact_parts(record: logging.LogRecord, clean: str) -> None:
    if isinstance(record.msg, str):
        record.msg = redact_encoded(record.msg)
    # The arguments stay a tuple (or mapping) of the same shape: formatters such as uvicorn's
    # access log unpack them, and a record without them fails in every handler.
    if isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _redact_arg(v) for k, v in record.args.items()}
    try:
        rendered = record.getMessage()
    except (TypeError, ValueError):  # an argument became a placeholder where %d wanted a number
        rendered = None
    if rendered is None or redact_encoded(rendered) != rendered:
        # Something only shows across arguments or in a number: keep the redacted text instead.
        record.msg = clean
        record.args = None


def install_log_redaction() -> None:
    """Redact personal data from every log record the process creates, whoever handles it.

    A record factory rather than a handler filter: the servers (uvicorn, taskiq) configure
    their own handlers after start-up, and records reach them all the same.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
