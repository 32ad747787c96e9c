"""Explicit Congestion Notification (RFC 3168 §6.1) as Linux's classic ECN with its default
``tcp_ecn`` = 2: agreed when the peer's SYN asks, asked for in our SYNs with ``tcp_ecn`` = 1.
fsdp.tcp.ecn lists the rules.

The passive handshakes take a 100 ms RTT so that a tail loss probe (PTO ~ 2*SRTT) stays out of
the way of the ACKs a scenario sends within a few ms."""

import pytest
from helpers import (
    TS_MSS,
    complete_connect,
    connect_start,
    handshake_passive,
    listen,
    read_all,
    syn_ack_of,
    syn_options,
    watch,
)
from test_data_ack import make_interactive

NOT_ECT, ECT0, CE = 0, 2, 3  # the IP ECN field (RFC 3168 §5)
M = TS_MSS


def ecn_conn(h, **kw):
    """A passive open whose SYN asked for ECN (ECE and CWR), agreed by the SYN-ACK (ECE)."""
    c = handshake_passive(h, 8080, rtt=0.1, syn_flags="SEC", **kw)
    assert (c.synack.flags, c.synack.ecn) == ("SAE", NOT_ECT)
    return c


def data_ecn(c) -> int:
    """The IP ECN field of the segment a 100-byte write sends."""
    c.sock.send(b"x" * 100)
    (d,) = c.recv()
    assert d.len == 100
    return d.ecn


# ---- negotiation (RFC 3168 §6.1.1) ----
def test_ecn_setup_syn_gets_ecn_setup_synack(h):
    """An ECN-setup SYN (ECE and CWR) is answered by an ECN-setup SYN-ACK: ECE without CWR, the
    SYN-ACK itself not ECN-capable."""
    _, sa = syn_ack_of(h, 8080, flags="SEC", listener=listen(h, 8080))
    assert (sa.flags, sa.ecn) == ("SAE", NOT_ECT)


@pytest.mark.parametrize("flags", ["SE", "SC"])
def test_syn_with_one_ecn_bit_is_not_ecn_setup(h, flags):
    """A SYN needs both ECE and CWR to ask for ECN (RFC 3168 §6.1.1)."""
    _, sa = syn_ack_of(h, 8080, flags=flags, listener=listen(h, 8080))
    assert sa.flags == "SA"


def test_ect_marked_syn_gets_no_ecn(h):
    """A SYN is never ECN-capable (RFC 3168 §6.1.1); as Linux, an ECN-setup SYN marked ECT(0)
    is taken for mangled and refused."""
    _, sa = syn_ack_of(h, 8080, flags="SEC", tos=ECT0, listener=listen(h, 8080))
    assert sa.flags == "SA"


def test_tcp_ecn_0_never_agrees(harness_factory):
    h = harness_factory(tcp_ecn=0)
    _, sa = syn_ack_of(h, 8080, flags="SEC", listener=listen(h, 8080))
    assert sa.flags == "SA"


def test_resent_synack_keeps_ece(h):
    """The SYN-ACK timer resends the ECN-setup SYN-ACK, ECE included (Linux)."""
    c, sa = syn_ack_of(h, 8080, flags="SEC", listener=listen(h, 8080))
    h.advance(1.1)
    (again,) = c.recv()
    assert (again.flags, again.seq) == ("SAE", sa.seq)


def test_syn_cookie_keeps_ecn_in_the_timestamp(harness_factory):
    """As Linux, a SYN cookie carries the ECN agreement in its TSval with the other options
    (RFC 4987 §3.6's lost options): the connection it opens sends ECT(0) data."""
    h = harness_factory(tcp_syncookies=2)
    c = handshake_passive(h, 8080, syn_flags="SEC")
    assert c.synack.flags == "SAE"
    assert data_ecn(c) == ECT0


def test_syn_cookie_without_timestamps_has_no_ecn(harness_factory):
    h = harness_factory(tcp_syncookies=2)
    c = handshake_passive(h, 8080, syn_flags="SEC", options=syn_options(ts=None))
    assert c.synack.flags == "SA"
    assert data_ecn(c) == NOT_ECT


def test_default_connect_does_not_ask(h):
    """``tcp_ecn`` 2, the default, agrees to ECN but does not ask for it: the SYN has no ECE or
    CWR, and a SYN-ACK that says ECE anyway does not turn it on."""
    c, syn = connect_start(h)
    assert syn.flags == "S"
    complete_connect(c, "SAE")
    assert data_ecn(c) == NOT_ECT


