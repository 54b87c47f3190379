"""The local Upstash Vector server, spoken to over raw HTTP (and once through the official SDK): auth,
error shapes, every path with and without a namespace, text endpoints with and without a model,
resumable queries, restarts, and many clients at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from upstash_vector import AsyncIndex
from upstash_vector.errors import UpstashError

from core.vectors import EmbeddedVectorIndex
from upstash_local.vector_server import LocalVectorServer, VectorServer, build_server, main

MODEL = "BAAI/bge-small-en-v1.5"
UNIT = [1.0] + [0.0] * 383  # a 384-d vector for the model server


@pytest.fixture(scope="session")
def dense() -> Iterator[LocalVectorServer]:
    """A 2-d dense index without an embedding model."""
    with LocalVectorServer.start(index_type="DENSE", dimension=2) as server:
        yield server


@pytest.fixture(scope="session")
def hybrid() -> Iterator[LocalVectorServer]:
    """A 2-d hybrid index without embedding models."""
    with LocalVectorServer.start(index_type="HYBRID", dimension=2) as server:
        yield server


@pytest.fixture(scope="session")
def model() -> Iterator[LocalVectorServer]:
    """A 384-d hybrid index with the local model standing in for a hosted one (and BM25)."""
    with LocalVectorServer.start(index_type="HYBRID", dimension=384, embedding_model=MODEL) as server:
        yield server


def client_of(server: LocalVectorServer, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token if token is not None else server.token}"}
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10)


async def empty(client: httpx.AsyncClient) -> None:
    assert (await client.post("/reset?all")).status_code == 200
    for namespace in (await client.post("/list-namespaces")).json()["result"]:
        if namespace:
            assert (await client.post(f"/delete-namespace/{namespace}")).status_code == 200


@pytest.fixture
async def http(dense: LocalVectorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(dense) as client:
        await empty(client)
        yield client


@pytest.fixture
async def hybrid_http(hybrid: LocalVectorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(hybrid) as client:
        await empty(client)
        yield client


@pytest.fixture
async def model_http(model: LocalVectorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(model) as client:
        await empty(client)
        yield client


def result(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"result"}
    return body["result"]


def error(response: httpx.Response, status: int) -> str:
    """The message of an answer in Upstash's error shape, after checking the shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "status"}
    assert body["status"] == status
    assert isinstance(body["error"], str)
    assert body["error"]
    assert "Traceback" not in response.text
    return body["error"]


# ---------------------------------------------------------------- auth and error shapes


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Basic d3Jvbmc6d3Jvbmc=", "{token}", "Bearer {token}x", "bearer {token}"],
)
async def test_a_missing_or_wrong_token_gets_401(dense: LocalVectorServer, authorization: str | None):
    headers = {} if authorization is None else {"Authorization": authorization.format(token=dense.token)}
    async with httpx.AsyncClient(base_url=dense.url, timeout=10) as client:
        for path in ("/info", "/query", "/upsert/ns", "/nowhere"):
            response = await client.post(path, headers=headers, content=b'{"vector": [1, 0]}')

            assert error(response, 401) == "Unauthorized: Invalid auth token"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/query", b"{not json"),
        ("/query", b'{"vector": "up"}'),
        ("/query", b'{"vector": [1, 0], "topK": "many"}'),
        ("/query", b'{"vector": [1, 0], "fusionAlgorithm": "MAX"}'),
        ("/query", b'{"vector": [1, 0, 0]}'),
        ("/query", b'{"vector": [1, 0], "filter": "a = = 1"}'),
        ("/query", b"{}"),
        ("/upsert", b"42"),
        ("/upsert", b'[{"vector": [1, 0]}]'),
        ("/upsert", b'{"id": "a", "vector": [1, 0], "metadata": [1]}'),
        ("/upsert", b'{"id": "a", "vector": [0, 0]}'),
        ("/upsert", b'{"id": "a", "vector": [1, 0], "sparseVector": {"indices": [1], "values": []}}'),
        ("/fetch", b"[1, 2]"),
        ("/fetch", b"{}"),
        ("/range", b"{}"),
        ("/range", b'{"cursor": "!!not-a-cursor!!", "limit": 1}'),
        ("/delete", b"{}"),
        ("/delete", b'{"ids": ["a"], "prefix": "a"}'),
        ("/delete", b"true"),
        ("/update", b'{"vector": [1, 0]}'),
        ("/update", b'{"id": "a"}'),
        ("/update", b'{"id": "a", "metadata": {}, "metadataUpdateMode": "MERGE"}'),
        ("/delete-namespace", b""),
        ("/resumable-query", b'{"vector": [1, 0], "maxIdle": 0}'),
        ("/resumable-query-next", b'{"uuid": "x"}'),
        ("/resumable-query-end", b"[]"),
    ],
)
async def test_a_malformed_or_invalid_body_gets_400(http: httpx.AsyncClient, path: str, body: bytes):
    error(await http.post(path, content=body), 400)


