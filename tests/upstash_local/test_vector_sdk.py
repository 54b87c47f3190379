"""Upstash's own Python SDK, synchronous `Index` and `AsyncIndex`, against the local Vector server: what
Upstash's SDK behaviour checks expect of Upstash (exact vectors back, a score of 1 for the vector
itself, ranges in the order written, resumable queries, updates, namespaces, error answers), on a
2-d dense COSINE index, a sparse one, a 2-d hybrid one and one embedding text with a model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from upstash_vector import AsyncIndex, Index
from upstash_vector.errors import ClientError, UpstashError
from upstash_vector.types import (
    Data,
    FusionAlgorithm,
    MetadataUpdateMode,
    SparseVector,
    Vector,
    WeightingStrategy,
)

from upstash_local.vector_server import LocalVectorServer

MODEL = "BAAI/bge-small-en-v1.5"
NAMESPACES = ["", "ns"]


class Client:
    """One SDK client, sync or async, called the same way: `await client.query(...)`. Sync calls run
    in a worker thread, as an application's would from async code."""

    def __init__(self, server: LocalVectorServer, kind: str) -> None:
        self.kind = kind
        if kind == "sync":
            self.sdk: Any = Index(server.url, server.token, retries=0, allow_telemetry=False)
        else:
            self.sdk = AsyncIndex(server.url, server.token, retries=0, allow_telemetry=False)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.sdk, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.kind == "sync":
                return await asyncio.to_thread(method, *args, **kwargs)
            return await method(*args, **kwargs)

        return call

    async def resumable(self, **kwargs: Any) -> tuple[list[Any], Any]:
        """A resumable query, and its handle's fetch_next and stop as coroutines."""
        scores, handle = await self.resumable_query(**kwargs)
        if self.kind == "sync":

            class Handle:
                async def fetch_next(self, k: int) -> list[Any]:
                    return await asyncio.to_thread(handle.fetch_next, k)

                async def stop(self) -> None:
                    await asyncio.to_thread(handle.stop)

            return scores, Handle()
        return scores, handle

    async def close(self) -> None:
        if self.kind == "sync":
            self.sdk._client.close()
        else:
            await self.sdk._client.aclose()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, LocalVectorServer]]:
    started: dict[str, LocalVectorServer] = {}
    try:
        started["dense"] = LocalVectorServer.start(index_type="DENSE", dimension=2)
        started["sparse"] = LocalVectorServer.start(index_type="SPARSE")
        started["hybrid"] = LocalVectorServer.start(index_type="HYBRID", dimension=2)
        started["embedding"] = LocalVectorServer.start(
            index_type="DENSE", dimension=384, embedding_model=MODEL
        )
        yield started
    finally:
        for server in started.values():
            server.stop()


async def emptied(server: LocalVectorServer, kind: str) -> Client:
    client = Client(server, kind)
    await client.reset(all=True)
    for namespace in await client.list_namespaces():
        if namespace:
            await client.delete_namespace(namespace)
    return client


@pytest.fixture(params=["sync", "async"])
async def index(
    request: pytest.FixtureRequest, servers: dict[str, LocalVectorServer]
) -> AsyncIterator[Client]:
    client = await emptied(servers["dense"], request.param)
    yield client
    await client.close()


@pytest.fixture(params=["sync", "async"])
async def other(request: pytest.FixtureRequest, servers: dict[str, LocalVectorServer]) -> AsyncIterator[Any]:
    """A client factory for the sparse, hybrid and embedding servers, of the test's kind."""
    made: list[Client] = []

    async def make(name: str) -> Client:
        client = await emptied(servers[name], request.param)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


FIVE = [
    ("id1", [0.1, 0.2], {"metadata_field": "metadata_value"}),
    ("id2", [0.3, 0.4]),
    ("id3", [0.5, 0.6]),
    ("id4", [0.7, 0.8], {"metadata_field_4": "metadata_value_4"}),
    ("id5", [124, 0.8], {"metadata_field_5": "metadata_value_5"}),
]


# ---------------------------------------------------------------- upsert, fetch, query


