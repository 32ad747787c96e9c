"""fsdp.selectors' incremental readiness (fsdp.core.loop.poll_status: the rows that were ready,
the connections in the core's touched log, the listeners) against a full look at every socket.

The oracle is ``Socket._poll_events`` (tcp_status of each socket, no pass), taken right after
each select(0): nothing runs between the two, so they must agree exactly."""

import itertools
import os
import random

import pytest

import fsdp
from fsdp.core.loop import SEL_PASS, SEL_POS
from fsdp.selectors import EVENT_READ, EVENT_WRITE, DefaultSelector
from fsdp.tcp.tcb import TCB_META_TOUCHED, TOUCH_LOG_SIZE

_wires = itertools.count()


@pytest.fixture
def pair():
    wire = f"sim:readylist-{os.getpid()}-{next(_wires)}"
    server = fsdp.Stack(nic=wire, ip="10.9.1.1/24")
    client = fsdp.Stack(nic=wire, ip="10.9.1.2/24")
    yield server, client
    client.close()
    server.close()


def _listener(server, port):
    ls = server.socket()
    ls.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(128)
    ls.setblocking(False)
    return ls


def _connect(server, client, ls, port):
    """A connected (client socket, accepted server socket) pair, both non-blocking."""
    c = client.socket()
    c.setblocking(False)
    c.connect_ex(("10.9.1.1", port))
    for _ in range(10_000):
        server.poll()
        client.poll()
        try:
            s, _ = ls.accept()
            break
        except BlockingIOError:
            continue
    else:
        raise AssertionError("no connection accepted")
    s.setblocking(False)
    return c, s


def _expected(sel):
    """What a look at every registered socket says now: {fd: events}."""
    out = {}
    for key in sel.get_map().values():
        ev = key.fileobj._poll_events() & key.events
        if ev:
            out[key.fd] = ev
    return out


def _check(sel):
    got = {}
    for key, ev in sel.select(0):
        assert key.fd not in got, "a key reported twice"
        got[key.fd] = ev
    assert got == _expected(sel)


def _passes(sel):
    return sum(int(rows.sel[SEL_PASS]) for per_core in sel._stack_rows.values()
               for rows in per_core)


def test_incremental_matches_a_full_look_under_random_operations(pair):
    server, client = pair
    rng = random.Random(1234)
    port = 9100
    ls = _listener(server, port)
    conns = [_connect(server, client, ls, port) for _ in range(24)]  # (client, server) sockets
    sels = [DefaultSelector(), DefaultSelector()]  # two selectors watch the same sockets
    registered = [set(), set()]
    closed = []
    try:
        for i, sel in enumerate(sels):
            sel.register(ls, EVENT_READ, "ls")
            for _c, s in conns:
                ev = rng.choice((EVENT_READ, EVENT_WRITE, EVENT_READ | EVENT_WRITE))
                sel.register(s, ev)
                registered[i].add(s)
            # the client side too: a second stack's rows, in the same select
            for c, _ in conns[:8]:
                sel.register(c, EVENT_READ | EVENT_WRITE)
                registered[i].add(c)
        for sel in sels:
            _check(sel)
        for _step in range(600):
            live = [(c, s) for c, s in conns if s is not None and not s._closed]
            op = rng.randrange(12)
            c, s = rng.choice(live) if live else (None, None)
            if op <= 2 and c is not None and not c._closed:
                try:
                    c.send(os.urandom(rng.choice((1, 100, 3000))))
                except OSError:
                    pass
            elif op <= 4 and s is not None:
                try:
                    s.recv(rng.choice((1, 50, 100_000)))
                except OSError:
                    pass
            elif op == 5 and s is not None:
                try:
                    s.send(b"x" * rng.choice((1000, 200_000)))  # may fill the send buffer
                except OSError:
                    pass
                if not c._closed:
                    try:
                        c.recv(rng.choice((10, 300_000)))
                    except OSError:
                        pass
            elif op == 6 and c is not None and not c._closed:
                try:
                    c.shutdown(rng.choice((fsdp.SHUT_WR, fsdp.SHUT_RDWR)))
                except OSError:
                    pass
            elif op == 7 and c is not None and not c._closed:
                if rng.random() < 0.5:
                    c.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_LINGER, b"\x01\0\0\0\0\0\0\0")  # RST
                for sel, reg in zip(sels, registered, strict=True):
                    if c in reg:
                        reg.discard(c)
                        sel.unregister(c)
                c.close()
            elif op == 8 and s is not None:
                s.close()  # still registered: a closed socket is never ready
                closed.append(s)
            elif op == 9 and len(conns) < 60:
                c2 = client.socket()
                c2.setblocking(False)
                c2.connect_ex(("10.9.1.1", port))  # accepted at op 10, after the listener's look
                conns.append((c2, None))
            elif op == 10:
                try:
                    s2, _ = ls.accept()
                except BlockingIOError:
                    pass
                else:
                    s2.setblocking(False)
                    idx = next((k for k, (_, x) in enumerate(conns) if x is None), None)
                    c2 = conns[idx][0] if idx is not None else client.socket()
                    if idx is not None:
                        conns[idx] = (c2, s2)
                    else:
                        conns.append((c2, s2))
                    for sel, reg in zip(sels, registered, strict=True):
                        sel.register(s2, EVENT_READ | EVENT_WRITE)
                        reg.add(s2)
            elif op == 11 and s is not None:
                k = rng.randrange(2)
                if s in registered[k]:
                    if rng.random() < 0.5:
                        sels[k].unregister(s)
                        registered[k].discard(s)
                    else:
                        sels[k].modify(s, rng.choice((EVENT_READ, EVENT_WRITE,
                                                      EVENT_READ | EVENT_WRITE)))
                else:
                    sels[k].register(s, EVENT_READ)
                    registered[k].add(s)
            _check(sels[rng.randrange(2)])  # each select is one pass: the selectors interleave
        # most looks were incremental (the test would pass as well with full scans)
        assert _passes(sels[0]) + _passes(sels[1]) > 400
    finally:
        for sel in sels:
            sel.close()
        for c, s in conns:
            for x in (c, s):
                if x is not None:
                    x.close()
        for x in closed:
            x.close()
        ls.close()


