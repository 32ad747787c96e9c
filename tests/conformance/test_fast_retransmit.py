"""Fast retransmit and fast recovery without SACK: duplicate ACK counting (RFC 5681 §3.2),
limited transmit (RFC 3042), NewReno partial ACKs (RFC 6582), proportional rate reduction (RFC
6937, which Linux uses in every recovery).

The handshake takes a 100 ms RTT so that Linux's tail loss probe (PTO ~ 2*SRTT) stays out of the
way of the duplicate ACKs, which arrive within a few ms."""

from helpers import TS_MSS, handshake_passive, syn_options

M = TS_MSS


def seg_no(s) -> int:
    return (s.seq - 1) // M


def newreno_flight(h, n_bytes: int = 30 * M, win: int = 65535):
    """A non-SACK connection with 10 full segments in flight and more data queued; segment 0
    is acknowledged so that segments 1.. are outstanding with cwnd grown to 11."""
    c = handshake_passive(h, 8080, rtt=0.1, options=syn_options(sack=False))
    c.sock.send(b"n" * n_bytes)
    assert [seg_no(s) for s in c.recv()] == list(range(10))
    c.send("A", ack=1 + M, win=win)
    assert [seg_no(s) for s in c.recv()] == [10, 11]  # slow start: one acked, two sent
    return c


def test_limited_transmit_on_first_two_dup_acks(h):
    """RFC 3042 §2: each of the first two duplicate ACKs releases one new segment; nothing is
    retransmitted yet."""
    c = newreno_flight(h)
    c.send("A", ack=1 + M)
    assert [(seg_no(s), s.len) for s in c.recv()] == [(12, M)]
    c.send("A", ack=1 + M)
    assert [(seg_no(s), s.len) for s in c.recv()] == [(13, M)]


def test_third_dup_ack_triggers_fast_retransmit(h):
    """RFC 5681 §3.2 (step 2): the third duplicate ACK retransmits the first unacknowledged
    segment at once, same sequence number and length."""
    c = newreno_flight(h)
    c.send("A", ack=1 + M)
    c.send("A", ack=1 + M)
    c.recv()
    c.send("A", ack=1 + M)
    (r,) = c.recv()
    assert (r.seq, r.len) == (1 + M, M)


def test_two_dup_acks_do_not_retransmit(h):
    """RFC 5681 §3.2 (dupthresh 3, tcp_reordering): two duplicate ACKs only may mean
    reordering; no retransmission follows them."""
    c = newreno_flight(h)
    c.send("A", ack=1 + M)
    c.send("A", ack=1 + M)
    segs = c.recv()
    assert all(s.seq > 1 + 11 * M for s in segs)


def test_window_updates_are_not_dup_acks(h):
    """RFC 5681 §2 (a duplicate ACK leaves the window unchanged): ACKs that open the window are
    window updates: no limited transmit, no fast retransmit."""
    c = newreno_flight(h, win=30000)
    for w in (31000, 32000, 33000, 34000):
        c.send("A", ack=1 + M, win=w)
    assert c.recv() == []


def test_window_shrinking_acks_count_as_dup_acks(h):
    """RFC 5681 §2 wants an unchanged window; as Linux, an ACK that would shrink the window is not
    a window update (RFC 9293 §3.10.7.4 SND.WND rules), so it counts as a duplicate: the third
    one triggers fast retransmit."""
    c = newreno_flight(h)
    out = []
    for w in (60000, 61000, 62000):
        c.send("A", ack=1 + M, win=w)
        out.append([seg_no(s) for s in c.recv()])
    assert out == [[12], [13], [1]]


def test_dup_acks_carrying_data_are_not_counted(h):
    """RFC 5681 §2 (a duplicate ACK carries no data): ACKs with payload do not count toward the
    fast retransmit threshold."""
    c = newreno_flight(h)
    for _i in range(4):
        c.send("PA", ack=1 + M, data=b"d")
    assert all(s.seq != 1 + M or s.len == 0 for s in c.recv())


def test_partial_ack_retransmits_the_next_segment(h):
    """RFC 6582 §3.2 (step 5, partial acknowledgment): an ACK that covers the retransmission but
    not the recovery point (14) retransmits the first unacknowledged segment at once, before new
    data.  (Linux paces recovery with PRR, RFC 6937: a partial ACK for few segments may release
    nothing yet; this one acknowledges 11.)"""
    c = newreno_flight(h)
    for _ in range(3):
        c.send("A", ack=1 + M)
    segs = c.recv()
    assert [seg_no(s) for s in segs] == [12, 13, 1]
    c.send("A", ack=1 + 12 * M)
    segs = c.recv()
    assert segs and (seg_no(segs[0]), segs[0].len) == (12, M)


def dup_acks(c, n: int, ack: int = 1 + M) -> list[list[int]]:
    """``n`` duplicate ACKs of ``ack``; the segments (numbers) each one released."""
    out = []
    for _ in range(n):
        c.send("A", ack=ack)
        out.append([seg_no(s) for s in c.recv()])
    return out


def test_recovery_sends_one_segment_per_two_dup_acks(h):
    """RFC 6937 §3.1 (PRR, proportional part): with ssthresh = 5 (half the 11 segments in flight
    before limited transmit, RFC 5681 §3.2 step 2) and RecoverFS = cwnd = 11, the sender sends
    CEIL(delivered*5/11) segments in all: the third duplicate ACK the retransmission, then one
    new segment on every second duplicate ACK -- no silence while cwnd deflates, no burst."""
    c = newreno_flight(h)
    assert dup_acks(c, 8) == [[12], [13], [1], [], [14], [], [15], []]


def test_partial_ack_retransmission_waits_for_the_reduction(h):
    """RFC 6582 §3.2 step 5 with RFC 6937: a partial ACK shows the next segment lost too, but
    with the flight already at ssthresh it goes only when the next duplicate ACK makes room;
    from then on one segment leaves per duplicate ACK (PRR's slow-start reduction bound: the
    flight stays at ssthresh)."""
    c = newreno_flight(h)
    dup_acks(c, 8)
    c.send("A", ack=1 + 5 * M)  # covers the retransmission of 1, and 2..4
    assert c.recv() == []
    assert dup_acks(c, 4, ack=1 + 5 * M) == [[5], [16], [17], [18]]


def test_full_ack_ends_recovery_without_retransmission(h):
    """RFC 6582 §3.2 (step 3, full acknowledgment): an ACK covering everything sent before
    recovery ends it; what follows is new data only."""
    c = newreno_flight(h)
    for _ in range(3):
        c.send("A", ack=1 + M)
    c.recv()
    c.send("A", ack=1 + 14 * M)
    segs = c.recv()
    assert segs and all(seg_no(s) >= 14 for s in segs)
    assert len({s.seq for s in segs}) == len(segs)


def test_fast_retransmit_halves_the_window(h):
    """RFC 5681 §3.2 step 2 (ssthresh = FlightSize/2, the segments limited transmit sent left
    out), RFC 6582 step 6 (full ACK: cwnd = ssthresh): with 11 segments in flight when the loss
    showed, the full ACK releases exactly 5."""
    c = newreno_flight(h, 60 * M)
    for _ in range(3):
        c.send("A", ack=1 + M)
    c.recv()
    c.send("A", ack=1 + 14 * M)
    assert [seg_no(s) for s in c.recv()] == [14, 15, 16, 17, 18]
