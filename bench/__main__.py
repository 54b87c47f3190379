"""Runs every benchmark, one after the other, each in a process of its own: `python -m bench [--quick]`.

Each script's report (its standard output) goes to bench/results/<name>.txt and, with the machine,
date and commit, into bench/results/report.md; progress goes to the terminal. BENCHMARKS.md quotes
these reports.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# The host's own speed first (the figures below move with it), then in the order the issue lists them.
SUITES = {
    "host": "This host right now: an interpreter step and a memory miss",
    "api": "HTTP endpoints against the bare Litestar ceiling",
    "graphql_page": "GraphQL: a video page in one request vs the REST calls it replaces",
    "vector_engine": "The vector engine (10k, 100k, 1M vectors)",
    "embeddings": "Embeddings",
    "indexing": "Indexing: full reindex and outbox lag",
    "search_features": "Search highlights, typo correction and suggestions",
}


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and shorter runs: a few minutes")
    parser.add_argument("suites", nargs="*", help=f"only these, of {', '.join(SUITES)} (default: all)")
    args = parser.parse_args()
    if unknown := set(args.suites) - set(SUITES):
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
    RESULTS.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    report = [
        "# clipdex benchmark report",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- commit: {commit.stdout.strip() or 'unknown'}",
        f"- command: python -m bench{' --quick' if args.quick else ''} {' '.join(args.suites)}".rstrip(),
        "",
    ]
    for name, title in SUITES.items():
        if args.suites and name not in args.suites:
            continue
        print(f"== {title}", file=sys.stderr)
        started = time.monotonic()
        command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])]
        result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        output = result.stdout.strip()
        (RESULTS / f"{name}.txt").write_text(output + "\n")
        status = "" if result.returncode == 0 else f" (FAILED, exit {result.returncode})"
        report += [f"## {title}{status}", "", f"{time.monotonic() - started:.0f} s", "", output, ""]
        print(output, file=sys.stderr)
    (RESULTS / "report.md").write_text("\n".join(report))
    print(f"report: {RESULTS / 'report.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
