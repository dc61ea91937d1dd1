"""The team inbox services: linking, queueing posts once, a budget, and a queue that survives
a worker stopping anywhere (nothing queued is lost, nothing half-sent is sent twice).
"""

from __future__ import annotations

import datetime as dt

import pytest
from tortoise.exceptions import IntegrityError

from crm.errors import NotFound, PermissionDenied
from crm.models import (
    ChannelConnection,
    Conversation,
    Event,
    Message,
    Role,
    Stage,
    TeamInbox,
    TeamPost,
    TeamPostKind,
    TeamPostStatus,
    TeamTopic,
    User,
)
from crm.services.access import Actor
from crm.services.inbox import inbound_messages, team_inbox, team_posts
from crm.services.inbox.connections import connection_info
from crm.services.inbox.outbound import WindowClosed
from crm.services.inbox.team_inbox import LinkedElsewhere, TopicOutcome
from crm.services.inbox.team_posts import GroupBudget, budget_wait
from crm.services.pipeline.deals import do_create_deal, do_move_deal
from tests.support.inbox import CIPHER, wa_text, whatsapp_connection
from tests.support.workspace import Workspace

GROUP = -1001000000001
OTHER_GROUP = -1001000000002


async def _lead_message(workspace: Workspace, external_id: str, text: str = "hi") -> Event:
    """A lead writes on WhatsApp; returns the message.received event."""
    row = await ChannelConnection.get_or_none(tenant_id=workspace.tenant_id, kind="whatsapp")
    if row is None:
        connection = await whatsapp_connection(workspace)
    else:
        connection = connection_info(row, CIPHER)
    received = await inbound_messages.receive_message(
        connection, wa_text(external_id, text, at=_now())
    )
    return await Event.get(type="message.received", entity_id=received.message.id)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _telegram_member(workspace: Workspace, role: Role, telegram_id: int) -> Actor:
    user_id, _ = await workspace.member(role, telegram_id=telegram_id)
    return Actor(tenant_id=workspace.tenant_id, user_id=user_id, role=role)


def test_the_budget_waits_for_the_oldest_call_in_the_window_to_expire() -> None:
    budget = GroupBudget(posts=3, window=60.0)
    assert budget_wait([], budget, 1, 1000.0) == 0.0
    assert budget_wait([990.0, 995.0], budget, 1, 1000.0) == 0.0
    # Full: the next call fits once the oldest leaves the window.
    assert budget_wait([950.0, 990.0, 995.0], budget, 1, 1000.0) == pytest.approx(10.0)
    # Two calls at once need two slots: the second oldest must leave too.
    assert budget_wait([950.0, 990.0, 995.0], budget, 2, 1000.0) == pytest.approx(50.0)
    # Calls older than the window do not count.
    assert budget_wait([100.0, 200.0, 300.0], budget, 3, 1000.0) == 0.0
    # More calls than the budget holds wait for one full window, not forever.
    assert budget_wait([999.0], budget, 5, 1000.0) == pytest.approx(59.0)


async def test_only_owners_and_admins_link_and_a_group_serves_one_workspace(
    workspace: Workspace, other_workspace: Workspace
) -> None:
    viewer = await _telegram_member(workspace, Role.VIEWER, 901)
    bidi = await _telegram_member(workspace, Role.BIDI, 902)
    for actor in (viewer, bidi):
        with pytest.raises(PermissionDenied):
            await team_inbox.do_link_group(actor, GROUP, "Leads", "en")
    assert await TeamInbox.all().count() == 0

    linked = await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "ru")
    assert (linked.inbox.chat_id, linked.inbox.language, linked.workspace) == (GROUP, "ru", "Acme")
    assert linked.previous_chat_id is None
    with pytest.raises(LinkedElsewhere):
        await team_inbox.do_link_group(other_workspace.actor, GROUP, "Leads", "en")
    assert (await TeamInbox.get(chat_id=GROUP)).tenant_id == workspace.tenant_id
    with pytest.raises(PermissionDenied):
        await team_inbox.do_unlink_group(viewer)
    with pytest.raises(NotFound):
        await team_inbox.do_unlink_group(other_workspace.actor, GROUP)
    assert await Event.filter(type="team_inbox.linked").count() == 1


