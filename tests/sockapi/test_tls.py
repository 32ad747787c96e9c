"""TLS on fsdp sockets (fsdp/sockapi/tls.py) against the stdlib's SSLSocket on the kernel.

Each scenario runs in test_stdlib_parity.py's worlds -- kernel sockets over 127.0.0.1, fsdp
sockets on two stacks of one sim wire, transparent mode's socket class -- with
``SSLContext.wrap_socket`` on the sockets each world makes, and records what a program sees:
return values, exception class with errno, or the message (class names in messages are
normalised: the kernel's is ``ssl.SSLSocket``, fsdp's ``TLSSocket``).  fsdp and transparent
must record what the kernel recorded.

The certificates in certs/ are a test CA and a server certificate for ``fsdp.test``,
``localhost`` and 127.0.0.1 signed by it (valid to 2126); test use only.
"""

from __future__ import annotations

import errno
import os
import re
import select
import socket as stdsocket
import ssl
import threading
import time
from pathlib import Path

import pytest
from test_stdlib_parity import FsdpWorld, KernelWorld, TransparentWorld, _same, rec, run_in

import fsdp
from fsdp.sockapi import tls
from fsdp.transparent import select as fsdp_select

CERTS = Path(__file__).resolve().parent / "certs"
HOST = "fsdp.test"


def server_context(**kw) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERTS / "server.pem")
    if kw.get("alpn"):
        ctx.set_alpn_protocols(kw["alpn"])
    return ctx


def client_context(**kw) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=None if kw.get("no_ca") else CERTS / "ca.pem")
    if kw.get("alpn"):
        ctx.set_alpn_protocols(kw["alpn"])
    if kw.get("tls12"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


_CLASS_RE = re.compile(r"<class '[^']+'>")
_SSL_C_RE = re.compile(r" \(_ssl\.c:\d+\)")


def trec(fn, *args, **kwargs):
    """``rec`` with class names and _ssl.c line numbers taken out of messages."""
    r = rec(fn, *args, **kwargs)
    if isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], str):
        msg = _SSL_C_RE.sub("", _CLASS_RE.sub("<class>", r[1]))
        msg = re.sub(r"\b(Transparent)?TLSSocket\b", "SSLSocket", msg)
        msg = re.sub(r"around <.*>$", "around <socket>", msg)  # (reprs differ by world)
        return (r[0], msg)
    return r


def keep(w, s):
    w._socks.append(s)
    return s


def wrap_pair(w, handshake=True, sctx=None, cctx=None):
    """A connected pair, both ends wrapped without a handshake; with ``handshake``, the two
    handshakes driven non-blocking, turn about, in this one thread."""
    ls, c, s = w.pair()
    tc = keep(w, (cctx or client_context()).wrap_socket(
        c, server_hostname=HOST, do_handshake_on_connect=False))
    ts = keep(w, (sctx or server_context()).wrap_socket(
        s, server_side=True, do_handshake_on_connect=False))
    if handshake:
        handshake_both(w, tc, ts)
    return ls, tc, ts


def handshake_both(w, tc, ts):
    """Both handshakes, non-blocking, in turn: what each raised (in order, repeats folded)."""
    seen = []
    tc.setblocking(False)
    ts.setblocking(False)
    done = {"c": False, "s": False}
    deadline = time.monotonic() + 10
    while not all(done.values()) and time.monotonic() < deadline:
        for name, x in (("c", tc), ("s", ts)):
            if done[name]:
                continue
            r = trec(x.do_handshake)
            if r is None:
                done[name] = True
            elif r[0] not in ("SSLWantReadError", "SSLWantWriteError"):
                done[name] = True  # failed
            if not seen or seen[-1] != (name, r):
                seen.append((name, r))
        w.settle(0.002)
    tc.settimeout(5)
    ts.settimeout(5)
    return seen


def recv_exactly(s, n):
    got = b""
    while len(got) < n:
        chunk = s.recv(n - len(got))
        if not chunk:
            break
        got += chunk
    return got


def world_select(w):
    return select.select if isinstance(w, KernelWorld) else fsdp_select.select


def readable(w, s) -> bool:
    w.settle(0.02)
    return bool(world_select(w)([s], [], [], 0)[0])


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


