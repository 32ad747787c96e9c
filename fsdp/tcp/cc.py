"""Congestion control: NewReno (RFC 5681, RFC 6582, RFC 3465) and CUBIC (RFC 9438), per TCB.

Read first: RFC 5681 §3 (slow start, congestion avoidance, fast retransmit/recovery, restart
after idle), RFC 6582 §3.2 (NewReno's partial and full ACKs), RFC 6928 (initial window), RFC
3042 (limited transmit), RFC 9438 §4 (CUBIC), RFC 6675 §5 (what cwnd is during SACK recovery).
Where the RFCs leave a choice fsdp does what Linux does (tcp_input.c, tcp_cong.c, tcp_cubic.c),
except where noted below.

The TCP engine calls these at fixed points of ACK processing; the algorithm is picked by the
integer column ``t.hot.cc_algo[cid]`` (``CC_NEWRENO`` / ``CC_CUBIC``), never by a function value.
All state is in the TCB (``cwnd, ssthresh, dupacks, recover, cc_w_max, cc_epoch_us, prr_*``);
windows are bytes, times µs, and every function is integer arithmetic on int64 (the uint32
columns are read through ``np.int64`` so that no uint32/int64 mix becomes a float).

Engine call points::

    established (MSS known) ... cc_init(t, cid, mss, iw_segs)
    after sending ... cc_cwnd_validate(t, cid, limited, flight)               (RFC 7661)
    ACK of new data, not in recovery ... cc_on_ack(t, cid, acked, now)  (if cc_is_cwnd_limited)
    dup ACK 1 and 2 ... cc_limited_transmit_allowed(t, cid, dupacks)          (RFC 3042)
    dup ACK 3 / SACK loss ... if cc_may_enter_recovery(...): cc_enter_recovery(...)
                              (in an ECN reduction: cc_cwr_to_recovery)
    ACK with ECE (RFC 3168) ... cc_enter_cwr(t, cid); every ACK then cc_prr_ack until
                              cc_cwr_done(t, cid, ack): cc_end_cwr
    every ACK in recovery ... cc_is_full_ack(t, cid, ack) ? cc_exit_recovery
                              : cc_prr_ack(t, cid, delivered, pipe, safe_ack)     (RFC 6937)
    data sent in recovery, or by limited transmit ... cc_prr_sent(t, cid, nbytes)
    ACK of new data outside recovery ... cc_end_dupacks(t, cid)
    RTO ... cc_on_rto(t, cid, flight, now)
    sending with nothing in flight ... cc_after_idle(t, cid, now, rto, iw_segs)

Choices (RFC vs Linux), each also at its function:

* Slow start: byte counting (RFC 3465) of everything an ACK newly delivered, with no per-ACK
  limit, as Linux's tcp_slow_start: a stretch ACK (delayed ACKs, ACK thinning, a receiver's
  GRO) counts every segment it covers, so cwnd doubles per RTT whatever the ACK pattern.
  RFC 5681 §3.1 says "at most SMSS" per ACK and RFC 3465 §2.2 L = 2*SMSS; Linux dropped that
  limit (its tcp_abc sysctl went in 3.9), and the peers fsdp meets are held to Linux
  (tests/conformance/test_data_ack.py).  cwnd stops at ssthresh and the rest of the ACK counts
  toward congestion avoidance.
* Initial window: RFC 6928's ``min(10*MSS, max(2*MSS, 14600))``; the stack option
  ``tcp_init_cwnd`` (Linux's route initcwnd) sets another number of segments, also the restart
  window after idle (Linux tcp_init_cwnd).
* NewReno congestion avoidance: RFC 3465 §2.1 byte counting (RFC 5681 §3.1 allows it), cwnd +=
  SMSS per cwnd bytes ACKed, exactly Linux's tcp_cong_avoid_ai in bytes.  The counter lives in
  ``cc_w_max`` (which CUBIC uses for W_max; NewReno has no W_max).  RFC 5681's per-ACK
  ``SMSS*SMSS/cwnd`` rounded up to 1 byte would grow many MSS per RTT at large windows.
* ssthresh on loss: NewReno ``max(FlightSize/2, 2*SMSS)`` (RFC 5681 eq. 4, FlightSize without
  what limited transmit sent; Linux uses cwnd/2, the same while cwnd-limited);
  CUBIC ``max(cwnd*β, 2*SMSS)`` with Linux's β = 717/1024 and fast convergence (RFC 9438 §4.6
  allows cwnd in place of flight size if cwnd does not grow while the sender is not
  cwnd-limited: call ``cc_on_ack`` only when cwnd-limited, as Linux's tcp_is_cwnd_limited).
* Fast recovery: RFC 6937 PRR for both SACK and non-SACK recovery, as Linux (tcp_cwnd_reduction
  with its RecoverFS = cwnd at entry, whole-segment rounding and the SafeACK refinement of
  draft-ietf-tcpm-prr-rfc6937bis).  Without SACK, "pipe" is Linux's reno estimate: the flight
  less one segment per duplicate ACK (never all of it) and less the head while it is marked
  lost and not yet resent; a partial ACK marks the new head lost (RFC 6582 step 5), and PRR
  decides when it goes.  RFC 6582's cwnd inflation and deflation are not used.
* Full ACK (RFC 6582 §3.2 step 6): option (2), ``cwnd = ssthresh``, as Linux
  (tcp_end_cwnd_reduction).  PRR has held the flight near ssthresh, so there is no burst
  unless the full ACK covers much more than the flight PRR left (everything outstanding).
* ECN (RFC 3168 §6.1.2, fsdp.tcp.ecn): an ECE halves *cwnd* (NewReno ``max(cwnd/2, 2*SMSS)``,
  as RFC 3168 says and Linux's tcp_reno_ssthresh; CUBIC as at a loss), and PRR brings cwnd
  down as in fast recovery, without retransmitting (Linux's CWR state, ``ECN_IN_CWR`` in
  ``ecn_flags``); it ends with cwnd = ssthresh once an ACK passes the SND.NXT of its start
  (``recover``).  A loss found meanwhile keeps that reduction (Linux tcp_enter_recovery).
* RTO: cwnd = 1 SMSS (RFC 5681 LW); ssthresh is reduced only once per loss episode (Linux
  tcp_enter_loss: not again while ``snd_una < recover``, so a backed-off second RTO or an RTO
  in fast recovery keeps the ssthresh already halved; RFC 5681 §3.1 likewise reduces only if
  the segment "has not yet been resent by way of the retransmission timer").  CUBIC then forgets
  W_max as Linux's bictcp_state(TCP_CA_Loss) does.
* Restart after idle: Linux's tcp_cwnd_restart (RFC 5681 §4.1 restart window, RW = IW): cwnd is
  halved per RTO idle, not below min(IW, cwnd); ssthresh = max(ssthresh, 3/4 cwnd).
* ``recover`` is Linux's high_seq: snd_max at recovery entry or RTO; a full ACK is
  ``ack >= recover``.  RFC 6582 step 1 then reads "enter fast retransmit only if ack >
  recover" without SACK (Linux holds its Recovery state until an ACK above high_seq), ``ack >=
  recover`` with SACK.  Outside a loss episode ``cc_end_dupacks`` keeps ``recover`` at
  snd_una - 1 (RFC 6582's initial ISS, one below the first ACK), so that after 2^31 bytes
  without loss the comparison cannot wrap.

CUBIC (RFC 9438 §4, Linux's tcp_cubic.c parameters: β = 717/1024, C = 410/1024, fast
convergence and TCP friendliness on, no HyStart):

* ``W_cubic(t) = C*(t-K)^3 + W_max`` in segments, t from the epoch start (first congestion
  avoidance ACK) plus one SRTT (RFC 9438 §4.4 "t + RTT"; Linux uses the minimum RTT), K =
  cbrt((W_max - cwnd_epoch)/C) (§4.2).  Time runs in 1/1024 s units as Linux's BICTCP_HZ; K
  comes from an exact integer cube root.
* cwnd_epoch is ``ssthresh``: every path into congestion avoidance starts there (slow start
  stops at ssthresh, recovery exit and RTO leave cwnd <= ssthresh), so K needs no column of
  its own and is recomputed per ACK.
* Per ACK, ``cwnd += (target - cwnd) * acked / cwnd`` rounded up and never past ``target``
  (RFC 9438 §4.4, target clamped to [cwnd, 1.5*cwnd]).  Linux carries the fraction in
  snd_cwnd_cnt; the TCB has no column for it, and rounding up with the cap keeps cwnd on the
  curve at any window size (truncating would stall cwnd below the curve at large windows).
  When the curve is at or below cwnd, cwnd does not grow (RFC 9438 §4.4; Linux adds 1% per RTT).
* TCP-friendly region (§4.3): ``W_est = cwnd_epoch + α*SMSS*elapsed/SRTT``, α = 3(1-β)/(1+β):
  the RFC 8312 closed form, equal to RFC 9438's per-ACK sum when cwnd-limited (Linux counts
  ACKs in a ca->ack_cnt field that the TCB does not have).  The target is max(W_cubic, W_est).
* No loss yet (W_max = 0) in congestion avoidance: at least 5% per RTT (Linux's cnt <= 20).
* After idle with nothing in flight, the epoch moves forward by the idle time (Linux's
  CA_EVENT_TX_START), so the curve does not jump; after a restart-window reduction the epoch
  restarts (ssthresh may have changed, and it is cwnd_epoch).
"""

