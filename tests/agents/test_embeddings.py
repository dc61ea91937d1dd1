"""Embedder on the real all-MiniLM-L6-v2 weights: shapes, similarity, async use, byte storage."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from agents.embeddings import DIMENSION, MODEL_NAME, Embedder, vector_from_bytes, vector_to_bytes


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """One loaded model for the whole module (loading costs seconds)."""
    model = Embedder()
    model.load()
    return model


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def test_import_is_cheap_and_lazy() -> None:
    code = (
        "import sys, agents.embeddings as e; "
        "e.Embedder(); "
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_attributes_known_before_loading() -> None:
    lazy = Embedder()
    assert (lazy.name, lazy.dimension, lazy.loaded) == (MODEL_NAME, DIMENSION, False)
    assert lazy.encode([]).shape == (0, DIMENSION)
    assert not lazy.loaded


def test_shapes_and_normalization(embedder: Embedder) -> None:
    texts = ["Hello, can we meet on Tuesday?", "", "Здравствуйте! Какая цена?", "x" * 100_000]
    vectors = embedder.encode(texts)
    assert vectors.shape == (4, DIMENSION)
    assert vectors.dtype == np.float32
    assert vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    empty = embedder.encode([])
    assert empty.shape == (0, DIMENSION) and empty.dtype == np.float32


def test_one_string_is_rejected(embedder: Embedder) -> None:
    with pytest.raises(TypeError):
        embedder.encode("a string is a sequence of characters")  # type: ignore[arg-type]


def test_similar_sentences_score_higher(embedder: Embedder) -> None:
    price, price2, weather, meeting, meeting2 = embedder.encode(
        [
            "How much does the CRM cost per user per month?",
            "What is the monthly price of your CRM for each seat?",
            "The weather in the mountains was cold and rainy.",
            "Can we schedule a call for next Tuesday afternoon?",
            "Would Tuesday afternoon next week work for a quick meeting?",
        ]
    )
    assert _cos(price, price2) > _cos(price, weather) + 0.3
    assert _cos(meeting, meeting2) > _cos(meeting, price)
    assert _cos(meeting, meeting2) > _cos(meeting, weather) + 0.3


def test_encoding_is_deterministic_across_batches(embedder: Embedder) -> None:
    texts = [f"Order {i} of SalesBot licenses" for i in range(5)]
    together = embedder.encode(texts)
    alone = np.vstack([embedder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


async def test_aencode_does_not_block_the_loop(embedder: Embedder) -> None:
    texts = [
        f"Follow-up number {i}: did you look at the proposal for {i} seats?" for i in range(300)
    ]
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    ticking = asyncio.create_task(ticker())
    started = time.perf_counter()
    vectors = await embedder.aencode(texts)
    elapsed = time.perf_counter() - started
    done.set()
    await ticking
    assert vectors.shape == (300, DIMENSION)
    # Encoding takes hundreds of ms; a blocked loop would have ticked once or twice at most.
    assert elapsed > 0.05
    assert ticks >= 5
    np.testing.assert_allclose(vectors[:3], embedder.encode(texts[:3]), atol=1e-5)


async def test_concurrent_aencode_calls_each_get_their_own_result(embedder: Embedder) -> None:
    a, b, c = await asyncio.gather(
        embedder.aencode(["first message"]),
        embedder.aencode(["second message", "third"]),
        embedder.aencode([]),
    )
    assert a.shape == (1, DIMENSION) and b.shape == (2, DIMENSION) and c.shape == (0, DIMENSION)
    np.testing.assert_allclose(a[0], embedder.encode(["first message"])[0], atol=1e-5)


def test_concurrent_first_load_loads_once() -> None:
    fresh = Embedder()
    models: list[object] = []
    threads = [threading.Thread(target=lambda: models.append(fresh.load())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(models) == 4
    assert all(m is models[0] for m in models)


def test_missing_model_folder_fails_without_network() -> None:
    with pytest.raises(FileNotFoundError):
        Embedder(model_path="/nonexistent/all-MiniLM-L6-v2").encode(["hello"])


def test_bytes_round_trip(embedder: Embedder) -> None:
    vector = embedder.encode(["Please send the invoice to Acme"])[0]
    raw = vector_to_bytes(vector)
    assert len(raw) == DIMENSION * 4
    back = vector_from_bytes(raw)
    assert back.dtype == np.float32 and back.flags.writeable
    np.testing.assert_array_equal(back, vector)


def test_bytes_are_little_endian_float32() -> None:
    assert vector_to_bytes(np.array([1.0, -2.5], dtype=">f8")) == struct.pack("<2f", 1.0, -2.5)
    np.testing.assert_array_equal(vector_from_bytes(struct.pack("<2f", 0.5, 3.0)), [0.5, 3.0])
    with pytest.raises(ValueError):
        vector_from_bytes(b"\x00\x00\x00")
    with pytest.raises(ValueError):
        vector_to_bytes(np.zeros((2, 3), dtype=np.float32))
