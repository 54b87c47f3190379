"""An embedded vector engine with Upstash Vector's semantics, behind a port the hosted service also fits.

index = EmbeddedVectorIndex(dimension=384, index_type="HYBRID", embed=embedder.embed, path=Path("data/vectors"))
await index.open()
await index.upsert_data([("v1", "How to brew espresso", {"tags": ["coffee"]})])
hits = await index.query(data="coffee", top_k=5, filter="tags CONTAINS 'coffee'", include_metadata=True)
"""

from pathlib import Path

from core.settings import Settings
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
    "build_vector_index",
    "compile_filter",
    "tokenize",
]


def build_vector_index(settings: Settings) -> VectorIndex:
    """The index the settings select: Upstash Vector when configured, else the embedded engine with the
    local model, on disk or in memory."""
    from core.embeddings import DIMENSION, installed_embedder

    if settings.uses_upstash_vector:
        from core.upstash_vector import UpstashVectorIndex  # imported here: it builds on this package

        # Search ranks with both halves of a hybrid index (dense for meaning, BM25 for keywords).
        return UpstashVectorIndex.from_settings(settings).expect(
            DIMENSION,
            "COSINE",
            settings.upstash_vector_embedding_model if settings.vector_embedding == "upstash" else None,
        )

    path = None if settings.vector_index_path == ":memory:" else Path(settings.vector_index_path)
    return EmbeddedVectorIndex(
        dimension=DIMENSION,
        similarity="COSINE",
        index_type="HYBRID",
        embed=installed_embedder().embed,
        path=path,
        precision=settings.vector_index_precision,
        ann_min_rows=settings.vector_ann_min_rows,
    )
