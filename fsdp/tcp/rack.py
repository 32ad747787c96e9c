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
something and when the reordering timer (``TIMER_REORDER``) fires, and fast recovery starts
once a frame is marked (Linux tcp_time_to_recover: ``lost_out``).

reo_wnd (Linux tcp_rack_reo_wnd without observed reordering): 0 in recovery or once DupThresh
segments are SACKed; otherwise min_RTT/4, at most SRTT.  Not done (Linux has them): widening
reo_wnd after D-SACKs (RFC 8985 §6.2 step 4) and keeping it once reordering was seen; fsdp does
not record reordering, so on a reordering path it retransmits spuriously more often.

min_RTT is the smallest sample of the last 300 s (Linux tcp_min_rtt_wlen); Linux's windowed
filter keeps three samples to age out smoothly, fsdp one, replaced by the next sample once it
is older than the window.
"""

import numpy as np
from numba import njit

from fsdp.wire.tcp import seq_gt

RACK_MIN_RTT_WINDOW_S = 300  # Linux net.ipv4.tcp_min_rtt_wlen
# A DupThresh no count of SACKed segments reaches: with RACK on, IsLost is the RACK mark alone
RACK_NO_DUPTHRESH = 1 << 30
_USEC_PER_SEC = 1_000_000


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
    """The reordering window, µs (Linux tcp_rack_reo_wnd with no reordering seen): 0 in
    recovery or once ``sacked_segs`` reaches DupThresh (RFC 8985 §6.2 step 4 lets the window be
    0 then), else min_RTT/4 bounded by SRTT (no RTT at all: 0)."""
    if in_recovery or sacked_segs >= dupthresh:
        return np.int64(0)
    h = t.hot
    srtt = np.int64(h.srtt[cid])
    if srtt <= 0:
        return np.int64(0)
    srtt >>= 3  # kept in 1/8 µs
    mn = np.int64(h.min_rtt_us[cid])
    w = srtt if mn < 0 else mn >> 2
    return w if w < srtt else srtt
