"""The pure guardrail checks: banned phrases, quiet hours, a lead asking for a human."""

from __future__ import annotations

import datetime as dt

import pytest

from agents.guardrails import asks_for_human, banned_phrase_in, in_quiet_hours, zone_of
from crm.errors import ValidationFailed
from crm.services.ai.agents import Guardrails, clean_guardrails


@pytest.mark.parametrize(
    "text",
    [
        "Can I speak to a human?",
        "I want to talk with a real person",
        "are you a bot?",
        "Позовите менеджера",
        "Хочу поговорить с живым человеком",
        "Соедините меня с оператором",
        "ты бот?",
    ],
)
def test_requests_for_a_person_are_recognised_in_english_and_russian(text: str) -> None:
    assert asks_for_human(text)


@pytest.mark.parametrize(
    "text",
    [
        "How much is the Pro plan?",
        "We are a team of 12 people",
        "Сколько стоит тариф для менеджеров?",
        "Human resources asked me to write",
    ],
)
def test_ordinary_messages_are_not_hand_off_requests(text: str) -> None:
    assert not asks_for_human(text)


def test_banned_phrases_match_whatever_the_case_and_spacing() -> None:
    phrases = ["guaranteed ROI", "бесплатно навсегда"]
    assert banned_phrase_in("A GUARANTEED\n roi!", phrases) == "guaranteed ROI"
    assert banned_phrase_in("Это БЕСПЛАТНО   навсегда", phrases) == "бесплатно навсегда"
    assert banned_phrase_in("A solid return", phrases) is None
    assert banned_phrase_in("anything", ["", "  "]) is None


def test_quiet_hours_follow_the_contacts_zone_and_may_wrap_midnight() -> None:
    noon_utc = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    # 21:00 in Tokyo, 07:00 in New York, 12:00 in an unknown zone (taken as UTC).
    assert in_quiet_hours(noon_utc, "Asia/Tokyo", 21, 8)
    assert in_quiet_hours(noon_utc, "America/New_York", 21, 8)
    assert not in_quiet_hours(noon_utc, "Europe/Lisbon", 21, 8)
    assert not in_quiet_hours(noon_utc, "Mars/Olympus", 21, 8)
    assert in_quiet_hours(noon_utc, None, 12, 13)
    assert not in_quiet_hours(noon_utc, None, 13, 12 + 1)
    assert not in_quiet_hours(noon_utc, "Asia/Tokyo", 5, 5)  # equal hours: none
    assert zone_of("Nowhere/City").key == "UTC"


def test_guardrail_input_names_the_field_and_merges_over_the_stored_values() -> None:
    base = clean_guardrails({"max_messages_per_hour": 3})
    merged = clean_guardrails({"autonomous": True}, base)
    assert merged == Guardrails(autonomous=True, max_messages_per_hour=3)
    for values, field in [
        ({"autonomous": "yes"}, "guardrails.autonomous"),
        ({"max_steps": 99}, "guardrails.max_steps"),
        ({"quiet_start_hour": 24}, "guardrails.quiet_start_hour"),
        ({"handoff_confidence": 1.5}, "guardrails.handoff_confidence"),
        ({"banned_phrases": "free"}, "guardrails.banned_phrases"),
    ]:
        with pytest.raises(ValidationFailed) as caught:
            clean_guardrails(values)
        assert caught.value.errors[0].field == field
