"""SEGMENT ARRIVES (RFC 9293 §3.10.7) for every state, with RFC 5961, RFC 7323 and RFC 2018.

Read first: RFC 9293 §3.10.7.1-§3.10.7.4 (this file follows its steps in order and names them),
RFC 5961 §3-§5 (RST, SYN and ACK checks against blind attacks), RFC 7323 §4-§5 (TS.Recent,
PAWS), RFC 1122 §4.2.2.13 and RFC 6191 (reopening TIME-WAIT), RFC 4987 §3.6 (SYN cookies),
RFC 5681 §3-§4 and RFC 6582 / RFC 6675 (what an ACK does to the sender).

Where an RFC leaves a choice, this is Linux (net/ipv4/tcp_input.c ``tcp_rcv_state_process``,
``tcp_validate_incoming``, ``tcp_ack``, ``tcp_data_queue``, ``tcp_fin``,
``tcp_rcv_synsent_state_process``; tcp_minisocks.c ``tcp_check_req``,
``tcp_timewait_state_process``; tcp_ipv4.c ``tcp_v4_rcv``).  The notable choices:

* Acceptability (§3.10.7.4 first check) is Linux's ``tcp_sequence``: ``SEG.SEQ + SEG.LEN >=
  RCV.WUP`` and ``SEG.SEQ <= RCV.NXT + RCV.WND`` (RCV.WUP: RCV.NXT when we last advertised a
  window); data entirely old is then ACKed with a D-SACK by the data step.
* An unacceptable segment's ACK, and challenge ACKs, are rate limited per connection to one per
  ``tcp_invalid_ratelimit`` (500 ms) (segments carrying data are always answered), and challenge
  ACKs per core to ``tcp_challenge_ack_limit`` per second (RFC 5961 §7).
* A passive open's SYN-RECEIVED follows ``tcp_check_req``: a retransmitted SYN gets the SYN-ACK
  again; an in-window RST or SYN ends the embryonic connection (RST answered to a SYN); an
  acceptable ACK establishes it, when the accept queue has room (else the ACK is dropped and the
  SYN-ACK timer repeats it, or a RST with ``tcp_abort_on_overflow``).
* SEG.ACK > SND.NXT in a synchronized state: challenge ACK and drop (RFC 5961 §5.2; Linux 6.18).
* A FIN in ESTABLISHED is ACKed with a delayed ACK (Linux enters "pingpong" mode there, hoping
  the application's FIN carries the ACK); in FIN-WAIT-1/2 at once.

The segment's fields are in ``core.tcp_seg`` (``SEG_*``), its options in ``core.tcp_opt``;
frame ``fid`` holds the payload only (``pool.off``/``pool.length``), ``pool.tag`` = SEG.SEQ.
Every path frees the frame or hands it to a queue.
"""

import numpy as np
from numba import njit

from fsdp.core.config import (
    CFG_TCP_ABORT_ON_OVERFLOW,
    CFG_TCP_CHALLENGE_ACK_LIMIT,
    CFG_TCP_DSACK,
    CFG_TCP_ECN,
    CFG_TCP_FIN_TIMEOUT_US,
    CFG_TCP_INIT_CWND,
    CFG_TCP_INVALID_RATELIMIT_US,
    CFG_TCP_MAX_REASS,
    CFG_TCP_MAX_SYN_BACKLOG,
    CFG_TCP_RCVBUF_MAX,
    CFG_TCP_REORDERING,
    CFG_TCP_RFC1337,
    CFG_TCP_RTO_INITIAL_US,
    CFG_TCP_RTO_MAX_US,
    CFG_TCP_SACK,
    CFG_TCP_SNDBUF_MAX,
    CFG_TCP_SYNCOOKIES,
    CFG_TCP_TIMESTAMPS,
    CFG_TCP_WINDOW_SCALING,
)
from fsdp.core.stats import (
    STAT_TCP_ABORT_ON_DATA,
    STAT_TCP_ACK_TOO_OLD,
    STAT_TCP_ACK_UNSENT,
    STAT_TCP_ATTEMPT_FAILS,
    STAT_TCP_BAD_ACK_SYN_RECV,
    STAT_TCP_CHALLENGE_ACKS,
    STAT_TCP_CHALLENGE_ACKS_LIMITED,
    STAT_TCP_DATA_AFTER_SHUTDOWN,
    STAT_TCP_DSACKS_RECV,
    STAT_TCP_DSACKS_SENT,
    STAT_TCP_DUP_ACKS_IN,
    STAT_TCP_DUP_DATA,
    STAT_TCP_ECN_CE_RECV,
    STAT_TCP_ECN_CWR_EPISODES,
    STAT_TCP_ECN_NEGOTIATED,
    STAT_TCP_ESTAB_RESETS,
    STAT_TCP_FAST_RETRANS,
    STAT_TCP_LISTEN_DROPS,
    STAT_TCP_LISTEN_OVERFLOWS,
    STAT_TCP_LOSS_PROBE_RECOVERY,
    STAT_TCP_NO_ACK_DROPPED,
    STAT_TCP_OFO_DROPPED,
    STAT_TCP_OFO_QUEUED,
    STAT_TCP_OOW_ACKS_LIMITED,
    STAT_TCP_OUT_OF_WINDOW,
    STAT_TCP_PARTIAL_ACKS,
    STAT_TCP_PASSIVE_OPENS,
    STAT_TCP_PAWS_DROPPED,
    STAT_TCP_RCV_QUEUE_FULL,
    STAT_TCP_RECOVERY_EPISODES,
    STAT_TCP_REO_WND_GROWN,
    STAT_TCP_RST_ACCEPTED,
    STAT_TCP_RST_IGNORED,
    STAT_TCP_RTT_SAMPLES,
    STAT_TCP_SACK_RECOVERY,
    STAT_TCP_SACK_REORDER,
    STAT_TCP_SPURIOUS_RTOS,
    STAT_TCP_SYN_BACKLOG_FULL,
    STAT_TCP_SYN_CHALLENGE,
    STAT_TCP_SYN_FIN,
    STAT_TCP_SYNCOOKIES_FAILED,
    STAT_TCP_SYNCOOKIES_RECV,
    STAT_TCP_SYNCOOKIES_SENT,
    STAT_TCP_TS_REORDER,
    STAT_TCP_TW_KILLED,
    STAT_TCP_TW_REOPENED,
    STAT_TCP_UNDO_DSACK,
    STAT_TCP_UNDO_LOSS,
    STAT_TCP_UNDO_RECOVERY,
)
from fsdp.core.timerwheel import (
    TIMER_FIN_WAIT_2,
    TIMER_KEEPALIVE,
    TIMER_PERSIST,
    TIMER_RTO,
    TIMER_SYNACK,
)
from fsdp.core.vars import (
    V_TCP_CHALLENGE_LEFT,
    V_TCP_CHALLENGE_SEC,
    V_TCP_RST_ACK,
    V_TCP_RST_FLAGS,
    V_TCP_RST_PENDING,
    V_TCP_RST_SEQ,
)
from fsdp.pool.pool import frame_free
from fsdp.tcp.cc import (
    cc_current_ssthresh,
    cc_cwr_done,
    cc_cwr_to_recovery,
    cc_end_cwr,
    cc_end_dupacks,
    cc_enter_cwr,
    cc_enter_recovery,
    cc_exit_recovery,
    cc_in_cwr,
    cc_init,
    cc_is_cwnd_limited,
    cc_is_full_ack,
    cc_leave_recovery,
    cc_limited_transmit_allowed,
    cc_may_enter_recovery,
    cc_on_ack,
    cc_prr_ack,
)
from fsdp.tcp.closed import tcp_reset_reply
from fsdp.tcp.conn import (
    tcp_conn_alloc,
    tcp_conn_free,
    tcp_enter_time_wait,
    tcp_set_closed,
    tcp_time_wait_restart,
    tcp_wscale_for_clamp,
)
from fsdp.tcp.drs import (
    drs_init,
    drs_ofo_queued,
    drs_rtt_measure,
    drs_rtt_measure_ts,
)
from fsdp.tcp.ecn import (
    ECN_QUICKACKS,
    ECN_RX_QUIET,
    IPTOS_ECN_CE,
    ecn_accept_cwr,
    ecn_check_ce,
    ecn_echoed,
    ecn_init,
    ecn_on,
    ecn_rcv_synack,
    ecn_syn_asks,
)
from fsdp.tcp.frameflags import (
    FRAME_F_TCP_EVER_RETRANS,
    FRAME_F_TCP_FIN,
    FRAME_F_TCP_SACKED,
    FRAME_F_TCP_SENT,
)
from fsdp.tcp.ip import DST_UNICAST
from fsdp.tcp.isn import (
    isn_generate,
    syncookie_check,
    syncookie_make,
    syncookie_mss,
    syncookie_mss_index,
)
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.listen import (
    listen_acc_add,
    listen_accept_queue_full,
    listen_note_overflow,
    listen_syn_add,
    listen_syn_queue_full,
    listen_syn_remove,
)
from fsdp.tcp.neighbor import neigh_confirm
from fsdp.tcp.rack import (
    RACK_NO_DUPTHRESH,
    RACK_REO_WND_PERSIST,
    rack_advance,
    rack_dsack,
    rack_min_rtt_update,
    rack_note_reordering,
    rack_recovery_done,
    rack_update_reo_wnd,
)
from fsdp.tcp.reass import (
    REASS_FIN_REACHED,
    SACK_MAX_BLOCKS,
    rcvq_charge,
    reass_deliver,
    reass_deliver_sack,
    reass_free,
    reass_insert,
    reass_insert_sack,
    rx_truesize,
    sack_dsack_clear,
    sack_on_duplicate,
    sack_reset,
)
from fsdp.tcp.sack_scoreboard import (
    frame_xmit_order,
    frame_xmit_time,
    scoreboard_dsack,
    scoreboard_dsack_resent,
    scoreboard_enter_recovery,
    scoreboard_is_lost,
    scoreboard_lost_bytes,
    scoreboard_mark_lost,
    scoreboard_retrans_out,
    scoreboard_sacked_bytes,
    scoreboard_unmark_lost,
    scoreboard_update,
)
from fsdp.tcp.tcb import (
    TCPS_CLOSE_WAIT,
    TCPS_CLOSING,
    TCPS_ESTABLISHED,
    TCPS_FIN_WAIT_1,
    TCPS_FIN_WAIT_2,
    TCPS_LAST_ACK,
    TCPS_SYN_RECEIVED,
    TCPS_SYN_SENT,
    TCPS_TIME_WAIT,
    TF_ACK_NOW,
    TF_DELACK,
    TF_FIN_RECEIVED,
    TF_FIN_SENT,
    TF_IN_LOSS,
    TF_IN_RECOVERY,
    TF_KEEPALIVE,
    TF_LIMITED_XMIT,
    TF_ORPHAN,
    TF_PASSIVE,
    TF_PINGPONG,
    TF_RCV_SHUTDOWN,
    TF_RCVBUF_LOCK,
    TF_RTT_TIMING,
    TF_SACK_OK,
    TF_SACKED_OUT,
    TF_SEND_SYN,
    TF_SNDBUF_LOCK,
    TF_SYNCOOKIE,
    TF_TLP_ARMED,
    TF_TLP_OUT,
    TF_TLP_RETRANS,
    TF_TS_OK,
    TF_URG_DATA,
    TF_WSCALE_OK,
    tcb_touch,
)
from fsdp.tcp.tcbops import arm, disarm, keepalive_idle_us, set_state
from fsdp.tcp.tcp_output import (
    TCP_ATO_MIN_US,
    frame_seq_len,
    tcp_advmss,
    tcp_flight,
    tcp_free_space,
    tcp_full_space,
    tcp_ip_fields_from_listener,
    tcp_loss_dupthresh,
    tcp_open_pipe,
    tcp_rack_detect_loss,
    tcp_receive_window,
    tcp_recovery_pipe,
    tcp_reno_sacked,
    tcp_reordering,
    tcp_rto_us,
    tcp_rtt_sample,
    tcp_send_reply_ack,
    tcp_send_syn,
    tcp_set_xmit_timer,
    tcp_tmpl_ip_fields,
    tcp_ts_now,
)
from fsdp.tcp.undo import (
    FRTO_NEW_DATA,
    undo_active,
    undo_cwnd_reduction,
    undo_dsack,
    undo_init,
    undo_may,
)
from fsdp.tcp.urgent import tcp_urg, tcp_urg_acked
from fsdp.wire.tcp import (
    OPTF_MSS,
    OPTF_SACK,
    OPTF_SACK_PERM,
    OPTF_TS,
    OPTF_WSCALE,
    TH_ACK,
    TH_FIN,
    TH_RST,
    TH_SYN,
    TH_URG,
    TOPT_MSS,
    TOPT_PRESENT,
    TOPT_SACK_BLOCKS,
    TOPT_SACK_N,
    TOPT_TS_ECR,
    TOPT_TS_VAL,
    TOPT_WSCALE,
    seq_diff,
    seq_geq,
    seq_gt,
    seq_leq,
    seq_lt,
)

M32 = 0xFFFFFFFF

# --- core.tcp_seg: the segment being processed ------------------------------------------------
SEG_SEQ = 0
SEG_ACK = 1
SEG_FLAGS = 2
SEG_WND = 3  # raw window field
SEG_LEN = 4  # payload bytes
SEG_SRC = 5
SEG_DST = 6
SEG_SPORT = 7
SEG_DPORT = 8
SEG_URP = 9
SEG_KIND = 10  # DST_UNICAST / DST_BROADCAST
SEG_TOS = 11  # its IP TOS without the ECN bits (what a reply not from a socket carries)
SEG_ECN = 12  # its IP ECN field (RFC 3168 §5; fsdp.tcp.ecn)
SEG_SIZE = 16
SEG_REOPEN = -3  # tcp_segment: a SYN reopens a TIME-WAIT 4-tuple (RFC 6191)

TCP_MAX_QUICKACKS = 16
TCP_SYNCOOKIE_WINDOW_US = 120_000_000  # cookies are checked 2 min after the last one sent
TCP_TS_OPT_MASK = 0x3F  # cookie TSval low bits: window scale (0xF = none) and SACK (0x10)
_TSOPT_NO_WSCALE = 0xF
_TSOPT_SACK = 0x10
_TSOPT_ECN = 0x20  # ... and ECN agreed (Linux TS_OPT_ECN)


# --- small helpers --------------------------------------------------------------------------
@kernel
def _seg_end(core):
    s = core.tcp_seg
    n = s[SEG_LEN]
    f = s[SEG_FLAGS]
    if f & TH_SYN:
        n += 1
    if f & TH_FIN:
        n += 1
    return (s[SEG_SEQ] + n) & M32


@kernel
def _has_ts(core):
    return (core.tcp_opt[TOPT_PRESENT] & OPTF_TS) != 0


