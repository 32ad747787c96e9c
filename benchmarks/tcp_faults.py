"""TCP under faults: a two-way transfer over a lossy, reordering, duplicating sim wire.

Two stacks (one core each) on a private sim wire with netem-like faults on both ports
(``port.set_faults(drop=0.05, reorder=0.05, duplicate=0.01, seed=S)`` by default); one
connection carries ``--megabytes`` in *each* direction at the same time, driven by one jitted
loop (``fsdp.apps.bench_kernels.stream_run``; Python only generates the data, hashes it and
refills buffers between calls).  Each side then shuts down sending; the receiver must see EOF
after exactly the bytes sent, with matching SHA-256 digests at both ends.  Both sides close,
the stacks run until the connection is gone, and ``stack.audit()`` checks both for leaked
frames.  Reports MB, seconds, goodput and the TCP recovery counters of ``stack.stats()``.

    python benchmarks/tcp_faults.py [--megabytes N] [--drop P] [--reorder P] [--duplicate P]
                                    [--ce-mark P] [--delay-us D] [--seed S] [--tcp-recovery 0|1]
                                    [--tcp-frto 0|2] [--tcp-ecn 0|1|2]
                                    [--tcp-moderate-rcvbuf 0|1] [--stall-seconds T]
                                    [--json-only]

``--tcp-recovery`` is the stacks' option: 1 (default, as Linux) finds losses with RACK (RFC 8985
§6), 0 with RFC 6675's DupThresh rule; run both with one seed to compare them.  ``--tcp-frto``
likewise: 2 (default, as Linux) runs F-RTO (RFC 5682) after a timeout, 0 goes back N at once.
``--ce-mark P`` marks ECN-capable frames CE on the wire (an AQM router's RFC 3168 marking), and
``--tcp-ecn 1`` makes the stacks ask for ECN: compare ``--drop P --tcp-ecn 0`` with
``--drop 0 --ce-mark P --tcp-ecn 1`` to see the same congestion signal answered without losses.
``--delay-us D`` makes a long path (RTT 2D); compare ``--tcp-moderate-rcvbuf 1`` (receive-buffer
autotuning, as Linux) with 0 (the window stays at what the 128 KiB default buffer allows).

Prints a table, then one JSON object as the last line of stdout.  Exits non-zero with one line
on stderr if the digests differ, a side errs, the audit fails, or the transfer makes no
progress for ``--stall-seconds``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np

PORT = 7007
CHUNK = 1 << 22  # bytes generated (and hashed) per refill; receive buffers are as large
CALL_SECONDS = 0.05  # one jitted call at most this long, so Python can refill and watch progress

COUNTERS = (
    "tcp_segs_out",
    "tcp_retrans_segs",
    "tcp_timeouts",
    "tcp_fast_retrans",
    "tcp_recovery_episodes",
    "tcp_sack_recovery",
    "tcp_partial_acks",
    "tcp_dup_acks_in",
    "tcp_dup_data",
    "tcp_dsacks_sent",
    "tcp_dsacks_recv",
    "tcp_sack_reorder",
    "tcp_reo_wnd_grown",
    "tcp_undo_recovery",
    "tcp_undo_dsack",
    "tcp_undo_loss",
    "tcp_spurious_rtos",
    "tcp_ecn_ce_recv",
    "tcp_ecn_cwr_episodes",
    "tcp_ofo_queued",
    "tcp_ofo_dropped",
    "tcp_out_of_window",
    "tcp_delayed_acks",
    "tcp_syn_retrans",
    "tcp_synack_retrans",
    "tcp_bad_csum",
    "tcp_no_frame",
)
WIRE_COUNTERS = ("tx_frames", "fault_drop", "fault_dup", "fault_reorder", "fault_ce", "ring_full",
                 "rx_nobuf")


class Stalled(RuntimeError):
    pass


class _Direction:
    """One direction's data: generated in chunks from a seeded generator, hashed as it is
    handed to the sender and as the receiver gets it."""

    def __init__(self, total: int, seed: int):
        self.total = total
        self.generated = 0
        self.rng = np.random.default_rng(seed)
        self.src = np.zeros(CHUNK, np.uint8)
        self.dst = np.zeros(CHUNK, np.uint8)
        self.sent_hash = hashlib.sha256()
        self.recv_hash = hashlib.sha256()

    def refill(self) -> int:
        """Next chunk into ``src``; its length (0 when everything was generated)."""
        n = min(CHUNK, self.total - self.generated)
        if n > 0:
            self.src[:n] = self.rng.integers(0, 256, n, dtype=np.uint8)
            self.sent_hash.update(self.src[:n])
            self.generated += n
        return n


def run(megabytes: float, faults: dict, stall_s: float, timeout_s: float,
        tcp_recovery: int = 1, tcp_frto: int = 2, tcp_ecn: int = 2,
        tcp_moderate_rcvbuf: int = 1) -> dict:
    from fsdp.apps.bench_kernels import (
        SR_DRAIN,
        SR_TIME,
        SS_EOF,
        SS_ERROR,
        SS_RECEIVED,
        SS_RECV_LEN,
        SS_SEND_END,
        SS_SEND_OFF,
        SS_SENT,
        ST_ROW,
        BenchPair,
        monotonic_us,
        stream_run,
    )
    from fsdp.tcp.usercalls import tcp_close, tcp_shutdown

    total = int(megabytes * 1e6)
    with BenchPair(tcp_recovery=tcp_recovery, tcp_frto=tcp_frto, tcp_ecn=tcp_ecn,
                   tcp_moderate_rcvbuf=tcp_moderate_rcvbuf) as pair:
        for p in pair.ports:
            p.set_faults(**faults)
        lid = pair.listen(PORT)
        t_start = time.monotonic()
        try:
            ccid, scid = pair.connect(lid, PORT, timeout=max(stall_s, 1.0))
        except OSError as e:
            raise Stalled(f"transfer stalled: no connection after {stall_s:g} s ({e})") from None
        C, S = pair.C, pair.S
        # endpoint 0 = client (sends c2s, receives s2c), endpoint 1 = server
        c2s = _Direction(total, faults["seed"] * 2 + 1)
        s2c = _Direction(total, faults["seed"] * 2 + 2)
        st = np.zeros((2, ST_ROW), np.int64)
        st[0, SS_SEND_END] = c2s.refill()
        st[1, SS_SEND_END] = s2c.refill()
        shut = [False, False]
        progress = -1
        last_progress_t = time.monotonic()
        t0 = time.monotonic()
        while True:
            rc = int(
                stream_run(
                    C,
                    S,
                    ccid,
                    scid,
                    c2s.src,
                    s2c.src,
                    s2c.dst,
                    c2s.dst,
                    st,
                    0,
                    int(monotonic_us()) + int(CALL_SECONDS * 1e6),
                    1 << 62,
                )
            )
            if rc not in (SR_TIME, SR_DRAIN):
                side = "client" if st[0, SS_ERROR] else "server"
                raise RuntimeError(
                    f"{side} call failed with errno {-rc} after "
                    f"{int(st[0, SS_RECEIVED] + st[1, SS_RECEIVED])} bytes"
                )
            # receivers: hash what arrived, reuse the buffer
            for row, d in ((0, s2c), (1, c2s)):
                k = int(st[row, SS_RECV_LEN])
                if k:
                    d.recv_hash.update(d.dst[:k])
                    st[row, SS_RECV_LEN] = 0
            # senders: refill, or shut down sending once everything was accepted
            for row, d, core, cid in ((0, c2s, C, ccid), (1, s2c, S, scid)):
                if st[row, SS_SEND_END] > 0 and st[row, SS_SEND_OFF] >= st[row, SS_SEND_END]:
                    n = d.refill()
                    st[row, SS_SEND_OFF] = 0
                    st[row, SS_SEND_END] = n
                if st[row, SS_SEND_END] == 0 and not shut[row] and st[row, SS_SENT] == total:
                    rc = tcp_shutdown(core, cid, 1, int(monotonic_us()))  # SHUT_WR: FIN
                    if rc < 0:
                        raise RuntimeError(f"shutdown failed with errno {-rc}")
                    shut[row] = True
            if st[0, SS_EOF] and st[1, SS_EOF]:
                break
            now = time.monotonic()
            moved = int(
                st[0, SS_RECEIVED]
                + st[1, SS_RECEIVED]
                + st[0, SS_SENT]
                + st[1, SS_SENT]
                + st[0, SS_EOF]
                + st[1, SS_EOF]
            )
            if moved != progress:
                progress, last_progress_t = moved, now
            elif now - last_progress_t > stall_s:
                raise Stalled(
                    f"transfer stalled: no progress for {stall_s:g} s "
                    f"(client got {int(st[0, SS_RECEIVED])}/{total} B, server got "
                    f"{int(st[1, SS_RECEIVED])}/{total} B)"
                )
            if now - t0 > timeout_s:
                raise Stalled(f"transfer did not finish within {timeout_s:g} s")
        elapsed = time.monotonic() - t0
        got = {"client": int(st[0, SS_RECEIVED]), "server": int(st[1, SS_RECEIVED])}
        digests = {
            "client_to_server": (c2s.sent_hash.hexdigest(), c2s.recv_hash.hexdigest()),
            "server_to_client": (s2c.sent_hash.hexdigest(), s2c.recv_hash.hexdigest()),
        }
        # close both ends and let the stacks finish the close (FIN retransmissions included)
        now = int(monotonic_us())
        tcp_close(C, ccid, now)
        tcp_close(S, scid, now)
        lingering = None
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            pair.settle(0.05)
            lingering = [
                (side, c["state"])
                for side, stack in (("client", pair.client), ("server", pair.server))
                for c in stack.connections()
                if c["state"] not in ("TIME-WAIT", "UNCONN")
            ]
            if not lingering:
                break
        audit = "ok"
        for side, stack in (("client", pair.client), ("server", pair.server)):
            try:
                stack.audit()
            except AssertionError as e:
                audit = f"{side}: {e}"
                break
        stats = {"client": pair.client.stats(), "server": pair.server.stats()}
        wire = {"client": pair.ports[1].stats(), "server": pair.ports[0].stats()}
        wall = time.monotonic() - t_start
    problems = []
    for name, (a, b) in digests.items():
        if a != b:
            problems.append(f"SHA-256 mismatch {name}")
    if got["client"] != total or got["server"] != total:
        problems.append(f"byte counts differ from {total}: {got}")
    if lingering:
        problems.append(f"connection not closed after 30 s: {lingering}")
    if audit != "ok":
        problems.append(f"audit failed: {audit}")
    return {
        "bytes_each_way": total,
        "seconds": round(elapsed, 3),
        "seconds_with_setup_and_close": round(wall, 3),
        "goodput_mbit_s": round(2 * total * 8 / elapsed / 1e6, 1),
        "goodput_mbit_s_each_way": round(total * 8 / elapsed / 1e6, 1),
        "sha256": {k: v[1] for k, v in digests.items()},
        "sha256_match": all(a == b for a, b in digests.values()),
        "audit": audit,
        "counters": {side: {k: stats[side].get(k, 0) for k in COUNTERS} for side in stats},
        "wire": {side: {k: wire[side][k] for k in WIRE_COUNTERS} for side in wire},
        "problems": problems,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megabytes", type=float, default=100.0, help="MB (1e6 B) each way")
    ap.add_argument("--drop", type=float, default=0.05)
    ap.add_argument("--reorder", type=float, default=0.05)
    ap.add_argument("--duplicate", type=float, default=0.01)
    ap.add_argument("--ce-mark", type=float, default=0.0,
                    help="probability that an ECN-capable frame is marked CE (RFC 3168)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--delay-us", type=int, default=0,
                    help="one-way delay of each port (a long path: RTT = twice this)")
    ap.add_argument("--tcp-moderate-rcvbuf", type=int, choices=(0, 1), default=1,
                    help="receive-buffer autotuning (1, as Linux) or the fixed tcp_rmem[1]")
    ap.add_argument("--tcp-recovery", type=int, choices=(0, 1), default=1,
                    help="1: RACK loss detection (default); 0: RFC 6675 DupThresh")
    ap.add_argument("--tcp-frto", type=int, choices=(0, 1, 2), default=2,
                    help="F-RTO after a timeout (RFC 5682): 2 (default, as Linux), 0 off")
    ap.add_argument("--tcp-ecn", type=int, choices=(0, 1, 2), default=2,
                    help="ECN (RFC 3168): 2 (default, as Linux) accepts, 1 also asks, 0 never")
    ap.add_argument(
        "--stall-seconds", type=float, default=15.0, help="fail when no byte moves for this long"
    )
    ap.add_argument("--timeout", type=float, default=3600.0, help="fail after this long")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    if args.megabytes <= 0 or args.stall_seconds <= 0:
        print("tcp_faults: --megabytes and --stall-seconds must be > 0", file=sys.stderr)
        return 2
    try:
        from fsdp.apps.bench_kernels import machine_info
    except ImportError as e:
        print(f"tcp_faults: cannot run: {e}", file=sys.stderr)
        return 1

    faults = {
        "drop": args.drop,
        "reorder": args.reorder,
        "duplicate": args.duplicate,
        "ce_mark": args.ce_mark,
        "delay_us": args.delay_us,
        "seed": args.seed,
    }
    machine = machine_info()
    try:
        res = run(args.megabytes, faults, args.stall_seconds, args.timeout, args.tcp_recovery,
                  args.tcp_frto, args.tcp_ecn, args.tcp_moderate_rcvbuf)
    except (RuntimeError, OSError, ValueError) as e:
        print(f"tcp_faults: {e}", file=sys.stderr)
        return 1
    out = {
        "benchmark": "tcp_faults",
        **machine,
        "megabytes": args.megabytes,
        "faults": faults,
        "tcp_recovery": args.tcp_recovery,
        "tcp_frto": args.tcp_frto,
        "tcp_ecn": args.tcp_ecn,
        "tcp_moderate_rcvbuf": args.tcp_moderate_rcvbuf,
        **res,
    }
    if not args.json_only:
        mb = res["bytes_each_way"] / 1e6
        print(
            f"TCP both ways over a faulty sim wire: drop {args.drop}, reorder {args.reorder}, "
            f"duplicate {args.duplicate}, CE mark {args.ce_mark}, delay {args.delay_us} µs, "
            f"seed {args.seed} (both ports); "
            f"tcp_recovery {args.tcp_recovery} "
            f"({'RACK' if args.tcp_recovery else 'RFC 6675 DupThresh'}), "
            f"tcp_frto {args.tcp_frto}, tcp_ecn {args.tcp_ecn}, "
            f"tcp_moderate_rcvbuf {args.tcp_moderate_rcvbuf}"
        )
        print(
            f"machine: {out['machine']}, {out['processor']}, {out['cpu_count']} CPUs, "
            f"load {out['loadavg_1m_at_start']}"
        )
        print(f"{'MB each way':>24} {mb:>12.1f}")
        print(f"{'seconds':>24} {res['seconds']:>12.2f}")
        print(f"{'goodput, both (Mbit/s)':>24} {res['goodput_mbit_s']:>12.1f}")
        print(f"{'SHA-256 both ends':>24} {'match' if res['sha256_match'] else 'MISMATCH':>12}")
        print(f"{'audit (no leaked frames)':>24} {res['audit']:>12}")
        print(f"{'counter':>24} {'client':>12} {'server':>12}")
        for k in COUNTERS:
            print(f"{k:>24} {res['counters']['client'][k]:>12} {res['counters']['server'][k]:>12}")
        for k in WIRE_COUNTERS:
            print(
                f"{'wire ' + k:>24} {res['wire']['client'][k]:>12} {res['wire']['server'][k]:>12}"
            )
    print(json.dumps(out))
    if res["problems"]:
        print(f"tcp_faults: {'; '.join(res['problems'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
