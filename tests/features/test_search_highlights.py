"""Search highlights: snippets of each hit's title, description and transcript with the query's words marked."""

from __future__ import annotations

import html
import re

from core.highlights import MAX_LENGTH, MAX_MARKER_LENGTH, MIN_LENGTH
from core.vectors.sparse import tokenize
from tests.features.search_support import add_demo_videos, add_topics, demo_video, indexed, search
from tests.features.videos_support import add_video, assert_field_error

DEMO = (
    "tempering-chocolate-seed-method",
    "sourdough-starter-maintenance",
    "speed-of-light-microwave-chocolate",
)


async def hits(client, q: str, **params) -> dict[str, dict]:
    response = await search(client, q, **params)
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["items"]}


def check_consistent(
    highlight: dict, field_text: str, pre: str = "<mark>", post: str = "</mark>"
) -> list[str]:
    """The snippet is a word-bounded piece of the field; `marked` is it escaped with markers around
    exactly the matches; the matched words, lower-cased."""
    snippet = highlight["snippet"]
    at = field_text.find(snippet)
    assert at >= 0, (snippet, field_text)
    before, after = field_text[at - 1 : at], field_text[at + len(snippet) : at + len(snippet) + 1]
    assert not (before.isalnum() and snippet[:1].isalnum()), "cut inside a word at the start"
    assert not (after.isalnum() and snippet[-1:].isalnum()), "cut inside a word at the end"
    rebuilt, position = [], 0
    for match in highlight["matches"]:
        start, end = match["start"], match["start"] + match["length"]
        rebuilt += [html.escape(snippet[position:start]), pre, html.escape(snippet[start:end]), post]
        position = end
    rebuilt.append(html.escape(snippet[position:]))
    assert highlight["marked"] == "".join(rebuilt)
    return [snippet[m["start"] : m["start"] + m["length"]].lower() for m in highlight["matches"]]


async def test_keyword_hits_mark_the_words_bm25_matched(client, sign_up):
    owner = await sign_up()
    ids = await add_demo_videos(client, owner, *DEMO)
    await indexed(client)

    found = await hits(client, "tempering chocolate", mode="keyword")
    tempering = found[ids["tempering-chocolate-seed-method"]]["highlights"]
    video = demo_video("tempering-chocolate-seed-method")
    assert check_consistent(tempering["title"], video["title"]) == ["tempering", "chocolate"]
    assert tempering["title"]["marked"].startswith("<mark>Tempering</mark> <mark>Chocolate</mark> With")
    assert set(check_consistent(tempering["description"], video["description"])) == {"chocolate"}
    assert tempering["transcript"] is None  # this demo video has no transcript

    # The microwave video has "chocolate" in its title and its transcript: an excerpt around it.
    microwave = found[ids["speed-of-light-microwave-chocolate"]]["highlights"]
    transcript = demo_video("speed-of-light-microwave-chocolate")["transcript"]
    assert "chocolate" in check_consistent(microwave["transcript"], transcript)
    assert len(microwave["transcript"]["snippet"]) <= 160


async def test_matches_follow_bm25_tokens_case_and_word_boundaries(client, sign_up):
    owner = await sign_up()
    video = await add_video(
        client,
        owner,
        title="Crème brûlée <b>& Tempering</b>: TEMPERING_chocolate, tempered chocolates",
        description="",
    )
    await indexed(client)
    found = await hits(client, "Tempering chocolate", mode="keyword", highlight_pre="[[", highlight_post="]]")
    title = found[video["id"]]["highlights"]["title"]
    words = check_consistent(title, video["title"], "[[", "]]")
    # "_" separates words, as in BM25; "tempered" and "chocolates" are other words (no stemming).
    assert words == ["tempering", "tempering", "chocolate"]
    assert set(words) <= set(tokenize("Tempering chocolate"))
    assert "&lt;b&gt;&amp; [[Tempering]]&lt;/b&gt;" in title["marked"]
    assert found[video["id"]]["highlights"]["description"] == {"snippet": "", "marked": "", "matches": []}


