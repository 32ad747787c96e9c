"""``fsdp.selectors``: the :mod:`selectors` API over fsdp sockets *and* kernel file descriptors.

An fsdp socket has no kernel file descriptor to hand to epoll: its readiness lives in the TCP
engine's tables (``tcp_status``'s EV_* bits, see :mod:`fsdp.tcp.usercalls`) and changes only
when a stack's loop runs.  So :class:`FsdpSelector` waits by *polling*: every pass runs every
fsdp stack of the process (:func:`fsdp.core.stack.poll_all_stacks`), reads the readiness of each
registered fsdp socket, and asks an ordinary kernel selector (epoll) about the kernel fds —
pipes, kernel sockets, asyncio's self-pipe — registered beside them.

Idle behaviour (no frames moved, nothing ready): it busy-polls for ``busy_poll_us`` after the
last activity (latency matters most right after traffic), then naps for growing intervals, up
to ``idle_sleep_us``, between passes.  A nap sleeps *in* the kernel selector when kernel fds are
registered, so a pipe or a signal wakes it at once; without kernel fds it is a plain sleep.  An
idle process so wakes about once per ``idle_sleep_us`` instead of spinning a core at 100%.
Defaults: ``FSDP_BUSY_POLL_US`` (200) and ``FSDP_IDLE_SLEEP_US`` (1000) in the environment, or
the constructor's arguments.

Readiness of an fsdp socket costs one engine call per registered socket (O(registered), like
select(2), not O(ready) like epoll); a pass asks only when readiness can have changed.

File numbers: fsdp sockets number themselves from 2**20 up (:data:`fsdp.sockapi.socket.
FILENO_BASE`), above any fd Linux gives out by default, so ``register(sock.fileno())`` — what
asyncio does — finds the fsdp socket again.
"""

from __future__ import annotations

import math
import os
import selectors as _stdselectors
import time
from collections.abc import Mapping

from fsdp.sockapi.socket import socket_from_fileno

EVENT_READ = _stdselectors.EVENT_READ
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


class FsdpSelector(_stdselectors.BaseSelector):
    """A selector for fsdp sockets and kernel file objects together (see the module doc)."""

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
        self._map = _SelectorMapping(self)
        self._last_activity = time.monotonic()
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

    def register(self, fileobj, events, data=None) -> SelectorKey:
        self._check_open()
        if (not events) or (events & ~(EVENT_READ | EVENT_WRITE)):
            raise ValueError(f"Invalid events: {events!r}")
        fd = self._fileobj_lookup(fileobj)
        if fd in self._fd_to_key:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        sock = socket_from_fileno(fd)  # by number: asyncio registers bare fds
        if sock is not None:
            key = SelectorKey(fileobj, fd, events, data)
            self._fsdp[fd] = sock
        else:
            key = self._kernel.register(fileobj, events, data)
        self._fd_to_key[fd] = key
        return key

    def unregister(self, fileobj) -> SelectorKey:
        self._check_open()
        try:
            key = self._fd_to_key.pop(self._fileobj_lookup(fileobj))
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if self._fsdp.pop(key.fd, None) is None:
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
        if fd in self._fsdp:
            key = key._replace(events=events, data=data)
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
        self._fd_to_key.clear()
        self._fsdp.clear()

    # ---- waiting ----
    def _fsdp_ready(self) -> list[tuple[SelectorKey, int]]:
        ready = []
        for fd, sock in self._fsdp.items():
            key = self._fd_to_key[fd]
            ev = sock._poll_events() & key.events
            if ev:
                ready.append((key, ev))
        return ready

    def _kernel_ready(self, timeout: float) -> list[tuple[SelectorKey, int]]:
        if not self._kernel.get_map():
            return []
        return self._adopt(self._kernel.select(timeout))

    def _adopt(self, got: list[tuple[SelectorKey, int]]) -> list[tuple[SelectorKey, int]]:
        """Move keys whose fd became an fsdp socket's to the fsdp side.  In transparent mode a
        socket registered before its first connect() was a kernel socket then; its fd stays
        open as an unconnected placeholder, which epoll reports ready (POLLOUT | POLLHUP) at
        once — so the move happens on the first report, and the placeholder's readiness is
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
            self._fsdp[key.fd] = sock
            ev = sock._poll_events() & key.events
            if ev:
                out.append((key, ev))
        return out

    def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]:
        """Wait until a registered object is ready or ``timeout`` seconds pass (None: forever,
        <= 0: one look without waiting); keeps every fsdp stack of the process polled."""
        self._check_open()
        from fsdp.core.stack import _live_stacks, poll_all_stacks

        if not self._fsdp and not _live_stacks:
            # Nothing of fsdp's in this process: the kernel selector alone is exact and idle-free.
            return self._kernel.select(timeout)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        nap = 0.0
        # Asking the engine about a socket costs an engine call (~15 µs today), so a pass looks
        # at the fsdp sockets only when their readiness can have changed: on the first pass
        # (the program used them since the last select), when frames moved, and after a nap
        # (timers fired, or another thread used a socket).
        look = True
        while True:
            moved = poll_all_stacks()
            ready = self._fsdp_ready() if (look or moved) else []
            look = False
            ready += self._kernel_ready(0)
            now = time.monotonic()
            if ready or moved:
                self._last_activity = now
                nap = 0.0
                if ready:
                    return ready
                continue
            if deadline is not None and now >= deadline:
                return []
            if now - self._last_activity < self._busy_poll:
                continue  # busy-poll: the next frame is likely microseconds away
            # Nap, doubling from 20 µs to the idle cap, never past the deadline.
            nap = min(self._idle_sleep, max(2 * nap, 20e-6))
            wait = nap if deadline is None else min(nap, deadline - now)
            if wait <= 0:
                continue
            look = True
            if self._kernel.get_map() and wait >= 1e-3:
                # epoll counts whole milliseconds: only a nap of >= 1 ms sleeps in it (and a
                # kernel fd wakes it early); a shorter one sleeps below, then looks at the fds.
                got = self._adopt(self._kernel.select(math.floor(wait * 1e3) / 1e3))
                if got:
                    self._last_activity = time.monotonic()
                    # Whatever the stacks received meanwhile is reported too.
                    poll_all_stacks()
                    return self._fsdp_ready() + got
            else:
                time.sleep(wait)

    def __repr__(self) -> str:
        return (f"<fsdp.selectors.FsdpSelector fsdp={len(self._fsdp)} "
                f"kernel={len(self._fd_to_key) - len(self._fsdp)}>")


DefaultSelector = FsdpSelector

__all__ = ["DefaultSelector", "EVENT_READ", "EVENT_WRITE", "FsdpSelector", "SelectorKey"]
