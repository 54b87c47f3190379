"""The embedded vector engine against Upstash Vector's semantics: scores, exact and filtered top-k,
namespaces, updates, deletes, fetch and range, hybrid fusion, BM25, info and invalid input."""

from __future__ import annotations

import asyncio
import math
import zlib

import numpy as np
import pytest

from core.vectors import (
    EmbeddedVectorIndex,
    SparseVector,
    VectorIndex,
    VectorIndexError,
    VectorRecord,
    bm25_document_vector,
    tokenize,
)
from core.vectors.encoding import QueryVectors
from core.vectors.reported import shortest

DIMENSION = 384


def fake_embed(texts: list[str]) -> np.ndarray:
    """A stand-in for the sentence model: words hashed into a 384-d bag, L2-normalised."""
    vectors = np.zeros((len(texts), DIMENSION), np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            vectors[row, zlib.crc32(word.encode()) % DIMENSION] += 1.0
        norm = np.linalg.norm(vectors[row])
        vectors[row] = vectors[row] / norm if norm else 1 / math.sqrt(DIMENSION)
    return vectors


def random_records(
    count: int, dimension: int, seed: int = 7, **metadata_of
) -> tuple[np.ndarray, list[VectorRecord]]:
    vectors = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    records = [
        VectorRecord(f"id-{i:05d}", vectors[i].tolist(), metadata={"i": i, "group": i % 100})
        for i in range(count)
    ]
    return vectors, records


def float32(value: float) -> float:
    """A number as Upstash reports a score: rounded to float32, written in its shortest form."""
    return float(str(np.float32(value)))


def brute_force(vectors: np.ndarray, query: np.ndarray, similarity: str) -> np.ndarray:
    x, q = vectors.astype(np.float64), query.astype(np.float64)
    if similarity == "COSINE":
        return (1 + x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))) / 2
    if similarity == "DOT_PRODUCT":
        return (1 + x @ q) / 2
    return 1 / (1 + ((x - q) ** 2).sum(axis=1))


def test_the_engine_implements_the_port():
    assert issubclass(EmbeddedVectorIndex, VectorIndex)


# ---------------------------------------------------------------- scores and top-k


@pytest.mark.parametrize("similarity", ["COSINE", "DOT_PRODUCT", "EUCLIDEAN"])
async def test_scores_are_upstashs_normalised_scores(similarity):
    index = EmbeddedVectorIndex(dimension=3, similarity=similarity, index_type="DENSE")
    vectors = np.array([[1, 0, 0], [0.6, 0.8, 0], [-1, 0, 0], [0.5, 0.5, 0.5]], np.float32)
    await index.upsert([VectorRecord(f"v{i}", vector.tolist()) for i, vector in enumerate(vectors)])
    query = np.array([0.8, 0.6, 0.0], np.float32)

    results = await index.query(vector=query.tolist(), top_k=4)

    expected = brute_force(vectors, query, similarity)
    assert {r.id: r.score for r in results} == pytest.approx(
        {f"v{i}": s for i, s in enumerate(expected)}, abs=1e-6
    )
    assert [r.id for r in results] == [f"v{i}" for i in np.argsort(-expected)]


async def test_known_values_of_each_similarity():
    cosine = EmbeddedVectorIndex(dimension=2, similarity="COSINE", index_type="DENSE")
    await cosine.upsert([VectorRecord("same", [2.0, 0.0]), VectorRecord("opposite", [-1.0, 0.0])])
    euclid = EmbeddedVectorIndex(dimension=2, similarity="EUCLIDEAN", index_type="DENSE")
    await euclid.upsert([VectorRecord("near", [1.0, 1.0])])

    scores = {r.id: r.score for r in await cosine.query(vector=[1.0, 0.0])}
    assert scores == pytest.approx({"same": 1.0, "opposite": 0.0})
    # squared distance from (1, 1) to (0, 0) is 2: 1 / (1 + 2)
    assert (await euclid.query(vector=[0.0, 0.0]))[0].score == pytest.approx(1 / 3)


