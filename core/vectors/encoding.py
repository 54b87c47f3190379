"""Turns what callers give the engine into the arrays it stores and searches with.

Checks records and queries against the index's type and dimension, derives missing parts from text
(dense through the embedding model, in one batch; sparse through BM25), and picks the query parts a
query mode asks for. Raises VectorIndexError for anything invalid. Holds no index state, so the
engine runs it outside its lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from core.vectors import inputs
from core.vectors.records import VectorIndexError, VectorRecord
from core.vectors.sparse import Sparse, document_weights
from core.vectors.storage import IndexConfig, StoredRow

Embed = Callable[[list[str]], np.ndarray]

# Query texts whose vectors are remembered: 4,096 x 384 float32 is ~6 MB.
QUERY_MEMO_SIZE = 4096


class QueryVectors:
    """The dense vectors of recent query texts, remembered (least recently used goes first).

    A query's vector depends on its text alone, never on the catalogue, so a remembered one is never
    stale; a search whose result cache was cleared by a write (a like, a view count) then skips the
    model, most of a hybrid search's time. The vectors handed out are read-only. Thread-safe.
    """

    def __init__(self, embed: Embed, size: int = QUERY_MEMO_SIZE) -> None:
        self._embed = embed
        self._size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def remembered(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._vectors.get(text)
            if vector is not None:
                self._vectors.move_to_end(text)
            return vector

    def __call__(self, text: str) -> np.ndarray:
        vector = self.remembered(text)
        if vector is None:
            # Embedded outside the lock: two threads missing on one text both compute it, and agree.
            vector = np.array(self._embed([text])[0], dtype=np.float32)
            vector.flags.writeable = False
            with self._lock:
                self._vectors[text] = vector
                if len(self._vectors) > self._size:
                    self._vectors.popitem(last=False)
        return vector


class Encoder:
    def __init__(self, config: IndexConfig, embed: Embed | None) -> None:
        self.config = config
        self.dense = config.index_type != "SPARSE"
        self.sparse = config.index_type != "DENSE"
        self._embed = embed
        self.queries = QueryVectors(self.embed)

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._embed is None:
            raise VectorIndexError("this index has no embedding model: give dense vectors, not text")
        vectors = np.asarray(self._embed(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.config.dimension) or not np.isfinite(vectors).all():
            raise VectorIndexError(
                f"the embedding model returned {vectors.shape}, expected ({len(texts)}, {self.config.dimension})"
            )
        return vectors

    def dense_vector(self, vector: Any) -> np.ndarray | None:
        if vector is None:
            return None
        if not self.dense:
            raise VectorIndexError("a SPARSE index takes no dense vectors")
        return inputs.dense(vector, self.config.dimension, self.config.similarity)

    def sparse_vector(self, vector: Any) -> Sparse | None:
        if vector is None:
            return None
        if not self.sparse:
            raise VectorIndexError("a DENSE index takes no sparse vectors")
        return inputs.sparse(vector)

    def rows(self, records: Any) -> list[StoredRow]:
        """Records ready to store; a part the index needs but a record lacks comes from its `data`."""
        if not isinstance(records, list | tuple):
            raise VectorIndexError("records must be a list of VectorRecord")
        rows: list[list[Any]] = []
        for record in records:
            if not isinstance(record, VectorRecord):
                raise VectorIndexError(f"records must be VectorRecord, not {type(record).__name__}")
            id = inputs.record_id(record.id)
            data = inputs.text(record.data, "data") if record.data is not None else None
            vector, sparse = self.dense_vector(record.vector), self.sparse_vector(record.sparse_vector)
            for needed, present, part in ((self.dense, vector, "dense"), (self.sparse, sparse, "sparse")):
                if needed and present is None and data is None:
                    raise VectorIndexError(f"record {id!r} needs a {part} vector (or data to derive it from)")
            if self.sparse and sparse is None and data is not None:
                sparse = document_weights(data)
            rows.append([id, vector, sparse, inputs.metadata(record.metadata), data])
        missing = [row for row in rows if self.dense and row[1] is None]
        if missing:
            for row, vector in zip(missing, self.embed([row[4] for row in missing]), strict=True):
                row[1] = vector
        return [StoredRow.of(*row) for row in rows]

    def update_parts(
        self, vector: Any, sparse_vector: Any, data: Any
    ) -> tuple[np.ndarray | None, Sparse | None, str | None]:
        """New parts for an update; new `data` re-derives what it can unless that part is given."""
        dense, sparse = self.dense_vector(vector), self.sparse_vector(sparse_vector)
        if data is not None:
            data = inputs.text(data, "data")
            if self.dense and dense is None and self._embed is not None:
                dense = self.embed([data])[0]
            if self.sparse and sparse is None:
                sparse = document_weights(data)
        return dense, sparse, data

    def query_parts(
        self, vector: Any, sparse_vector: Any, data: Any, mode: str
    ) -> tuple[np.ndarray | None, Sparse | None, str | None]:
        """The dense query, the raw sparse query, and the text for BM25, as the query mode selects."""
        if (mode == "DENSE" and not self.dense) or (mode == "SPARSE" and not self.sparse):
            raise VectorIndexError(f"query_mode {mode} needs an index with {mode.lower()} vectors")
        if data is not None:
            if vector is not None or sparse_vector is not None:
                raise VectorIndexError("query by data or by vectors, not both")
            if not inputs.text(data, "data").strip():
                raise VectorIndexError("the query text is empty")
            dense = self.queries(data) if self.dense and mode != "SPARSE" else None
            return dense, None, data if self.sparse and mode != "DENSE" else None
        if vector is None and sparse_vector is None:
            raise VectorIndexError("query needs a vector, a sparse_vector or data")
        dense, sparse = self.dense_vector(vector), self.sparse_vector(sparse_vector)
        if mode == "DENSE":
            if dense is None:
                raise VectorIndexError("query_mode DENSE needs a dense query vector")
            sparse = None
        elif mode == "SPARSE":
            if sparse is None:
                raise VectorIndexError("query_mode SPARSE needs a sparse query vector")
            dense = None
        return dense, sparse, None
