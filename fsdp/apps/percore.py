"""Per-core worker processes for the demo, the server and the load generator.

``--cores N`` here means N worker processes, each owning one queue of one sim NIC port (the
share-nothing layout of DESIGN.md §1): the parent attaches the port with N queues and RSS, each
forked worker joins it (``SimWire.join``) and runs a one-core :class:`fsdp.Stack` on *its* queue
only (:class:`QueueSlice`), pinned to a CPU when there are enough.  A listener is installed in
every worker's own listen table (listen spawn, per process); RSS spreads the SYNs over the
queues, so each worker accepts only its own connections.

Live numbers cross processes through :class:`SharedArrays` (an anonymous shared mapping made
before the fork): the jitted loops count straight into it, the parent reads it for the progress
line and sets a stop flag the loops check every iteration.

Pure Python (listed in fsdp._jitcache._PURE_PYTHON): never put jitted code here.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback

import numpy as np

W_STATE = 0  # per-worker control row (``ctl``): its state ...
W_PID = 1
W_ERROR = 2  # 1 when it failed (the message is printed on stderr by the worker)
W_CPU_NS = 3  # CPU time used by the worker so far (user + system), updated on each slice
W_BUSY_NS = 4  # a polling worker's time in passes that did work (0 where not measured)
W_RETRANS = 5  # a client worker's retransmitted segments, SYNs too (0 where not counted:
#                kernel sockets); on the lossless sim wire any is a dropped or refused segment
W_SIZE = 8

WS_STARTING = 0
WS_READY = 1
WS_DONE = 2
WS_FAILED = 3


class SharedArrays:
    """Named int64 arrays in one anonymous ``MAP_SHARED`` mapping, inherited through fork."""

    def __init__(self, **shapes):
        sizes = {k: int(np.prod(s)) * 8 for k, s in shapes.items()}
        total = max(8, sum(sizes.values()))
        self._mm = mmap.mmap(-1, total)  # anonymous + MAP_SHARED: children see the same pages
        off = 0
        for name, shape in shapes.items():
            a = np.frombuffer(self._mm, np.int64, int(np.prod(shape)), off).reshape(shape)
            setattr(self, name, a)
            off += sizes[name]


def wire_ring_full(wire) -> int:
    """Frames sim wire ``wire`` dropped because a receive ring was full, on every port's
    queues (each counts the copies it sent into a full ring; ``fsdp stat`` shows a stack's
    own as ``nic ring_full``).  A drop costs a TCP connection a retransmission timeout."""
    from fsdp.driver.sim_layout import SIMQ_STAT_RING_FULL

    return int(wire.views["stats"][:, :, SIMQ_STAT_RING_FULL].sum())


class QueueSlice:
    """Queue ``i`` of a multi-queue NIC port, seen as a one-queue port: what one worker's
    one-core Stack polls.  Everything else (RSS key and table, flow rules, capabilities) is the
    port's."""

    def __init__(self, port, queue: int):
        self._p = port
        self._q = queue
        self.n_queues = 1
        self.uri = getattr(port, "uri", "sim")

    def queue(self, i: int):
        if i != 0:
            raise ValueError("a queue slice has one queue")
        return self._p.queue(self._q)

    @property
    def capabilities(self) -> dict:
        return self._p.capabilities

    def bell_relay(self, i: int):
        """The queue's doorbell as an fd (fsdp.driver.sim.BellRelay)."""
        if i != 0:
            raise ValueError("a queue slice has one queue")
        return self._p.bell_relay(self._q)

    def counters_source(self, i: int):
        """Where the NIC keeps the queue's counters, for fsdp stat (the port's, for queue i)."""
        source = getattr(self._p, "counters_source", None)
        return None if source is None or i != 0 else source(self._q)

    def held_frames(self, queue: int) -> int:
        held = getattr(self._p, "held_frames", None)
        return int(held(self._q)) if held is not None else 0

    def close(self) -> None:  # the parent owns the port
        pass

    def __getattr__(self, name):
        return getattr(self._p, name)


