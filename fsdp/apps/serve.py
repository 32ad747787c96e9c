"""The demo server: ``fsdp serve`` and the server half of ``fsdp demo``.

Worker bodies (run in forked processes by :class:`fsdp.apps.percore.Workers`):

* :func:`native_worker`: the jitted HTTP / echo server (fsdp.apps.http_native) inside the poll
  loop of the worker's core, in slices of ``SLICE_US`` so the worker notices the stop flag.
* :func:`python_worker`: :class:`fsdp.apps.http_python.HttpServer` on fsdp sockets.
* :func:`kernel_worker`: the same HttpServer on the kernel's sockets (``--compare-kernel``).

Each counts into its row of the shared counters (``HC_*`` of fsdp.apps.http_native).

Pure Python (listed in fsdp._jitcache._PURE_PYTHON).
"""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
import time

import numpy as np

from fsdp.apps.http_native import (
    HC_ACCEPTED,
    HC_BAD_REQUESTS,
    HC_SERVED,
    HC_SERVER_ERRORS,
    HC_SIZE,
    HC_STOP,
    MODE_ECHO,
    MODE_HTTP,
    SP_FREE,
    SV_PHASE,
    step_slots,
)
from fsdp.apps.http_python import HttpServer, demo_body, http_response
from fsdp.apps.percore import (
    W_CPU_NS,
    W_STATE,
    WS_READY,
    SharedArrays,
    Workers,
    cpu_count,
    process_cpu_ns,
    retire_queues,
    worker_stack,
)
from fsdp.core.stack import doorbell_stack, idle_backoff, idle_sleep

SLICE_US = 100_000  # a jitted loop returns to Python this often (stop flag, CPU accounting)
IDLE_SLICE_US = 200  # slices once idle ...
IDLE_SLEEP_MAX_S = 0.005  # ... with sleeps up to this between them (a plain sleep) ...
IDLE_BELL_SLEEP_MAX_S = 0.05  # ... or this, asleep on the queue's doorbell (a frame wakes it)
REGION = 2048  # read buffer per connection slot
BACKLOG = 4096


def _server_options(opts: dict | None) -> dict:
    # A short-connection server holds TIME-WAIT for every connection it closes first; the
    # engine recycles the oldest when the table is full (Linux's tcp_max_tw_buckets).
    o = {"tcp_max_tw_buckets": 16384}
    o.update(opts or {})
    return o


def _forward_only(ctl, counters, stack) -> None:
    """A worker without the listener (listen spawn off): it runs its core's loop, which hands
    every segment RSS gives it to worker 0 (fsdp.tcp.input._redirect_to_owner), busy while
    frames come and backing off with short sleeps when none do."""
    stack.poll()  # compile (or load) the loop before the caller measures ...
    idle_sleep(0.0)  # ... and the idle wait's jitted calls (as native_worker does): loaded
    #                  in the first idle pause they would hold up every SYN RSS gave this queue
    ctl[W_STATE] = WS_READY
    idle = 0
    passes = 0
    while counters[HC_STOP] == 0:
        passes += 1
        if passes % 1024 == 0:
            ctl[W_CPU_NS] = process_cpu_ns()
        if stack.poll():
            idle = 0
            continue
        idle += 1
        idle_backoff(idle, 10e-6, 0.0005)  # a frame for the queue wakes it
    ctl[W_CPU_NS] = process_cpu_ns()


def _server_stack(ctl, counters, wire, port_id, queue, n_queues, ip, mac, neighbors, opts):
    """(port, stack): a server worker's one-queue stack on the server port; or None when listen
    spawn is off and this worker has no listener, after it has only forwarded until stopped."""
    from fsdp.driver.sim import join_port

    nic = join_port(wire, port_id)
    stack = worker_stack(nic, queue, n_queues, ip, mac, **_server_options(opts))
    for nip, nmac in neighbors:
        stack.add_neighbor(nip, nmac)
    if queue != 0 and not stack._opts.listen_spawn:
        _forward_only(ctl, counters, stack)
        stack.close()
        nic.close()
        return None
    return nic, stack


