"""The operator bot end to end: the real service, aiogram and pywa, the emulators, over HTTP.

Texts are asserted in English, the source language, so they hold before any catalog exists.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from agents.assistant import Assistant
from bot.config import OPERATOR_BOT_EVENT_TYPES
from bot.dependencies import BotServices
from bot.operator_bot import OperatorBot, OperatorBotConfig
from crm.models import (
    Contact,
    Conversation,
    ConversationStatus,
    Membership,
    Message,
    Tenant,
    User,
)
from crm.services.events.catalog import ConversationAssigned, DealStageChanged, MessageReceived
from crm.tasks.handlers import HandlerRegistry
from crm.tasks.periodic import DIGEST_TASK, TEAM_INBOX_TASK
from crm.wiring import shared_embedder
from tests.support.bot import (
    buttons,
    invite_link,
    join,
    lead_received,
    lead_writes,
    onboard_owner,
    press,
    role_of,
    say,
    sent,
    wait_for,
    whatsapp_connection,
)
from tests.support.inbox import CIPHER
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 5001
VIEWER = 5002
LATECOMER = 5003


async def test_start_creates_a_workspace_owned_by_the_newcomer_once(
    service: RunningService,
) -> None:
    user = await onboard_owner(service, OWNER, "Olga")
    welcome = (await sent(service, OWNER))[0]
    assert "Olga's workspace" in welcome["text"] and "owner" in welcome["text"]
    # The sandbox link signs the owner in once: no reusable API key sits in the chat.
    assert "crm_" not in welcome["text"]
    match = re.search(r"/sandbox\?signin=(\S+)", welcome["text"])
    assert match is not None, welcome["text"]
    session = await service.http.post("/sandbox/session", json={"token": match.group(1)})
    assert session.status_code == 200, session.text
    inbox = await service.http.get(
        "/api/v1/conversations", headers={"Authorization": f"Bearer {session.json()['api_key']}"}
    )
    assert inbox.status_code == 200
    reused = await service.http.post("/sandbox/session", json={"token": match.group(1)})
    assert reused.status_code == 410
    (membership,) = await Membership.filter(user_id=user.id)
    assert membership.role == "owner"
    assert user.current_tenant_id == membership.tenant_id
    tenant = await Tenant.get(id=membership.tenant_id)
    assert tenant.name == "Olga's workspace"

    await say(service, OWNER, "/start", first_name="Olga")
    again = await wait_for(service, OWNER, "Hello again")
    assert "Olga's workspace" in again["text"]
    # /start is how to get a fresh sign-in link when the first one was used or expired.
    fresh = re.search(r"/sandbox\?signin=(\S+)", again["text"])
    assert fresh is not None and fresh.group(1) != match.group(1)
    assert await Membership.filter(user_id=user.id).count() == 1
    assert await User.filter(telegram_id=OWNER).count() == 1


async def test_invite_joins_with_the_role_once(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    start = await invite_link(service, OWNER, "viewer")
    await join(service, VIEWER, "Victor", start)
    assert await role_of(VIEWER, owner.current_tenant_id or 0) == "viewer"

    await say(service, LATECOMER, f"/start {start}", first_name="Lena")
    refused = await wait_for(service, LATECOMER, "already used")
    assert "invite" in refused["text"]
    assert await role_of(LATECOMER, owner.current_tenant_id or 0) is None

    await say(service, LATECOMER, "/start inv_not-a-real-token", first_name="Lena")
    await wait_for(service, LATECOMER, "not valid")


async def test_an_invitee_keeps_their_telegram_language(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    start = await invite_link(service, OWNER, "bidi")
    await say(service, LATECOMER, f"/start {start}", first_name="Лена", language_code="ru")
    await wait_for(service, LATECOMER, "Вы присоединились")
    # Stored, so notifications rendered on workers (no update to read it from) speak Russian.
    assert (await User.get(telegram_id=LATECOMER)).language == "ru"


async def test_a_viewer_cannot_invite(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))
    await say(service, VIEWER, "/invite viewer")
    await wait_for(service, VIEWER, "Only owners and admins")


async def test_lead_message_notifies_and_a_reply_reaches_the_lead(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)

    # Markup in what a lead writes stays text: a broken escape would make the emulator
    # reject the notification (it parses HTML like Telegram does) and none would arrive.
    hostile = '<b>hi</b> <a href="x">click</a> & <i>'
    await lead_writes(service, connection_id, "Anna <script>", hostile)

    escaped = html.escape(hostile)
    notification = await wait_for(service, OWNER, escaped)
    assert notification["parse_mode"] == "HTML"
    assert "<b>Anna &lt;script&gt;</b> via WhatsApp" in notification["text"]
    conversation = await Conversation.get(tenant_id=owner.current_tenant_id)
    assert buttons(notification) == [
        f"cv:r:{conversation.id}",
        f"cv:f:{conversation.id}",
        f"cv:d:{conversation.id}",
        f"cv:g:{conversation.id}",
        f"cv:a:{conversation.id}",
        f"cv:s:{conversation.id}",
        f"cv:c:{conversation.id}",
    ]
    # Unassigned: every member hears of it, the viewer too.
    for_viewer = await wait_for(service, VIEWER, escaped)

    await say(service, VIEWER, "I am only a viewer", reply_to_message_id=for_viewer["message_id"])
    await wait_for(service, VIEWER, "Viewers cannot send")

    await say(
        service, OWNER, "Hi Anna, it is 49 EUR.", reply_to_message_id=notification["message_id"]
    )
    # "Sent ✓", soon edited in place to "✓✓ Delivered" as the receipt comes in.
    await wait_for(service, OWNER, "✓")

    async def delivered() -> bool:
        return "Hi Anna, it is 49 EUR." in await lead_received(service)

    await eventually(delivered)
    assert await lead_received(service) == ["Hi Anna, it is 49 EUR."]


async def test_control_and_bidi_characters_of_a_lead_reach_no_one(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    # U+202E would show "invoice.exe" as "invoice.pdf"-like reversed text in the notification;
    # the NUL made PostgreSQL refuse the message after the webhook had answered 200.
    await lead_writes(service, connection_id, "Anna\u202e\x00gnp", "see\x00 \u202efdp.exe now")

    notification = await wait_for(service, OWNER, "see fdp.exe now")
    assert "\u202e" not in notification["text"] and "\x00" not in notification["text"]
    assert "<b>Annagnp</b> via WhatsApp" in notification["text"]
    contact = await Contact.get(tenant_id=owner.current_tenant_id)
    assert contact.name == "Annagnp"
    (message,) = await Message.filter(tenant_id=owner.current_tenant_id)
    assert message.text == "see fdp.exe now"


async def test_the_reply_button_asks_for_a_reply_that_reaches_the_lead(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    await lead_writes(
        service, await whatsapp_connection(owner.current_tenant_id or 0), "A", "quote please"
    )
    notification = await wait_for(service, OWNER, "quote please")
    await press(service, OWNER, buttons(notification)[0], notification["message_id"])
    prompt = await wait_for(service, OWNER, "Write your answer")
    assert prompt["reply_markup"]["force_reply"] is True

    await say(service, OWNER, "Answer via prompt", reply_to_message_id=prompt["message_id"])

    async def delivered() -> bool:
        return await lead_received(service) == ["Answer via prompt"]

    await eventually(delivered)


async def test_close_button_closes_the_conversation(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    await lead_writes(
        service, await whatsapp_connection(owner.current_tenant_id or 0), "A", "goodbye now"
    )
    notification = await wait_for(service, OWNER, "goodbye now")
    conversation = await Conversation.get(tenant_id=owner.current_tenant_id)

    await press(service, OWNER, f"cv:c:{conversation.id}", notification["message_id"])

    async def closed() -> bool:
        await conversation.refresh_from_db()
        return conversation.status is ConversationStatus.CLOSED

    await eventually(closed)

    async def keyboard_edited() -> bool:
        (current,) = [
            m for m in await sent(service, OWNER) if m["message_id"] == notification["message_id"]
        ]
        return f"cv:c:{conversation.id}" not in buttons(current)

    await eventually(keyboard_edited)


async def test_the_webhook_needs_the_secret_header(service: RunningService) -> None:
    update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1}}}
    missing = await service.http.post("/webhooks/operator", json=update)
    wrong = await service.http.post(
        "/webhooks/operator", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}
    )
    assert (missing.status_code, wrong.status_code) == (401, 403)


async def test_commands_are_set_in_english_and_russian(service: RunningService) -> None:
    async def commands() -> list[dict[str, Any]]:
        reply = await service.http.get(
            "/sandbox/telegram/commands", params={"connection_id": "operator"}
        )
        return list(reply.json())

    async def all_set() -> bool:
        return len(await commands()) == 3

    await eventually(all_set)
    assert {c["language_code"] for c in await commands()} >= {"en", "ru"}
    names = {c["command"] for c in (await commands())[0]["commands"]}
    assert {"start", "help", "invite", "team", "workspace", "inbox", "deals", "contacts"} <= names
    russian = next(c for c in await commands() if c["language_code"] == "ru")
    described = {c["command"]: c["description"] for c in russian["commands"]}
    assert described["inbox"] == "Непрочитанные диалоги"


async def test_a_worker_process_gets_every_handler_of_the_bot() -> None:
    """`crm worker` installs them without starting the bot: none of the bot's parts is skipped."""
    registry = HandlerRegistry()
    operator = OperatorBot(
        OperatorBotConfig(token="42:worker-test-token", webhook_secret="s"), BotServices()
    )
    operator.install_handlers(registry)
    on_lead_message = {h.name for h in registry.matching(MessageReceived)}
    assert on_lead_message == {"bot.notify_message_received", "bot.team_inbox_message"}
    assert {h.name for h in registry.matching(DealStageChanged)} == {
        "bot.alert_deal_moved",
        "bot.team_inbox_stage",
    }
    assert [h.name for h in registry.matching(ConversationAssigned)] == ["bot.alert_assigned"]
    # ... and the jobs of the periodic tasks a worker may be sent.
    assert registry.job(DIGEST_TASK) == operator.alerts.send_due_digests
    assert registry.job(TEAM_INBOX_TASK) == operator.team_inbox.run_once
    operator.uninstall_handlers(registry)
    assert not registry.matching(MessageReceived)
    assert registry.job(DIGEST_TASK) is None and registry.job(TEAM_INBOX_TASK) is None
    await operator.bot.session.close()


