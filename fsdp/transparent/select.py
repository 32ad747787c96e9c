"""``select.select`` for transparent mode: fsdp sockets and kernel fds in the same lists.

Waits the way :class:`fsdp.selectors.FsdpSelector` does (every fsdp stack polled each pass,
busy-poll after activity, then growing naps), and asks the kernel's ``select`` about the kernel
fds in each pass — so ``xlist`` keeps its meaning for them.  An fsdp socket is in the
"exceptional" list while its urgent byte is there to read (Linux POLLPRI; fsdp.tcp.urgent).
"""

from __future__ import annotations

import operator
import select as _stdselect
import time

from fsdp.sockapi.socket import POLL_PRI, POLL_READ, POLL_WRITE, socket_from_fileno

_kernel_select = _stdselect.select  # taken before transparent mode patches the module


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


def select(rlist, wlist, xlist, timeout=None):
    """``select.select(rlist, wlist, xlist[, timeout])`` with fsdp sockets allowed."""
    from fsdp.core.stack import _live_stacks, idle_sleep, poll_all_stacks
    from fsdp.selectors import _env_us

    rlist, wlist, xlist = list(rlist), list(wlist), list(xlist)
    if timeout is not None:
        # the stdlib's checks and texts
        if isinstance(timeout, float):
            if timeout != timeout:
                raise ValueError("Invalid value NaN (not a number)")
        else:
            try:
                timeout = operator.index(timeout)
            except TypeError:
                raise TypeError("timeout must be a float or None") from None
            if abs(timeout) > (2 ** 63 - 1) // 10 ** 9:
                raise OverflowError("timestamp too large to convert to C _PyTime_t")
        timeout = float(timeout)
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    fr, kr = _split(rlist)
    fw, kw = _split(wlist)
    fx, kx = _split(xlist)
    if not (fr or fw or fx) and not _live_stacks:
        return _kernel_select(kr, kw, kx, timeout)
    busy = _env_us("FSDP_BUSY_POLL_US", 200) / 1e6
    cap = _env_us("FSDP_IDLE_SLEEP_US", 1000) / 1e6
    has_kernel = bool(kr or kw or kx)
    start = last_activity = time.monotonic()
    deadline = None if timeout is None else start + timeout
    nap = 0.0
    wait = 0.0
    while True:
        moved = poll_all_stacks()
        r = [o for o, s in fr if s._poll_events() & POLL_READ]
        w = [o for o, s in fw if s._poll_events() & POLL_WRITE]
        x = [o for o, s in fx if s._poll_events() & POLL_PRI]
        if has_kernel:
            k = _kernel_select(kr, kw, kx, 0 if (r or w or x or moved) else wait)
        else:
            k = ([], [], [])
            if wait > 0 and not (r or w or x or moved):
                idle_sleep(wait)  # a frame for the stack's queue wakes it
        if r or w or x or k[0] or k[1] or k[2]:
            return (_in_order(rlist, r + k[0]), _in_order(wlist, w + k[1]),
                    _in_order(xlist, x + k[2]))
        now = time.monotonic()
        if moved:
            last_activity = now
            nap = 0.0
        if deadline is not None and now >= deadline:
            return [], [], []
        if now - last_activity < busy:
            wait = 0.0
            continue
        nap = min(cap, max(2 * nap, 20e-6))
        wait = nap if deadline is None else max(0.0, min(nap, deadline - now))
