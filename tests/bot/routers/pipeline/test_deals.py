"""Deals in the operator bot end to end: /deals, cards, moves, dialogues, notification buttons.

The real service runs with the sandbox emulators; operators are played through the Telegram
emulator and what they see is read back from it. Refused actions are checked in the database.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bot.callbacks import (
    ConvAct,
    ConvAction,
    DealEdit,
    DealEditAct,
    DealMove,
    DealNew,
    DealOpen,
    DealView,
    PipelineShow,
)
from bot.routers.pipeline.deal_amounts import AmountError, parse_amount, split_title_and_amount
from crm.models import (
    Company,
    Contact,
    Conversation,
    Deal,
    DealStageChange,
    Event,
    Note,
    Pipeline,
    Role,
    Stage,
    User,
)
from crm.services.access import Actor
from crm.services.pipeline.deals import do_create_deal, do_update_deal
from tests.support.bot import (
    OPERATOR,
    buttons,
    invite_link,
    join,
    lead_received,
    lead_writes,
    next_message,
    onboard_owner,
    press,
    say,
    sent,
    wait_for,
    whatsapp_connection,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 6101
VIEWER = 6102
RUSSIAN = 6103


# ---- helpers ---------------------------------------------------------------------------------


async def owner_actor(user: User) -> Actor:
    assert user.current_tenant_id is not None
    return Actor(tenant_id=user.current_tenant_id, user_id=user.id, role=Role.OWNER)


async def stages_of(tenant_id: int) -> dict[str, Stage]:
    pipeline = await Pipeline.get(tenant_id=tenant_id, is_default=True)
    return {s.name: s for s in await Stage.filter(pipeline_id=pipeline.id)}


async def message_by_id(service: RunningService, chat_id: int, message_id: int) -> dict[str, Any]:
    (found,) = [m for m in await sent(service, chat_id) if m["message_id"] == message_id]
    return found


async def until_edited(
    service: RunningService, chat_id: int, message_id: int, needle: str
) -> dict[str, Any]:
    """The message ``message_id`` once an edit put ``needle`` in its text."""
    found: dict[str, Any] = {}

    async def edited() -> bool:
        current = await message_by_id(service, chat_id, message_id)
        if current["edited"] and needle in (current.get("text") or ""):
            found.update(current)
            return True
        return False

    await eventually(edited)
    return found


async def callback_answers(service: RunningService) -> list[dict[str, Any]]:
    reply = await service.http.get(
        "/sandbox/telegram/callback_answers", params={"connection_id": OPERATOR}
    )
    assert reply.status_code == 200, reply.text
    return list(reply.json())


async def press_and_answer(
    service: RunningService, user_id: int, data: str, message_id: int
) -> dict[str, Any]:
    """Press a button and return the bot's answer to that callback query."""
    before = len(await callback_answers(service))
    await press(service, user_id, data, message_id)
    found: dict[str, Any] = {}

    async def answered() -> bool:
        mine = [a for a in (await callback_answers(service))[before:] if a["data"] == data]
        if mine:
            found.update(mine[0])
            return True
        return False

    await eventually(answered)
    return found


async def open_card(service: RunningService, user_id: int, deal_id: int) -> dict[str, Any]:
    """Press a deal button of a list the bot sent and return the card it sends."""
    data = DealOpen(id=deal_id).pack()
    holder = [m for m in await sent(service, user_id) if data in buttons(m)][-1]
    before = len(await sent(service, user_id))
    await press(service, user_id, data, holder["message_id"])
    return await next_message(service, user_id, before, "💼")


