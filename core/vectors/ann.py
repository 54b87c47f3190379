"""The approximate (HNSW) side of a namespace's dense search, on usearch.

Keys are the namespace's slot rows. The graph only proposes candidates: the namespace rescores them
exactly from its own matrix, so scores stay what Upstash reports and the quantised copy usearch
keeps (int8 under COSINE, float16 otherwise) affects recall only, never a score. Not thread-safe:
the engine's lock covers every call.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

logger = logging.getLogger("clipdex.vectors")

# Upstash's similarity -> usearch's metric. The order the metric gives is the order of the score.
_METRICS = {"COSINE": "cos", "DOT_PRODUCT": "ip", "EUCLIDEAN": "l2sq"}


@functools.cache
def _usearch() -> ModuleType:
    """usearch.index, imported on first use: small namespaces (the demo, most tests) never need it."""
    import usearch.index

    return usearch.index


@dataclass(frozen=True)
class AnnSettings:
    """How the HNSW graph is built and searched."""

    # Measured with bench.vector_engine (384-d clustered unit vectors, int8 graph, 40 candidates
    # rescored; BENCHMARKS.md section 2). The graph's density is what limits recall as it grows: with
    # connectivity 16 and expansion_add 64, 1M rows reached 0.90 at 2.7 ms and 0.955 only at 4.7 ms,
    # however wide the search. Connectivity 32 and expansion_add 128 reach 0.977 at 1M (p50 1.3-3.7 ms
    # between runs) and 0.998 at 0.5 ms at 100k (0.995 before), for ~1.6x the build time (still
    # ~7,000 rows/s at 100k, far faster than the model embeds) and ~190 MB more memory at 1M (1,924 MB
    # resident, from 1,739).
    connectivity: int = 32
    expansion_add: int = 128
    # A denser graph needs a narrower search: 64 gives 0.998 at 100k (48: 0.991, 96: 1.000 for +0.1 ms).
    expansion_search: int = 64
    # expansion_search is the width for a graph of up to this many rows. At a fixed width recall falls
    # as the graph grows (0.998 at 100k, 0.94 at 1M with 96), so past it the width grows with the
    # square root of the size: see expansion_for.
    expansion_reference_rows: int = 100_000
    # Candidates taken from the graph and rescored exactly, at least: int8 distances order the top 10
    # poorly (recall 0.80 from 10 candidates) but find them among 40 (0.99).
    oversample: int = 40
    # A filtered query asks the graph for oversample / (share of rows passing) candidates; past this
    # many, scoring the passing rows exactly is as cheap, so the query does that instead.
    max_candidates: int = 2048
    # A filter passing no more rows than this is answered exactly over them (a gather and a product
    # over 10k x 384 float32 takes ~1 ms, less than a deep graph search).
    filter_exact_rows: int = 10_000
    threads: int = 2

    def expansion_for(self, rows: int) -> int:
        """The search width for a graph of `rows` rows."""
        if rows <= self.expansion_reference_rows:
            return self.expansion_search
        return math.ceil(self.expansion_search * math.sqrt(rows / self.expansion_reference_rows))


class AnnIndex:
    """An HNSW graph over some of a namespace's rows (added and removed by row number)."""

    def __init__(self, dimension: int, similarity: str, settings: AnnSettings) -> None:
        self.similarity = similarity
        self.settings = settings
        # int8 keeps a quarter of float32's memory and, on unit vectors, loses almost no recall; it
        # clips components to [-1, 1], so only COSINE (whose vectors are normalised here) uses it.
        self._module = _usearch()
        scalars = self._module.ScalarKind
        self.scalar = scalars.I8 if similarity == "COSINE" else scalars.F16
        self.dimension = dimension
        self.index = self._new_index()
        # usearch only marks a removed row: past a quarter of the graph, those marks cost recall
        # (0.85 against 0.95+ after a third of the rows churned, in tests), so it is rebuilt.
        self.removed = 0
        self._nbytes: int | None = None

    @property
    def worn(self) -> bool:
        return self.removed > max(64, len(self.index) // 4)

    def _new_index(self) -> Any:
        self._width = self.settings.expansion_search  # what the graph searches with now
        return self._module.Index(
            ndim=self.dimension,
            metric=_METRICS[self.similarity],
            dtype=self.scalar,
            connectivity=self.settings.connectivity,
            expansion_add=self.settings.expansion_add,
            expansion_search=self.settings.expansion_search,
        )

    def __len__(self) -> int:
        return len(self.index)

    def _prepared(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, np.float32)
        if self.similarity == "COSINE":
            norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
            vectors = vectors / np.where(norms > 0, norms, 1)
        return np.ascontiguousarray(vectors)

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Add rows that are not in the graph (remove a row before adding it again)."""
        if len(rows):
            self.index.add(rows.astype(np.uint64), self._prepared(vectors), threads=self.settings.threads)
            self._nbytes = None

    def remove(self, rows: np.ndarray) -> None:
        if len(rows) and len(self.index):
            self.index.remove(rows.astype(np.uint64))
            self.removed += len(rows)
            self._nbytes = None

    def contains(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows) or not len(self.index):
            return np.zeros(len(rows), bool)
        return np.asarray(self.index.contains(rows.astype(np.uint64)), bool)

    def renumber(self, old: np.ndarray) -> None:
        """Give the rows `old` (ascending, all in the graph) the numbers 0..len(old)-1, as packing does.
        In ascending order no row takes a number another row still holds: new <= old, and a smaller
        old row has already moved to a smaller number."""
        moving = old != np.arange(len(old))
        if moving.any():
            self.index.rename(old[moving].astype(np.uint64), np.flatnonzero(moving).astype(np.uint64))

    def nbytes(self) -> int:
        # usearch walks the whole graph to answer (2 ms at 100k, under the engine's lock, on every
        # info()); the answer only changes with writes, so it is kept until the next one.
        if self._nbytes is None:
            self._nbytes = int(self.index.memory_usage)
        return self._nbytes

    def search(self, query: np.ndarray, count: int) -> np.ndarray:
        """Up to `count` rows near `query`, nearest first (approximately)."""
        if not len(self.index):
            return np.zeros(0, np.int64)
        # The search explores max(count, expansion_search) nodes, so count also widens it.
        width = self.settings.expansion_for(len(self.index))
        if width != self._width:  # (usearch's getter costs ~4 µs, its setter ~0.2)
            self.index.expansion_search = self._width = width
        matches = self.index.search(self._prepared(query), count, threads=1)
        return matches.keys[: len(matches)].astype(np.int64)

    # ------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        self.index.save(str(path))

    def load(self, path: Path, rows: int) -> bool:
        """Take the graph saved at `path` if it was built the way this one is and holds `rows` rows;
        False (and the graph left empty) otherwise, so the caller rebuilds it."""
        self._nbytes = None
        try:
            meta = self._module.Index.metadata(str(path))
        except (OSError, RuntimeError, ValueError):
            meta = None
        # usearch's load adopts the file's scalar kind but not its metric: check both first.
        if (
            not meta
            or meta.get("kind_metric") != self.index.metric_kind
            or meta.get("kind_scalar") != self.scalar
            or meta.get("dimensions") != self.index.ndim
            or meta.get("count_present") != rows
        ):
            return False
        try:
            self.index.load(str(path))
        except (OSError, RuntimeError, ValueError):
            logger.warning("vector index: the saved graph %s does not load; rebuilding it", path)
            self.index = self._new_index()
            return False
        if self.index.connectivity != self.settings.connectivity:
            # A graph saved by another version's settings (connectivity 16 before issue 15) costs one
            # rebuild when opened: ~10 minutes at 1M rows here, so say so.
            logger.warning(
                "vector index: the saved graph %s has connectivity %d, not %d; rebuilding it",
                path,
                self.index.connectivity,
                self.settings.connectivity,
            )
            self.index = self._new_index()
            return False
        if len(self.index) != rows:
            self.index = self._new_index()
            return False
        self.index.expansion_search = self._width = self.settings.expansion_search
        self.index.expansion_add = self.settings.expansion_add
        return True