async def test_upserted_vectors_come_back_exactly_in_every_form(index: Client):
    await index.upsert([("t1", [0.1, 0.2], {"f": "v"}, "data"), ("t2", [0.3, 0.4])])
    await index.upsert(
        [{"id": "d1", "vector": [0.5, 0.6], "metadata": {"f": 1}}, {"id": "d2", "vector": [0.7, 0.8]}]
    )
    await index.upsert([Vector(id="v1", vector=np.array([0.9, 1.1])), Vector(id=7, vector=[0.25, 0.75])])

    found = await index.fetch(
        ["t1", "t2", "d1", "v1", "7", "missing"], include_vectors=True, include_metadata=True
    )

    assert [(r.id, r.vector, r.metadata) if r else None for r in found] == [
        ("t1", [0.1, 0.2], {"f": "v"}),
        ("t2", [0.3, 0.4], None),
        ("d1", [0.5, 0.6], {"f": 1}),
        ("v1", [0.9, 1.1], None),
        ("7", [0.25, 0.75], None),
        None,
    ]
    assert (await index.fetch("t1", include_data=True))[0].data == "data"
    info = await index.info()
    assert (info.vector_count, info.dimension, info.similarity_function) == (6, 2, "COSINE")


@pytest.mark.parametrize("ns", NAMESPACES)
async def test_the_vector_itself_scores_exactly_1(index: Client, ns: str):
    await index.upsert(FIVE, namespace=ns)

    first = await index.query([0.1, 0.2], top_k=1, include_metadata=True, include_vectors=True, namespace=ns)
    two = await index.query([0.1, 0.2], top_k=2, include_vectors=True, namespace=ns)
    five = await index.query(np.array([0.1, 0.2]), top_k=5, namespace=ns)

    assert [(hit.id, hit.score, hit.vector, hit.metadata) for hit in first] == [
        ("id1", 1, [0.1, 0.2], {"metadata_field": "metadata_value"})
    ]
    assert (two[1].id, two[1].vector, two[1].metadata) == ("id2", [0.3, 0.4], None)
    assert two[1].score < 1
    assert len(five) == 5
    assert all(hit.vector is None and hit.metadata is None for hit in five)


async def test_equal_scores_come_in_the_order_written_and_a_filter_narrows(index: Client):
    await index.upsert(
        [
            ("id1", [0.1, 0.2], {"foo": "bar"}),
            ("id2", [0.1, 0.2], {"foo": "nay"}),
            ("id3", [0.2, 0.3], {"foo": "bar"}),
        ]
    )

    both = await index.query([0.1, 0.2], top_k=2, include_metadata=True)
    filtered = await index.query([0.1, 0.2], top_k=2, filter="foo = 'bar'", include_vectors=True)

    assert [(hit.id, hit.score) for hit in both] == [("id1", 1), ("id2", 1)]
    assert [hit.id for hit in filtered] == ["id1", "id3"]
    assert filtered[1].score < 1
    assert filtered[1].vector == [0.2, 0.3]


async def test_query_many(index: Client):
    await index.upsert(FIVE)

    one = await index.query_many(queries=[{"vector": [0.1, 0.2], "top_k": 1}])
    two = await index.query_many(
        queries=[
            {"vector": [0.1, 0.2], "top_k": 2},
            {"vector": [124, 0.8], "top_k": 1, "include_vectors": True},
        ]
    )

    assert [[hit.id for hit in hits] for hits in one] == [["id1"]]
    assert [[(hit.id, hit.vector) for hit in hits] for hits in two] == [
        [("id1", None), ("id2", None)],
        [("id5", [124, 0.8])],
    ]


# ---------------------------------------------------------------- range, resumable queries


async def test_range_pages_in_the_order_written(index: Client):
    await index.upsert([{"id": f"id-{i}", "vector": [1.0, i / 10]} for i in range(20)])

    page = await index.range(cursor="", limit=4, include_vectors=True)
    seen, sizes = [r.id for r in page.vectors], [len(page.vectors)]
    while page.next_cursor != "":
        page = await index.range(cursor=page.next_cursor, limit=8, include_vectors=True)
        seen += [r.id for r in page.vectors]
        sizes.append(len(page.vectors))

    assert (seen, sizes) == ([f"id-{i}" for i in range(20)], [4, 8, 8])
    assert page.vectors[0].vector == [1.0, 1.2]
    with pytest.raises(ClientError):
        await index.range(cursor="0", limit=0)


