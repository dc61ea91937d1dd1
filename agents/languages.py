"""Which language a text is in: Russian or English, the two the product speaks."""

from __future__ import annotations

import re

_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
_ADDRESS = re.compile(r"\S+@\S+|(?:https?://|www\.)\S+|\b\S+\.(?:com|ru|io|org|net)\b\S*")
_WORD = re.compile(r"[^\W\d_]+")
# Russian replies carry Latin terms ("white paper", "amoCRM"); English ones carry no Cyrillic
# but names. So Cyrillic needn't be the majority of letters to be the language of the text.
_RU_SHARE = 0.4


def detect_language(text: str) -> str:
    """Russian ("ru") when the text is mostly Cyrillic, else English ("en")."""
    words = _WORD.findall(_ADDRESS.sub(" ", text))
    # Names and brands are capitalised ("WhatsApp Business", "Мария"); the grammar words that
    # tell the language are not. All-caps or all-names text falls back to every word.
    letters = "".join(w for w in words if w[0].islower()) or "".join(words)
    cyrillic = len(_CYRILLIC.findall(letters))
    latin = len(_LATIN.findall(letters))
    return "ru" if cyrillic and cyrillic >= _RU_SHARE * (cyrillic + latin) else "en"
