"""``fsdp demo``: the main job on the embedded default (CONTRACT.md §3).

A demo HTTP server stack and a load-generating client stack on one ``sim`` wire (a fresh wire
per configuration), HTTP/1.0 GET of a 64-byte body, one connection per request, the server
closing first.  For each core count asked for: N server worker processes (one queue of the
server's NIC port each, RSS spreading the SYNs), one client process (the jitted load
generator), a progress line on stderr, then a table of connections/s, latency p50/p99 and
errors.  ``--app native`` serves from a jitted handler inside the poll loop; ``--app python``
from :class:`fsdp.apps.http_python.HttpServer` on fsdp sockets.  ``--compare-kernel`` runs the
same Python server over the kernel's loopback (with the Python load generator: a jitted client
cannot drive kernel sockets) and prints the ratio.

CPU placement (fsdp.apps.percore.placement): server workers take one hardware thread on each
of the first physical cores, client workers the cores left, a server core's hyper-thread
sibling last; on this project's 2-CPU machine that is server on CPU 0, client on CPU 1 for
``--cores 1``, and a shared CPU beyond that (the table says so).

``--client packet`` replaces the client stacks by fsdp.apps.packet_client (TCP written on
frames), which costs a fraction of a server core per connection: what a scaling run needs, so
that the clients are not what limits it.

Pure Python (listed in fsdp._jitcache._PURE_PYTHON).
"""

from __future__ import annotations

import json
import os
import socket
import sys

from fsdp.apps.http_native import HC_SERVED, HC_SIZE, HC_STOP
from fsdp.apps.loadgen import (
    ClientGroup,
    Progress,
    kernel_client,
    measure,
    native_client,
    packet_client,
)
from fsdp.apps.percore import (
    W_CPU_NS,
    SharedArrays,
    Workers,
    cpu_count,
    placement,
    wire_ring_full,
)
from fsdp.apps.serve import ServerGroup, kernel_worker, server_errors

SERVER_IP = "10.88.0.1"
CLIENT_IP = "10.88.0.2"
SERVER_MAC = 0x02005E000001
CLIENT_MAC = 0x02005E000002
PORT = 80
BODY_SIZE = 64
MAX_CONCURRENCY = 16384  # well inside the client's 28,232 ephemeral ports


def default_client_cores(cores: int) -> int:
    """As many load-generator workers as server cores, within the CPUs the server leaves."""
    return max(1, min(cores, cpu_count() - cores))


