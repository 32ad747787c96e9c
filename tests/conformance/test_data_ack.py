"""Data transfer and acknowledgment: quick and delayed ACKs (RFC 9293 §3.8.6.3, RFC 1122
§4.2.3.2, RFC 5681 §4.2), out-of-order data and SACK on the receiver side (RFC 2018, RFC 2883),
the sender's initial window and slow start (RFC 6928, RFC 5681 §3.1), Nagle (RFC 9293 §3.7.4)."""

import socket

import pytest
from helpers import TS_MSS, handshake_passive, read_all, watch


def make_interactive(c) -> None:
    """Request -> response: Linux leaves quick-ACK mode for delayed ACKs ("pingpong") once the
    application answers data it received."""
    c.send("PA", data=b"req")
    assert c.recv()[0].ack == c.snd_nxt
    assert read_all(c.sock) == b"req"
    c.sock.send(b"resp")
    (d,) = c.recv()
    assert d.data == b"resp"
    c.send("A")
    assert c.recv() == []


def test_first_segments_are_acked_immediately(h):
    """RFC 5681 §4.2 (an ACK SHOULD be generated for at least every second full segment; delaying
    is optional): as Linux's quick-ACK mode at connection start, each of the first 16 data
    segments is acknowledged at once, even small ones."""
    c = handshake_passive(h, 8080)
    for i in range(16):
        c.send("PA", data=b"a" * 100)
        (ack,) = c.recv()
        assert (ack.flags, ack.ack) == ("A", 101 + 100 * i)


def test_quick_ack_budget_is_16_segments(h):
    """RFC 1122 §4.2.3.2 (delay at most 0.5 s): as Linux, after 16 quick ACKs a small segment
    is no longer acknowledged at once; its delayed ACK follows within 40-250 ms."""
    c = handshake_passive(h, 8080)
    for _ in range(16):
        c.send("PA", data=b"a" * 100)
        assert len(c.recv()) == 1
    c.send("PA", data=b"b" * 100)
    assert c.recv() == []
    h.advance(0.25)
    (ack,) = c.recv()
    assert ack.ack == 1701


def test_delayed_ack_in_interactive_mode(h):
    """RFC 9293 §3.8.6.3 (delay an ACK, less than 0.5 s): once the connection is interactive, a
    request is not acknowledged at once; as Linux the delayed ACK comes after >= 40 ms."""
    c = handshake_passive(h, 8080)
    make_interactive(c)
    c.send("PA", data=b"req2")
    h.advance(0.015)
    assert c.recv() == []
    h.advance(0.2)
    (ack,) = c.recv()
    assert (ack.flags, ack.ack, ack.len) == ("A", c.snd_nxt, 0)


def test_delayed_ack_rides_on_the_response(h):
    """RFC 1122 §4.2.3.2: a delayed ACK is piggybacked on data sent before it fires; no pure ACK
    follows."""
    c = handshake_passive(h, 8080)
    make_interactive(c)
    c.send("PA", data=b"req2")
    assert c.recv() == []
    c.sock.send(b"resp2")
    (d,) = c.recv()
    assert (d.flags, d.ack, d.data) == ("PA", c.snd_nxt, b"resp2")
    # (the response acknowledged, as a client would: else Linux's RTO, 200 ms plus the RTT
    # variance, may resend it within the wait below on a loaded machine)
    c.send("A")
    h.advance(0.2)
    assert c.recv() == []


def test_every_second_full_segment_is_acked(h):
    """RFC 5681 §4.2, RFC 9293 §3.8.6.3 (MUST ack at least every second full-sized segment): in
    delayed-ACK mode the first full segment waits, the second is acknowledged at once."""
    c = handshake_passive(h, 8080)
    make_interactive(c)
    start = c.snd_nxt
    for i in range(3):
        c.send("A", data=b"f" * TS_MSS)
        assert c.recv() == []
        c.send("A", data=b"g" * TS_MSS)
        (ack,) = c.recv()
        assert ack.ack == start + 2 * TS_MSS * (i + 1)


def test_missed_delayed_ack_returns_to_quick_acks(h):
    """As Linux: when the delayed-ACK timer fires (nothing to piggyback on), the connection
    leaves interactive mode and the next segment is acknowledged at once again."""
    c = handshake_passive(h, 8080)
    make_interactive(c)
    c.send("PA", data=b"x")
    h.advance(0.25)
    assert len(c.recv()) == 1  # the delayed ACK
    c.send("PA", data=b"y")
    (ack,) = c.recv()
    assert ack.ack == c.snd_nxt


