"""fsdp.tcp.undo: the state that lets a spurious window reduction be reverted, as Linux's
tcp_init_undo / tcp_may_undo / tcp_undo_cwnd_reduction and its D-SACK counting (RFC 3522,
RFC 3708, RFC 4015)."""

from fsdp.tcp.tcb import tcb_alloc, tcb_table_create
from fsdp.tcp.undo import (
    UNDO_NO_RETRANS,
    UNDO_NONE,
    undo_active,
    undo_cwnd_reduction,
    undo_dsack,
    undo_init,
    undo_may,
    undo_note_retransmit,
)

MSS = 1000


def episode(cwnd=20 * MSS, ssthresh=10 * MSS, una=5000):
    """A connection that was at ``cwnd`` when a reduction to ``ssthresh`` began at ``una``."""
    t = tcb_table_create(2)
    cid = tcb_alloc(t)
    h = t.hot
    h.snd_una[cid] = una
    h.prr_prior_cwnd[cid] = cwnd
    undo_init(t, cid, 15 * MSS)
    h.cwnd[cid] = 4 * MSS
    h.ssthresh[cid] = ssthresh
    return t, cid


def test_no_episode_no_undo():
    t = tcb_table_create(2)
    cid = tcb_alloc(t)
    assert t.hot.undo_retrans[cid] == UNDO_NONE and not undo_active(t, cid)
    undo_note_retransmit(t, cid)  # outside an episode nothing is counted
    assert t.hot.undo_retrans[cid] == UNDO_NONE
    assert not undo_may(t, cid, True)


def test_undo_needs_every_retransmission_dsacked_or_a_delayed_ack():
    """Linux tcp_may_undo: undo_retrans == 0 (each retransmission D-SACKed) or an ACK echoing a
    timestamp from before the first retransmission; before any retransmission (-1) only the
    latter."""
    t, cid = episode()
    assert t.hot.undo_retrans[cid] == UNDO_NO_RETRANS
    assert not undo_may(t, cid, False) and undo_may(t, cid, True)
    undo_note_retransmit(t, cid)
    undo_note_retransmit(t, cid)
    assert t.hot.undo_retrans[cid] == 2
    undo_dsack(t, cid, 5000 + MSS, 9000, 1, 0)
    assert not undo_may(t, cid, False)
    undo_dsack(t, cid, 5000 + 2 * MSS, 9000, 3, 0)  # never below 0
    assert t.hot.undo_retrans[cid] == 0 and undo_may(t, cid, False)


def test_dsack_counts_data_of_the_episode_below_snd_una_and_retransmissions_above():
    """Linux tcp_check_dsack's counting: the D-SACKed range must end after the episode began;
    at or below the SND.UNA before this ACK it counts the segments it reports, above it the
    retransmitted segments it covers (tcp_sacktag_one)."""
    t, cid = episode(una=5000)
    undo_note_retransmit(t, cid)
    undo_note_retransmit(t, cid)
    undo_dsack(t, cid, 5000, 9000, 1, 1)  # ends where the episode began: older data
    undo_dsack(t, cid, 9500, 9000, 1, 0)  # above the SND.UNA before the ACK, no resend in it
    assert t.hot.undo_retrans[cid] == 2
    undo_dsack(t, cid, 9500, 9000, 1, 1)  # above it, covering one retransmitted segment
    assert t.hot.undo_retrans[cid] == 1
    undo_dsack(t, cid, 6000, 9000, 1, 0)
    assert t.hot.undo_retrans[cid] == 0


def test_undo_restores_the_window_and_threshold_once():
    """Linux tcp_undo_cwnd_reduction: cwnd = max(cwnd, prior cwnd), ssthresh = max(ssthresh,
    prior ssthresh); the episode is over."""
    t, cid = episode(cwnd=20 * MSS, ssthresh=10 * MSS)
    h = t.hot
    undo_cwnd_reduction(t, cid)
    assert (h.cwnd[cid], h.ssthresh[cid]) == (20 * MSS, 15 * MSS)
    assert not undo_active(t, cid)
    h.cwnd[cid] = 30 * MSS  # PRR already left more: kept
    undo_init(t, cid, 5 * MSS)
    h.ssthresh[cid] = 12 * MSS
    undo_cwnd_reduction(t, cid)
    assert (h.cwnd[cid], h.ssthresh[cid]) == (30 * MSS, 12 * MSS)
