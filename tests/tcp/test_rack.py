"""fsdp.tcp.rack: RACK's per-connection state (RFC 8985 §6.1-§6.2), the reordering window as
Linux's tcp_rack_reo_wnd, and the windowed minimum RTT."""

from fsdp.tcp.rack import (
    RACK_MIN_RTT_WINDOW_S,
    RACK_REO_WND_PERSIST,
    rack_advance,
    rack_dsack,
    rack_min_rtt_update,
    rack_note_reordering,
    rack_recovery_done,
    rack_reo_wnd,
    rack_sent_after,
    rack_update_reo_wnd,
)
from fsdp.tcp.tcb import TF_TLP_OUT, tcb_alloc, tcb_table_create

S = 1_000_000


def conn():
    t = tcb_table_create(2)
    return t, tcb_alloc(t)


def test_sent_after_breaks_ties_by_transmission_order():
    """RFC 8985 §6.2 RACK_sent_after: later in time, or the same time and sent later (the
    transmission counter, modulo 2^32)."""
    assert rack_sent_after(2, 0, 1, 100)
    assert not rack_sent_after(1, 100, 2, 0)
    assert rack_sent_after(5, 200, 5, 100) and not rack_sent_after(5, 100, 5, 200)
    assert rack_sent_after(5, 10, 5, 0xFFFFFF00)  # wraps


def test_advance_keeps_the_most_recently_sent_delivered_segment():
    t, cid = conn()
    h = t.hot
    rack_advance(t, cid, 300, 3000, False, 1000)
    assert (h.rack_xmit_us[cid], h.rack_xmit_order[cid], h.rack_rtt_us[cid]) == (300, 3000, 700)
    rack_advance(t, cid, 100, 1000, False, 1100)  # sent earlier: RTT taken, segment kept
    assert (h.rack_xmit_us[cid], h.rack_xmit_order[cid], h.rack_rtt_us[cid]) == (300, 3000, 1000)
    rack_advance(t, cid, 300, 4000, False, 1200)  # same time, sent after
    assert (h.rack_xmit_us[cid], h.rack_xmit_order[cid]) == (300, 4000)


def test_retransmission_is_ambiguous_below_min_rtt_or_without_one():
    """RFC 8985 §6.2 step 2 (Linux): an ACK of a retransmitted segment sooner than min_RTT
    after the resend is taken for the original's, and with no RTT sample yet every one is."""
    t, cid = conn()
    h = t.hot
    rack_advance(t, cid, 500, 1000, True, 900)
    assert h.rack_xmit_us[cid] == 0
    rack_min_rtt_update(t, cid, 300, 0)
    rack_advance(t, cid, 500, 1000, True, 700)  # 200 µs < 300
    assert h.rack_xmit_us[cid] == 0
    rack_advance(t, cid, 500, 1000, True, 900)  # 400 µs
    assert (h.rack_xmit_us[cid], h.rack_rtt_us[cid]) == (500, 400)
    rack_min_rtt_update(t, cid, 0, 0)  # a zero sample (two events in one µs)
    rack_advance(t, cid, 950, 1100, True, 950)  # ACKed in the µs it was resent
    assert h.rack_xmit_us[cid] == 500


def test_reordering_window_as_linux():
    """Linux tcp_rack_reo_wnd (no reordering seen): min_RTT/4 at most SRTT; 0 in recovery, once
    DupThresh segments are SACKed, or before any RTT sample."""
    t, cid = conn()
    h = t.hot
    assert rack_reo_wnd(t, cid, False, 0, 3) == 0  # no RTT yet
    h.srtt[cid] = 100_000 << 3  # 100 ms, kept in 1/8 µs
    assert rack_reo_wnd(t, cid, False, 0, 3) == 100_000  # no min_RTT: SRTT
    rack_min_rtt_update(t, cid, 80_000, 0)
    assert rack_reo_wnd(t, cid, False, 2, 3) == 20_000
    assert rack_reo_wnd(t, cid, False, 3, 3) == 0
    assert rack_reo_wnd(t, cid, True, 0, 3) == 0
    h.srtt[cid] = 10_000 << 3
    assert rack_reo_wnd(t, cid, False, 0, 3) == 10_000


def test_min_rtt_ages_out_after_the_window():
    t, cid = conn()
    h = t.hot
    rack_min_rtt_update(t, cid, 5000, 1 * S)
    rack_min_rtt_update(t, cid, 9000, 100 * S)
    assert h.min_rtt_us[cid] == 5000
    rack_min_rtt_update(t, cid, 9000, (2 + RACK_MIN_RTT_WINDOW_S) * S)
    assert h.min_rtt_us[cid] == 9000
    rack_min_rtt_update(t, cid, 7000, (3 + RACK_MIN_RTT_WINDOW_S) * S)
    assert h.min_rtt_us[cid] == 7000


