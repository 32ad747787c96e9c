"""fsdp.selectors: fsdp sockets and kernel fds in one selector, with exact timeouts."""

import errno
import itertools
import os
import selectors
import socket as stdsocket
import time

import pytest

import fsdp
from fsdp.selectors import EVENT_READ, EVENT_WRITE, DefaultSelector

if "tcb" not in __import__("fsdp.core.state", fromlist=["CoreState"]).CoreState._fields:
    pytest.skip("the TCP engine is not wired into the per-core loop yet", allow_module_level=True)

_wires = itertools.count()


@pytest.fixture
def pair():
    wire = f"sim:seltest-{os.getpid()}-{next(_wires)}"
    server = fsdp.Stack(nic=wire, ip="10.9.0.1/24")
    client = fsdp.Stack(nic=wire, ip="10.9.0.2/24")
    yield server, client
    client.close()
    server.close()


def _listener(server, port=9000):
    ls = server.socket()
    ls.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen()
    ls.setblocking(False)
    return ls


def test_register_bookkeeping_and_errors(pair):
    server, _ = pair
    s = server.socket()
    r, w = os.pipe()
    try:
        with DefaultSelector() as sel:
            k1 = sel.register(s, EVENT_READ, "fsdp")
            k2 = sel.register(r, EVENT_READ, "pipe")
            assert k1.fd == s.fileno() and k1.data == "fsdp" and k1.fileobj is s
            assert sel.get_key(s) is k1 and sel.get_key(r) is k2
            assert sel.get_key(s.fileno()) is k1  # asyncio looks keys up by number
            assert set(sel.get_map()) == {s.fileno(), r}
            with pytest.raises(KeyError):
                sel.register(s, EVENT_READ)
            with pytest.raises(ValueError):
                sel.register(w, 0)
            with pytest.raises(ValueError):
                sel.register(w, 4)
            k1b = sel.modify(s, EVENT_READ | EVENT_WRITE, "x")
            assert k1b.events == EVENT_READ | EVENT_WRITE and sel.get_key(s).data == "x"
            assert sel.modify(r, EVENT_READ, "pipe2").data == "pipe2"
            assert sel.unregister(s).fd == k1.fd
            with pytest.raises(KeyError):
                sel.unregister(s)
            with pytest.raises(KeyError):
                sel.get_key(s)
            # A closed socket can still be unregistered (found by identity), as in the stdlib.
            s2 = server.socket()
            sel.register(s2, EVENT_READ)
            s2.close()
            with pytest.raises(KeyError):  # found by identity: already registered
                sel.register(s2, EVENT_READ)
            sel.unregister(s2)
            with pytest.raises(ValueError):  # fileno() == -1
                sel.register(s2, EVENT_READ)
        with pytest.raises(RuntimeError):
            sel.get_key(r)
        with pytest.raises(ValueError):
            sel.select(0)
    finally:
        os.close(r)
        os.close(w)
        s.close()


def test_timeouts_are_honoured(pair):
    server, _ = pair
    ls = _listener(server)
    r, w = os.pipe()
    try:
        with DefaultSelector() as sel:
            sel.register(ls, EVENT_READ)
            sel.register(r, EVENT_READ)
            t0 = time.monotonic()
            assert sel.select(0) == []
            assert time.monotonic() - t0 < 0.02
            t0 = time.monotonic()
            assert sel.select(-1) == []  # negative is 0, as the stdlib's
            assert time.monotonic() - t0 < 0.02
            t0 = time.monotonic()
            assert sel.select(0.05) == []
            dt = time.monotonic() - t0
            assert 0.05 <= dt < 0.09, dt
            # Idle: most of the wait is spent asleep, not spinning.
            c0 = time.process_time()
            t0 = time.monotonic()
            assert sel.select(0.3) == []
            assert time.monotonic() - t0 >= 0.3
            assert time.process_time() - c0 < 0.2
            # None waits until something is ready: a kernel fd made ready after a while.
            import threading

            threading.Timer(0.05, os.write, (w, b"!")).start()
            t0 = time.monotonic()
            ready = sel.select(None)
            assert [k.fileobj for k, ev in ready] == [r]
            assert 0.04 <= time.monotonic() - t0 < 1.0
    finally:
        os.close(r)
        os.close(w)
        ls.close()