@kernel
def _reply_reset(core):
    """Answer the current segment with a RST as the CLOSED state does (§3.10.7.1); sent by
    ``tcp_input`` once the segment is processed."""
    s = core.tcp_seg
    if s[SEG_KIND] != DST_UNICAST:
        return
    r_seq, r_ack, r_flags = tcp_reset_reply(s[SEG_SEQ], s[SEG_ACK], s[SEG_FLAGS], s[SEG_LEN])
    if r_flags != 0:
        core.var[V_TCP_RST_PENDING] = 1
        core.var[V_TCP_RST_SEQ] = r_seq
        core.var[V_TCP_RST_ACK] = r_ack
        core.var[V_TCP_RST_FLAGS] = r_flags


@kernel
def tcp_oow_rate_limited(core, cid, now):
    """Linux __tcp_oow_rate_limited: at most one out-of-window / challenge ACK per connection
    per ``tcp_invalid_ratelimit``; True if this one must be suppressed."""
    h = core.tcb.hot
    last = h.last_oow_ack_us[cid]  # time + 1 of the last one sent, 0 = none yet
    lim = core.cfg[CFG_TCP_INVALID_RATELIMIT_US]
    if last != 0 and 0 <= now + 1 - last < lim:
        return True
    h.last_oow_ack_us[cid] = now + 1
    return False


@kernel
def _oow_limited_for_segment(core, cid, now):
    """tcp_oow_rate_limited: segments with data (and no SYN) are always answered."""
    s = core.tcp_seg
    if s[SEG_LEN] > 0 and (s[SEG_FLAGS] & TH_SYN) == 0:
        return False
    if (s[SEG_FLAGS] & TH_FIN) != 0 and (s[SEG_FLAGS] & TH_SYN) == 0:
        return False
    if tcp_oow_rate_limited(core, cid, now):
        core.stats[STAT_TCP_OOW_ACKS_LIMITED] += 1
        return True
    return False


@kernel
def tcp_send_challenge_ack(core, cid, now):
    """RFC 5961 §3.2/§4.2/§5.2 challenge ACK, rate limited per connection and per core."""
    if tcp_oow_rate_limited(core, cid, now):
        core.stats[STAT_TCP_CHALLENGE_ACKS_LIMITED] += 1
        return
    lim = core.cfg[CFG_TCP_CHALLENGE_ACK_LIMIT]
    if lim < 2147483647:
        sec = now // 1_000_000
        if core.var[V_TCP_CHALLENGE_SEC] != sec:
            core.var[V_TCP_CHALLENGE_SEC] = sec
            core.var[V_TCP_CHALLENGE_LEFT] = lim
        if core.var[V_TCP_CHALLENGE_LEFT] <= 0:
            core.stats[STAT_TCP_CHALLENGE_ACKS_LIMITED] += 1
            return
        core.var[V_TCP_CHALLENGE_LEFT] -= 1
    core.stats[STAT_TCP_CHALLENGE_ACKS] += 1
    core.tcb.hot.tflags[cid] |= np.uint32(TF_ACK_NOW)


@kernel
def tcp_enter_quickack(core, cid):
    """Linux tcp_enter_quickack_mode: ACK the next segments at once (up to 16, or what the
    window allows), leave pingpong mode, reset the ACK timeout."""
    _enter_quickack(core, cid, TCP_MAX_QUICKACKS)


@kernel_inline
def _enter_quickack(core, cid, max_quickacks):
    """tcp_enter_quickack with at most ``max_quickacks`` quick ACKs (Linux's argument)."""
    h = core.tcb.hot
    rm = np.int64(h.rcv_mss[cid])
    if rm < 1:
        rm = np.int64(1)
    q = np.int64(h.rcv_wnd[cid]) // (2 * rm)
    if q == 0:
        q = np.int64(2)
    if q > max_quickacks:
        q = np.int64(max_quickacks)
    if q > h.ack_quick[cid]:
        h.ack_quick[cid] = q
    h.tflags[cid] &= ~np.uint32(TF_PINGPONG)
    h.ack_ato[cid] = TCP_ATO_MIN_US


@kernel
def _send_dupack(core, cid, now):
    """Linux tcp_send_dupack: an old data segment puts the receiver in quick-ACK mode and is
    reported with a D-SACK (RFC 2883), then ACK."""
    s = core.tcp_seg
    h = core.tcb.hot
    seq = s[SEG_SEQ]
    end = _seg_end(core)
    if end != seq and seq_lt(seq, h.rcv_nxt[cid]):
        tcp_enter_quickack(core, cid)
        if (h.tflags[cid] & TF_SACK_OK) != 0 and core.cfg[CFG_TCP_DSACK] != 0:
            sack_on_duplicate(core.sack, cid, seq, end, h.rcv_nxt[cid])
            core.stats[STAT_TCP_DSACKS_SENT] += 1
    h.tflags[cid] |= np.uint32(TF_ACK_NOW)


# --- PAWS (RFC 7323 §5.3) ---------------------------------------------------------------------
@kernel
def _paws_reject(core, cid, now, paws_win):
    """SEG.TSval older than TS.Recent by more than ``paws_win`` ticks, TS.Recent not older
    than 24 days (RFC 7323 §5.5), and TS.Recent ever set (Linux tcp_paws_check)."""
    h = core.tcb.hot
    tsval = core.tcp_opt[TOPT_TS_VAL]
    recent = np.int64(h.ts_recent[cid])
    if seq_diff(recent, tsval) <= paws_win:
        return False
    if now - h.ts_recent_age[cid] >= 24 * 24 * 3600 * 1_000_000:
        return False
    return recent != 0


