"""The dense matrix in fixed-size blocks (core/vectors/blocks.py): growth never copies or moves the rows
it holds, never allocates more than a block at once, and an index whose matrix spans many blocks
answers every query, write and reload exactly as one whose matrix is a single block."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from core.vectors import EmbeddedVectorIndex, VectorRecord
from core.vectors.ann import AnnSettings
from core.vectors.blocks import RowBlocks

DIMENSION = 16


def unit_rows(count: int, seed: int) -> np.ndarray:
    points = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_growth_adds_blocks_and_leaves_the_rows_where_they_are():
    blocks = RowBlocks(DIMENSION, np.float32, block_rows=100)
    blocks.reserve(100)
    first = blocks.segments[0]
    first[:] = unit_rows(100, seed=1)
    before = first.copy()
    blocks.reserve(450)
    assert blocks.capacity == 500
    assert [len(segment) for segment in blocks.segments] == [100, 100, 100, 100, 100]
    assert blocks.segments[0] is first  # not copied: the same memory holds the same rows
    assert np.array_equal(blocks[np.arange(100)], before)


def test_a_small_matrix_doubles_up_to_one_block_then_adds_blocks():
    blocks = RowBlocks(DIMENSION, np.float32, block_rows=256)
    sizes = []
    for rows in range(1, 600):
        blocks.reserve(rows)
        sizes.append(tuple(len(segment) for segment in blocks.segments))
    assert sorted(set(sizes)) == [(64,), (128,), (256,), (256, 256), (256, 256, 256)]


def test_an_adopted_array_is_kept_and_further_rows_go_to_new_blocks():
    loaded = unit_rows(300, seed=2)
    blocks = RowBlocks(DIMENSION, np.float32, block_rows=128, first=loaded)
    blocks.reserve(301)
    assert blocks.segments[0] is loaded
    assert [len(segment) for segment in blocks.segments] == [300, 128]


def test_growing_allocates_at_most_one_block_at_a_time():
    dimension, block = 384, 2048
    blocks = RowBlocks(dimension, np.float32, block_rows=block)
    blocks.reserve(8 * block)
    block_bytes = block * dimension * 4
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        blocks.reserve(8 * block + 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A reallocated matrix would briefly hold 8 blocks more (the copy); here the peak is the new block.
    assert block_bytes <= peak - start < 1.2 * block_bytes


def test_gathers_and_products_across_blocks_match_one_contiguous_matrix():
    rows = unit_rows(1000, seed=3)
    for dtype in (np.float32, np.float16):
        blocks = RowBlocks(DIMENSION, dtype, block_rows=96)
        blocks.reserve(1000)
        order = np.random.default_rng(4).permutation(1000)
        blocks.put(order, rows[order])
        whole = rows.astype(dtype)
        picked = np.random.default_rng(5).integers(0, 1000, 300)
        query = unit_rows(1, seed=6)[0]
        assert np.array_equal(blocks[picked], whole[picked])
        # A graph's few candidates are copied row by row, many rows a segment at a time: both in order.
        assert np.array_equal(blocks[picked[:40]], whole[picked[:40]])
        end = blocks.capacity
        for outside in ([5, end], [-1, 5], [*range(200), end], [-1, *range(200)]):
            with pytest.raises(IndexError):
                blocks[np.array(outside)]
        assert np.array_equal(blocks[int(picked[0])], whole[picked[0]])
        assert np.allclose(blocks.dots(query, 1000), whole.astype(np.float32) @ query, atol=1e-6)
        assert np.allclose(
            blocks.dots(query, 1000, picked), whole[picked].astype(np.float32) @ query, atol=1e-6
        )
        assert np.array_equal(np.concatenate(blocks.head(777)), whole[:777])
        assert blocks[np.zeros(0, np.int64)].shape == (0, DIMENSION)
        with pytest.raises(IndexError):
            blocks[1000 + 96 * 2]
        with pytest.raises(IndexError):
            blocks[-1]


def records(vectors: np.ndarray, start: int) -> list[VectorRecord]:
    return [
        VectorRecord(f"v{start + i}", vector.tolist(), metadata={"bucket": (start + i) % 7})
        for i, vector in enumerate(vectors)
    ]


async def results(index: EmbeddedVectorIndex, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    out = []
    for query in queries:
        for filter in ("", "bucket = 3", "bucket != 3"):
            hits = await index.query(vector=query.tolist(), top_k=15, filter=filter)
            out.append([(hit.id, hit.score) for hit in hits])
    return out


@pytest.mark.parametrize("ann_min_rows", [0, 10**9], ids=["graph", "exact"])
@pytest.mark.parametrize("precision", ["float32", "float16"])
async def test_search_results_are_identical_across_block_boundaries(tmp_path, ann_min_rows, precision):
    """Writes in batches that straddle block boundaries, deletes, a reload (the snapshot adopted as the
    first segment) and writes after it: every result and score equals a one-block index's."""
    options = {
        "dimension": DIMENSION,
        "index_type": "DENSE",
        "precision": precision,
        "ann_min_rows": ann_min_rows,
        # One thread adds to the graph in a fixed order: both indexes build the same graph.
        "ann": AnnSettings(threads=1),
    }
    many = EmbeddedVectorIndex(path=tmp_path / "many", block_rows=50, **options)
    one = EmbeddedVectorIndex(path=tmp_path / "one", block_rows=10**6, **options)
    vectors = unit_rows(1400, seed=7)
    queries = unit_rows(12, seed=8)
    for index in (many, one):
        await index.open()
        for start in range(0, 900, 37):
            await index.upsert(records(vectors[start : min(900, start + 37)], start))
        await index.delete([f"v{i}" for i in range(0, 900, 5)])
        await index.upsert(records(vectors[900:1100], 900))  # reuses the 180 freed slots, then grows
    assert len(many._memory.get("").matrix.segments) > 10
    assert await results(many, queries) == await results(one, queries)
    await many.close()
    await one.close()
    many = EmbeddedVectorIndex(path=tmp_path / "many", block_rows=50, **options)
    one = EmbeddedVectorIndex(path=tmp_path / "one", block_rows=10**6, **options)
    for index in (many, one):
        await index.open()
    assert len(many._memory.get("").matrix.segments[0]) == 920  # the snapshot's array, adopted
    for index in (many, one):
        await index.upsert(records(vectors[1100:1400], 1100))
    assert await results(many, queries) == await results(one, queries)
    ids = [f"v{i}" for i in range(1400)]
    fetched_many = await many.fetch(ids, include_vectors=True)
    fetched_one = await one.fetch(ids, include_vectors=True)
    assert [(r and r.vector) for r in fetched_many] == [(r and r.vector) for r in fetched_one]
    for index in (many, one):
        await index.close()
