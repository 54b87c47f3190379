"""As-you-type suggestions: titles and tags holding the typed words, the last one as a prefix."""

from __future__ import annotations

from features.search.search import SUGGEST_MAX_LIMIT, SUGGEST_MAX_QUERY
from tests.features.search_support import SEARCH, add_demo_videos, indexed
from tests.features.videos_support import VIDEOS, add_video, assert_field_error, auth

SUGGEST = f"{SEARCH}/suggest"
DEMO = (
    "tempering-chocolate-seed-method",
    "sous-vide-eggs-seven-temperatures",
    "hot-composting-eighteen-days",
    "sourdough-starter-maintenance",
    "speed-of-light-microwave-chocolate",
)


async def suggest(client, q: str, viewer=None, **params) -> list[dict]:
    response = await client.get(SUGGEST, params={"q": q, **params}, headers=auth(viewer))
    assert response.status_code == 200, response.text
    return response.json()["items"]


def marked_parts(item: dict) -> list[str]:
    return [item["text"][m["start"] : m["start"] + m["length"]] for m in item["matches"]]


async def test_titles_and_tags_that_start_with_the_typed_words_come_first(client, sign_up):
    owner = await sign_up()
    ids = await add_demo_videos(client, owner, *DEMO)
    await indexed(client)

    items = await suggest(client, "tempe")
    texts = [item["text"] for item in items]
    # Titles starting with "tempe" before titles holding a word that starts with it.
    assert texts[0] == "Tempering Chocolate With the Seed Method (No Marble Slab Needed)"
    assert set(texts[1:]) == {
        "Sous Vide Eggs at Seven Temperatures, Side by Side",
        "Hot Composting in Eighteen Days: Turning, Temperature and Troubleshooting",
    }
    first = items[0]
    assert first["kind"] == "title"
    assert first["video_id"] == ids["tempering-chocolate-seed-method"]
    assert first["video_count"] == 1
    assert first["marked"].startswith("<mark>Tempe</mark>ring Chocolate")
    assert marked_parts(first) == ["Tempe"]

    # Tags: "chocolate" is a tag of one video and a title word of two; the tag comes first.
    items = await suggest(client, "choc")
    assert (items[0]["kind"], items[0]["text"], items[0]["video_id"]) == ("tag", "chocolate", None)
    assert {item["text"] for item in items[1:]} == {
        "Tempering Chocolate With the Seed Method (No Marble Slab Needed)",
        "Measuring the Speed of Light With a Microwave and a Chocolate Bar",
    }
    # Earlier words are whole words; the last is a prefix.
    items = await suggest(client, "chocolate wi")
    assert items[0]["text"].startswith("Tempering Chocolate With")
    assert marked_parts(items[0]) == ["Chocolate", "Wi"]
    assert await suggest(client, "zebra") == []


async def test_typos_are_tolerated(client, sign_up):
    owner = await sign_up()
    await add_demo_videos(client, owner, *DEMO)
    await indexed(client)
    # An earlier word one typo away; a last word of 5+ letters that starts nothing, one typo away.
    items = await suggest(client, "sourdoguh star")
    assert items[0]["text"].startswith("Keeping Your Sourdough Starter")
    assert marked_parts(items[0]) == ["Sourdough", "Star"]
    items = await suggest(client, "chocla")
    assert {item["text"] for item in items} >= {"chocolate"}
    assert "<mark>chocola</mark>te" in {item["marked"] for item in items}
    # Under 5 letters a prefix must match as typed.
    assert await suggest(client, "chx") == []


async def test_only_videos_the_caller_may_see(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    public = await add_video(client, owner, title="Quokka photography at dawn", tags=["quokkas"])
    private = await add_video(
        client, owner, title="Quokka census notes", tags=["quokka census"], visibility="private"
    )
    unlisted = await add_video(client, owner, title="Quokka outtakes", visibility="unlisted")
    await indexed(client)

    anonymous = {item["text"] for item in await suggest(client, "quok")}
    assert anonymous == {"Quokka photography at dawn", "quokkas"}
    assert {item["text"] for item in await suggest(client, "quok", other)} == anonymous
    mine = {item["text"]: item for item in await suggest(client, "quok", owner)}
    assert set(mine) == anonymous | {"Quokka census notes", "quokka census", "Quokka outtakes"}
    assert mine["Quokka census notes"]["video_id"] == private["id"]
    assert mine["Quokka outtakes"]["video_id"] == unlisted["id"]

    # A video made private leaves others' suggestions once its change is indexed.
    change = await client.patch(
        f"{VIDEOS}/{public['id']}", json={"visibility": "private"}, headers=owner.headers
    )
    assert change.status_code == 200, change.text
    await indexed(client)
    assert await suggest(client, "quok") == []


async def test_limit_and_markers(client, sign_up):
    owner = await sign_up()
    for number in range(5):
        await add_video(client, owner, title=f"Lantern making, part {number}")
    await indexed(client)
    assert len(await suggest(client, "lant")) == 5
    items = await suggest(client, "lant", limit=2, highlight_pre="[", highlight_post="]")
    assert len(items) == 2
    assert items[0]["marked"].startswith("[Lant]ern making, part ")


async def test_bad_input_is_400_naming_the_field(client):
    cases = [
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "a" * (SUGGEST_MAX_QUERY + 1)}, "q"),
        ({}, "q"),
        ({"q": "tempe", "limit": 0}, "limit"),
        ({"q": "tempe", "limit": SUGGEST_MAX_LIMIT + 1}, "limit"),
        ({"q": "tempe", "limit": "eight"}, "limit"),
        ({"q": "tempe", "highlight_pre": "x" * 51}, "highlight_pre"),
    ]
    for params, field in cases:
        assert_field_error(await client.get(SUGGEST, params=params), field)
    assert (await client.get(SUGGEST, params={"q": "a" * SUGGEST_MAX_QUERY})).status_code == 200
    assert (await client.get(SUGGEST, params={"q": "x", "limit": SUGGEST_MAX_LIMIT})).status_code == 200


async def test_suggest_is_documented_with_its_bounds(client):
    operation = (await client.get("/schema/openapi.json")).json()["paths"]["/api/v1/search/suggest"]["get"]
    assert operation["summary"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["limit"]["schema"]["maximum"] == SUGGEST_MAX_LIMIT
    assert str(SUGGEST_MAX_QUERY) in parameters["q"]["description"]
