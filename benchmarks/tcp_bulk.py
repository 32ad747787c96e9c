"""TCP bulk goodput: one fsdp connection between two stacks on one sim wire, one thread.

A client stack and a server stack (one core each) on a private sim wire; one connection; the
client sends as much as it can for ``--seconds`` and the server reads and discards it.  The whole
data path runs in one jitted loop (``fsdp.apps.bench_kernels.stream_run``): tcp_send ->
run_once(client) -> run_once(server) -> tcp_recv, no Python per packet.  Goodput is the bytes
the receiving application got, per second, in Gbit/s; the last window of the stream is checked
against what was sent (order and content).  For scale, iperf3 over the kernel's loopback
(``iperf3 -c 127.0.0.1``, two processes: it uses both CPUs where fsdp uses one) runs in the
same invocation, interleaved with fsdp's runs; medians of each and the ratio are reported.

    python benchmarks/tcp_bulk.py [--seconds S] [--runs N] [--no-iperf] [--json-only]

Prints a table, then one JSON object as the last line of stdout.  Exits non-zero with one line
on stderr if the transfer fails.

Where the time goes: see PROFILE below (``--perf-map`` writes ``/tmp/perf-<pid>.map`` so
``perf record -e cpu-clock python benchmarks/tcp_bulk.py --no-iperf --perf-map`` then
``perf report --sort sym`` names the jitted functions).

PROFILE
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys

import numpy as np

TARGET_GBPS = 20.0
PORT = 5001
STREAM_BYTES = 1 << 20  # the sender's buffer, sent over and over; the receiver's, as large


def _iperf3_once(seconds: float, port: int) -> float:
    """One iperf3 run over loopback (one-shot server, JSON client); receiver-side bits/s."""
    srv = subprocess.Popen(
        ["iperf3", "-s", "-1", "--forceflush", "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = srv.stdout.readline()  # "Server listening on PORT ..." once it listens
        while line and "listening" not in line:
            line = srv.stdout.readline()
        if not line:
            raise RuntimeError("iperf3 server did not start")
        p = subprocess.run(
            ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", f"{seconds:g}", "-J"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        d = None
        try:
            d = json.loads(p.stdout)
            return float(d["end"]["sum_received"]["bits_per_second"])
        except (ValueError, KeyError, TypeError):
            err = d.get("error") if isinstance(d, dict) else None
            raise RuntimeError(f"iperf3 client failed: {err or p.stdout.strip()[-200:]}") from None
    finally:
        srv.kill()
        srv.wait()


def _iperf3_available() -> tuple[bool, str]:
    if shutil.which("iperf3") is None:
        return False, "iperf3 not installed (apt-get install iperf3)"
    return True, ""


def run(seconds: float, runs: int, iperf: bool, sndbuf: int, rcvbuf: int) -> dict:
    from fsdp.apps.bench_kernels import (
        SF_DISCARD_RECV,
        SF_LOOP_SEND,
        SR_TIME,
        SS_RECEIVED,
        SS_RECV_LEN,
        SS_SEND_END,
        ST_ROW,
        BenchPair,
        monotonic_us,
        stream_run,
    )
    from fsdp.tcp.usercalls import CI_RETRANS, CI_SIZE, tcp_conn_info

    have_iperf, iperf_note = _iperf3_available() if iperf else (False, "skipped (--no-iperf)")
    per_run = seconds / runs
    options = {
        "tcp_wmem": f"4096 {sndbuf} {max(sndbuf, 4194304)}",
        "tcp_rmem": f"4096 {rcvbuf} {max(rcvbuf, 33554432)}",
    }
    with BenchPair(**options) as pair:
        lid = pair.listen(PORT)
        ccid, scid = pair.connect(lid, PORT)
        C, S = pair.C, pair.S
        rng = np.random.default_rng(1)
        src = rng.integers(0, 256, STREAM_BYTES, dtype=np.uint8)
        dst = np.zeros(STREAM_BYTES, np.uint8)
        idle = np.zeros(1, np.uint8)  # the server sends nothing
        st = np.zeros((2, ST_ROW), np.int64)
        st[0, SS_SEND_END] = STREAM_BYTES
        flags = SF_LOOP_SEND | SF_DISCARD_RECV

        def transfer(duration: float) -> tuple[int, float]:
            before = int(st[1, SS_RECEIVED])
            t0 = int(monotonic_us())
            rc = int(
                stream_run(
                    C,
                    S,
                    ccid,
                    scid,
                    src,
                    idle,
                    idle,
                    dst,
                    st,
                    flags,
                    t0 + int(duration * 1e6),
                    1 << 62,
                )
            )
            t1 = int(monotonic_us())
            if rc != SR_TIME:
                raise RuntimeError(f"transfer failed: {rc} (errno {-rc})")
            return int(st[1, SS_RECEIVED]) - before, (t1 - t0) / 1e6

        transfer(min(1.0, per_run))  # warm-up: JIT load, slow start, caches
        fsdp_bps, iperf_bps = [], []
        for i in range(runs):
            nbytes, dt = transfer(per_run)
            if nbytes == 0:
                raise RuntimeError(f"no data moved in run {i} ({dt:.2f} s): the transfer stalled")
            # The receive window is a copy of the send window at the same stream offset.
            k = int(st[1, SS_RECV_LEN])
            if not np.array_equal(dst[:k], src[:k]):
                raise RuntimeError("received bytes differ from the bytes sent")
            fsdp_bps.append(nbytes * 8 / dt)
            if have_iperf:
                try:
                    iperf_bps.append(_iperf3_once(per_run, 15201 + (i % 50)))
                except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
                    have_iperf, iperf_note = False, f"iperf3 failed: {e}"
        info = np.zeros(CI_SIZE, np.int64)
        tcp_conn_info(C, ccid, info)
        retrans = int(info[CI_RETRANS])
        cstats, sstats = pair.client.stats(), pair.server.stats()
        wire_drops = sum(port.stats()[k] for port in pair.ports for k in ("ring_full", "rx_nobuf"))
        total = int(st[1, SS_RECEIVED])
    g = statistics.median(fsdp_bps) / 1e9
    out = {
        "gbit_s": round(g, 3),
        "runs_gbit_s": [round(b / 1e9, 3) for b in fsdp_bps],
        "bytes_total": total,
        "retransmits": retrans,
        "segments_out": cstats["tcp_segs_out"],
        "acks_out": sstats["tcp_segs_out"],
        "wire_drops": int(wire_drops),
        "iperf3_gbit_s": round(statistics.median(iperf_bps) / 1e9, 3) if iperf_bps else None,
        "iperf3_runs_gbit_s": [round(b / 1e9, 3) for b in iperf_bps],
        "iperf3_note": iperf_note,
    }
    out["ratio_vs_iperf3"] = (
        round(out["gbit_s"] / out["iperf3_gbit_s"], 3) if out["iperf3_gbit_s"] else None
    )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured time, all runs")
    ap.add_argument("--runs", type=int, default=5, help="runs (the median is reported)")
    ap.add_argument("--no-iperf", action="store_true", help="do not run iperf3 for comparison")
    ap.add_argument("--sndbuf", type=int, default=1 << 20, help="SO_SNDBUF (tcp_wmem default)")
    ap.add_argument("--rcvbuf", type=int, default=1 << 20, help="SO_RCVBUF (tcp_rmem default)")
    ap.add_argument(
        "--perf-map", action="store_true", help="write /tmp/perf-<pid>.map for perf report"
    )
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.runs < 1:
        print("tcp_bulk: --seconds must be > 0 and --runs >= 1", file=sys.stderr)
        return 2
    try:
        from fsdp.apps.bench_kernels import PerfMap, machine_info
    except ImportError as e:
        print(f"tcp_bulk: cannot run: {e}", file=sys.stderr)
        return 1
    perf_map = None
    if args.perf_map:
        perf_map = PerfMap()
        perf_map.start()

    machine = machine_info()
    try:
        res = run(args.seconds, args.runs, not args.no_iperf, args.sndbuf, args.rcvbuf)
    except (RuntimeError, OSError, AssertionError) as e:
        print(f"tcp_bulk: {e}", file=sys.stderr)
        return 1
    if perf_map is not None:
        print(f"perf map: {perf_map.write()}", file=sys.stderr)
    out = {
        "benchmark": "tcp_bulk",
        **machine,
        "seconds": args.seconds,
        "runs": args.runs,
        "sndbuf": args.sndbuf,
        "rcvbuf": args.rcvbuf,
        **res,
        "target_gbit_s": TARGET_GBPS,
        "meets_target": res["gbit_s"] >= TARGET_GBPS
        and (res["iperf3_gbit_s"] is None or res["gbit_s"] > res["iperf3_gbit_s"]),
    }
    if not args.json_only:
        print("TCP bulk, one connection, client and server stacks on one core (median of runs)")
        print(
            f"machine: {out['machine']}, {out['processor']}, {out['cpu_count']} CPUs, "
            f"load {out['loadavg_1m_at_start']}"
        )
        print(f"{'':>22} {'Gbit/s':>8}  runs")
        print(f"{'fsdp (1 thread)':>22} {res['gbit_s']:>8.2f}  {res['runs_gbit_s']}")
        if res["iperf3_gbit_s"] is not None:
            print(
                f"{'iperf3 loopback':>22} {res['iperf3_gbit_s']:>8.2f}  {res['iperf3_runs_gbit_s']}"
            )
            print(f"{'fsdp / iperf3':>22} {res['ratio_vs_iperf3']:>8.2f}")
        else:
            print(f"{'iperf3 loopback':>22} {'n/a':>8}  {res['iperf3_note']}")
        print(
            f"retransmits {res['retransmits']}, segments {res['segments_out']}, "
            f"ACKs {res['acks_out']}, wire drops {res['wire_drops']}, bytes {res['bytes_total']}"
        )
        print(
            f"target: >= {TARGET_GBPS} Gbit/s and ahead of iperf3: "
            + ("met" if out["meets_target"] else "NOT met")
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
