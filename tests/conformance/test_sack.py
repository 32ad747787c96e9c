"""Selective acknowledgment: the sender's use of SACK information (RFC 2018, RFC 6675) and the
receiver's SACK blocks (RFC 2018 §3-§4).

As Linux (RACK, RFC 8985) may declare a segment lost from a single SACK after min_RTT/4, these
scenarios check what must have happened after the DupThresh-th SACK, which both RACK and RFC 6675
agree on."""

import pytest
from helpers import MSS, TS_MSS, handshake_passive, syn_options, watch
from scapy.layers.inet import IP

M = TS_MSS


def blk(a: int, b: int) -> tuple[int, int]:
    """A SACK block covering full segments a..b-1 of the stack's data (relative seq)."""
    return (1 + a * M, 1 + b * M)


def flight(h, segments: int = 10):
    c = handshake_passive(h, 8080, rtt=0.1)
    c.sock.send(b"s" * (segments * M))
    segs = c.recv()
    assert len(segs) == segments
    return c


def retransmitted(segs, *, before: int = 10) -> list[int]:
    return [(s.seq - 1) // M for s in segs if (s.seq - 1) // M < before]


def test_three_sacked_segments_retransmit_the_hole(h):
    """RFC 6675 §5 (a segment is lost once DupThresh segments above it are SACKed): after SACKs
    for segments 1, 2, 3 the missing segment 0 has been retransmitted exactly once."""
    c = flight(h)
    out = []
    for k in (2, 3, 4):
        c.send("A", ack=1, sack=[blk(1, k)])
        out += c.recv()
    assert retransmitted(out) == [0]


def test_sacked_segments_are_not_retransmitted(h):
    """RFC 6675 §4 (NextSeg skips SACKed data), RFC 2018 §6: with two holes, only the two missing
    segments are retransmitted, never the SACKed ones between them."""
    c = flight(h)
    out = []
    for blocks in ([blk(1, 2)], [blk(3, 4), blk(1, 2)], [blk(3, 5), blk(1, 2)],
                   [blk(3, 6), blk(1, 2)], [blk(3, 7), blk(1, 2)]):
        c.send("A", ack=1, sack=blocks)
        out += c.recv()
    assert sorted(retransmitted(out)) == [0, 2]


def test_cumulative_ack_after_sack_recovery_sends_no_duplicates(h):
    """RFC 6675 §5.1: once the cumulative ACK covers all holes, recovery ends and no SACKed or
    already retransmitted segment is sent again."""
    c = flight(h)
    out = []
    for k in (2, 3, 4, 5):
        c.send("A", ack=1, sack=[blk(1, k)])
        out += c.recv()
    c.send("A", ack=1 + 10 * M)
    assert c.recv() == []
    assert watch(c, 0.3) == []


def paced_flight(h):
    """A SACK connection with segments 1..11 outstanding, cwnd 11 and more data queued.  The
    RTT is 200 ms for every sample, so Linux's RACK reordering window (min_RTT/4 = 50 ms) keeps
    it from declaring a loss before the third SACK: both stacks then agree on when recovery
    begins (RFC 6675's DupThresh)."""
    c = handshake_passive(h, 8080, rtt=0.2)
    c.sock.send(b"s" * (60 * M))
    assert len(c.recv()) == 10
    h.advance(0.2)
    c.send("A", ack=1 + M)
    assert [(s.seq - 1) // M for s in c.recv()] == [10, 11]
    return c


def sack_acks(c, ack: int, blocks_list) -> list[list[int]]:
    """One ACK per entry of ``blocks_list``; the segments (numbers) each released."""
    out = []
    for blocks in blocks_list:
        c.send("A", ack=ack, sack=blocks)
        out.append([(s.seq - 1) // M for s in c.recv()])
    return out


def test_sack_recovery_sends_one_segment_per_two_sacked(h):
    """RFC 6675 §5 step 3 (before recovery, pipe makes room: one new segment per SACKed one),
    RFC 6937 §3.1 (in recovery, PRR sends CEIL(delivered*ssthresh/RecoverFS), ssthresh 5 and
    RecoverFS 11): the third SACK retransmits the hole, then one new segment leaves for every
    second segment SACKed."""
    c = paced_flight(h)
    out = sack_acks(c, 1 + M, [[blk(2, k)] for k in range(3, 13)])
    assert out == [[12], [13], [1], [], [14], [], [15], [], [16], []]


def test_sack_recovery_keeps_the_flight_at_ssthresh(h):
    """RFC 6937 §3.1 (slow-start reduction bound, pipe <= ssthresh): once the flight has fallen to
    ssthresh, each ACK sends what it delivered, so the flight stays there; the full ACK ends
    recovery with cwnd = ssthresh (RFC 6675 §5.1, RFC 6582 step 6) and the segments still SACKed
    above it keep counting as delivered (pipe, not FlightSize, as Linux)."""
    c = paced_flight(h)
    sack_acks(c, 1 + M, [[blk(2, k)] for k in range(3, 13)])
    assert sack_acks(c, 1 + 6 * M, [[blk(7, 13)], [blk(7, 14)], [blk(7, 15)]]) == [
        [17], [18], [19]]
    assert sack_acks(c, 1 + 14 * M, [[blk(15, 16)]]) == [[20]]
    assert sack_acks(c, 1 + 18 * M, [[]]) == [[21, 22]]


def test_second_hole_is_resent_in_its_turn(h):
    """RFC 6675 §5 (NextSeg: the lowest lost segment first) with RFC 6937 pacing: holes at 1 and
    3; the third SACKed segment resends 1, and 3 goes on the next ACK PRR allows one segment
    (Linux's RACK already deems 3 lost at the third SACK, RFC 6675 at the fourth: PRR hides the
    difference); the partial ACK then releases new data."""
    c = paced_flight(h)
    out = sack_acks(c, 1 + M, [[blk(2, 3)], [blk(4, 5), blk(2, 3)], [blk(4, 6), blk(2, 3)],
                               [blk(4, 7), blk(2, 3)], [blk(4, 8), blk(2, 3)],
                               [blk(4, 9), blk(2, 3)]])  # fmt: skip
    assert out == [[12], [13], [1], [], [3], []]
    assert sack_acks(c, 1 + 3 * M, [[blk(4, 9)], [blk(4, 10)]]) == [[14], []]


def test_one_sacked_segment_resends_the_hole_after_the_reordering_window(h):
    """RFC 8985 §6.2-§6.3 (RACK): one SACKed segment sent after the hole is enough once the
    reordering window (min_RTT/4 = 50 ms here) has passed without the hole arriving: the
    reordering timer resends it and starts recovery, with no further ACK.  PRR then paces as
    usual (the next SACK releases nothing, the one after a new segment)."""
    c = paced_flight(h)
    assert sack_acks(c, 1 + M, [[blk(2, 3)]]) == [[12]]  # pipe: one out, one in
    out = watch(c, 0.3)
    assert [(s.seq - 1) // M for _, s in out] == [1]
    assert 0.03 <= out[0][0] <= 0.12, out[0][0]
    assert sack_acks(c, 1 + M, [[blk(2, 4)], [blk(2, 5)]]) == [[], [13]]


def test_lost_retransmission_is_found_and_resent(h):
    """RFC 8985 §3.3 (RACK detects a lost retransmission, which RFC 6675 cannot): once a segment
    sent after the retransmission of 1 is SACKed (14), the retransmission is deemed lost along
    with 7-13 (all sent before 14: RACK's window is 0 in recovery) and sent again, as PRR allows
    (two segments: 1 and 7); when 7's resend is SACKed, 1 (sent before it) is lost once more."""
    c = paced_flight(h)
    out = sack_acks(c, 1 + M, [[blk(2, k)] for k in range(3, 8)])
    assert out == [[12], [13], [1], [], [14]]
    assert sack_acks(c, 1 + M, [[blk(14, 15), blk(2, 7)]]) == [[1, 7]]
    h.advance(0.05)  # 7's resend is SACKed well after min_RTT: no ambiguity (§6.2 step 2)
    assert sack_acks(c, 1 + M, [[blk(14, 15), blk(2, 8)]]) == [[1]]
    assert watch(c, 0.3) == []


def reordered_flight(h):
    """``paced_flight`` (segments 1..11 out, RTT 200 ms), then reordering: 2 is SACKed and 1,
    never retransmitted, arrives right after (RFC 8985 §6.2 step 3, Linux reord_seen); 3..14
    are then outstanding.  Returns the connection and the TSval of the first flight (segment
    3's), for ACKs that echo a late original."""
    c = handshake_passive(h, 8080, rtt=0.2)
    c.sock.send(b"s" * (60 * M))
    first = c.recv()
    assert len(first) == 10
    h.advance(0.2)
    c.send("A", ack=1 + M)
    assert [(s.seq - 1) // M for s in c.recv()] == [10, 11]
    assert sack_acks(c, 1 + M, [[blk(2, 3)]]) == [[12]]
    assert sack_acks(c, 1 + 3 * M, [[]]) == [[13, 14]]
    return c, first[3].tsval


def test_after_reordering_three_sacks_wait_out_the_reordering_window(h):
    """RFC 8985 §6.2 step 4 (Linux tcp_rack_reo_wnd once reord_seen): after reordering the
    window is no longer 0 when DupThresh segments are SACKed: the third SACK above the hole 3
    sends new data only, and the reordering timer resends 3 min_RTT/4 = 50 ms later."""
    c, _ = reordered_flight(h)
    out = sack_acks(c, 1 + 3 * M, [[blk(4, 5)], [blk(4, 6)], [blk(4, 7)]])
    assert out == [[15], [16], [17]]
    late = watch(c, 0.1)
    assert [(s.seq - 1) // M for _, s in late] == [3]
    assert 0.03 <= late[0][0] <= 0.09, late[0][0]


@pytest.mark.parametrize("dsack", [True, False], ids=["dsack", "no_dsack"])
def test_a_dsack_after_reordering_widens_the_window(h, dsack):
    """RFC 8985 §6.2 step 4 (Linux tcp_rack_update_reo_wnd): the original 3 was only late (its
    ACK echoes the original's timestamp) and the peer D-SACKs the resend: the retransmission
    was spurious, so reo_wnd_mult becomes 2 and the next hole (8, with 9 SACKed) waits
    min_RTT/4 * 2 = 100 ms for the reordering timer.  Without the D-SACK it waits 50 ms."""
    c, ts0 = reordered_flight(h)
    sack_acks(c, 1 + 3 * M, [[blk(4, 5)], [blk(4, 6)], [blk(4, 7)]])
    assert [(s.seq - 1) // M for _, s in watch(c, 0.1)] == [3]
    c.send("A", ack=1 + 7 * M, tsecr=ts0)
    assert [(s.seq - 1) // M for s in c.recv()] == [18, 19]  # Eifel: an undo, see below
    c.send("A", ack=1 + 7 * M, tsecr=ts0, sack=[blk(3, 4)] if dsack else None)
    assert c.recv() == []
    c.send("A", ack=1 + 8 * M, tsecr=ts0)
    assert [(s.seq - 1) // M for s in c.recv()] == [20, 21]
    c.send("A", ack=1 + 8 * M, tsecr=ts0, sack=[blk(9, 10)])
    assert [(s.seq - 1) // M for s in c.recv()] == [22, 23]
    late = watch(c, 0.3)
    assert [(s.seq - 1) // M for _, s in late] == [8]
    if dsack:
        assert 0.08 <= late[0][0] <= 0.15, late[0][0]
    else:
        assert 0.03 <= late[0][0] <= 0.075, late[0][0]


def test_a_late_original_undoes_the_reduction(h):
    """RFC 3522 §2 (Eifel detection) and RFC 4015 (Linux tcp_try_undo_partial): the ACK that
    fills the hole echoes the timestamp of the original 3, sent before its retransmission, so
    the retransmission was not needed: recovery ends, cwnd and ssthresh come back (slow start
    again) and the ACK, which delivered one segment, releases two."""
    c, ts0 = reordered_flight(h)
    sack_acks(c, 1 + 3 * M, [[blk(4, 5)], [blk(4, 6)], [blk(4, 7)]])
    assert [(s.seq - 1) // M for _, s in watch(c, 0.1)] == [3]
    c.send("A", ack=1 + 7 * M, tsecr=ts0)
    assert [(s.seq - 1) // M for s in c.recv()] == [18, 19]
    c.send("A", ack=1 + 9 * M, tsecr=ts0)
    assert [(s.seq - 1) // M for s in c.recv()] == [20, 21, 22, 23]


def fast_retransmit_of_1(h):
    """``paced_flight``, then SACKs of 2, 2-3, 2-4: 1 is resent (cwnd 11, ssthresh 5)."""
    c = paced_flight(h)
    assert sack_acks(c, 1 + M, [[blk(2, 3)], [blk(2, 4)], [blk(2, 5)]]) == [[12], [13], [1]]
    return c


def test_a_dsack_after_recovery_undoes_the_reduction(h):
    """RFC 3708 / RFC 2883 §4 (Linux tcp_try_undo_dsack, also once recovery is over): the full
    ACK ends recovery at ssthresh (5, grown to 7 by the ACK: 14..20 go); then the peer
    D-SACKs the only retransmission, so it was not needed: cwnd is back to 11 and the D-SACK
    itself releases four segments.  Without it the duplicate ACK releases nothing."""
    c = fast_retransmit_of_1(h)
    assert sack_acks(c, 1 + 14 * M, [[]]) == [[14, 15, 16, 17, 18, 19, 20]]
    assert sack_acks(c, 1 + 14 * M, [[blk(1, 2)]]) == [[21, 22, 23, 24]]
    assert sack_acks(c, 1 + 16 * M, [[]]) == [[25, 26, 27, 28]]


def test_a_duplicate_ack_without_dsack_undoes_nothing(h):
    c = fast_retransmit_of_1(h)
    assert sack_acks(c, 1 + 14 * M, [[]]) == [[14, 15, 16, 17, 18, 19, 20]]
    assert sack_acks(c, 1 + 14 * M, [[]]) == [[]]
    assert sack_acks(c, 1 + 16 * M, [[]]) == [[21, 22]]


def test_a_dsack_in_recovery_undoes_it(h):
    """Linux tcp_try_undo_dsack in recovery: after a partial ACK (nothing released, PRR) the
    D-SACK of the retransmitted 1 shows it spurious: recovery ends with the window restored,
    and the D-SACK releases 14 and 15."""
    c = fast_retransmit_of_1(h)
    assert sack_acks(c, 1 + 5 * M, [[]]) == [[]]
    assert sack_acks(c, 1 + 5 * M, [[blk(1, 2)]]) == [[14, 15]]
    assert sack_acks(c, 1 + 7 * M, [[]]) == [[16, 17, 18, 19]]


@pytest.mark.parametrize("dsack_above", [True, False], ids=["dsack_above_una", "no_dsack"])
def test_a_dsack_above_snd_una_counts_for_the_undo(h, dsack_above):
    """RFC 3708 / RFC 2883 §4 with two retransmissions, 1 and 5 (Linux counts both ways:
    tcp_check_dsack for data below SND.UNA, tcp_sacktag_one for a D-SACK inside the second
    block, above it).  The resend of 5 is D-SACKed while 1 is still missing; after the full
    ACK the D-SACK of 1 leaves no retransmission unaccounted for, so the reduction is undone:
    cwnd 11 again, and that D-SACK releases five segments.  Without the first D-SACK one
    retransmission is still unexplained: nothing is undone."""
    c = fast_retransmit_of_1(h)
    out = sack_acks(c, 1 + M, [[blk(6, 7), blk(2, 5)], [blk(6, 8), blk(2, 5)],
                               [blk(6, 9), blk(2, 5)], [blk(6, 10), blk(2, 5)]])
    assert out == [[], [5], [], [14]]  # 5 is lost too (RACK: 7, sent after it, SACKed)
    late_5 = [blk(5, 6), blk(2, 10)] if dsack_above else [blk(2, 10)]
    assert sack_acks(c, 1 + M, [late_5]) == ([[15]] if dsack_above else [[]])
    assert sack_acks(c, 1 + 14 * M, [[]]) == (
        [[16, 17, 18, 19]] if dsack_above else [[15, 16, 17, 18, 19]])
    if dsack_above:
        assert sack_acks(c, 1 + 14 * M, [[blk(1, 2)]]) == [[20, 21, 22, 23, 24]]
        assert sack_acks(c, 1 + 16 * M, [[]]) == [[25, 26, 27, 28]]
    else:
        assert sack_acks(c, 1 + 14 * M, [[blk(1, 2)]]) == [[]]
        assert sack_acks(c, 1 + 16 * M, [[]]) == [[20, 21]]


@pytest.mark.parametrize("dsack", [True, False], ids=["dsack", "no_dsack"])
def test_a_dsack_counts_as_delivered_for_prr(h, dsack):
    """RFC 6937 DeliveredData with a D-SACK (Linux tcp_dsack_seen: "a spurious retransmission
    is delivered"): in recovery, a D-SACK of the resent 5, already SACKed, adds nothing new to
    the scoreboard but PRR counts the segment delivered twice and sends one (15); the same
    ACK without the D-SACK sends nothing, and the full ACK then has one more to send."""
    c = fast_retransmit_of_1(h)
    out = sack_acks(c, 1 + M, [[blk(6, 7), blk(2, 5)], [blk(6, 8), blk(2, 5)],
                               [blk(6, 9), blk(2, 5)], [blk(6, 10), blk(2, 5)]])
    assert out == [[], [5], [], [14]]
    assert sack_acks(c, 1 + M, [[blk(2, 10)]]) == [[]]
    again = [blk(5, 6), blk(2, 10)] if dsack else [blk(2, 10)]
    assert sack_acks(c, 1 + M, [again, [blk(2, 11)]]) == ([[15], []] if dsack else [[], []])
    assert sack_acks(c, 1 + 14 * M, [[]]) == ([[16, 17, 18]] if dsack else [[15, 16, 17, 18]])


def test_sack_blocks_beyond_snd_nxt_are_ignored(h):
    """RFC 2018 §8 / RFC 6675 §5 (only valid SACK information counts): blocks above SND.NXT are
    ignored, so ACKs carrying only them trigger no retransmission."""
    c = flight(h, 4)
    for _ in range(4):
        c.send("A", ack=1, sack=[blk(20, 22)])
    assert c.recv() == []


def test_sack_below_cumulative_ack_is_harmless(h):
    """RFC 2883 §4 (a D-SACK block below the cumulative ACK reports a duplicate): it neither
    triggers a retransmission nor breaks the connection."""
    c = flight(h, 4)
    c.send("A", ack=1 + 2 * M)
    c.send("A", ack=1 + 2 * M, sack=[blk(0, 1)])
    assert c.recv() == []
    c.send("A", ack=1 + 4 * M)
    c.sock.send(b"more")
    assert [s.data for s in c.recv()] == [b"more"]


def test_receiver_reports_at_most_three_blocks_with_timestamps(h):
    """RFC 2018 §3 (40 option bytes: with the 12-byte timestamp option at most 3 blocks fit):
    with 5 separate out-of-order ranges the dup ACK lists the 3 most recent."""
    c = handshake_passive(h, 8080)
    for i in range(5):
        c.send("PA", seq=1 + 200 * (i + 1), data=b"o" * 100)
        (dup,) = c.recv()
    assert dup.sack == [(1001, 1101), (801, 901), (601, 701)]


def test_receiver_reports_four_blocks_without_timestamps(h):
    """RFC 2018 §3 (at most 4 blocks when no other option is present)."""
    c = handshake_passive(h, 8080, options=syn_options(None))
    for i in range(5):
        c.send("PA", seq=1 + 200 * (i + 1), data=b"o" * 100)
        (dup,) = c.recv()
    assert dup.sack == [(1001, 1101), (801, 901), (601, 701), (401, 501)]


def test_partially_filled_hole_updates_blocks(h):
    """RFC 2018 §4: when data fills the first hole, the cumulative ACK moves up to the next hole
    and the blocks describe only what is still above it."""
    c = handshake_passive(h, 8080)
    c.send("PA", seq=101, data=b"b" * 100)
    c.send("PA", seq=301, data=b"d" * 100)
    c.recv()
    c.send("PA", seq=1, data=b"a" * 100)
    (ack,) = c.recv()
    assert (ack.ack, ack.sack) == (201, [(301, 401)])


def hole(c, *, at: int = 101, n: int = 100, ack: int | None = None):
    """The peer sends ``n`` bytes at ``at``, leaving a hole below: the stack now holds a SACK
    block (its duplicate ACK reports it)."""
    c.send("PA", seq=at, data=b"o" * n, ack=ack)
    (dup,) = c.recv()
    assert dup.sack == [(at, at + n)]


def test_sack_blocks_shorten_full_segments(h):
    """RFC 9293 §3.7.1 MUST-16: the effective send MSS is less the TCP options a segment
    carries; RFC 2018 §3: while out-of-order data is held, every segment sent reports it.  One
    SACK block (2 NOPs + 10 bytes) takes 12 bytes from each full segment, so no frame exceeds
    the MTU; the write's remainder goes at once as one segment (Linux tcp_current_mss)."""
    c = handshake_passive(h, 8080)
    hole(c)
    c.sock.send(b"d" * (3 * M))
    segs = c.recv()
    assert [s.len for s in segs] == [M - 12] * 3 + [36]
    assert all(s.sack == [(101, 201)] and s.pkt[IP].len <= 1500 for s in segs)
    assert segs[-1].flags == "PA"  # the write's end (Linux may push earlier too: forced_push)
    assert b"".join(s.data for s in segs) == b"d" * (3 * M)


def test_two_sack_blocks_take_twenty_bytes(h):
    """As above with two holes: 4 + 2 x 8 option bytes (RFC 2018 §3); without timestamps the
    full segment is the peer's MSS less the option."""
    c = handshake_passive(h, 8080, options=syn_options(None))
    c.send("PA", seq=101, data=b"o" * 100)
    c.send("PA", seq=301, data=b"o" * 100)
    c.recv()
    c.sock.send(b"d" * (2 * MSS))
    segs = c.recv()
    assert [s.len for s in segs] == [MSS - 20] * 2 + [40]
    assert all(s.sack == [(301, 401), (101, 201)] for s in segs)
    assert all(s.pkt[IP].len <= 1500 for s in segs)


def test_segments_grow_back_when_the_hole_fills(h):
    """Once the hole is filled no block is reported and full segments carry M bytes again."""
    c = handshake_passive(h, 8080)
    hole(c)
    c.sock.send(b"d" * M)
    assert [s.len for s in c.recv()] == [M - 12, 12]
    c.send("PA", seq=1, data=b"a" * 100)
    (ack,) = c.recv()
    assert (ack.ack, ack.sack) == (201, [])
    c.send("A", ack=1 + M)
    c.sock.send(b"e" * (2 * M))
    assert [s.len for s in c.recv()] == [M, M]


def test_a_retransmission_is_cut_to_fit_the_sack_blocks(h):
    """Linux __tcp_retransmit_skb: a segment sent again while SACK blocks are pending is cut to
    the current MSS (tcp_fragment); the rest follows as its own segment."""
    c = handshake_passive(h, 8080, rtt=0.05)
    c.sock.send(b"d" * M)
    assert [s.len for s in c.recv()] == [M]
    hole(c, ack=1)  # (not acknowledging the data)
    out = [s for _, s in watch(c, 1.5)]
    assert out and out[0].seq == 1 and out[0].len == M - 12 and out[0].sack == [(101, 201)]
    c.send("A", ack=1 + M - 12)
    out = c.recv() + [s for _, s in watch(c, 0.1)]
    assert [(s.seq, s.len) for s in out][:1] == [(1 + M - 12, 12)]
