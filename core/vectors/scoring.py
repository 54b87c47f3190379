"""Scores as Upstash Vector reports them, exact top-k selection, and the fusion of dense and sparse hits.

Dense scores are normalised to [0, 1]: COSINE (1 + cos) / 2, DOT_PRODUCT (1 + dot) / 2, EUCLIDEAN
1 / (1 + squared distance). Sparse scores are plain inner products. Hybrid results fuse the dense and
the sparse ranking with RRF (sum of 1 / (rank + 60), rank counted from 0) or DBSF (each list's scores
mapped by (s - (mu - 3 sigma)) / (6 sigma), then summed).
"""

from __future__ import annotations

import numpy as np

RRF_K = 60
# A ranked hit list: (row, score), best first.
Hits = list[tuple[int, float]]


def top_indices(keys: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest keys, largest first (all of them when there are no more than k)."""
    if len(keys) <= k:
        return np.argsort(-keys, kind="stable")
    chosen = np.argpartition(keys, -k)[-k:]  # partitioning `keys` itself spares a negated copy
    return chosen[np.argsort(-keys[chosen], kind="stable")]


def ranking_keys(dots: np.ndarray, norms: np.ndarray, similarity: str) -> np.ndarray:
    """Values that order rows as their scores do, from float32 dot products with the query."""
    if similarity == "COSINE":
        return dots / norms
    if similarity == "EUCLIDEAN":
        return 2 * dots - norms * norms  # -|x - q|^2 up to the constant |q|^2
    return dots


def dense_scores(vectors: np.ndarray, query: np.ndarray, similarity: str) -> np.ndarray:
    """Exact Upstash scores of `vectors` (rows) against `query`, in float64."""
    rows = vectors.astype(np.float64)
    q = query.astype(np.float64)
    if similarity == "COSINE":
        cosine = rows @ q / (np.linalg.norm(rows, axis=1) * np.linalg.norm(q))
        return (1 + np.clip(cosine, -1.0, 1.0)) / 2
    if similarity == "DOT_PRODUCT":
        return (1 + rows @ q) / 2
    difference = rows - q
    return 1 / (1 + np.einsum("ij,ij->i", difference, difference))


def fuse_rrf(*rankings: Hits) -> dict[int, float]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (row, _) in enumerate(ranking):
            fused[row] = fused.get(row, 0.0) + 1 / (rank + RRF_K)
    return fused


def fuse_dbsf(*rankings: Hits) -> dict[int, float]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        if not ranking:
            continue
        scores = np.array([score for _, score in ranking], np.float64)
        mean, deviation = float(scores.mean()), float(scores.std())
        # One hit, or all equal (up to rounding): every score sits at the centre of its distribution.
        spread = deviation > 1e-12 * max(1.0, abs(mean))
        for row, score in ranking:
            normalised = (score - (mean - 3 * deviation)) / (6 * deviation) if spread else 0.5
            fused[row] = fused.get(row, 0.0) + normalised
    return fused
