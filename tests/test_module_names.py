"""The map stays readable: module names say what they hold, and no product module grows too long.

Issue 16 asks that a newcomer can find a feature by name: no ``runtime.py`` or ``utils.py`` that
says nothing, no two sibling modules a letter apart (``deal_views``/``deal_values``), and no
product module over ~500 lines. Each check also runs on a seeded bad tree, so it can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("crm", "bot", "channels", "telegram_transport", "agents", "miniapp", "sandbox")
VAGUE_NAMES = {"runtime", "utils", "util", "common", "services", "http", "helpers", "misc", "base2"}
MAX_LINES = 500


def product_modules(root: Path) -> list[Path]:
    """Every Python module of the product packages under ``root``."""
    return sorted(p for package in PACKAGES for p in (root / package).rglob("*.py"))


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions from ``a`` to ``b``."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


# Opposites read apart however close they are spelled.
OPPOSITES = {frozenset({"import", "export"}), frozenset({"inbound", "outbound"})}


def letter_apart(a: str, b: str) -> bool:
    """Whether two names are easy to mistake: a few edits apart, not short, not opposites."""
    if a == b or min(len(a), len(b)) < 4:
        return False
    words_a, words_b = set(a.split("_")), set(b.split("_"))
    if frozenset(words_a ^ words_b) in OPPOSITES:
        return False
    head_a, _, tail_a = a.rpartition("_")
    head_b, _, tail_b = b.rpartition("_")
    if head_a and head_a == head_b and tail_a[0] == tail_b[0] and tail_a[-1] == tail_b[-1]:
        # deal_views beside deal_values: one stem, last words alike at a glance (v...s).
        return edit_distance(tail_a, tail_b) <= 4
    return edit_distance(a, b) <= 2


def vague_modules(root: Path) -> list[str]:
    """Modules whose name says nothing about what they hold."""
    return [str(p.relative_to(root)) for p in product_modules(root) if p.stem in VAGUE_NAMES]


def near_twins(root: Path) -> list[tuple[str, str]]:
    """Pairs of sibling modules whose names are a letter apart."""
    pairs = []
    folders = {p.parent for p in product_modules(root)}
    for folder in sorted(folders):
        names = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
        names += sorted(d.name for d in folder.iterdir() if (d / "__init__.py").exists())
        for i, a in enumerate(names):
            pairs += [
                (f"{folder.relative_to(root)}/{a}", b) for b in names[i + 1 :] if letter_apart(a, b)
            ]
    return pairs


def long_modules(root: Path) -> list[str]:
    """Product modules over MAX_LINES lines."""
    return [
        f"{p.relative_to(root)}: {n} lines"
        for p in product_modules(root)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]


def test_no_module_has_a_name_that_says_nothing() -> None:
    assert vague_modules(ROOT) == []


def test_no_two_sibling_modules_are_a_letter_apart() -> None:
    assert near_twins(ROOT) == []


def test_no_product_module_is_over_the_limit() -> None:
    assert long_modules(ROOT) == []


@pytest.mark.parametrize(
    ("files", "check"),
    [
        ({"crm/runtime.py": ""}, vague_modules),
        ({"bot/deal_views.py": "", "bot/deal_values.py": ""}, near_twins),
        ({"agents/http.py": "", "agents/https.py": ""}, near_twins),
        ({"sandbox/long.py": "x = 1\n" * (MAX_LINES + 1)}, long_modules),
    ],
    ids=["vague", "views-values", "one-letter", "long"],
)
def test_each_check_finds_a_seeded_break(tmp_path: Path, files: dict[str, str], check) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert check(tmp_path) != []
