"""The local embedding model: cold start (load + first call), one-sentence latency, batch throughput,
peak memory. Usage: .venv/bin/python bench/embeddings.py"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SENTENCES = [
    "How do I keep a sourdough starter alive over a long weekend?",
    "A beginner's guide to tuning a drum machine's kick and snare",
    "Why the Roman concrete in harbour walls got stronger with age",
]


def main() -> None:
    started = time.perf_counter()
    from core.embeddings import installed_embedder

    embedder = installed_embedder()
    embedder.embed(["warm up"])
    cold = time.perf_counter() - started
    single = []
    for i in range(100):
        began = time.perf_counter()
        embedder.embed([SENTENCES[i % 3]])
        single.append((time.perf_counter() - began) * 1000)
    short = [SENTENCES[i % 3] for i in range(256)]
    began = time.perf_counter()
    embedder.embed(short)
    short_rate = len(short) / (time.perf_counter() - began)
    long_text = " ".join(SENTENCES * 12)  # ~250 word pieces: what a video's indexed text looks like
    began = time.perf_counter()
    embedder.embed([long_text] * 64)
    long_rate = 64 / (time.perf_counter() - began)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cold start (import + load + first call): {cold:.2f} s")
    print(f"one sentence: median {statistics.median(single):.1f} ms")
    print(f"batch throughput: {short_rate:.0f} short sentences/s, {long_rate:.0f} 256-token texts/s")
    print(f"peak memory (max RSS): {peak:.0f} MB")


if __name__ == "__main__":
    main()
