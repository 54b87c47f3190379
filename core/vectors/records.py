"""The records the vector engine stores and returns, shaped like Upstash Vector's (camelCase on the wire)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Similarity = Literal["COSINE", "DOT_PRODUCT", "EUCLIDEAN"]
IndexType = Literal["DENSE", "SPARSE", "HYBRID"]
FusionAlgorithm = Literal["RRF", "DBSF"]
QueryMode = Literal["HYBRID", "DENSE", "SPARSE"]
MetadataUpdateMode = Literal["OVERWRITE", "PATCH"]
WeightingStrategy = Literal["IDF"]

SIMILARITIES: tuple[str, ...] = ("COSINE", "DOT_PRODUCT", "EUCLIDEAN")
INDEX_TYPES: tuple[str, ...] = ("DENSE", "SPARSE", "HYBRID")
FUSION_ALGORITHMS: tuple[str, ...] = ("RRF", "DBSF")
QUERY_MODES: tuple[str, ...] = ("HYBRID", "DENSE", "SPARSE")
METADATA_UPDATE_MODES: tuple[str, ...] = ("OVERWRITE", "PATCH")

DEFAULT_NAMESPACE = ""
# Upstash refuses caller-supplied sparse vectors with more non-zero dimensions than this.
MAX_SPARSE_DIMENSIONS = 1000


class VectorIndexError(ValueError):
    """The caller asked for something invalid (Upstash answers these with a 4xx); the message says what."""


class VectorStoreCorruptError(RuntimeError):
    """The files under the index's directory are damaged in a way no crash of ours can cause."""


class VectorStoreLockedError(RuntimeError):
    """Another process (or another open index in this one) has the index's directory open."""


class SparseVector(msgspec.Struct, rename="camel"):
    """Non-zero dimensions of a sparse vector: `indices[i]` holds `values[i]`."""

    indices: list[int]
    values: list[float]


class VectorRecord(msgspec.Struct, rename="camel", omit_defaults=True):
    """One stored item. `data` is the text it was embedded from, when it came from text."""

    id: str
    vector: list[float] | None = None
    sparse_vector: SparseVector | None = None
    metadata: dict[str, Any] | None = None
    data: str | None = None


class QueryResult(msgspec.Struct, rename="camel", omit_defaults=True):
    """A query hit; the optional parts are present only when the query asked to include them."""

    id: str
    score: float
    vector: list[float] | None = None
    sparse_vector: SparseVector | None = None
    metadata: dict[str, Any] | None = None
    data: str | None = None


class NamespaceInfo(msgspec.Struct, rename="camel"):
    vector_count: int
    pending_vector_count: int = 0


class IndexInfo(msgspec.Struct, rename="camel"):
    """Counts and configuration; `index_size` is an estimate of the bytes the index holds."""

    vector_count: int
    pending_vector_count: int
    index_size: int
    dimension: int
    similarity_function: Similarity
    index_type: IndexType
    namespaces: dict[str, NamespaceInfo]


class RangeResult(msgspec.Struct, rename="camel"):
    """One page of a scan in insertion order; pass `next_cursor` back for the next page ("" after the last)."""

    next_cursor: str
    vectors: list[VectorRecord]
