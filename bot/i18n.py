"""Translations of the operator bot: gettext catalogs under ``locales/`` through aiogram's I18n.

Handlers write ``from aiogram.utils.i18n import gettext as _`` (``lazy_gettext as __`` for strings
built at import time) and ``_("{n} deal", "{n} deals", n)`` for plurals (see ``babel.cfg``).
``build_i18n`` compiles any missing or stale ``.mo`` first, because aiogram's ``I18n`` refuses a
``.po`` without its ``.mo``; ``make install`` compiles them too. Worker code that talks to an
operator outside an update renders inside ``rendering(i18n, locale)``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject
from aiogram.utils.i18n import I18n, I18nMiddleware
from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po

LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"
DOMAIN = "messages"
SUPPORTED = ("en", "ru")
DEFAULT_LOCALE = "en"


class CatalogError(RuntimeError):
    """A translation catalog that cannot be compiled or loaded."""


def _primary_subtag(code: str | None) -> str | None:
    if not code:
        return None
    return code.strip().replace("_", "-").split("-", 1)[0].lower() or None


def pick_locale(stored: str | None, telegram_language_code: str | None) -> str:
    """The stored preference if supported, else Telegram's language if supported, else English."""
    for code in (stored, telegram_language_code):
        primary = _primary_subtag(code)
        if primary in SUPPORTED:
            return primary
    return DEFAULT_LOCALE


def _compile_one(po_path: Path, mo_path: Path) -> None:
    try:
        with po_path.open("rb") as fp:
            catalog = read_po(fp, locale=po_path.parents[1].name, abort_invalid=True)
    except (PoFileError, ValueError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{po_path}: not a valid PO catalog: {exc}") from exc
    if catalog.fuzzy:
        raise CatalogError(
            f"{po_path}: the catalog header is marked fuzzy, so it would not be compiled; "
            "review it and remove the '#, fuzzy' flag"
        )
    problems = [
        f"{message.id!r}: {error}" for message, errors in catalog.check() for error in errors
    ]
    if problems:
        raise CatalogError(f"{po_path}: " + "; ".join(problems))
    # Write next to the target and rename: a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=mo_path.parent, prefix=mo_path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write_mo(out, catalog, use_fuzzy=False)
        os.replace(tmp, mo_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compile_catalogs(locales_dir: Path = LOCALES_DIR) -> list[Path]:
    """Compile every ``.po`` whose ``.mo`` is missing or older; return the ``.mo`` paths written."""
    written: list[Path] = []
    for po_path in sorted(locales_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        _compile_one(po_path, mo_path)
        written.append(mo_path)
    return written


def build_i18n(locales_dir: Path = LOCALES_DIR) -> I18n:
    """aiogram's I18n over ``locales_dir``, compiling stale catalogs first; all locales required."""
    compile_catalogs(locales_dir)
    i18n = I18n(path=locales_dir, default_locale=DEFAULT_LOCALE, domain=DOMAIN)
    missing = [code for code in SUPPORTED if code not in i18n.available_locales]
    if missing:
        raise CatalogError(f"{locales_dir}: no catalog for {', '.join(missing)}")
    return i18n


class OperatorI18nMiddleware(I18nMiddleware):
    """Picks the locale: the CRM user's stored language, else their Telegram language, else en.

    The CRM user is read from middleware data under ``user_key`` (an object with a ``language``
    attribute), so the middleware that loads it must run before this one.
    """

    def __init__(
        self,
        i18n: I18n,
        user_key: str = "user",
        i18n_key: str | None = "i18n",
        middleware_key: str = "i18n_middleware",
    ) -> None:
        super().__init__(i18n=i18n, i18n_key=i18n_key, middleware_key=middleware_key)
        self.user_key = user_key

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        """The locale for this update."""
        stored = getattr(data.get(self.user_key), "language", None)
        from_user = data.get("event_from_user")
        language_code = getattr(from_user, "language_code", None)
        return pick_locale(stored if isinstance(stored, str) else None, language_code)


@contextmanager
def rendering(i18n: I18n, locale: str) -> Iterator[I18n]:
    """Make ``_``/``__`` translate into ``locale`` outside an update (workers, notifications)."""
    with i18n.context(), i18n.use_locale(pick_locale(locale, None)):
        yield i18n