async def test_an_unknown_path_gets_404_and_an_unknown_method_405(http: httpx.AsyncClient):
    assert error(await http.post("/vectors"), 404) == "Not Found: /vectors"
    error(await http.request("PATCH", "/info"), 405)
    assert result(await http.get("/info"))["dimension"] == 2  # GET, as Upstash's curl examples do
    assert result(await http.delete("/reset")) == "Success"


async def test_an_internal_failure_is_a_500_in_upstash_shape_without_a_traceback(tmp_path: Path):
    # Not opened (no lifespan here), so the engine refuses every call with a RuntimeError.
    server = VectorServer(EmbeddedVectorIndex(2, "COSINE", "DENSE", path=tmp_path), "token")
    transport = httpx.ASGITransport(app=server)
    headers = {"Authorization": "Bearer token"}
    async with httpx.AsyncClient(transport=transport, base_url="http://local", headers=headers) as client:
        message = error(await client.post("/info"), 500)

    assert "open the vector index" not in message


# ---------------------------------------------------------------- every path


@pytest.mark.parametrize("namespace", ["", "ns"])
async def test_every_path_with_and_without_a_namespace(model_http: httpx.AsyncClient, namespace: str):
    http = model_http
    at = f"/{namespace}" if namespace else ""
    await http.post("/upsert-data/elsewhere", json={"id": "other", "data": "untouched"})
    sparse = {"indices": [7], "values": [1.0]}

    assert (
        result(await http.post(f"/upsert{at}", json={"id": "v", "vector": UNIT, "sparseVector": sparse}))
        == "Success"
    )
    texts = [
        {"id": "t1", "data": "espresso coffee at home", "metadata": {"kind": "food"}},
        {"id": "t2", "data": "mountain bike repair", "metadata": {"kind": "sport"}},
    ]
    assert result(await http.post(f"/upsert-data{at}", json=texts)) == "Success"

    hits = result(await http.post(f"/query{at}", json={"vector": UNIT, "sparseVector": sparse, "topK": 1}))
    assert [hit["id"] for hit in hits] == ["v"]
    hits = result(
        await http.post(
            f"/query-data{at}",
            json={"data": "coffee", "topK": 3, "includeMetadata": True, "queryMode": "SPARSE"},
        )
    )
    assert [(hit["id"], hit["metadata"]) for hit in hits] == [("t1", {"kind": "food"})]
    assert hits[0]["score"] > 0

    fetched = result(await http.post(f"/fetch{at}", json={"ids": ["t2", "nope"], "includeData": True}))
    assert fetched == [{"id": "t2", "data": "mountain bike repair"}, None]
    page = result(await http.post(f"/range{at}", json={"cursor": "", "limit": 2, "includeMetadata": True}))
    assert [record["id"] for record in page["vectors"]] == ["v", "t1"]  # in the order written
    page = result(await http.post(f"/range{at}", json={"cursor": page["nextCursor"], "limit": 2}))
    assert (page["vectors"], page["nextCursor"]) == ([{"id": "t2"}], "")

    change = {"id": "t2", "metadata": {"year": 2024}, "metadataUpdateMode": "PATCH"}
    assert result(await http.post(f"/update{at}", json=change)) == {"updated": 1}
    assert result(await http.post(f"/update{at}", json={**change, "id": "nope"})) == {"updated": 0}
    assert result(await http.post(f"/fetch{at}", json={"ids": ["t2"], "includeMetadata": True})) == [
        {"id": "t2", "metadata": {"kind": "sport", "year": 2024}}
    ]

    started = result(
        await http.post(f"/resumable-query{at}", json={"vector": UNIT, "topK": 1, "sparseVector": sparse})
    )
    assert [hit["id"] for hit in started["scores"]] == ["v"]
    more = result(await http.post("/resumable-query-next", json={"uuid": started["uuid"], "additionalK": 5}))
    assert sorted(hit["id"] for hit in more) == ["t1", "t2"]
    assert result(await http.post("/resumable-query-end", json={"uuid": started["uuid"]})) == "Success"
    started = result(await http.post(f"/resumable-query-data{at}", json={"data": "bike", "topK": 1}))
    assert [hit["id"] for hit in started["scores"]] == ["t2"]
    assert result(await http.post(f"/resumable-query-end{at}", json={"uuid": started["uuid"]})) == "Success"

    info = result(await http.post("/info"))
    assert info["namespaces"][namespace] == {"vectorCount": 3, "pendingVectorCount": 0}
    assert info["namespaces"]["elsewhere"]["vectorCount"] == 1
    assert namespace in result(await http.post("/list-namespaces"))
    assert result(await http.post(f"/delete{at}", json=["t1", "nope"])) == {"deleted": 1}
    assert result(await http.post(f"/reset{at}")) == "Success"
    info = result(await http.post("/info"))
    assert (info["namespaces"][namespace]["vectorCount"], info["vectorCount"]) == (0, 1)
    if namespace:
        assert result(await http.post(f"/delete-namespace{at}")) == "Success"
        assert "does not exist" in error(await http.post(f"/delete-namespace{at}"), 404)
        assert namespace not in result(await http.post("/list-namespaces"))


