"""Search through the HTTP API: modes, filters, visibility, pagination, validation, similar videos."""

from __future__ import annotations

import base64

from core.ranking import CatalogueSize
from core.vectors import EmbeddedVectorIndex, VectorRecord, tokenize
from tests.features.search_support import (
    SEARCH,
    TOPICS,
    add_topics,
    found,
    indexed,
    search,
    similar_url,
)
from tests.features.videos_support import (
    SUMMARY_FIELDS,
    add_video,
    assert_field_error,
    assert_problem,
    auth,
)

MODES = ("hybrid", "semantic", "keyword")


async def test_every_mode_finds_the_obviously_matching_video(client, sign_up):
    owner = await sign_up()
    ids = await add_topics(client, owner)
    await indexed(client)

    for query, topic, containing in [
        ("sourdough bread", "sourdough", {"sourdough", "baguette"}),
        ("kubernetes deployment", "kubernetes", {"kubernetes"}),
        ("chess openings", "chess", {"chess"}),
        ("marathon training", "marathon", {"marathon"}),
    ]:
        for mode in MODES:
            assert (await found(client, query, mode=mode))[0] == ids[topic], (query, mode)
        # Keyword search returns only the videos that contain the words.
        assert set(await found(client, query, mode="keyword")) == {ids[name] for name in containing}

    response = await search(client, "chess openings", limit=3)
    # The default mode is hybrid: the same search, so the second answer comes from the cache.
    hybrid = await search(client, "chess openings", mode="hybrid", limit=3)
    assert [response.headers["x-cache"], hybrid.headers["x-cache"]] == ["miss", "hit"]
    default = response.json()
    assert len(default["items"]) == 3
    assert set(default["items"][0]) == SUMMARY_FIELDS | {"score", "highlights"}
    assert default["items"][0]["title"] == TOPICS["chess"]["title"]
    assert default["next_cursor"]


async def test_keyword_finds_rare_codes_and_semantic_finds_paraphrases(client, sign_up):
    owner = await sign_up()
    ids = await add_topics(client, owner)
    await indexed(client)

    assert await found(client, "QX-7731", mode="keyword") == [ids["firmware"]]
    assert (await found(client, "QX-7731"))[0] == ids["firmware"]
    assert (await found(client, "qx 7731 flashing"))[0] == ids["firmware"]

    paraphrases = {
        "marathon": "endurance jogging schedule",
        "kubernetes": "orchestrating docker pods in the cloud",
        "watercolor": "artist brushes pigment onto paper",
        "chess": "grandmaster tactics",
    }
    for topic, query in paraphrases.items():
        video = TOPICS[topic]
        words = tokenize(" ".join([video["title"], video["description"], *video["tags"]]))
        assert not set(tokenize(query)) & set(words), f"{query!r} shares words with {topic}"
        assert (await found(client, query, mode="semantic"))[0] == ids[topic], query
        assert (await found(client, query))[0] == ids[topic], query
        # Without typo tolerance: with it, "cloud" is one typo from the watercolor video's "clouds".
        assert await found(client, query, mode="keyword", typo_tolerance="false") == []