def native_worker(ctl, counters, wire, port_id, queue, n_queues, ip, mac, port, mode, body_size,
                  slots, neighbors, opts):
    from fsdp.apps.bench_kernels import (
        OP_HTTP_SERVE,
        P_DEADLINE_US,
        P_LID,
        P_MAX_ITERS,
        P_MODE,
        P_REGION,
        P_SIZE,
        P_SPLIT,
        bench_run,
        monotonic_us,
    )
    joined = _server_stack(ctl, counters, wire, port_id, queue, n_queues, ip, mac, neighbors,
                           opts)
    if joined is None:
        return
    nic, stack = joined
    lid = stack._listen(0, port, BACKLOG, True)[0]
    core = stack._refs[0]
    body = demo_body(body_size)
    close, keep = http_response(body), http_response(body, keepalive=True)
    resp = np.frombuffer(close + keep, np.uint8).copy()
    sv, slot_of, hs = step_slots(slots, stack._opts.max_conns)
    sbuf = np.zeros(slots * REGION, np.uint8)
    u8 = np.zeros(1, np.uint8)
    e1 = np.zeros(0, np.int64)
    prm = np.zeros(P_SIZE, np.int64)
    prm[P_LID] = lid
    prm[P_REGION] = REGION
    prm[P_SPLIT] = len(close)
    prm[P_MODE] = MODE_ECHO if mode == "echo" else MODE_HTTP
    prm[P_MAX_ITERS] = 1 << 62
    st = counters.reshape(1, HC_SIZE)
    # compile (or load) the loop now, not inside the caller's measurement: zero iterations
    warm = prm.copy()
    warm[P_MAX_ITERS] = 0
    bench_run(core, core, OP_HTTP_SERVE, warm, resp, u8, u8, sbuf, st, hs, sv, e1, slot_of)
    idle_sleep(0.0)  # ... and the idle wait's own jitted calls (a cold cache compiled them in
    #                  the first idle pause, seconds into the measurement)
    ctl[W_STATE] = WS_READY
    idle = 0
    sleep_max = IDLE_BELL_SLEEP_MAX_S if doorbell_stack() is stack else IDLE_SLEEP_MAX_S
    while counters[HC_STOP] == 0:
        before = int(counters[HC_ACCEPTED])
        # Busy: poll in long slices.  Idle (nothing accepted, no connection open): short slices
        # with a growing sleep between them, so an idle server does not hold a CPU at 100%;
        # the sleep is on the queue's doorbell, so the first SYN after a pause ends it.
        prm[P_DEADLINE_US] = monotonic_us() + (SLICE_US if idle < 3 else IDLE_SLICE_US)
        bench_run(core, core, OP_HTTP_SERVE, prm, resp, u8, u8, sbuf, st, hs, sv, e1, slot_of)
        ctl[W_CPU_NS] = process_cpu_ns()
        if int(counters[HC_ACCEPTED]) != before or (sv[:, SV_PHASE] != SP_FREE).any():
            idle = 0
        else:
            idle += 1
            if idle >= 3:
                idle_sleep(min(sleep_max, 0.0002 * idle))  # a SYN wakes it at once
    stack.close()
    nic.close()


def _python_serve(ctl, counters, listener, selector, mode, body_size):
    server = HttpServer(listener, selector, demo_body(body_size), mode=mode)

    def tick(s):
        counters[HC_ACCEPTED] = s.accepted
        counters[HC_SERVED] = s.served
        counters[HC_SERVER_ERRORS] = s.errors
        ctl[W_CPU_NS] = process_cpu_ns()

    selector.select(0)  # compile (or load) fsdp's jitted poll now, before the caller measures
    ctl[W_STATE] = WS_READY
    server.run(lambda: counters[HC_STOP] != 0, on_tick=tick, tick_s=0.02)
    tick(server)


def python_worker(ctl, counters, wire, port_id, queue, n_queues, ip, mac, port, mode, body_size,
                  slots, neighbors, opts):
    from fsdp.selectors import DefaultSelector

    joined = _server_stack(ctl, counters, wire, port_id, queue, n_queues, ip, mac, neighbors,
                           opts)
    if joined is None:
        return
    nic, stack = joined
    ls = stack.socket()
    ls.setsockopt(1, 2, 1)  # SO_REUSEADDR
    ls.bind(("0.0.0.0", port))
    ls.listen(BACKLOG)
    _python_serve(ctl, counters, ls, DefaultSelector(), mode, body_size)
    ls.close()
    stack.close()
    nic.close()


def kernel_worker(ctl, counters, listener, mode, body_size):
    """The same HttpServer on a kernel socket (bound by the parent, inherited through fork)."""
    import selectors

    _python_serve(ctl, counters, listener, selectors.DefaultSelector(), mode, body_size)
    listener.close()


def server_errors(row) -> int:
    return int(row[HC_SERVER_ERRORS] + row[HC_BAD_REQUESTS])


