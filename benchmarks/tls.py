"""TLS on fsdp sockets against TLS on the kernel's: the same Python code, stdlib ``ssl`` both.

Two workloads, each run on fsdp (a server process and a client process, each with its own
stack, on one sim wire) and on the kernel (the same two processes over 127.0.0.1), alternating
run by run; server pinned to CPU 1, client to CPU 0 where there are two:

* short: one TLS 1.3 connection per request -- connect, handshake (ECDHE, RSA-2048
  certificate checked against its CA), a 64-byte request, a 64-byte response, close --
  sequentially for ``--seconds``: connections/s.  The handshake's public-key operations are
  most of it; what a stack adds shows here as the gap between the two columns;
* bulk: one TLS connection sends ``--megabytes`` to the server with ``sendall``, the server
  reads it with ``recv_into`` and answers with the byte count: MB/s of plaintext; and the same
  over plain TCP (the control: what the stacks do without TLS).

What fsdp's TLS is: ``fsdp/sockapi/tls.py`` (OpenSSL over memory BIOs, the records carried by
the fsdp socket).  The kernel's: CPython's ``SSLSocket`` (OpenSSL on the fd).

    python benchmarks/tls.py [--seconds S] [--megabytes M] [--runs N] [--json-only]

Prints a table (medians), then one JSON object as the last line of stdout.  Exits non-zero
with one line on stderr if a run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CERTS = os.path.join(ROOT, "tests", "sockapi", "certs")
SERVER_IP, CLIENT_IP, PORT = "10.77.0.1", "10.77.0.2", 4433
MSG = 64


def _pin(cpu: int) -> None:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})
    except (AttributeError, OSError):
        pass


def _socket_factory(world: str, wire: str, ip: str):
    """(a function making a TCP socket in ``world``, the stack it uses or None)."""
    if world == "kernel":
        return (lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)), None
    import fsdp

    stack = fsdp.Stack(nic=wire, ip=ip + "/24")
    return stack.socket, stack


def serve(world: str, wire: str) -> None:
    """The server: accept, handshake, then either answer a 64-byte request with 64 bytes
    ("short") or count a stream and answer with its length ("bulk", the first byte says)."""
    _pin(1)
    make, _ = _socket_factory(world, wire, SERVER_IP)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(CERTS, "server.pem"))
    ls = make()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1" if world == "kernel" else SERVER_IP, 0 if world == "kernel" else PORT))
    ls.listen(128)
    print(ls.getsockname()[1], flush=True)
    buf = bytearray(1 << 16)
    resp = b"R" * MSG
    while True:
        conn, _ = ls.accept()
        try:
            conn.settimeout(20)
            kind = conn.recv(1)  # b"T": TLS from here on; b"P": plain TCP (the control)
            tc = ctx.wrap_socket(conn, server_side=True) if kind == b"T" else conn
            n = tc.recv_into(buf)
            if n >= 9 and buf[0] == ord("B"):  # bulk: b"B", the length, then the bytes
                want = int.from_bytes(buf[1:9], "big")
                got = n - 9
                while got < want:
                    n = tc.recv_into(buf)
                    if not n:
                        break
                    got += n
                tc.sendall(got.to_bytes(8, "big"))
            elif n:
                tc.sendall(resp)
            tc.close()
        except (OSError, ValueError):
            pass


def client(world: str, wire: str, port: int, seconds: float, megabytes: int) -> dict:
    _pin(0)
    make, stack = _socket_factory(world, wire, CLIENT_IP)
    try:
        return _client_runs(make, world, port, seconds, megabytes)
    finally:
        if stack is not None:
            stack.close()


def _client_runs(make, world: str, port: int, seconds: float, megabytes: int) -> dict:
    host = "127.0.0.1" if world == "kernel" else SERVER_IP
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
    req = b"G" * MSG

    def connect(tls=True):
        s = make()
        s.settimeout(20)
        s.connect((host, port))
        s.sendall(b"T" if tls else b"P")
        return ctx.wrap_socket(s, server_hostname="fsdp.test") if tls else s

    def recv_exactly(tc, n):
        got = b""
        while len(got) < n:
            chunk = tc.recv(n - len(got))
            if not chunk:
                raise RuntimeError(f"the server closed after {len(got)} of {n} bytes")
            got += chunk
        return got

    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        tc = connect()
        tc.sendall(req)
        recv_exactly(tc, MSG)
        tc.close()
        n += 1
    short = n / (time.perf_counter() - t0)

    total = megabytes << 20
    block = b"x" * (1 << 16)

    def bulk(tls):
        tc = connect(tls)
        t0 = time.perf_counter()
        tc.sendall(b"B" + total.to_bytes(8, "big"))
        for _ in range(total // len(block)):
            tc.sendall(block)
        counted = int.from_bytes(recv_exactly(tc, 8), "big")
        seconds = time.perf_counter() - t0
        tc.close()
        if counted != total:
            raise RuntimeError(f"bulk: the server counted {counted} bytes, {total} were sent")
        return megabytes / seconds

    return {"short_conn_per_s": short, "bulk_mb_per_s": bulk(True),
            "plain_bulk_mb_per_s": bulk(False)}


def one_run(world: str, seconds: float, megabytes: int) -> dict:
    wire = f"sim:tlsbench-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    server = subprocess.Popen([sys.executable, __file__, "--serve", world, "--wire", wire],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        port = int(server.stdout.readline())
        return client(world, wire, port, seconds, megabytes)
    finally:
        server.kill()
        server.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="short connections per run")
    ap.add_argument("--megabytes", type=int, default=200, help="bulk stream per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json-only", action="store_true", help="print only the JSON line")
    ap.add_argument("--serve", choices=["fsdp", "kernel"], help=argparse.SUPPRESS)
    ap.add_argument("--wire", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.wire)
        return 0
    if args.seconds <= 0 or args.megabytes <= 0 or args.runs <= 0:
        print("tls.py: --seconds, --megabytes and --runs must be positive", file=sys.stderr)
        return 2
    results = {"fsdp": [], "kernel": []}
    cpus = os.sched_getaffinity(0)  # (the client pins this process: given back after)
    try:
        for _ in range(args.runs):
            for world in ("fsdp", "kernel"):
                results[world].append(one_run(world, args.seconds, args.megabytes))
    except (OSError, RuntimeError, ValueError) as e:
        print(f"tls.py: {e}", file=sys.stderr)
        return 1
    finally:
        os.sched_setaffinity(0, cpus)
    out = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                       "openssl": ssl.OPENSSL_VERSION},
           "runs": args.runs, "seconds": args.seconds, "megabytes": args.megabytes}
    keys = ("short_conn_per_s", "bulk_mb_per_s", "plain_bulk_mb_per_s")
    for world, rows in results.items():
        for key in keys:
            out[f"{world}_{key}"] = round(statistics.median(r[key] for r in rows), 1)
            out[f"{world}_{key}_all"] = [round(r[key], 1) for r in rows]
    for key in keys:
        out[f"ratio_{key}"] = round(out[f"fsdp_{key}"] / out[f"kernel_{key}"], 2)
    if not args.json_only:
        print(f"{'TLS 1.3, stdlib ssl':28} {'fsdp':>10} {'kernel':>10} {'ratio':>7}")
        print(f"{'short connections/s':28} {out['fsdp_short_conn_per_s']:>10.0f} "
              f"{out['kernel_short_conn_per_s']:>10.0f} {out['ratio_short_conn_per_s']:>7.2f}")
        print(f"{'bulk MB/s (one connection)':28} {out['fsdp_bulk_mb_per_s']:>10.0f} "
              f"{out['kernel_bulk_mb_per_s']:>10.0f} {out['ratio_bulk_mb_per_s']:>7.2f}")
        print(f"{'  the same without TLS':28} {out['fsdp_plain_bulk_mb_per_s']:>10.0f} "
              f"{out['kernel_plain_bulk_mb_per_s']:>10.0f} "
              f"{out['ratio_plain_bulk_mb_per_s']:>7.2f}")
        print(f"(medians of {args.runs} runs each, alternating; {os.cpu_count()} CPUs, "
              f"{ssl.OPENSSL_VERSION})")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
