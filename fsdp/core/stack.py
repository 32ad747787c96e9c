"""``fsdp.Stack``: one fsdp host attached to a NIC, with one ``CoreState`` per core.

This object is the Python side of the stack: it validates arguments, builds the per-core state,
and drives the jitted loop (``run_once``) for every core it owns.  Stacks register themselves
process-wide so that a blocking call on any of them keeps every stack of the process polled
(a client and a server stack can share one thread, CONTRACT.md §1).
"""

from __future__ import annotations

import errno
import gc
import ipaddress
import math
import os
import select
import threading
import time
import weakref
from collections.abc import Callable

import numpy as np
from numba import types as numba_types

from fsdp.core.config import CFG_CAPTURE, CFG_CORE_ID, StackOptions
from fsdp.core.loop import next_deadline, poll_status
from fsdp.core.state import CoreState, core_state_create
from fsdp.core.stats import STAT_NAMES, stats_dict
from fsdp.core.vars import NO_DEADLINE, V_LO_IN_COUNT, V_PING_COUNT
from fsdp.driver import open_nic
from fsdp.driver.jitmem import CoreRef, RootEntry
from fsdp.driver.pcap import (
    CAP_OWNER,
    SHARED_CAPTURE_SNAPLEN,
    CaptureFilter,
    CaptureRing,
    PcapWriter,
    capture_drain,
    capture_ring_create,
)
from fsdp.driver.sim import SimQueue, _pid_alive, queue_sleep
from fsdp.pool.pool import pool_audit, pool_n_free
from fsdp.tcp.icmp import ECHO_LOG_SIZE, icmp_send_echo
from fsdp.tcp.ipfrag import ipfrag_held_frames
from fsdp.tcp.neighbor import ARP_STATE_NAMES, arp_add_static, arp_queued_frames
from fsdp.wire.ethernet import mac_to_int, mac_to_str

_live_stacks: weakref.WeakSet[Stack] = weakref.WeakSet()
# live_stacks()'s snapshot: weak references (a forgotten stack still goes away), rebuilt only
# when a stack is made, closed or collected -- iterating the WeakSet on every selector pass
# costs a microsecond.
_live_refs: tuple = ()
_live_dirty = True


def _live_changed(_ref=None) -> None:
    global _live_dirty
    _live_dirty = True


def live_stacks() -> list[Stack]:
    """The open stacks of this process."""
    global _live_refs, _live_dirty
    if _live_dirty:
        _live_dirty = False
        _live_refs = tuple(weakref.ref(s, _live_changed) for s in list(_live_stacks))
    out = []
    for r in _live_refs:
        s = r()
        if s is not None:
            out.append(s)
    return out
# Python enters a core's loop through one jitted root, poll_status (a pass, plus the readiness
# of the rows a selector passes; none here): one compiled library to load per process.
_NO_ROWS = np.zeros(0, np.int64)
_NO_ROWOF = np.zeros(0, np.int32)
# ... called through its compiled entry: no type resolution per pass (RootEntry)
_I64_ARRAY = numba_types.Array(numba_types.int64, 1, "C")
_POLL = RootEntry(poll_status, numba_types.int64, _I64_ARRAY, _I64_ARRAY, _I64_ARRAY,
                  numba_types.Array(numba_types.int32, 1, "C"), _I64_ARRAY)


_frozen_after: set[str] = set()  # the loads after which this process froze (once each)


def freeze_long_lived_objects(after: str) -> None:
    """Take the objects that exist now out of the cyclic garbage collector's scans
    (``gc.freeze``), unless ``FSDP_GC_FREEZE=0``; once per process for each kind of load
    ``after`` names ("loop": a stack loaded its loop; "usercalls": its usercall entries).

    A process that has loaded the engine holds ~130,000 objects Numba made (types, compiled
    libraries, dispatcher caches), ten times a plain interpreter's.  Every full collection
    walks them all: ~30 ms on the 2-CPU VM, a stall of every connection the process serves.
    An asyncio server, whose futures, tasks and transports make cyclic garbage, runs such a
    collection every few seconds: with them frozen, `benchmarks/asyncio_short.py` went from
    p99 50 ms to 3 ms.  Frozen objects are still freed by reference counting; only a cycle
    among them that becomes garbage later stays (as after a fork with gc.freeze, its usual use).
    So it is done when the engine's objects appear -- the first load of each kind -- and not
    again: a later stack brings no new ones of note, and freezing again would make immortal
    whatever cycles the program holds then (a closed stack inside one would never be freed)."""
    if after in _frozen_after:
        return
    _frozen_after.add(after)
    if os.environ.get("FSDP_GC_FREEZE", "1") != "0":
        gc.freeze()


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