async def test_a_batch_of_queries_gets_a_list_per_query_and_a_batch_of_one_a_single_list(
    http: httpx.AsyncClient,
):
    await http.post("/upsert", json=[{"id": "a", "vector": [1, 0]}, {"id": "b", "vector": [0, 1]}])

    two = result(
        await http.post("/query", json=[{"vector": [1, 0], "topK": 1}, {"vector": [0, 1], "topK": 1}])
    )
    assert [[hit["id"] for hit in hits] for hits in two] == [["a"], ["b"]]
    one = result(await http.post("/query", json=[{"vector": [0, 1], "topK": 1}]))
    assert [hit["id"] for hit in one] == ["b"]  # as Upstash answers, and upstash-vector expects


async def test_delete_takes_an_id_an_array_of_ids_or_an_object(http: httpx.AsyncClient):
    records = [
        {"id": id, "vector": [1, 0], "metadata": {"n": n}} for n, id in enumerate(["a", "b", "c", "p1", "p2"])
    ]
    await http.post("/upsert", json=records)

    assert result(await http.post("/delete", json="a")) == {"deleted": 1}
    assert result(await http.post("/delete", json=["b", "a"])) == {"deleted": 1}
    assert result(await http.post("/delete", json={"prefix": "p"})) == {"deleted": 2}
    assert result(await http.post("/delete", json={"filter": "n = 2"})) == {"deleted": 1}
    assert result(await http.post("/info"))["vectorCount"] == 0


async def test_reset_all_clears_every_namespace(http: httpx.AsyncClient):
    for namespace in ("", "one", "two"):
        await http.post(f"/upsert/{namespace}", json={"id": "a", "vector": [1, 0]})

    assert result(await http.post("/reset/one")) == "Success"
    assert result(await http.post("/info"))["vectorCount"] == 2
    assert result(await http.post("/reset?all")) == "Success"  # what upstash-vector sends for all=True
    assert result(await http.post("/info"))["vectorCount"] == 0


async def test_range_cursors_start_at_empty_or_zero_and_are_positions(http: httpx.AsyncClient):
    await http.post("/upsert", json=[{"id": id, "vector": [1, 0]} for id in ["0", "!", "a", "b"]])

    for start in ("", "0"):
        page = result(await http.post("/range", json={"cursor": start, "limit": 3}))
        assert [record["id"] for record in page["vectors"]] == ["0", "!", "a"]  # as written
    assert page["nextCursor"].isdigit()  # like Upstash's: the position to go on from
    rest = result(await http.post("/range", json={"cursor": page["nextCursor"], "limit": 3}))
    assert ([record["id"] for record in rest["vectors"]], rest["nextCursor"]) == (["b"], "")
    refused = await http.post("/range", json={"cursor": "not-a-cursor", "limit": 3})
    assert (refused.status_code, refused.json()["status"]) == (400, 400)


