"""``select.poll`` and ``select.epoll`` under transparent mode (fsdp/transparent/select.py)
against the kernel's.

Each scenario runs in test_stdlib_parity.py's worlds with that world's poll and epoll
classes -- the kernel's over 127.0.0.1, transparent mode's over fsdp sockets (fsdp.socket()'s
and transparent mode's own) -- and records the events reported for sockets in each state
Linux's tcp_poll tells apart, and the errors of every call made wrong.  fsdp must record what
the kernel recorded.
"""

from __future__ import annotations

import select
import socket as stdsocket
import struct
import threading
import time

import pytest
from test_stdlib_parity import (
    SOL,
    FsdpWorld,
    KernelWorld,
    TransparentWorld,
    _same,
    rec,
    run_in,
)

from fsdp.transparent import select as fsdp_select

P = select
RDHUP = getattr(select, "POLLRDHUP", 0x2000)
ALL_IN = P.POLLIN | P.POLLPRI | P.POLLOUT | RDHUP


def poll_cls(w):
    return select.poll if isinstance(w, KernelWorld) else fsdp_select.poll


def epoll_cls(w):
    return select.epoll if isinstance(w, KernelWorld) else fsdp_select.epoll


def events(w, p, *args):
    """What ``p.poll(0)`` says after the stacks (or the kernel) settled: {fd: mask}, sorted
    by registration order via the fds given."""
    w.settle(0.03)
    return p.poll(*args)


