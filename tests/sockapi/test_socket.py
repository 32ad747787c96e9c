"""fsdp sockets behave like socket.socket: two stacks on one sim wire in one thread."""

import errno
import hashlib
import itertools
import json
import os
import socket as stdsocket
import struct
import time

import numpy as np
import pytest
from bulk_pair import stream

import fsdp

_wires = itertools.count()


@pytest.fixture
def pair():
    wire = f"sim:socktest-{os.getpid()}-{next(_wires)}"
    server = fsdp.Stack(nic=wire, ip="10.9.0.1/24")
    client = fsdp.Stack(nic=wire, ip="10.9.0.2/24")
    yield server, client
    client.close()
    server.close()


def connected(pair, port=8080):
    server, client = pair
    ls = server.socket(fsdp.AF_INET, fsdp.SOCK_STREAM)
    ls.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen()
    c = client.socket()
    c.settimeout(5)
    c.connect(("10.9.0.1", port))
    ls.settimeout(5)
    s, addr = ls.accept()
    s.settimeout(5)
    return ls, c, s, addr


def test_echo_roundtrip_and_addresses(pair):
    ls, c, s, addr = connected(pair)
    assert addr == c.getsockname()
    assert c.getpeername() == ("10.9.0.1", 8080)
    assert s.getsockname() == ("10.9.0.1", 8080)
    c.sendall(b"hello fsdp")
    assert s.recv(100) == b"hello fsdp"
    s.sendall(b"x" * 100_000)
    got = b""
    while len(got) < 100_000:
        got += c.recv(65536)
    assert got == b"x" * 100_000
    c.close()
    assert s.recv(10) == b""  # EOF
    s.close()
    ls.close()


def test_connection_refused(pair):
    _, client = pair
    c = client.socket()
    c.settimeout(5)
    with pytest.raises(ConnectionRefusedError):
        c.connect(("10.9.0.1", 9))
    c2 = client.socket()
    c2.settimeout(5)
    assert c2.connect_ex(("10.9.0.1", 9)) == errno.ECONNREFUSED


def test_recv_timeout(pair):
    ls, c, s, _ = connected(pair)
    c.settimeout(0.05)
    with pytest.raises(TimeoutError):
        c.recv(10)


def test_nonblocking_calls(pair):
    server, client = pair
    ls = server.socket()
    ls.bind(("", 8081))
    ls.listen(8)
    ls.setblocking(False)
    with pytest.raises(BlockingIOError):
        ls.accept()
    c = client.socket()
    c.setblocking(False)
    with pytest.raises(BlockingIOError) as e:
        c.connect(("10.9.0.1", 8081))
    assert e.value.errno == errno.EINPROGRESS
    for _ in range(1000):
        fsdp.poll_all_stacks()
        if c.connect_ex(("10.9.0.1", 8081)) == errno.EISCONN:
            break
    else:
        pytest.fail("non-blocking connect never completed")
    s, _ = ls.accept()
    s.setblocking(False)
    with pytest.raises(BlockingIOError):
        s.recv(10)
    assert c.getsockopt(fsdp.SOL_SOCKET, fsdp.SO_ERROR) == 0


def test_shutdown_write_gives_peer_eof_but_keeps_reading(pair):
    ls, c, s, _ = connected(pair)
    c.shutdown(fsdp.SHUT_WR)
    assert s.recv(10) == b""
    s.sendall(b"still here")
    assert c.recv(100) == b"still here"
    with pytest.raises(BrokenPipeError):
        c.send(b"no")


def test_bind_errors(pair):
    server, _ = pair
    a = server.socket()
    a.bind(("10.9.0.1", 7000))
    a.listen()
    b = server.socket()
    with pytest.raises(OSError) as e:
        b.bind(("10.9.0.1", 7000))
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as e:
        server.socket().bind(("10.9.0.77", 7001))
    assert e.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(TypeError):
        server.socket().bind("10.9.0.1:80")
    with pytest.raises(OverflowError):
        server.socket().bind(("10.9.0.1", 70000))
    x = server.socket()
    x.bind(("", 0))
    assert x.getsockname()[1] >= 32768


