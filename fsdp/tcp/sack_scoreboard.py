"""The sender's SACK scoreboard and RFC 6675 loss recovery over the retransmission queue.

Read first: RFC 2018 §3-§8 (SACK blocks, what the sender keeps), RFC 2883 §4 (D-SACK: how a
sender tells one), RFC 6675 §4 (Update, IsLost, SetPipe, NextSeg) and §5 (the recovery
algorithm; §5.1 on timeouts).  Linux: tcp_sacktag_write_queue, tcp_check_dsack,
tcp_timeout_mark_lost in tcp_input.c.

The scoreboard is the send queue itself: ``t.hot.snd_q_head`` chains the frames through
``pool.next`` in sequence order, each holding one segment's payload at ``[pool.off, pool.off +
pool.length)`` with ``pool.tag`` = the sequence number of its first byte (a FIN, flag
``FRAME_F_TCP_FIN``, takes one more sequence number).  The frames from the head up to
``snd_q_unsent`` (or the first one at or past ``snd_max``) have been sent; only those are scored.
A frame's flags (``fsdp.tcp.frameflags``):

* ``FRAME_F_TCP_SACKED``: a SACK block covered the whole frame.  A block that covers only part
  of a frame marks nothing (Linux without splitting); peers SACK whole segments in practice.
* ``FRAME_F_TCP_LOST``: marked lost by an RTO (``scoreboard_clear``), or the head marked lost by
  the engine when fast recovery begins (RFC 6675 §5 step 4.2; with or without SACK) and, without
  SACK, at each partial ACK (RFC 6582 §3.2 step 5) (``scoreboard_mark_lost``).  RFC 6675's
  IsLost is otherwise computed from the SACKed frames above, on every call, and not stored.
* ``FRAME_F_TCP_RETRANS``: retransmitted in the current recovery episode (the engine sets it;
  ``scoreboard_enter_recovery`` and ``scoreboard_clear`` clear it).  It stands for RFC 6675's
  HighRxt: per frame, as Linux's TCPCB_SACKED_RETRANS.  Karn's rule (RFC 6298 §3) needs a mark
  that is never cleared (Linux's TCPCB_EVER_RETRANS), not this one.

Sequence space: lengths are counted in sequence numbers (payload + 1 for a FIN), from
``max(tag, snd_una)`` so a frame partly ACKed but not yet trimmed counts only its rest; frames
wholly below snd_una are skipped.  Sequence numbers are compared with ``fsdp.wire.tcp.seq_*``.

Cost: each call walks the sent part of the queue once or twice (a singly linked list, and the
TCB has no column for a hint or for running totals): O(segments in flight) per ACK.

DupThresh: the engine passes it (RFC 6675 §2 DupThresh = 3; a reordering-adaptive value also
works).  RFC 6675 NextSeg rules (2) and (3) are new data and (optionally) not-yet-lost holes:
``scoreboard_next_seg`` returns -1 for the engine to send new data, and
``scoreboard_next_seg_rule3`` gives rule (3)'s hole for when it has none (Linux does neither
rule (3) nor the rule (4) rescue retransmission; fsdp does not do (4)).
"""

import numpy as np
from numba import njit

from fsdp.tcp.frameflags import (
    FRAME_F_TCP_EVER_RETRANS,
    FRAME_F_TCP_FIN,
    FRAME_F_TCP_LOST,
    FRAME_F_TCP_RETRANS,
    FRAME_F_TCP_SACKED,
    FRAME_XMIT_ORDER_OFF,
    FRAME_XMIT_TIME_OFF,
)
from fsdp.tcp.rack import rack_advance, rack_sent_after
from fsdp.tcp.tcb import TF_SACKED_OUT
from fsdp.wire.byteorder import get_u32, set_u32
from fsdp.wire.tcp import seq_diff, seq_geq, seq_gt, seq_leq, seq_lt

