"""The vector index port: what clipdex asks of a vector database, in Upstash Vector's terms.

Method names, arguments and semantics follow the official `upstash_vector.AsyncIndex`, so the embedded
engine and the hosted Upstash Vector can stand behind the same interface. Every `namespace` argument
defaults to "", the default namespace. Invalid input raises `VectorIndexError`.
"""

from __future__ import annotations

import abc
from typing import Any

from core.vectors.records import (
    DEFAULT_NAMESPACE,
    FusionAlgorithm,
    IndexInfo,
    MetadataUpdateMode,
    QueryMode,
    QueryResult,
    RangeResult,
    SparseVector,
    VectorRecord,
    WeightingStrategy,
)


class VectorIndex(abc.ABC):
    """A vector index with namespaces, metadata filters and dense, sparse or hybrid search."""

    @abc.abstractmethod
    async def upsert(self, records: list[VectorRecord], namespace: str = DEFAULT_NAMESPACE) -> None:
        """Insert or wholly replace records by id.

        A record that lacks a vector part the index needs but has `data` gets that part from its text
        (dense from the embedder, sparse from BM25), as Upstash does for indexes with models.
        """

    @abc.abstractmethod
    async def upsert_data(
        self, items: list[tuple[str, str, dict[str, Any] | None]], namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        """Upsert `(id, text, metadata)` items: the index embeds each text and stores it as `data`."""

    @abc.abstractmethod
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
        """The `top_k` best matches among records whose metadata passes `filter`, best first.

        Query by `vector` and/or `sparse_vector`, or by `data` (text the index embeds). When both a
        dense and a sparse part are present the two result lists are fused with `fusion_algorithm`;
        `query_mode` DENSE or SPARSE uses only that part. `weighting_strategy="IDF"` weights a raw
        sparse query by inverse document frequency (text queries are IDF-weighted already).
        """

    @abc.abstractmethod
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
        """Records by id (None where an id is absent, in the order asked), or every id under `prefix`."""

    @abc.abstractmethod
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
        """Up to `limit` records in the order they were first written (as Upstash walks them) from
        `cursor` ("" or "0" = the start); next_cursor "" at the end. A walk is stable under concurrent
        writes: a record that exists for all of it comes back exactly once."""

    @abc.abstractmethod
    async def delete(
        self,
        ids: list[str] | None = None,
        *,
        prefix: str | None = None,
        filter: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> int:
        """Delete by ids, by id prefix, or by metadata filter (exactly one); returns how many went."""

    @abc.abstractmethod
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
        """Change parts of one record; False when the id is absent.

        PATCH merges `metadata` into the stored metadata as an RFC 7396 JSON merge patch (null removes
        a key, objects merge recursively); OVERWRITE replaces it.
        """

    @abc.abstractmethod
    async def info(self) -> IndexInfo:
        """Counts overall and per namespace, and the index's configuration."""

    @abc.abstractmethod
    async def reset(self, *, namespace: str = DEFAULT_NAMESPACE, all: bool = False) -> None:
        """Remove every record of a namespace, or of all namespaces with `all=True`."""

    @abc.abstractmethod
    async def list_namespaces(self) -> list[str]:
        """Names of the namespaces, the default one ("") included."""

    @abc.abstractmethod
    async def delete_namespace(self, namespace: str) -> bool:
        """Drop a namespace and its records; False when it does not exist. The default one cannot go."""

    async def open(self) -> None:  # noqa: B027 - optional: implementations without set-up keep it
        """Load or connect; called once at start-up, before any other method."""

    async def close(self) -> None:
        """Release what the index holds (files, connections); nothing by default."""
        return None