@pytest.mark.parametrize("similarity", ["COSINE", "DOT_PRODUCT", "EUCLIDEAN"])
async def test_exact_top_k_equals_brute_force(similarity):
    vectors, records = random_records(3000, 32)
    index = EmbeddedVectorIndex(dimension=32, similarity=similarity, index_type="DENSE")
    await index.upsert(records)
    queries = np.random.default_rng(1).standard_normal((10, 32)).astype(np.float32)

    for query in queries:
        results = await index.query(vector=query.tolist(), top_k=15)
        expected = brute_force(vectors, query, similarity)
        best = np.argsort(-expected)[:15]
        assert [r.id for r in results] == [f"id-{i:05d}" for i in best]
        # Upstash's precision: the exact score rounded to float32.
        assert [r.score for r in results] == pytest.approx(expected[best].tolist(), rel=2.5e-7)
        assert all(r.score == float32(r.score) for r in results)


async def test_a_filtered_query_returns_top_k_matches_when_one_percent_of_rows_match():
    vectors, records = random_records(5000, 16)
    index = EmbeddedVectorIndex(dimension=16, index_type="DENSE")
    await index.upsert(records)
    query = np.random.default_rng(2).standard_normal(16).astype(np.float32)
    matching = np.flatnonzero(np.arange(5000) % 100 == 42)  # 50 rows, 1%

    results = await index.query(vector=query.tolist(), top_k=10, filter="group = 42", include_metadata=True)

    expected = brute_force(vectors[matching], query, "COSINE")
    assert [r.id for r in results] == [f"id-{matching[i]:05d}" for i in np.argsort(-expected)[:10]]
    assert all(r.metadata["group"] == 42 for r in results)
    assert len(await index.query(vector=query.tolist(), top_k=100, filter="group = 42")) == 50
    assert await index.query(vector=query.tolist(), filter="group = 1000") == []


async def test_filtered_results_stay_right_as_writes_change_the_cached_masks():
    """Masks are cached per filter and updated by writes: slot reuse, packing and metadata changes."""
    dimension = 8
    rng = np.random.default_rng(3)
    index = EmbeddedVectorIndex(dimension=dimension, index_type="DENSE", similarity="DOT_PRODUCT")
    truth: dict[str, tuple[np.ndarray, int]] = {}

    async def write(ids: list[str]) -> None:
        records = []
        for id in ids:
            vector, colour = rng.standard_normal(dimension).astype(np.float32), int(rng.integers(0, 3))
            truth[id] = (vector, colour)
            records.append(VectorRecord(id, vector.tolist(), metadata={"colour": colour}))
        await index.upsert(records)

    async def check() -> None:
        query = rng.standard_normal(dimension).astype(np.float32)
        results = await index.query(vector=query.tolist(), top_k=20, filter="colour = 1")
        candidates = sorted(id for id, (_, colour) in truth.items() if colour == 1)
        scores = brute_force(np.array([truth[id][0] for id in candidates]), query, "DOT_PRODUCT")
        assert [r.id for r in results] == [candidates[i] for i in np.argsort(-scores)[:20]]

    await write([f"r{i}" for i in range(3000)])
    await check()
    await write([f"r{i}" for i in range(0, 3000, 3)])  # new colours for a third
    await check()
    gone = [f"r{i}" for i in range(2500)]
    assert await index.delete(gone) == 2500  # past half the slots: the namespace packs its rows
    for id in gone:
        del truth[id]
    await check()
    await write([f"n{i}" for i in range(700)])  # reuses slots
    await check()