def test_echo_mixing_fsdp_socket_and_kernel_fds(pair):
    """One selector relays: pipe -> fsdp client -> fsdp server (echo) -> fsdp client ->
    kernel socketpair."""
    server, client = pair
    ls = _listener(server, 9001)
    pr, pw = os.pipe()
    ka, kb = stdsocket.socketpair()
    c = client.socket()
    c.setblocking(False)
    assert c.connect_ex(("10.9.0.1", 9001)) == errno.EINPROGRESS
    payload = os.urandom(200_000)
    out = bytearray()
    conns = []
    try:
        with DefaultSelector() as sel:
            sel.register(ls, EVENT_READ, "accept")
            sel.register(c, EVENT_WRITE, "connected")
            sel.register(pr, EVENT_READ, "pipe")
            sel.register(kb, EVENT_READ, "kernel-out")
            to_client = bytearray()
            echo_buf = {}
            os.write(pw, payload[:60000])
            written = 60000
            deadline = time.monotonic() + 20
            while len(out) < len(payload):
                assert time.monotonic() < deadline, "relay stalled"
                if written < len(payload):
                    n = os.write(pw, payload[written:written + 4096])
                    written += n
                for key, ev in sel.select(1.0):
                    tag = key.data
                    if tag == "accept":
                        s, addr = ls.accept()
                        assert addr == c.getsockname()
                        s.setblocking(False)
                        echo_buf[s] = bytearray()
                        conns.append(s)
                        sel.register(s, EVENT_READ, "echo")
                    elif tag == "connected":
                        assert c.getsockopt(fsdp.SOL_SOCKET, fsdp.SO_ERROR) == 0
                        sel.modify(c, EVENT_READ, "client")
                    elif tag == "pipe":
                        to_client += os.read(pr, 65536)
                    elif tag == "echo":
                        s = key.fileobj
                        if ev & EVENT_READ:
                            data = s.recv(65536)
                            echo_buf[s] += data
                        if echo_buf[s]:
                            try:
                                n = s.send(echo_buf[s])
                                del echo_buf[s][:n]
                            except BlockingIOError:
                                pass
                        sel.modify(s, EVENT_READ | (EVENT_WRITE if echo_buf[s] else 0), "echo")
                    elif tag == "client":
                        if ev & EVENT_READ:
                            data = c.recv(65536)
                            ka.sendall(data)
                    elif tag == "kernel-out":
                        out += kb.recv(65536)
                if to_client and sel.get_key(c).data == "client":
                    try:
                        n = c.send(to_client)
                        del to_client[:n]
                    except BlockingIOError:
                        pass
        assert bytes(out) == payload
    finally:
        for s in conns:
            s.close()
        c.close()
        ls.close()
        os.close(pr)
        os.close(pw)
        ka.close()
        kb.close()