async def test_filters_are_applied_in_the_index_before_the_limit(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    common = [
        (
            await add_video(
                client,
                owner,
                title=f"Sourdough bread baking, lesson {number}",
                description="Sourdough starter, dough, crust and crumb: bread baking step by step.",
                tags=["bread", "baking"],
                duration_seconds=60 * number,
            )
        )["id"]
        for number in range(1, 14)
    ]
    # Two of fifteen carry the tag, belong to someone else, run long, and rank below the others.
    rare = [
        (
            await add_video(
                client,
                other,
                title=f"Kitchen notebook {number}",
                description="Odds and ends from my kitchen; a word on bread too.",
                tags=["rare", "Bread"],
                duration_seconds=2000 + number,
            )
        )["id"]
        for number in range(2)
    ]
    await indexed(client)
    query = "sourdough bread baking"
    assert not set(rare) & set(await found(client, query, limit=10))

    for mode in MODES:
        assert set(await found(client, query, mode=mode, limit=2, tag="rare")) == set(rare), mode
    assert set(await found(client, query, limit=2, tag=" RARE ")) == set(rare)
    assert set(await found(client, query, limit=2, owner=other.id)) == set(rare)
    assert set(await found(client, query, limit=50, owner=owner.id)) == set(common)
    assert set(await found(client, query, limit=2, min_duration=2000)) == set(rare)
    assert set(await found(client, query, limit=50, max_duration=180)) == set(common[:3])
    assert set(await found(client, query, limit=50, min_duration=240, max_duration=300)) == set(common[3:5])
    assert set(await found(client, query, limit=50, tag="bread", max_duration=120)) == set(common[:2])
    assert await found(client, query, tag="rare", owner=owner.id) == []
    assert set(await found(client, query, limit=50, min_duration=300, max_duration=300)) == {common[4]}

    for params in ({"min_duration": 301, "max_duration": 300}, {"min_duration": 0}, {"max_duration": 86_401}):
        response = await search(client, query, **params)
        assert_field_error(response, next(iter(params)))


async def test_private_and_unlisted_videos_are_found_only_by_their_owner(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    crane = {"description": "Fold a paper crane step by step.", "tags": ["origami"]}
    public = (await add_video(client, owner, title="Folding origami cranes", **crane))["id"]
    unlisted = (
        await add_video(client, owner, title="Origami cranes from one sheet", visibility="unlisted", **crane)
    )["id"]
    private = (
        await add_video(client, owner, title="My origami crane practice", visibility="private", **crane)
    )["id"]
    others_private = (
        await add_video(client, other, title="Origami crane mobile", visibility="private", **crane)
    )["id"]
    await indexed(client)

    for mode in MODES:
        assert set(await found(client, "origami crane", mode=mode)) == {public}, mode
        assert set(await found(client, "origami crane", other, mode=mode)) == {public, others_private}
        assert set(await found(client, "origami crane", owner, mode=mode)) == {public, unlisted, private}
    assert set(await found(client, "origami crane", owner=owner.id)) == {public}
    assert set(await found(client, "origami crane", other, owner=owner.id)) == {public}
    assert set(await found(client, "origami crane", owner, tag="origami")) == {public, unlisted, private}


async def test_next_cursor_walks_through_every_result_once(client, sign_up):
    owner = await sign_up()
    for number, plant in enumerate(["fern", "cactus", "orchid", "monstera", "pothos", "ficus", "aloe"]):
        await add_video(
            client,
            owner,
            title=f"Houseplant care {number}: the {plant}",
            description=f"Light, water and soil for a happy {plant}.",
            tags=["houseplants"],
        )
    await indexed(client)

    for mode in ("hybrid", "keyword"):
        everything = await found(client, "houseplant care", mode=mode, limit=50)
        assert len(everything) == 7
        walked, sizes, cursor = [], [], None
        for _ in range(10):
            params = {"mode": mode, "limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await search(client, "houseplant care", **params)).json()
            walked += [item["id"] for item in page["items"]]
            sizes.append(len(page["items"]))
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sizes == [3, 3, 1]
        assert walked == everything

    def forged(payload: bytes) -> str:
        return base64.urlsafe_b64encode(payload).decode().rstrip("=")

    for cursor in ["not-a-cursor", forged(b'{"offset": -3}'), forged(b'{"offset": 100000}'), forged(b"[1]")]:
        assert_field_error(await search(client, "houseplant care", cursor=cursor), "cursor")


async def test_invalid_searches_are_400_naming_the_field(client):
    cases = [
        ({"q": ""}, "q"),
        ({"q": " \t  "}, "q"),
        ({"q": "a" * 501}, "q"),
        ({"q": "a" * 2001}, "q"),
        ({"q": "bread" + " " * 500 + "crust"}, "q"),  # the documented limit is on the query as sent
        ({"q": "bread\x00"}, "q"),
        ({"q": "bread\x1b[2Jcrust"}, "q"),
        ({"q": "bread", "limit": 0}, "limit"),
        ({"q": "bread", "limit": 51}, "limit"),
        ({"q": "bread", "limit": "ten"}, "limit"),
        ({"q": "bread", "mode": "foo"}, "mode"),
        ({"q": "bread", "owner": "someone"}, "owner"),
    ]
    for params, field in cases:
        body = assert_field_error(await client.get(SEARCH, params=params), field)
        assert body["type"] == "urn:clipdex:problem:validation-error"
    # A missing parameter is named in `errors` like an invalid one (core/errors.py).
    missing = assert_field_error(await client.get(SEARCH, params={"mode": "keyword"}), "q")
    assert missing["type"] == "urn:clipdex:problem:validation-error"
    assert missing["errors"][0]["message"] == "is required", missing

    # Runs of spaces are one space to the search, within the limit on the query as sent.
    for params in (
        {"q": "a" * 500},
        {"q": "bread" + " " * 490 + "crust"},
        {"q": "pasted\r\nbread\tcrust"},
        {"q": "bread", "limit": 50},
    ):
        response = await client.get(SEARCH, params=params)
        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "next_cursor": None, "corrected_query": None}


async def test_similar_videos_are_the_nearest_others_the_viewer_may_see(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    ids = await add_topics(client, owner)
    rye = await add_video(
        client,
        owner,
        title="Rye loaf with a sourdough starter",
        description="A dense rye bread, fermented overnight.",
        tags=["baking", "bread"],
        visibility="private",
    )
    await indexed(client)

    response = await client.get(similar_url(ids["sourdough"]))
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items[0]["id"] == ids["baguette"]
    assert {item["id"] for item in items} == set(ids.values()) - {ids["sourdough"]}
    assert [item["score"] for item in items] == sorted((item["score"] for item in items), reverse=True)
    assert set(items[0]) == SUMMARY_FIELDS | {"score"}

    top_two = (await client.get(similar_url(ids["sourdough"]), params={"limit": 2})).json()["items"]
    assert [item["id"] for item in top_two] == [item["id"] for item in items[:2]]
    # The owner also sees their private rye loaf, the nearest of all; the chess video never leads.
    as_owner = (await client.get(similar_url(ids["sourdough"]), headers=owner.headers)).json()["items"]
    assert [item["id"] for item in as_owner][:2] == [rye["id"], ids["baguette"]]
    chess_neighbours = (await client.get(similar_url(ids["chess"]))).json()["items"]
    assert ids["chess"] not in {item["id"] for item in chess_neighbours}

    for viewer in (None, other):
        assert_problem(await client.get(similar_url(rye["id"]), headers=auth(viewer)), 404)
    own = await client.get(similar_url(rye["id"]), headers=owner.headers)
    assert own.status_code == 200, own.text
    assert [item["id"] for item in own.json()["items"]][:2] == [ids["sourdough"], ids["baguette"]]
    assert_problem(await client.get(similar_url("00000000-0000-4000-8000-000000000000")), 404)
    for limit in (0, 51, "x"):
        assert_field_error(await client.get(similar_url(ids["sourdough"]), params={"limit": limit}), "limit")


async def test_tag_filter_takes_tags_with_quotes_and_backslashes_literally(client, sign_up):
    owner = await sign_up()
    tags = ["it's", 'the "best"', "c:\\dos\\", "a\\'b"]
    ids = {tag: (await add_video(client, owner, title="Bread", tags=[tag]))["id"] for tag in tags}
    await add_video(client, owner, title="Bread", tags=["a'b", "c:dos"])
    await indexed(client)

    for tag in tags:
        assert await found(client, "bread", tag=tag) == [ids[tag]], tag
    assert_field_error(await search(client, "bread", tag="""it's "best\""""), "tag")


async def test_hybrid_ranking_reads_the_catalogue_size_again_only_after_its_max_age():
    index = EmbeddedVectorIndex(dimension=2, index_type="DENSE")
    await index.upsert([VectorRecord("a", [1.0, 0.0])])
    remembered = CatalogueSize(index, max_age_seconds=3600)
    always_read = CatalogueSize(index, max_age_seconds=0)
    assert (await remembered(), await always_read()) == (1, 1)

    await index.upsert([VectorRecord("b", [0.0, 1.0])])

    assert await remembered() == 1
    assert await always_read() == 2
