"""fsdp.sockapi.fastcall: the socket layer's engine calls, native (fsdp._native, C) and through
Numba's entries (PyEngine), give the same results, and the native one is what a built install
uses."""

import errno
import itertools
import os
import shutil
import socket as stdsocket
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
    return native, PyEngine(stack._refs, stack._clock, stack._virtual_clock)


def _require_native() -> None:
    """Skip where fsdp._native is not in use: not built (no C compiler at the install; CI's
    machine has one, and test_a_built_install_calls_the_engine_natively fails there if the
    build did not happen), or switched off with FSDP_NATIVE=0."""
    if fastcall._native is None:
        pytest.skip("fsdp._native was not built (no C compiler at install)")
    if os.environ.get("FSDP_NATIVE", "1") == "0":
        pytest.skip("FSDP_NATIVE=0: the Python paths run")


def _have_build_tools() -> bool:
    include = sysconfig.get_paths()["include"]
    return shutil.which("cc") is not None and os.path.exists(os.path.join(include, "Python.h"))


def test_a_built_install_calls_the_engine_natively(pair):
    """Where the install could build fsdp._native (a C compiler and Python's headers: CI's
    machine), every stack uses it: a build that failed quietly (setup.py's extension is
    optional) would cost ~0.15 µs of every socket call without a word."""
    if not _have_build_tools():
        pytest.skip("no C compiler or Python headers here: fsdp._native is optional")
    if os.environ.get("FSDP_NATIVE", "1") == "0":
        pytest.skip("FSDP_NATIVE=0: the Python paths run")
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
    _require_native()
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
    _require_native()
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
    _require_native()
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


# ---- Socket's C methods (fsdp._native.bind_socket_class) ---------------------------------
def _python_frames(fn):
    """(result of fn(), names of the Python functions it ran): a C method that did the call
    itself runs none of Socket's."""
    import sys

    names = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_name != "<lambda>":
            names.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        r = fn()
    finally:
        sys.setprofile(None)
    return r, names


def _connected(server, client, port):
    ls = _listener(server, port)
    c = client.socket()
    c.setblocking(False)
    c.connect_ex(("10.9.3.1", port))
    _pump(server, client)
    return ls, c


