"""Scores as Upstash Vector reports them, exact top-k selection, and the fusion of dense and sparse hits.

Dense scores are normalised to [0, 1]: COSINE (1 + cos) / 2, DOT_PRODUCT (1 + dot) / 2, EUCLIDEAN
1 / (1 + squared distance). Sparse scores are plain inner products. Hybrid results fuse the dense and
the sparse ranking with RRF (sum of 1 / (rank + 60), rank counted from 0) or DBSF (each list's scores
mapped by (s - (mu - 3 sigma)) / (6 sigma), then summed), over each side's best FUSION_DEPTH (or
top_k, if more) candidates, so a record high in both lists wins over one first in only one.

Every score is computed exactly (float64 from the stored vectors), then rounded to float32, the
precision Upstash reports: a vector identical to the query and a scaled copy of it both score 1.0,
not 0.9999999999999999 and 1.0. Equal scores rank by insertion order (earlier first), the order
`range` walks, so results never depend on the arithmetic's noise or on where a record's slot is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RRF_K = 60
# Candidates each side of a hybrid query contributes to the fusion, at least. Upstash does not
# document its depth; 100 makes a top-1 answer the record high in both lists (see the module doc).
FUSION_DEPTH = 100
# Relative slack on float32 ranking keys when picking the rows to rescore: rows whose exact scores
# round to the same float32 as the k-th best differ from it by far less than this in their keys.
_KEY_SLACK = 1e-5


@dataclass(frozen=True)
class Ranking:
    """Rows best first with their float32 scores (ties already in insertion order)."""

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.rows)

    @staticmethod
    def empty() -> Ranking:
        return Ranking(np.zeros(0, np.int64), np.zeros(0, np.float32))


def ranked(scores: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best scores, best first; equal scores by ascending `order` (insertion)."""
    count = len(scores)
    if count > k:
        kth = np.partition(scores, count - k)[count - k]
        chosen = np.flatnonzero(scores >= kth)  # every score tied with the k-th, not an arbitrary few
    else:
        chosen = np.arange(count)
    return chosen[np.lexsort((order[chosen], -scores[chosen]))][:k]


def candidate_pool(keys: np.ndarray, k: int) -> np.ndarray:
    """Positions worth rescoring exactly for the k best: the k largest keys and any within float32
    noise of the k-th (their exact scores may tie with it, and ties go by insertion order)."""
    count = len(keys)
    if count <= k:
        return np.arange(count)
    kth = float(np.partition(keys, count - k)[count - k])
    pool = np.flatnonzero(keys >= kth - _KEY_SLACK * max(1.0, abs(kth)))
    limit = k + max(k, 1024)
    if len(pool) > limit:  # a mass of near-duplicates: rescoring all of them is not worth it
        pool = pool[np.argpartition(keys[pool], len(pool) - limit)[len(pool) - limit :]]
    return pool


def ranking_keys(dots: np.ndarray, norms: np.ndarray, similarity: str) -> np.ndarray:
    """Values that order rows as their scores do, from float32 dot products with the query."""
    if similarity == "COSINE":
        return dots / norms
    if similarity == "EUCLIDEAN":
        return 2 * dots - norms * norms  # -|x - q|^2 up to the constant |q|^2
    return dots


def dense_scores(vectors: np.ndarray, query: np.ndarray, similarity: str) -> np.ndarray:
    """Upstash scores of `vectors` (rows) against `query`: exact in float64, reported as float32."""
    rows = vectors.astype(np.float64)
    q = query.astype(np.float64)
    if similarity == "COSINE":
        cosine = rows @ q / (np.linalg.norm(rows, axis=1) * np.linalg.norm(q))
        scores = (1 + np.clip(cosine, -1.0, 1.0)) / 2
    elif similarity == "DOT_PRODUCT":
        scores = (1 + rows @ q) / 2
    else:
        difference = rows - q
        scores = 1 / (1 + np.einsum("ij,ij->i", difference, difference))
    return scores.astype(np.float32)


def fuse(dense: Ranking, sparse: Ranking, algorithm: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, float32 fused scores) of every row in either ranking, unordered."""
    rows = np.concatenate([dense.rows, sparse.rows])
    if algorithm == "RRF":
        contributions = np.concatenate(
            [1 / (np.arange(len(part), dtype=np.float64) + RRF_K) for part in (dense, sparse)]
        )
    else:
        contributions = np.concatenate([_distribution_normalised(part.scores) for part in (dense, sparse)])
    unique, inverse = np.unique(rows, return_inverse=True)
    fused = np.zeros(len(unique), np.float64)
    np.add.at(fused, inverse, contributions)
    return unique, fused.astype(np.float32)


def _distribution_normalised(scores: np.ndarray) -> np.ndarray:
    """DBSF's (s - (mu - 3 sigma)) / (6 sigma) of one list's scores."""
    if not len(scores):
        return np.zeros(0, np.float64)
    values = scores.astype(np.float64)
    mean, deviation = float(values.mean()), float(values.std())
    # One hit, or all equal (up to rounding): every score sits at the centre of its distribution.
    if deviation <= 1e-12 * max(1.0, abs(mean)):
        return np.full(len(values), 0.5)
    return (values - (mean - 3 * deviation)) / (6 * deviation)
