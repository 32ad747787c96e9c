"""Retransmission timer: initial RTO 1 s for SYN and SYN-ACK with exponential backoff (RFC 6298
§2.1, §5.5, RFC 9293 §3.8.1), data RTO with the 200 ms minimum as Linux, Karn's rule (RFC 6298
§3), and Linux's tail loss probe (RFC 8985 §7) that comes first when a tail is unacknowledged.

Linux runs in real time: every instant is checked inside a window."""

import errno
import socket

import pytest
from helpers import (
    PEER_IP,
    TS_MSS,
    accept,
    connect_start,
    handshake_passive,
    listen,
    syn_ack_of,
    syn_options,
    watch,
)
from scapy.layers.inet import TCP


def in_window(t: float, lo: float, hi: float) -> bool:
    return lo <= t <= hi


def test_syn_is_retransmitted_after_one_second(h):
    """RFC 6298 §2.1 (initial RTO 1 s), RFC 9293 §3.8.1: an unanswered SYN is sent again after
    1 s with the same sequence number and options (only TSval moves)."""
    c, syn = connect_start(h)
    seen = watch(c, 1.3, 0.02)
    assert len(seen) == 1
    t, again = seen[0]
    assert in_window(t, 0.95, 1.3)
    assert (again.flags, again.seq, again.win) == ("S", 0, syn.win)
    assert {k: v for k, v in again.opts.items() if k != "Timestamp"} == {
        k: v for k, v in syn.opts.items() if k != "Timestamp"}
    assert again.tsval != syn.tsval and again.tsecr == 0


@pytest.mark.slow
def test_syn_retransmissions_back_off(h):
    """RFC 6298 §5.5 (double the RTO on each expiry): SYNs go out at about 1 s and 3 s."""
    c, syn = connect_start(h)
    times = [t for t, s in watch(c, 3.4, 0.05) if s.flags == "S"]
    assert len(times) == 2
    assert in_window(times[0], 0.95, 1.3) and in_window(times[1], 2.95, 3.4)


@pytest.mark.slow
def test_connect_times_out_after_syn_retries(harness_factory):
    """RFC 9293 §3.8.3 (R2 for SYNs, MUST-20): with tcp_syn_retries=1 the SYN is sent twice, then
    connect() fails with ETIMEDOUT once the doubled timer (1 + 2 s) expires."""
    h = harness_factory(tcp_syn_retries=1)
    c, syn = connect_start(h)
    seen = watch(c, 3.4, 0.05)
    assert [s.flags for _, s in seen] == ["S"]
    assert c.sock.connect_ex(("192.0.2.2", 9000)) == errno.ETIMEDOUT


@pytest.mark.slow
def connect_unanswered(h, s, until: float):
    """``s`` connects to a peer that never answers: (the times the SYN was sent again, (when
    SO_ERROR said, errno) or None), watched up to ``until`` s after the first SYN."""
    assert s.connect_ex((PEER_IP, 9000)) == errno.EINPROGRESS
    (syn,) = h.recv()
    t0 = h.now
    resent, failed = [], None
    while h.now - t0 < until and failed is None:
        h.advance(0.05)
        resent += [h.now - t0 for p in h.recv() if p[TCP].flags == "S"]
        e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if e:
            failed = (h.now - t0, e)
    return resent, failed


def test_syncnt_limits_syn_retransmissions(h):
    """RFC 9293 §3.8.3 (MUST-21: R2 for a SYN can be set per connection) as Linux's TCP_SYNCNT:
    with 1 the SYN is sent again once, at 1 s, and connect() fails with ETIMEDOUT when that
    retransmission's RTO runs out, at 3 s; the option reads back."""
    s = h.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT) == 1
    resent, failed = connect_unanswered(h, s, 3.4)
    assert len(resent) == 1 and in_window(resent[0], 0.95, 1.3)
    assert failed is not None and failed[1] == errno.ETIMEDOUT and in_window(failed[0], 2.9, 3.4)