def test_closed_socket_and_unconnected_errors(pair):
    server, _ = pair
    s = server.socket()
    with pytest.raises(OSError) as e:
        s.getpeername()
    assert e.value.errno == errno.ENOTCONN
    with pytest.raises(BrokenPipeError):  # Linux: send() on an unconnected TCP socket
        s.send(b"x")
    s.close()
    s.close()  # idempotent
    with pytest.raises(OSError) as e:
        s.recv(1)
    assert e.value.errno == errno.EBADF
    assert s.fileno() == -1
    with pytest.raises(OSError):
        server.socket(stdsocket.AF_INET6, stdsocket.SOCK_STREAM)
    with pytest.raises(OSError):
        server.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
    for no_fd in (server.socket().dup, server.socket().detach):  # no kernel fd behind it
        with pytest.raises(OSError) as e:
            no_fd()
        assert e.value.errno == errno.EOPNOTSUPP


def test_options(pair):
    ls, c, s, _ = connected(pair)
    c.setsockopt(fsdp.IPPROTO_TCP, fsdp.TCP_NODELAY, 1)
    assert c.getsockopt(fsdp.IPPROTO_TCP, fsdp.TCP_NODELAY) != 0
    c.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_KEEPALIVE, 1)
    assert c.getsockopt(fsdp.SOL_SOCKET, fsdp.SO_KEEPALIVE) != 0
    c.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_LINGER, struct.pack("ii", 1, 0))
    assert struct.unpack("ii", c.getsockopt(fsdp.SOL_SOCKET, fsdp.SO_LINGER, 8)) == (1, 0)
    c.close()  # linger 0: abortive close, the peer sees a reset
    with pytest.raises(ConnectionResetError):
        for _ in range(3):
            s.recv(10)


def test_the_socket_modules_constants_and_errors_are_fsdps(pair):
    """CONTRACT.md §1: ``fsdp.AF_INET, fsdp.SOCK_STREAM, ...`` are the socket module's values
    (the keep-alive tuning, IP and MSG names too, which programs pass to fsdp sockets), and its
    exception names are the stdlib's."""
    names = ("AF_INET", "SOCK_STREAM", "SOCK_NONBLOCK", "SOL_SOCKET", "IPPROTO_TCP", "IPPROTO_IP",
             "TCP_NODELAY", "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_MAXSEG",
             "SO_REUSEADDR", "SO_REUSEPORT", "SO_KEEPALIVE", "SO_LINGER", "SO_RCVBUF",
             "SO_SNDBUF", "SO_ERROR", "IP_TOS", "IP_TTL", "MSG_PEEK", "MSG_DONTWAIT",
             "SHUT_RDWR", "SOMAXCONN", "INADDR_ANY")
    for name in names:
        assert getattr(fsdp, name) == getattr(stdsocket, name) and name in fsdp.__all__, name
    assert fsdp.AF_INET is stdsocket.AF_INET  # (the enum member itself)
    assert (fsdp.error, fsdp.timeout) == (OSError, TimeoutError)
    assert fsdp.gaierror is stdsocket.gaierror
    ls, c, s, _ = connected(pair)
    c.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_KEEPALIVE, 1)
    for opt, v in ((fsdp.TCP_KEEPIDLE, 30), (fsdp.TCP_KEEPINTVL, 5), (fsdp.TCP_KEEPCNT, 3)):
        c.setsockopt(fsdp.IPPROTO_TCP, opt, v)
        assert c.getsockopt(fsdp.IPPROTO_TCP, opt) == v
    c.setsockopt(fsdp.IPPROTO_IP, fsdp.IP_TOS, 0x10)
    assert c.getsockopt(fsdp.IPPROTO_IP, fsdp.IP_TOS) == 0x10
    c.sendall(b"peek")
    assert s.recv(4, fsdp.MSG_PEEK) == b"peek" and s.recv(4) == b"peek"


def test_makefile_lines(pair):
    ls, c, s, _ = connected(pair)
    c.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    f = s.makefile("rb")
    assert f.readline() == b"GET / HTTP/1.0\r\n"
    assert f.readline() == b"Host: x\r\n"
    f.close()
    w = s.makefile("wb")
    w.write(b"HTTP/1.0 200 OK\r\n\r\n")
    w.flush()
    w.close()
    assert c.recv(100).startswith(b"HTTP/1.0 200 OK")


