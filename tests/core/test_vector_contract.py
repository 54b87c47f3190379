"""One contract for the vector index port, run against each implementation: the embedded engine in
memory, and UpstashVectorIndex -> the official upstash-vector SDK -> the local Upstash Vector server
(a child process per index configuration, started on first use). Then what UpstashVectorIndex adds:
the start-up compatibility check and how it fails when Upstash cannot answer."""

from __future__ import annotations

import asyncio
import math
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from core.settings import Settings
from core.upstash_vector import UpstashVectorIndex, UpstashVectorUnavailable
from core.vectors import (
    EmbeddedVectorIndex,
    FusionAlgorithm,
    IndexType,
    Similarity,
    SparseVector,
    VectorIndex,
    VectorIndexError,
    VectorRecord,
    bm25_query_vector,
)
from upstash_local.vector_server import LocalVectorServer

DIMENSION = 8
MODEL = "BAAI/bge-small-en-v1.5"
MODEL_DIMENSION = 384

MakeIndex = Callable[..., Awaitable[VectorIndex]]


def fake_embed(texts: list[str]) -> np.ndarray:
    """A stand-in for the sentence model where text semantics are not the point: words hashed into
    an 8-d bag, L2-normalised."""
    vectors = np.zeros((len(texts), DIMENSION), np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            vectors[row, zlib.crc32(word.encode()) % DIMENSION] += 1.0
        norm = np.linalg.norm(vectors[row])
        vectors[row] = vectors[row] / norm if norm else 1 / math.sqrt(DIMENSION)
    return vectors


def as_float32(values: list[float]) -> list[float]:
    """Numbers as Upstash returns them: each stored as float32 and written in its shortest form (the
    shortest decimal that reads back as the same float32), so [0.1, 0.2] comes back as [0.1, 0.2]."""
    return [float(str(value)) for value in np.asarray(values, np.float32)]


def words_once(text: str) -> SparseVector:
    """A text's words, each with weight 1: with IDF weighting, the BM25 query for the text."""
    indices = bm25_query_vector(text, {}, 0).indices
    return SparseVector(indices=indices, values=[1.0] * len(indices))


class Servers:
    """Local Upstash Vector servers, one per configuration, started on first use and kept for the
    session (each test empties the one it uses)."""

    def __init__(self) -> None:
        self._running: dict[tuple[Any, ...], LocalVectorServer] = {}

    def get(
        self, index_type: IndexType, similarity: Similarity, dimension: int, embedding_model: str = ""
    ) -> LocalVectorServer:
        key = (index_type, similarity, dimension, embedding_model)
        if key not in self._running:
            self._running[key] = LocalVectorServer.start(
                index_type=index_type,
                similarity=similarity,
                dimension=dimension,
                embedding_model=embedding_model,
            )
        return self._running[key]

    def stop(self) -> None:
        for server in self._running.values():
            server.stop()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    running = Servers()
    yield running
    running.stop()


async def emptied(index: UpstashVectorIndex) -> UpstashVectorIndex:
    await index.reset(all=True)
    for namespace in await index.list_namespaces():
        if namespace:
            await index.delete_namespace(namespace)
    return index


async def upstash_index(
    servers: Servers,
    index_type: IndexType = "DENSE",
    similarity: Similarity = "COSINE",
    dimension: int = DIMENSION,
    *,
    model: str = "",
    **options: Any,
) -> UpstashVectorIndex:
    """An emptied UpstashVectorIndex on a local server of this configuration (`model`: the hosted
    embedding model the server stands in for)."""
    server = await asyncio.to_thread(servers.get, index_type, similarity, dimension, model)
    # A generous deadline: the point here is the protocol, not a slow test machine.
    return await emptied(UpstashVectorIndex(server.url, server.token, timeout_seconds=10, **options))


@pytest.fixture(params=["embedded", "upstash"])
async def make_index(request: pytest.FixtureRequest, servers: Servers) -> AsyncIterator[MakeIndex]:
    """Makes an empty index of a given type with the implementation under test."""
    made: list[VectorIndex] = []

    async def make(
        index_type: IndexType = "DENSE",
        similarity: Similarity = "COSINE",
        *,
        embed: Callable[[list[str]], np.ndarray] | None = fake_embed,
    ) -> VectorIndex:
        if request.param == "embedded":
            index: VectorIndex = EmbeddedVectorIndex(DIMENSION, similarity, index_type, embed=embed)
        else:
            index = await upstash_index(servers, index_type, similarity, embedding="local", embed=embed)
        made.append(index)
        return index

    yield make
    for index in made:
        await index.close()


def vectors(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)


def brute_force(rows: np.ndarray, query: np.ndarray, similarity: str) -> np.ndarray:
    x, q = rows.astype(np.float64), query.astype(np.float64)
    if similarity == "COSINE":
        return (1 + x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))) / 2
    if similarity == "DOT_PRODUCT":
        return (1 + x @ q) / 2
    return 1 / (1 + ((x - q) ** 2).sum(axis=1))


# ---------------------------------------------------------------- writes and reads by id


