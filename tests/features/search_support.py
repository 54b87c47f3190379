"""Helpers shared by the search tests (test_search_*.py): a small catalogue, calls, waiting for the index."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from core.embeddings import DIMENSION, installed_embedder
from core.vectors import EmbeddedVectorIndex, VectorIndex
from features.demo.demo import load_demo_catalogue
from features.search_index.search_index import indexed_metadata, indexed_text
from tests.conftest import Account
from tests.features.videos_support import API, VIDEOS, add_video, auth, eventually

SEARCH = f"{API}/search"

# Videos on clearly different topics, written as people would describe them.
TOPICS: dict[str, dict[str, Any]] = {
    "sourdough": {
        "title": "Baking sourdough bread at home",
        "description": "Feed the starter, fold the dough and bake a crusty loaf in a dutch oven.",
        "tags": ["baking", "bread"],
        "duration_seconds": 840,
    },
    "baguette": {
        "title": "Classic French baguettes from scratch",
        "description": "Shape long loaves with a crisp crust and an open crumb using a poolish.",
        "tags": ["baking", "bread"],
        "duration_seconds": 660,
    },
    "chess": {
        "title": "Chess openings for beginners",
        "description": "The Italian game, the Sicilian defence and how to control the centre with pawns.",
        "tags": ["chess"],
        "duration_seconds": 1500,
    },
    "kubernetes": {
        "title": "Deploying containers to a Kubernetes cluster",
        "description": "Write a deployment manifest, expose it with a service and roll out a new version.",
        "tags": ["devops"],
        "duration_seconds": 1200,
    },
    "watercolor": {
        "title": "Watercolor landscapes: painting skies",
        "description": "Wet-on-wet washes, soft clouds and how to mix blues for a sunset sky.",
        "tags": ["art", "painting"],
        "duration_seconds": 480,
    },
    "marathon": {
        "title": "Training plan for your first marathon",
        "description": "Build weekly mileage, long runs on Sundays and taper before race day.",
        "tags": ["running", "fitness"],
        "duration_seconds": 720,
    },
    "firmware": {
        "title": "Flashing controller firmware",
        "description": "Updating the QX-7731 board over USB and verifying the checksum afterwards.",
        "tags": ["electronics"],
        "duration_seconds": 300,
    },
}


def demo_video(slug: str) -> dict[str, Any]:
    """A POST /videos body with the demo catalogue's video of this slug (features/demo/demo_catalogue.json)."""
    (item,) = [item for item in load_demo_catalogue() if item.slug == slug]
    fields = ("title", "description", "tags", "transcript", "duration_seconds", "visibility")
    return {field: getattr(item, field) for field in fields if getattr(item, field) is not None}


async def add_demo_videos(
    http: httpx.AsyncClient, owner: Account, *slugs: str, **overrides: Any
) -> dict[str, str]:
    """Post these demo catalogue videos as `owner`; their ids by slug."""
    return {slug: (await add_video(http, owner, **{**demo_video(slug), **overrides}))["id"] for slug in slugs}


def similar_url(video_id: str) -> str:
    return f"{VIDEOS}/{video_id}/similar"


async def add_topics(
    http: httpx.AsyncClient, owner: Account, *names: str, **overrides: Any
) -> dict[str, str]:
    """Post the named TOPICS videos (all of them by default) as `owner`; their ids by name."""
    return {
        name: (await add_video(http, owner, **{**TOPICS[name], **overrides}))["id"]
        for name in names or TOPICS
    }


async def indexed(http: httpx.AsyncClient, within: float = 10.0) -> None:
    """Wait until the outbox relay has brought the index up to date: /ready shows no pending change."""

    async def caught_up() -> bool:
        index = (await http.get("/ready")).json()["dependencies"]["search_index"]
        return index["status"] == "ok" and index["details"]["pending"] == 0

    await eventually(caught_up, within=within)


async def search(
    http: httpx.AsyncClient, q: str | None, viewer: Account | None = None, **params: Any
) -> httpx.Response:
    query = {**({"q": q} if q is not None else {}), **params}
    return await http.get(SEARCH, params=query, headers=auth(viewer))


async def found(http: httpx.AsyncClient, q: str, viewer: Account | None = None, **params: Any) -> list[str]:
    """The ids a search returns, best first."""
    response = await search(http, q, viewer, **params)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True), scores
    return [item["id"] for item in items]


async def register(http: httpx.AsyncClient) -> Account:
    """Sign up and log in through `http`, for tests whose own app must be the only one running.

    The `sign_up` fixture starts the `client` app, whose outbox relay would index new videos into its
    own index, racing the app under test for every change.
    """
    username = f"user_{uuid.uuid4().hex[:10]}"
    password = "correct-horse-battery"
    body = {"email": f"{username}@example.com", "username": username, "password": password}
    response = await http.post(f"{API}/auth/register", json=body)
    assert response.status_code == 201, response.text
    login = await http.post(f"{API}/auth/login", json={"login": username, "password": password})
    assert login.status_code == 200, login.text
    return Account(response.json()["id"], body["email"], username, password, login.json()["access_token"])


def _through(name: str, *, writes: bool) -> Any:
    async def call(self: BrokenIndex, *args: Any, **kwargs: Any) -> Any:
        if self.failing or (writes and self.writes_failing):
            raise ConnectionError("vector index service unreachable")
        return await getattr(self.inner, name)(*args, **kwargs)

    call.__name__ = name
    return call


class BrokenIndex(VectorIndex):
    """A real index behind a switchable outage, standing in for an external vector service.

    While `failing`, every call raises ConnectionError, as a client of an unreachable server does.
    While `writes_failing`, only writes do: the index answers queries but falls behind the database.
    """

    def __init__(self, inner: VectorIndex) -> None:
        self.inner = inner
        self.failing = False
        self.writes_failing = False

    upsert = _through("upsert", writes=True)
    upsert_data = _through("upsert_data", writes=True)
    update = _through("update", writes=True)
    delete = _through("delete", writes=True)
    reset = _through("reset", writes=True)
    delete_namespace = _through("delete_namespace", writes=True)
    query = _through("query", writes=False)
    fetch = _through("fetch", writes=False)
    range = _through("range", writes=False)
    info = _through("info", writes=False)
    list_namespaces = _through("list_namespaces", writes=False)
    # Not part of the port, but the app's lifespan opens the index it is given (see "needed changes").
    open = _through("open", writes=False)
    close = _through("close", writes=False)


async def demo_catalogue_index() -> EmbeddedVectorIndex:
    """The demo catalogue indexed as clipdex indexes it, in an in-memory embedded index keyed by slug:
    what the relevance measurements rank over."""
    index = EmbeddedVectorIndex(dimension=DIMENSION, index_type="HYBRID", embed=installed_embedder().embed)
    await index.open()
    rows = [
        {
            "id": item.slug,
            "owner": "demo",
            "title": item.title,
            "description": item.description,
            "tags": item.tags,
            "transcript": item.transcript,
            "visibility": item.visibility,
            "duration_seconds": item.duration_seconds,
            "created_at": datetime.now(UTC),
        }
        for item in load_demo_catalogue()
    ]
    await index.upsert_data([(row["id"], indexed_text(row), indexed_metadata(row)) for row in rows])
    return index