_MASK32 = 0xFFFFFFFF
_CLEAR_LOST = _MASK32 ^ FRAME_F_TCP_LOST
_CLEAR_RETRANS = _MASK32 ^ FRAME_F_TCP_RETRANS
_CLEAR_SACKED = _MASK32 ^ FRAME_F_TCP_SACKED
_CLEAR_SCORE = _MASK32 ^ (FRAME_F_TCP_SACKED | FRAME_F_TCP_LOST | FRAME_F_TCP_RETRANS)


# --- frame geometry --------------------------------------------------------------------------
@njit(inline="always", cache=True)
def frame_xmit_time(pool, fid):
    """When send-queue frame ``fid`` was last sent, µs (FRAME_XMIT_TIME_OFF, big-endian)."""
    b = pool.data[fid]
    return (np.int64(get_u32(b, FRAME_XMIT_TIME_OFF)) << 32) | np.int64(
        get_u32(b, FRAME_XMIT_TIME_OFF + 4)
    )


@njit(inline="always", cache=True)
def frame_xmit_order(pool, fid):
    """The transmission counter stamped with the send time (``frame_set_xmit_time``)."""
    return np.int64(get_u32(pool.data[fid], FRAME_XMIT_ORDER_OFF))


@njit(inline="always", cache=True)
def frame_set_xmit_time(pool, fid, now, order):
    b = pool.data[fid]
    set_u32(b, FRAME_XMIT_TIME_OFF, (now >> 32) & _MASK32)
    set_u32(b, FRAME_XMIT_TIME_OFF + 4, now & _MASK32)
    set_u32(b, FRAME_XMIT_ORDER_OFF, order & _MASK32)


@njit(inline="always", cache=True)
def _frame_end(pool, fid):
    """Sequence number just past the frame (payload, plus one for a FIN)."""
    n = np.int64(pool.length[fid])
    if (pool.flags[fid] & FRAME_F_TCP_FIN) != 0:
        n += 1
    return (pool.tag[fid] + n) & _MASK32


@njit(inline="always", cache=True)
def _frame_start(pool, fid, una):
    """First sequence number of the frame not yet cumulatively ACKed."""
    s = pool.tag[fid] & _MASK32
    return una if seq_lt(s, una) else s


@njit(inline="always", cache=True)
def _is_sent(t, cid, pool, fid, smax):
    """``fid`` is a frame of the sent part of the queue (the walk stops at the first that is
    not)."""
    return fid >= 0 and fid != t.hot.snd_q_unsent[cid] and seq_lt(pool.tag[fid] & _MASK32, smax)


@njit(inline="always", cache=True)
def _seg_len(pool, fid, una):
    """Unacknowledged sequence numbers of the frame (<= 0 if wholly ACKed)."""
    return seq_diff(_frame_end(pool, fid), _frame_start(pool, fid, una))


@njit(cache=True)
def _sacked_totals(pool, t, cid):
    """(frames, sequence numbers) SACKed in the sent part of the queue."""
    una = np.int64(t.hot.snd_una[cid])
    smax = np.int64(t.hot.snd_max[cid])
    n = np.int64(0)
    b = np.int64(0)
    fid = t.hot.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        if (pool.flags[fid] & FRAME_F_TCP_SACKED) != 0:
            ln = _seg_len(pool, fid, una)
            if ln > 0:
                n += 1
                b += ln
        fid = pool.next[fid]
    return n, b


@njit(inline="always", cache=True)
def _lost_by_sacks(above_n, above_b, dupthresh, mss):
    """RFC 6675 §4 IsLost: DupThresh SACKed segments above, or more than (DupThresh-1)*SMSS
    SACKed bytes above."""
    return above_n >= dupthresh or above_b > (dupthresh - 1) * mss


@njit(inline="always", cache=True)
def _dupthresh(d):
    d = np.int64(d)
    return d if d >= 1 else np.int64(1)


@njit(inline="always", cache=True)
def _smss(t, cid):
    m = np.int64(t.hot.mss[cid])
    return m if m > 0 else np.int64(1)