async def test_fetch_returns_what_was_upserted_in_the_order_asked(make_index: MakeIndex):
    index = await make_index()
    rows = vectors(2)
    await index.upsert(
        [
            VectorRecord("a", rows[0].tolist(), metadata={"n": 1, "tags": ["x"]}, data="alpha"),
            VectorRecord("b", rows[1].tolist()),
        ]
    )

    found = await index.fetch(["b", "missing", "a"], include_vectors=True)

    assert found == [
        VectorRecord("b", as_float32(rows[1].tolist())),
        None,
        VectorRecord("a", as_float32(rows[0].tolist()), metadata={"n": 1, "tags": ["x"]}, data="alpha"),
    ]
    bare = await index.fetch(["a"], include_metadata=False, include_data=False)
    assert bare == [VectorRecord("a")]


async def test_fetch_by_prefix_and_a_single_id(make_index: MakeIndex):
    index = await make_index()
    rows = vectors(3)
    await index.upsert(
        [VectorRecord(id, row.tolist()) for id, row in zip(["v:1", "v:2", "w:1"], rows, strict=True)]
    )

    by_prefix = await index.fetch(prefix="v:", include_metadata=False, include_data=False)

    assert sorted(record.id for record in by_prefix if record) == ["v:1", "v:2"]
    assert [record.id for record in await index.fetch("w:1") if record] == ["w:1"]


async def test_an_upsert_replaces_the_whole_record(make_index: MakeIndex):
    index = await make_index()
    rows = vectors(2)
    await index.upsert([VectorRecord("a", rows[0].tolist(), metadata={"old": True}, data="old")])
    await index.upsert([VectorRecord("a", rows[1].tolist())])

    assert await index.fetch(["a"], include_vectors=True) == [VectorRecord("a", as_float32(rows[1].tolist()))]
    assert (await index.info()).vector_count == 1


async def test_range_pages_through_records_in_the_order_they_were_written(make_index: MakeIndex):
    index = await make_index()
    ids = ["e", "a", "d", "b", "c", "x:1", "x:2"]
    rows = vectors(len(ids))
    await index.upsert(
        [VectorRecord(id, row.tolist(), metadata={"id": id}) for id, row in zip(ids, rows, strict=True)]
    )

    seen, cursor, pages = [], "", 0
    while True:
        page = await index.range(cursor=cursor, limit=3, include_metadata=True)
        seen += [record.id for record in page.vectors]
        assert all(record.metadata == {"id": record.id} and record.vector is None for record in page.vectors)
        pages += 1
        if not page.next_cursor:
            break
        cursor = page.next_cursor

    assert seen == ids
    assert pages == 3
    prefixed = await index.range(limit=10, prefix="x:", include_vectors=True)
    assert [record.id for record in prefixed.vectors] == ["x:1", "x:2"]
    assert prefixed.next_cursor == ""
    assert prefixed.vectors[0].vector == as_float32(rows[5].tolist())


async def test_delete_by_ids_by_prefix_and_by_filter(make_index: MakeIndex):
    index = await make_index()
    ids = [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(4)]
    rows = vectors(len(ids))
    await index.upsert(
        [
            VectorRecord(id, row.tolist(), metadata={"i": n})
            for n, (id, row) in enumerate(zip(ids, rows, strict=True))
        ]
    )

    assert await index.delete(["a0", "a1", "nope"]) == 2
    assert await index.delete(prefix="b") == 4
    assert await index.delete(filter="i >= 3") == 1
    assert await index.delete(["a0"]) == 0
    assert [record.id for record in (await index.range(limit=10)).vectors] == ["a2"]


async def test_update_overwrites_or_merge_patches_metadata_and_changes_vectors(make_index: MakeIndex):
    index = await make_index()
    rows = vectors(2)
    original = {"title": "x", "stats": {"views": 1, "likes": 2}, "drop": True}
    await index.upsert([VectorRecord("a", rows[0].tolist(), metadata=original, data="text")])

    patch = {"stats": {"views": 5, "likes": None}, "drop": None, "new": [1, 2]}
    assert await index.update("a", metadata=patch, metadata_update_mode="PATCH")
    record = (await index.fetch(["a"], include_vectors=True))[0]
    assert record == VectorRecord(
        "a",
        as_float32(rows[0].tolist()),
        metadata={"title": "x", "stats": {"views": 5}, "new": [1, 2]},
        data="text",
    )

    assert await index.update("a", metadata={"only": 1})  # OVERWRITE by default
    assert await index.update("a", vector=rows[1].tolist())
    record = (await index.fetch(["a"], include_vectors=True))[0]
    assert record == VectorRecord("a", as_float32(rows[1].tolist()), metadata={"only": 1}, data="text")
    assert not await index.update("missing", metadata={"x": 1})


# ---------------------------------------------------------------- namespaces, info, reset


