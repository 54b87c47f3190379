"""The engine's in-memory state: every namespace of one index, changed only by journal ops, and the
reads over it (search with fusion, fetch, range, info). Synchronous and not thread-safe: the engine
calls it under its lock, with input already checked."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.vectors import inputs
from core.vectors.filters import Predicate
from core.vectors.namespace import DenseOptions, Namespace
from core.vectors.records import (
    DEFAULT_NAMESPACE,
    IndexInfo,
    NamespaceInfo,
    QueryResult,
    RangeResult,
    SparseVector,
    VectorIndexError,
    VectorRecord,
)
from core.vectors.reported import shortest
from core.vectors.scoring import FUSION_DEPTH, Ranking, fuse, ranked
from core.vectors.sparse import Sparse, idf, query_weights
from core.vectors.storage import (
    DeleteOp,
    IndexConfig,
    JournalOp,
    NamespaceState,
    ResetOp,
    StoredRow,
    UpsertOp,
)

# What a read shows of a record beyond its id: (vectors, metadata, data).
Include = tuple[bool, bool, bool]
# ... and those parts of one record: (dense vector, sparse vector, metadata, data).
Parts = tuple[list[float] | None, SparseVector | None, dict[str, Any] | None, str | None]


class MemoryIndex:
    def __init__(self, config: IndexConfig, options: DenseOptions | None = None) -> None:
        self.config = config
        self.options = options or DenseOptions(similarity=config.similarity)
        self.dense = config.index_type != "SPARSE"
        self.sparse = config.index_type != "DENSE"
        self.namespaces: dict[str, Namespace] = {DEFAULT_NAMESPACE: self._new_namespace()}

    def _new_namespace(self) -> Namespace:
        return Namespace(self.config.dimension, dense=self.dense, sparse=self.sparse, options=self.options)

    def get(self, name: str) -> Namespace:
        """The namespace, or an empty stand-in when it does not exist (reads of it find nothing)."""
        space = self.namespaces.get(name)
        return space if space is not None else self._new_namespace()

    def count(self) -> int:
        return sum(len(space) for space in self.namespaces.values())

    # ------------------------------------------------------------ state changes

    def load(self, states: list[NamespaceState]) -> None:
        self.namespaces = {DEFAULT_NAMESPACE: self._new_namespace()}
        for state in states:
            self.namespaces.setdefault(state.name, self._new_namespace()).load(state)

    def states(self) -> list[NamespaceState]:
        return [space.export(name) for name, space in self.namespaces.items()]

    def apply(self, op: JournalOp) -> None:
        if isinstance(op, UpsertOp):
            space = self.namespaces.get(op.namespace)
            if space is None:
                space = self.namespaces[op.namespace] = self._new_namespace()
            for row in op.rows:
                vector = np.frombuffer(row.vector, np.float32) if row.vector is not None else None
                sparse = None
                if row.sparse_indices is not None and row.sparse_values is not None:
                    sparse = (
                        np.frombuffer(row.sparse_indices, np.int32),
                        np.frombuffer(row.sparse_values, np.float32),
                    )
                space.put(row.id, vector, sparse, row.metadata, row.data)
            space.sync()  # the batch's vectors into the graph in one call
        elif isinstance(op, DeleteOp):
            if (space := self.namespaces.get(op.namespace)) is not None:
                for id in op.ids:
                    space.remove(id)
                space.sync()  # rebuilds the graph when deletes wore it out
        elif isinstance(op, ResetOp):
            for name, space in self.namespaces.items():
                if op.namespace is None or op.namespace == name:
                    space.clear()
        elif op.namespace != DEFAULT_NAMESPACE:
            self.namespaces.pop(op.namespace, None)

    def updated(
        self,
        namespace: str,
        id: str,
        dense: np.ndarray | None,
        sparse: Sparse | None,
        data: str | None,
        metadata: dict[str, Any] | None,
        patch: bool,
    ) -> StoredRow | None:
        """The record `id` with the given parts changed (None parts stay); None when it is absent."""
        space = self.namespaces.get(namespace)
        row = space.rows.get(id) if space is not None else None
        if space is None or row is None:
            return None
        if dense is None and self.dense:
            dense = space.matrix[row].copy()
        if sparse is None:
            sparse = space.sparse[row]
        stored = space.metadata[row]
        if metadata is not None:
            stored = inputs.merge_patch(stored, metadata) if patch else metadata
        return StoredRow.of(id, dense, sparse, stored, data if data is not None else space.data[row])

    def matching(self, namespace: str, filter: str, predicate: Predicate) -> list[str]:
        space = self.get(namespace)
        return [space.ids[row] or "" for row in np.flatnonzero(space.allowed(filter, predicate)).tolist()]

    # ------------------------------------------------------------ reads

    def search(
        self,
        namespace: str,
        dense: np.ndarray | None,
        sparse: Sparse | None,
        text: str | None,
        *,
        top_k: int,
        include: Include,
        filter: str,
        predicate: Predicate | None,
        fusion: str,
        idf_weighting: bool,
    ) -> list[QueryResult]:
        """The top_k hits; `text` (when given) becomes the BM25 sparse query, IDF-weighted here."""
        space = self.namespaces.get(namespace)
        if space is None or not len(space):
            return []
        if text is not None:
            sparse = query_weights(text, space.postings.document_frequency, len(space))
        elif sparse is not None and idf_weighting:
            frequencies = space.postings.document_frequency
            weights = [idf(frequencies.get(term, 0), len(space)) for term in sparse[0].tolist()]
            sparse = (sparse[0], sparse[1] * np.array(weights, np.float32))
        allowed = space.allowed(filter, predicate) if predicate is not None else None
        # A hybrid query fuses deeper lists than it returns (see scoring.FUSION_DEPTH).
        depth = max(top_k, FUSION_DEPTH) if dense is not None and sparse is not None else top_k
        dense_hits = (
            space.dense_top(dense, depth, allowed, self.config.similarity) if dense is not None else None
        )
        sparse_hits = space.sparse_top(sparse, depth, allowed) if sparse is not None else None
        if dense_hits is not None and sparse_hits is not None:
            rows, fused = fuse(dense_hits, sparse_hits, fusion)
            best = ranked(fused, space.sequences[rows], top_k)
            hits = Ranking(rows[best], fused[best])
        else:
            hits = dense_hits if dense_hits is not None else sparse_hits
            assert hits is not None  # the encoder always gives a query part
        parts = self._parts(space, hits.rows, include)
        scores = shortest(hits.scores).tolist()
        ids = [space.ids[row] or "" for row in hits.rows.tolist()]
        return [QueryResult(id, score, *part) for id, score, part in zip(ids, scores, parts, strict=True)]

    def _parts(self, space: Namespace, rows: np.ndarray, include: Include) -> list[Parts]:
        """(vector, sparse vector, metadata, data) of each row, as a read shows them: numbers in their
        shortest form (reported.py), all rows' vectors converted in one go."""
        vectors, metadata, data = include
        rows_list = rows.tolist()
        dense: list[Any] = [None] * len(rows_list)
        sparse: list[Any] = [None] * len(rows_list)
        if vectors and self.dense and rows_list:
            dense = shortest(space.matrix[rows]).tolist()
        if vectors and self.sparse:
            sparse = _sparse_vectors([space.sparse[row] for row in rows_list])
        return [
            (
                dense[position],
                sparse[position],
                inputs.copied(space.metadata[row]) if metadata else None,
                space.data[row] if data else None,
            )
            for position, row in enumerate(rows_list)
        ]

    def records(self, space: Namespace, ids: list[str | None], include: Include) -> list[VectorRecord | None]:
        """The records of `ids` (None where an id is absent), in that order."""
        found = [(position, space.rows.get(id)) for position, id in enumerate(ids) if id is not None]
        present = [(position, row) for position, row in found if row is not None]
        parts = self._parts(space, np.array([row for _, row in present], np.int64), include)
        out: list[VectorRecord | None] = [None] * len(ids)
        for (position, row), part in zip(present, parts, strict=True):
            out[position] = VectorRecord(space.ids[row] or "", *part)
        return out

    def fetch(
        self, namespace: str, ids: list[str] | None, prefix: str, include: Include
    ) -> list[VectorRecord | None]:
        space = self.get(namespace)
        wanted: list[str | None] = list(ids) if ids is not None else list(space.with_prefix(prefix))
        return self.records(space, wanted, include)

    def with_prefix(self, namespace: str, prefix: str) -> list[str]:
        """Ids starting with `prefix`, in insertion order."""
        return self.get(namespace).with_prefix(prefix)

    def range(self, namespace: str, cursor: str, limit: int, prefix: str, include: Include) -> RangeResult:
        """A page in insertion order; the cursor is the sequence number to continue from (see order.py)."""
        start = _cursor_sequence(cursor)
        space = self.get(namespace)
        page, following = space.walk(start, limit, prefix)
        records = [record for record in self.records(space, list(page), include) if record is not None]
        return RangeResult(next_cursor="" if following is None else str(following), vectors=records)

    def query_vector(self, namespace: str, text: str) -> SparseVector:
        space = self.get(namespace)
        return inputs.sparse_vector(query_weights(text, space.postings.document_frequency, len(space)))

    def info(self) -> IndexInfo:
        return IndexInfo(
            vector_count=self.count(),
            pending_vector_count=0,
            index_size=sum(space.nbytes() for space in self.namespaces.values()),
            dimension=self.config.dimension,
            similarity_function=self.config.similarity,
            index_type=self.config.index_type,
            namespaces={name: NamespaceInfo(len(space)) for name, space in sorted(self.namespaces.items())},
        )


def _sparse_vectors(parts: list[Sparse | None]) -> list[SparseVector | None]:
    """Sparse vectors for a read, every row's values written shortest in one conversion."""
    present = [part for part in parts if part is not None]
    if not present:
        return [None] * len(parts)
    values = shortest(np.concatenate([part[1] for part in present])).tolist()
    out: list[SparseVector | None] = []
    start = 0
    for part in parts:
        if part is None:
            out.append(None)
            continue
        end = start + len(part[1])
        out.append(SparseVector(indices=part[0].tolist(), values=values[start:end]))
        start = end
    return out


def _cursor_sequence(cursor: str) -> int:
    """The sequence number a range cursor names: "" (and Upstash's "0") start at the beginning."""
    if not cursor:
        return 0
    if not cursor.isascii() or not cursor.isdigit():
        raise VectorIndexError(f'invalid cursor: {cursor!r} (pass back a next_cursor, or "" to start)')
    return int(cursor)
