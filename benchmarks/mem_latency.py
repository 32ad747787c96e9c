"""The machine's memory latency by working-set size: a host check for reading benchmark numbers.

fsdp's engine keeps a few MB of tables per core hot (connection tables, frame pool, timer
wheel), so its speed follows the latency of the cache level those fit in far more than the
interpreter's does.  A shared host can take most of its last-level cache from a guest; then a
4 MB working set costs DRAM latency, and jitted benchmarks run several times slower while a
pure-Python loop (``cpu_siblings.py``) runs as fast as ever.  This chases a random cyclic
permutation (each load depends on the last) over working sets from 16 KiB to 512 MiB and prints
the nanoseconds per load.  The last line is one JSON object.

    python benchmarks/mem_latency.py [--steps 2000000] [--max-kib 524288]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from numba import njit

SIZES_KIB = (16, 256, 1024, 4096, 16384, 65536, 524288)


@njit(cache=False)
def _chase(nxt, steps):
    i = 0
    for _ in range(steps):
        i = nxt[i]
    return i


def latency_ns(size_kib: int, steps: int, rng) -> float:
    n = size_kib * 1024 // 8
    order = rng.permutation(n)
    nxt = np.empty(n, np.int64)
    nxt[order] = np.roll(order, 1)  # one cycle through every slot, in random order
    _chase(nxt, min(steps, 4 * n))  # touch (and fault in) the pages first
    t = time.perf_counter()
    _chase(nxt, steps)
    return (time.perf_counter() - t) / steps * 1e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2_000_000, help="dependent loads per size")
    ap.add_argument("--max-kib", type=int, default=SIZES_KIB[-1],
                    help="the largest working set measured, KiB")
    args = ap.parse_args(argv)
    if args.steps < 1000 or args.max_kib < SIZES_KIB[0]:
        print(f"mem_latency.py: --steps must be >= 1000 and --max-kib >= {SIZES_KIB[0]}",
              file=sys.stderr)
        return 2
    rng = np.random.default_rng(1)
    result = {}
    print(f"{'working set':>12} {'ns per load':>12}")
    for kib in (k for k in SIZES_KIB if k <= args.max_kib):
        ns = latency_ns(kib, args.steps, rng)
        result[str(kib)] = round(ns, 1)
        label = f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"
        print(f"{label:>12} {ns:>12.1f}")
    print(json.dumps({"ns_per_load_by_kib": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
