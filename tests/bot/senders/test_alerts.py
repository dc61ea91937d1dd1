"""Operator alerts through the emulator: stage moves, assignments, the daily digest, /timezone.

The service runs for real (aiogram, the sandbox Telegram and WhatsApp emulators on loopback);
changes are made through the crm services (or the bot), and what the operators were sent is
read back from ``/sandbox/telegram/sent``. The digest is driven with an injected "now".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import zoneinfo

import pytest
from aiogram.utils.i18n import I18n
from tortoise import connections

from bot.i18n import LOCALES_DIR, build_i18n, rendering
from bot.senders.alerts import Alerts, render_digest
from crm.messaging import ChannelKind
from crm.models import (
    Contact,
    Conversation,
    Draft,
    Event,
    MessageIntent,
    Pipeline,
    Stage,
    User,
)
from crm.services.access import Actor
from crm.services.accounts import operators
from crm.services.ai.agents import do_create_agent
from crm.services.ai.settings import do_update_ai_settings
from crm.services.inbox import conversations
from crm.services.inbox.digest import WorkspaceDigest
from crm.services.pipeline.deals import do_create_deal, do_move_deal
from tests.support.bot import (
    buttons,
    invite_link,
    join,
    lead_received,
    lead_writes,
    onboard_owner,
    press,
    say,
    sent,
    wait_for,
    whatsapp_connection,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OLGA = 5301
BORIS = 5302
VERA = 5303
ED = 5304
STRANGER = 5305
DIGEST_HEADER_RU = "☀️ <b>Доброе утро! Ваша ежедневная сводка</b>"
DIGEST_HEADER_EN = "☀️ <b>Good morning! Your daily digest</b>"


def alerts_of(service: RunningService) -> Alerts:
    """The alerts of the service's operator bot."""
    alerts = service.app.state.operator.bot.alerts
    assert isinstance(alerts, Alerts)
    return alerts


async def start_in(service: RunningService, user_id: int, name: str, language: str) -> User:
    """``/start`` in a language; the workspace (and its sandbox channels) exist once answered."""
    await say(service, user_id, "/start", first_name=name, language_code=language)

    async def welcomed() -> bool:
        return bool(await sent(service, user_id))

    await eventually(welcomed)
    return await User.get(telegram_id=user_id)


async def speak_russian(service: RunningService, user_id: int) -> None:
    """The operator picks Russian with /lang."""
    before = len(await sent(service, user_id))
    await say(service, user_id, "/lang")

    async def offered() -> bool:
        return len(await sent(service, user_id)) > before

    await eventually(offered)
    offer = (await sent(service, user_id))[-1]
    await press(service, user_id, "lang:ru", offer["message_id"])

    async def stored() -> bool:
        user = await User.get(telegram_id=user_id)
        return user.language == "ru"

    await eventually(stored)


async def texts(service: RunningService, chat_id: int) -> list[str]:
    return [m.get("text") or "" for m in await sent(service, chat_id)]


async def owner_actor(user: User) -> Actor:
    actor = await operators.actor_for(user)
    assert actor is not None
    return actor


async def stages_of(tenant_id: int) -> dict[str, Stage]:
    pipeline = await Pipeline.get(tenant_id=tenant_id, is_default=True)
    return {s.name: s for s in await Stage.filter(pipeline_id=pipeline.id)}


async def first_conversation(tenant_id: int) -> Conversation:
    found: list[Conversation] = []

    async def stored() -> bool:
        found[:] = await Conversation.filter(tenant_id=tenant_id)
        return bool(found)

    await eventually(stored)
    return found[0]


# ---- stage moves -----------------------------------------------------------------------------


