"""Text as the product stores it: the same rule on SQLite and PostgreSQL.

PostgreSQL refuses NUL in text and JSON, and neither database can store a lone UTF-16 surrogate,
so such text must never reach a query. Other control characters are invisible noise, and the
bidirectional embeddings, overrides and isolates (U+202A-202E, U+2066-2069) reverse what follows
them wherever a lead's name or text is shown (notifications, the inbox, the sandbox page).

What a lead sends is stored with these characters removed (the lead cannot be asked to resend);
the REST API refuses control characters with a 422 naming the field (``find_control``) and the
services remove the bidi controls from every text they store (``clean_text``).
"""

from __future__ import annotations

import math
import re
from typing import Any

# C0 controls except tab, newline and carriage return; DEL; C1 controls; lone surrogates.
CONTROL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff"
# Bidi embeddings and overrides (LRE RLE PDF LRO RLO) and isolates (LRI RLI FSI PDI).
BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")
_UNSAFE = re.compile(f"[{CONTROL_CHARS}{BIDI_CONTROLS}]")


def clean_text(text: str) -> str:
    """``text`` without control characters (tab, newline, CR kept) and bidi controls."""
    return _UNSAFE.sub("", text)


def clean_optional(text: str | None) -> str | None:
    """``clean_text`` that lets None through."""
    return None if text is None else clean_text(text)


def clean_json(value: Any) -> Any:
    """A JSON value with every string in it (keys too) cleaned by ``clean_text``."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def find_control(text: str) -> str | None:
    """The first control character in ``text`` as ``U+XXXX``, or None when it has none."""
    match = _CONTROL.search(text)
    return None if match is None else f"U+{ord(match.group()):04X}"


def json_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """Where a JSON value holds something no database stores: (path, reason), or None."""
    if isinstance(value, str):
        char = find_control(value)
        return None if char is None else (path, f"must not contain control characters ({char})")
    if isinstance(value, float) and not math.isfinite(value):
        return (path, "must be a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            char = find_control(str(key))
            if char is not None:
                return (path or "key", f"keys must not contain control characters ({char})")
            problem = json_problem(item, where)
            if problem is not None:
                return problem
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = json_problem(item, f"{path}.{index}" if path else str(index))
            if problem is not None:
                return problem
    return None