def test_two_selectors_both_see_readiness(pair):
    server, client = pair
    ls = _listener(server, 9101)
    c, s = _connect(server, client, ls, 9101)
    a, b = DefaultSelector(), DefaultSelector()
    try:
        a.register(s, EVENT_READ, "a")
        b.register(s, EVENT_READ, "b")
        assert a.select(0) == [] and b.select(0) == []
        c.send(b"ping")
        assert [k.data for k, _ in a.select(1)] == ["a"]
        assert [k.data for k, _ in b.select(1)] == ["b"]  # a's look did not consume it
        assert [k.data for k, _ in a.select(0)] == ["a"]  # level-triggered: still ready
        assert s.recv(10) == b"ping"
        assert a.select(0) == [] and b.select(0) == []
    finally:
        a.close()
        b.close()
        for x in (c, s, ls):
            x.close()


def test_log_overflow_falls_back_to_a_full_look(pair):
    server, client = pair
    ls = _listener(server, 9102)
    (cx, sx), (cy, sy) = _connect(server, client, ls, 9102), _connect(server, client, ls, 9102)
    cy.setsockopt(fsdp.IPPROTO_TCP, fsdp.TCP_NODELAY, 1)  # no Nagle wait for the ACK per round
    a, b = DefaultSelector(), DefaultSelector()
    try:
        a.register(sx, EVENT_READ, "x")
        b.register(sy, EVENT_READ, "y")
        assert a.select(0) == [] and b.select(0) == []
        cx.send(b"x")  # lands in x's rows' log entry, then is overwritten:
        for _ in range(TOUCH_LOG_SIZE + 10):
            cy.send(b"y")
            for _ in range(1000):  # each look begins an epoch: y is logged again every round
                if b.select(0):
                    break
            assert sy.recv(10) == b"y"
        core = server._cores[sx._core]
        rows = a._stack_rows[server][sx._core]
        assert core.tcb.meta[TCB_META_TOUCHED] - rows.sel[SEL_POS] > TOUCH_LOG_SIZE
        assert [(k.data, ev) for k, ev in a.select(0)] == [("x", EVENT_READ)]
        assert sx.recv(10) == b"x"
        assert a.select(0) == []
    finally:
        a.close()
        b.close()
        for x in (cx, sx, cy, sy, ls):
            x.close()
