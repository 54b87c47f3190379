"""The engine's in-memory state: every namespace of one index, changed only by journal ops, and the
reads over it (search with fusion, fetch, range, info). Synchronous and not thread-safe: the engine
calls it under its lock, with input already checked."""

from __future__ import annotations

import bisect
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
    VectorRecord,
)
from core.vectors.scoring import Hits, fuse_dbsf, fuse_rrf
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
        rankings: list[Hits] = []
        if dense is not None:
            rankings.append(space.dense_top(dense, top_k, allowed, self.config.similarity))
        if sparse is not None:
            rankings.append(space.sparse_top(sparse, top_k, allowed))
        for ranking in rankings:  # equal scores rank by id, so fused ranks and pages are stable
            ranking.sort(key=lambda hit: (-hit[1], space.ids[hit[0]]))
        if len(rankings) == 2:
            hits = list((fuse_rrf if fusion == "RRF" else fuse_dbsf)(*rankings).items())
            hits.sort(key=lambda hit: (-hit[1], space.ids[hit[0]]))
        else:
            hits = rankings[0]
        return [
            QueryResult(space.ids[row] or "", score, *self._parts(space, row, include))
            for row, score in hits[:top_k]
        ]

    def _parts(
        self, space: Namespace, row: int, include: Include
    ) -> tuple[list[float] | None, SparseVector | None, dict[str, Any] | None, str | None]:
        vectors, metadata, data = include
        sparse = space.sparse[row]
        return (
            space.matrix[row].tolist() if vectors and self.dense else None,
            inputs.sparse_vector(sparse) if vectors and sparse is not None else None,
            inputs.copied(space.metadata[row]) if metadata else None,
            space.data[row] if data else None,
        )

    def record(self, space: Namespace, row: int, include: Include) -> VectorRecord:
        return VectorRecord(space.ids[row] or "", *self._parts(space, row, include))

    def fetch(
        self, namespace: str, ids: list[str] | None, prefix: str, include: Include
    ) -> list[VectorRecord | None]:
        space = self.get(namespace)
        wanted = ids if ids is not None else self.with_prefix(namespace, prefix)
        rows = [space.rows.get(id) for id in wanted]
        return [None if row is None else self.record(space, row, include) for row in rows]

    def with_prefix(
        self, namespace: str, prefix: str, start: str = "", limit: int | None = None
    ) -> list[str]:
        """Ids starting with `prefix`, in order, from `start` on, at most `limit` of them."""
        ids = self.get(namespace).sorted_ids()
        found: list[str] = []
        for position in range(bisect.bisect_left(ids, max(prefix, start)), len(ids)):
            if not ids[position].startswith(prefix) or (limit is not None and len(found) == limit):
                break
            found.append(ids[position])
        return found

    def range(self, namespace: str, cursor: str, limit: int, prefix: str, include: Include) -> RangeResult:
        space = self.get(namespace)
        # One more than the page: the id the next page starts at, which is the cursor.
        page = self.with_prefix(namespace, prefix, cursor, limit + 1)
        records = [self.record(space, space.rows[id], include) for id in page[:limit]]
        return RangeResult(next_cursor=page[limit] if len(page) > limit else "", vectors=records)

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