def wire_ring_slots(concurrency: int, server_queues: int, client_queues: int) -> int:
    """Slots for each sim ring of the demo's wire (one ring per (sending queue, receiving
    queue) pair): room for eight frames of every connection one ring may carry, at least
    1,024.  A connection has at most about four frames in a ring at once (a SYN, or an ACK with
    the request; a SYN-ACK, or the response, a FIN and an ACK), and eight leaves room for a
    receiver that was off its CPU while RSS gave its ring more than an even share.  With all
    features on, a ring carries concurrency / (server x client queues) connections; with
    listen spawn off, worker 0's rings to each client carry every connection of that client
    (concurrency / client queues); with RFD off, a client's hand-over ring carries up to
    concurrency / client queues: so the sizing takes concurrency / min(server, client queues).
    A full ring drops, as a NIC's full receive ring does, and each drop costs its connection a
    retransmission timeout (1 s for a SYN): with 1,024 slots, 512 connections in flight on one
    core ran at about half the rate of 64."""
    per_ring = -(-concurrency // min(server_queues, client_queues))
    need = max(1024, 8 * per_ring)
    return min(1 << 16, 1 << (need - 1).bit_length())


def run_fsdp(app: str, cores: int, seconds: float, concurrency: int, progress: Progress,
             opts: dict | None = None, client_cores: int | None = None,
             listen_spawn: bool = True, rfd: bool = True, client: str = "stack") -> dict:
    wire = f"demo-{os.getpid()}-{app}-{cores}"
    n_clients = client_cores or default_client_cores(cores)
    server_cpus, client_cpus, shared = placement(cores, n_clients)
    neighbors_server = ((CLIENT_IP, CLIENT_MAC),)
    if not listen_spawn:
        opts = dict(opts or {}, listen_spawn=False)
    client_opts = {} if rfd else {"receive_flow_deliver": False}
    server = ServerGroup(wire, f"{SERVER_IP}/24", SERVER_MAC, PORT, cores, app=app,
                         body_size=BODY_SIZE, slots=max(1024, 2 * concurrency),
                         neighbors=neighbors_server, cpus=server_cpus, opts=opts,
                         geometry={"max_ports": 2, "max_queues": max(cores, n_clients),
                                   "ring_slots": wire_ring_slots(concurrency, cores,
                                                                 n_clients)})
    clients = ClientGroup(n_clients)
    client_port = None
    try:
        progress.show(f"{app} x{cores}: starting {cores} server worker(s) and {n_clients} "
                      "client(s) (a cold Numba cache compiles the engine first: minutes)")
        server.wait_ready()
        from ipaddress import IPv4Address

        if n_clients == 1 and client == "stack":
            nics = [f"sim:{wire}"]
        else:
            # One client port with a queue per worker; each worker's connect() picks ports
            # whose replies RSS steers back to its own queue (receive flow deliver).
            from fsdp.driver.sim import attach_named

            client_port = attach_named(wire, n_clients, CLIENT_MAC)
            nics = [(wire, client_port.port_id, k, n_clients, client_opts)
                    for k in range(n_clients)]
        for k in range(n_clients):
            share = concurrency // n_clients + (1 if k < concurrency % n_clients else 0)
            worker = packet_client if client == "packet" else native_client
            clients.start(worker, None if client_cpus is None else client_cpus[k],
                          nics[k], f"{CLIENT_IP}/24", CLIENT_MAC, int(IPv4Address(SERVER_IP)),
                          PORT, max(1, share), False, ((SERVER_IP, SERVER_MAC),), "/")
        clients.workers.wait_ready(list(range(n_clients)), 600.0)
        res = measure(clients, seconds, f"{app} x{cores}", progress, server=server,
                      server_errors=server_errors)
        res["wire_drops"] = wire_ring_full(server.port.wire)
    finally:
        clients.stop()
        server.stop()
        if client_port is not None:
            client_port.close()
    per_core = [int(x) for x in server.counters[:, HC_SERVED]]
    res.update({"app": app, "backend": "fsdp", "cores": cores, "shared_cpus": shared,
                "served_per_core": per_core, "client_cores": n_clients,
                "listen_spawn": listen_spawn, "rfd": rfd,
                "config": _config_name(listen_spawn, rfd),
                "client": ("packet (jitted, no TCP stack)" if client == "packet"
                           else "native (jitted, fsdp)")})
    return res


def _config_name(listen_spawn: bool, rfd: bool) -> str:
    off = [name for name, on in (("listen spawn", listen_spawn), ("RFD", rfd)) if not on]
    return "all features" if not off else "no " + ", no ".join(off)


class KernelPythonServer:
    """The demo's Python server (:class:`fsdp.apps.http_python.HttpServer`) on a kernel
    socket on 127.0.0.1, in a worker process on the server's CPU (``placement(1, 1)``), as a
    context manager: ``port``, ``client_cpu`` (where its client belongs), and what
    ``measure()`` needs of a server (``workers``, ``totals()``, ``cpu_ns()``)."""

    def __init__(self):
        server_cpus, client_cpus, self.shared = placement(1, 1)
        self.client_cpu = None if client_cpus is None else client_cpus[0]
        self._server_cpu = server_cpus[0] if server_cpus else None
        self._sh = SharedArrays(counters=(1, HC_SIZE))
        self.workers = Workers(1)

    def __enter__(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", 0))
            ls.listen(4096)
            self.port = ls.getsockname()[1]
            self.workers.start(kernel_worker, self._server_cpu, self._sh.counters[0], ls,
                               "http", BODY_SIZE)
        finally:
            ls.close()  # the worker holds its own copy
        try:
            self.workers.wait_ready([0], 60.0)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        self._sh.counters[:, HC_STOP] = 1
        self.workers.join(5.0)

    def totals(self):
        return self._sh.counters.sum(axis=0)

    def cpu_ns(self) -> int:
        return int(self.workers.ctl[0, W_CPU_NS])


def run_kernel(seconds: float, concurrency: int, progress: Progress) -> dict:
    """The same Python server and client state machine over the kernel's loopback."""
    with KernelPythonServer() as server:
        clients = ClientGroup(1)
        try:
            clients.start(kernel_client, server.client_cpu, "127.0.0.1", server.port,
                          concurrency, False, "/")
            clients.workers.wait_ready([0], 60.0)
            res = measure(clients, seconds, "kernel (python server)", progress, server=server,
                          server_errors=server_errors)
        finally:
            clients.stop()
    res.update({"app": "python", "backend": "kernel", "cores": 1, "shared_cpus": server.shared,
                "client": "python selectors (kernel sockets)"})
    return res


def _fmt(v) -> str:
    return "-" if v is None else f"{v:,.0f}"


def run_demo(app: str = "native", cores: list[int] | None = None, seconds: float = 5.0,
             concurrency: int = 64, compare_kernel: bool = False, as_json: bool = False,
             plot: str | None = None, client_cores: int | None = None,
             listen_spawn: bool = True, rfd: bool = True, ablation: bool = False,
             client: str = "stack") -> int:
    """``ablation``: every core count also without listen spawn and without RFD (Fastsocket's
    figure: what each feature buys).  ``client``: "stack" (a one-core fsdp stack per client
    worker running the jitted client) or "packet" (fsdp.apps.packet_client: TCP written on
    frames, a fraction of the cost per connection, so few client cores load many server
    cores)."""
    cores = cores or [1]
    if client_cores is not None and not 1 <= client_cores <= 64:
        raise ValueError("need 1 <= --client-cores <= 64")
    if app not in ("native", "python"):
        raise ValueError(f"--app must be native or python, not {app!r}")
    if client not in ("stack", "packet"):
        raise ValueError(f"--client must be stack or packet, not {client!r}")
    if seconds <= 0 or not 1 <= concurrency <= MAX_CONCURRENCY or any(
        c < 1 or c > 64 for c in cores
    ):
        raise ValueError(
            f"need --seconds > 0, 1 <= --concurrency <= {MAX_CONCURRENCY}, 1 <= --cores <= 64"
        )
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib, which is not installed "
                             "(pip install matplotlib)") from None
    progress = Progress()
    variants = [(listen_spawn, rfd)]
    if ablation:
        variants = [(True, True), (False, True), (True, False)]
    rows = [run_fsdp(app, n, seconds, concurrency, progress, client_cores=client_cores,
                     listen_spawn=ls, rfd=rd, client=client)
            for ls, rd in variants for n in cores]
    kernel = run_kernel(seconds, concurrency, progress) if compare_kernel else None

    print(f"fsdp demo: HTTP/1.0 GET, {BODY_SIZE}-byte body, one connection per request, "
          f"{concurrency} concurrent, app {app}, sim wire; {cpu_count()} CPUs")
    print(f"{'config':<34} {'cores':>5} {'conn/s':>12} {'p50 µs':>8} {'p99 µs':>8} "
          f"{'errors':>7}  {'srv cpu':>7}")
    for r in rows + ([kernel] if kernel else []):
        name = f"{r['backend']} {r['app']}"
        if r.get("config", "all features") != "all features":
            name += f" ({r['config']})"
        note = " (CPUs shared)" if r["shared_cpus"] else ""
        print(f"{name:<34} {r['cores']:>5} {r['connections_per_s']:>12,} "
              f"{_fmt(r['latency_us']['p50']):>8} {_fmt(r['latency_us']['p99']):>8} "
              f"{r['errors']:>7}  {r.get('server_cpu_util', 0):>7.2f}{note}")
    for r in rows:
        if r.get("client_retransmits"):  # a lossless wire needs none: say what cost the time
            print(f"note: {r['config']} x{r['cores']}: the clients retransmitted "
                  f"{r['client_retransmits']:,} segments ({r.get('wire_drops', 0):,} frames "
                  "dropped on full sim rings; beyond those, segments the server refused or a "
                  "worker kept off its CPU past a retransmission timeout)")
    first = rows[0]
    if kernel:
        ratio = (first["connections_per_s"] / kernel["connections_per_s"]
                 if kernel["connections_per_s"] else None)
        kernel["ratio"] = round(ratio, 3) if ratio is not None else None
        print(f"fsdp {app} / kernel python server: "
              + (f"{ratio:.2f}x" if ratio is not None else "n/a (kernel run completed nothing)"))
    if plot is not None:
        _plot(plot, rows, kernel, app)
        print(f"plot written to {plot}")
    if as_json:
        out = {k: first[k] for k in ("cores", "seconds", "connections", "connections_per_s",
                                     "errors", "latency_us")}
        out.update({"app": app, "concurrency": concurrency, "body_bytes": BODY_SIZE,
                    "runs": rows})
        if kernel:
            out["kernel"] = {k: kernel[k] for k in ("cores", "seconds", "connections",
                                                   "connections_per_s", "errors", "latency_us",
                                                   "client", "server_cpu_util")}
            out["kernel"]["ratio"] = kernel["ratio"]
            out["ratio"] = kernel["ratio"]
        print(json.dumps(out))
    bad = [r for r in rows + ([kernel] if kernel else []) if r["connections"] == 0]
    if bad:
        names = ", ".join(f"{r.get('config', r.get('backend'))} x{r.get('cores')}" for r in bad)
        sys.stderr.write(f"fsdp demo: no connection completed in: {names}\n")
        return 1
    return 0


def _plot(path: str, rows: list[dict], kernel: dict | None, app: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = sorted({r["cores"] for r in rows})
    for config in dict.fromkeys(r.get("config", "all features") for r in rows):
        mine = sorted((r for r in rows if r.get("config", "all features") == config),
                      key=lambda r: r["cores"])
        label = f"fsdp, {app} server" + ("" if config == "all features" else f", {config}")
        ax.plot([r["cores"] for r in mine], [r["connections_per_s"] for r in mine], "o-",
                label=label)
    if kernel:
        ax.plot([1], [kernel["connections_per_s"]], "s", label="kernel, python server")
    ax.set_xlabel("server cores")
    ax.set_ylabel("connections/s")
    ax.set_xticks(xs)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("fsdp demo: HTTP/1.0, one connection per request")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