# --- D-SACK ----------------------------------------------------------------------------------
@njit(cache=True)
def scoreboard_dsack(t, cid, blocks, n_blocks):
    """True if the first SACK block is a D-SACK (RFC 2883 §4): below the cumulative ACK, or
    inside the second block (Linux tcp_check_dsack).  Call with snd_una already advanced to the
    segment's ACK; the engine counts it (``tcp_dsack_in``).  ``scoreboard_update`` ignores it."""
    if n_blocks < 1:
        return False
    l0 = blocks[0]
    r0 = blocks[1]
    if seq_lt(l0, t.hot.snd_una[cid]):
        return True
    if n_blocks >= 2:
        return seq_geq(l0, blocks[2]) and seq_leq(r0, blocks[3])
    return False


@njit(cache=True)
def scoreboard_dsack_resent(pool, t, cid, left, right):
    """Segments of the retransmission queue inside the D-SACK block [left, right) that were
    ever retransmitted: those the peer received twice because they were sent twice (Linux
    tcp_sacktag_one with dup_sack on a TCPCB_RETRANS skb, which takes them off undo_retrans).
    Frames the ACK's cumulative part covers still count (the queue is cleaned after)."""
    h = t.hot
    mss = np.int64(h.mss[cid])
    smax = h.snd_max[cid]
    left &= _MASK32
    right &= _MASK32
    n = np.int64(0)
    fid = h.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        s = pool.tag[fid] & _MASK32
        if seq_geq(s, right):
            break
        e = _frame_end(pool, fid)
        if (seq_leq(left, s) and seq_leq(e, right)
                and (pool.flags[fid] & (FRAME_F_TCP_RETRANS | FRAME_F_TCP_EVER_RETRANS)) != 0):
            length = np.int64(pool.length[fid])
            n += (length + mss - 1) // mss if (mss > 0 and length > mss) else np.int64(1)
        fid = pool.next[fid]
    return n