def doorbell_stack() -> Stack | None:
    """The stack whose NIC queue doorbell this process's idle waits sleep on, or None: only a
    process with one stack (on a real clock) of one core, on a NIC that has a doorbell (``sim``),
    can sleep on one queue's.  (A stack on a virtual clock, a test harness's, moves only when its
    test drives it.)  ``FSDP_DOORBELL=0`` in the environment turns it off: naps only."""
    if os.environ.get("FSDP_DOORBELL", "1") == "0":
        return None
    stacks = [s for s in live_stacks() if not s._virtual_clock]
    if len(stacks) != 1:
        return None
    s = stacks[0]
    if s.cores != 1 or not isinstance(s._cores[0].nic, SimQueue) or s._port is None:
        return None
    return s


def _sleep_bound(s: Stack, seconds: float) -> float:
    """``seconds``, cut at the stack's next timer (a sleep must not run past it)."""
    d = s.next_deadline()
    if d != NO_DEADLINE:
        seconds = min(seconds, max(0.0, (d - s._clock()) / 1e6))
    return seconds


BUSY_POLL_PASSES = 64  # empty passes in a row a polling thread spins before it sleeps


def idle_backoff(idle: int, step_s: float, cap_s: float, deadline: float | None = None) -> None:
    """The wait after the ``idle``-th empty pass in a row of a thread that polls this
    process's stacks (a blocking socket call, a forward-only worker): busy-poll for the first
    BUSY_POLL_PASSES, then sleep ``step_s`` longer each pass up to ``cap_s`` (on the queue's
    doorbell where there is one: :func:`idle_sleep`), never past ``deadline`` (monotonic).

    Each busy-poll pass yields the CPU (sched_yield), as the jitted worker loops do
    (fsdp.apps.bench_kernels.yield_when_idle): a peer process that shares the CPU -- the
    server a request just woke, the client its answer woke -- would otherwise wait out the
    whole busy-poll: on a 2-CPU VM that was ~170 µs of each wake after 10 ms of quiet, ~450 µs
    of a ~480 µs round trip (the kernel's socket wakeups let the woken task run on the waker's
    CPU at once).  With nothing else runnable the yield returns at once; a round trip after
    1 ms of quiet costs ~10 µs more (``benchmarks/idle_wake.py``)."""
    if idle <= BUSY_POLL_PASSES:
        busy_poll_yield()
        return
    wait = min(cap_s, step_s * (idle - BUSY_POLL_PASSES))
    if deadline is not None:
        wait = max(0.0, min(wait, deadline - time.monotonic()))
    idle_sleep(wait)


def busy_poll_yield() -> None:
    """An empty busy-poll pass: let whatever else is runnable on this CPU run first
    (sched_yield; see :func:`idle_backoff` for why)."""
    os.sched_yield()


def idle_sleep(seconds: float) -> None:
    """The idle wait of a thread that polls this process's stacks (selectors, blocking socket
    calls): on the NIC queue's doorbell where :func:`doorbell_stack` finds one, so a frame sent
    to the queue ends it at once (fsdp.driver.sim.queue_sleep), never past the stack's next
    timer; else a plain sleep."""
    s = doorbell_stack()
    if s is None:
        time.sleep(seconds)
        return
    queue_sleep(s._cores[0].nic, _sleep_bound(s, seconds), s.poll)


_kernel_poll = select.poll  # (transparent mode puts its own in the module; this is the kernel's)


def idle_wait_fd(fd: int, seconds: float) -> None:
    """:func:`idle_sleep` that also ends when kernel fd ``fd`` (an epoll fd: a kernel selector's)
    becomes readable.  A futex cannot sleep in poll(2), so the doorbell comes as the fd of the
    queue's BellRelay (fsdp.driver.sim.BellRelay), polled beside ``fd``."""
    s = doorbell_stack()
    relay = None
    if s is not None:
        try:
            relay = s._port.bell_relay(0)
        except (AttributeError, ValueError):  # a NIC without relays, a port from another process
            relay = None
    poller = _kernel_poll()
    poller.register(fd, select.POLLIN)
    if relay is None:
        poller.poll(math.ceil(seconds * 1e3))
        return
    poller.register(relay.fd, select.POLLIN)

    def arm_then_look() -> int:
        relay.drain()  # rings from before this thread counted itself among the sleepers
        return s.poll()

    # (poll(2) counts milliseconds: round up, or a sub-millisecond nap would spin)
    queue_sleep(s._cores[0].nic, _sleep_bound(s, seconds), arm_then_look,
                wait=lambda t: poller.poll(math.ceil(t * 1e3)))


