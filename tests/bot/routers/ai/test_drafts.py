"""The AI in the operator bot through the emulator: a draft decided twice, and /ask."""

from __future__ import annotations

from typing import Any

from bot.callbacks import ConvAct, ConvAction, DraftAct, DraftAction
from crm.models import Conversation, Draft, MemoryChunk, User
from crm.services.accounts import operators
from crm.services.ai import drafts
from tests.support.bot import (
    buttons,
    click,
    count,
    next_message,
    onboard_in_russian,
    onboard_owner,
    say,
    wait_for,
    whatsapp_connection,
)
from tests.support.polling import eventually
from tests.support.service import RunningService

OWNER = 5901
RUSSIAN = 5902


async def lead_says(
    service: RunningService, owner_tg: int, phone: str, name: str, text: str
) -> dict[str, Any]:
    """A lead writes on WhatsApp; returns the owner's notification of it."""
    owner = await User.get(telegram_id=owner_tg)
    connection_id = await whatsapp_connection(owner.current_tenant_id or 0)
    reply = await service.http.post(
        "/sandbox/whatsapp/inbound",
        json={"connection_id": str(connection_id), "from": phone, "name": name, "text": text},
    )
    assert reply.status_code == 200, reply.text
    return await wait_for(service, owner_tg, text)


async def remembered(chunks: int) -> None:
    """Wait until the workers put ``chunks`` passages into memory."""

    async def indexed() -> bool:
        return await MemoryChunk.all().count() >= chunks

    await eventually(indexed)


async def test_a_second_send_of_a_draft_is_told_in_the_operators_language(
    service: RunningService,
) -> None:
    await onboard_in_russian(service, RUSSIAN)
    notification = await lead_says(service, RUSSIAN, "4915100000201", "Anna", "Hello there?")
    conversation = await Conversation.get()
    before = await count(service, RUSSIAN)
    draft_button = ConvAction(act=ConvAct.DRAFT, id=conversation.id).pack()
    assert draft_button in buttons(notification)
    await click(service, RUSSIAN, draft_button, notification["message_id"])
    card = await next_message(service, RUSSIAN, before, "✨")
    draft = await Draft.get(conversation_id=conversation.id)
    send = DraftAction(act=DraftAct.SEND, id=draft.id).pack()
    assert send in buttons(card)
    # Decided meanwhile (a double tap whose first press won, the Mini App, a colleague).
    user = await User.get(telegram_id=RUSSIAN)
    actor = await operators.actor_for(user)
    assert actor is not None
    await drafts.do_send_draft(actor, draft.id)
    again = await click(service, RUSSIAN, send, card["message_id"])
    assert again["text"] == "Этот черновик уже отправлен лиду."
    assert again["show_alert"]
    reject = DraftAction(act=DraftAct.REJECT, id=draft.id).pack()
    late = await click(service, RUSSIAN, reject, card["message_id"])
    assert late["text"] == "Этот черновик уже отправлен лиду."


async def test_ask_without_a_model_names_the_leads_and_leaves_out_what_does_not_match(
    service: RunningService,
) -> None:
    await onboard_owner(service, OWNER, "Olga")
    await lead_says(service, OWNER, "4915100000301", "Anna Schmidt", "How much is the Pro plan?")
    await lead_says(
        service, OWNER, "4915100000302", "Carl", "Can you send me the onboarding checklist?"
    )
    await remembered(2)
    before = await count(service, OWNER)
    await say(service, OWNER, "/ask Pro plan price")
    answer = await next_message(service, OWNER, before)
    assert answer["text"].startswith("From your history:")
    assert "How much is the Pro plan?" in answer["text"] and "Anna Schmidt" in answer["text"]
    assert "conversation" not in answer["text"].lower()
    assert "checklist" not in answer["text"]
    labels = [b["text"] for row in answer["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["💬 Anna Schmidt"]
    before = await count(service, OWNER)
    await say(service, OWNER, "/ask weather in Paris tomorrow")
    nothing = await next_message(service, OWNER, before)
    assert nothing["text"] == "Nothing in your history matches this question."
    assert not nothing.get("reply_markup")


async def test_ask_answers_in_the_operators_language(service: RunningService) -> None:
    await onboard_in_russian(service, RUSSIAN)
    await lead_says(service, RUSSIAN, "4915100000401", "Anna", "How much is the Pro plan?")
    await remembered(1)
    before = await count(service, RUSSIAN)
    await say(service, RUSSIAN, "/ask Pro plan price")
    answer = await next_message(service, RUSSIAN, before)
    assert answer["text"].startswith("Вот что нашлось в вашей истории:")
    assert "Anna" in answer["text"]
    before = await count(service, RUSSIAN)
    await say(service, RUSSIAN, "/ask погода в Париже")
    nothing = await next_message(service, RUSSIAN, before)
    assert nothing["text"] == "В вашей истории ничего не нашлось по этому вопросу."
