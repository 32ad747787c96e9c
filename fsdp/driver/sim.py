"""The ``sim`` NIC: a simulated switch in shared memory that stacks attach ports to.

A *wire* named NAME is one file, ``/dev/shm/fsdp/NAME`` (or ``$TMPDIR/fsdp-<uid>/NAME`` when
/dev/shm is missing or too small; ``$FSDP_SIM_DIR`` overrides both), holding the whole switch
(layout: :mod:`fsdp.driver.sim_layout`).  Any process maps it by name, attaches a *port* with N
queue pairs and a MAC, and hands each queue's :class:`SimQueue` to the core that polls it (the
data path is :mod:`fsdp.driver.sim_dp`).  :meth:`SimWire.private` makes an in-process wire with no
file, for tests and the harness.

Control operations (attach, detach, RSS, Flow Director, faults, offloads) run under the wire's
lock (``flock`` on the file plus a thread lock) and may come from any process; the data path
never takes a lock.  A rule or key change becomes visible to senders within a frame or two (like
a NIC's register writes; a frame sent during an update may still use the old setting).

Lifecycle: the first attacher creates the file with its geometry (``max_ports``, ``max_queues``,
``ring_slots``, ``fdir_size``); later attachers read it from the header.  Each port records its
owner's pid; a port whose owner died is reclaimed by the next attach.  The file is unlinked when
the last attached port on the wire detaches.  Within a process, every attach of a name shares one
mapping.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import ipaddress
import mmap
import os
import re
import tempfile
import threading
import weakref
from contextlib import contextmanager

import numpy as np

from fsdp.atomic import SYS_FUTEX
from fsdp.driver.sim_dp import (
    QS_DL_COUNT,
    QS_DL_FREE_TOP,
    QS_FAULT_GEN,
    QS_PORT_GEN,
    SimGeo,
    SimQueue,
    fdir_bucket,
    fdir_key,
    sim_bell_count,
    sim_next_event,
    sim_priv_layout,
    sim_redirect,
    sim_rx_burst,
    sim_tx_burst,
)
from fsdp.driver.sim_layout import (
    BELL_SEQ,
    BELL_SLEEPERS,
    BELL_STRIDE,
    DEFAULT_FDIR_SIZE,
    DEFAULT_MAX_PORTS,
    DEFAULT_MAX_QUEUES,
    DEFAULT_RING_SLOTS,
    FDIR_KEY_ADDR,
    FDIR_KEY_PORTS,
    FDIR_MAX_LOAD_DEN,
    FDIR_MAX_LOAD_NUM,
    FDIR_QUEUE,
    FLT_CE_MARK,
    FLT_CORRUPT,
    FLT_DELAY_US,
    FLT_DROP,
    FLT_DUP,
    FLT_GEN,
    FLT_JITTER_US,
    FLT_NF,
    FLT_ON,
    FLT_PROB_ONE,
    FLT_RATE_BPS,
    FLT_REORDER,
    FLT_REORDER_US,
    FLT_SEED,
    HDR_FDIR_SIZE,
    HDR_MAGIC,
    HDR_MAX_PORTS,
    HDR_MAX_QUEUES,
    HDR_N,
    HDR_N_ATTACHED,
    HDR_PORT_GEN,
    HDR_READY,
    HDR_RING_SLOTS,
    HDR_SLOT_SIZE,
    HDR_TOTAL_SIZE,
    HDR_VERSION,
    PORT_ATTACHED,
    PORT_FDIR_COUNT,
    PORT_FREE,
    PORT_MAC,
    PORT_N_QUEUES,
    PORT_PID,
    PORT_PROMISC,
    PORT_RX_CSUM,
    PORT_STATE,
    PORT_TX_CSUM,
    RING_CTRL_STRIDE,
    RING_HEAD,
    RING_TAIL,
    SIM_MAGIC,
    SIM_VERSION,
    SIMQ_STAT_N,
    SIMQ_STAT_NAMES,
    SLOT_SIZE,
    STAT_STRIDE,
    check_geometry,
    ctl_offset,
    map_sections,
    wire_layout,
)
from fsdp.driver.toeplitz import (
    DEFAULT_RSS_KEY,
    RETA_SIZE,
    RSS_KEY_SIZE,
    default_reta,
    toeplitz_table,
)
from fsdp.pool.pool import (
    AUDIT_OK,
    HEADROOM,
    MAX_FRAME_LEN,
    Pool,
    frame_alloc_burst,
    frame_free_burst,
    pool_audit,
    pool_create,
)

__all__ = [
    "SimWire",
    "SimPort",
    "SimQueue",
    "join_port",
    "sim_rx_burst",
    "sim_tx_burst",
    "sim_next_event",
    "sim_redirect",
]

SIM_DIR_ENV = "FSDP_SIM_DIR"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux value; Python < 3.13 lacks it
_MAC_GROUP_BIT = 0x010000000000

_REGISTRY: dict[str, SimWire] = {}
_REGISTRY_LOCK = threading.RLock()
_OPEN_PORTS: weakref.WeakSet = weakref.WeakSet()


class _WireGone(Exception):
    """The named wire's file was unlinked under us (its last port left): open it again."""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"bad sim wire name {name!r}: use 1-64 characters from A-Z a-z 0-9 _ . - "
            "(not starting with . or -)"
        )


def _sim_dirs() -> list[str]:
    env = os.environ.get(SIM_DIR_ENV)
    if env:
        return [env]
    dirs = []
    if os.path.isdir("/dev/shm"):
        dirs.append("/dev/shm/fsdp")
    dirs.append(os.path.join(tempfile.gettempdir(), f"fsdp-{os.getuid()}"))
    return dirs


def shm_dirs() -> list[str]:
    """The directories fsdp keeps shared-memory files in (sim wires, stats segments), in order
    of preference: ``$FSDP_SIM_DIR``, else /dev/shm/fsdp, then a per-user temporary one."""
    return _sim_dirs()


def shm_path(name: str, size: int) -> str:
    """Where to create a shared-memory file of ``size`` bytes (the first directory with room)."""
    return _new_path(name, size)


def _existing_path(name: str) -> str | None:
    for d in _sim_dirs():
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return None