async def test_a_stage_move_tells_the_deal_owner_and_the_assignee_not_the_mover(
    service: RunningService,
) -> None:
    olga = await onboard_owner(service, OLGA, "Olga")
    tenant_id = olga.current_tenant_id or 0
    await join(service, BORIS, "Boris", await invite_link(service, OLGA, "member"))
    await join(service, VERA, "Vera", await invite_link(service, OLGA, "member"))
    await speak_russian(service, VERA)
    await lead_writes(service, await whatsapp_connection(tenant_id), "Anna", "hello there")
    conversation = await first_conversation(tenant_id)

    # The AI has handled the lead message: it moves a Cold deal itself, so the deal comes after.
    async def classified() -> bool:
        return await MessageIntent.exists()

    await eventually(classified)
    boris = await User.get(telegram_id=BORIS)
    vera = await User.get(telegram_id=VERA)
    actor = await owner_actor(olga)
    await conversations.do_assign(actor, conversation.id, vera.id)
    deal = await do_create_deal(
        actor, "Big <b>deal</b> & co", contact_id=conversation.contact_id, owner_id=boris.id
    )
    stages = await stages_of(tenant_id)

    await do_move_deal(actor, deal.id, stages["Replied"].id)

    title = "Big &lt;b&gt;deal&lt;/b&gt; &amp; co"
    alert = await wait_for(service, BORIS, title)
    assert alert["text"] == f"📊 <b>{title}</b> moved: Cold → Replied by Olga"
    assert alert["parse_mode"] == "HTML"
    assert buttons(alert) == [f"dl:{deal.id}"]
    assert alert["reply_markup"]["inline_keyboard"][0][0]["text"] == "💼 Open deal"
    in_russian = await wait_for(service, VERA, title)
    assert in_russian["text"] == (
        f"📊 Сделка <b>{title}</b> перешла: Cold → Replied. Переместил(а): Olga"
    )
    assert in_russian["reply_markup"]["inline_keyboard"][0][0]["text"] == "💼 Открыть сделку"
    assert not [t for t in await texts(service, OLGA) if title in t], "the mover was told"

    # At-least-once delivery: the same event handled again tells nobody twice.
    event = await Event.get(type="deal.stage_changed", entity_id=deal.id)
    counts = [len(await sent(service, u)) for u in (OLGA, BORIS, VERA)]
    await alerts_of(service).deal_moved(event, connections.get("default"))
    assert [len(await sent(service, u)) for u in (OLGA, BORIS, VERA)] == counts

    # Boris, the deal's owner, moves it himself: Vera hears of it, he does not.
    boris_actor = await operators.actor_for(boris, tenant_id)
    assert boris_actor is not None
    await do_move_deal(boris_actor, deal.id, stages["Qualified"].id)
    second = await wait_for(service, VERA, "Replied → Qualified")
    assert second["text"].endswith("Переместил(а): Boris")
    assert not [t for t in await texts(service, BORIS) if "Replied → Qualified" in t]
    assert not [t for t in await texts(service, OLGA) if "Replied → Qualified" in t]


async def rule_moves_a_cold_deal(service: RunningService, owner: User) -> str:
    """A lead with a Cold deal writes again; returns the deal's title once the rule moved it."""
    tenant_id = owner.current_tenant_id or 0
    connection_id = await whatsapp_connection(tenant_id)
    await lead_writes(service, connection_id, "Anna", "hello there")
    conversation = await first_conversation(tenant_id)

    async def classified() -> bool:
        return await MessageIntent.exists()

    await eventually(classified)
    deal = await do_create_deal(
        await owner_actor(owner), "Acme pilot", contact_id=conversation.contact_id
    )
    await lead_writes(service, connection_id, "Anna", "any news?")

    async def moved() -> bool:
        return await Event.filter(type="deal.stage_changed", entity_id=deal.id).exists()

    await eventually(moved)
    return deal.title


async def test_a_move_by_a_pipeline_rule_names_the_rule_not_the_ai(
    service: RunningService,
) -> None:
    olga = await onboard_owner(service, OLGA, "Olga")
    title = await rule_moves_a_cold_deal(service, olga)
    alert = await wait_for(service, OLGA, "📊")  # lead notifications name the deal too
    assert alert["text"] == (
        f"📊 <b>{title}</b> moved: Cold → Replied by the rule “lead replied: Cold → Replied”"
    )
    assert "AI" not in alert["text"]


async def test_a_russian_workspace_has_its_rules_and_alerts_in_russian(
    service: RunningService,
) -> None:
    olga = await start_in(service, OLGA, "Ольга", "ru")
    title = await rule_moves_a_cold_deal(service, olga)
    alert = await wait_for(service, OLGA, "📊")  # lead notifications name the deal too
    assert alert["text"] == (
        f"📊 Сделка <b>{title}</b> перешла: Холодный контакт → Есть ответ по правилу "
        "«лид ответил: Холодный контакт → Есть ответ»"
    )


# ---- assignments -----------------------------------------------------------------------------


