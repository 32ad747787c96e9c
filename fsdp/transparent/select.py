"""``select.select``, ``select.poll`` and ``select.epoll`` for transparent mode: fsdp sockets
and kernel fds in the same lists and objects.

Waits the way :class:`fsdp.selectors.FsdpSelector` does (every fsdp stack polled each pass,
busy-poll after activity, then growing naps), and asks the kernel's ``select`` about the kernel
fds in each pass (a kernel poll or epoll object holds them for poll and epoll) — so they keep
their meaning.  An fsdp socket is in select's "exceptional" list while its urgent byte is
there to read (Linux POLLPRI; fsdp.tcp.urgent); poll and epoll report Linux's tcp_poll mask
(:meth:`fsdp.sockapi.socket.Socket._linux_poll_mask`).
"""

from __future__ import annotations

import errno
import math
import operator
import os
import select as _stdselect
import time

from fsdp.sockapi.socket import POLL_PRI, POLL_READ, POLL_WRITE, socket_from_fileno

# the stdlib's, taken before transparent mode patches the module
_kernel_select = _stdselect.select
_kernel_poll = _stdselect.poll
_kernel_epoll = getattr(_stdselect, "epoll", None)
_FD_SETSIZE = 1024  # (CPython's epoll.poll maxevents=-1)


def _fd_of(obj) -> int:
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            fd = int(obj.fileno())
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _in_order(objs, ready):
    """``ready`` in the order of ``objs``, as the kernel's select lists them."""
    if len(ready) < 2:
        return ready
    ids = {id(o) for o in ready}
    return [o for o in objs if id(o) in ids]


def _split(objs):
    fsdp_part, kernel_part = [], []
    for obj in objs:
        sock = socket_from_fileno(_fd_of(obj))
        if sock is not None:
            fsdp_part.append((obj, sock))
        else:
            kernel_part.append(obj)
    return fsdp_part, kernel_part


def _checked_timeout(timeout, type_error: str, per_second: int):
    """A timeout argument (not None) as the stdlib checks it: a float that is a number, or an
    integer that fits a _PyTime_t once counted in 1/``per_second`` units."""
    if isinstance(timeout, float):
        if timeout != timeout:
            raise ValueError("Invalid value NaN (not a number)")
        return timeout
    try:
        timeout = operator.index(timeout)
    except TypeError:
        raise TypeError(type_error) from None
    if abs(timeout) > (2 ** 63 - 1) // per_second:
        raise OverflowError("timestamp too large to convert to C _PyTime_t")
    return timeout


def _wait(fsdp_ready, kernel_ready, has_kernel: bool, timeout):
    """Poll every fsdp stack and ask the kernel about its fds until one of them has
    something (``fsdp_ready()`` / ``kernel_ready(wait_s)`` return it, else None) or
    ``timeout`` seconds (None: no limit) pass: (fsdp's, kernel's), each None if nothing.

    Waits the way :class:`fsdp.selectors.FsdpSelector` does: busy-poll after activity, then
    growing naps -- in the kernel's own wait when there are kernel fds, else on the stack's
    doorbell (a frame for its queue wakes it)."""
    from fsdp.core.stack import idle_sleep, poll_all_stacks
    from fsdp.selectors import _env_us

    busy = _env_us("FSDP_BUSY_POLL_US", 200) / 1e6
    cap = _env_us("FSDP_IDLE_SLEEP_US", 1000) / 1e6
    start = last_activity = time.monotonic()
    deadline = None if timeout is None else start + timeout
    nap = 0.0
    wait = 0.0
    while True:
        moved = poll_all_stacks()
        f = fsdp_ready()
        k = None
        if has_kernel:
            k = kernel_ready(0 if (f or moved) else wait)
        elif wait > 0 and not (f or moved):
            idle_sleep(wait)
        if f or k:
            return f, k
        now = time.monotonic()
        if moved:
            last_activity = now
            nap = 0.0
        if deadline is not None and now >= deadline:
            return None, None
        if now - last_activity < busy:
            wait = 0.0
            continue
        nap = min(cap, max(2 * nap, 20e-6))
        wait = nap if deadline is None else max(0.0, min(nap, deadline - now))


