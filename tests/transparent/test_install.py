"""fsdp.transparent in-process: the swapped socket.socket, select.select and selectors."""

import errno
import itertools
import os
import select
import selectors
import socket
import time

import pytest

import fsdp
import fsdp.transparent
from fsdp.selectors import FsdpSelector

if "tcb" not in __import__("fsdp.core.state", fromlist=["CoreState"]).CoreState._fields:
    pytest.skip("the TCP engine is not wired into the per-core loop yet", allow_module_level=True)

_wires = itertools.count()


@pytest.fixture
def installed():
    wire = f"sim:insttest-{os.getpid()}-{next(_wires)}"
    server = fsdp.Stack(nic=wire, ip="10.9.0.1/24")
    client = fsdp.Stack(nic=wire, ip="10.9.0.2/24")
    kernel_socket, kernel_select = socket.socket, select.select
    fsdp.transparent.install(stack=server)
    try:
        yield server, client
    finally:
        fsdp.transparent.uninstall()
        client.close()
        server.close()
    assert socket.socket is kernel_socket and select.select is kernel_select
    assert selectors.DefaultSelector is not FsdpSelector


def test_swaps_and_routes(installed):
    server, client = installed
    assert selectors.DefaultSelector is FsdpSelector
    ls = socket.create_server(("0.0.0.0", 6100))
    assert isinstance(ls, socket.socket) and ls._fsdp is not None
    assert ls.getsockname() == ("0.0.0.0", 6100)
    assert ls.fileno() < (1 << 20)  # the kernel placeholder's number, stable
    c = client.socket()
    c.settimeout(5)
    c.connect(("10.9.0.1", 6100))
    ls.settimeout(5)
    conn, addr = ls.accept()
    assert isinstance(conn, socket.socket) and addr == c.getsockname()
    # select.select over an fsdp socket and a kernel pipe together
    r, w = os.pipe()
    try:
        t0 = time.monotonic()
        assert select.select([conn, r], [], [], 0.05) == ([], [], [])
        assert time.monotonic() - t0 >= 0.05
        c.sendall(b"data")
        os.write(w, b"x")
        got = set()
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            rr, ww, xx = select.select([conn, r], [conn], [], 1)
            got |= set(rr)
            assert ww == [conn]  # writable: connected with send space
        assert got == {conn, r}
        assert conn.recv(10) == b"data"
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(ValueError):
        select.select([conn], [], [], -1)
    for x in (conn, c, ls):
        x.close()


def test_refused_and_options_replayed(installed):
    server, client = installed
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(3)
    with pytest.raises(ConnectionRefusedError) as ei:
        s.connect(("10.9.0.2", 1))  # the client stack has no listener there
    assert ei.value.errno == errno.ECONNREFUSED
    assert s._fsdp is not None
    assert s.gettimeout() == 3.0 and s.timeout == 3.0
    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    with pytest.raises(OSError) as ei:
        s.dup()
    assert ei.value.errno == errno.EOPNOTSUPP
    s.close()
    assert s.fileno() == -1


def test_kernel_sockets_untouched(installed):
    s = socket.create_server(("127.0.0.1", 0))
    assert s._fsdp is None
    c = socket.create_connection(s.getsockname(), timeout=5)
    a, _ = s.accept()
    c.sendall(b"k")
    r, _, _ = select.select([a], [], [], 5)
    assert r == [a] and a.recv(1) == b"k"
    for x in (a, c, s):
        x.close()


def test_selector_registration_before_connect_follows_the_switch(installed):
    """A socket registered while still a kernel socket, then connected to an fsdp address:
    the selector moves it to the fsdp side instead of reporting the placeholder fd."""
    server, client = installed
    ls = client.socket()
    ls.bind(("0.0.0.0", 6200))
    ls.listen()
    s = socket.socket()
    s.setblocking(False)
    with selectors.DefaultSelector() as sel:
        sel.register(s, selectors.EVENT_READ, "s")
        assert s.connect_ex(("10.9.0.2", 6200)) == errno.EINPROGRESS
        ls.settimeout(5)
        conn, _ = ls.accept()
        # the placeholder (unconnected: POLLHUP) must not make s look readable
        assert sel.select(0.05) == []
        conn.sendall(b"hi")
        (key, ev), = sel.select(5)
        assert key.fileobj is s and ev == selectors.EVENT_READ
        assert s.recv(10) == b"hi"
    for x in (conn, s, ls):
        x.close()


def test_select_reports_urgent_data_as_exceptional(installed):
    """select.select's third list is the exceptional condition: urgent data (Linux POLLPRI,
    fsdp.tcp.urgent).  The urgent byte alone at the mark is not readable (Linux tcp_poll); once
    read out of band, the socket is no longer exceptional; data after it makes it readable."""
    server, client = installed
    ls = socket.create_server(("0.0.0.0", 6101))
    ls.settimeout(5)
    c = client.socket()
    c.settimeout(5)
    c.connect(("10.9.0.1", 6101))
    conn, _ = ls.accept()
    assert select.select([conn], [], [conn], 0.05) == ([], [], [])
    c.send(b"abX", socket.MSG_OOB)
    rr, _, xx = select.select([conn], [], [conn], 5)
    assert xx == [conn] and rr == [conn]
    assert conn.recv(10) == b"ab"  # the read stops at the mark
    assert select.select([conn], [], [conn], 0.05) == ([], [], [conn])  # X alone: not readable
    assert conn.recv(1, socket.MSG_OOB) == b"X"
    assert select.select([conn], [], [conn], 0.05) == ([], [], [])
    c.send(b"cd")
    assert select.select([conn], [], [conn], 5) == ([conn], [], [])
    assert conn.recv(10) == b"cd"
    for x in (conn, c, ls):
        x.close()