def masks_of(w, socks, make, mask=ALL_IN):
    """The events of each socket of ``socks``, polled alone (a fresh object each)."""
    out = []
    w.settle(0.03)
    for s in socks:
        p = make(w)()
        p.register(s, mask)
        got = p.poll(0)
        out.append(got[0][1] if got else 0)
        if hasattr(p, "close"):
            p.close()
    return out


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def _states(w, make):
    r = []
    fresh = w.csock()
    r.append(("fresh", masks_of(w, [fresh], make)))
    ls = w.listener()
    r.append(("listener idle", masks_of(w, [ls], make)))
    c = w.csock()
    c.settimeout(5)
    c.connect((w.srv_ip, ls.getsockname()[1]))
    r.append(("listener with one queued", masks_of(w, [ls], make)))
    s, _ = ls.accept()
    s.settimeout(5)
    r.append(("connected", masks_of(w, [c, s], make)))
    c.send(b"x" * 100)
    r.append(("data", masks_of(w, [s], make), masks_of(w, [s], make, P.POLLOUT)))
    c.send(b"!", stdsocket.MSG_OOB)
    r.append(("urgent", masks_of(w, [s], make)))
    s.recv(200)
    c.shutdown(stdsocket.SHUT_WR)
    r.append(("peer's FIN", masks_of(w, [s, c], make),
              masks_of(w, [s], make, P.POLLIN)))
    s.shutdown(stdsocket.SHUT_WR)
    r.append(("both shut down", masks_of(w, [s, c], make)))
    c2 = w.csock()
    c2.settimeout(5)
    c2.connect((w.srv_ip, ls.getsockname()[1]))
    s2, _ = ls.accept()
    s2.shutdown(stdsocket.SHUT_RD)
    r.append(("shut down for reading", masks_of(w, [s2], make)))
    c2.setsockopt(SOL, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
    c2.close()
    r.append(("reset by the peer", masks_of(w, [s2], make)))
    r.append(("error taken", rec(s2.recv, 1), masks_of(w, [s2], make)))
    c3 = w.csock()
    c3.settimeout(1)
    r.append(("refused", rec(c3.connect, (w.srv_ip, w.dead_port())), masks_of(w, [c3], make)))
    u = w.csock()
    rec(u.shutdown, stdsocket.SHUT_RD)
    r.append(("unconnected, reading shut down", masks_of(w, [u], make)))
    return r


@scenario
def poll_sees_each_state(w):
    return _states(w, poll_cls)


@scenario
def epoll_sees_each_state(w):
    return _states(w, epoll_cls)


@scenario
def poll_calls_made_wrong(w):
    p = poll_cls(w)()
    s = w.csock()

    def key_error(r):  # (KeyError(fd): the numbers differ between worlds)
        return r[0] if isinstance(r, tuple) and r[0] == "KeyError" else r

    return [rec(p.register, s, -1), rec(p.register, s, 1 << 16), rec(p.register, s, "x"),
            rec(p.register, -1), rec(p.register, "x"), rec(p.modify, s, 1),
            key_error(rec(p.unregister, s)), rec(p.register, s), rec(p.modify, s, "x"),
            rec(p.poll, "x"), rec(p.poll, 2 ** 70), rec(p.poll, float("nan")),
            rec(p.unregister, s), key_error(rec(p.unregister, s))]


@scenario
def epoll_calls_made_wrong(w):
    e = epoll_cls(w)()
    s = w.csock()
    r = [rec(e.register, s, "x"), rec(e.register, -1), rec(e.register, s),
         rec(e.register, s), rec(e.poll, 0, 0), rec(e.poll, "x"), rec(e.poll, 0, -2),
         rec(e.unregister, s), rec(e.modify, s, P.POLLIN), rec(e.unregister, s), e.closed]
    e.close()
    r += [e.closed, rec(e.register, s), rec(e.poll, 0), rec(e.modify, s, 1),
          rec(e.unregister, s), rec(e.fileno), rec(e.close), rec(e.__enter__)]
    return r


@scenario
def poll_reports_in_registration_order_and_forgets_closed_sockets(w):
    ls, c, s = w.pair()
    ls2, c2, s2 = w.pair()
    p = poll_cls(w)()
    for x in (s2, c, s, c2):
        p.register(x, P.POLLIN)
    c.send(b"a")
    c2.send(b"b")
    got = events(w, p, 0)
    order = [{s2.fileno(): "s2", s.fileno(): "s", c.fileno(): "c", c2.fileno(): "c2"}[fd]
             for fd, _ in got]
    s.close()
    after_close = [ev for _, ev in events(w, p, 0)]
    return [order, after_close]


@scenario
def epoll_edge_triggered_reports_each_arrival(w):
    ls, c, s = w.pair()
    e = epoll_cls(w)()
    e.register(s, P.EPOLLIN | P.EPOLLET)
    r = [events(w, e, 0)]  # nothing yet
    c.send(b"1")
    r.append(len(events(w, e, 0)))  # the arrival
    r.append(len(events(w, e, 0)))  # no new edge: nothing, though still readable
    c.send(b"2")
    r.append(len(events(w, e, 0)))  # a new arrival: reported again, not yet drained
    s.recv(10)
    r.append(len(events(w, e, 0)))
    c.send(b"3")
    r.append(len(events(w, e, 0)))
    e.close()
    return r


@scenario
def epoll_oneshot_until_modified(w):
    ls, c, s = w.pair()
    e = epoll_cls(w)()
    e.register(s, P.EPOLLIN | P.EPOLLONESHOT)
    c.send(b"1")
    r = [len(events(w, e, 0)), len(events(w, e, 0))]
    c.send(b"2")
    r.append(len(events(w, e, 0)))  # still spent
    e.modify(s, P.EPOLLIN | P.EPOLLONESHOT)
    r += [len(events(w, e, 0)), len(events(w, e, 0))]
    e.close()
    return r


@scenario
def epoll_maxevents(w):
    ls, c, s = w.pair()
    ls2, c2, s2 = w.pair()
    e = epoll_cls(w)()
    e.register(s, P.EPOLLOUT)
    e.register(s2, P.EPOLLOUT)
    r = [len(events(w, e, 0, 1)), len(events(w, e, 0)), len(events(w, e, 0, 5))]
    e.close()
    return r


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_poll_parity(name, stacks):
    want = run_in(KernelWorld(), SCENARIOS[name])
    got = run_in(FsdpWorld(*stacks), SCENARIOS[name])
    _same(want, got, "fsdp")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_poll_parity_transparent(name, stacks):
    want = run_in(KernelWorld(), SCENARIOS[name])
    got = run_in(TransparentWorld(*stacks), SCENARIOS[name])
    _same(want, got, "transparent")


# ---------------------------------------------------------------- waiting
@pytest.mark.parametrize("kind", ["poll", "epoll"])
def test_a_wait_ends_on_data_from_the_other_stack_or_a_kernel_pipe(stacks, kind):
    """A blocking wait on an fsdp socket and a kernel pipe together: it ends when either
    has something, and times out when neither does."""
    import os

    w = FsdpWorld(*stacks)
    rfd, wfd = os.pipe()
    try:
        ls, c, s = w.pair()
        p = fsdp_select.poll() if kind == "poll" else fsdp_select.epoll()
        p.register(s, P.POLLIN)
        p.register(rfd, P.POLLIN)
        scale = 1000 if kind == "poll" else 1  # poll counts milliseconds, epoll seconds
        t0 = time.monotonic()
        assert p.poll(0.2 * scale) == []
        assert 0.18 < time.monotonic() - t0 < 2
        threading.Timer(0.2, lambda: c.send(b"late")).start()
        t0 = time.monotonic()
        assert p.poll(5 * scale) == [(s.fileno(), P.POLLIN)]  # (only what was asked for)
        assert time.monotonic() - t0 < 3
        s.recv(10)
        threading.Timer(0.2, lambda: os.write(wfd, b"k")).start()
        assert p.poll(5 * scale) == [(rfd, P.POLLIN)]
    finally:
        os.close(rfd)
        os.close(wfd)
        w.close_all()


def test_transparent_install_swaps_poll_and_epoll_and_uninstall_restores():
    from fsdp import transparent

    kernel_poll, kernel_epoll = select.poll, select.epoll
    was = transparent.installed()
    transparent.install()
    try:
        assert select.poll is fsdp_select.poll and select.epoll is fsdp_select.epoll
    finally:
        if not was:
            transparent.uninstall()
    if not was:
        assert select.poll is kernel_poll and select.epoll is kernel_epoll