def select(rlist, wlist, xlist, timeout=None):
    """``select.select(rlist, wlist, xlist[, timeout])`` with fsdp sockets allowed."""
    from fsdp.core.stack import _live_stacks

    rlist, wlist, xlist = list(rlist), list(wlist), list(xlist)
    if timeout is not None:
        timeout = float(_checked_timeout(timeout, "timeout must be a float or None", 10 ** 9))
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    fr, kr = _split(rlist)
    fw, kw = _split(wlist)
    fx, kx = _split(xlist)
    if not (fr or fw or fx) and not _live_stacks:
        return _kernel_select(kr, kw, kx, timeout)

    def fsdp_ready():
        r = [o for o, s in fr if s._poll_events() & POLL_READ]
        w = [o for o, s in fw if s._poll_events() & POLL_WRITE]
        x = [o for o, s in fx if s._poll_events() & POLL_PRI]
        return (r, w, x) if (r or w or x) else None

    def kernel_ready(wait):
        k = _kernel_select(kr, kw, kx, wait)
        return k if (k[0] or k[1] or k[2]) else None

    f, k = _wait(fsdp_ready, kernel_ready, bool(kr or kw or kx), timeout)
    f = f or ([], [], [])
    k = k or ([], [], [])
    return (_in_order(rlist, f[0] + k[0]), _in_order(wlist, f[1] + k[1]),
            _in_order(xlist, f[2] + k[2]))


# ---------------------------------------------------------------- poll and epoll
_ALWAYS = _stdselect.POLLERR | _stdselect.POLLHUP  # reported whatever the mask asks
_scratch_poll = _stdselect.poll()  # checks masks as the stdlib does (see _check_poll_mask)


def _check_poll_mask(eventmask) -> None:
    _scratch_poll.register(0, eventmask)  # (registering checks nothing of the fd)
    _scratch_poll.unregister(0)


def _ms_timeout(timeout):
    """poll()'s timeout (milliseconds, int or float; None or negative: none) in seconds,
    with the stdlib's checks and rounding (up, to whole milliseconds)."""
    if timeout is None:
        return None
    ms = _checked_timeout(timeout, "timeout must be an integer or None", 10 ** 6)
    ms = math.ceil(ms)
    if abs(ms) > (2 ** 63 - 1) // 10 ** 6:  # (a float's too)
        raise OverflowError("timestamp too large to convert to C _PyTime_t")
    return None if ms < 0 else ms / 1000


class _Registry:
    """What poll and epoll objects share: the registered fds and their masks, in order, and
    the kernel's own object (``_k``) holding the kernel fds.  A number that names an fsdp
    socket (transparent mode's sockets keep their kernel fd's number) leaves ``_k`` when it
    is first seen as one -- the fd behind it is an unused placeholder -- and comes back if
    the number names a kernel file again."""

    def _registry_init(self, kernel_object) -> None:
        self._k = kernel_object
        self._masks: dict[int, int] = {}
        self._fsdp_fds: set[int] = set()

    def _sort(self):
        """([(fd, fsdp socket, mask)], any kernel fds?) as of now."""
        fsdp_part = []
        for fd, mask in self._masks.items():
            sock = socket_from_fileno(fd)
            if sock is not None:
                if fd not in self._fsdp_fds:
                    self._k.unregister(fd)
                    self._fsdp_fds.add(fd)
                fsdp_part.append((fd, sock, mask))
            elif fd in self._fsdp_fds:
                try:
                    self._k.register(fd, mask)
                except OSError:
                    continue  # a number no kernel file has: epoll forgets a closed fd
                self._fsdp_fds.discard(fd)
        return fsdp_part, len(fsdp_part) < len(self._masks)

    def _in_order(self, events):
        """(fd, events) pairs in registration order, as the kernel lists them."""
        if len(events) < 2:
            return events
        by_fd = dict(events)
        return [(fd, by_fd[fd]) for fd in self._masks if fd in by_fd]


