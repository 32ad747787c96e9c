"""Keep-alive (RFC 1122 §4.2.3.6, RFC 9293 §3.8.4): probes after an idle period set with
SO_KEEPALIVE / TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT, and the abort when they go unanswered."""

import socket

import pytest
from helpers import handshake_passive, watch


def keepalive_conn(h, idle: int = 1, intvl: int = 1, cnt: int = 2):
    c = handshake_passive(h, 8080)
    s = c.sock
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
    return c


def test_keepalive_probe_after_idle(h):
    """RFC 1122 §4.2.3.6 (a keep-alive probe after the idle interval; MAY carry no data, with
    SEG.SEQ = SND.NXT - 1): as Linux, a bare ACK with SEQ = SND.NXT - 1 after TCP_KEEPIDLE."""
    c = keepalive_conn(h)
    seen = watch(c, 1.3, 0.05)
    assert [(s.flags, s.seq, s.ack, s.len) for _, s in seen] == [("A", 0, 1, 0)]
    assert 0.95 <= seen[0][0] <= 1.3


def test_answered_keepalive_keeps_the_connection(h):
    """RFC 1122 §4.2.3.6: an answered probe shows the peer alive and clears the count: with
    TCP_KEEPCNT=1 the next expiry sends another probe (as Linux, TCP_KEEPINTVL after the first)
    instead of the RST that an unanswered probe would have earned."""
    c = keepalive_conn(h, idle=1, intvl=1, cnt=1)
    first = watch(c, 1.3, 0.05)
    assert len(first) == 1
    c.send("A")
    second = watch(c, 1.1, 0.05)
    assert [(s.flags, s.seq) for _, s in second] == [("A", 0)]


@pytest.mark.slow
def test_unanswered_keepalives_abort_the_connection(h):
    """RFC 1122 §4.2.3.6 / RFC 9293 §3.8.4: after TCP_KEEPCNT unanswered probes (every
    TCP_KEEPINTVL) the connection is dropped: as Linux with RST|ACK at SND.NXT, and the application
    gets ETIMEDOUT."""
    c = keepalive_conn(h, idle=1, intvl=1, cnt=2)
    seen = watch(c, 3.4, 0.05)
    assert [(s.flags, s.seq) for _, s in seen] == [("A", 0), ("A", 0), ("RA", 1)]
    times = [t for t, _ in seen]
    assert 0.95 <= times[0] <= 1.3 and 1.95 <= times[1] <= 2.35 and 2.95 <= times[2] <= 3.4
    with pytest.raises(TimeoutError):
        c.sock.recv(1)
