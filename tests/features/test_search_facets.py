"""Search facets: tag and duration counts over the whole candidate set, under the visibility rules."""

from __future__ import annotations

from typing import Any

import httpx

from core.backends import build_vector_index
from tests.conftest import Account
from tests.features.search_support import BrokenIndex, indexed, register, search
from tests.features.videos_support import add_video, assert_field_error, serve_here, video_url

# title, tags, duration: every one says "bread" (the keyword query); durations sit on bucket edges.
BREAD = [
    ("Bread basics", ["baking", "bread"], 200),
    ("Bread scoring patterns", ["bread", "technique"], 299),
    ("Bread at altitude", ["bread", "altitude"], 300),
    ("Bread for a crowd", ["baking", "bread", "party"], 1200),
    ("An all-day bread bake", ["baking", "bread"], 3600),
]
SECRET = ("Secret bread of the house", ["bread", "secret"], 100)


async def bake(
    http: httpx.AsyncClient, owner: Account, recipes: list[tuple[str, list[str], int]], **extra: Any
):
    return [
        (await add_video(http, owner, title=title, tags=tags, duration_seconds=duration, **extra))["id"]
        for title, tags, duration in recipes
    ]


async def facets(http: httpx.AsyncClient, viewer: Account | None = None, **params: Any) -> dict[str, Any]:
    response = await search(http, "bread", viewer, mode="keyword", facets="tags,duration", **params)
    assert response.status_code == 200, response.text
    return response.json()


def tag_counts(body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(entry["value"], entry["count"]) for entry in body["facets"]["tags"]]


def bucket_counts(body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(entry["bucket"], entry["count"]) for entry in body["facets"]["duration"]]


async def test_facets_count_tags_and_duration_buckets_over_every_candidate(client, sign_up):
    owner = await sign_up()
    await bake(client, owner, BREAD)
    await add_video(client, owner, title="Chess openings", tags=["chess"], duration_seconds=600)
    await indexed(client)

    body = await facets(client, limit=1)

    assert len(body["items"]) == 1  # the page is one hit; the counts cover all five candidates
    assert body["facets"]["candidates"] == 5
    # Most frequent first, ties by value.
    assert tag_counts(body) == [("bread", 5), ("baking", 3), ("altitude", 1), ("party", 1), ("technique", 1)]
    # < 300 s, 300-1199 s, 1200-3599 s, >= 3600 s; ties keep the buckets' order.
    assert bucket_counts(body) == [
        ("under_5_min", 2),
        ("5_to_20_min", 1),
        ("20_to_60_min", 1),
        ("over_60_min", 1),
    ]
    assert body["facets"]["duration"][0] == {
        "bucket": "under_5_min",
        "count": 2,
        "min_duration": None,
        "max_duration": 299,
    }
    assert body["facets"]["duration"][3]["min_duration"] == 3600
    assert body["facets"]["duration"][3]["max_duration"] is None
    # Hybrid considers every video (the dense part ranks them all): the chess video is a candidate too.
    hybrid = (await search(client, "bread", facets="tags")).json()
    assert hybrid["facets"]["candidates"] == 6
    assert ("chess", 1) in [(entry["value"], entry["count"]) for entry in hybrid["facets"]["tags"]]
    assert "duration" not in hybrid["facets"]


async def test_choosing_a_facet_value_is_a_filter_with_as_many_hits_as_its_count(client, sign_up):
    owner = await sign_up()
    await bake(client, owner, BREAD)
    await indexed(client)
    body = await facets(client)

    for value, count in tag_counts(body):
        hits = (await facets(client, tag=value, limit=50))["items"]
        assert len(hits) == count, value
        assert all(value in hit["tags"] for hit in hits)
    for bucket in body["facets"]["duration"]:
        bounds = {name: bucket[name] for name in ("min_duration", "max_duration") if bucket[name] is not None}
        hits = (await facets(client, limit=50, **bounds))["items"]
        assert len(hits) == bucket["count"], bucket