def test_readiness_matches_linux(pair):
    server, client = pair
    ls = _listener(server, 9002)
    fresh = client.socket()
    c = client.socket()
    c.setblocking(False)
    c.connect_ex(("10.9.0.1", 9002))
    refused = client.socket()
    refused.setblocking(False)
    # The RST may come back within the call's one poll pass (both stacks are in this process):
    # then connect_ex reports the refusal itself, as a non-blocking connect on loopback can.
    early = refused.connect_ex(("10.9.0.1", 9999))
    assert early in (errno.EINPROGRESS, errno.ECONNREFUSED)
    try:
        with DefaultSelector() as sel:
            # a socket neither connected nor listening is readable and writable (POLLHUP|POLLOUT)
            sel.register(fresh, EVENT_READ | EVENT_WRITE, "fresh")
            sel.register(refused, EVENT_WRITE, "refused")
            got = {}
            deadline = time.monotonic() + 5
            while len(got) < 2 and time.monotonic() < deadline:
                for k, ev in sel.select(0.5):
                    got[k.data] = ev
            assert got["fresh"] == EVENT_READ | EVENT_WRITE
            assert got["refused"] == EVENT_WRITE
            if early == errno.EINPROGRESS:
                assert refused.getsockopt(fsdp.SOL_SOCKET, fsdp.SO_ERROR) == errno.ECONNREFUSED
            sel.unregister(fresh)
            sel.unregister(refused)
            sel.register(ls, EVENT_READ, "ls")
            ready = sel.select(5)
            assert [(k.data, ev) for k, ev in ready] == [("ls", EVENT_READ)]
            s, _ = ls.accept()
            s.setblocking(False)
            assert sel.select(0) == []  # accept queue empty again
            sel.register(s, EVENT_READ, "s")
            assert sel.select(0.02) == []
            c.sendall(b"ping") if c.getblocking() else c.send(b"ping")
            ready = sel.select(5)
            assert [(k.data, ev) for k, ev in ready] == [("s", EVENT_READ)]
            assert s.recv(10) == b"ping"
            c.shutdown(stdsocket.SHUT_WR)
            ready = sel.select(5)
            assert [(k.data, ev) for k, ev in ready] == [("s", EVENT_READ)]
            assert s.recv(10) == b""  # readable because of EOF
            s.close()
            assert sel.select(0) == []  # a closed socket is never ready
            sel.unregister(s)
    finally:
        for x in (fresh, c, refused, ls):
            x.close()


def test_is_a_base_selector_and_only_kernel_fds_work():
    with DefaultSelector() as sel:
        assert isinstance(sel, selectors.BaseSelector)
        a, b = stdsocket.socketpair()
        with a, b:
            sel.register(a, EVENT_READ)
            assert sel.select(0) == []
            b.send(b"x")
            (key, ev), = sel.select(1)
            assert key.fileobj is a and ev == EVENT_READ


_NAP_COUNT = r"""
import sys, threading, time
import fsdp, fsdp.selectors as fsel
naps = []
real = fsel.idle_sleep
fsel.idle_sleep = lambda s: (naps.append(s), real(s))[1]
if sys.argv[2] == "thread":  # another thread: changes it makes must be seen within 1 ms
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
with fsdp.Stack(nic="sim:" + sys.argv[1], ip="10.77.7.1/24") as st:
    ls = st.socket(); ls.bind(("0.0.0.0", 80)); ls.listen()
    sel = fsel.DefaultSelector()
    sel.register(ls, fsel.EVENT_READ)
    t0 = time.monotonic()
    for _ in range(25):  # a server checking a stop flag every 20 ms, idle
        assert sel.select(0.02) == []
    print(len(naps), max(naps), time.monotonic() - t0)
"""


@pytest.mark.parametrize("threads", ["alone", "thread"])
def test_an_idle_select_loop_backs_off_across_calls(fresh_wire, threads):
    """select(0.02) called again and again with nothing happening: the naps keep growing from
    one call to the next instead of restarting at 20 µs, and a thread that is the process's
    only one (sleeping on its queue's doorbell: a frame would wake it) naps up to 50 ms; with
    another thread the cap stays FSDP_IDLE_SLEEP_US (1 ms)."""
    import subprocess
    import sys

    env = dict(os.environ, FSDP_IDLE_SLEEP_US="1000")
    out = subprocess.run([sys.executable, "-c", _NAP_COUNT, fresh_wire, threads],
                         capture_output=True, text=True, timeout=300, env=env, check=True)
    naps, longest, took = out.stdout.split()
    naps, longest, took = int(naps), float(longest), float(took)
    assert 0.5 <= took < 2.0
    if threads == "alone":
        # (restarting each call at 20 µs, doubling to 1 ms, was ~10 naps a call: ~250)
        assert naps < 80 and longest > 0.005, (naps, longest)
    else:
        assert naps > 200 and longest <= 0.001 + 1e-9, (naps, longest)
