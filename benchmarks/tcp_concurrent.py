"""Concurrent connections on one core: N idle established connections between two stacks.

A client stack and a server stack (one core each, one thread, a private sim wire, BenchPair)
with ``max_conns`` a little above N: the client opens N connections to four server ports (an
ephemeral port range holds 28,232 4-tuples per server port), the server accepts them all, both
cores then run with all N idle for ``--hold`` seconds (timers armed: nothing may fire early or
be lost), and every one of the N must still be ESTABLISHED on both sides.  Reported: the time to
establish them, the memory of the server core's per-connection tables per connection (TCB hot
and cold, header template, timers, flow table, SACK state: all preallocated for max_conns), and
the process's resident memory growth per connection while the two stacks were made and filled.

    python benchmarks/tcp_concurrent.py [--connections N] [--hold S] [--json-only]

Prints a table, then one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

TARGET = 100_000
PORTS = (8001, 8002, 8003, 8004)
BATCH = 512


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _per_conn_table_bytes(core, max_conns: int) -> int:
    """Bytes of every array of the core whose size grows with max_conns, per connection."""
    arrays = [core.tcb.hot, core.tcb.cold, core.tcb.free_next, core.tcp_tmpl,
              core.timers.expires, core.timers.next, core.timers.prev, core.flows.slots,
              *core.sack]
    return int(sum(a.nbytes for a in arrays) // max_conns)


def run(n: int, hold: float) -> dict:
    from fsdp.apps.bench_kernels import BenchPair, monotonic_us
    from fsdp.tcp import usercalls as uc
    from fsdp.tcp.tcb import TCPS_ESTABLISHED

    rss0 = _rss_bytes()
    max_conns = n + 1024
    with BenchPair(max_conns=max_conns, tcp_max_syn_backlog=8192) as pair:
        C, S = pair.C, pair.S
        sip = pair.server_ip_int
        lids = [pair.listen(p, backlog=4096) for p in PORTS]
        t0 = time.perf_counter()
        opened = accepted = 0
        while accepted < n:
            now = int(monotonic_us())
            for _ in range(min(BATCH, n - opened)):
                port = PORTS[opened % len(PORTS)]
                lport = uc.tcp_ephemeral_port(C, 0, sip, port)
                if lport < 0:
                    raise RuntimeError(f"no ephemeral port after {opened} connections")
                cid = uc.tcp_connect(C, 0, lport, sip, port, now)
                if cid < 0:
                    raise RuntimeError(f"connect {opened} failed: errno {-cid}")
                opened += 1
            pair.settle(0.001)  # the handshakes of this batch
            before = accepted
            for lid in lids:
                while uc.tcp_accept(S, lid) >= 0:
                    accepted += 1
            if accepted == before and opened == n:
                pair.settle(0.01)
                if time.perf_counter() - t0 > 120:
                    raise RuntimeError(f"only {accepted} of {n} connections completed")
        t_est = time.perf_counter() - t0
        pair.settle(hold)  # all N idle, both cores running
        c_est = int(np.count_nonzero(pair.client._cores[0].tcb.hot.state == TCPS_ESTABLISHED))
        s_est = int(np.count_nonzero(pair.server._cores[0].tcb.hot.state == TCPS_ESTABLISHED))
        rss1 = _rss_bytes()
        sstats, cstats = pair.server.stats(), pair.client.stats()
        table = _per_conn_table_bytes(pair.server._cores[0], max_conns)
    return {
        "connections": n,
        "established_client": c_est,
        "established_server": s_est,
        "seconds_to_establish": round(t_est, 3),
        "connections_per_s": round(n / t_est),
        "hold_seconds": hold,
        "table_bytes_per_connection": table,
        "rss_growth_bytes_per_connection": round((rss1 - rss0) / n),
        "max_conns": max_conns,
        "resets": sstats["tcp_rst_out"] + cstats["tcp_rst_out"],
        "retransmits": sstats["tcp_retrans_segs"] + cstats["tcp_retrans_segs"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=TARGET, help="connections to hold")
    ap.add_argument("--hold", type=float, default=2.0, help="seconds to hold them idle")
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    if not 1 <= args.connections <= 4 * 28_232 or args.hold < 0:
        print("tcp_concurrent: need 1 <= --connections <= 112928 and --hold >= 0",
              file=sys.stderr)
        return 2
    from fsdp.apps.bench_kernels import machine_info

    try:
        res = run(args.connections, args.hold)
    except (RuntimeError, OSError) as e:
        print(f"tcp_concurrent: {e}", file=sys.stderr)
        return 1
    ok = res["established_client"] == res["established_server"] == args.connections
    out = {"benchmark": "tcp_concurrent", **machine_info(), **res,
           "target_connections": TARGET, "meets_target": ok and args.connections >= TARGET}
    if not args.json_only:
        print(f"TCP concurrent connections on one core ({out['machine']}, {out['processor']})")
        print(f"{'established (client/server)':>34}  {res['established_client']:,} / "
              f"{res['established_server']:,} of {res['connections']:,} after "
              f"{res['hold_seconds']} s idle")
        print(f"{'time to establish':>34}  {res['seconds_to_establish']} s "
              f"({res['connections_per_s']:,}/s, from Python in batches)")
        print(f"{'per-connection tables (server)':>34}  {res['table_bytes_per_connection']} B")
        print(f"{'resident memory growth':>34}  {res['rss_growth_bytes_per_connection']} B "
              "per connection (both stacks)")
        print(f"{'resets / retransmits':>34}  {res['resets']} / {res['retransmits']}")
        print(f"target: {TARGET:,} concurrent connections per core: "
              + ("met" if out["meets_target"] else "NOT met"))
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