async def test_an_assignment_tells_the_assignee_who_can_reply_to_it(
    service: RunningService,
) -> None:
    olga = await onboard_owner(service, OLGA, "Olga")
    tenant_id = olga.current_tenant_id or 0
    await join(service, BORIS, "Boris", await invite_link(service, OLGA, "member"))
    await speak_russian(service, BORIS)
    await lead_writes(service, await whatsapp_connection(tenant_id), "Anna <i>", "quote please")
    notification = await wait_for(service, OLGA, "quote please")
    conversation = await first_conversation(tenant_id)

    # Olga takes it herself: nobody is alerted.
    await press(service, OLGA, f"cv:a:{conversation.id}", notification["message_id"])

    async def taken() -> bool:
        await conversation.refresh_from_db()
        return conversation.assignee_id == olga.id

    await eventually(taken)

    # Then she gives it to Boris, who is told in Russian, with the notification buttons.
    boris = await User.get(telegram_id=BORIS)
    await conversations.do_assign(await owner_actor(olga), conversation.id, boris.id)
    alert = await wait_for(service, BORIS, "назначил(а) вам диалог")
    assert (
        alert["text"] == "🙋 Olga назначил(а) вам диалог с <b>Anna &lt;i&gt;</b>.\n\nquote please"
    )
    assert alert["parse_mode"] == "HTML"
    assert buttons(alert)[0] == f"cv:r:{conversation.id}"
    assert f"cv:c:{conversation.id}" in buttons(alert)
    assert not [t for t in await texts(service, OLGA) if "assigned you" in t]

    # A Telegram reply to the alert reaches the lead.
    await say(service, BORIS, "Boris here, 49 EUR.", reply_to_message_id=alert["message_id"])

    async def delivered() -> bool:
        return "Boris here, 49 EUR." in await lead_received(service)

    await eventually(delivered)

    # Redelivered, the event alerts nobody again.
    event = (
        await Event.filter(type="conversation.assigned", entity_id=conversation.id)
        .order_by("-id")
        .first()
    )
    assert event is not None
    count = len(await sent(service, BORIS))
    await alerts_of(service).assigned(event, connections.get("default"))
    assert len(await sent(service, BORIS)) == count


# ---- the AI's drafts and hand-offs -----------------------------------------------------------


async def test_an_agents_draft_and_the_ais_hand_off_reach_the_operator_with_buttons(
    service: RunningService,
) -> None:
    olga = await onboard_owner(service, OLGA, "Olga")
    tenant_id = olga.current_tenant_id or 0
    actor = await owner_actor(olga)
    await do_update_ai_settings(
        actor,
        service.app.state.cipher,
        {
            "model": "openai/sandbox-chat",
            "api_base": f"{service.base_url}/sandbox/llm/v1",
            "api_key": "sk-sandbox",
            "default_ai_mode": "draft",
        },
    )
    await do_create_agent(actor, {"name": "Sam", "kind": "sdr", "triggers": ["lead_message"]})
    wa = await whatsapp_connection(tenant_id)
    # The sandbox model obeys the directive: it stands for a model deciding to answer.
    answer = "Hi Anna, the Pro plan is 49 EUR a seat."
    await lead_writes(service, wa, "Anna", f'Price? [[tool:send_message {{"text": "{answer}"}}]]')

    proposal = await wait_for(service, OLGA, "proposes a reply")
    assert proposal["text"].startswith("🤖 <b>Sam</b> proposes a reply to <b>Anna</b>:")
    assert answer in proposal["text"]
    draft = await Draft.get(agent_id__isnull=False)
    assert buttons(proposal)[0] == f"df:s:{draft.id}"
    assert answer not in await lead_received(service)  # nothing went out unapproved
    await press(service, OLGA, f"df:s:{draft.id}", proposal["message_id"])

    async def delivered() -> bool:
        return answer in await lead_received(service)

    await eventually(delivered)

    await lead_writes(service, wa, "Anna", "Can I talk to a real person?")
    handed = await wait_for(service, OLGA, "handed the conversation")
    assert handed["text"] == (
        "🙋 The AI handed the conversation with <b>Anna</b> to you.\n"
        "Reason: the lead asked for a person\n"
        "It stays silent there until someone hands it back."
    )
    conversation = await first_conversation(tenant_id)
    assert buttons(handed)[0] == f"cv:r:{conversation.id}"
    assert buttons(handed)[-1] == f"cv:b:{conversation.id}"

    # Olga hands it back from the alert: the AI may act there again.
    await press(service, OLGA, f"cv:b:{conversation.id}", handed["message_id"])

    async def handed_back() -> bool:
        await conversation.refresh_from_db()
        return conversation.ai_handoff_at is None

    await eventually(handed_back)
    edited = await wait_for(service, OLGA, "Handed back to the AI")
    assert f"cv:b:{conversation.id}" not in buttons(edited)


