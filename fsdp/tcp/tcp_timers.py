"""TCP timers on the per-core wheel: retransmission (RFC 6298 §5, SYN and SYN-ACK included),
delayed ACK (RFC 9293 §3.8.6.3), persist (§3.8.6.1), keep-alive (RFC 1122 §4.2.3.6), TIME-WAIT
(§3.6.1) and the orphaned FIN-WAIT-2 timeout.  Where the RFCs leave a choice, Linux
(net/ipv4/tcp_timer.c): give-up times are computed from the first retransmission's time like
``retransmits_timed_out`` (``tcp_retries2`` = 15 is ~924.6 s with a 200 ms RTO floor; SYN:
``tcp_syn_retries`` = 6 retransmissions at 1, 3, 7, 15, 31, 63 s, ETIMEDOUT at 127 s), window
probes and keep-alive probes are ACKs with SEQ = SND.UNA - 1.

A timer that fires is no longer pending; each handler re-arms what it still needs.  Handlers
check the connection's state first: a batch of due timers may name a TCB that an earlier
handler of the same batch freed.
"""

import numpy as np

from fsdp.core.config import (
    CFG_TCP_FRTO,
    CFG_TCP_ORPHAN_RETRIES,
    CFG_TCP_REORDERING,
    CFG_TCP_RETRIES2,
    CFG_TCP_RTO_INITIAL_US,
    CFG_TCP_RTO_MAX_US,
    CFG_TCP_RTO_MIN_US,
    CFG_TCP_SYN_RETRIES,
    CFG_TCP_SYNACK_RETRIES,
)
from fsdp.core.stats import (
    STAT_TCP_ATTEMPT_FAILS,
    STAT_TCP_DELAYED_ACKS,
    STAT_TCP_FIN_WAIT2_TIMEOUTS,
    STAT_TCP_KEEPALIVE_ABORTS,
    STAT_TCP_KEEPALIVE_PROBES,
    STAT_TCP_PERSIST_PROBES,
    STAT_TCP_SYN_RETRANS,
    STAT_TCP_SYNACK_RETRANS,
    STAT_TCP_TIMEOUT_ABORTS,
    STAT_TCP_TIMEOUTS,
)
from fsdp.core.timerwheel import (
    TIMER_DELACK,
    TIMER_FIN_WAIT_2,
    TIMER_KEEPALIVE,
    TIMER_PERSIST,
    TIMER_REORDER,
    TIMER_RTO,
    TIMER_SYNACK,
    TIMER_TIMEWAIT,
    timer_expire,
)
from fsdp.tcp.cc import cc_may_enter_recovery, cc_on_rto
from fsdp.tcp.conn import tcp_conn_free, tcp_set_closed
from fsdp.tcp.frameflags import FRAME_F_TCP_PSH, FRAME_F_TCP_SENT
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.rack import RACK_NO_DUPTHRESH
from fsdp.tcp.sack_scoreboard import scoreboard_clear, scoreboard_sacked_segments
from fsdp.tcp.segment import tcp_enter_fast_recovery
from fsdp.tcp.tcb import (
    TCPS_CLOSED,
    TCPS_FIN_WAIT_2,
    TCPS_LISTEN,
    TCPS_SYN_RECEIVED,
    TCPS_SYN_SENT,
    TCPS_TIME_WAIT,
    TF_DELACK,
    TF_IN_LOSS,
    TF_IN_RECOVERY,
    TF_KEEPALIVE,
    TF_ORPHAN,
    TF_PASSIVE,
    TF_PINGPONG,
    TF_RTT_TIMING,
    TF_TLP_ARMED,
    TF_TLP_OUT,
    TF_TLP_RETRANS,
    TF_TMPL_MAC,
)
from fsdp.tcp.tcbops import arm, expires, is_alloc, keepalive_idle_us, user_timeout_us
from fsdp.tcp.tcp_output import (
    tcp_arm_persist,
    tcp_arm_rto,
    tcp_can_send_data,
    tcp_flight,
    tcp_loss_dupthresh,
    tcp_output,
    tcp_probe0_base,
    tcp_rack_detect_loss,
    tcp_rto_us,
    tcp_send_ack,
    tcp_send_loss_probe,
    tcp_send_probe,
    tcp_send_rst,
    tcp_send_syn,
    tcp_split_frame,
    tcp_xmit_frame,
)
from fsdp.tcp.undo import FRTO_ON
from fsdp.wire.tcp import seq_diff