def poll_all_stacks() -> int:
    """One pass of every live stack in this process; returns the frames they received."""
    n = 0
    for s in live_stacks():
        n += s.poll()
    return n


_default_stack: Stack | None = None


_default_stack_lock = threading.Lock()


def default_stack() -> Stack:
    """The process's default stack for ``fsdp.socket()``: ``FSDP_NIC`` (default ``sim:default``)
    and ``FSDP_IP`` (default ``10.0.0.2/24``), created on first use (``fsdp run`` sets them)."""
    global _default_stack
    with _default_stack_lock:  # two threads' first sockets must not make two stacks
        if _default_stack is None or _default_stack._closed:
            if os.environ.get("FSDP_PORT_ID"):
                _default_stack = _prefork_worker_stack()
                return _default_stack
            _default_stack = Stack(
                nic=os.environ.get("FSDP_NIC", "sim:default"),
                ip=os.environ.get("FSDP_IP", "10.0.0.2/24"),
                cores=int(os.environ.get("FSDP_CORES", "1")),
            )
        return _default_stack


def _prefork_worker_stack() -> Stack:
    """A ``fsdp run --cores N`` worker's stack: queue ``FSDP_QUEUE`` of port ``FSDP_PORT_ID`` of
    the sim wire ``FSDP_NIC``, which the ``fsdp run`` process attached (fsdp.transparent.run)."""
    from fsdp.apps.percore import worker_stack
    from fsdp.driver import parse_nic_uri
    from fsdp.driver.sim import join_port

    _, name = parse_nic_uri(os.environ.get("FSDP_NIC", "sim:default"))
    ip = os.environ.get("FSDP_IP", "10.0.0.2/24")
    port = join_port(name, int(os.environ["FSDP_PORT_ID"]))
    stack = worker_stack(port, int(os.environ.get("FSDP_QUEUE", "0")),
                         int(os.environ.get("FSDP_CORES", "1")), ip, port.mac)
    stack._joined_port = port  # closed with the process
    return stack


def _parse_mac(mac) -> int:
    if isinstance(mac, int) and not isinstance(mac, bool):
        if not 0 <= mac < 1 << 48:
            raise ValueError(f"invalid MAC address {mac!r}")
        return mac
    if isinstance(mac, str):
        return mac_to_int(mac)
    raise TypeError(f"MAC address must be a str like '02:00:00:00:00:01', not {type(mac).__name__}")


def _parse_interface(ip) -> ipaddress.IPv4Interface:
    if not isinstance(ip, str):
        raise TypeError(f"ip must be a str like '10.0.0.2/24', not {type(ip).__name__}")
    try:
        iface = ipaddress.IPv4Interface(ip)
    except ValueError as e:
        raise ValueError(f"invalid IPv4 address/prefix {ip!r}: {e}") from None
    if iface.ip.is_unspecified or iface.ip.is_multicast or iface.ip.is_loopback:
        raise ValueError(f"{iface.ip} cannot be a host address")
    if iface.network.prefixlen < 31 and iface.ip in (
        iface.network.network_address, iface.network.broadcast_address
    ):
        raise ValueError(f"{iface.ip} is the network or broadcast address of {iface.network}")
    return iface