@pytest.mark.parametrize("ms", [500, 2500])
def test_user_timeout_ends_a_connect_after_a_syn_retransmission(h, ms):
    """TCP_USER_TIMEOUT bounds an active open too (Linux: tcp_write_timeout's
    retransmits_timed_out, counted from the first SYN, and tcp_clamp_rto_to_user_timeout): the
    SYN goes again once at its 1 s RTO, then connect() fails with ETIMEDOUT at the user timeout
    (or at once, past it: with 500 ms, right after that retransmission), not after
    tcp_syn_retries (127 s)."""
    s = h.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ms)
    resent, failed = connect_unanswered(h, s, 3.2)
    end = max(1.0, ms / 1000)
    assert len(resent) == 1 and in_window(resent[0], 0.95, 1.3), resent
    assert failed is not None and failed[1] == errno.ETIMEDOUT, failed
    assert in_window(failed[0], end - 0.05, end + 0.35), failed


def user_timeout_run(c, ms: int, until: float):
    """TCP_USER_TIMEOUT ``ms`` on ``c``, 100 bytes written and never acknowledged: (the
    retransmissions' times, (when SO_ERROR said, errno) or None), watched up to ``until`` s."""
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ms)
    assert c.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == ms
    c.sock.send(b"u" * 100)
    assert len(c.recv()) == 1
    t0 = c.h.now
    sent, failed = [], None
    while c.h.now - t0 < until and failed is None:
        c.h.advance(0.01)
        segs = c.recv()
        assert all(s.seq == 1 and s.len == 100 and "R" not in s.flags for s in segs), segs
        sent += [c.h.now - t0 for _ in segs]
        e = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if e:
            failed = (c.h.now - t0, e)
    return sent, failed


@pytest.mark.parametrize("sack", [True, False])
def test_user_timeout_aborts_unacknowledged_data(h, sack):
    """RFC 9293 §3.8.3 (MUST-21: R2 can be set per connection), RFC 5482 (the user timeout), as
    Linux's TCP_USER_TIMEOUT: unacknowledged data fails the connection with ETIMEDOUT once
    the time since its first RTO retransmission (Linux tcp_retransmit_skb's retrans_stamp; the
    tail loss probe does not start it) reaches the timeout; the retransmission timer is cut
    short to fire then (tcp_clamp_rto_to_user_timeout), and nothing more is sent (no RST).
    1000 ms here: with SACK the probe at ~0.3 s, RTOs at ~0.56 and ~1.1 s, failure at ~1.56 s;
    without, RTOs at ~0.28 and ~0.82 s, failure at ~1.28 s."""
    c = handshake_passive(h, 8080, rtt=0.05, options=None if sack else syn_options(sack=False))
    sent, failed = user_timeout_run(c, 1000, 2.0)
    assert failed is not None and failed[1] == errno.ETIMEDOUT, (failed, sent)
    first_rto = sent[1] if sack else sent[0]
    assert in_window(failed[0] - first_rto, 0.97, 1.1), (failed, sent)
    assert len(sent) == (3 if sack else 2), sent
    assert watch(c, 0.3) == []


def test_synack_is_retransmitted_after_one_second(h):
    """RFC 6298 §2.1, RFC 9293 §3.8.1: an unacknowledged SYN-ACK is sent again after 1 s, same
    sequence numbers and options."""
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080)
    seen = watch(c, 1.3, 0.02)
    assert len(seen) == 1
    t, again = seen[0]
    assert in_window(t, 0.95, 1.3)
    assert (again.flags, again.seq, again.ack, again.win) == ("SA", 0, 1, sa.win)
    assert again.opts.keys() == sa.opts.keys()


