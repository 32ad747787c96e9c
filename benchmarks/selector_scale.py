"""What one ``select()`` costs with N registered connections, one of them ready: fsdp's selector
(one jitted pass plus a status read of every registered socket per core) against the kernel's
epoll selector over loopback, measured side by side in the same run.

For each N, N connections are opened (fsdp: two one-core stacks on a private sim wire; kernel:
127.0.0.1), the server ends are registered for EVENT_READ, the client writes one byte on one
connection, and ``select(0)`` is timed over many calls (the byte stays unread, so each call
reports exactly that one connection).  fsdp's call includes a pass of the stack's loop, which
epoll does not need; epoll's cost is O(ready), and so is fsdp's: the engine looks at the rows
that were ready or changed (fsdp.core.loop.poll_status's touched log), Python at the ready
ones.

    python benchmarks/selector_scale.py [--sizes 1,100,1000,8000] [--calls N]

Prints a table, then one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import selectors
import socket
import statistics
import sys
import time


def _time_select(sel, calls: int, expect_fd: int) -> float:
    """Median of 5 rounds of ``calls`` select(0) calls, in µs per call."""
    got = sel.select(0)
    assert [k.fd for k, _ in got] == [expect_fd], got
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            sel.select(0)
        rounds.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(rounds)


def fsdp_select_us(n: int, calls: int) -> float:
    import fsdp
    from fsdp.selectors import DefaultSelector

    wire = f"sim:selscale-{os.getpid()}-{n}"
    opts = {"max_conns": n + 64, "tcp_max_syn_backlog": 4096, "pool_frames": 4 * n + 8192}
    with fsdp.Stack(nic=wire, ip="10.77.0.1/24", **opts) as server, \
            fsdp.Stack(nic=wire, ip="10.77.0.2/24", **opts) as client:
        ls = server.socket()
        ls.bind(("0.0.0.0", 80))
        ls.listen(4096)
        ls.setblocking(False)
        conns, clients = [], []
        while len(conns) < n:
            for _ in range(min(256, n - len(clients))):
                c = client.socket()
                c.setblocking(False)
                c.connect_ex(("10.77.0.1", 80))
                clients.append(c)
            for _ in range(20):
                server.poll()
                client.poll()
            while True:
                try:
                    conns.append(ls.accept()[0])
                except BlockingIOError:
                    break
        with DefaultSelector() as sel:
            for s in conns:
                sel.register(s, selectors.EVENT_READ)
            clients[n // 2].send(b"x")
            for _ in range(5):
                server.poll()
                client.poll()
            us = _time_select(sel, calls, conns[n // 2].fileno())
        for s in conns + clients:
            s.close()
        ls.close()
    return us


def kernel_select_us(n: int, calls: int) -> float:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    addr = ls.getsockname()
    conns, clients = [], []
    try:
        while len(conns) < n:
            for _ in range(min(256, n - len(clients))):
                c = socket.create_connection(addr)
                clients.append(c)
                conns.append(ls.accept()[0])
        with selectors.DefaultSelector() as sel:
            for s in conns:
                sel.register(s, selectors.EVENT_READ)
            clients[n // 2].send(b"x")
            time.sleep(0.05)
            us = _time_select(sel, calls, conns[n // 2].fileno())
    finally:
        for s in conns + clients:
            s.close()
        ls.close()
    return us


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,100,1000,8000")
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.sizes.split(",")]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        print(f"selector_scale: --sizes must be positive integers, not {args.sizes!r}",
              file=sys.stderr)
        return 2
    want = 2 * max(sizes) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
        except (ValueError, OSError):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
            except (ValueError, OSError):
                pass
    rows = []
    cpu = platform.processor() or platform.machine()
    print(f"select(0) with N registered connections, one ready; {cpu}, {os.cpu_count()} CPUs")
    print(f"{'N':>8} {'fsdp µs':>10} {'epoll µs':>10}")
    for n in sizes:
        f = fsdp_select_us(n, args.calls)
        try:
            k = kernel_select_us(n, args.calls)
        except OSError as e:  # fd limit: the kernel column is left out for this N
            print(f"selector_scale: kernel N={n}: {e}", file=sys.stderr)
            k = None
        rows.append({"n": n, "fsdp_us": round(f, 2),
                     "epoll_us": None if k is None else round(k, 2)})
        print(f"{n:>8} {f:>10.2f} {'-' if k is None else f'{k:.2f}':>10}")
    print(json.dumps({"benchmark": "selector_scale", "calls": args.calls, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