def test_tcp_ecn_1_asks_in_the_syn(harness_factory):
    h = harness_factory(tcp_ecn=1)
    c, syn = connect_start(h)
    assert (syn.flags, syn.ecn) == ("SEC", NOT_ECT)
    complete_connect(c, "SAE")
    assert data_ecn(c) == ECT0


def test_synack_without_ece_declines(harness_factory):
    h = harness_factory(tcp_ecn=1)
    c, _ = connect_start(h)
    complete_connect(c, "SA")
    assert data_ecn(c) == NOT_ECT


def test_resent_syn_does_not_ask(harness_factory):
    """As Linux (tcp_ecn_fallback), a SYN sent again leaves ECE and CWR out: a path that drops
    ECN-setup SYNs still lets the connection open.  An ECN-setup SYN-ACK still agrees."""
    h = harness_factory(tcp_ecn=1)
    c, syn = connect_start(h)
    h.advance(1.1)
    (again,) = c.recv()
    assert (again.flags, again.seq) == ("S", syn.seq)
    complete_connect(c, "SAE")
    assert data_ecn(c) == ECT0


# ---- what is ECN-capable (RFC 3168 §6.1.5, §6.1.6) ----
def test_new_data_is_ect0_acks_and_retransmissions_are_not(h):
    c = ecn_conn(h)
    c.sock.send(b"x" * 100)
    (d,) = c.recv()
    assert (d.flags, d.len, d.ecn) == ("PA", 100, ECT0)
    c.send("PA", ack=1, data=b"y" * 10, tos=ECT0)  # (not acknowledging it)
    (a,) = c.recv()
    assert (a.flags, a.len, a.ecn) == ("A", 0, NOT_ECT)
    h.advance(0.8)  # the loss probe and the RTO resend it
    again = c.recv()
    assert again and all((s.seq, s.len, s.ecn) == (d.seq, 100, NOT_ECT) for s in again)


def test_ip_tos_shows_the_ect_bit_of_the_last_send(h):
    """Linux's inet->tos follows tcp_ecn_send (INET_ECN_xmit / INET_ECN_dontxmit):
    getsockopt(IP_TOS) has ECT(0) after a new data segment and not after a pure ACK; an
    IP_TOS set meanwhile keeps the bit TCP owns (__ip_sock_set_tos); without ECN it never
    shows."""
    import socket

    def tos(sock):
        return sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS)

    c = ecn_conn(h)
    seen = [tos(c.sock)]
    c.sock.send(b"x" * 100)
    c.recv()
    seen.append(tos(c.sock))
    c.send("PA", ack=1, data=b"y" * 10, tos=ECT0)  # (its ACK is a pure ACK, Not-ECT)
    c.recv()
    seen.append(tos(c.sock))
    c.send("A", ack=101)
    c.sock.send(b"z" * 100)
    c.recv()
    c.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
    seen.append(tos(c.sock))
    assert seen == [0, ECT0, 0, 0x10 | ECT0]
    plain = handshake_passive(h, 8081)
    plain.sock.send(b"x" * 100)
    plain.recv()
    assert tos(plain.sock) == 0


def test_without_ecn_nothing_is_ect(h):
    c = handshake_passive(h, 8080)
    assert data_ecn(c) == NOT_ECT


# ---- the receiver: CE is echoed by ECE until CWR (RFC 3168 §6.1.3) ----
def test_ce_mark_is_echoed_until_cwr(h):
    c = ecn_conn(h)
    c.send("PA", data=b"a" * 10, tos=CE)
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("AE", 11)
    c.send("PA", data=b"b" * 10, tos=ECT0)
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("AE", 21)
    c.sock.send(b"r" * 50)  # data carries ECE too, and is still ECT(0)
    (d,) = c.recv()
    assert (d.flags, d.len, d.ecn) == ("PAE", 50, ECT0)
    c.send("PAC", data=b"c" * 10, tos=ECT0)
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("A", 31)
    c.send("PA", data=b"d" * 10, tos=ECT0)
    h.advance(0.3)
    assert [s.flags for s in c.recv()] == ["A"]
    assert read_all(c.sock) == b"a" * 10 + b"b" * 10 + b"c" * 10 + b"d" * 10