# ---- the daily digest ------------------------------------------------------------------------


def next_morning(zone: str) -> dt.datetime:
    """The next 09:05 on the wall clock of ``zone``, in UTC (at least a minute from now)."""
    tz = zoneinfo.ZoneInfo(zone)
    local = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).astimezone(tz)
    morning = local.replace(hour=9, minute=5, second=0, microsecond=0)
    if morning <= local:
        morning += dt.timedelta(days=1)
    return morning.astimezone(dt.UTC)


async def digests(service: RunningService, chat_id: int, header: str) -> list[str]:
    return [t for t in await texts(service, chat_id) if t.startswith(header)]


async def test_the_daily_digest_comes_once_at_the_local_morning(
    service: RunningService,
) -> None:
    olga = await start_in(service, OLGA, "Olga", "ru")
    tenant_id = olga.current_tenant_id or 0
    await say(service, OLGA, "/timezone Europe/Moscow")
    await wait_for(service, OLGA, "Часовой пояс установлен: Europe/Moscow")
    actor = await owner_actor(olga)
    connection_id = await whatsapp_connection(tenant_id)

    # 21 new leads, 3 of them waiting for a reply; 5 deals moved.
    for i in range(18):
        await Contact.create(tenant_id=tenant_id, name=f"lead {i}")
    now = dt.datetime.now(dt.UTC)
    for i in range(3):
        contact = await Contact.create(tenant_id=tenant_id, name=f"waiting {i}")
        await Conversation.create(
            tenant_id=tenant_id,
            contact_id=contact.id,
            connection_id=connection_id,
            channel=ChannelKind.WHATSAPP,
            peer_id=f"49151000000{i}",
            last_inbound_at=now,
            last_message_at=now,
        )
    stages = await stages_of(tenant_id)  # Russian names: Olga started in Russian
    for i in range(5):
        deal = await do_create_deal(actor, f"deal {i}")
        await do_move_deal(actor, deal.id, stages["Есть ответ"].id)

    alerts = alerts_of(service)
    morning = next_morning("Europe/Moscow")
    # An hour early nothing is due; then two workers (or rounds) race: one digest.
    assert await alerts.send_due_digests(morning - dt.timedelta(hours=1)) == 0
    counts = await asyncio.gather(
        alerts.send_due_digests(morning), alerts.send_due_digests(morning)
    )
    assert sorted(counts) == [0, 1]
    (digest,) = await digests(service, OLGA, DIGEST_HEADER_RU)
    assert "• 21 новый лид" in digest
    assert "• 3 диалога ждут ответа" in digest
    assert "• 5 сделок сменили этап" in digest
    assert "<b>Пространство Olga</b>" in digest
    assert "Часовой пояс: Europe/Moscow (/timezone)." in digest
    assert (await User.get(id=olga.id)).digest_sent_on == morning.astimezone(
        zoneinfo.ZoneInfo("Europe/Moscow")
    ).date()

    # Later that morning, or after a restart: still one.
    assert await alerts.send_due_digests(morning + dt.timedelta(minutes=40)) == 0
    assert len(await digests(service, OLGA, DIGEST_HEADER_RU)) == 1


async def test_the_digest_in_english_and_not_without_news(service: RunningService) -> None:
    ed = await onboard_owner(service, ED, "Ed")
    tenant_id = ed.current_tenant_id or 0
    quiet = await start_in(service, STRANGER, "Quinn", "en")  # a workspace with nothing new
    await lead_writes(service, await whatsapp_connection(tenant_id), "Anna", "hello")
    conversation = await first_conversation(tenant_id)
    deal = await do_create_deal(
        await owner_actor(ed), "Anna's deal", contact_id=conversation.contact_id
    )
    await do_move_deal(await owner_actor(ed), deal.id, (await stages_of(tenant_id))["Meeting"].id)

    morning = next_morning("UTC")
    assert await alerts_of(service).send_due_digests(morning) == 1
    (digest,) = await digests(service, ED, DIGEST_HEADER_EN)
    assert digest == (
        f"{DIGEST_HEADER_EN}\n\n<b>Ed&#x27;s workspace</b>\n"
        "• 1 new lead\n"
        "• 1 conversation waiting for a reply\n"
        "• 1 deal moved\n\n"
        "New leads and deal moves: the last 24 hours. Time zone: UTC (/timezone)."
    )
    # Nothing to report: no digest, and the morning is over for Quinn all the same.
    assert not await digests(service, STRANGER, DIGEST_HEADER_EN)
    assert (await User.get(id=quiet.id)).digest_sent_on is not None


