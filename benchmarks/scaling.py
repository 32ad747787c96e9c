"""Scaling of the demo server over cores (issue 4's target: efficiency >= 0.9 at 8 cores).

Runs ``fsdp demo``'s configurations (fsdp.apps.demo.run_fsdp) for each server core count and
prints connections/s, the efficiency ``conn/s at N / (N x conn/s at 1)``, how busy the clients
were (the packet client measures it: near 1.0 means the clients, not the server, set the pace),
the server's CPU and where it went (the system share, and involuntary context switches per
worker per second: the CPU taken by another task), the errors, the frames dropped on full
rings, the segments the clients retransmitted (a lossless wire needs none) and the CPU time
a hypervisor stole from the machine's CPUs (``steal``, /proc/stat); with
``--ablation`` also without listen spawn and without RFD (what each feature buys, as
Fastsocket's evaluation); with ``--side-by-side`` instead the machine's own ceiling (N
independent one-core demos at once, see ``side_by_side``).  ``--concurrency`` holds the
connections in flight fixed over the core counts (Fastsocket's set-up: one core then carries all
of them); ``--per-core`` gives each core the same number instead.  The last line is one JSON
object.

    python benchmarks/scaling.py --cores 1,2,4,8 --client-cores 8 --client packet \\
        --concurrency 2048 --seconds 3 --ablation --plot scaling.png

The CPUs: server workers on one hardware thread of each of the first physical cores, clients on
the rest (fsdp.apps.percore.placement); the topology is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fsdp.apps.demo import run_fsdp  # noqa: E402
from fsdp.apps.loadgen import Progress  # noqa: E402
from fsdp.apps.percore import cpu_topology, placement  # noqa: E402

VARIANTS = {"all features": (True, True), "no listen spawn": (False, True),
            "no RFD": (True, False)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default="1,2,4,8")
    ap.add_argument("--client-cores", type=int, default=8)
    ap.add_argument("--client", choices=("stack", "packet"), default="packet")
    ap.add_argument("--app", choices=("native", "python"), default="native")
    ap.add_argument("--concurrency", type=int, default=2048,
                    help="connections in flight in all, at every core count")
    ap.add_argument("--per-core", type=int, metavar="C",
                    help="instead, C connections in flight per server core (C x cores): the "
                         "same load on each core at every point")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--runs", type=int, default=1,
                    help="runs per point; the table shows the median run (all in the JSON)")
    ap.add_argument("--plot", metavar="FILE.png")
    ap.add_argument("--side-by-side", action="store_true",
                    help="instead: the machine's own ceiling, N independent one-core demos "
                         "(server and one client each, own wire, own two CPUs) run at once")
    args = ap.parse_args(argv)
    cores = [int(c) for c in args.cores.split(",")]
    if args.side_by_side:
        return side_by_side(args, cores)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            sys.exit("scaling.py: --plot needs matplotlib (pip install matplotlib)")
    topo = cpu_topology()
    print(f"# {sum(map(len, topo))} CPUs on {len(topo)} physical cores; placement "
          + "; ".join(f"{n}: server {placement(n, args.client_cores, topo)[0]} client "
                      f"{placement(n, args.client_cores, topo)[1]}" for n in cores), flush=True)
    progress = Progress()
    rows = []
    for name in (VARIANTS if args.ablation else ["all features"]):
        ls, rfd = VARIANTS[name]
        for n in cores:
            conc = args.per_core * n if args.per_core else args.concurrency
            runs = [run_fsdp(args.app, n, args.seconds, conc, progress,
                             client_cores=args.client_cores, listen_spawn=ls, rfd=rfd,
                             client=args.client) for _ in range(max(1, args.runs))]
            runs.sort(key=lambda r: r["connections_per_s"])
            r = runs[(len(runs) - 1) // 2]  # the median run (the lower one of an even count)
            r["runs_connections_per_s"] = [x["connections_per_s"] for x in runs]
            r["concurrency"] = conc
            rows.append(r)
    progress.done()
    base = {r["config"]: r["connections_per_s"] for r in rows if r["cores"] == 1}
    print(f"{args.app} server, {args.client} client x{args.client_cores}, "
          + (f"{args.per_core} in flight per server core" if args.per_core
             else f"{args.concurrency} in flight")
          + f", {args.seconds:g} s per run"
          + (f", median of {args.runs} runs per point" if args.runs > 1 else ""))
    print(f"{'config':<16} {'cores':>5} {'conn/s':>11} {'effic.':>7} {'cli busy':>8} "
          f"{'srv cpu':>7} {'srv sys':>7} {'invcs/s':>7} {'p50 µs':>7} {'errors':>6} "
          f"{'drops':>6} {'rexmit':>7} {'steal':>6}")
    for r in rows:
        b = base.get(r["config"])
        r["efficiency"] = round(r["connections_per_s"] / (r["cores"] * b), 3) if b else None
        eff = f"{r['efficiency']:.2f}" if r["efficiency"] is not None else "-"
        busy = r.get("client_busy")
        sched = r.get("server_sched", {})
        print(f"{r['config']:<16} {r['cores']:>5} {r['connections_per_s']:>11,} {eff:>7} "
              f"{(f'{busy:.2f}' if busy is not None else '-'):>8} "
              f"{r.get('server_cpu_util', 0):>7.2f} {sched.get('system_share', 0):>7.2f} "
              f"{sched.get('involuntary_switches_per_s', 0):>7} "
              f"{r['latency_us']['p50'] or 0:>7.0f} "
              f"{r['errors']:>6} {r.get('wire_drops', 0):>6} "
              f"{r.get('client_retransmits', '-'):>7} {r.get('cpu_steal_share', 0):>6.3f}"
              + (f"  runs {'/'.join(f'{x:,}' for x in r['runs_connections_per_s'])}"
                 if args.runs > 1 else ""))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name in dict.fromkeys(r["config"] for r in rows):
            pts = [(r["cores"], r["connections_per_s"]) for r in rows if r["config"] == name]
            ax.plot(*zip(*pts, strict=True), marker="o", label=name)
        if "all features" in base:
            ax.plot(cores, [base["all features"] * n for n in cores], ls=":", c="grey",
                    label="linear")
        ax.set_xlabel("server cores")
        ax.set_ylabel("connections/s")
        ax.set_title(f"fsdp demo ({args.app} server, {args.client} client)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot)
    print(json.dumps({"app": args.app, "client": args.client, "client_cores": args.client_cores,
                      "concurrency": args.concurrency, "per_core": args.per_core,
                      "runs_per_point": max(1, args.runs),
                      "topology": topo, "runs": rows}))
    return 0


def side_by_side(args, cores: list[int]) -> int:
    """N copies of ``fsdp demo --cores 1 --client-cores 1`` at once, each pinned to its own two
    CPUs (a server CPU and its client's, by ``placement``'s order) with its own sim wire: fsdp
    shares nothing between them, so what each loses against one alone is the machine's (shared
    caches, memory bandwidth, clocks, the host).  An N-core run of the same app that reaches the
    sum of N such copies scales as well as this machine lets anything scale."""
    import subprocess

    order = [cpu for pair in zip(*placement(max(cores), max(cores), cpu_topology())[:2],
                                 strict=True) for cpu in pair]
    if len(set(order)) < 2 * max(cores):
        sys.exit(f"scaling.py: --side-by-side needs {2 * max(cores)} CPUs")
    conc = args.per_core or args.concurrency
    rows = []
    for n in cores:
        runs = []
        for _ in range(max(1, args.runs)):
            procs = []
            for i in range(n):
                pair = {order[2 * i], order[2 * i + 1]}
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "fsdp", "demo", "--app", args.app, "--client",
                     args.client, "--cores", "1", "--client-cores", "1", "--concurrency",
                     str(conc), "--seconds", str(args.seconds), "--json"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                    preexec_fn=lambda pair=pair: os.sched_setaffinity(0, pair)))
            rates = []
            for p in procs:
                out, _ = p.communicate(timeout=120 + args.seconds)
                lines = out.strip().splitlines()
                rates.append(json.loads(lines[-1])["connections_per_s"] if p.returncode == 0
                             and lines else 0)
            runs.append(rates)
        runs.sort(key=sum)
        rates = runs[(len(runs) - 1) // 2]
        rows.append({"copies": n, "connections_per_s": sum(rates), "each": rates,
                     "runs_sum": [sum(r) for r in runs]})
    alone = rows[0]["connections_per_s"] / rows[0]["copies"] if rows[0]["copies"] else 0
    print(f"{args.app} server, {args.client} client: N independent one-core demos at once, "
          f"{conc} in flight each, {args.seconds:g} s" + (f", median of {args.runs} runs"
                                                          if args.runs > 1 else ""))
    print(f"{'copies':>6} {'sum conn/s':>11} {'mean each':>10} {'effic.':>7}  each")
    for r in rows:
        r["efficiency"] = (round(r["connections_per_s"] / (r["copies"] * alone), 3) if alone
                           else None)
        print(f"{r['copies']:>6} {r['connections_per_s']:>11,} "
              f"{r['connections_per_s'] // r['copies']:>10,} "
              f"{r['efficiency'] if r['efficiency'] is not None else '-':>7}  "
              + " ".join(f"{x:,}" for x in r["each"]))
    print(json.dumps({"side_by_side": True, "app": args.app, "client": args.client,
                      "concurrency_each": conc, "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