async def test_a_filter_matching_absence_never_returns_deleted_records():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    await index.upsert([VectorRecord(f"v{i}", [1.0, float(i)]) for i in range(10)])
    await index.query(vector=[1.0, 0.0], filter="HAS NOT FIELD x")  # caches the mask
    await index.delete([f"v{i}" for i in range(0, 10, 2)])

    for filter in ("HAS NOT FIELD x", "HAS NOT FIELD y"):  # cached, and computed after the deletes
        results = await index.query(vector=[1.0, 0.0], top_k=10, filter=filter)
        assert sorted(r.id for r in results) == ["v1", "v3", "v5", "v7", "v9"]


# ---------------------------------------------------------------- namespaces, updates, deletes


async def test_namespaces_are_isolated():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    await index.upsert([VectorRecord("a", [1.0, 0.0], metadata={"ns": "default"})])
    await index.upsert([VectorRecord("a", [0.0, 1.0], metadata={"ns": "other"})], namespace="other")

    assert (await index.fetch(["a"]))[0].metadata == {"ns": "default"}
    assert (await index.fetch(["a"], namespace="other"))[0].metadata == {"ns": "other"}
    assert [r.id for r in await index.query(vector=[0.0, 1.0], namespace="other")] == ["a"]
    assert await index.query(vector=[1.0, 0.0], namespace="nowhere") == []
    assert await index.list_namespaces() == ["", "other"]
    assert await index.delete(["a"], namespace="other") == 1
    assert (await index.fetch(["a"]))[0] is not None


async def test_update_overwrites_or_merge_patches_metadata():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    original = {"title": "x", "stats": {"views": 1, "likes": 2, "tags": ["a"]}, "drop": True}
    await index.upsert([VectorRecord("a", [1.0, 0.0], metadata=original, data="text")])

    patch = {"stats": {"views": 5, "likes": None, "extra": {"deep": 1}}, "drop": None, "new": [1, 2]}
    assert await index.update("a", metadata=patch, metadata_update_mode="PATCH")

    record = (await index.fetch(["a"], include_vectors=True))[0]
    assert record.metadata == {
        "title": "x",
        "stats": {"views": 5, "tags": ["a"], "extra": {"deep": 1}},
        "new": [1, 2],
    }
    assert record.vector == [1.0, 0.0]
    assert record.data == "text"
    assert original["stats"]["likes"] == 2  # the caller's dict was not touched

    assert await index.update("a", metadata={"only": 1})  # OVERWRITE is the default
    assert (await index.fetch(["a"]))[0].metadata == {"only": 1}
    assert await index.update("a", metadata={"only": {"a": 1}}, metadata_update_mode="PATCH")
    assert await index.update("a", metadata={"only": 3}, metadata_update_mode="PATCH")
    assert (await index.fetch(["a"]))[0].metadata == {"only": 3}
    assert not await index.update("missing", metadata={"x": 1})


async def test_update_replaces_vectors_and_re_derives_from_data():
    index = EmbeddedVectorIndex(embed=fake_embed)
    await index.upsert_data([("a", "red apples", {"k": 1})])

    assert await index.update("a", data="green pears")

    record = (await index.fetch(["a"], include_vectors=True))[0]
    assert record.data == "green pears"
    assert record.metadata == {"k": 1}
    assert record.vector == pytest.approx(fake_embed(["green pears"])[0].tolist())
    assert record.sparse_vector == bm25_document_vector("green pears")
    assert await index.update("a", vector=[1.0] + [0.0] * 383)
    assert (await index.fetch(["a"], include_vectors=True))[0].vector[:2] == [1.0, 0.0]


async def test_delete_by_ids_prefix_and_filter():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    records = [
        VectorRecord(f"{kind}-{i}", [1.0, float(i)], metadata={"i": i})
        for kind in ("doc", "img")
        for i in range(5)
    ]
    await index.upsert(records)

    assert await index.delete(["doc-0", "doc-0", "nope"]) == 1
    assert await index.delete(prefix="img-") == 5
    assert await index.delete(filter="i >= 3") == 2
    assert await index.delete([]) == 0

    assert sorted(r.id for r in (await index.range(limit=100)).vectors) == ["doc-1", "doc-2"]
    for arguments in ({}, {"ids": ["a"], "prefix": "b"}, {"prefix": "a", "filter": "i = 1"}):
        with pytest.raises(VectorIndexError, match="exactly one"):
            await index.delete(**arguments)