def test_the_usual_socket_calls_run_in_c(pair):
    _require_native()
    server, client = pair
    ls, c = _connected(server, client, 7002)
    (s, addr), frames = _python_frames(ls.accept)
    assert frames == ["_ip_str"] or frames == []  # (the peer's address string, lru-cached)
    assert addr == c.getsockname() and s.getpeername() == addr
    assert s.getsockname() == ("10.9.3.1", 7002) and s.fileno() != c.fileno()
    assert s.gettimeout() is None and s.family == fsdp.AF_INET and s._pending_opts == {}
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    _pump(server, client)
    got, frames = _python_frames(lambda: s.recv(4096))
    assert got == b"GET / HTTP/1.0\r\n\r\n" and frames == []
    r, frames = _python_frames(lambda: s.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello"))
    assert r is None and frames == []
    s.fileno()  # numbered, as a selector's register() makes it
    assert fsdp.sockapi.socket.socket_from_fileno(s.fileno()) is s
    fd = s.fileno()
    r, frames = _python_frames(s.close)
    assert r is None and frames == []
    assert s._closed and s._cid == -1 and s.fileno() == -1
    assert fsdp.sockapi.socket.socket_from_fileno(fd) is None
    assert id(s) not in server._sockets
    _pump(server, client)
    assert c.recv(100) == b"HTTP/1.0 200 OK\r\n\r\nhello" and c.recv(100) == b""
    with pytest.raises(OSError) as e:
        s.recv(10)
    assert e.value.errno == errno.EBADF
    ls.close()


def test_unusual_socket_calls_take_the_python_methods(pair):
    """Flags, other argument types, a socket with a timeout, nothing queued: the Python
    method runs (and gives what it always gave)."""
    _require_native()
    server, client = pair
    ls, c = _connected(server, client, 7003)
    s, _ = ls.accept()
    ls.setblocking(False)
    with pytest.raises(BlockingIOError):
        _, frames = _python_frames(ls.accept)  # none ready: Python's way says so
    c.sendall(b"abcdef")
    _pump(server, client)
    got, frames = _python_frames(lambda: s.recv(3, stdsocket.MSG_PEEK))
    assert got == b"abc" and "recv" in frames
    got, frames = _python_frames(lambda: s.recv(bufsize=2))
    assert got == b"ab" and "recv" in frames
    with pytest.raises(BlockingIOError):
        s.setblocking(False)
        s.recv(100), s.recv(100)  # the rest, then nothing: EAGAIN through Python's way
    with pytest.raises(TypeError):
        s.recv("1")
    s.settimeout(2.0)
    r, frames = _python_frames(lambda: s.sendall(b"xyz"))
    assert r is None and "sendall" in frames
    s.close()
    ls.close()


def test_a_sendall_the_send_buffer_cannot_take_whole_goes_on_in_python(pair):
    """A blocking sendall of more than the send buffer holds: C sends what fits, Python's
    _sendall_rest the rest, each byte once and in order."""
    _require_native()
    server, client = pair
    ls, c = _connected(server, client, 7004)
    s, _ = ls.accept()
    s.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_SNDBUF, 4096)
    data = bytes(range(256)) * 160  # 40 KiB: more than the send buffer, less than the window
    r, frames = _python_frames(lambda: s.sendall(data))
    assert r is None and "_sendall_rest" in frames and "sendall" not in frames
    got = b""
    for _ in range(1000):
        _pump(server, client, passes=1)
        try:
            got += c.recv(65536)
        except BlockingIOError:
            pass
        if len(got) >= len(data):
            break
    assert got == data
    s.close()
    ls.close()


def test_send_takes_bytes_bytearrays_and_memoryviews_in_c(pair):
    _require_native()
    server, client = pair
    ls, c = _connected(server, client, 7005)
    s, _ = ls.accept()
    for data in (b"ab", bytearray(b"cd"), memoryview(b"..ef..")[2:4]):
        n, frames = _python_frames(lambda data=data: s.send(data))
        assert n == 2 and frames == []
    # other types, flags, nothing to send: Python's way, with its answers
    with pytest.raises(BufferError):  # (as CPython's send: "y*" wants a contiguous buffer)
        s.send(memoryview(b"g-h-")[::2])
    n, frames = _python_frames(lambda: s.send(b"gh", 0))
    assert n == 2 and frames == []
    assert s.send(b"", 0) == 0
    with pytest.raises(TypeError):
        s.send("text")
    _pump(server, client)
    assert c.recv(100) == b"abcdefgh"
    c.close()
    _pump(server, client)
    s.recv(10)
    s.send(b"x")  # the peer's FIN was before it: accepted, then the peer answers with RST
    _pump(server, client)
    with pytest.raises(OSError) as e:
        for _ in range(3):
            s.send(b"y")
            _pump(server, client)
    assert e.value.errno in (errno.EPIPE, errno.ECONNRESET)
    s.close()
    ls.close()


