"""The team inbox end to end: a forum group per workspace, a topic per lead, over real HTTP.

The real service runs with the sandbox emulators: operators and the group are played through
the Telegram emulator, leads through the WhatsApp one, and what the bot posted is read back.
"""

from __future__ import annotations

import html
from typing import Any

from bot.operator_bot import OperatorBot
from bot.senders.team_inbox import TeamInboxPoster, topic_name
from crm.models import (
    Contact,
    Conversation,
    ConversationStatus,
    Deal,
    Message,
    Stage,
    TeamInbox,
    TeamPost,
    TeamPostStatus,
    TeamTopic,
)
from crm.services.access import Actor
from crm.services.inbox.conversations import do_set_status
from crm.services.inbox.team_inbox import TopicView
from crm.services.inbox.team_posts import GroupBudget
from crm.services.pipeline.deals import do_create_deal, do_move_deal
from tests.support.bot import (
    OPERATOR,
    buttons,
    invite_link,
    join,
    lead_received,
    lead_writes,
    onboard_owner,
    say,
    sent,
    wait_for,
    whatsapp_connection,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 7101
VIEWER = 7102
STRANGER = 7103
BIDI = 7104
GROUP = -1001700000001
OTHER_GROUP = -1001700000002
PLAIN_SUPERGROUP = -1001700000003
BASIC_GROUP = -4700000004
MEMBER_BOT_GROUP = -1001700000005
NO_TOPICS_RIGHT_GROUP = -1001700000006


def poster(service: RunningService) -> TeamInboxPoster:
    operator: OperatorBot = service.app.state.operator.bot
    return operator.team_inbox


async def add_group(service: RunningService, chat_id: int, **options: Any) -> None:
    """The bot was added to a group (a forum supergroup with the bot as admin unless told)."""
    options.setdefault("type", "supergroup" if chat_id < -(10**12) else "group")
    options.setdefault("is_forum", options["type"] == "supergroup")
    reply = await service.http.post(
        "/sandbox/telegram/chats",
        json={
            "connection_id": OPERATOR,
            "chat_id": chat_id,
            "title": f"Team {abs(chat_id) % 100}",
        }
        | options,
    )
    assert reply.status_code == 200, reply.text


async def in_group(
    service: RunningService, user_id: int, text: str, chat_id: int = GROUP, **extra: Any
) -> dict[str, Any]:
    """A member writes in a group (``message_thread_id`` for a topic)."""
    return await say(service, user_id, text, chat_id=chat_id, **extra)


async def press_in_group(
    service: RunningService, user_id: int, data: str, message_id: int, chat_id: int = GROUP
) -> None:
    """A member presses a button of a bot message in the group."""
    reply = await service.http.post(
        "/sandbox/telegram/updates",
        json={
            "connection_id": OPERATOR,
            "from_user_id": user_id,
            "chat_id": chat_id,
            "callback_data": data,
            "message_id": message_id,
        },
    )
    assert reply.status_code == 200, reply.text


async def topics(service: RunningService, chat_id: int = GROUP) -> list[dict[str, Any]]:
    reply = await service.http.get(
        "/sandbox/telegram/topics", params={"connection_id": OPERATOR, "chat_id": chat_id}
    )
    assert reply.status_code == 200, reply.text
    return list(reply.json())


async def wait_for_topic(service: RunningService, name_part: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def there() -> bool:
        found[:] = [t for t in await topics(service) if name_part in t["name"]]
        return bool(found)

    await eventually(there)
    return found[-1]


async def link(service: RunningService, user_id: int = OWNER, chat_id: int = GROUP) -> None:
    await add_group(service, chat_id)
    await in_group(service, user_id, "/teaminbox", chat_id=chat_id)
    await wait_for(service, chat_id, "is now the team inbox")


async def group_texts(service: RunningService, chat_id: int = GROUP) -> list[str]:
    return [m.get("text") or "" for m in await sent(service, chat_id)]


def test_a_topic_name_shows_the_stage_and_fits_telegram() -> None:
    def view(name: str, stage: str | None) -> TopicView:
        conversation = Conversation(id=1, channel="whatsapp", peer_id="49151")
        return TopicView(conversation, name, "whatsapp", None, stage, closed=False)

    assert topic_name(view("Anna", "Replied")) == "Anna · Replied"
    assert topic_name(view("Anna", None)) == "Anna · WhatsApp"
    long = topic_name(view("A" * 300, "Negotiation"))
    assert len(long) == 128 and long.endswith("A · Negotiation")


async def test_linking_checks_the_sender_the_group_and_the_bot(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    tenant_id = owner.current_tenant_id or 0
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))
    await add_group(service, GROUP)

    await in_group(service, STRANGER, "/teaminbox")
    await wait_for(service, GROUP, "Only members of a workspace can link")
    await in_group(service, VIEWER, "/teaminbox")
    await wait_for(service, GROUP, "Only owners and admins")

    await add_group(service, PLAIN_SUPERGROUP, is_forum=False)
    await in_group(service, OWNER, "/teaminbox", chat_id=PLAIN_SUPERGROUP)
    await wait_for(service, PLAIN_SUPERGROUP, "This group has no topics")
    await add_group(service, BASIC_GROUP)
    await in_group(service, OWNER, "/teaminbox", chat_id=BASIC_GROUP)
    await wait_for(service, BASIC_GROUP, "This group has no topics")
    await add_group(service, MEMBER_BOT_GROUP, bot_status="member")
    await in_group(service, OWNER, "/teaminbox", chat_id=MEMBER_BOT_GROUP)
    await wait_for(service, MEMBER_BOT_GROUP, "Make me an administrator")
    await add_group(service, NO_TOPICS_RIGHT_GROUP, bot_rights={"can_manage_topics": False})
    await in_group(service, OWNER, "/teaminbox", chat_id=NO_TOPICS_RIGHT_GROUP)
    await wait_for(service, NO_TOPICS_RIGHT_GROUP, "may not manage topics")
    assert await TeamInbox.all().count() == 0

    await in_group(service, OWNER, "/teaminbox@crm_operator_bot")
    done = await wait_for(service, GROUP, "is now the team inbox")
    assert "“Olga's workspace”" in done["text"]
    inbox = await TeamInbox.get(tenant_id=tenant_id)
    assert (inbox.chat_id, inbox.language) == (GROUP, "en")

    # In a private chat the command tells which group it is.
    await say(service, OWNER, "/teaminbox")
    status = await wait_for(service, OWNER, "The team inbox of this workspace is")
    assert inbox.title in status["text"]

    # Relinking moves the inbox to the new group.
    await add_group(service, OTHER_GROUP)
    await in_group(service, OWNER, "/teaminbox", chat_id=OTHER_GROUP)
    moved = await wait_for(service, OTHER_GROUP, "is now the team inbox")
    assert f"It moved here from “{inbox.title}”" in moved["text"]
    assert (await TeamInbox.get(tenant_id=tenant_id)).chat_id == OTHER_GROUP
    assert await TeamInbox.all().count() == 1

    # Unlinking: not by a viewer; by the owner.
    await in_group(service, VIEWER, "/teaminbox off", chat_id=OTHER_GROUP)

    async def refused() -> bool:
        return (
            sum("Only owners and admins" in t for t in await group_texts(service, OTHER_GROUP)) == 1
        )

    await eventually(refused)
    assert await TeamInbox.filter(chat_id=OTHER_GROUP).exists()
    await in_group(service, OWNER, "/teaminbox off", chat_id=OTHER_GROUP)
    await wait_for(service, OTHER_GROUP, "no longer the team inbox of “Olga's workspace”")
    assert await TeamInbox.all().count() == 0
    await in_group(service, OWNER, "/teaminbox off", chat_id=OTHER_GROUP)
    await wait_for(service, OTHER_GROUP, "This group is not a team inbox")


async def test_only_the_team_inbox_router_answers_in_a_group(service: RunningService) -> None:
    """Commands of private chats get no answer in a group: their routers take private chats'
    messages only (the dialogues' routers, whose /cancel works in the group, excepted)."""
    await onboard_owner(service, OWNER, "Olga")
    await add_group(service, GROUP)
    for command in ("/help", "/start", "/contacts", "/deals", "/ask", "/settings"):
        await in_group(service, OWNER, command)
    await in_group(service, OWNER, "/teaminbox")
    await wait_for(service, GROUP, "is now the team inbox")
    texts = await group_texts(service)
    assert len(texts) == 1, texts


async def test_a_group_serves_one_workspace(service: RunningService) -> None:
    olga = await onboard_owner(service, OWNER, "Olga")
    await onboard_owner(service, BIDI, "Boris")
    await link(service, OWNER)
    await in_group(service, BIDI, "/teaminbox")
    await wait_for(service, GROUP, "already the team inbox of another workspace")
    assert [i.tenant_id for i in await TeamInbox.all()] == [olga.current_tenant_id]


async def test_a_lead_gets_a_topic_and_members_answer_there(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    tenant_id = owner.current_tenant_id or 0
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))
    connection_id = await whatsapp_connection(tenant_id)
    # The lead wrote before the group was linked, and has a deal by now.
    await lead_writes(service, connection_id, "Anna <script>", "first, before the group")
    await wait_for(service, OWNER, "first, before the group")
    contact = await Contact.get(tenant_id=tenant_id)
    actor = Actor(tenant_id=tenant_id, user_id=owner.id, role="owner")  # type: ignore[arg-type]
    deal = await do_create_deal(actor, "Pilot", contact_id=contact.id)
    stage = await Stage.get(id=deal.stage_id)
    await link(service)
    assert await topics(service) == []

    hostile = '<b>price?</b> & <a href="x">'
    await lead_writes(service, connection_id, "Anna <script>", hostile)
    topic = await wait_for_topic(service, "Anna <script>")
    # The lead's message moved the deal out of Cold (the AI's reply rule) before the topic.
    assert stage.name == "Cold"
    assert topic["name"] == "Anna <script> · Replied"
    thread = topic["message_thread_id"]
    posted = await wait_for(service, GROUP, html.escape(hostile))
    assert posted["message_thread_id"] == thread and posted["parse_mode"] == "HTML"
    assert "<b>Anna &lt;script&gt;</b> via WhatsApp" in posted["text"]
    conversation = await Conversation.get(tenant_id=tenant_id)
    assert buttons(posted)[:3] == [
        f"cv:r:{conversation.id}",
        f"cv:f:{conversation.id}",
        f"cv:d:{conversation.id}",
    ]
    assert "first, before the group" not in "".join(await group_texts(service))
    # Personal notifications go on as before.
    await wait_for(service, OWNER, html.escape(hostile))
    await wait_for(service, VIEWER, html.escape(hostile))
    stored = await TeamTopic.get(conversation_id=conversation.id)
    assert (stored.chat_id, stored.message_thread_id) == (GROUP, thread)

    # A member writes in the topic: the lead gets it. Telegram makes the message a reply to
    # the topic's "created" message; that is not a reply to a notification.
    await in_group(service, OWNER, "It is 49 EUR.", message_thread_id=thread)

    async def delivered(expected: list[str]) -> None:
        async def check() -> bool:
            return await lead_received(service) == expected

        await eventually(check)

    await delivered(["It is 49 EUR."])
    await in_group(
        service, OWNER, "Shall we talk?", message_thread_id=thread, reply_to_message_id=thread
    )
    await delivered(["It is 49 EUR.", "Shall we talk?"])
    # The Reply button in the topic explains that writing there is the reply.
    await press_in_group(service, OWNER, f"cv:r:{conversation.id}", posted["message_id"])

    # A viewer is refused in the topic, and nothing is sent.
    outbound = Message.filter(conversation_id=conversation.id, direction="out")
    before = await outbound.count()
    await in_group(service, VIEWER, "I am only a viewer", message_thread_id=thread)
    refusal = await wait_for(service, GROUP, "Viewers cannot send")
    assert refusal["message_thread_id"] == thread
    assert await outbound.count() == before
    # A stranger in the group is answered once, then ignored.
    await in_group(service, STRANGER, "hello?", message_thread_id=thread)
    await in_group(service, STRANGER, "hello??", message_thread_id=thread)
    await wait_for(service, GROUP, "Only members of this workspace can answer leads")
    await in_group(service, VIEWER, "again, still a viewer", message_thread_id=thread)

    async def second_refusal() -> bool:
        return sum("Viewers cannot send" in t for t in await group_texts(service)) == 2

    await eventually(second_refusal)
    texts = await group_texts(service)
    assert sum("Only members of this workspace" in t for t in texts) == 1
    assert not any("Reply to a lead notification" in t for t in texts)
    assert not any("To answer a lead" in t for t in texts)
    assert await outbound.count() == before
    assert await lead_received(service) == ["It is 49 EUR.", "Shall we talk?"]

    async def reply_button_answered() -> bool:
        reply = await service.http.get(
            "/sandbox/telegram/callback_answers", params={"connection_id": OPERATOR}
        )
        return any("Write in this topic" in (a.get("text") or "") for a in reply.json())

    await eventually(reply_button_answered)

    # The stage follows the deal.
    stages = await Stage.filter(pipeline_id=deal.pipeline_id).order_by("position")
    target = next(s for s in stages if s.id != deal.stage_id)
    await do_move_deal(actor, deal.id, target.id)

    async def renamed() -> bool:
        return [t["name"] for t in await topics(service)] == [f"Anna <script> · {target.name}"]

    await eventually(renamed)

    # Closing the conversation (its Close button in the topic) closes the topic.
    await press_in_group(service, OWNER, f"cv:c:{conversation.id}", posted["message_id"])

    async def topic_closed(closed: bool) -> None:
        async def check() -> bool:
            return [t["is_closed"] for t in await topics(service)] == [closed]

        await eventually(check)

    await topic_closed(True)
    await do_set_status(actor, conversation.id, ConversationStatus.OPEN)
    await topic_closed(False)
    await do_set_status(actor, conversation.id, ConversationStatus.CLOSED)
    await topic_closed(True)
    # The lead writing again reopens the conversation and its topic, in the same topic.
    await lead_writes(service, connection_id, "Anna <script>", "back again")
    again = await wait_for(service, GROUP, "back again")
    assert again["message_thread_id"] == thread
    await topic_closed(False)
    assert len(await topics(service)) == 1
    assert await Deal.filter(tenant_id=tenant_id).count() == 1


