"""Frames per second through the sim NIC on one core.

Two ports A and B on one wire, frames primed into the rings, and one jitted loop that forwards
them back and forth: rx_burst(A) -> rewrite MACs (dst = the peer) -> tx_burst(A) toward B, then
rx_burst(B) -> ... -> tx_burst(B) toward A, bursts of 32.  Every hop pays what a real core pays
on the sim: receive copy into the pool, switch lookup, RSS (Toeplitz over the IPv4/UDP 4-tuple),
transmit copy into the ring, frame free.  A "frame" below is one rx+tx hop; Gbit/s counts frame
bytes.  Warm-up first, then several timed runs; the median is reported.

    python benchmarks/sim_nic.py [--seconds S] [--json-only]

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

from fsdp.driver.api import nic_borrow, nic_rx_burst, nic_tx_burst
from fsdp.driver.jitmem import borrow, borrow_pool
from fsdp.driver.sim import SimWire
from fsdp.pool.pool import pool_audit, pool_create
from fsdp.wire.byteorder import set_u48

BURST = 32
MAC_A = 0x020000000A0A
MAC_B = 0x020000000B0B
PRIMED_PER_DIRECTION = 128
TARGET_MPPS_64 = 10.0
TARGET_GBPS_1500 = 40.0


@njit(cache=True, nogil=True)
def _forward(q_in, pool, ids, dst_mac, src_mac, now):
    """One hop: receive a burst, point it at the peer, send it back out; returns (n, bytes)."""
    n = nic_rx_burst(q_in, pool, ids, BURST, now)
    nbytes = 0
    for i in range(n):
        fid = ids[i]
        row = pool.data[fid]  # a free view: the pool is borrowed
        set_u48(row, pool.off[fid], dst_mac)
        set_u48(row, pool.off[fid] + 6, src_mac)
        nbytes += pool.length[fid]
    nic_tx_burst(q_in, pool, ids, n, now)
    return n, nbytes


@njit(cache=True, nogil=True)
def ping_pong(qa, qb, pool_a, pool_b, ids, iterations, mac_a, mac_b):
    """``iterations`` rounds of A -> B and B -> A hops; returns (frames, bytes) forwarded."""
    # What a per-core loop does once per pass: borrowed handles make NIC calls refcount-free.
    qa = nic_borrow(qa)
    qb = nic_borrow(qb)
    pool_a = borrow_pool(pool_a)
    pool_b = borrow_pool(pool_b)
    ids = borrow(ids)
    frames = 0
    nbytes = 0
    for it in range(iterations):
        n, b = _forward(qa, pool_a, ids, mac_b, mac_a, it)
        frames += n
        nbytes += b
        n, b = _forward(qb, pool_b, ids, mac_a, mac_b, it)
        frames += n
        nbytes += b
    return frames, nbytes


def _frame(dst: int, src: int, size: int, flow: int) -> bytes:
    """An Ethernet/IPv4/UDP frame of ``size`` bytes (no Scapy in benchmarks' hot setup)."""
    import struct

    payload = size - 14 - 20 - 8
    ip_total = 20 + 8 + payload
    eth = dst.to_bytes(6, "big") + src.to_bytes(6, "big") + b"\x08\x00"
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        ip_total,
        flow & 0xFFFF,
        0,
        64,
        17,
        0,
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 1 + (flow >> 8) % 200, flow & 0xFF]),
    )
    udp = struct.pack("!HHHH", 1024 + flow, 9, 8 + payload, 0)
    return eth + ip + udp + bytes(payload)


def measure(size: int, seconds: float, runs: int = 5) -> dict:
    wire = SimWire.private(max_ports=2, max_queues=1, ring_slots=256, name="bench")
    a = wire.attach(1, MAC_A)
    b = wire.attach(1, MAC_B)
    try:
        qa, qb = a.queue(0), b.queue(0)
        pool_a, pool_b = pool_create(1024), pool_create(1024)
        ids = np.zeros(BURST, np.int32)
        for k in range(PRIMED_PER_DIRECTION):  # frames waiting at both ends
            b.inject(_frame(MAC_A, MAC_B, size, k))
            a.inject(_frame(MAC_B, MAC_A, size, 1000 + k))
        ping_pong(qa, qb, pool_a, pool_b, ids, 1000, MAC_A, MAC_B)  # compile + warm caches
        # Calibrate a chunk of ~0.05 s, then time runs of seconds/runs each.
        iters = 10_000
        while True:
            t0 = time.perf_counter()
            ping_pong(qa, qb, pool_a, pool_b, ids, iters, MAC_A, MAC_B)
            dt = time.perf_counter() - t0
            if dt > 0.05:
                break
            iters *= 2
        per_run = max(seconds / runs, dt)
        rates = []
        for _ in range(runs):
            frames = nbytes = 0
            t0 = time.perf_counter()
            while True:
                f, nb = ping_pong(qa, qb, pool_a, pool_b, ids, iters, MAC_A, MAC_B)
                frames += f
                nbytes += nb
                elapsed = time.perf_counter() - t0
                if elapsed >= per_run:
                    break
            rates.append((frames / elapsed, nbytes * 8 / elapsed))
        stats = {**a.stats(), "b": b.stats()}
        lost = (
            stats["ring_full"]
            + stats["b"]["ring_full"]
            + stats["rx_nobuf"]
            + stats["b"]["rx_nobuf"]
        )
        assert pool_audit(pool_a) == 0 and pool_audit(pool_b) == 0
        fps = statistics.median(r[0] for r in rates)
        bps = statistics.median(r[1] for r in rates)
        return {
            "frame_bytes": size,
            "mpps": round(fps / 1e6, 3),
            "gbit_s": round(bps / 1e9, 3),
            "ns_per_frame": round(1e9 / fps, 1),
            "runs_mpps": [round(r[0] / 1e6, 3) for r in rates],
            "drops": int(lost),
        }
    finally:
        a.close()
        b.close()
        wire.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured time per frame size")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    results = [measure(64, args.seconds), measure(1500, args.seconds)]
    out = {
        "benchmark": "sim_nic",
        "burst": BURST,
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "results": results,
        "targets": {"mpps_64": TARGET_MPPS_64, "gbit_s_1500": TARGET_GBPS_1500},
        "meets_targets": results[0]["mpps"] >= TARGET_MPPS_64
        and results[1]["gbit_s"] >= TARGET_GBPS_1500,
    }
    if not args.json_only:
        print(f"sim NIC, one core, two ports, bursts of {BURST} (median of runs)")
        print(f"machine: {out['machine']}, {out['cpu_count']} CPUs")
        print(f"{'frame':>7} {'Mpps':>8} {'Gbit/s':>8} {'ns/frame':>9} {'drops':>6}")
        for r in results:
            print(
                f"{r['frame_bytes']:>6}B {r['mpps']:>8.2f} {r['gbit_s']:>8.2f} "
                f"{r['ns_per_frame']:>9.1f} {r['drops']:>6}"
            )
        print(
            f"targets: >= {TARGET_MPPS_64} Mpps at 64 B, >= {TARGET_GBPS_1500} Gbit/s at 1500 B: "
            + ("met" if out["meets_targets"] else "NOT met")
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
