"""fsdp.sockapi.fastcall: the socket layer's engine calls, native (fsdp._native, C) and through
Numba's entries (PyEngine), give the same results, and the native one is what a built install
uses."""

import errno
import itertools
import os
import shutil
import sysconfig

import pytest

import fsdp
from fsdp.sockapi import fastcall
from fsdp.sockapi.fastcall import PyEngine, make_engine, native_unavailable
from fsdp.tcp import usercalls as uc
from fsdp.testing import Harness

_wires = itertools.count()


@pytest.fixture
def pair():
    wire = f"sim:fastcall-{os.getpid()}-{next(_wires)}"
    server = fsdp.Stack(nic=wire, ip="10.9.3.1/24")
    client = fsdp.Stack(nic=wire, ip="10.9.3.2/24")
    yield server, client
    client.close()
    server.close()


def _engines(stack):
    """(native, python) engines for ``stack``'s cores."""
    stack.socket().close()  # the stack's engine is made with its first socket
    native = make_engine(stack._refs, stack._clock, stack._virtual_clock)
    assert not isinstance(native, PyEngine), native_unavailable(tuple(stack._refs))
    return native, PyEngine(stack._refs, stack._clock)


def _have_build_tools() -> bool:
    include = sysconfig.get_paths()["include"]
    return shutil.which("cc") is not None and os.path.exists(os.path.join(include, "Python.h"))


def test_a_built_install_calls_the_engine_natively(pair):
    """Where the install could build fsdp._native (a C compiler and Python's headers: CI's
    machine), every stack uses it: a build that failed quietly (setup.py's extension is
    optional) would cost ~0.15 µs of every socket call without a word."""
    if not _have_build_tools():
        pytest.skip("no C compiler or Python headers here: fsdp._native is optional")
    assert fastcall._native is not None, "fsdp._native was not built: pip install -e . again"
    server, _ = pair
    server.socket().close()
    assert native_unavailable(tuple(server._refs)) is None
    assert type(server._engine) is fastcall._native.Engine


def test_fsdp_native_0_chooses_the_numba_entries(pair, monkeypatch):
    monkeypatch.setenv("FSDP_NATIVE", "0")
    server, _ = pair
    server.socket().close()
    assert isinstance(server._engine, PyEngine)
    assert native_unavailable(tuple(server._refs)) == "FSDP_NATIVE=0"


def _listener(stack, port):
    ls = stack.socket()
    ls.bind(("0.0.0.0", port))
    ls.listen(16)
    ls.setblocking(False)
    return ls


def _pump(*stacks, passes=8):
    for _ in range(passes):
        for s in stacks:
            s.poll()


