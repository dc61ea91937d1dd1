"""The gettext catalogs: complete in en and ru, compilable, right plurals; how a locale is chosen.

The reference is what Babel extracts from ``bot/`` with ``babel.cfg`` right now (not the
committed ``messages.pot``), so a new string without a translation fails here until
``make locales`` is run and the catalogs are translated.
"""

from __future__ import annotations

import ast
import gettext
import io
import os
import re
import shutil
import string
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from fastapi import FastAPI

from bot.i18n import (
    DEFAULT_LOCALE,
    LOCALES_DIR,
    SUPPORTED,
    CatalogError,
    OperatorI18nMiddleware,
    build_i18n,
    compile_catalogs,
    pick_locale,
    rendering,
)
from bot.routers.accounts import lang
from sandbox.telegram import TelegramEmulator
from tests.support.servers import serve

ROOT = Path(__file__).resolve().parents[2]
BOT_DIR = ROOT / "bot"
BABEL_CFG = ROOT / "babel.cfg"
RU_PLURAL_FORMS = (
    "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && "
    "(n%100<10 || n%100>=20) ? 1 : 2);"
)
# aiogram's translation functions, whatever name they are imported or called under.
GETTEXT_NAMES = {"_", "__", "gettext", "lazy_gettext", "ngettext", "lazy_ngettext"}

MsgKey = str | tuple[str, str]


@pytest.fixture(autouse=True)
def clean_database() -> None:
    """These tests need no database (overrides the suite's autouse fixture)."""


@dataclass(frozen=True)
class Extracted:
    """One message of the source: its id(s) and where it is used."""

    key: MsgKey
    locations: tuple[str, ...]

    @property
    def msgid(self) -> str:
        return self.key if isinstance(self.key, str) else self.key[0]


@cache
def extracted() -> dict[str, Extracted]:
    """Every message in bot/, extracted as ``make locales`` does, by msgid."""
    with BABEL_CFG.open(encoding="utf-8") as fp:
        method_map, options_map = parse_mapping_cfg(fp, str(BABEL_CFG))
    found: dict[str, Extracted] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        BOT_DIR, method_map, options_map
    ):
        key: MsgKey = message if isinstance(message, str) else (message[0], message[1])
        where = f"bot/{filename}:{lineno}"
        msgid = key if isinstance(key, str) else key[0]
        previous = found.get(msgid)
        if previous is not None and previous.key != key:
            pytest.fail(f"{msgid!r} is used both as a plain and as a plural message ({where})")
        locations = (*previous.locations, where) if previous else (where,)
        found[msgid] = Extracted(key, locations)
    return found


@cache
def catalog(locale: str) -> Catalog:
    """The committed .po catalog of ``locale``."""
    path = LOCALES_DIR / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fp:
        return read_po(fp, locale=locale, abort_invalid=True)


