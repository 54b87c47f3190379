"""The local embedding model: cold start (import + load + first call), one-query latency, batch
throughput (short sentences, texts filling the dense window, the demo catalogue's real indexed texts)
and peak memory.

One JSON object per figure group on stdout, human lines on stderr.

    .venv/bin/python bench/embeddings.py           # full run
    .venv/bin/python bench/embeddings.py --quick   # fewer repetitions
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ is first on the path; the project's packages live one level up.
sys.path[0] = str(ROOT)

SENTENCES = [
    "How do I keep a sourdough starter alive over a long weekend?",
    "A beginner's guide to tuning a drum machine's kick and snare",
    "Why the Roman concrete in harbour walls got stronger with age",
]


def emit(figures: dict, human: str) -> None:
    print(json.dumps(figures), flush=True)
    print(human, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(embed, texts: list[str], repeats: int) -> float:
    """Texts per second, the median of `repeats` runs."""
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        embed(texts)
        runs.append(len(texts) / (time.perf_counter() - began))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3

    started = time.perf_counter()
    from core.embeddings import MAX_TOKENS, TOKEN_BUDGET, installed_embedder

    embedder = installed_embedder()
    embedder.embed(["warm up"])
    cold = time.perf_counter() - started
    rss_loaded = peak_rss_mb()
    emit(
        {"bench": "embeddings_cold_start", "seconds": round(cold, 2), "rss_mb": round(rss_loaded)},
        f"cold start (import + load + first call): {cold:.2f} s, RSS {rss_loaded:.0f} MB",
    )

    single = []
    for i in range(30 if args.quick else 100):
        began = time.perf_counter()
        embedder.embed([SENTENCES[i % 3]])
        single.append((time.perf_counter() - began) * 1000)
    single.sort()
    p99 = single[min(len(single) - 1, round(0.99 * (len(single) - 1)))]
    emit(
        {
            "bench": "embeddings_single_query",
            "ms_median": round(statistics.median(single), 1),
            "ms_p99": round(p99, 1),
            "calls": len(single),
        },
        f"one query: median {statistics.median(single):.1f} ms, p99 {p99:.1f} ms",
    )

    from features.demo.demo import load_demo_catalogue
    from features.search_index.search_index import indexed_text

    short = [SENTENCES[i % 3] for i in range(128 if args.quick else 256)]
    count = 16 if args.quick else 64
    long_text = " ".join(SENTENCES * 12)  # ~250 word pieces: longer than the window
    window = [long_text] * count  # cut at MAX_TOKENS
    full = embedder.with_max_tokens(256)
    demo = [
        indexed_text(
            {"title": v.title, "tags": v.tags, "description": v.description, "transcript": v.transcript}
        )
        for v in load_demo_catalogue()
    ]
    if args.quick:
        demo = demo[:96]
    demo_tokens = sum(len(ids) for ids in embedder.token_ids(demo))
    short_rate = rate(embedder.embed, short, repeats)
    window_rate = rate(embedder.embed, window, repeats)
    full_rate = rate(full.embed, window, repeats)
    demo_rate = rate(embedder.embed, demo, repeats)
    emit(
        {
            "bench": "embeddings_batch_throughput",
            "max_tokens": MAX_TOKENS,
            "token_budget": TOKEN_BUDGET,
            "short_sentences_per_second": round(short_rate, 1),
            "window_texts_per_second": round(window_rate, 1),
            "window_tokens_per_second": round(window_rate * MAX_TOKENS),
            "texts_256_tokens_per_second": round(full_rate, 1),
            "demo_texts_per_second": round(demo_rate, 1),
            "demo_tokens_per_text": round(demo_tokens / len(demo), 1),
            "demo_tokens_per_second": round(demo_rate * demo_tokens / len(demo)),
            "cpus": os.cpu_count(),
        },
        f"batch throughput: {short_rate:.0f} short sentences/s, {window_rate:.1f} {MAX_TOKENS}-piece texts/s "
        f"({window_rate * MAX_TOKENS:.0f} pieces/s), {full_rate:.1f} 256-piece texts/s, "
        f"{demo_rate:.1f} demo catalogue texts/s ({demo_tokens / len(demo):.0f} pieces each)",
    )
    peak = peak_rss_mb()
    emit(
        {"bench": "embeddings_memory", "peak_rss_mb": round(peak), "rss_after_load_mb": round(rss_loaded)},
        f"peak memory (max RSS): {peak:.0f} MB ({rss_loaded:.0f} MB after loading)",
    )


if __name__ == "__main__":
    main()
