"""IVF indexes of a tenant's vectors: k-means training and nprobe calibrated to a target recall.

nlist = 4·sqrt(n), so probing a few dozen lists reads ~1-3% of the data (0.3-1 ms at 1M), and
nprobe is calibrated at build time on the tenant's own vectors so that recall@10 against exact
search is at least the target recall plus a margin.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from agents.lazy_faiss import faiss, hashtable_map, use_threads

log = logging.getLogger(__name__)

LISTS_PER_SQRT_N = 4
# k-means: faiss warns below 39 training points per centroid; 40 is enough for stable centroids
# and keeps training of 1M vectors (nlist 4000, 160k points) near half a minute on two cores.
TRAIN_POINTS_PER_LIST = 40
# Ten Lloyd iterations instead of faiss's 25: the assignment barely moves after ten on these
# vectors, and the calibration below makes up any loss with nprobe.
KMEANS_ITERATIONS = 10
# Calibration measures recall on a sample of queries made from the tenant's own vectors; real
# queries are new texts, so the nprobe picked must clear the target by a margin.
CALIBRATION_MARGIN = 0.02
CALIBRATION_QUERIES = 256
NPROBE_LADDER = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def nlist_for(n: int) -> int:
    """How many inverted lists an IVF index of ``n`` vectors gets."""
    return max(1, min(round(LISTS_PER_SQRT_N * math.sqrt(n)), n // TRAIN_POINTS_PER_LIST))


def train_ivf(
    ids: np.ndarray,
    vectors: np.ndarray,
    *,
    dimension: int,
    seed: int,
    target_recall: float,
    threads: int,
) -> tuple[Any, float]:
    """An IndexIVFFlat of these unit vectors, trained and calibrated, with its measured recall."""
    use_threads(threads)
    n = len(ids)
    nlist = nlist_for(n)
    rng = np.random.default_rng(seed)
    train_n = min(n, nlist * TRAIN_POINTS_PER_LIST)
    sample = vectors if train_n == n else vectors[np.sort(rng.choice(n, train_n, False))]
    quantizer = faiss.IndexFlatIP(dimension)
    ivf = faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = KMEANS_ITERATIONS
    ivf.cp.seed = seed
    ivf.train(sample)
    # A hashtable direct map lets remove_ids find an id's list without scanning every list.
    ivf.set_direct_map_type(hashtable_map())
    ivf.add_with_ids(vectors, ids)
    ivf.nprobe, recall = calibrate(ivf, ids, vectors, rng, target_recall)
    log.info(
        "IVF index: %d vectors, nlist %d, nprobe %d (calibrated recall@10 %.3f)",
        n, nlist, ivf.nprobe, recall,
    )  # fmt: skip
    return ivf, recall


def calibrate(
    ivf: Any,
    ids: np.ndarray,
    vectors: np.ndarray,
    rng: np.random.Generator,
    target_recall: float,
) -> tuple[int, float]:
    """Smallest nprobe from the ladder whose recall@10 on sample queries clears the target."""
    n = len(ids)
    k = min(10, n - 1)
    m = min(CALIBRATION_QUERIES, n)
    # Half the queries are stored vectors (their own entry left out); half are mixes of two
    # stored vectors, which sit between topics the way a new message often does and are
    # harder for IVF than any stored point, so the chosen nprobe is not optimistic.
    own = rng.choice(n, m - m // 2, False)
    a, b = rng.integers(0, n, (2, m // 2))
    w = rng.uniform(0.3, 0.7, (m // 2, 1)).astype(np.float32)
    queries = np.vstack([vectors[own], w * vectors[a] + (1 - w) * vectors[b]])
    faiss.normalize_L2(queries)
    skip = np.concatenate([ids[own], np.full(m // 2, -2, dtype=np.int64)])
    # Exact neighbours straight from the array (no second copy of the data in an index).
    exact_scores, exact_rows = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    # The k-th exact score of each query (its own row left out); a result at least that good
    # counts as a hit, so duplicate texts (equal scores) do not read as misses.
    kth = np.array(
        [
            scores[ids[rows] != skip[q]][:k][-1]
            for q, (scores, rows) in enumerate(zip(exact_scores, exact_rows, strict=True))
        ],
        dtype=np.float32,
    )
    for candidate in NPROBE_LADDER:
        if candidate >= ivf.nlist:
            break
        ivf.nprobe = candidate
        found_scores, found_ids = ivf.search(queries, k + 1)
        hits = 0
        for q in range(m):
            keep = (found_ids[q] != skip[q]) & (found_ids[q] >= 0)
            hits += int((found_scores[q][keep][:k] >= kth[q] - 1e-6).sum())
        recall = hits / (k * m)
        if recall >= target_recall + CALIBRATION_MARGIN:
            return candidate, recall
    # Nothing on the ladder was good enough: probe every list (exact, just slower).
    return int(ivf.nlist), 1.0
