"""A video page through GraphQL in one request vs through the REST calls it replaces, side by side.

The page shows a video, its owner's name, five similar videos and whether the signed-in viewer liked
it. Through GraphQL that is one POST /graphql. Through REST it is GET /api/v1/videos/{id}, then (with
the owner id from that answer) GET /api/v1/users/{owner_id} and GET /api/v1/videos/{id}/similar?limit=5,
and, since REST has no per-video like state, GET /api/v1/users/me/likes (the first page, 20) to look
for the video in; that last call is measured with and without. Every request carries a bearer token
(20 signed-in users in turn, each with a few likes), on the embedded default (SQLite, the in-process
cache, the embedded index) with a bench/catalogue.py catalogue, production settings, one uvicorn
worker. The same 200 pages are replayed, each read once right before every run, so the caches are
warm for both APIs alike. Two more scenarios show what a GraphQL request costs around the same
cached read: the video's own fields alone, against GET /api/v1/videos/{id}.

wrk replays the pages (bench/wrk/pages.lua), each request sent when the one before it was answered:
at 16 connections for pages/s (the server saturated; a page's requests then go out on several
connections at once, which changes nothing of the work per page), at 1 connection for a page's
latency, from its first request written to its last answer read. Rounds interleave the scenarios;
figures are medians over rounds, and the ratios are medians of each round's ratio.

Usage: .venv/bin/python -m bench.graphql_page [--quick] [--videos N] [--rounds R] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench.api import bench_users
from bench.serving import ROOT, bench_environment, build_catalogue, serving

PAGES = ROOT / "bench" / "wrk" / "pages.lua"
CONNECTIONS = {"throughput": 16, "latency": 1}
PAGE_SET = 200  # pages replayed (one video each), all read once before each run
LIKES_PER_USER = 5
SIMILAR = 5
# Everything the page shows, as the REST calls return it (their answers carry more: the transcript,
# the owner's account dates, each similar video's whole summary).
VIDEO_PAGE_QUERY = (
    "query VideoPage($id: ID!) { video(id: $id) {"
    " id title description url thumbnailUrl durationSeconds tags visibility likeCount viewCount"
    " owner { id username } similar(first: 5) { id title thumbnailUrl durationSeconds } likedByMe } }"
)

# The video's own fields alone, without the owner, similar videos and like state around them.
VIDEO_ONLY_QUERY = (
    "query VideoOnly($id: ID!) { video(id: $id) {"
    " id title description url thumbnailUrl durationSeconds tags visibility likeCount viewCount } }"
)

SCENARIOS = {
    "graphql": "GraphQL: one POST /graphql",
    "rest_like_state": "REST: video + owner + similar + my likes (4 calls)",
    "rest": "REST: video + owner + similar, no like state (3 calls)",
    # What a request costs around the same cached read: GraphQL's fixed part against REST's.
    "graphql_video": "GraphQL: the video's own fields only",
    "rest_video": "REST: GET /api/v1/videos/{id} only",
}


class Pages:
    """The request file of each scenario: PAGE_SET pages, each by one of the users in turn."""

    def __init__(self, app: str, video_ids: list[str], tokens: list[str]) -> None:
        self.tokens = tokens
        self.video_ids = video_ids[:PAGE_SET]
        with httpx.Client(base_url=app, timeout=30) as client:
            self.owner_of = {
                id: client.get(f"/api/v1/videos/{id}").raise_for_status().json()["owner_id"]
                for id in self.video_ids
            }

    def calls(self, scenario: str) -> list[list[tuple[str, str, str, str]]]:
        """Each page's requests: (method, path, token, JSON body or '')."""
        pages = []
        for number, id in enumerate(self.video_ids):
            token = self.tokens[number % len(self.tokens)]
            if scenario in ("graphql", "graphql_video"):
                query = VIDEO_PAGE_QUERY if scenario == "graphql" else VIDEO_ONLY_QUERY
                body = json.dumps({"query": query, "variables": {"id": id}})
                pages.append([("POST", "/graphql", token, body)])
                continue
            if scenario == "rest_video":
                pages.append([("GET", f"/api/v1/videos/{id}", token, "")])
                continue
            page = [
                ("GET", f"/api/v1/videos/{id}", token, ""),
                ("GET", f"/api/v1/users/{self.owner_of[id]}", token, ""),
                ("GET", f"/api/v1/videos/{id}/similar?limit={SIMILAR}", token, ""),
            ]
            if scenario == "rest_like_state":
                page.append(("GET", "/api/v1/users/me/likes", token, ""))
            pages.append(page)
        return pages

    def write(self, scenario: str, path: Path) -> int:
        """Write the scenario's pages for pages.lua; returns the requests per page."""
        pages = self.calls(scenario)
        path.write_text("".join("".join("\t".join(call) + "\n" for call in page) + "\n" for page in pages))
        return len(pages[0])

    def read_once(self, app: str, scenario: str) -> None:
        """Every page's requests, once: the caches are warm when the run starts."""
        with httpx.Client(base_url=app, timeout=30) as client:
            for page in self.calls(scenario):
                for method, path, token, body in page:
                    answer = client.request(
                        method,
                        path,
                        content=body or None,
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                    ).raise_for_status()
                    if method == "POST" and answer.json().get("errors"):
                        raise RuntimeError(f"the GraphQL page query failed: {answer.json()['errors']}")


