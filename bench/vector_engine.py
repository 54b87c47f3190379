"""The embedded vector engine at 10k, 100k and 1M vectors: build, query p50/p99 (plain and 1%-selective
filter), recall@10 against exact search, memory, save and load.

Each size runs in a fresh child process, so its memory figures are its own. Data is clustered like
real embeddings (unit vectors scattered around 200 random centres), generated in 100k-row chunks
from per-chunk seeds, so the 1M run never holds the float32 data whole: the exact top 10 is
computed chunk by chunk from regenerated data. Every write and query goes through the public async
API, except the per-layer timings (`layers`), which reach into the engine to time what lies beneath
it. One JSON object per size on stdout, a human line per size on stderr.

    .venv/bin/python -m bench.vector_engine            # 10k, 100k and 1M (1M with float16 storage)
    .venv/bin/python -m bench.vector_engine --quick    # 10k and 100k
    .venv/bin/python -m bench.vector_engine 100000 --expansion-search 96   # one size, other tuning
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, bench/ is first on the path; the project's packages live one level up.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from core.vectors import DEFAULT_NAMESPACE, EmbeddedVectorIndex, VectorRecord  # noqa: E402 - after the path fix
from core.vectors.ann import AnnSettings  # noqa: E402

DIMENSION = 384
QUERIES = 300
RECALL_QUERIES = 300
CHUNK = 100_000
BATCH = 1000
BUCKETS = 100  # metadata {"bucket": i % 100}: the filter "bucket = 3" passes 1% of rows
FILTER = "bucket = 3"
SEED = 7


def _centres() -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal((200, DIMENSION)).astype(np.float32)


def clustered(count: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = centres[rng.integers(0, len(centres), count)]
    points += 0.6 * rng.standard_normal((count, DIMENSION), dtype=np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def chunks(count: int, centres: np.ndarray):
    """(first row, float32 rows) of the data set, regenerated identically on every pass."""
    for number, start in enumerate(range(0, count, CHUNK)):
        yield start, clustered(min(CHUNK, count - start), SEED + 1 + number, centres)


def memory_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


def reset_peak() -> None:
    """Start VmHWM again from the current RSS (Linux), so the next phase's peak is its own."""
    Path("/proc/self/clear_refs").write_text("5")


def retune(
    index: EmbeddedVectorIndex, expansion_search: int, oversample: int, reference_rows: int | None = None
) -> bool:
    """Search the built graph with other settings (the bench reaches in; the engine takes them at
    construction): by default exactly `expansion_search` wide, not scaled to the graph's size. False
    when the namespace has no graph."""
    namespace = index._memory.namespaces[DEFAULT_NAMESPACE]
    if namespace.ann is None:
        return False
    ann = dataclasses.replace(
        namespace.options.ann,
        expansion_search=expansion_search,
        oversample=oversample,
        expansion_reference_rows=reference_rows or len(namespace),
    )
    namespace.options = dataclasses.replace(namespace.options, ann=ann)
    namespace.ann.settings = ann
    return True


def layers(index: EmbeddedVectorIndex, queries: np.ndarray) -> dict[str, float] | None:
    """p50 ms of one plain top-10 query at each layer below the async API, each layer over every query
    in turn: usearch's own search (40 candidates, the engine's width), the namespace's dense search
    (that plus rescoring the candidates exactly), and MemoryIndex.search (plus ranking and results).
    What `await index.query` adds to the last is mostly the hop to a worker thread and back (its
    argument checks and lock cost a few µs). None when the namespace has no graph (searched exactly)."""
    space = index._memory.namespaces[DEFAULT_NAMESPACE]
    if space.ann is None:
        return None
    # One query through the namespace first: it syncs the graph and sets the engine's own search
    # width, which the raw usearch calls below then search with.
    space.dense_top(queries[0], 10, None, "COSINE")
    ann = space.ann
    candidates = max(20, ann.settings.oversample)  # what _ann_candidates asks for a plain top 10
    prepared = [ann._prepared(query) for query in queries]

    def p50(call: Any, inputs: list[Any]) -> float:
        timings = []
        for value in inputs:
            began = time.perf_counter()
            call(value)
            timings.append((time.perf_counter() - began) * 1000)
        return round(float(np.percentile(timings, 50)), 3)

    return {
        "graph": p50(lambda query: ann.index.search(query, candidates, threads=1), prepared),
        "rescored": p50(lambda query: space.dense_top(query, 10, None, "COSINE"), list(queries)),
        "ranked": p50(
            lambda query: index._memory.search(
                DEFAULT_NAMESPACE,
                query,
                None,
                None,
                top_k=10,
                include=(False, False, False),
                filter="",
                predicate=None,
                fusion="RRF",
                idf_weighting=False,
            ),
            list(queries),
        ),
    }


