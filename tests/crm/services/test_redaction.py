"""Personal data out of logs: what is replaced, and what is left alone."""

from __future__ import annotations

import logging

import pytest

from crm.services.redaction import install_log_redaction, redact, redact_value


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