class ServerGroup:
    """``cores`` server workers on one port (``cores`` queues, RSS) of sim wire ``wire``."""

    def __init__(self, wire: str, ip: str, mac: int, port: int, cores: int, app: str = "native",
                 mode: str = "http", body_size: int = 64, slots: int = 1024,
                 neighbors=(), cpus=None, opts: dict | None = None,
                 geometry: dict | None = None):
        from fsdp.driver.sim import attach_named

        self.cores = cores
        self.shared = SharedArrays(counters=(cores, HC_SIZE))
        self.counters = self.shared.counters
        self.workers = Workers(cores)
        # The parent owns the port (its queues and RSS); workers join it by id.
        try:
            self.port = attach_named(wire, cores, mac, **(geometry or {}))
        except ValueError:
            if not geometry:
                raise
            self.port = attach_named(wire, cores, mac)  # the wire exists: as it was made
        target = {"native": native_worker, "python": python_worker}[app]
        try:
            for q in range(cores):
                cpu = None if cpus is None else cpus[q % len(cpus)]
                self.workers.start(
                    target, cpu, self.counters[q], wire, self.port.port_id, q, cores, ip, mac,
                    port, mode, body_size, slots, tuple(neighbors), opts,
                )
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 600.0) -> None:
        self.workers.wait_ready(list(range(self.cores)), timeout)

    def totals(self) -> np.ndarray:
        return self.counters.sum(axis=0)

    def cpu_ns(self) -> int:
        return int(self.workers.ctl[: self.cores, W_CPU_NS].sum())

    def steer_around(self, dead_queues) -> None:
        retire_queues(self.port, self.cores, dead_queues)

    def stop(self) -> None:
        self.counters[:, HC_STOP] = 1
        self.workers.join(5.0)
        self.port.close()


def serve_wire_geometry(cores: int, ring_slots: int) -> dict:
    """The sim wire ``fsdp serve`` creates: room for the server's port and three client
    ports (``fsdp bench`` processes) of up to 16 queues (or the server's cores), with
    ``ring_slots``-slot rings (the sim's default is 8 ports and 256 slots).  A ring that
    fills drops (``nic ring_full`` in ``fsdp stat``; ``fsdp bench`` reports them), and each
    drop costs a connection a retransmission timeout: a ring needs at least four slots per
    connection its (client queue, server queue) pair keeps in flight (``fsdp demo`` gives
    eight: fsdp.apps.demo.wire_ring_slots).  The file is sparse:
    only the rings in use take memory (2 KiB a slot)."""
    if not 2 <= ring_slots <= 1 << 16 or ring_slots & (ring_slots - 1):
        raise ValueError(f"--ring-slots must be a power of two in [2, 65536], not {ring_slots}")
    return {"max_ports": 4, "max_queues": max(16, cores), "ring_slots": ring_slots}


def run_serve(nic: str, ip: str, port: int = 80, cores: int = 1, mode: str = "http",
              body_size: int = 64, app: str = "native", ring_slots: int = 1024) -> int:
    """``fsdp serve``: serve until SIGINT/SIGTERM, then print the counters."""
    from fsdp.driver import parse_nic_uri

    scheme, name = parse_nic_uri(nic)
    if scheme != "sim":
        raise OSError(f"fsdp serve runs on sim:NAME today; {scheme}: has no backend yet")
    iface = ipaddress.IPv4Interface(ip)
    mac = 0x020000000000 | int(iface.ip)
    if not 1 <= cores <= max(1, cpu_count()) * 4:
        raise ValueError(f"--cores must be between 1 and {cpu_count() * 4}")
    cpus = list(range(cpu_count())) if cores > 1 else None
    group = ServerGroup(name, ip, mac, port, cores, app=app, mode=mode, body_size=body_size,
                        cpus=cpus, geometry=serve_wire_geometry(cores, ring_slots))
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        group.wait_ready()
        sys.stderr.write(
            f"fsdp serve: {mode} on {iface.ip}:{port} ({nic}, {cores} core(s), app {app}); "
            "Ctrl-C stops\n"
        )
        sys.stderr.flush()
        reported: set[int] = set()
        while not stop["now"]:
            time.sleep(0.1)
            dead = set(group.workers.dead())
            if dead - reported:
                sys.stderr.write(f"fsdp serve: worker(s) of queue(s) {sorted(dead - reported)} "
                                 "died; the others keep serving\n")
                reported |= dead
                if len(dead) == cores:
                    return 1
                group.steer_around(dead)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        t = group.totals()
        group.stop()
    sys.stderr.write(
        f"fsdp serve: accepted {int(t[HC_ACCEPTED])}, served {int(t[HC_SERVED])}, "
        f"errors {server_errors(t)}\n"
    )
    return 0


def pid() -> int:
    return os.getpid()