def like_some(app: str, video_ids: list[str], tokens: list[str]) -> None:
    """Each user likes a few of the pages' videos, so likedByMe is true on some pages and each user's
    likes list has something to look through."""
    with httpx.Client(base_url=app, timeout=30) as client:
        for number, token in enumerate(tokens):
            for id in video_ids[number * LIKES_PER_USER : (number + 1) * LIKES_PER_USER]:
                client.post(
                    f"/api/v1/videos/{id}/like", headers={"Authorization": f"Bearer {token}"}
                ).raise_for_status()


def wrk(url: str, requests: Path, connections: int, seconds: int) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(PAGES)]
    output = subprocess.run([*command, url, "--", str(requests)], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict[str, dict]:
    summary = {}
    for scenario in SCENARIOS:
        if not any(run["scenario"] == scenario for run in runs):
            continue  # left out with --only
        busy = [run for run in runs if run["scenario"] == scenario and run["mode"] == "throughput"]
        idle = [run for run in runs if run["scenario"] == scenario and run["mode"] == "latency"]
        summary[scenario] = {
            "requests_per_page": busy[0]["requests_per_page"],
            "pages_per_s": statistics.median(run["pages_per_s"] for run in busy),
            "requests_per_s": statistics.median(run["requests_per_s"] for run in busy),
            "page_p50_ms": statistics.median(run["page_p50_us"] for run in idle) / 1000,
            "page_p99_ms": statistics.median(run["page_p99_us"] for run in idle) / 1000,
            "errors": sum(
                run["non_2xx_3xx"] + run["socket_errors"] + run["graphql_errors"] for run in busy + idle
            ),
        }
    return summary


def ratio(runs: list[dict], mode: str, key: str, top: str, bottom: str) -> float:
    """top's figure over bottom's, the median of the rounds' ratios."""
    rounds: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["mode"] == mode:
            rounds.setdefault(run["round"], {})[run["scenario"]] = run[key]
    return statistics.median(pair[top] / pair[bottom] for pair in rounds.values())


def table(summary: dict[str, dict]) -> str:
    lines = [
        "| a video page | requests | pages/s (16 conns) | req/s (16 conns) | page p50 / p99 at 1 conn (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for scenario, row in summary.items():
        flags = " (errors!)" if row["errors"] else ""
        lines.append(
            f"| {SCENARIOS[scenario]}{flags} | {row['requests_per_page']} | {row['pages_per_s']:,.0f} | "
            f"{row['requests_per_s']:,.0f} | {row['page_p50_ms']:.2f} / {row['page_p99_ms']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3k videos, one round of 2 s runs")
    parser.add_argument("--videos", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--output", type=Path, help="write the figures here as JSON")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="these scenarios only")
    args = parser.parse_args()
    chosen = [name for name in SCENARIOS if not args.only or name in args.only]
    videos = args.videos or (3_000 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2 if args.quick else 5)
    if shutil.which("wrk") is None:
        sys.exit("bench.graphql_page needs wrk: `apt-get install wrk` (make bench installs it)")

    workdir = Path(tempfile.mkdtemp(prefix="clipdex-bench-graphql-"))
    env = bench_environment(workdir)
    video_ids = build_catalogue(env, workdir, videos)
    runs: list[dict] = []
    with serving("app:create_app", env, workdir / "server.log", "/ready") as app:
        tokens = bench_users(app.url)
        like_some(app.url, video_ids[:PAGE_SET], tokens)
        pages = Pages(app.url, video_ids, tokens)
        requests = workdir / "pages.txt"
        for round_ in range(rounds):
            for scenario in chosen:
                per_page = pages.write(scenario, requests)
                for mode, connections in CONNECTIONS.items():
                    pages.read_once(app.url, scenario)
                    result = wrk(app.url, requests, connections, seconds)
                    seconds_run = result["duration_us"] / 1e6
                    result |= {
                        "requests_per_page": per_page,
                        "requests_per_s": result["requests"] / seconds_run,
                        # Counted from requests: with several connections, pages end out of order.
                        "pages_per_s": result["requests"] / per_page / seconds_run,
                    }
                    runs.append({"scenario": scenario, "mode": mode, "round": round_, **result})
                    print(
                        f"round {round_} {scenario:16} {mode:10} {result['pages_per_s']:7.0f} pages/s "
                        f"page p50 {result['page_p50_us'] / 1000:6.2f} ms",
                        file=sys.stderr,
                    )
    summary = summarise(runs)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        figures = {"videos": videos, "rounds": rounds, "seconds_per_run": seconds, "summary": summary}
        args.output.write_text(json.dumps(figures | {"runs": runs}, indent=2))
    print(f"{videos:,} videos; {rounds} round(s) of {seconds} s runs per scenario and connection count")
    print()
    print(table(summary))
    if {"graphql", "rest_like_state"} <= set(chosen):
        pages_ratio = ratio(runs, "throughput", "pages_per_s", "graphql", "rest_like_state")
        latency_ratio = ratio(runs, "latency", "page_p50_us", "graphql", "rest_like_state")
        print()
        print(
            f"GraphQL vs the 4 REST calls: {pages_ratio:.2f}x the pages/s at 16 connections, "
            f"{latency_ratio:.2f}x the page p50 at 1 connection"
        )
    if {"graphql_video", "rest_video"} <= set(chosen):
        reads_ratio = ratio(runs, "throughput", "pages_per_s", "graphql_video", "rest_video")
        latency_ratio = ratio(runs, "latency", "page_p50_us", "graphql_video", "rest_video")
        print(
            f"The video alone, GraphQL vs REST: {reads_ratio:.2f}x the requests/s at 16 connections, "
            f"{latency_ratio:.2f}x the p50 at 1 connection"
        )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
