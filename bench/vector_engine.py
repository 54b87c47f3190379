"""The embedded vector engine at a given size: build, query p50/p99 (plain and filtered), memory, save, load.

Data is clustered like real embeddings (unit vectors scattered around 200 random centres), not
uniform noise. Usage: .venv/bin/python bench/vector_engine.py 10000 100000
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.vectors import EmbeddedVectorIndex, VectorRecord

DIMENSION = 384
QUERIES = 300


def clustered(count: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((200, DIMENSION)).astype(np.float32)
    points = centres[rng.integers(0, len(centres), count)] + 0.6 * rng.standard_normal((count, DIMENSION))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def measure(count: int) -> None:
    rng = np.random.default_rng(7)
    vectors = clustered(count + QUERIES, rng)
    data, queries = vectors[:count], vectors[count:]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as directory:
        index = EmbeddedVectorIndex(dimension=DIMENSION, index_type="DENSE", path=Path(directory))
        await index.open()
        started = time.perf_counter()
        for start in range(0, count, 1000):
            await index.upsert(
                [
                    VectorRecord(id=f"v{i}", vector=data[i].tolist(), metadata={"bucket": i % 20})
                    for i in range(start, min(count, start + 1000))
                ]
            )
        build = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        async def timed(filter_: str) -> list[float]:
            timings = []
            for query in queries:
                began = time.perf_counter()
                await index.query(vector=query.tolist(), top_k=10, filter=filter_)
                timings.append((time.perf_counter() - began) * 1000)
            return timings

        plain = await timed("")
        filtered = await timed("bucket = 3")  # 5% of rows
        # recall@10 of the engine against brute force (exact search: expected 1.0)
        exact = np.argsort(-(data @ queries[:50].T), axis=0)[:10].T
        got = [[int(r.id[1:]) for r in await index.query(vector=q.tolist(), top_k=10)] for q in queries[:50]]
        recall = statistics.mean(len(set(g) & set(e.tolist())) / 10 for g, e in zip(got, exact, strict=True))
        started = time.perf_counter()
        await index.close()
        save = time.perf_counter() - started
        reopened = EmbeddedVectorIndex(dimension=DIMENSION, index_type="DENSE", path=Path(directory))
        started = time.perf_counter()
        await reopened.open()
        load = time.perf_counter() - started
        await reopened.close()
    print(
        f"{count:>8} vectors: build {build:.1f} s, query p50 {percentile(plain, 50):.2f} ms "
        f"p99 {percentile(plain, 99):.2f} ms, filtered (5%) p50 {percentile(filtered, 50):.2f} ms "
        f"p99 {percentile(filtered, 99):.2f} ms, recall@10 {recall:.3f}, "
        f"memory +{(rss_after - rss_before) / 1024:.0f} MB, save {save:.2f} s, load {load:.2f} s"
    )


if __name__ == "__main__":
    for size in [int(arg) for arg in sys.argv[1:]] or [10_000, 100_000]:
        asyncio.run(measure(size))