def test_out_of_order_segment_gets_immediate_dup_ack_with_sack(h):
    """RFC 5681 §4.2 (out-of-order data SHOULD be acked immediately), RFC 2018 §4: the duplicate
    ACK carries one SACK block for the data received above the hole, even in delayed-ACK mode."""
    c = handshake_passive(h, 8080)
    make_interactive(c)
    base = c.snd_nxt
    c.send("PA", seq=base + 100, data=b"o" * 100)
    (dup,) = c.recv()
    assert (dup.flags, dup.ack, dup.sack) == ("A", base, [(base + 100, base + 200)])


def test_adjacent_out_of_order_data_extends_the_sack_block(h):
    """RFC 2018 §4: SACK blocks report contiguous received data, so a second segment adjacent
    to the first widens the block instead of adding one."""
    c = handshake_passive(h, 8080)
    c.send("PA", seq=101, data=b"o" * 100)
    assert c.recv()[0].sack == [(101, 201)]
    c.send("PA", seq=201, data=b"p" * 100)
    (dup,) = c.recv()
    assert (dup.ack, dup.sack) == (1, [(101, 301)])


def test_sack_blocks_list_the_most_recent_first(h):
    """RFC 2018 §4: the first SACK block holds the most recently received segment, then the
    other blocks in order of recency."""
    c = handshake_passive(h, 8080)
    c.send("PA", seq=101, data=b"a" * 100)
    c.recv()
    c.send("PA", seq=301, data=b"b" * 100)
    assert c.recv()[0].sack == [(301, 401), (101, 201)]
    c.send("PA", seq=501, data=b"c" * 100)
    assert c.recv()[0].sack == [(501, 601), (301, 401), (101, 201)]


def test_filling_the_hole_acks_everything_at_once(h):
    """RFC 5681 §4.2 (an ACK SHOULD be sent at once when a segment fills a gap): the ACK covers
    the queued out-of-order data and carries no SACK block; the data reads in order."""
    c = handshake_passive(h, 8080)
    make_interactive(c)
    base = c.snd_nxt
    c.send("PA", seq=base + 100, data=b"2" * 100)
    c.recv()
    c.send("PA", seq=base, data=b"1" * 100)
    (ack,) = c.recv()
    assert (ack.ack, ack.sack) == (base + 200, [])
    assert read_all(c.sock) == b"1" * 100 + b"2" * 100


def test_duplicate_segment_gets_dsack(h):
    """RFC 2883 §4: a segment that was already received is acknowledged at once with a D-SACK
    block (the duplicate range below the cumulative ACK)."""
    c = handshake_passive(h, 8080)
    c.send("PA", seq=1, data=b"d" * 100)
    c.recv()
    c.send("PA", seq=1, data=b"d" * 100)
    (dup,) = c.recv()
    assert (dup.ack, dup.sack) == (101, [(1, 101)])


def test_dsack_first_then_sack_blocks(h):
    """RFC 2883 §4 (the D-SACK block first, then the SACK blocks): a duplicate of out-of-order
    data reports it as D-SACK first."""
    c = handshake_passive(h, 8080)
    c.send("PA", seq=201, data=b"x" * 100)
    c.recv()
    c.send("PA", seq=201, data=b"x" * 100)
    (dup,) = c.recv()
    assert dup.ack == 1
    assert dup.sack[0] == (201, 301)


def test_pure_ack_is_not_acknowledged(h):
    """RFC 9293 §3.8.6.3 (don't ACK an ACK): an ACK without data or FIN draws no response."""
    c = handshake_passive(h, 8080)
    for _ in range(3):
        c.send("A")
    h.advance(0.1)
    assert c.recv() == []


