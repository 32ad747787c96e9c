"""The load generator: ``fsdp bench`` and the client half of ``fsdp demo`` (http_load-like:
``concurrency`` connections, each looping connect -> GET -> response -> close, or keep-alive).

* :func:`native_client`: the jitted client (fsdp.apps.http_native) in the poll loop of a
  one-core fsdp stack.
* :func:`kernel_client`: :class:`fsdp.apps.http_python.HttpLoad` on the kernel's sockets.

Both count into a shared row (``HC_*``) and a shared latency histogram (1 µs bins), which the
parent reads while they run (progress line, measurement window).

Pure Python (listed in fsdp._jitcache._PURE_PYTHON).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from urllib.parse import urlsplit

import numpy as np

from fsdp.apps.http_native import (
    HC_BAD_RESPONSES,
    HC_CLIENT_ERRORS,
    HC_COMPLETED,
    HC_CONNECT_ERRORS,
    HC_PORT_EXHAUSTED,
    HC_REQUESTS,
    HC_SIZE,
    HC_STARTED,
    HC_STOP,
    HS_CID,
    step_slots,
)
from fsdp.apps.http_python import HttpLoad, http_request
from fsdp.apps.percore import (
    W_BUSY_NS,
    W_CPU_NS,
    W_PID,
    W_RETRANS,
    W_STATE,
    WS_READY,
    SharedArrays,
    Workers,
    cpu_count,
    process_cpu_ns,
    sched_sample,
    steal_sample,
    wire_ring_full,
)

HIST_US = 1 << 20  # latency histogram: 1 µs bins up to ~1 s (the last bin holds the rest)
REGION = 2048  # read buffer per client slot (a response header must fit)
SLICE_US = 50_000
DRAIN_S = 0.3  # after the stop flag: let the connections in flight finish


def percentile_us(hist: np.ndarray, q: float) -> float | None:
    total = int(hist.sum())
    if total == 0:
        return None
    return float(int(np.searchsorted(np.cumsum(hist), q * total, side="left")))


def client_errors(row) -> int:
    return int(row[HC_CLIENT_ERRORS] + row[HC_CONNECT_ERRORS] + row[HC_BAD_RESPONSES])


def native_client(ctl, counters, hist, nic, ip, mac, server_ip, server_port, concurrency,
                  keepalive, neighbors, path, go):
    """A one-core fsdp stack on ``nic`` running the jitted client until ``counters[HC_STOP]``;
    starts when ``go[0]`` is set.  ``nic``: a ``sim:NAME`` URI (a port of its own), or
    ``(wire, port_id, queue, n_queues, options)``: one queue of a port another process attached
    (``options``: Stack options, e.g. ``receive_flow_deliver``, which keeps the worker's
    connections on its queue)."""
    from fsdp.apps.bench_kernels import (
        OP_HTTP_LOAD,
        P_DEADLINE_US,
        P_KEEPALIVE,
        P_MAX_ITERS,
        P_REGION,
        P_SIP,
        P_SIZE,
        P_SPORT,
        P_START_NEW,
        bench_run,
        monotonic_us,
    )
    from fsdp.core.stack import Stack
    from fsdp.core.stats import STAT_TCP_RETRANS_SEGS, STAT_TCP_SYN_RETRANS

    port = None
    if isinstance(nic, tuple):
        from fsdp.apps.percore import worker_stack
        from fsdp.driver.sim import join_port

        wire, port_id, queue, n_queues, options = nic
        port = join_port(wire, port_id)
        stack = worker_stack(port, queue, n_queues, ip, mac, **options)
    else:
        stack = Stack(nic=nic, ip=ip, mac=mac)
    for nip, nmac in neighbors:
        stack.add_neighbor(nip, nmac)
    core = stack._refs[0]
    req = np.frombuffer(
        http_request(str(ipaddress.IPv4Address(server_ip)), server_port, path, keepalive),
        np.uint8,
    ).copy()
    slots, slot_of, hs = step_slots(concurrency, stack._opts.max_conns)
    cbuf = np.zeros(concurrency * REGION, np.uint8)
    u8 = np.zeros(1, np.uint8)
    prm = np.zeros(P_SIZE, np.int64)
    prm[P_SIP] = server_ip
    prm[P_SPORT] = server_port
    prm[P_REGION] = REGION
    prm[P_KEEPALIVE] = int(bool(keepalive))
    prm[P_MAX_ITERS] = 1 << 62
    prm[P_START_NEW] = 1
    st = counters.reshape(1, HC_SIZE)
    if not neighbors:  # resolve the server's MAC now, not inside the measurement
        stack.ping(str(ipaddress.IPv4Address(server_ip)), timeout=2.0)
    # compile (or load) the loop now, not inside the measurement: zero iterations
    warm = prm.copy()
    warm[P_MAX_ITERS] = 0
    bench_run(core, core, OP_HTTP_LOAD, warm, req, u8, cbuf, u8, st, slots, hs, hist, slot_of)
    ctl[W_STATE] = WS_READY
    while go[0] == 0 and counters[HC_STOP] == 0:
        time.sleep(0.001)
    stats = stack._cores[0].stats
    while counters[HC_STOP] == 0:
        prm[P_DEADLINE_US] = monotonic_us() + SLICE_US
        bench_run(core, core, OP_HTTP_LOAD, prm, req, u8, cbuf, u8, st, slots, hs, hist, slot_of)
        ctl[W_CPU_NS] = process_cpu_ns()
        ctl[W_RETRANS] = stats[STAT_TCP_RETRANS_SEGS] + stats[STAT_TCP_SYN_RETRANS]
    # Let the connections in flight finish (counters keep counting; the parent has its window).
    counters[HC_STOP] = 0
    prm[P_START_NEW] = 0
    end = monotonic_us() + int(DRAIN_S * 1e6)
    while (slots[:, HS_CID] >= 0).any() and monotonic_us() < end:
        prm[P_DEADLINE_US] = min(end, monotonic_us() + 10_000)
        bench_run(core, core, OP_HTTP_LOAD, prm, req, u8, cbuf, u8, st, slots, hs, hist, slot_of)
    ctl[W_RETRANS] = stats[STAT_TCP_RETRANS_SEGS] + stats[STAT_TCP_SYN_RETRANS]
    counters[HC_STOP] = 1
    stack.close()
    if port is not None:
        port.close()


def packet_client(ctl, counters, hist, nic, ip, mac, server_ip, server_port, concurrency,
                  keepalive, neighbors, path, go):
    """:class:`fsdp.apps.packet_client.PacketClient` (HTTP on raw frames, no TCP stack) on one
    queue of a port another process attached; the arguments are :func:`native_client`'s (``nic``
    in its tuple form, ``neighbors`` naming the server's MAC; no keep-alive)."""
    from fsdp.apps.packet_client import PacketClient
    from fsdp.driver.sim import join_port

    wire, port_id, queue, _n_queues, options = nic
    if keepalive:
        raise ValueError("the packet client opens one connection per request (no keep-alive)")
    macs = {int(ipaddress.IPv4Address(a)): int(m) for a, m in neighbors}
    port = join_port(wire, port_id)
    lip = int(ipaddress.IPv4Interface(ip).ip)
    sip = str(ipaddress.IPv4Address(server_ip))
    client = PacketClient(port, queue, lip, int(mac), int(server_ip), macs[int(server_ip)],
                          server_port, concurrency, http_request(sip, server_port, path, False),
                          counters, hist, rfd=options.get("receive_flow_deliver", True))
    ctl[W_STATE] = WS_READY
    while go[0] == 0 and counters[HC_STOP] == 0:
        time.sleep(0.001)
    while counters[HC_STOP] == 0:
        client.run(SLICE_US / 1e6)
        ctl[W_CPU_NS] = process_cpu_ns()
        got = client.stats
        ctl[W_BUSY_NS] = got["busy_ns"]
        ctl[W_RETRANS] = got["retransmits"]
    counters[HC_STOP] = 0  # as native_client: let the connections in flight finish
    client.drain(DRAIN_S)
    ctl[W_RETRANS] = client.stats["retransmits"]
    counters[HC_STOP] = 1
    port.close()


