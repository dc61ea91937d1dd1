"""The multilingual encoder: meaning across languages, loaded on first need, cached by text."""

from __future__ import annotations

import numpy as np

from agents.multilingual import MultilingualEncoder


def test_a_question_is_nearest_its_paraphrase_in_either_language() -> None:
    encoder = MultilingualEncoder()
    assert not encoder.loaded
    question = "Оплата по безналу возможна?"
    others = ["Can we pay by bank transfer?", "Where is your office?", "Есть мобильное приложение?"]
    vectors = encoder.encode([question, *others])
    assert encoder.loaded
    similarity = {text: float(np.dot(vectors[question], vectors[text])) for text in others}
    assert max(similarity, key=similarity.__getitem__) == "Can we pay by bank transfer?"
    assert abs(float(np.linalg.norm(vectors[question])) - 1.0) < 1e-3


def test_recent_texts_come_from_the_cache_and_old_ones_leave_it() -> None:
    encoder = MultilingualEncoder(cache_size=2)
    first = encoder.encode(["один"])["один"]
    assert encoder.encode(["один"])["один"] is first  # not encoded again
    encoder.encode(["два", "три"])
    again = encoder.encode(["один"])["один"]
    assert again is not first and np.allclose(again, first, atol=1e-5)


async def test_encoding_in_a_thread_gives_the_same_vectors() -> None:
    encoder = MultilingualEncoder()
    texts = ["Сколько стоит тариф Про?", "How much is the Pro plan?"]
    threaded = await encoder.aencode(texts)
    direct = MultilingualEncoder().encode(texts)
    for text in texts:
        assert np.allclose(threaded[text], direct[text], atol=1e-5)