import numpy as np
from numba import njit

from fsdp.tcp.ecn import ECN_IN_CWR, ecn_queue_cwr
from fsdp.tcp.tcb import CC_CUBIC, TCP_INFINITE_SSTHRESH, TF_IN_RECOVERY
from fsdp.tcp.undo import undo_clear, undo_init
from fsdp.wire.tcp import seq_geq, seq_gt, seq_lt

# --- constants -------------------------------------------------------------------------------
CC_IW_MAX_BYTES = 14600  # RFC 6928 §2: IW = min(10*MSS, max(2*MSS, 14600))
CC_IW_SEGMENTS = 10
CC_DUPTHRESH = 3  # RFC 5681 §3.2: the third duplicate ACK starts fast retransmit
CC_LIMITED_TRANSMIT_MAX = 2  # RFC 3042 §2: the first two duplicate ACKs
# Largest cwnd: RFC 7323 §2.3 caps the peer's window at 65535 << 14 < 2^30, so a larger cwnd is
# never usable; the cap also keeps every product below in int64 and cwnd < ssthresh's "infinite".
CC_MAX_CWND = 1 << 30

CUBIC_BETA = 717  # β = 717/1024 ≈ 0.7 (Linux tcp_cubic beta; RFC 9438 §4.6)
CUBIC_BETA_SCALE = 1024
CUBIC_C = 410  # C = 410/1024 ≈ 0.4 (Linux bic_scale*10; RFC 9438 §4.2 C = 0.4)
CUBIC_HZ_SHIFT = 10  # time in 1/1024 s units (Linux BICTCP_HZ)
CUBIC_NO_EPOCH = -1  # cc_epoch_us: no congestion-avoidance epoch running
# α_cubic = 3(1-β)/(1+β) (RFC 9438 §4.3) = 3*(1024-717)/(1024+717) with β = 717/1024
CUBIC_ALPHA_NUM = 3 * (CUBIC_BETA_SCALE - CUBIC_BETA)
CUBIC_ALPHA_DEN = CUBIC_BETA_SCALE + CUBIC_BETA
_CUBIC_MAX_OFFS = 1 << 18  # |t-K| clamp (256 s): C*offs^3 stays in int64
_CUBIC_MAX_ELAPSED_US = 1 << 36  # ~19 h: α*mss*elapsed stays in int64
_USEC_PER_SEC = 1_000_000
_INF = TCP_INFINITE_SSTHRESH
_NOT_IN_RECOVERY = 0xFFFFFFFF ^ TF_IN_RECOVERY