async def test_fetch_by_ids_and_by_prefix():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    await index.upsert(
        [
            VectorRecord(id, [1.0, 2.0], metadata={"id": id}, data=f"text {id}")
            for id in ("b1", "a2", "a1", "c")
        ]
    )

    fetched = await index.fetch(["a1", "zz", "c"])
    assert [r.id if r else None for r in fetched] == ["a1", None, "c"]
    assert fetched[0].metadata == {"id": "a1"}
    assert fetched[0].data == "text a1"  # metadata and data by default, no vectors
    assert fetched[0].vector is None
    assert [r.id for r in await index.fetch(prefix="a")] == ["a2", "a1"]  # as written, like range
    bare = (await index.fetch(["c"], include_metadata=False, include_data=False, include_vectors=True))[0]
    assert (bare.metadata, bare.data, bare.vector) == (None, None, [1.0, 2.0])
    with pytest.raises(VectorIndexError):
        await index.fetch()


async def test_range_pages_cover_every_id_exactly_once_in_insertion_order():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    ids = [f"k{n:03d}" for n in np.random.default_rng(4).permutation(237)] + ["j1", "l1"]
    await index.upsert([VectorRecord(id, [1.0, 0.0]) for id in ids])

    async def everything(prefix: str | None) -> list[str]:
        seen, cursor = [], ""
        while True:
            page = await index.range(cursor=cursor, limit=10, prefix=prefix)
            assert len(page.vectors) <= 10
            seen += [record.id for record in page.vectors]
            if not page.next_cursor:
                return seen
            cursor = page.next_cursor

    assert await everything(None) == ids
    assert await everything("k") == [id for id in ids if id.startswith("k")]
    # A rare prefix (its ids sorted by insertion) and a common one (the insertion order scanned).
    assert await everything("k01") == [id for id in ids if id.startswith("k01")]
    assert await everything("k0") == [id for id in ids if id.startswith("k0")]
    last = await index.range(cursor=str(len(ids) - 2), limit=10)  # the cursor is a position
    assert ([r.id for r in last.vectors], last.next_cursor) == (["j1", "l1"], "")
    for cursor in ("k236", "-1", "1.5"):
        with pytest.raises(VectorIndexError, match="cursor"):
            await index.range(cursor=cursor)


async def test_reset_and_delete_namespace():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    for namespace in ("", "a", "b"):
        await index.upsert(
            [VectorRecord("x", [1.0, 0.0]), VectorRecord("y", [0.0, 1.0])], namespace=namespace
        )

    await index.reset(namespace="a")
    info = await index.info()
    assert {name: ns.vector_count for name, ns in info.namespaces.items()} == {"": 2, "a": 0, "b": 2}
    assert await index.delete_namespace("b")
    assert not await index.delete_namespace("b")
    assert await index.list_namespaces() == ["", "a"]
    with pytest.raises(VectorIndexError, match="default namespace"):
        await index.delete_namespace("")
    await index.reset(all=True)
    assert (await index.info()).vector_count == 0


async def test_info_reports_counts_and_configuration():
    index = EmbeddedVectorIndex(dimension=4, similarity="EUCLIDEAN", index_type="HYBRID")
    sparse = SparseVector([1, 2], [0.5, 0.5])
    await index.upsert([VectorRecord(f"v{i}", [float(i), 1.0, 0.0, 0.0], sparse) for i in range(3)])
    await index.upsert([VectorRecord("w", [0.0, 1.0, 0.0, 0.0], sparse)], namespace="ns")

    info = await index.info()

    assert (info.vector_count, info.pending_vector_count, info.dimension) == (4, 0, 4)
    assert (info.similarity_function, info.index_type) == ("EUCLIDEAN", "HYBRID")
    assert {name: ns.vector_count for name, ns in info.namespaces.items()} == {"": 3, "ns": 1}
    assert info.index_size > 0