def _usable_dir(d: str) -> bool:
    try:
        os.mkdir(d, 0o700)
        if d.startswith("/dev/shm/"):
            os.chmod(d, 0o1777)  # shared by every user, like /dev/shm itself
    except FileExistsError:
        pass
    except OSError:
        return False
    return os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK)


def _new_path(name: str, size: int) -> str:
    """Where to create a wire: the first directory with room for all of it, else the first one."""
    usable = [d for d in _sim_dirs() if _usable_dir(d)]
    if not usable:
        raise OSError(errno.EACCES, f"no writable directory for sim wire {name!r}: {_sim_dirs()}")
    for d in usable:
        st = os.statvfs(d)
        if st.f_bavail * st.f_frsize >= size:
            return os.path.join(d, name)
    return os.path.join(usable[0], name)


def _as_ip(v, what: str) -> int:
    if isinstance(v, str):
        try:
            return int(ipaddress.IPv4Address(v))
        except ValueError:
            raise ValueError(f"{what}: {v!r} is not an IPv4 address") from None
    if isinstance(v, ipaddress.IPv4Address):
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFFFFFF:
        return v
    raise ValueError(f"{what}: expected an IPv4 address (str or int), not {v!r}")


def _as_int(v, what: str, lo: int, hi: int) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= int(v) <= hi:
        raise ValueError(f"{what} must be an int in [{lo}, {hi}], not {v!r}")
    return int(v)


def _as_prob(v, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"{what} must be a probability in [0, 1], not {v!r}")
    return int(round(float(v) * FLT_PROB_ONE))


def _as_mac(mac) -> int:
    if isinstance(mac, str):
        from fsdp.wire.ethernet import mac_to_int

        mac = mac_to_int(mac)
    if not isinstance(mac, (int, np.integer)) or isinstance(mac, bool):
        raise ValueError(f"mac must be a 48-bit int (or 'xx:xx:..' string), not {mac!r}")
    mac = int(mac)
    if not 0 < mac <= 0xFFFFFFFFFFFF:
        raise ValueError(f"mac must be a nonzero 48-bit value, not {mac:#x}")
    if mac & _MAC_GROUP_BIT:
        raise ValueError(
            f"mac {mac:012x} is a group (multicast) address; a port needs a unicast MAC"
        )
    return mac


