"""HTTP throughput and latency of clipdex's main endpoints, side by side with a bare Litestar ceiling.

Builds a catalogue (bench/catalogue.py: N videos in SQLite and in the embedded index), starts clipdex
and bench/bare_app.py with the production server command (uvicorn, one worker, loopback), and drives
them with wrk from a separate process. Each scenario runs twice per round: at 16 connections for
requests/s (saturation) and at 1 connection for latency without queueing. Rounds interleave every
scenario, so each comparison is measured in the same minute on this shared machine; figures are the
medians over rounds, and each endpoint's requests/s is also given as a share of the bare ceiling
measured in the same round.

Usage: .venv/bin/python -m bench.api [--quick] [--videos N] [--rounds R] [--seconds S]
With --upstash-redis the cache is Upstash Redis (the official SDK over HTTP to upstash_local's server,
in front of a Redis database that is emptied first), so cache round trips show in the latencies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx

from bench.serving import ROOT, Server, bench_environment, build_catalogue, serving
from features.demo.demo import load_demo_catalogue
from upstash_local.redis_server import serve_in_subprocess

REPLAY = ROOT / "bench" / "wrk" / "replay.lua"
QUERIES = ROOT / "tests" / "features" / "search_relevance.json"
CONNECTIONS = {"throughput": 16, "latency": 1}
USERS = 20
HIT_SET = 200  # videos read before each hit run, so every request of it is a cache hit
LIKES_PER_RUN = 1_000  # videos per like run; each is liked once by each of the USERS


class Workload:
    """The request files for every scenario; runs that change state get fresh ids each time."""

    def __init__(self, ids: list[str], tokens: list[str], queries: list[str], runs: int) -> None:
        self.hit_ids = ids[:HIT_SET]
        self.like_ids = ids[HIT_SET : HIT_SET + LIKES_PER_RUN * runs]
        rest = ids[HIT_SET + LIKES_PER_RUN * runs :]
        self.miss_chunk = len(rest) // runs
        self.miss_ids = rest
        self.tokens = tokens
        self.warm_queries = queries[:20]
        words = sorted({word for query in queries for word in query.split() if word.isalpha()})
        # A query plus one more word is a query nobody asked before: a cold search cache, every time.
        self.cold_queries = [f"{query} {word}" for word in words for query in queries]
        self.cold_chunk = len(self.cold_queries) // runs
        # Queries asked once before the run (their vectors remembered), then the default page of 10
        # with highlight markers never asked (the same work, another cache key): the search cache
        # misses as after a like or a view count cleared it.
        self.known_queries = queries[20:]
        self.known_pages = [(query, marker) for marker in range(200) for query in self.known_queries]
        self.known_chunk = len(self.known_pages) // runs

    def lines(self, scenario: str, run: int) -> list[str]:
        if scenario == "bare":
            return ["GET /"]
        if scenario == "detail_hit":
            return [f"GET /api/v1/videos/{id}" for id in self.hit_ids]
        if scenario == "detail_hit_signed_in":
            # The same cached videos, each read by one of the signed-in users in turn.
            return [
                f"GET /api/v1/videos/{id} {self.tokens[number % len(self.tokens)]}"
                for number, id in enumerate(self.hit_ids)
            ]
        if scenario == "detail_miss":
            chunk = self.miss_ids[run * self.miss_chunk : (run + 1) * self.miss_chunk]
            return [f"GET /api/v1/videos/{id}" for id in chunk]
        if scenario == "list_first_page":
            return ["GET /api/v1/videos"]
        if scenario == "list_first_page_miss":
            # A filter every video passes (demo videos last at most 5,340 s), each value new to the run
            # (12,000 a run; they repeat after 6 runs): the same page as the first, never from the cache.
            return [
                f"GET /api/v1/videos?max_duration={86_400 - (run * 12_000 + n) % 72_000}"
                for n in range(12_000)
            ]
        if scenario == "like":
            chunk = self.like_ids[run * LIKES_PER_RUN : (run + 1) * LIKES_PER_RUN]
            return [f"POST /api/v1/videos/{id}/like {token}" for id in chunk for token in self.tokens]
        if scenario == "views":
            return [f"POST /api/v1/videos/{id}/views" for id in self.hit_ids]
        if scenario == "search_warm":
            return [f"GET /api/v1/search?q={quote(query)}" for query in self.warm_queries]
        if scenario == "search_cold":
            chunk = self.cold_queries[run * self.cold_chunk : (run + 1) * self.cold_chunk]
            return [f"GET /api/v1/search?q={quote(query)}" for query in chunk]
        if scenario == "search_known":
            pages = self.known_pages[run * self.known_chunk : (run + 1) * self.known_chunk]
            return [
                f"GET /api/v1/search?q={quote(query)}&highlight_pre={quote(f'<m{marker}>')}"
                for query, marker in pages
            ]
        raise ValueError(scenario)


SCENARIOS = {
    "bare": "bare Litestar, GET / (the ceiling)",
    "detail_hit": "GET /api/v1/videos/{id}, cache hit",
    "detail_hit_signed_in": "GET /api/v1/videos/{id}, cache hit, with a bearer token",
    "detail_miss": "GET /api/v1/videos/{id}, cache miss",
    "list_first_page": "GET /api/v1/videos (first page)",
    "list_first_page_miss": "GET /api/v1/videos (first page), cache miss",
    "like": "POST /api/v1/videos/{id}/like",
    "views": "POST /api/v1/videos/{id}/views",
    "search_warm": "GET /api/v1/search (hybrid), warm search cache",
    "search_cold": "GET /api/v1/search (hybrid), cold search cache",
    "search_known": "GET /api/v1/search (hybrid), cold search cache, query asked before",
}


def wrk(url: str, lines: list[str], connections: int, seconds: int, workdir: Path) -> dict[str, float]:
    requests = workdir / "requests.txt"
    requests.write_text("\n".join(lines) + "\n")
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(REPLAY),
        url,
        "--",
        str(requests),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["unique_requests"] = len(lines)  # the script counts them per wrk thread, not in done()
    return result


def prepare(app: str, workload: Workload, scenario: str) -> None:
    """Fill the caches a warm scenario relies on, right before it runs (search entries live 30 s);
    for search_known, the remembered query vectors."""
    warmers: dict[str, Callable[[], list[str]]] = {
        "detail_hit": lambda: [f"/api/v1/videos/{id}" for id in workload.hit_ids],
        "detail_hit_signed_in": lambda: [f"/api/v1/videos/{id}" for id in workload.hit_ids],
        "list_first_page": lambda: ["/api/v1/videos"],
        "search_warm": lambda: [f"/api/v1/search?q={quote(query)}" for query in workload.warm_queries],
        "search_known": lambda: [f"/api/v1/search?q={quote(query)}" for query in workload.known_queries],
    }
    if scenario in warmers:
        with httpx.Client(base_url=app, timeout=30) as client:
            for path in warmers[scenario]():
                client.get(path).raise_for_status()


def wait_for_vocabulary(app: str, seconds: float = 120) -> None:
    """Until the server's vocabulary (typo corrections, suggestions) is built: its first copy takes
    seconds at 100k videos, and a scenario measured meanwhile would measure the build."""
    prefix = load_demo_catalogue()[0].title[:3]  # every bench video's title starts as a demo one's
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=app, timeout=30) as client:
        while (
            not client.get("/api/v1/search/suggest", params={"q": prefix}).raise_for_status().json()["items"]
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no suggestions for {prefix!r} after {seconds} s")
            time.sleep(0.5)


def bench_users(app: str) -> list[str]:
    tokens = []
    with httpx.Client(base_url=app, timeout=30) as client:
        for number in range(USERS):
            account = {"email": f"liker{number}@bench.clipdex.example", "username": f"liker{number}"}
            password = "bench-password-not-secret"
            client.post("/api/v1/auth/register", json={**account, "password": password}).raise_for_status()
            login = client.post(
                "/api/v1/auth/login", json={"login": account["username"], "password": password}
            )
            tokens.append(login.raise_for_status().json()["access_token"])
    return tokens


def summarise(runs: list[dict]) -> list[dict]:
    ceilings = {
        run["round"]: run["rps"] for run in runs if run["scenario"] == "bare" and run["mode"] == "throughput"
    }
    summary = []
    for scenario, title in SCENARIOS.items():
        if not any(run["scenario"] == scenario for run in runs):
            continue  # left out with --only
        row: dict = {"scenario": scenario, "endpoint": title}
        for mode in CONNECTIONS:
            mine = [run for run in runs if run["scenario"] == scenario and run["mode"] == mode]
            row[mode] = {
                key: statistics.median(run[key] for run in mine) for key in ("rps", "p50_us", "p99_us")
            }
            row[mode]["errors"] = sum(run["non_2xx_3xx"] + run["socket_errors"] for run in mine)
            row[mode]["wrapped"] = any(
                run["requests"] > run["unique_requests"] > 1
                and scenario in ("detail_miss", "list_first_page_miss", "like", "search_cold", "search_known")
                for run in mine
            )
        row["share_of_ceiling"] = statistics.median(
            run["rps"] / ceilings[run["round"]]
            for run in runs
            if run["scenario"] == scenario and run["mode"] == "throughput"
        )
        summary.append(row)
    return summary


def signed_in_share(runs: list[dict]) -> float | None:
    """A cached read with a bearer token over the same read without one, at 16 connections: the
    median of the rounds' ratios, each round's two runs measured a minute apart at most."""
    rounds: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["mode"] == "throughput" and run["scenario"] in ("detail_hit", "detail_hit_signed_in"):
            rounds.setdefault(run["round"], {})[run["scenario"]] = run["rps"]
    ratios = [pair["detail_hit_signed_in"] / pair["detail_hit"] for pair in rounds.values() if len(pair) == 2]
    return statistics.median(ratios) if ratios else None


def table(summary: list[dict]) -> str:
    lines = [
        "| endpoint | req/s (16 conns) | share of ceiling | p50 / p99 at 16 conns (ms) | p50 / p99 at 1 conn (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in summary:
        busy, idle = row["throughput"], row["latency"]
        flags = " (errors!)" if busy["errors"] or idle["errors"] else ""
        flags += " (ids wrapped: some repeats)" if busy["wrapped"] or idle["wrapped"] else ""
        lines.append(
            f"| {row['endpoint']}{flags} | {busy['rps']:,.0f} | {row['share_of_ceiling']:.0%} | "
            f"{busy['p50_us'] / 1000:.2f} / {busy['p99_us'] / 1000:.2f} | "
            f"{idle['p50_us'] / 1000:.2f} / {idle['p99_us'] / 1000:.2f} |"
        )
    return "\n".join(lines)


def run_on_postgres(url: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


@contextlib.contextmanager
def upstash_redis(redis_url: str | None, env: dict[str, str]) -> Iterator[None]:
    """With a Redis URL: the local Upstash Redis server in front of it, emptied, set in `env` as the
    app's cache for as long as the block runs. Without one: nothing (the in-process cache)."""
    if redis_url is None:
        yield
        return
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    with serve_in_subprocess(redis_url, secrets.token_urlsafe(24)) as server:
        env.update(UPSTASH_REDIS_REST_URL=server.url, UPSTASH_REDIS_REST_TOKEN=server.token)
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k videos, one round of 2 s runs")
    parser.add_argument("--videos", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--output", type=Path, help="write the figures here as JSON")
    parser.add_argument(
        "--only", nargs="+", choices=SCENARIOS, help="these scenarios only (the ceiling always runs)"
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL database to build the catalogue in (emptied first); SQLite under a temp dir otherwise",
    )
    parser.add_argument(
        "--upstash-redis",
        metavar="REDIS_URL",
        nargs="?",
        const="redis://127.0.0.1:6379/14",
        help="cache on Upstash Redis: the local REST server in front of this Redis database (emptied"
        " first; default %(const)s)",
    )
    args = parser.parse_args()
    videos = args.videos or (10_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2 if args.quick else 5)
    chosen = [name for name in SCENARIOS if not args.only or name == "bare" or name in args.only]
    if shutil.which("wrk") is None:
        sys.exit("bench.api needs wrk: `apt-get install wrk` (make bench installs it)")

    workdir = Path(tempfile.mkdtemp(prefix="clipdex-bench-api-"))
    env = bench_environment(workdir, **({"DATABASE_URL": args.database_url} if args.database_url else {}))
    if args.database_url:  # emptied, so the migrations and the catalogue start afresh
        run_on_postgres(args.database_url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    video_ids = build_catalogue(env, workdir, videos)
    if args.database_url:
        # Statistics, as autovacuum would gather them after a bulk load (it may be off on a test server):
        # without them the planner takes `visibility = 'public'` for a handful of rows.
        run_on_postgres(args.database_url, "ANALYZE")
    queries = [judgement["query"] for judgement in json.loads(QUERIES.read_text())]
    runs: list[dict] = []
    log = workdir / "server.log"
    with (
        upstash_redis(args.upstash_redis, env),
        serving("bench.bare_app:create_app", env, log, "/") as bare,
        serving("app:create_app", env, log, "/ready") as app,
    ):
        workload = Workload(video_ids, bench_users(app.url), queries, rounds * len(CONNECTIONS))
        wait_for_vocabulary(app.url)
        rss_loaded = app.rss_mb()
        for round_ in range(rounds):
            for scenario in chosen:
                server: Server = bare if scenario == "bare" else app
                for number, (mode, connections) in enumerate(CONNECTIONS.items()):
                    prepare(app.url, workload, scenario)
                    run = round_ * len(CONNECTIONS) + number
                    result = wrk(server.url, workload.lines(scenario, run), connections, seconds, workdir)
                    runs.append({"scenario": scenario, "mode": mode, "round": round_, **result})
                    print(
                        f"round {round_} {scenario:16} {mode:10} {result['rps']:8.0f} req/s "
                        f"p50 {result['p50_us'] / 1000:6.2f} ms p99 {result['p99_us'] / 1000:6.2f} ms",
                        file=sys.stderr,
                    )
        rss_after = app.rss_mb()
    summary = summarise(runs)
    figures = {
        "videos": videos,
        "rounds": rounds,
        "seconds_per_run": seconds,
        "server_rss_mb": {"after_start": round(rss_loaded), "after_runs": round(rss_after)},
        "summary": summary,
        "signed_in_share_of_anonymous": signed_in_share(runs),
        "runs": runs,
    }
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(figures, indent=2))
    print(table(summary))
    if (share := signed_in_share(runs)) is not None:
        print(f"\ncached read with a bearer token: {share:.0%} of the same read without one")
    print(f"\nclipdex server RSS: {rss_loaded:.0f} MB after start, {rss_after:.0f} MB after the runs")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
