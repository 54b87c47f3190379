"""Operations endpoints: liveness and readiness for load balancers and orchestrators, metrics for Prometheus."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from core.auth import PublicOperation

logger = logging.getLogger("clipdex.health")

ReadinessCheck = Callable[[], Awaitable[object]]
"""Raises when its dependency is not usable; may return details to show (e.g. an index lag), or
`CatchingUp` when the dependency works but is behind."""

_CHECK_TIMEOUT_SECONDS = 2.0


class Health(msgspec.Struct):
    status: Literal["ok"] = "ok"


class CatchingUp(msgspec.Struct):
    """What a check returns when its dependency answers but is behind (e.g. videos waiting to be
    indexed): the app can still serve, so /ready stays 200 and shows the dependency as catching up."""

    details: object


class DependencyStatus(msgspec.Struct, omit_defaults=True):
    status: Literal["ok", "catching_up", "failing"]
    error: str = ""
    details: object | None = None


class Readiness(msgspec.Struct):
    status: Literal["ready", "unavailable"]
    dependencies: dict[str, DependencyStatus]


@get(
    "/health",
    summary="Liveness: the process answers (no I/O)",
    tags=["operations"],
    security=[],
    operation_class=PublicOperation,
)
async def health() -> Health:
    return Health()


async def _run_check(name: str, check: ReadinessCheck) -> DependencyStatus:
    try:
        details = await asyncio.wait_for(check(), _CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        logger.warning("readiness check %s failed: %r", name, exc)
        return DependencyStatus(status="failing", error=type(exc).__name__ + (f": {exc}" if str(exc) else ""))
    if isinstance(details, CatchingUp):
        return DependencyStatus(status="catching_up", details=details.details)
    return DependencyStatus(status="ok", details=details)


@get(
    "/ready",
    summary="Readiness: every dependency answers (some may be catching up); 503 names the ones that do not",
    tags=["operations"],
    security=[],
    operation_class=PublicOperation,
    responses={
        503: ResponseSpec(
            data_container=Readiness,
            description="A dependency is failing",
            generate_examples=False,
            examples=[
                Example(
                    id="database-failing",
                    summary="The database cannot be opened",
                    value={
                        "status": "unavailable",
                        "dependencies": {
                            "database": {
                                "status": "failing",
                                "error": "OperationalError: unable to open database file",
                            },
                            "cache": {"status": "ok"},
                            "search_index": {"status": "ok", "details": {"pending": 0}},
                        },
                    },
                )
            ],
        )
    },
)
async def ready(readiness_checks: NamedDependency[dict[str, ReadinessCheck]]) -> Response[Readiness]:
    names = list(readiness_checks)
    results = await asyncio.gather(*(_run_check(name, readiness_checks[name]) for name in names))
    dependencies = dict(zip(names, results, strict=True))
    # Catching up is not failing: a search index behind the database still answers, a little stale.
    healthy = all(result.status != "failing" for result in results)
    return Response(
        Readiness(status="ready" if healthy else "unavailable", dependencies=dependencies),
        status_code=200 if healthy else 503,
    )


@get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    tags=["operations"],
    media_type=MediaType.TEXT,
    operation_class=PublicOperation,
    sync_to_thread=False,
)
def metrics() -> Response[str]:
    """The counters and histograms of this process (clipdex_* and the Python runtime's), for scraping.

    Public like /health: the JWT auth excludes it, as scrapers carry no token.
    """
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
