"""Refresh the catalogs from the source and fill in translations from a JSON file.

    python locales/translate.py ru translations.json

Runs what ``make locales`` runs (extract from ``bot/``, merge into every catalog), then sets
each ``msgid`` of the JSON object (for ``en``, empty entries get their msgid) to its translation (a string, or a list of plural forms),
drops the fuzzy guesses Babel made for those ids, and compiles. Several people (or agents)
may run it at once: a file lock serializes them.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCK = ROOT / "locales" / ".translate.lock"


def refresh() -> None:
    """Extract the messages of bot/ and merge them into the catalogs."""
    pot = ROOT / "locales" / "messages.pot"
    subprocess.run(
        [str(BIN / "pybabel"), "extract", "-F", "babel.cfg", "-o", str(pot), "bot"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            str(BIN / "pybabel"),
            "update",
            "-i",
            str(pot),
            "-d",
            "locales",
            "-D",
            "messages",
            "--ignore-obsolete",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def apply(locale: str, translations: dict[str, str | list[str]]) -> list[str]:
    """Write the translations into the catalog of ``locale``; return the ids not in it."""
    path = ROOT / "locales" / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fp:
        catalog = read_po(fp, locale=locale)
    unknown = []
    for msgid, text in translations.items():
        message = None
        for candidate in catalog:
            key = candidate.id if isinstance(candidate.id, str) else candidate.id[0]
            if key == msgid:
                message = candidate
                break
        if message is None:
            unknown.append(msgid)
            continue
        message.string = tuple(text) if isinstance(text, list) else text
        message.flags.discard("fuzzy")
    with path.open("wb") as fp:
        write_po(fp, catalog, width=100)
    return unknown


def fill_english() -> None:
    """English is the source language: an empty English entry is its own msgid."""
    path = ROOT / "locales" / "en" / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fp:
        catalog = read_po(fp, locale="en")
    for message in catalog:
        if not message.id:
            continue
        forms = [message.string] if isinstance(message.string, str) else list(message.string)
        if message.fuzzy or not all(forms):
            message.string = message.id
            message.flags.discard("fuzzy")
    with path.open("wb") as fp:
        write_po(fp, catalog, width=100)


def main() -> int:
    """Refresh, translate, compile."""
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        return 2
    locale = sys.argv[1]
    translations = json.loads(Path(sys.argv[2]).read_text("utf-8")) if len(sys.argv) == 3 else {}
    LOCK.touch(exist_ok=True)
    with LOCK.open("r") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        refresh()
        fill_english()
        unknown = apply(locale, translations)
        sys.path.insert(0, str(ROOT))
        from bot.i18n import compile_catalogs

        compile_catalogs()
    for msgid in unknown:
        print(f"not in the source (check the spelling): {msgid!r}", file=sys.stderr)
    return 1 if unknown else 0


if __name__ == "__main__":
    raise SystemExit(main())