# --- Update ----------------------------------------------------------------------------------
@njit(cache=True)
def scoreboard_update(pool, t, cid, blocks, n_blocks, now):
    """RFC 6675 §4 Update(): mark FRAME_F_TCP_SACKED every sent frame that one of the SACK
    blocks ``blocks[0:2*n_blocks]`` (left0, right0, left1, ...; int64 sequence numbers) covers
    whole; returns (the sequence numbers newly SACKed, the earliest and the latest send time
    of the newly SACKed frames never retransmitted, -1 if none: Linux's first_sackt and
    last_sackt, an RTT sample by Karn's rule; the lowest start of one of those below RACK.fack,
    the highest sequence delivered before it, -1 if none: reordering, RFC 8985 §6.2 step 3;
    whether one of those ends at or below ``recover``: F-RTO's "not retransmitted, sent before
    the RTO", Linux FLAG_ORIG_SACK_ACKED).  Each newly SACKed frame was delivered at ``now``:
    RACK learns of it (``rack.rack_advance``), and ``hot.rack_fack`` follows the highest.

    Blocks are clipped to [snd_una, snd_max]; an empty or inverted one is skipped, and so is a
    D-SACK first block (``scoreboard_dsack``).  A newly SACKed frame loses FRAME_F_TCP_LOST (it
    arrived) and keeps FRAME_F_TCP_RETRANS.  Call after snd_una has advanced to SEG.ACK."""
    h = t.hot
    una = np.int64(h.snd_una[cid])
    smax = np.int64(h.snd_max[cid])
    first = 1 if scoreboard_dsack(t, cid, blocks, n_blocks) else 0
    # the highest clipped right edge bounds the walk
    top = una
    for b in range(first, n_blocks):
        r = blocks[2 * b + 1] & _MASK32
        if seq_gt(r, smax):
            r = smax
        if seq_gt(r, top) and seq_lt(blocks[2 * b] & _MASK32, r):
            top = r
    first_sackt = np.int64(-1)
    last_sackt = np.int64(-1)
    if top == una:
        return np.int64(0), first_sackt, last_sackt, np.int64(-1), False
    newly = np.int64(0)
    # RACK.fack once the cumulative part of this ACK is taken: frames are walked in sequence
    # order, so a frame newly SACKed below it arrived after one sent later (RFC 8985 §6.2 step 3)
    fack = una
    if (h.tflags[cid] & TF_SACKED_OUT) != 0 and seq_gt(h.rack_fack[cid], una):
        fack = np.int64(h.rack_fack[cid])
    reord = np.int64(-1)
    orig = False
    recover = np.int64(h.recover[cid])
    fid = h.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        s = _frame_start(pool, fid, una)
        if seq_geq(s, top):
            break
        e = _frame_end(pool, fid)
        if (pool.flags[fid] & FRAME_F_TCP_SACKED) == 0 and seq_gt(e, s):
            for b in range(first, n_blocks):
                lft = blocks[2 * b] & _MASK32
                rgt = blocks[2 * b + 1] & _MASK32
                if seq_lt(lft, una):
                    lft = una
                if seq_gt(rgt, smax):
                    rgt = smax
                if seq_leq(lft, s) and seq_leq(e, rgt) and seq_lt(lft, rgt):
                    fl = pool.flags[fid]
                    pool.flags[fid] = (fl | FRAME_F_TCP_SACKED) & _CLEAR_LOST
                    newly += seq_diff(e, s)
                    xmit = frame_xmit_time(pool, fid)
                    resent = (fl & (FRAME_F_TCP_RETRANS | FRAME_F_TCP_EVER_RETRANS)) != 0
                    rack_advance(t, cid, xmit, frame_xmit_order(pool, fid), resent, now)
                    if not resent:
                        if first_sackt < 0 or xmit < first_sackt:
                            first_sackt = xmit
                        if xmit > last_sackt:
                            last_sackt = xmit
                        if seq_leq(e, recover):
                            orig = True
                    if seq_gt(e, fack):
                        fack = e
                    elif not resent and seq_lt(e, fack) and reord < 0:
                        reord = s  # frames are walked in order: the first is the lowest
                    break
        fid = pool.next[fid]
    h.rack_fack[cid] = fack
    return newly, first_sackt, last_sackt, reord, orig


# --- queries ---------------------------------------------------------------------------------
@njit(cache=True)
def scoreboard_sacked_bytes(pool, t, cid):
    """Sequence numbers SACKed and not yet cumulatively ACKed."""
    return _sacked_totals(pool, t, cid)[1]


@njit(cache=True)
def scoreboard_highest_sacked(pool, t, cid):
    """The sequence number just past the highest SACKed frame (RFC 6675 "highest octet covered
    by any received SACK", plus one); snd_una if nothing is SACKed."""
    una = np.int64(t.hot.snd_una[cid])
    smax = np.int64(t.hot.snd_max[cid])
    high = una
    fid = t.hot.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        if (pool.flags[fid] & FRAME_F_TCP_SACKED) != 0:
            e = _frame_end(pool, fid)
            if seq_gt(e, high):
                high = e
        fid = pool.next[fid]
    return high


@njit(cache=True)
def scoreboard_is_lost(pool, t, cid, fid, dupthresh):
    """RFC 6675 §4 IsLost for frame ``fid``: not SACKed, and DupThresh SACKed frames above it
    or more than (DupThresh-1)*SMSS SACKed sequence numbers above it; or marked lost by an RTO.
    (RFC 6675 §5 enters recovery when this holds for the head frame.)"""
    if fid < 0:
        return False
    flags = pool.flags[fid]
    if (flags & FRAME_F_TCP_SACKED) != 0:
        return False
    if (flags & FRAME_F_TCP_LOST) != 0:
        return True
    una = np.int64(t.hot.snd_una[cid])
    smax = np.int64(t.hot.snd_max[cid])
    d = _dupthresh(dupthresh)
    mss = _smss(t, cid)
    n = np.int64(0)
    b = np.int64(0)
    f = pool.next[fid]
    while _is_sent(t, cid, pool, f, smax):
        if (pool.flags[f] & FRAME_F_TCP_SACKED) != 0:
            n += 1
            b += _seg_len(pool, f, una)
            if _lost_by_sacks(n, b, d, mss):
                return True
        f = pool.next[f]
    return False


