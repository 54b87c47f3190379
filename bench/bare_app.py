"""The ceiling for the HTTP benchmark: a bare Litestar app returning a small JSON object.

Served by the same uvicorn command as clipdex (`uvicorn --factory bench.bare_app:create_app`).
"""

from litestar import Litestar, get


@get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[hello])
