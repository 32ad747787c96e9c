"""How long a cold Numba compile of fsdp's engine takes, and where the time goes: with the
engine's kernels compiled link-only (fsdp/tcp/kernel.py, the default) and the usual way
(``FSDP_LINK_ONLY_KERNELS=0``), side by side in the same run.

Each measurement is a fresh interpreter with an empty ``NUMBA_CACHE_DIR`` that compiles what
one connection between two stacks and a selector use (``tests/engine_warmup.py``: the loop, the
usercall dispatcher, the selectors' poll), as a first ``fsdp demo`` or a first test run does.
The child times the whole compile and, exclusively, LLVM's module optimization (O3 over each
finalized library), its machine-code generation, and the number of libraries finalized.
The two variants alternate when ``--runs`` > 1 (this kind of VM drifts by 10-25% over
minutes), and the medians are reported.

    python benchmarks/compile_time.py [--runs N] [--only link-only|usual] [--warmup FILE:FUNCTION]

Prints a table, then one JSON object as the last line of stdout.  Each run takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, os, sys, time
from numba.core import codegen as cg
import fsdp.tcp.kernel  # (its patches first, so the timers below wrap them)

totals = {"optimize_s": 0.0, "codegen_s": 0.0, "libraries_finalized": 0}
stack = []

def timed(name, key, count=False):
    orig = getattr(cg.CPUCodeLibrary, name)
    def wrapper(self, *args, **kwargs):
        stack.append(0.0)
        t0 = time.perf_counter()
        try:
            return orig(self, *args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            inner = stack.pop()
            if stack:
                stack[-1] += dt
            totals[key] += dt - inner
            if count:
                totals["libraries_finalized"] += 1
    setattr(cg.CPUCodeLibrary, name, wrapper)

timed("_optimize_final_module", "optimize_s")
timed("_finalize_final_module", "codegen_s", count=True)
import runpy
warm = runpy.run_path(sys.argv[1])[sys.argv[2]]
t0 = time.perf_counter()
warm()
totals["compile_s"] = time.perf_counter() - t0
totals["link_only"] = fsdp.tcp.kernel._LINK_ONLY
print(json.dumps(totals))
"""

VARIANTS = {"link-only": "1", "usual": "0"}


DEFAULT_WARMUP = os.path.join(ROOT, "tests", "engine_warmup.py") + ":warm_engine"


def measure(variant: str, warmup: str = DEFAULT_WARMUP) -> dict:
    path, _, func = warmup.rpartition(":")
    with tempfile.TemporaryDirectory(prefix="fsdp-compile-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, FSDP_LINK_ONLY_KERNELS=VARIANTS[variant])
        r = subprocess.run([sys.executable, "-c", CHILD, path, func], env=env,
                           capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"compile_time: the {variant} compile failed: "
                         f"{(r.stderr.strip().splitlines() or ['?'])[-1]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["link_only"] != (variant == "link-only"):
        raise SystemExit(f"compile_time: the {variant} run compiled the other way "
                         "(this Numba lacks what link-only kernels build on?)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="runs of each variant (alternating)")
    ap.add_argument("--only", choices=sorted(VARIANTS), help="measure one variant")
    ap.add_argument("--warmup", default=DEFAULT_WARMUP, metavar="FILE:FUNCTION",
                    help="what to compile: a function of a Python file, called with no "
                         "arguments (default: tests/engine_warmup.py:warm_engine)")
    args = ap.parse_args(argv)
    path, _, func = args.warmup.rpartition(":")
    if args.runs < 1:
        print("compile_time: --runs must be at least 1", file=sys.stderr)
        return 2
    if not path or not func or not os.path.isfile(path):
        print(f"compile_time: --warmup {args.warmup!r} is not FILE:FUNCTION of an existing file",
              file=sys.stderr)
        return 2
    variants = [args.only] if args.only else list(VARIANTS)
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for i in range(args.runs):
        for v in variants:
            print(f"  run {i + 1}/{args.runs}: {v} ...", file=sys.stderr, flush=True)
            runs[v].append(measure(v, args.warmup))

    keys = ("compile_s", "optimize_s", "codegen_s", "libraries_finalized")
    result = {v: {k: statistics.median(r[k] for r in runs[v]) for k in keys} | {"runs": runs[v]}
              for v in variants}
    print(f"cold compile of {os.path.relpath(path, ROOT)}:{func}, median of {args.runs}; "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"{'variant':<12}{'compile s':>11}{'LLVM O3 s':>11}{'codegen s':>11}{'libraries':>11}")
    for v in variants:
        m = result[v]
        print(f"{v:<12}{m['compile_s']:>11.1f}{m['optimize_s']:>11.1f}{m['codegen_s']:>11.1f}"
              f"{m['libraries_finalized']:>11.0f}")
    if len(variants) == 2:
        a, b = result["link-only"]["compile_s"], result["usual"]["compile_s"]
        print(f"link-only / usual: {a / b:.2f}")
        result["ratio"] = a / b
    result["benchmark"] = "compile_time"
    result["warmup"] = args.warmup
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
