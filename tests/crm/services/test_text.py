"""The one rule for stored text: no control characters but tab, newline, CR; no bidi controls."""

from __future__ import annotations

from crm.services.text import clean_json, clean_text, find_control, json_problem


def test_clean_text_keeps_tab_newline_and_carriage_return_only() -> None:
    assert clean_text("a\x00b\x1bc\x7fd\x85e\t\n\rf") == "abcde\t\n\rf"
    assert clean_text("lone \ud800surrogate") == "lone surrogate"
    bidi = "".join(chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)])
    assert clean_text(f"x{bidi}y") == "xy"
    # Marks and joiners that scripts need stay: RLM, LRM, ZWJ (emoji), Arabic letter mark.
    assert clean_text("שלום\u200f \u200e👩\u200d💻 \u061c") == "שלום\u200f \u200e👩\u200d💻 \u061c"


def test_clean_json_cleans_keys_and_nested_values() -> None:
    assert clean_json({"k\x00": ["\u202ea", {"b": "c\x00"}], "n": 1}) == {
        "k": ["a", {"b": "c"}],
        "n": 1,
    }


def test_problems_are_named_with_their_place() -> None:
    assert find_control("ok\n") is None
    assert find_control("a\x00") == "U+0000"
    assert json_problem({"a": [1, {"b": "x\x01"}]}) == (
        "a.1.b",
        "must not contain control characters (U+0001)",
    )
    assert json_problem({"a": float("inf")}) == ("a", "must be a finite number")
    assert json_problem({"a": "\u202e fine for the API: the services strip it"}) is None
