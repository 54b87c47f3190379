"""usearch by itself on bench.vector_engine's data and graph settings: the floor under the engine's query.

The engine's dense query is usearch's walk for 40 candidates, then rescoring and ranking them. This
builds the same int8 graph (the engine's AnnSettings, the same clustered unit vectors) with usearch
alone, and times the walk at each width on the graph as built and again after a save and a reload
(read into memory, and viewed from the file), two passes of the same 300 queries each. What the
engine adds on top is bench.vector_engine's figure minus this one. One JSON object on stdout.

    .venv/bin/python -m bench.usearch_alone 1000000               # the widths 128, 160 and the engine's
    .venv/bin/python -m bench.usearch_alone 300000 --widths 96,111
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, bench/ is first on the path; the project's packages live one level up.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.vector_engine import DIMENSION, QUERIES, SEED, _centres, chunks, clustered  # noqa: E402 - after the path fix
from core.vectors.ann import AnnIndex, AnnSettings  # noqa: E402

PASSES = 2


def walk_p50s(index: Any, queries: np.ndarray, widths: list[int], candidates: int) -> dict[str, list[float]]:
    """p50 ms of each pass of the queries at each width."""
    found: dict[str, list[float]] = {}
    for width in widths:
        index.expansion_search = width
        passes = []
        for _ in range(PASSES):
            timings = []
            for query in queries:
                began = time.perf_counter()
                index.search(query, candidates, threads=1)
                timings.append((time.perf_counter() - began) * 1000)
            passes.append(round(float(np.median(timings)), 3))
        found[str(width)] = passes
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", type=int, nargs="?", default=1_000_000)
    parser.add_argument(
        "--widths", help="expansion_search values, comma-separated (default: 128, 160, the engine's)"
    )
    args = parser.parse_args()
    from usearch.index import Index

    settings = AnnSettings()
    engine_width = settings.expansion_for(args.size)
    widths = [int(w) for w in args.widths.split(",")] if args.widths else sorted({128, 160, engine_width})
    centres = _centres()
    queries = clustered(QUERIES, SEED, centres)
    # The usearch index exactly as the engine makes it (metric, int8, the graph settings); only
    # adding to it and searching it bypass the engine.
    index = AnnIndex(DIMENSION, "COSINE", settings).index
    began = time.perf_counter()
    for start, data in chunks(args.size, centres):
        index.add(np.arange(start, start + len(data), dtype=np.uint64), data, threads=settings.threads)
    report: dict[str, Any] = {"vectors": args.size, "build_s": round(time.perf_counter() - began, 1)}
    candidates = settings.oversample
    report["candidates"] = candidates
    report["engine_width"] = engine_width
    report["built"] = walk_p50s(index, queries, widths, candidates)
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "graph.usearch")
        index.save(path)
        del index
        report["reloaded"] = walk_p50s(Index.restore(path), queries, widths, candidates)
        report["viewed"] = walk_p50s(Index.restore(path, view=True), queries, widths, candidates)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
