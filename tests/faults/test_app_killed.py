"""The app is killed (SIGKILL) in the middle of writes and started again: every write it acknowledged is
there, like counts equal the like rows, and the outbox delivers what was pending, so that search finds
every acknowledged video.

The app runs with the embedded search index on disk and the in-process cache, on SQLite and on the
fault suite's own PostgreSQL. Views buffered in the in-process cache die with the process: at most
what was recorded since the last flush (VIEW_FLUSH_INTERVAL_SECONDS) may be lost, and that bound is
checked too.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.support import (
    API,
    Acknowledged,
    TrafficLog,
    app_server,
    assert_nothing_lost,
    register,
    stored_state,
    until,
    views_counted,
    write_traffic,
)

pytestmark = pytest.mark.faults

CLIENTS = 6
WRITING_SECONDS = 3.0
FLUSH_SECONDS = 0.5


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The backend's name and the URL of a migrated database of this test's own."""
    if request.param == "sqlite":
        return request.param, request.getfixturevalue("sqlite_database")
    return request.param, request.getfixturevalue("postgres_database")("clipdex_kill")


async def test_a_killed_app_keeps_every_acknowledged_write_and_indexes_what_was_pending(database):
    backend, url = database
    with tempfile.TemporaryDirectory(prefix="clipdex-faults-kill-") as directory:
        settings = {
            "vector_index_path": str(Path(directory) / "index"),
            "view_flush_interval_seconds": FLUSH_SECONDS,
        }
        log, acknowledged = TrafficLog(), Acknowledged()
        with app_server(f"killed-{backend}", url, **settings) as doomed:
            async with httpx.AsyncClient(base_url=doomed.url) as http:
                accounts = [await register(http) for _ in range(3)]
                running = True
                clients = [
                    asyncio.create_task(
                        write_traffic(
                            log, http, accounts, acknowledged, lambda: running, label="kill", seed=seed
                        )
                    )
                    for seed in range(CLIENTS)
                ]
                await asyncio.sleep(WRITING_SECONDS)
                doomed.kill()
                killed_at = time.monotonic()
                log.phase, running = "killed", False
                await asyncio.gather(*clients)  # the requests in flight fail: no server any more

        # The app comes back on the same database and index, as a supervisor would restart it.
        with app_server(f"restarted-{backend}", url, **settings) as again:
            async with httpx.AsyncClient(base_url=again.url) as http:

                async def index_caught_up() -> bool:
                    index = (await http.get("/ready")).json()["dependencies"]["search_index"]
                    return index["status"] == "ok" and index["details"]["pending"] == 0

                caught_up = await until(index_caught_up, 20.0, "the outbox drains after the restart")
                missing = []
                for video, title in acknowledged.videos.items():
                    found = await http.get(
                        f"{API}/search", params={"q": title.rsplit(" ", 1)[-1], "mode": "keyword"}
                    )
                    assert found.status_code == 200, found.text
                    if video not in [item["id"] for item in found.json()["items"]]:
                        missing.append(video)
                assert not missing, (
                    f"{len(missing)} of {len(acknowledged.videos)} videos not found: {missing}"
                )
            state = await stored_state(url)
            assert_nothing_lost(state, acknowledged)

    assert not log.failures("before"), log.failures("before")
    accepted, counted = sum(acknowledged.views.values()), views_counted(state, acknowledged)
    # Lost with the process: only views accepted since its last flush (plus one flush's duration).
    recent = sum(
        1
        for outcome in log.of("before")
        if outcome.action == "view"
        and outcome.ok
        and outcome.answered_at > killed_at - 2 * FLUSH_SECONDS - 0.5
    )
    assert accepted - recent <= counted <= accepted, (accepted, recent, counted)
    cut_off = [o for o in log.of("killed") if o.status is None]
    log.report(
        f"app killed ({backend})",
        "before",
        f"{len(cut_off)} requests cut off by the kill; afterwards {len(acknowledged.videos)} videos,"
        f" {len(acknowledged.likes)} likes checked, {accepted} views accepted, {counted} counted"
        f" (lost with the process: {accepted - counted}, allowed {recent});"
        f" index caught up {caught_up:.2f} s after the restart",
    )