async def test_snippet_length_is_configurable_and_cut_at_word_boundaries(client, sign_up):
    owner = await sign_up()
    ids = await add_demo_videos(client, owner, "sourdough-starter-maintenance")
    await indexed(client)
    transcript = demo_video("sourdough-starter-maintenance")["transcript"]
    for length in (MIN_LENGTH, 60, 300):
        found = await hits(client, "hooch fridge", mode="keyword", highlight_length=length)
        excerpt = found[ids["sourdough-starter-maintenance"]]["highlights"]["transcript"]
        assert len(excerpt["snippet"]) <= length
        assert set(check_consistent(excerpt, transcript)) <= {"hooch", "fridge"}
        assert excerpt["matches"]
    # The best window holds both words when one fits them: the description has "fridge" near "hooch".
    found = await hits(client, "hooch fridge", mode="keyword", highlight_length=120)
    description = found[ids["sourdough-starter-maintenance"]]["highlights"]["description"]
    assert set(check_consistent(description, demo_video("sourdough-starter-maintenance")["description"])) == {
        "hooch",
        "fridge",
    }


async def test_a_semantic_hit_with_no_shared_word_gets_a_plain_leading_snippet(client, sign_up):
    owner = await sign_up()
    ids = await add_topics(client, owner, "marathon", "chess")
    await indexed(client)
    found = await hits(client, "endurance jogging schedule", mode="semantic", highlight_length=40)
    marathon = found[ids["marathon"]]["highlights"]
    assert marathon["title"] == {
        "snippet": "Training plan for your first marathon",
        "marked": "Training plan for your first marathon",
        "matches": [],
    }
    description = marathon["description"]
    assert description["matches"] == []
    assert description["marked"] == html.escape(description["snippet"])
    assert "Build weekly mileage, long runs on".startswith(description["snippet"])
    assert marathon["transcript"] is None


async def test_corrected_words_are_marked_too(client, sign_up):
    owner = await sign_up()
    ids = await add_demo_videos(client, owner, *DEMO)
    await indexed(client)
    response = await search(client, "temperign chocolate", mode="keyword")
    assert response.json()["corrected_query"] == "tempering chocolate"
    title = next(i for i in response.json()["items"] if i["id"] == ids["tempering-chocolate-seed-method"])
    assert re.match(r"<mark>Tempering</mark> <mark>Chocolate</mark>", title["highlights"]["title"]["marked"])


async def test_bad_highlight_parameters_are_400_naming_them(client):
    cases = [
        ({"highlight_length": MIN_LENGTH - 1}, "highlight_length"),
        ({"highlight_length": MAX_LENGTH + 1}, "highlight_length"),
        ({"highlight_length": "long"}, "highlight_length"),
        ({"highlight_pre": "x" * (MAX_MARKER_LENGTH + 1)}, "highlight_pre"),
        ({"highlight_post": "x" * (MAX_MARKER_LENGTH + 1)}, "highlight_post"),
        ({"typo_tolerance": "maybe"}, "typo_tolerance"),
    ]
    for params, field in cases:
        assert_field_error(await search(client, "bread", **params), field)
    for params in ({"highlight_length": MIN_LENGTH}, {"highlight_length": MAX_LENGTH}, {"highlight_pre": ""}):
        assert (await search(client, "bread", **params)).status_code == 200


async def test_highlight_parameters_are_documented_with_their_bounds(client):
    schema = (await client.get("/schema/openapi.json")).json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/search"]["get"]["parameters"]}
    length = parameters["highlight_length"]["schema"]
    assert (length["minimum"], length["maximum"]) == (MIN_LENGTH, MAX_LENGTH)
    assert parameters["highlight_pre"]["schema"]["maxLength"] == MAX_MARKER_LENGTH
    assert parameters["typo_tolerance"]["description"]
