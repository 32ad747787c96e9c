"""Short TCP connections per second: connect, 64-byte request, 64-byte response, close.

A client stack and a server stack (one core each) on a private sim wire, driven by one jitted
loop in one thread (``fsdp.apps.bench_kernels.short_run``): ``--concurrency`` client slots each
repeat connect -> send 64 B -> read 64 B -> close, and the server accepts, reads the request,
writes the response and closes right behind it (HTTP/1.0 ``Connection: close``: the server
closes first, so TIME-WAIT lands on the server and the engine recycles the oldest TIME-WAIT
when ``tcp_max_tw_buckets`` is full; ``--closer client`` makes the client close first and puts
TIME-WAIT on the client, where it also holds ephemeral ports).  Latency is from tcp_connect to
the last response byte.  Connections/s are reported over the wall time of the single thread
that runs both stacks, and per core second of each side (the time spent in that side's
application calls and run_once).

    python benchmarks/tcp_short.py [--seconds S] [--runs N] [--concurrency C]
                                   [--closer server|client] [--json-only]

Prints a table, then one JSON object as the last line of stdout.  Exits non-zero with one line
on stderr when no connection completes (failed connections are counted and reported).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np

TARGET_CONN_PER_S = 200_000
PORT = 8080
MSG = 64
HIST_US = 1 << 20  # latency histogram: 1 µs bins up to ~1 s


def _percentile(hist: np.ndarray, q: float) -> float | None:
    total = int(hist.sum())
    if total == 0:
        return None
    k = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    return float(k)


def _tcp_states(stack) -> dict:
    counts: dict[str, int] = {}
    for row in stack.connections():
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


def run(seconds: float, runs: int, concurrency: int, closer: str, max_tw: int) -> dict:
    from fsdp.apps.bench_kernels import (
        CLOSER_CLIENT,
        CLOSER_SERVER,
        CS_CID,
        CS_SIZE,
        SC_ACCEPTED,
        SC_CLIENT_ERRORS,
        SC_CLIENT_NS,
        SC_COMPLETED,
        SC_CONNECT_ERRORS,
        SC_ITERS,
        SC_LAST_ERRNO,
        SC_PORT_EXHAUSTED,
        SC_SERVER_ERRORS,
        SC_SERVER_FULL,
        SC_SERVER_NS,
        SC_STARTED,
        ST_ROW,
        SV_CID,
        SV_SIZE,
        BenchPair,
        monotonic_us,
        short_run,
    )

    close_mode = CLOSER_SERVER if closer == "server" else CLOSER_CLIENT
    per_run = seconds / runs
    with BenchPair(tcp_max_tw_buckets=max_tw) as pair:
        lid = pair.listen(PORT, backlog=4096)
        C, S = pair.C, pair.S
        slots = np.zeros((concurrency, CS_SIZE), np.int64)
        slots[:, CS_CID] = -1
        sv = np.zeros((2 * concurrency, SV_SIZE), np.int64)
        sv[:, SV_CID] = -1
        cbuf = np.zeros(MSG, np.uint8)
        sbuf = np.zeros(MSG, np.uint8)
        req = np.frombuffer(b"G" * MSG, np.uint8).copy()
        resp = np.frombuffer(b"R" * MSG, np.uint8).copy()
        hist = np.zeros(HIST_US, np.int64)
        st = np.zeros((2, ST_ROW), np.int64)
        counters = st[0]  # a view: short_run counts into st[0]

        def drive(duration: float, start_new: bool = True) -> float:
            t0 = int(monotonic_us())
            short_run(
                C,
                S,
                lid,
                pair.server_ip_int,
                PORT,
                slots,
                sv,
                cbuf,
                sbuf,
                req,
                resp,
                hist,
                st,
                close_mode,
                t0 + int(duration * 1e6),
                1 << 62,
                start_new,
            )
            return (int(monotonic_us()) - t0) / 1e6

        drive(min(1.0, per_run))  # warm-up: JIT load, tables, caches
        rates, server_rates, client_rates = [], [], []
        hist[:] = 0
        base = counters.copy()
        for _ in range(runs):
            before = counters.copy()
            dt = drive(per_run)
            d = counters - before
            done = int(d[SC_COMPLETED])
            rates.append(done / dt)
            server_rates.append(done / (d[SC_SERVER_NS] / 1e9) if d[SC_SERVER_NS] else 0.0)
            client_rates.append(done / (d[SC_CLIENT_NS] / 1e9) if d[SC_CLIENT_NS] else 0.0)
        measured = counters - base
        drive(0.3, start_new=False)  # let the connections in flight finish
        in_flight = int((slots[:, CS_CID] >= 0).sum())
        states = {"client": _tcp_states(pair.client), "server": _tcp_states(pair.server)}
        cstats, sstats = pair.client.stats(), pair.server.stats()
    errors = int(
        measured[SC_CLIENT_ERRORS] + measured[SC_SERVER_ERRORS] + measured[SC_CONNECT_ERRORS]
    )
    return {
        "conn_per_s": round(statistics.median(rates)),
        "runs_conn_per_s": [round(r) for r in rates],
        "conn_per_server_core_s": round(statistics.median(server_rates)),
        "conn_per_client_core_s": round(statistics.median(client_rates)),
        "latency_p50_us": _percentile(hist, 0.50),
        "latency_p99_us": _percentile(hist, 0.99),
        "latency_max_bin_us": float(np.nonzero(hist)[0].max()) if hist.any() else None,
        "completed": int(measured[SC_COMPLETED]),
        "started": int(measured[SC_STARTED]),
        "accepted": int(measured[SC_ACCEPTED]),
        "errors": errors,
        "client_errors": int(measured[SC_CLIENT_ERRORS]),
        "server_errors": int(measured[SC_SERVER_ERRORS]),
        "connect_errors": int(measured[SC_CONNECT_ERRORS]),
        "ephemeral_exhausted": int(measured[SC_PORT_EXHAUSTED]),
        "server_slots_full": int(measured[SC_SERVER_FULL]),
        "last_errno": int(counters[SC_LAST_ERRNO]),
        "iterations": int(measured[SC_ITERS]),
        "left_in_flight": in_flight,
        "states_at_end": states,
        "time_wait_entered": {
            "client": cstats["tcp_time_wait_entered"],
            "server": sstats["tcp_time_wait_entered"],
        },
        "time_wait_recycled": {
            "client": cstats["tcp_tw_recycled"],
            "server": sstats["tcp_tw_recycled"],
        },
        "time_wait_reopened": {
            "client": cstats["tcp_tw_reopened"],
            "server": sstats["tcp_tw_reopened"],
        },
        "retransmits": {"client": cstats["tcp_retrans_segs"], "server": sstats["tcp_retrans_segs"]},
        "resets_out": {"client": cstats["tcp_rst_out"], "server": sstats["tcp_rst_out"]},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured time, all runs")
    ap.add_argument("--runs", type=int, default=5, help="runs (the median is reported)")
    ap.add_argument("--concurrency", type=int, default=64, help="client connections in flight")
    ap.add_argument(
        "--closer",
        choices=("server", "client"),
        default="server",
        help="who closes first (and so holds TIME-WAIT)",
    )
    ap.add_argument(
        "--max-tw",
        type=int,
        default=16384,
        help="tcp_max_tw_buckets per stack (the oldest TIME-WAIT is recycled)",
    )
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.runs < 1 or not 1 <= args.concurrency <= 16384:
        print(
            "tcp_short: need --seconds > 0, --runs >= 1, 1 <= --concurrency <= 16384",
            file=sys.stderr,
        )
        return 2
    try:
        from fsdp.apps.bench_kernels import machine_info
    except ImportError as e:
        print(f"tcp_short: cannot run: {e}", file=sys.stderr)
        return 1

    machine = machine_info()
    try:
        res = run(args.seconds, args.runs, args.concurrency, args.closer, args.max_tw)
    except (RuntimeError, OSError, AssertionError) as e:
        print(f"tcp_short: {e}", file=sys.stderr)
        return 1
    out = {
        "benchmark": "tcp_short",
        **machine,
        "seconds": args.seconds,
        "runs": args.runs,
        "concurrency": args.concurrency,
        "closer": args.closer,
        "message_bytes": MSG,
        **res,
        "target_conn_per_s_per_core": TARGET_CONN_PER_S,
        "meets_target": res["conn_per_server_core_s"] >= TARGET_CONN_PER_S,
    }
    if not args.json_only:
        print(
            f"TCP short connections: connect, {MSG} B request, {MSG} B response, close "
            f"({args.closer} closes first), {args.concurrency} concurrent, median of runs"
        )
        print(
            f"machine: {out['machine']}, {out['processor']}, {out['cpu_count']} CPUs, "
            f"load {out['loadavg_1m_at_start']}"
        )
        print(
            f"{'conn/s (1 thread, both stacks)':>34} {res['conn_per_s']:>10}  "
            f"{res['runs_conn_per_s']}"
        )
        print(f"{'conn/s per server core second':>34} {res['conn_per_server_core_s']:>10}")
        print(f"{'conn/s per client core second':>34} {res['conn_per_client_core_s']:>10}")
        print(f"{'latency p50 / p99 (µs)':>34} {res['latency_p50_us']} / {res['latency_p99_us']}")
        print(
            f"{'completed / errors':>34} {res['completed']} / {res['errors']} "
            f"(client {res['client_errors']}, server {res['server_errors']}, connect "
            f"{res['connect_errors']}, ephemeral exhausted {res['ephemeral_exhausted']})"
        )
        print(
            f"{'TIME-WAIT entered (client/server)':>34} {res['time_wait_entered']['client']} / "
            f"{res['time_wait_entered']['server']}, recycled "
            f"{res['time_wait_recycled']['client']} / {res['time_wait_recycled']['server']}"
        )
        print(f"{'states at the end':>34} {res['states_at_end']}")
        print(
            f"target: >= {TARGET_CONN_PER_S} conn/s per core: "
            + ("met" if out["meets_target"] else "NOT met")
        )
    print(json.dumps(out))
    if res["completed"] == 0:
        print(
            f"tcp_short: no connection completed (last errno {res['last_errno']})", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
