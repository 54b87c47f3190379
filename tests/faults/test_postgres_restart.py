"""PostgreSQL stops under traffic and comes back: the app fails fast with 503 problems meanwhile,
serves again without a restart, and keeps every write it acknowledged.

The cluster is the fault suite's own (see ThrowawayPostgres), stopped once cleanly (`pg_ctl stop -m
fast`, as in a planned restart) and once as in a crash (`-m immediate`, WAL replay on start).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.faults.support import (
    API,
    Acknowledged,
    TrafficLog,
    app_server,
    assert_nothing_lost,
    assert_unavailable_problems,
    register,
    stored_state,
    until,
    write_traffic,
)

pytestmark = pytest.mark.faults

CLIENTS = 4
OUTAGE_SECONDS = 3.0
STEADY_SECONDS = 1.5
FLUSH_SECONDS = 0.5
# A request during the outage must fail at once, not wait on a database that is not there.
WORST_OUTAGE_SECONDS = 3.0


async def _database_answers(http: httpx.AsyncClient, token: str) -> bool:
    # /users/me loads the account from the database on every call.
    response = await http.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code == 200


async def test_requests_fail_fast_during_a_postgres_outage_and_no_acknowledged_write_is_lost(
    throwaway_postgres, postgres_database
):
    url = postgres_database("clipdex_restart")
    log, acknowledged = TrafficLog(), Acknowledged()
    # A pool of two: a connection the app failed to give back after a failure would soon leave none,
    # and requests would queue forever instead of being served again.
    with app_server(
        "postgres-restart",
        url,
        postgres_pool_max_size=2,
        view_flush_interval_seconds=FLUSH_SECONDS,
        vector_index_path=":memory:",
    ) as app:
        async with httpx.AsyncClient(base_url=app.url) as http:
            accounts = [await register(http) for _ in range(3)]
            running = True
            clients = [
                asyncio.create_task(
                    write_traffic(
                        log, http, accounts, acknowledged, lambda: running, label="postgres", seed=seed
                    )
                )
                for seed in range(CLIENTS)
            ]
            await asyncio.sleep(STEADY_SECONDS)
            recovery: dict[str, float] = {}
            for mode in ("fast", "immediate"):
                log.phase = f"{mode} stop"
                await asyncio.to_thread(throwaway_postgres.stop, mode)
                ready = await http.get("/ready")
                assert ready.status_code == 503, ready.text
                assert ready.json()["dependencies"]["database"]["status"] == "failing", ready.text
                await asyncio.sleep(OUTAGE_SECONDS)
                log.phase = f"{mode} restart"
                await asyncio.to_thread(throwaway_postgres.start)
                recovery[mode] = await until(
                    lambda: _database_answers(http, accounts[0].token), 10.0, "the app serves again"
                )
                log.phase = f"after {mode}"
                await asyncio.sleep(STEADY_SECONDS)
            running = False
            await asyncio.gather(*clients)

            async def views_flushed() -> bool:
                videos = (await stored_state(url)).videos
                return all(videos[video][2] == n for video, n in acknowledged.views.items())

            # Views taken from the cache for a flush that failed went back for the next one: none is lost.
            await until(views_flushed, FLUSH_SECONDS * 4 + 5, "every acknowledged view is counted")
            assert_nothing_lost(await stored_state(url), acknowledged)
        assert app.process.poll() is None, f"the app died:\n{app.log()}"

    assert not log.failures("before"), log.failures("before")
    log.report(
        "postgres",
        "before",
        f"checked in the database afterwards: {len(acknowledged.videos)} videos, {len(acknowledged.likes)}"
        f" likes, {sum(acknowledged.views.values())} views (all acknowledged during the run)",
    )
    for mode in ("fast", "immediate"):
        outage = f"{mode} stop"
        failed = log.failures(outage)
        assert failed, f"no request failed during the {mode} stop: the outage was not real"
        assert_unavailable_problems(failed, "database-unavailable")
        assert log.worst_seconds(outage) < WORST_OUTAGE_SECONDS, log.of(outage)
        assert_unavailable_problems(log.failures(f"{mode} restart"), "database-unavailable")
        assert not log.failures(f"after {mode}"), log.failures(f"after {mode}")
        log.report("postgres", outage)
        log.report("postgres", f"{mode} restart", f"serving again {recovery[mode]:.2f} s after pg_ctl start")
        log.report("postgres", f"after {mode}")