def kernel_client(ctl, counters, hist, host, port, concurrency, keepalive, path, go):
    import selectors
    import socket

    load = HttpLoad(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),
                    selectors.DefaultSelector(), (host, port), concurrency, keepalive, hist=hist,
                    path=path)

    def tick(g):
        counters[HC_STARTED] = g.started
        counters[HC_COMPLETED] = g.completed
        counters[HC_REQUESTS] = g.requests
        counters[HC_CLIENT_ERRORS] = g.errors
        ctl[W_CPU_NS] = process_cpu_ns()

    ctl[W_STATE] = WS_READY
    while go[0] == 0 and counters[HC_STOP] == 0:
        time.sleep(0.001)
    while counters[HC_STOP] == 0:
        load.run(0.02, on_tick=tick, tick_s=0.02)
    load.run(DRAIN_S, on_tick=tick, tick_s=0.02, start_new=False)
    tick(load)


class ClientGroup:
    """Client worker processes with shared counters and histograms."""

    def __init__(self, n: int):
        self.n = n
        self.shared = SharedArrays(counters=(n, HC_SIZE), hist=(n, HIST_US), go=(1,))
        self.counters = self.shared.counters
        self.hist = self.shared.hist
        self.workers = Workers(n)
        self.counts_retransmits = True  # every worker counts its retransmissions (W_RETRANS)

    def start(self, target, cpu, *args) -> None:
        i = len(self.workers.procs)
        if target is kernel_client:
            self.counts_retransmits = False  # the kernel's, of its sockets: not seen from here
        self.workers.start(target, cpu, self.counters[i], self.hist[i], *args, self.shared.go)

    def go(self) -> None:
        self.shared.go[0] = 1

    def totals(self) -> np.ndarray:
        return self.counters.sum(axis=0)

    def hist_total(self) -> np.ndarray:
        return self.hist.sum(axis=0)

    def cpu_ns(self) -> int:
        return int(self.workers.ctl[: self.n, W_CPU_NS].sum())

    def busy_ns(self) -> int:
        return int(self.workers.ctl[: self.n, W_BUSY_NS].sum())

    def retransmits(self) -> int:
        return int(self.workers.ctl[: self.n, W_RETRANS].sum())

    def stop(self, timeout: float = 5.0) -> None:
        self.counters[:, HC_STOP] = 1
        self.workers.join(timeout)