@pytest.mark.parametrize("ns", NAMESPACES)
async def test_a_resumable_query_goes_on_and_stops(index: Client, ns: str):
    await index.upsert(
        [
            ("id1", [0.1, 0.2]),
            ("id2", [0.3, 0.4]),
            ("id3", [0.5, 0.6]),
            ("id4", [0.7, 0.8]),
            ("id5", [0.9, 1.0]),
        ],
        namespace=ns,
    )

    scores, handle = await index.resumable(vector=[0.1, 0.2], top_k=2, include_vectors=True, namespace=ns)
    batches = [[hit.id for hit in scores], [hit.id for hit in await handle.fetch_next(2)]]
    batches += [
        [hit.id for hit in await handle.fetch_next(1)],
        [hit.id for hit in await handle.fetch_next(1)],
    ]
    await handle.stop()

    assert batches == [["id1", "id2"], ["id3", "id4"], ["id5"], []]
    assert (scores[0].score, scores[0].vector) == (1, [0.1, 0.2])
    with pytest.raises(UpstashError):
        await handle.fetch_next(1)
    with pytest.raises(UpstashError):
        await handle.stop()


# ---------------------------------------------------------------- update, delete, namespaces


@pytest.mark.parametrize("ns", NAMESPACES)
async def test_updates(index: Client, ns: str):
    await index.upsert([("id-0", [0.1, 0.2], {"field": "value", "field2": "value2"}, "data")], namespace=ns)

    assert await index.update("id-0", vector=[0.2, 0.3], namespace=ns) is True
    assert await index.update("id-0", data="new-data", namespace=ns) is True  # no model: data only
    assert (
        await index.update(
            "id-0",
            metadata={"new_field": "new_value", "field2": None},
            metadata_update_mode=MetadataUpdateMode.PATCH,
            namespace=ns,
        )
        is True
    )
    assert await index.update("id-999", vector=[0.4, 0.5], namespace=ns) is False

    record = (
        await index.fetch(
            "id-0", include_vectors=True, include_metadata=True, include_data=True, namespace=ns
        )
    )[0]
    assert (record.vector, record.metadata, record.data) == (
        [0.2, 0.3],
        {"field": "value", "new_field": "new_value"},
        "new-data",
    )
    assert await index.update("id-0", metadata={"only": 1}, namespace=ns)
    assert (await index.fetch("id-0", include_metadata=True, namespace=ns))[0].metadata == {"only": 1}


async def test_deletes_by_id_ids_prefix_and_filter(index: Client):
    await index.upsert(
        [(f"a{i}", [1.0, i], {"i": i}) for i in range(4)] + [(f"b{i}", [i, 1.0]) for i in range(3)]
    )

    assert (await index.delete("a0")).deleted == 1
    assert (await index.delete(["a1", "nope"])).deleted == 1
    assert (await index.delete(prefix="b")).deleted == 3
    assert (await index.delete(filter="i = 3")).deleted == 1
    assert [r.id for r in (await index.range(limit=10)).vectors] == ["a2"]


async def test_namespaces_exist_once_written_to_and_go_when_deleted(index: Client):
    await index.upsert([("0", [0.1, 0.1])], namespace="ns")
    await index.reset(namespace="ns")  # emptied, but still there

    assert sorted(await index.list_namespaces()) == ["", "ns"]
    info = await index.info()
    assert {
        name: (space.vector_count, space.pending_vector_count) for name, space in info.namespaces.items()
    } == {
        "": (0, 0),
        "ns": (0, 0),
    }
    await index.delete_namespace("ns")
    assert len((await index.info()).namespaces) == 1
    with pytest.raises(UpstashError, match="does not exist"):
        await index.delete_namespace("ns")


# ---------------------------------------------------------------- sparse, hybrid and text indexes


async def test_a_sparse_index(other: Any):
    index = await other("sparse")
    await index.upsert(
        [
            Vector(id="id-0", sparse_vector=SparseVector([1, 2], [0.1, 0.2])),
            ("id-1", SparseVector([2, 44232], [0.5, 0.4])),
            ("id-2", ([3, 3], [0.25, 0.5])),  # a repeated index: its values add up
        ]
    )

    found = await index.fetch(["id-0", "id-2"], include_vectors=True)
    hits = await index.query(sparse_vector=SparseVector([2, 3], [1.0, 1.0]), include_vectors=True)
    weighted = await index.query(sparse_vector=([2], [1.0]), weighting_strategy=WeightingStrategy.IDF)

    assert [(r.id, r.vector, r.sparse_vector) for r in found] == [
        ("id-0", None, SparseVector([1, 2], [0.1, 0.2])),
        ("id-2", None, SparseVector([3], [0.75])),
    ]
    assert [(hit.id, hit.score) for hit in hits] == [("id-2", 0.75), ("id-1", 0.5), ("id-0", 0.2)]
    assert hits[1].sparse_vector == SparseVector([2, 44232], [0.5, 0.4])
    assert [hit.id for hit in weighted] == ["id-1", "id-0"]
    assert (await index.info()).dense_index is None