# ---- pure parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "locale", "value", "currency"),
    [
        ("1500", "en", "1500.00", None),
        ("1 500,50", "en", "1500.50", None),
        ("1 500,50", "ru", "1500.50", None),
        ("1500.5", "ru", "1500.50", None),
        ("1,500", "en", "1500.00", None),
        ("1,500", "ru", "1.50", None),
        ("1.234.567,89", "en", "1234567.89", None),
        ("2000 eur", "en", "2000.00", "EUR"),
        ("$1,500.25", "en", "1500.25", "USD"),
        ("1\u00a0500 ₽", "ru", "1500.00", "RUB"),
    ],
)
def test_values_are_read_as_operators_type_them(
    text: str, locale: str, value: str, currency: str | None
) -> None:
    amount = parse_amount(text, locale)
    assert (str(amount.value), amount.currency) == (value, currency)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("abc", "not_number"),
        ("12 34", "not_number"),
        ("1,2,3", "not_number"),
        ("-5", "negative"),
        ("1.555", "decimals"),
        ("10000000000000000", "too_large"),
        ("100 QQQ", "currency"),
    ],
)
def test_bad_values_say_why(text: str, reason: str) -> None:
    with pytest.raises(AmountError) as exc:
        parse_amount(text)
    assert exc.value.reason == reason


def test_newdeal_arguments_split_title_and_value() -> None:
    assert split_title_and_amount("Website for Acme") == ("Website for Acme", None)
    title, amount = split_title_and_amount("Acme renewal 1 500,50 EUR")
    assert title == "Acme renewal" and amount is not None
    assert (amount.value, amount.currency) == (Decimal("1500.50"), "EUR")
    title, amount = split_title_and_amount("Website 2024 500")
    assert title == "Website 2024" and amount is not None and amount.value == 500
    with pytest.raises(AmountError):
        split_title_and_amount("Acme 1.555")


# ---- the pipeline and its lists ---------------------------------------------------------------