@pytest.mark.slow
def test_synack_retransmissions_back_off(h):
    """RFC 6298 §5.5: SYN-ACKs are retransmitted at about 1 s and 3 s."""
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080)
    times = [t for t, s in watch(c, 3.4, 0.05)]
    assert len(times) == 2
    assert in_window(times[0], 0.95, 1.3) and in_window(times[1], 2.95, 3.4)


def test_late_ack_after_synack_retransmission_completes(h):
    """RFC 9293 §3.10.7.4: the ACK that finally arrives after a SYN-ACK retransmission still
    establishes the connection."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    assert len(watch(c, 1.3, 0.05)) == 1
    c.send("A", 1, 1)
    assert accept(lst).getpeername()[1] == 40000


def test_unacked_data_is_retransmitted(h):
    """RFC 6298 §5 / RFC 8985 §7: unacknowledged data is sent again, same sequence number and
    payload; the first copy comes ~200 ms later (min RTO; as Linux this first one is a tail loss
    probe: PTO = min(2*SRTT + 200 ms, RTO) for one segment in flight)."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"r" * 10)
    (d,) = c.recv()
    seen = watch(c, 0.35)
    assert len(seen) == 1
    t, again = seen[0]
    assert in_window(t, 0.19, 0.35)
    assert (again.seq, again.data) == (d.seq, d.data)


def test_data_retransmissions_back_off(h):
    """RFC 6298 §5.5: after the probe (~R) the RTO fires one RTO later (~2R), then the timer
    doubles (~4R), with R ~ 200 ms just after the handshake, as Linux."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"r" * 10)
    c.recv()
    times = [t for t, s in watch(c, 1.05, 0.02)]
    assert len(times) == 3
    assert in_window(times[0], 0.19, 0.32)
    assert in_window(times[1], 0.38, 0.58)
    assert in_window(times[2], 0.8, 1.05)


def test_ack_resets_the_backoff(h):
    """RFC 6298 §5.3/§5.7: an ACK for new data restarts the timer from the current RTO; data sent
    afterwards is retransmitted ~200 ms after its own transmission again, not at the backed-off
    interval."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"r" * 10)
    c.recv()
    assert len(watch(c, 0.52, 0.02)) == 2
    c.send("A")
    assert c.recv() == []
    c.sock.send(b"s" * 10)
    (d,) = c.recv()
    seen = watch(c, 0.35)
    assert len(seen) == 1 and in_window(seen[0][0], 0.19, 0.35)
    assert seen[0][1].seq == d.seq


def test_tail_loss_probe_resends_the_last_segment(h):
    """RFC 8985 §7.3 (the probe retransmits the highest-sequence segment when there is no new
    data): with 10 segments unacknowledged, Linux's first retransmission is the last segment, at
    about 2*SRTT (+2 jiffies) -- before any RTO."""
    c = handshake_passive(h, 8080, rtt=0.1)
    c.sock.send(b"t" * 14480)
    segs = c.recv()
    assert len(segs) == 10
    seen = watch(c, 0.3, 0.01)
    assert len(seen) == 1
    t, probe = seen[0]
    assert in_window(t, 0.19, 0.3)
    assert (probe.seq, probe.len) == (segs[-1].seq, segs[-1].len)


@pytest.mark.parametrize("writes", [1, 2])
def test_tail_loss_probe_waits_for_a_delayed_ack_only_behind_one_segment(h, writes):
    """RFC 8985 §7.2 (PTO = 2*SRTT, plus the worst-case delayed ACK when FlightSize is one
    segment): Linux counts segments, not bytes (packets_out == 1), so two 1-byte writes with
    Nagle off are probed at about 2*SRTT + 2 ms, one at 2*SRTT + 200 ms or the RTO if sooner."""
    c = handshake_passive(h, 8080, rtt=0.1)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for k in range(writes):
        c.sock.send(b"ab"[k:k + 1])
    assert len(c.recv()) == writes
    seen = watch(c, 0.45, 0.01)
    assert seen
    t, probe = seen[0]
    lo, hi = (0.19, 0.27) if writes == 2 else (0.29, 0.45)  # (one: capped by the RTO)
    assert in_window(t, lo, hi), t
    assert probe.seq == writes  # the last segment (relative sequence numbers start at 1)