async def test_facets_never_count_a_video_the_caller_may_not_see(client, sign_up):
    owner, keeper = await sign_up(), await sign_up()
    await bake(client, owner, BREAD)
    await bake(client, keeper, [SECRET], visibility="private")
    await bake(client, keeper, [("Unlisted bread", ["bread", "unlisted"], 100)], visibility="unlisted")
    await indexed(client)

    for viewer in (None, owner):
        body = await facets(client, viewer)
        assert body["facets"]["candidates"] == 5
        assert {"secret", "unlisted"}.isdisjoint(dict(tag_counts(body)))
        assert dict(tag_counts(body))["bread"] == 5
        assert dict(bucket_counts(body))["under_5_min"] == 2
    own = await facets(client, keeper)
    assert own["facets"]["candidates"] == 7  # search lists the caller's own videos of any visibility
    assert ("secret", 1) in tag_counts(own)
    assert ("unlisted", 1) in tag_counts(own)
    assert dict(tag_counts(own))["bread"] == 7
    assert dict(bucket_counts(own))["under_5_min"] == 4


async def test_facets_follow_the_database_when_the_index_is_behind(serve, make_settings):
    # The index still has the video as public; the database says private: neither hits nor counts show it.
    index = BrokenIndex(build_vector_index(make_settings()))
    async with serve():
        pass  # empties the tables; the app below must be the only one relaying the outbox
    async with serve_here(make_settings, vector_index=index) as http:
        owner = await register(http)
        ids = await bake(http, owner, BREAD)
        await indexed(http)
        index.writes_failing = True
        hidden = await http.patch(video_url(ids[0]), json={"visibility": "private"}, headers=owner.headers)
        assert hidden.status_code == 200, hidden.text
        body = await facets(http)
        own = await facets(http, owner)

    assert ids[0] not in {hit["id"] for hit in body["items"]}
    assert body["facets"]["candidates"] == 4
    assert dict(tag_counts(body))["bread"] == 4
    assert dict(tag_counts(body))["baking"] == 2
    assert dict(bucket_counts(body))["under_5_min"] == 1
    assert own["facets"]["candidates"] == 5


async def test_at_most_twenty_tags_most_frequent_first_then_by_value(client, sign_up):
    owner = await sign_up()
    many = [f"t{n:02d}" for n in range(1, 20)]
    await bake(client, owner, [("Bread of many tags", ["bread", *many], 600)])
    await bake(client, owner, [("Bread of few tags", ["bread", "z1", "z2", "z3"], 600)])
    await indexed(client)

    counts = tag_counts(await facets(client))

    assert len(counts) == 20
    assert counts[0] == ("bread", 2)
    assert counts[1:] == [(tag, 1) for tag in many]  # z1-z3 rank after t01-t19 and are cut


async def test_facets_are_asked_for_comma_separated_or_repeated_and_only_then_returned(client, sign_up):
    owner = await sign_up()
    await bake(client, owner, BREAD)
    await indexed(client)

    plain = await search(client, "bread", mode="keyword")
    comma = await search(client, "bread", mode="keyword", facets="duration,tags")
    repeated = await search(client, "bread", mode="keyword", facets=["tags", "duration"])
    tags_only = await search(client, "bread", mode="keyword", facets="tags")

    assert "facets" not in plain.json()
    assert comma.json() == repeated.json()
    assert set(comma.json()["facets"]) == {"candidates", "tags", "duration"}
    assert set(tags_only.json()["facets"]) == {"candidates", "tags"}
    # Each asks a different question, so none is served another's cached page.
    assert [r.headers["x-cache"] for r in (plain, comma, tags_only)] == ["miss", "miss", "miss"]
    assert repeated.headers["x-cache"] == "hit"


async def test_an_unknown_facet_is_a_400_naming_the_parameter(client):
    for value in (
        "colour",
        "tags,colour",
        "tags;duration",
        "tags,,duration",
        "",
        ["tags", "duration", "tags"],
    ):
        assert_field_error(await search(client, "bread", facets=value), "facets")


async def test_the_openapi_document_states_the_facets_parameter_and_field(client):
    document = (await client.get("/schema/openapi.json")).json()
    operation = document["paths"]["/api/v1/search"]["get"]
    (facets,) = [parameter for parameter in operation["parameters"] if parameter["name"] == "facets"]
    assert facets["schema"]["items"]["pattern"] == "^(tags|duration)(,(tags|duration))*$"
    assert "under_5_min: < 300 s" in facets["description"]
    schemas = document["components"]["schemas"]
    assert "facets" in schemas["SearchPage"]["properties"]
    assert set(schemas["SearchFacets"]["properties"]) == {"candidates", "tags", "duration"}
    assert schemas["SearchFacets"]["required"] == ["candidates"]
