"""How well a stored question or answer fits the question being answered: meaning and spelling.

Meaning is MiniLM's cosine for English; MiniLM misses most Russian paraphrases, so Russian uses
multilingual-e5 (see agents.multilingual) when it is there. Spelling is the cosine of character
trigrams, transliterated, so inflections, typos and names written either way overlap.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from agents.embeddings import vector_from_bytes
from crm.models import MemoryChunk
from crm.services.ai import memory as store

# How a past question's fit is measured, per language of the question: this share meaning,
# the rest spelling (character trigrams, transliterated). Meaning is MiniLM's cosine for
# English; MiniLM misses most Russian paraphrases, so Russian uses multilingual-e5 (see
# agents.multilingual) when it is there, with MULTILINGUAL_FLOOR mapped to 0: e5 puts even
# unrelated questions near 0.7. Chosen with bench.eval_drafts on its dev paraphrases; the
# held-out ones only report.
DENSE_SHARE = {"en": 0.9, "ru": 0.2}
MULTILINGUAL_SHARE = 0.8
MULTILINGUAL_FLOOR = 0.78
_WORD = re.compile(r"\w+", re.UNICODE)

# Russian letters in Latin: "апи" meets "API", "амо" meets "amoCRM", "вотсап" meets "WhatsApp"
# half-way. Russian leads write brand and product names either way.
_LATIN = str.maketrans(
    {
        **dict(zip("абвгдезийклмнопрстуфыэ", "abvgdeziiklmnoprstufye", strict=True)),
        "ж": "zh",
        "х": "kh",
        "ц": "ts",
        "ч": "ch",
        "ш": "sh",
        "щ": "sh",
        "ю": "yu",
        "я": "ya",
        "ъ": "",
        "ь": "",
    }
)


def _grams(text: str) -> Counter[str]:
    """Character trigrams of the words: inflections, typos and transliterated names overlap."""
    words = [
        word.translate(_LATIN)
        for word in _WORD.findall(text.casefold().replace("ё", "е"))
        if word not in store.STOPWORDS
    ]
    grams: Counter[str] = Counter()
    for word in words:
        padded = f" {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


def lexical_similarity(a: str, b: str) -> float:
    """Cosine of the character-trigram counts of two texts, stop words left out (0..1)."""
    ga, gb = _grams(a), _grams(b)
    if not ga or not gb:
        return 0.0
    dot = sum(count * gb[gram] for gram, count in ga.items() if gram in gb)
    norm = math.sqrt(sum(c * c for c in ga.values())) * math.sqrt(sum(c * c for c in gb.values()))
    return dot / norm if norm else 0.0


def chunk_fit(
    question: str,
    query_vector: np.ndarray,
    chunk: MemoryChunk,
    language: str,
    meaning: dict[str, np.ndarray] | None = None,
) -> float:
    """How well a stored chunk matches the question: meaning and spelling, 0..1.

    ``meaning`` holds multilingual vectors by text, for the question's language when
    MiniLM does not know it.
    """
    dense = 0.0
    share = DENSE_SHARE.get(language, DENSE_SHARE["en"])
    if meaning is not None and question in meaning and chunk.text in meaning:
        cosine = float(np.dot(meaning[question], meaning[chunk.text]))
        dense = max(0.0, (cosine - MULTILINGUAL_FLOOR) / (1 - MULTILINGUAL_FLOOR))
        share = MULTILINGUAL_SHARE
    elif chunk.vector:
        vector = vector_from_bytes(chunk.vector)
        if vector.shape == query_vector.shape:
            dense = max(0.0, float(np.dot(vector, query_vector)))
    return share * dense + (1 - share) * lexical_similarity(question, chunk.text)