def test_fin_is_retransmitted(h):
    """RFC 9293 §3.10.4 / §3.8.1: an unacknowledged FIN is retransmitted like data, same
    sequence number."""
    c = handshake_passive(h, 8080)
    c.sock.close()
    (fin,) = c.recv()
    assert fin.flags == "FA"
    seen = watch(c, 0.35)
    assert [(s.flags, s.seq) for _, s in seen] == [("FA", 1)]
    assert in_window(seen[0][0], 0.19, 0.35)


def test_karn_no_rtt_sample_from_retransmitted_synack(h):
    """RFC 6298 §3 (Karn: no RTT sample from a retransmitted segment): without timestamps, the
    ACK of a retransmitted SYN-ACK gives no sample, so the first data RTO is still the initial 1 s
    (as Linux: no 3 s fallback, RFC 6298 §5.7 is not applied)."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst, options=syn_options(None))
    assert len(watch(c, 1.15, 0.05)) == 1
    c.send("A", 1, 1)
    c.sock = accept(lst)
    c.sock.send(b"k")
    c.recv()
    seen = watch(c, 1.25, 0.02)
    assert len(seen) == 1
    assert in_window(seen[0][0], 0.95, 1.25)


def test_timestamps_give_rtt_sample_despite_synack_retransmission(h):
    """RFC 7323 §4.1 (RTTM: TSecr gives a valid sample even for retransmissions): with
    timestamps, the ACK echoing the retransmitted SYN-ACK's TSval yields a sample, so data is
    retransmitted well before 1 s."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    assert len(watch(c, 1.15, 0.05)) == 1
    c.send("A", 1, 1)  # TSecr = the latest SYN-ACK's TSval
    c.sock = accept(lst)
    c.sock.send(b"k")
    c.recv()
    seen = watch(c, 0.8, 0.02)
    assert seen and seen[0][0] < 0.8


# --- F-RTO (RFC 5682) and undo after a timeout --------------------------------------------------
TS_M = 1448  # payload of a full segment with timestamps