class Window:
    """Connections, errors and latencies between two snapshots of live counters."""

    def __init__(self, clients: ClientGroup, server=None):
        self.c = clients
        self.s = server
        self.t0 = time.monotonic()
        self.c0 = clients.totals().copy()
        self.h0 = clients.hist_total()
        self.s0 = server.totals().copy() if server is not None else None
        self.scpu0 = server.cpu_ns() if server is not None else 0
        self.spids = server_pids(server)
        self.ssched0 = sched_sample(self.spids)
        self.steal0 = steal_sample()
        self.ccpu0 = clients.cpu_ns()
        self.cbusy0 = clients.busy_ns()
        self.crt0 = clients.retransmits()

    def result(self, server_errors=None) -> dict:
        dt = time.monotonic() - self.t0
        d = self.c.totals() - self.c0
        h = self.c.hist_total() - self.h0
        errors = client_errors(d)
        kinds = {"connect": int(d[HC_CONNECT_ERRORS]), "client": int(d[HC_CLIENT_ERRORS]),
                 "bad_response": int(d[HC_BAD_RESPONSES])}
        if self.s is not None and server_errors is not None:
            kinds["server"] = server_errors(self.s.totals() - self.s0)
            errors += kinds["server"]
        out = {
            "seconds": round(dt, 3),
            "connections": int(d[HC_COMPLETED]),
            "requests": int(d[HC_REQUESTS]),
            "connections_per_s": round(int(d[HC_COMPLETED]) / dt) if dt > 0 else 0,
            "requests_per_s": round(int(d[HC_REQUESTS]) / dt) if dt > 0 else 0,
            "errors": errors,
            "errors_by_kind": kinds,
            "latency_us": {"p50": percentile_us(h, 0.50), "p99": percentile_us(h, 0.99)},
            "ephemeral_port_waits": int(d[HC_PORT_EXHAUSTED]),
        }
        if self.c.counts_retransmits:
            # segments the clients sent again (SYNs too): on the lossless sim wire each one is
            # a frame a full ring dropped (wire_drops), a segment the server refused, or a
            # worker kept off its CPU past a retransmission timeout
            out["client_retransmits"] = self.c.retransmits() - self.crt0
        if dt > 0:
            out["client_cpu_util"] = round((self.c.cpu_ns() - self.ccpu0) / 1e9 / dt, 2)
            busy = self.c.busy_ns() - self.cbusy0
            if busy > 0:  # clients that measure it: the share of their time spent working
                out["client_busy"] = round(busy / 1e9 / dt / self.c.n, 3)
            if self.s is not None:
                out["server_cpu_util"] = round((self.s.cpu_ns() - self.scpu0) / 1e9 / dt, 2)
            if self.spids:
                # where the server workers' time went (/proc): system share, and per worker
                # per second how often each slept or was preempted
                delta = sched_sample(self.spids) - self.ssched0
                user, system, vol, invol = (float(x) for x in delta)
                n = len(self.spids)
                out["server_sched"] = {
                    "system_share": round(system / (user + system), 3) if user + system else 0.0,
                    "voluntary_switches_per_s": round(vol / n / dt),
                    "involuntary_switches_per_s": round(invol / n / dt)}
            steal, total = (b - a for a, b in zip(self.steal0, steal_sample(), strict=True))
            if total > 0:  # all CPUs: the hypervisor's share, on a virtual machine
                out["cpu_steal_share"] = round(steal / total, 4)
        return out


