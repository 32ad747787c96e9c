"""RACK loss detection (RFC 8985 §6), as Linux's tcp_recovery.c: per-connection state.

Read first: RFC 8985 §6.1-§6.3 (RACK.xmit_ts, RACK.end_seq, RACK.rtt, the reordering window
and timer) and Linux's tcp_rack_advance, tcp_rack_reo_wnd, tcp_rack_detect_loss and
tcp_rack_reo_timeout.

With SACK and the stack option ``tcp_recovery`` = 1 (Linux's default), a sent segment is lost
once a segment sent after it has been delivered (cumulatively ACKed or SACKed) and RACK.rtt +
reo_wnd have passed since it was sent: time, not the count of SACKed segments above it (RFC
6675's IsLost, which the engine then leaves out).  This also finds a lost retransmission, which
RFC 6675 cannot.  The walk over the send queue that marks lost frames is
``sack_scoreboard.scoreboard_rack_detect_loss``; the engine runs it on every ACK that delivered
something and is one Linux calls dubious (SACK information, SACKed data outstanding, or
recovery) and when the reordering timer (``TIMER_REORDER``) fires, and fast recovery starts
once a frame is marked (Linux tcp_time_to_recover: ``lost_out``).

The reordering window (RFC 8985 §6.2 steps 3-4, Linux tcp_rack_reo_wnd and
tcp_rack_update_reo_wnd), ``rack_reo_wnd``:

* until reordering is seen it is 0 in recovery or once DupThresh segments are SACKed, else
  min_RTT/4 at most SRTT: losses are found as soon as RFC 6675 would find them;
* reordering is seen (step 3, ``rack_note_reordering``; Linux tcp_check_sack_reordering) when
  an ACK delivers, cumulatively or selectively, a never-retransmitted segment below RACK.fack,
  the highest sequence delivered before it.  From then on the window is never 0: min_RTT/4
  times RACK.reo_wnd_mult, at most SRTT, in recovery too;
* a D-SACK (step 4, ``rack_dsack`` then ``rack_update_reo_wnd``) says a retransmission was
  spurious: reo_wnd_mult grows by one, at most once per round trip (until SND.UNA passes the
  SND.NXT of the last growth), and the wider window lasts 16 recoveries
  (``RACK_REO_WND_PERSIST``; ``rack_recovery_done`` counts them down, then the multiplier is
  1 again).  As Linux, a D-SACK counts only once reordering has been seen, not for a loss
  probe's copy, and not beyond what was retransmitted (``dsack_dups`` <= ``total_retrans``).
  Linux measures the round by deliveries rather than by sequence, and returns the multiplier
  to 1 at the first ACK after the last counted recovery; it also adds to the count when a
  D-SACK undoes a recovery, which fsdp does not do (no undo, RFC_COMPLIANCE).

min_RTT is the smallest sample of the last 300 s (Linux tcp_min_rtt_wlen); Linux's windowed
filter keeps three samples to age out smoothly, fsdp one, replaced by the next sample once it
is older than the window.
"""

import numpy as np
from numba import njit

from fsdp.tcp.tcb import TF_TLP_OUT
from fsdp.wire.tcp import seq_geq, seq_gt

RACK_MIN_RTT_WINDOW_S = 300  # Linux net.ipv4.tcp_min_rtt_wlen
# A DupThresh no count of SACKed segments reaches: with RACK on, IsLost is the RACK mark alone
RACK_NO_DUPTHRESH = 1 << 30
_USEC_PER_SEC = 1_000_000
# hot.rack_state bits
RACK_REORDERING_SEEN = 1  # RFC 8985 RACK.reordering_seen (Linux tp->reord_seen != 0)
RACK_DSACK_ROUND = 2  # a D-SACK widened the window this round: rack_dsack_round is its end
RACK_REO_WND_PERSIST = 16  # recoveries a widened window lasts (Linux TCP_RACK_RECOVERY_THRESH)
RACK_REO_WND_MULT_MAX = 255
RACK_MAX_REORDERING = 300  # segments (Linux net.ipv4.tcp_max_reordering)