async def test_namespaces_are_isolated_and_counted(make_index: MakeIndex):
    index = await make_index(similarity="DOT_PRODUCT")
    rows = vectors(3)
    await index.upsert([VectorRecord("a", rows[0].tolist(), metadata={"ns": ""})])
    await index.upsert([VectorRecord("a", rows[1].tolist(), metadata={"ns": "one"})], namespace="one")
    await index.upsert([VectorRecord("b", rows[2].tolist())], namespace="one")

    assert (await index.fetch(["a"], namespace="one"))[0].metadata == {"ns": "one"}
    hits = await index.query(vector=rows[0].tolist(), top_k=5, include_metadata=True)
    assert [(hit.id, hit.metadata) for hit in hits] == [("a", {"ns": ""})]
    assert await index.query(vector=rows[0].tolist(), namespace="nowhere") == []
    assert await index.list_namespaces() == ["", "one"]

    info = await index.info()
    assert (info.vector_count, info.pending_vector_count) == (3, 0)
    assert (info.dimension, info.similarity_function, info.index_type) == (DIMENSION, "DOT_PRODUCT", "DENSE")
    assert {name: space.vector_count for name, space in info.namespaces.items()} == {"": 1, "one": 2}
    assert info.index_size > 0


async def test_reset_empties_one_namespace_or_all(make_index: MakeIndex):
    index = await make_index()
    rows = vectors(3)
    for namespace, row in zip(["", "one", "two"], rows, strict=True):
        await index.upsert([VectorRecord("a", row.tolist())], namespace=namespace)

    await index.reset(namespace="one")
    assert {name: space.vector_count for name, space in (await index.info()).namespaces.items()} == {
        "": 1,
        "one": 0,
        "two": 1,
    }
    await index.reset(all=True)
    assert (await index.info()).vector_count == 0


async def test_delete_namespace(make_index: MakeIndex):
    index = await make_index()
    await index.upsert([VectorRecord("a", vectors(1)[0].tolist())], namespace="gone")

    assert await index.delete_namespace("gone")
    assert not await index.delete_namespace("gone")
    assert await index.list_namespaces() == [""]
    with pytest.raises(VectorIndexError):
        await index.delete_namespace("")


# ---------------------------------------------------------------- dense, sparse and hybrid queries


@pytest.mark.parametrize("similarity", ["COSINE", "DOT_PRODUCT", "EUCLIDEAN"])
async def test_dense_queries_return_upstash_scores_best_first(make_index: MakeIndex, similarity: Similarity):
    index = await make_index(similarity=similarity)
    rows = vectors(40)
    await index.upsert([VectorRecord(f"id{i:02d}", row.tolist()) for i, row in enumerate(rows)])
    query = vectors(1, seed=9)[0]

    results = await index.query(vector=query.tolist(), top_k=7)

    expected = brute_force(rows, query, similarity)
    best = np.argsort(-expected)[:7]
    assert [hit.id for hit in results] == [f"id{i:02d}" for i in best]
    # At Upstash's precision: the exact score rounded to float32, written shortest.
    assert [hit.score for hit in results] == as_float32(expected[best].tolist())


async def test_a_filtered_query_with_every_include_flag(make_index: MakeIndex):
    index = await make_index()
    rows = vectors(30)
    await index.upsert(
        [
            VectorRecord(
                f"id{i:02d}", row.tolist(), metadata={"group": "ab"[i % 2], "n": i}, data=f"text {i}"
            )
            for i, row in enumerate(rows)
        ]
    )
    query = vectors(1, seed=5)[0]
    filter = "group = 'a' AND n > 10"

    results = await index.query(
        vector=query.tolist(),
        top_k=50,
        filter=filter,
        include_metadata=True,
        include_vectors=True,
        include_data=True,
    )

    matching = [i for i in range(30) if i % 2 == 0 and i > 10]
    expected = brute_force(rows[matching], query, "COSINE")
    assert [hit.id for hit in results] == [f"id{matching[i]:02d}" for i in np.argsort(-expected)]
    first = results[0]
    n = int(first.id[2:])
    assert (first.metadata, first.data, first.vector) == (
        {"group": "a", "n": n},
        f"text {n}",
        as_float32(rows[n].tolist()),
    )
    plain = await index.query(vector=query.tolist(), top_k=3, filter=filter)
    assert all(hit.metadata is None and hit.vector is None and hit.data is None for hit in plain)


async def test_sparse_queries_score_inner_products_optionally_idf_weighted(make_index: MakeIndex):
    index = await make_index("SPARSE")
    await index.upsert(
        [
            VectorRecord("a", sparse_vector=SparseVector([1, 2], [1.0, 2.0]), metadata={"k": 1}),
            VectorRecord("b", sparse_vector=SparseVector([2, 3], [1.0, 1.0])),
            VectorRecord("c", sparse_vector=SparseVector([4], [5.0])),
        ]
    )

    raw = await index.query(sparse_vector=SparseVector([1, 2], [1.0, 1.0]), top_k=5)
    assert [(hit.id, hit.score) for hit in raw] == [("a", pytest.approx(3.0)), ("b", pytest.approx(1.0))]
    weighted = await index.query(sparse_vector=SparseVector([1, 2], [1.0, 1.0]), weighting_strategy="IDF")
    idf = [math.log(1 + (3 - df + 0.5) / (df + 0.5)) for df in (1, 2)]  # dimension 1 in one record, 2 in two
    assert [hit.score for hit in weighted] == pytest.approx([idf[0] + 2 * idf[1], idf[1]])
    filtered = await index.query(sparse_vector=SparseVector([2], [1.0]), filter="k = 1", include_vectors=True)
    assert [(hit.id, hit.sparse_vector) for hit in filtered] == [("a", SparseVector([1, 2], [1.0, 2.0]))]


