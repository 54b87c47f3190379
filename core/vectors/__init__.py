"""An embedded vector engine with Upstash Vector's semantics, behind a port the hosted service also fits.

index = EmbeddedVectorIndex(dimension=384, index_type="HYBRID", embed=embedder.embed, path=Path("data/vectors"))
await index.open()
await index.upsert_data([("v1", "How to brew espresso", {"tags": ["coffee"]})])
hits = await index.query(data="coffee", top_k=5, filter="tags CONTAINS 'coffee'", include_metadata=True)
"""

from core.vectors.ann import AnnSettings
from core.vectors.engine import EmbeddedVectorIndex
from core.vectors.filter_syntax import FilterError
from core.vectors.filters import compile_filter
from core.vectors.port import VectorIndex
from core.vectors.records import (
    DEFAULT_NAMESPACE,
    FusionAlgorithm,
    IndexInfo,
    IndexType,
    MetadataUpdateMode,
    NamespaceInfo,
    QueryMode,
    QueryResult,
    RangeResult,
    Similarity,
    SparseVector,
    VectorIndexError,
    VectorRecord,
    VectorStoreCorruptError,
    VectorStoreLockedError,
    WeightingStrategy,
)
from core.vectors.sparse import bm25_document_vector, bm25_query_vector, tokenize

__all__ = [
    "DEFAULT_NAMESPACE",
    "AnnSettings",
    "EmbeddedVectorIndex",
    "FilterError",
    "FusionAlgorithm",
    "IndexInfo",
    "IndexType",
    "MetadataUpdateMode",
    "NamespaceInfo",
    "QueryMode",
    "QueryResult",
    "RangeResult",
    "Similarity",
    "SparseVector",
    "VectorIndex",
    "VectorIndexError",
    "VectorRecord",
    "VectorStoreCorruptError",
    "VectorStoreLockedError",
    "WeightingStrategy",
    "bm25_document_vector",
    "bm25_query_vector",
    "compile_filter",
    "tokenize",
]