def server_pids(server) -> list[int]:
    """The worker processes of a server group (those that record a pid), or none."""
    workers = getattr(server, "workers", None)
    if workers is None:
        return []
    return [int(p) for p in workers.ctl[:, W_PID] if p > 0]


def parse_url(url: str) -> tuple[str, int, str]:
    u = urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise ValueError(f"URL must look like http://HOST[:PORT]/PATH, not {url!r}")
    try:
        ipaddress.IPv4Address(u.hostname)
    except ValueError:
        raise ValueError(
            f"URL host must be an IPv4 address (no resolver), not {u.hostname!r}"
        ) from None
    return u.hostname, u.port or 80, u.path or "/"


class Progress:
    """One line on stderr, rewritten in place (only on a terminal)."""

    def __init__(self, enabled: bool | None = None):
        self.on = sys.stderr.isatty() if enabled is None else enabled
        self.width = 0

    def show(self, text: str) -> None:
        if not self.on:
            return
        pad = max(0, self.width - len(text))
        sys.stderr.write("\r" + text + " " * pad)
        sys.stderr.flush()
        self.width = len(text)

    def done(self) -> None:
        if self.on and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def measure(clients: ClientGroup, seconds: float, label: str, progress: Progress,
            server=None, server_errors=None, warmup: float = 0.3) -> dict:
    """Start the clients, skip ``warmup``, then count over ``seconds`` with a progress line."""
    clients.go()
    end_warm = time.monotonic() + warmup
    while time.monotonic() < end_warm:
        _check_alive(clients, server)
        time.sleep(0.02)
    win = Window(clients, server)
    end = win.t0 + seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        time.sleep(min(0.1, end - now))
        _check_alive(clients, server)
        d = clients.totals() - win.c0
        el = max(1e-6, time.monotonic() - win.t0)
        err = client_errors(d)
        progress.show(
            f"{label}: {el:5.1f}/{seconds:g} s  {int(d[HC_COMPLETED]):>9,} connections  "
            f"{int(d[HC_COMPLETED]) / el:>11,.0f}/s  errors {err}"
        )
    res = win.result(server_errors)
    progress.done()
    return res


