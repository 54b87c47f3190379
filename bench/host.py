"""How fast this host is right now: an interpreter step and a memory miss, so that figures taken
minutes apart on this shared VM can be read side by side.

A pointer chase through a random cycle: every step is one dependent load. Over a 2,048-entry array
(in L1) a step is the interpreter's own cost; over 512 MiB nearly every step misses the caches and
the TLB, so the difference is what a random memory read costs, the kind a 1M-vector graph walk is
made of (BENCHMARKS.md section 2). Each figure is the median of a few passes in this one process;
run it in a fresh process, as the vector bench runs, to see the spread between processes.

Usage: .venv/bin/python -m bench.host [--quick] [--passes N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

SMALL_ENTRIES = 2_048
LARGE_ENTRIES = 64 * 2**20  # int64: 512 MiB


def random_cycle(entries: int, seed: int) -> np.ndarray:
    """next[i] for one cycle through every entry, in random order."""
    order = np.random.default_rng(seed).permutation(entries)
    following = np.empty(entries, np.int64)
    following[order[:-1]] = order[1:]
    following[order[-1]] = order[0]
    return following


def ns_per_step(following: np.ndarray, steps: int) -> float:
    view = memoryview(following)  # indexing a memoryview gives a Python int: no numpy per step
    at = 0
    began = time.perf_counter()
    for _ in range(steps):
        at = view[at]
    return (time.perf_counter() - began) / steps * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    steps = 500_000 if args.quick else 2_000_000
    small, large = random_cycle(SMALL_ENTRIES, 1), random_cycle(LARGE_ENTRIES, 2)
    step_ns = [ns_per_step(small, steps) for _ in range(args.passes)]
    chase_ns = [ns_per_step(large, steps) for _ in range(args.passes)]
    result = {
        "interpreter_step_ns": round(statistics.median(step_ns), 1),
        "memory_step_ns": round(statistics.median(chase_ns), 1),
        "memory_miss_ns": round(statistics.median(chase_ns) - statistics.median(step_ns), 1),
        "passes": args.passes,
        "steps": steps,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