# ---------------------------------------------------------------- sparse, BM25 and hybrid


async def test_hybrid_fusion_by_rrf_and_dbsf_on_a_hand_computed_example():
    index = EmbeddedVectorIndex(dimension=2, similarity="DOT_PRODUCT", index_type="HYBRID")
    dots = {"a": 1.0, "b": 0.9, "c": 0.2, "d": -0.5, "e": 0.0}
    sparse = {"a": ([7], [0.1]), "b": ([1], [0.1]), "c": ([1], [5.0]), "d": ([1], [0.2]), "e": ([1], [0.15])}
    await index.upsert(
        [VectorRecord(id, [x, math.sqrt(1 - x * x)], SparseVector(*sparse[id])) for id, x in dots.items()]
    )
    query = {"vector": [1.0, 0.0], "sparse_vector": SparseVector([1], [1.0]), "top_k": 5}
    # Dense ranking a, b, c, e, d (scores (1 + dot) / 2); sparse ranking c, d, e, b (a shares no index).
    rrf = {
        "c": 1 / (2 + 60) + 1 / (0 + 60),
        "b": 1 / (1 + 60) + 1 / (3 + 60),
        "d": 1 / (4 + 60) + 1 / (1 + 60),
        "e": 1 / (3 + 60) + 1 / (2 + 60),
        "a": 1 / (0 + 60),
    }
    dense_scores = {id: (1 + x) / 2 for id, x in dots.items()}
    sparse_scores = {"c": 5.0, "d": 0.2, "e": 0.15, "b": 0.1}
    dbsf: dict[str, float] = {}
    for scores in (dense_scores, sparse_scores):
        mean, deviation = np.mean(list(scores.values())), np.std(list(scores.values()))
        for id, score in scores.items():
            dbsf[id] = dbsf.get(id, 0.0) + (score - (mean - 3 * deviation)) / (6 * deviation)

    by_rrf = await index.query(**query)
    by_dbsf = await index.query(**query, fusion_algorithm="DBSF")

    assert [r.id for r in by_rrf] == ["c", "b", "d", "e", "a"]
    assert {r.id: r.score for r in by_rrf} == {id: float32(score) for id, score in rrf.items()}
    assert [r.id for r in by_dbsf] == ["c", "b", "e", "a", "d"]
    assert {r.id: r.score for r in by_dbsf} == pytest.approx(dbsf, abs=1e-6)
    dense_only = await index.query(**query, query_mode="DENSE")
    assert [r.id for r in dense_only] == ["a", "b", "c", "e", "d"]
    sparse_only = await index.query(**query, query_mode="SPARSE")
    assert [(r.id, round(r.score, 6)) for r in sparse_only] == [
        ("c", 5.0),
        ("d", 0.2),
        ("e", 0.15),
        ("b", 0.1),
    ]


async def test_sparse_scores_are_inner_products_over_shared_indices():
    index = EmbeddedVectorIndex(index_type="SPARSE")
    await index.upsert(
        [
            VectorRecord("x", sparse_vector=SparseVector([1, 5, 9], [0.5, 1.0, 2.0])),
            VectorRecord("y", sparse_vector=SparseVector([5], [3.0])),
            VectorRecord("z", sparse_vector=SparseVector([2], [1.0])),
        ]
    )

    results = await index.query(sparse_vector=SparseVector([9, 5], [1.0, 0.5]))

    assert [(r.id, r.score) for r in results] == [("x", pytest.approx(2.5)), ("y", pytest.approx(1.5))]