async def test_a_bot_without_a_digest_installs_no_digest_job() -> None:
    registry = HandlerRegistry()
    config = OperatorBotConfig(token="42:no-digest-token", webhook_secret="s", daily_digest=False)
    operator = OperatorBot(config, BotServices())
    operator.install_handlers(registry)
    assert registry.job(DIGEST_TASK) is None
    assert registry.job(TEAM_INBOX_TASK) == operator.team_inbox.run_once
    await operator.bot.session.close()


async def test_the_ai_handles_a_lead_message_before_the_bot_whatever_the_install_order(
    tmp_path: Path,
) -> None:
    """Notifications show the message's intent: the AI's handler runs first by its order, not
    because it happened to be registered first."""
    registry = HandlerRegistry()
    operator = OperatorBot(
        OperatorBotConfig(token="42:order-test-token", webhook_secret="s"), BotServices()
    )
    operator.install_handlers(registry)  # the bot first, the wrong way round
    Assistant(CIPHER, tmp_path, shared_embedder()).install(registry)
    names = [h.name for h in registry.matching(MessageReceived)]
    assert names[0] == "ai.lead_message"
    assert set(names[1:]) == {"bot.notify_message_received", "bot.team_inbox_message"}
    await operator.bot.session.close()


async def test_an_operator_gets_a_short_burst_then_one_message_a_second() -> None:
    operator = OperatorBot(
        OperatorBotConfig(token="42:pace-test-token", webhook_secret="s"), BotServices()
    )
    assert operator.limiter is not None
    waits = [operator.limiter.chat_delay(42, 5001) for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]  # an answer, a card and a confirmation at once
    assert 2.5 < waits[3] <= 3.0 and 2.5 < waits[4] <= 3.0  # then the window's pace
    await operator.bot.session.close()


async def test_the_bot_loads_for_exactly_the_events_it_handles() -> None:
    """The light list that decides when the sandbox bot loads matches what it registers: an
    event missing from it would reach no notification, an extra one would load aiogram idly."""
    registry = HandlerRegistry()
    operator = OperatorBot(
        OperatorBotConfig(token="42:worker-test-token", webhook_secret="s"), BotServices()
    )
    operator.install_handlers(registry)
    assert registry.event_types() == OPERATOR_BOT_EVENT_TYPES
    await operator.bot.session.close()