@pytest.fixture(scope="module")
def i18n(tmp_path_factory: pytest.TempPathFactory) -> I18n:
    """The catalogs, copied (compiling them must not touch the working tree)."""
    target = tmp_path_factory.mktemp("alerts-i18n") / "locales"
    shutil.copytree(LOCALES_DIR, target, ignore=shutil.ignore_patterns("*.mo"))
    return build_i18n(target)


@pytest.mark.parametrize(
    ("locale", "n", "lead", "waiting", "moved"),
    [
        ("ru", 1, "1 новый лид", "1 диалог ждёт ответа", "1 сделка сменила этап"),
        ("ru", 3, "3 новых лида", "3 диалога ждут ответа", "3 сделки сменили этап"),
        ("ru", 5, "5 новых лидов", "5 диалогов ждут ответа", "5 сделок сменили этап"),
        ("ru", 21, "21 новый лид", "21 диалог ждёт ответа", "21 сделка сменила этап"),
        ("en", 1, "1 new lead", "1 conversation waiting for a reply", "1 deal moved"),
        ("en", 3, "3 new leads", "3 conversations waiting for a reply", "3 deals moved"),
        ("en", 21, "21 new leads", "21 conversations waiting for a reply", "21 deals moved"),
    ],
)
def test_digest_plural_forms(
    i18n: I18n, locale: str, n: int, lead: str, waiting: str, moved: str
) -> None:
    with rendering(i18n, locale):
        text = render_digest([WorkspaceDigest(1, "<Acme>", n, n, n)], "Etc/GMT-3")
    assert text.splitlines()[2:6] == [
        "<b>&lt;Acme&gt;</b>",
        f"• {lead}",
        f"• {waiting}",
        f"• {moved}",
    ]
    assert "UTC+3" in text.splitlines()[-1]


def test_a_digest_leaves_out_what_is_zero(i18n: I18n) -> None:
    with rendering(i18n, "en"):
        text = render_digest([WorkspaceDigest(1, "A", 0, 2, 0)], "")
    assert "• 2 conversations waiting for a reply" in text
    assert "lead" not in text.split("\n\n")[1] and "moved" not in text.split("\n\n")[1]


# ---- /timezone -------------------------------------------------------------------------------


async def test_timezone_shows_and_sets_the_zone(service: RunningService) -> None:
    olga = await onboard_owner(service, OLGA, "Olga")

    await say(service, OLGA, "/timezone")
    await wait_for(service, OLGA, "Your time zone is not set: the daily digest follows UTC.")

    await say(service, OLGA, "/timezone europe/berlin")
    await wait_for(service, OLGA, "Time zone set: Europe/Berlin.")
    assert (await User.get(id=olga.id)).timezone == "Europe/Berlin"

    await say(service, OLGA, "/timezone +3")
    answer = await wait_for(service, OLGA, "Time zone set: UTC+3.")
    assert "your daily digest comes at 09:00 local time" in answer["text"]
    assert (await User.get(id=olga.id)).timezone == "Etc/GMT-3"  # POSIX sign, inverted

    await say(service, OLGA, "/timezone Mars/Olympus")
    refused = await wait_for(service, OLGA, "is not a time zone I know")
    assert refused["text"].startswith("“Mars/Olympus” is not a time zone I know.")
    assert "/timezone Europe/Berlin" in refused["text"]
    await say(service, OLGA, "/timezone +05:30")
    await wait_for(service, OLGA, "“+05:30” is not a time zone I know.")
    assert (await User.get(id=olga.id)).timezone == "Etc/GMT-3"

    await say(service, OLGA, "/timezone")
    await wait_for(service, OLGA, "Your time zone: UTC+3. It is ")


async def test_timezone_in_russian_and_for_strangers(service: RunningService) -> None:
    await start_in(service, BORIS, "Борис", "ru")
    await say(service, BORIS, "/timezone Asia/Novosibirsk")
    await wait_for(service, BORIS, "Часовой пояс установлен: Asia/Novosibirsk. Сейчас там ")
    await say(service, BORIS, "/timezone Луна")
    await wait_for(service, BORIS, "Часовой пояс «Луна» мне не известен.")
    assert (await User.get(telegram_id=BORIS)).timezone == "Asia/Novosibirsk"

    # Someone who never sent /start is pointed there, and nothing is stored.
    await say(service, STRANGER, "/timezone +3")
    await wait_for(service, STRANGER, "/start")
    assert await User.get_or_none(telegram_id=STRANGER) is None