@pytest.mark.parametrize("which", ["native", "python"])
def test_each_call_does_what_the_usercall_does(pair, which):
    """accept, recv, send and close through one engine, the other engine's results checked
    on the same connection state: both report the same values and the same errors."""
    if which == "native" and fastcall._native is None:
        pytest.skip("fsdp._native was not built (no C compiler at install)")
    server, client = pair
    native, python = _engines(server)
    eng = native if which == "native" else python
    ls = _listener(server, 7001)
    lid = ls._lids[0]
    assert eng.accept(0, lid) == -errno.EAGAIN  # nothing queued yet
    c = client.socket()
    c.setblocking(False)
    assert c.connect_ex(("10.9.3.1", 7001)) == errno.EINPROGRESS
    _pump(server, client)
    got = eng.accept(0, lid)
    assert isinstance(got, tuple) and len(got) == 5
    cid, lip, lport, rip, rport = got
    assert (lip, lport) == (int.from_bytes(bytes([10, 9, 3, 1]), "big"), 7001)
    assert (rip, rport) == (int.from_bytes(bytes([10, 9, 3, 2]), "big"), c.getsockname()[1])
    # (the other engine sees the same accept queue, now empty)
    other = python if eng is native else native
    assert other.accept(0, lid) == eng.accept(0, lid) == -errno.EAGAIN

    assert eng.recv(0, cid, 100) == other.recv(0, cid, 100) == -errno.EAGAIN
    c.sendall(b"hello, engine")
    _pump(server, client)
    assert eng.recv(0, cid, 5) == b"hello"  # what asked for, the rest stays queued
    assert other.recv(0, cid, 100) == b", engine"
    # send: bytes, bytearray and memoryview data; an empty send asks the connection too
    assert eng.send(0, cid, b"abc") == 3
    assert eng.send(0, cid, bytearray(b"def")) == 3
    assert eng.send(0, cid, memoryview(b"xxghixx")[2:5]) == 3
    assert eng.send(0, cid, b"") == other.send(0, cid, b"") == 0
    _pump(server, client)
    assert c.recv(100) == b"abcdefghi"
    c.close()
    _pump(server, client)
    assert eng.recv(0, cid, 100) == other.recv(0, cid, 100) == b""  # end of file
    assert eng.close(0, cid) == 0
    # a connection that is gone: the same error both ways
    assert eng.recv(0, cid, 10) == other.recv(0, cid, 10) == -errno.EINVAL
    assert eng.send(0, cid, b"x") == other.send(0, cid, b"x") == -errno.EINVAL
    assert (eng.call(0, uc.OP_STATUS, cid, 0, 0, 0, 0)
            == other.call(0, uc.OP_STATUS, cid, 0, 0, 0, 0))
    ls.close()


@pytest.mark.parametrize("which", ["native", "python"])
def test_calls_that_would_overrun_a_buffer_are_refused(pair, which):
    if which == "native" and fastcall._native is None:
        pytest.skip("fsdp._native was not built (no C compiler at install)")
    server, _ = pair
    native, python = _engines(server)
    eng = native if which == "native" else python
    for op in (uc.OP_SEND, uc.OP_RECV):
        with pytest.raises(ValueError, match="no send or recv"):
            eng.call(0, op, 0, 0, 1 << 20, 0, 0)  # (1 MiB into a one-byte array)
    with pytest.raises(ValueError):
        eng.recv(0, 0, 0)
    with pytest.raises(TypeError):
        eng.send(0, 0, "text")  # not a buffer
    if eng is native:
        with pytest.raises(IndexError):
            eng.close(5, 0)  # no core 5
        with pytest.raises(TypeError):
            eng.close(0)
        with pytest.raises(OverflowError):
            eng.close(0, 1 << 70)


def test_a_virtual_clock_reaches_the_engine_through_native_calls():
    """The engine's timers run on the stack's clock: data sent through the native engine at
    virtual t = 5 s is retransmitted within the next seconds of virtual time (on the host's
    monotonic clock its timer would lie days ahead), and not at once."""
    if fastcall._native is None:
        pytest.skip("fsdp._native was not built (no C compiler at install)")
    from scapy.layers.inet import IP, TCP

    def data_segments():
        return [p for p in h.recv() if p.haslayer(TCP) and bytes(p[TCP].payload)]

    with Harness() as h:
        s = h.socket()
        s.bind(("0.0.0.0", 80))
        s.listen()
        assert type(h.stack._engine) is fastcall._native.Engine
        h.send(IP(src=h.peer_ip, dst=h.ip) / TCP(sport=4000, dport=80, flags="S", seq=100))
        synack = [p for p in h.recv() if p.haslayer(TCP)][0]
        h.send(IP(src=h.peer_ip, dst=h.ip)
               / TCP(sport=4000, dport=80, flags="A", seq=101, ack=synack[TCP].seq + 1))
        conn, _ = s.accept()
        h.advance(5.0)
        conn.sendall(b"data")  # through Stack._engine.send, at virtual t = 5 s
        assert len(data_segments()) == 1
        h.advance(0.1)  # under any RTO (Linux's floor: 200 ms)
        assert not data_segments()
        again = []
        for _ in range(30):
            h.advance(0.1)
            again += data_segments()
        assert again and bytes(again[0][TCP].payload) == b"data"