@njit(inline="always", cache=True)
def rack_sent_after(t1, order1, t2, order2):
    """RFC 8985 §6.2 RACK_sent_after: sent at t1 after t2 (µs).  RFC 8985 breaks a tie by end
    sequence (one burst goes out in order); here by the core's transmission counter stamped on
    each send (``order``, modulo 2^32), which also orders a retransmission after an original
    sent earlier in the same µs, as Linux's ns clock and time-sorted queue do."""
    return t1 > t2 or (t1 == t2 and seq_gt(order1, order2))


@njit(cache=True)
def rack_min_rtt_update(t, cid, rtt_us, now):
    """An RTT sample: keep the smallest of the last RACK_MIN_RTT_WINDOW_S seconds."""
    h = t.hot
    rtt = np.int64(rtt_us)
    if rtt < 0:
        return
    sec = (np.int64(now) // _USEC_PER_SEC) & 0xFFFFFFFF
    mn = np.int64(h.min_rtt_us[cid])
    age = (sec - np.int64(h.min_rtt_stamp_s[cid])) & 0xFFFFFFFF
    if mn < 0 or rtt <= mn or age > RACK_MIN_RTT_WINDOW_S:
        h.min_rtt_us[cid] = rtt if rtt < 0x7FFFFFFF else np.int64(0x7FFFFFFF)
        h.min_rtt_stamp_s[cid] = sec


@njit(cache=True)
def rack_advance(t, cid, xmit_us, xmit_order, retransmitted, now):
    """RFC 8985 §6.2 steps 1-2 (Linux tcp_rack_advance): a segment sent at ``xmit_us`` (as
    transmission ``xmit_order``) was just delivered.  A retransmitted one delivered sooner than the
    minimum RTT after its retransmission is taken for its original (RFC 8985 §6.2 step 2's
    ambiguity rule; also when no RTT is known yet, and when it is ACKed in the µs it was
    resent, which no path allows) and ignored.  Otherwise RACK.rtt is its RTT and, if it was
    sent after the current RACK segment, it becomes that segment."""
    h = t.hot
    rtt = np.int64(now) - np.int64(xmit_us)
    if retransmitted:
        mn = np.int64(h.min_rtt_us[cid])
        if mn < 0 or rtt < mn or rtt <= 0:
            return
    if rtt < 0:
        rtt = np.int64(0)
    h.rack_rtt_us[cid] = rtt if rtt < 0x7FFFFFFF else np.int64(0x7FFFFFFF)
    if rack_sent_after(np.int64(xmit_us), np.int64(xmit_order), np.int64(h.rack_xmit_us[cid]),
                       np.int64(h.rack_xmit_order[cid])):  # fmt: skip
        h.rack_xmit_us[cid] = xmit_us
        h.rack_xmit_order[cid] = xmit_order


@njit(cache=True)
def rack_reo_wnd(t, cid, in_recovery, sacked_segs, dupthresh):
    """The reordering window, µs (RFC 8985 §6.2 step 4, Linux tcp_rack_reo_wnd).  Before any
    reordering is seen: 0 in recovery or once ``sacked_segs`` reaches DupThresh.  Otherwise
    min_RTT/4 times RACK.reo_wnd_mult, bounded by SRTT (no min_RTT: SRTT; no RTT at all: 0)."""
    h = t.hot
    if (h.rack_state[cid] & RACK_REORDERING_SEEN) == 0 and (
        in_recovery or sacked_segs >= dupthresh
    ):
        return np.int64(0)
    srtt = np.int64(h.srtt[cid])
    if srtt <= 0:
        return np.int64(0)
    srtt >>= 3  # kept in 1/8 µs
    mn = np.int64(h.min_rtt_us[cid])
    w = srtt if mn < 0 else (mn >> 2) * np.int64(h.rack_reo_wnd_mult[cid])
    return w if w < srtt else srtt


@njit(cache=True)
def rack_note_reordering(t, cid, low_seq, fack, reordering):
    """RFC 8985 §6.2 step 3: an ACK delivered a never-retransmitted segment starting at
    ``low_seq`` below RACK.fack (Linux tcp_check_sack_reordering; counted in
    ``tcpi_reord_seen``).  The degree of reordering, ``fack`` - ``low_seq`` in segments, raises
    the connection's ``hot.reordering`` (Linux tp->reordering, at most RACK_MAX_REORDERING)
    above the current ``reordering`` (DupThresh) when it exceeds it."""
    h = t.hot
    h.rack_state[cid] |= np.uint8(RACK_REORDERING_SEEN)
    c = t.cold
    if c.reord_seen[cid] != 0xFFFFFFFF:
        c.reord_seen[cid] += 1
    mss = np.int64(h.mss[cid])
    metric = (np.int64(fack) - np.int64(low_seq)) & 0xFFFFFFFF
    if mss <= 0 or metric >= 0x80000000 or metric <= np.int64(reordering) * mss:
        return
    segs = (metric + mss - 1) // mss
    h.reordering[cid] = segs if segs < RACK_MAX_REORDERING else RACK_MAX_REORDERING


@njit(cache=True)
def rack_dsack(t, cid, left, right):
    """A D-SACK block [left, right) arrived (RFC 2883), as Linux tcp_dsack_seen: returns (the
    segments it reports received twice, 0 if it is dubious; whether it shows RACK a spurious
    retransmission).  Dubious: empty, wider than the largest window the peer offered, or more
    segments reported twice than were ever retransmitted (a duplicating network, not the
    sender).  Not for RACK: the copy a loss probe made (RFC 8985 §7.4 deals with those), or
    any before reordering was seen (the window then stays 0 in recovery anyway)."""
    h = t.hot
    c = t.cold
    n = (np.int64(right) - np.int64(left)) & 0xFFFFFFFF
    if n == 0 or n >= 0x80000000 or n > np.int64(h.max_sndwnd[cid]):
        return np.int64(0), False
    mss = np.int64(h.mss[cid])
    dups = (n + mss - 1) // mss if (mss > 0 and n > mss) else np.int64(1)
    tlp_copy = (
        dups == 1 and (h.tflags[cid] & TF_TLP_OUT) != 0
        and (np.int64(right) & 0xFFFFFFFF) == (np.int64(h.tlp_high_seq[cid]) & 0xFFFFFFFF)
    )  # fmt: skip
    total = np.int64(c.dsack_dups[cid]) + dups
    c.dsack_dups[cid] = total if total < 0xFFFFFFFF else np.int64(0xFFFFFFFF)
    if total > np.int64(c.total_retrans[cid]):
        return np.int64(0), False
    return dups, (h.rack_state[cid] & RACK_REORDERING_SEEN) != 0 and not tlp_copy


@njit(cache=True)
def rack_update_reo_wnd(t, cid, dsack):
    """RFC 8985 §6.2 step 4 on an ACK, after SND.UNA moved: the round of the last widening ends
    once SND.UNA reaches the SND.NXT it recorded; a spurious retransmission (``dsack``, from
    ``rack_dsack``) outside such a round widens the window one step, for
    RACK_REO_WND_PERSIST recoveries.  True if it widened."""
    h = t.hot
    st = h.rack_state[cid]
    if (st & RACK_DSACK_ROUND) != 0 and seq_geq(h.snd_una[cid], h.rack_dsack_round[cid]):
        st &= np.uint8(0xFF ^ RACK_DSACK_ROUND)
    grown = dsack and (st & RACK_DSACK_ROUND) == 0
    if grown:
        st |= np.uint8(RACK_DSACK_ROUND)
        h.rack_dsack_round[cid] = h.snd_nxt[cid]
        if h.rack_reo_wnd_mult[cid] < RACK_REO_WND_MULT_MAX:
            h.rack_reo_wnd_mult[cid] += 1
        h.rack_reo_wnd_persist[cid] = RACK_REO_WND_PERSIST
    h.rack_state[cid] = st
    return grown


@njit(cache=True)
def rack_recovery_done(t, cid):
    """A fast or RTO recovery ended (RFC 8985 §6.2 step 4): one fewer for the widened window to
    last; when none is left the multiplier is 1 again."""
    h = t.hot
    p = h.rack_reo_wnd_persist[cid]
    if p > 1:
        h.rack_reo_wnd_persist[cid] = p - 1
    else:
        h.rack_reo_wnd_persist[cid] = 0
        h.rack_reo_wnd_mult[cid] = 1