def compiled(locale: str) -> gettext.GNUTranslations:
    """The catalog of ``locale`` compiled in memory and loaded as Python's gettext would."""
    buffer = io.BytesIO()
    write_mo(buffer, catalog(locale), use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def _forms(value: str | tuple[str, ...] | list[str] | None) -> list[str]:
    if value is None:
        return [""]
    return [value] if isinstance(value, str) else list(value)


def _fields(text: str) -> set[str]:
    """The ``{placeholders}`` of a str.format template."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        return {f"<invalid template: {exc}>"}


def _tags(text: str) -> Counter[str]:
    return Counter(re.findall(r"</?[a-zA-Z][^<>]*>", text))


def _plural_forms_used(cat: Catalog) -> dict[int, set[int]]:
    """For each plural form index, the counts 0..199 that select it."""
    plural = gettext.c2py(cat.plural_expr)
    used: dict[int, set[int]] = {}
    for n in range(200):
        used.setdefault(plural(n), set()).add(n)
    return used


def test_there_are_messages_to_translate() -> None:
    assert extracted(), "Babel found no message in bot/: check babel.cfg and the keywords"
    assert "Choose the language of the bot:" in extracted()


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def test_every_gettext_call_is_extracted_as_it_is_looked_up() -> None:
    """A call Babel cannot read, or reads as another kind of message, is never translated."""
    problems: list[str] = []
    for path in sorted(BOT_DIR.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _call_name(node) not in GETTEXT_NAMES:
                continue
            where = f"{rel}:{node.lineno}"
            keywords = {k.arg for k in node.keywords}
            if not node.args:
                continue
            singular = _literal(node.args[0])
            if singular is None:
                problems.append(f"{where}: the msgid must be a string literal, not an expression")
                continue
            if "plural" in keywords or None in keywords:
                problems.append(f"{where}: pass singular and plural positionally")
                continue
            if len(node.args) >= 2:
                plural = _literal(node.args[1])
                if plural is None:
                    problems.append(f"{where}: the plural must be a string literal")
                    continue
                if len(node.args) < 3 and "n" not in keywords:
                    problems.append(f"{where}: a plural needs its count: _(one, many, n)")
                    continue
                key: MsgKey = (singular, plural)
            else:
                key = singular
            if len(node.args) + len(node.keywords) > 4:
                problems.append(f"{where}: too many arguments for babel.cfg's keyword specs")
                continue
            entry = extracted().get(singular)
            if (
                entry is None
                or entry.key != key
                or not any(loc.startswith(f"{rel}:") for loc in entry.locations)
            ):
                problems.append(f"{where}: {key!r} is not extracted as used (see babel.cfg)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("locale", SUPPORTED)
def test_catalog_header(locale: str) -> None:
    cat = catalog(locale)
    assert not cat.fuzzy, f"{locale}: the header is fuzzy, so pybabel compile would skip it"
    assert str(cat.locale) == locale


@pytest.mark.parametrize("locale", SUPPORTED)
def test_catalog_translates_every_message(locale: str) -> None:
    cat = catalog(locale)
    problems: list[str] = []
    for msgid, entry in extracted().items():
        message = cat.get(msgid)
        where = entry.locations[0]
        if message is None:
            problems.append(f"missing {msgid!r} ({where}): run `make locales` and translate")
            continue
        if message.id != entry.key:
            problems.append(
                f"{msgid!r} ({where}): catalog has {message.id!r}, code uses {entry.key!r}"
            )
            continue
        if message.fuzzy:
            problems.append(f"fuzzy {msgid!r} ({where}): review it and drop the fuzzy flag")
        forms = _forms(message.string)
        if isinstance(entry.key, tuple) and len(forms) != cat.num_plurals:
            problems.append(f"{msgid!r}: {len(forms)} plural forms, {cat.num_plurals} needed")
        if any(not form.strip() for form in forms):
            problems.append(f"untranslated {msgid!r} ({where})")
    assert not problems, f"{locale}:\n" + "\n".join(problems)


@pytest.mark.parametrize("locale", SUPPORTED)
def test_translations_keep_placeholders_and_tags(locale: str) -> None:
    cat = catalog(locale)
    used = _plural_forms_used(cat)
    problems: list[str] = []
    for msgid, entry in extracted().items():
        message = cat.get(msgid)
        if message is None:
            continue  # reported by test_catalog_translates_every_message
        sources = [entry.key] if isinstance(entry.key, str) else list(entry.key)
        for index, form in enumerate(_forms(message.string)):
            if not form:
                continue
            if isinstance(entry.key, tuple):
                # A form also used for counts other than 1 (ru: 21) needs the plural's fields.
                counts = used.get(index, set())
                allowed = [entry.key[1]] if counts - {1} else sources
            else:
                allowed = sources
            if not any(_fields(form) == _fields(source) for source in allowed):
                problems.append(
                    f"{msgid!r}[{index}]: placeholders {sorted(_fields(form))} "
                    f"!= {sorted(_fields(allowed[-1]))}"
                )
            if not any(_tags(form) == _tags(source) for source in allowed):
                problems.append(f"{msgid!r}[{index}]: HTML tags differ from the msgid's")
    assert not problems, f"{locale}:\n" + "\n".join(problems)


@pytest.mark.parametrize("locale", SUPPORTED)
def test_catalog_compiles_and_loads(locale: str) -> None:
    translations = compiled(locale)
    cat = catalog(locale)
    assert translations.info()["language"] == locale
    for msgid, entry in extracted().items():
        message = cat.get(msgid)
        if message is None or message.fuzzy:
            continue
        if isinstance(entry.key, str):
            assert translations.gettext(msgid) == message.string
        else:
            forms = _forms(message.string)
            assert translations.ngettext(entry.key[0], entry.key[1], 1) == forms[0]


def test_english_plural_forms() -> None:
    cat = catalog("en")
    assert cat.num_plurals == 2
    plural = compiled("en").plural  # type: ignore[attr-defined]
    assert [plural(n) for n in (0, 1, 2, 5, 21)] == [1, 0, 1, 1, 1]


def test_russian_plural_forms_header() -> None:
    cat = catalog("ru")
    assert cat.num_plurals == 3
    assert cat.plural_forms.replace(" ", "") == RU_PLURAL_FORMS.replace(" ", "")


@pytest.mark.parametrize(
    ("n", "form"),
    [
        (1, 0),
        (3, 1),
        (5, 2),
        (21, 0),
        (11, 2),
        (0, 2),
        (2, 1),
        (12, 2),
        (14, 2),
        (22, 1),
        (101, 0),
        (111, 2),
    ],
)
def test_russian_plural_rule(n: int, form: int) -> None:
    plural = compiled("ru").plural  # type: ignore[attr-defined]
    assert plural(n) == form


def test_a_russian_plural_message_picks_the_right_form() -> None:
    plurals = [e.key for e in extracted().values() if isinstance(e.key, tuple)]
    if not plurals:
        pytest.skip("bot/ has no plural message yet: _(one, many, n) will be checked here")
    translations = compiled("ru")
    for singular, plural in plurals:
        forms = _forms(catalog("ru")[singular].string)
        got = [translations.ngettext(singular, plural, n) for n in (1, 3, 5, 21, 11)]
        assert got == [forms[0], forms[1], forms[2], forms[0], forms[2]], singular


@pytest.mark.parametrize(
    ("stored", "telegram", "expected"),
    [
        ("ru", "en", "ru"),
        ("en", "ru", "en"),
        (None, "ru", "ru"),
        (None, "ru-RU", "ru"),
        (None, "RU_ru", "ru"),
        (None, "en-GB", "en"),
        (None, "uk", "en"),
        (None, None, "en"),
        ("", "ru", "ru"),
        ("de", "ru", "ru"),
        ("de", "fr", "en"),
    ],
)
def test_pick_locale(stored: str | None, telegram: str | None, expected: str) -> None:
    assert pick_locale(stored, telegram) == expected


def _copy_catalogs(tmp_path: Path) -> Path:
    target = tmp_path / "locales"
    shutil.copytree(LOCALES_DIR, target, ignore=shutil.ignore_patterns("*.mo"))
    return target


def test_build_i18n_compiles_missing_catalogs(tmp_path: Path) -> None:
    locales = _copy_catalogs(tmp_path)
    i18n = build_i18n(locales)
    for locale in SUPPORTED:
        assert (locales / locale / "LC_MESSAGES" / "messages.mo").exists()
    assert set(i18n.available_locales) == set(SUPPORTED)
    assert i18n.default_locale == DEFAULT_LOCALE
    prompt = "Choose the language of the bot:"
    assert i18n.gettext(prompt, locale="ru") == catalog("ru")[prompt].string
    assert compile_catalogs(locales) == [], "fresh .mo files are not rewritten"


def test_build_i18n_recompiles_a_changed_catalog(tmp_path: Path) -> None:
    locales = _copy_catalogs(tmp_path)
    compile_catalogs(locales)
    po = locales / "ru" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as fp:
        cat = read_po(fp, locale="ru")
    cat["Choose the language of the bot:"].string = "Какой язык?"
    with po.open("wb") as fp:
        write_po(fp, cat)
    mo = po.with_suffix(".mo")
    os.utime(mo, (mo.stat().st_mtime - 10, mo.stat().st_mtime - 10))
    i18n = build_i18n(locales)
    assert i18n.gettext("Choose the language of the bot:", locale="ru") == "Какой язык?"


def test_a_broken_catalog_fails_clearly(tmp_path: Path) -> None:
    locales = _copy_catalogs(tmp_path)
    po = locales / "ru" / "LC_MESSAGES" / "messages.po"
    po.write_text(po.read_text(encoding="utf-8") + '\nmsgid "dangling\n', encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape("ru/LC_MESSAGES/messages.po")):
        build_i18n(locales)


def test_a_fuzzy_header_fails_clearly(tmp_path: Path) -> None:
    locales = _copy_catalogs(tmp_path)
    po = locales / "ru" / "LC_MESSAGES" / "messages.po"
    po.write_text("#, fuzzy\n" + po.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(CatalogError, match="fuzzy"):
        build_i18n(locales)


@pytest.fixture(scope="module")
def i18n(tmp_path_factory: pytest.TempPathFactory) -> I18n:
    """aiogram's I18n over a private copy of the catalogs."""
    return build_i18n(_copy_catalogs(tmp_path_factory.mktemp("i18n")))


def _tg_user(language_code: str | None) -> User:
    return User(id=42, is_bot=False, first_name="Op", language_code=language_code)


@pytest.mark.parametrize(
    ("crm_user", "language_code", "expected"),
    [
        (SimpleNamespace(language="ru"), "en", "ru"),
        (SimpleNamespace(language="en"), "ru", "en"),
        (SimpleNamespace(), "ru-RU", "ru"),
        (None, "ru", "ru"),
        (None, "uk", "en"),
        (None, None, "en"),
    ],
)
async def test_middleware_picks_the_locale(
    i18n: I18n, crm_user: Any, language_code: str | None, expected: str
) -> None:
    middleware = OperatorI18nMiddleware(i18n)
    data: dict[str, Any] = {"event_from_user": _tg_user(language_code)}
    if crm_user is not None:
        data["user"] = crm_user
    assert await middleware.get_locale(_tg_user(language_code), data) == expected

    async def handler(event: TelegramObject, data: dict[str, Any]) -> str:
        return _("Choose the language of the bot:")

    text = await middleware(handler, _tg_user(language_code), data)
    assert text == i18n.gettext("Choose the language of the bot:", locale=expected)


def test_rendering_outside_an_update(i18n: I18n) -> None:
    prompt = "Choose the language of the bot:"
    with rendering(i18n, "ru"):
        assert _(prompt) == catalog("ru")[prompt].string
        with rendering(i18n, "en-US"):
            assert _(prompt) == prompt
        assert _(prompt) == catalog("ru")[prompt].string
    assert I18n.get_current(no_error=True) is None


# ---- /lang through the sandbox Telegram emulator ---------------------------------------------

TOKEN = "424242:AAE-sandbox_operator-token-0123456789abcdef"
OPERATOR = 4242


class FakeUsers(BaseMiddleware):
    """Stands in for the operator middleware: ``user`` with the stored language in data."""

    def __init__(self) -> None:
        self.languages: dict[int, str] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        sender = data.get("event_from_user")
        stored = self.languages.get(sender.id) if sender is not None else None
        data["user"] = SimpleNamespace(language=stored) if stored else None
        return await handler(event, data)

    async def set_language(self, telegram_id: int, locale: str) -> None:
        self.languages[telegram_id] = locale


@dataclass
class LangBot:
    emulator: TelegramEmulator
    bot: Bot
    dispatcher: Dispatcher
    users: FakeUsers

    async def operator_does(self, **payload: Any) -> None:
        """Play the operator, then hand the update the emulator built to the dispatcher."""
        await self.emulator.post_update(
            {"connection_id": "operator", "from_user_id": OPERATOR, **payload}
        )
        update = self.emulator.updates("operator")[-1]
        await self.dispatcher.feed_raw_update(self.bot, update)

    def last_sent(self) -> dict[str, Any]:
        return self.emulator.sent("operator", OPERATOR)[-1]


@pytest.fixture
async def lang_bot(i18n: I18n) -> AsyncIterator[LangBot]:
    """The lang router behind the locale middleware, its bot talking to the emulator."""
    emulator = TelegramEmulator()
    app = FastAPI()
    app.include_router(emulator.router)
    users = FakeUsers()
    dispatcher = Dispatcher(set_language=users.set_language)
    dispatcher.message.outer_middleware(users)
    dispatcher.callback_query.outer_middleware(users)
    OperatorI18nMiddleware(i18n).setup(dispatcher)
    dispatcher.include_router(lang.build_router())
    async with serve(app) as base_url:
        emulator.register_bot("operator", TOKEN, "crm_operator_bot")
        api = TelegramAPIServer.from_base(f"{base_url}/sandbox/telegram")
        bot = Bot(token=TOKEN, session=AiohttpSession(api=api))
        try:
            yield LangBot(emulator, bot, dispatcher, users)
        finally:
            await bot.session.close()
            await emulator.aclose()


async def test_lang_switches_and_remembers(lang_bot: LangBot) -> None:
    ru = catalog("ru")
    await lang_bot.operator_does(text="/lang", language_code="ru")
    offer = lang_bot.last_sent()
    assert offer["text"] == ru["Choose the language of the bot:"].string
    buttons = offer["reply_markup"]["inline_keyboard"][0]
    assert [(b["text"], b["callback_data"]) for b in buttons] == [
        ("English", "lang:en"),
        ("Русский", "lang:ru"),
    ]

    await lang_bot.operator_does(callback_data="lang:en", message_id=offer["message_id"])
    assert lang_bot.users.languages == {OPERATOR: "en"}
    confirmed = lang_bot.last_sent()
    assert confirmed["message_id"] == offer["message_id"]
    assert confirmed["edited"] and confirmed["text"] == "Language: English"
    answers = lang_bot.emulator.callback_answers("operator")
    assert answers[-1]["text"] == "Language: English"

    # The stored choice now wins over the Telegram language.
    await lang_bot.operator_does(text="/lang", language_code="ru")
    offer = lang_bot.last_sent()
    assert offer["text"] == "Choose the language of the bot:"
    await lang_bot.operator_does(callback_data="lang:ru", message_id=offer["message_id"])
    assert lang_bot.users.languages == {OPERATOR: "ru"}
    expected = ru["Language: {language}"].string.format(language=ru["Russian"].string)
    assert lang_bot.last_sent()["text"] == expected
