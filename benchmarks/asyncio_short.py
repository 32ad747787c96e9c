"""asyncio on fsdp against asyncio on the kernel: one unmodified streams server, short
connections.

The server is what an asyncio user writes: ``asyncio.start_server`` with a handler that reads an
HTTP/1.0 request (``readuntil``), writes a 64-byte response and closes.  It runs, alternating,
in one invocation:

  fsdp     under ``fsdp.asyncio.run`` on a ``sim`` stack (the stdlib's selector event loop over
           fsdp.selectors), loaded by ``fsdp bench`` (the jitted stack client) on the same wire
  kernel   under ``asyncio.run`` on 127.0.0.1, loaded by ``benchmarks/c/http_short_client.c``
           (epoll, no interpreter: the kernel server's best case)

Server on CPU 0, client on CPU 1 (where the machine has two); 64 connections in flight.  Prints
each run, then the medians (connections/s, the server process's CPU) and the ratio, and one JSON
object as the last line of stdout.  The C client is built with ``cc`` (or ``$CC``); without a C
compiler the script says so and exits 2.

    python benchmarks/asyncio_short.py [--seconds S] [--runs N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from kernel_ceiling import (  # noqa: E402  (the same C client and options)
    build_client,
    load_arguments,
    load_arguments_bad,
    summarize,
)

BODY = b"x" * 64
RESPONSE = (b"HTTP/1.0 200 OK\r\nServer: fsdp-asyncio-bench\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 64\r\nConnection: close\r\n\r\n" + BODY)
SERVER_IP, CLIENT_IP, PORT = "10.77.0.1", "10.77.0.2", 8080


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    writer.write(RESPONSE)
    writer.close()  # HTTP/1.0: the server closes first, once the response is out


async def serve(host: str, port: int) -> None:
    server = await asyncio.start_server(handle, host, port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def serve_main(mode: str, wire: str) -> None:
    """The server process: ``mode`` fsdp (on ``wire``) or kernel."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if mode == "fsdp":
        import fsdp
        import fsdp.asyncio

        stack = fsdp.Stack(nic=wire, ip=f"{SERVER_IP}/24")
        fsdp.asyncio.run(serve("0.0.0.0", PORT), stack=stack)
    else:
        asyncio.run(serve("127.0.0.1", 0 if PORT == 0 else PORT + 1))


def _pin(cpu: int | None):
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


def _cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def run_one(mode: str, exe: str, seconds: float, concurrency: int) -> dict:
    two = (os.cpu_count() or 1) >= 2
    wire = f"sim:asyncio-bench-{os.getpid()}-{time.monotonic_ns()}"
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", mode, wire],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              preexec_fn=_pin(0 if two else None))
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {mode} server did not start")
        t0, cpu0 = time.monotonic(), _cpu_ns(server.pid)
        if mode == "fsdp":
            out = subprocess.run(
                [sys.executable, "-m", "fsdp", "bench", f"http://{SERVER_IP}:{PORT}/",
                 "--nic", wire, "--ip", f"{CLIENT_IP}/24", "--concurrency", str(concurrency),
                 "--seconds", str(seconds), "--json"],
                capture_output=True, text=True, cwd=ROOT, check=True,
                preexec_fn=_pin(1 if two else None)).stdout
            r = json.loads(out.strip().splitlines()[-1])
            rate, errors = float(r["connections_per_s"]), int(r["errors"])
        else:
            out = subprocess.run([exe, str(PORT + 1), str(concurrency), str(seconds)],
                                 capture_output=True, text=True, check=True,
                                 preexec_fn=_pin(1 if two else None)).stdout.split()
            rate, errors = float(out[0]), int(out[-1])
        cpu = (_cpu_ns(server.pid) - cpu0) / 1e9 / (time.monotonic() - t0)  # (warm-up too)
    finally:
        server.terminate()
        server.wait(10)
    return {"conn_per_s": rate, "server_cpu": round(cpu, 2), "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = load_arguments(__doc__)
    ap.add_argument("--serve", nargs=2, metavar=("MODE", "WIRE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        serve_main(*a.serve)
        return 0
    if load_arguments_bad(a, "asyncio_short"):
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_client(tmp)
        if exe is None:
            return 2
        runs: dict[str, list[dict]] = {"fsdp": [], "kernel": []}
        for i in range(a.runs):  # alternating: the host's speed drifts over minutes
            for mode in runs:
                runs[mode].append(run_one(mode, exe, a.seconds, a.concurrency))
            print(f"run {i + 1}: " + ", ".join(
                f"{k} {v[-1]['conn_per_s']:,.0f}/s (server cpu {v[-1]['server_cpu']})"
                for k, v in runs.items()), flush=True)
    result = summarize("asyncio_short", a, runs)
    med, cpu, errors = (result[k] for k in ("median_conn_per_s", "median_server_cpu", "errors"))
    result["ratio"] = med["fsdp"] / med["kernel"]
    print(f"\n{'asyncio streams server / client':<36}{'conn/s (median)':>16}{'server cpu':>12}"
          f"{'errors':>8}")
    for k, label in (("fsdp", "fsdp.asyncio / fsdp bench"), ("kernel", "asyncio / C epoll")):
        print(f"{label:<36}{med[k]:>16,.0f}{cpu[k]:>12.2f}{errors[k]:>8}")
    print(f"fsdp / kernel: {result['ratio']:.2f}x")
    print(json.dumps(result))
    return 0 if not any(errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
