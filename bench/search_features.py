"""What highlights, typo correction and suggestions cost on a large catalogue (100k videos by default).

Builds the catalogue as bench/api.py does (bench/catalogue.py: SQLite and the embedded index, plus
the vocabulary tables the indexer keeps), then measures:

- in process, for each query of the relevance set: its hybrid ranking's first page (10 hits) loaded
  from the database with and without highlights, alternately, so the difference is what highlights
  add to a cold search (the transcript read included); and the typo correction of each typo'd query
  (tests/features/search_relevance_typos.json) against the worker's copy of the vocabulary, with the
  time and memory that copy took to load;
- over HTTP, the app under the production server command (uvicorn, one worker, loopback) driven by
  wrk: GET /api/v1/search/suggest with prefixes typed from the demo titles and tags, at 1 connection
  (latency) and 16 (throughput).

Usage: .venv/bin/python -m bench.search_features [--quick] [--videos N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from bench.api import wrk
from bench.serving import ROOT, bench_environment, migrate, serving

RELEVANCE = ROOT / "tests" / "features" / "search_relevance.json"
TYPOS = ROOT / "tests" / "features" / "search_relevance_typos.json"


def _ms(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 3),
    }


async def in_process() -> dict:
    """The in-process figures, on the catalogue the environment's settings point at."""
    from core.backends import build_vector_index
    from core.database import bind_tables, build_engine, open_database
    from core.highlights import DEFAULT_HIGHLIGHTING, Highlighter, query_terms
    from core.ranking import CatalogueSize
    from core.settings import load_settings
    from core.typos import corrections
    from core.vocabulary import Vocabulary
    from features.search.search import _hits, ranked_ids
    from piccolo_conf import APP_REGISTRY

    settings = load_settings()
    engine = build_engine(settings)
    bind_tables(engine, [t for config in APP_REGISTRY.app_configs.values() for t in config.table_classes])
    await open_database(engine, settings)
    index = build_vector_index(settings)
    await index.open()
    size = CatalogueSize(index)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    vocabulary = Vocabulary()
    while not len(vocabulary.completions):  # current() waits a second at most for the first copy
        await vocabulary.current()
        await asyncio.sleep(0.05)
    load_seconds = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    queries = [judgement["query"] for judgement in json.loads(RELEVANCE.read_text())]
    plain, highlighted, added = [], [], []
    for query in queries:
        window = (await ranked_ids(index, size, query, "hybrid", "visibility = 'public'", 100))[:10]
        highlighter = Highlighter(query_terms(query), DEFAULT_HIGHLIGHTING)
        for _ in range(3):  # alternate, so both see the same warm SQLite pages
            t0 = time.perf_counter()
            await _hits(window, None)
            t1 = time.perf_counter()
            await _hits(window, None, highlighter)
            t2 = time.perf_counter()
            plain.append(t1 - t0)
            highlighted.append(t2 - t1)
            added.append((t2 - t1) - (t1 - t0))

    typos = json.loads(TYPOS.read_text())
    correction_times, corrected = [], 0
    for _ in range(5):
        for typo in typos:
            t0 = time.perf_counter()
            fixes = corrections(typo["query"], vocabulary.typos)
            correction_times.append(time.perf_counter() - t0)
            corrected += bool(fixes)
    correction_times.sort()
    await index.close()
    return {
        "hits_page_plain": _ms(plain),
        "hits_page_highlighted": _ms(highlighted),
        "highlights_added": _ms(added),
        "correction": {
            "p50_us": round(statistics.median(correction_times) * 1e6, 1),
            "p99_us": round(correction_times[int(0.99 * (len(correction_times) - 1))] * 1e6, 1),
            "queries_corrected": f"{corrected // 5}/{len(typos)}",
        },
        "vocabulary": {
            "terms": len(vocabulary.typos),
            "documents": len(vocabulary.completions),
            "load_seconds": round(load_seconds, 2),
            "peak_rss_growth_mb": round((rss_after - rss_before) / 1024),
        },
    }


def suggest_lines() -> list[str]:
    """What people type: the start of each demo title and tag, cut after 2 to 6 letters of a word."""
    from features.demo.demo import load_demo_catalogue

    typed = set()
    for item in load_demo_catalogue():
        for text in [item.title, *item.tags]:
            words = text.lower().split()
            for count in range(1, min(3, len(words)) + 1):
                for cut in (2, 4, 6):
                    typed.add(" ".join([*words[: count - 1], words[count - 1][:cut]]))
    return [f"GET /api/v1/search/suggest?q={quote(q)}" for q in sorted(typed)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k videos, 3 s runs")
    parser.add_argument("--videos", type=int)
    parser.add_argument("--seconds", type=int)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help="write the figures here as JSON")
    parser.add_argument(
        "--keep", type=Path, help="build the catalogue in this directory and keep it; reuse it if built"
    )
    args = parser.parse_args()
    if args.in_process:
        print(json.dumps(asyncio.run(in_process())))
        return
    videos = args.videos or (10_000 if args.quick else 100_000)
    seconds = args.seconds or (3 if args.quick else 10)
    if shutil.which("wrk") is None:
        sys.exit("bench.search_features needs wrk: `apt-get install wrk` (make bench installs it)")

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="clipdex-bench-search-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = bench_environment(workdir)
    if not (workdir / "built").exists():
        migrate(env)
        started = time.perf_counter()
        catalogue = [sys.executable, "-m", "bench.catalogue", "--videos", str(videos)]
        subprocess.run(catalogue, cwd=ROOT, env=env, check=True)
        print(f"catalogue of {videos} videos built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        (workdir / "built").write_text(str(videos))
    measured = subprocess.run(
        [sys.executable, "-m", "bench.search_features", "--in-process"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict = {"videos": videos, **json.loads(measured.stdout.strip().splitlines()[-1])}

    lines = suggest_lines()
    with serving("app:create_app", env, workdir / "server.log", "/ready") as app:
        # The first request starts the worker's copy of the vocabulary; suggestions come once it is built.
        started = time.perf_counter()
        while not httpx.get(f"{app.url}/api/v1/search/suggest", params={"q": "tempe"}, timeout=60).json()[
            "items"
        ]:
            time.sleep(0.2)
        figures["suggest_copy_built_seconds"] = round(time.perf_counter() - started, 2)
        for name, connections in (("latency", 1), ("throughput", 16)):
            result = wrk(app.url, lines, connections, seconds, workdir)
            figures[f"suggest_{name}"] = {
                "connections": connections,
                "rps": round(result["rps"]),
                "p50_ms": round(result["p50_us"] / 1000, 2),
                "p99_ms": round(result["p99_us"] / 1000, 2),
            }
        figures["server_rss_mb"] = round(app.rss_mb())
    figures["suggest_queries"] = len(lines)
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