# ---------------------------------------------------------------- scenarios
@scenario
def handshake_then_echo(w):
    ls, tc, ts = wrap_pair(w, sctx=server_context(alpn=["h2", "http/1.1"]),
                           cctx=client_context(alpn=["http/1.1"]))
    r = [tc.version(), ts.version(), tc.cipher()[0], tc.selected_alpn_protocol(),
         ts.selected_alpn_protocol(), tc.getpeercert()["subject"], ts.getpeercert(),
         tc.server_hostname, ts.server_side, tc.compression(), tc.session_reused]
    for size in (1, 1000, 16384, 16385, 100_000):
        data = os.urandom(size)
        tc.sendall(data)
        r.append(recv_exactly(ts, size) == data)
        ts.sendall(data[::-1])
        r.append(recv_exactly(tc, size) == data[::-1])
    r += [trec(tc.send, b"ping"), trec(ts.recv, 100), trec(tc.pending)]
    return r


@scenario
def before_the_handshake(w):
    ls, tc, ts = wrap_pair(w, handshake=False)
    return [tc.version(), tc.cipher(), trec(tc.getpeercert), tc.selected_alpn_protocol(),
            tc.pending(), tc.session_reused, trec(tc.get_channel_binding, "nope")]


@scenario
def handshake_turns(w):
    """The non-blocking handshake's WANT_READs, side by side, then the data."""
    ls, tc, ts = wrap_pair(w, handshake=False)
    turns = handshake_both(w, tc, ts)
    tc.sendall(b"after")
    return [turns, trec(ts.recv, 10)]


@scenario
def tls12_handshake_turns(w):
    ls, tc, ts = wrap_pair(w, handshake=False, cctx=client_context(tls12=True))
    turns = handshake_both(w, tc, ts)
    return [turns, tc.version(), ts.version(), len(tc.get_channel_binding("tls-unique"))]


@scenario
def non_blocking_reads_and_timeouts(w):
    ls, tc, ts = wrap_pair(w)
    tc.setblocking(False)
    r = [trec(tc.recv, 10), trec(tc.recv_into, bytearray(4)), trec(tc.read, 10)]
    tc.settimeout(0.2)
    r += [trec(tc.recv, 10)]
    ts.sendall(b"x" * 1000)
    tc.settimeout(5)
    r += [trec(tc.recv, 10), tc.pending(), trec(tc.recv, 2000), tc.pending()]
    return r


@scenario
def calls_tls_refuses(w):
    ls, tc, ts = wrap_pair(w)
    return [trec(tc.send, b"x", stdsocket.MSG_OOB), trec(tc.sendall, b"x", 1),
            trec(tc.recv, 1, stdsocket.MSG_PEEK), trec(tc.recv_into, bytearray(1), 1, 1),
            trec(tc.sendto, b"x", ("1.2.3.4", 5)), trec(tc.recvfrom, 1),
            trec(tc.recvfrom_into, bytearray(1)), trec(tc.sendmsg, [b"x"]),
            trec(tc.recvmsg, 1), trec(tc.recvmsg_into, [bytearray(1)]), trec(tc.dup),
            trec(tc.connect, ("1.2.3.4", 5)), trec(ts.connect, ("1.2.3.4", 5))]


@scenario
def wrap_socket_argument_checks(w):
    r = []
    for kw in ({"server_side": True, "server_hostname": HOST},
               {"server_side": True, "session": object()}, {}):
        c = w.csock()
        r.append(trec(client_context().wrap_socket, c, **kw))
        r.append(trec(c.fileno) != -1)
    ls, c, s = w.pair()
    c.setblocking(False)
    r.append(trec(client_context().wrap_socket, c, server_hostname=HOST))
    r.append(trec(c.fileno))  # wrap_socket closed it
    return r