def test_cwr_on_a_pure_ack_ends_the_echo(h):
    c = ecn_conn(h)
    c.send("PA", data=b"a" * 10, tos=CE)
    assert [s.flags for s in c.recv()] == ["AE"]
    c.send("AC", tos=ECT0)
    assert c.recv() == []
    c.send("PA", data=b"b" * 10, tos=ECT0)
    h.advance(0.3)
    assert [s.flags for s in c.recv()] == ["A"]


def test_ce_mark_is_acked_at_once_when_acks_are_delayed(h):
    """A CE mark is ACKed at once even in interactive mode, where ACKs wait (Linux: "Better not
    delay acks, sender can have a very low cwnd"); so is a Not-ECT segment after ECT ones, taken
    for a retransmission."""
    c = ecn_conn(h)
    make_interactive(c)
    c.send("PA", data=b"q" * 10, tos=ECT0)
    assert c.recv() == []  # delayed
    h.advance(0.3)
    assert [s.flags for s in c.recv()] == ["A"]
    c.send("PA", data=b"c" * 10, tos=CE)
    assert [(s.flags, s.ack) for s in c.recv()] == [("AE", c.snd_nxt)]
    c.send("PAC", data=b"w" * 10, tos=ECT0)
    assert [(s.flags, s.ack) for s in c.recv()] == [("A", c.snd_nxt)]
    c.send("PA", data=b"n" * 10, tos=NOT_ECT)
    assert [(s.flags, s.ack) for s in c.recv()] == [("A", c.snd_nxt)]


# ---- the sender: ECE halves the window once, CWR follows (RFC 3168 §6.1.2) ----
def test_ece_halves_the_window_and_the_next_data_carries_cwr(h):
    """Ten segments in flight (IW 10): an ACK with ECE of two of them halves the window (ssthresh
    5), brought down by PRR as Linux's CWR state: one segment goes, the first carrying CWR.  A
    second ECE within the same window does not reduce again; PRR lets one more go.  The ACK that
    passes the reduction's start ends it with cwnd = ssthresh, grown by congestion avoidance to
    6: six segments go."""
    c = ecn_conn(h)
    c.sock.send(b"d" * (30 * M))
    flight = c.burst()
    assert [(s.len, s.ecn, "C" in s.flags) for s in flight] == [(M, ECT0, False)] * 10
    c.send("AE", ack=1 + 2 * M)
    (s,) = c.burst()
    assert (s.seq, s.len, s.ecn, "C" in s.flags, "E" in s.flags) == (1 + 10 * M, M, ECT0, True,
                                                                    False)
    c.send("AE", ack=1 + 7 * M)
    (s,) = c.burst()
    assert (s.seq, "C" in s.flags) == (1 + 11 * M, False)
    c.send("A", ack=1 + 12 * M)
    segs = c.burst()
    assert [(s.seq, "C" in s.flags) for s in segs] == [(1 + (12 + i) * M, False) for i in range(6)]


def test_ece_without_ecn_is_ignored(h):
    """On a connection that did not agree to ECN, ECE means nothing: slow start goes on."""
    c = handshake_passive(h, 8080, rtt=0.1)
    c.sock.send(b"d" * (30 * M))
    assert len(c.burst()) == 10
    c.send("AE", ack=1 + 2 * M)
    segs = c.burst()
    assert [(s.seq, s.ecn, "C" in s.flags) for s in segs] == [
        (1 + (10 + i) * M, NOT_ECT, False) for i in range(4)]


def test_fast_recovery_also_sends_cwr(h):
    """Fast recovery's reduction is signalled too (Linux tcp_init_cwnd_reduction): the
    retransmission is not ECN-capable and carries no CWR; the first new segment sent after it
    carries CWR (a segment limited transmit sent before recovery did not)."""
    c = ecn_conn(h)
    c.sock.send(b"d" * (30 * M))
    assert len(c.burst()) == 10
    sent = []
    for k in range(2, 8):  # segment 0 lost: SACKs of 1..
        c.send("A", ack=1, sack=[(1 + M, 1 + k * M)])
        sent += c.burst()
    i = [s.seq for s in sent].index(1)
    before, rexmit, after = sent[:i], sent[i], sent[i + 1:]
    assert (rexmit.len, rexmit.ecn, "C" in rexmit.flags) == (M, NOT_ECT, False)
    assert not any("C" in s.flags for s in before)
    assert after and [("C" in s.flags, s.ecn) for s in after] == [(True, ECT0)] + [
        (False, ECT0)] * (len(after) - 1)


