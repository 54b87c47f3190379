"""The engine's HNSW path (ann_min_rows=0 forces it) against exact search: the same top k with the
same scores, filtered queries that still return k, writes that never leave stale or deleted rows in
results, float16 storage, the graph saved beside the snapshot, and every similarity function."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from core.vectors import EmbeddedVectorIndex, VectorIndexError, VectorRecord
from core.vectors.ann import AnnSettings

DIMENSION = 32
# Deep enough to be exact on a few thousand rows, so top-k comparisons need no recall tolerance.
EXACT_ENOUGH = AnnSettings(connectivity=16, expansion_add=128, expansion_search=128, oversample=60)


def clustered(count: int, seed: int = 3, centres: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, DIMENSION)).astype(np.float32)
    points = middle[rng.integers(0, centres, count)] + 0.5 * rng.standard_normal((count, DIMENSION))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def records(vectors: np.ndarray, start: int = 0) -> list[VectorRecord]:
    return [
        VectorRecord(f"r{start + i}", vector.tolist(), metadata={"i": start + i, "bucket": (start + i) % 10})
        for i, vector in enumerate(vectors)
    ]


def index_of(**options) -> EmbeddedVectorIndex:
    options.setdefault("ann_min_rows", 0)
    options.setdefault("ann", EXACT_ENOUGH)
    return EmbeddedVectorIndex(dimension=DIMENSION, index_type="DENSE", **options)


async def top(
    index: EmbeddedVectorIndex, query: np.ndarray, k: int = 10, filter: str = ""
) -> list[tuple[str, float]]:
    return [(hit.id, hit.score) for hit in await index.query(vector=query.tolist(), top_k=k, filter=filter)]


def overlap(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> float:
    return len({id for id, _ in got} & {id for id, _ in want}) / max(1, len(want))


@pytest.mark.parametrize("similarity", ["COSINE", "DOT_PRODUCT", "EUCLIDEAN"])
async def test_ann_gives_the_exact_top_k_and_scores(similarity):
    vectors = clustered(3000)
    if similarity == "EUCLIDEAN":  # (Upstash expects unit vectors under DOT_PRODUCT)
        vectors *= np.random.default_rng(1).uniform(0.5, 2.0, (len(vectors), 1)).astype(np.float32)
    ann, exact = index_of(similarity=similarity), index_of(similarity=similarity, ann_min_rows=10**9)
    for index in (ann, exact):
        await index.upsert(records(vectors))
    queries = clustered(40, seed=11)

    recalls = []
    for query in queries:
        got, want = await top(ann, query), await top(exact, query)
        recalls.append(overlap(got, want))
        scores = dict(want)
        for id, score in got:  # a hit the graph found has the exact score
            if id in scores:
                assert score == pytest.approx(scores[id], abs=1e-9)
        assert [score for _, score in got] == sorted((score for _, score in got), reverse=True)
    # Approximate, and threaded graph builds vary run to run: 0.98-1.0 seen; a broken graph is < 0.5.
    assert np.mean(recalls) >= 0.95


async def test_ann_is_used_only_from_the_threshold_on():
    index = index_of(ann_min_rows=500)
    await index.upsert(records(clustered(499)))
    assert index._memory.get("").ann is None
    await index.upsert(records(clustered(2, seed=5), start=499))
    space = index._memory.get("")
    assert space.ann is not None
    assert len(space.ann) == 501


@pytest.mark.parametrize("bucket_filter", ["bucket = 3", "bucket != 3", "i < 45", "i >= 0"])
async def test_filtered_queries_return_k_whenever_k_exist(bucket_filter):
    vectors = clustered(3000)
    # Small graphs and no exact shortcut: the filtered path must widen or fall back on its own.
    settings = AnnSettings(expansion_search=16, oversample=10, filter_exact_rows=0, max_candidates=400)
    ann, exact = index_of(ann=settings), index_of(ann_min_rows=10**9)
    for index in (ann, exact):
        await index.upsert(records(vectors))
    for query in clustered(20, seed=12):
        got, want = await top(ann, query, 30, bucket_filter), await top(exact, query, 30, bucket_filter)
        assert len(got) == len(want) == 30
        ids = [int(id[1:]) for id, _ in got]
        if bucket_filter == "bucket = 3":
            assert all(i % 10 == 3 for i in ids)
        elif bucket_filter == "bucket != 3":
            assert all(i % 10 != 3 for i in ids)
        elif bucket_filter == "i < 45":
            assert sorted(ids) == sorted(int(id[1:]) for id, _ in want)


@pytest.mark.parametrize("bucket_filter", ["bucket = 3", "bucket != 3"])
async def test_filtered_ann_matches_exact(bucket_filter):
    vectors = clustered(3000)
    settings = AnnSettings(expansion_add=128, expansion_search=128, oversample=60, filter_exact_rows=0)
    ann, exact = index_of(ann=settings), index_of(ann_min_rows=10**9)
    for index in (ann, exact):
        await index.upsert(records(vectors))
    recalls = []
    for query in clustered(20, seed=12):
        got, want = await top(ann, query, 10, bucket_filter), await top(exact, query, 10, bucket_filter)
        recalls.append(overlap(got, want))
    assert np.mean(recalls) >= 0.95  # 0.98-1.0 seen; filtering the wrong rows would be far below


async def test_a_filter_passing_fewer_than_k_returns_all_of_them():
    index = index_of(ann=AnnSettings(filter_exact_rows=0))
    await index.upsert(records(clustered(2000)))
    hits = await index.query(vector=clustered(1, seed=9)[0].tolist(), top_k=10, filter="i < 4")
    assert sorted(hit.id for hit in hits) == ["r0", "r1", "r2", "r3"]


async def test_updates_and_deletes_never_return_stale_or_removed_rows():
    vectors = clustered(2000)
    ann, exact = index_of(), index_of(ann_min_rows=10**9)
    moved = clustered(300, seed=21)
    for index in (ann, exact):
        await index.upsert(records(vectors))
        await index.delete([f"r{i}" for i in range(0, 2000, 3)])
        # Replace vectors (some into freed slots' ids, some in place) and update others one by one.
        await index.upsert(
            [
                VectorRecord(f"r{i}", moved[i % 300].tolist(), metadata={"i": i, "bucket": 1})
                for i in range(0, 600, 2)
            ]
        )
        for i in range(1, 200, 10):
            await index.update(f"r{i}", vector=moved[(i * 7) % 300].tolist())
    deleted = {f"r{i}" for i in range(0, 2000, 3)} - {f"r{i}" for i in range(0, 600, 2)}
    overlaps = []
    for query in np.concatenate([clustered(20, seed=13), moved[:20]]):
        got, want = await top(ann, query, 20), await top(exact, query, 20)
        current = dict(await top(exact, query, 2000))  # every live record's score now
        for id, score in got:
            assert id not in deleted
            assert score == pytest.approx(current[id], abs=1e-9)  # scored by its current vector
        overlaps.append(overlap(got, want))
    # Approximate: one query may miss a neighbour or two (threaded graph builds vary run to run).
    assert np.mean(overlaps) >= 0.95
    assert min(overlaps) >= 0.8


async def test_packing_after_mass_deletes_keeps_the_graph_right():
    vectors = clustered(3000)
    ann, exact = index_of(), index_of(ann_min_rows=10**9)
    for index in (ann, exact):
        await index.upsert(records(vectors))
        await index.delete(filter="bucket != 0")  # 90% gone: the namespace packs its slots
    assert ann._memory.get("").slots < 1000  # packed on the way (then some slots freed again)
    overlaps = []
    for query in clustered(20, seed=14):
        got, want = await top(ann, query), await top(exact, query)
        every = dict(await top(exact, query, 3000))
        # Renumbered keys that pointed at the wrong rows would score differently or not exist.
        assert all(score == pytest.approx(every[id], abs=1e-9) for id, score in got)
        overlaps.append(overlap(got, want))
    assert np.mean(overlaps) >= 0.95


async def test_float16_scores_stay_close_to_float32():
    vectors = clustered(2000)
    half, full = index_of(precision="float16"), index_of(ann_min_rows=10**9)
    for index in (half, full):
        await index.upsert(records(vectors))
    assert half._memory.get("").matrix.dtype == np.float16
    recalls = []
    for query in clustered(20, seed=15):
        got, want = await top(half, query), await top(full, query)
        recalls.append(overlap(got, want))
        scores = dict(want)
        for id, score in got:
            if id in scores:
                assert score == pytest.approx(scores[id], abs=2e-3)
    assert np.mean(recalls) >= 0.95
    # The exact path over float16 storage (chunked conversion) agrees too.
    exact_half, exact_full = index_of(precision="float16", ann_min_rows=10**9), index_of(ann_min_rows=10**9)
    for index in (exact_half, exact_full):
        await index.upsert(records(vectors))
    query = clustered(1, seed=16)[0]
    assert [id for id, _ in await top(exact_half, query)][:5] == [
        id for id, _ in await top(exact_full, query)
    ][:5]


async def test_bad_options_are_refused():
    with pytest.raises(VectorIndexError):
        EmbeddedVectorIndex(dimension=4, precision="float64")  # type: ignore[arg-type]
    with pytest.raises(VectorIndexError):
        EmbeddedVectorIndex(dimension=4, ann_min_rows=-1)


async def test_the_graph_is_saved_beside_the_snapshot_and_reused(tmp_path):
    vectors = clustered(3000)
    queries = clustered(10, seed=17)
    async with index_of(path=tmp_path) as index:
        await index.upsert(records(vectors))
        await index.delete(["r5", "r6"])  # free slots: the snapshot keeps each record's slot
        before = [await top(index, query, filter=f) for query in queries for f in ("", "bucket = 2")]
    graphs = list(tmp_path.glob("graph-*.usearch"))
    assert len(graphs) == 1

    reopened = index_of(path=tmp_path)
    await reopened.open()
    space = reopened._memory.get("")
    assert len(space.ann) == 2998
    assert space._free  # the slots came back as they were, so the saved graph's keys still fit
    after = [await top(reopened, query, filter=f) for query in queries for f in ("", "bucket = 2")]
    assert after == before
    await reopened.upsert(records(clustered(5, seed=18), start=5000))
    await reopened.close()
    assert [path.name for path in tmp_path.glob("graph-*.usearch")] != [graphs[0].name]  # a new generation


async def test_a_damaged_graph_is_rebuilt_not_trusted(tmp_path):
    vectors = clustered(2000)
    query = clustered(1, seed=19)[0]
    async with index_of(path=tmp_path) as index:
        await index.upsert(records(vectors))
        want = await top(index, query)
    (graph,) = tmp_path.glob("graph-*.usearch")
    raw = bytearray(graph.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    graph.write_bytes(bytes(raw))
    async with index_of(path=tmp_path) as index:
        assert overlap(await top(index, query), want) >= 0.8  # a rebuilt graph, not the same one
        assert len(index._memory.get("").ann) == 2000


async def test_a_graph_saved_with_other_settings_is_rebuilt_with_a_warning(tmp_path, caplog):
    # An intact graph of another connectivity (an earlier version's defaults) is not adopted.
    vectors = clustered(2000)
    query = clustered(1, seed=19)[0]
    async with index_of(path=tmp_path) as index:
        await index.upsert(records(vectors))
        want = await top(index, query)
    other = AnnSettings(connectivity=8, expansion_add=128, expansion_search=128, oversample=60)
    caplog.clear()
    async with index_of(path=tmp_path, ann=other) as index:
        assert index._memory.get("").ann.index.connectivity == 8
        assert "has connectivity 16, not 8; rebuilding it" in caplog.text
        assert "damaged" not in caplog.text
        assert overlap(await top(index, query), want) >= 0.8


async def test_a_graph_of_a_crashed_compaction_is_ignored(tmp_path):
    vectors = clustered(1000)
    async with index_of(path=tmp_path) as index:
        await index.upsert(records(vectors))
    (graph,) = tmp_path.glob("graph-*.usearch")
    stray = graph.with_name("graph-99-0.usearch")
    stray.write_bytes(b"not a graph")
    index = index_of(path=tmp_path)
    await index.open()
    assert not stray.exists()
    assert len(await index.query(vector=vectors[0].tolist(), top_k=5)) == 5
    await index.close()


def test_the_installed_usearch_and_onnxruntime_load_in_either_order() -> None:
    # usearch 2.26.2-2.26.6 crash the process when onnxruntime is imported after them (pyproject pins).
    for modules in ("usearch.index, onnxruntime", "onnxruntime, usearch.index"):
        result = subprocess.run([sys.executable, "-c", f"import {modules}"], capture_output=True)
        assert result.returncode == 0, (modules, result.returncode, result.stderr[-500:])


async def test_reported_index_size_follows_writes_to_the_graph():
    index = index_of()
    await index.upsert(records(clustered(500)))
    first = (await index.info()).index_size
    assert (await index.info()).index_size == first  # unchanged without writes
    await index.upsert(records(clustered(500, seed=5), start=500))
    grown = (await index.info()).index_size
    assert grown > first
    await index.delete([f"r{i}" for i in range(900)])
    assert (await index.info()).index_size < grown


def test_the_search_width_grows_with_the_square_root_of_the_graph_past_its_reference_size():
    settings = AnnSettings(expansion_search=96, expansion_reference_rows=100_000)
    assert settings.expansion_for(10) == settings.expansion_for(100_000) == 96
    assert settings.expansion_for(400_000) == 192
    assert settings.expansion_for(1_000_000) == 304  # ceil(96 * sqrt(10))
    widths = [settings.expansion_for(rows) for rows in range(100_000, 2_000_000, 50_000)]
    assert widths == sorted(widths)


async def test_a_growing_graph_is_searched_wider_and_a_shrinking_one_narrower():
    settings = AnnSettings(expansion_search=32, expansion_reference_rows=500)
    index = index_of(ann=settings)
    vectors = clustered(2000)
    await index.upsert(records(vectors[:400]))
    await top(index, vectors[0])
    graph = index._memory.get("").ann
    assert graph.index.expansion_search == 32
    await index.upsert(records(vectors[400:], start=400))
    await top(index, vectors[0])
    graph = index._memory.get("").ann
    assert graph.index.expansion_search == settings.expansion_for(2000) == 64
    await index.delete([f"r{i}" for i in range(1000, 2000)])
    await top(index, vectors[0])
    graph = index._memory.get("").ann
    assert graph.index.expansion_search == settings.expansion_for(len(graph)) < 64