async def test_sparse_search_equals_brute_force_through_rebuilds_updates_and_deletes():
    rng = np.random.default_rng(5)
    index = EmbeddedVectorIndex(index_type="SPARSE")
    truth: dict[str, dict[int, float]] = {}

    async def write(ids: list[str]) -> None:
        records = []
        for id in ids:
            terms = rng.choice(400, size=60, replace=False).tolist()
            truth[id] = dict(zip(terms, rng.random(60).astype(np.float32).tolist(), strict=True))
            records.append(VectorRecord(id, sparse_vector=SparseVector(terms, list(truth[id].values()))))
        await index.upsert(records)

    async def check() -> None:
        terms = rng.choice(400, size=5, replace=False).tolist()
        results = await index.query(sparse_vector=SparseVector(terms, [1.0] * 5), top_k=10)
        scores = {
            id: sum(doc.get(t, 0.0) for t in terms) for id, doc in truth.items() if set(doc) & set(terms)
        }
        best = sorted(scores, key=lambda id: (-scores[id], id))[:10]
        assert [r.id for r in results] == best
        assert [r.score for r in results] == pytest.approx([scores[id] for id in best], rel=1e-5)

    await write([f"d{i}" for i in range(600)])  # 36k postings: folded into the compact base
    await check()
    await write([f"d{i}" for i in range(0, 600, 4)])
    assert await index.delete([f"d{i}" for i in range(1, 600, 4)]) == 150
    for i in range(1, 600, 4):
        del truth[f"d{i}"]
    await check()


def test_bm25_document_vector_follows_the_formula():
    text = "The apple and the apple tree, apple!"  # stopwords dropped: apple x3, tree x1 -> length 4
    vector = bm25_document_vector(text)
    assert tokenize(text) == ["apple", "apple", "tree", "apple"]

    def weight(tf: int) -> float:
        return tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * 4 / 32))

    by_index = dict(zip(vector.indices, vector.values, strict=True))
    apple, tree = (zlib.crc32(word.encode()) & 0x7FFFFFFF for word in ("apple", "tree"))
    assert by_index == pytest.approx({apple: weight(3), tree: weight(1)})
    assert bm25_document_vector("Ünïcode wörds, 2024!").indices == sorted(
        zlib.crc32(w.encode()) & 0x7FFFFFFF for w in ("ünïcode", "wörds", "2024")
    )


async def test_bm25_query_weights_are_idf_from_live_document_frequencies():
    index = EmbeddedVectorIndex(index_type="SPARSE")
    await index.upsert_data([("a", "common rare", None), ("b", "common", None), ("c", "common words", None)])

    def idf(df: int, n: int) -> float:
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    weights = await index.bm25_query_vector("rare common")
    term = {word: zlib.crc32(word.encode()) & 0x7FFFFFFF for word in ("rare", "common")}
    assert dict(zip(weights.indices, weights.values, strict=True)) == pytest.approx(
        {term["rare"]: idf(1, 3), term["common"]: idf(3, 3)}
    )
    await index.delete(["b"])
    await index.update("c", data="rare words")
    weights = await index.bm25_query_vector("rare common")
    assert dict(zip(weights.indices, weights.values, strict=True)) == pytest.approx(
        {term["rare"]: idf(2, 2), term["common"]: idf(1, 2)}
    )


async def test_a_rare_exact_term_ranks_its_document_first():
    index = EmbeddedVectorIndex(embed=fake_embed)
    filler = ["a video about cooking pasta", "cooking videos for everyone", "pasta sauce cooking tips"]
    await index.upsert_data([(f"f{i}", filler[i % 3] + f" part {i}", None) for i in range(60)])
    await index.upsert_data([("target", "episode code XJ-9000 cooking special", None)])

    for mode in ("SPARSE", "HYBRID"):
        results = await index.query(data="cooking xj 9000", query_mode=mode, top_k=5, include_data=True)
        assert results[0].id == "target", mode
    assert (await index.query(data="XJ", query_mode="SPARSE"))[0].data is None  # data only when asked