@njit(cache=True)
def _pipe_and_lost(pool, t, cid, dupthresh):
    """One walk over the sent frames above SND.UNA: (pipe, lost).  ``pipe``: RFC 6675 §4
    SetPipe(), each un-SACKed frame once if not lost (marked, or IsLost) and once more if
    retransmitted in this episode (FRAME_F_TCP_RETRANS, the RFC's "S1 <= HighRxt"; Linux
    packets_out - sacked - lost + retrans).  ``lost``: the un-SACKed frames deemed lost,
    resent or not."""
    una = np.int64(t.hot.snd_una[cid])
    smax = np.int64(t.hot.snd_max[cid])
    d = _dupthresh(dupthresh)
    mss = _smss(t, cid)
    total_n, total_b = _sacked_totals(pool, t, cid)
    cum_n = np.int64(0)
    cum_b = np.int64(0)
    pipe = np.int64(0)
    lost_b = np.int64(0)
    fid = t.hot.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        ln = _seg_len(pool, fid, una)
        if ln > 0:
            flags = pool.flags[fid]
            if (flags & FRAME_F_TCP_SACKED) != 0:
                cum_n += 1
                cum_b += ln
            else:
                if (flags & FRAME_F_TCP_LOST) != 0 or _lost_by_sacks(
                    total_n - cum_n, total_b - cum_b, d, mss
                ):
                    lost_b += ln
                else:
                    pipe += ln
                if (flags & FRAME_F_TCP_RETRANS) != 0:
                    pipe += ln
        fid = pool.next[fid]
    return pipe, lost_b


@njit(cache=True)
def scoreboard_pipe(pool, t, cid, dupthresh):
    """RFC 6675 §4 SetPipe(): the sequence numbers in flight (``_pipe_and_lost``).  Never
    negative."""
    return _pipe_and_lost(pool, t, cid, dupthresh)[0]


@njit(cache=True)
def scoreboard_lost_bytes(pool, t, cid, dupthresh):
    """Sequence numbers above SND.UNA deemed lost (marked, or IsLost), resent or not: taken
    before and after an ACK's SACK blocks, it tells whether the ACK showed a new loss (RFC
    6937bis SafeACK; Linux's newly_lost)."""
    return _pipe_and_lost(pool, t, cid, dupthresh)[1]


@njit(cache=True)
def scoreboard_rack_detect_loss(pool, t, cid, now, reo_wnd):
    """RFC 8985 §6.2 step 5 (Linux tcp_rack_detect_loss): mark FRAME_F_TCP_LOST every sent,
    un-SACKed frame that was sent before the RACK segment and more than RACK.rtt + ``reo_wnd``
    ago, a retransmitted one included (its mark of this episode goes: it must be sent again);
    frames already marked and not yet resent are skipped.  Returns (sequence numbers newly
    marked, µs until the next frame would be, 0 if none): the reordering timer.  Linux walks
    its frames in send order and stops at the first sent after the RACK segment; the queue here
    is in sequence order, so every frame is checked."""
    h = t.hot
    una = np.int64(h.snd_una[cid])
    smax = np.int64(h.snd_max[cid])
    r_xmit = np.int64(h.rack_xmit_us[cid])
    r_order = np.int64(h.rack_xmit_order[cid])
    r_rtt = np.int64(h.rack_rtt_us[cid])
    lost = np.int64(0)
    timeout = np.int64(0)
    if r_xmit == 0:
        return lost, timeout
    fid = h.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        ln = _seg_len(pool, fid, una)
        flags = pool.flags[fid]
        if (
            ln > 0
            and (flags & FRAME_F_TCP_SACKED) == 0
            and ((flags & FRAME_F_TCP_LOST) == 0 or (flags & FRAME_F_TCP_RETRANS) != 0)
        ):
            xmit = frame_xmit_time(pool, fid)
            if rack_sent_after(r_xmit, r_order, xmit, frame_xmit_order(pool, fid)):
                remaining = xmit + r_rtt + np.int64(reo_wnd) - np.int64(now)
                if remaining <= 0:
                    pool.flags[fid] = (flags | FRAME_F_TCP_LOST) & _CLEAR_RETRANS
                    lost += ln
                elif remaining > timeout:
                    timeout = remaining
        fid = pool.next[fid]
    return lost, timeout


