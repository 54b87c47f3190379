"""GraphQL at /graphql on every backend: queries and mutations on REST's rules, visibility, errors,
batching (SQL counted on the engine), the limits, GET, introspection, and schema.graphql."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from piccolo.engine.base import Engine

from app import build_graphql_schema
from core.graphql import MAX_ALIASES, MAX_DEPTH, schema_document
from features.videos.videos import Video
from tests.conftest import ROOT

VIDEO = {"title": "Tempering chocolate", "url": "https://media.example.com/t.mp4", "duration_seconds": 540}
VALIDATION = "urn:clipdex:problem:validation-error"


async def gql(client, query: str, variables: dict | None = None, account=None) -> dict[str, Any]:
    response = await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers=account.headers if account else {},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def add_video(client, account, **fields) -> str:
    response = await client.post("/api/v1/videos", json={**VIDEO, **fields}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def codes(answer: dict) -> list[tuple[str, str | None]]:
    return [(e["extensions"]["code"], e["extensions"].get("field")) for e in answer.get("errors", [])]


async def test_accounts_through_graphql(client, sign_up):
    registered = await gql(
        client,
        "mutation($i: RegisterInput!) { register(input: $i) { username email } }",
        {"i": {"email": "ada@example.com", "username": "ada_l", "password": "correct-horse-battery"}},
    )
    assert registered == {"data": {"register": {"username": "ada_l", "email": None}}}
    # The REST rules and messages: a taken name is a conflict, a bad password names the field.
    taken = await gql(
        client,
        "mutation($i: RegisterInput!) { register(input: $i) { username } }",
        {"i": {"email": "ada2@example.com", "username": "ADA_L", "password": "correct-horse-battery"}},
    )
    assert codes(taken) == [("urn:clipdex:problem:conflict", "username")]
    weak = await gql(
        client,
        'mutation { register(input: {email: "b@example.com", username: "bob", password: "1234567"}) { id } }',
    )
    assert codes(weak) == [(VALIDATION, "password")]
    assert weak["data"] is None

    login = await gql(
        client, 'mutation { login(login: "ada_l", password: "correct-horse-battery") { accessToken } }'
    )
    token = login["data"]["login"]["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    wrong = await gql(
        client, 'mutation { login(login: "ada_l", password: "nope-nope-nope") { accessToken } }'
    )
    assert codes(wrong) == [("urn:clipdex:problem:unauthorized", None)]

    me = await client.post("/graphql", json={"query": "{ me { username email } }"}, headers=headers)
    assert me.json() == {"data": {"me": {"username": "ada_l", "email": "ada@example.com"}}}
    assert (await gql(client, "{ me { username } }")) == {"data": {"me": None}}
    changed = await client.post(
        "/graphql",
        json={"query": 'mutation { updateMe(input: {displayName: " Ada "}) { displayName } }'},
        headers=headers,
    )
    assert changed.json()["data"] == {"updateMe": {"displayName": "Ada"}}
    no_current = await client.post(
        "/graphql",
        json={"query": 'mutation { updateMe(input: {password: "a-new-long-secret"}) { id } }'},
        headers=headers,
    )
    assert codes(no_current.json()) == [(VALIDATION, "currentPassword")]
    ada_id = (await client.get("/api/v1/users/me", headers=headers)).json()["id"]
    other = await gql(client, "query($id: ID!) { user(id: $id) { username email } }", {"id": ada_id})
    assert other["data"] == {"user": {"username": "ada_l", "email": None}}
    assert codes(await gql(client, '{ user(id: "nope") { id } }')) == [(VALIDATION, "id")]

    out = await client.post("/graphql", json={"query": "mutation { logout }"}, headers=headers)
    assert out.json() == {"data": {"logout": True}}
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
    anonymous = await gql(client, "mutation { logout }")
    assert codes(anonymous) == [("urn:clipdex:problem:unauthorized", None)]

    account = await sign_up()
    wrong_password = await gql(client, 'mutation { deleteMe(password: "not-it-at-all") }', account=account)
    assert codes(wrong_password) == [(VALIDATION, "password")]
    deleted = await gql(client, f'mutation {{ deleteMe(password: "{account.password}") }}', account=account)
    assert deleted == {"data": {"deleteMe": True}}
    assert (await client.get(f"/api/v1/users/{account.id}")).status_code == 404


async def test_videos_through_graphql_follow_the_rest_rules(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    created = await gql(
        client,
        "mutation($i: VideoInput!) { createVideo(input: $i) { id title tags owner { username } likedByMe } }",
        {
            "i": {
                **{"title": "  Bread  ", "url": VIDEO["url"], "durationSeconds": 60},
                "tags": ["Baking", "baking"],
            }
        },
        owner,
    )
    video = created["data"]["createVideo"]
    assert video["title"] == "Bread"
    assert video["tags"] == ["baking"]
    assert video["owner"] == {"username": owner.username}
    assert video["likedByMe"] is False
    # The REST body's rules, naming the field as GraphQL spells it.
    bad = await gql(
        client,
        'mutation { createVideo(input: {title: "x", url: "ftp://a", durationSeconds: 60}) { id } }',
        account=owner,
    )
    assert codes(bad) == [(VALIDATION, "url")]
    assert codes(
        await gql(
            client,
            'mutation { createVideo(input: {title: "x", url: "https://a.example/v", durationSeconds: 5}) { id } }',
        )
    ) == [("urn:clipdex:problem:unauthorized", None)]

    vid = video["id"]
    forbidden = await gql(
        client, f'mutation {{ updateVideo(id: "{vid}", input: {{title: "Mine"}}) {{ id }} }}', account=other
    )
    assert codes(forbidden) == [("urn:clipdex:problem:forbidden", None)]
    updated = await gql(
        client,
        f'mutation {{ updateVideo(id: "{vid}", input: {{thumbnailUrl: null, visibility: "unlisted"}}) {{ visibility thumbnailUrl }} }}',
        account=owner,
    )
    assert updated["data"]["updateVideo"] == {"visibility": "unlisted", "thumbnailUrl": None}
    assert codes(
        await gql(
            client,
            f'mutation {{ updateVideo(id: "{vid}", input: {{visibility: "secret"}}) {{ id }} }}',
            account=owner,
        )
    ) == [(VALIDATION, "visibility")]

    liked = await gql(client, f'mutation {{ like(id: "{vid}") {{ liked likeCount }} }}', account=other)
    assert liked["data"]["like"] == {"liked": True, "likeCount": 1}
    again = await gql(client, f'mutation {{ like(id: "{vid}") {{ likeCount }} }}', account=other)
    assert again["data"]["like"] == {"likeCount": 1}
    view = await gql(client, f'mutation {{ recordView(id: "{vid}") }}')
    assert view == {"data": {"recordView": True}}
    mine = await gql(
        client,
        "{ me { likes(first: 5) { edges { node { id likedByMe } } pageInfo { hasNextPage } } } }",
        account=other,
    )
    assert mine["data"]["me"]["likes"] == {
        "edges": [{"node": {"id": vid, "likedByMe": True}}],
        "pageInfo": {"hasNextPage": False},
    }
    unliked = await gql(client, f'mutation {{ unlike(id: "{vid}") {{ liked likeCount }} }}', account=other)
    assert unliked["data"]["unlike"] == {"liked": False, "likeCount": 0}

    gone = await gql(client, f'mutation {{ deleteVideo(id: "{vid}") }}', account=owner)
    assert gone == {"data": {"deleteVideo": True}}
    assert (await client.get(f"/api/v1/videos/{vid}")).status_code == 404
    missing = await gql(client, f'mutation {{ like(id: "{vid}") {{ liked }} }}', account=other)
    assert codes(missing) == [("urn:clipdex:problem:not-found", None)]


async def test_visibility_matrix_is_rests(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    ids = {
        v: await add_video(client, owner, title=v, visibility=v) for v in ("public", "unlisted", "private")
    }
    listed = "query($o: ID) { videos(filter: {owner: $o}) { edges { node { title } } } }"
    for viewer in (None, owner, other):
        for visibility, video_id in ids.items():
            rest = await client.get(f"/api/v1/videos/{video_id}", headers=viewer.headers if viewer else {})
            answer = await gql(
                client, "query($id: ID!) { video(id: $id) { title } }", {"id": video_id}, viewer
            )
            visible = visibility != "private" or viewer is owner
            assert (answer["data"]["video"] is not None) is visible, (viewer, visibility)
            assert (rest.status_code == 200) is visible, (viewer, visibility)
            assert "errors" not in answer  # hidden and missing look the same: null
        rest_list = await client.get(
            f"/api/v1/videos?owner={owner.id}", headers=viewer.headers if viewer else {}
        )
        answer = await gql(client, listed, {"o": owner.id}, viewer)
        titles = [edge["node"]["title"] for edge in answer["data"]["videos"]["edges"]]
        assert titles == [item["title"] for item in rest_list.json()["items"]], viewer
    assert titles == ["public"]
    # A user's videos are their public ones, to anyone; likes are the viewer's own only.
    profile = await gql(
        client,
        "query($id: ID!) { user(id: $id) { videos { edges { node { title } } } likes { edges { cursor } } } }",
        {"id": owner.id},
        other,
    )
    assert profile["data"]["user"]["videos"]["edges"] == [{"node": {"title": "public"}}]
    assert profile["data"]["user"]["likes"] is None  # a partial failure: the rest of the data came back
    assert codes(profile) == [("urn:clipdex:problem:forbidden", None)]
    assert profile["errors"][0]["path"] == ["user", "likes"]


async def test_pages_walk_the_rest_cursors(client, sign_up):
    owner = await sign_up()
    for n in range(5):
        await add_video(client, owner, title=f"v{n}")
    page = "query($after: String) { videos(first: 2, after: $after) { edges { node { title } cursor } pageInfo { hasNextPage endCursor } } }"
    titles, after = [], None
    for _ in range(3):
        answer = (await gql(client, page, {"after": after}))["data"]["videos"]
        titles += [edge["node"]["title"] for edge in answer["edges"]]
        after = answer["pageInfo"]["endCursor"]
        assert after == answer["edges"][-1]["cursor"]
        if not answer["pageInfo"]["hasNextPage"]:
            break
    assert titles == ["v4", "v3", "v2", "v1", "v0"]
    # An edge's cursor continues after it, and REST takes it too.
    first = (await gql(client, page, {"after": None}))["data"]["videos"]["edges"][0]["cursor"]
    rest = await client.get("/api/v1/videos", params={"limit": 1, "cursor": first})
    assert [item["title"] for item in rest.json()["items"]] == ["v3"]
    assert codes(await gql(client, page, {"after": "bogus"})) == [(VALIDATION, "after")]
    assert codes(await gql(client, '{ videos(sort: "loudest") { edges { cursor } } }')) == [
        (VALIDATION, "sort")
    ]
    assert codes(await gql(client, "{ videos(first: 0) { edges { cursor } } }")) == [(VALIDATION, "first")]


def _count_queries(engine: Engine) -> list[str]:
    """Every statement the engine runs from now on, through Piccolo or a prepared read."""
    statements: list[str] = []
    for name in ("run_querystring", "fetch"):
        original = getattr(engine, name, None)
        if original is None:
            continue

        async def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            statement = str(args[0])
            # The background jobs' statements: the indexing relay's polls and the view flush's claims.
            if '"outbox"' not in statement and '"counter_claims"' not in statement:
                statements.append(statement[:200])
            return await _original(*args, **kwargs)

        setattr(engine, name, counted)
    return statements


async def indexed(client) -> None:
    for _ in range(200):
        ready = (await client.get("/ready")).json()
        if ready["dependencies"]["search_index"]["status"] == "ok":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the index never caught up: {ready}")


@pytest.mark.parametrize("page_size", [5, 50])
async def test_a_page_with_owners_and_likes_takes_a_fixed_number_of_queries(client, sign_up, page_size):
    owners = [await sign_up() for _ in range(3)]
    viewer = await sign_up()
    for n in range(page_size):
        await add_video(client, owners[n % 3], title=f"v{n}")
    await indexed(client)  # so that the indexer's reads are not counted with the request's
    statements = _count_queries(Video._meta.db)
    answer = await gql(
        client,
        "query($n: Int!) { videos(first: $n) { edges { node"
        " { title owner { username } likedByMe similar(first: 2) { id } } } } }",
        {"n": page_size},
        viewer,
    )
    engine = Video._meta.db
    for name in ("run_querystring", "fetch"):
        engine.__dict__.pop(name, None)

    assert len(answer["data"]["videos"]["edges"]) == page_size
    assert {edge["node"]["owner"]["username"] for edge in answer["data"]["videos"]["edges"]} == {
        o.username for o in owners
    }
    assert all(len(edge["node"]["similar"]) == 2 for edge in answer["data"]["videos"]["edges"])
    # The viewer's token (1), the page (1), the owners (1), the likes (1), the similar videos' sources
    # (1) and their hits (1): whatever the page size, one call of each loader.
    assert len(statements) <= 6, "\n".join(statements)
    assert len([statement for statement in statements if '"video_likes"' in statement]) == 1, statements


async def test_hostile_queries_are_refused_before_any_resolver_runs(client):
    statements = _count_queries(Video._meta.db)
    deep = "{ videos { edges { node { owner { videos { edges { node { owner { videos { edges { node { id } } } } } } } } } } } }"
    aliases = "{ " + " ".join(f"a{n}: me {{ id }}" for n in range(MAX_ALIASES + 1)) + " }"
    huge = "{ videos(first: 1000) { edges { cursor } } }"
    nested = "{ videos(first: 100) { edges { node { similar(first: 50) { id } } } } }"
    tokens = "{ " + " ".join("me { id }" for _ in range(800)) + " }"
    # Nested lists whose size hides in a variable's default or in a fragment are counted the same.
    defaulted = "query($n: Int = 50) { videos(first: 100) { edges { node { similar(first: $n) { id } } } } }"
    spread = (
        "{ videos(first: 100) { edges { node { ...S } } } } fragment S on Video { similar(first: 50) { id } }"
    )
    hostile = (deep, aliases, huge, nested, tokens, defaulted, spread)
    answers = [await gql(client, query) for query in hostile]
    Video._meta.db.__dict__.pop("run_querystring", None)
    Video._meta.db.__dict__.pop("fetch", None)

    messages = [answer["errors"][0]["message"] for answer in answers]
    assert f"exceeds maximum operation depth of {MAX_DEPTH}" in messages[0]
    assert f"Allowed: {MAX_ALIASES}" in messages[1]
    assert messages[2] == "first: must be at most 100"
    assert codes(answers[2]) == [(VALIDATION, "first")]
    assert "list items" in messages[3]
    assert "tokens" in messages[4]
    assert "list items" in messages[5]
    assert "list items" in messages[6]
    assert all(answer["data"] is None for answer in answers)
    assert statements == []


async def test_a_document_seen_before_is_checked_again_with_each_requests_variables(client):
    # Documents are parsed and validated once; the list limit depends on the variables, so a document
    # that ran with small pages is still refused with large ones, and the other way round.
    query = "query($n: Int!) { videos(first: 100) { edges { node { similar(first: $n) { id } } } } }"
    refused = await gql(client, query, {"n": 50})
    assert "list items" in refused["errors"][0]["message"]
    assert refused["data"] is None
    assert (await gql(client, query, {"n": 1})) == {"data": {"videos": {"edges": []}}}
    again = await gql(client, query, {"n": 50})
    assert again == refused
    too_large = await gql(
        client, query.replace("100", "$m").replace("Int!)", "Int!, $m: Int!)"), {"n": 1, "m": 101}
    )
    assert codes(too_large) == [(VALIDATION, "first")]


async def test_errors_are_problems_and_unexpected_ones_are_masked(client):
    syntax = await gql(client, "{ videos(")
    assert codes(syntax) == [("urn:clipdex:problem:invalid-query", None)]
    unknown = await gql(client, "{ nothing }")
    assert codes(unknown) == [("urn:clipdex:problem:invalid-query", None)]
    missing = await client.post("/graphql", json={"variables": {}})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "query"
    for empty in (client.post("/graphql", json={"query": ""}), client.get("/graphql", params={"query": ""})):
        answer = await empty
        assert answer.status_code == 400
        assert answer.json()["errors"][0]["field"] == "query"
    not_json = await client.post("/graphql", content=b"{ me { id } }", headers={"content-type": "text/plain"})
    assert not_json.status_code == 415


async def test_get_runs_queries_and_refuses_mutations(client, sign_up):
    account = await sign_up()
    got = await client.get("/graphql", params={"query": "{ me { username } }"}, headers=account.headers)
    assert got.json() == {"data": {"me": {"username": account.username}}}
    with_variables = await client.get(
        "/graphql",
        params={
            "query": "query($id: ID!) { user(id: $id) { username } }",
            "variables": f'{{"id": "{account.id}"}}',
        },
    )
    assert with_variables.json()["data"]["user"]["username"] == account.username
    mutation = await client.get("/graphql", params={"query": "mutation { logout }"}, headers=account.headers)
    assert mutation.status_code == 405
    assert mutation.json()["type"] == "urn:clipdex:problem:method-not-allowed"
    assert (await client.get("/api/v1/users/me", headers=account.headers)).status_code == 200
    bad_token = await client.get(
        "/graphql", params={"query": "{ me { id } }"}, headers={"Authorization": "Bearer x"}
    )
    assert bad_token.status_code == 401


async def test_introspection_follows_the_setting(serve):
    query = {"query": "{ __schema { queryType { name } } }"}
    async with serve(graphql_introspection="false") as client:
        refused = (await client.post("/graphql", json=query)).json()
        assert refused["data"] is None
        assert "introspection" in refused["errors"][0]["message"].lower()
        assert (await client.post("/graphql", json={"query": "{ __typename }"})).json()["data"] == {
            "__typename": "Query"
        }
    async with serve() as client:  # on by default outside production
        allowed = (await client.post("/graphql", json=query)).json()
        assert allowed == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


def test_schema_graphql_is_the_schema_the_code_builds(make_settings):
    committed = (ROOT / "schema.graphql").read_text()
    built = schema_document(build_graphql_schema(make_settings()))
    assert built == committed, "schema.graphql is stale: run `make schema.graphql`"


async def test_graphql_is_left_out_of_the_openapi_document(client):
    document = (await client.get("/schema/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/graphql")]


async def test_search_suggest_and_similar_answer_as_rest_does(client, sign_up):
    owner, other = await sign_up(), await sign_up()
    bread = await add_video(client, owner, title="Sourdough bread at home", tags=["baking", "bread"])
    await add_video(client, owner, title="Rye bread, slowly", tags=["baking"])
    await add_video(client, owner, title="Tempering chocolate", tags=["chocolate"])
    hidden = await add_video(client, owner, title="My private bread notes", visibility="private")
    await indexed(client)

    hits = "edges { node { score highlights { title { marked } } video { id } } } correctedQuery"
    for viewer in (None, owner, other):
        headers = viewer.headers if viewer else {}
        rest = (await client.get("/api/v1/search?q=braed&facets=tags&limit=5", headers=headers)).json()
        answer = await gql(
            client,
            f'{{ search(q: "braed", first: 5, facets: ["tags"]) {{ {hits} facets {{ tags {{ value count }} }} }} }}',
            account=viewer,
        )
        assert "errors" not in answer, answer
        found = answer["data"]["search"]
        assert [edge["node"]["video"]["id"] for edge in found["edges"]] == [
            hit["id"] for hit in rest["items"]
        ]
        assert [edge["node"]["score"] for edge in found["edges"]] == [hit["score"] for hit in rest["items"]]
        assert found["correctedQuery"] == rest["corrected_query"] == "bread"
        assert found["facets"]["tags"] == rest["facets"]["tags"]
        assert (hidden in [hit["id"] for hit in rest["items"]]) is (viewer is owner)
    marked = {
        edge["node"]["video"]["id"]: edge["node"]["highlights"]["title"]["marked"] for edge in found["edges"]
    }
    assert marked[bread] == "Sourdough <mark>bread</mark> at home"

    suggested = await gql(client, '{ suggest(q: "sourd") { text kind videoId } }')
    rest = (await client.get("/api/v1/search/suggest?q=sourd")).json()["items"]
    assert suggested["data"]["suggest"] == [
        {"text": item["text"], "kind": item["kind"], "videoId": item["video_id"]} for item in rest
    ]
    assert suggested["data"]["suggest"][0]["videoId"] == bread

    similar = await gql(client, f'{{ similar(id: "{bread}", first: 2) {{ video {{ id }} }} }}')
    rest = (await client.get(f"/api/v1/videos/{bread}/similar?limit=2")).json()["items"]
    assert [hit["video"]["id"] for hit in similar["data"]["similar"]] == [hit["id"] for hit in rest]
    assert len(rest) == 2
    # A video the viewer may not see has no similar videos to show: null, as REST's 404.
    assert await gql(client, f'{{ similar(id: "{hidden}") {{ score }} }}', account=other) == {
        "data": {"similar": None}
    }

    # REST's rules, each naming its field.
    for query, field in [
        ('{ search(q: "bread", mode: "fuzzy") { correctedQuery } }', "mode"),
        ('{ search(q: "bread", first: 51) { correctedQuery } }', "first"),
        ('{ search(q: "bread", facets: ["colour"]) { correctedQuery } }', "facets"),
        ('{ search(q: "bread", after: "not-a-cursor") { correctedQuery } }', "after"),
        ('{ suggest(q: "bre", first: 21) { text } }', "first"),
        ('{ similar(id: "nope") { score } }', "id"),
    ]:
        assert codes(await gql(client, query)) == [(VALIDATION, field)], query


async def test_list_filters_follow_the_rest_query_rules(client, sign_up):
    owner = await sign_up()
    await add_video(client, owner, title="Short", duration_seconds=30, tags=["quick"])
    await add_video(client, owner, title="Long", duration_seconds=3_000, tags=["slow"])
    titles = "edges { node { title } }"
    short = await gql(client, f'{{ videos(filter: {{tag: "quick", maxDuration: 60}}) {{ {titles} }} }}')
    assert short["data"]["videos"]["edges"] == [{"node": {"title": "Short"}}]
    for value, field in [
        (f'tag: "{"x" * 41}"', "tag"),
        ('tag: "  "', "tag"),
        ("minDuration: 0", "minDuration"),
        ("maxDuration: 86401", "maxDuration"),
    ]:
        refused = await gql(client, f"{{ videos(filter: {{{value}}}) {{ {titles} }} }}")
        assert codes(refused) == [(VALIDATION, field)], value
        rest_parameter = {"tag": "tag", "minDuration": "min_duration", "maxDuration": "max_duration"}[field]
        raw = value.split(": ", 1)[1].strip('"')
        assert (await client.get("/api/v1/videos", params={rest_parameter: raw})).status_code == 400
