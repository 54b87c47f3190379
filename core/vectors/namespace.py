"""One namespace of the embedded engine: rows, the dense matrix, sparse postings and filter masks.

Rows are slots: a record keeps its slot until deleted, and freed slots are reused, so the dense
matrix (float32 or float16, in fixed-size blocks: blocks.py) and every per-row array stay aligned
without moving data. When more than half the slots are free the rows are packed again. Not thread-safe: the engine
holds its lock around every call.

Dense search is exact (a product over the matrix and a partial sort) until the namespace holds
`ann_min_rows` records; from then on an HNSW graph (ann.py) proposes candidates, which are rescored
exactly from the matrix, so scores never depend on the graph. A filtered query is answered exactly
over the passing rows when few pass, and otherwise from graph candidates that pass, widened until
k are found, or exactly if they still are not: a filtered query returns k hits whenever k exist.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.vectors.ann import AnnIndex, AnnSettings
from core.vectors.blocks import BLOCK_ROWS, RowBlocks
from core.vectors.filters import Predicate
from core.vectors.order import InsertionOrder
from core.vectors.scoring import Ranking, candidate_pool, dense_scores, ranked, ranking_keys
from core.vectors.sparse import InvertedIndex, Sparse
from core.vectors.storage import NamespaceState

# Filter masks kept per namespace; searches repeat a handful of visibility filters.
MASK_CACHE_SIZE = 32
# Fold recent postings into the compact base past this many (or a quarter of the base).
_RECENT_POSTINGS_LIMIT = 20_000
# Below this share of candidate rows, copying them out and scoring only them beats one product over
# the whole matrix (measured at 100k x 384: 5% 2.4 ms, 10% 4.8, 20% 8.9, against 7.6 for the product).
_GATHER_SHARE = 0.15
# Rows handled at a time when loading a snapshot's vectors or adding them to the graph.
_CHUNK_ROWS = 16_384


@dataclass(frozen=True)
class DenseOptions:
    """How a namespace stores and searches dense vectors (the engine's constructor documents them)."""

    similarity: str = "COSINE"
    precision: str = "float32"
    ann_min_rows: int = 20_000
    ann: AnnSettings = field(default_factory=AnnSettings)
    block_rows: int = BLOCK_ROWS


class Namespace:
    def __init__(
        self, dimension: int, *, dense: bool, sparse: bool, options: DenseOptions | None = None
    ) -> None:
        self.dimension = dimension
        self.has_dense = dense
        self.has_sparse = sparse
        self.options = options or DenseOptions()
        self.dtype = np.dtype(self.options.precision)
        self.order = InsertionOrder()
        self.clear()

    def clear(self) -> None:
        self.ids: list[str | None] = []  # per slot; None = free
        self.rows: dict[str, int] = {}
        self.metadata: list[dict[str, Any] | None] = []
        self.data: list[str | None] = []
        self._text_size = 0  # characters of data held: info() must not walk every record to say it
        self.sparse: list[Sparse | None] = []
        self._free: list[int] = []
        self.matrix = self._blocks()
        self.norms = np.zeros(0, np.float32)
        self.ann: AnnIndex | None = None
        self._stale: set[int] = set()  # rows whose vector the graph does not have yet
        self.live = np.zeros(0, bool)
        self.sequences = np.zeros(0, np.int64)  # per slot: the record's place in the insertion order
        self.order.clear()
        self.postings = InvertedIndex()
        # filter text -> (predicate, mask over slots); kept up to date by every write.
        self._masks: OrderedDict[str, tuple[Predicate, np.ndarray]] = OrderedDict()
        self._sorted_ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _blocks(self, first: np.ndarray | None = None) -> RowBlocks:
        return RowBlocks(self.dimension if self.has_dense else 0, self.dtype, self.options.block_rows, first)

    @property
    def slots(self) -> int:
        return len(self.ids)

    # ------------------------------------------------------------ writes

    def put(
        self,
        id: str,
        vector: np.ndarray | None,
        sparse: Sparse | None,
        metadata: dict[str, Any] | None,
        data: str | None,
    ) -> None:
        """Insert or wholly replace the record `id`."""
        row = self.rows.get(id)
        if row is None:
            row = self._allocate()
            self.rows[id] = row
            self.ids[row] = id
            self.sequences[row] = self.order.append(id)
            self._sorted_ids = None
        elif self.sparse[row] is not None:
            self.postings.remove(row, self.sparse[row])
        self.metadata[row] = metadata
        self._text_size += len(data or "") - len(self.data[row] or "")
        self.data[row] = data
        self.sparse[row] = sparse
        if vector is not None:
            self.matrix[row] = vector
            # The norm of what is stored (float16 rounds), so ranking keys match the rescored scores.
            self.norms[row] = np.linalg.norm(self.matrix[row].astype(np.float64))
            if self.ann is not None:
                self._stale.add(row)
        if sparse is not None:
            self.postings.add(row, sparse)
        self.live[row] = True
        for predicate, mask in self._masks.values():
            mask[row] = predicate(metadata)
        if self.postings.recent_size > max(_RECENT_POSTINGS_LIMIT, self.postings.base_size // 4):
            self.postings.rebuild(self.sparse)
        if self.ann is None and self.has_dense and len(self.rows) >= self.options.ann_min_rows:
            self.ann = AnnIndex(self.dimension, self.options.similarity, self.options.ann)
            self._stale.update(np.flatnonzero(self.live[: self.slots]).tolist())

    def sync(self) -> None:
        """Bring the graph up to date with the rows written since (one batched add: usearch
        parallelises a batch, and the engine's writes come in batches)."""
        if self.ann is not None and self.ann.worn:
            # Amortised like a hash table's growth: at least a quarter of the graph churned since.
            self.ann = AnnIndex(self.dimension, self.options.similarity, self.options.ann)
            self._stale = set(np.flatnonzero(self.live[: self.slots]).tolist())
        if self.ann is None or not self._stale:
            return
        rows = np.fromiter(self._stale, np.int64, len(self._stale))
        rows.sort()
        self._stale.clear()
        self.ann.remove(rows[self.ann.contains(rows)])  # replaced vectors: usearch keeps one per key
        for start in range(0, len(rows), _CHUNK_ROWS):
            chunk = rows[start : start + _CHUNK_ROWS]
            self.ann.add(chunk, self.matrix[chunk])

    def remove(self, id: str) -> bool:
        row = self.rows.pop(id, None)
        if row is None:
            return False
        sparse = self.sparse[row]
        if sparse is not None:
            self.postings.remove(row, sparse)
        self._text_size -= len(self.data[row] or "")
        self.order.remove(int(self.sequences[row]))
        self.ids[row] = self.metadata[row] = self.data[row] = self.sparse[row] = None
        self.live[row] = False
        self.norms[row] = 0
        if self.ann is not None:
            self._stale.discard(row)
            self.ann.remove(np.array([row]))
        for _, mask in self._masks.values():
            mask[row] = False
        self._free.append(row)
        self._sorted_ids = None
        if not self.rows:
            self.clear()
        elif len(self._free) > max(1024, self.slots // 2):
            self._pack()
        return True

    def _allocate(self) -> int:
        if self._free:
            return self._free.pop()
        row = len(self.ids)
        self.ids.append(None)
        self.metadata.append(None)
        self.data.append(None)
        self.sparse.append(None)
        if row >= len(self.live):
            self._grow(max(64, 2 * len(self.live)))
        if self.has_dense and row >= len(self.matrix):
            self.matrix.reserve(row + 1)
        return row

    def _grow(self, capacity: int) -> None:
        # The per-row arrays are small (bytes a row) and double; the matrix adds blocks in place.
        def grown(array: np.ndarray) -> np.ndarray:
            bigger = np.zeros((capacity, *array.shape[1:]), array.dtype)
            bigger[: len(array)] = array
            return bigger

        self.norms = grown(self.norms)
        self.live = grown(self.live)
        self.sequences = grown(self.sequences)
        for text, (predicate, mask) in self._masks.items():
            self._masks[text] = (predicate, grown(mask))

    def _pack(self) -> None:
        """Move the records into the first slots, in slot order, dropping the free ones."""
        ann = self.ann
        if ann is not None:
            # Renumbering the graph's keys is cheap; rebuilding it is not.
            self.sync()
            ann.renumber(np.flatnonzero(self.live[: self.slots]))
        self.load(self.export("", keep_slots=False), ann=ann)

    # ------------------------------------------------------------ reads

    def sorted_ids(self) -> list[str]:
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self.rows)
        return self._sorted_ids

    def with_prefix(self, prefix: str) -> list[str]:
        """Ids starting with `prefix`, in insertion order."""
        if not prefix:
            return self.order.page(0, len(self.rows))[0]
        ids = self.sorted_ids()
        first, end = _prefix_span(ids, prefix)
        return sorted(ids[first:end], key=lambda id: self.sequences[self.rows[id]])

    def walk(self, start: int, limit: int, prefix: str) -> tuple[list[str], int | None]:
        """Up to `limit` ids in insertion order from sequence number `start` (those starting with
        `prefix`), and where the next page starts (None after the last)."""
        if not prefix:
            return self.order.page(start, limit)
        ids = self.sorted_ids()
        first, end = _prefix_span(ids, prefix)
        # Sorting the m matching ids by sequence costs ~m; scanning the insertion order for them
        # costs ~limit * n / m. Either way a page never costs a pass over a large namespace.
        if (end - first) ** 2 > (limit + 1) * len(ids):
            return self.order.page(start, limit, lambda id: id.startswith(prefix))
        matching = sorted(
            (sequence, id)
            for id in ids[first:end]
            if (sequence := int(self.sequences[self.rows[id]])) >= start
        )
        page = [id for _, id in matching[:limit]]
        return page, matching[limit][0] if len(matching) > limit else None

    def allowed(self, text: str, predicate: Predicate) -> np.ndarray:
        """Which slots hold a record whose metadata passes the filter (cached until evicted)."""
        entry = self._masks.get(text)
        if entry is None:
            mask = np.zeros(len(self.live), bool)
            mask[: self.slots] = np.fromiter(map(predicate, self.metadata), bool, self.slots)
            mask &= self.live
            entry = (predicate, mask)
            self._masks[text] = entry
            if len(self._masks) > MASK_CACHE_SIZE:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(text)
        return entry[1][: self.slots]

    def dense_top(self, query: np.ndarray, k: int, allowed: np.ndarray | None, similarity: str) -> Ranking:
        """The k best rows by dense similarity among the allowed ones, with exact scores."""
        if not self.has_dense or not self.rows:
            return Ranking.empty()
        self.sync()
        candidates: np.ndarray | None = None
        if allowed is not None:
            candidates = np.flatnonzero(allowed)
            if len(candidates) == 0:
                return Ranking.empty()
            if self.ann is not None and len(candidates) > self.options.ann.filter_exact_rows:
                found = self._ann_candidates(query, k, allowed, len(candidates))
                if found is not None:
                    return self._rescored(found, query, k, similarity)
        elif self.ann is not None:
            found = self._ann_candidates(query, k, None, len(self.rows))
            if found is not None:
                return self._rescored(found, query, k, similarity)
        if candidates is None and self._free:
            candidates = np.flatnonzero(self.live[: self.slots])
        keys = ranking_keys(self._dots(candidates, query), self._norms(candidates), similarity)
        pool = candidate_pool(keys, k)
        rows = pool if candidates is None else candidates[pool]
        return self._rescored(rows, query, k, similarity)

    def _ann_candidates(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None, passing: int
    ) -> np.ndarray | None:
        """Graph candidates (allowed ones only) to rescore, at least min(k, passing) of them; None when
        that takes more than max_candidates, and exact search is the better way."""
        settings = self.options.ann
        wanted = min(k, passing)
        # Rescoring twice k candidates at least: the graph's int8 order is rougher near the k-th.
        # Expect `count * passing / len` of the candidates to pass; ask for enough to keep that many.
        count = math.ceil(max(2 * k, settings.oversample) * len(self.rows) / passing)
        while count <= settings.max_candidates:
            found = self.ann.search(query, count) if self.ann is not None else np.zeros(0, np.int64)
            if allowed is not None:
                found = found[allowed[found]]
            if len(found) >= wanted:
                return found
            if count >= len(self.rows):
                break  # the graph gave all it reaches
            count *= 4
        return None

    def _rescored(self, rows: np.ndarray, query: np.ndarray, k: int, similarity: str) -> Ranking:
        scores = dense_scores(self.matrix[rows], query, similarity)
        best = ranked(scores, self.sequences[rows], k)
        return Ranking(rows[best], scores[best])

    def _norms(self, rows: np.ndarray | None) -> np.ndarray:
        return self.norms[: self.slots] if rows is None else self.norms[rows]

    def _dots(self, rows: np.ndarray | None, query: np.ndarray) -> np.ndarray:
        """float32 dot products of the query with the rows (None = every slot)."""
        slots = self.slots
        if rows is not None and self.dtype == np.float32 and len(rows) >= _GATHER_SHARE * slots:
            return self.matrix.dots(query, slots)[rows]
        return self.matrix.dots(query, slots, rows)

    def sparse_top(self, query: Sparse, k: int, allowed: np.ndarray | None) -> Ranking:
        """The k best rows by sparse inner product among allowed rows sharing a dimension with the query."""
        if not self.has_sparse or not self.rows:
            return Ranking.empty()
        totals, touched = self.postings.scores(query, self.slots)
        touched &= self.live[: self.slots]
        if allowed is not None:
            touched &= allowed
        candidates = np.flatnonzero(touched)
        scores = totals[candidates].astype(np.float32)
        best = ranked(scores, self.sequences[candidates], k)
        return Ranking(candidates[best], scores[best])

    def nbytes(self) -> int:
        """Roughly what the namespace holds in memory."""
        text = self._text_size
        graph = self.ann.nbytes() if self.ann is not None else 0
        dense = int(self.matrix.nbytes + self.norms.nbytes) + graph
        return dense + self.postings.nbytes() + text + 200 * len(self)

    # ------------------------------------------------------------ snapshots

    def export(self, name: str, *, keep_slots: bool = True) -> NamespaceState:
        """The records in slot order. With `keep_slots`, the state also carries each record's slot
        (when any slot is free) and a way to save the graph, whose keys are those slots."""
        rows = [row for row, id in enumerate(self.ids) if id is not None]
        state = NamespaceState(
            name=name,
            ids=[self.ids[row] or "" for row in rows],
            metadata=[self.metadata[row] for row in rows],
            data=[self.data[row] for row in rows],
            sequences=self.sequences[rows],
            next_sequence=self.order.next_sequence,
        )
        if self.has_dense:
            # Without free slots, the blocks themselves (views): saving copies no vector.
            state.dense = self.matrix.head(self.slots) if not self._free else self.matrix[np.array(rows)]
            if not len(state.dense):
                state.dense = np.zeros((0, self.dimension), self.dtype)
        if keep_slots and self._free:
            state.slots = np.array(rows, np.int64)
        if keep_slots and self.ann is not None:
            self.sync()
            state.save_graph = self.ann.save
        if self.has_sparse:
            parts = [self.sparse[row] or (np.zeros(0, np.int32), np.zeros(0, np.float32)) for row in rows]
            lengths = np.array([len(part[0]) for part in parts], np.int64)
            state.sparse_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            state.sparse_indices = np.concatenate([part[0] for part in parts] or [np.zeros(0, np.int32)])
            state.sparse_values = np.concatenate([part[1] for part in parts] or [np.zeros(0, np.float32)])
        return state

    def load(self, state: NamespaceState, ann: AnnIndex | None = None) -> None:
        """Replace everything with the snapshot's records: in their saved slots, or in 0..n-1. The
        graph is `ann` (already matching), the snapshot's saved one when it fits, or built anew."""
        masks = [(text, predicate) for text, (predicate, _) in self._masks.items()]
        self.clear()
        count = len(state.ids)
        slots = state.slots if state.slots is not None else np.arange(count)
        size = int(slots.max()) + 1 if count else 0
        self.live = np.zeros(size, bool)
        self.live[slots] = True
        self.ids = _scattered(state.ids, slots, size)
        self.rows = {id: row for row, id in zip(slots.tolist(), state.ids, strict=True)}
        self.metadata = _scattered(state.metadata, slots, size)
        self.data = _scattered(state.data, slots, size)
        # A snapshot from before sequence numbers (format 1) gives its records in slot order.
        sequences = state.sequences if state.sequences is not None else np.arange(count, dtype=np.int64)
        self.sequences = np.zeros(size, np.int64)
        self.sequences[slots] = sequences
        self.order.load(sequences.tolist(), state.ids, state.next_sequence)
        self._text_size = sum(len(data) for data in state.data if data)
        self.sparse = [None] * size
        self._free = np.flatnonzero(~self.live).tolist()[::-1]  # reused lowest first
        dense = state.dense
        if isinstance(dense, list):  # an export's blocks (packing reloads its own export)
            dense = np.concatenate(dense) if dense else None
        if self.has_dense and dense is not None and size == count and _adoptable(dense, self.dtype):
            # Rows already in slot order: the snapshot's array becomes the matrix, so loading holds
            # one copy of the vectors, not two (at 1M float16 rows a copy is 770 MB).
            self.matrix = self._blocks(dense)
        else:
            self.matrix = self._blocks()
            self.matrix.reserve(size)
            if self.has_dense and dense is not None:
                for start in range(0, count, _CHUNK_ROWS):
                    chunk = slots[start : start + _CHUNK_ROWS]
                    self.matrix.put(chunk, dense[start : start + _CHUNK_ROWS])
        self.norms = np.zeros(size, np.float32)
        if self.has_dense and dense is not None:
            for start in range(0, count, _CHUNK_ROWS):
                chunk = slots[start : start + _CHUNK_ROWS]
                self.norms[chunk] = np.linalg.norm(self.matrix[chunk].astype(np.float32), axis=1)
        if self.has_sparse and state.sparse_offsets is not None:
            offsets = state.sparse_offsets.tolist()
            indices, values = state.sparse_indices, state.sparse_values
            assert indices is not None
            assert values is not None
            for row, (a, b) in zip(slots.tolist(), itertools.pairwise(offsets), strict=True):
                self.sparse[row] = (indices[a:b], values[a:b])
            self.postings.rebuild(self.sparse)
        if ann is not None:
            self.ann = ann
        elif self.has_dense and count and count >= self.options.ann_min_rows:
            self.ann = AnnIndex(self.dimension, self.options.similarity, self.options.ann)
            if state.graph is None or not self.ann.load(state.graph, count):
                self._stale.update(slots.tolist())
                self.sync()
        for text, predicate in masks:
            self.allowed(text, predicate)


def _prefix_span(ids: list[str], prefix: str) -> tuple[int, int]:
    """Where the ids starting with `prefix` are in the sorted `ids`: [first, end)."""
    first = bisect.bisect_left(ids, prefix)
    stem = prefix.rstrip(chr(0x10FFFF))
    if not stem:
        return first, len(ids)
    after = stem[:-1] + chr(ord(stem[-1]) + 1)  # the first string past every one starting with prefix
    return first, bisect.bisect_left(ids, after, lo=first)


def _adoptable(array: np.ndarray, dtype: np.dtype) -> bool:
    """Whether `array` can serve as the matrix itself: ours to write, of the stored precision."""
    return array.dtype == dtype and array.flags.c_contiguous and array.flags.writeable and array.base is None


def _scattered(values: list[Any], slots: np.ndarray, size: int) -> list[Any]:
    if len(values) == size:  # no free slot: already in place
        return list(values)
    out: list[Any] = [None] * size
    for slot, value in zip(slots.tolist(), values, strict=True):
        out[slot] = value
    return out