async def test_relinking_moves_the_inbox_and_drops_what_was_queued_for_the_old_group(
    workspace: Workspace,
) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Old", "en")
    event = await _lead_message(workspace, "wamid.1")
    post = await team_posts.enqueue_lead_message(event)
    assert post is not None and post.chat_id == GROUP

    moved = await team_inbox.do_link_group(workspace.actor, OTHER_GROUP, "New", "en")
    assert (moved.previous_chat_id, moved.previous_title) == (GROUP, "Old")
    assert await TeamInbox.filter(tenant_id=workspace.tenant_id).count() == 1
    await post.refresh_from_db()
    assert post.status is TeamPostStatus.CANCELLED
    assert await team_posts.groups_with_pending() == []

    await team_inbox.do_unlink_group(workspace.actor)
    assert await TeamInbox.all().count() == 0
    assert await team_posts.enqueue_lead_message(await _lead_message(workspace, "wamid.2")) is None


async def test_a_repeated_event_queues_its_post_once(workspace: Workspace) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    event = await _lead_message(workspace, "wamid.1")
    first = await team_posts.enqueue_lead_message(event)
    again = await team_posts.enqueue_lead_message(event)
    assert first is not None and again is None
    assert await TeamPost.filter(chat_id=GROUP).count() == 1


async def test_stage_and_status_changes_are_queued_only_for_conversations_with_a_topic(
    workspace: Workspace,
) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    event = await _lead_message(workspace, "wamid.1")
    conversation = await Conversation.get(tenant_id=workspace.tenant_id)
    deal = await do_create_deal(workspace.actor, "Pilot", contact_id=conversation.contact_id)
    created = await Event.get(type="deal.created", entity_id=deal.id)
    # No topic and nothing queued for the conversation yet: nothing to rename.
    assert await team_posts.enqueue_deal_change(created) == []

    await team_posts.enqueue_lead_message(event)  # the topic is on its way
    stages = await Stage.filter(pipeline_id=deal.pipeline_id).order_by("position")
    moved = await do_move_deal(workspace.actor, deal.id, stages[1].id)
    change = await Event.filter(type="deal.stage_changed", entity_id=moved.id).first()
    assert change is not None
    (rename,) = await team_posts.enqueue_deal_change(change)
    assert rename.kind is TeamPostKind.NAME and rename.conversation_id == conversation.id
    assert await team_posts.enqueue_deal_change(change) == []  # once per event

    view = await team_inbox.topic_view(conversation.id)
    assert view is not None and view.stage == stages[1].name and view.deal_title == "Pilot"


async def test_a_member_writing_in_a_topic_answers_the_lead_with_their_own_role(
    workspace: Workspace,
) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    await _lead_message(workspace, "wamid.1")
    conversation = await Conversation.get(tenant_id=workspace.tenant_id)
    await team_inbox.record_topic(conversation, GROUP, 77, "Anna · WhatsApp")
    await _telegram_member(workspace, Role.VIEWER, 901)
    await _telegram_member(workspace, Role.BIDI, 902)
    outbound = Message.filter(conversation_id=conversation.id, direction="out")

    refused = await team_inbox.do_send_from_topic(901, GROUP, 77, "hello", "tg:g:1")
    assert refused.outcome is TopicOutcome.REFUSED
    assert isinstance(refused.error, PermissionDenied) and refused.actor is not None
    assert await outbound.count() == 0

    sent = await team_inbox.do_send_from_topic(902, GROUP, 77, "Hi Anna", "tg:g:2")
    assert sent.outcome is TopicOutcome.SENT and sent.message is not None
    again = await team_inbox.do_send_from_topic(902, GROUP, 77, "Hi Anna", "tg:g:2")
    assert again.message is not None and again.message.id == sent.message.id
    assert [m.text for m in await outbound] == ["Hi Anna"]
    assert (await User.get(id=sent.message.author_user_id or 0)).telegram_id == 902

    # Another thread of the group, or another group: not a conversation topic.
    other = await team_inbox.do_send_from_topic(902, GROUP, 78, "x", "tg:g:3")
    assert other.outcome is TopicOutcome.NOT_A_TOPIC
    elsewhere = await team_inbox.do_send_from_topic(902, OTHER_GROUP, 77, "x", "tg:g:4")
    assert elsewhere.outcome is TopicOutcome.NOT_A_TOPIC

    # A stranger is answered once, then ignored.
    first = await team_inbox.do_send_from_topic(555, GROUP, 77, "me too", "tg:g:5")
    second = await team_inbox.do_send_from_topic(555, GROUP, 77, "me too", "tg:g:6")
    assert (first.outcome, second.outcome) == (TopicOutcome.STRANGER, TopicOutcome.IGNORED)
    assert await outbound.count() == 1