async def test_a_topic_deleted_in_telegram_is_made_again(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    await link(service)
    await lead_writes(service, connection_id, "Anna", "one")
    first = await wait_for_topic(service, "Anna")
    await wait_for(service, GROUP, "one")
    # A person deletes the topic (the Bot API call stands in for the Telegram app).
    await poster(service).bot.delete_forum_topic(GROUP, first["message_thread_id"])
    assert await topics(service) == []

    await lead_writes(service, connection_id, "Anna", "two")
    second = await wait_for_topic(service, "Anna")
    assert second["message_thread_id"] != first["message_thread_id"]
    posted = await wait_for(service, GROUP, "two")
    assert posted["message_thread_id"] == second["message_thread_id"]
    (stored,) = await TeamTopic.all()
    assert stored.message_thread_id == second["message_thread_id"]


async def test_the_queue_paces_posts_and_says_when_it_lags(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    tenant_id = owner.current_tenant_id or 0
    await link(service)
    worker = poster(service)
    worker.budget = GroupBudget(posts=2, window=1.0)
    # The worker stops (a restart): what arrives meanwhile waits in the database.
    await worker.stop()
    connection_id = await whatsapp_connection(tenant_id)
    texts = [f"message number {n}" for n in range(5)]
    for text in texts:
        await lead_writes(service, connection_id, "Anna", text)

    async def queued() -> bool:
        return await TeamPost.filter(chat_id=GROUP, status=TeamPostStatus.PENDING).count() == 5

    await eventually(queued)
    assert await topics(service) == []

    await worker.start()

    async def all_posted() -> bool:
        got = [t for t in await group_texts(service) if "message number" in t]
        return len(got) == 5

    await eventually(all_posted)
    posted = [t for t in await group_texts(service) if "message number" in t]
    assert [text.split("\n")[-1] for text in posted] == texts  # in order, each once
    notices = [t for t in await group_texts(service) if "The team inbox is" in t]
    assert notices == [
        "⏳ The team inbox is 5 messages behind: Telegram lets a bot post about 20 messages "
        "a minute in a group."
    ]
    # One topic, 5 messages and the notice: 7 calls, never more than 2 in a second.
    inbox = await TeamInbox.get(chat_id=GROUP)
    calls = sorted(inbox.call_times)
    assert len(calls) == 7
    for i in range(len(calls) - 2):
        assert calls[i + 2] - calls[i] >= 1.0 - 1e-6
    assert not inbox.lagging  # the episode ended with the queue
    statuses = await TeamPost.filter(chat_id=GROUP).values_list("status", flat=True)
    assert set(statuses) == {TeamPostStatus.SENT}


async def test_the_team_inbox_speaks_russian(service: RunningService) -> None:
    await say(service, OWNER, "/start", first_name="Olga", language_code="ru")

    async def welcomed() -> bool:
        return bool(await sent(service, OWNER))

    await eventually(welcomed)
    await add_group(service, GROUP)
    await in_group(service, OWNER, "/teaminbox", language_code="ru")
    done = await wait_for(service, GROUP, "теперь командный инбокс")
    assert done["text"].startswith("✅")
    assert (await TeamInbox.get(chat_id=GROUP)).language == "ru"
    await in_group(service, STRANGER, "/teaminbox", language_code="ru")
    await wait_for(service, GROUP, "Связать командный инбокс могут только участники")

    # Posts are written in the language of whoever linked the group, the lag notice too.
    owner = await TeamInbox.get(chat_id=GROUP)
    worker = poster(service)
    worker.budget = GroupBudget(posts=1, window=0.5)
    await worker.stop()
    connection_id = await whatsapp_connection(owner.tenant_id)
    for n in range(3):
        await lead_writes(service, connection_id, "Анна", f"вопрос {n}")

    async def queued() -> bool:
        return await TeamPost.filter(chat_id=GROUP, status=TeamPostStatus.PENDING).count() == 3

    await eventually(queued)
    await worker.start()
    posted = await wait_for(service, GROUP, "вопрос 2")
    assert "<b>Анна</b> через WhatsApp" in posted["text"]
    notice = await wait_for(service, GROUP, "⏳")
    assert notice["text"] == (
        "⏳ Командный инбокс отстаёт на 3 сообщения: Telegram позволяет боту отправлять "
        "в группу около 20 сообщений в минуту."
    )
