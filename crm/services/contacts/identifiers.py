"""Normalizing contact identifiers: E.164 phones, lower-cased emails and usernames, search text."""

from __future__ import annotations

import re

import phonenumbers

from crm.errors import ValidationFailed

# Deliberately simple: one @, a dot in the domain, no spaces. Deliverability is not checked.
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_USERNAME_RE = re.compile(r"^[a-z0-9_]{3,64}$")
_WHATSAPP_ID_RE = re.compile(r"^\d{6,20}$")


def normalize_email(raw: str | None, field: str = "email") -> str | None:
    """Lower-cased email, None when blank; ValidationFailed naming ``field`` when malformed."""
    if raw is None or not raw.strip():
        return None
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL_RE.match(email):
        raise ValidationFailed(field, f"'{raw.strip()}' is not a valid email address")
    return email


def normalize_phone(
    raw: str | None, default_region: str = "US", field: str = "phone"
) -> str | None:
    """The number in E.164 (``+14155550123``); numbers without ``+`` use ``default_region``."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        raise ValidationFailed(
            field, f"'{raw.strip()}' cannot be parsed as a phone number"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed(field, f"'{raw.strip()}' is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_telegram_username(raw: str | None, field: str = "telegram_username") -> str | None:
    """Lower-cased username without ``@`` or a t.me link prefix."""
    if raw is None or not raw.strip():
        return None
    name = raw.strip()
    for prefix in ("https://t.me/", "http://t.me/", "t.me/", "@"):
        if name.lower().startswith(prefix):
            name = name[len(prefix) :]
    name = name.lower()
    if not _USERNAME_RE.match(name):
        raise ValidationFailed(field, f"'{raw.strip()}' is not a Telegram username")
    return name


def normalize_whatsapp_id(raw: str | None, field: str = "whatsapp_id") -> str | None:
    """A WhatsApp id is the number in digits, without ``+``."""
    if raw is None or not str(raw).strip():
        return None
    wa_id = re.sub(r"[\s+\-()]", "", str(raw))
    if not _WHATSAPP_ID_RE.match(wa_id):
        raise ValidationFailed(field, f"'{raw}' is not a WhatsApp id (digits of the number)")
    return wa_id


def build_search_text(
    name: str | None,
    email: str | None,
    phone: str | None,
    telegram_username: str | None,
) -> str:
    """What contact search matches: lower-cased name, email, phone digits, @username."""
    parts = [
        (name or "").lower(),
        email or "",
        (phone or "").lstrip("+"),
        f"@{telegram_username}" if telegram_username else "",
    ]
    return " ".join(p for p in parts if p)