class poll(_Registry):
    """``select.poll()`` for transparent mode: fsdp sockets and kernel fds in one object,
    with Linux's answers for the fsdp sockets (:meth:`Socket._linux_poll_mask`)."""

    def __init__(self):
        self._registry_init(_kernel_poll())

    def register(self, fd, eventmask=_stdselect.POLLIN | _stdselect.POLLPRI | _stdselect.POLLOUT):
        fd = _fd_of(fd)
        _check_poll_mask(eventmask)
        if fd in self._fsdp_fds or socket_from_fileno(fd) is not None:
            self._fsdp_fds.add(fd)  # (fsdp.socket()'s numbers are no kernel fds at all)
        else:
            self._k.register(fd, eventmask)
        self._masks[fd] = eventmask

    def modify(self, fd, eventmask):
        fd = _fd_of(fd)
        _check_poll_mask(eventmask)
        if fd not in self._masks:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        if fd not in self._fsdp_fds:
            self._k.modify(fd, eventmask)
        self._masks[fd] = eventmask

    def unregister(self, fd):
        fd = _fd_of(fd)
        if fd not in self._masks:
            raise KeyError(fd)
        del self._masks[fd]
        if fd in self._fsdp_fds:
            self._fsdp_fds.discard(fd)
        else:
            self._k.unregister(fd)

    def poll(self, timeout=None):
        timeout = _ms_timeout(timeout)
        fsdp_part, has_kernel = self._sort()
        if not fsdp_part:
            return self._k.poll(None if timeout is None else math.ceil(timeout * 1000))

        def fsdp_ready():
            out = []
            for fd, sock, mask in fsdp_part:
                ev = sock._linux_poll_mask() & (mask | _ALWAYS | _stdselect.POLLNVAL)
                if ev:
                    out.append((fd, ev))
            return out or None

        def kernel_ready(wait):
            return self._k.poll(math.ceil(wait * 1000)) or None

        f, k = _wait(fsdp_ready, kernel_ready, has_kernel, timeout)
        return self._in_order((f or []) + (k or []))


