"""SYN cookies (RFC 4987 §3.6) as Linux implements them: stateless SYN-ACKs when the SYN queue
overflows (tcp_syncookies=1) or always (=2), the MSS rounded down to a 4-entry table, options kept
in the TSval when timestamps are on, and the listen queues' limits (backlog + 1 as Linux)."""

import pytest
from helpers import (
    LOCAL_IP,
    PEER_IP,
    PEER_ISN,
    TS_MSS,
    Conn,
    accept,
    handshake_passive,
    listen,
    option_kinds,
    syn_ack_of,
    syn_options,
    watch,
)
from scapy.layers.inet import IP, TCP


def raw_syn_ack(h, pport: int, options=None):
    """Send a SYN from ``pport`` to port 8080; return (conn, the stack's frames)."""
    h.send(IP(src=PEER_IP, dst=LOCAL_IP) / TCP(
        sport=pport, dport=8080, flags="S", seq=PEER_ISN,
        options=syn_options(mss=1000) if options is None else options))
    frames = h.recv()
    c = Conn(h, 8080, pport)
    if frames:
        c.isn = frames[0][TCP].seq
        c.snd_nxt = c.rcv_nxt = 1
        c.last_tsval = dict(frames[0][TCP].options).get("Timestamp", (0, 0))[0]
    return c, frames


def test_cookie_synack_carries_the_usual_options(harness_factory):
    """RFC 4987 §3.6: a cookie SYN-ACK looks like any other; with timestamps Linux still offers
    MSS 1460, SACK, TS and wscale 10 (the peer's options live in the low bits of TSval)."""
    h = harness_factory(tcp_syncookies=2)
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080)
    assert option_kinds(sa.pkt) == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]
    assert (sa.seq, sa.ack, sa.win) == (0, 1, 65160)


def test_cookie_synack_is_not_retransmitted(harness_factory):
    """RFC 4987 §3.6 (no state is kept for a cookie SYN-ACK): nothing is retransmitted."""
    h = harness_factory(tcp_syncookies=2)
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080)
    assert watch(c, 1.3, 0.05) == []


def test_cookie_ack_establishes_the_connection(harness_factory):
    """RFC 4987 §3.6: the ACK returning a valid cookie (SEG.ACK - 1) creates the connection;
    data flows both ways."""
    h = harness_factory(tcp_syncookies=2)
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"hello")
    assert c.recv()[0].ack == 6
    assert c.sock.recv(10) == b"hello"
    c.sock.send(b"world")
    assert [s.data for s in c.recv()] == [b"world"]


@pytest.mark.parametrize("peer_mss, seg", [(1000, 536 - 12), (1400, 1300 - 12), (1460, 1460 - 12)])
def test_cookie_rounds_the_mss_down_to_its_table(harness_factory, peer_mss, seg):
    """RFC 4987 §3.6 (the cookie encodes the MSS in a few bits): as Linux (table 536, 1300, 1440,
    1460), the peer's MSS is rounded down to an entry; segments follow it (minus 12 TS bytes)."""
    h = harness_factory(tcp_syncookies=2)
    c = handshake_passive(h, 8080, options=syn_options(mss=peer_mss))
    c.sock.send(b"x" * 3000)
    assert c.recv()[0].len == seg


def test_cookie_keeps_sack_and_window_scale_with_timestamps(harness_factory):
    """RFC 4987 §3.6 (options are lost unless encoded): with timestamps Linux encodes SACK-permitted
    and the window scale in TSval, so both work after a cookie handshake."""
    h = harness_factory(tcp_syncookies=2)
    c = handshake_passive(h, 8080, ack_win=8)
    c.sock.send(b"w" * 3000)
    assert sum(s.len for s in c.recv()) == 1024  # 8 << 7
    c.send("PA", seq=101, data=b"o" * 10, win=8)
    assert c.recv()[0].sack == [(101, 111)]


def test_cookie_without_timestamps_offers_only_mss(harness_factory):
    """RFC 4987 §3.6: without timestamps there is nowhere to keep SACK or window scale, so, as
    Linux, the cookie SYN-ACK offers only MSS (and the connection uses neither)."""
    h = harness_factory(tcp_syncookies=2)
    c = handshake_passive(h, 8080, options=syn_options(None))
    assert option_kinds(c.synack.pkt) == ["MSS"]
    c.send("PA", seq=101, data=b"o" * 10)
    (dup,) = c.recv()
    assert dup.sack == [] and dup.win > 1000


def test_ack_with_bad_cookie_gets_rst(harness_factory):
    """RFC 4987 §3.6 / RFC 9293 §3.10.7.2 (ACK in LISTEN): an ACK whose number is not a valid
    cookie creates nothing and is answered with <SEQ=SEG.ACK><CTL=RST>."""
    h = harness_factory(tcp_syncookies=2)
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    c.send("A", 1, 12345)
    (r,) = c.recv()
    assert (r.flags, r.seq) == ("R", 12345)
    with pytest.raises(BlockingIOError):
        lst.accept()


def test_syn_queue_overflow_answers_with_a_cookie(harness_factory):
    """RFC 4987 §3.6 (cookies only under pressure, tcp_syncookies=1): with listen(3), as Linux the
    SYN queue holds backlog + 1 = 4 half-open connections; the 5th SYN gets a cookie SYN-ACK,
    visible in its MSS (1000 rounded to 536) once established."""
    h = harness_factory(tcp_syncookies=1)
    lst = listen(h, 8080, backlog=3)
    conns = [raw_syn_ack(h, 40000 + i) for i in range(5)]
    assert all(len(f) == 1 for _, f in conns)
    c0, c4 = conns[0][0], conns[4][0]
    for c in (c4, c0):
        c.send("A", 1, 1)
    socks = {}
    for _ in range(2):
        s = accept(lst)
        socks[s.getpeername()[1]] = s
    socks[40004].send(b"x" * 1200)
    assert c4.recv()[0].len == 536 - 12
    socks[40000].send(b"x" * 1200)
    assert c0.recv()[0].len == 1000 - 12


def test_syn_queue_overflow_without_cookies_drops_the_syn(harness_factory):
    """RFC 4987 §3 (a full queue drops SYNs when cookies are off): with tcp_syncookies=0 and
    listen(3), the 5th concurrent half-open SYN is dropped silently (no RST)."""
    h = harness_factory(tcp_syncookies=0)
    listen(h, 8080, backlog=3)
    answered = [len(raw_syn_ack(h, 40000 + i)[1]) for i in range(6)]
    assert answered == [1, 1, 1, 1, 0, 0]


def test_full_accept_queue_drops_the_final_ack(h):
    """RFC 9293 leaves a full accept queue open; as Linux (tcp_abort_on_overflow=0) it holds
    backlog + 1 connections, and a further handshake-completing ACK is dropped silently (the
    SYN-ACK timer goes on), not answered with RST."""
    lst = listen(h, 8080, backlog=1)
    conns = [raw_syn_ack(h, 40000 + i)[0] for i in range(3)]
    out = []
    for c in conns:
        c.send("A", 1, 1)
        out += c.recv()
    assert out == []
    accepted = []
    while True:
        try:
            accepted.append(accept(lst))
        except BlockingIOError:
            break
    assert sorted(s.getpeername()[1] for s in accepted) == [40000, 40001]
    assert TS_MSS  # (imported for symmetry with the other files)