def test_initial_window_is_ten_segments(h):
    """RFC 6928 / RFC 5681 §3.1: a bulk write sends 10 full segments (IW10, as Linux), then waits
    for ACKs."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"w" * 40000)
    segs = c.recv()
    assert [s.len for s in segs] == [TS_MSS] * 10
    assert [s.seq for s in segs] == [1 + i * TS_MSS for i in range(10)]


@pytest.mark.parametrize("iw", [4, 20])
def test_initial_window_follows_tcp_init_cwnd(harness_factory, iw):
    """RFC 6928 §2 allows other initial windows; ``tcp_init_cwnd`` sets it in segments (Linux:
    the route's initcwnd)."""
    h = harness_factory(tcp_init_cwnd=iw)
    c = handshake_passive(h, 8080, rtt=0.1)
    c.sock.send(b"w" * 40 * TS_MSS)
    assert [s.seq for s in c.burst()] == [1 + i * TS_MSS for i in range(iw)]


def test_slow_start_grows_by_acked_segments(h):
    """RFC 5681 §3.1 (slow start; RFC 3465 byte counting): an ACK for two segments opens room
    for four more (two replacing, two from growth)."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"w" * 60000)
    segs = c.recv()
    assert len(segs) == 10
    c.send("A", ack=1 + 2 * TS_MSS)
    more = c.recv()
    assert [s.seq for s in more] == [1 + i * TS_MSS for i in range(10, 14)]


@pytest.mark.parametrize("acked", [5, 10])
def test_slow_start_counts_every_segment_a_stretch_ack_covers(h, acked):
    """As Linux's tcp_slow_start (not RFC 3465's L = 2*SMSS per ACK): an ACK covering ``acked``
    segments grows cwnd by ``acked`` segments, so it releases twice that many."""
    c = handshake_passive(h, 8080, rtt=0.1)
    c.sock.send(b"w" * 60 * TS_MSS)
    assert len(c.burst()) == 10
    c.send("A", ack=1 + acked * TS_MSS)
    more = c.burst()
    assert [s.seq for s in more] == [1 + i * TS_MSS for i in range(10, 10 + 2 * acked)]


def test_cwnd_does_not_grow_while_the_application_limits_the_sender(h):
    """RFC 7661 §4.2 (RFC 9438 §4.6; Linux tcp_is_cwnd_limited): cwnd grows on an ACK only
    while the sender is cwnd-limited.  Twenty one-segment writes, each ACKed at once, never
    fill the initial window, so a bulk write afterwards still goes out as IW10's 10 segments
    (not 30, had each ACK grown cwnd)."""
    c = handshake_passive(h, 8080)
    for _ in range(20):
        c.sock.send(b"a" * TS_MSS)
        (s,) = c.recv()
        c.send("A", ack=s.seq + s.len)
    c.sock.send(b"w" * 40 * TS_MSS)
    assert len(c.recv()) == 10


def test_psh_marks_the_end_of_a_write(h):
    """RFC 9293 §3.9.1 (PSH is the sender's choice): the last segment of a write carries PSH, the
    first of several does not.  (Linux also pushes inside a write, every GSO chunk when its
    max_window is still unset on a passive connection: receivers must not depend on it.)"""
    c = handshake_passive(h, 8080)
    c.sock.send(b"p" * 3000)
    segs = c.recv()
    assert [s.len for s in segs] == [1448, 1448, 104]
    assert segs[0].flags == "A" and segs[-1].flags == "PA"


def test_nagle_holds_a_small_segment_while_data_is_unacked(h):
    """RFC 9293 §3.7.4 (Nagle, SHLD-7): a second small write waits until the
    first is acknowledged, then goes out."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"a")
    assert [s.data for s in c.recv()] == [b"a"]
    c.sock.send(b"b")
    c.sock.send(b"c")
    assert c.recv() == []
    c.send("A")
    assert [s.data for s in c.recv()] == [b"bc"]


def test_nodelay_sends_small_segments_at_once(h):
    """RFC 9293 §3.7.4 (the application can disable Nagle, TCP_NODELAY): each small write goes
    out immediately."""
    c = handshake_passive(h, 8080)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sock.send(b"a")
    c.sock.send(b"b")
    assert [s.data for s in c.recv()] == [b"a", b"b"]


def test_corked_data_goes_at_the_probe_timer(h):
    """RFC 9293 §3.7.4 / MUST-60 (data is not held back indefinitely): TCP_CORK holds a partial
    segment, but as Linux, with nothing in flight the probe timer is armed (tcp_check_probe_timer)
    and when it fires after about an RTO the held data goes out (tcp_write_wakeup sends what the
    window allows, cork or not).  Data written meanwhile behind it waits for the uncork."""
    c = handshake_passive(h, 8080, rtt=0.05)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    c.sock.send(b"x" * 10)
    assert c.recv() == []
    seen = watch(c, 0.45, 0.01)
    assert [(s.flags, s.seq, s.data) for _, s in seen] == [("PA", 1, b"x" * 10)]
    assert 0.2 <= seen[0][0] <= 0.45
    c.send("A", ack=11)
    c.sock.send(b"y" * 10)
    assert watch(c, 0.1, 0.01) == []  # data in flight no more, but the probe timer is not due
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    assert [(s.seq, s.data) for s in c.recv()] == [(11, b"y" * 10)]


def test_received_data_reads_back_in_order(h):
    """RFC 9293 §3.10.7.4 (seventh, process the segment text): data arriving out of order is
    delivered to the application in sequence order, once."""
    c = handshake_passive(h, 8080)
    parts = [bytes([65 + i]) * 50 for i in range(6)]
    for i in (1, 3, 5, 0, 2, 4):
        c.send("PA", seq=1 + 50 * i, data=parts[i])
    c.recv()
    assert read_all(c.sock) == b"".join(parts)