async def test_pipeline_shows_counts_totals_and_pages_of_deals(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    actor = await owner_actor(owner)
    stages = await stages_of(actor.tenant_id)
    await do_create_deal(actor, "Alpha", value="1500", currency="EUR")
    await do_create_deal(actor, "Beta", value="500.50", currency="EUR")
    await do_create_deal(actor, "Gamma", value="200", currency="USD")
    await do_create_deal(actor, "Won one", value="99", stage_id=stages["Won"].id)
    qualified = [
        await do_create_deal(
            actor, f"Q{i} <b>", value=str(i * 100), stage_id=stages["Qualified"].id
        )
        for i in range(1, 10)
    ]

    await say(service, OWNER, "/deals")
    summary = await wait_for(service, OWNER, "Cold")
    assert summary["parse_mode"] == "HTML"
    text = summary["text"]
    assert "<b>Cold</b>: 3 deals · €2,000.50 + $200.00" in text
    assert "<b>Replied</b>: no deals" in text
    assert "<b>Qualified</b>: 9 deals · $4,500.00" in text
    assert "<b>Won</b>: 1 deal · $99.00" in text
    assert "Open: 12 deals · €2,000.50 + $4,700.00" in text
    pipeline_id = stages["Cold"].pipeline_id
    assert buttons(summary) == [
        PipelineShow(pipeline=pipeline_id, stage=s.id).pack()
        for s in sorted(stages.values(), key=lambda s: s.position)
    ]

    # A stage lists its deals, newest first, 8 a page; the list replaces the summary.
    stage_button = PipelineShow(pipeline=pipeline_id, stage=stages["Qualified"].id).pack()
    await press(service, OWNER, stage_button, summary["message_id"])
    first = await until_edited(service, OWNER, summary["message_id"], "Page 1 of 2")
    assert "9 deals" in first["text"]
    deal_buttons = [b for b in buttons(first) if b.startswith("dl:")]
    assert deal_buttons == [DealOpen(id=d.id).pack() for d in reversed(qualified)][:8]
    labels = [b["text"] for row in first["reply_markup"]["inline_keyboard"] for b in row]
    assert "Q9 <b> · $900.00" in labels  # button texts are plain: no escaping needed
    next_page = PipelineShow(pipeline=pipeline_id, stage=stages["Qualified"].id, page=1).pack()
    assert next_page in buttons(first)
    assert "◀️" not in labels and "▶️" in labels

    await press(service, OWNER, next_page, summary["message_id"])
    second = await until_edited(service, OWNER, summary["message_id"], "Page 2 of 2")
    assert [b for b in buttons(second) if b.startswith("dl:")] == [
        DealOpen(id=qualified[0].id).pack()
    ]
    labels = [b["text"] for row in second["reply_markup"]["inline_keyboard"] for b in row]
    assert "◀️" in labels and "▶️" not in labels

    # Back to the stages, then an empty stage.
    await press(service, OWNER, PipelineShow(pipeline=pipeline_id).pack(), summary["message_id"])
    await until_edited(service, OWNER, summary["message_id"], "Tap a stage")
    replied = PipelineShow(pipeline=pipeline_id, stage=stages["Replied"].id).pack()
    await press(service, OWNER, replied, summary["message_id"])
    await until_edited(service, OWNER, summary["message_id"], "No deals in this stage.")

    # /pipeline is the same view; a second pipeline adds a picker.
    second_pipeline = await Pipeline.create(tenant_id=actor.tenant_id, name="Partners")
    await Stage.create(
        tenant_id=actor.tenant_id, pipeline_id=second_pipeline.id, name="Talking", position=0
    )
    before = len(await sent(service, OWNER))
    await say(service, OWNER, "/pipeline")
    again = await next_message(service, OWNER, before, "Cold")
    assert PipelineShow(pipeline=second_pipeline.id).pack() in buttons(again)
    await press(
        service, OWNER, PipelineShow(pipeline=second_pipeline.id).pack(), again["message_id"]
    )
    partners = await until_edited(service, OWNER, again["message_id"], "Partners")
    assert "<b>Talking</b>: no deals" in partners["text"]


# ---- the card, moves and dialogues ------------------------------------------------------------


async def test_card_shows_the_deal_and_a_stage_button_moves_it_in_place(
    service: RunningService,
) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    actor = await owner_actor(owner)
    stages = await stages_of(actor.tenant_id)
    connection_id = await whatsapp_connection(actor.tenant_id)
    for text in ("first", "second <script>", "third", "fourth"):
        await lead_writes(service, connection_id, "Anna & Co", text)
    await wait_for(service, OWNER, "fourth")
    contact = await Contact.get(tenant_id=actor.tenant_id)
    company = await Company.create(
        tenant_id=actor.tenant_id, name="Acme <GmbH>", name_key="acme <gmbh>"
    )
    contact.company_id = company.id
    await contact.save()
    deal = await do_create_deal(
        actor, "Big <deal>", value="12500.5", currency="EUR", contact_id=contact.id
    )

    await say(service, OWNER, "/deals")
    summary = await wait_for(service, OWNER, "Cold")
    await press(
        service,
        OWNER,
        PipelineShow(pipeline=deal.pipeline_id, stage=deal.stage_id).pack(),
        summary["message_id"],
    )
    await until_edited(service, OWNER, summary["message_id"], "1 deal")
    card = await open_card(service, OWNER, deal.id)
    text = card["text"]
    assert card["parse_mode"] == "HTML"
    assert "💼 <b>Big &lt;deal&gt;</b>" in text
    assert "Value: €12,500.50" in text
    assert "Stage: <b>Cold</b> (Sales)" in text
    assert "Contact: Anna &amp; Co" in text
    assert "Company: Acme &lt;GmbH&gt;" in text
    assert "Owner: Olga" in text
    assert "first" not in text  # only the last 3 messages
    assert "← second &lt;script&gt;\n← third\n← fourth" in text
    ordered = sorted(stages.values(), key=lambda s: s.position)
    moves = [DealMove(id=deal.id, stage=s.id).pack() for s in ordered]
    assert [b for b in buttons(card) if b.startswith("dg:")] == moves
    labels = [b["text"] for row in card["reply_markup"]["inline_keyboard"] for b in row]
    assert "✓ Cold" in labels and "Replied" in labels
    assert {
        DealEdit(act=DealEditAct.TITLE, id=deal.id).pack(),
        DealEdit(act=DealEditAct.VALUE, id=deal.id).pack(),
        DealEdit(act=DealEditAct.NOTE, id=deal.id).pack(),
    } <= set(buttons(card))

    answer = await press_and_answer(
        service, OWNER, DealMove(id=deal.id, stage=stages["Replied"].id).pack(), card["message_id"]
    )
    assert answer["text"] == "Moved to Replied." and not answer["show_alert"]
    moved = await until_edited(service, OWNER, card["message_id"], "Stage: <b>Replied</b>")
    labels = [b["text"] for row in moved["reply_markup"]["inline_keyboard"] for b in row]
    assert "✓ Replied" in labels and "Cold" in labels
    await deal.refresh_from_db()
    assert deal.stage_id == stages["Replied"].id
    history = await DealStageChange.filter(deal_id=deal.id).order_by("id")
    assert [(h.from_stage_id, h.to_stage_id, h.changed_by_id) for h in history] == [
        (None, stages["Cold"].id, owner.id),
        (stages["Cold"].id, stages["Replied"].id, owner.id),
    ]
    assert await Event.filter(type="deal.stage_changed", entity_id=deal.id).count() == 1

    # The current stage again: nothing moves.
    answer = await press_and_answer(
        service, OWNER, DealMove(id=deal.id, stage=stages["Replied"].id).pack(), card["message_id"]
    )
    assert answer["text"] == "Already in Replied."
    assert await DealStageChange.filter(deal_id=deal.id).count() == 2

    # Moving to the won stage marks it in the card.
    await press(
        service, OWNER, DealMove(id=deal.id, stage=stages["Won"].id).pack(), card["message_id"]
    )
    await until_edited(service, OWNER, card["message_id"], "Stage: <b>Won</b>")


async def test_dialogues_edit_title_value_and_add_a_note(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    actor = await owner_actor(owner)
    deal = await do_create_deal(actor, "Old title", value="10")
    await say(service, OWNER, "/newdeal")  # usage only
    await wait_for(service, OWNER, "Usage: /newdeal")
    await say(service, OWNER, "/deals")
    summary = await wait_for(service, OWNER, "Cold")
    await press(
        service,
        OWNER,
        PipelineShow(pipeline=deal.pipeline_id, stage=deal.stage_id).pack(),
        summary["message_id"],
    )
    await until_edited(service, OWNER, summary["message_id"], "1 deal")
    card = await open_card(service, OWNER, deal.id)
    card_id = card["message_id"]

    # Title.
    await press(service, OWNER, DealEdit(act=DealEditAct.TITLE, id=deal.id).pack(), card_id)
    await wait_for(service, OWNER, "Send the new title for <b>Old title</b>")
    await say(service, OWNER, "New <title>")
    await wait_for(service, OWNER, "Title saved ✓")
    await until_edited(service, OWNER, card_id, "💼 <b>New &lt;title&gt;</b>")
    await deal.refresh_from_db()
    assert deal.title == "New <title>"

    # Value: a bad one is explained and the dialogue stays open.
    await press(service, OWNER, DealEdit(act=DealEditAct.VALUE, id=deal.id).pack(), card_id)
    await wait_for(service, OWNER, "Send the new value")
    await say(service, OWNER, "twelve")
    error = await wait_for(service, OWNER, "is not a number")
    assert error["text"].startswith("Value: “twelve” is not a number.")
    await say(service, OWNER, "1.555")
    await wait_for(service, OWNER, "Value: use at most 2 digits after the decimal point.")
    await deal.refresh_from_db()
    assert deal.value == Decimal("10")
    await say(service, OWNER, "1 500,50")
    await wait_for(service, OWNER, "Value saved ✓")
    await until_edited(service, OWNER, card_id, "Value: $1,500.50")
    await deal.refresh_from_db()
    assert deal.value == Decimal("1500.50")

    for typed, expected, shown in (("1500.5 EUR", "1500.50", "€1,500.50"), ("1500", "1500", "")):
        before = len(await sent(service, OWNER))
        await press(service, OWNER, DealEdit(act=DealEditAct.VALUE, id=deal.id).pack(), card_id)
        await next_message(service, OWNER, before, "Send the new value")
        await say(service, OWNER, typed)
        await next_message(service, OWNER, before, "Value saved ✓")
        await deal.refresh_from_db()
        assert deal.value == Decimal(expected)
        if shown:
            await until_edited(service, OWNER, card_id, shown)
    assert deal.currency == "EUR"

    # A note.
    await press(service, OWNER, DealEdit(act=DealEditAct.NOTE, id=deal.id).pack(), card_id)
    await wait_for(service, OWNER, "Send the note for")
    await say(service, OWNER, "Call back on <Monday>")
    await wait_for(service, OWNER, "Note added ✓")
    await until_edited(service, OWNER, card_id, "Notes: 1, latest: Call back on &lt;Monday&gt;")
    (note,) = await Note.filter(deal_id=deal.id)
    assert (note.body, note.author_id) == ("Call back on <Monday>", owner.id)

    # /cancel leaves the dialogue: the next text is not a title.
    await press(service, OWNER, DealEdit(act=DealEditAct.TITLE, id=deal.id).pack(), card_id)
    before = len(await sent(service, OWNER))
    await next_message(service, OWNER, before - 1, "Send the new title")
    await say(service, OWNER, "/cancel")
    await wait_for(service, OWNER, "Cancelled. Nothing was changed.")
    await say(service, OWNER, "Not a title")
    await wait_for(service, OWNER, "To answer a lead, reply to their notification.")
    await deal.refresh_from_db()
    assert deal.title == "New <title>"


async def test_newdeal_creates_a_deal_of_the_operator(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    stages = await stages_of(owner.current_tenant_id or 0)
    await say(service, OWNER, "/newdeal Website for <Acme> 1 500,50")
    card = await wait_for(service, OWNER, "Website for &lt;Acme&gt;")
    assert "Value: $1,500.50" in card["text"] and "Owner: Olga" in card["text"]
    deal = await Deal.get(tenant_id=owner.current_tenant_id)
    assert (deal.title, deal.value, deal.owner_id, deal.stage_id) == (
        "Website for <Acme>",
        Decimal("1500.50"),
        owner.id,
        stages["Cold"].id,
    )
    await say(service, OWNER, "/newdeal Bad 1.555")
    await wait_for(service, OWNER, "Value: use at most 2 digits")
    assert await Deal.filter(tenant_id=owner.current_tenant_id).count() == 1


# ---- notification buttons -----------------------------------------------------------------------


async def test_notification_deal_and_stage_buttons(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    tenant_id = owner.current_tenant_id or 0
    stages = await stages_of(tenant_id)
    await lead_writes(service, await whatsapp_connection(tenant_id), "Anna", "price please")
    notification = await wait_for(service, OWNER, "price please")
    conversation = await Conversation.get(tenant_id=tenant_id)
    deal_button = ConvAction(act=ConvAct.DEAL, id=conversation.id).pack()
    stage_button = ConvAction(act=ConvAct.STAGE, id=conversation.id).pack()

    # No deal yet: a button creates one in the first stage, titled after the lead.
    before = len(await sent(service, OWNER))
    await press(service, OWNER, deal_button, notification["message_id"])
    offer = await next_message(service, OWNER, before, "has no open deal yet")
    assert "<b>Anna</b> has no open deal yet." in offer["text"]
    assert buttons(offer) == [DealNew(conversation=conversation.id).pack()]
    answer = await press_and_answer(
        service, OWNER, DealNew(conversation=conversation.id).pack(), offer["message_id"]
    )
    assert answer["text"] == "Deal created."
    card = await until_edited(service, OWNER, offer["message_id"], "💼 <b>Anna</b>")
    assert "Contact: Anna" in card["text"] and "← price please" in card["text"]
    deal = await Deal.get(tenant_id=tenant_id)
    assert (deal.title, deal.stage_id, deal.owner_id) == ("Anna", stages["Cold"].id, owner.id)
    contact = await Contact.get(tenant_id=tenant_id)
    assert deal.contact_id == contact.id

    # Deal now opens the card of that deal.
    before = len(await sent(service, OWNER))
    await press(service, OWNER, deal_button, notification["message_id"])
    again = await next_message(service, OWNER, before, "💼 <b>Anna</b>")
    assert DealMove(id=deal.id, stage=stages["Replied"].id).pack() in buttons(again)

    # Stage sends the stage buttons; a tap moves the deal and ticks the new stage in place.
    before = len(await sent(service, OWNER))
    await press(service, OWNER, stage_button, notification["message_id"])
    picker = await next_message(service, OWNER, before, "Move it to:")
    assert "<b>Anna</b> is in <b>Cold</b>" in picker["text"]
    move = DealMove(id=deal.id, stage=stages["Meeting"].id, view=DealView.STAGES).pack()
    assert move in buttons(picker)
    await press(service, OWNER, move, picker["message_id"])
    moved = await until_edited(service, OWNER, picker["message_id"], "is in <b>Meeting</b>")
    labels = [b["text"] for row in moved["reply_markup"]["inline_keyboard"] for b in row]
    assert "✓ Meeting" in labels
    await deal.refresh_from_db()
    assert deal.stage_id == stages["Meeting"].id
    assert await DealStageChange.filter(deal_id=deal.id).count() == 2

    # During a dialogue a reply to the notification still goes to the lead, not to the deal.
    await press(
        service, OWNER, DealEdit(act=DealEditAct.TITLE, id=deal.id).pack(), card["message_id"]
    )
    await wait_for(service, OWNER, "Send the new title")
    await say(service, OWNER, "It is 49 EUR", reply_to_message_id=notification["message_id"])

    async def delivered() -> bool:
        return "It is 49 EUR" in await lead_received(service)

    await eventually(delivered)
    await say(service, OWNER, "Anna: website")
    await wait_for(service, OWNER, "Title saved ✓")
    await deal.refresh_from_db()
    assert deal.title == "Anna: website"


# ---- viewers ----------------------------------------------------------------------------------


async def test_a_viewer_reads_but_cannot_change_deals(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    await join(service, VIEWER, "Victor", await invite_link(service, OWNER, "viewer"))
    actor = await owner_actor(owner)
    tenant_id = actor.tenant_id
    stages = await stages_of(tenant_id)
    await lead_writes(service, await whatsapp_connection(tenant_id), "Anna", "hello there")
    notification = await wait_for(service, VIEWER, "hello there")
    conversation = await Conversation.get(tenant_id=tenant_id)
    deal = await do_create_deal(actor, "Owned", value="300")

    await say(service, VIEWER, "/deals")
    summary = await wait_for(service, VIEWER, "<b>Cold</b>: 1 deal · $300.00")
    await press(
        service,
        VIEWER,
        PipelineShow(pipeline=deal.pipeline_id, stage=deal.stage_id).pack(),
        summary["message_id"],
    )
    await until_edited(service, VIEWER, summary["message_id"], "1 deal")
    card = await open_card(service, VIEWER, deal.id)
    assert "💼 <b>Owned</b>" in card["text"]

    refusal = "Viewers can look at deals but cannot change them."
    for data in (
        DealMove(id=deal.id, stage=stages["Replied"].id).pack(),
        DealEdit(act=DealEditAct.TITLE, id=deal.id).pack(),
        DealEdit(act=DealEditAct.VALUE, id=deal.id).pack(),
        DealEdit(act=DealEditAct.NOTE, id=deal.id).pack(),
    ):
        answer = await press_and_answer(service, VIEWER, data, card["message_id"])
        assert (answer["text"], answer["show_alert"]) == (refusal, True)
    # No dialogue was opened: text goes to the inbox's explanation, not to the deal.
    await say(service, VIEWER, "Hijacked title")
    await wait_for(service, VIEWER, "To answer a lead, reply to their notification.")

    before = len(await sent(service, VIEWER))
    await press(
        service,
        VIEWER,
        ConvAction(act=ConvAct.DEAL, id=conversation.id).pack(),
        notification["message_id"],
    )
    offer = await next_message(service, VIEWER, before, "has no open deal yet")
    answer = await press_and_answer(
        service, VIEWER, DealNew(conversation=conversation.id).pack(), offer["message_id"]
    )
    assert (answer["text"], answer["show_alert"]) == (refusal, True)

    await say(service, VIEWER, "/newdeal Sneaky 100")
    await wait_for(service, VIEWER, refusal)

    # Nothing changed.
    await deal.refresh_from_db()
    assert (deal.title, deal.value, deal.stage_id) == ("Owned", Decimal("300"), stages["Cold"].id)
    assert await Deal.filter(tenant_id=tenant_id).count() == 1
    assert await DealStageChange.filter(deal_id=deal.id).count() == 1
    assert await Note.filter(tenant_id=tenant_id).count() == 0
    assert await Event.filter(tenant_id=tenant_id, type="deal.stage_changed").count() == 0


async def test_a_bidi_may_not_move_a_colleagues_deal(service: RunningService) -> None:
    owner = await onboard_owner(service, OWNER, "Olga")
    await join(service, VIEWER, "Bob", await invite_link(service, OWNER, "member"))
    actor = await owner_actor(owner)
    stages = await stages_of(actor.tenant_id)
    deal = await do_create_deal(actor, "Olga's")
    await say(service, VIEWER, "/deals")
    summary = await wait_for(service, VIEWER, "Cold")
    await press(
        service,
        VIEWER,
        PipelineShow(pipeline=deal.pipeline_id, stage=deal.stage_id).pack(),
        summary["message_id"],
    )
    await until_edited(service, VIEWER, summary["message_id"], "1 deal")
    card = await open_card(service, VIEWER, deal.id)
    answer = await press_and_answer(
        service, VIEWER, DealMove(id=deal.id, stage=stages["Replied"].id).pack(), card["message_id"]
    )
    assert answer["text"] == "Only the deal's owner or an admin can change this deal."
    # A note is fine for a member.
    await press(
        service, VIEWER, DealEdit(act=DealEditAct.NOTE, id=deal.id).pack(), card["message_id"]
    )
    await wait_for(service, VIEWER, "Send the note for")
    await say(service, VIEWER, "Met them today")
    await wait_for(service, VIEWER, "Note added ✓")
    await deal.refresh_from_db()
    assert deal.stage_id == stages["Cold"].id
    assert await Note.filter(deal_id=deal.id).count() == 1


# ---- Russian ----------------------------------------------------------------------------------


async def test_deals_speak_russian(service: RunningService) -> None:
    await say(service, RUSSIAN, "/start", first_name="Ольга", language_code="ru")
    await wait_for(service, RUSSIAN, "Ольга")
    owner = await User.get(telegram_id=RUSSIAN)
    actor = await owner_actor(owner)
    for value in ("1500", "500.5", "1"):
        await do_create_deal(actor, "Сделка", value=value, currency="EUR")
    deal = await Deal.filter(tenant_id=actor.tenant_id).order_by("id").first()
    assert deal is not None
    await do_update_deal(actor, deal.id, title="Главная сделка")

    await say(service, RUSSIAN, "/deals", language_code="ru")
    summary = await wait_for(service, RUSSIAN, "Холодный контакт")
    assert "<b>Холодный контакт</b>: 3 сделки · 2\u00a0001,50\u00a0€" in summary["text"]
    assert "<b>Есть ответ</b>: нет сделок" in summary["text"]

    await press(
        service,
        RUSSIAN,
        PipelineShow(pipeline=deal.pipeline_id, stage=deal.stage_id).pack(),
        summary["message_id"],
    )
    await until_edited(service, RUSSIAN, summary["message_id"], "3 сделки")
    card = await open_card(service, RUSSIAN, deal.id)
    assert "Сумма: 1\u00a0500,00\u00a0€" in card["text"]
    assert "Этап: <b>Холодный контакт</b>" in card["text"]

    await press(
        service, RUSSIAN, DealEdit(act=DealEditAct.VALUE, id=deal.id).pack(), card["message_id"]
    )
    await wait_for(service, RUSSIAN, "Пришлите новую сумму")
    await say(service, RUSSIAN, "много", language_code="ru")
    await wait_for(service, RUSSIAN, "Сумма: «много» — это не число.")
    await say(service, RUSSIAN, "2 500,75", language_code="ru")
    await wait_for(service, RUSSIAN, "Сумма сохранена ✓")
    await until_edited(service, RUSSIAN, card["message_id"], "Сумма: 2\u00a0500,75\u00a0€")