ETIMEDOUT = 110
TCP_ATO_MIN_US = 40_000
M32 = 0xFFFFFFFF


@kernel_inline
def _model_timeout(boundary, rto_base, rto_max):
    """Linux tcp_model_timeout: how long ``boundary`` backed-off retransmissions take."""
    thresh = np.int64(0)
    q = rto_max // rto_base
    while (q >> (thresh + 1)) > 0:
        thresh += 1
    if boundary <= thresh:
        return ((np.int64(2) << boundary) - 1) * rto_base
    return ((np.int64(2) << thresh) - 1) * rto_base + (boundary - thresh) * rto_max


@kernel_inline
def tcp_retransmits_timed_out(core, cid, boundary, rto_base, now):
    """Linux retransmits_timed_out: give up when the time since the first retransmission
    reaches TCP_USER_TIMEOUT, or without one the model time of ``boundary`` retransmissions."""
    h = core.tcb.hot
    if h.rexmit_count[cid] == 0:
        return False
    start = h.retrans_stamp[cid]
    if start == 0:
        return False
    tmo = user_timeout_us(core, cid)  # TCP_USER_TIMEOUT instead
    if tmo == 0:
        tmo = _model_timeout(np.int64(boundary), np.int64(rto_base), core.cfg[CFG_TCP_RTO_MAX_US])
    # Linux compares in milliseconds (jiffies)
    return (now // 1000) - (start // 1000) - tmo // 1000 >= 0


@kernel
def _write_err(core, cid, now):
    """The connection timed out: it ends with the ICMP error it last received, if any, else
    ETIMEDOUT (Linux tcp_write_err: ``sk_err_soft ? : ETIMEDOUT``; RFC 1122 §4.2.3.9)."""
    core.stats[STAT_TCP_TIMEOUT_ABORTS] += 1
    err = np.int64(core.tcb.cold.soft_error[cid])
    tcp_set_closed(core, cid, err if err != 0 else np.int64(ETIMEDOUT))


@kernel_inline
def _clamp_rto_to_user_timeout(core, cid, user_timeout, now):
    """The retransmission timer just armed fires no later than TCP_USER_TIMEOUT after the
    give-up clock's start (``retrans_stamp``), and at least 1 ms from now (Linux
    tcp_clamp_rto_to_user_timeout); nothing without a user timeout."""
    if user_timeout <= 0:
        return
    left = user_timeout - (now - core.tcb.hot.retrans_stamp[cid])
    when = now + (left if left > 1000 else 1000)
    if when < expires(core, cid, TIMER_RTO):
        arm(core, cid, TIMER_RTO, when)


@kernel
def _rto_fire(core, cid, now):
    t = core.tcb
    h = t.hot
    pool = core.pool
    st = h.state[cid]
    if st == TCPS_SYN_SENT or (st == TCPS_SYN_RECEIVED and (h.tflags[cid] & TF_PASSIVE) == 0):
        # SYN (or a simultaneous open's SYN-ACK) retransmission: RFC 6298 (5.4)-(5.6); as
        # many as TCP_SYNCNT says, else tcp_syn_retries (RFC 9293 MUST-21), and no longer than
        # TCP_USER_TIMEOUT after the first SYN once one was sent again (Linux 6.18: with 500,
        # 1500 and 2500 ms the SYN goes again at 1 s and connect() fails at 1, 1.5 and 2.5 s)
        limit = np.int64(t.cold.syn_retries[cid])
        if limit == 0:
            limit = core.cfg[CFG_TCP_SYN_RETRIES]
        user_timeout = user_timeout_us(core, cid)
        if h.rexmit_count[cid] >= limit or (
                user_timeout > 0 and tcp_retransmits_timed_out(core, cid, limit, 0, now)):
            core.stats[STAT_TCP_ATTEMPT_FAILS] += 1
            _write_err(core, cid, now)
            return
        core.stats[STAT_TCP_TIMEOUTS] += 1
        core.stats[STAT_TCP_SYN_RETRANS] += 1
        h.tflags[cid] &= ~np.uint32(TF_RTT_TIMING)  # Karn
        tcp_send_syn(core, cid, True, now)
        h.rexmit_count[cid] += 1
        tcp_arm_rto(core, cid, now)
        _clamp_rto_to_user_timeout(core, cid, user_timeout, now)
        return
    if (h.tflags[cid] & TF_TLP_ARMED) != 0:
        h.tflags[cid] &= ~np.uint32(TF_TLP_ARMED)
        tcp_send_loss_probe(core, cid, now)  # RFC 8985 §7.3
        return
    if not tcp_can_send_data(st) or tcp_flight(core, cid) == 0:
        return
    # a timeout ends any loss-probe episode (Linux tcp_retransmit_timer: tlp_high_seq = 0)
    h.tflags[cid] &= ~np.uint32(TF_TLP_OUT | TF_TLP_RETRANS)
    head = h.snd_q_head[cid]
    if head < 0 or (pool.flags[head] & FRAME_F_TCP_SENT) == 0:
        return
    orphan = (h.tflags[cid] & TF_ORPHAN) != 0
    user_timeout = user_timeout_us(core, cid)
    if h.snd_wnd[cid] == 0 and not orphan:
        # the receiver shrank its window to zero: retransmissions are window probes, and the
        # connection lives as long as the peer answers (Linux), or TCP_USER_TIMEOUT after the
        # first of them (tcp_rtx_probe0_timed_out)
        stamp = h.retrans_stamp[cid]
        if user_timeout > 0 and stamp != 0 and now - stamp > user_timeout:
            _write_err(core, cid, now)
            return
        if now - h.last_rcv_us[cid] > core.cfg[CFG_TCP_RTO_MAX_US]:
            _write_err(core, cid, now)
            return
    else:
        boundary = core.cfg[CFG_TCP_RETRIES2]
        if orphan:
            boundary = core.cfg[CFG_TCP_ORPHAN_RETRIES]
            if boundary == 0:
                boundary = 8  # Linux tcp_orphan_retries(): 0 means 8
        if tcp_retransmits_timed_out(core, cid, boundary, core.cfg[CFG_TCP_RTO_MIN_US], now):
            _write_err(core, cid, now)
            return
    core.stats[STAT_TCP_TIMEOUTS] += 1
    new_episode = (h.tflags[cid] & (TF_IN_RECOVERY | TF_IN_LOSS)) == 0
    if new_episode and h.reordering[cid] != 0 and (
        scoreboard_sacked_segments(pool, t, cid) >= core.cfg[CFG_TCP_REORDERING]
    ):
        # a timeout with DupThresh segments SACKed was a loss the raised DupThresh missed
        # (Linux tcp_enter_loss brings tp->reordering back to the sysctl)
        h.reordering[cid] = 0
    # F-RTO (RFC 5682) may show the timeout spurious: after one from outside recovery, or a
    # backed-off one (Linux tcp_enter_loss: new_recovery || icsk_retransmits)
    frto = core.cfg[CFG_TCP_FRTO] != 0 and (new_episode or h.rexmit_count[cid] > 0)
    h.frto[cid] = FRTO_ON if frto else 0
    # RFC 5681 §3.1 / RFC 6675 §5.1: ssthresh, cwnd = 1 SMSS, everything outstanding is lost
    cc_on_rto(t, cid, tcp_flight(core, cid), now)
    scoreboard_clear(pool, t, cid)
    h.tflags[cid] |= np.uint32(TF_IN_LOSS)
    h.dupacks[cid] = 0
    h.tflags[cid] &= ~np.uint32(TF_RTT_TIMING)
    tcp_xmit_frame(core, cid, head, now, True)  # RFC 6298 (5.4)
    h.rexmit_count[cid] += 1  # (5.5) back off
    tcp_arm_rto(core, cid, now)  # (5.6)
    _clamp_rto_to_user_timeout(core, cid, user_timeout, now)
    # the next hop may have moved: resolve it again at the next segment (dst negative advice)
    h.tflags[cid] &= ~np.uint32(TF_TMPL_MAC)


@kernel
def _synack_fire(core, cid, now):
    h = core.tcb.hot
    if h.state[cid] != TCPS_SYN_RECEIVED or (h.tflags[cid] & TF_PASSIVE) == 0:
        return
    if h.rexmit_count[cid] >= core.cfg[CFG_TCP_SYNACK_RETRIES]:
        core.stats[STAT_TCP_ATTEMPT_FAILS] += 1
        tcp_conn_free(core, cid)  # Linux inet_csk_reqsk_queue_drop: silently
        return
    core.stats[STAT_TCP_SYNACK_RETRANS] += 1
    h.tflags[cid] &= ~np.uint32(TF_RTT_TIMING)
    tcp_send_syn(core, cid, True, now)
    h.rexmit_count[cid] += 1
    tmo = core.cfg[CFG_TCP_RTO_INITIAL_US] << np.int64(h.rexmit_count[cid])
    mx = core.cfg[CFG_TCP_RTO_MAX_US]
    arm(core, cid, TIMER_SYNACK, now + (tmo if tmo < mx else mx))


@kernel_inline
def _delack_fire(core, cid, now):
    h = core.tcb.hot
    if (h.tflags[cid] & TF_DELACK) == 0:
        return
    st = h.state[cid]
    if st == TCPS_CLOSED or st == TCPS_LISTEN or st == TCPS_SYN_SENT or st == TCPS_TIME_WAIT:
        return
    if (h.tflags[cid] & TF_PINGPONG) == 0:
        # Linux: a delayed ACK that had to fire inflates the ACK timeout
        a = np.int64(h.ack_ato[cid]) << 1
        r = tcp_rto_us(core, cid)
        h.ack_ato[cid] = a if a < r else r
    else:
        h.tflags[cid] &= ~np.uint32(TF_PINGPONG)
        h.ack_ato[cid] = TCP_ATO_MIN_US
    core.stats[STAT_TCP_DELAYED_ACKS] += 1
    tcp_send_ack(core, cid, now)


@kernel
def _write_wakeup(core, cid, now):
    """Linux tcp_write_wakeup: the first unsent segment, cut to the window and the MSS, if the
    window has room for any of it (RFC 9293 §3.8.6.1: a probe may carry data), whatever Nagle,
    TCP_CORK or sender SWS avoidance would say; else a probe ACK.  True if something was
    sent."""
    h = core.tcb.hot
    pool = core.pool
    fid = h.snd_q_unsent[cid]
    if fid >= 0:
        wnd_end = (np.int64(h.snd_una[cid]) + np.int64(h.snd_wnd[cid])) & M32
        room = seq_diff(wnd_end, pool.tag[fid])
        if room > 0:
            mss = np.int64(h.mss[cid])
            if room > mss:
                room = mss
            if np.int64(pool.length[fid]) <= room or tcp_split_frame(core, cid, fid, room):
                pool.flags[fid] |= FRAME_F_TCP_PSH
                if tcp_xmit_frame(core, cid, fid, now, False):
                    h.snd_q_unsent[cid] = pool.next[fid]
                    return True
    return tcp_send_probe(core, cid, now)


@kernel
def _persist_fire(core, cid, now):
    t = core.tcb
    h = t.hot
    c = t.cold
    if not tcp_can_send_data(h.state[cid]):
        return
    if tcp_flight(core, cid) > 0 or h.snd_q_unsent[cid] < 0:
        c.probes_out[cid] = 0
        return
    max_probes = core.cfg[CFG_TCP_RETRIES2]
    if (h.tflags[cid] & TF_ORPHAN) != 0:
        max_probes = core.cfg[CFG_TCP_ORPHAN_RETRIES]
        if max_probes == 0:
            max_probes = 8
    if c.probes_out[cid] >= max_probes:
        _write_err(core, cid, now)
        return
    user_timeout = user_timeout_us(core, cid)
    if user_timeout > 0:
        # TCP_USER_TIMEOUT bounds the probing (Linux tcp_probe_timer): the model time of the
        # probes sent so far
        spent = _model_timeout(np.int64(c.probes_out[cid]), tcp_probe0_base(core, cid),
                               core.cfg[CFG_TCP_RTO_MAX_US])
        if spent >= user_timeout:
            _write_err(core, cid, now)
            return
    core.stats[STAT_TCP_PERSIST_PROBES] += 1
    _write_wakeup(core, cid, now)
    if tcp_flight(core, cid) > 0:
        c.probes_out[cid] = 0
        h.rexmit_count[cid] = 0
        return
    c.probes_out[cid] += 1
    if h.rexmit_count[cid] < core.cfg[CFG_TCP_RETRIES2]:
        h.rexmit_count[cid] += 1
    tcp_arm_persist(core, cid, now)


@kernel
def _keepalive_fire(core, cid, now):
    t = core.tcb
    h = t.hot
    c = t.cold
    st = h.state[cid]
    if (h.tflags[cid] & TF_KEEPALIVE) == 0 or st == TCPS_CLOSED or st == TCPS_SYN_SENT:
        return
    if st == TCPS_TIME_WAIT or st == TCPS_SYN_RECEIVED or st == TCPS_LISTEN:
        return
    idle_us = keepalive_idle_us(core, cid)
    if tcp_flight(core, cid) > 0 or h.snd_q_unsent[cid] >= 0:
        arm(core, cid, TIMER_KEEPALIVE, now + idle_us)
        return
    elapsed = now - h.last_rcv_us[cid]
    if elapsed >= idle_us:
        # with TCP_USER_TIMEOUT, that long without a word from the peer ends it, once a probe
        # went unanswered, instead of TCP_KEEPCNT (Linux tcp_keepalive_timer)
        user_timeout = user_timeout_us(core, cid)
        if (user_timeout > 0 and elapsed >= user_timeout and c.probes_out[cid] > 0) or (
            user_timeout == 0 and c.probes_out[cid] >= c.ka_probes[cid]
        ):
            core.stats[STAT_TCP_KEEPALIVE_ABORTS] += 1
            tcp_send_rst(core, cid, now)
            _write_err(core, cid, now)
            return
        core.stats[STAT_TCP_KEEPALIVE_PROBES] += 1
        _write_wakeup(core, cid, now)
        c.probes_out[cid] += 1
        arm(core, cid, TIMER_KEEPALIVE, now + np.int64(c.ka_intvl_us[cid]))
    else:
        arm(core, cid, TIMER_KEEPALIVE, now + idle_us - elapsed)


@kernel
def _reorder_fire(core, cid, now):
    """RACK's reordering timer (RFC 8985 §6.3, Linux tcp_rack_reo_timeout): the segments that
    were waiting out the reordering window are due; those now lost start fast recovery if it
    is not running (PRR counting one segment delivered, as Linux) or are resent in it."""
    h = core.tcb.hot
    f = h.tflags[cid]
    if not tcp_can_send_data(h.state[cid]) or tcp_flight(core, cid) == 0:
        return
    if tcp_loss_dupthresh(core, cid) != RACK_NO_DUPTHRESH:
        return
    if tcp_rack_detect_loss(core, cid, now) == 0:
        return
    if (f & (TF_IN_RECOVERY | TF_IN_LOSS)) == 0 and cc_may_enter_recovery(
        core.tcb, cid, h.snd_una[cid], True
    ):
        tcp_enter_fast_recovery(core, cid, np.int64(h.mss[cid]), False, False, now)


@kernel
def _fire(core, cid, kind, now):
    if not is_alloc(core, cid):
        return
    if kind == TIMER_RTO:
        _rto_fire(core, cid, now)
    elif kind == TIMER_DELACK:
        _delack_fire(core, cid, now)
    elif kind == TIMER_PERSIST:
        _persist_fire(core, cid, now)
    elif kind == TIMER_KEEPALIVE:
        _keepalive_fire(core, cid, now)
    elif kind == TIMER_TIMEWAIT:
        if core.tcb.hot.state[cid] == TCPS_TIME_WAIT:
            tcp_conn_free(core, cid)
    elif kind == TIMER_SYNACK:
        _synack_fire(core, cid, now)
    elif kind == TIMER_REORDER:
        _reorder_fire(core, cid, now)
    elif kind == TIMER_FIN_WAIT_2:
        h = core.tcb.hot
        if h.state[cid] == TCPS_FIN_WAIT_2 and (h.tflags[cid] & TF_ORPHAN) != 0:
            core.stats[STAT_TCP_FIN_WAIT2_TIMEOUTS] += 1
            tcp_conn_free(core, cid)
    if kind != TIMER_TIMEWAIT:
        tcp_output(core, cid, now)


@kernel
def tcp_timers_run(core, now):
    """Fire every TCP timer due by ``now``, in time order."""
    w = core.timers
    batch = core.tmr_conn.shape[0]
    while True:
        n = timer_expire(w, now, core.tmr_conn, core.tmr_kind, batch)
        for i in range(n):
            _fire(core, np.int64(core.tmr_conn[i]), np.int64(core.tmr_kind[i]), now)
        if n < batch:
            break