def test_context_manager_and_connections_table(pair):
    server, client = pair
    ls, c, s, _ = connected(pair, port=8443)
    states = {(r["local"], r["state"]) for r in server.connections()}
    assert ("10.9.0.1:8443", "ESTAB") in states
    with c:
        pass
    assert c.fileno() == -1


def test_bulk_transfer_with_faults_is_intact(pair):
    """5% loss, 5% reordering, 1% duplication both ways: data arrives intact (SHA-256)."""
    server, client = pair
    for st in pair:
        st.port.set_faults(drop=0.05, reorder=0.05, duplicate=0.01, seed=7)
    ls, c, s, _ = connected(pair, port=9000)
    c.settimeout(60)
    s.settimeout(60)
    data = os.urandom(2_000_000)
    c.setblocking(False)
    s.setblocking(False)
    got = stream(c, s, data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_default_stack_is_made_once_when_threads_race(monkeypatch):
    """Two threads opening their first fsdp.socket() at once share one default stack (a second
    stack would try to attach the same MAC to the wire)."""
    import threading

    from fsdp.core import stack as stack_mod

    monkeypatch.setenv("FSDP_NIC", f"sim:defrace-{os.getpid()}")
    monkeypatch.setenv("FSDP_IP", "10.77.0.2/24")
    monkeypatch.setattr(stack_mod, "_default_stack", None)
    barrier = threading.Barrier(4)
    made, errors = [], []

    def first_socket():
        barrier.wait()
        try:
            s = fsdp.socket()
            made.append(s._stack)
            s.close()
        except Exception as e:  # pragma: no cover - the failure being tested
            errors.append(e)

    threads = [threading.Thread(target=first_socket) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({id(s) for s in made}) == 1
    made[0].close()


# ---- SO_REUSEPORT groups (fsdp.tcp.listen).  Bind rules against the kernel's answers:
# test_stdlib_parity.py (reuseport_*); segment by segment against Linux:
# tests/conformance/test_reuseport.py.
def _reuseport_listeners(server, n, port):
    out = []
    for _ in range(n):
        ls = server.socket()
        ls.setsockopt(fsdp.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
        ls.bind(("0.0.0.0", port))
        ls.listen(64)
        ls.setblocking(False)
        out.append(ls)
    return out


def _connect_many(client, n, port):
    out = []
    for _ in range(n):
        c = client.socket()
        c.settimeout(5)
        c.connect(("10.9.0.1", port))
        out.append(c)
    return out


def _accept_all(ls) -> list:
    out = []
    while True:
        try:
            out.append(ls.accept()[0])
        except BlockingIOError:
            return out


def _pump(*stacks, rounds=20):
    for _ in range(rounds):
        for st in stacks:
            st.poll()


def _echo_each(clients, accepted):
    """Every client's connection was accepted exactly once, and carries data both ways."""
    by_peer = {s.getpeername(): s for s in accepted}
    assert len(by_peer) == len(accepted) == len(clients)
    assert set(by_peer) == {c.getsockname() for c in clients}
    for i, c in enumerate(clients):
        s = by_peer[c.getsockname()]
        s.settimeout(5)
        c.sendall(b"ping %d" % i)
        assert s.recv(64) == b"ping %d" % i
        s.sendall(b"pong %d" % i)
        assert c.recv(64) == b"pong %d" % i


def test_reuseport_listeners_share_a_port_and_its_connections(pair, capsys):
    """Two listeners with SO_REUSEPORT on one port: each SYN goes to one of them (by the hash
    of its 4-tuple), each has its own accept queue (fsdp ss shows both), a selector reports
    each one when its own queue fills, and every connection is accepted once."""
    from fsdp.apps.observe import run_ss
    from fsdp.selectors import EVENT_READ, DefaultSelector

    server, client = pair
    listeners = _reuseport_listeners(server, 2, 8470)
    clients = _connect_many(client, 32, 8470)
    _pump(server, client)

    assert run_ss(os.getpid(), listening=True, as_json=True) == 0
    rows = [r for r in json.loads(capsys.readouterr().out) if r["local"] == "0.0.0.0:8470"]
    queued = sorted(r["recv_q"] for r in rows)
    assert len(rows) == 2 and sum(queued) == 32 and queued[0] > 0

    accepted = {0: [], 1: []}
    with DefaultSelector() as sel:
        for i, ls in enumerate(listeners):
            sel.register(ls, EVENT_READ, i)
        deadline = time.monotonic() + 10
        while sum(map(len, accepted.values())) < 32:
            assert time.monotonic() < deadline
            for key, _ in sel.select(1):
                accepted[key.data] += _accept_all(key.fileobj)
    assert sorted(map(len, accepted.values())) == queued
    _echo_each(clients, accepted[0] + accepted[1])


def test_closing_a_reuseport_member_resets_its_queue_only(pair):
    """Linux inet_csk_listen_stop (net.ipv4.tcp_migrate_req=0): closing one member resets the
    connections waiting in its accept queue; one it accepted before goes on, the other
    member's queue is untouched, and the other member takes every new connection."""
    server, client = pair
    a, b = _reuseport_listeners(server, 2, 8471)
    clients = _connect_many(client, 32, 8471)
    _pump(server, client)
    kept = a.accept()[0]
    a.close()
    _pump(server, client)
    reset, alive = [], []
    for c in clients:
        c.setblocking(False)
        try:
            c.recv(1)
        except ConnectionResetError:
            reset.append(c)
        except BlockingIOError:
            alive.append(c)
    assert reset, "a's accept queue held some of the 32"
    kept_client = next(c for c in alive if c.getsockname() == kept.getpeername())
    alive.remove(kept_client)
    for c in alive:
        c.settimeout(5)
    kept_client.settimeout(5)
    _echo_each([kept_client], [kept])
    later = _connect_many(client, 8, 8471)
    _pump(server, client)
    _echo_each(alive + later, _accept_all(b))


def test_reuseport_group_on_a_four_core_stack():
    """Listen spawn with a group: every core's listen table holds both members, the port's
    global listen table keeps each core's bit while either member listens, connections
    arrive on several cores and are shared by both members."""
    from fsdp.tcp import usercalls as uc

    wire = f"sim:socktest-{os.getpid()}-{next(_wires)}"
    with fsdp.Stack(nic=wire, ip="10.9.0.1/24", cores=4) as server, \
            fsdp.Stack(nic=wire, ip="10.9.0.2/24", cores=4) as client:
        a, b = _reuseport_listeners(server, 2, 8472)
        ids = np.zeros(16, np.int32)
        for k, core in enumerate(server._refs):
            n = int(uc.tcp_listen_list(core, ids))
            assert sorted(ids[:n].tolist()) == sorted([a._lids[k], b._lids[k]])
        listen_map = server._cores[0].listen_map
        assert listen_map[8472] == 0b1111
        clients = _connect_many(client, 32, 8472)
        _pump(server, client)
        in_a, in_b = _accept_all(a), _accept_all(b)
        assert in_a and in_b
        assert len({s._core for s in in_a + in_b}) > 1
        _echo_each(clients, in_a + in_b)
        a.close()
        assert listen_map[8472] == 0b1111  # b still listens on every core
        later = _connect_many(client, 4, 8472)
        _pump(server, client)
        _echo_each(later, _accept_all(b))
        b.close()
        assert listen_map[8472] == 0
        for s in clients + later + in_a + in_b:
            s.close()


def test_busy_polls_yield_the_cpu(pair, monkeypatch):
    """A blocking recv() and a selector's select() busy-poll before they sleep, and each empty
    pass yields the CPU (sched_yield): a peer process woken on the same CPU -- the server a
    request woke, the client its answer woke -- must not wait out the whole busy-poll (it cost
    each wake ~170 µs after 10 ms of quiet on a 2-CPU VM: benchmarks/idle_wake.py)."""
    from fsdp.selectors import EVENT_READ, DefaultSelector

    ls, c, s, _ = connected(pair)
    yields = []
    real = os.sched_yield
    monkeypatch.setattr(os, "sched_yield", lambda: (yields.append(1), real())[1])
    c.settimeout(0.02)
    with pytest.raises(TimeoutError):
        c.recv(1)  # nothing comes: busy-poll, then naps
    assert yields, "recv's busy-poll never yielded"
    yields.clear()
    # (a busy-poll window far longer than a preemption: the default 200 µs runs from the
    # selector's creation, and a loaded machine could spend it before the first look)
    with DefaultSelector(busy_poll_us=10_000) as sel:
        sel.register(s, EVENT_READ)
        assert sel.select(0.02) == []
    assert yields, "select's busy-poll never yielded"
    for x in (c, s, ls):
        x.close()