@kernel_inline
def _disordered_ack(core, cid):
    """Linux tcp_disordered_ack: a pure duplicate ACK whose old timestamp is explained by
    reordering within one RTO is not a PAWS victim."""
    s = core.tcp_seg
    h = core.tcb.hot
    if (s[SEG_FLAGS] & (TH_ACK | TH_SYN | TH_FIN | TH_RST)) != TH_ACK or s[SEG_LEN] != 0:
        return False
    if s[SEG_SEQ] != np.int64(h.rcv_nxt[cid]) or s[SEG_ACK] != np.int64(h.snd_una[cid]):
        return False
    ws = np.int64(h.snd_wscale[cid])
    if (s[SEG_WND] << ws) != np.int64(h.snd_wnd[cid]):
        return False
    lag = seq_diff(h.ts_recent[cid], core.tcp_opt[TOPT_TS_VAL])
    return lag <= (np.int64(h.rto[cid]) // 1000) * 1024 // 1000


@kernel
def _store_ts_recent(core, cid, now):
    h = core.tcb.hot
    h.ts_recent[cid] = core.tcp_opt[TOPT_TS_VAL] & M32
    h.ts_recent_age[cid] = now


@kernel_inline
def _replace_ts_recent(core, cid, now):
    """RFC 7323 §4.3 (Linux tcp_replace_ts_recent): TS.Recent = SEG.TSval if it is not older
    and SEG.SEQ <= Last.ACK.sent (RCV.WUP)."""
    h = core.tcb.hot
    if (h.tflags[cid] & TF_TS_OK) == 0 or not _has_ts(core):
        return
    if seq_gt(core.tcp_seg[SEG_SEQ], h.rcv_wup[cid]):
        return
    if not _paws_reject(core, cid, now, 0):
        _store_ts_recent(core, cid, now)


# --- connection set-up helpers ----------------------------------------------------------------
@kernel
def tcp_sync_mss(core, cid):
    """The send MSS: the peer's MSS option (536 without one, RFC 9293 §3.7.1), at most ours and
    what the path MTU leaves (RFC 1191 §3: fsdp.tcp.tcp_icmp), minus the timestamp option when
    negotiated, at most half the peer's largest window (Linux tcp_sync_mss /
    tcp_bound_to_half_wnd), and TCP_MAXSEG if set."""
    h = core.tcb.hot
    c = core.tcb.cold
    mss = np.int64(c.peer_mss[cid])
    own = np.int64(c.adv_mss[cid])
    if mss > own:
        mss = own
    pmtu = np.int64(c.pmtu[cid])
    if pmtu > 0 and mss > pmtu - 40:
        mss = pmtu - 40  # (IPv4 and TCP headers without options)
    um = np.int64(c.user_mss[cid])
    if um > 0 and mss > um:
        mss = um
    if (h.tflags[cid] & TF_TS_OK) != 0:
        mss -= 12
    mw = np.int64(h.max_sndwnd[cid])
    cutoff = (mw >> 1) if mw > 536 else mw
    if cutoff > 0 and mss > cutoff:
        mss = cutoff if cutoff > 48 else np.int64(48)
    if mss < 48:
        mss = np.int64(48)
    h.mss[cid] = mss


@kernel_inline
def tcp_init_rcv_mss(core, cid):
    """Linux tcp_initialize_rcv_mss: a conservative first guess of the peer's segment size."""
    h = core.tcb.hot
    adv = tcp_advmss(core, cid)
    hint = adv if adv < np.int64(h.mss[cid]) else np.int64(h.mss[cid])
    half = np.int64(h.rcv_wnd[cid]) // 2
    if hint > half:
        hint = half
    if hint > 536:
        hint = np.int64(536)
    if hint < 88:
        hint = np.int64(88)
    h.rcv_mss[cid] = hint


@kernel
def tcp_initial_rcv_window(core, cid):
    """Linux tcp_select_initial_window: the window of our SYN / SYN-ACK is the buffer's
    window-worth rounded down to whole segments (MSS less the timestamp option), at most 65535;
    rcv_ssthresh starts there."""
    h = core.tcb.hot
    c = core.tcb.cold
    space = (np.int64(h.rcv_buf[cid]) * np.int64(h.rcv_ratio[cid])) >> 8
    if (h.tflags[cid] & TF_RCVBUF_LOCK) != 0:
        # SO_RCVBUF set by the application: the window never grows past the buffer, and the
        # scale is chosen for that clamp (Linux tcp_openreq_init_rwin / tcp_connect_init)
        if c.window_clamp[cid] > space or c.window_clamp[cid] == 0:
            c.window_clamp[cid] = space
        h.rcv_wscale[cid] = tcp_wscale_for_clamp(
            core.cfg[CFG_TCP_RCVBUF_MAX], c.window_clamp[cid]
        )
    mss = np.int64(c.adv_mss[cid])
    if (h.tflags[cid] & TF_TS_OK) != 0 and h.state[cid] == TCPS_SYN_RECEIVED:
        mss -= 12
    if space > mss:
        space = (space // mss) * mss
    w = space if space < 65535 else np.int64(65535)
    h.rcv_wnd[cid] = w
    h.rcv_ssthresh[cid] = w
    if (h.tflags[cid] & TF_WSCALE_OK) == 0:
        h.rcv_wscale[cid] = 0
        if c.window_clamp[cid] > 65535:
            c.window_clamp[cid] = 65535
    h.rcv_adv[cid] = (np.int64(h.rcv_nxt[cid]) + w) & M32
    h.rcv_wup[cid] = h.rcv_nxt[cid]


@kernel
def tcp_sndbuf_expand(core, cid):
    """Linux tcp_sndbuf_expand: unless the application set SO_SNDBUF, the send buffer grows to
    two congestion windows (at least the initial window, at least reordering+1 segments) of
    Linux-sized buffers (roundup_pow_of_two(mss + 2 * 320) + 256 bytes per segment, so
    getsockopt reports what Linux does), capped by tcp_wmem[2]."""
    h = core.tcb.hot
    if (h.tflags[cid] & TF_SNDBUF_LOCK) != 0:
        return
    mss = np.int64(h.mss[cid])
    if mss <= 0:
        return
    segs = np.int64(h.cwnd[cid]) // mss
    if segs < 10:
        segs = np.int64(10)
    r = tcp_reordering(core, cid) + 1
    if segs < r:
        segs = r
    per = np.int64(1)
    while per < mss + 640:
        per <<= 1
    want = 2 * segs * (per + 256)
    cap = np.int64(core.cfg[CFG_TCP_SNDBUF_MAX])
    if want > cap:
        want = cap
    if np.int64(h.snd_buf[cid]) < want:
        h.snd_buf[cid] = want
        tcb_touch(core.tcb, cid)  # room to write (fsdp.core.loop.poll_status)


@kernel
def tcp_established(core, cid, now):
    """Common work when a connection reaches ESTABLISHED (Linux tcp_init_transfer and
    tcp_finish_connect): MSS, congestion control (RFC 6928 initial window), keep-alive, the
    receive MSS guess."""
    h = core.tcb.hot
    tcp_sync_mss(core, cid)
    tcp_init_rcv_mss(core, cid)
    cc_init(core.tcb, cid, np.int64(h.mss[cid]), core.cfg[CFG_TCP_INIT_CWND])
    # Linux tcp_init_buffer_space: the window is clamped to what the buffer is worth now
    full = tcp_full_space(core, cid)
    c = core.tcb.cold
    if np.int64(c.window_clamp[cid]) >= full:
        c.window_clamp[cid] = full
    if np.int64(h.rcv_ssthresh[cid]) > np.int64(c.window_clamp[cid]):
        h.rcv_ssthresh[cid] = c.window_clamp[cid]
    drs_init(core, cid, now)
    tcp_sndbuf_expand(core, cid)
    h.last_snd_us[cid] = now
    h.last_rcv_us[cid] = now
    h.ack_lrcv_us[cid] = now
    h.retrans_stamp[cid] = 0
    h.rexmit_count[cid] = 0
    if (h.tflags[cid] & TF_KEEPALIVE) != 0:
        arm(core, cid, TIMER_KEEPALIVE, now + keepalive_idle_us(core, cid))


@kernel
def _apply_syn_options(core, cid, syn_is_ours_reply):
    """Record the peer's SYN options: MSS, window scale (RFC 7323 §2.2: only if both SYNs carry
    it), timestamps (§3.2), SACK-permitted (RFC 2018 §2).  For a passive open the TF bits say
    what we will offer (never an option the peer did not send)."""
    o = core.tcp_opt
    h = core.tcb.hot
    c = core.tcb.cold
    p = o[TOPT_PRESENT]
    c.peer_mss[cid] = o[TOPT_MSS] if (p & OPTF_MSS) != 0 else 536
    f = np.int64(h.tflags[cid]) & ~np.int64(TF_WSCALE_OK | TF_TS_OK | TF_SACK_OK)
    if (p & OPTF_WSCALE) != 0 and core.cfg[CFG_TCP_WINDOW_SCALING] != 0:
        f |= TF_WSCALE_OK
        h.snd_wscale[cid] = o[TOPT_WSCALE]
    else:
        h.snd_wscale[cid] = 0
        h.rcv_wscale[cid] = 0
    if (p & OPTF_TS) != 0 and core.cfg[CFG_TCP_TIMESTAMPS] != 0:
        f |= TF_TS_OK
    if (p & OPTF_SACK_PERM) != 0 and core.cfg[CFG_TCP_SACK] != 0:
        f |= TF_SACK_OK
    h.tflags[cid] = f


# --- LISTEN (RFC 9293 §3.10.7.2) -----------------------------------------------------------------
@kernel
def _syn_received_child(core, lid, fid, now, iss, from_cookie):
    """Create the SYN-RECEIVED child for the SYN in ``core.tcp_seg``; its id or -1."""
    s = core.tcp_seg
    ls = core.listen
    cid = tcp_conn_alloc(core, s[SEG_DST], s[SEG_DPORT], s[SEG_SRC], s[SEG_SPORT])
    if cid < 0:
        return np.int64(-1)
    t = core.tcb
    h = t.hot
    c = t.cold
    c.listener[cid] = lid
    c.reuse[cid] = ls.rec.reuse[lid]  # the child inherits SO_REUSEADDR/PORT (Linux sk_clone)
    c.created_us[cid] = now
    h.tflags[cid] |= np.uint32(TF_PASSIVE)
    set_state(core, cid, TCPS_SYN_RECEIVED)
    _apply_syn_options(core, cid, True)
    ecn_init(t, cid, ecn_syn_asks(core.cfg[CFG_TCP_ECN], s[SEG_FLAGS], s[SEG_ECN]))
    irs = s[SEG_SEQ]
    c.irs[cid] = irs
    h.rcv_nxt[cid] = (irs + 1) & M32
    c.iss[cid] = iss
    h.snd_una[cid] = iss
    h.snd_nxt[cid] = (iss + 1) & M32
    h.snd_max[cid] = (iss + 1) & M32
    h.snd_wnd[cid] = s[SEG_WND]  # a SYN's window is never scaled (RFC 7323 §2.2)
    h.max_sndwnd[cid] = s[SEG_WND]
    h.snd_wl1[cid] = irs
    h.snd_wl2[cid] = iss
    if (h.tflags[cid] & TF_TS_OK) != 0:
        _store_ts_recent(core, cid, now)
    if ls.rec.rcv_buf[lid] > 0:  # the listener's SO_RCVBUF / SO_SNDBUF (Linux sk_clone_lock)
        h.rcv_buf[cid] = ls.rec.rcv_buf[lid]
        h.tflags[cid] |= np.uint32(TF_RCVBUF_LOCK)
    if ls.rec.snd_buf[lid] > 0:
        h.snd_buf[cid] = ls.rec.snd_buf[lid]
        h.tflags[cid] |= np.uint32(TF_SNDBUF_LOCK)
        tcb_touch(core.tcb, cid)
    c.tos[cid] = ls.rec.tos[lid]  # the listener's IP_TOS / IP_TTL, from the SYN-ACK on
    c.ttl[cid] = ls.rec.ttl[lid]
    tcp_tmpl_ip_fields(core, cid)
    tcp_initial_rcv_window(core, cid)
    if from_cookie:
        h.tflags[cid] |= np.uint32(TF_SYNCOOKIE)
    else:
        listen_syn_add(ls, c, lid, cid)
    return cid


@kernel_inline
def _cookie_ts_options(core, tsval_now, cid):
    """Linux cookie_init_timestamp: with timestamps, a cookie SYN-ACK's TSval carries the
    window scale, SACK permission and ECN agreement in its low 6 bits (what RFC 4987 §3.6 says
    a cookie cannot hold); returns the TSval to send."""
    h = core.tcb.hot
    opts = np.int64(_TSOPT_NO_WSCALE)
    if (h.tflags[cid] & TF_WSCALE_OK) != 0:
        opts = np.int64(h.snd_wscale[cid])
    if (h.tflags[cid] & TF_SACK_OK) != 0:
        opts |= _TSOPT_SACK
    if ecn_on(core.tcb, cid):
        opts |= _TSOPT_ECN
    ts = (tsval_now & ~np.int64(TCP_TS_OPT_MASK)) | opts
    if seq_gt(ts, tsval_now):
        ts -= 1 << 6
    return ts & M32


@kernel
def tcp_listen_input(core, lid, fid, now):
    """A segment for a listener (RFC 9293 §3.10.7.2 and RFC 4987 §3.6, as Linux); returns the
    connection whose output is owed (a new SYN-RECEIVED child), or < 0."""
    s = core.tcp_seg
    ls = core.listen
    pool = core.pool
    flags = s[SEG_FLAGS]
    if (flags & TH_RST) != 0:
        frame_free(pool, fid)  # "An incoming RST should be ignored"
        return np.int64(-1)
    if (flags & TH_ACK) != 0:
        if (flags & TH_SYN) == 0:
            child = _cookie_ack(core, lid, fid, now)
            if child != -1:
                return child  # consumed (-2: dropped)
        # "Any acknowledgment is bad if it arrives on a connection still in the LISTEN state.
        # An acceptable reset segment should be formed for any arriving ACK-bearing segment."
        _reply_reset(core)
        frame_free(pool, fid)
        return np.int64(-1)
    if (flags & TH_SYN) == 0:
        frame_free(pool, fid)
        return np.int64(-1)
    if (flags & TH_FIN) != 0:
        core.stats[STAT_TCP_SYN_FIN] += 1  # Linux drops SYN+FIN in LISTEN
        frame_free(pool, fid)
        return np.int64(-1)
    frame_free(pool, fid)  # data in a SYN is not kept (no TCP Fast Open)
    if s[SEG_KIND] != DST_UNICAST:
        return np.int64(-1)
    cookies = core.cfg[CFG_TCP_SYNCOOKIES]
    want_cookie = False
    if cookies == 2 or listen_syn_queue_full(ls, lid):
        if cookies == 0:
            core.stats[STAT_TCP_SYN_BACKLOG_FULL] += 1
            core.stats[STAT_TCP_LISTEN_DROPS] += 1
            return np.int64(-1)
        want_cookie = True
    if listen_accept_queue_full(ls, lid):
        core.stats[STAT_TCP_LISTEN_OVERFLOWS] += 1
        core.stats[STAT_TCP_LISTEN_DROPS] += 1
        return np.int64(-1)
    if not want_cookie and cookies == 0:
        mx = core.cfg[CFG_TCP_MAX_SYN_BACKLOG]
        if mx - ls.rec.syn_count[lid] < (mx >> 2):
            core.stats[STAT_TCP_SYN_BACKLOG_FULL] += 1
            core.stats[STAT_TCP_LISTEN_DROPS] += 1
            return np.int64(-1)
    if want_cookie:
        _send_cookie_synack(core, lid, now)
        return np.int64(-1)
    iss = isn_generate(core.isn_secret, s[SEG_DST], s[SEG_DPORT], s[SEG_SRC], s[SEG_SPORT], now)
    cid = _syn_received_child(core, lid, -1, now, iss, False)
    if cid < 0:
        core.stats[STAT_TCP_LISTEN_DROPS] += 1
        return np.int64(-1)
    core.stats[STAT_TCP_PASSIVE_OPENS] += 1
    h = core.tcb.hot
    h.rtt_start_us[cid] = now
    h.tflags[cid] |= np.uint32(TF_RTT_TIMING | TF_SEND_SYN)
    arm(core, cid, TIMER_SYNACK, now + core.cfg[CFG_TCP_RTO_INITIAL_US])
    return cid


@kernel
def _send_cookie_synack(core, lid, now):
    """A stateless SYN-ACK: a temporary TCB builds it and is freed at once (the cookie is the
    only state, RFC 4987 §3.6)."""
    s = core.tcp_seg
    ls = core.listen
    peer_mss = core.tcp_opt[TOPT_MSS] if (core.tcp_opt[TOPT_PRESENT] & OPTF_MSS) else 536
    idx = syncookie_mss_index(peer_mss)
    iss = syncookie_make(
        core.isn_secret, s[SEG_DST], s[SEG_DPORT], s[SEG_SRC], s[SEG_SPORT], s[SEG_SEQ], idx, now
    )
    cid = _syn_received_child(core, lid, -1, now, iss, True)
    if cid < 0:
        core.stats[STAT_TCP_LISTEN_DROPS] += 1
        return
    h = core.tcb.hot
    if (h.tflags[cid] & TF_TS_OK) == 0:
        # Linux: without timestamps a cookie cannot carry window scale, SACK or ECN: none
        h.tflags[cid] &= ~np.uint32(TF_WSCALE_OK | TF_SACK_OK)
        ecn_init(core.tcb, cid, False)
        h.rcv_wscale[cid] = 0
        tcp_initial_rcv_window(core, cid)
    else:
        # the TSval carries the options; tcp_ts_now() = offset + clock, so shift the offset
        now_ts = tcp_ts_now(core, cid, now)
        want = _cookie_ts_options(core, now_ts, cid)
        h.ts_offset[cid] = (np.int64(h.ts_offset[cid]) + seq_diff(want, now_ts)) & M32
    tcp_send_syn(core, cid, False, now)
    core.stats[STAT_TCP_SYNCOOKIES_SENT] += 1
    listen_note_overflow(ls, lid, now)
    tcp_conn_free(core, cid)


@kernel
def _cookie_ack(core, lid, fid, now):
    """The final ACK of a cookie handshake (Linux cookie_v4_check): if the cookie is valid,
    build the connection from it and process the segment.  Returns the new connection, -2 if
    the segment was consumed and dropped, -1 if it is not a valid cookie ACK."""
    s = core.tcp_seg
    ls = core.listen
    if core.cfg[CFG_TCP_SYNCOOKIES] == 0:
        return np.int64(-1)
    last = ls.rec.ov_us[lid]
    if last == 0 or now - last > TCP_SYNCOOKIE_WINDOW_US:
        return np.int64(-1)  # no recent SYN flood: a stray ACK, answered by RST
    cookie = (s[SEG_ACK] - 1) & M32
    peer_isn = (s[SEG_SEQ] - 1) & M32
    idx = syncookie_check(
        core.isn_secret, s[SEG_DST], s[SEG_DPORT], s[SEG_SRC], s[SEG_SPORT], peer_isn, cookie, now
    )
    if idx < 0:
        core.stats[STAT_TCP_SYNCOOKIES_FAILED] += 1
        return np.int64(-1)
    if listen_accept_queue_full(ls, lid):
        core.stats[STAT_TCP_LISTEN_OVERFLOWS] += 1
        core.stats[STAT_TCP_LISTEN_DROPS] += 1
        frame_free(core.pool, fid)
        return np.int64(-2)
    o = core.tcp_opt
    p = o[TOPT_PRESENT]
    # Rebuild the SYN's options: MSS from the cookie, the rest from the echoed TSval.
    sack_ok = False
    ecn_ok = False
    ws = np.int64(-1)
    ts_ok = (p & OPTF_TS) != 0 and core.cfg[CFG_TCP_TIMESTAMPS] != 0 and o[TOPT_TS_ECR] != 0
    if ts_ok:
        bits = o[TOPT_TS_ECR] & TCP_TS_OPT_MASK
        sack_ok = (bits & _TSOPT_SACK) != 0 and core.cfg[CFG_TCP_SACK] != 0
        ecn_ok = (bits & _TSOPT_ECN) != 0 and core.cfg[CFG_TCP_ECN] != 0  # Linux cookie_ecn_ok
        if (bits & 0xF) != _TSOPT_NO_WSCALE and core.cfg[CFG_TCP_WINDOW_SCALING] != 0:
            ws = bits & 0xF
    cid = tcp_conn_alloc(core, s[SEG_DST], s[SEG_DPORT], s[SEG_SRC], s[SEG_SPORT])
    if cid < 0:
        core.stats[STAT_TCP_LISTEN_DROPS] += 1
        frame_free(core.pool, fid)
        return np.int64(-2)
    t = core.tcb
    h = t.hot
    c = t.cold
    c.listener[cid] = lid
    c.reuse[cid] = core.listen.rec.reuse[lid]  # inherits SO_REUSEADDR/PORT (Linux sk_clone)
    c.created_us[cid] = now
    set_state(core, cid, TCPS_SYN_RECEIVED)
    f = np.int64(TF_PASSIVE | TF_SYNCOOKIE)
    if ts_ok:
        f |= TF_TS_OK
    if sack_ok:
        f |= TF_SACK_OK
    if ws >= 0:
        f |= TF_WSCALE_OK
        h.snd_wscale[cid] = ws
    else:
        h.rcv_wscale[cid] = 0
    h.tflags[cid] |= f
    ecn_init(t, cid, ecn_ok)
    c.peer_mss[cid] = syncookie_mss(idx)
    c.irs[cid] = peer_isn
    c.iss[cid] = cookie
    h.rcv_nxt[cid] = s[SEG_SEQ]
    h.snd_una[cid] = cookie
    h.snd_nxt[cid] = s[SEG_ACK]
    h.snd_max[cid] = s[SEG_ACK]
    h.snd_wl1[cid] = peer_isn
    if ts_ok:
        _store_ts_recent(core, cid, now)
    tcp_initial_rcv_window(core, cid)
    core.stats[STAT_TCP_SYNCOOKIES_RECV] += 1
    core.stats[STAT_TCP_PASSIVE_OPENS] += 1
    _syn_recv_established(core, cid, now)
    _after_established_segment(core, cid, fid, now)
    return cid


@kernel
def _syn_recv_established(core, cid, now):
    """SYN-RECEIVED --ACK--> ESTABLISHED (RFC 9293 §3.10.7.4 fifth check, SYN-RECEIVED): window
    and sequence variables from the ACK, then the accept queue (or the socket, after a
    simultaneous open)."""
    s = core.tcp_seg
    t = core.tcb
    h = t.hot
    c = t.cold
    ls = core.listen
    ack = s[SEG_ACK]
    tcp_ip_fields_from_listener(core, cid)  # (Linux clones the listener now)
    if (h.tflags[cid] & TF_RTT_TIMING) != 0 and h.rexmit_count[cid] == 0:
        tcp_rtt_sample(core, cid, now - h.rtt_start_us[cid], now)
        core.stats[STAT_TCP_RTT_SAMPLES] += 1
    elif (h.tflags[cid] & TF_TS_OK) != 0 and _has_ts(core) and core.tcp_opt[TOPT_TS_ECR] != 0:
        # RFC 7323 §4.1 RTTM: the echoed TSval times even a retransmitted SYN-ACK (Karn's
        # ambiguity does not arise); Linux tcp_synack_rtt_meas
        ms = seq_diff(tcp_ts_now(core, cid, now), core.tcp_opt[TOPT_TS_ECR])
        if ms >= 0:
            tcp_rtt_sample(core, cid, ms * 1000, now)
            core.stats[STAT_TCP_RTT_SAMPLES] += 1
    h.tflags[cid] &= ~np.uint32(TF_RTT_TIMING)
    # Linux sets snd_una here without counting the SYN in bytes_acked, so right after a passive
    # open RFC 5961 §5.2's MAX.SND.WND (capped by bytes_acked) is 0: any ACK below is challenged
    h.snd_una[cid] = ack
    ws = np.int64(h.snd_wscale[cid]) if (h.tflags[cid] & TF_WSCALE_OK) != 0 else np.int64(0)
    wnd = s[SEG_WND] << ws
    h.snd_wnd[cid] = wnd
    h.max_sndwnd[cid] = wnd
    h.snd_wl1[cid] = s[SEG_SEQ]
    h.snd_wl2[cid] = ack
    disarm(core, cid, TIMER_SYNACK)
    disarm(core, cid, TIMER_RTO)
    set_state(core, cid, TCPS_ESTABLISHED)
    tcp_established(core, cid, now)
    if ecn_on(t, cid):
        core.stats[STAT_TCP_ECN_NEGOTIATED] += 1
    lid = c.listener[cid]
    if lid >= 0 and c.owner[cid] < 0:
        if (h.tflags[cid] & TF_SYNCOOKIE) == 0:  # a cookie's child was never on the SYN list
            listen_syn_remove(ls, c, lid, cid)
        listen_acc_add(ls, c, lid, cid)


# --- SYN-SENT (RFC 9293 §3.10.7.3) ---------------------------------------------------------------
@kernel
def _synsent_input(core, cid, fid, now):
    s = core.tcp_seg
    t = core.tcb
    h = t.hot
    c = t.cold
    pool = core.pool
    flags = s[SEG_FLAGS]
    iss = np.int64(c.iss[cid])
    if (flags & TH_ACK) != 0:
        # first check the ACK bit: SEG.ACK =< ISS or SEG.ACK > SND.NXT -> reset (not for RST)
        ack = s[SEG_ACK]
        if not seq_gt(ack, iss) or seq_gt(ack, h.snd_nxt[cid]):
            if h.rexmit_count[cid] == 0:
                # Linux: a stale FIN/RST of a previous incarnation may have been ignored
                # by the peer; resend the SYN soon
                arm(core, cid, TIMER_RTO, now + 2000)
            if (flags & TH_RST) == 0:
                _reply_reset(core)
            frame_free(pool, fid)
            return
        if _has_ts(core) and core.tcp_opt[TOPT_TS_ECR] != 0 and (h.tflags[cid] & TF_TS_OK):
            # Linux PAWS for SYN-SENT: TSecr must echo a TSval we sent for this SYN
            ecr = core.tcp_opt[TOPT_TS_ECR]
            first = (np.int64(h.retrans_stamp[cid]) // 1000 + np.int64(h.ts_offset[cid])) & M32
            if seq_lt(ecr, first) or seq_gt(ecr, tcp_ts_now(core, cid, now)):
                if (flags & TH_RST) == 0:
                    _reply_reset(core)
                frame_free(pool, fid)
                return
        if (flags & TH_RST) != 0:
            # second check the RST bit: "the ACK was acceptable then signal to the user
            # 'error: connection reset'" (Linux: ECONNREFUSED)
            core.stats[STAT_TCP_ATTEMPT_FAILS] += 1
            core.stats[STAT_TCP_RST_ACCEPTED] += 1
            frame_free(pool, fid)
            tcp_set_closed(core, cid, 111)  # ECONNREFUSED
            return
        if (flags & TH_SYN) == 0:
            frame_free(pool, fid)  # "fifth, if neither of the SYN or RST bits is set then drop"
            return
        # fourth check the SYN bit: our SYN is ACKed -> ESTABLISHED
        _apply_syn_options(core, cid, False)
        if ecn_rcv_synack(t, cid, flags):
            core.stats[STAT_TCP_ECN_NEGOTIATED] += 1
        if (h.tflags[cid] & TF_TS_OK) != 0 and not _has_ts(core):
            h.tflags[cid] &= ~np.uint32(TF_TS_OK)
        irs = s[SEG_SEQ]
        c.irs[cid] = irs
        h.rcv_nxt[cid] = (irs + 1) & M32
        h.rcv_wup[cid] = h.rcv_nxt[cid]
        h.rcv_adv[cid] = (np.int64(h.rcv_nxt[cid]) + np.int64(h.rcv_wnd[cid])) & M32
        h.snd_una[cid] = ack
        c.bytes_acked[cid] += 1
        h.snd_wnd[cid] = s[SEG_WND]  # never scaled in a SYN-ACK
        h.max_sndwnd[cid] = s[SEG_WND]
        h.snd_wl1[cid] = irs
        h.snd_wl2[cid] = ack
        if (h.tflags[cid] & TF_TS_OK) != 0:
            _store_ts_recent(core, cid, now)
        if (h.tflags[cid] & TF_WSCALE_OK) == 0:
            h.rcv_wscale[cid] = 0
            if c.window_clamp[cid] > 65535:
                c.window_clamp[cid] = 65535
        if (h.tflags[cid] & TF_RTT_TIMING) != 0 and h.rexmit_count[cid] == 0:
            tcp_rtt_sample(core, cid, now - h.rtt_start_us[cid], now)
            core.stats[STAT_TCP_RTT_SAMPLES] += 1
        elif _has_ts(core) and core.tcp_opt[TOPT_TS_ECR] != 0 and (h.tflags[cid] & TF_TS_OK):
            ms = seq_diff(tcp_ts_now(core, cid, now), core.tcp_opt[TOPT_TS_ECR])
            if ms >= 0:
                tcp_rtt_sample(core, cid, ms * 1000, now)
        h.tflags[cid] &= ~np.uint32(TF_RTT_TIMING)
        disarm(core, cid, TIMER_RTO)
        set_state(core, cid, TCPS_ESTABLISHED)
        tcp_established(core, cid, now)
        # the rest of the segment (data, FIN) as in ESTABLISHED, "sixth check the URG bit"
        s[SEG_SEQ] = (irs + 1) & M32
        s[SEG_FLAGS] = flags & ~np.int64(TH_SYN)
        pool.tag[fid] = s[SEG_SEQ]
        h.tflags[cid] |= np.uint32(TF_ACK_NOW)  # "form an ACK segment and send it"
        _after_established_segment(core, cid, fid, now)
        return
    if (flags & TH_RST) != 0:
        frame_free(pool, fid)  # no ACK: drop
        return
    if (flags & TH_SYN) != 0:
        # simultaneous open (Figure 8): SYN-RECEIVED, send SYN,ACK
        _apply_syn_options(core, cid, False)
        ecn_rcv_synack(t, cid, flags)
        irs = s[SEG_SEQ]
        c.irs[cid] = irs
        h.rcv_nxt[cid] = (irs + 1) & M32
        h.snd_wnd[cid] = s[SEG_WND]
        h.max_sndwnd[cid] = s[SEG_WND]
        h.snd_wl1[cid] = irs
        if (h.tflags[cid] & TF_TS_OK) != 0:
            _store_ts_recent(core, cid, now)
        set_state(core, cid, TCPS_SYN_RECEIVED)
        tcp_initial_rcv_window(core, cid)
        h.tflags[cid] |= np.uint32(TF_SEND_SYN)  # SYN,ACK with our ISS again
        frame_free(pool, fid)
        return
    frame_free(pool, fid)


# --- TIME-WAIT (Linux tcp_timewait_state_process) ----------------------------------------------
@kernel
def _timewait_input(core, cid, fid, now):
    """Return 1 if a SYN reopens the 4-tuple (the caller hands the segment to the listener)."""
    s = core.tcp_seg
    t = core.tcb
    h = t.hot
    pool = core.pool
    if t.cold.ttl[cid] != 0:
        # what TIME-WAIT sends keeps the socket's TOS but not its IP_TTL (Linux's time-wait
        # sockets have tw_tos only; the ACK of the FIN that began it came from the socket)
        t.cold.ttl[cid] = 0
        tcp_tmpl_ip_fields(core, cid)
    flags = s[SEG_FLAGS]
    seq = s[SEG_SEQ]
    end = _seg_end(core)
    rn = np.int64(h.rcv_nxt[cid])
    paws = False
    if (h.tflags[cid] & TF_TS_OK) != 0 and _has_ts(core):
        paws = _paws_reject(core, cid, now, 1)
    if not paws and seq == rn and (seq == end or (flags & TH_RST) != 0):
        # in-window: only a reset or a bare ACK
        if (flags & TH_RST) != 0:
            if core.cfg[CFG_TCP_RFC1337] == 0:
                core.stats[STAT_TCP_TW_KILLED] += 1  # TIME-WAIT assassination (RFC 1337)
                frame_free(pool, fid)
                tcp_conn_free(core, cid)
                return 0
        else:
            tcp_time_wait_restart(core, cid, now)
        if _has_ts(core) and (h.tflags[cid] & TF_TS_OK) != 0:
            _store_ts_recent(core, cid, now)
        frame_free(pool, fid)
        return 0
    # RFC 1122 §4.2.2.13 / RFC 6191: a new SYN with a higher sequence number, or a newer
    # timestamp, reopens the connection
    if (flags & (TH_SYN | TH_RST | TH_ACK)) == TH_SYN and not paws:
        newer_ts = _has_ts(core) and (h.tflags[cid] & TF_TS_OK) != 0 and seq_lt(
            h.ts_recent[cid], core.tcp_opt[TOPT_TS_VAL]
        )
        if seq_gt(seq, rn) or newer_ts:
            return 1
    if paws:
        core.stats[STAT_TCP_PAWS_DROPPED] += 1
    if (flags & TH_RST) == 0:
        if paws or (flags & TH_ACK) != 0:
            tcp_time_wait_restart(core, cid, now)
        if not _oow_limited_for_segment(core, cid, now):
            h.tflags[cid] |= np.uint32(TF_ACK_NOW)
    frame_free(pool, fid)
    return 0


# --- ACK processing (RFC 9293 §3.10.7.4 fifth check; Linux tcp_ack) ----------------------------
ACK_BAD = -1  # drop the segment
ACK_OLD = 0  # an old duplicate ACK: ignore it but process the rest of the segment
ACK_OK = 1


@kernel
def _clean_rtx_queue(core, cid, ack, prior_fack, now):
    """Free the frames SEG.ACK covers; returns (bytes acked, of them bytes the peer had
    SACKed, RTT sample µs or -1, the shortest RTT among them or -1, where reordering began or
    -1, whether a frame never retransmitted nor SACKed and ending at or below ``recover`` was
    among them: F-RTO's Linux FLAG_ORIG_SACK_ACKED): Karn's rule, from the earliest and the
    latest sent frame never retransmitted (Linux seq_rtt_us, ca_rtt_us); a hole below
    ``prior_fack`` (RACK.fack before this ACK) filled by a frame never retransmitted is
    reordering (RFC 8985 §6.2 step 3, Linux tcp_clean_rtx_queue)."""
    pool = core.pool
    h = core.tcb.hot
    acked = np.int64(0)
    sacked = np.int64(0)
    first_xmit = np.int64(-1)
    last_xmit = np.int64(-1)
    retrans_acked = False
    reord = np.int64(-1)
    orig = False
    recover = np.int64(h.recover[cid])
    fid = h.snd_q_head[cid]
    while fid >= 0:
        seq = pool.tag[fid]
        if seq_geq(seq, ack) and pool.length[fid] > 0:
            break
        n = frame_seq_len(pool, fid)
        end = (seq + n) & M32
        if seq_gt(end, ack):
            # partly acknowledged: trim the head (never sent with FIN then)
            k = seq_diff(ack, seq)
            if k > 0:
                pool.off[fid] += k
                pool.length[fid] -= k
                pool.tag[fid] = ack
                h.snd_q_bytes[cid] -= k
                acked += k
            break
        if (pool.flags[fid] & FRAME_F_TCP_SENT) == 0:
            break
        if seq_gt(end, ack):
            break
        fl = pool.flags[fid]
        xmit = frame_xmit_time(pool, fid)
        if (fl & FRAME_F_TCP_EVER_RETRANS) != 0:
            retrans_acked = True
        else:
            if first_xmit < 0:
                first_xmit = xmit
            if xmit > last_xmit:
                last_xmit = xmit
            if (fl & FRAME_F_TCP_SACKED) == 0:
                if seq_lt(seq, prior_fack) and reord < 0:
                    reord = np.int64(seq)  # the queue is in order: the first is the lowest
                if seq_leq(end, recover):
                    orig = True
        if (fl & FRAME_F_TCP_SACKED) == 0:  # newly delivered (RFC 8985 §6.2)
            rack_advance(core.tcb, cid, xmit, frame_xmit_order(pool, fid),
                         (fl & FRAME_F_TCP_EVER_RETRANS) != 0, now)  # fmt: skip
        h.snd_q_bytes[cid] -= pool.length[fid]
        acked += pool.length[fid]
        if (fl & FRAME_F_TCP_SACKED) != 0:
            sacked += pool.length[fid]
        nxt = pool.next[fid]
        if h.snd_q_unsent[cid] == fid:
            h.snd_q_unsent[cid] = nxt
        pool.next[fid] = -1
        frame_free(pool, fid)
        fid = nxt
    h.snd_q_head[cid] = fid
    if fid < 0:
        h.snd_q_tail[cid] = -1
        h.snd_q_unsent[cid] = -1
    if acked > 0:
        tcb_touch(core.tcb, cid)  # snd_q_bytes fell: room to write (fsdp.core.loop.poll_status)
    rtt = np.int64(-1)
    ca_rtt = np.int64(-1)
    if first_xmit >= 0 and not retrans_acked:
        rtt = now - first_xmit
        ca_rtt = now - last_xmit
    return acked, sacked, rtt, ca_rtt, reord, orig


@kernel_inline
def _ack_update_window(core, cid):
    """Linux tcp_ack_update_window (RFC 9293 §3.10.7.4 "update the send window" with the
    SND.WL1/SND.WL2 rule); True if the window field was taken."""
    s = core.tcp_seg
    h = core.tcb.hot
    ack = s[SEG_ACK]
    seq = s[SEG_SEQ]
    ws = np.int64(h.snd_wscale[cid]) if (h.tflags[cid] & TF_WSCALE_OK) != 0 else np.int64(0)
    nwin = s[SEG_WND] << ws
    wl1 = h.snd_wl1[cid]
    if seq_gt(ack, h.snd_una[cid]) or seq_gt(seq, wl1) or (
        seq == np.int64(wl1) and (nwin > np.int64(h.snd_wnd[cid]) or nwin == 0)
    ):
        h.snd_wl1[cid] = seq
        h.snd_wl2[cid] = ack
        if np.int64(h.snd_wnd[cid]) != nwin:
            h.snd_wnd[cid] = nwin
            if nwin > np.int64(h.max_sndwnd[cid]):
                h.max_sndwnd[cid] = nwin
                tcp_sync_mss(core, cid)
        return True
    return False


@kernel
def tcp_ack(core, cid, now):
    """Process SEG.ACK in a synchronized state; ACK_BAD, ACK_OLD or ACK_OK."""
    s = core.tcp_seg
    t = core.tcb
    h = t.hot
    c = t.cold
    pool = core.pool
    ack = s[SEG_ACK]
    una = np.int64(h.snd_una[cid])
    if seq_lt(ack, una):
        mw = np.int64(h.max_sndwnd[cid])
        ba = c.bytes_acked[cid]
        if ba < mw:
            mw = ba
        if seq_lt(ack, (una - mw) & M32):
            core.stats[STAT_TCP_ACK_TOO_OLD] += 1  # RFC 5961 §5.2
            if h.state[cid] != TCPS_SYN_RECEIVED:
                tcp_send_challenge_ack(core, cid, now)
            return ACK_BAD
        return ACK_OLD
    if seq_gt(ack, h.snd_max[cid]):
        core.stats[STAT_TCP_ACK_UNSENT] += 1  # RFC 5961 §5.2 / RFC 9293: "send an ACK, drop"
        if h.state[cid] != TCPS_SYN_RECEIVED:
            tcp_send_challenge_ack(core, cid, now)
        return ACK_BAD
    advanced = seq_gt(ack, una)
    # an acceptable ACK: something worked, so an earlier ICMP error no longer stands (Linux
    # tcp_ack clears sk_err_soft; fsdp.tcp.tcp_icmp)
    c.soft_error[cid] = 0
    if advanced:
        h.rexmit_count[cid] = 0
        c.probes_out[cid] = 0
    _replace_ts_recent(core, cid, now)
    had_flight = tcp_flight(core, cid) > 0
    win_upd = _ack_update_window(core, cid)
    # RFC 5681 §2 duplicate ACK: outstanding data, no data, no SYN/FIN, same ACK and window
    is_dup = (
        not advanced and had_flight and s[SEG_LEN] == 0
        and (s[SEG_FLAGS] & (TH_SYN | TH_FIN)) == 0 and not win_upd
    )  # fmt: skip
    sack_new = np.int64(0)
    sack_first = np.int64(-1)
    sack_last = np.int64(-1)
    lost_before = np.int64(-1)
    reord = np.int64(-1)
    orig_acked = False
    dsack_delivered = np.int64(0)
    # RACK.fack before this ACK (RFC 8985 §6.2 step 3; Linux prior_fack)
    prior_fack = una
    if (h.tflags[cid] & TF_SACKED_OUT) != 0 and seq_gt(h.rack_fack[cid], una):
        prior_fack = np.int64(h.rack_fack[cid])
    if advanced:
        h.snd_una[cid] = ack
        tcp_urg_acked(core, cid, ack)
        c.bytes_acked[cid] += seq_diff(ack, una)
        if seq_lt(h.snd_nxt[cid], ack):
            h.snd_nxt[cid] = ack
    if (h.tflags[cid] & TF_SACK_OK) != 0 and (core.tcp_opt[TOPT_PRESENT] & OPTF_SACK) != 0:
        nb = core.tcp_opt[TOPT_SACK_N]
        blocks = core.tcp_blocks
        for i in range(2 * nb):
            blocks[i] = core.tcp_opt[TOPT_SACK_BLOCKS + i]
        dupthresh = tcp_loss_dupthresh(core, cid)
        if advanced and (h.tflags[cid] & TF_IN_RECOVERY) != 0 and dupthresh != RACK_NO_DUPTHRESH:
            # did these blocks show a new loss?  (RFC 6937bis SafeACK; RACK says so itself)
            lost_before = scoreboard_lost_bytes(pool, t, cid, dupthresh)
        spurious = False
        dups = np.int64(0)
        if scoreboard_dsack(t, cid, blocks, nb):
            core.stats[STAT_TCP_DSACKS_RECV] += 1
            dups, spurious = rack_dsack(t, cid, blocks[0], blocks[1])
            if dups > 0:
                # a spurious retransmission was delivered too (Linux tcp_dsack_seen:
                # sack_delivered), which PRR and the window's growth count
                dsack_delivered = dups * np.int64(h.mss[cid])
                resent = np.int64(0)
                if seq_gt(blocks[1], una):  # in the queue still: its retransmitted segments
                    resent = scoreboard_dsack_resent(pool, t, cid, blocks[0], blocks[1])
                undo_dsack(t, cid, blocks[1], una, dups, resent)
        sack_new, sack_first, sack_last, reord, orig_acked = scoreboard_update(
            pool, t, cid, blocks, nb, now
        )
        if sack_new > 0:
            h.tflags[cid] |= np.uint32(TF_SACKED_OUT)
        if rack_update_reo_wnd(t, cid, spurious):
            core.stats[STAT_TCP_REO_WND_GROWN] += 1
        if dups > 0 and (h.tflags[cid] & (TF_IN_RECOVERY | TF_IN_LOSS)) == 0:
            _try_undo_dsack(core, cid)  # after recovery (Linux: in Open and Disorder too)
    if not had_flight:
        c.probes_out[cid] = 0
        if advanced:
            _clean_rtx_queue(core, cid, ack, prior_fack, now)
        return ACK_OK
    acked = np.int64(0)
    sacked_acked = np.int64(0)
    rtt = np.int64(-1)
    ca_rtt = np.int64(-1)
    if advanced:
        acked, sacked_acked, rtt, ca_rtt, cum_reord, cum_orig = _clean_rtx_queue(
            core, cid, ack, prior_fack, now
        )
        orig_acked = orig_acked or cum_orig
        if cum_reord >= 0:
            reord = cum_reord  # below any the SACK blocks showed
        if (h.tflags[cid] & TF_SACKED_OUT) != 0 and scoreboard_sacked_bytes(pool, t, cid) == 0:
            h.tflags[cid] &= ~np.uint32(TF_SACKED_OUT)
    if reord >= 0:
        _note_reordering(core, cid, reord, False)
    if rtt < 0 and sack_first >= 0:
        # no cumulative sample: the newly SACKed frames give one (Linux sack_rtt_us)
        rtt = now - sack_first
        ca_rtt = now - sack_last
    if advanced and rtt < 0 and (h.tflags[cid] & TF_TS_OK) != 0 and _has_ts(core):
        ecr = core.tcp_opt[TOPT_TS_ECR]
        if ecr != 0:
            ms = seq_diff(tcp_ts_now(core, cid, now), ecr)
            if ms >= 0:
                rtt = ms * 1000
                ca_rtt = rtt
    if rtt >= 0:
        tcp_rtt_sample(core, cid, rtt, now)
        rack_min_rtt_update(t, cid, ca_rtt, now)  # the shortest of this ACK's samples
        core.stats[STAT_TCP_RTT_SAMPLES] += 1
    # Eifel detection (RFC 3522), read before the retransmission stamp may be cleared below
    delayed = undo_active(t, cid) and _packet_delayed(core, cid)
    if advanced:
        h.retrans_stamp[cid] = 0 if tcp_flight(core, cid) == 0 else h.retrans_stamp[cid]
        neigh_confirm(core, np.int64(c.rip[cid]), now)  # forward progress proves the path
        # RFC 6298 (5.2)/(5.3): stop the timer when all is ACKed, else restart it (as the
        # probe timeout where RFC 8985 §7.2 allows one)
        if tcp_flight(core, cid) == 0:
            disarm(core, cid, TIMER_RTO)
            h.tflags[cid] &= ~np.uint32(TF_TLP_ARMED)
        else:
            tcp_set_xmit_timer(core, cid, now)
        disarm(core, cid, TIMER_PERSIST)
    if (h.tflags[cid] & TF_TLP_OUT) != 0:
        _tlp_ack(core, cid, ack, advanced, sack_new, now)
    # RFC 6937 DeliveredData: the advance of SND.UNA plus the change in SACKed bytes, plus
    # what a valid D-SACK reported delivered twice (as Linux counts it)
    delivered = acked - sacked_acked + sack_new + dsack_delivered
    _congestion_control(
        core, cid, acked, delivered, is_dup, sack_new, lost_before, delayed, orig_acked, now
    )
    return ACK_OK


@kernel_inline
def _note_reordering(core, cid, low_seq, by_ts):
    """An ACK showed reordering from ``low_seq`` up to RACK.fack (the highest SACKed, or
    SND.UNA): RFC 8985 §6.2 step 3, Linux tcp_check_sack_reordering; ``by_ts``: a timestamp
    showed it (the original filled the hole: Linux counts TCPTSReorder, not TCPSACKReorder)."""
    h = core.tcb.hot
    fack = np.int64(h.snd_una[cid])
    if (h.tflags[cid] & TF_SACKED_OUT) != 0 and seq_gt(h.rack_fack[cid], fack):
        fack = np.int64(h.rack_fack[cid])
    core.stats[STAT_TCP_TS_REORDER if by_ts else STAT_TCP_SACK_REORDER] += 1
    rack_note_reordering(core.tcb, cid, low_seq, fack, tcp_reordering(core, cid))


@kernel_inline
def _packet_delayed(core, cid):
    """Linux tcp_packet_delayed (RFC 3522 §2, Eifel detection): this ACK echoes a timestamp our
    side sent before the episode's first retransmission, so an original got through.  With
    nothing retransmitted yet (no stamp) the ACK cannot be for a retransmission either -- but
    not without SACK at or past ``recover`` (Linux clears the stamp there while it holds its
    state), nor in SYN-SENT."""
    h = core.tcb.hot
    stamp = np.int64(h.retrans_stamp[cid])
    if stamp != 0:
        if (h.tflags[cid] & TF_TS_OK) == 0 or not _has_ts(core):
            return False
        ecr = core.tcp_opt[TOPT_TS_ECR]
        return ecr != 0 and seq_lt(ecr, tcp_ts_now(core, cid, stamp))
    if (h.tflags[cid] & TF_SACK_OK) == 0 and seq_geq(h.snd_una[cid], h.recover[cid]):
        return False
    return h.state[cid] != TCPS_SYN_SENT


@kernel_inline
def _any_retrans_done(core, cid):
    """Linux tcp_any_retrans_done: a retransmission is out, or the oldest segment was ever
    retransmitted."""
    pool = core.pool
    head = core.tcb.hot.snd_q_head[cid]
    if head >= 0 and (pool.flags[head] & FRAME_F_TCP_EVER_RETRANS) != 0:
        return True
    return scoreboard_retrans_out(pool, core.tcb, cid)


@kernel_inline
def _retrans_stamp_cleanup(core, cid):
    """Linux tcp_retrans_stamp_cleanup: with no retransmission left to date, the next episode
    (Eifel detection, the give-up clock) starts from its own first retransmission."""
    if not _any_retrans_done(core, cid):
        core.tcb.hot.retrans_stamp[cid] = 0


@kernel
def _undo(core, cid, unmark_lost):
    """Revert the episode's window reduction (fsdp.tcp.undo; Linux tcp_undo_cwnd_reduction),
    and with ``unmark_lost`` forget which frames it took for lost."""
    if unmark_lost:
        scoreboard_unmark_lost(core.pool, core.tcb, cid)
    undo_cwnd_reduction(core.tcb, cid)


@kernel
def _try_undo_dsack(core, cid):
    """Linux tcp_try_undo_dsack: every retransmission of the episode was D-SACKed (RFC 3708):
    undo it, and keep RACK's wider window one recovery longer.  True if it undid."""
    t = core.tcb
    if not undo_may(t, cid, False):
        return False
    core.stats[STAT_TCP_UNDO_DSACK] += 1
    h = t.hot
    p = np.int64(h.rack_reo_wnd_persist[cid]) + 1
    h.rack_reo_wnd_persist[cid] = p if p < RACK_REO_WND_PERSIST else RACK_REO_WND_PERSIST
    _undo(core, cid, False)
    return True


@kernel_inline
def _tlp_ack(core, cid, ack, advanced, sack_new, now):
    """End of a loss-probe episode (RFC 8985 §7.4, Linux tcp_process_tlp_ack): an ACK beyond
    the probe's end means the probe repaired a loss, so the congestion window is reduced once
    (as a fast recovery would); a pure duplicate ACK at the end means both copies arrived."""
    h = core.tcb.hot
    t = core.tcb
    hi = np.int64(h.tlp_high_seq[cid])
    if seq_lt(ack, hi):
        return
    done = np.uint32(TF_TLP_OUT | TF_TLP_RETRANS)
    if (h.tflags[cid] & TF_TLP_RETRANS) == 0:
        h.tflags[cid] &= ~done  # the probe was new data: nothing to learn
    elif seq_gt(ack, hi):
        core.stats[STAT_TCP_LOSS_PROBE_RECOVERY] += 1
        flight = tcp_flight(core, cid)
        cc_enter_recovery(t, cid, flight, now)
        cc_exit_recovery(t, cid, flight)
        h.tflags[cid] &= ~done
    elif not advanced and sack_new == 0:
        h.tflags[cid] &= ~done


@njit(inline="always", cache=True)
def _grow_cwnd(t, cid, delivered, now):
    """An ACK grows cwnd only while the sender is cwnd-limited (RFC 7661 §4.2, as Linux's
    tcp_cong_avoid; cc.cc_is_cwnd_limited), by the bytes it ``delivered``."""
    if cc_is_cwnd_limited(t, cid):
        cc_on_ack(t, cid, delivered, now)


@kernel
def _congestion_control(
    core, cid, acked, delivered, is_dup, sack_new, lost_before, delayed, orig_acked, now
):
    """Loss detection and recovery on an ACK: RFC 5681 §3.2 fast retransmit, RFC 6675 SACK
    recovery (losses found by RACK, RFC 8985 §6, when ``tcp_recovery`` is 1), RFC 6582 NewReno
    without SACK, RFC 6937 PRR setting cwnd in both, RFC 3042 limited transmit; RTO recovery
    ends here; a reduction shown spurious is undone (fsdp.tcp.undo, as Linux's
    tcp_fastretrans_alert and tcp_process_loss).  ``acked``: bytes newly ACKed cumulatively;
    ``delivered``: RFC 6937 DeliveredData; ``lost_before``: lost bytes before this ACK's SACK
    blocks (-1: not taken); ``delayed``: the ACK echoes a timestamp from before the episode's
    first retransmission (``_packet_delayed``); ``orig_acked``: it (S)ACKed a segment never
    retransmitted and sent before ``recover`` (F-RTO, ``_process_loss``)."""
    s = core.tcp_seg
    t = core.tcb
    h = t.hot
    pool = core.pool
    ack = s[SEG_ACK]
    f = h.tflags[cid]
    dupthresh = tcp_loss_dupthresh(core, cid)
    rack = dupthresh == RACK_NO_DUPTHRESH
    sack_on = (f & TF_SACK_OK) != 0
    # RFC 8985 §6.2 step 5, on the ACKs Linux calls dubious (tcp_ack_is_dubious: SACK
    # information, SACKed data outstanding, or recovery); a plain cumulative ACK leaves every
    # frame sent after the one it ACKed, and the walk would cost O(flight) per ACK
    rack_dubious = rack and delivered > 0 and (
        sack_new > 0 or (f & (TF_SACKED_OUT | TF_IN_RECOVERY)) != 0
    )
    # cwnd grows on an ACK that advances SND.UNA, by what it delivered: a segment SACKed
    # earlier was delivered then (when nothing grows) and does not count again (Linux
    # tcp_cong_control: tcp_may_raise_cwnd, then tcp_cong_avoid with the newly delivered)
    if (f & TF_IN_LOSS) != 0:
        _process_loss(core, cid, acked, delivered, is_dup, sack_new, delayed, orig_acked, now)
        return
    if (f & TF_IN_RECOVERY) != 0:
        if not sack_on:
            delivered = _reno_delivered(core, cid, acked, is_dup)
        if acked > 0 and cc_is_full_ack(t, cid, ack):
            # without SACK, an ACK exactly at recover is one Linux still holds in recovery
            # (PRR, no growth); fsdp ends it there, with cwnd = ssthresh as Linux then has
            grow = sack_on or seq_gt(ack, h.recover[cid])
            if undo_may(t, cid, delayed):
                # Linux tcp_try_undo_recovery: the window PRR left, or the one before, if more
                core.stats[STAT_TCP_UNDO_RECOVERY] += 1
                _undo(core, cid, False)
                cc_leave_recovery(t, cid)
            else:
                cc_exit_recovery(t, cid, tcp_flight(core, cid))
                h.dupacks[cid] = 0
                rack_recovery_done(t, cid)
            _retrans_stamp_cleanup(core, cid)
            if grow:
                # out of recovery, the same ACK grows the window by what it delivered (Linux
                # tcp_cong_control runs after tcp_fastretrans_alert has left Recovery)
                _grow_cwnd(t, cid, delivered, now)
            return
        undone = False
        if acked > 0 and delayed:
            # Linux tcp_try_undo_partial (RFC 3522): the hole was filled by a late original
            # -- reordering; with retransmissions still out, new data is clocked out by PRR
            # but nothing more is marked lost or resent
            _note_reordering(core, cid, (np.int64(ack) - acked) & M32, True)  # old SND.UNA on
            if scoreboard_retrans_out(pool, t, cid):
                cc_prr_ack(t, cid, delivered, tcp_recovery_pipe(core, cid), True)
                return
            _retrans_stamp_cleanup(core, cid)
            core.stats[STAT_TCP_UNDO_RECOVERY] += 1
            _undo(core, cid, True)
            undone = True
        elif _try_undo_dsack(core, cid):
            undone = True
        if undone:
            # out of recovery (Linux tcp_try_keep_open), where a loss now evident starts a
            # new episode at once
            cc_leave_recovery(t, cid)
            rack_lost = tcp_rack_detect_loss(core, cid, now) if rack_dubious else np.int64(0)
            if rack_lost > 0 and cc_may_enter_recovery(t, cid, ack, True):
                tcp_enter_fast_recovery(
                    core, cid, delivered, False, ecn_echoed(t, cid, s[SEG_FLAGS]), now
                )
            elif acked > 0:
                _grow_cwnd(t, cid, delivered, now)
            return
        rack_lost = tcp_rack_detect_loss(core, cid, now) if rack_dubious else np.int64(0)
        newly_lost = False
        if acked > 0:
            core.stats[STAT_TCP_PARTIAL_ACKS] += 1
        if not sack_on:
            if acked > 0:
                # RFC 6582 §3.2 step 5: the first unacknowledged segment is lost too; PRR
                # says when it goes (Linux tcp_newreno_mark_lost)
                newly_lost = scoreboard_mark_lost(pool, t, cid, h.snd_q_head[cid])
        elif rack:
            newly_lost = rack_lost > 0
        elif lost_before >= 0:
            newly_lost = scoreboard_lost_bytes(pool, t, cid, dupthresh) > lost_before
        cc_prr_ack(t, cid, delivered, tcp_recovery_pipe(core, cid), acked > 0 and not newly_lost)
        return
    # open, or in an ECN reduction (Linux's CWR state), which ends once the ACK passes the
    # SND.NXT of its start; an ECE starts one (RFC 3168 §6.1.2) unless recovery starts here
    ece = ecn_echoed(t, cid, s[SEG_FLAGS])
    if cc_cwr_done(t, cid, ack):
        cc_end_cwr(t, cid)
    rack_lost = tcp_rack_detect_loss(core, cid, now) if rack_dubious else np.int64(0)
    if acked > 0:
        cc_end_dupacks(t, cid)
        if rack_lost == 0 or not cc_may_enter_recovery(t, cid, ack, True):
            _open_cwnd(core, cid, delivered, ece, True, now)
            tcp_sndbuf_expand(core, cid)  # Linux tcp_new_space: the buffer follows cwnd
            return
    elif not is_dup and sack_new == 0:
        if ece:
            _open_cwnd(core, cid, delivered, ece, False, now)
        return
    if is_dup and sack_on and sack_new == 0:
        # RFC 6675 §2: with SACK an ACK is a duplicate only if it SACKs new data (blocks
        # above SND.NXT or already known count for nothing; Linux: sacked_out, not dupacks)
        is_dup = False
    if is_dup:
        h.dupacks[cid] += 1
        core.stats[STAT_TCP_DUP_ACKS_IN] += 1
    head = h.snd_q_head[cid]
    if rack:
        enter = rack_lost > 0  # Linux tcp_time_to_recover: a segment is marked lost
    elif sack_on and head >= 0 and scoreboard_is_lost(pool, t, cid, head, dupthresh):
        enter = True
    else:
        enter = h.dupacks[cid] >= dupthresh
    if enter and cc_may_enter_recovery(t, cid, ack, sack_on):
        if not sack_on:
            delivered = np.int64(h.mss[cid])  # this duplicate ACK (already counted)
        tcp_enter_fast_recovery(core, cid, delivered, not rack, ece, now)
        return
    if ece or cc_in_cwr(t, cid):
        _open_cwnd(core, cid, delivered, ece, False, now)
    elif sack_new > 0 and tcp_reordering(core, cid) > np.int64(core.cfg[CFG_TCP_REORDERING]):
        # on a path seen to reorder deeply, a SACK is progress enough to grow cwnd (Linux
        # tcp_may_raise_cwnd: FLAG_FORWARD_PROGRESS once tp->reordering exceeds the sysctl)
        _grow_cwnd(t, cid, delivered, now)
    if (
        is_dup and not sack_on and h.dupacks[cid] <= 2
        and cc_limited_transmit_allowed(t, cid, h.dupacks[cid])
    ):  # fmt: skip
        # RFC 3042: one new segment, cwnd unchanged (with SACK, RFC 6675 §5 step 3: pipe
        # gives the room, tcp_output.tcp_push)
        h.tflags[cid] |= np.uint32(TF_LIMITED_XMIT)


@kernel_inline
def _open_cwnd(core, cid, delivered, ece, advanced, now):
    """cwnd on an ACK outside fast and RTO recovery that starts none: an ECE starts an ECN
    reduction (RFC 3168 §6.1.2; Linux tcp_try_to_open -> tcp_enter_cwr), during which PRR sets
    cwnd from what each ACK ``delivered`` (Linux tcp_cong_control: tcp_cwnd_reduction, no
    growth); otherwise an ACK that ``advanced`` SND.UNA grows it."""
    t = core.tcb
    if ece and not cc_in_cwr(t, cid):
        core.stats[STAT_TCP_ECN_CWR_EPISODES] += 1
        cc_enter_cwr(t, cid)
    if cc_in_cwr(t, cid):
        cc_prr_ack(t, cid, delivered, tcp_open_pipe(core, cid), advanced)
    elif advanced:
        _grow_cwnd(t, cid, delivered, now)


@kernel
def _process_loss(core, cid, acked, delivered, is_dup, sack_new, delayed, orig_acked, now):
    """An ACK in RTO recovery (``TF_IN_LOSS``), as Linux tcp_process_loss: an RTO shown
    spurious is undone -- by the timestamp the ACK echoes (RFC 3522, Linux tcp_try_undo_loss)
    or by F-RTO (RFC 5682 step 3b: a segment sent before the RTO and never retransmitted
    arrived); F-RTO's step 2b sends new data on the first ACK that advances SND.UNA, and a
    duplicate ACK or SACK after it (step 3a) says the loss was real.  Recovery ends once
    SND.UNA reaches ``recover``; meanwhile cwnd grows by what each ACK delivered."""
    s = core.tcp_seg
    t = core.tcb
    h = t.hot
    ack = s[SEG_ACK]
    recovered = seq_geq(ack, h.recover[cid])
    if acked > 0 and undo_may(t, cid, delayed):
        _undo_loss(core, cid, False, delivered, now)  # Eifel (RFC 3522)
        return
    if h.frto[cid] != 0:
        if orig_acked:
            _undo_loss(core, cid, True, delivered, now)  # step 3b
            return
        if seq_gt(h.snd_nxt[cid], h.recover[cid]):
            if sack_new > 0 or is_dup:
                h.frto[cid] = 0  # step 3a: new data went out and the hole is still there
        elif acked > 0 and not recovered:
            # step 2b: new data, if the send queue and the peer's window have some (sent by
            # tcp_output.tcp_push once cwnd has grown below); else back to retransmitting
            h.recover[cid] = h.snd_nxt[cid]
            if h.snd_q_unsent[cid] >= 0 and seq_gt(
                (np.int64(h.snd_una[cid]) + np.int64(h.snd_wnd[cid])) & M32, h.snd_nxt[cid]
            ):
                h.frto[cid] = FRTO_NEW_DATA
            else:
                h.frto[cid] = 0
    if recovered:
        h.tflags[cid] &= ~np.uint32(TF_IN_LOSS)
        h.dupacks[cid] = 0
        h.frto[cid] = 0
        if undo_may(t, cid, delayed):  # Linux tcp_try_undo_recovery in its Loss state
            core.stats[STAT_TCP_UNDO_LOSS] += 1
            _undo(core, cid, False)
        else:
            rack_recovery_done(t, cid)
        _retrans_stamp_cleanup(core, cid)
    if acked > 0:
        _grow_cwnd(t, cid, delivered, now)


@kernel
def _undo_loss(core, cid, frto_undo, delivered, now):
    """The RTO was spurious (RFC 3522 Eifel detection, or RFC 5682 F-RTO: ``frto_undo``; RFC
    4015's response; Linux tcp_try_undo_loss): the window comes back, nothing more is taken for
    lost, and with SACK (or after F-RTO) RTO recovery is over -- without, Linux keeps its Loss
    state until SND.UNA passes ``recover``.  The ACK then grows cwnd by what it delivered."""
    t = core.tcb
    h = t.hot
    core.stats[STAT_TCP_UNDO_LOSS] += 1
    if frto_undo:
        core.stats[STAT_TCP_SPURIOUS_RTOS] += 1
    _undo(core, cid, True)
    h.rexmit_count[cid] = 0
    h.frto[cid] = 0
    if frto_undo or (h.tflags[cid] & TF_SACK_OK) != 0:
        h.tflags[cid] &= ~np.uint32(TF_IN_LOSS)
        cc_leave_recovery(t, cid)
    _grow_cwnd(t, cid, delivered, now)


@kernel
def tcp_enter_fast_recovery(core, cid, delivered, mark_head, ece, now):
    """Start fast recovery (RFC 5681 §3.2 step 2, RFC 6675 §5 step 4, RFC 6937 §3.1): reduce
    ssthresh from FlightSize without what limited transmit sent, start a scoreboard episode,
    mark the first unacknowledged segment lost (``mark_head``: not when RACK has marked what is
    lost, as Linux) and let PRR's first quota (``delivered`` bytes this event delivered) send
    the fast retransmission.  The reduction may later be undone (fsdp.tcp.undo), unless the ACK
    also echoed congestion (``ece``, RFC 3168) or an ECN reduction was under way, which recovery
    continues rather than reducing again (Linux tcp_enter_recovery).  From an ACK or the RACK
    reordering timer."""
    t = core.tcb
    h = t.hot
    pool = core.pool
    core.stats[STAT_TCP_RECOVERY_EPISODES] += 1
    core.stats[STAT_TCP_FAST_RETRANS] += 1
    # a new episode, which an undo may revert; its first retransmission dates it (Linux
    # tcp_enter_recovery: tcp_retrans_stamp_cleanup, tcp_init_undo)
    _retrans_stamp_cleanup(core, cid)
    in_cwr = cc_in_cwr(t, cid)
    undo_init(t, cid, 0 if in_cwr or ece else cc_current_ssthresh(t, cid))
    if in_cwr:
        cc_cwr_to_recovery(t, cid)
    else:
        flight = tcp_flight(core, cid) - np.int64(h.prr_out[cid])
        cc_enter_recovery(t, cid, flight, now)
    if (h.tflags[cid] & TF_SACK_OK) != 0:
        core.stats[STAT_TCP_SACK_RECOVERY] += 1
    scoreboard_enter_recovery(pool, t, cid)
    if mark_head:
        scoreboard_mark_lost(pool, t, cid, h.snd_q_head[cid])
    cc_prr_ack(t, cid, delivered, tcp_recovery_pipe(core, cid), False)


@kernel_inline
def _reno_delivered(core, cid, acked, is_dup):
    """Without SACK, what an ACK in fast recovery delivered (Linux tcp_add_reno_sack /
    tcp_remove_reno_sacks, in bytes): a duplicate ACK one segment, counted in ``dupacks``
    while the flight holds more than it; a partial ACK the segments it covers beyond those the
    duplicate ACKs already stood for (at least one), which it takes off ``dupacks`` but one."""
    h = core.tcb.hot
    mss = np.int64(h.mss[cid])
    if mss <= 0:
        return np.int64(0)
    n = np.int64(h.dupacks[cid])
    if acked > 0:
        segs = (acked + mss - 1) // mss
        h.dupacks[cid] = 0 if segs - 1 >= n else n - (segs - 1)
        d = segs - n
        return (d if d > 1 else np.int64(1)) * mss
    if not is_dup or n >= 0x7FFF:
        return np.int64(0)
    before = tcp_reno_sacked(core, cid)
    h.dupacks[cid] = n + 1
    return tcp_reno_sacked(core, cid) - before


# --- receiving data (RFC 9293 §3.10.7.4 seventh check; Linux tcp_data_queue) -------------------
@kernel_inline
def _event_data_recv(core, cid, fid, now):
    """Linux tcp_event_data_recv: the delayed-ACK clock (ato) follows the inter-arrival time;
    the first data segment starts quick-ACK mode; the receive window may grow.  ``fid`` is the
    segment, already queued."""
    h = core.tcb.hot
    drs_rtt_measure(core, cid, now)
    if h.ack_ato[cid] == 0:
        tcp_enter_quickack(core, cid)
    else:
        m = now - h.ack_lrcv_us[cid]
        ato = np.int64(h.ack_ato[cid])
        if m <= TCP_ATO_MIN_US // 2:
            h.ack_ato[cid] = (ato >> 1) + TCP_ATO_MIN_US // 2
        elif m < ato:
            a = (ato >> 1) + m
            r = tcp_rto_us(core, cid)
            h.ack_ato[cid] = a if a < r else r
        elif m > tcp_rto_us(core, cid):
            q = h.ack_quick[cid]
            tcp_enter_quickack(core, cid)
            if h.ack_quick[cid] < q:
                h.ack_quick[cid] = q
    h.ack_lrcv_us[cid] = now
    n = core.tcp_seg[SEG_LEN]
    if n >= 128:
        _grow_window(core, cid, fid, n)


@kernel_inline
def _ecn_check_ce(core, cid):
    """A data segment arrived (in order or not): its ECN field may demand ECE of us (RFC 3168
    §6.1.3), and a first CE mark or a likely retransmission is ACKed quickly (Linux
    tcp_ecn_check_ce; fsdp.tcp.ecn)."""
    ip_ecn = core.tcp_seg[SEG_ECN]
    if ip_ecn == IPTOS_ECN_CE and ecn_on(core.tcb, cid):
        core.stats[STAT_TCP_ECN_CE_RECV] += 1
    if ecn_check_ce(core.tcb, cid, ip_ecn) != ECN_RX_QUIET:
        _enter_quickack(core, cid, ECN_QUICKACKS)


@kernel_inline
def _grow_window(core, cid, fid, n):
    """Linux tcp_grow_window: rcv_ssthresh (the ceiling of the window offered) grows by two
    segments per segment whose buffer charge is what a full segment's is, up to the clamp and
    the space left; a segment with a poor payload-to-charge ratio grows it less or not at all."""
    h = core.tcb.hot
    ssth = np.int64(h.rcv_ssthresh[cid])
    space = tcp_free_space(core, cid)
    clamp = np.int64(core.tcb.cold.window_clamp[cid])
    room = (clamp if clamp < space else space) - ssth
    if room <= 0:
        return
    ratio = np.int64(h.rcv_ratio[cid])
    ts_win = (rx_truesize(core.pool, fid) * ratio) >> 8
    incr = np.int64(0)
    if ts_win <= n:
        incr = 2 * tcp_advmss(core, cid)
    else:
        # __tcp_grow_window: a small segment earns growth only while the window is small
        tsz = ts_win >> 1
        win = ((np.int64(core.cfg[CFG_TCP_RCVBUF_MAX]) * ratio) >> 8) >> 1
        while ssth <= win:
            if tsz <= n:
                incr = 2 * np.int64(h.rcv_mss[cid])
                break
            tsz >>= 1
            win >>= 1
    if incr > 0:
        if incr < 2 * n:
            incr = 2 * n
        h.rcv_ssthresh[cid] = ssth + (room if room < incr else incr)
        h.ack_quick[cid] |= 1


@kernel_inline
def _measure_rcv_mss(core, cid, fid):
    """Linux tcp_measure_rcv_mss: the largest segment seen, up to our MSS; a segment larger
    than the current guess also measures the payload-to-buffer-charge ratio (scaling_ratio),
    which sets how much window SO_RCVBUF is worth, and the window clamp with it."""
    h = core.tcb.hot
    c = core.tcb.cold
    n = core.tcp_seg[SEG_LEN]
    adv = tcp_advmss(core, cid)
    rm = np.int64(h.rcv_mss[cid])
    if n < rm:
        return
    if n != rm:
        val = (n << 8) // rx_truesize(core.pool, fid)
        if val < 1:
            val = np.int64(1)
        if val > 255:
            val = np.int64(255)
        if val != np.int64(h.rcv_ratio[cid]):
            h.rcv_ratio[cid] = val
            # tcp_set_window_clamp(tcp_win_from_space(sk_rcvbuf))
            new = (np.int64(h.rcv_buf[cid]) * val) >> 8
            if new < 1152:
                new = np.int64(1152)  # SOCK_MIN_RCVBUF / 2
            old = np.int64(c.window_clamp[cid])
            if new != old:
                c.window_clamp[cid] = new
                ssth = np.int64(h.rcv_ssthresh[cid])
                if new < old:
                    if ssth > new:
                        h.rcv_ssthresh[cid] = new
                else:
                    w = np.int64(h.rcv_wnd[cid])
                    if w > new:
                        w = new
                    if w > ssth:
                        h.rcv_ssthresh[cid] = w
    h.rcv_mss[cid] = n if n < adv else adv


@kernel_inline
def _rcv_fin(core, cid, now):
    """Linux tcp_fin (RFC 9293 §3.10.7.4 eighth check): the peer's FIN is in sequence."""
    t = core.tcb
    h = t.hot
    h.tflags[cid] |= np.uint32(TF_FIN_RECEIVED)
    tcb_touch(t, cid)  # EOF: readable
    st = h.state[cid]
    reass_free(core.pool, t, cid)
    sack_reset(core.sack, cid)
    if st == TCPS_SYN_RECEIVED or st == TCPS_ESTABLISHED:
        set_state(core, cid, TCPS_CLOSE_WAIT)
        h.tflags[cid] |= np.uint32(TF_PINGPONG | TF_DELACK)  # the ACK waits for our FIN a while
    elif st == TCPS_FIN_WAIT_1:
        h.tflags[cid] |= np.uint32(TF_ACK_NOW)
        set_state(core, cid, TCPS_CLOSING)
    elif st == TCPS_FIN_WAIT_2:
        tw = tcp_enter_time_wait(core, cid, now)
        if tw >= 0:
            h.tflags[tw] |= np.uint32(TF_ACK_NOW)  # ACKed from TIME-WAIT, at once
        return tw
    return np.int64(cid)


@kernel
def _data_queue(core, cid, fid, now):
    """Queue the segment's text and FIN; returns the TCB id that lives on (a TIME-WAIT TCB may
    replace it) or -1 if the connection ended."""
    s = core.tcp_seg
    t = core.tcb
    h = t.hot
    pool = core.pool
    seq = s[SEG_SEQ]
    n = s[SEG_LEN]
    fin = (s[SEG_FLAGS] & TH_FIN) != 0
    sack_on = (h.tflags[cid] & TF_SACK_OK) != 0
    if n == 0 and not fin:
        frame_free(pool, fid)
        return np.int64(cid)
    if sack_on:
        sack_dsack_clear(core.sack, cid)
    rn = np.int64(h.rcv_nxt[cid])
    end = (seq + n + (1 if fin else 0)) & M32
    if seq == rn:
        if tcp_receive_window(core, cid) == 0 and n > 0:
            # zero window: drop (a FIN alone is still taken), ACK at once (Linux)
            core.stats[STAT_TCP_RCV_QUEUE_FULL] += 1
            tcp_enter_quickack(core, cid)
            h.tflags[cid] |= np.uint32(TF_ACK_NOW)
            frame_free(pool, fid)
            return np.int64(cid)
        h.tflags[cid] |= np.uint32(TF_DELACK)  # an ACK is owed (Linux inet_csk_schedule_ack)
        if n > 0:
            pool.tag[fid] = seq
            pool.next[fid] = -1
            pool.flags[fid] = pool.flags[fid] & ~np.uint32(FRAME_F_TCP_FIN)
            rcvq_charge(pool, h, cid, fid)
            tail = h.rcv_q_tail[cid]
            if tail >= 0:
                pool.next[tail] = fid
            else:
                h.rcv_q_head[cid] = fid
            h.rcv_q_tail[cid] = fid
            h.rcv_q_bytes[cid] += n
            tcb_touch(core.tcb, cid)  # readable (fsdp.core.loop.poll_status)
            core.tcb.cold.bytes_received[cid] += n
            h.rcv_nxt[cid] = (rn + n) & M32
            # only data drives the delayed-ACK clock (Linux: "if (skb->len)
            # tcp_event_data_recv()", after queueing); a bare FIN before any data keeps ato 0
            _measure_rcv_mss(core, cid, fid)
            _event_data_recv(core, cid, fid, now)
            _ecn_check_ce(core, cid)
        else:
            frame_free(pool, fid)
        had_ooo = h.ooo_head[cid] >= 0
        fin_now = fin
        if had_ooo and not fin:
            r = reass_deliver_sack(pool, t, core.sack, cid) if sack_on else reass_deliver(
                pool, t, cid)
            if r >= 0 and (r & REASS_FIN_REACHED) != 0:
                fin_now = True
                h.rcv_nxt[cid] = (np.int64(h.rcv_nxt[cid]) - 1) & M32  # _rcv_fin adds it
            if h.ooo_head[cid] < 0:
                h.tflags[cid] |= np.uint32(TF_ACK_NOW)  # RFC 5681 §4.2: a hole filled
        if had_ooo and h.ooo_head[cid] >= 0:
            h.tflags[cid] |= np.uint32(TF_ACK_NOW)
        if fin_now:
            h.rcv_nxt[cid] = (np.int64(h.rcv_nxt[cid]) + 1) & M32
            return _rcv_fin(core, cid, now)
        return np.int64(cid)
    if seq_leq(end, rn):
        # entirely old (a retransmission): D-SACK and ACK at once (RFC 2883, RFC 9293)
        core.stats[STAT_TCP_DUP_DATA] += 1
        if sack_on and core.cfg[CFG_TCP_DSACK] != 0:
            sack_on_duplicate(core.sack, cid, seq, end, rn)
            core.stats[STAT_TCP_DSACKS_SENT] += 1
        tcp_enter_quickack(core, cid)
        h.tflags[cid] |= np.uint32(TF_ACK_NOW)
        frame_free(pool, fid)
        return np.int64(cid)
    if seq_lt(seq, rn):
        # partly old: report the old part, keep the new part (RFC 9293: "trim")
        if sack_on and core.cfg[CFG_TCP_DSACK] != 0:
            sack_on_duplicate(core.sack, cid, seq, rn, rn)
            core.stats[STAT_TCP_DSACKS_SENT] += 1
        k = seq_diff(rn, seq)
        pool.off[fid] += k
        pool.length[fid] -= k
        s[SEG_SEQ] = rn
        s[SEG_LEN] = n - k
        pool.tag[fid] = rn
        if tcp_receive_window(core, cid) == 0:
            h.tflags[cid] |= np.uint32(TF_ACK_NOW)
            frame_free(pool, fid)
            return np.int64(cid)
        return _data_queue(core, cid, fid, now)
    # out of order (RFC 9293: "segments with higher beginning sequence numbers SHOULD be held")
    if not seq_lt(seq, (rn + tcp_receive_window(core, cid)) & M32):
        core.stats[STAT_TCP_OUT_OF_WINDOW] += 1
        tcp_enter_quickack(core, cid)
        h.tflags[cid] |= np.uint32(TF_ACK_NOW)
        frame_free(pool, fid)
        return np.int64(cid)
    _ecn_check_ce(core, cid)
    # Linux 6.17+ tcp_data_queue_ofo: out-of-order segments measure the peer's MSS and the
    # payload ratio too ("tcp: call tcp_measure_rcv_mss() for ooo packets")
    _measure_rcv_mss(core, cid, fid)
    mx = core.cfg[CFG_TCP_MAX_REASS]
    if mx <= 0:
        mx = np.int64(h.rcv_buf[cid])
    pool.tag[fid] = seq
    ssthresh_before = h.rcv_ssthresh[cid]
    quick_before = h.ack_quick[cid]
    if sack_on:
        # Linux tcp_data_queue_ofo: a segment it holds grows the window, before it is charged
        # (for non-SACK flows it does not: "do not grow window to force DUPACK")
        _grow_window(core, cid, fid, n)
        r = reass_insert_sack(pool, t, core.sack, cid, fid, seq, n, fin, mx)
    else:
        r = reass_insert(pool, t, cid, fid, seq, n, fin, mx)
    if r <= 0 and n > 0:
        # dropped, or every byte already held: Linux grows nothing for it
        h.rcv_ssthresh[cid] = ssthresh_before
        h.ack_quick[cid] = quick_before
    if r < 0:
        core.stats[STAT_TCP_OFO_DROPPED] += 1
    else:
        core.stats[STAT_TCP_OFO_QUEUED] += 1
        drs_ofo_queued(core, cid)
    h.tflags[cid] |= np.uint32(TF_ACK_NOW)  # RFC 5681 §4.2: out-of-order data, ACK at once
    return np.int64(cid)


@kernel_inline
def _dropped_whole(core, cid):
    """Data reaching beyond the receive window while data waits to be read: Linux drops such
    a segment whole before it looks at URG (tcp_sequence; only its ACK is used here)."""
    s = core.tcp_seg
    h = core.tcb.hot
    if s[SEG_LEN] <= 0 or h.rcv_q_bytes[cid] <= 0:
        return False
    wnd_end = (np.int64(h.rcv_nxt[cid]) + tcp_receive_window(core, cid)) & M32
    return seq_gt((s[SEG_SEQ] + s[SEG_LEN]) & M32, wnd_end)


@kernel
def _after_established_segment(core, cid, fid, now):
    """URG, text and FIN of an accepted segment (RFC 9293 §3.10.7.4 sixth to eighth checks);
    returns the connection that lives on (a TIME-WAIT TCB may take over) or -1."""
    s = core.tcp_seg
    h = core.tcb.hot
    st = h.state[cid]
    if ((s[SEG_FLAGS] & TH_URG) != 0 or (h.tflags[cid] & TF_URG_DATA) != 0) and not (
        _dropped_whole(core, cid)
    ):
        # "sixth, check the URG bit" (fsdp.tcp.urgent)
        tcp_urg(core, cid, fid, s[SEG_SEQ], s[SEG_LEN], s[SEG_FLAGS], s[SEG_URP])
    has_text = s[SEG_LEN] > 0 or (s[SEG_FLAGS] & TH_FIN) != 0
    if has_text and (st == TCPS_CLOSE_WAIT or st == TCPS_CLOSING or st == TCPS_LAST_ACK):
        # "This should not occur since a FIN has been received": ignore the text
        if not seq_lt(s[SEG_SEQ], h.rcv_nxt[cid]):
            frame_free(core.pool, fid)
            return cid
    if has_text and (h.tflags[cid] & TF_RCV_SHUTDOWN) != 0 and (
        st == TCPS_FIN_WAIT_1 or st == TCPS_FIN_WAIT_2
        or st == TCPS_CLOSING or st == TCPS_LAST_ACK or st == TCPS_CLOSE_WAIT
    ):  # fmt: skip
        # RFC 1122 §4.2.2.13 / RFC 9293 §3.10.7.4: new data after close() -> reset
        end = (s[SEG_SEQ] + s[SEG_LEN]) & M32
        if s[SEG_LEN] > 0 and seq_gt(end, h.rcv_nxt[cid]):
            core.stats[STAT_TCP_ABORT_ON_DATA] += 1
            core.stats[STAT_TCP_DATA_AFTER_SHUTDOWN] += 1
            _reply_reset(core)
            frame_free(core.pool, fid)
            tcp_set_closed(core, cid, 104)
            return np.int64(-1)
    return _data_queue(core, cid, fid, now)


# --- synchronized states (RFC 9293 §3.10.7.4) ---------------------------------------------------
@kernel
def _reset_connection(core, cid, now):
    """RFC 9293 §3.10.7.4 second check: a RST that passed RFC 5961 §3.2 ends the connection."""
    h = core.tcb.hot
    st = h.state[cid]
    core.stats[STAT_TCP_RST_ACCEPTED] += 1
    if st == TCPS_SYN_RECEIVED:
        core.stats[STAT_TCP_ATTEMPT_FAILS] += 1
        err = 111  # ECONNREFUSED (a passive child is just freed)
    elif st == TCPS_CLOSE_WAIT:
        core.stats[STAT_TCP_ESTAB_RESETS] += 1
        err = 32  # EPIPE: Linux's tcp_reset in CLOSE_WAIT
    elif st == TCPS_ESTABLISHED:
        core.stats[STAT_TCP_ESTAB_RESETS] += 1
        err = 104  # ECONNRESET
    else:
        err = 104
    if st == TCPS_LAST_ACK or st == TCPS_CLOSING or st == TCPS_TIME_WAIT:
        err = 0  # "enter the CLOSED state, delete the TCB" with no error to report
    tcp_set_closed(core, cid, err)


@kernel
def _sync_input(core, cid, fid, now):
    s = core.tcp_seg
    t = core.tcb
    h = t.hot
    pool = core.pool
    flags = s[SEG_FLAGS]
    seq = s[SEG_SEQ]
    end = _seg_end(core)
    st = h.state[cid]
    # RFC 7323 §5.3 PAWS (before the sequence check, as Linux)
    if (h.tflags[cid] & TF_TS_OK) != 0 and _has_ts(core):
        if _paws_reject(core, cid, now, 1) and not _disordered_ack(core, cid):
            if (flags & TH_RST) == 0:
                core.stats[STAT_TCP_PAWS_DROPPED] += 1
                if (flags & TH_SYN) != 0:
                    core.stats[STAT_TCP_SYN_CHALLENGE] += 1
                    tcp_send_challenge_ack(core, cid, now)
                elif not _oow_limited_for_segment(core, cid, now):
                    _send_dupack(core, cid, now)
                frame_free(pool, fid)
                return np.int64(cid)
    # first, check the sequence number (Linux tcp_sequence)
    rn = np.int64(h.rcv_nxt[cid])
    right = (rn + tcp_receive_window(core, cid)) & M32
    reset_check = seq == ((rn - 1) & M32) and (
        st == TCPS_CLOSE_WAIT or st == TCPS_LAST_ACK or st == TCPS_CLOSING
    )
    if seq_lt(end, h.rcv_wup[cid]) or seq_gt(seq, right):
        core.stats[STAT_TCP_OUT_OF_WINDOW] += 1
        if (flags & TH_RST) == 0:
            if (flags & TH_SYN) != 0:
                core.stats[STAT_TCP_SYN_CHALLENGE] += 1
                tcp_send_challenge_ack(core, cid, now)
            elif not _oow_limited_for_segment(core, cid, now):
                _send_dupack(core, cid, now)
            frame_free(pool, fid)
            return np.int64(cid)
        frame_free(pool, fid)
        if reset_check:
            _reset_connection(core, cid, now)
        else:
            core.stats[STAT_TCP_RST_IGNORED] += 1
        return np.int64(cid)
    # second, check the RST bit (RFC 5961 §3.2): exact match resets, in window challenges
    if (flags & TH_RST) != 0:
        frame_free(pool, fid)
        exact = seq == rn or reset_check
        if not exact and (h.tflags[cid] & TF_SACK_OK) != 0:
            sk = core.sack
            nb = sk.num[cid]
            if nb > 0:
                base = cid * SACK_MAX_BLOCKS
                mx = np.int64(sk.right[base])
                for k in range(1, nb):
                    r = np.int64(sk.right[base + k])
                    if seq_gt(r, mx):
                        mx = r
                exact = seq == mx
        if exact:
            _reset_connection(core, cid, now)
        else:
            core.stats[STAT_TCP_RST_IGNORED] += 1
            tcp_send_challenge_ack(core, cid, now)
        return np.int64(cid)
    # fourth, check the SYN bit (RFC 5961 §4.2: challenge ACK in any synchronized state)
    if (flags & TH_SYN) != 0:
        if st == TCPS_SYN_RECEIVED and (h.tflags[cid] & TF_PASSIVE) == 0 and (
            flags & TH_ACK) != 0 and ((seq + 1) & M32) == rn and s[SEG_LEN] == 0 and (
                s[SEG_ACK] == np.int64(h.snd_nxt[cid])):
            # the peer's SYN-ACK in a simultaneous open: acknowledges our SYN
            s[SEG_FLAGS] = flags & ~np.int64(TH_SYN)
            s[SEG_SEQ] = rn
            flags = s[SEG_FLAGS]
            seq = rn
        else:
            core.stats[STAT_TCP_SYN_CHALLENGE] += 1
            tcp_send_challenge_ack(core, cid, now)
            frame_free(pool, fid)
            return np.int64(cid)
    # fifth, check the ACK field
    if (flags & TH_ACK) == 0:
        core.stats[STAT_TCP_NO_ACK_DROPPED] += 1
        frame_free(pool, fid)
        return np.int64(cid)
    h.last_rcv_us[cid] = now
    was_established = st == TCPS_ESTABLISHED
    if st == TCPS_SYN_RECEIVED:
        ack = s[SEG_ACK]
        if not (seq_gt(ack, h.snd_una[cid]) and seq_leq(ack, h.snd_max[cid])):
            core.stats[STAT_TCP_BAD_ACK_SYN_RECV] += 1
            _reply_reset(core)  # <SEQ=SEG.ACK><CTL=RST>
            frame_free(pool, fid)
            return np.int64(cid)
        _syn_recv_established(core, cid, now)
        st = TCPS_ESTABLISHED
    r = tcp_ack(core, cid, now)
    if r == ACK_BAD:
        frame_free(pool, fid)
        return np.int64(cid)
    if ecn_accept_cwr(t, cid, flags) and s[SEG_LEN] > 0:
        h.tflags[cid] |= np.uint32(TF_ACK_NOW)  # the sender's window may be one segment
    if was_established and (h.tflags[cid] & TF_TS_OK) != 0 and _has_ts(core):
        # Linux tcp_rcv_established, after tcp_ack: the receiver's RTT from the echo
        n_seq = s[SEG_LEN] + (1 if (flags & TH_FIN) != 0 else 0)  # end_seq - seq
        drs_rtt_measure_ts(core, cid, now, core.tcp_opt[TOPT_TS_ECR], n_seq)
    st = h.state[cid]
    fin_acked = (h.tflags[cid] & TF_FIN_SENT) != 0 and np.int64(h.snd_una[cid]) == np.int64(
        h.snd_max[cid])
    if st == TCPS_FIN_WAIT_1 and fin_acked:
        set_state(core, cid, TCPS_FIN_WAIT_2)
        if (h.tflags[cid] & TF_ORPHAN) != 0:
            # Linux: an orphan waits tcp_fin_timeout for the peer's FIN; data after close()
            # that does not end in sequence aborts it
            if s[SEG_LEN] > 0 and seq_gt((seq + s[SEG_LEN]) & M32, h.rcv_nxt[cid]) and (
                    (flags & TH_FIN) == 0 or seq != np.int64(h.rcv_nxt[cid])):
                core.stats[STAT_TCP_ABORT_ON_DATA] += 1
                _reply_reset(core)
                frame_free(pool, fid)
                tcp_set_closed(core, cid, 0)
                return np.int64(cid)
            arm(core, cid, TIMER_FIN_WAIT_2, now + core.cfg[CFG_TCP_FIN_TIMEOUT_US])
        st = TCPS_FIN_WAIT_2
    elif st == TCPS_CLOSING and fin_acked:
        frame_free(pool, fid)
        tcp_enter_time_wait(core, cid, now)
        return np.int64(cid)
    elif st == TCPS_LAST_ACK and fin_acked:
        frame_free(pool, fid)
        tcp_set_closed(core, cid, 0)
        return np.int64(cid)
    return _after_established_segment(core, cid, fid, now)


@kernel
def _passive_synrecv_input(core, cid, fid, now):
    """A passive open's SYN-RECEIVED (Linux tcp_check_req).  Returns True if the segment goes
    on to the synchronized-state processing (the final ACK)."""
    s = core.tcp_seg
    t = core.tcb
    h = t.hot
    c = t.cold
    pool = core.pool
    flags = s[SEG_FLAGS]
    seq = s[SEG_SEQ]
    end = _seg_end(core)
    paws = False
    if (h.tflags[cid] & TF_TS_OK) != 0 and _has_ts(core):
        paws = _paws_reject(core, cid, now, 1) and (flags & TH_RST) == 0
    irs = np.int64(c.irs[cid])
    if seq == irs and (flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN)) == TH_SYN and not paws:
        # a retransmitted SYN: the SYN-ACK again, timer restarted
        if not tcp_oow_rate_limited(core, cid, now):
            h.tflags[cid] |= np.uint32(TF_SEND_SYN)
        backoff = np.int64(h.rexmit_count[cid])
        tmo = core.cfg[CFG_TCP_RTO_INITIAL_US] << backoff
        mx = core.cfg[CFG_TCP_RTO_MAX_US]
        arm(core, cid, TIMER_SYNACK, now + (tmo if tmo < mx else mx))
        frame_free(pool, fid)
        return False
    if (flags & TH_ACK) != 0 and s[SEG_ACK] != ((np.int64(c.iss[cid]) + 1) & M32):
        core.stats[STAT_TCP_BAD_ACK_SYN_RECV] += 1
        if (flags & TH_RST) == 0:
            _reply_reset(core)  # "<SEQ=SEG.ACK><CTL=RST>"
        frame_free(pool, fid)
        return False
    rn = np.int64(h.rcv_nxt[cid])
    e_win = (rn + np.int64(h.rcv_wnd[cid])) & M32
    in_win = seq == rn or (seq_gt(end, rn) and seq_lt(seq, e_win)) or (seq == e_win and seq == end)
    if paws or not in_win:
        if (flags & TH_RST) == 0 and not tcp_oow_rate_limited(core, cid, now):
            # Linux answers for the request, not a socket: tcp_v4_reqsk_send_ack
            tcp_send_reply_ack(core, cid, s[SEG_TOS], now)
        if paws:
            core.stats[STAT_TCP_PAWS_DROPPED] += 1
        else:
            core.stats[STAT_TCP_OUT_OF_WINDOW] += 1
        frame_free(pool, fid)
        return False
    if _has_ts(core) and (h.tflags[cid] & TF_TS_OK) != 0 and not seq_gt(seq, rn):
        _store_ts_recent(core, cid, now)
    if seq == irs:
        flags &= ~np.int64(TH_SYN)  # the SYN itself is outside the window
        s[SEG_FLAGS] = flags
    if (flags & TH_RST) != 0 and seq != rn:
        # RFC 5961 §3.2 holds in SYN-RECEIVED too (as Linux): a RST in the window but not at
        # RCV.NXT draws a challenge ACK and the handshake goes on
        core.stats[STAT_TCP_RST_IGNORED] += 1
        tcp_send_challenge_ack(core, cid, now)
        frame_free(pool, fid)
        return False
    if (flags & (TH_RST | TH_SYN)) != 0:
        # embryonic reset: a RST ends it, a SYN is answered with RST and ends it
        core.stats[STAT_TCP_ATTEMPT_FAILS] += 1
        if (flags & TH_RST) == 0:
            _reply_reset(core)
        else:
            core.stats[STAT_TCP_RST_ACCEPTED] += 1
        frame_free(pool, fid)
        tcp_conn_free(core, cid)
        return False
    if (flags & TH_ACK) == 0:
        frame_free(pool, fid)
        return False
    lid = c.listener[cid]
    if lid >= 0 and listen_accept_queue_full(core.listen, lid):
        core.stats[STAT_TCP_LISTEN_OVERFLOWS] += 1
        core.stats[STAT_TCP_LISTEN_DROPS] += 1
        if core.cfg[CFG_TCP_ABORT_ON_OVERFLOW] != 0:
            _reply_reset(core)
            frame_free(pool, fid)
            tcp_conn_free(core, cid)
        else:
            frame_free(pool, fid)  # the SYN-ACK timer will offer the connection again
        return False
    return True


@kernel
def tcp_segment(core, cid, fid, now):
    """A segment for connection ``cid`` (found in the flow table).  Returns the connection whose
    output is owed (``cid``, or the TIME-WAIT TCB that took over its 4-tuple), -1, or
    ``SEG_REOPEN`` when a SYN reopens a TIME-WAIT 4-tuple (the frame is then still the
    caller's)."""
    t = core.tcb
    h = t.hot
    t.cold.segs_in[cid] += 1
    st = h.state[cid]
    if st == TCPS_SYN_SENT:
        _synsent_input(core, cid, fid, now)
        return np.int64(cid)
    if st == TCPS_TIME_WAIT:
        if _timewait_input(core, cid, fid, now) == 1:
            return np.int64(SEG_REOPEN)
        return np.int64(cid)
    if st == TCPS_SYN_RECEIVED and (h.tflags[cid] & TF_PASSIVE) != 0:
        if not _passive_synrecv_input(core, cid, fid, now):
            return np.int64(cid)
    return _sync_input(core, cid, fid, now)


@kernel
def tcp_time_wait_reopen(core, cid, lid, now):
    """RFC 6191 / Linux TCP_TW_SYN: the TIME-WAIT TCB gives way to a new SYN-RECEIVED
    connection on listener ``lid`` whose ISS is beyond the old sequence space; returns it (or
    -1)."""
    h = core.tcb.hot
    isn = (np.int64(h.snd_nxt[cid]) + 65535 + 2) & M32
    if isn == 0:
        isn = np.int64(1)
    core.stats[STAT_TCP_TW_REOPENED] += 1
    tcp_conn_free(core, cid)
    ls = core.listen
    if listen_accept_queue_full(ls, lid) or listen_syn_queue_full(ls, lid):
        core.stats[STAT_TCP_LISTEN_DROPS] += 1
        return np.int64(-1)
    child = _syn_received_child(core, lid, -1, now, isn, False)
    if child < 0:
        core.stats[STAT_TCP_LISTEN_DROPS] += 1
        return np.int64(-1)
    core.stats[STAT_TCP_PASSIVE_OPENS] += 1
    h.rtt_start_us[child] = now
    h.tflags[child] |= np.uint32(TF_RTT_TIMING | TF_SEND_SYN)
    arm(core, child, TIMER_SYNACK, now + core.cfg[CFG_TCP_RTO_INITIAL_US])
    return child