# ---- FsdpSelector's C methods (fsdp._native.bind_selector_class) --------------------------
def test_registering_a_connection_runs_in_c_and_reports_as_python_did(pair):
    """register / unregister of connected sockets in C; the listener, a pipe and the core's
    last row through the Python methods; readiness is reported the same either way."""
    _require_native()
    from fsdp.selectors import EVENT_READ, EVENT_WRITE, DefaultSelector, SelectorKey

    server, client = pair
    ls, c = _connected(server, client, 7006)
    s, _ = ls.accept()
    c2 = client.socket()
    c2.setblocking(False)
    c2.connect_ex(("10.9.3.1", 7006))
    _pump(server, client)
    s2, _ = ls.accept()
    r, w = os.pipe()
    try:
        with DefaultSelector() as sel:
            key, frames = _python_frames(lambda: sel.register(ls, EVENT_READ, "L"))
            assert "register" in frames  # a listener: Python's way
            key, frames = _python_frames(lambda: sel.register(s, EVENT_READ, "S"))
            assert frames == [] and type(key) is SelectorKey
            assert key == (s, s.fileno(), EVENT_READ, "S") and sel.get_key(s) is key
            assert fsdp.sockapi.socket.socket_from_fileno(s.fileno()) is s
            key2, frames = _python_frames(lambda: sel.register(s2, EVENT_READ | EVENT_WRITE))
            assert frames == [] and key2.data is None
            sel.register(r, EVENT_READ, "pipe")
            with pytest.raises(KeyError):
                sel.register(s, EVENT_READ)  # (again: the Python method says so)
            with pytest.raises(ValueError):
                sel.register(s2, 4)
            assert {k.data for k, _ in sel.select(0)} == {None}  # s2 writable; s has nothing
            c.sendall(b"ping")
            os.write(w, b"x")
            _pump(server, client)
            got = {k.data: ev for k, ev in sel.select(0)}
            assert got == {"S": EVENT_READ, None: EVENT_WRITE, "pipe": EVENT_READ}
            out, frames = _python_frames(lambda: sel.unregister(s))
            assert frames == [] and out is key and s._selectors == []
            with pytest.raises(KeyError):
                sel.unregister(s)  # not registered now: Python's way raises
            assert {k.data for k, _ in sel.select(0)} == {None, "pipe"}
            sel.unregister(ls)
            out, frames = _python_frames(lambda: sel.unregister(s2))
            assert "unregister" in frames and out is key2  # the core's last row: Python
            assert sel._stack_rows == {}
            assert {k.data for k, _ in sel.select(0)} == {"pipe"}
    finally:
        os.close(r)
        os.close(w)
    for x in (s, s2, c, c2, ls):
        x.close()


def test_registering_more_connections_than_free_rows_grows_them_in_python(pair):
    _require_native()
    from fsdp.selectors import EVENT_READ, DefaultSelector

    server, client = pair
    ls = _listener(server, 7007)
    ls.listen(64)
    clients, conns = [], []
    for _ in range(40):  # rows come 16 at first: two growths
        c = client.socket()
        c.setblocking(False)
        c.connect_ex(("10.9.3.1", 7007))
        clients.append(c)
    _pump(server, client, passes=20)
    while True:
        try:
            conns.append(ls.accept()[0])
        except BlockingIOError:
            break
    assert len(conns) == 40
    with DefaultSelector() as sel:
        for i, s in enumerate(conns):
            sel.register(s, EVENT_READ, i)
        for i, c in enumerate(clients):
            if i % 3 == 0:
                c.sendall(b"x")
        _pump(server, client, passes=20)
        assert sorted(k.data for k, _ in sel.select(0)) == list(range(0, 40, 3))
        for s in conns[::2]:
            sel.unregister(s)
        assert sorted(k.data for k, _ in sel.select(0)) == [i for i in range(0, 40, 3) if i % 2]
        for s in conns[1::2]:
            sel.unregister(s)
        assert sel.select(0) == [] and sel.get_map() is not None and not sel.get_map()
    for x in conns + clients + [ls]:
        x.close()


def test_the_python_methods_alone_pass_the_socket_and_selector_tests():
    """Where fsdp._native is not built, Socket's and FsdpSelector's Python methods do all the
    work (here: FSDP_NATIVE=0): the socket, selector and ready-list tests pass that way too."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    env = dict(os.environ, FSDP_NATIVE="0")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(here / "test_socket.py"), str(here / "test_selectors.py"),
         str(here / "test_selector_readylist.py"), str(here / "test_socket_lifetime_registry.py")],
        env=env, capture_output=True, text=True, timeout=600, cwd=here.parents[1])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and " failed" not in r.stdout
