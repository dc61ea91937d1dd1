"""Texts longer than one Telegram message: split on natural boundaries, send the parts in order.

Telegram refuses a message over 4096 characters (counted in UTF-16 code units, as the emulator
does). ``split_text`` cuts at the last paragraph break that leaves a reasonably full part, else a
line break, else a space, and only as a last resort inside a word; with HTML it never cuts inside
a tag or an entity, closes the tags still open at the end of a part and opens them again at the
start of the next, so every part parses on its own. The length of each part counts its markup,
which Telegram does not, so the parts err on the short side.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Message

MESSAGE_LIMIT = 4096

_TAG = r"</?[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?>"
_ENTITY = r"&(?:[a-zA-Z][a-zA-Z0-9]*|#[0-9]+|#[xX][0-9a-fA-F]+);"
_HTML_ATOM = re.compile(f"({_TAG})|({_ENTITY})")
_TAG_NAME = re.compile(r"</?([a-zA-Z][a-zA-Z0-9-]*)")
_WHITESPACE = frozenset(" \t\r\n\f\v\u00a0")


class _Level(IntEnum):
    """Where a part may end, best first."""

    PARAGRAPH = 0
    LINE = 1
    WORD = 2


def _units(text: str) -> int:
    """Telegram's length: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


class _Atoms:
    """The text as indivisible pieces: characters, and in HTML whole tags and entities."""

    def __init__(self, text: str, html: bool) -> None:
        self.pieces: list[str] = []
        # For a tag: +1 opening, -1 closing, 0 otherwise; and its lower-case name.
        self.kinds: list[int] = []
        self.names: list[str] = []
        position = 0
        if html:
            for match in _HTML_ATOM.finditer(text):
                self._characters(text[position : match.start()])
                piece = match.group(0)
                if match.group(1) is not None:
                    name_match = _TAG_NAME.match(piece)
                    assert name_match is not None
                    self.pieces.append(piece)
                    self.kinds.append(-1 if piece.startswith("</") else 1)
                    self.names.append(name_match.group(1).lower())
                else:
                    self.pieces.append(piece)
                    self.kinds.append(0)
                    self.names.append("")
                position = match.end()
        self._characters(text[position:])
        self.sizes = [_units(piece) for piece in self.pieces]

    def _characters(self, text: str) -> None:
        self.pieces.extend(text)
        self.kinds.extend([0] * len(text))
        self.names.extend([""] * len(text))

    def __len__(self) -> int:
        return len(self.pieces)

    def is_space(self, index: int) -> bool:
        return self.kinds[index] == 0 and self.pieces[index] in _WHITESPACE

    def level(self, start: int, index: int) -> _Level | None:
        """How good a cut before atom ``index`` is (a part running from ``start``)."""
        if index <= start or index >= len(self) or self.is_space(index):
            return None
        previous = self.pieces[index - 1]
        if self.kinds[index - 1] != 0 or previous not in _WHITESPACE:
            return None
        if previous == "\n":
            before = index - 2
            if before >= start and self.kinds[before] == 0 and self.pieces[before] == "\n":
                return _Level.PARAGRAPH
            return _Level.LINE
        return _Level.WORD


