"""The fallback router: what no other router answers gets a pointer to /help, in the
operator's language; replies to notifications and dialogues still reach their routers."""

from __future__ import annotations

from tests.support.bot import (
    count,
    lead_wrote,
    next_message,
    onboard_in_russian,
    onboard_owner,
    say,
    sent,
)
from tests.support.service import RunningService

OWNER = 5801
RUSSIAN = 5802
STRANGER = 5803
STICKER = "UklGRiQAAABXRUJQVlA4IBgAAAAwAQCdASoBAAEAAQAcJaQAA3AA/v3AgAA="  # a 1x1 webp


async def test_an_unknown_command_points_to_help(service: RunningService) -> None:
    await onboard_owner(service, OWNER, "Olga")
    before = await count(service, OWNER)
    await say(service, OWNER, "/frobnicate now")
    answer = await next_message(service, OWNER, before)
    assert answer["text"] == (
        "I do not know the command /frobnicate. Send /help to see what I can do."
    )
    # A known command still reaches its own router.
    before = await count(service, OWNER)
    await say(service, OWNER, "/cancel")
    assert (await next_message(service, OWNER, before))["text"] == "There is nothing to cancel."


async def test_unknown_commands_and_stickers_are_answered_in_russian(
    service: RunningService,
) -> None:
    await onboard_in_russian(service, RUSSIAN)
    before = await count(service, RUSSIAN)
    await say(service, RUSSIAN, "/frobnicate")
    answer = await next_message(service, RUSSIAN, before)
    assert (
        answer["text"]
        == "Я не знаю команду /frobnicate. Отправьте /help, чтобы узнать, что я умею."
    )
    before = await count(service, RUSSIAN)
    await say(service, RUSSIAN, "", sticker_base64=STICKER)
    answer = await next_message(service, RUSSIAN, before)
    assert "/help" in answer["text"] and "уведомление" in answer["text"]


async def test_a_newcomer_gets_an_answer_and_replies_still_reach_the_lead(
    service: RunningService,
) -> None:
    before = await count(service, STRANGER)
    await say(service, STRANGER, "/whatever")
    assert "/help" in (await next_message(service, STRANGER, before))["text"]
    await onboard_owner(service, OWNER, "Olga")
    notification = await lead_wrote(service, OWNER)
    before = await count(service, OWNER)
    await say(service, OWNER, "Here it is", reply_to_message_id=notification)
    confirmation = await next_message(service, OWNER, before)
    assert confirmation["text"] == "Sent ✓"
    assert not any("/help" in (m.get("text") or "") for m in (await sent(service, OWNER))[before:])
