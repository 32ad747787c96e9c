"""A mostly idle server: the CPU it burns while it waits, and how long the first request after a
pause takes to be answered -- fsdp asleep on its sim queue's doorbell, fsdp with the doorbell
off (``FSDP_DOORBELL=0``: naps only), and the kernel's epoll over loopback, side by side in the
same run.

The server (its own process) is the same selector loop in each case: it accepts one connection
and echoes each byte.  The client (this process; for fsdp a stack on the same sim wire, with
the same doorbell setting) sends one byte every ``--gap-ms`` and times the echo: by then the
server has been idle long enough to be in its longest naps.  The server reports the CPU time it
used over the run.

It also measures the machine's floor for such a wake: one process asleep in a futex on CPU 0,
woken by another on CPU 1 that keeps its CPU (as a polling client does), after the same gap
("futex wake across CPUs"; no fsdp involved).

What it shows on a small VM: the doorbell wakes a napping server at once (at a 1 ms gap fsdp
answers in ~50 µs with it, ~220 µs with naps only), but after a longer pause a process asleep
on an idle virtual CPU takes ~150-250 µs to run again when woken from the other one (the futex
floor), and an fsdp round trip has two such wakes (the server's, then the client's).  The
kernel's socket wakeups are "sync" wakeups (the waker is about to block), which let the woken
task run on the waker's CPU, so its round trip after 10-100 ms of quiet stays under ~150 µs.

    python benchmarks/idle_wake.py [--requests N] [--gap-ms MS] [--json-only]

Prints a table, then one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SERVER = r"""
import os, selectors, socket, sys, time
mode, wire, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "kernel":
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    sel = selectors.DefaultSelector()
else:
    import fsdp
    from fsdp.selectors import DefaultSelector
    stack = fsdp.Stack(nic=wire, ip="10.78.0.1/24")
    ls = stack.socket()
    ls.bind(("0.0.0.0", 7))
    sel = DefaultSelector()
ls.listen()
ls.setblocking(False)
sel.register(ls, selectors.EVENT_READ)
sel.select(0)  # compile (or load) the poll path before the client starts
print("ready", ls.getsockname()[1], flush=True)
echoed = 0
t0 = c0 = None
while echoed < n:
    for key, _ in sel.select(None):
        if key.fileobj is ls:
            conn, _ = ls.accept()
            conn.setblocking(False)
            sel.register(conn, selectors.EVENT_READ)
            t0, c0 = time.monotonic(), time.process_time()
        else:
            data = key.fileobj.recv(64)
            if data:
                key.fileobj.send(data)
                echoed += len(data)
print("cpu", (time.process_time() - c0) / (time.monotonic() - t0), flush=True)
"""


def run(mode: str, requests: int, gap_s: float) -> dict:
    doorbell = "0" if mode == "fsdp-naps" else "1"
    env = dict(os.environ, PYTHONPATH=ROOT, FSDP_DOORBELL=doorbell)
    os.environ["FSDP_DOORBELL"] = doorbell  # this process's client stack does the same
    wire = f"sim:idlewake-{os.getpid()}-{mode}"
    srv = subprocess.Popen(
        [sys.executable, "-c", SERVER, "kernel" if mode == "kernel" else "fsdp", wire,
         str(requests)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        word, port = srv.stdout.readline().split()
        assert word == "ready"
        if mode == "kernel":
            c = socket.create_connection(("127.0.0.1", int(port)))
            stack = None
        else:
            import fsdp

            stack = fsdp.Stack(nic=wire, ip="10.78.0.2/24")
            c = stack.socket()
            c.connect(("10.78.0.1", int(port)))
        c.settimeout(10)
        rtts = []
        for _ in range(requests):
            time.sleep(gap_s)
            t0 = time.perf_counter()
            c.sendall(b"x")
            assert c.recv(1) == b"x"
            rtts.append((time.perf_counter() - t0) * 1e6)
        word, cpu = srv.stdout.readline().split()
        assert word == "cpu"
        c.close()
        if stack is not None:
            stack.close()
        srv.wait(30)
    finally:
        srv.kill()
    rtts.sort()
    return {"config": mode, "requests": requests, "gap_ms": gap_s * 1e3,
            "rtt_us_p50": round(statistics.median(rtts), 1),
            "rtt_us_p99": round(rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))], 1),
            "server_cpu_percent": round(100 * float(cpu), 2)}


def futex_floor(requests: int, gap_s: float) -> dict | None:
    """Median µs from a futex wake on CPU 1 (the waker then spins, as a polling client does)
    to the sleeper, asleep on CPU 0 for ``gap_s``, running again; None with fewer than two
    CPUs."""
    import ctypes
    import mmap
    import struct

    if os.cpu_count() < 2 or not hasattr(os, "sched_setaffinity"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    sys_futex = 202 if platform.machine() == "x86_64" else 98  # x86-64, arm64
    page = mmap.mmap(-1, 4096)  # shared with the child across fork
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))

    def futex(op: int, val: int) -> None:
        libc.syscall(sys_futex, ctypes.c_void_p(addr), op, val, None, None, 0)

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the sleeper: word 0 is the round (odd: go), the stamp at byte 8
        try:
            os.sched_setaffinity(0, {0})
            lat = []
            for i in range(requests):
                while (word := struct.unpack_from("i", page, 0)[0]) != 2 * i + 1:
                    futex(0, word)  # FUTEX_WAIT while the word is still what was read
                lat.append(time.monotonic_ns() - struct.unpack_from("q", page, 8)[0])
                struct.pack_into("i", page, 4, i + 1)
            os.write(wfd, str(statistics.median(lat) / 1e3).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    try:
        os.sched_setaffinity(0, {1})
        for i in range(requests):
            time.sleep(gap_s)
            struct.pack_into("q", page, 8, time.monotonic_ns())
            struct.pack_into("i", page, 0, 2 * i + 1)
            futex(1, 1)  # FUTEX_WAKE
            while struct.unpack_from("i", page, 4)[0] != i + 1:
                pass  # the waker keeps its CPU
        return {"config": "futex wake across CPUs", "gap_ms": gap_s * 1e3,
                "wake_us_p50": round(float(os.read(rfd, 64)), 1)}
    finally:
        os.sched_setaffinity(0, range(os.cpu_count()))
        os.waitpid(pid, 0)
        os.close(rfd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--gap-ms", type=float, default=100.0)
    ap.add_argument("--json-only", action="store_true")
    a = ap.parse_args()
    results = [run(m, a.requests, a.gap_ms / 1e3) for m in ("fsdp-doorbell", "fsdp-naps",
                                                             "kernel")]
    floor = futex_floor(a.requests, a.gap_ms / 1e3)
    if not a.json_only:
        print(f"{'config':16} {'rtt p50 µs':>11} {'rtt p99 µs':>11} {'server CPU %':>13}")
        for r in results:
            print(f"{r['config']:16} {r['rtt_us_p50']:>11,.1f} {r['rtt_us_p99']:>11,.1f} "
                  f"{r['server_cpu_percent']:>13.2f}")
        if floor is not None:
            print(f"futex wake across CPUs after {a.gap_ms:g} ms asleep (no fsdp): p50 "
                  f"{floor['wake_us_p50']:,.1f} µs (an fsdp round trip has two such wakes)")
    print(json.dumps({"benchmark": "idle_wake", "machine": platform.platform(),
                      "processor": platform.processor(), "cpu_count": os.cpu_count(),
                      "python": platform.python_version(), "results": results,
                      "futex_wake_floor": floor}))


if __name__ == "__main__":
    main()