def test_once_reordering_is_seen_the_window_is_never_zero():
    """RFC 8985 §6.2 step 4 (Linux tcp_rack_reo_wnd with reord_seen): after reordering the
    window stays min_RTT/4 in recovery and past DupThresh SACKed segments, scaled by
    RACK.reo_wnd_mult and bounded by SRTT."""
    t, cid = conn()
    h = t.hot
    h.srtt[cid] = 200_000 << 3
    rack_min_rtt_update(t, cid, 200_000, 0)
    assert rack_reo_wnd(t, cid, True, 0, 3) == 0
    rack_note_reordering(t, cid, 0, 0, 3)
    assert t.cold.reord_seen[cid] == 1
    assert rack_reo_wnd(t, cid, True, 0, 3) == 50_000
    assert rack_reo_wnd(t, cid, False, 5, 3) == 50_000
    h.rack_reo_wnd_mult[cid] = 3
    assert rack_reo_wnd(t, cid, True, 0, 3) == 150_000
    h.rack_reo_wnd_mult[cid] = 5
    assert rack_reo_wnd(t, cid, True, 0, 3) == 200_000  # at most SRTT


def test_deep_reordering_raises_dupthresh():
    """Linux tcp_check_sack_reordering: reordering over more than DupThresh segments raises
    the connection's tp->reordering to that many segments (rounded up, at most 300)."""
    t, cid = conn()
    h = t.hot
    h.mss[cid] = 1000
    rack_note_reordering(t, cid, 10_000, 13_000, 3)  # 3 segments: not more than 3
    assert h.reordering[cid] == 0 and t.cold.reord_seen[cid] == 1
    rack_note_reordering(t, cid, 10_000, 14_500, 3)
    assert h.reordering[cid] == 5
    rack_note_reordering(t, cid, 0xFFFFF000, 1_000_000, 5)  # across the wrap, capped
    assert h.reordering[cid] == 300 and t.cold.reord_seen[cid] == 3


def dsack_conn(retransmitted=1):
    t, cid = conn()
    h = t.hot
    h.mss[cid] = 1000
    h.max_sndwnd[cid] = 64_000
    t.cold.total_retrans[cid] = retransmitted
    return t, cid


def test_a_dsack_counts_for_rack_as_linux_tcp_dsack_seen():
    """Linux tcp_dsack_seen: segments received twice are counted (one per MSS); the D-SACK
    shows a spurious retransmission only once reordering was seen, never for more segments
    than were retransmitted, a range wider than the peer's largest window, or a loss probe's
    copy."""
    t, cid = dsack_conn(retransmitted=3)
    assert rack_dsack(t, cid, 5000, 6000) == (1, False)  # no reordering seen yet
    assert t.cold.dsack_dups[cid] == 1
    rack_note_reordering(t, cid, 0, 0, 3)
    assert rack_dsack(t, cid, 5000, 6000) == (1, True)
    assert rack_dsack(t, cid, 5000, 5000) == (0, False)  # empty
    assert rack_dsack(t, cid, 0, 65_000) == (0, False)  # wider than any window offered
    assert t.cold.dsack_dups[cid] == 2
    assert rack_dsack(t, cid, 5000, 6500) == (0, False)  # two segments: 4 > 3 retransmitted
    assert t.cold.dsack_dups[cid] == 4
    t, cid = dsack_conn(retransmitted=5)
    rack_note_reordering(t, cid, 0, 0, 3)
    t.hot.tflags[cid] |= TF_TLP_OUT
    t.hot.tlp_high_seq[cid] = 9000
    assert rack_dsack(t, cid, 8000, 9000) == (1, False)  # the probe's copy
    assert rack_dsack(t, cid, 7000, 8000) == (1, True)


def test_the_window_grows_once_per_round_and_lasts_sixteen_recoveries():
    """RFC 8985 §6.2 step 4: a spurious retransmission widens the window by one step, at most
    once until SND.UNA passes the SND.NXT of that step; the widening lasts
    RACK_REO_WND_PERSIST recoveries, then the multiplier is 1 again."""
    t, cid = conn()
    h = t.hot
    h.snd_una[cid] = 1000
    h.snd_nxt[cid] = 5000
    assert not rack_update_reo_wnd(t, cid, False)
    assert rack_update_reo_wnd(t, cid, True)
    assert h.rack_reo_wnd_mult[cid] == 2 and h.rack_reo_wnd_persist[cid] == RACK_REO_WND_PERSIST
    h.snd_una[cid] = 4000
    h.snd_nxt[cid] = 9000
    assert not rack_update_reo_wnd(t, cid, True)  # the same round
    h.snd_una[cid] = 5000
    assert rack_update_reo_wnd(t, cid, True)  # the round is over
    assert h.rack_reo_wnd_mult[cid] == 3
    for _ in range(RACK_REO_WND_PERSIST - 1):
        rack_recovery_done(t, cid)
    assert h.rack_reo_wnd_mult[cid] == 3
    rack_recovery_done(t, cid)
    assert h.rack_reo_wnd_mult[cid] == 1 and h.rack_reo_wnd_persist[cid] == 0