# --- helpers ---------------------------------------------------------------------------------
@njit(inline="always", cache=True)
def _mss(t, cid):
    m = np.int64(t.hot.mss[cid])
    return m if m > 0 else np.int64(1)


@njit(inline="always", cache=True)
def _clamp_cwnd(cwnd, mss):
    """cwnd within [1 SMSS, CC_MAX_CWND]."""
    if cwnd > CC_MAX_CWND:
        cwnd = np.int64(CC_MAX_CWND)
    if cwnd < mss:
        cwnd = mss
    return cwnd


@njit(inline="always", cache=True)
def _clamp_ssthresh(ssthresh, mss):
    """ssthresh within [2 SMSS, TCP_INFINITE_SSTHRESH] (RFC 5681 eq. 4's floor), in whole
    segments below that: Linux counts packets, so half of an 11-segment flight is 5, not 5.5."""
    if ssthresh >= _INF:
        return np.int64(_INF)
    ssthresh = (ssthresh // mss) * mss
    if ssthresh < 2 * mss:
        ssthresh = 2 * mss
    return ssthresh


@njit(cache=True)
def cc_initial_window(mss, segs=CC_IW_SEGMENTS):
    """RFC 6928 §2: ``min(10*MSS, max(2*MSS, 14600))`` bytes; another number of segments
    ``segs`` (``tcp_init_cwnd``, Linux's route initcwnd) is that many MSS."""
    mss = np.int64(mss)
    if mss < 1:
        mss = np.int64(1)
    if segs != CC_IW_SEGMENTS:
        return max(np.int64(segs), np.int64(1)) * mss
    return min(CC_IW_SEGMENTS * mss, max(2 * mss, np.int64(CC_IW_MAX_BYTES)))


@njit(cache=True)
def icbrt(x):
    """Floor of the cube root of ``0 <= x < 2^63`` (bitwise, exact; Hacker's Delight 11-2)."""
    x = np.int64(x)
    y = np.int64(0)
    for s in range(63, -1, -3):
        y = 2 * y
        b = 3 * y * (y + 1) + 1
        if (x >> s) >= b:
            x -= b << s
            y += 1
    return y


@njit(cache=True)
def cubic_k(w_max, cwnd_epoch, mss):
    """K of RFC 9438 §4.2 in 1/1024 s: cbrt((W_max - cwnd_epoch) / (C * MSS)); 0 if W_max <=
    cwnd_epoch."""
    d = np.int64(w_max) - np.int64(cwnd_epoch)
    mss = max(np.int64(mss), np.int64(1))
    if d <= 0:
        return np.int64(0)
    q = (d << 20) // mss  # segments in 2^-20 units; d < 2^33 keeps it < 2^53
    if q > (np.int64(1) << 50):
        q = np.int64(1) << 50
    # segments / C * 2^30: cube root is in 2^-10 s units
    return icbrt((q // CUBIC_C) << 20)


@njit(cache=True)
def cubic_window(w_max, cwnd_epoch, mss, t_us):
    """W_cubic at ``t_us`` µs into the epoch, in bytes (RFC 9438 eq. 1, origin max(W_max,
    cwnd_epoch) as Linux); 0 where the curve would go negative."""
    w_max = np.int64(w_max)
    cwnd_epoch = np.int64(cwnd_epoch)
    mss = max(np.int64(mss), np.int64(1))
    k = cubic_k(w_max, cwnd_epoch, mss)
    origin = w_max if w_max > cwnd_epoch else cwnd_epoch
    t_us = np.int64(t_us)
    if t_us < 0:
        t_us = np.int64(0)
    if t_us > _CUBIC_MAX_ELAPSED_US:
        t_us = np.int64(_CUBIC_MAX_ELAPSED_US)
    t_u = (t_us << CUBIC_HZ_SHIFT) // _USEC_PER_SEC
    offs = k - t_u if t_u < k else t_u - k
    if offs > _CUBIC_MAX_OFFS:
        offs = np.int64(_CUBIC_MAX_OFFS)
    # C * offs^3 in segments * 2^10, then bytes
    seg_q10 = (CUBIC_C * offs * offs * offs) >> (3 * CUBIC_HZ_SHIFT)
    delta = (seg_q10 * mss) >> CUBIC_HZ_SHIFT
    if t_u < k:
        w = origin - delta
        return w if w > 0 else np.int64(0)
    return origin + delta


@njit(inline="always", cache=True)
def _cubic_reset(t, cid):
    t.hot.cc_epoch_us[cid] = CUBIC_NO_EPOCH


@njit(inline="always", cache=True)
def _newreno_cnt_reset(t, cid):
    t.hot.cc_w_max[cid] = 0  # NewReno keeps its byte counter in cc_w_max


@njit(inline="always", cache=True)
def _reset_growth_state(t, cid):
    """A window reduction ends CUBIC's epoch and restarts NewReno's byte count."""
    if t.hot.cc_algo[cid] == CC_CUBIC:
        _cubic_reset(t, cid)
    else:
        _newreno_cnt_reset(t, cid)


@njit(cache=True)
def _cubic_congestion_avoidance(t, cid, cwnd, acked, mss, now):
    """One ACK of ``acked`` bytes in congestion avoidance; returns the new cwnd."""
    h = t.hot
    if h.cc_epoch_us[cid] == CUBIC_NO_EPOCH:
        h.cc_epoch_us[cid] = now
    elapsed = np.int64(now) - h.cc_epoch_us[cid]
    if elapsed < 0:
        elapsed = np.int64(0)
    if elapsed > _CUBIC_MAX_ELAPSED_US:
        elapsed = np.int64(_CUBIC_MAX_ELAPSED_US)
    srtt = np.int64(h.srtt[cid])
    if srtt < 0:
        srtt = np.int64(0)
    w_max = np.int64(h.cc_w_max[cid])
    cwnd_epoch = np.int64(h.ssthresh[cid])  # see the module docstring
    if cwnd_epoch > cwnd:
        cwnd_epoch = cwnd
    target = cubic_window(w_max, cwnd_epoch, mss, elapsed + srtt)
    if w_max == 0:  # no loss seen yet: at least 5% per RTT (Linux cnt <= 20)
        floor = cwnd + cwnd // 20
        if target < floor:
            target = floor
    if srtt > 0:  # TCP-friendly region, RFC 9438 §4.3
        w_est = cwnd_epoch + (CUBIC_ALPHA_NUM * mss * elapsed) // (CUBIC_ALPHA_DEN * srtt)
        if w_est > target:
            target = w_est
    cap = cwnd + cwnd // 2  # RFC 9438 §4.4: at most 1.5 cwnd per RTT (Linux cnt >= 2)
    if target > cap:
        target = cap
    if target <= cwnd:
        return cwnd
    room = target - cwnd
    inc = (room * acked + cwnd - 1) // cwnd  # rounded up, never past target
    if inc > room:
        inc = room
    return cwnd + inc


# --- public API ------------------------------------------------------------------------------
@njit(cache=True)
def cc_init(t, cid, mss, iw_segs=CC_IW_SEGMENTS):
    """Start congestion control for a new connection (call when the send MSS is known).

    cwnd = the initial window (``cc_initial_window``), ssthresh "arbitrarily high" (RFC 5681
    §3.1), no duplicate ACKs, recover = snd_una - 1 (RFC 6582 §3.2: ISS once the SYN is
    acknowledged), CUBIC and NewReno state cleared."""
    h = t.hot
    h.cwnd[cid] = cc_initial_window(mss, iw_segs)
    h.ssthresh[cid] = _INF
    h.dupacks[cid] = 0
    h.recover[cid] = (np.int64(h.snd_una[cid]) - 1) & 0xFFFFFFFF
    h.cc_w_max[cid] = 0
    h.cc_epoch_us[cid] = CUBIC_NO_EPOCH
    h.tflags[cid] = h.tflags[cid] & _NOT_IN_RECOVERY


@njit(cache=True)
def cc_set_algo(t, cid, algo):
    """Switch the connection to ``algo`` (CC_*), clearing the per-algorithm state (Linux
    tcp_reinit_congestion_control); cwnd and ssthresh carry over."""
    t.hot.cc_algo[cid] = algo
    t.hot.cc_w_max[cid] = 0
    t.hot.cc_epoch_us[cid] = CUBIC_NO_EPOCH


@njit(inline="always", cache=True)
def cc_in_slow_start(t, cid):
    """RFC 5681 §3.1: slow start while cwnd < ssthresh."""
    return np.int64(t.hot.cwnd[cid]) < np.int64(t.hot.ssthresh[cid])


@njit(cache=True)
def cc_cwnd_validate(t, cid, limited, flight):
    """After sending (RFC 7661 §4.1, as Linux tcp_cwnd_validate): record whether this flight
    filled the congestion window (``limited``: no room for another segment, or the send
    stopped on cwnd), and otherwise the most bytes it had in flight, for the window now being
    sent (it ends when SND.UNA passes the SND.NXT it began at).  ``cc_is_cwnd_limited`` reads
    them."""
    h = t.hot
    if (seq_geq(h.snd_una[cid], h.cwnd_usage_seq[cid]) or limited
            or (h.cwnd_limited[cid] == 0 and np.int64(flight) > np.int64(h.max_flight[cid]))):
        h.cwnd_limited[cid] = 1 if limited else 0
        h.max_flight[cid] = flight
        h.cwnd_usage_seq[cid] = h.snd_nxt[cid]


@njit(cache=True)
def cc_is_cwnd_limited(t, cid):
    """Whether cwnd may grow on this ACK (RFC 7661 §4.2, RFC 9438 §4.6; Linux
    tcp_is_cwnd_limited): the current window filled cwnd, or, in slow start, cwnd is below
    twice the most the sender had in flight (so it still doubles what was ACKed).  A sender the
    application or the peer's window limits does not inflate cwnd past what it has used."""
    h = t.hot
    if h.cwnd_limited[cid] != 0:
        return True
    cwnd = np.int64(h.cwnd[cid])
    if cwnd < np.int64(h.ssthresh[cid]):
        return cwnd < 2 * np.int64(h.max_flight[cid])
    return False


@njit(cache=True)
def cc_on_ack(t, cid, acked_bytes, now):
    """An ACK that advanced SND.UNA outside recovery delivered ``acked_bytes`` (not counting
    bytes SACKed by earlier ACKs: Linux's newly delivered): grow cwnd.

    Slow start: ``cwnd += acked`` (byte counting without RFC 3465's per-ACK limit, as Linux),
    stopping at ssthresh with the remainder counted in congestion avoidance (Linux
    tcp_slow_start).  Congestion avoidance:
    NewReno +1 SMSS per cwnd bytes ACKed (RFC 3465 §2.1), or CUBIC (RFC 9438 §4).  Call it only
    while the sender is cwnd-limited (RFC 7661, Linux tcp_is_cwnd_limited); does nothing in
    recovery."""
    h = t.hot
    acked = np.int64(acked_bytes)
    if acked <= 0 or (h.tflags[cid] & TF_IN_RECOVERY) != 0:
        return
    mss = _mss(t, cid)
    cwnd = np.int64(h.cwnd[cid])
    ssthresh = np.int64(h.ssthresh[cid])
    if cwnd < ssthresh:
        room = ssthresh - cwnd
        if acked <= room:
            h.cwnd[cid] = _clamp_cwnd(cwnd + acked, mss)
            return
        cwnd = ssthresh
        acked -= room
    if cwnd >= CC_MAX_CWND:
        h.cwnd[cid] = CC_MAX_CWND
        return
    if h.cc_algo[cid] == CC_CUBIC:
        cwnd = _cubic_congestion_avoidance(t, cid, cwnd, acked, mss, now)
    else:
        cnt = np.int64(h.cc_w_max[cid]) + acked
        if cnt >= cwnd:
            n = cnt // cwnd
            cnt -= n * cwnd
            cwnd += n * mss
        h.cc_w_max[cid] = cnt  # < cwnd
    h.cwnd[cid] = _clamp_cwnd(cwnd, mss)


@njit(cache=True)
def cc_may_enter_recovery(t, cid, ack, sack_recovery):
    """Whether the loss just detected may start fast recovery: not while already in it, and
    only past the previous episode.  RFC 6582 §3.2 step 1 (non-SACK): only if the cumulative
    ACK "covers more than recover" (``ack > recover``; an ACK at recover may be the last
    retransmission's, so duplicates of it prove nothing; Linux holds its Recovery state until
    an ACK above high_seq).  With SACK the scoreboard tells a new loss: ``ack >= recover``
    (Linux).  Also RFC 6675 §5.1's rule after an RTO.  During an ECN reduction ``recover`` is
    that reduction's, and a loss may start recovery at once (Linux's CWR state)."""
    if (t.hot.tflags[cid] & TF_IN_RECOVERY) != 0:
        return False
    if cc_in_cwr(t, cid):
        return True
    if sack_recovery:
        return seq_geq(ack, t.hot.recover[cid])
    return seq_gt(ack, t.hot.recover[cid])


@njit(cache=True)
def cc_is_full_ack(t, cid, ack):
    """RFC 6582 §3.2 step 6: ``ack`` acknowledges everything sent before recovery began."""
    return seq_geq(ack, t.hot.recover[cid])


@njit(cache=True)
def cc_enter_recovery(t, cid, flight_size, now):
    """Loss detected by duplicate ACKs or the SACK scoreboard: reduce the window and enter
    fast recovery (RFC 5681 §3.2 step 2, RFC 6582 §3.2 step 2, RFC 6675 §5 step 4, RFC 6937
    §3.1 initialization; Linux tcp_enter_recovery / tcp_init_cwnd_reduction).

    ``flight_size``: FlightSize without the data limited transmit sent (RFC 5681 §3.2 step 2:
    it "MUST NOT be included").  ssthresh: NewReno ``max(FlightSize/2, 2*SMSS)`` (RFC 5681
    eq. 4); CUBIC ``max(cwnd*β, 2*SMSS)`` after W_max := cwnd, or cwnd*(1+β)/2 below the last
    W_max (fast convergence, RFC 9438 §4.7).  cwnd is left for ``cc_prr_ack`` to set on this
    same ACK; RecoverFS := cwnd (Linux prior_cwnd; RFC 6937 uses snd.nxt - snd.una), and
    prr_delivered = prr_out = 0.  recover = snd_max; TF_IN_RECOVERY set."""
    _init_cwnd_reduction(t, cid, flight_size)
    h = t.hot
    cc_leave_cwr(t, cid)
    h.tflags[cid] = h.tflags[cid] | TF_IN_RECOVERY


@njit(cache=True)
def _init_cwnd_reduction(t, cid, newreno_basis):
    """Start a window reduction (Linux tcp_init_cwnd_reduction): ssthresh from ``newreno_basis``
    halved (NewReno) or from cwnd (CUBIC, with W_max and fast convergence), RecoverFS := cwnd,
    PRR's counts from 0, recover = snd_max, and CWR queued for an ECN peer."""
    h = t.hot
    mss = _mss(t, cid)
    cwnd = np.int64(h.cwnd[cid])
    if h.cc_algo[cid] == CC_CUBIC:
        if cwnd < np.int64(h.cc_w_max[cid]):
            h.cc_w_max[cid] = cwnd * (CUBIC_BETA_SCALE + CUBIC_BETA) // (2 * CUBIC_BETA_SCALE)
        else:
            h.cc_w_max[cid] = cwnd
        ssthresh = cwnd * CUBIC_BETA // CUBIC_BETA_SCALE
        _cubic_reset(t, cid)
    else:
        ssthresh = np.int64(newreno_basis) // 2
        _newreno_cnt_reset(t, cid)
    h.ssthresh[cid] = _clamp_ssthresh(ssthresh, mss)
    h.prr_prior_cwnd[cid] = _clamp_cwnd(cwnd, mss)
    h.prr_delivered[cid] = 0
    h.prr_out[cid] = 0
    h.recover[cid] = h.snd_max[cid]
    ecn_queue_cwr(t, cid)


@njit(cache=True)
def cc_in_cwr(t, cid):
    """In an ECN window reduction (Linux's CWR state)."""
    return (t.hot.ecn_flags[cid] & ECN_IN_CWR) != 0


@njit(cache=True)
def cc_leave_cwr(t, cid):
    """Out of the ECN reduction's state: it ended, or recovery or an RTO took over."""
    t.hot.ecn_flags[cid] &= ~np.uint8(ECN_IN_CWR)


@njit(cache=True)
def cc_counts_prr_out(t, cid):
    """Data sent now counts toward PRR's prr_out: in fast recovery or an ECN reduction (Linux
    tcp_in_cwnd_reduction)."""
    h = t.hot
    return (h.tflags[cid] & TF_IN_RECOVERY) != 0 or cc_in_cwr(t, cid)


@njit(cache=True)
def cc_enter_cwr(t, cid):
    """An ACK echoed congestion (ECE, RFC 3168 §6.1.2) outside any reduction: halve the window,
    PRR to bring cwnd down over the next ACKs, CWR queued (Linux tcp_enter_cwr).  The reduction
    cannot be undone (Linux: undo_marker = 0)."""
    h = t.hot
    undo_clear(t, cid)
    _init_cwnd_reduction(t, cid, h.cwnd[cid])
    h.ecn_flags[cid] |= np.uint8(ECN_IN_CWR)


@njit(cache=True)
def cc_cwr_done(t, cid, ack):
    """The ECN reduction ends once ``ack`` passes the SND.NXT of its start -- held past it so
    that the CWR sent there reached the peer (Linux tcp_fastretrans_alert, TCP_CA_CWR)."""
    return cc_in_cwr(t, cid) and seq_gt(ack, t.hot.recover[cid])


@njit(cache=True)
def cc_end_cwr(t, cid):
    """End the ECN reduction: cwnd = ssthresh (Linux tcp_end_cwnd_reduction)."""
    h = t.hot
    mss = _mss(t, cid)
    h.cwnd[cid] = _clamp_cwnd(np.int64(h.ssthresh[cid]), mss)
    cc_leave_cwr(t, cid)
    h.prr_out[cid] = 0
    _reset_growth_state(t, cid)


@njit(cache=True)
def cc_cwr_to_recovery(t, cid):
    """A loss found during an ECN reduction starts fast recovery within it: ssthresh, PRR's
    counts and ``recover`` stay (Linux tcp_enter_recovery: no second tcp_init_cwnd_reduction
    while tcp_in_cwnd_reduction)."""
    h = t.hot
    cc_leave_cwr(t, cid)
    h.tflags[cid] = h.tflags[cid] | TF_IN_RECOVERY


@njit(cache=True)
def cc_prr_ack(t, cid, delivered, pipe, safe_ack):
    """RFC 6937 proportional rate reduction, on each ACK in fast recovery (SACK or not), as
    Linux's tcp_cwnd_reduction.  ``delivered``: bytes this ACK newly delivered (RFC 6937
    DeliveredData: the advance of SND.UNA plus the change in SACKed bytes; without SACK each
    duplicate ACK stands for one segment); ``pipe``: bytes in flight after the ACK (RFC 6675
    SetPipe); ``safe_ack``: the ACK advanced SND.UNA and showed no new loss (draft-ietf-tcpm-
    prr-rfc6937bis's SafeACK, Linux ``FLAG_SND_UNA_ADVANCED && !newly_lost``).

    While pipe > ssthresh the sender sends ``ssthresh/RecoverFS`` of what is delivered
    (``CEIL(prr_delivered*ssthresh/RecoverFS) - prr_out``, in whole segments: Linux counts
    packets); at or below it, slow-start reduction bound: it catches up to ssthresh by at most
    ``max(prr_delivered - prr_out, delivered)`` plus one SMSS on a SafeACK.  The first ACK of
    the episode always allows one segment, the fast retransmit.  cwnd := pipe + that count,
    so the output sends while ``pipe + SMSS <= cwnd``; the engine adds what it sends to
    prr_out (``cc_prr_sent``)."""
    if delivered <= 0:
        return
    h = t.hot
    mss = _mss(t, cid)
    prr_delivered = np.int64(h.prr_delivered[cid]) + np.int64(delivered)
    if prr_delivered > CC_MAX_CWND:
        prr_delivered = np.int64(CC_MAX_CWND)  # a u32 column; more is never useful
    h.prr_delivered[cid] = prr_delivered
    prr_out = np.int64(h.prr_out[cid])
    ssthresh = np.int64(h.ssthresh[cid])
    pipe = np.int64(pipe)
    delta = ssthresh - pipe
    if delta < 0:
        recover_fs = np.int64(h.prr_prior_cwnd[cid])
        if recover_fs < mss:
            recover_fs = mss
        quota = (prr_delivered * ssthresh + recover_fs - 1) // recover_fs
        quota = (quota + mss - 1) // mss * mss
        sndcnt = quota - prr_out
    else:
        sndcnt = max(prr_delivered - prr_out, np.int64(delivered))
        if safe_ack:
            sndcnt += mss
        sndcnt = min(delta, sndcnt)
    if prr_out == 0 and sndcnt < mss:
        sndcnt = mss  # RFC 5681 §3.2 step 2: the fast retransmit goes at once
    h.cwnd[cid] = _clamp_cwnd(pipe + sndcnt, mss)


@njit(inline="always", cache=True)
def cc_prr_sent(t, cid, nbytes):
    """Data sent (new or again) counts toward RFC 6937's prr_out while in fast recovery;
    before it, limited transmit's segments (RFC 3042) are kept there to be left out of the
    FlightSize that sets ssthresh (RFC 5681 §3.2 step 2)."""
    v = np.int64(t.hot.prr_out[cid]) + np.int64(nbytes)
    t.hot.prr_out[cid] = v if v < CC_MAX_CWND else np.int64(CC_MAX_CWND)


@njit(inline="always", cache=True)
def cc_end_dupacks(t, cid):
    """An ACK of new data outside recovery: a run of duplicate ACKs ended without one, so it
    is forgotten; past the last episode, ``recover`` follows at snd_una - 1 (within 2^31 of
    snd_una, and one below it as RFC 6582's initial ISS is)."""
    h = t.hot
    h.dupacks[cid] = 0
    if not cc_in_cwr(t, cid):
        h.prr_out[cid] = 0  # (an ECN reduction's PRR keeps counting)
    below = (np.int64(h.snd_una[cid]) - 1) & 0xFFFFFFFF
    if seq_gt(below, h.recover[cid]):
        h.recover[cid] = below


@njit(cache=True)
def cc_exit_recovery(t, cid, flight_size):
    """Full ACK (RFC 6582 §3.2 step 6, RFC 6937 §3.1 "on exiting recovery"): ``cwnd =
    ssthresh`` -- RFC 6582's option (2), as Linux's tcp_end_cwnd_reduction; PRR has already
    brought the flight near ssthresh, so no burst follows.  Leave recovery."""
    h = t.hot
    mss = _mss(t, cid)
    h.cwnd[cid] = _clamp_cwnd(np.int64(h.ssthresh[cid]), mss)
    h.tflags[cid] = h.tflags[cid] & _NOT_IN_RECOVERY
    cc_leave_cwr(t, cid)
    h.prr_out[cid] = 0
    _reset_growth_state(t, cid)


@njit(cache=True)
def cc_leave_recovery(t, cid):
    """Leave fast recovery without the full ACK's cwnd = ssthresh: an undo restored the window
    (fsdp.tcp.undo; Linux tcp_try_keep_open after one).  ``recover`` then trails at snd_una - 1,
    as outside any episode, so the next loss starts a new one."""
    h = t.hot
    h.tflags[cid] = h.tflags[cid] & _NOT_IN_RECOVERY
    h.prr_out[cid] = 0
    h.dupacks[cid] = 0
    h.recover[cid] = (np.int64(h.snd_una[cid]) - 1) & 0xFFFFFFFF
    _reset_growth_state(t, cid)


@njit(cache=True)
def cc_current_ssthresh(t, cid):
    """Linux tcp_current_ssthresh outside a reduction: ssthresh, or 3/4 of cwnd if more, in
    whole segments as Linux computes it (what an undo may restore, what idling keeps)."""
    h = t.hot
    mss = _mss(t, cid)
    segs = np.int64(h.cwnd[cid]) // mss
    cur = ((segs >> 1) + (segs >> 2)) * mss
    ssthresh = np.int64(h.ssthresh[cid])
    return ssthresh if ssthresh > cur else cur


@njit(cache=True)
def cc_on_rto(t, cid, flight_size, now):
    """Retransmission timeout (RFC 5681 §3.1 eq. 4 and LW, RFC 6582 §3.2 step 4, Linux
    tcp_enter_loss).

    ssthresh is reduced (NewReno max(FlightSize/2, 2*SMSS), CUBIC as at recovery entry) unless
    this loss episode already reduced it (``snd_una < recover``: a backed-off RTO, or an RTO
    during fast recovery); a reduction starts an episode an undo may revert (fsdp.tcp.undo,
    cwnd kept as ``prr_prior_cwnd``: Linux tcp_enter_loss's prior_ssthresh and prior_cwnd).
    cwnd = 1 SMSS, fast recovery ends, recover = snd_max, dupacks = 0; CUBIC forgets W_max
    and its epoch (Linux bictcp_state on TCP_CA_Loss)."""
    h = t.hot
    mss = _mss(t, cid)
    if not seq_lt(h.snd_una[cid], h.recover[cid]):
        undo_init(t, cid, cc_current_ssthresh(t, cid))
        h.prr_prior_cwnd[cid] = h.cwnd[cid]
        if h.cc_algo[cid] == CC_CUBIC:
            ssthresh = np.int64(h.cwnd[cid]) * CUBIC_BETA // CUBIC_BETA_SCALE
        else:
            ssthresh = np.int64(flight_size) // 2
        h.ssthresh[cid] = _clamp_ssthresh(ssthresh, mss)
    h.cwnd[cid] = mss
    h.tflags[cid] = h.tflags[cid] & _NOT_IN_RECOVERY
    cc_leave_cwr(t, cid)
    ecn_queue_cwr(t, cid)  # Linux tcp_enter_loss: the next new data carries CWR
    h.recover[cid] = h.snd_max[cid]
    h.dupacks[cid] = 0
    h.prr_out[cid] = 0
    h.cc_w_max[cid] = 0  # CUBIC: W_max forgotten; NewReno: byte count restarts
    h.cc_epoch_us[cid] = CUBIC_NO_EPOCH


@njit(cache=True)
def cc_after_idle(t, cid, now, rto, iw_segs=CC_IW_SEGMENTS):
    """About to send: if nothing is in flight, account for the idle time since the last data
    sent (``last_snd_us``).  Returns True if the restart window was applied.

    CUBIC moves its epoch forward by the idle time (Linux CA_EVENT_TX_START).  If idle longer
    than ``rto`` (RFC 5681 §4.1; Linux tcp_cwnd_restart): ssthresh = max(ssthresh, 3/4 cwnd)
    and cwnd is halved per RTO of idle time, but not below min(IW, cwnd), IW of ``iw_segs``
    segments as at the start."""
    h = t.hot
    if np.int64(h.snd_una[cid]) != np.int64(h.snd_max[cid]):
        return False
    idle = np.int64(now) - h.last_snd_us[cid]
    if idle <= 0:
        return False
    if h.cc_algo[cid] == CC_CUBIC and h.cc_epoch_us[cid] != CUBIC_NO_EPOCH:
        e = h.cc_epoch_us[cid] + idle
        h.cc_epoch_us[cid] = e if e < now else np.int64(now)
    rto = np.int64(rto)
    if rto <= 0 or idle <= rto or (h.tflags[cid] & TF_IN_RECOVERY) != 0:
        return False
    mss = _mss(t, cid)
    cwnd = np.int64(h.cwnd[cid])
    h.ssthresh[cid] = _clamp_ssthresh(cc_current_ssthresh(t, cid), mss)
    restart = min(cc_initial_window(mss, iw_segs), cwnd)
    idle -= rto
    while idle > 0 and cwnd > restart:
        cwnd >>= 1
        idle -= rto
    h.cwnd[cid] = _clamp_cwnd(max(cwnd, restart), mss)
    _reset_growth_state(t, cid)
    return True


@njit(cache=True)
def cc_limited_transmit_allowed(t, cid, dupacks):
    """RFC 3042 §2: on the first and second duplicate ACK one new segment may go out, without
    changing cwnd, if the flight stays within ``cwnd + dupacks*SMSS`` (Linux's accounting: each
    duplicate ACK took one segment out of the flight) and the peer's window has room beyond
    snd_max.  The engine still checks it has new data and sizes the segment to the window."""
    h = t.hot
    if dupacks < 1 or dupacks > CC_LIMITED_TRANSMIT_MAX or (h.tflags[cid] & TF_IN_RECOVERY) != 0:
        return False
    mss = _mss(t, cid)
    una = np.int64(h.snd_una[cid])
    smax = np.int64(h.snd_max[cid])
    flight = (smax - una) & 0xFFFFFFFF
    if flight + mss > np.int64(h.cwnd[cid]) + np.int64(dupacks) * mss:
        return False
    wnd_edge = (una + np.int64(h.snd_wnd[cid])) & 0xFFFFFFFF
    return seq_lt(smax, wnd_edge)
