"""Formatting checks of sent text: enough to surface escaping bugs, not a renderer."""

from __future__ import annotations

import re

from sandbox.telegram.wire import bad_request

_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
        "tg-time",
    }
)
_HTML_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)(\s[^<>]*)?>")
_MDV2_ALWAYS_ESCAPED = frozenset("#+-={}.!")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def check_html(text: str) -> str | None:
    """Why Telegram would refuse ``text`` as HTML, or None when it parses."""
    stack: list[str] = []
    index = 0
    while (start := text.find("<", index)) >= 0:
        match = _HTML_TAG_RE.match(text, start)
        if match is None:
            word = text[start + 1 :].split(maxsplit=1)
            name = word[0] if word else ""
            return f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, start)}'
        closing, name = match.group(1), match.group(2).lower()
        if name not in _HTML_TAGS:
            return f'Unsupported start tag "{name}" at byte offset {_byte_offset(text, start)}'
        if closing:
            if not stack or stack[-1] != name:
                expected = f'"</{stack[-1]}>"' if stack else "nothing"
                return (
                    f"Unmatched end tag at byte offset {_byte_offset(text, start)}, "
                    f'expected {expected}, found "</{name}>"'
                )
            stack.pop()
        else:
            stack.append(name)
        index = match.end()
    if stack:
        return f'Can\'t find end tag corresponding to start tag "{stack[-1]}"'
    return None


def check_markdown_v2(text: str) -> str | None:
    """Why Telegram would refuse ``text`` as MarkdownV2, or None when it parses."""
    styles: list[tuple[str, int]] = []
    in_link = -1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                return f"Can't find end of Pre entity at byte offset {_byte_offset(text, i)}"
            i = end + 3
            continue
        if c == "`":
            end = i + 1
            while end < n and text[end] != "`":
                end += 2 if text[end] == "\\" else 1
            if end >= n:
                return f"Can't find end of Code entity at byte offset {_byte_offset(text, i)}"
            i = end + 1
            continue
        marker = text[i : i + 2] if text[i : i + 2] in ("__", "||") else c
        if marker in ("*", "_", "__", "~", "||"):
            opened = [m for m, _ in styles]
            if marker in opened:
                if opened[-1] != marker:
                    return f"Can't parse entities: unclosed {opened[-1]!r} before {marker!r}"
                styles.pop()
            else:
                styles.append((marker, i))
            i += len(marker)
            continue
        if c == "[" and in_link < 0:
            in_link = i
        elif c == "]" and in_link >= 0:
            if not text.startswith("(", i + 1):
                return f"Can't find end of the link entity at byte offset {_byte_offset(text, i)}"
            end = i + 2
            while end < n and text[end] != ")":
                end += 2 if text[end] == "\\" else 1
            if end >= n:
                return f"Can't find end of a URL at byte offset {_byte_offset(text, i)}"
            in_link = -1
            i = end + 1
            continue
        elif (
            c in "[]()|"
            or c in _MDV2_ALWAYS_ESCAPED
            or (c == ">" and i > 0 and text[i - 1] != "\n")
        ):
            return f"Character '{c}' is reserved and must be escaped with the preceding '\\'"
        i += 1
    if styles:
        _, at = styles[-1]
        return f"Can't find end of the entity starting at byte offset {_byte_offset(text, at)}"
    if in_link >= 0:
        return f"Can't find end of the link entity at byte offset {_byte_offset(text, in_link)}"
    return None


def check_markdown(text: str) -> str | None:
    """Why Telegram would refuse ``text`` as legacy Markdown, or None when it parses."""
    open_at: dict[str, int] = {}
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in "*_`[":
            closer = "]" if c == "[" else c
            end = text.find(closer, i + 1)
            if end < 0:
                open_at[c] = i
                break
            i = end + 1
            continue
        i += 1
    if open_at:
        at = min(open_at.values())
        return f"Can't find end of the entity starting at byte offset {_byte_offset(text, at)}"
    return None


def check_parse_mode(text: str | None, parse_mode: str | None) -> None:
    """Refuse ``text`` as Telegram does when it does not parse in ``parse_mode``."""
    if not text or not parse_mode:
        return
    mode = parse_mode.lower()
    if mode == "html":
        error = check_html(text)
    elif mode == "markdownv2":
        error = check_markdown_v2(text)
    elif mode == "markdown":
        error = check_markdown(text)
    else:
        raise bad_request(f"unsupported parse_mode {parse_mode!r}")
    if error is not None:
        raise bad_request(f"can't parse entities: {error}")