async def test_the_channel_rules_still_apply_in_a_topic(workspace: Workspace) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    connection = await whatsapp_connection(workspace)
    old = _now() - dt.timedelta(days=2)
    await inbound_messages.receive_message(connection, wa_text("wamid.old", "hi", at=old))
    conversation = await Conversation.get(tenant_id=workspace.tenant_id)
    await team_inbox.record_topic(conversation, GROUP, 77, "Anna · WhatsApp")
    owner = await User.get(id=workspace.owner_id)
    assert owner.telegram_id is not None
    result = await team_inbox.do_send_from_topic(owner.telegram_id, GROUP, 77, "late", "k")
    assert result.outcome is TopicOutcome.REFUSED and isinstance(result.error, WindowClosed)


async def test_the_queue_survives_a_worker_that_stops_anywhere(workspace: Workspace) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    posts = []
    for n in range(4):
        post = await team_posts.enqueue_lead_message(await _lead_message(workspace, f"wamid.{n}"))
        assert post is not None
        posts.append(post)
    assert await team_posts.groups_with_pending() == [GROUP]
    now = _now()

    # Worker A sends the first post, then dies while sending the second one.
    assert await team_posts.take_lease(GROUP, "worker-a", now, 30)
    first = await team_posts.next_post(GROUP)
    assert first is not None and first.id == posts[0].id
    assert await team_posts.claim_post(first.id)
    assert not await team_posts.claim_post(first.id)  # a post is claimed once
    await team_posts.finish_post(first.id, TeamPostStatus.SENT, telegram_message_id=10)
    second = await team_posts.next_post(GROUP)
    assert second is not None and second.id == posts[1].id
    assert await team_posts.claim_post(second.id)

    # Worker B (after a restart, or another replica) waits for A's lease to run out.
    assert not await team_posts.take_lease(GROUP, "worker-b", now, 30)
    later = now + dt.timedelta(seconds=31)
    assert await team_posts.take_lease(GROUP, "worker-b", later, 30)
    assert not await team_posts.take_lease(GROUP, "worker-a", later, 30)

    # The half-sent post is not sent again (Telegram may have it); the rest go out in order.
    assert await team_posts.fail_abandoned(GROUP) == 1
    order = []
    while (post := await team_posts.next_post(GROUP)) is not None:
        assert await team_posts.claim_post(post.id)
        await team_posts.finish_post(post.id, TeamPostStatus.SENT, telegram_message_id=post.id)
        order.append(post.id)
    assert order == [posts[2].id, posts[3].id]
    statuses = {p.id: p.status for p in await TeamPost.filter(chat_id=GROUP)}
    assert statuses == {
        posts[0].id: TeamPostStatus.SENT,
        posts[1].id: TeamPostStatus.FAILED,
        posts[2].id: TeamPostStatus.SENT,
        posts[3].id: TeamPostStatus.SENT,
    }
    await team_posts.release_lease(GROUP, "worker-b")
    assert await team_posts.take_lease(GROUP, "worker-c", later, 30)