def exact_top(count: int, queries: np.ndarray, centres: np.ndarray, filtered: bool) -> np.ndarray:
    """The exact top 10 rows per query (by dot product: unit vectors, so cosine order)."""
    best_scores = np.full((len(queries), 10), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 10), np.int64)
    for start, whole in chunks(count, centres):
        for offset in range(0, len(whole), 20_000):  # 300 x 20k scores at a time, to bound memory
            best_scores, best_rows = _merge(
                best_scores, best_rows, queries, whole[offset : offset + 20_000], start + offset, filtered
            )
    return best_rows


def _merge(
    best_scores: np.ndarray,
    best_rows: np.ndarray,
    queries: np.ndarray,
    data: np.ndarray,
    start: int,
    filtered: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The running top 10 per query, with `data` (rows from `start` on) taken in."""
    rows = np.arange(start, start + len(data))
    if filtered:
        keep = rows % BUCKETS == 3
        rows, data = rows[keep], data[keep]
    scores = queries @ data.T
    merged_scores = np.concatenate([best_scores, scores], axis=1)
    merged_rows = np.concatenate([best_rows, np.broadcast_to(rows, scores.shape)], axis=1)
    top = np.argpartition(-merged_scores, 10, axis=1)[:, :10]
    return np.take_along_axis(merged_scores, top, axis=1), np.take_along_axis(merged_rows, top, axis=1)


def percentiles(timings: list[float]) -> tuple[float, float]:
    return round(float(np.percentile(timings, 50)), 3), round(float(np.percentile(timings, 99)), 3)


async def timed(index: EmbeddedVectorIndex, queries: list[list[float]], filter: str) -> list[float]:
    await index.query(vector=queries[0], top_k=10, filter=filter)  # warm: the filter's mask is cached
    timings = []
    for query in queries:
        began = time.perf_counter()
        await index.query(vector=query, top_k=10, filter=filter)
        timings.append((time.perf_counter() - began) * 1000)
    return timings


async def recall(index: EmbeddedVectorIndex, queries: np.ndarray, exact: np.ndarray, filter: str) -> float:
    found = 0
    for query, truth in zip(queries, exact, strict=True):
        hits = await index.query(vector=query.tolist(), top_k=10, filter=filter)
        found += len({int(hit.id[1:]) for hit in hits} & set(truth.tolist()))
    return round(found / (10 * len(queries)), 4)


def engine_at(directory: str, precision: str, ann_min_rows: int, ann: AnnSettings) -> EmbeddedVectorIndex:
    return EmbeddedVectorIndex(
        dimension=DIMENSION,
        index_type="DENSE",
        path=Path(directory),
        precision=precision,  # type: ignore[arg-type]
        ann_min_rows=ann_min_rows,
        ann=ann,
    )


async def measure(
    count: int,
    precision: str,
    ann_min_rows: int,
    ann: AnnSettings,
    sweep: list[tuple[int, int]],
    options: list[str],
) -> dict[str, Any]:
    centres = _centres()
    queries = clustered(QUERIES, SEED, centres)
    query_lists = [query.tolist() for query in queries]
    base = memory_mb()["VmRSS"]

    with tempfile.TemporaryDirectory() as directory:
        index = engine_at(directory, precision, ann_min_rows, ann)
        await index.open()
        reset_peak()
        build = 0.0
        for start, data in chunks(count, centres):
            for offset in range(0, len(data), BATCH):
                block = data[offset : offset + BATCH]
                records = [
                    VectorRecord(
                        id=f"v{start + offset + i}",
                        vector=row,
                        metadata={"bucket": (start + offset + i) % BUCKETS},
                    )
                    for i, row in enumerate(block.tolist())
                ]
                began = time.perf_counter()
                await index.upsert(records)
                build += time.perf_counter() - began
            del data
        built = memory_mb()
        after_build, build_peak = built["VmRSS"], built["VmHWM"]
        plain = await timed(index, query_lists, "")
        layered = layers(index, queries)
        filtered = await timed(index, query_lists, FILTER)
        exact_plain = exact_top(count, queries[:RECALL_QUERIES], centres, filtered=False)
        exact_filtered = exact_top(count, queries[:RECALL_QUERIES], centres, filtered=True)
        recall_plain = await recall(index, queries[:RECALL_QUERIES], exact_plain, "")
        recall_filtered = await recall(index, queries[:RECALL_QUERIES], exact_filtered, FILTER)
        swept = []
        for expansion, oversample in sweep:
            if retune(index, expansion, oversample):
                timings = await timed(index, query_lists, "")
                found = await recall(index, queries[:RECALL_QUERIES], exact_plain, "")
                swept.append(
                    {
                        "expansion_search": expansion,
                        "oversample": oversample,
                        "p50_ms": percentiles(timings)[0],
                        "recall": found,
                    }
                )
        retune(index, ann.expansion_search, ann.oversample, ann.expansion_reference_rows)
        before_save = memory_mb()["VmRSS"]
        reset_peak()
        began = time.perf_counter()
        await index.close()
        save = time.perf_counter() - began
        save_peak = memory_mb()["VmHWM"]
        del index
        # Opened in a fresh process, as a server starting on this snapshot does: its peak is the load's
        # own, not mixed with the heap this process kept from the build.
        loaded = json.loads(
            subprocess.run(  # noqa: ASYNC221 - the bench waits for it: nothing else runs meanwhile
                [sys.executable, __file__, "--load", directory, f"--precision={precision}", *options],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        reopened = engine_at(directory, precision, ann_min_rows, ann)
        await reopened.open()
        after_load = await timed(reopened, query_lists, "")
        recall_after_load = await recall(reopened, queries[:RECALL_QUERIES], exact_plain, "")
        await reopened.close()
    return {
        "vectors": count,
        "precision": precision,
        "ann_min_rows": ann_min_rows,
        "ann": dataclasses.asdict(ann),
        "build_s": round(build, 2),
        "query_p50_ms": percentiles(plain)[0],
        "query_p99_ms": percentiles(plain)[1],
        # The same queries' p50 at each layer below the async API (see layers), right after.
        "layers_p50_ms": layered,
        "filtered_p50_ms": percentiles(filtered)[0],
        "filtered_p99_ms": percentiles(filtered)[1],
        "filter_share": 1 / BUCKETS,
        "recall_at_10": recall_plain,
        "filtered_recall_at_10": recall_filtered,
        "rss_base_mb": round(base),
        "rss_after_build_mb": round(after_build),
        "index_rss_mb": round(after_build - base),
        # Peaks of each phase: the build (the bench's batches of input included), the save (close),
        # and a fresh process opening the snapshot (its interpreter and imports included).
        "peak_build_rss_mb": round(build_peak),
        "peak_save_rss_mb": round(save_peak),
        "save_extra_mb": round(save_peak - before_save),
        "peak_load_rss_mb": loaded["peak_rss_mb"],
        "rss_after_load_mb": loaded["rss_mb"],
        "first_insert_after_load_extra_mb": loaded["first_insert_extra_mb"],
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "sweep": swept,
        "expansion_search_used": ann.expansion_for(count) if count >= ann_min_rows else None,
        "save_s": round(save, 2),
        "load_s": loaded["load_s"],
        "query_p50_after_load_ms": percentiles(after_load)[0],
        "recall_at_10_after_load": recall_after_load,
    }


async def load_only(directory: str, precision: str, ann_min_rows: int, ann: AnnSettings) -> dict[str, Any]:
    index = engine_at(directory, precision, ann_min_rows, ann)
    began = time.perf_counter()
    await index.open()
    load = time.perf_counter() - began
    memory = memory_mb()
    # A loaded index has no spare rows: the first insert after it makes the arrays grow.
    reset_peak()
    vector = clustered(1, SEED + 1, _centres())[0].tolist()
    await index.upsert([VectorRecord(id="inserted-after-load", vector=vector, metadata={"bucket": 0})])
    insert_extra = memory_mb()["VmHWM"] - memory["VmRSS"]
    await index.close()
    return {
        "load_s": round(load, 2),
        "peak_rss_mb": round(memory["VmHWM"]),
        "rss_mb": round(memory["VmRSS"]),
        "first_insert_extra_mb": round(insert_extra),
    }


def human(result: dict[str, Any]) -> str:
    return (
        f"{result['vectors']:>8} {result['precision']}: build {result['build_s']:.1f} s, "
        f"query p50 {result['query_p50_ms']:.2f} p99 {result['query_p99_ms']:.2f} ms"
        + (
            " (below the async API: graph {graph:.2f}, rescored {rescored:.2f}, ranked {ranked:.2f} ms), ".format(
                **result["layers_p50_ms"]
            )
            if result["layers_p50_ms"]
            else ", "
        )
        + f"filtered (1%) p50 {result['filtered_p50_ms']:.2f} p99 {result['filtered_p99_ms']:.2f} ms, "
        f"recall@10 {result['recall_at_10']:.3f} / filtered {result['filtered_recall_at_10']:.3f}, "
        f"RSS index {result['index_rss_mb']} MB (process peaks: build {result['peak_build_rss_mb']}, "
        f"save {result['peak_save_rss_mb']}, load in a fresh process {result['peak_load_rss_mb']} MB, "
        f"then {result['rss_after_load_mb']} MB, +{result['first_insert_after_load_extra_mb']} MB for "
        "the first insert after it), "
        f"save {result['save_s']:.2f} s, load {result['load_s']:.2f} s, "
        f"p50 after load {result['query_p50_after_load_ms']:.2f} ms"
        + "".join(
            f"; expansion_search {row['expansion_search']}, oversample {row['oversample']}: "
            f"p50 {row['p50_ms']:.2f} ms, recall {row['recall']:.3f}"
            for row in result["sweep"]
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int)
    parser.add_argument("--quick", action="store_true", help="10k and 100k only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=["float32", "float16"], help="default: float16 from 1M on")
    parser.add_argument("--ann-min-rows", type=int, default=20_000)
    parser.add_argument(
        "--sweep",
        default="",
        help="EXPANSION_SEARCH:OVERSAMPLE pairs, comma-separated, also measured on the built graph",
    )
    defaults = AnnSettings()
    for name in ("connectivity", "expansion_add", "expansion_search", "oversample"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    args = parser.parse_args()
    ann = AnnSettings(
        connectivity=args.connectivity,
        expansion_add=args.expansion_add,
        expansion_search=args.expansion_search,
        oversample=args.oversample,
    )
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    options = [f"--ann-min-rows={args.ann_min_rows}"]
    options += [
        f"--{name.replace('_', '-')}={value}"
        for name, value in dataclasses.asdict(ann).items()
        if name != "threads" and hasattr(args, name)
    ]
    if args.load:
        print(json.dumps(asyncio.run(load_only(args.load, args.precision, args.ann_min_rows, ann))))
        return
    if args.child:
        (size,) = sizes
        precision = args.precision or ("float16" if size >= 1_000_000 else "float32")
        sweep = [tuple(map(int, pair.split(":"))) for pair in args.sweep.split(",") if pair]
        result = asyncio.run(measure(size, precision, args.ann_min_rows, ann, sweep, options))
        print(json.dumps(result), flush=True)
        print(human(result), file=sys.stderr, flush=True)
        return
    passed = list(options)
    if args.precision:
        passed.append(f"--precision={args.precision}")
    if args.sweep:
        passed.append(f"--sweep={args.sweep}")
    for size in sizes:
        # A fresh process per size: its peak memory is that size's alone.
        subprocess.run([sys.executable, __file__, "--child", str(size), *passed], check=True)


if __name__ == "__main__":
    main()
