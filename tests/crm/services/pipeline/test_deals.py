"""Deal service rules: value checks, closed_at through moves, history of system moves."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm.errors import NotFound, PermissionDenied, ValidationFailed
from crm.models import Company, Contact, Conversation, DealStageChange, Pipeline, Role, Stage
from crm.services.access import Actor
from crm.services.contacts.notes import do_create_note
from crm.services.inbox import inbound_messages
from crm.services.inbox.conversations import do_add_private_note
from crm.services.pipeline.deal_cards import (
    deal_card,
    deal_of_conversation,
    do_open_deal_for_conversation,
    list_stage_deals,
)
from crm.services.pipeline.deals import (
    access_deal_to_annotate,
    access_deal_to_change,
    clean_currency,
    clean_value,
    do_create_deal,
    do_move_deal,
)
from tests.support.inbox import wa_text, whatsapp_connection
from tests.support.workspace import Workspace


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", "0.00"),
        ("12.5", "12.50"),
        (7, "7.00"),
        (Decimal("9999999999999999.99"), "9999999999999999.99"),  # the largest that fits
        ("10000000000000000", None),
    ],
)
def test_clean_value(raw: object, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValidationFailed):
            clean_value(raw)  # type: ignore[arg-type]
    else:
        assert str(clean_value(raw)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["-0.01", "1.001", "Infinity", "sNaN", "", "1,5"])
def test_bad_values(raw: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        clean_value(raw)
    assert exc.value.errors[0].field == "value"


def test_currency_codes() -> None:
    assert clean_currency(" rub ") == "RUB"
    for bad in ("RUBL", "R1B", "QQQ", "ДОЛ"):
        with pytest.raises(ValidationFailed):
            clean_currency(bad)


async def test_closed_at_follows_the_stage_kind(workspace: Workspace) -> None:
    actor = workspace.actor
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    stages = {s.name: s for s in await Stage.filter(pipeline_id=pipeline.id)}
    deal = await do_create_deal(actor, "d")
    won = await do_move_deal(actor, deal.id, stages["Won"].id)
    assert won.closed_at is not None
    lost = await do_move_deal(actor, deal.id, stages["Lost"].id)
    assert lost.closed_at is not None and lost.closed_at >= won.closed_at
    reopened = await do_move_deal(actor, deal.id, stages["Replied"].id)
    assert reopened.closed_at is None
    assert reopened.stage_changed_at is not None
    assert reopened.stage_changed_at > lost.stage_changed_at  # type: ignore[operator]


async def test_system_moves_are_recorded_without_a_user(workspace: Workspace) -> None:
    system = Actor.system(workspace.tenant_id)
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    replied = await Stage.get(pipeline_id=pipeline.id, name="Replied")
    deal = await do_create_deal(workspace.actor, "d")
    await do_move_deal(system, deal.id, replied.id)
    await do_move_deal(system, deal.id, replied.id)  # no-op
    history = await DealStageChange.filter(deal_id=deal.id).order_by("id")
    assert [(h.changed_by_id, h.to_stage_id) for h in history] == [
        (workspace.owner_id, deal.stage_id),
        (None, replied.id),
    ]


# ---- read helpers of the bot's deal views ------------------------------------------------


async def _lead_conversation(workspace: Workspace, texts: list[str]) -> int:
    """A WhatsApp lead who wrote ``texts``; returns the conversation id."""
    connection = await whatsapp_connection(workspace)
    received = None
    for i, text in enumerate(texts):
        received = await inbound_messages.receive_message(connection, wa_text(f"wamid.d{i}", text))
    assert received is not None
    return received.conversation_id


async def test_stage_pages_are_newest_first_and_clamped(workspace: Workspace) -> None:
    actor = workspace.actor
    made = [await do_create_deal(actor, f"d{i}") for i in range(10)]
    first = await list_stage_deals(actor, made[0].stage_id)
    assert (first.total, first.pages, first.page) == (10, 2, 0)
    assert [d.id for d in first.deals] == [d.id for d in reversed(made)][:8]
    last = await list_stage_deals(actor, made[0].stage_id, page=7)  # deals moved away: clamp
    assert last.page == 1 and [d.id for d in last.deals] == [made[1].id, made[0].id]
    with pytest.raises(NotFound):
        await list_stage_deals(Actor(tenant_id=0, user_id=None, role=Role.OWNER), made[0].stage_id)


async def test_deal_card_shows_the_last_three_messages_not_notes(workspace: Workspace) -> None:
    conversation_id = await _lead_conversation(workspace, ["one", "two", "three", "four"])
    await do_add_private_note(workspace.actor, conversation_id, "team only")
    conversation = await Conversation.get(id=conversation_id)
    company = await Company.create(tenant_id=workspace.tenant_id, name="Acme", name_key="acme")
    await Contact.filter(id=conversation.contact_id).update(company_id=company.id)
    deal = await do_create_deal(workspace.actor, "d", contact_id=conversation.contact_id)
    await do_create_note(workspace.actor, "first note", deal_id=deal.id)
    await do_create_note(workspace.actor, "second note", deal_id=deal.id)

    card = await deal_card(workspace.actor, deal.id)
    assert [m.text for m in card.recent_messages] == ["two", "three", "four"]
    assert card.company is not None and card.company.id == company.id  # the contact's company
    assert card.owner is not None and card.owner.id == workspace.owner_id
    assert [s.position for s in card.stages] == list(range(6))
    assert card.last_note is not None and card.last_note.body == "second note"
    assert card.note_count == 2


async def test_the_deal_of_a_conversation_is_created_once(workspace: Workspace) -> None:
    conversation_id = await _lead_conversation(workspace, ["hi"])
    assert (await deal_of_conversation(workspace.actor, conversation_id)).deal is None
    deal, created = await do_open_deal_for_conversation(workspace.actor, conversation_id)
    again, created_again = await do_open_deal_for_conversation(workspace.actor, conversation_id)
    assert (created, created_again, again.id) == (True, False, deal.id)
    assert deal.title == "Anna Lead" and deal.owner_id == workspace.owner_id

    # A won deal is not open: the next one is created.
    pipeline = await Pipeline.get(tenant_id=workspace.tenant_id, is_default=True)
    won = await Stage.get(pipeline_id=pipeline.id, name="Won")
    await do_move_deal(workspace.actor, deal.id, won.id)
    assert (await deal_of_conversation(workspace.actor, conversation_id)).deal is None
    newer, created = await do_open_deal_for_conversation(workspace.actor, conversation_id)
    assert created and newer.id != deal.id

    viewer_id, _ = await workspace.member(Role.VIEWER)
    viewer = Actor(tenant_id=workspace.tenant_id, user_id=viewer_id, role=Role.VIEWER)
    await do_move_deal(workspace.actor, newer.id, won.id)
    with pytest.raises(PermissionDenied):
        await do_open_deal_for_conversation(viewer, conversation_id)


async def test_who_may_change_or_annotate_a_deal(workspace: Workspace) -> None:
    deal = await do_create_deal(workspace.actor, "owner's")
    bidi_id, _ = await workspace.member(Role.BIDI)
    bidi = Actor(tenant_id=workspace.tenant_id, user_id=bidi_id, role=Role.BIDI)
    viewer = Actor(tenant_id=workspace.tenant_id, user_id=None, role=Role.VIEWER)
    assert (await access_deal_to_change(workspace.actor, deal.id)).id == deal.id
    assert (await access_deal_to_annotate(bidi, deal.id)).id == deal.id
    with pytest.raises(PermissionDenied):
        await access_deal_to_change(bidi, deal.id)
    for check in (access_deal_to_change, access_deal_to_annotate):
        with pytest.raises(PermissionDenied):
            await check(viewer, deal.id)
