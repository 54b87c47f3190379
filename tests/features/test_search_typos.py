"""Typo tolerance: misspelt words of keyword and hybrid queries are matched to the catalogue's words."""

from __future__ import annotations

import asyncio

from core.vocabulary import Document, Vocabulary, record
from tests.features.search_support import add_demo_videos, found, indexed, register, search
from tests.features.videos_support import VIDEOS, add_video, eventually, serve_here

DEMO = (
    "tempering-chocolate-seed-method",
    "sourdough-starter-maintenance",
    "sous-vide-eggs-seven-temperatures",
)


async def corrected_query(client, q: str, viewer=None, **params) -> str | None:
    response = await search(client, q, viewer, **params)
    assert response.status_code == 200, response.text
    return response.json()["corrected_query"]


async def test_a_misspelt_word_is_corrected_for_keyword_and_hybrid_search(client, sign_up):
    owner = await sign_up()
    ids = await add_demo_videos(client, owner, *DEMO)
    await indexed(client)
    tempering = ids["tempering-chocolate-seed-method"]

    for mode in ("keyword", "hybrid"):
        assert await corrected_query(client, "temperign chocolate", mode=mode) == "tempering chocolate"
        assert (await found(client, "temperign", mode=mode))[0] == tempering
    # A swap, a dropped and a doubled letter; two typos from 9 letters.
    assert await corrected_query(client, "sourdoguh starter", mode="keyword") == "sourdough starter"
    assert await corrected_query(client, "Sourdogh", mode="keyword") == "sourdough"
    assert await corrected_query(client, "chocollate", mode="keyword") == "chocolate"
    assert await corrected_query(client, "tmepreing", mode="keyword") == "tempering"
    # Known words, and no match within the allowed typos: nothing to say.
    assert await corrected_query(client, "tempering chocolate", mode="keyword") is None
    assert await corrected_query(client, "xylophone", mode="keyword") is None


async def test_what_is_never_corrected(client, sign_up):
    owner = await sign_up()
    await add_demo_videos(client, owner, *DEMO)
    await add_video(client, owner, title="Flashing the QX7731 board")
    await indexed(client)
    # Under 5 letters no typo is allowed ("egg" is known; "eggz" is 4 letters).
    assert await corrected_query(client, "eggz", mode="keyword") is None
    # 5-8 letters allow one typo, not two.
    assert await corrected_query(client, "chcoolate", mode="keyword") == "chocolate"  # a swap: one typo
    assert await corrected_query(client, "chcoolatte", mode="keyword") == "chocolate"  # 10 letters: two
    assert await corrected_query(client, "tmepring", mode="keyword") is None  # 8 letters, two typos
    # Words with digits are codes: never corrected.
    assert await corrected_query(client, "QX7732", mode="keyword") is None
    # Semantic search reads meaning, not words; and typo_tolerance=false turns it off.
    assert await corrected_query(client, "temperign", mode="semantic") is None
    assert await corrected_query(client, "temperign", mode="keyword", typo_tolerance="false") is None
    assert await found(client, "temperign", mode="keyword", typo_tolerance="false") == []


async def test_the_vocabulary_follows_the_catalogue(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    video = await add_video(client, owner, title="Brewing with a zymurgist", description="Mead and cider.")
    await indexed(client)
    assert await corrected_query(client, "zymurgistt", mode="keyword") == "zymurgist"

    # A private video's words are not offered to others (they could learn that it exists)...
    change = await client.patch(
        f"{VIDEOS}/{video['id']}", json={"visibility": "private"}, headers=owner.headers
    )
    assert change.status_code == 200, change.text
    await indexed(client)
    assert await corrected_query(client, "zymurgistt", other, mode="keyword") is None
    # ...but its owner still finds it by the words typed: BM25 keeps them beside the corrections.
    assert (await found(client, "zymurgist", owner, mode="keyword")) == [video["id"]]

    await client.patch(f"{VIDEOS}/{video['id']}", json={"visibility": "public"}, headers=owner.headers)
    await indexed(client)
    assert await corrected_query(client, "zymurgistt", mode="keyword") == "zymurgist"
    assert (await client.delete(f"{VIDEOS}/{video['id']}", headers=owner.headers)).status_code == 204
    await indexed(client)
    assert await corrected_query(client, "zymurgistt", mode="keyword") is None


async def test_every_worker_sees_one_vocabulary(client, make_settings):
    """The vocabulary lives in the database: what one worker's indexer records, every worker's copy
    picks up within a second (here: a second copy in this process, and a record as another worker's
    indexer would write it)."""
    async with serve_here(make_settings) as http:
        owner = await register(http)
        await add_demo_videos(http, owner, "tempering-chocolate-seed-method")
        await indexed(http)
        other_worker = await Vocabulary().current()
        assert other_worker.typos.closest("temperign") == "tempering"

        document = Document("elsewhere", owner.id, "public", "Zymurgy basics", ["brewing"], "Zymurgy basics")
        await record([document], [])

        async def seen() -> bool:
            return await corrected_query(http, "zymurgyy", mode="keyword") == "zymurgy"

        await eventually(seen, within=5)
        await record([], ["elsewhere"])
        await asyncio.sleep(1.1)  # past its refresh interval
        assert (await other_worker.current()).typos.closest("zymurgyy") is None
