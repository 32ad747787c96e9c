"""``fsdp.selectors``: the :mod:`selectors` API over fsdp sockets *and* kernel file descriptors.

An fsdp socket has no kernel file descriptor to hand to epoll: its readiness lives in the TCP
engine's tables (``tcp_status``'s EV_* bits, see :mod:`fsdp.tcp.usercalls`) and changes only
when a stack's loop runs.  So :class:`FsdpSelector` waits by *polling*: every pass runs every
fsdp stack of the process (:func:`fsdp.core.stack.poll_all_stacks`), reads the readiness of each
registered fsdp socket, and asks an ordinary kernel selector (epoll) about the kernel fds —
pipes, kernel sockets, asyncio's self-pipe — registered beside them.

Idle behaviour (no frames moved, nothing ready): it busy-polls for ``busy_poll_us`` after the
last activity (latency matters most right after traffic), then naps for growing intervals, up
to ``idle_sleep_us``, between passes.  Where the process has one stack of one core on a NIC
with a doorbell (``sim``), a nap sleeps on that queue's doorbell, so a frame sent to it ends
the nap at once (``fsdp.core.stack.idle_sleep``); when kernel fds are registered it sleeps in
poll(2) on the kernel selector's epoll fd and the doorbell's relay fd together, so a pipe, a
signal or a frame wakes it (``idle_wait_fd``).  Otherwise a nap is a plain sleep (or a sleep
in the kernel selector).  An idle process so wakes about once per ``idle_sleep_us`` (timers,
and changes another thread makes without sending a frame, are seen by then) instead of
spinning a core at 100%; one with no other thread, sleeping on its doorbell, has no such
changes to look for and naps up to ``LONE_NAP_S`` (50 ms; a frame, its next timer, a signal
or the timeout ends a nap at once).
Defaults: ``FSDP_BUSY_POLL_US`` (200) and ``FSDP_IDLE_SLEEP_US`` (1000) in the environment, or
the constructor's arguments.

Readiness of fsdp sockets costs one engine call per core per pass, however many sockets are
registered: the selector keeps, per core of each stack, a rows array (connection or listener
id, status, kind, the EV_* bits wanted) that ``fsdp.core.loop.poll_status`` updates right after
the core's loop pass, in the same jitted call; Python then looks only at the rows with a wanted
bit set.  The engine's work is O(ready + changed), as epoll's ready list: it looks again at the
rows that were ready or were added, at the rows of the connections the core's touched log
(``fsdp.tcp.tcb.tcb_touch``) names since this selector's last look, and at the listener rows;
at every row only when it fell the log's length or more behind.  Python's work is O(ready).
(``benchmarks/selector_scale.py``: select(0) costs about 4 µs with 1 or 8,000 connections
registered.)  A socket
tells the selectors it is registered with when its engine object changes (connect, listen,
close), so its rows follow it.  A socket with no engine object (neither connected nor
listening) has constant readiness and is looked at in Python.

File numbers: fsdp sockets number themselves from 2**20 up (:data:`fsdp.sockapi.socket.
FILENO_BASE`), above any fd Linux gives out by default, so ``register(sock.fileno())`` — what
asyncio does — finds the fsdp socket again.
"""

from __future__ import annotations

import _thread
import math
import os
import selectors as _stdselectors
import time
from collections.abc import Mapping

import numpy as np

from fsdp.core.loop import (
    POLL_ROW,
    PR_ID,
    PR_KIND,
    PR_STATUS,
    PR_WANTED,
    SEL_FULL,
    SEL_NLISTEN,
    SEL_NREADY,
    SEL_SHARED,
    SEL_SIZE,
)
from fsdp.core.stack import (
    _live_stacks,
    busy_poll_yield,
    doorbell_stack,
    idle_sleep,
    idle_wait_fd,
    live_stacks,
)
from fsdp.sockapi.socket import Socket, socket_from_fileno
from fsdp.tcp.usercalls import EV_ERROR as _EV_ERROR
from fsdp.tcp.usercalls import EV_READABLE as _EV_READABLE
from fsdp.tcp.usercalls import EV_WRITABLE as _EV_WRITABLE

