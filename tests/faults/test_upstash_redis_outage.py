"""Upstash Redis goes away under traffic and comes back: the API keeps serving reads and writes,
no request waits much past UPSTASH_TIMEOUT_SECONDS, revocations resume, and views are kept.

The Upstash Redis REST server (upstash_local/redis_server.py) and the redis-server behind it are the
test's own processes: the REST server is killed (SIGKILL) and started again on the same port, frozen
(SIGSTOP: connections are accepted, nothing answers) and thawed, and the redis-server behind it is
killed and started again, keeping its data (append-only file) as a hosted Redis does. The app runs on
SQLite with the embedded search index, so Upstash Redis is the only dependency that fails.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.conftest import Account
from tests.faults.support import (
    API,
    Acknowledged,
    TrafficLog,
    app_server,
    assert_nothing_lost,
    redis_server,
    register,
    stored_state,
    until,
    upstash_redis_server,
    views_counted,
    write_traffic,
)

pytestmark = pytest.mark.faults

CLIENTS = 4
OUTAGE_SECONDS = 2.0
STEADY_SECONDS = 1.0
FLUSH_SECONDS = 0.5
UPSTASH_TIMEOUT_SECONDS = 1.0


def _allowed_seconds(log: TrafficLog) -> float:
    """How long a request may take while Upstash is down: a request makes several cache calls, and
    with Upstash silent it must still give up after about one deadline (then the cache is read
    around), not one deadline per call; plus what the machine's load makes any request take."""
    return UPSTASH_TIMEOUT_SECONDS + max(1.0, 2 * log.worst_seconds("before"))


async def _status(http: httpx.AsyncClient, method: str, path: str, account: Account) -> int:
    return (await http.request(method, f"{API}{path}", headers=account.headers)).status_code


async def test_the_api_keeps_serving_while_upstash_redis_is_down_and_revocations_resume(sqlite_database):
    url = sqlite_database
    with redis_server() as redis, upstash_redis_server(f"{redis.url}/0") as upstash:
        log, acknowledged = TrafficLog(), Acknowledged()
        with app_server(
            "upstash-redis-outage",
            url,
            upstash_redis_rest_url=upstash.url,
            upstash_redis_rest_token=upstash.token,
            upstash_timeout_seconds=UPSTASH_TIMEOUT_SECONDS,
            view_flush_interval_seconds=FLUSH_SECONDS,
            vector_index_path=":memory:",
        ) as app:
            async with httpx.AsyncClient(base_url=app.url) as http:
                accounts = [await register(http) for _ in range(3)]
                signed_out = await register(http)
                assert await _status(http, "POST", "/auth/logout", signed_out) == 204
                assert await _status(http, "GET", "/users/me", signed_out) == 401
                running = True
                clients = [
                    asyncio.create_task(
                        write_traffic(
                            log, http, accounts, acknowledged, lambda: running, label="redis", seed=seed
                        )
                    )
                    for seed in range(CLIENTS)
                ]
                await asyncio.sleep(STEADY_SECONDS)
                revocations: dict[str, str] = {}
                outages = {
                    "REST server killed": (upstash.kill, upstash.start),
                    "REST server frozen": (upstash.freeze, upstash.thaw),
                    "Redis killed": (redis.kill, redis.start),
                }
                for outage, (break_it, mend_it) in outages.items():
                    log.phase = outage
                    await asyncio.to_thread(break_it)
                    await asyncio.sleep(OUTAGE_SECONDS / 2)
                    # A sign-out that cannot be recorded says so (and the token keeps working).
                    leaving = await register(http)
                    started = time.monotonic()
                    logout = await http.post(f"{API}/auth/logout", headers=leaving.headers)
                    assert time.monotonic() - started < _allowed_seconds(log), logout
                    assert logout.status_code == 503, logout.text
                    assert logout.json()["type"] == "urn:clipdex:problem:cache-unavailable", logout.text
                    assert int(logout.headers["retry-after"]) >= 1
                    # Revocations are read around while Redis is down (failing open, see core/auth.py).
                    revocations[outage] = str(await _status(http, "GET", "/users/me", signed_out))
                    await asyncio.sleep(OUTAGE_SECONDS / 2)
                    log.phase = f"after {outage}"
                    await asyncio.to_thread(mend_it)

                    async def revocations_enforced() -> bool:
                        return await _status(http, "GET", "/users/me", signed_out) == 401

                    # Revoked before the outage, refused again after it: what Redis held was kept.
                    recovered = await until(revocations_enforced, 2 * UPSTASH_TIMEOUT_SECONDS + 5, "revoked")
                    revocations[outage] += f", enforced again {recovered:.2f} s after the restart"
                    # A sign-out after the recovery is recorded and enforced.
                    assert await _status(http, "POST", "/auth/logout", leaving) == 204
                    assert await _status(http, "GET", "/users/me", leaving) == 401
                    await asyncio.sleep(STEADY_SECONDS)
                running = False
                await asyncio.gather(*clients)
                await _assert_reads_show_every_write(http, acknowledged, url)

                accepted = sum(acknowledged.views.values())

                async def views_flushed() -> bool:
                    return views_counted(await stored_state(url), acknowledged) >= accepted

                await until(views_flushed, FLUSH_SECONDS * 4 + 5, "every acknowledged view is counted")
                state = await stored_state(url)
                assert_nothing_lost(state, acknowledged)
            assert app.process.poll() is None, f"the app died:\n{app.log()}"

    assert not log.failures("before"), log.failures("before")
    # None lost (checked above). One is counted twice when its increment timed out (so it was written
    # straight to the database) yet reached Redis: only views recorded during an outage can be.
    counted = views_counted(state, acknowledged)
    in_doubt = sum(1 for outage in outages for o in log.of(outage) if o.action == "view" and o.ok)
    assert counted <= accepted + in_doubt, (counted, accepted, in_doubt)
    log.report(
        "upstash-redis",
        "before",
        f"checked afterwards: {len(acknowledged.videos)} videos, {len(acknowledged.likes)} likes,"
        f" {accepted} views accepted, {counted} counted ({in_doubt} recorded during the outages)",
    )
    for outage in outages:
        # Reads and writes carry on without the cache; only a sign-out needs it (checked above).
        assert not log.failures(outage), log.failures(outage)
        slowest = max(log.of(outage), key=lambda outcome: outcome.seconds)
        assert slowest.seconds < _allowed_seconds(log), slowest
        assert not log.failures(f"after {outage}"), log.failures(f"after {outage}")
        log.report(
            "upstash-redis",
            outage,
            f"allowed {_allowed_seconds(log):.2f} s; a revoked token during it: {revocations[outage]}",
        )
        log.report("upstash-redis", f"after {outage}")


async def _assert_reads_show_every_write(
    http: httpx.AsyncClient, acknowledged: Acknowledged, url: str
) -> None:
    """Every video read through the app (and its cache) shows its stored like count: an entry
    cached before an outage must not outlive a like made during it."""
    state = await stored_state(url)
    stale = {}
    for video in acknowledged.videos:
        shown = (await http.get(f"{API}/videos/{video}")).json()["like_count"]
        if shown != state.videos[video][1]:
            stale[video] = (shown, state.videos[video][1])
    assert not stale, f"{len(stale)} videos read with an old like count (shown, stored): {stale}"