async def test_hybrid_records_need_both_parts_without_models(hybrid_http: httpx.AsyncClient):
    http = hybrid_http
    sparse = {"indices": [1, 5], "values": [0.5, 1.0]}

    assert "no sparse vector" in error(
        await http.post("/upsert", json={"id": "a", "vector": [1, 0], "data": "x"}), 400
    )
    assert "no dense vector" in error(
        await http.post("/upsert", json={"id": "a", "sparseVector": sparse}), 400
    )
    assert (
        result(await http.post("/upsert", json={"id": "a", "vector": [1, 0], "sparseVector": sparse}))
        == "Success"
    )
    assert "both" in error(await http.post("/update", json={"id": "a", "vector": [0, 1]}), 400)
    # New data alone changes the data: without a model nothing is derived from it.
    assert result(await http.post("/update", json={"id": "a", "data": "other words"})) == {"updated": 1}
    record = result(
        await http.post("/fetch", json={"ids": ["a"], "includeVectors": True, "includeData": True})
    )[0]
    assert record == {"id": "a", "vector": [1.0, 0.0], "sparseVector": sparse, "data": "other words"}


@pytest.mark.parametrize("path", ["/upsert-data", "/query-data", "/resumable-query-data"])
async def test_text_endpoints_fail_on_an_index_without_a_model(http: httpx.AsyncClient, path: str):
    message = error(await http.post(path, json={"id": "a", "data": "some text"}), 400)

    assert message == (
        "Embedding data for this index is not allowed. The index must be created with an embedding model to use it."
    )


async def test_info_reports_the_index_and_its_models(http: httpx.AsyncClient, model_http: httpx.AsyncClient):
    plain = result(await http.post("/info"))
    assert plain == {
        "vectorCount": 0,
        "pendingVectorCount": 0,
        "indexSize": 0,
        "dimension": 2,
        "similarityFunction": "COSINE",
        "indexType": "DENSE",
        "namespaces": {"": {"vectorCount": 0, "pendingVectorCount": 0}},
        "denseIndex": {"dimension": 2, "similarityFunction": "COSINE", "embeddingModel": ""},
    }
    hosted = result(await model_http.post("/info"))
    assert hosted["denseIndex"] == {"dimension": 384, "similarityFunction": "COSINE", "embeddingModel": MODEL}
    assert (hosted["indexType"], hosted["sparseIndex"]) == ("HYBRID", {"embeddingModel": "BM25"})


async def test_a_sparse_index_with_bm25_embeds_text():
    with LocalVectorServer.start(index_type="SPARSE", embedding_model="BM25") as server:
        async with client_of(server) as http:
            info = result(await http.post("/info"))
            assert ("denseIndex" in info, info["sparseIndex"]) == (False, {"embeddingModel": "BM25"})
            texts = [{"id": "a", "data": "green tea"}, {"id": "b", "data": "black coffee"}]
            assert result(await http.post("/upsert-data", json=texts)) == "Success"
            hits = result(await http.post("/query-data", json={"data": "coffee please"}))
            assert [hit["id"] for hit in hits] == ["b"]


# ---------------------------------------------------------------- resumable queries


async def test_a_resumable_query_continues_without_repeats_until_it_ends(http: httpx.AsyncClient):
    await http.post("/upsert", json=[{"id": f"v{i}", "vector": [1, i / 10]} for i in range(5)])

    started = result(
        await http.post("/resumable-query", json={"vector": [1, 0], "topK": 2, "includeMetadata": True})
    )
    handle = {"uuid": started["uuid"]}
    batches = [[hit["id"] for hit in started["scores"]]]
    for additional in (2, 2, 2):
        more = result(await http.post("/resumable-query-next", json={**handle, "additionalK": additional}))
        batches.append([hit["id"] for hit in more])

    assert batches == [["v0", "v1"], ["v2", "v3"], ["v4"], []]
    assert result(await http.post("/resumable-query-end", json=handle)) == "Success"
    error(await http.post("/resumable-query-next", json={**handle, "additionalK": 1}), 404)
    error(await http.post("/resumable-query-end", json=handle), 404)


async def test_an_idle_resumable_query_expires(http: httpx.AsyncClient):
    await http.post("/upsert", json={"id": "a", "vector": [1, 0]})
    started = result(await http.post("/resumable-query", json={"vector": [1, 0], "topK": 1, "maxIdle": 1}))

    await asyncio.sleep(1.2)

    assert "does not exist" in error(
        await http.post("/resumable-query-next", json={"uuid": started["uuid"], "additionalK": 1}), 404
    )


