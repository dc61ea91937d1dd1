"""Checks that keep agents in line: banned phrases, quiet hours, a lead asking for a human.

Pure functions, no I/O; the agent runner and its tools apply them (personal data is kept out
of logs by crm.infrastructure.redaction).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HANDOFF_RE = re.compile(
    r"\b(?:"
    r"(?:talk|speak|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|your\s+|the\s+)?"
    r"(?:human|person|real\s+person|manager|operator|agent|someone|somebody|sales\s*rep)"
    r"|real\s+person|human\s+(?:please|agent|being)|are\s+you\s+a\s+(?:bot|robot)"
    r"|stop\s+the\s+bot|not\s+a\s+bot"
    r")\b"
    r"|(?:живой|живым|живого)\s+(?:человек|человеком|оператор|менеджер)"
    r"|(?:позов|соедин|переключ)\w*\s+(?:\w+\s+)?(?:с\s+)?(?:менеджер|оператор|человек)"
    r"|(?:хочу|можно|дайте)\s+(?:\w+\s+)?(?:с\s+)?(?:менеджер|оператор|человек)"
    r"|ты\s+(?:бот|робот)|вы\s+(?:бот|робот)",
    re.IGNORECASE,
)


def _folded(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def banned_phrase_in(text: str, phrases: list[str] | tuple[str, ...]) -> str | None:
    """The first banned phrase ``text`` contains (case and spacing ignored), if any."""
    folded = _folded(text)
    for phrase in phrases:
        wanted = _folded(phrase)
        if wanted and wanted in folded:
            return phrase
    return None


def asks_for_human(text: str) -> bool:
    """Whether a lead asks to talk to a person rather than the AI (English or Russian)."""
    return bool(_HANDOFF_RE.search(text or ""))


def zone_of(name: str | None) -> ZoneInfo:
    """The IANA zone called ``name``; UTC when it is unset or unknown."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def in_quiet_hours(now: dt.datetime, zone: str | None, start_hour: int, end_hour: int) -> bool:
    """Whether ``now`` falls in the quiet hours [start, end) of the contact's local day.

    A window may wrap midnight (21 to 8); equal hours mean no quiet hours at all.
    """
    if start_hour == end_hour:
        return False
    hour = now.astimezone(zone_of(zone)).hour
    if start_hour < end_hour:
        return start_hour <= hour < end_hour
    return hour >= start_hour or hour < end_hour