def _closers(stack: list[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _apply(stack: list[tuple[str, str]], atoms: _Atoms, index: int) -> None:
    """Update the open-tag stack with atom ``index``."""
    kind = atoms.kinds[index]
    if kind > 0:
        stack.append((atoms.names[index], atoms.pieces[index]))
    elif kind < 0:
        name = atoms.names[index]
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth][0] == name:
                del stack[depth:]
                break


def split_text(text: str, limit: int = MESSAGE_LIMIT, *, html: bool = True) -> list[str]:
    """``text`` in parts of at most ``limit`` UTF-16 units, cut at the best boundary in reach.

    With ``html`` (the default) tags and entities stay whole, and the tags open at a cut are
    closed at the end of the part and reopened at the start of the next one. Whitespace at a cut
    stays at the end of the earlier part, so for plain text ``"".join(parts) == text``.
    Raises ValueError when ``limit`` cannot hold even one character plus the open tags.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    if _units(text) <= limit:
        return [text]
    atoms = _Atoms(text, html)
    parts: list[str] = []
    stack: list[tuple[str, str]] = []
    start = 0
    while start < len(atoms):
        prefix = "".join(tag for _, tag in stack)
        walk = list(stack)
        size = _units(prefix)
        closing = _units(_closers(walk))
        best: dict[_Level, tuple[int, int]] = {}  # level -> (cut index, size of the part)
        last_fit: int | None = None
        end = start
        while end < len(atoms):
            size += atoms.sizes[end]
            if size > limit:
                break
            kind = atoms.kinds[end]
            if kind > 0:
                closing += _units(f"</{atoms.names[end]}>")
            _apply(walk, atoms, end)
            if kind < 0:
                closing = _units(_closers(walk))
            end += 1
            if size + closing > limit:
                continue
            last_fit = end
            level = atoms.level(start, end)
            if level is not None:
                best[level] = (end, size)
        if end == len(atoms) and size <= limit and last_fit == end:
            cut = end
        elif last_fit is None:
            raise ValueError(f"limit {limit} is too small for the markup of this text")
        else:
            cut = _choose(best, last_fit, limit)
        walk = list(stack)
        for index in range(start, cut):
            _apply(walk, atoms, index)
        parts.append(prefix + "".join(atoms.pieces[start:cut]) + _closers(walk))
        stack = walk
        start = cut
    return parts


def _choose(best: dict[_Level, tuple[int, int]], last_fit: int, limit: int) -> int:
    """The best level whose cut leaves the part at least half full; else the latest cut."""
    for level in _Level:
        if level in best and best[level][1] * 2 >= limit:
            return best[level][0]
    if best:
        return max(cut for cut, _ in best.values())
    return last_fit


def visible_text(html_text: str) -> str:
    """The text of an HTML message as Telegram shows it (tags dropped, entities kept as is)."""
    return re.sub(_TAG, "", html_text)


async def send_long(
    bot: Bot,
    chat_id: int | str,
    text: str,
    reply_markup: Any = None,
    *,
    limit: int = MESSAGE_LIMIT,
    **kw: Any,
) -> list[Message]:
    """Send ``text`` in as many messages as it needs; the keyboard goes on the last one.

    ``kw`` goes to every ``sendMessage`` (``parse_mode``, ``message_thread_id``, ...), except a
    reply target (``reply_to_message_id``, ``reply_parameters``), which only the first part gets.
    Parts with nothing to show (whitespace) are not sent. Returns the sent messages in order.
    """
    parse_mode = kw.get("parse_mode", bot.default.parse_mode)
    html = str(parse_mode or "").upper() == "HTML"
    parts = [p for p in split_text(text, limit, html=html) if _shows_something(p, html)]
    reply_keys = ("reply_to_message_id", "reply_parameters")
    first_only = {key: kw.pop(key) for key in reply_keys if key in kw}
    sent: list[Message] = []
    for index, part in enumerate(parts):
        extra = dict(kw)
        if index == 0:
            extra.update(first_only)
        markup = reply_markup if index == len(parts) - 1 else None
        sent.append(await bot.send_message(chat_id, part, reply_markup=markup, **extra))
    return sent


def _shows_something(part: str, html: bool) -> bool:
    return bool((visible_text(part) if html else part).strip())


def not_modified(exc: TelegramBadRequest) -> bool:
    """True when Telegram refused an edit only because nothing would change."""
    return "not modified" in exc.message


async def edit_in_place(message: Message, text: str, **kwargs: Any) -> None:
    """Edit a bot message; pressing the button of what is already shown is not an error."""
    try:
        await message.edit_text(text, **kwargs)
    except TelegramBadRequest as exc:
        if not not_modified(exc):
            raise
