"""The embedded vector engine: Upstash Vector's semantics in process, numpy + HNSW search, durable on disk.

A namespace below `ann_min_rows` records is searched exactly: a matrix-vector product and a partial
sort. A larger one keeps an HNSW graph (usearch) whose candidates are rescored exactly, so every
score is the exact one (float64 from the stored vector, reported as float32 as Upstash does) and
only recall is approximate. A filter becomes a boolean mask over rows; a filtered query returns k
matches whenever k exist (exact over the passing rows when the graph cannot find them). Masks are
cached per (namespace, filter) and kept current by every write. CPU work runs in a worker thread (numpy releases the GIL) under one lock per index, so
the event loop stays free; embedding runs outside the lock. With a `path`, every write is journaled
and fsynced before it returns (see storage.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from core.vectors import inputs
from core.vectors.ann import AnnSettings
from core.vectors.blocks import BLOCK_ROWS
from core.vectors.encoding import Embed, Encoder
from core.vectors.filters import compile_filter
from core.vectors.memory import MemoryIndex
from core.vectors.namespace import DenseOptions
from core.vectors.port import VectorIndex
from core.vectors.records import (
    DEFAULT_NAMESPACE,
    FUSION_ALGORITHMS,
    INDEX_TYPES,
    METADATA_UPDATE_MODES,
    QUERY_MODES,
    SIMILARITIES,
    FusionAlgorithm,
    IndexInfo,
    IndexType,
    MetadataUpdateMode,
    QueryMode,
    QueryResult,
    RangeResult,
    Similarity,
    SparseVector,
    VectorIndexError,
    VectorRecord,
    WeightingStrategy,
)
from core.vectors.storage import (
    DeleteOp,
    DiskStore,
    DropNamespaceOp,
    IndexConfig,
    JournalOp,
    ResetOp,
    UpsertOp,
)

logger = logging.getLogger("clipdex.vectors")

_COMPACTION_RETRY_SECONDS = 60.0

Precision = Literal["float32", "float16"]
PRECISIONS: tuple[str, ...] = ("float32", "float16")


class EmbeddedVectorIndex(VectorIndex):
    """The in-process implementation of the port; `path=None` keeps everything in memory.

    `embed` turns texts into float32 (n, dimension) L2-normalised rows; without it, text feeds only
    the sparse (BM25) side. An index with a `path` must be opened (`await index.open()`, or `async
    with`) before use; closing folds its journal into the snapshot. The journal is compacted when it
    outgrows both `journal_limit_bytes` and the snapshot.

    `precision` is how dense vectors are kept: "float32", or "float16" for half the memory (scores
    are then those of the float16-rounded vectors, within ~1e-3). A namespace of `ann_min_rows`
    records or more is searched through an HNSW graph built as `ann` says (0: always; exact search
    below it, where a product over the matrix takes well under a millisecond). The matrix grows by
    blocks of `block_rows` rows, never by copying what it holds (blocks.py).
    """

    def __init__(
        self,
        dimension: int = 384,
        similarity: Similarity = "COSINE",
        index_type: IndexType = "HYBRID",
        embed: Embed | None = None,
        path: Path | None = None,
        *,
        journal_limit_bytes: int = 64 << 20,
        precision: Precision = "float32",
        ann_min_rows: int = 20_000,
        ann: AnnSettings | None = None,
        block_rows: int = BLOCK_ROWS,
    ) -> None:
        self.dimension = inputs.positive_int(dimension, "dimension")
        self.similarity = inputs.choice(similarity, SIMILARITIES, "similarity")
        self.index_type = inputs.choice(index_type, INDEX_TYPES, "index_type")
        self._config = IndexConfig(self.dimension, self.similarity, self.index_type)
        self._encoder = Encoder(self._config, embed)
        if precision not in PRECISIONS:
            raise VectorIndexError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if isinstance(ann_min_rows, bool) or not isinstance(ann_min_rows, int) or ann_min_rows < 0:
            raise VectorIndexError(f"ann_min_rows must be a non-negative integer, not {ann_min_rows!r}")
        if isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1:
            raise VectorIndexError(f"block_rows must be a positive integer, not {block_rows!r}")
        options = DenseOptions(self.similarity, precision, ann_min_rows, ann or AnnSettings(), block_rows)
        self._memory = MemoryIndex(self._config, options)
        self._store = DiskStore(Path(path), journal_limit_bytes) if path is not None else None
        self._lock = threading.RLock()
        self._opened = self._store is None
        self._closed = False
        self._compact_after = 0.0

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Load the index from its directory (a no-op for a memory-only or already open index)."""
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        with self._lock:
            if self._opened or self._store is None or self._closed:
                return
            states, ops = self._store.open(self._config)
            self._memory.load(states)
            for op in ops:
                self._memory.apply(op)
            self._opened = True
            logger.info(
                "vector index loaded: %d records, %d journal ops replayed", self._memory.count(), len(ops)
            )
            self._maybe_compact()

    async def close(self) -> None:
        """Fold the journal into the snapshot and release the directory."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._store is not None and self._opened:
                try:
                    if self._store.has_journal_records():
                        self._store.compact(self._config, self._memory.states())
                except (OSError, RuntimeError):
                    # Every write is in the journal still; the next open replays it.
                    logger.exception("vector index: folding the journal in on close failed")
                finally:
                    self._store.close()

    async def __aenter__(self) -> EmbeddedVectorIndex:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise RuntimeError("the vector index is closed")
        if not self._opened:
            raise RuntimeError("open the vector index (await index.open()) before using it")

    def _commit(self, op: JournalOp) -> None:
        """Make a write durable (journal + fsync), then visible. Call under the lock."""
        if self._store is not None:
            self._store.append(op)
        self._memory.apply(op)
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._store is None or not self._store.should_compact() or time.monotonic() < self._compact_after:
            return
        try:
            self._store.compact(self._config, self._memory.states())
        except OSError:
            # The writes are durable in the journal already; fold them in later.
            logger.exception("vector index compaction failed; retrying in %.0f s", _COMPACTION_RETRY_SECONDS)
            self._compact_after = time.monotonic() + _COMPACTION_RETRY_SECONDS

    # ------------------------------------------------------------ writes

    async def upsert(self, records: list[VectorRecord], namespace: str = DEFAULT_NAMESPACE) -> None:
        await asyncio.to_thread(self._upsert, records, namespace)

    async def upsert_data(
        self, items: list[tuple[str, str, dict[str, Any] | None]], namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        try:
            records = [VectorRecord(id=id, data=text, metadata=metadata) for id, text, metadata in items]
        except (TypeError, ValueError):
            raise VectorIndexError("items must be (id, text, metadata) tuples") from None
        await asyncio.to_thread(self._upsert, records, namespace)

    def _upsert(self, records: list[VectorRecord], namespace: str) -> None:
        self._check_usable()
        op = UpsertOp(inputs.namespace(namespace), self._encoder.rows(records))
        if not op.rows:
            return
        with self._lock:
            self._check_usable()
            self._commit(op)

    async def update(
        self,
        id: str,
        *,
        vector: list[float] | None = None,
        sparse_vector: SparseVector | None = None,
        data: str | None = None,
        metadata: dict[str, Any] | None = None,
        metadata_update_mode: MetadataUpdateMode = "OVERWRITE",
        namespace: str = DEFAULT_NAMESPACE,
    ) -> bool:
        """Change parts of a record. New `data` re-derives the parts the index can derive from text
        (dense with an embedder, sparse by BM25) unless a vector for that part is given too."""
        return await asyncio.to_thread(
            self._update, id, vector, sparse_vector, data, metadata, metadata_update_mode, namespace
        )

    def _update(
        self, id: Any, vector: Any, sparse_vector: Any, data: Any, metadata: Any, mode: Any, namespace: Any
    ) -> bool:
        self._check_usable()
        id, namespace = inputs.record_id(id), inputs.namespace(namespace)
        inputs.choice(mode, METADATA_UPDATE_MODES, "metadata_update_mode")
        if vector is None and sparse_vector is None and data is None and metadata is None:
            raise VectorIndexError("update needs a vector, sparse_vector, data or metadata")
        dense, sparse, data = self._encoder.update_parts(vector, sparse_vector, data)
        changes = inputs.metadata(metadata)
        with self._lock:
            self._check_usable()
            row = self._memory.updated(namespace, id, dense, sparse, data, changes, patch=mode == "PATCH")
            if row is None:
                return False
            self._commit(UpsertOp(namespace, [row]))
            return True

    async def delete(
        self,
        ids: list[str] | None = None,
        *,
        prefix: str | None = None,
        filter: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> int:
        return await asyncio.to_thread(self._delete, ids, prefix, filter, namespace)

    def _delete(self, ids: Any, prefix: Any, filter: Any, namespace: Any) -> int:
        self._check_usable()
        namespace = inputs.namespace(namespace)
        if sum(value is not None for value in (ids, prefix, filter)) != 1:
            raise VectorIndexError("delete takes exactly one of ids, prefix or filter")
        wanted = inputs.id_list(ids) if ids is not None else None
        prefix = inputs.text(prefix, "prefix") if prefix is not None else None
        predicate = compile_filter(filter) if filter is not None else None
        with self._lock:
            self._check_usable()
            space = self._memory.get(namespace)
            if wanted is not None:
                targets = [id for id in dict.fromkeys(wanted) if id in space.rows]
            elif predicate is not None:
                targets = self._memory.matching(namespace, filter, predicate)
            else:
                targets = self._memory.with_prefix(namespace, prefix or "")
            if targets:
                self._commit(DeleteOp(namespace, targets))
            return len(targets)

    async def reset(self, *, namespace: str = DEFAULT_NAMESPACE, all: bool = False) -> None:
        await asyncio.to_thread(self._reset, namespace, all)

    def _reset(self, namespace: Any, every: bool) -> None:
        self._check_usable()
        namespace = inputs.namespace(namespace)
        with self._lock:
            self._check_usable()
            if every or namespace in self._memory.namespaces:
                self._commit(ResetOp(None if every else namespace))

    async def delete_namespace(self, namespace: str) -> bool:
        return await asyncio.to_thread(self._delete_namespace, namespace)

    def _delete_namespace(self, namespace: Any) -> bool:
        self._check_usable()
        if inputs.namespace(namespace) == DEFAULT_NAMESPACE:
            raise VectorIndexError("the default namespace cannot be deleted")
        with self._lock:
            self._check_usable()
            if namespace not in self._memory.namespaces:
                return False
            self._commit(DropNamespaceOp(namespace))
            return True

    # ------------------------------------------------------------ reads

    async def query(
        self,
        *,
        vector: list[float] | None = None,
        sparse_vector: SparseVector | None = None,
        data: str | None = None,
        top_k: int = 10,
        include_metadata: bool = False,
        include_vectors: bool = False,
        include_data: bool = False,
        filter: str = "",
        namespace: str = DEFAULT_NAMESPACE,
        fusion_algorithm: FusionAlgorithm = "RRF",
        query_mode: QueryMode = "HYBRID",
        weighting_strategy: WeightingStrategy | None = None,
    ) -> list[QueryResult]:
        include = (include_vectors, include_metadata, include_data)
        options = (top_k, filter, namespace, fusion_algorithm, query_mode, weighting_strategy)
        return await asyncio.to_thread(self._query, vector, sparse_vector, data, include, *options)

    def _query(
        self,
        vector: Any,
        sparse_vector: Any,
        data: Any,
        include: tuple[bool, bool, bool],
        top_k: Any,
        filter: Any,
        namespace: Any,
        fusion: Any,
        mode: Any,
        weighting: Any,
    ) -> list[QueryResult]:
        self._check_usable()
        namespace = inputs.namespace(namespace)
        top_k = inputs.positive_int(top_k, "top_k")
        inputs.choice(fusion, FUSION_ALGORITHMS, "fusion_algorithm")
        inputs.choice(mode, QUERY_MODES, "query_mode")
        if weighting not in (None, "IDF"):
            raise VectorIndexError(f"weighting_strategy must be IDF or None, not {weighting!r}")
        filter = inputs.text(filter if filter is not None else "", "filter")
        predicate = compile_filter(filter) if filter.strip() else None
        dense, sparse, text = self._encoder.query_parts(vector, sparse_vector, data, mode)
        with self._lock:
            self._check_usable()
            return self._memory.search(
                namespace,
                dense,
                sparse,
                text,
                top_k=top_k,
                include=include,
                filter=filter,
                predicate=predicate,
                fusion=fusion,
                idf_weighting=weighting == "IDF",
            )

    async def fetch(
        self,
        ids: list[str] | None = None,
        *,
        prefix: str | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        include_data: bool = True,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> list[VectorRecord | None]:
        include = (include_vectors, include_metadata, include_data)
        return await asyncio.to_thread(self._fetch, ids, prefix, include, namespace)

    def _fetch(self, ids: Any, prefix: Any, include: tuple[bool, bool, bool], namespace: Any) -> list[Any]:
        self._check_usable()
        namespace = inputs.namespace(namespace)
        if (ids is None) == (prefix is None):
            raise VectorIndexError("fetch takes ids or a prefix (exactly one)")
        wanted = inputs.id_list(ids) if ids is not None else None
        prefix = inputs.text(prefix, "prefix") if prefix is not None else ""
        with self._lock:
            self._check_usable()
            return self._memory.fetch(namespace, wanted, prefix, include)

    async def range(
        self,
        cursor: str = "",
        limit: int = 100,
        prefix: str | None = None,
        include_metadata: bool = False,
        include_vectors: bool = False,
        include_data: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> RangeResult:
        include = (include_vectors, include_metadata, include_data)
        return await asyncio.to_thread(self._range, cursor, limit, prefix, include, namespace)

    def _range(
        self, cursor: Any, limit: Any, prefix: Any, include: tuple[bool, bool, bool], namespace: Any
    ) -> Any:
        self._check_usable()
        namespace, cursor = inputs.namespace(namespace), inputs.text(cursor, "cursor")
        limit = inputs.positive_int(limit, "limit")
        prefix = inputs.text(prefix, "prefix") if prefix is not None else ""
        with self._lock:
            self._check_usable()
            return self._memory.range(namespace, cursor, limit, prefix, include)

    async def info(self) -> IndexInfo:
        return await asyncio.to_thread(self._locked, self._memory.info)

    async def list_namespaces(self) -> list[str]:
        return await asyncio.to_thread(self._locked, lambda: sorted(self._memory.namespaces))

    async def bm25_query_vector(self, text: str, namespace: str = DEFAULT_NAMESPACE) -> SparseVector:
        """The sparse vector a text query uses here: each word weighted by its IDF in the namespace."""
        text, namespace = inputs.text(text, "text"), inputs.namespace(namespace)
        return await asyncio.to_thread(self._locked, lambda: self._memory.query_vector(namespace, text))

    def _locked(self, read: Callable[[], Any]) -> Any:
        self._check_usable()
        with self._lock:
            self._check_usable()
            return read()