def worker_stack(port, queue: int, n_queues: int, ip: str, mac: int, **options):
    """A one-core :class:`fsdp.Stack` on queue ``queue`` of ``port``, for one worker."""
    from fsdp.core.config import (
        CFG_ARP_REPLY_CORE,
        CFG_CORE_ID,
        CFG_N_CORES,
    )
    from fsdp.core.stack import Stack

    stack = Stack(nic=QueueSlice(port, queue), ip=ip, mac=mac, cores=1, **options)
    cfg = stack._cores[0].cfg
    cfg[CFG_CORE_ID] = queue  # what the core is in the port's layout (counters, ss)
    cfg[CFG_N_CORES] = n_queues
    # The NIC gives a broadcast ARP request to every queue and every worker answers it: N
    # identical replies, but the host keeps answering ARP when any one worker dies.
    cfg[CFG_ARP_REPLY_CORE] = -1
    return stack


def retire_queues(port, n_queues: int, dead_queues) -> None:
    """Workers of ``dead_queues`` died: rewrite the port's RSS redirection table over the live
    queues only, so new flows stop landing on a dead worker's queue (its open connections are
    lost), and take the dead ones out of the port's global listen table, so no core hands them
    a segment."""
    from fsdp.driver.toeplitz import RETA_SIZE
    from fsdp.tcp.listen import listen_map_forget

    dead = set(dead_queues)
    live = [q for q in range(n_queues) if q not in dead]
    if live:
        port.set_rss(reta=np.array([live[i % len(live)] for i in range(RETA_SIZE)]))
    for q in dead:
        listen_map_forget(port.listen_map, q)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_topology(sys_cpu: str = "/sys/devices/system/cpu") -> list[list[int]]:
    """The CPUs this process may run on, grouped by physical core (hardware threads that share
    one core: ``topology/thread_siblings_list``), cores in order of their first CPU.

    ``FSDP_CPU_TOPOLOGY="0,8;1,9;..."`` (one group of CPUs per physical core) overrides what
    sysfs says: a virtual machine's CPUs may be hyper-threads of one host core that its sysfs
    does not show (``benchmarks/cpu_siblings.py --layout`` measures them and prints the line)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = list(range(os.cpu_count() or 1))
    given = os.environ.get("FSDP_CPU_TOPOLOGY", "").strip()
    if given:
        groups = [[c for c in _cpu_list(g) if c in allowed] for g in given.split(";") if g.strip()]
        listed = {c for g in groups for c in g}
        groups = [g for g in groups if g] + [[c] for c in allowed if c not in listed]
        return sorted(groups)
    cores: dict[tuple, list[int]] = {}
    for cpu in allowed:
        try:
            with open(f"{sys_cpu}/cpu{cpu}/topology/thread_siblings_list") as f:
                key = tuple(_cpu_list(f.read()))
        except (OSError, ValueError):
            key = (cpu,)
        cores.setdefault(key, []).append(cpu)
    return sorted(cores.values())


def _cpu_list(text: str) -> list[int]:
    """"0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11] (the kernel's cpulist format)."""
    out: list[int] = []
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def placement(n_server: int, n_client: int, topology: list[list[int]] | None = None
              ) -> tuple[list[int] | None, list[int] | None, bool]:
    """CPUs for ``n_server`` server workers and ``n_client`` client workers, and whether they
    had to share CPUs.  Servers get one hardware thread on each of the first physical cores
    (two hyper-threads of one core are not two cores); clients get the physical cores the
    servers left, then the remaining threads, a server core's sibling last."""
    phys = topology if topology is not None else cpu_topology()
    width = max(len(c) for c in phys)
    order = [c[t] for t in range(width) for c in phys if t < len(c)]  # a thread per core first
    ncpu = len(order)
    if ncpu < 2:
        return None, None, True
    if n_server + n_client <= ncpu:
        server = order[:n_server]
        busy = {i for i, c in enumerate(phys) if any(cpu in server for cpu in c)}
        free = [cpu for cpu in order if cpu not in server]
        free.sort(key=lambda cpu: next(i for i, c in enumerate(phys) if cpu in c) in busy)
        return server, free[:n_client], False
    k = min(n_client, ncpu - 1)
    client_cpus = order[ncpu - k:][::-1]
    client = [client_cpus[i % k] for i in range(n_client)]
    left = order[: ncpu - k]
    return [left[i % len(left)] for i in range(n_server)], client, True