async def test_a_post_telegram_did_not_take_is_retried_then_given_up(
    workspace: Workspace,
) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    post = await team_posts.enqueue_lead_message(await _lead_message(workspace, "wamid.1"))
    assert post is not None
    # Flood control (no error): back in the queue, no attempt counted.
    assert await team_posts.claim_post(post.id)
    assert await team_posts.release_post(post.id)
    await post.refresh_from_db()
    assert (post.status, post.attempts) == (TeamPostStatus.PENDING, 0)
    for attempt in range(1, team_posts.MAX_ATTEMPTS):
        assert await team_posts.claim_post(post.id)
        assert await team_posts.release_post(post.id, "Bad Gateway")
        await post.refresh_from_db()
        assert (post.status, post.attempts) == (TeamPostStatus.PENDING, attempt)
    assert await team_posts.claim_post(post.id)
    assert not await team_posts.release_post(post.id, "Bad Gateway")
    await post.refresh_from_db()
    assert post.status is TeamPostStatus.FAILED and post.error == "Bad Gateway"


async def test_call_times_and_lag_episodes_are_kept_on_the_group(workspace: Workspace) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    for at in (100.0, 101.0, 102.0):
        await team_posts.record_call(GROUP, at)
    assert await team_posts.call_times(GROUP) == [100.0, 101.0, 102.0]
    late = 102.0 + team_posts.CALL_MEMORY + 0.5
    await team_posts.record_call(GROUP, late)
    assert await team_posts.call_times(GROUP) == [late]
    assert await team_posts.start_lag(GROUP)
    assert not await team_posts.start_lag(GROUP)  # one notice per episode
    await team_posts.end_lag(GROUP)
    assert await team_posts.start_lag(GROUP)


async def test_leftover_posts_of_an_unlinked_group_are_cancelled(workspace: Workspace) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    post = await team_posts.enqueue_lead_message(await _lead_message(workspace, "wamid.1"))
    assert post is not None
    await TeamInbox.filter(chat_id=GROUP).delete()  # e.g. the workspace was deleted
    assert not await team_posts.take_lease(GROUP, "worker", _now(), 30)
    await post.refresh_from_db()
    assert post.status is TeamPostStatus.CANCELLED


async def test_topics_are_unique_per_conversation_and_group(workspace: Workspace) -> None:
    await _lead_message(workspace, "wamid.1")
    conversation = await Conversation.get(tenant_id=workspace.tenant_id)
    topic = await team_inbox.record_topic(conversation, GROUP, 77, "x" * 200)
    assert len(topic.name) == team_inbox.TOPIC_NAME_MAX
    assert await team_inbox.topic_of_thread(GROUP, 77) is not None
    with pytest.raises(IntegrityError):
        await team_inbox.record_topic(conversation, GROUP, 78, "again")
    await team_inbox.forget_topic(topic)
    assert await TeamTopic.filter(chat_id=GROUP).count() == 0


async def test_lead_messages_go_out_in_the_order_the_lead_wrote(workspace: Workspace) -> None:
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    first = await _lead_message(workspace, "wamid.1", "first")
    second = await _lead_message(workspace, "wamid.2", "second")
    # Handlers ran concurrently: the second message was queued first.
    late = await team_posts.enqueue_lead_message(second)
    early = await team_posts.enqueue_lead_message(first)
    assert late is not None and early is not None and late.id < early.id
    order = []
    while (post := await team_posts.next_post(GROUP)) is not None:
        assert await team_posts.claim_post(post.id)
        await team_posts.finish_post(post.id, TeamPostStatus.SENT)
        order.append(post.lead_message_id)
    assert order == [first.entity_id, second.entity_id]


async def test_what_a_lead_wrote_before_the_link_is_not_posted(workspace: Workspace) -> None:
    before = await _lead_message(workspace, "wamid.1")
    await team_inbox.do_link_group(workspace.actor, GROUP, "Leads", "en")
    assert await team_posts.enqueue_lead_message(before) is None
    after = await _lead_message(workspace, "wamid.2")
    assert await team_posts.enqueue_lead_message(after) is not None
