"""The daily digest: time zones, who is due when, one claim per local day, what it counts."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from crm.errors import ValidationFailed
from crm.messaging import ChannelKind
from crm.models import (
    Contact,
    Conversation,
    ConversationStatus,
    DealStageChange,
    Membership,
    Pipeline,
    Role,
    Stage,
    User,
)
from crm.services.access import Actor
from crm.services.accounts.workspaces import do_add_member
from crm.services.inbox import digest
from crm.services.pipeline.deals import do_create_deal, do_move_deal
from tests.support.inbox import whatsapp_connection
from tests.support.workspace import Workspace, make_workspace

# 08:00 UTC on a winter day: 09:00 in Berlin (UTC+1), 17:00 in Tokyo, 03:00 in New York.
WINTER_MORNING = dt.datetime(2026, 1, 15, 8, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Europe/Berlin", "Europe/Berlin"),
        ("europe/berlin", "Europe/Berlin"),
        ("  Asia/Tokyo ", "Asia/Tokyo"),
        ("+3", "Etc/GMT-3"),  # the tz database inverts the sign
        ("3", "Etc/GMT-3"),
        ("UTC+3", "Etc/GMT-3"),
        ("+03:00", "Etc/GMT-3"),
        ("-5", "Etc/GMT+5"),
        ("gmt-11", "Etc/GMT+11"),
        ("+14", "Etc/GMT-14"),
        ("-12", "Etc/GMT+12"),
        ("+0", "UTC"),
        ("utc", "UTC"),
    ],
)
def test_parse_timezone(typed: str, stored: str) -> None:
    assert digest.parse_timezone(typed) == stored


@pytest.mark.parametrize(
    "typed", ["", "Mars/Olympus", "+05:30", "+15", "-13", "../../etc/passwd", "/etc/localtime"]
)
def test_parse_timezone_refuses(typed: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        digest.parse_timezone(typed)
    assert exc.value.errors[0].field == "timezone"


def test_an_offset_means_what_the_operator_typed() -> None:
    noon = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    assert digest.local_time(digest.parse_timezone("+3"), noon).hour == 15
    assert digest.local_time(digest.parse_timezone("-5"), noon).hour == 7
    assert digest.zone_label("Etc/GMT-3") == "UTC+3"
    assert digest.zone_label("Etc/GMT+5") == "UTC-5"
    assert digest.zone_label("Europe/Berlin") == "Europe/Berlin"
    assert digest.zone_label(None) == "UTC"
    assert digest.local_time(None, noon).hour == 12
    assert digest.local_time("Not/AZone", noon).hour == 12  # a stale name falls back to UTC


async def test_do_set_timezone_stores_the_name(workspace: Workspace) -> None:
    user = await User.get(id=workspace.owner_id)
    await digest.do_set_timezone(user, "+3")
    assert (await User.get(id=user.id)).timezone == "Etc/GMT-3"
    with pytest.raises(ValidationFailed):
        await digest.do_set_timezone(user, "Nowhere/Land")
    assert (await User.get(id=user.id)).timezone == "Etc/GMT-3"


async def _member(workspace: Workspace, zone: str | None) -> User:
    membership = await do_add_member(
        workspace.actor, Role.BIDI, telegram_id=uuid.uuid4().int % 10**9
    )
    await User.filter(id=membership.user_id).update(timezone=zone)
    return await User.get(id=membership.user_id)


async def _due_ids(now: dt.datetime) -> set[int]:
    return {d.user.id for d in await digest.due_members(now)}


async def test_members_are_due_at_their_local_morning(workspace: Workspace) -> None:
    await User.filter(id=workspace.owner_id).update(timezone="Asia/Tokyo")
    berlin = await _member(workspace, "Europe/Berlin")
    utc = await _member(workspace, None)
    moscow = await _member(workspace, "Etc/GMT-3")
    # A person with a Telegram id but no workspace has nothing to digest.
    await User.create(telegram_id=777, timezone="Europe/Berlin")

    assert await _due_ids(WINTER_MORNING - dt.timedelta(minutes=1)) == {moscow.id}
    assert await _due_ids(WINTER_MORNING) == {berlin.id, moscow.id}
    assert await _due_ids(WINTER_MORNING + dt.timedelta(hours=1)) == {berlin.id, utc.id}
    # Past noon the morning is over: a digest missed that morning waits for the next one.
    assert await _due_ids(WINTER_MORNING + dt.timedelta(hours=3)) == {utc.id}
    assert await _due_ids(WINTER_MORNING + dt.timedelta(hours=4)) == set()
    # Tokyo's morning: 00:00 UTC is 09:00 there.
    tokyo_morning = dt.datetime(2026, 1, 16, 0, 0, tzinfo=dt.UTC)
    assert workspace.owner_id in await _due_ids(tokyo_morning)

    (due,) = [d for d in await digest.due_members(WINTER_MORNING) if d.user.id == berlin.id]
    assert due.local_date == dt.date(2026, 1, 15) and due.previous is None


async def test_a_claim_is_taken_once_per_local_day(workspace: Workspace) -> None:
    berlin = await _member(workspace, "Europe/Berlin")
    today = dt.date(2026, 1, 15)

    claims = await asyncio.gather(*(digest.claim_digest(berlin.id, today) for _ in range(6)))
    assert claims.count(True) == 1
    assert (await User.get(id=berlin.id)).digest_sent_on == today
    assert berlin.id not in await _due_ids(WINTER_MORNING + dt.timedelta(minutes=30))
    assert not await digest.claim_digest(berlin.id, today)

    # The next morning it is due and claimable again.
    tomorrow = WINTER_MORNING + dt.timedelta(days=1)
    assert berlin.id in await _due_ids(tomorrow)
    assert await digest.claim_digest(berlin.id, today + dt.timedelta(days=1))

    # A claim whose digest could not be sent is given back to the date it replaced.
    await digest.release_digest(berlin.id, today + dt.timedelta(days=1), today)
    assert (await User.get(id=berlin.id)).digest_sent_on == today
    assert berlin.id in await _due_ids(tomorrow)


async def _backdate_contact(contact_id: int, hours: float) -> None:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    await Contact.filter(id=contact_id).update(created_at=at)


async def test_digest_counts(workspace: Workspace, other_workspace: Workspace) -> None:
    owner = workspace.owner_id
    colleague = await _member(workspace, None)
    connection = await whatsapp_connection(workspace)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    hour = dt.timedelta(hours=1)

    # New leads: three today, one from two days ago, and one of another workspace.
    for i in range(3):
        await Contact.create(tenant_id=workspace.tenant_id, name=f"new {i}")
    old = await Contact.create(tenant_id=workspace.tenant_id, name="old")
    await _backdate_contact(old.id, 25)
    await Contact.create(tenant_id=other_workspace.tenant_id, name="theirs")

    async def conversation(
        name: str,
        *,
        assignee: int | None = None,
        replied: bool = False,
        status: ConversationStatus = ConversationStatus.OPEN,
        snoozed_until: dt.datetime | None = None,
    ) -> None:
        contact = await Contact.create(tenant_id=workspace.tenant_id, name=name)
        await _backdate_contact(contact.id, 48)
        inbound = now - 2 * hour
        await Conversation.create(
            tenant_id=workspace.tenant_id,
            contact_id=contact.id,
            connection_id=connection.id,
            channel=ChannelKind.WHATSAPP,
            peer_id=name,
            assignee_id=assignee,
            status=status,
            snoozed_until=snoozed_until,
            last_inbound_at=inbound,
            last_message_at=inbound + hour if replied else inbound,
        )

    await conversation("unassigned")  # waiting
    await conversation("mine", assignee=owner)  # waiting
    await conversation("snooze over", snoozed_until=now - hour, status=ConversationStatus.SNOOZED)
    await conversation("colleague's", assignee=colleague.id)  # theirs, not the owner's
    await conversation("answered", replied=True)
    await conversation("closed", status=ConversationStatus.CLOSED)
    await conversation("snoozed", snoozed_until=now + hour, status=ConversationStatus.SNOOZED)

    # Deals: one moved twice (one deal), one moved long ago, one only created.
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    stages = {s.name: s for s in await Stage.filter(pipeline_id=pipeline.id)}
    actor = workspace.actor
    busy = await do_create_deal(actor, "busy")
    await do_move_deal(actor, busy.id, stages["Replied"].id)
    await do_move_deal(actor, busy.id, stages["Qualified"].id)
    other = await do_create_deal(actor, "other")
    await do_move_deal(actor, other.id, stages["Meeting"].id)
    stale = await do_create_deal(actor, "stale")
    await do_move_deal(actor, stale.id, stages["Replied"].id)
    await DealStageChange.filter(deal_id=stale.id).update(changed_at=now - 30 * hour)
    await do_create_deal(actor, "just created")

    # A second workspace of the owner with nothing in it is left out.
    empty = await make_workspace("Quiet")
    await Membership.create(tenant_id=empty.tenant_id, user_id=owner, role=Role.VIEWER)

    (part,) = await digest.daily_digest(owner, now)
    assert (part.tenant_id, part.workspace) == (workspace.tenant_id, "Acme")
    assert (part.new_leads, part.waiting, part.deals_moved) == (3, 3, 2)

    (theirs,) = await digest.daily_digest(colleague.id, now)
    assert (theirs.new_leads, theirs.waiting, theirs.deals_moved) == (3, 3, 2)

    # A day later the leads and moves are old news; the waiting conversations still wait,
    # and the one snoozed for an hour is back among them.
    (later,) = await digest.daily_digest(owner, now + 25 * hour)
    assert (later.new_leads, later.waiting, later.deals_moved) == (0, 4, 0)

    # Nothing anywhere: no digest at all.
    assert await digest.daily_digest(empty.owner_id, now) == []


async def test_system_moves_count_for_every_member(workspace: Workspace) -> None:
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    replied = await Stage.get(pipeline_id=pipeline.id, name="Replied")
    deal = await do_create_deal(workspace.actor, "d")
    await do_move_deal(Actor.system(workspace.tenant_id), deal.id, replied.id)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    (part,) = await digest.daily_digest(workspace.owner_id, now)
    assert part.deals_moved == 1 and not part.empty