def test_ece_on_a_duplicate_ack_reduces_with_nothing_delivered(h):
    """An ECE on a duplicate ACK starts the reduction (ssthresh = cwnd/2) though nothing was
    delivered: PRR sends nothing for it (Linux tcp_cwnd_reduction returns early), data written
    later goes within cwnd, its first segment with CWR; once the reduction ends, cwnd is
    ssthresh: five segments."""
    c = ecn_conn(h)
    c.sock.send(b"d" * (4 * M))
    assert len(c.burst()) == 4
    c.send("AE", ack=1)
    assert c.burst() == []
    c.sock.send(b"e" * (4 * M))
    more = c.burst()
    assert [(s.seq, "C" in s.flags) for s in more] == [(1 + (4 + i) * M, i == 0) for i in range(4)]
    c.send("A", ack=1 + 8 * M)
    assert c.burst() == []
    c.sock.send(b"f" * (20 * M))
    assert [s.seq for s in c.burst()] == [1 + (8 + i) * M for i in range(5)]


def test_ce_on_out_of_order_data_is_echoed(h):
    """A CE mark on a segment above a hole counts too: the duplicate ACK (with its SACK block)
    carries ECE, and so does the ACK of the filled hole."""
    c = ecn_conn(h)
    c.send("PA", seq=11, data=b"b" * 10, tos=CE)
    (a,) = c.recv()
    assert (a.flags, a.ack, a.sack) == ("AE", 1, [(11, 21)])
    c.send("PA", seq=1, data=b"a" * 10, tos=ECT0)
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("AE", 21)


def test_loss_found_during_the_reduction_does_not_reduce_again(h):
    """Segment 0 lost, every ACK with ECE: the first SACK starts the ECN reduction (one segment,
    with CWR), the second finds the loss and fast recovery goes on within the same reduction
    (Linux tcp_enter_recovery: no second halving); PRR then sends a new segment per two SACKs,
    the partial ACK resends segment 9, and the full ACK ends it all with cwnd = ssthresh (5),
    grown by one on the next ACK."""
    c = ecn_conn(h)
    c.sock.send(b"d" * (40 * M))
    assert len(c.burst()) == 10
    sent = []
    for k in range(2, 9):
        c.send("AE", ack=1, sack=[(1 + M, 1 + k * M)])
        sent.append([((s.seq - 1) // M, "C" in s.flags, s.ecn) for s in c.burst()])
    assert sent == [[(10, True, ECT0)], [(0, False, NOT_ECT)], [], [(11, False, ECT0)], [],
                    [(12, False, ECT0)], []]
    c.send("AE", ack=1 + 9 * M, sack=[(1 + 10 * M, 1 + 12 * M)])
    assert [((s.seq - 1) // M, s.ecn) for s in c.burst()] == [(9, NOT_ECT), (13, ECT0),
                                                              (14, ECT0), (15, ECT0)]
    c.send("A", ack=1 + 14 * M)
    assert [(s.seq - 1) // M for s in c.burst()] == [16, 17, 18]
    c.send("A", ack=1 + 18 * M)
    assert [(s.seq - 1) // M for s in c.burst()] == [19, 20, 21, 22, 23]


def test_timeout_during_the_reduction_queues_cwr_again(h):
    """An RTO during an ECN reduction: no second reduction (Linux tcp_enter_loss keeps ssthresh
    while SND.UNA is below the reduction's end), cwnd 1; the loss probe (new data, ECT) and the
    RTO's resends (Not-ECT, no CWR) go first; the ACK of the resent segment lets F-RTO send new
    data, the first with CWR again (tcp_enter_loss queues it)."""
    c = ecn_conn(h)
    c.sock.send(b"d" * (40 * M))
    assert len(c.burst()) == 10
    c.send("AE", ack=1 + 2 * M)
    assert [((s.seq - 1) // M, "C" in s.flags) for s in c.burst()] == [(10, True)]
    sent = [((s.seq - 1) // M, "C" in s.flags, s.ecn) for _, s in watch(c, 1.5, 0.02)]
    assert sent == [(11, False, ECT0), (2, False, NOT_ECT), (2, False, NOT_ECT)]
    c.send("A", ack=1 + 3 * M)
    assert [((s.seq - 1) // M, "C" in s.flags, s.ecn) for s in c.burst()] == [
        (12, True, ECT0), (13, False, ECT0)]