async def test_the_official_sdk_drives_the_server(dense: LocalVectorServer, http: httpx.AsyncClient):
    index = AsyncIndex(dense.url, dense.token, retries=0)
    await index.upsert([("a", [1.0, 0.0], {"k": 1}), ("b", [0.8, 0.6]), ("c", [0.0, 1.0])], namespace="sdk")

    scores, handle = await index.resumable_query(vector=[1.0, 0.0], top_k=1, namespace="sdk")
    assert [hit.id for hit in scores] == ["a"]
    assert [hit.id for hit in await handle.fetch_next(1)] == ["b"]
    await handle.stop()
    with pytest.raises(UpstashError):
        await handle.fetch_next(1)
    batches = await index.query_many(queries=[{"vector": [0.0, 1.0], "top_k": 1}], namespace="sdk")
    assert [[hit.id for hit in hits] for hits in batches] == [["c"]]
    batches = await index.query_many(
        queries=[
            {"vector": [0.0, 1.0], "top_k": 1},
            {"vector": [1.0, 0.0], "top_k": 1, "include_metadata": True},
        ],
        namespace="sdk",
    )
    assert [[(hit.id, hit.metadata) for hit in hits] for hits in batches] == [
        [("c", None)],
        [("a", {"k": 1})],
    ]
    info = await index.info()
    assert (info.dense_index.embedding_model, info.sparse_index) == ("", None)  # type: ignore[union-attr]
    await index.delete_namespace("sdk")
    with pytest.raises(UpstashError, match="does not exist"):
        await index.delete_namespace("sdk")
    await index._client.aclose()


# ---------------------------------------------------------------- many clients, restarts, configurations


async def test_many_clients_at_once(dense: LocalVectorServer, http: httpx.AsyncClient):
    async def worker(number: int) -> None:
        async with client_of(dense) as client:
            for i in range(10):
                records = [{"id": f"w{number}-{i}-{j}", "vector": [1, number + j]} for j in range(3)]
                assert (await client.post("/upsert", json=records)).status_code == 200
                hits = result(await client.post("/query", json={"vector": [1, number], "topK": 3}))
                assert len(hits) == 3
                assert (await client.post(f"/upsert/ns{number}", json=records[0])).status_code == 200

    await asyncio.gather(*(worker(number) for number in range(12)))

    info = result(await http.post("/info"))
    assert info["namespaces"][""]["vectorCount"] == 12 * 10 * 3
    assert sum(space["vectorCount"] for space in info["namespaces"].values()) == 12 * 10 * 4


async def test_an_index_with_a_path_survives_a_restart(tmp_path: Path):
    record = {"id": "kept", "vector": [0.6, 0.8], "metadata": {"m": 1}, "data": "text"}
    with LocalVectorServer.start(dimension=2, path=tmp_path / "index") as server:
        async with client_of(server) as http:
            assert result(await http.post("/upsert/ns", json=record)) == "Success"
    with LocalVectorServer.start(dimension=2, path=tmp_path / "index") as server:
        async with client_of(server) as http:
            fetched = result(
                await http.post(
                    "/fetch/ns",
                    json={
                        "ids": ["kept"],
                        "includeVectors": True,
                        "includeMetadata": True,
                        "includeData": True,
                    },
                )
            )
    assert fetched == [{**record, "vector": pytest.approx([0.6, 0.8])}]


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"index_type": "SPARSE", "embedding_model": MODEL}, "only BM25"),
        ({"index_type": "HYBRID", "embedding_model": "BM25"}, "BM25 is a sparse model"),
        (
            {"index_type": "DENSE", "embedding_model": "BAAI/bge-base-en-v1.5", "dimension": 768},
            "384-d vectors",
        ),
        (
            {"index_type": "DENSE", "embedding_model": MODEL, "dimension": 8},
            "makes 384-d vectors, not --dimension 8",
        ),
    ],
)
def test_configurations_the_local_model_cannot_serve_are_refused(options: dict[str, Any], problem: str):
    with pytest.raises(ValueError, match=problem):
        build_server("token", **options)


def test_the_command_needs_a_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.delenv("UPSTASH_VECTOR_REST_TOKEN", raising=False)

    with pytest.raises(SystemExit) as exited:
        main(["--port", "1"])

    assert exited.value.code == 2
    assert "--token" in capsys.readouterr().err