@njit(cache=True)
def scoreboard_sacked_segments(pool, t, cid):
    """Frames SACKed in the sent part of the queue (Linux sacked_out)."""
    return _sacked_totals(pool, t, cid)[0]


@njit(cache=True)
def scoreboard_mark_lost(pool, t, cid, fid):
    """Mark sent frame ``fid`` lost (FRAME_F_TCP_LOST) and not yet retransmitted in this
    episode, so that NextSeg returns it and pipe leaves it out until it is sent again.  False
    if ``fid`` is not a sent, unacknowledged, un-SACKed frame, or is marked already (as Linux
    tcp_newreno_mark_lost: a frame lost and resent stays so until it is ACKed)."""
    una = np.int64(t.hot.snd_una[cid])
    if not _is_sent(t, cid, pool, fid, np.int64(t.hot.snd_max[cid])):
        return False
    flags = pool.flags[fid]
    if (flags & (FRAME_F_TCP_SACKED | FRAME_F_TCP_LOST)) != 0 or _seg_len(pool, fid, una) <= 0:
        return False
    pool.flags[fid] = (flags | FRAME_F_TCP_LOST) & _CLEAR_RETRANS
    return True


@njit(cache=True)
def scoreboard_unmark_lost(pool, t, cid):
    """Clear every FRAME_F_TCP_LOST mark: an undo showed the losses were not (Linux
    tcp_undo_cwnd_reduction with unmark_loss; fsdp.tcp.undo)."""
    fid = t.hot.snd_q_head[cid]
    while fid >= 0:
        pool.flags[fid] = pool.flags[fid] & _CLEAR_LOST
        fid = pool.next[fid]


@njit(cache=True)
def scoreboard_retrans_out(pool, t, cid):
    """Whether a frame retransmitted in this episode is still out: neither SACKed nor marked
    lost again (Linux ``retrans_out > 0``)."""
    smax = np.int64(t.hot.snd_max[cid])
    fid = t.hot.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        if (pool.flags[fid] & (FRAME_F_TCP_RETRANS | FRAME_F_TCP_SACKED)) == FRAME_F_TCP_RETRANS:
            return True
        fid = pool.next[fid]
    return False


@njit(cache=True)
def scoreboard_next_seg(pool, t, cid, dupthresh):
    """RFC 6675 §4 NextSeg() rule (1): the lowest sent frame that is not SACKed, not yet
    retransmitted in this episode (1.a), and lost (1.c: IsLost, which implies (1.b), below the
    highest SACK; or marked lost by an RTO).  -1 if none: the engine then sends new data (rule
    2) if it has any and the windows allow, or asks ``scoreboard_next_seg_rule3``."""
    una = np.int64(t.hot.snd_una[cid])
    smax = np.int64(t.hot.snd_max[cid])
    d = _dupthresh(dupthresh)
    mss = _smss(t, cid)
    total_n, total_b = _sacked_totals(pool, t, cid)
    cum_n = np.int64(0)
    cum_b = np.int64(0)
    fid = t.hot.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        ln = _seg_len(pool, fid, una)
        if ln > 0:
            flags = pool.flags[fid]
            if (flags & FRAME_F_TCP_SACKED) != 0:
                cum_n += 1
                cum_b += ln
            elif (flags & FRAME_F_TCP_RETRANS) == 0:
                if (flags & FRAME_F_TCP_LOST) != 0 or _lost_by_sacks(
                    total_n - cum_n, total_b - cum_b, d, mss
                ):
                    return fid
        fid = pool.next[fid]
    return np.int32(-1)