def _check_alive(clients, server) -> None:
    dead = clients.workers.dead()
    if dead:
        raise RuntimeError(f"load generator worker(s) {dead} died")
    if server is not None and server.workers.dead():
        raise RuntimeError(f"server worker(s) {server.workers.dead()} died")


def run_bench(url: str, nic: str | None, ip: str | None, kernel: bool, concurrency: int,
              seconds: float, cores: int, keepalive: bool, as_json: bool) -> int:
    """``fsdp bench``."""
    host, port, path = parse_url(url)
    if not 1 <= concurrency <= 16384 or seconds <= 0 or not 1 <= cores <= 64:
        raise ValueError("need 1 <= --concurrency <= 16384, --seconds > 0, 1 <= --cores <= 64")
    if concurrency < cores:
        raise ValueError("--concurrency must be at least --cores")
    progress = Progress()
    ncpu = cpu_count()
    client_port = None
    if kernel:
        if nic or ip:
            raise ValueError("--kernel uses the kernel's sockets: drop --nic/--ip")
        clients = ClientGroup(cores)
        for k in range(cores):
            share = concurrency // cores + (1 if k < concurrency % cores else 0)
            clients.start(kernel_client, (ncpu - 1 - k) % ncpu if cores > 1 else None, host,
                          port, share, keepalive, path)
        backend = "kernel"
    else:
        if not nic or not ip:
            raise ValueError("fsdp bench needs --nic URI --ip CIDR (or --kernel)")
        from fsdp.driver import parse_nic_uri

        scheme, name = parse_nic_uri(nic)
        if cores > 1 and scheme != "sim":
            raise ValueError("--cores > 1 on fsdp needs a sim NIC (one port, a queue per worker)")
        iface = ipaddress.IPv4Interface(ip)
        mac = 0x020000000000 | int(iface.ip)
        clients = ClientGroup(cores)
        if cores == 1:
            nics = [nic]
        else:
            # one port with a queue per worker; receive flow deliver keeps each worker's
            # connections on its queue (fsdp.tcp.usercalls._port_steers_here)
            from fsdp.driver.sim import attach_named

            client_port = attach_named(name, cores, mac)
            nics = [(name, client_port.port_id, k, cores, {}) for k in range(cores)]
        for k in range(cores):
            share = concurrency // cores + (1 if k < concurrency % cores else 0)
            clients.start(native_client, (ncpu - 1 - k) % ncpu if cores > 1 else None, nics[k],
                          ip, mac, int(ipaddress.IPv4Address(host)), port, share, keepalive, (),
                          path)
        backend = "fsdp"
    wire = None
    try:
        clients.workers.wait_ready(list(range(clients.n)), 600.0)
        if backend == "fsdp" and scheme == "sim":
            from fsdp.driver.sim import SimWire

            wire = SimWire.open(name)  # the workers made or joined it: it is there
            drops0 = wire_ring_full(wire)
        res = measure(clients, seconds, f"bench {backend}", progress, warmup=0.2)
        if wire is not None:
            res["wire_drops"] = wire_ring_full(wire) - drops0
    finally:
        clients.stop()
        if client_port is not None:
            client_port.close()
    out = {"url": url, "backend": backend, "cores": cores, "concurrency": concurrency,
           "keepalive": keepalive, **res}
    if as_json:
        print(json.dumps(out))
    else:
        lat = res["latency_us"]
        unit = "requests" if keepalive else "connections"
        n = res["requests"] if keepalive else res["connections"]
        rate = res["requests_per_s"] if keepalive else res["connections_per_s"]
        drops = res.get("wire_drops", 0)
        rexmit = res.get("client_retransmits", 0)
        print(f"{n} {unit} in {res['seconds']} s: {rate:,}/s, latency p50 {lat['p50']} µs "
              f"p99 {lat['p99']} µs, errors {res['errors']}"
              + (f", {drops:,} frames dropped on full sim rings" if drops else "")
              + (f", {rexmit:,} segments retransmitted" if rexmit else ""))
    if res["connections"] == 0 and res["requests"] == 0:
        sys.stderr.write(f"fsdp bench: no request completed against {url}\n")
        return 1
    return 0