class SimWire:
    """One process's mapping of a sim wire (named and shared, or private)."""

    def __init__(self, name: str, path: str | None, buf, fd: int | None, geometry: tuple):
        self.name = name
        self.path = path
        self._buf = buf
        self._fd = fd
        self.max_ports, self.max_queues, self.ring_slots, self.fdir_size = geometry
        self.layout = wire_layout(*geometry)
        self.views = map_sections(buf, self.layout)
        self.header = self.views["header"]
        self._tlock = threading.RLock()
        self._local_ports: set[int] = set()  # ports this process owns (attached here)
        self._refs = 0  # SimPort handles (owned or joined) alive in this process
        self._handles: weakref.WeakSet = weakref.WeakSet()
        self._closed = False
        self._pid = os.getpid()  # a mapping (and flock fd) inherited through fork is not reused

    def __repr__(self) -> str:
        where = self.path or "private"
        return f"<SimWire {self.name} {where} ports={int(self.header[HDR_N_ATTACHED])}>"

    def close(self) -> None:
        """Close every port handle this process still has on the wire; no new attaches.

        Idempotent.  A named wire's file goes away when the last port in the system detaches.
        """
        for port in list(self._handles):
            port.close()
        with _REGISTRY_LOCK:
            self._closed = True
            if self._fd is not None and self._refs == 0:
                if _REGISTRY.get(self.name) is self:
                    del _REGISTRY[self.name]
                os.close(self._fd)
                self._fd = None

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ opening

    @classmethod
    def private(
        cls,
        max_ports: int = 4,
        max_queues: int = 4,
        ring_slots: int = DEFAULT_RING_SLOTS,
        fdir_size: int = 1024,
        *,
        name: str = "private",
    ) -> SimWire:
        """An in-process wire in an anonymous shared mapping: no file, no other processes.

        ``name`` only labels it (reprs, ``port.uri``); it is not registered or shared.
        """
        check_geometry(max_ports, max_queues, ring_slots, fdir_size)
        geometry = (max_ports, max_queues, ring_slots, fdir_size)
        total = wire_layout(*geometry)["total"]
        buf = mmap.mmap(-1, total, flags=mmap.MAP_SHARED | _MAP_NORESERVE)
        wire = cls(str(name), None, buf, None, geometry)
        wire._init_header(total)
        return wire

    @classmethod
    def open(
        cls,
        name: str,
        *,
        max_ports: int | None = None,
        max_queues: int | None = None,
        ring_slots: int | None = None,
        fdir_size: int | None = None,
    ) -> SimWire:
        """Map the named wire (one mapping per process), creating it if it does not exist.

        Geometry left as None is read from an existing wire (or defaults for a new one); a value
        that differs from a wire in use raises ValueError.
        """
        _check_name(name)
        requested = (max_ports, max_queues, ring_slots, fdir_size)
        with _REGISTRY_LOCK:
            wire = _REGISTRY.get(name)
            if wire is None or wire._pid != os.getpid():
                wire = cls._open_file(name, requested)
                _REGISTRY[name] = wire
            else:
                wire._check_requested(requested)
            return wire

    @classmethod
    def _open_file(cls, name: str, requested: tuple) -> SimWire:
        for _ in range(20):
            path = _existing_path(name)
            if path is None:
                filled = cls._fill_geometry(requested)
                path = _new_path(name, wire_layout(*filled)["total"])
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                st = os.fstat(fd)
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                if st.st_nlink == 0 or current is None or current.st_ino != st.st_ino:
                    os.close(fd)  # lost a race with the last detach's unlink: start over
                    continue
                wire = cls._map_or_init(name, path, fd, requested, st.st_size)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BaseException:
                # Unlock first: a mapping made before the error (a geometry that differs from
                # the wire in use) holds a duplicate of fd until it is collected, and with it
                # the lock, which the caller's next open (a retry) would wait on forever.
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                raise
            if wire is not None:
                return wire
            os.close(fd)  # an idle wire with another geometry was removed: create ours
        raise OSError(errno.EAGAIN, f"could not open sim wire {name!r} (it keeps changing)")

    @staticmethod
    def _fill_geometry(requested: tuple) -> tuple:
        defaults = (DEFAULT_MAX_PORTS, DEFAULT_MAX_QUEUES, DEFAULT_RING_SLOTS, DEFAULT_FDIR_SIZE)
        filled = tuple(d if r is None else r for r, d in zip(requested, defaults, strict=True))
        check_geometry(*filled)
        return filled

    @classmethod
    def _map_or_init(cls, name, path, fd, requested, size) -> SimWire | None:
        hdr_bytes = HDR_N * 8
        if size >= hdr_bytes:
            hdr = np.frombuffer(os.pread(fd, hdr_bytes, 0), dtype=np.int64)
            if hdr[HDR_MAGIC] == SIM_MAGIC and hdr[HDR_READY] == 1:
                if hdr[HDR_VERSION] != SIM_VERSION:
                    raise OSError(
                        errno.EPROTO,
                        f"sim wire {name!r} at {path} has layout version {hdr[HDR_VERSION]}, "
                        f"this fsdp uses {SIM_VERSION}",
                    )
                geometry = tuple(
                    int(hdr[i])
                    for i in (HDR_MAX_PORTS, HDR_MAX_QUEUES, HDR_RING_SLOTS, HDR_FDIR_SIZE)
                )
                total = int(hdr[HDR_TOTAL_SIZE])
                if size < total or hdr[HDR_SLOT_SIZE] != SLOT_SIZE:
                    raise OSError(errno.EPROTO, f"sim wire {name!r} at {path} is damaged")
                buf = mmap.mmap(fd, total, flags=mmap.MAP_SHARED)
                wire = cls(name, path, buf, fd, geometry)
                wire._reclaim_stale()
                pairs = zip(requested, geometry, strict=True)
                mismatch = any(r is not None and r != g for r, g in pairs)
                if mismatch:
                    if wire.header[HDR_N_ATTACHED] == 0:
                        os.unlink(path)  # nobody uses it: make a fresh one with the new geometry
                        return None
                    wire._check_requested(requested)
                return wire
        # New (or never finished) wire: initialize it while holding the lock.
        geometry = cls._fill_geometry(requested)
        total = wire_layout(*geometry)["total"]
        os.ftruncate(fd, 0)
        os.ftruncate(fd, total)  # sparse: pages appear as rings carry traffic
        buf = mmap.mmap(fd, total, flags=mmap.MAP_SHARED)
        wire = cls(name, path, buf, fd, geometry)
        wire._init_header(total)
        return wire

    def _init_header(self, total: int) -> None:
        h = self.header
        h[HDR_MAGIC] = SIM_MAGIC
        h[HDR_VERSION] = SIM_VERSION
        h[HDR_MAX_PORTS] = self.max_ports
        h[HDR_MAX_QUEUES] = self.max_queues
        h[HDR_RING_SLOTS] = self.ring_slots
        h[HDR_SLOT_SIZE] = SLOT_SIZE
        h[HDR_FDIR_SIZE] = self.fdir_size
        h[HDR_TOTAL_SIZE] = total
        h[HDR_N_ATTACHED] = 0
        h[HDR_PORT_GEN] = 1
        h[HDR_READY] = 1

    def _check_requested(self, requested: tuple) -> None:
        names = ("max_ports", "max_queues", "ring_slots", "fdir_size")
        have = (self.max_ports, self.max_queues, self.ring_slots, self.fdir_size)
        for n, r, g in zip(names, requested, have, strict=True):
            if r is not None and r != g:
                raise ValueError(f"sim wire {self.name!r} is in use with {n}={g}, not {r}")

    # ------------------------------------------------------------------ locking and lifecycle

    @property
    def geometry(self) -> dict:
        return {
            "max_ports": self.max_ports,
            "max_queues": self.max_queues,
            "ring_slots": self.ring_slots,
            "fdir_size": self.fdir_size,
            "bytes": self.layout["total"],
        }

    @contextmanager
    def locked(self):
        """The control-plane lock: threads of this process and, for a named wire, all processes."""
        with self._tlock:
            if self._fd is None:
                yield
                return
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _reclaim_stale(self) -> None:
        """Free ports whose owner process is gone (call under the lock)."""
        ports = self.views["ports"]
        me = os.getpid()
        for p in range(self.max_ports):
            if ports[p, PORT_STATE] != PORT_ATTACHED:
                continue
            pid = int(ports[p, PORT_PID])
            stale = not _pid_alive(pid) or (pid == me and p not in self._local_ports)
            if stale and self._fd is not None:
                ports[p, PORT_STATE] = PORT_FREE
                ports[p, PORT_PID] = 0
                self.header[HDR_N_ATTACHED] -= 1
                self.header[HDR_PORT_GEN] += 1

    def _release_ref(self) -> None:
        with _REGISTRY_LOCK:
            self._refs -= 1
            if self._refs > 0 or self._fd is None:
                return
            if _REGISTRY.get(self.name) is self:
                del _REGISTRY[self.name]
            self._closed = True
            os.close(self._fd)
            self._fd = None
            # The mapping goes when the last numpy view (and SimQueue) referencing it is freed.

    def _discard_if_unused(self) -> None:
        """Drop a named wire opened for an attach that failed (no handles were made); a file
        that no port uses is removed, as after the last detach."""
        with _REGISTRY_LOCK:
            if self._refs != 0 or self._fd is None:
                return
            with self.locked():
                if self.header[HDR_N_ATTACHED] <= 0:
                    self._unlink_if_ours()
            self._refs = 1
            self._release_ref()

    def _unlink_if_ours(self) -> None:
        try:
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ ports

    def attach(
        self,
        n_queues: int,
        mac,
        *,
        promisc: bool = False,
        rx_csum: bool = False,
        tx_csum: bool = False,
        rss_key: bytes | None = None,
        reta=None,
        delay_slots: int = 1024,
        pool_frames: int = 256,
    ) -> SimPort:
        """Attach a new port with ``n_queues`` rx/tx queue pairs and unicast ``mac``."""
        if self._closed:
            raise ValueError(f"sim wire {self.name!r} is closed")
        n_queues = _as_int(n_queues, "n_queues", 1, self.max_queues)
        mac = _as_mac(mac)
        delay_slots = _as_int(delay_slots, "delay_slots", 1, 1 << 20)
        pool_frames = _as_int(pool_frames, "pool_frames", 1, 1 << 24)
        key = DEFAULT_RSS_KEY if rss_key is None else self._check_key(rss_key)
        reta_arr = default_reta(n_queues) if reta is None else self._check_reta(reta, n_queues)
        v = self.views
        ports = v["ports"]
        with _REGISTRY_LOCK, self.locked():
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
                raise _WireGone()
            self._reclaim_stale()
            for p in range(self.max_ports):
                if ports[p, PORT_STATE] == PORT_ATTACHED and ports[p, PORT_MAC] == mac:
                    raise OSError(
                        errno.EADDRINUSE, f"MAC {mac:012x} is already on sim wire {self.name!r}"
                    )
            free = [p for p in range(self.max_ports) if ports[p, PORT_STATE] != PORT_ATTACHED]
            if not free:
                raise OSError(
                    errno.ENOSPC,
                    f"sim wire {self.name!r} has no free port (max_ports={self.max_ports})",
                )
            p = free[0]
            ports[p, :] = 0
            v["stats"][p] = 0
            v["fdir"][p] = 0
            gen = int(v["faults"][p, FLT_GEN])
            v["faults"][p] = 0
            v["faults"][p, FLT_GEN] = gen + 1
            v["rss_key"][p] = 0
            v["rss_key"][p, : len(key)] = np.frombuffer(key, np.uint8)
            v["rss_table"][p] = toeplitz_table(key)
            v["reta"][p] = reta_arr
            if v["listen_map"][p].any():  # a previous owner's listeners are not ours
                v["listen_map"][p] = 0
            v["bells"][p] = 0  # nor its sleepers (senders would ring for nobody)
            # Frames left in rings toward this slot by a previous owner are not ours: consume
            # them (head := tail).  Only this port will ever consume these rings.
            mq, mp = self.max_queues, self.max_ports
            ctrl = v["ring_ctrl"].reshape(mp * mq, mp, mq, RING_CTRL_STRIDE)
            ctrl[:, p, :, RING_HEAD] = ctrl[:, p, :, RING_TAIL]
            ports[p, PORT_PID] = os.getpid()
            ports[p, PORT_MAC] = mac
            ports[p, PORT_N_QUEUES] = n_queues
            ports[p, PORT_PROMISC] = int(bool(promisc))
            ports[p, PORT_RX_CSUM] = int(bool(rx_csum))
            ports[p, PORT_TX_CSUM] = int(bool(tx_csum))
            ports[p, PORT_STATE] = PORT_ATTACHED
            self.header[HDR_N_ATTACHED] += 1
            self.header[HDR_PORT_GEN] += 1
            self._local_ports.add(p)
            self._refs += 1
        port = SimPort(self, p, owner=True, delay_slots=delay_slots, pool_frames=pool_frames)
        _OPEN_PORTS.add(port)
        self._handles.add(port)
        return port

    def join(self, port_id: int, *, delay_slots: int = 1024, pool_frames: int = 256) -> SimPort:
        """A handle on an existing port (e.g. one a parent process attached) for its cores.

        The handle does not own the port: closing it leaves the port attached.
        """
        port_id = _as_int(port_id, "port_id", 0, self.max_ports - 1)
        if self._closed:
            raise ValueError(f"sim wire {self.name!r} is closed")
        with _REGISTRY_LOCK, self.locked():
            if self.views["ports"][port_id, PORT_STATE] != PORT_ATTACHED:
                raise ValueError(f"port {port_id} of sim wire {self.name!r} is not attached")
            self._refs += 1
        port = SimPort(self, port_id, owner=False, delay_slots=delay_slots, pool_frames=pool_frames)
        self._handles.add(port)
        return port

    def _detach(self, p: int) -> None:
        ports = self.views["ports"]
        with _REGISTRY_LOCK, self.locked():
            if ports[p, PORT_STATE] == PORT_ATTACHED and p in self._local_ports:
                ports[p, PORT_STATE] = PORT_FREE
                ports[p, PORT_PID] = 0
                self.header[HDR_N_ATTACHED] -= 1
                self.header[HDR_PORT_GEN] += 1
            self._local_ports.discard(p)
            if self._fd is not None and self.header[HDR_N_ATTACHED] <= 0:
                self._unlink_if_ours()

    @staticmethod
    def _check_key(key) -> bytes:
        if not isinstance(key, (bytes, bytearray, memoryview)) or len(bytes(key)) != RSS_KEY_SIZE:
            raise ValueError(f"rss key must be {RSS_KEY_SIZE} bytes")
        return bytes(key)

    @staticmethod
    def _check_reta(reta, n_queues: int) -> np.ndarray:
        arr = np.asarray(reta)
        if arr.shape != (RETA_SIZE,) or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"reta must be {RETA_SIZE} ints")
        if arr.min() < 0 or arr.max() >= n_queues:
            raise ValueError(f"reta entries must be queue numbers in [0, {n_queues})")
        return arr.astype(np.int32)


