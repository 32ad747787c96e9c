"""TCP bulk goodput: one fsdp connection between two stacks on one sim wire.

A client stack and a server stack (one core each) on a sim wire; one connection; the client
sends as much as it can for ``--seconds`` and the server reads and discards it.  By default the
two stacks run in two processes pinned to two CPUs (the connection is set up, then the process
forks: the parent drives the sender, the child the receiver, over the shared wire), as iperf3's
client and server do; ``--one-thread`` drives both in one loop on one CPU.  Each side's data
path is one jitted loop (``fsdp.apps.bench_kernels.stream_run``): tcp_send / run_once /
tcp_recv, no Python per packet.  Goodput is the bytes the receiving application got, per
second, in Gbit/s; the last window of the stream is checked against what was sent (order and
content).  iperf3 over the kernel's loopback (``iperf3 -c 127.0.0.1``) runs in the same
invocation (after fsdp's runs in the two-process mode, interleaved with them in one thread);
medians of each and the ratio are reported.

    python benchmarks/tcp_bulk.py [--seconds S] [--runs N] [--one-thread] [--no-iperf]
                                  [--json-only]

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
import mmap
import os
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


def _iperf3_run(seconds: float, i: int) -> tuple[float | None, str]:
    """One iperf3 run: (bits/s, "") or (None, why it failed)."""
    try:
        return _iperf3_once(seconds, 15201 + (i % 50)), ""
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as e:
        return None, f"iperf3 failed: {e}"


def _iperf3_available() -> tuple[bool, str]:
    if shutil.which("iperf3") is None:
        return False, "iperf3 not installed (apt-get install iperf3)"
    return True, ""


# the receiver process's report (int64 words of a shared anonymous mapping)
SH_STOP = 0  # the parent asks the receiver to stop
SH_RECEIVED = 1  # bytes the receiving application got, total (updated every slice)
SH_ERROR = 2  # the first -errno of the receiver's calls
SH_MISMATCH = 3  # 1: the received window differs from the bytes sent
SH_ACKS = 4  # the receiver stack's segments sent (its ACKs)
SH_DONE = 5
RECV_SLICE_US = 2000


def _pin(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


def _receiver(S, scid, src, dst, row, sh) -> None:
    """The child: drive the receiving stack until told to stop, report through ``sh``."""
    from fsdp.apps.bench_kernels import (
        SF_DISCARD_RECV,
        SF_ONE_SIDE,
        SS_RECEIVED,
        SS_RECV_LEN,
        ST_ROW,
        monotonic_us,
        stream_run,
    )

    st = np.zeros((2, ST_ROW), np.int64)
    st[0] = row  # the stream continues where the warm-up left it
    idle = np.zeros(1, np.uint8)
    while sh[SH_STOP] == 0:
        rc = stream_run(S, S, scid, scid, idle, idle, dst, dst, st, SF_ONE_SIDE | SF_DISCARD_RECV,
                        int(monotonic_us()) + RECV_SLICE_US)
        sh[SH_RECEIVED] = st[0, SS_RECEIVED]
        if rc < 0:
            sh[SH_ERROR] = rc
            break
    k = int(st[0, SS_RECV_LEN])
    sh[SH_MISMATCH] = 0 if np.array_equal(dst[:k], src[:k]) else 1


def run(seconds: float, runs: int, iperf: bool, sndbuf: int, rcvbuf: int,
        one_thread: bool = False) -> dict:
    from fsdp.apps.bench_kernels import (
        SF_DISCARD_RECV,
        SF_LOOP_SEND,
        SF_ONE_SIDE,
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
        two = not one_thread and (os.cpu_count() or 1) >= 2
        if two:
            sh = np.frombuffer(mmap.mmap(-1, 4096), np.int64)
            saved_cpus = os.sched_getaffinity(0)
            pid = os.fork()
            if pid == 0:  # the receiver: never returns into the caller
                code = 1
                try:
                    _pin(1)
                    _receiver(S, scid, src, dst, st[1].copy(), sh)
                    sh[SH_ACKS] = pair.server.stats()["tcp_segs_out"]
                    code = 0
                finally:
                    sh[SH_DONE] = 1
                    os._exit(code)
            _pin(0)

            def transfer(duration: float) -> tuple[int, float]:  # noqa: F811 (the sender's)
                before = int(sh[SH_RECEIVED])
                t0 = int(monotonic_us())
                rc = int(stream_run(C, C, ccid, ccid, src, src, idle, idle, st,
                                    SF_ONE_SIDE | SF_LOOP_SEND, t0 + int(duration * 1e6), 1 << 62))
                t1 = int(monotonic_us())
                if rc != SR_TIME or sh[SH_ERROR] != 0:
                    raise RuntimeError(f"transfer failed: {rc} / receiver {int(sh[SH_ERROR])}")
                return int(sh[SH_RECEIVED]) - before, (t1 - t0) / 1e6
        try:
            for i in range(runs):
                nbytes, dt = transfer(per_run)
                if nbytes == 0:
                    raise RuntimeError(
                        f"no data moved in run {i} ({dt:.2f} s): the transfer stalled")
                if not two:
                    # The receive window is a copy of the send window at the same stream offset.
                    k = int(st[1, SS_RECV_LEN])
                    if not np.array_equal(dst[:k], src[:k]):
                        raise RuntimeError("received bytes differ from the bytes sent")
                fsdp_bps.append(nbytes * 8 / dt)
                if have_iperf and not two:
                    bps, note = _iperf3_run(per_run, i)
                    if bps is None:
                        have_iperf, iperf_note = False, note
                    else:
                        iperf_bps.append(bps)
        finally:
            if two:
                sh[SH_STOP] = 1
                os.waitpid(pid, 0)
                os.sched_setaffinity(0, saved_cpus)
        if have_iperf and two:
            # after fsdp's runs, with the receiver process gone: interleaving would idle the
            # fsdp connection (its restart after idle and the pinned CPUs would skew both)
            for i in range(runs):
                bps, note = _iperf3_run(per_run, i)
                if bps is None:
                    have_iperf, iperf_note, iperf_bps = False, note, []
                    break
                iperf_bps.append(bps)
        if two:
            if not sh[SH_DONE] or sh[SH_ERROR] != 0:
                raise RuntimeError(f"the receiver process failed ({int(sh[SH_ERROR])})")
            if sh[SH_MISMATCH]:
                raise RuntimeError("received bytes differ from the bytes sent")
        info = np.zeros(CI_SIZE, np.int64)
        tcp_conn_info(C, ccid, info)
        retrans = int(info[CI_RETRANS])
        cstats, sstats = pair.client.stats(), pair.server.stats()
        acks = int(sh[SH_ACKS]) if two else sstats["tcp_segs_out"]
        wire_drops = sum(port.stats()[k] for port in pair.ports for k in ("ring_full", "rx_nobuf"))
        total = int(sh[SH_RECEIVED]) if two else int(st[1, SS_RECEIVED])
    g = statistics.median(fsdp_bps) / 1e9
    out = {
        "gbit_s": round(g, 3),
        "runs_gbit_s": [round(b / 1e9, 3) for b in fsdp_bps],
        "bytes_total": total,
        "retransmits": retrans,
        "segments_out": cstats["tcp_segs_out"],
        "acks_out": acks,
        "processes": 2 if two else 1,
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
    ap.add_argument("--one-thread", action="store_true",
                    help="both stacks in one loop on one CPU (default: one process per stack)")
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
        res = run(args.seconds, args.runs, not args.no_iperf, args.sndbuf, args.rcvbuf,
                  args.one_thread)
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
        where = ("one process per stack, one CPU each" if res["processes"] == 2
                 else "both stacks in one thread")
        print(f"TCP bulk, one connection, {where} (median of runs)")
        print(
            f"machine: {out['machine']}, {out['processor']}, {out['cpu_count']} CPUs, "
            f"load {out['loadavg_1m_at_start']}"
        )
        print(f"{'':>22} {'Gbit/s':>8}  runs")
        label = "fsdp (2 processes)" if res["processes"] == 2 else "fsdp (1 thread)"
        print(f"{label:>22} {res['gbit_s']:>8.2f}  {res['runs_gbit_s']}")
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