DOCUMENTS = [
    ("v1", "espresso coffee brewing at home", {"lang": "en", "year": 2020}),
    ("v2", "green tea leaves and brewing", {"lang": "en", "year": 2021}),
    ("v3", "coffee beans roast profiles", {"lang": "fr", "year": 2022}),
    ("v4", "mountain bike trail repair", {"lang": "en", "year": 2023}),
]


async def test_hybrid_text_queries_by_mode_equal_the_queries_by_vectors(make_index: MakeIndex):
    index = await make_index("HYBRID")
    await index.upsert_data(DOCUMENTS)
    text = "coffee brewing"
    dense = fake_embed([text])[0].tolist()

    by_mode = {
        mode: await index.query(data=text, top_k=4, query_mode=mode) for mode in ("DENSE", "SPARSE", "HYBRID")
    }

    assert by_mode["DENSE"] == await index.query(vector=dense, top_k=4)
    sparse = await index.query(sparse_vector=words_once(text), top_k=4, weighting_strategy="IDF")
    assert by_mode["SPARSE"] == sparse
    assert sorted(hit.id for hit in sparse) == ["v1", "v2", "v3"]  # only documents with a query word
    assert sparse[0].id == "v1"  # has both words
    assert by_mode["HYBRID"] == await index.query(
        vector=dense, sparse_vector=words_once(text), top_k=4, weighting_strategy="IDF"
    )
    filtered = await index.query(data=text, top_k=4, filter="lang = 'en' AND year >= 2021", include_data=True)
    assert {(hit.id, hit.data) for hit in filtered} == {("v2", DOCUMENTS[1][1]), ("v4", DOCUMENTS[3][1])}