def rto_after_a_silent_flight(h, **options):
    """30 segments queued, the first 10 sent (0..9) and never ACKed: the loss probe sends new
    data (10) at about 2*SRTT, the RTO resends 0 at about 0.5 s.  Returns the connection and
    the TSval of the first flight."""
    c = handshake_passive(h, 8080, rtt=0.1)
    c.sock.send(b"s" * (30 * TS_M))
    first = c.recv()
    assert len(first) == 10
    seen = watch(c, 0.7)
    assert [(s.seq - 1) // TS_M for _, s in seen] == [10, 0]
    assert in_window(seen[1][0], 0.4, 0.7)
    return c, first[0].tsval


def acks(c, *steps) -> list[list[int]]:
    """One ACK per (ack segment, SACK blocks as segment ranges, tsecr) step; the segments
    (numbers) each released."""
    out = []
    for ack, sacked, tsecr in steps:
        sack = [(1 + a * TS_M, 1 + b * TS_M) for a, b in sacked]
        c.send("A", ack=1 + ack * TS_M, sack=sack or None, tsecr=tsecr)
        out.append([(s.seq - 1) // TS_M for s in c.recv()])
    return out


def test_frto_sends_new_data_after_a_timeout_then_resends_what_was_lost(h):
    """RFC 5682 §2.1 step 2b (Linux tcp_process_loss, tcp_frto 2): the first ACK after the RTO
    that advances SND.UNA sends two new segments (11, 12), not 1 and 2; duplicate ACKs that
    SACK them (step 3a) show the loss was real, and the lost segments go one per ACK, then two
    per partial ACK (slow start from the loss window)."""
    c, _ = rto_after_a_silent_flight(h)
    assert acks(c, (1, [], None)) == [[11, 12]]
    assert acks(c, (1, [(11, 12)], None), (1, [(11, 13)], None),
                (2, [(11, 13)], None), (3, [(11, 13)], None)) == [[1], [2], [3, 4], [5, 6]]


def test_frto_finds_a_spurious_timeout_and_undoes_it(h):
    """RFC 5682 step 3b, RFC 4015 (Linux tcp_try_undo_loss with frto_undo): after the new data
    of step 2b, an ACK for 1 and 2 -- sent before the RTO and never retransmitted -- shows the
    originals were only delayed: cwnd and ssthresh come back (slow start again) and sending
    goes on with new data, no retransmission."""
    c, _ = rto_after_a_silent_flight(h)
    assert acks(c, (1, [], None), (3, [], None), (5, [], None), (7, [], None)) == [
        [11, 12], [13, 14], [15, 16, 17, 18], [19, 20, 21, 22]]


def test_eifel_detects_a_spurious_timeout_by_its_timestamp(h):
    """RFC 3522 §2 / RFC 4015 (Linux tcp_try_undo_loss via tcp_packet_delayed): the first ACK
    after the RTO echoes the timestamp of the original 0, sent before the retransmission: the
    timeout was spurious and is undone at once -- the window is back (10, grown to 11 by the
    ACK), and one new segment goes; then two ACKed segments release four."""
    c, ts0 = rto_after_a_silent_flight(h)
    assert acks(c, (1, [], ts0), (3, [], ts0), (5, [], ts0)) == [
        [11], [12, 13, 14, 15], [16, 17, 18, 19]]


def test_without_frto_a_timeout_goes_back_n(harness_factory):
    """``tcp_frto`` 0 (Linux's sysctl): after the RTO the lost segments go again in order, as
    slow start from one segment allows (RFC 5681 §3.1, RFC 6298 §5)."""
    c, _ = rto_after_a_silent_flight(harness_factory(tcp_frto=0))
    assert acks(c, (1, [], None), (3, [], None), (5, [], None)) == [[1, 2], [3, 4, 5, 6], [7, 8, 9]]


def test_a_timeout_also_resends_what_went_just_before_it(h):
    """RFC 5681 §3.1 / RFC 6675 §5.1 after an RTO: everything outstanding is taken for lost,
    also segments sent shortly before the timeout fired -- as Linux 6.18 does here (no SACK, so
    no loss probe; RACK.rtt 200 ms, three segments sent ~100 ms before the RTO).  The RTO
    resends the first unacknowledged segment; its ACK (cwnd 2) releases the next two again; the
    backed-off RTO resends the next, and its ACK the two after it."""
    M = TS_MSS
    c = handshake_passive(h, 8080, rtt=0.1, options=syn_options(sack=False))
    c.sock.send(b"a" * M)
    c.burst()
    h.advance(0.2)
    c.send("A", ack=1 + M)  # RACK.rtt and the RTT: 200 ms
    c.sock.send(b"b" * M)  # segment 1, timed by the RTO
    assert [(s.seq - 1) // M for s in c.recv()] == [1]
    h.advance(0.3)
    c.sock.send(b"c" * (3 * M))  # segments 2-4, ~100 ms before the RTO fires
    assert [(s.seq - 1) // M for s in c.recv()] == [2, 3, 4]
    assert [(s.seq - 1) // M for _, s in watch(c, 0.2)] == [1]
    c.send("A", ack=1 + 2 * M)
    assert [(s.seq - 1) // M for s in c.burst()] == [2, 3]
    assert [(s.seq - 1) // M for _, s in watch(c, 1.0)] == [2]
    c.send("A", ack=1 + 3 * M)
    assert [(s.seq - 1) // M for s in c.burst()] == [3, 4]
