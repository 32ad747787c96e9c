"""How much a busy CPU slows another: the hidden topology of a virtual machine.

A guest's CPUs may be hyper-threads of one physical core on the host, or share a clock that
drops as more of them are busy, though lscpu shows neither.  Per-core scaling then falls for
reasons no code of fsdp's can change, and more for the interpreter (front-end bound) than for
tight jitted loops.  This measures it: the rate of a pure-Python loop on CPU ``--cpu`` alone,
beside the same loop on each other CPU in turn, and with every other CPU busy.  A partner that
costs it much more than the others is its sibling on the host.  The last line is one JSON object.

    python benchmarks/cpu_siblings.py [--cpu 0] [--seconds 0.3] [--layout]

``--layout``: when CPU 0's sibling stands out as CPU n/2 or CPU 1 (the two ways hypervisors
number hyper-threads), check the guess on one more pair and print the whole layout as an
``FSDP_CPU_TOPOLOGY=...`` line, which ``fsdp.apps.percore.cpu_topology`` (and so the demo's and
scaling.py's placement) then uses instead of what sysfs says.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time


def _spin_rate(seconds: float) -> float:
    """Loop iterations a second of a small interpreter-bound loop (calls, arithmetic, a dict)."""
    d = {}
    n = 0
    end = time.perf_counter() + seconds
    while True:
        for i in range(2000):
            d[i & 63] = i * 3 + n
        n += 2000
        if time.perf_counter() >= end:
            return n / seconds


def _start_spinner(cpu: int) -> int:
    pid = os.fork()
    if pid == 0:  # the partner: the same loop, until killed
        try:
            os.sched_setaffinity(0, {cpu})
            while True:
                _spin_rate(1.0)
        finally:
            os._exit(0)
    return pid


def _stop(pids: list[int]) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    for pid in pids:
        os.waitpid(pid, 0)


def _measure(cpu: int, partners: list[int], seconds: float, runs: int) -> float:
    pids = [_start_spinner(p) for p in partners]
    try:
        time.sleep(0.05)  # the partners are running
        return statistics.median(_spin_rate(seconds) for _ in range(runs))
    finally:
        _stop(pids)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", type=int, default=0, help="the CPU measured")
    ap.add_argument("--seconds", type=float, default=0.3, help="per measurement")
    ap.add_argument("--runs", type=int, default=3, help="measurements per case (median)")
    ap.add_argument("--layout", action="store_true",
                    help="from the sibling found, infer and check every CPU's (see above)")
    args = ap.parse_args(argv)
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        print("cpu_siblings.py: needs Linux (sched_setaffinity)", file=sys.stderr)
        return 2
    if args.cpu not in cpus:
        print(f"cpu_siblings.py: CPU {args.cpu} is not one this process may run on ({cpus})",
              file=sys.stderr)
        return 2
    if args.seconds <= 0 or args.runs < 1:
        print("cpu_siblings.py: --seconds must be > 0 and --runs >= 1", file=sys.stderr)
        return 2
    others = [c for c in cpus if c != args.cpu]
    os.sched_setaffinity(0, {args.cpu})
    try:
        alone = _measure(args.cpu, [], args.seconds, args.runs)
        beside = {c: _measure(args.cpu, [c], args.seconds, args.runs) for c in others}
        all_busy = _measure(args.cpu, others, args.seconds, args.runs) if others else alone
        alone_again = _measure(args.cpu, [], args.seconds, args.runs)
    finally:
        os.sched_setaffinity(0, cpus)  # (main() may run inside another program)
    base = max(alone, alone_again)
    print(f"a Python loop on CPU {args.cpu}: {base / 1e6:.2f} M iterations/s alone "
          f"(again at the end: {alone_again / 1e6:.2f})")
    print(f"{'beside CPU':>10} {'rate':>8}")
    for c, r in beside.items():
        print(f"{c:>10} {r / base:>8.2f}")
    print(f"{'all ' + str(len(others)):>10} {all_busy / base:>8.2f}")
    worst = min(beside, key=beside.get) if beside else None
    if worst is not None:
        typical = statistics.median(beside.values())
        print(f"slowest beside CPU {worst} ({beside[worst] / base:.2f}; median partner "
              f"{typical / base:.2f}): "
              + ("likely its sibling on the host" if beside[worst] < 0.85 * typical
                 else "no sibling stands out"))
    layout = None
    if args.layout and worst is not None and beside[worst] < 0.85 * typical:
        layout = _check_layout(cpus, args.cpu, worst, args.seconds, args.runs)
    print(json.dumps({"cpu": args.cpu, "alone_per_s": round(base),
                      "beside": {str(c): round(r / base, 3) for c, r in beside.items()},
                      "all_busy": round(all_busy / base, 3), "cpus": cpus,
                      "layout": layout}))
    return 0


def _check_layout(cpus: list[int], cpu: int, sibling: int, seconds: float, runs: int):
    """The hyper-thread pairs, if ``cpu``'s sibling fits one of the two usual numberings (CPU i
    with i + n/2, or 2i with 2i + 1) and one more pair of that numbering measures as siblings
    too (slower beside each other than beside a CPU of another pair)."""
    n = len(cpus)
    if n % 2 or cpus != list(range(n)):
        return None
    if cpu == 0 and sibling == n // 2:
        pairs = [[i, i + n // 2] for i in range(n // 2)]
    elif cpu == 0 and sibling == 1:
        pairs = [[2 * i, 2 * i + 1] for i in range(n // 2)]
    else:
        return None
    if len(pairs) < 3:
        return None
    a, b = pairs[1]
    other = pairs[2][0]
    os.sched_setaffinity(0, {a})
    try:
        alone = _measure(a, [], seconds, runs)
        with_sibling = _measure(a, [b], seconds, runs)
        with_other = _measure(a, [other], seconds, runs)
    finally:
        os.sched_setaffinity(0, cpus)
    ok = with_sibling < 0.85 * with_other
    print(f"check: CPU {a} beside {b} {with_sibling / alone:.2f}, beside {other} "
          f"{with_other / alone:.2f}: " + ("the numbering holds" if ok else "not confirmed"))
    if not ok:
        return None
    line = ";".join(",".join(map(str, p)) for p in pairs)
    print(f"FSDP_CPU_TOPOLOGY={line}")
    return line


if __name__ == "__main__":
    sys.exit(main())