@scenario
def ragged_and_clean_eofs(w):
    """The peer closes without close_notify (SSLSocket.close() sends none): an empty read
    when ragged EOFs are suppressed, SSLEOFError when not; after close_notify (unwrap), an
    empty read either way."""
    ls, tc, ts = wrap_pair(w)
    ts.sendall(b"last")
    ts.close()
    r = [trec(tc.recv, 10), trec(tc.recv, 10)]
    tc.suppress_ragged_eofs = False
    r += [trec(tc.recv, 10), trec(tc.recv, 10)]
    ls2, tc2, ts2 = wrap_pair(w)
    tc2.suppress_ragged_eofs = False
    ts2.setblocking(False)
    r.append(trec(ts2.unwrap))  # close_notify sent; the client's not there yet
    r += [trec(tc2.recv, 10), trec(tc2.recv, 10)]
    return r


@scenario
def unwrap_both_ways_then_clear_text(w):
    """STARTTLS's end: both sides unwrap; the clear text sent right after the close_notify
    is still in the socket for the plain recv() that follows."""
    ls, tc, ts = wrap_pair(w)
    ts.sendall(b"secret")
    ts.setblocking(False)
    r = [trec(ts.unwrap)]  # waits for the client's close_notify
    r.append(trec(tc.recv, 100))
    tc.setblocking(False)
    r.append(trec(lambda: tc.unwrap() is tc))
    tc.sendall(b"clear text")  # plain now
    ts.setblocking(True)
    w.settle(0.05)
    r.append(trec(lambda: ts.unwrap() is ts))
    r += [trec(ts.recv, 100), trec(ts.unwrap), trec(tc.cipher)]
    return r


@scenario
def select_sees_whole_records(w):
    """Two records sent: reading the first leaves the second in the socket (select says
    readable); reading part of one leaves the rest decrypted (pending, not readable)."""
    ls, tc, ts = wrap_pair(w)
    ts.send(b"a" * 100)
    ts.send(b"b" * 100)
    w.settle(0.05)
    r = [trec(tc.recv, 100), readable(w, tc), tc.pending(), trec(tc.recv, 30),
         readable(w, tc), tc.pending(), trec(tc.recv, 100), readable(w, tc), tc.pending()]
    return r


@scenario
def makefile_lines(w):
    ls, tc, ts = wrap_pair(w)
    f = tc.makefile("rwb")
    f.write(b"GET / HTTP/1.0\r\n\r\n")
    f.flush()
    req = recv_exactly(ts, 18)
    ts.sendall(b"HTTP/1.0 200 OK\r\nX: y\r\n\r\nbody")
    ts.close()
    r = [req, f.readline(), f.readline(), f.readline(), f.read()]
    f.close()
    tc.close()
    r.append(trec(tc.fileno))
    return r