async def test_text_queries_use_the_embedder_and_bm25():
    index = EmbeddedVectorIndex(embed=fake_embed)
    await index.upsert_data(
        [("a", "blue whale ocean", {"k": "sea"}), ("b", "desert camel sand", {"k": "land"})]
    )

    dense = await index.query(data="whale", query_mode="DENSE", include_metadata=True)
    assert dense[0].id == "a"
    assert dense[0].score == pytest.approx(
        (1 + float(fake_embed(["whale"])[0] @ fake_embed(["blue whale ocean"])[0])) / 2
    )
    assert [r.id for r in await index.query(data="camel", query_mode="SPARSE")] == ["b"]
    assert [r.id for r in await index.query(data="camel", filter="k = 'sea'")] == ["a"]


# ---------------------------------------------------------------- invalid input


async def test_invalid_input_raises_vector_index_error():
    dense = EmbeddedVectorIndex(dimension=3, index_type="DENSE")
    sparse = EmbeddedVectorIndex(index_type="SPARSE")
    hybrid = EmbeddedVectorIndex(dimension=3)
    await dense.upsert([VectorRecord("ok", [1.0, 0.0, 0.0])])
    bad_calls = [
        lambda: dense.upsert([VectorRecord("a", [1.0, 2.0])]),  # wrong dimension
        lambda: dense.upsert([VectorRecord("a", [1.0, float("nan"), 0.0])]),
        lambda: dense.upsert([VectorRecord("a", [1.0, 1e39, 0.0])]),  # beyond float32
        lambda: dense.upsert([VectorRecord("a", ["x", 1.0, 0.0])]),
        lambda: dense.upsert([VectorRecord("a", [0.0, 0.0, 0.0])]),  # no direction under COSINE
        lambda: dense.upsert([VectorRecord("", [1.0, 0.0, 0.0])]),
        lambda: dense.upsert([VectorRecord(7, [1.0, 0.0, 0.0])]),
        lambda: dense.upsert([VectorRecord("a")]),  # nothing to derive a vector from
        lambda: dense.upsert([VectorRecord("a", [1.0, 0.0, 0.0], metadata=["not", "a", "dict"])]),
        lambda: dense.upsert([VectorRecord("a", [1.0, 0.0, 0.0], metadata={"x": object()})]),
        lambda: dense.upsert([VectorRecord("a", [1.0, 0.0, 0.0], metadata={"x": 2**70})]),
        lambda: dense.upsert(
            [VectorRecord("a", [1.0, 0.0, 0.0], SparseVector([1], [1.0]))]
        ),  # sparse on DENSE
        lambda: dense.upsert([{"id": "a"}]),
        lambda: dense.upsert_data([("a", "text", None)]),  # no embedder
        lambda: dense.query(data="text"),
        lambda: dense.query(vector=[1.0, 0.0, 0.0], top_k=0),
        lambda: dense.query(vector=[1.0, 0.0, 0.0], filter="a = "),
        lambda: dense.query(vector=[1.0, 0.0, 0.0], fusion_algorithm="MAX"),
        lambda: dense.query(vector=[1.0, 0.0, 0.0], query_mode="SPARSE"),
        lambda: dense.query(vector=[1.0, 0.0, 0.0], data="text"),
        lambda: dense.query(),
        lambda: dense.update("ok"),
        lambda: dense.update("ok", metadata={"a": 1}, metadata_update_mode="MERGE"),
        lambda: dense.range(limit=0),
        lambda: sparse.upsert([VectorRecord("a", [1.0, 0.0, 0.0])]),  # dense vector on a sparse-only index
        lambda: sparse.upsert([VectorRecord("a", sparse_vector=SparseVector([1, 2], [1.0]))]),
        lambda: sparse.upsert([VectorRecord("a", sparse_vector=SparseVector([2**40], [1.0]))]),
        lambda: sparse.upsert([VectorRecord("a", sparse_vector=SparseVector([1], [float("inf")]))]),
        lambda: sparse.upsert(
            [VectorRecord("a", sparse_vector=SparseVector(list(range(1001)), [1.0] * 1001))]
        ),
        lambda: sparse.query(vector=[1.0, 0.0, 0.0]),
        lambda: hybrid.upsert([VectorRecord("a", [1.0, 0.0, 0.0])]),  # hybrid needs both parts
        lambda: hybrid.query(data="text"),  # no embedder for the dense half
        lambda: hybrid.query(data="   "),
    ]
    for call in bad_calls:
        with pytest.raises(VectorIndexError):
            await call()


