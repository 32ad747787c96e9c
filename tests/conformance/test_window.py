"""Flow control: the send window and its scaling (RFC 9293 §3.8.6, RFC 7323 §2), zero windows and
persist probing (RFC 9293 §3.8.6.1, RFC 1122 §4.2.2.17), the receive window and window updates
(RFC 9293 §3.8.6.2, RFC 1122 §4.2.3.3)."""

import socket

import pytest
from helpers import (
    LOCAL_IP,
    TS_MSS,
    handshake_active,
    handshake_passive,
    read_all,
    syn_options,
    watch,
)

M = TS_MSS


def small_rcvbuf_conn(h, rcvbuf: int = 4096):
    """A passive connection whose listener had SO_RCVBUF set before listen(): Linux doubles the
    value (8192), offers window scale 0 and a 2896-byte window (half the buffer, in MSS units)."""
    lst = h.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    lst.bind((LOCAL_IP, 8080))
    lst.listen(8)
    return handshake_passive(h, 8080, listener=lst)


def test_sender_respects_a_zero_window(h):
    """RFC 9293 §3.8.6 (the sender must not send beyond SND.UNA + SND.WND): with a zero window
    advertised, a write puts nothing on the wire."""
    c = handshake_passive(h, 8080, ack_win=0)
    c.sock.send(b"z" * 3000)
    assert c.recv() == []


def test_zero_window_probes_back_off(h):
    """RFC 9293 §3.8.6.1 (MUST-35: probe a zero window; the interval backs off): as Linux, a probe
    is a bare ACK with SEG.SEQ = SND.UNA - 1 (no data), first after ~RTO (~200 ms), then at
    doubling intervals."""
    c = handshake_passive(h, 8080, ack_win=0)
    c.sock.send(b"z" * 3000)
    seen = watch(c, 1.8, 0.02)
    assert [(s.flags, s.seq, s.len) for _, s in seen] == [("A", 0, 0)] * 3
    t = [x for x, _ in seen]
    assert 0.19 <= t[0] <= 0.35
    assert 0.55 <= t[1] <= 0.85
    assert 1.3 <= t[2] <= 1.8


def test_window_opening_resumes_transmission(h):
    """RFC 9293 §3.8.6 / §3.10.7.4 (SND.WND update): an ACK opening the window releases the
    queued data at once."""
    c = handshake_passive(h, 8080, ack_win=0)
    c.sock.send(b"z" * 3000)
    c.send("A", win=100)
    assert [(s.seq, s.len) for s in c.recv()] == [(1, M), (1 + M, M), (1 + 2 * M, 104)]