class epoll(_Registry):
    """``select.epoll()`` for transparent mode: fsdp sockets and kernel fds in one object.
    fileno()/close()/closed are the kernel epoll's (which holds the kernel fds).

    For fsdp sockets: level-triggered by default; EPOLLET reports a socket when its mask or
    its traffic (bytes received or acknowledged, connections queued) changed since it was
    last reported -- Linux reports on each wake-up, so a program that reads until EAGAIN
    sees every edge; EPOLLONESHOT reports once until the next modify()."""

    def __init__(self, sizehint=-1, flags=0):
        self._epoll_init(_kernel_epoll(sizehint, flags))

    @classmethod
    def fromfd(cls, fd):
        self = cls.__new__(cls)
        self._epoll_init(_kernel_epoll.fromfd(fd))
        return self

    def _epoll_init(self, kernel_epoll) -> None:
        import numpy as np

        from fsdp.tcp.usercalls import CI_SIZE

        self._registry_init(kernel_epoll)
        self._edge: dict[int, tuple] = {}  # EPOLLET fds: what was last reported
        self._spent: set[int] = set()  # EPOLLONESHOT fds reported since their modify()
        self._info = np.zeros(CI_SIZE, np.int64)  # _traffic's scratch (no allocation a pass)

    @property
    def closed(self):
        return self._k.closed

    def fileno(self):
        return self._k.fileno()

    def close(self):
        self._k.close()

    def __enter__(self):
        if self._k.closed:
            raise ValueError("I/O operation on closed epoll object")
        return self

    def __exit__(self, *exc):
        self.close()

    def _fsdp_mask(self, eventmask) -> int:
        """The kernel object's checks, for an fd it does not hold."""
        if self._k.closed:
            raise ValueError("I/O operation on closed epoll object")
        return operator.index(eventmask) & 0xFFFFFFFF

    def register(self, fd, eventmask=_stdselect.EPOLLIN | _stdselect.EPOLLPRI
                 | _stdselect.EPOLLOUT):
        fd = _fd_of(fd)
        if fd in self._fsdp_fds or socket_from_fileno(fd) is not None:
            eventmask = self._fsdp_mask(eventmask)
            if fd in self._masks:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
            self._fsdp_fds.add(fd)
        else:
            self._k.register(fd, eventmask)
        self._masks[fd] = eventmask & 0xFFFFFFFF
        self._edge.pop(fd, None)
        self._spent.discard(fd)

    def _not_registered(self, fd) -> bool:
        """An fsdp socket's number that is not registered: the kernel's ENOENT (for
        fsdp.socket()'s numbers the kernel object would say EBADF)."""
        if fd in self._masks or socket_from_fileno(fd) is None:
            return False
        self._fsdp_mask(0)  # (closed: ValueError first)
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))

    def modify(self, fd, eventmask):
        fd = _fd_of(fd)
        if fd in self._fsdp_fds:
            eventmask = self._fsdp_mask(eventmask)
        elif not self._not_registered(fd):
            self._k.modify(fd, eventmask)
        self._masks[fd] = eventmask & 0xFFFFFFFF
        self._edge.pop(fd, None)
        self._spent.discard(fd)

    def unregister(self, fd):
        fd = _fd_of(fd)
        if fd in self._fsdp_fds:
            self._fsdp_mask(0)  # (closed: ValueError)
            self._fsdp_fds.discard(fd)
        elif not self._not_registered(fd):
            self._k.unregister(fd)
        del self._masks[fd]
        self._edge.pop(fd, None)
        self._spent.discard(fd)

    def poll(self, timeout=None, maxevents=-1):
        if self._k.closed:
            raise ValueError("I/O operation on closed epoll object")
        if timeout is not None:
            timeout = _checked_timeout(timeout, "timeout must be an integer or None", 10 ** 9)
            timeout = None if timeout < 0 else math.ceil(timeout * 1000) / 1000
        maxevents = operator.index(maxevents)
        if maxevents == -1:
            maxevents = _FD_SETSIZE - 1
        elif maxevents < 1:
            raise ValueError(f"maxevents must be greater than 0, got {maxevents}")
        fsdp_part, has_kernel = self._sort()
        if not fsdp_part:
            return self._k.poll(timeout if timeout is not None else -1, maxevents)

        def fsdp_ready():
            out = []
            for fd, sock, mask in fsdp_part:
                if fd in self._spent:
                    continue
                ev = sock._linux_poll_mask() & (mask | _ALWAYS)
                if ev and mask & _stdselect.EPOLLET:
                    seen = (ev, _traffic(sock, self._info))
                    if self._edge.get(fd) == seen:
                        continue
                    self._edge[fd] = seen
                elif mask & _stdselect.EPOLLET:
                    self._edge[fd] = (0, None)
                if ev:
                    out.append((fd, ev))
                    if mask & _stdselect.EPOLLONESHOT:
                        self._spent.add(fd)
                    if len(out) == maxevents:
                        break
            return out or None

        def kernel_ready(wait):
            return self._k.poll(wait, maxevents) or None

        f, k = _wait(fsdp_ready, kernel_ready, has_kernel, timeout)
        return ((f or []) + (k or []))[:maxevents]


def _traffic(sock, out) -> tuple:
    """Counters that move with each event Linux would wake an edge-triggered epoll for
    (``out``: the epoll's int64[CI_SIZE] scratch row for the engine's answers)."""
    from fsdp.tcp import usercalls as uc

    if sock._lids is not None:
        queued = 0
        for core, lid in zip(sock._stack._refs, sock._lids, strict=False):
            uc.tcp_listen_info(core, lid, out)
            queued += int(out[uc.CI_BACKLOG])
        return (queued,)
    if sock._cid < 0:
        return ()
    uc.tcp_conn_info(sock._core_state(), sock._cid, out)
    return (int(out[uc.CI_BYTES_RECEIVED]), int(out[uc.CI_BYTES_ACKED]), int(out[uc.CI_STATE]))