EVENT_READ = _stdselectors.EVENT_READ
LONE_NAP_S = 0.05  # the nap cap of a lone thread sleeping on a doorbell (FsdpSelector._nap_cap)
EVENT_WRITE = _stdselectors.EVENT_WRITE
SelectorKey = _stdselectors.SelectorKey

_fileobj_to_fd = _stdselectors._fileobj_to_fd  # the stdlib's own checks and ValueError texts
# The kernel's best selector (epoll), taken now: transparent mode later points the selectors
# module's names at FsdpSelector.
_KernelSelector = _stdselectors.DefaultSelector


def _env_us(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        v = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of microseconds, not {value!r}") from None
    if v < 0:
        raise ValueError(f"{name} must be >= 0, not {v}")
    return v


class _SelectorMapping(Mapping):
    """Read-only ``fileobj -> SelectorKey`` view (what ``get_map()`` returns)."""

    def __init__(self, selector: FsdpSelector):
        self._selector = selector

    def __len__(self) -> int:
        return len(self._selector._fd_to_key)

    def __getitem__(self, fileobj):
        try:
            fd = self._selector._fileobj_lookup(fileobj)
            return self._selector._fd_to_key[fd]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def __iter__(self):
        return iter(self._selector._fd_to_key)


class _CoreRows:
    """The registered fsdp sockets of one core of one stack, as the arguments of
    fsdp.core.loop.poll_status, which fills them in one call per pass: ``rows`` (``(id, status,
    kind, wanted, seen)`` a row -- a connection id (kind 0) or a listener id (kind 1; -1: a free
    row), its EV_* status, the EV_* bits that make it ready for this selector), ``ready`` (the
    ready rows out; in, the rows to look at again), ``sel`` (the cursor in the core's touched
    log), ``rowof`` (connection id -> row) and ``lrows`` (the listener rows)."""

    __slots__ = ("rows", "ready", "sel", "rowof", "lrows", "listen_rows", "keys", "cids", "free",
                 "count", "_rows_mv", "_ready_mv", "_sel_mv", "_rowof_mv", "_ptrs")

    def __init__(self, max_conns: int) -> None:
        self.rows = np.full(16 * POLL_ROW, -1, np.int64)
        self.ready = np.zeros(16, np.int64)
        self.sel = np.zeros(SEL_SIZE, np.int64)
        self.sel[SEL_FULL] = 1  # no position in the log yet: the first pass looks at every row
        self.rowof = np.full(max_conns, -1, np.int32)
        self.lrows = np.zeros(0, np.int64)
        self.listen_rows: list[int] = []
        self.keys: list[SelectorKey | None] = [None] * 16
        self.cids = [-1] * 16  # each row's connection id (-1: a listener's or a free row)
        self.free = list(range(15, -1, -1))
        self.count = 0
        self._views()

    def _views(self) -> None:
        # add() and remove() run once per connection in a server that registers each one: they
        # write the arrays through memoryviews, whose item access costs about half numpy's
        self._rows_mv = memoryview(self.rows)
        self._ready_mv = memoryview(self.ready)
        self._sel_mv = memoryview(self.sel)
        self._rowof_mv = memoryview(self.rowof)
        # and fsdp._native's register/unregister through these (the arrays live as long)
        self._ptrs = (self.rows.ctypes.data, self.ready.ctypes.data, len(self.ready),
                      self.sel.ctypes.data, self.rowof.ctypes.data, len(self.rowof))

    # A new row's PR_STATUS and PR_SEEN need no reset: the next pass looks at it before
    # anything reads its status, and any PR_SEEN it kept is from an earlier pass.
    def add(self, ident: int, kind: int, wanted: int, key: SelectorKey) -> int:
        if not self.free:
            n = len(self.keys)
            rows = np.full(2 * n * POLL_ROW, -1, np.int64)
            rows[: n * POLL_ROW] = self.rows
            self.rows = rows
            ready = np.zeros(2 * n, np.int64)
            ready[:n] = self.ready
            self.ready = ready
            self._views()
            self.keys.extend([None] * n)
            self.cids.extend([-1] * n)
            self.free.extend(range(2 * n - 1, n - 1, -1))
        row = self.free.pop()
        r = self._rows_mv
        base = row * POLL_ROW
        r[base + PR_ID] = ident
        r[base + PR_KIND] = kind
        r[base + PR_WANTED] = wanted
        self.keys[row] = key
        self.count += 1
        sel = self._sel_mv
        if kind == 0:
            rowof = self._rowof_mv
            if rowof[ident] >= 0:
                sel[SEL_SHARED] += 1  # not expected (one socket per connection), but exact
            rowof[ident] = row
            self.cids[row] = ident
        else:
            self.listen_rows.append(row)
            self.lrows = np.array(self.listen_rows, np.int64)
            sel[SEL_NLISTEN] = len(self.listen_rows)
        # a new row is looked at on the next pass, as if it had been ready
        k = sel[SEL_NREADY]
        if k < len(self._ready_mv):
            self._ready_mv[k] = row
            sel[SEL_NREADY] = k + 1
        else:
            sel[SEL_FULL] = 1
        return row

    def remove(self, row: int) -> None:
        cid = self.cids[row]
        if cid >= 0:
            self.cids[row] = -1
            rowof = self._rowof_mv
            if rowof[cid] == row:
                rowof[cid] = -1
            else:
                self._sel_mv[SEL_SHARED] -= 1
        else:
            self.listen_rows.remove(row)
            self.lrows = np.array(self.listen_rows, np.int64)
            self._sel_mv[SEL_NLISTEN] = len(self.listen_rows)
        # a free row (id -1) is never ready, wherever the engine finds it
        self._rows_mv[row * POLL_ROW + PR_ID] = -1
        self.keys[row] = None
        self.free.append(row)
        self.count -= 1


def _wanted(events: int, listener: bool) -> int:
    """The EV_* bits (fsdp.tcp.usercalls) that make a socket ready for ``events``: Linux
    tcp_poll's POLLIN / POLLOUT, as Socket._poll_events says."""
    m = 0
    if events & EVENT_READ:
        m |= (_EV_READABLE | _EV_ERROR) if listener else _EV_READABLE
    if events & EVENT_WRITE and not listener:
        m |= _EV_WRITABLE
    return m


_new_tuple = tuple.__new__

# _wanted(events, False) for events 0..3: what register() looks up for each connection
_CONN_WANTED = tuple(_wanted(ev, False) for ev in range(4))


def _ready_events(status: int, events: int, listener: bool) -> int:
    ev = 0
    if events & EVENT_READ and status & ((_EV_READABLE | _EV_ERROR) if listener else _EV_READABLE):
        ev |= EVENT_READ
    if events & EVENT_WRITE and not listener and status & _EV_WRITABLE:
        ev |= EVENT_WRITE
    return ev


class FsdpSelector(_stdselectors.BaseSelector):
    """A selector for fsdp sockets and kernel file objects together (see the module doc)."""

    # (slots: fsdp._native's register and unregister read them at their offsets)
    __slots__ = ("_closed", "_fd_to_key", "_fsdp", "_fd_of_sock", "_stack_rows", "_rows_of")

    def __init__(self, *, busy_poll_us: int | None = None, idle_sleep_us: int | None = None):
        if busy_poll_us is None:
            busy_poll_us = _env_us("FSDP_BUSY_POLL_US", 200)
        if idle_sleep_us is None:
            idle_sleep_us = _env_us("FSDP_IDLE_SLEEP_US", 1000)
        if busy_poll_us < 0 or idle_sleep_us < 0:
            raise ValueError("busy_poll_us and idle_sleep_us must be >= 0")
        self._busy_poll = busy_poll_us / 1e6
        self._idle_sleep = idle_sleep_us / 1e6
        self._kernel = _KernelSelector()
        self._fd_to_key: dict[int, SelectorKey] = {}
        self._fsdp: dict[int, object] = {}  # fd -> fsdp Socket, for the keys that are fsdp's
        # Where each fsdp key's engine readiness is read: fd -> (stack, [(rows, row), ...]) (a
        # listener has a row on every core: listen spawn), and the rows per stack, one
        # _CoreRows a core.
        self._rows_of: dict[int, tuple[object, list[tuple[_CoreRows, int]]]] = {}
        self._stack_rows: dict[object, list[_CoreRows]] = {}
        # fsdp sockets with no engine object (not connected nor listening, or closed): their
        # readiness is constant (Socket._poll_events), looked at in Python.
        self._static: dict[int, object] = {}
        self._fd_of_sock: dict[int, int] = {}  # id(fsdp socket) -> its fd here
        self._map = _SelectorMapping(self)
        self._last_activity = time.monotonic()
        self._nap = 0.0  # the last nap, kept across select() calls while nothing happens
        self._closed = False

    # ---- bookkeeping (the stdlib's _BaseSelectorImpl semantics) ----
    def _fileobj_lookup(self, fileobj) -> int:
        try:
            return _fileobj_to_fd(fileobj)
        except ValueError:
            # A closed object (fileno() == -1) can still be unregistered: find it by identity.
            for key in self._fd_to_key.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed selector")  # as a closed epoll says

    def _socket_changed(self, sock) -> None:
        """``sock`` connected, listened or closed: its readiness is read somewhere else now
        (the socket calls this for every selector it is registered with)."""
        fd = self._fd_of_sock.get(id(sock))
        if fd is not None and self._fsdp.get(fd) is sock:
            self._drop_fsdp(fd)
            self._add_fsdp(fd, sock, self._fd_to_key[fd])

    def _add_fsdp(self, fd: int, sock, key: SelectorKey) -> None:
        """Watch fsdp socket ``sock`` for ``key``: rows where the engine reports its readiness
        (a connection's on its core, a listener's on every core), or, for a socket with no
        engine object, a place among the static ones (their readiness is constant)."""
        self._fsdp[fd] = sock
        self._fd_of_sock[id(sock)] = fd
        stack = sock._stack
        if not sock._closed and not stack._closed and (sock._lids is not None or sock._cid >= 0):
            per_core = self._stack_rows.get(stack)
            if per_core is None:
                per_core = self._stack_rows[stack] = [
                    _CoreRows(core.tcb.free_next.shape[0]) for core in stack._cores]
            if sock._lids is not None:
                wanted = _wanted(key.events, True)
                places = [(per_core[i], per_core[i].add(lid, 1, wanted, key))
                          for i, lid in enumerate(sock._lids)]
            else:
                rows = per_core[sock._core]
                places = ((rows, rows.add(sock._cid, 0, _CONN_WANTED[key.events], key)),)
            self._rows_of[fd] = (stack, places)
        else:
            self._static[fd] = sock
        watchers = sock._selectors
        if watchers is None:
            sock._selectors = [self]
        elif self not in watchers:
            watchers.append(self)

    def _drop_fsdp(self, fd: int) -> object | None:
        """Stop watching the fsdp socket registered as ``fd`` (its rows freed): the socket, or
        None when ``fd`` is not one."""
        sock = self._fsdp.pop(fd, None)
        if sock is None:
            return None
        del self._fd_of_sock[id(sock)]
        placed = self._rows_of.pop(fd, None)
        if placed is not None:
            stack, places = placed
            for rows, row in places:
                rows.remove(row)
            if not rows.count:  # (else this core's rows still hold a socket: nothing to drop)
                for rows in self._stack_rows[stack]:
                    if rows.count:
                        break
                else:
                    del self._stack_rows[stack]  # holds the stack: not past its last socket
        else:
            self._static.pop(fd, None)
        watchers = sock._selectors
        if watchers is not None and self in watchers:
            watchers.remove(self)
        return sock

    def register(self, fileobj, events, data=None) -> SelectorKey:
        if self._closed:
            self._check_open()
        if (not events) or (events & ~(EVENT_READ | EVENT_WRITE)):
            raise ValueError(f"Invalid events: {events!r}")
        if type(fileobj) is Socket and not fileobj._closed:
            # the usual case, an fsdp socket itself: no lookups
            fd = fileobj._fileno if fileobj._numbered else fileobj.fileno()
            if fd in self._fd_to_key:
                raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
            # (the namedtuple made as its __new__ makes it, without that Python frame)
            key = self._fd_to_key[fd] = _new_tuple(SelectorKey, (fileobj, fd, events, data))
            self._add_fsdp(fd, fileobj, key)
            return key
        fd = self._fileobj_lookup(fileobj)
        if fd in self._fd_to_key:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        sock = socket_from_fileno(fd)  # by number: asyncio registers bare fds
        if sock is not None:
            key = SelectorKey(fileobj, fd, events, data)
            self._fd_to_key[fd] = key
            self._add_fsdp(fd, sock, key)
        else:
            key = self._kernel.register(fileobj, events, data)
            self._fd_to_key[fd] = key
        return key

    def unregister(self, fileobj) -> SelectorKey:
        if self._closed:
            self._check_open()
        try:
            if type(fileobj) is Socket and not fileobj._closed:
                fd = fileobj._fileno
            else:
                fd = self._fileobj_lookup(fileobj)
            key = self._fd_to_key.pop(fd)
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if self._drop_fsdp(key.fd) is None:
            try:
                self._kernel.unregister(key.fileobj)
            except (KeyError, ValueError, OSError):
                pass  # the fd was closed first: the kernel dropped it already (as epoll does)
        return key

    def modify(self, fileobj, events, data=None) -> SelectorKey:
        self._check_open()
        try:
            fd = self._fileobj_lookup(fileobj)
            key = self._fd_to_key[fd]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if events == key.events and data is key.data:
            return key
        if (not events) or (events & ~(EVENT_READ | EVENT_WRITE)):
            raise ValueError(f"Invalid events: {events!r}")
        sock = self._fsdp.get(fd)
        if sock is not None:
            key = key._replace(events=events, data=data)
            self._fd_to_key[fd] = key
            self._drop_fsdp(fd)
            self._add_fsdp(fd, sock, key)
        else:
            key = self._kernel.modify(key.fileobj, events, data)
            self._fd_to_key[fd] = key
        return key

    def get_map(self) -> Mapping | None:
        return None if self._closed else self._map  # None: get_key raises "Selector is closed"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._kernel.close()
        for fd in list(self._fsdp):
            self._drop_fsdp(fd)
        self._fd_to_key.clear()
        self._stack_rows.clear()

    # ---- waiting ----
    def _poll(self) -> tuple[int, list[tuple[SelectorKey, int]]]:
        """One pass of every fsdp stack of the process, reading the readiness of this
        selector's fsdp sockets in the same engine call (one per core, however many sockets):
        (frames received, [(key, events)] of the ready fsdp keys)."""
        moved = 0
        out = []
        stack_rows = self._stack_rows
        for stack in live_stacks():
            per_core = stack_rows.get(stack)
            if per_core is None:
                moved += stack.poll()
                continue
            n, hits = stack._poll_status(per_core)
            moved += n
            if hits is None:
                continue
            seen = None
            for rows, k in hits:
                r = rows._rows_mv  # (a memoryview's item is a Python int, ~3x numpy's cost less)
                keys = rows.keys
                for row in rows.ready[:k].tolist():
                    key = keys[row]
                    base = row * POLL_ROW
                    listener = r[base + PR_KIND] == 1
                    if listener and len(per_core) > 1:  # a row on every core: report it once
                        if seen is None:
                            seen = set()
                        elif key.fd in seen:
                            continue
                        seen.add(key.fd)
                    out.append((key, _ready_events(r[base + PR_STATUS], key.events, listener)))
        if self._static:
            for fd, sock in self._static.items():
                key = self._fd_to_key[fd]
                ev = sock._poll_events() & key.events
                if ev:
                    out.append((key, ev))
        return moved, out

    def _kernel_ready(self, timeout: float) -> list[tuple[SelectorKey, int]]:
        if not self._kernel.get_map():
            return []
        return self._adopt(self._kernel.select(timeout))

    def _adopt(self, got: list[tuple[SelectorKey, int]]) -> list[tuple[SelectorKey, int]]:
        """Move keys whose fd became an fsdp socket's to the fsdp side.  In transparent mode a
        socket registered before its first connect() was a kernel socket then; its fd stays
        open as an unconnected placeholder, which epoll reports ready (POLLOUT | POLLHUP) at
        once -- so the move happens on the first report, and the placeholder's readiness is
        never passed on."""
        out = []
        for key, ev in got:
            sock = socket_from_fileno(key.fd)
            if sock is None:
                out.append((key, ev))
                continue
            try:
                self._kernel.unregister(key.fileobj)
            except (KeyError, ValueError, OSError):
                pass
            self._add_fsdp(key.fd, sock, key)
            ev = sock._poll_events() & key.events
            if ev:
                out.append((key, ev))
        return out

    def _nap_cap(self, has_kernel: bool) -> float:
        """The longest nap: ``idle_sleep_us``, which bounds how late a change another thread
        makes without a frame is seen.  A process with no other thread that sleeps on its
        queue's doorbell (and no kernel fds) has no such change to wait for: a frame, its
        stack's next timer, a signal or the timeout ends the nap, so it may last up to
        LONE_NAP_S (an idle server then wakes ~20 times a second, not ~1,000)."""
        if (self._idle_sleep > 0 and not has_kernel and _thread._count() == 0
                and doorbell_stack() is not None):
            return max(self._idle_sleep, LONE_NAP_S)
        return self._idle_sleep

    def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]:
        """Wait until a registered object is ready or ``timeout`` seconds pass (None: forever,
        <= 0: one look without waiting); keeps every fsdp stack of the process polled."""
        self._check_open()
        if not self._fsdp and not _live_stacks:
            # Nothing of fsdp's in this process: the kernel selector alone is exact and idle-free.
            return self._kernel.select(timeout)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        # A loop that calls select(timeout) again and again while idle (a server checking a
        # stop flag every 20 ms) goes on backing off where it left off, not from 20 µs.
        nap = self._nap
        has_kernel = bool(self._kernel.get_map())
        while True:
            moved, ready = self._poll()
            if has_kernel:
                ready += self._kernel_ready(0)
            now = time.monotonic()
            if ready or moved:
                self._last_activity = now
                nap = self._nap = 0.0
                if ready:
                    return ready
                continue
            if deadline is not None and now >= deadline:
                self._nap = nap
                return []
            if now - self._last_activity < self._busy_poll:
                busy_poll_yield()  # a peer woken on this CPU runs first
                continue  # busy-poll: the next frame is likely microseconds away
            # Nap, doubling from 20 µs to the idle cap, never past the deadline.
            nap = min(self._nap_cap(has_kernel), max(2 * nap, 20e-6))
            wait = nap if deadline is None else min(nap, deadline - now)
            if wait <= 0:
                continue
            has_kernel = bool(self._kernel.get_map())  # another thread may have registered
            if has_kernel and wait >= 1e-3:
                # epoll counts whole milliseconds: only a nap of >= 1 ms sleeps in it (a kernel
                # fd, or the stack queue's doorbell, wakes it early); a shorter one sleeps below,
                # then looks at the fds.
                idle_wait_fd(self._kernel.fileno(), math.floor(wait * 1e3) / 1e3)
                got = self._adopt(self._kernel.select(0))
                if got:
                    self._last_activity = time.monotonic()
                    self._nap = 0.0
                    # Whatever the stacks received meanwhile is reported too.
                    return self._poll()[1] + got
            else:
                idle_sleep(wait)  # on the NIC's doorbell where it has one: a frame wakes it

    def __repr__(self) -> str:
        return (f"<fsdp.selectors.FsdpSelector fsdp={len(self._fsdp)} "
                f"kernel={len(self._fd_to_key) - len(self._fsdp)}>")


def _bind_native_methods() -> None:
    """FsdpSelector's register and unregister: fsdp._native's (C) where it was built, doing a
    connected fsdp socket themselves and calling the Python methods above (kept as
    ``_py_register`` / ``_py_unregister``) for everything else (see Socket's, in
    fsdp.sockapi.socket)."""
    from fsdp.sockapi.fastcall import _native

    if _native is None or not hasattr(Socket, "_py_recv"):  # (not built, or FSDP_NATIVE=0)
        return
    references = {"register": FsdpSelector.register, "unregister": FsdpSelector.unregister}
    layout = (POLL_ROW, PR_ID, PR_KIND, PR_WANTED, SEL_NREADY, SEL_FULL, SEL_SHARED)
    methods = _native.bind_selector_class(FsdpSelector, _CoreRows, SelectorKey, _CONN_WANTED,
                                          references, layout)
    for name, method in methods.items():
        setattr(FsdpSelector, "_py_" + name, references[name])
        setattr(FsdpSelector, name, method)


_bind_native_methods()

DefaultSelector = FsdpSelector

__all__ = ["DefaultSelector", "EVENT_READ", "EVENT_WRITE", "FsdpSelector", "SelectorKey"]