async def test_a_repeated_text_query_asks_the_model_once(make_index: MakeIndex):
    embedded: list[str] = []

    def counting_embed(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return fake_embed(texts)

    index = await make_index("HYBRID", embed=counting_embed)
    await index.upsert_data(DOCUMENTS)
    embedded.clear()

    first = await index.query(data="coffee brewing", top_k=4, query_mode="DENSE")
    await index.upsert_data([("v9", "coffee brewing at dawn", {"lang": "en"})])
    again = await index.query(data="coffee brewing", top_k=5, query_mode="DENSE")
    other = await index.query(data="green tea", top_k=4, query_mode="DENSE")

    # The document was embedded; each distinct query text once, though the catalogue changed between.
    assert embedded == ["coffee brewing", "coffee brewing at dawn", "green tea"]
    dense = fake_embed(["coffee brewing"])[0].tolist()
    assert again == await index.query(vector=dense, top_k=5)  # the new document is found
    assert "v9" in {hit.id for hit in again} - {hit.id for hit in first}
    assert other == await index.query(vector=fake_embed(["green tea"])[0].tolist(), top_k=4)


async def test_hybrid_fusion_by_rrf_and_dbsf(make_index: MakeIndex):
    index = await make_index("HYBRID")
    rows = vectors(3)
    await index.upsert(
        [
            VectorRecord("a", rows[0].tolist(), SparseVector([1], [3.0])),
            VectorRecord("b", rows[1].tolist(), SparseVector([1], [2.0])),
            VectorRecord("c", rows[2].tolist(), SparseVector([2], [1.0])),
        ]
    )
    query = rows[2].tolist()  # c is the nearest dense hit, and no sparse hit

    rrf = await index.query(vector=query, sparse_vector=SparseVector([1], [1.0]), top_k=3)
    dense_rank = {
        id: rank for rank, id in enumerate(hit.id for hit in await index.query(vector=query, top_k=3))
    }
    expected = {id: 1 / (60 + rank) for id, rank in dense_rank.items()}
    expected["a"] += 1 / 60
    expected["b"] += 1 / 61
    assert {hit.id: hit.score for hit in rrf} == pytest.approx(expected)
    assert [hit.score for hit in rrf] == sorted((hit.score for hit in rrf), reverse=True)

    dbsf = await index.query(
        vector=query, sparse_vector=SparseVector([1], [1.0]), top_k=3, fusion_algorithm="DBSF"
    )
    assert sorted(hit.id for hit in dbsf) == ["a", "b", "c"]
    assert {hit.id: hit.score for hit in dbsf} != {hit.id: hit.score for hit in rrf}
    dense_only = await index.query(vector=query, sparse_vector=SparseVector([1], [1.0]), query_mode="DENSE")
    assert dense_only == await index.query(vector=query)


async def test_update_with_new_text_derives_its_vectors_again(make_index: MakeIndex):
    index = await make_index("HYBRID")
    await index.upsert_data(DOCUMENTS[:2])

    assert await index.update("v2", data="coffee everywhere")

    record = (await index.fetch(["v2"], include_vectors=True))[0]
    assert record.data == "coffee everywhere"
    assert record.metadata == DOCUMENTS[1][2]
    assert record.vector == as_float32(fake_embed(["coffee everywhere"])[0].tolist())
    hits = await index.query(data="coffee", query_mode="SPARSE")
    assert sorted(hit.id for hit in hits) == ["v1", "v2"]


# ---------------------------------------------------------------- what Upstash returns, number for number

DECIMALS = [0.1, 0.2, 0.3, -0.7, 124.0, 0.8, 1e-05, 3.5]  # none of them exact in float32


async def test_vectors_come_back_as_written_not_as_widened_float32(make_index: MakeIndex):
    index = await make_index("HYBRID")
    sparse = SparseVector([5, 9], [0.1, 0.7])
    await index.upsert([VectorRecord("a", DECIMALS, sparse, metadata={"n": 0.1})])

    fetched = (await index.fetch(["a"], include_vectors=True))[0]
    hit = (await index.query(vector=DECIMALS, sparse_vector=sparse, include_vectors=True))[0]
    ranged = (await index.range(limit=1, include_vectors=True)).vectors[0]
    prefixed = (await index.fetch(prefix="a", include_vectors=True))[0]

    for record in (fetched, hit, ranged, prefixed):
        assert record is not None
        assert (record.vector, record.sparse_vector) == (DECIMALS, SparseVector([5, 9], [0.1, 0.7]))
    assert fetched.metadata == {"n": 0.1}


async def test_a_repeated_sparse_index_holds_the_sum_of_its_values(make_index: MakeIndex):
    index = await make_index("SPARSE")
    await index.upsert(
        [
            VectorRecord("a", sparse_vector=SparseVector([3, 1, 3], [0.5, 1.0, 0.25])),
            VectorRecord("b", sparse_vector=SparseVector([1], [1.0])),
        ]
    )

    assert (await index.fetch(["a"], include_vectors=True))[0] == VectorRecord(
        "a", sparse_vector=SparseVector([1, 3], [1.0, 0.75])
    )
    hits = await index.query(sparse_vector=SparseVector([3], [1.0]))
    assert [(hit.id, hit.score) for hit in hits] == [("a", 0.75)]
    hits = await index.query(sparse_vector=SparseVector([1, 1], [1.0, 2.0]))  # in a query too
    assert [(hit.id, hit.score) for hit in hits] == [("a", 3.0), ("b", 3.0)]


async def test_range_walks_in_the_order_written_as_upstashs_sdk_tests_expect(make_index: MakeIndex):
    index = await make_index()
    rows = vectors(20)
    await index.upsert([VectorRecord(f"id-{i}", row.tolist()) for i, row in enumerate(rows)])

    page = await index.range(limit=4)
    seen = [record.id for record in page.vectors]
    sizes = [len(page.vectors)]
    while page.next_cursor:
        page = await index.range(cursor=page.next_cursor, limit=8)
        seen += [record.id for record in page.vectors]
        sizes.append(len(page.vectors))

    assert seen == [f"id-{i}" for i in range(20)]  # id-2 before id-10
    assert sizes == [4, 8, 8]
    assert [record.id for record in (await index.range(cursor="0", limit=2)).vectors] == ["id-0", "id-1"]


async def test_a_range_walk_is_stable_while_records_are_added_updated_and_deleted(make_index: MakeIndex):
    index = await make_index()
    rows = vectors(60, seed=4)
    await index.upsert([VectorRecord(f"r{i}", rows[i].tolist()) for i in range(40)])
    deleted_unseen: set[str] = set()
    deleted_seen: set[str] = set()
    seen: list[str] = []
    cursor, step = "", 0
    while True:
        page = await index.range(cursor=cursor, limit=7)
        seen += [record.id for record in page.vectors]
        # Between pages: a record added, one rewritten, one not yet seen deleted, one seen deleted.
        step += 1
        await index.upsert([VectorRecord(f"new{step}", rows[40 + step % 20].tolist())])
        await index.upsert([VectorRecord(f"r{step}", rows[step].tolist(), metadata={"v": step})])
        gone = deleted_unseen | deleted_seen
        unseen = [f"r{i}" for i in range(39, 0, -1) if f"r{i}" not in seen and f"r{i}" not in gone]
        if unseen:
            assert await index.delete([unseen[0]]) == 1
            deleted_unseen.add(unseen[0])
        victim = next(id for id in seen if id not in gone)
        assert await index.delete([victim]) == 1
        deleted_seen.add(victim)
        if not page.next_cursor:
            break
        cursor = page.next_cursor

    assert len(seen) == len(set(seen)), "a record came back twice"
    there_throughout = {f"r{i}" for i in range(40)} - deleted_unseen - deleted_seen
    assert there_throughout <= set(seen), f"skipped: {sorted(there_throughout - set(seen))}"
    assert not deleted_unseen & set(seen), "a record deleted before its page came back"
    assert any(id.startswith("new") for id in seen)  # records added during the walk come after it


async def test_ranges_stay_whole_under_concurrent_writers(make_index: MakeIndex):
    index = await make_index()
    rows = vectors(400, seed=6)
    await index.upsert([VectorRecord(f"keep{i}", rows[i].tolist()) for i in range(150)])
    await index.upsert([VectorRecord(f"churn{i}", rows[150 + i].tolist()) for i in range(100)])
    writing = True

    async def writer() -> None:
        step = 0
        while writing:
            step += 1
            await index.upsert([VectorRecord(f"late{step}", rows[250 + step % 150].tolist())])
            await index.delete([f"churn{step % 100}", f"late{step - 3}"])
            await index.upsert(
                [VectorRecord(f"keep{step % 150}", rows[step % 150].tolist(), metadata={"s": step})]
            )

    async def walk() -> list[str]:
        seen, cursor = [], ""
        while True:
            page = await index.range(cursor=cursor, limit=9)
            seen += [record.id for record in page.vectors]
            if not page.next_cursor:
                return seen
            cursor = page.next_cursor

    task = asyncio.create_task(writer())
    walks = await asyncio.gather(walk(), walk(), walk())
    writing = False
    await task
    for seen in walks:
        assert len(seen) == len(set(seen))
        assert {f"keep{i}" for i in range(150)} <= set(seen)


async def test_an_identical_vector_and_a_scaled_copy_both_score_1_and_tie_in_insertion_order(
    make_index: MakeIndex,
):
    index = await make_index()
    query = DECIMALS
    await index.upsert(
        [
            VectorRecord("b-scaled", [3 * x for x in query]),
            VectorRecord("a-copy", query),
            VectorRecord("other", vectors(1, seed=8)[0].tolist()),
        ]
    )
    await index.upsert(
        [VectorRecord("a-copy", query), VectorRecord("b-scaled", [3 * x for x in query])], namespace="o"
    )

    hits = await index.query(vector=query, top_k=2)
    assert [(hit.id, hit.score) for hit in hits] == [("b-scaled", 1.0), ("a-copy", 1.0)]
    assert [hit.id for hit in await index.query(vector=query, top_k=1)] == ["b-scaled"]
    assert [hit.id for hit in await index.query(vector=query, top_k=2, namespace="o")] == [
        "a-copy",
        "b-scaled",
    ]
    # Rewriting a record keeps its place; deleting and writing it again puts it last.
    await index.upsert([VectorRecord("b-scaled", [2 * x for x in query])])
    assert [hit.id for hit in await index.query(vector=query, top_k=2)] == ["b-scaled", "a-copy"]
    await index.delete(["b-scaled"])
    await index.upsert([VectorRecord("b-scaled", query)])
    assert [hit.id for hit in await index.query(vector=query, top_k=2)] == ["a-copy", "b-scaled"]


async def test_scores_are_float32_as_upstash_reports_them(make_index: MakeIndex):
    index = await make_index("DENSE", "COSINE")
    stored = np.array([[0.1, 0.2] + [0.0] * 6, [0.3, 0.4] + [0.0] * 6], np.float32)
    await index.upsert([VectorRecord("id1", stored[0].tolist()), VectorRecord("id2", stored[1].tolist())])

    hits = await index.query(vector=[0.1, 0.2] + [0.0] * 6, top_k=2)

    exact = brute_force(stored, stored[0], "COSINE")  # float64: 0.9999999999999999 for id1 itself
    assert [(hit.id, hit.score) for hit in hits] == [("id1", 1.0), ("id2", as_float32([exact[1]])[0])]
    assert hits[1].score == pytest.approx(exact[1], rel=1e-7)


async def test_equal_sparse_and_fused_scores_rank_in_insertion_order(make_index: MakeIndex):
    index = await make_index("HYBRID")
    rows = vectors(1, seed=2)
    await index.upsert(
        [VectorRecord(id, rows[0].tolist(), SparseVector([4], [2.0])) for id in ("z", "m", "a")]
    )

    sparse = await index.query(sparse_vector=SparseVector([4], [1.0]), top_k=3)
    assert [(hit.id, hit.score) for hit in sparse] == [("z", 2.0), ("m", 2.0), ("a", 2.0)]
    for fusion in ("RRF", "DBSF"):
        hybrid = await index.query(
            vector=rows[0].tolist(), sparse_vector=SparseVector([4], [1.0]), top_k=3, fusion_algorithm=fusion
        )
        assert [hit.id for hit in hybrid] == ["z", "m", "a"]


@pytest.mark.parametrize("fusion", ["RRF", "DBSF"])
async def test_hybrid_fusion_looks_deeper_than_top_k(make_index: MakeIndex, fusion: FusionAlgorithm):
    """`both` is second in the dense and in the sparse ranking; `dense` and `sparse` are first in one
    and absent from the other. Fused over the whole lists, `both` is the best: top_k=1 must say so."""
    index = await make_index("HYBRID", "DOT_PRODUCT")
    near = [1.0] + [0.0] * 7
    records = [
        VectorRecord("dense", near, SparseVector([9], [1.0])),
        VectorRecord("both", [0.9] + [0.0] * 7, SparseVector([1], [0.9])),
        VectorRecord("sparse", [-1.0] + [0.0] * 7, SparseVector([1], [1.0])),
    ]
    records += [
        VectorRecord(f"filler{i}", [0.5 - i / 10] + [0.0] * 7, SparseVector([1], [0.5 - i / 10]))
        for i in range(4)
    ]
    await index.upsert(records)
    query = {"vector": near, "sparse_vector": SparseVector([1], [1.0]), "fusion_algorithm": fusion}

    everything = await index.query(**query, top_k=len(records))
    assert everything[0].id == "both"
    assert [hit.id for hit in await index.query(**query, top_k=1)] == ["both"]
    assert await index.query(**query, top_k=2) == everything[:2]


# ---------------------------------------------------------------- invalid requests

INVALID: dict[str, Callable[[VectorIndex], Awaitable[Any]]] = {
    "a vector of another dimension": lambda index: index.upsert([VectorRecord("a", [1.0, 2.0])]),
    "a query of another dimension": lambda index: index.query(vector=[1.0] * (DIMENSION + 1)),
    "a sparse vector in a dense index": lambda index: index.upsert(
        [VectorRecord("a", [1.0] * DIMENSION, SparseVector([1], [1.0]))]
    ),
    "a record without vectors or text": lambda index: index.upsert([VectorRecord("a")]),
    "a query with nothing to query by": lambda index: index.query(top_k=3),
    "a filter that does not parse": lambda index: index.query(vector=[1.0] * DIMENSION, filter="a = = 1"),
    "top_k 0": lambda index: index.query(vector=[1.0] * DIMENSION, top_k=0),
    "a sparse query mode on a dense index": lambda index: index.query(data="coffee", query_mode="SPARSE"),
    "an unknown fusion": lambda index: index.query(vector=[1.0] * DIMENSION, fusion_algorithm="MAX"),  # type: ignore[arg-type]
    "delete by two selectors": lambda index: index.delete(["a"], prefix="a"),
    "delete by nothing": lambda index: index.delete(),
    "fetch by nothing": lambda index: index.fetch(),
    "a range of 0": lambda index: index.range(limit=0),
    "an update with nothing": lambda index: index.update("a"),
    "an unknown update mode": lambda index: index.update("a", metadata={}, metadata_update_mode="MERGE"),  # type: ignore[arg-type]
    "an empty id": lambda index: index.upsert([VectorRecord("", [1.0] * DIMENSION)]),
    "text items that are not tuples": lambda index: index.upsert_data(["text"]),  # type: ignore[list-item]
}


@pytest.mark.parametrize("case", INVALID)
async def test_invalid_requests_raise_vector_index_error(make_index: MakeIndex, case: str):
    index = await make_index()

    with pytest.raises(VectorIndexError):
        await INVALID[case](index)


async def test_text_needs_an_embedding_model(make_index: MakeIndex):
    index = await make_index(embed=None)

    with pytest.raises(VectorIndexError, match="embedding model"):
        await index.upsert_data([("a", "some text", None)])
    with pytest.raises(VectorIndexError, match="embedding model"):
        await index.query(data="some text")


# ---------------------------------------------------------------- the real model (few: it takes a second to load)


@pytest.fixture(params=["embedded", "upstash"])
async def text_index(request: pytest.FixtureRequest, servers: Servers) -> AsyncIterator[VectorIndex]:
    """A hybrid index that embeds text itself: the engine with the local model, or Upstash (here, the
    local server standing in for the hosted model) reached in `upstash` embedding mode."""
    if request.param == "embedded":
        from core.embeddings import installed_embedder

        index: VectorIndex = EmbeddedVectorIndex(
            MODEL_DIMENSION, "COSINE", "HYBRID", embed=installed_embedder().embed
        )
    else:
        index = await upstash_index(
            servers, "HYBRID", "COSINE", MODEL_DIMENSION, model=MODEL, embedding="upstash"
        )
    yield index
    await index.close()


async def test_text_is_embedded_by_the_index_and_searched_by_meaning_and_by_words(text_index: VectorIndex):
    await text_index.upsert_data(
        [
            ("cook", "How to pull a perfect espresso shot", {"kind": "food"}),
            ("bike", "Fixing a flat tyre on a mountain bike", {"kind": "sport"}),
            ("tea", "Brewing green tea at the right temperature", {"kind": "food"}),
        ]
    )

    by_meaning = await text_index.query(data="making coffee", top_k=3, query_mode="DENSE")
    assert by_meaning[0].id == "cook"
    by_words = await text_index.query(data="green tea", top_k=3, query_mode="SPARSE")
    assert [hit.id for hit in by_words] == ["tea"]
    hybrid = await text_index.query(
        data="bicycle repair", top_k=1, filter="kind = 'sport'", include_data=True
    )
    assert [(hit.id, hit.data) for hit in hybrid] == [("bike", "Fixing a flat tyre on a mountain bike")]
    # Records given as vectors and as text alone, in one batch (Upstash: /upsert, then /upsert-data).
    raw = [1.0] + [0.0] * (MODEL_DIMENSION - 1)
    await text_index.upsert(
        [VectorRecord("raw", raw, SparseVector([1], [1.0])), VectorRecord("text", data="given as text alone")]
    )
    raw_record, text_record = await text_index.fetch(["raw", "text"], include_vectors=True)
    assert raw_record == VectorRecord("raw", raw, SparseVector([1], [1.0]))
    assert text_record is not None
    assert text_record.data == "given as text alone"
    assert text_record.vector is not None
    record = (await text_index.fetch(["tea"], include_vectors=True))[0]
    assert record is not None
    assert record.vector is not None
    assert len(record.vector) == MODEL_DIMENSION
    assert record.sparse_vector is not None
    assert record.sparse_vector.indices


# ---------------------------------------------------------------- UpstashVectorIndex beyond the port


async def test_check_compatible_accepts_an_index_that_fits(servers: Servers):
    local = await upstash_index(servers, "HYBRID", embedding="local", embed=fake_embed)
    server = await asyncio.to_thread(servers.get, "HYBRID", "COSINE", MODEL_DIMENSION, MODEL)
    settings = Settings(
        upstash_vector_rest_url=server.url,
        upstash_vector_rest_token=server.token,
        vector_embedding="upstash",
        upstash_timeout_seconds=10,
    )
    hosted = UpstashVectorIndex.from_settings(settings)

    await local.check_compatible(DIMENSION, "COSINE", "local", None, expected_index_type="HYBRID")
    await hosted.check_compatible(MODEL_DIMENSION, "COSINE", "upstash", MODEL, expected_index_type="HYBRID")
    await hosted.check_compatible(MODEL_DIMENSION, "COSINE", "upstash", "BGE_SMALL_EN_V1_5")
    assert hosted.embedding == "upstash"
    for index in (local, hosted):
        await index.close()


@pytest.mark.parametrize(
    ("server", "expected", "problem"),
    [
        ("plain", (384, "COSINE", "local", None), "its dimension is 8, expected 384"),
        (
            "plain",
            (DIMENSION, "EUCLIDEAN", "local", None),
            "its similarity function is COSINE, expected EUCLIDEAN",
        ),
        ("plain", (DIMENSION, "COSINE", "upstash", MODEL), "it has no embedding model"),
        ("model", (MODEL_DIMENSION, "COSINE", "local", None), f"it embeds with the hosted model {MODEL}"),
        (
            "model",
            (MODEL_DIMENSION, "COSINE", "upstash", "BAAI/bge-base-en-v1.5"),
            "expected BAAI/bge-base-en-v1.5",
        ),
    ],
)
async def test_check_compatible_names_what_does_not_fit(
    servers: Servers, server: str, expected: tuple[Any, ...], problem: str
):
    mode = expected[2]
    if server == "plain":
        index = await upstash_index(servers, "DENSE", embedding=mode, embed=fake_embed)
    else:
        index = await upstash_index(servers, "HYBRID", "COSINE", MODEL_DIMENSION, model=MODEL, embedding=mode)

    with pytest.raises(VectorIndexError, match="does not fit") as raised:
        await index.check_compatible(*expected)
    assert problem in str(raised.value)
    await index.close()


async def test_a_wrong_index_type_is_named(servers: Servers):
    index = await upstash_index(servers, "DENSE", embedding="local", embed=fake_embed)

    with pytest.raises(VectorIndexError, match="it is a DENSE index, expected HYBRID"):
        await index.check_compatible(DIMENSION, "COSINE", "local", expected_index_type="HYBRID")
    await index.close()


async def test_a_refused_token_is_unavailability_not_a_bad_request(servers: Servers):
    server = await asyncio.to_thread(servers.get, "DENSE", "COSINE", DIMENSION)
    index = UpstashVectorIndex(server.url, "wrong-token", embed=fake_embed)

    with pytest.raises(UpstashVectorUnavailable, match="401"):
        await index.info()
    await index.close()


async def test_an_unreachable_upstash_fails_fast():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    index = UpstashVectorIndex(f"http://127.0.0.1:{port}", "token", embed=fake_embed, timeout_seconds=1)

    with pytest.raises(UpstashVectorUnavailable, match="unreachable"):
        await index.info()
    await index.close()


async def test_a_slow_upstash_fails_the_request_at_its_deadline():
    done = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    index = UpstashVectorIndex(f"http://127.0.0.1:{port}", "token", embed=fake_embed, timeout_seconds=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(UpstashVectorUnavailable, match=r"did not answer within 0\.3 s"):
        await index.query(vector=[1.0] * DIMENSION, top_k=1)  # the index type is read first: also a request
    assert loop.time() - started < 2
    await index.close()
    done.set()
    silent.close()
    await silent.wait_closed()