async def test_a_hybrid_index(other: Any):
    index = await other("hybrid")
    await index.upsert(
        [
            Vector(id="id-0", vector=[0.1, 0.5], sparse_vector=SparseVector([1, 2], [0.1, 0.2])),
            ("id-1", [0.3, 0.7], SparseVector([123, 44232], [0.5, 0.4])),
        ]
    )

    fused = await index.query(
        vector=[0.1, 0.5], sparse_vector=SparseVector([1, 123], [1.0, 1.0]), include_vectors=True
    )
    dbsf = await index.query(
        vector=[0.1, 0.5], sparse_vector=SparseVector([1], [1.0]), fusion_algorithm=FusionAlgorithm.DBSF
    )
    dense = await index.query(vector=[0.3, 0.7], top_k=1)
    sparse = await index.query(sparse_vector=SparseVector([44232], [1.0]))

    assert (fused[0].id, fused[0].vector, fused[0].sparse_vector) == (
        "id-0",
        [0.1, 0.5],
        SparseVector([1, 2], [0.1, 0.2]),
    )
    assert fused[0].score == pytest.approx(1 / 60 + 1 / 61, rel=1e-6)
    assert [hit.id for hit in dbsf] == ["id-0", "id-1"]
    assert [(hit.id, hit.score) for hit in dense] == [("id-1", 1)]
    assert [(hit.id, hit.score) for hit in sparse] == [("id-1", 0.4)]
    with pytest.raises(UpstashError):
        await index.upsert([("id-2", [0.1, 0.2])])  # a hybrid record without its sparse part


async def test_an_index_with_an_embedding_model(other: Any):
    index = await other("embedding")
    await index.upsert([("id1", "cookie", {"metadata_field": "cookie"}), Data(id="id2", data="car")])

    first = await index.query(data="cookie", top_k=1, include_metadata=True, include_vectors=True)
    both = await index.query(data="cookie", top_k=2)
    scores, handle = await index.resumable(data="cookie", top_k=1)
    await handle.stop()
    before = (await index.fetch("id1", include_vectors=True, include_data=True))[0]
    assert await index.update("id1", data="bye") is True
    after = (await index.fetch("id1", include_vectors=True, include_data=True))[0]

    assert [(hit.id, hit.score, hit.metadata) for hit in first] == [("id1", 1, {"metadata_field": "cookie"})]
    assert len(first[0].vector) == 384
    assert len(both) == 2
    assert [hit.id for hit in scores] == ["id1"]
    assert (after.data, before.data) == ("bye", "cookie")
    assert after.vector != before.vector
    assert (await index.info()).dense_index.embedding_model == MODEL


# ---------------------------------------------------------------- errors


async def test_what_upstash_refuses_raises_upstash_error(index: Client, other: Any):
    sparse = await other("sparse")
    refused = [
        index.upsert([("a", [0.1, 0.2, 0.3])]),  # another dimension
        index.query([0.1, 0.2, 0.3]),
        index.query([0.1, 0.2], filter="foo = = 'bar'"),
        index.upsert([("a", [0.1, 0.2], SparseVector([1], [1.0]))]),  # sparse part on a dense index
        index.query(data="text"),  # no embedding model
        index.delete_namespace("never-was"),
        sparse.upsert([("a", [0.1, 0.2])]),  # dense part on a sparse index
        sparse.query(sparse_vector=SparseVector([1, 2], [1.0])),  # lengths differ
    ]
    for call in refused:
        with pytest.raises(UpstashError):
            await call


async def test_error_answers_have_upstashs_shape_and_status(servers: dict[str, LocalVectorServer]):
    server = servers["dense"]
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        cases = [
            ("/upsert", {"id": "a", "vector": [1, 2, 3]}, 400),
            ("/query", {"vector": [1, 2], "filter": "a = = 1"}, 400),
            ("/query", {"vector": [1, 2], "sparseVector": {"indices": [1], "values": [1]}}, 400),
            ("/delete-namespace/never-was", None, 404),
            ("/resumable-query-next", {"uuid": "nope", "additionalK": 1}, 404),
        ]
        for path, body, status in cases:
            response = await http.post(path, json=body)
            answer = response.json()
            assert (response.status_code, answer["status"], set(answer)) == (
                status,
                status,
                {"error", "status"},
            )
            assert answer["error"]