def test_zero_window_after_data_then_small_opening(h):
    """RFC 9293 §3.8.6: a window closed by an ACK stops new data; a later window of 10 (x128 with
    wscale 7 = 1280 bytes) lets the 1000 queued bytes go in one segment."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"a" * 1000)
    c.recv()
    c.send("A", win=0)
    c.sock.send(b"b" * 1000)
    assert c.recv() == []
    c.send("A", win=10)
    assert [(s.seq, s.len) for s in c.recv()] == [(1001, 1000)]


def test_window_scale_multiplies_the_peer_window(h):
    """RFC 7323 §2.3 (SND.WND = SEG.WND << Snd.Wind.Shift): a raw window of 8 with scale 7 is 1024
    bytes: exactly 1024 bytes go out, and 1024 more once they are acknowledged.  As Linux the
    segments are bounded by half the largest window offered (512 bytes)."""
    c = handshake_passive(h, 8080, ack_win=8)
    c.sock.send(b"w" * 5000)
    assert [(s.seq, s.len) for s in c.recv()] == [(1, 512), (513, 512)]
    c.send("A", ack=1025, win=8)
    assert [(s.seq, s.len) for s in c.recv()] == [(1025, 512), (1537, 512)]


def test_unscaled_window_limits_the_flight(h):
    """RFC 9293 §3.8.6: without window scaling a 1000-byte window allows 1000 bytes in flight
    (as Linux, in two 500-byte segments: half the largest window)."""
    c = handshake_passive(h, 8080, ack_win=1000, options=syn_options(wscale=None))
    c.sock.send(b"w" * 5000)
    segs = c.recv()
    assert sum(s.len for s in segs) == 1000
    assert [(s.seq, s.len) for s in segs] == [(1, 500), (501, 500)]


def test_stack_window_field_is_scaled(h):
    """RFC 7323 §2.3 (SEG.WND = RCV.WND >> Rcv.Wind.Shift): established segments carry the window
    shifted right by the scale offered in the SYN-ACK (10): 64 here, as Linux (65160 rounded up)."""
    c = handshake_passive(h, 8080)
    assert c.synack.opts["WScale"] == 10
    c.send("PA", data=b"x")
    assert c.recv()[0].win == 64


def test_rcvbuf_sets_an_unscaled_small_window(h):
    """RFC 7323 §2.2 (the scale is chosen from the buffer), as Linux: SO_RCVBUF=4096 before listen
    gives a SYN-ACK with WScale 0 and window 2896."""
    c = small_rcvbuf_conn(h)
    assert (c.synack.opts["WScale"], c.synack.win) == (0, 2896)


def test_receive_window_shrinks_to_zero_as_data_queues(h):
    """RFC 9293 §3.8.6.2.2 (the right edge never moves left): unread data eats the window until it
    is 0; data beyond it is answered with an ACK that repeats RCV.NXT and window 0."""
    c = small_rcvbuf_conn(h)
    c.send("A", data=b"1" * M)
    (a1,) = c.recv()
    assert (a1.ack, a1.win) == (1 + M, 2896)
    c.send("A", data=b"2" * M)
    c.send("A", data=b"3" * M)
    c.recv()
    c.send("A", data=b"4" * M)
    (a4,) = c.recv()
    assert (a4.ack, a4.win) == (1 + 3 * M, 0)


def test_zero_window_probe_is_answered(h):
    """RFC 9293 §3.8.6.1 (MUST-36: a receiver answers a probe with the current window): a
    1-byte probe into a zero window draws an ACK with window 0 and the byte is not taken."""
    c = small_rcvbuf_conn(h)
    for _i in range(3):
        c.send("A", data=b"f" * M)
    c.recv()
    c.send("A", seq=1 + 3 * M, data=b"p")
    (a,) = c.recv()
    assert (a.ack, a.win) == (1 + 3 * M, 0)
    assert len(read_all(c.sock)) == 3 * M


def test_window_update_after_the_application_reads(h):
    """RFC 9293 §3.8.6.2.2, RFC 1122 §4.2.3.3: when the application empties the buffer, a window
    update (an ACK with the reopened window) is sent at once."""
    c = small_rcvbuf_conn(h)
    for _i in range(3):
        c.send("A", data=b"f" * M)
    c.recv()
    assert len(read_all(c.sock)) == 3 * M
    (upd,) = c.recv()
    assert (upd.flags, upd.ack, upd.win) == ("A", 1 + 3 * M, 2896)


def test_receiver_sws_avoidance_no_tiny_window_update(h):
    """RFC 1122 §4.2.3.3 (receiver SWS avoidance: do not advertise a small window increase):
    reading a few bytes from a full buffer sends no window update."""
    c = small_rcvbuf_conn(h)
    for _i in range(3):
        c.send("A", data=b"f" * M)
    h.advance(0.1)  # the delayed ACK of the last segments (window 0) goes out first
    assert [(a.ack, a.win) for a in c.recv()][-1] == (1 + 3 * M, 0)
    assert len(read_all(c.sock, 100)) == 100
    assert c.recv() == []
    assert len(read_all(c.sock, 1300)) == 1300
    assert c.recv() == []


# --- receive-buffer autotuning (Linux tcp_rcv_space_adjust; fsdp.tcp.drs) --------------------
LONG_RTT = 1.0  # s: long enough that a whole round's segments reach the Linux harness within it


def _sender_rounds(c, rounds: int, rtt: float = LONG_RTT) -> list[tuple[int, int, int]]:
    """The peer plays a bulk sender on a path with ``rtt``: each round it sends the window last
    offered, in bursts of 8 full segments that the application reads as they arrive, the
    round's segments all echoing the TSval of the previous round's last ACK (so the receiver
    measures ``rtt``); then it waits an RTT.  Returns (segments sent, the largest window
    offered, SO_RCVBUF) for each round."""
    if c.listener is not None:  # a passive open: the SYN-ACK's window, never scaled (§2.2)
        wscale = c.synack.opts.get("WScale", 0)
        win = c.synack.win
    else:  # an active open: the window of its ACK of our SYN-ACK
        wscale = c.syn.opts.get("WScale", 0)
        win = c.handshake_ack.win << wscale
    c.h.advance(rtt)
    out = []
    for _ in range(rounds):
        ecr = c.last_tsval
        n = win // M
        sent = 0
        largest = 0
        while sent < n:
            for _i in range(min(8, n - sent)):
                c.send("A", data=b"d" * M, tsecr=ecr)
            sent += min(8, n - sent)
            c.h.advance(0.005)
            assert len(read_all(c.sock)) > 0
            largest = max([largest] + [s.win << wscale for s in c.recv()])
        c.h.advance(0.005)
        segs = c.recv()
        largest = max([largest] + [s.win << wscale for s in segs])
        out.append((n, largest, c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)))
        win = largest
        c.h.advance(rtt)
    return out


@pytest.mark.slow
def test_the_receive_buffer_grows_when_the_application_keeps_up(h):
    """Linux tcp_rcv_space_adjust / tcp_rcvbuf_grow (receive-buffer autotuning): over a 1 s
    path, round 0 is read at 45 segments (65160 bytes) per RTT, more than the first estimate
    (10 MSS); the buffer grows so that the window may double and more: 2 * 65160 plus twice
    that scaled by the reading's growth (65160 / 14480), 1,042,560 bytes of window, a buffer of
    1,042,560 * 256 / 170 (the payload ratio measured) = 1,569,972.  The window then opens by
    two MSS per segment received (86,016 -> 233,472 -> 700,416) instead of stopping at what the
    default 128 KiB allows."""
    c = handshake_passive(h, 8080)
    rounds = _sender_rounds(c, 3)
    assert [(n, w) for n, w, _ in rounds] == [(45, 86016), (59, 233472), (161, 700416)]
    assert [b for _, _, b in rounds][:2] == [131072, 1569972]
    assert rounds[2][2] >= 1569972  # never shrinks (Linux may measure again within round 2)


@pytest.mark.slow
def test_the_receive_buffer_of_an_active_open_grows_too(h):
    """The same on the connecting side (Linux tcp_init_buffer_space from tcp_finish_connect):
    its ACK offers 63 units (64,512 bytes), so round 0 is 44 segments (63,712 bytes) and the
    buffer grows to (2 * 63712 + 2 * (2 * 63712 * 49232 // 14480)) * 256 / 170 = 1,496,705."""
    c = handshake_active(h)
    rounds = _sender_rounds(c, 3)
    assert [(n, w) for n, w, _ in rounds] == [(44, 86016), (59, 233472), (161, 700416)]
    assert [b for _, _, b in rounds][:2] == [131072, 1496705]
    assert rounds[2][2] >= 1496705


@pytest.mark.slow
def test_a_receive_buffer_the_application_set_does_not_grow(h):
    """Linux SOCK_RCVBUF_LOCK: SO_RCVBUF set on the listener (65536, doubled) is the
    connection's for good; the same reading leaves the window at what it allows."""
    lst = h.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    lst.bind((LOCAL_IP, 8080))
    lst.listen(8)
    c = handshake_passive(h, 8080, listener=lst)
    assert _sender_rounds(c, 2) == [(45, 85596, 131072), (59, 85596, 131072)]


@pytest.mark.slow
def test_tcp_moderate_rcvbuf_0_turns_autotuning_off(harness_factory):
    """The sysctl tcp_moderate_rcvbuf = 0: the buffer stays at tcp_rmem[1]."""
    h = harness_factory(tcp_moderate_rcvbuf=0)
    c = handshake_passive(h, 8080)
    assert _sender_rounds(c, 2) == [(45, 86016, 131072), (59, 86016, 131072)]


def test_out_of_order_data_grows_the_window_and_the_buffer(h):
    """Linux tcp_data_queue_ofo: with SACK, each segment held out of order grows the window's
    ceiling (rcv_ssthresh) by two MSS until the buffer's free space stops it, and measures the
    payload ratio; the buffer grows to cover twice the first RTT's estimate plus the span held:
    (2 * 14480 + 44 * 1448 + 1448) * 256 / 170 = 141,733.  Reading it all reopens that window."""
    c = handshake_passive(h, 8080)
    for k in range(1, 45):
        c.send("A", seq=1 + k * M, data=b"o" * M)
    h.advance(0.005)
    acks = c.recv()
    assert [(a.ack, a.sack) for a in acks] == [
        (1, [(1 + M, 1 + (k + 1) * M)]) for k in range(1, 45)
    ]
    assert [a.win for a in acks] == [67, 70, 73, 75] + [78] * 40
    assert c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 141733
    c.send("A", seq=1, data=b"i" * M)
    h.advance(0.01)
    assert [a.ack for a in c.recv()] == [1 + 45 * M]
    assert len(read_all(c.sock)) == 45 * M
    (upd,) = c.recv()
    assert (upd.ack, upd.win) == (1 + 45 * M, 78)


def test_queued_segments_are_charged_as_linux_coalesces_them(h):
    """Linux tcp_queue_rcv / skb_try_coalesce: a full segment queued behind another joins its
    socket buffer as a page fragment and is charged 1920 bytes, not its 2176 (up to 17
    fragments a buffer, then a new one).  Twenty full segments left unread: the window first
    grows (67 .. 78), holds at 78 on the sixth, then falls by one unit (1024) a segment.  Reading
    3000 bytes frees no buffer (Linux frees a buffer at its last byte): no window update, and the
    next segment's ACK offers one unit less (63)."""
    c = handshake_passive(h, 8080)
    wins = []
    for _ in range(20):
        c.send("A", data=b"d" * M)
        h.advance(0.002)
        wins += [s.win for s in c.recv()]
    assert wins == [67, 70, 73, 75, 78, 78, 77, 76, 75, 74, 73, 72, 71, 70, 69, 68, 67, 66, 65, 64]
    assert len(c.sock.recv(3000)) == 3000
    h.advance(0.002)
    assert c.recv() == []
    c.send("A", data=b"e" * M)
    h.advance(0.002)
    assert [s.win for s in c.recv()] == [63]