@scenario
def non_blocking_write_said_want_write_then_completes(w):
    """A peer that does not read: writes end in SSLWantWriteError; once the peer reads, the
    retry of that write with the same data returns its length, and every byte arrives once."""
    ls, tc, ts = wrap_pair(w)
    tc.setblocking(False)
    chunk = os.urandom(65536)
    sent, outcome = 0, None
    for _ in range(2000):
        r = trec(tc.send, chunk)
        if not isinstance(r, int):
            outcome = r
            break
        sent += r
        w.settle(0.001)
    got = bytearray()

    def drain():
        while len(got) < sent + len(chunk):
            d = ts.recv(1 << 20)
            if not d:
                break
            got.extend(d)

    reader = threading.Thread(target=drain)
    reader.start()
    retried = None
    for _ in range(5000):
        retried = trec(tc.send, chunk)
        if isinstance(retried, int):
            break
        w.settle(0.002)
    reader.join(20)
    return [outcome, retried, len(got) == sent + len(chunk), bytes(got) == chunk * (len(got)
                                                                             // len(chunk))]


@scenario
def shutdown_drops_tls(w):
    """shutdown() ends TLS on the socket without a close_notify; the peer sees a ragged EOF
    for its TLS read."""
    ls, tc, ts = wrap_pair(w)
    tc.shutdown(stdsocket.SHUT_WR)
    ts.suppress_ragged_eofs = False
    return [trec(ts.recv, 10), tc.cipher(), tc.recv(5)]  # a session ticket record, in clear


@scenario
def closed_tls_socket(w):
    ls, tc, ts = wrap_pair(w)
    tc.close()
    return [trec(tc.recv, 1), trec(tc.send, b"x"), trec(tc.fileno), trec(tc.version),
            trec(tc.read, 1), trec(tc.write, b"x"), trec(tc.unwrap), trec(tc.close)]


@scenario
def certificate_refused(w):
    """A client without the CA: its handshake fails verification, the server's on the alert."""
    ls, tc, ts = wrap_pair(w, handshake=False, cctx=client_context(no_ca=True))
    turns = handshake_both(w, tc, ts)
    return [[(who, r[0]) for who, r in turns], tc.version()]


@scenario
def hostname_mismatch(w):
    ls, c, s = w.pair()
    tc = keep(w, client_context().wrap_socket(c, server_hostname="other.test",
                                              do_handshake_on_connect=False))
    ts = keep(w, server_context().wrap_socket(s, server_side=True,
                                              do_handshake_on_connect=False))
    turns = handshake_both(w, tc, ts)
    err = turns[-2][1] if turns[-1][0] == "s" else turns[-1][1]
    return [err[0], "Hostname mismatch" in str(err[1])]


@scenario
def wrapped_before_connect_and_wrapped_listener(w):
    """The client wraps before connect() (the handshake runs in connect); the server wraps
    its listener (accept() hands out wrapped, handshaken connections)."""
    ls = w.listener()
    tls_ls = keep(w, server_context().wrap_socket(ls, server_side=True))
    port = tls_ls.getsockname()[1]
    out = {}

    def serve():
        conn, addr = tls_ls.accept()
        keep(w, conn)
        out["server"] = [type(conn).__name__ in ("SSLSocket", "TLSSocket", "TransparentTLSSocket"),
                         conn.version(), recv_exactly(conn, 5)]
        conn.sendall(b"world")

    t = threading.Thread(target=serve)
    t.start()
    c = w.csock()
    c.settimeout(5)
    tc = keep(w, client_context().wrap_socket(c, server_hostname=HOST))
    r = [trec(tc.getpeername), trec(tc.version), trec(tc.connect, (w.srv_ip, port)),
         tc.version()]
    tc.sendall(b"hello")
    r.append(recv_exactly(tc, 5))
    t.join(10)
    r += [out.get("server"), trec(tc.connect, (w.srv_ip, port)), trec(tls_ls.version)]
    return r


@scenario
def non_blocking_connect_ex_then_handshake(w):
    ls = w.listener()
    port = ls.getsockname()[1]
    c = w.csock()
    c.setblocking(False)
    tc = keep(w, client_context().wrap_socket(c, server_hostname=HOST,
                                              do_handshake_on_connect=False))
    r = [trec(tc.connect_ex, (w.srv_ip, port))]
    w.settle(0.05)
    r.append(trec(tc.do_handshake))  # connected now, though connect_ex said EINPROGRESS
    s, _ = ls.accept()
    ts = keep(w, server_context().wrap_socket(s, server_side=True,
                                              do_handshake_on_connect=False))
    w.settle(0.05)
    turns = handshake_both(w, tc, ts)
    r += [turns[-1][1] is None, tc.version()]
    return r


def _params():
    return sorted(SCENARIOS)


@pytest.mark.parametrize("name", _params())
def test_tls_parity(name, stacks):
    fn = SCENARIOS[name]
    want = run_in(KernelWorld(), fn)
    got = run_in(FsdpWorld(*stacks), fn)
    _same(want, got, "fsdp")


@pytest.mark.parametrize("name", _params())
def test_tls_parity_transparent(name, stacks, monkeypatch):
    from fsdp.transparent import socket as tsock

    # A socket wrapped before its connect() is a TransparentTLSSocket, not the world's
    # per-stack class: its connect switches to the process's stack, the client's here.
    monkeypatch.setattr(tsock, "_stack_getter", lambda: stacks[1])
    fn = SCENARIOS[name]
    want = run_in(KernelWorld(), fn)
    got = run_in(TransparentWorld(*stacks), fn)
    _same(want, got, "transparent")


# ---------------------------------------------------------------- fsdp's own
def test_wrap_socket_keeps_the_stdlib_for_kernel_sockets():
    assert ssl.SSLContext.wrap_socket is tls.wrap_socket
    with stdsocket.socket() as k:
        wrapped = client_context().wrap_socket(k, server_hostname=HOST)
        assert type(wrapped) is ssl.SSLSocket
        wrapped.close()
    u = stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
    with pytest.raises(NotImplementedError):
        client_context().wrap_socket(u)
    u.close()


def test_transparent_tls_socket_is_an_sslsocket_and_takes_the_number(stacks):
    w = TransparentWorld(*stacks)
    try:
        ls, c, s = w.pair()
        fd = c.fileno()
        tc = keep(w, client_context().wrap_socket(c, server_hostname=HOST,
                                                  do_handshake_on_connect=False))
        assert isinstance(tc, ssl.SSLSocket) and isinstance(tc, stdsocket.socket)
        assert tc.fileno() == fd and c.fileno() == -1  # moved, as the stdlib's wrap moves it
        assert tc._fsdp is not None and c._fsdp is None
        assert "ssl.SSLSocket[fsdp]" in repr(tc)
        # every method ssl.SSLSocket defines is fsdp's here (none reaches OpenSSL's fd path)
        leaked = [name for name, v in vars(ssl.SSLSocket).items()
                  if callable(v) and getattr(type(tc), name) is v
                  and name not in ("__init__", "_create")]
        assert leaked == []
    finally:
        w.close_all()


def test_records_are_read_one_at_a_time(stacks):
    """Bytes of a record not yet needed stay in the fsdp socket: pulled header, then body."""
    w = FsdpWorld(*stacks)
    try:
        ls, tc, ts = wrap_pair(w)
        for _ in range(3):
            ts.send(b"z" * 5000)
        w.settle(0.05)
        assert tc.recv(5000) == b"z" * 5000
        assert tc._raw._poll_events() & 1  # the next two records are still in the socket
        assert tc._rec_left == 0 and not tc._hdr
        assert tc._incoming.pending == 0
    finally:
        w.close_all()


def test_a_write_larger_than_the_send_buffer_blocks_until_sent(stacks):
    """Blocking sendall of 3 MB through TLS, the peer reading in another thread."""
    w = FsdpWorld(*stacks)
    try:
        ls, tc, ts = wrap_pair(w)
        payload = os.urandom(3_000_000)
        got = bytearray()
        t = threading.Thread(target=lambda: got.extend(recv_exactly(ts, len(payload))))
        t.start()
        tc.sendall(payload)
        t.join(30)
        assert bytes(got) == payload
        assert not tc._tx
    finally:
        w.close_all()


def test_fsdp_socket_wrapped_with_the_module_function():
    """``fsdp.socket()`` users get TLS from ``ssl`` itself: import fsdp installed it."""
    assert "fsdp" in __import__("sys").modules and fsdp.Stack
    assert ssl.SSLContext.wrap_socket.__wrapped__ is tls._stdlib_wrap_socket


def test_tls_socket_errors_keep_errno(stacks):
    w = FsdpWorld(*stacks)
    try:
        s = w.csock()
        tcs = keep(w, client_context().wrap_socket(s, server_hostname=HOST))
        tcs.settimeout(0.5)
        e = pytest.raises(OSError, tcs.connect, (w.srv_ip, w.dead_port())).value
        assert e.errno == errno.ECONNREFUSED
        assert tcs._sslobj is None  # a failed connect leaves no SSL object behind
    finally:
        w.close_all()


def test_transparent_socket_on_the_kernel_gets_the_stdlibs_sslsocket():
    """A transparent-mode socket already on the kernel (loopback) is the stdlib's business:
    wrap_socket gives the stdlib's SSLSocket, which works on its fd."""
    from fsdp.transparent.socket import TransparentSocket

    ls = stdsocket.create_server(("127.0.0.1", 0))
    c = TransparentSocket()
    try:
        c.settimeout(5)
        c.connect(ls.getsockname())
        s, _ = ls.accept()
        ts = server_context().wrap_socket(s, server_side=True, do_handshake_on_connect=False)
        t = threading.Thread(target=ts.do_handshake)
        t.start()
        tc = client_context().wrap_socket(c, server_hostname=HOST)
        t.join(10)
        assert type(tc) is ssl.SSLSocket and tc.version() == "TLSv1.3"
        tc.sendall(b"k")
        assert ts.recv(1) == b"k"
        tc.close()
        ts.close()
    finally:
        c.close()
        ls.close()