class SimPort:
    """A port on a sim wire: ``n_queues`` queue pairs, a MAC, RSS, Flow Director, faults."""

    def __init__(
        self, wire: SimWire, port_id: int, *, owner: bool, delay_slots: int, pool_frames: int
    ):
        self.wire = wire
        self.port_id = port_id
        self._owner = owner
        row = wire.views["ports"][port_id]
        self.mac = int(row[PORT_MAC])
        self.n_queues = int(row[PORT_N_QUEUES])
        self.promisc = bool(row[PORT_PROMISC])
        self._delay_slots = delay_slots
        self._pool_frames = pool_frames
        self._queues: list[SimQueue | None] = [None] * self.n_queues
        self._pool: Pool | None = None
        self._ids = np.zeros(64, np.int32)
        self._closed = False
        self._pid = os.getpid()  # a forked child must not detach its parent's port
        self._relays: dict[int, BellRelay] = {}
        self.uri = f"sim:{wire.name}"

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<SimPort {self.wire.name}:{self.port_id} mac={self.mac:012x} "
            f"queues={self.n_queues} {state}>"
        )

    def __enter__(self) -> SimPort:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.wire.name

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self!r} is closed")

    # ------------------------------------------------------------------ data path handles

    def queue(self, i: int) -> SimQueue:
        """Queue ``i``'s :class:`SimQueue`: one object per queue and process, for one core."""
        self._check_open()
        i = _as_int(i, "queue", 0, self.n_queues - 1)
        q = self._queues[i]
        if q is None:
            q = self._queues[i] = self._make_queue(i)
        return q

    def _make_queue(self, i: int) -> SimQueue:
        wire = self.wire
        lay = wire.layout
        mp, mq, cap = wire.max_ports, wire.max_queues, self._delay_slots
        offs, words = sim_priv_layout(mp, mq, cap)
        geo = SimGeo(
            port=self.port_id,
            queue=i,
            max_ports=mp,
            max_queues=mq,
            ring_slots=wire.ring_slots,
            fdir_size=wire.fdir_size,
            dl_cap=cap,
            c_ports=ctl_offset(lay, "ports"),
            c_faults=ctl_offset(lay, "faults"),
            c_reta=ctl_offset(lay, "reta"),
            c_stats=ctl_offset(lay, "stats") + (self.port_id * mq + i) * STAT_STRIDE,
            c_fdir=ctl_offset(lay, "fdir"),
            c_ring=ctl_offset(lay, "ring_ctrl"),
            c_bells=ctl_offset(lay, "bells"),
            **offs,
        )
        priv = np.zeros(words, np.int64)
        priv[QS_PORT_GEN] = -1
        priv[QS_FAULT_GEN] = -1
        priv[QS_DL_FREE_TOP] = cap
        priv[offs["p_dl_free"] : offs["p_dl_free"] + cap] = np.arange(cap)
        priv[offs["p_dl_corrupt"] : offs["p_dl_corrupt"] + cap] = -1
        v = wire.views
        return SimQueue(
            geo=geo,
            ctl=v["ctl"],
            rss=v["rss_table"],
            ring=v["ring_data"],
            priv=priv,
            dl=np.zeros(cap * SLOT_SIZE, np.uint8),
        )

    @property
    def pool(self) -> Pool:
        """The port's own small pool, used by :meth:`inject` and :meth:`drain`."""
        if self._pool is None:
            self._pool = pool_create(self._pool_frames)
        return self._pool

    # ------------------------------------------------------------------ configuration

    @property
    def capabilities(self) -> dict:
        return {
            "backend": "sim",
            "rss": True,
            "arp_to_all_queues": True,  # ARP and broadcast frames reach every rx queue
            "rss_hash": "toeplitz",
            "rss_key_size": RSS_KEY_SIZE,
            "reta_size": RETA_SIZE,
            "flow_director": True,
            "flow_director_size": self.wire.fdir_size,
            "rx_csum": True,
            "tx_csum": True,
            "fault_injection": True,
            "promisc": True,
            "multi_process": self.wire.path is not None,
            "max_queues": self.wire.max_queues,
            "max_frame_len": MAX_FRAME_LEN,
        }

    @property
    def rss_key(self) -> bytes:
        return bytes(self.wire.views["rss_key"][self.port_id, :RSS_KEY_SIZE])

    @property
    def reta(self) -> np.ndarray:
        return self.wire.views["reta"][self.port_id].copy()

    def steering_views(self) -> tuple[np.ndarray, np.ndarray]:
        """Live views of the port's Toeplitz table and redirection table (what ``set_rss``
        changes), for receive flow deliver in the stack's cores."""
        v = self.wire.views
        return v["rss_table"][self.port_id], v["reta"][self.port_id]

    @property
    def listen_map(self) -> np.ndarray:
        """int64[65536], live: bit q of entry P is set while queue q's core has a listener on
        TCP port P.  Every core of every process on the port sees it; a core that gets a
        segment it has no flow or listener for hands it to one that listens (listen spawn's
        global fallback)."""
        return self.wire.views["listen_map"][self.port_id]

    @property
    def rss_table(self) -> np.ndarray:
        """A copy of the port's Toeplitz table (for ``rss_hash_ipv4_l4``), as the NIC hashes."""
        return self.wire.views["rss_table"][self.port_id].copy()

    def set_rss(self, key: bytes | None = None, reta=None) -> None:
        """Replace the RSS key (40 bytes) and/or the redirection table (128 queue numbers)."""
        self._check_open()
        key = None if key is None else SimWire._check_key(key)
        reta_arr = None if reta is None else SimWire._check_reta(reta, self.n_queues)
        v = self.wire.views
        with self.wire.locked():
            if key is not None:
                v["rss_table"][self.port_id] = toeplitz_table(key)
                v["rss_key"][self.port_id, :RSS_KEY_SIZE] = np.frombuffer(key, np.uint8)
            if reta_arr is not None:
                v["reta"][self.port_id] = reta_arr

    def _rule_key(self, src_ip, dst_ip, src_port, dst_port, proto) -> tuple[int, int]:
        s = _as_ip(src_ip, "src_ip")
        d = _as_ip(dst_ip, "dst_ip")
        sp = _as_int(src_port, "src_port", 0, 0xFFFF)
        dp = _as_int(dst_port, "dst_port", 0, 0xFFFF)
        pr = _as_int(proto, "proto", 0, 0xFF)
        k_addr, k_ports = fdir_key(s, d, sp, dp, pr)
        return int(k_addr), int(k_ports)

    def _rule_find(self, tab, k_addr, k_ports) -> tuple[int, bool]:
        """(slot, found): the key's slot, or the empty slot where it would go."""
        mask = tab.shape[0] - 1
        b = int(fdir_bucket(k_addr, k_ports, mask))
        for _ in range(tab.shape[0]):
            kp = int(tab[b, FDIR_KEY_PORTS])
            if kp == 0:
                return b, False
            if kp == k_ports and int(tab[b, FDIR_KEY_ADDR]) == k_addr:
                return b, True
            b = (b + 1) & mask
        return -1, False

    def add_flow_rule(
        self, src_ip, dst_ip, src_port: int, dst_port: int, proto: int, queue: int
    ) -> bool:
        """Steer received frames with exactly this (src ip, dst ip, src port, dst port, proto) to
        ``queue``, overriding RSS.  Ports are 0 for protocols without them.  Replaces an
        existing rule for the same tuple; False when the table is full (3/4 of fdir_size)."""
        self._check_open()
        k_addr, k_ports = self._rule_key(src_ip, dst_ip, src_port, dst_port, proto)
        queue = _as_int(queue, "queue", 0, self.n_queues - 1)
        tab = self.wire.views["fdir"][self.port_id]
        ports = self.wire.views["ports"]
        with self.wire.locked():
            slot, found = self._rule_find(tab, k_addr, k_ports)
            if found:
                tab[slot, FDIR_QUEUE] = queue
                return True
            limit = tab.shape[0] * FDIR_MAX_LOAD_NUM // FDIR_MAX_LOAD_DEN
            if slot < 0 or ports[self.port_id, PORT_FDIR_COUNT] >= limit:
                return False
            tab[slot, FDIR_KEY_ADDR] = k_addr
            tab[slot, FDIR_QUEUE] = queue
            tab[slot, FDIR_KEY_PORTS] = k_ports  # written last: the entry becomes visible
            ports[self.port_id, PORT_FDIR_COUNT] += 1
            return True

    def del_flow_rule(self, src_ip, dst_ip, src_port: int, dst_port: int, proto: int) -> bool:
        """Remove a rule; False if there was none."""
        self._check_open()
        k_addr, k_ports = self._rule_key(src_ip, dst_ip, src_port, dst_port, proto)
        tab = self.wire.views["fdir"][self.port_id]
        ports = self.wire.views["ports"]
        mask = tab.shape[0] - 1
        with self.wire.locked():
            i, found = self._rule_find(tab, k_addr, k_ports)
            if not found:
                return False
            # Backward-shift deletion keeps every probe sequence unbroken (no tombstones).
            tab[i, FDIR_KEY_PORTS] = 0
            j = i
            while True:
                j = (j + 1) & mask
                kp = int(tab[j, FDIR_KEY_PORTS])
                if kp == 0:
                    break
                home = int(fdir_bucket(int(tab[j, FDIR_KEY_ADDR]), kp, mask))
                stays = (i < home <= j) if i <= j else (home > i or home <= j)
                if not stays:
                    tab[i, FDIR_KEY_ADDR] = tab[j, FDIR_KEY_ADDR]
                    tab[i, FDIR_QUEUE] = tab[j, FDIR_QUEUE]
                    tab[i, FDIR_KEY_PORTS] = kp
                    tab[j, FDIR_KEY_PORTS] = 0
                    i = j
            ports[self.port_id, PORT_FDIR_COUNT] -= 1
            return True

    def flow_rules(self) -> int:
        return int(self.wire.views["ports"][self.port_id, PORT_FDIR_COUNT])

    def set_faults(
        self,
        drop: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        corrupt: float = 0.0,
        delay_us: int = 0,
        jitter_us: int = 0,
        rate_bps: int = 0,
        seed: int = 0,
        reorder_us: int = 100,
        ce_mark: float = 0.0,
    ) -> None:
        """Egress faults on everything this port transmits (like netem on its link).

        Probabilities are per frame.  ``reorder``: the frame is held back ``reorder_us`` longer
        so frames sent after it overtake it.  ``delay_us`` +/- uniform ``jitter_us``;
        ``rate_bps`` paces frames (bits of frame bytes).  Each queue draws from its own xorshift
        stream seeded from (seed, MAC, queue), so a run is reproducible.  ``ce_mark``: an
        ECN-capable (ECT) IPv4 frame not corrupted is marked CE, Congestion Experienced (RFC 3168
        §5, what an AQM router does rather than drop it); Not-ECT frames are left alone.  Call
        with no arguments to clear.
        """
        self._check_open()
        cfg = np.zeros(FLT_NF, np.int64)
        cfg[FLT_DROP] = _as_prob(drop, "drop")
        cfg[FLT_DUP] = _as_prob(duplicate, "duplicate")
        cfg[FLT_REORDER] = _as_prob(reorder, "reorder")
        cfg[FLT_CORRUPT] = _as_prob(corrupt, "corrupt")
        cfg[FLT_CE_MARK] = _as_prob(ce_mark, "ce_mark")
        cfg[FLT_DELAY_US] = _as_int(delay_us, "delay_us", 0, 10**9)
        cfg[FLT_JITTER_US] = _as_int(jitter_us, "jitter_us", 0, 10**9)
        cfg[FLT_RATE_BPS] = _as_int(rate_bps, "rate_bps", 0, 10**13)
        cfg[FLT_REORDER_US] = _as_int(reorder_us, "reorder_us", 0, 10**9)
        cfg[FLT_SEED] = _as_int(seed, "seed", 0, 2**63 - 1)
        on = any(
            cfg[i]
            for i in (
                FLT_DROP,
                FLT_DUP,
                FLT_REORDER,
                FLT_CORRUPT,
                FLT_CE_MARK,
                FLT_DELAY_US,
                FLT_JITTER_US,
                FLT_RATE_BPS,
            )
        )
        f = self.wire.views["faults"][self.port_id]
        with self.wire.locked():
            f[FLT_ON] = 0
            for i in range(FLT_NF):
                if i not in (FLT_GEN, FLT_ON):
                    f[i] = cfg[i]
            f[FLT_GEN] += 1
            f[FLT_ON] = int(on)

    def set_offload(self, rx_csum: bool | None = None, tx_csum: bool | None = None) -> None:
        """rx_csum: verify checksums on receive (FRAME_F_RX_CSUM_OK/BAD); tx_csum: fill in the
        checksums of frames flagged FRAME_F_TX_CSUM."""
        self._check_open()
        ports = self.wire.views["ports"]
        with self.wire.locked():
            if rx_csum is not None:
                ports[self.port_id, PORT_RX_CSUM] = int(bool(rx_csum))
            if tx_csum is not None:
                ports[self.port_id, PORT_TX_CSUM] = int(bool(tx_csum))

    @property
    def offloads(self) -> dict:
        ports = self.wire.views["ports"]
        return {
            "rx_csum": bool(ports[self.port_id, PORT_RX_CSUM]),
            "tx_csum": bool(ports[self.port_id, PORT_TX_CSUM]),
        }

    def audit(self) -> None:
        """Leak check of the port's own pool (the one :meth:`inject`/:meth:`drain` use): every
        frame must be free again.  Raises AssertionError."""
        if self._pool is None:
            return
        err = pool_audit(self._pool)
        owned = int(np.count_nonzero(self._pool.refcnt))
        if err != AUDIT_OK or owned:
            raise AssertionError(f"{self!r}: pool audit {err}, {owned} frames still owned")

    def held_frames(self, queue: int) -> int:
        """Pool frames the NIC still holds for ``queue``: none, the sim copies (like DMA)."""
        return 0

    def counters_source(self, queue: int) -> dict | None:
        """Where queue ``queue``'s counters (SIMQ_STAT_*) live for a reader in another process
        (fsdp stat, :func:`read_queue_counters`): the wire's name and the row's word offset in
        its file; None on a private wire (it has no file)."""
        if self.wire.path is None:
            return None
        row = ctl_offset(self.wire.layout, "stats")
        return {"wire": self.wire.name, "offset": row + (self.port_id * self.wire.max_queues
                                                         + queue) * STAT_STRIDE}

    def stats(self) -> dict:
        """Counters summed over the port's queues, plus ``per_queue`` (a list of dicts)."""
        rows = np.array(self.wire.views["stats"][self.port_id, : self.n_queues, :SIMQ_STAT_N])
        out: dict = {name: int(rows[:, i].sum()) for i, name in enumerate(SIMQ_STAT_NAMES)}
        out["per_queue"] = [
            {name: int(rows[qi, i]) for i, name in enumerate(SIMQ_STAT_NAMES)}
            for qi in range(self.n_queues)
        ]
        out["delay_line"] = sum(int(q.priv[QS_DL_COUNT]) for q in self._queues if q is not None)
        return out

    # ------------------------------------------------------------------ test conveniences

    def inject(self, frame: bytes, queue: int = 0, now: int = 0, flags: int = 0) -> None:
        """Transmit raw bytes from this port as if a core sent them on ``queue`` (the normal tx
        path: switching, steering, faults, offloads).  Not while a core polls that queue.

        Any length up to MAX_FRAME_LEN goes on the wire as given, runts included (they are
        switched by their destination MAC if they have one, else flooded, and land on queue 0).
        """
        self._check_open()
        data = bytes(frame)
        if len(data) > MAX_FRAME_LEN:
            raise ValueError(f"frame length must be at most {MAX_FRAME_LEN}, not {len(data)}")
        q = self.queue(queue)
        pool = self.pool
        ids = self._ids
        if frame_alloc_burst(pool, ids, 1) != 1:
            raise OSError(errno.ENOBUFS, "the port's inject pool is empty")
        fid = int(ids[0])
        pool.data[fid, HEADROOM : HEADROOM + len(data)] = np.frombuffer(data, np.uint8)
        pool.length[fid] = len(data)
        pool.flags[fid] = flags
        sim_tx_burst(q, pool, ids, 1, now)

    def flush(self, now: int = 0) -> None:
        """Release every delay-line frame due by ``now`` on all queues (a tx burst of 0)."""
        self._check_open()
        for i in range(self.n_queues):
            if self._queues[i] is not None:
                sim_tx_burst(self._queues[i], self.pool, self._ids, 0, now)

    def next_event(self) -> int:
        """Earliest delay-line release time (µs) over this process's queues, or -1."""
        times = [int(sim_next_event(q)) for q in self._queues if q is not None]
        times = [t for t in times if t >= 0]
        return min(times) if times else -1

    def drain(self, now: int = 0, queue: int | None = None, with_flags: bool = False) -> list:
        """Everything waiting on this port's rx queues (or just ``queue``), queue by queue.

        Returns ``bytes`` per frame, or ``(bytes, flags)`` with ``with_flags``.
        """
        self._check_open()
        queues = range(self.n_queues) if queue is None else [queue]
        pool = self.pool
        ids = self._ids
        out = []
        for qi in queues:
            q = self.queue(qi)
            while True:
                n = sim_rx_burst(q, pool, ids, len(ids), now)
                for fid in ids[:n]:
                    off, ln = int(pool.off[fid]), int(pool.length[fid])
                    data = pool.data[fid, off : off + ln].tobytes()
                    out.append((data, int(pool.flags[fid])) if with_flags else data)
                frame_free_burst(pool, ids, n)
                if n == 0:
                    break
        return out

    def bell_relay(self, i: int) -> BellRelay:
        """Queue ``i``'s doorbell as an fd (:class:`BellRelay`), started on first use."""
        self._check_open()
        if os.getpid() != self._pid:
            raise ValueError(f"{self!r} belongs to process {self._pid}")
        relay = self._relays.get(i)
        if relay is None:
            relay = self._relays[i] = BellRelay(self.queue(i))
        return relay

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Detach the port (an owning handle) and drop this handle; idempotent."""
        if self._closed:
            return
        self._closed = True
        _OPEN_PORTS.discard(self)
        if os.getpid() != self._pid:
            return  # inherited through fork: the port belongs to the parent
        for relay in self._relays.values():  # their threads read the wire's memory
            relay.close()
        self._relays.clear()
        if self._owner:
            self.wire._detach(self.port_id)
        self.wire._release_ref()


def read_queue_counters(sources) -> dict | None:
    """The SIMQ_STAT_* counters of the queues ``sources`` names (:meth:`SimPort.
    counters_source` dicts, all of one wire), summed: read from the wire's file, without
    attaching to it, by another process (``fsdp stat``).  None when the wire is gone."""
    sources = [x for x in sources if x is not None]
    if not sources:
        return None
    path = _existing_path(sources[0]["wire"])
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        hdr = np.frombuffer(os.pread(fd, HDR_N * 8, 0), dtype=np.int64)
        if (len(hdr) < HDR_N or hdr[HDR_MAGIC] != SIM_MAGIC or hdr[HDR_READY] != 1
                or hdr[HDR_VERSION] != SIM_VERSION):
            return None
        total = np.zeros(SIMQ_STAT_N, np.int64)
        for x in sources:
            row = os.pread(fd, SIMQ_STAT_N * 8, int(x["offset"]) * 8)
            if len(row) != SIMQ_STAT_N * 8:
                return None
            total += np.frombuffer(row, dtype=np.int64)
    finally:
        os.close(fd)
    return {name: int(total[i]) for i, name in enumerate(SIMQ_STAT_NAMES)}


def join_port(name: str, port_id: int, **opts) -> SimPort:
    """A non-owning handle on port ``port_id`` of the named wire (for a core's process)."""
    wire = SimWire.open(name)
    try:
        return wire.join(port_id, **opts)
    except BaseException:
        wire._discard_if_unused()
        raise


def attach_named(name: str, n_queues: int, mac, **opts) -> SimPort:
    """Open (or create) the named wire and attach a port: what ``open_nic("sim:NAME")`` does."""
    geometry = {
        k: opts.pop(k) for k in ("max_ports", "max_queues", "ring_slots", "fdir_size") if k in opts
    }
    for _ in range(10):
        wire = SimWire.open(name, **geometry)
        try:
            return wire.attach(n_queues, mac, **opts)
        except _WireGone:
            wire._discard_if_unused()
            continue
        except BaseException:
            wire._discard_if_unused()
            raise
    raise OSError(errno.EAGAIN, f"sim wire {name!r} keeps disappearing")


@atexit.register
def _close_open_ports() -> None:
    for port in list(_OPEN_PORTS):
        try:
            port.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


# --------------------------------------------------------------------------- idle sleep
_libc_syscall = None


_FUTEX_WAIT = 0  # not FUTEX_PRIVATE_FLAG: the word is in memory other processes map
_FUTEX_WAKE = 1


def _futex(addr: int, op: int, val: int, timeout_s: float | None = None) -> None:
    """futex(2) on the shared 32-bit word at ``addr`` (ctypes releases the GIL meanwhile).
    FUTEX_WAIT: sleep while the word holds ``val``, at most ``timeout_s`` seconds (a signal or
    a spurious wake ends it early, as a nap may).  FUTEX_WAKE: wake up to ``val`` waiters."""
    global _libc_syscall
    import ctypes

    if _libc_syscall is None:
        libc = ctypes.CDLL(None, use_errno=True)
        _libc_syscall = libc.syscall
        _libc_syscall.restype = ctypes.c_long
    ts = None
    if timeout_s is not None:
        sec = int(timeout_s)
        ts = (ctypes.c_long * 2)(sec, int((timeout_s - sec) * 1e9))
    if val >= 1 << 31:
        val -= 1 << 32  # the word as the kernel compares it: a signed int
    _libc_syscall(ctypes.c_long(SYS_FUTEX), ctypes.c_void_p(addr), ctypes.c_int(op),
                  ctypes.c_int(val), ts, None, ctypes.c_int(0))


def _bell_index(q: SimQueue) -> int:
    g = q.geo
    return g.c_bells + (g.port * g.max_queues + g.queue) * BELL_STRIDE


class BellRelay:
    """A queue's doorbell as a file descriptor, for a thread that sleeps in epoll or poll beside
    kernel fds (a selector with pipes or kernel sockets registered: asyncio's self-pipe is one).
    A futex cannot be waited on in epoll, so a daemon thread waits on the doorbell's futex word
    and makes ``fd`` (an eventfd) readable each time a sender bumps it.  Senders ring only while
    someone counts among the queue's sleepers, so the thread sleeps while the queue is busy.

    Made by :meth:`SimPort.bell_relay`; stopped (before the wire is unmapped) when its port
    handle closes."""

    def __init__(self, q: SimQueue):
        self._ctl = q.ctl
        self._seq = _bell_index(q) + BELL_SEQ
        self._addr = q.ctl.ctypes.data + 8 * self._seq
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stop = False
        self._thread = threading.Thread(target=self._relay, daemon=True,
                                        name=f"fsdp-bell-{q.geo.port}.{q.geo.queue}")
        self._thread.start()

    def _relay(self) -> None:
        seen = int(self._ctl[self._seq]) & 0xFFFFFFFF
        while not self._stop:
            _futex(self._addr, _FUTEX_WAIT, seen, 1.0)  # (the timeout is only a safety net)
            now = int(self._ctl[self._seq]) & 0xFFFFFFFF
            if now != seen and not self._stop:
                seen = now
                os.eventfd_write(self.fd, 1)

    def drain(self) -> None:
        """Forget rings so far (the caller is about to look at its rings itself)."""
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self._stop:
            return
        self._stop = True
        _futex(self._addr, _FUTEX_WAKE, 0x7FFFFFFF)  # (other waiters just look again)
        self._thread.join(5)
        os.close(self.fd)


def queue_sleep(q: SimQueue, timeout_s: float, poll, wait=None) -> bool:
    """Sleep until a frame is sent to queue ``q`` or ``timeout_s`` passes: the idle wait of a
    thread that polls ``q`` (DESIGN.md's "sleep on something that wakes it").

    The thread reads the doorbell's futex word, counts itself among the queue's sleepers (a
    locked instruction), runs ``poll()`` -- a pass of its loop, which takes whatever arrived
    before senders could see it counted; True if frames came -- and only then waits on the
    word, which a sender bumps and wakes once per burst when it finds sleepers
    (sim_dp._ring_bells has the hand-shake).  Returns True if frames came in that pass (no
    sleep then).  A signal ends the wait early, as it ends a ``time.sleep``'s.

    ``wait(timeout_s)``, if given, sleeps instead of the futex wait: in epoll or poll on fds
    that include the queue's :class:`BellRelay` (whose thread turns a ring into readiness)."""
    b = _bell_index(q)
    ctl = q.ctl
    seq = int(ctl[b + BELL_SEQ]) & 0xFFFFFFFF
    sim_bell_count(ctl, b + BELL_SLEEPERS, 1)
    try:
        if poll():
            return True
        if timeout_s > 0:
            if wait is None:
                _futex(ctl.ctypes.data + 8 * (b + BELL_SEQ), _FUTEX_WAIT, seq, timeout_s)
            else:
                wait(timeout_s)
        return False
    finally:
        sim_bell_count(ctl, b + BELL_SLEEPERS, -1)
