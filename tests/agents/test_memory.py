"""Fusing the dense and keyword rankings of a memory search."""

from __future__ import annotations

from agents.memory import fuse


def test_meaning_leads_and_words_break_ties() -> None:
    dense = [(1, 0.90), (2, 0.80), (3, 0.20)]
    keyword = [(3, 9.0), (2, 4.0)]
    fused = fuse(dense, keyword, dense_weight=0.7, depth=3)
    # 2 is close in meaning and shares words: it passes 1, which only means the same.
    assert [chunk_id for chunk_id, _ in fused] == [2, 1, 3]


def test_the_weakest_of_a_few_keyword_matches_still_counts() -> None:
    # Only two chunks share words with the query: both are matches, neither is scaled to nothing.
    fused = dict(fuse([], [(5, 4.0), (6, 1.0)], dense_weight=0.7, depth=40))
    assert fused[5] > fused[6] > 0


def test_a_full_ranking_spreads_its_candidates_from_0_to_1() -> None:
    dense = [(chunk_id, 1.0 - chunk_id / 10) for chunk_id in range(4)]
    fused = dict(fuse(dense, [], dense_weight=1.0, depth=4))
    assert fused[0] == 1.0
    assert fused[3] == 0.0


def test_nothing_found_fuses_to_nothing() -> None:
    assert fuse([], []) == []
