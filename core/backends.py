"""Builds the adapters the settings select (cache, search index, job queue), so that no port imports its own."""

from __future__ import annotations

from pathlib import Path

from core.cache import Cache, InMemoryCache
from core.jobs import InProcessJobQueue, JobQueue, Jobs
from core.settings import Settings
from core.vectors import EmbeddedVectorIndex, VectorIndex


def build_cache(settings: Settings) -> Cache:
    """The cache the settings select: Upstash Redis when configured, else the in-process one."""
    if settings.uses_upstash_redis:
        from core.upstash_cache import UpstashRedisCache

        return UpstashRedisCache(
            settings.upstash_redis_rest_url,
            settings.upstash_redis_rest_token,
            settings.upstash_timeout_seconds,
        )
    return InMemoryCache(max_entries=settings.cache_max_entries)


def build_vector_index(settings: Settings) -> VectorIndex:
    """The index the settings select: Upstash Vector when configured, else the embedded engine with the
    local model, on disk or in memory."""
    # Imported here: the model's libraries are heavy, and Upstash-embedding setups never need them.
    from core.embeddings import DIMENSION, installed_embedder

    if settings.uses_upstash_vector:
        from core.upstash_vector import UpstashVectorIndex

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


def build_job_queue(settings: Settings, jobs: Jobs) -> JobQueue:
    """Where `jobs` run: QStash when configured (the app runs no loop), else this process's own loops."""
    if settings.uses_qstash:
        from core.qstash_jobs import QStashJobQueue

        return QStashJobQueue(
            jobs,
            token=settings.qstash_token,
            public_base_url=settings.public_base_url,
            current_signing_key=settings.qstash_current_signing_key,
            next_signing_key=settings.qstash_next_signing_key,
            base_url=settings.qstash_url or None,
            timeout_seconds=settings.upstash_timeout_seconds,
        )
    return InProcessJobQueue(jobs)
