"""GraphiQL, the in-browser GraphQL explorer at GET /graphql: its page, and its files served by the app.

GraphiQL's built files (GraphiQL 2, React 17, the explorer plugin) come from the installed, pinned
graphene-django-graphiql-static wheel, which ships them as plain static files; only that directory is
read, nothing of the package is imported (it is a Django app). The page and the script that starts
GraphiQL are clipdex's own. Nothing is fetched from another host, so the explorer works offline, and
the page's Content-Security-Policy lets it load and call only its own origin.
"""

from __future__ import annotations

import html
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

from litestar import Response, Router
from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType
from litestar.static_files import create_static_files_router

GRAPHIQL_DISTRIBUTION = "graphene-django-graphiql-static"


def _graphiql_files() -> Path:
    # find_spec locates the package without running its __init__ (or anything Django).
    spec = find_spec("graphene_django_graphiql_static")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{GRAPHIQL_DISTRIBUTION} is not installed: GraphiQL's files come from it")
    return Path(next(iter(spec.submodule_search_locations))) / "static" / "graphene_django_graphiql_static"


GRAPHIQL_FILES = _graphiql_files()
# The URL carries the wheel's version: new files get new URLs, so these can be cached for good.
GRAPHIQL_ASSETS_PATH = f"/graphql/assets/graphiql-static-{version(GRAPHIQL_DISTRIBUTION)}"
# clipdex's own script and styles for the page; unversioned, so browsers revalidate them (ETag).
EXPLORER_FILES = Path(__file__).parent / "static" / "graphql_explorer"
EXPLORER_ASSETS_PATH = "/graphql/assets/explorer"

# GraphiQL sets styles from its scripts (element.style), which a policy without 'unsafe-inline'
# allows; its fonts and icons are data: URLs inside its CSS. No inline script and no eval are needed.
EXPLORER_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; font-src 'self' data:; img-src 'self' data:;"
    " connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)

graphiql_assets = create_static_files_router(
    path=GRAPHIQL_ASSETS_PATH,
    directories=[GRAPHIQL_FILES],
    cache_control=CacheControlHeader(max_age=31_536_000, public=True, immutable=True),
    include_in_schema=False,
    opt={"exclude_from_auth": True},
    name="graphiql_assets",
)
explorer_assets = create_static_files_router(
    path=EXPLORER_ASSETS_PATH,
    directories=[EXPLORER_FILES],
    cache_control=CacheControlHeader(no_cache=True),
    include_in_schema=False,
    opt={"exclude_from_auth": True},
    name="graphql_explorer_assets",
)
# For the app's route_handlers.
EXPLORER_ROUTERS: list[Router] = [graphiql_assets, explorer_assets]


def explorer_html(endpoint: str = "/graphql") -> str:
    """The explorer's page; its script sends queries (and the headers typed into GraphiQL's headers
    pane, such as a bearer token) to `endpoint`."""
    graphiql, own = GRAPHIQL_ASSETS_PATH, EXPLORER_ASSETS_PATH
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>clipdex GraphQL explorer</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{graphiql}/graphiql.min.css">
  <link rel="stylesheet" href="{graphiql}/style.css">
  <link rel="stylesheet" href="{own}/explorer.css">
  <script defer src="{graphiql}/react.production.min.js"></script>
  <script defer src="{graphiql}/react-dom.production.min.js"></script>
  <script defer src="{graphiql}/graphiql.min.js"></script>
  <script defer src="{graphiql}/graphiql-plugin-explorer.umd.js"></script>
  <script defer src="{own}/explorer.js"></script>
</head>
<body>
  <div id="graphiql" data-endpoint="{html.escape(endpoint)}">
    <noscript>The explorer needs JavaScript. The API itself does not: POST GraphQL to {html.escape(endpoint)}.</noscript>
  </div>
</body>
</html>
"""


def explorer_page(endpoint: str = "/graphql") -> Response[str]:
    """The explorer's page as a response, with its Content-Security-Policy (for GET /graphql from a
    browser)."""
    return Response(
        explorer_html(endpoint),
        media_type=MediaType.HTML,
        headers={
            "Content-Security-Policy": EXPLORER_PAGE_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )
