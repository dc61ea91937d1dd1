"""CSV import from the operator bot, end to end through the sandbox Telegram emulator.

The operator sends a .csv document; the bot answers a progress message, edits it (throttled) while
the import runs in the background, turns it into the summary and sends the rejected rows as CSV.
The throttle is checked with a fake clock and by counting the editMessageText calls the bot makes.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import EditMessageText, TelegramMethod
from aiogram.methods.base import Response, TelegramType

from bot.i18n import build_i18n
from bot.operator_bot import OperatorBot
from bot.routers.contacts.csv_import import (
    ImportOptions,
    progress_text,
    rejected_rows_csv,
    summary_text,
)
from crm.models import Contact, User
from crm.services.contacts.csv_import import ImportResult, RowError
from tests.support.bot import invite_link, join, onboard_owner, role_of, say, send_file, sent
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 6301
VIEWER = 6302
RU_OWNER = 6303
MEMBER = 6304


class FakeClock:
    """Each reading is ``step`` seconds after the previous one."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Recorder(BaseRequestMiddleware):
    """Every Bot API call the operator bot makes (aiogram's own request middleware hook)."""

    def __init__(self) -> None:
        self.calls: list[TelegramMethod[Any]] = []

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        self.calls.append(method)
        return await make_request(bot, method)

    def edits(self) -> list[str]:
        return [str(m.text) for m in self.calls if isinstance(m, EditMessageText)]


def operator_of(service: RunningService) -> OperatorBot:
    operator = service.app.state.operator.bot
    assert isinstance(operator, OperatorBot)
    return operator


def configure(service: RunningService, **options: Any) -> Recorder:
    """Import options for this service's bot, and a recorder of its Bot API calls."""
    operator = operator_of(service)
    operator.dispatcher["import_options"] = ImportOptions(**options)
    recorder = Recorder()
    operator.bot.session.middleware(recorder)
    return recorder