@njit(cache=True)
def scoreboard_next_seg_rule3(pool, t, cid):
    """RFC 6675 §4 NextSeg() rule (3), optional (a SHOULD; Linux does not): the lowest sent
    frame below the highest SACKed one that is neither SACKed nor retransmitted in this
    episode, whether or not IsLost holds.  For when rule (2) finds no new data; -1 if none."""
    una = np.int64(t.hot.snd_una[cid])
    smax = np.int64(t.hot.snd_max[cid])
    high = scoreboard_highest_sacked(pool, t, cid)
    fid = t.hot.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        if seq_geq(_frame_start(pool, fid, una), high):
            break
        flags = pool.flags[fid]
        if (
            _seg_len(pool, fid, una) > 0
            and (flags & FRAME_F_TCP_SACKED) == 0
            and (flags & FRAME_F_TCP_RETRANS) == 0
        ):
            return fid
        fid = pool.next[fid]
    return np.int32(-1)


# --- episode changes -------------------------------------------------------------------------
@njit(cache=True)
def scoreboard_enter_recovery(pool, t, cid):
    """RFC 6675 §5 step (4): a new recovery episode; HighRxt starts again at HighACK, i.e. no
    frame counts as retransmitted in it yet (clears FRAME_F_TCP_RETRANS on the sent frames)."""
    smax = np.int64(t.hot.snd_max[cid])
    fid = t.hot.snd_q_head[cid]
    while _is_sent(t, cid, pool, fid, smax):
        pool.flags[fid] = pool.flags[fid] & _CLEAR_RETRANS
        fid = pool.next[fid]


@njit(cache=True)
def scoreboard_clear(pool, t, cid):
    """Retransmission timeout (RFC 6675 §5.1, Linux tcp_timeout_mark_lost).  Returns True if
    the peer reneged on its SACKs.

    RFC 2018 §8 says to forget SACK information on an RTO, since the receiver may have
    reneged; RFC 6675 §5.1 notes that keeping it with a reneging test is now accepted, and
    Linux keeps it unless the head frame (snd_una) is SACKed: a SACKed segment the receiver
    would not ACK cumulatively proves reneging.  fsdp does the same: on reneging every SACK
    mark is dropped.  Then every sent frame not SACKed is marked FRAME_F_TCP_LOST and none
    counts as retransmitted (pipe falls to the SACKed-aware zero; NextSeg returns the lost
    frames in order for the go-back retransmission)."""
    una = np.int64(t.hot.snd_una[cid])
    smax = np.int64(t.hot.snd_max[cid])
    head = t.hot.snd_q_head[cid]
    reneged = False
    if _is_sent(t, cid, pool, head, smax):
        reneged = (pool.flags[head] & FRAME_F_TCP_SACKED) != 0 and _seg_len(pool, head, una) > 0
    fid = head
    while _is_sent(t, cid, pool, fid, smax):
        flags = pool.flags[fid] & _CLEAR_RETRANS
        if reneged:
            flags &= _CLEAR_SACKED
        if (flags & FRAME_F_TCP_SACKED) == 0:
            flags |= FRAME_F_TCP_LOST
        pool.flags[fid] = flags
        fid = pool.next[fid]
    return reneged


@njit(cache=True)
def scoreboard_reset(pool, t, cid):
    """Drop every scoreboard mark (SACKED, LOST, RETRANS) from the queue: RFC 2018 §8's strict
    reading on an RTO, or SACK turned off."""
    fid = t.hot.snd_q_head[cid]
    while fid >= 0:
        pool.flags[fid] = pool.flags[fid] & _CLEAR_SCORE
        fid = pool.next[fid]
