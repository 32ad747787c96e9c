"""How much of ``fsdp demo --app python --compare-kernel``'s ratio is the kernel run's Python
load generator, and how much the servers.

``--compare-kernel`` drives the kernel's Python server with the Python load generator (the same
client state machine as fsdp's jitted client, but interpreted): on a 2-CPU machine that client
saturates its CPU while the kernel server does not.  This runs, alternating, in one invocation:

  fsdp          ``fsdp demo --app python``: the Python server on fsdp, the jitted stack client
  kernel/py     the same Python server on the kernel's loopback, the Python load generator
                (what --compare-kernel measures)
  kernel/c      the same kernel server, driven by ``benchmarks/c/http_short_client.c`` (epoll,
                64 in flight, no interpreter): as little client CPU as a client can cost, so
                what is left is the kernel server's (and loopback's) own ceiling

and prints each one's median connections/s, the server's CPU, and fsdp's ratio to each kernel
figure.  The C client is built with ``cc`` (or ``$CC``) into a temporary directory; without a
C compiler the script says so and exits 2.  Server on CPU 0, client on CPU 1
(``fsdp.apps.percore.placement``).

    python benchmarks/kernel_ceiling.py [--seconds S] [--runs N] [--concurrency C] [--json-only]

Prints a table, then one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

C_SOURCE = os.path.join(ROOT, "benchmarks", "c", "http_short_client.c")


def build_client(workdir: str) -> str | None:
    """The C client built in ``workdir``; None (with one line on stderr) if it cannot be."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        print("kernel_ceiling: no C compiler (cc, gcc or $CC) to build the C client",
              file=sys.stderr)
        return None
    exe = os.path.join(workdir, "http_short_client")
    try:
        r = subprocess.run([cc, "-O2", "-o", exe, C_SOURCE], capture_output=True, text=True)
    except OSError as e:
        print(f"kernel_ceiling: cannot run the C compiler {cc}: {e.strerror}", file=sys.stderr)
        return None
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or ["?"])[0]
        print(f"kernel_ceiling: building the C client failed: {first}", file=sys.stderr)
        return None
    return exe


def run_fsdp(seconds: float, concurrency: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "fsdp", "demo", "--app", "python", "--seconds", str(seconds),
         "--concurrency", str(concurrency), "--json"],
        capture_output=True, text=True, cwd=ROOT, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])["runs"][0]
    return {"conn_per_s": r["connections_per_s"], "server_cpu": r.get("server_cpu_util"),
            "errors": r["errors"]}


def run_kernel_python(seconds: float, concurrency: int) -> dict:
    from fsdp.apps.demo import run_kernel
    from fsdp.apps.loadgen import Progress

    r = run_kernel(seconds, concurrency, Progress(enabled=False))
    return {"conn_per_s": r["connections_per_s"], "server_cpu": r.get("server_cpu_util"),
            "errors": r["errors"]}


def run_kernel_c(exe: str, seconds: float, concurrency: int) -> dict:
    from fsdp.apps.demo import KernelPythonServer

    with KernelPythonServer() as server:
        cpu = server.client_cpu
        pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
        t0, cpu0 = time.monotonic(), server.cpu_ns()
        out = subprocess.run([exe, str(server.port), str(concurrency), str(seconds)],
                             capture_output=True, text=True, check=True,
                             preexec_fn=pin).stdout.split()
        cpu = (server.cpu_ns() - cpu0) / 1e9 / (time.monotonic() - t0)  # incl. the warm-up
    return {"conn_per_s": float(out[0]), "server_cpu": round(cpu, 2), "errors": int(out[-1])}


def load_arguments(doc: str) -> argparse.ArgumentParser:
    """The options of a short-connection comparison: --seconds, --runs, --concurrency."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    return ap


def load_arguments_bad(a, prog: str) -> bool:
    """True (with one line on stderr) when ``load_arguments``' values are out of range."""
    if a.seconds <= 0 or a.runs < 1 or not 1 <= a.concurrency <= 16384:
        print(f"{prog}: need --seconds > 0, --runs >= 1, 1 <= --concurrency <= 16384",
              file=sys.stderr)
        return True
    return False


def summarize(name: str, a, runs: dict[str, list[dict]]) -> dict:
    """The JSON result of a short-connection comparison: medians over ``runs`` (per
    configuration: conn/s, server CPU), errors summed, the options and the machine."""
    return {
        "benchmark": name, "seconds": a.seconds, "runs": a.runs,
        "concurrency": a.concurrency, "machine": platform.machine(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "median_conn_per_s": {k: statistics.median(r["conn_per_s"] for r in v)
                              for k, v in runs.items()},
        "median_server_cpu": {k: statistics.median(r["server_cpu"] or 0.0 for r in v)
                              for k, v in runs.items()},
        "errors": {k: sum(r["errors"] for r in v) for k, v in runs.items()},
        "all": runs,
    }


def main(argv: list[str] | None = None) -> int:
    ap = load_arguments(__doc__)
    ap.add_argument("--json-only", action="store_true")
    a = ap.parse_args(argv)
    if load_arguments_bad(a, "kernel_ceiling"):
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_client(tmp)
        if exe is None:
            return 2
        runs: dict[str, list[dict]] = {"fsdp": [], "kernel/py": [], "kernel/c": []}
        for i in range(a.runs):  # alternating: the host's speed drifts over minutes
            runs["fsdp"].append(run_fsdp(a.seconds, a.concurrency))
            runs["kernel/py"].append(run_kernel_python(a.seconds, a.concurrency))
            runs["kernel/c"].append(run_kernel_c(exe, a.seconds, a.concurrency))
            if not a.json_only:
                print(f"run {i + 1}: " + ", ".join(
                    f"{k} {v[-1]['conn_per_s']:,.0f}/s" for k, v in runs.items()), flush=True)
    result = summarize("kernel_ceiling", a, runs)
    med, cpu, errors = (result[k] for k in ("median_conn_per_s", "median_server_cpu", "errors"))
    result["ratio_to_kernel_py"] = med["fsdp"] / med["kernel/py"]
    result["ratio_to_kernel_c"] = med["fsdp"] / med["kernel/c"]
    if not a.json_only:
        print(f"\n{'server / client':<28}{'conn/s (median)':>16}{'server cpu':>12}{'errors':>8}")
        for k, label in (("fsdp", "fsdp python / jitted stack"),
                         ("kernel/py", "kernel python / python"),
                         ("kernel/c", "kernel python / C epoll")):
            print(f"{label:<28}{med[k]:>16,.0f}{cpu[k]:>12.2f}{errors[k]:>8}")
        print(f"fsdp / kernel with the Python client (--compare-kernel): "
              f"{result['ratio_to_kernel_py']:.2f}x")
        print(f"fsdp / kernel with the C client: {result['ratio_to_kernel_c']:.2f}x")
    print(json.dumps(result))
    return 0 if not any(errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