class Stack:
    """A userspace TCP/IP host: ``Stack(nic="sim:lab", ip="10.0.0.2/24", cores=1)``.

    ``nic`` is a URI (``sim:NAME``, ``tap:IF``, ``xdp:IF``, ``afpacket:IF``, ``verbs:DEV``);
    ``mac`` defaults to a locally administered address derived from ``ip``; ``gateway`` is the
    default route (none by default: only the on-link subnet is reachable).  ``options`` are the
    tunables of :class:`fsdp.core.config.StackOptions`.
    """

    def __init__(
        self,
        nic: str = "sim:lab",
        ip: str = "10.0.0.2/24",
        *,
        mac: str | int | None = None,
        gateway: str | None = None,
        cores: int = 1,
        clock: Callable[[], int] | None = None,
        **options,
    ):
        if isinstance(cores, bool) or not isinstance(cores, int):
            raise TypeError(f"cores must be an int, not {type(cores).__name__}")
        if not 1 <= cores <= 64:
            raise ValueError(f"cores must be between 1 and 64, not {cores}")
        self._opts = StackOptions.from_options(options)
        self.interface = _parse_interface(ip)
        self.ip = str(self.interface.ip)
        ip_int = int(self.interface.ip)
        self.mac = _parse_mac(mac) if mac is not None else 0x020000000000 | ip_int
        gw = 0
        if gateway is not None:
            if not isinstance(gateway, str):
                raise TypeError("gateway must be a str like '10.0.0.1'")
            try:
                gw_addr = ipaddress.IPv4Address(gateway)
            except ValueError as e:
                raise ValueError(f"invalid gateway {gateway!r}: {e}") from None
            if gw_addr not in self.interface.network:
                raise ValueError(f"gateway {gateway} is not on-link ({self.interface.network})")
            gw = int(gw_addr)
        self.gateway = gateway
        self.cores = cores
        self._clock = clock or monotonic_us
        self._closed = False
        if isinstance(nic, str):
            self._port = open_nic(nic, cores, self.mac)
            self._owns_port = True
        else:  # an already-open port (the test harness attaches its own)
            self._port = nic
            self._owns_port = False
        if self._port.n_queues != cores:
            raise ValueError(f"NIC has {self._port.n_queues} queues, stack wants {cores}")
        self.nic = nic if isinstance(nic, str) else getattr(nic, "uri", "sim")
        # Where the NIC gives ARP to every queue, one core answers requests; elsewhere each core
        # answers the requests it sees.
        arp_reply_core = 0 if self._port.capabilities.get("arp_to_all_queues") else -1
        steering_views = getattr(self._port, "steering_views", None)
        steering = steering_views() if steering_views is not None else None
        listen_map = getattr(self._port, "listen_map", None)
        if listen_map is None:
            listen_map = np.zeros(65536, np.int64)  # this process's cores are all there is
        self._cores: list[CoreState] = [
            core_state_create(
                self._opts, self._port.queue(i), ip=ip_int,
                netmask=int(self.interface.network.netmask), gateway=gw, mac=self.mac,
                core_id=i, n_cores=cores, arp_reply_core=arp_reply_core, steering=steering,
                listen_map=listen_map,
            )
            for i in range(cores)
        ]
        self._statseg = None
        self._shared_capture: list[CaptureRing] | None = None
        self._virtual_clock = clock is not None
        if self._opts.stats_segment:
            self._publish_tables()
        # what jitted roots are called with: one pointer each, not ~170 arrays to unbox
        self._refs: list[CoreRef] = [CoreRef(c) for c in self._cores]
        # the socket layer's per-connection calls into the engine (fsdp.sockapi.fastcall),
        # made with the stack's first socket
        self._engine = None
        self._ip_int = ip_int
        self._accept_rr = -1
        # id(socket) -> the socket's weak reference (Socket._wref), stored by Socket.__init__
        # and dropped by Socket._release: a dict store, not a WeakSet entry (~1 µs, in Python)
        self._sockets: dict[int, weakref.ref] = {}
        self._capture: PcapWriter | None = None
        self._capture_match: CaptureFilter | None = None
        self._ping_ident = (id(self) >> 4) & 0xFFFF
        _live_stacks.add(self)
        _live_changed()
        # One pass now, so compiling or loading the jitted loop happens here and not in the
        # middle of a protocol exchange (where it would look like seconds of network delay).
        self.poll()
        freeze_long_lived_objects("loop")

    def _publish_tables(self) -> None:
        """Move each core's counters, TCB tables and listen table into a shared-memory file
        (fsdp.core.statseg) that fsdp stat / fsdp ss read from other processes."""
        from fsdp.core.statseg import StatsSegment

        arrays = {}
        slots = self._opts.capture_slots
        for i, c in enumerate(self._cores):
            arrays[f"core{i}.cfg"] = c.cfg  # live: a worker's core id is set after this
            arrays[f"core{i}.stats"] = c.stats
            arrays[f"core{i}.tcb_hot"] = c.tcb.hot
            arrays[f"core{i}.tcb_cold"] = c.tcb.cold
            arrays[f"core{i}.listen"] = c.listen.rec
            if slots:  # the ring `fsdp capture` drains (its pages stay untouched until then)
                ring = capture_ring_create(slots=slots, snaplen=SHARED_CAPTURE_SNAPLEN)
                for field in CaptureRing._fields:
                    arrays[f"core{i}.capture_{field}"] = getattr(ring, field)
        source = getattr(self._port, "counters_source", None)  # the NIC's own, where it has
        info = {
            "ip": str(self.interface), "nic": self.nic, "cores": self.cores,
            "stat_names": list(STAT_NAMES), "cfg_core_id": CFG_CORE_ID,
            "cfg_capture": CFG_CAPTURE, "capture_slots": slots,
            "host_clock": not self._virtual_clock,
            "nic_counters": [] if source is None else [source(i) for i in range(self.cores)],
        }
        seg = StatsSegment(info, arrays)
        v = seg.views
        self._cores = [
            c._replace(
                cfg=v[f"core{i}.cfg"],
                stats=v[f"core{i}.stats"],
                tcb=c.tcb._replace(hot=v[f"core{i}.tcb_hot"], cold=v[f"core{i}.tcb_cold"]),
                listen=c.listen._replace(rec=v[f"core{i}.listen"]),
            )
            for i, c in enumerate(self._cores)
        ]
        if slots:
            self._shared_capture = [
                CaptureRing(*(v[f"core{i}.capture_{f}"] for f in CaptureRing._fields))
                for i in range(self.cores)
            ]
            self._cores = [c._replace(capture=r)
                           for c, r in zip(self._cores, self._shared_capture, strict=True)]
        self._statseg = seg

    # ---- the loop ----
    def now_us(self) -> int:
        return self._clock()

    def poll(self, now: int | None = None) -> int:
        """One pass of every core's loop; returns the frames received."""
        if self._closed:
            return 0
        now = self._clock() if now is None else int(now)
        n = 0
        for core in self._refs:
            n += _POLL.get(core)(core, now, _NO_ROWS, _NO_ROWS, _NO_ROWS, _NO_ROWOF,
                                 _NO_ROWS) >> 32
        if self._capture is not None:
            self._drain_capture()
        return n

    def _drain_capture(self) -> None:
        for core in self._cores:
            capture_drain(core.capture, self._capture, self._capture_match)

    def _poll_status(self, per_core) -> tuple[int, list | None]:
        """One pass of every core, reading socket readiness where ``per_core[i]`` (an object
        with ``rows``, ``ready``, ``sel``, ``rowof``, ``lrows`` and ``count``: fsdp.selectors'
        rows of core i, the arguments of fsdp.core.loop.poll_status) has rows:
        (frames received, [(rows object, how many of its rows are ready)] or None)."""
        if self._closed:
            return 0, None
        now = self._clock()
        n = 0
        hits = None
        for i, core in enumerate(self._refs):
            pc = per_core[i]
            if pc.count == 0:
                n += _POLL.get(core)(core, now, _NO_ROWS, _NO_ROWS, _NO_ROWS, _NO_ROWOF,
                                     _NO_ROWS) >> 32
                continue
            r = _POLL.get(core)(core, now, pc.rows, pc.ready, pc.sel, pc.rowof, pc.lrows)
            n += r >> 32
            k = r & 0xFFFFFFFF
            if k:
                if hits is None:
                    hits = [(pc, k)]
                else:
                    hits.append((pc, k))
        if self._capture is not None:
            self._drain_capture()
        return n, hits

    def next_deadline(self) -> int:
        """The earliest µs time a timer or the NIC needs a pass, or -1."""
        best = NO_DEADLINE
        for core in self._refs:
            d = next_deadline(core)
            if d != NO_DEADLINE and (best == NO_DEADLINE or d < best):
                best = d
        return best

    # ---- sockets (the glue between fsdp.sockapi and the engine's usercalls) ----
    def socket(self, family=None, type=None, proto=0):
        """A TCP socket on this stack, with the methods and errors of ``socket.socket``."""
        from fsdp.sockapi.socket import Socket

        if self._closed:
            raise OSError(errno.EBADF, "the stack is closed")
        return Socket(self, family, type, proto)

    def _make_engine(self) -> None:
        from fsdp.sockapi.fastcall import make_engine

        self._engine = make_engine(self._refs, self._clock, self._virtual_clock)
        freeze_long_lived_objects("usercalls")  # (the usercall entries it loaded)

    def _open_sockets(self) -> list:
        """The sockets of this stack that are alive and not yet released."""
        out = []
        for r in list(self._sockets.values()):
            s = r()
            if s is not None:
                out.append(s)
        return out

    def _default_sockopt(self, opt: int) -> int:
        from fsdp.tcp import usercalls as uc

        return int(uc.tcp_getopt(self._refs[0], -1, opt))

    def _check_bind(self, ip: int, port: int, reuseaddr: bool, reuseport: int, sock, *,
                    engine: bool = True) -> None:
        """EADDRINUSE unless ``sock`` (with these options) may have ``ip:port``: the sockets
        of this stack are checked here, the engine's listeners, connections and TIME-WAITs by
        the engine (``engine=False`` when listen() is about to ask it)."""
        from fsdp.tcp import usercalls as uc

        for other in self._open_sockets():
            if other is sock or other._closed or other._bound is None:
                continue
            oip, oport = other._bound
            if oport != port or (oip and ip and oip != ip):
                continue
            # Linux inet_bind_conflict (relax, reuseport_ok): two sockets share a port if both
            # set SO_REUSEADDR and the other one does not listen, or both set SO_REUSEPORT
            # (and have one owner: always so in one process), whatever their states; the
            # other's as it bound counts too (the bucket's fast path, sk_reuseport_match).
            if not ((reuseaddr and other._reuseaddr and other._lids is None)
                    or (reuseport and (other._reuseport or other._bound_reuseport))):
                raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        if not engine:
            return
        for core in self._refs:
            rc = uc.tcp_bind_check(core, ip, port, reuseaddr, reuseport)
            if rc < 0:
                raise OSError(-rc, os.strerror(-rc))

    def _ephemeral_port(self, lip: int, rip: int, rport: int, core: int = 0) -> int:
        from fsdp.tcp import usercalls as uc

        taken = {s._bound[1] for s in self._open_sockets() if s._bound is not None}
        for _ in range(64):
            port = int(uc.tcp_ephemeral_port(self._refs[core], lip, rip, rport))
            if port < 0:
                raise OSError(-port, os.strerror(-port))
            if port not in taken:
                return port
        raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))

    def _core_for_reply(self, lip: int, lport: int, rip: int, rport: int) -> int:
        """The core whose queue the NIC steers the peer's replies to (receive flow deliver)."""
        if self.cores == 1:
            return 0
        from fsdp.driver.toeplitz import RETA_SIZE, rss_hash_ipv4_l4

        h = int(rss_hash_ipv4_l4(self._port.rss_table, rip, lip, rport, lport))
        return int(self._port.reta[h & (RETA_SIZE - 1)])

    def _connect(self, lip: int, lport: int, rip: int, rport: int, tos: int = 0,
                 ttl: int = 0) -> tuple[int, int]:
        from fsdp.tcp import usercalls as uc

        if lport == 0:
            # spread active opens over the cores; with receive flow deliver the core picks a
            # port whose reply RSS steers back to it (fsdp.tcp.usercalls._port_steers_here)
            self._open_rr = (getattr(self, "_open_rr", -1) + 1) % self.cores
            lport = self._ephemeral_port(lip, rip, rport, self._open_rr)
        core = self._core_for_reply(lip, lport, rip, rport)
        cid = int(uc.tcp_connect(self._refs[core], lip, lport, rip, rport, self._clock(), tos,
                                 ttl))
        if cid < 0:
            raise OSError(-cid, os.strerror(-cid))
        return core, cid

    def _listen(self, ip: int, port: int, backlog: int, reuseaddr: bool,
                reuseport: int = 0) -> list[int]:
        """Listen spawn: the listener goes into every core's local listen table (only core 0's
        with ``listen_spawn=False``: the list then has one entry).  SO_REUSEPORT listeners of
        one port form a group in each core's table."""
        from fsdp.tcp import usercalls as uc

        lids: list[int] = []
        for core in self._refs if self._opts.listen_spawn else self._refs[:1]:
            lid = int(uc.tcp_listen(core, ip, port, backlog, reuseaddr, reuseport))
            if lid < 0:
                self._unlisten(lids)
                raise OSError(-lid, os.strerror(-lid))
            lids.append(lid)
        return lids

    def _unlisten(self, lids: list[int]) -> None:
        from fsdp.tcp import usercalls as uc

        now = self._clock()
        for core, lid in zip(self._refs, lids, strict=False):
            uc.tcp_unlisten(core, lid, now)

    def _accept(self, lids: list[int]):
        """The next connection any core's copy of a listener has ready: (core, cid, lip, lport,
        rip, rport), or None.  The cores take turns, so none starves the others."""
        n = len(lids)
        accept = self._engine.accept
        if n == 1:
            got = accept(0, lids[0])
            if got.__class__ is int:
                return None
            return (0, *got)
        start = self._accept_rr = (self._accept_rr + 1) % n
        for k in range(n):
            i = (start + k) % n
            got = accept(i, lids[i])
            if got.__class__ is not int:
                return (i, *got)
        return None

    def _conn_info(self, core: int, cid: int) -> dict:
        from fsdp.tcp import usercalls as uc

        out = np.zeros(uc.CI_SIZE, np.int64)
        uc.tcp_conn_info(self._refs[core], cid, out)
        return {
            "lip": int(out[uc.CI_LIP]), "lport": int(out[uc.CI_LPORT]),
            "rip": int(out[uc.CI_RIP]), "rport": int(out[uc.CI_RPORT]),
            "state": int(out[uc.CI_STATE]), "snd_q": int(out[uc.CI_SND_Q]),
            "rcv_q": int(out[uc.CI_RCV_Q]),
        }

    # ---- observability ----
    def stats(self) -> dict:
        """Counters summed over cores, plus ``per_core``: the list of each core's counters."""
        per_core = []
        total = dict.fromkeys(STAT_NAMES, 0)
        for core in self._cores:
            d = stats_dict(core.stats)
            d["pool_frames"] = int(core.pool.refcnt.shape[0])
            d["pool_free"] = int(pool_n_free(core.pool))
            per_core.append(d)
            for k, v in d.items():
                total[k] = total.get(k, 0) + v
        total["per_core"] = per_core
        return total

    def connections(self) -> list[dict]:
        """Connections and listeners of every core, like ``ss -tan``: local, remote, state,
        send/receive queue bytes, core."""
        from fsdp.tcp import usercalls as uc
        from fsdp.tcp.tcb import TCPS_NAMES

        rows = []
        for i, core in enumerate(self._refs):
            ids = np.zeros(core.tcb.hot.state.shape[0], np.int32)
            n = int(uc.tcp_conn_list(core, ids))
            for cid in ids[:n]:
                info = self._conn_info(i, int(cid))
                rows.append({
                    "local": f"{ipaddress.IPv4Address(info['lip'])}:{info['lport']}",
                    "remote": f"{ipaddress.IPv4Address(info['rip'])}:{info['rport']}",
                    "state": TCPS_NAMES[info["state"]],
                    "snd_q": info["snd_q"], "rcv_q": info["rcv_q"], "core": i,
                })
        return rows

    def neighbors(self) -> list[dict]:
        """The neighbour (ARP) caches of all cores."""
        out = []
        for i, core in enumerate(self._cores):
            t = core.arp
            for slot in np.nonzero(t.ip)[0]:
                out.append({
                    "core": i,
                    "ip": str(ipaddress.IPv4Address(int(t.ip[slot]))),
                    "mac": mac_to_str(int(t.mac[slot])),
                    "state": ARP_STATE_NAMES[int(t.state[slot])],
                    "queued": int(t.q_len[slot]),
                })
        return out

    def add_neighbor(self, ip: str, mac: str | int) -> None:
        """A static neighbour on every core (never aged, never changed by ARP)."""
        addr = int(ipaddress.IPv4Address(ip))
        m = _parse_mac(mac)
        for core in self._refs:
            if not arp_add_static(core, addr, m):
                raise OSError(f"neighbour table full on core {core.cfg[4]}")

    def audit(self) -> None:
        """Assert that no packet buffer leaked: every frame of every core is free or held by a
        known owner (a resolving neighbour's queue, the NIC, a datagram being reassembled).
        Raises AssertionError."""
        for i, core in enumerate(self._cores):
            err = pool_audit(core.pool)
            if err != 0:
                raise AssertionError(f"core {i}: pool audit failed with code {err}")
            owned = core.pool.refcnt.shape[0] - int(pool_n_free(core.pool))
            held = (int(arp_queued_frames(self._refs[i])) + self._nic_held_frames(i)
                    + int(core.var[V_LO_IN_COUNT])  # sent to itself, received next pass
                    + ipfrag_held_frames(core.frags))  # datagrams being reassembled
            if owned != held:
                raise AssertionError(
                    f"core {i}: {owned} frames owned but only {held} accounted for (leak)"
                )

    def _nic_held_frames(self, queue: int) -> int:
        """Pool frames a NIC backend still holds (zero-copy backends keep frames until the
        hardware completes them; the sim NIC copies, so it holds none)."""
        held = getattr(self._port, "held_frames", None)
        return int(held(queue)) if held is not None else 0

    # ---- ICMP echo ----
    def ping(self, dst: str, count: int = 1, *, timeout: float = 1.0, size: int = 56,
             interval: float = 0.0) -> list[float | None]:
        """Send ``count`` echo requests to ``dst`` and wait (keeping every stack of the process
        polled) for their replies; returns each round-trip time in seconds, None if lost."""
        addr = int(ipaddress.IPv4Address(dst))
        core = self._refs[0]
        ident = self._ping_ident
        rtts: list[float | None] = []
        for seq in range(count):
            seen = int(core.var[V_PING_COUNT])
            if not icmp_send_echo(core, addr, ident, seq, size, self._clock()):
                raise OSError("cannot send echo request (message too long or no buffers)")
            t0 = self._clock()  # after the call: a first call's JIT compile is not network time
            self.poll(t0)  # transmit
            deadline = max(t0, self._clock()) + int(timeout * 1e6)
            rtt = None
            while rtt is None and self._clock() < deadline:
                poll_all_stacks()
                rtt = self._find_reply(core, seen, addr, ident, seq, t0)
                if rtt is None:
                    self._idle_wait()
            rtts.append(rtt)
            if interval > 0 and seq + 1 < count:
                end = self._clock() + int(interval * 1e6)
                while self._clock() < end:
                    poll_all_stacks()
                    self._idle_wait()
        return rtts

    def _idle_wait(self) -> None:
        time.sleep(0)

    @staticmethod
    def _find_reply(core, seen, addr, ident, seq, t0):
        count = int(core.var[V_PING_COUNT])
        log = core.echo_log
        for k in range(max(seen, count - ECHO_LOG_SIZE), count):
            i = k % ECHO_LOG_SIZE
            if log.src[i] == addr and log.ident[i] == ident and log.seq[i] == seq:
                return (int(log.t_us[i]) - t0) / 1e6
        return None

    # ---- capture ----
    def capture(self, path, *, queue: int | None = None, snaplen: int = 2048,
                slots: int = 4096, host=(), port=(), proto=()) -> None:
        """Start writing the frames this stack receives and sends to a pcap file: every queue
        (the whole port), or only NIC queue ``queue`` (= core ``queue``).  ``host``, ``port``
        and ``proto`` (an IPv4 address, a port, one of tcp/udp/icmp/arp, or a list of them)
        keep only the frames tcpdump's ``host``/``port``/protocol primitives would: any value
        of one, all of those given (``fsdp.driver.pcap.CaptureFilter``, as ``fsdp capture``)."""
        if queue is not None and not 0 <= queue < self.cores:
            raise ValueError(f"queue must be in [0, {self.cores}), not {queue}")

        def values(v):
            return [v] if isinstance(v, (str, int)) else list(v)

        match = CaptureFilter(values(host), values(port), values(proto))
        for ring in self._shared_capture or ():
            owner = int(ring.meta[CAP_OWNER])
            if owner and _pid_alive(owner):
                raise OSError(errno.EBUSY, f"this stack is being captured by fsdp capture "
                                           f"(pid {owner})")
        self.stop_capture()
        self._capture = PcapWriter(path, snaplen=snaplen)
        self._capture_match = match
        for i, core in enumerate(self._cores):
            if queue is not None and i != queue:
                continue
            ring = capture_ring_create(slots=slots, snaplen=snaplen)
            self._cores[i] = core._replace(capture=ring)
            self._refs[i] = CoreRef(self._cores[i])
            self._cores[i].cfg[CFG_CAPTURE] = 1
        if self._engine is not None:
            self._make_engine()  # (it calls the usercall compiled for each CoreRef's type)

    def stop_capture(self) -> None:
        self._stop_capture(restore=True)

    def _stop_capture(self, restore: bool) -> None:
        if self._capture is None:
            return
        for core in self._cores:
            capture_drain(core.capture, self._capture, self._capture_match)
            core.cfg[CFG_CAPTURE] = 0
        self._capture.close()
        self._capture = None
        if restore and self._shared_capture is not None:  # back to the shared rings
            for i, ring in enumerate(self._shared_capture):
                self._cores[i] = self._cores[i]._replace(capture=ring)
                self._refs[i] = CoreRef(self._cores[i])
            if self._engine is not None:
                self._make_engine()

    # ---- lifetime ----
    @property
    def port(self):
        """The NIC port (sim: fault injection, flow rules, RSS settings)."""
        return self._port

    def close(self) -> None:
        if self._closed:
            return
        self._stop_capture(restore=False)
        self._closed = True
        _live_stacks.discard(self)
        _live_changed()
        if self._statseg is not None:
            self._statseg.close()
        if self._owns_port:
            self._port.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.cores} core(s)"
        return f"<fsdp.Stack {self.ip}/{self.interface.network.prefixlen} on {self.nic}, {state}>"