async def test_metadata_is_stored_as_json_carries_it():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    await index.upsert(
        [VectorRecord("a", [1.0, 0.0], metadata={"t": (1, 2), "n": {3: "x"}, "f": float("nan")})]
    )

    assert (await index.fetch(["a"]))[0].metadata == {"t": [1, 2], "n": {"3": "x"}, "f": None}


async def test_records_and_results_are_copies():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    metadata = {"tags": ["a"]}
    await index.upsert([VectorRecord("a", [1.0, 0.0], metadata=metadata)])
    metadata["tags"].append("changed")

    fetched = (await index.fetch(["a"]))[0]
    fetched.metadata["tags"].append("changed too")

    assert (await index.query(vector=[1.0, 0.0], include_metadata=True))[0].metadata == {"tags": ["a"]}


async def test_concurrent_reads_and_writes_keep_the_event_loop_free():
    _, records = random_records(2000, 16)
    index = EmbeddedVectorIndex(dimension=16, index_type="DENSE")
    await index.upsert(records[:1000])

    async def writer() -> None:
        for start in range(1000, 2000, 100):
            await index.upsert(records[start : start + 100])

    async def reader(seed: int) -> None:
        query = np.random.default_rng(seed).standard_normal(16).astype(np.float32).tolist()
        for _ in range(20):
            results = await index.query(vector=query, top_k=5, filter="group < 50")
            assert len(results) == 5

    await asyncio.gather(writer(), *(reader(seed) for seed in range(4)))
    assert (await index.info()).vector_count == 2000


def test_stored_numbers_are_reported_as_their_shortest_round_tripping_decimal():
    every_float16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    finite = every_float16[np.isfinite(every_float16)]
    bits = np.random.default_rng(3).integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    float32s = bits.view(np.float32)
    float32s = np.concatenate([float32s[np.isfinite(float32s)], np.float32([0.1, -0.0, 124, 1e-45, 3.4e38])])

    for values in (finite, float32s, float32s[:7], float32s[:300].reshape(30, 10)):
        reported = shortest(values)
        # numpy's own shortest formatting, one value at a time, is the reference.
        assert (
            reported.tolist()
            == np.array([float(str(v)) for v in values.reshape(-1)]).reshape(values.shape).tolist()
        )
        assert np.array_equal(reported.astype(values.dtype), values)
    assert shortest(np.float32([0.1, 0.2])).tolist() == [0.1, 0.2]


def test_query_vectors_remember_recent_texts_read_only_and_forget_the_oldest():
    asked: list[str] = []

    def embed(texts: list[str]) -> np.ndarray:
        asked.extend(texts)
        return fake_embed(texts)

    queries = QueryVectors(embed, size=2)
    first = queries("red apples")
    assert queries("red apples") is first
    queries("green pears")
    queries("red apples")  # now the most recent of the two
    queries("blue plums")  # forgets green pears, the least recently used

    assert asked == ["red apples", "green pears", "blue plums"]
    assert len(queries) == 2
    assert queries.remembered("green pears") is None
    assert np.array_equal(first, fake_embed(["red apples"])[0])
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0
    queries("green pears")
    assert asked[-1] == "green pears"