def pin(cpu: int | None) -> None:
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu % max(1, os.cpu_count() or 1)})
    except (AttributeError, OSError):
        pass


def process_cpu_ns() -> int:
    t = os.times()
    return int((t.user + t.system) * 1e9)


SCHED_FIELDS = ("user_s", "system_s", "voluntary_switches", "involuntary_switches")


def sched_sample(pids) -> np.ndarray:
    """The CPU time and context switches of processes ``pids`` so far, summed, as read from
    /proc (``SCHED_FIELDS``; zeros where /proc or a process is missing).  Two samples show
    where a worker's time went: system time is the kernel's work for it (syscalls, page
    faults), voluntary switches its sleeps, involuntary ones the CPU taken from it by
    another runnable task."""
    out = np.zeros(len(SCHED_FIELDS))
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            with open(f"/proc/{int(pid)}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{int(pid)}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            out += (int(fields[11]) / tick, int(fields[12]) / tick,
                    int(status["voluntary_ctxt_switches"]),
                    int(status["nonvoluntary_ctxt_switches"]))
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return out


def steal_sample(stat: str = "/proc/stat") -> tuple[int, int]:
    """(steal, total) clock ticks of all CPUs so far, from /proc/stat's ``cpu`` line, or
    (0, 0) without it.  Steal is the time a virtual machine's CPUs were ready to run but the
    hypervisor ran something else: on a shared host it lowers every worker's rate, and more
    so the more of the guest's CPUs are busy."""
    try:
        with open(stat) as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    if len(ticks) < 8:
        return 0, 0
    return ticks[7], sum(ticks)


def _die_with_parent() -> None:
    """Linux PR_SET_PDEATHSIG: the kernel kills this worker if its parent dies (a SIGKILLed
    ``fsdp serve`` must not leave busy-polling workers behind)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _child(target, ctl_row, cpu, args, parent: int):
    # A forked worker: no parent signal handlers, its own exit path (never returns to the
    # parent's code: os._exit).  Ctrl-C and a SIGTERM to the whole process group (timeout(1),
    # systemd) are the parent's to handle: it stops the workers through their stop flags.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    code = 0
    try:
        pin(cpu)
        ctl_row[W_PID] = os.getpid()
        target(ctl_row, *args)
        ctl_row[W_STATE] = WS_DONE
    except BaseException as e:  # noqa: BLE001 - reported to the parent, then exit non-zero
        ctl_row[W_ERROR] = 1
        ctl_row[W_STATE] = WS_FAILED
        sys.stderr.write(f"fsdp: worker {os.getpid()} failed: {type(e).__name__}: {e}\n")
        if os.environ.get("FSDP_DEBUG"):
            traceback.print_exc()
        code = 1
    finally:
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(code)


class Workers:
    """Forked worker processes, each with a control row in shared memory."""

    def __init__(self, n_max: int):
        self.ctl = SharedArrays(ctl=(n_max, W_SIZE)).ctl
        self.procs: list[mp.Process] = []
        self._ctx = mp.get_context("fork")

    def start(self, target, cpu: int | None, *args) -> int:
        i = len(self.procs)
        p = self._ctx.Process(target=_child, args=(target, self.ctl[i], cpu, args, os.getpid()),
                              daemon=True)
        p.start()
        self.procs.append(p)
        return i

    def wait_ready(self, idx: list[int], timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            states = {i: int(self.ctl[i, W_STATE]) for i in idx}
            if any(
                s == WS_FAILED or (not self.procs[i].is_alive() and s != WS_DONE)
                for i, s in states.items()
            ):
                raise RuntimeError("a worker failed to start (see its message above)")
            if all(s >= WS_READY for s in states.values()):
                return
            time.sleep(0.01)
        raise RuntimeError(f"workers not ready after {timeout:.0f} s")

    def dead(self) -> list[int]:
        """Workers that died or failed."""
        return [
            i for i, p in enumerate(self.procs)
            if self.ctl[i, W_STATE] == WS_FAILED or (
                not p.is_alive() and self.ctl[i, W_STATE] != WS_DONE
            )
        ]

    def join(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.0, end - time.monotonic()))
        for p in self.procs:
            if p.is_alive():  # a worker stuck past its stop flag: end it (ours, by pid)
                p.kill()
                p.join(1.0)