async def last_text(
    service: RunningService, chat_id: int, done: Callable[[str], bool]
) -> dict[str, Any]:
    """The newest bot message to ``chat_id`` once its text satisfies ``done``."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        messages = [m for m in await sent(service, chat_id) if m.get("text")]
        found[:] = [m for m in messages if done(m["text"])]
        return bool(found)

    await eventually(arrived)
    return found[-1]


async def sent_document(service: RunningService, chat_id: int) -> tuple[dict[str, Any], bytes]:
    """The newest document the bot sent to ``chat_id`` and its bytes, fetched like a client."""
    documents: list[dict[str, Any]] = []

    async def arrived() -> bool:
        documents[:] = [
            m for m in await sent(service, chat_id) if (m.get("media") or {}).get("kind")
        ]
        return bool(documents)

    await eventually(arrived)
    message = documents[-1]
    token = operator_of(service).config.token
    info = await service.http.post(
        f"/sandbox/telegram/bot{token}/getFile", json={"file_id": message["media"]["file_id"]}
    )
    assert info.status_code == 200, info.text
    path = info.json()["result"]["file_path"]
    body = await service.http.get(f"/sandbox/telegram/file/bot{token}/{path}")
    assert body.status_code == 200
    return message, body.content


def contacts_csv(valid: int, invalid: int, *, start: int = 0) -> bytes:
    lines = ["Name,Email,Phone"]
    lines += [f"Person {i},person{i}@example.com," for i in range(start, start + valid)]
    lines += [f"Broken {i},not-an-email-{i}," for i in range(invalid)]
    return ("\n".join(lines) + "\n").encode()


async def tenant_contacts(user_id: int) -> int:
    user = await User.get(telegram_id=user_id)
    return await Contact.filter(tenant_id=user.current_tenant_id).count()


async def wait_idle(service: RunningService) -> None:
    async def idle() -> bool:
        return len(operator_of(service).background) == 0

    await eventually(idle)


async def test_import_reports_progress_throttled_then_the_summary_and_rejected_rows(
    service: RunningService,
) -> None:
    await onboard_owner(service, OWNER, "Olga")
    # One clock reading per progress callback, 1 s apart; edits at most every 3 s.
    recorder = configure(service, batch_size=10, progress_interval=3.0, clock=FakeClock(1.0))
    await send_file(service, OWNER, contacts_csv(valid=95, invalid=5))

    summary = await last_text(service, OWNER, lambda t: "finished" in t)
    assert summary["text"] == (
        "Import of contacts.csv finished.\n"
        "95 contacts created\n"
        "0 contacts updated\n"
        "0 rows skipped: nothing new\n"
        "5 rows rejected\n"
        "The rejected rows and the reasons are in rejected-rows.csv."
    )
    # The summary is the progress message, edited in place: one message, not two.
    texts = [m["text"] for m in await sent(service, OWNER) if m.get("text")]
    assert not any(t.startswith("Importing") for t in texts)
    assert summary["edited"] is True
    await wait_idle(service)
    assert await tenant_contacts(OWNER) == 95

    edits = recorder.edits()
    assert edits[-1] == summary["text"]
    progress = edits[:-1]
    # 100 data rows in batches of 10: 11 callbacks, 1 s apart. At most one edit per 3 s, each
    # with a new text: the rows shown grow by at least 3 batches between two edits.
    assert 1 <= len(progress) <= 11 // 3, progress
    # Each edit says how far it is out of the file's 100 data rows ("30 of 100 rows").
    counted = [re.fullmatch(r"Importing contacts\.csv… (\d+) of (\d+) rows", t) for t in progress]
    assert all(counted), progress
    shown = [int(m.group(1)) for m in counted if m]
    assert {int(m.group(2)) for m in counted if m} == {100}
    assert shown[0] >= 30 and all(b - a >= 30 for a, b in itertools.pairwise(shown))

    document, content = await sent_document(service, OWNER)
    assert document["media"]["file_name"] == "rejected-rows.csv"
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert rows[0] == ["row", "field", "reason", "level"]
    # The header is row 1; the broken rows follow the 95 good ones.
    assert [(r[0], r[1]) for r in rows[1:]] == [(str(n), "email") for n in range(97, 102)]
    assert all(r[2] for r in rows[1:])


async def test_an_unchanged_interval_does_not_edit(service: RunningService) -> None:
    """A clock that never moves: the progress message is only ever edited into the summary."""
    await onboard_owner(service, OWNER, "Olga")
    recorder = configure(service, batch_size=5, progress_interval=3.0, clock=lambda: 100.0)
    await send_file(service, OWNER, contacts_csv(valid=40, invalid=0))
    summary = await last_text(service, OWNER, lambda t: "finished" in t)
    assert "40 contacts created" in summary["text"]
    assert "rejected-rows.csv" not in summary["text"]
    assert recorder.edits() == [summary["text"]]
    await wait_idle(service)
    assert not [m for m in await sent(service, OWNER) if m.get("media")]


async def onboard_ru(service: RunningService, user_id: int, start: str = "") -> None:
    """``/start`` from a Telegram user whose language is Russian (stored as theirs)."""
    await say(service, user_id, f"/start {start}".strip(), first_name="Ирина", language_code="ru")

    async def registered() -> bool:
        user = await User.get_or_none(telegram_id=user_id)
        if user is None or user.current_tenant_id is None:
            return False
        return not start or await role_of(user_id, user.current_tenant_id) is not None

    await eventually(registered)


async def test_summary_in_russian_with_plural_forms(service: RunningService) -> None:
    await onboard_ru(service, RU_OWNER)
    configure(service, progress_interval=0.0)
    first = b"Name,Email,Title\nAnna,anna@example.com,\nBoris,boris@example.com,\n"
    await send_file(service, RU_OWNER, first, filename="первый.csv", language_code="ru")
    await last_text(service, RU_OWNER, lambda t: "Импорт первый.csv завершён." in t)
    await wait_idle(service)

    # Anna gets a title (updated), Boris as he is (skipped), three new, two broken.
    second = (
        b"Name,Email,Title\n"
        b"Anna,anna@example.com,CTO\n"
        b"Boris,boris@example.com,\n"
        b"Vera,vera@example.com,\nGleb,gleb@example.com,\nDina,dina@example.com,\n"
        b"Bad,bad-email,\nWorse,worse@,\n"
    )
    await send_file(service, RU_OWNER, second, filename="второй.csv", language_code="ru")
    summary = await last_text(service, RU_OWNER, lambda t: "Импорт второй.csv завершён." in t)
    assert summary["text"] == (
        "Импорт второй.csv завершён.\n"
        "3 контакта создано\n"
        "1 контакт обновлён\n"
        "1 строка пропущена: ничего нового\n"
        "2 строки отклонено\n"
        "Отклонённые строки и причины — в файле rejected-rows.csv."
    )
    document, content = await sent_document(service, RU_OWNER)
    assert document["caption"] == (
        "Отклонённые строки и предупреждения из второй.csv: строка, поле, причина, уровень."
    )
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert [r[:2] for r in rows] == [["row", "field"], ["7", "email"], ["8", "email"]]
    await wait_idle(service)
    assert await tenant_contacts(RU_OWNER) == 5


def test_progress_and_summary_texts_in_both_languages() -> None:
    i18n = build_i18n()
    result = ImportResult(created=1, updated=21, skipped=12_000, rejected=5)
    warned = ImportResult(created=2, warned=2)
    with i18n.context(), i18n.use_locale("en"):
        assert progress_text("a.csv", 12_000) == "Importing a.csv… 12,000 rows"
        assert progress_text("a.csv", 1) == "Importing a.csv… 1 row"
        assert progress_text("a.csv", 120, 500) == "Importing a.csv… 120 of 500 rows"
        # A total counted short (odd lines) never shows more done than there are.
        assert progress_text("a.csv", 3, 2) == "Importing a.csv… 3 of 3 rows"
        assert summary_text("a.csv", result).splitlines()[1:] == [
            "1 contact created",
            "21 contacts updated",
            "12,000 rows skipped: nothing new",
            "5 rows rejected",
        ]
        assert summary_text("a.csv", warned).splitlines()[-1] == (
            "2 rows imported without a bad field"
        )
    with i18n.context(), i18n.use_locale("ru"):
        assert progress_text("a.csv", 12_000) == "Импорт a.csv… 12\xa0000 строк"
        assert progress_text("a.csv", 22) == "Импорт a.csv… 22 строки"
        assert progress_text("a.csv", 120, 500) == "Импорт a.csv… 120 из 500 строк"
        assert progress_text("a.csv", 1, 21) == "Импорт a.csv… 1 из 21 строки"
        assert summary_text("a.csv", result).splitlines()[1:] == [
            "1 контакт создан",
            "21 контакт обновлён",
            "12\xa0000 строк пропущено: ничего нового",
            "5 строк отклонено",
        ]
        assert summary_text("a.csv", warned).splitlines()[-1] == (
            "2 строки импортированы без неверного поля"
        )


def test_rejected_rows_file_guards_formulas() -> None:
    content = rejected_rows_csv(
        [RowError(3, "phone", "=HYPERLINK(1)", "warning"), RowError(4, "row", "ok")]
    )
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    assert rows == [
        ["row", "field", "reason", "level"],
        ["3", "phone", "'=HYPERLINK(1)", "warning"],
        ["4", "row", "ok", "error"],
    ]


async def test_a_viewer_cannot_import(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))
    await send_file(service, VIEWER, contacts_csv(valid=3, invalid=0))
    await last_text(service, VIEWER, lambda t: t == "Viewers cannot import contacts.")
    # A Russian-speaking viewer (their own workspace first, then the invite).
    await onboard_ru(service, RU_OWNER)
    await onboard_ru(service, RU_OWNER, await invite_link(service, OWNER, "viewer"))
    await send_file(service, RU_OWNER, contacts_csv(valid=3, invalid=0), language_code="ru")
    await last_text(
        service, RU_OWNER, lambda t: t == "Наблюдатели не могут импортировать контакты."
    )
    await wait_idle(service)
    assert await Contact.all().count() == 0


async def test_a_member_may_import(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    await join(service, MEMBER, "Mark", await invite_link(service, OWNER, "member"))
    await send_file(service, MEMBER, contacts_csv(valid=2, invalid=0))
    summary = await last_text(service, MEMBER, lambda t: "finished" in t)
    assert "2 contacts created" in summary["text"]


async def test_other_files_are_refused_with_a_reason(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    await send_file(service, OWNER, b"%PDF-1.4", filename="report.pdf", mime_type="application/pdf")
    refused = await last_text(service, OWNER, lambda t: t.startswith("Only CSV files"))
    assert "Save the table as CSV" in refused["text"]
    await onboard_ru(service, RU_OWNER)
    await send_file(
        service, RU_OWNER, b"PK\x03\x04", filename="sheet.xlsx", mime_type="application/zip"
    )
    await last_text(service, RU_OWNER, lambda t: t.startswith("Импортировать можно только"))
    await wait_idle(service)
    assert await Contact.all().count() == 0


async def test_too_large_a_file_is_refused(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    configure(service, max_bytes=1024 * 1024)
    big = contacts_csv(valid=30_000, invalid=0)
    assert len(big) > 1024 * 1024
    await send_file(service, OWNER, big, filename="big.csv")
    refused = await last_text(service, OWNER, lambda t: t.startswith("The file is"))
    assert refused["text"].startswith(f"The file is {len(big) / 2**20:.1f} MB; files up to 1 MB")
    await wait_idle(service)
    assert await Contact.all().count() == 0


async def test_a_broken_file_gets_the_services_error(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    await send_file(service, OWNER, b"\n \n", filename="empty.csv")
    failed = await last_text(service, OWNER, lambda t: t.startswith("Could not import empty.csv"))
    assert failed["text"] == "Could not import empty.csv: file: is empty"
    await send_file(service, OWNER, bytes(range(256)) * 8, filename="binary.csv")
    failed = await last_text(service, OWNER, lambda t: t.startswith("Could not import binary"))
    assert "no column with an identifier" in failed["text"]
    await wait_idle(service)
    assert await Contact.all().count() == 0


async def test_a_document_replying_to_a_message_is_not_an_import(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    welcome = (await sent(service, OWNER))[0]
    before = len(await sent(service, OWNER))
    await send_file(
        service, OWNER, contacts_csv(valid=1, invalid=0), reply_to_message_id=welcome["message_id"]
    )

    async def answered() -> bool:
        return len(await sent(service, OWNER)) > before

    await eventually(answered)  # the inbox's answer: a reply goes to a lead, if to anyone
    await wait_idle(service)
    answers = (await sent(service, OWNER))[before:]
    assert not [m for m in answers if "Importing" in (m.get("text") or "")], answers
    assert await Contact.all().count() == 0


async def test_stopping_the_bot_cancels_a_running_import_and_says_so(
    service: RunningService,
) -> None:
    await onboard_owner(service, OWNER, "Olga")
    recorder = configure(service, progress_interval=3.0, clock=lambda: 0.0)
    emulator = service.app.state.channels.telegram_emulator
    # The summary's edit meets flood control: the bot waits 20 s before trying again.
    emulator.add_fault("rate_limit", retry_after=20, methods=["editMessageText"])
    await send_file(service, OWNER, contacts_csv(valid=3, invalid=0))

    async def waiting() -> bool:
        return bool(recorder.edits()) and await tenant_contacts(OWNER) == 3

    await eventually(waiting)
    operator = operator_of(service)
    await operator.stop()  # what the service does when it shuts down
    assert len(operator.background) == 0
    (progress,) = [m for m in await sent(service, OWNER) if "contacts.csv" in (m.get("text") or "")]
    assert progress["text"] == (
        "The import of contacts.csv was interrupted because the bot is restarting. "
        "Rows imported so far are kept: send the file again to finish."
    )
