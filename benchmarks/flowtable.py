"""Lookup cost of the per-core established-connection table (fsdp.tcp.flowtable).

A server's view: every key is (our address, port 443, a random client address, a random client
port).  For each table: insert N connections, then time a jitted loop of lookups in random order,
*hits* (keys in the table) and *misses* (keys that are not), 1M lookups per run, median of runs.
What a segment pays is throughput per lookup here (independent lookups overlap in the CPU), plus
a cache miss when the table does not fit in cache (16 bytes per bucket: 4 MiB for 2^18 buckets).
A Python dict of tuples is measured on the same keys for scale.

    python benchmarks/flowtable.py [--runs R] [--json-only]

Prints a table, then one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
from numba import njit

from fsdp.tcp.flowtable import (
    flow_count,
    flow_insert,
    flow_lookup,
    flow_probe_stats,
    flowtable_create,
)

LIP = 0x0A000001
LPORT = 443
LOOKUPS = 1_000_000
# (connections, capacity): load = connections / 2^ceil(log2(2 * capacity))
CONFIGS = ((100_000, 100_000), (131_072, 131_072), (1_000_000, 1_000_000))


@njit(cache=True)
def _fill(t, rips, rports):
    for c in range(rips.shape[0]):
        if flow_insert(t, LIP, LPORT, rips[c], rports[c], c) != 0:
            return c
    return rips.shape[0]


@njit(cache=True, nogil=True)
def _lookups(t, rips, rports, order):
    acc = 0
    for k in range(order.shape[0]):
        i = order[k]
        acc += flow_lookup(t, LIP, LPORT, rips[i], rports[i])
    return acc


def _time(fn, *args, runs: int) -> list[float]:
    fn(*args)  # compile + warm
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t0)
    return out


def measure(n: int, capacity: int, runs: int, rng: np.random.Generator) -> dict:
    t = flowtable_create(capacity)
    keys = rng.choice(2**48, 2 * n, replace=False)  # distinct (rip, rport) pairs
    rips = (keys >> 16).astype(np.int64)
    rports = (keys & 0xFFFF).astype(np.int64)
    assert _fill(t, rips[:n], rports[:n]) == n and flow_count(t) == n
    order_hit = rng.integers(0, n, LOOKUPS)
    order_miss = rng.integers(n, 2 * n, LOOKUPS)
    hit = _time(_lookups, t, rips, rports, order_hit, runs=runs)
    miss = _time(_lookups, t, rips, rports, order_miss, runs=runs)
    assert _lookups(t, rips, rports, order_miss) == -LOOKUPS  # all misses really missed
    mean_disp, max_disp = flow_probe_stats(t)
    buckets = t.slots.shape[0] // 2
    # A Python dict over the same keys, 200k lookups (for scale only).
    d = {(LIP, LPORT, int(rips[c]), int(rports[c])): c for c in range(n)}
    probe = [(LIP, LPORT, int(rips[i]), int(rports[i])) for i in order_hit[:200_000]]
    t0 = time.perf_counter()
    for k in probe:
        d.get(k)
    dict_ns = (time.perf_counter() - t0) / len(probe) * 1e9
    return {
        "connections": n,
        "buckets": buckets,
        "load": round(n / buckets, 3),
        "table_mib": round(t.slots.nbytes / 2**20, 1),
        "hit_ns": round(statistics.median(hit) / LOOKUPS * 1e9, 1),
        "miss_ns": round(statistics.median(miss) / LOOKUPS * 1e9, 1),
        "runs_hit_ns": [round(x / LOOKUPS * 1e9, 1) for x in hit],
        "runs_miss_ns": [round(x / LOOKUPS * 1e9, 1) for x in miss],
        "mean_displacement": round(mean_disp, 3),
        "max_displacement": int(max_disp),
        "python_dict_hit_ns": round(dict_ns, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per measurement")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(1)
    results = [measure(n, cap, args.runs, rng) for n, cap in CONFIGS]
    out = {
        "benchmark": "flowtable",
        "lookups_per_run": LOOKUPS,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "results": results,
    }
    if not args.json_only:
        print(f"flow table lookups, one core, {LOOKUPS:,} random lookups per run (median)")
        print(f"machine: {out['machine']}, {out['cpu_count']} CPUs")
        print(
            f"{'conns':>9} {'buckets':>9} {'load':>5} {'MiB':>5} {'hit ns':>7} {'miss ns':>8} "
            f"{'mean/max disp':>14} {'dict ns':>8}"
        )
        for r in results:
            print(
                f"{r['connections']:>9,} {r['buckets']:>9,} {r['load']:>5.2f} "
                f"{r['table_mib']:>5.1f} {r['hit_ns']:>7.1f} {r['miss_ns']:>8.1f} "
                f"{r['mean_displacement']:>8.2f}/{r['max_displacement']:<5} "
                f"{r['python_dict_hit_ns']:>8.1f}"
            )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
