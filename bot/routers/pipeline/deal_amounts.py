"""Reading a deal value the way operators type it: ``1500``, ``1 500,50`` or ``1500.5``.

Accepted: digits with an optional decimal part (``.`` or ``,``) of at most 2 places, thousands
grouped by spaces, apostrophes, dots or commas (every group after the first has 3 digits), and an
optional ISO currency code or a common symbol before or after the number (``2000 EUR``,
``$1,500``). A lone comma followed by exactly three digits (``1,500``) is a thousands separator
in English and a decimal comma in Russian, as people of each locale read it.

What is wrong is a reason code (``AmountError.reason``); the router words it in the user's
language, naming the field.
"""

from __future__ import annotations

import decimal
import re
from dataclasses import dataclass

from babel.numbers import is_currency

CENT = decimal.Decimal("0.01")
# The value column holds 18 digits, 2 of them after the point
# (crm.services.pipeline.deals.MAX_VALUE).
MAX_VALUE = decimal.Decimal(10) ** 16
SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP", "₽": "RUB", "₴": "UAH", "₸": "KZT", "¥": "JPY"}
_SPACES = re.compile(r"[\s\u00a0\u202f\u2009]+")
_CODE_FIRST = re.compile(r"^([A-Za-z]{3})\s*(?=[0-9+\-−])")
_CODE_LAST = re.compile(r"(?<=[0-9])\s*([A-Za-z]{3})$")
_BODY = re.compile(r"^[0-9](?:[0-9 .,'’]*[0-9])?$")
_GROUP_SEPARATORS = re.compile(r"[ .,'’]")


class AmountError(ValueError):
    """Why a text is not a deal value: ``empty``, ``not_number``, ``negative``, ``decimals``,
    ``too_large`` or ``currency`` (with the code in ``detail``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Amount:
    """A parsed value and the currency typed with it (None: keep the deal's)."""

    value: decimal.Decimal
    currency: str | None = None


def _split_currency(text: str) -> tuple[str, str | None]:
    for symbol, code in SYMBOLS.items():
        if text.startswith(symbol):
            return text[len(symbol) :].strip(), code
        if text.endswith(symbol):
            return text[: -len(symbol)].strip(), code
    if match := _CODE_FIRST.match(text):
        return text[match.end() :].strip(), match.group(1).upper()
    if match := _CODE_LAST.search(text):
        return text[: match.start()].strip(), match.group(1).upper()
    return text, None


def _decimal_separator(body: str, locale: str) -> str | None:
    commas, dots = body.count(","), body.count(".")
    if commas and dots:
        last = "," if body.rfind(",") > body.rfind(".") else "."
        if body.count(last) > 1:
            raise AmountError("not_number")
        return last
    if dots == 1:
        return "."
    if commas == 1:
        tail = body.rsplit(",", 1)[1]
        if len(tail) == 3 and locale == "en":
            return None  # 1,500 reads as fifteen hundred in English
        return ","
    return None  # no separator, or several of one kind: thousands


def parse_amount(text: str, locale: str = "en") -> Amount:
    """The value (and currency) in ``text``; AmountError says why it is not one."""
    raw = _SPACES.sub(" ", text).strip()
    if not raw:
        raise AmountError("empty")
    body, currency = _split_currency(raw)
    if currency is not None and not is_currency(currency):
        raise AmountError("currency", currency)
    if body.startswith(("-", "−")):
        raise AmountError("negative")
    body = body.removeprefix("+").strip()
    if not _BODY.match(body):
        raise AmountError("not_number")
    separator = _decimal_separator(body, locale)
    whole, fraction = body.rsplit(separator, 1) if separator else (body, "")
    if not fraction.isdigit() and fraction:
        raise AmountError("not_number")
    if separator and not fraction:
        raise AmountError("not_number")
    groups = _GROUP_SEPARATORS.split(whole)
    if any(not g.isdigit() for g in groups):
        raise AmountError("not_number")
    if len(groups) > 1 and (len(groups[0]) > 3 or any(len(g) != 3 for g in groups[1:])):
        raise AmountError("not_number")
    value = decimal.Decimal("".join(groups) + ("." + fraction if fraction else ""))
    if value != value.quantize(CENT):
        raise AmountError("decimals")
    if value >= MAX_VALUE:
        raise AmountError("too_large")
    return Amount(value.quantize(CENT), currency)


def split_title_and_amount(text: str, locale: str = "en") -> tuple[str, Amount | None]:
    """``/newdeal`` arguments: a title, then optionally a value (``Acme renewal 1 500,50 EUR``).

    The longest run of trailing words that reads as a value wins, as long as a title is left;
    a trailing word that looks like a number but is not a valid value raises its AmountError.
    """
    words = text.split()
    for size in range(min(5, len(words) - 1), 0, -1):
        try:
            amount = parse_amount(" ".join(words[-size:]), locale)
        except AmountError:
            continue
        return " ".join(words[:-size]), amount
    if len(words) > 1 and re.search(r"[0-9]", words[-1]) and words[-1][0] in "0123456789-−+":
        try:
            parse_amount(words[-1], locale)
        except AmountError as exc:
            if exc.reason != "not_number":
                raise
    return " ".join(words), None
