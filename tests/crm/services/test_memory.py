"""Keyword terms of a memory query: prefixes, no stop words."""

from __future__ import annotations

from crm.services.memory import query_terms


def test_stop_words_leave_the_words_that_say_what_the_question_is_about() -> None:
    assert query_terms("Hi, what is the price of the Pro plan?") == ["price", "pro", "plan"]
    assert query_terms("Здравствуйте, сколько стоит тариф Про?") == [
        "сколь",
        "стоит",
        "тариф",
        "про",
    ]


def test_a_query_of_stop_words_only_keeps_them() -> None:
    assert query_terms("Hello there") == ["hello", "there"]


def test_long_words_become_prefixes_so_inflections_match() -> None:
    assert query_terms("интеграции и цены") == ["интеграц", "цены"]
