"""Connection lifecycle: creating a TCB, ending it (CLOSED, RFC 9293 §3.10.7 "delete the TCB"),
TIME-WAIT with a bounded table, and the rules for who frees what.

Ownership.  A TCB belongs to its socket (``cold.owner >= 0``), to a listener until ``accept()``
(``cold.listener >= 0``, on one of the listener's lists), or to nobody: an *orphan*
(``TF_ORPHAN``: the application closed it; the engine finishes the close and frees it, as Linux
does for SOCK_DEAD sockets).  The engine never frees a socket-owned TCB: a connection that ends
while a socket owns it stays allocated in CLOSED, with its pending error and whatever received
data the application has not read, until ``tcp_close``.

TIME-WAIT (RFC 9293 §3.6.1, 2*MSL = ``tcp_time_wait``, Linux's 60 s) is always an orphan TCB:
an orphan enters it in place; a socket-owned connection hands its 4-tuple to a new TCB and
itself goes CLOSED (as Linux replaces the socket by an inet_timewait_sock), so the socket can
still read what arrived before the FIN.  TIME-WAIT TCBs form a FIFO (``V_TCP_TW_*``, linked
through ``cold.link_prev/next``); at ``tcp_max_tw_buckets`` the oldest is recycled.

Invariant: a TCB is in the flow table exactly while ``port_refs`` counts it (a connection that
reaches CLOSED leaves both, as Linux releases the port at TCP_CLOSE).
"""

import numpy as np

from fsdp.core.config import (
    CFG_TCP_CC,
    CFG_TCP_KEEPALIVE_INTVL_US,
    CFG_TCP_KEEPALIVE_PROBES,
    CFG_TCP_KEEPALIVE_TIME_US,
    CFG_TCP_MAX_TW,
    CFG_TCP_MSS,
    CFG_TCP_RCVBUF,
    CFG_TCP_RCVBUF_MAX,
    CFG_TCP_RTO_INITIAL_US,
    CFG_TCP_SNDBUF,
    CFG_TCP_TIME_WAIT_US,
)
from fsdp.core.stats import (
    STAT_TCP_CONN_TABLE_FULL,
    STAT_TCP_TIME_WAIT_ENTERED,
    STAT_TCP_TW_RECYCLED,
)
from fsdp.core.timerwheel import TIMER_TIMEWAIT
from fsdp.core.vars import V_TCP_TW_COUNT, V_TCP_TW_HEAD, V_TCP_TW_TAIL
from fsdp.pool.pool import frame_free_chain
from fsdp.tcp.flowtable import flow_insert, flow_lookup, flow_remove
from fsdp.tcp.isn import SECRET_ISN_K0, SECRET_ISN_K1, siphash24_2u64
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.listen import listen_acc_remove, listen_syn_remove
from fsdp.tcp.reass import reass_free, sack_reset
from fsdp.tcp.tcb import (
    TCPS_CLOSED,
    TCPS_SYN_RECEIVED,
    TCPS_TIME_WAIT,
    TF_ORPHAN,
    TF_PMTU_LOCKED,
    TF_RCV_SHUTDOWN,
    TF_SND_SHUTDOWN,
    TF_TMPL_MAC,
    TF_TS_OK,
    TF_WSCALE_OK,
    tcb_alloc,
    tcb_free,
    tcb_touch,
)
from fsdp.tcp.tcbops import arm, disarm_all, set_state
from fsdp.tcp.tcp_output import TMPL_SIZE, tcp_tmpl_init

M32 = 0xFFFFFFFF
TCP_MAX_WSCALE = 14


@kernel_inline
def tcp_wscale_for(rcvbuf_max):
    """The window scale we offer: enough to advertise the largest receive buffer (Linux
    tcp_select_initial_window: ilog2(max(tcp_rmem[2], rmem_max)) - 15, clamped to 0..14)."""
    return tcp_wscale_for_clamp(rcvbuf_max, np.int64(65535) << TCP_MAX_WSCALE)


@kernel_inline
def tcp_wscale_for_clamp(rcvbuf_max, window_clamp):
    """``tcp_wscale_for`` with the space limited to ``window_clamp`` (a locked SO_RCVBUF)."""
    space = np.int64(rcvbuf_max)
    if space < 212992:  # net.core.rmem_max default
        space = np.int64(212992)
    if space > window_clamp:
        space = np.int64(window_clamp)
    lg = np.int64(0)
    while (space >> (lg + 1)) > 0:
        lg += 1
    ws = lg - 15
    if ws < 0:
        ws = np.int64(0)
    if ws > TCP_MAX_WSCALE:
        ws = np.int64(TCP_MAX_WSCALE)
    return ws


@kernel_inline
def tcp_ts_offset(core, lip, rip):
    """Per address pair random TSval offset (RFC 7323 §5.4; Linux tcp_v4_init_ts_off)."""
    s = core.isn_secret
    h = siphash24_2u64(
        s[SECRET_ISN_K1], s[SECRET_ISN_K0],
        (np.uint64(lip & M32) << np.uint64(32)) | np.uint64(rip & M32), np.uint64(0x7473),
    )  # fmt: skip
    return np.int64(h & np.uint64(M32))


@kernel
def tcp_conn_alloc(core, lip, lport, rip, rport):
    """A new TCB for the 4-tuple, in the flow table, with the stack's defaults; its id, or -1
    if no TCB or flow slot is free (counted).  An old TIME-WAIT TCB is recycled for room."""
    t = core.tcb
    cid = tcb_alloc(t)
    if cid < 0 and core.var[V_TCP_TW_COUNT] > 0:
        tcp_conn_free(core, core.var[V_TCP_TW_HEAD])
        core.stats[STAT_TCP_TW_RECYCLED] += 1
        cid = tcb_alloc(t)
    if cid < 0:
        core.stats[STAT_TCP_CONN_TABLE_FULL] += 1
        return np.int64(-1)
    if flow_insert(core.flows, lip, lport, rip, rport, cid) != 0:
        tcb_free(t, cid)
        core.stats[STAT_TCP_CONN_TABLE_FULL] += 1
        return np.int64(-1)
    core.listen.port_refs[lport] += 1
    h = t.hot
    c = t.cold
    c.lip[cid] = lip
    c.rip[cid] = rip
    c.lport[cid] = lport
    c.rport[cid] = rport
    c.link_prev[cid] = -1
    c.link_next[cid] = -1
    c.error[cid] = 0
    c.reuse[cid] = 0
    c.owner[cid] = -1
    c.listener[cid] = -1
    c.adv_mss[cid] = core.cfg[CFG_TCP_MSS]
    c.ka_idle_ms[cid] = core.cfg[CFG_TCP_KEEPALIVE_TIME_US] // 1000
    c.ka_intvl_us[cid] = core.cfg[CFG_TCP_KEEPALIVE_INTVL_US]
    c.ka_probes[cid] = core.cfg[CFG_TCP_KEEPALIVE_PROBES]
    c.user_mss[cid] = 0
    c.syn_retries[cid] = 0
    c.user_timeout_ms[cid] = 0
    h.rcv_buf[cid] = core.cfg[CFG_TCP_RCVBUF]
    h.snd_buf[cid] = core.cfg[CFG_TCP_SNDBUF]
    c.window_clamp[cid] = 65535 << TCP_MAX_WSCALE
    h.rcv_wscale[cid] = tcp_wscale_for(core.cfg[CFG_TCP_RCVBUF_MAX])
    h.rto[cid] = core.cfg[CFG_TCP_RTO_INITIAL_US]
    h.cc_algo[cid] = core.cfg[CFG_TCP_CC]
    h.ts_offset[cid] = tcp_ts_offset(core, lip, rip)
    h.ack_quick[cid] = 0
    h.ack_ato[cid] = 0
    h.rcv_mss[cid] = 536
    tcp_tmpl_init(core, cid)
    sack_reset(core.sack, cid)
    return np.int64(cid)


@kernel_inline
def _tw_unlink(core, cid):
    c = core.tcb.cold
    p = c.link_prev[cid]
    n = c.link_next[cid]
    if p >= 0:
        c.link_next[p] = n
    else:
        core.var[V_TCP_TW_HEAD] = n
    if n >= 0:
        c.link_prev[n] = p
    else:
        core.var[V_TCP_TW_TAIL] = p
    c.link_prev[cid] = -1
    c.link_next[cid] = -1
    core.var[V_TCP_TW_COUNT] -= 1


@kernel
def tcp_purge_queues(core, cid, keep_rcv):
    """Free the send and out-of-order queues (and the receive queue unless ``keep_rcv``)."""
    pool = core.pool
    h = core.tcb.hot
    frame_free_chain(pool, h.snd_q_head[cid])
    h.snd_q_head[cid] = -1
    h.snd_q_tail[cid] = -1
    h.snd_q_unsent[cid] = -1
    h.snd_q_bytes[cid] = 0
    tcb_touch(core.tcb, cid)  # queue bytes: readiness (fsdp.core.loop.poll_status)
    reass_free(pool, core.tcb, cid)
    sack_reset(core.sack, cid)
    if not keep_rcv:
        frame_free_chain(pool, h.rcv_q_head[cid])
        h.rcv_q_head[cid] = -1
        h.rcv_q_tail[cid] = -1
        h.rcv_q_bytes[cid] = 0
        h.rcv_mem[cid] = 0
        h.rcv_mem_pending[cid] = 0
        h.rcv_skb_frags[cid] = 0
        h.rcv_skb_room[cid] = 0


@kernel
def _unhash(core, cid):
    """Leave the flow table (and the port count) if still there."""
    c = core.tcb.cold
    lip = np.int64(c.lip[cid])
    lport = np.int64(c.lport[cid])
    rip = np.int64(c.rip[cid])
    rport = np.int64(c.rport[cid])
    if flow_lookup(core.flows, lip, lport, rip, rport) == cid:
        flow_remove(core.flows, lip, lport, rip, rport)
        core.listen.port_refs[lport] -= 1


@kernel
def tcp_conn_free(core, cid):
    """Release TCB ``cid`` entirely: flow entry, timers, queues, list membership, the id."""
    t = core.tcb
    c = t.cold
    _unhash(core, cid)
    disarm_all(core, cid)
    tcp_purge_queues(core, cid, False)
    if t.hot.state[cid] == TCPS_TIME_WAIT:
        _tw_unlink(core, cid)
    else:
        lid = c.listener[cid]
        if lid >= 0 and c.owner[cid] < 0:
            ls = core.listen
            listed = c.link_prev[cid] >= 0 or c.link_next[cid] >= 0
            if listed or ls.rec.syn_head[lid] == cid or ls.rec.acc_head[lid] == cid:
                if t.hot.state[cid] == TCPS_SYN_RECEIVED:  # on the SYN list
                    listen_syn_remove(core.listen, c, lid, cid)
                else:
                    listen_acc_remove(core.listen, c, lid, cid)
    c.owner[cid] = -1
    c.listener[cid] = -1
    tcb_free(t, cid)


@kernel
def tcp_set_closed(core, cid, err):
    """The connection is over (RFC 9293: "enter the CLOSED state and delete the TCB").  An
    orphan, an unaccepted SYN-RECEIVED child or a TIME-WAIT TCB is freed; otherwise the TCB
    stays CLOSED for its owner (socket or accept queue) with ``err`` pending (0: none) and its
    unread data, shut down both ways as Linux's tcp_done leaves a socket (SHUTDOWN_MASK): once
    the error is taken a read is end-of-file, also after a refused or timed-out connect."""
    t = core.tcb
    h = t.hot
    c = t.cold
    st = h.state[cid]
    orphan = (h.tflags[cid] & TF_ORPHAN) != 0
    unaccepted_embryo = c.owner[cid] < 0 and c.listener[cid] >= 0 and st == TCPS_SYN_RECEIVED
    if orphan or st == TCPS_TIME_WAIT or unaccepted_embryo:
        tcp_conn_free(core, cid)
        return
    _unhash(core, cid)
    disarm_all(core, cid)
    tcp_purge_queues(core, cid, True)
    h.tflags[cid] |= np.uint32(TF_RCV_SHUTDOWN | TF_SND_SHUTDOWN)
    if err != 0:
        c.error[cid] = err
    tcb_touch(t, cid)  # EV_ERROR, EV_EOF (fsdp.core.loop.poll_status)
    set_state(core, cid, TCPS_CLOSED)


@kernel
def tcp_enter_time_wait(core, cid, now):
    """Enter TIME-WAIT for 2*MSL (RFC 9293 §3.10.7.4 FIN-WAIT-2 / CLOSING / FIN-WAIT-1).
    Returns the TIME-WAIT TCB's id (``cid`` itself for an orphan), or -1 when none was made
    (``tcp_max_tw_buckets`` is 0, or no TCB was free: the connection simply closes, as Linux's
    "time wait bucket table overflow")."""
    t = core.tcb
    h = t.hot
    c = t.cold
    max_tw = core.cfg[CFG_TCP_MAX_TW]
    if max_tw <= 0:
        tcp_set_closed(core, cid, 0)
        return np.int64(-1)
    while core.var[V_TCP_TW_COUNT] >= max_tw:
        tcp_conn_free(core, core.var[V_TCP_TW_HEAD])
        core.stats[STAT_TCP_TW_RECYCLED] += 1
    orphan = (h.tflags[cid] & TF_ORPHAN) != 0
    if orphan:
        tw = cid
        disarm_all(core, cid)
        tcp_purge_queues(core, cid, False)
    else:
        lip = np.int64(c.lip[cid])
        lport = np.int64(c.lport[cid])
        rip = np.int64(c.rip[cid])
        rport = np.int64(c.rport[cid])
        _unhash(core, cid)
        tw = np.int64(tcb_alloc(t))
        if tw < 0 and core.var[V_TCP_TW_COUNT] > 0:
            tcp_conn_free(core, core.var[V_TCP_TW_HEAD])
            core.stats[STAT_TCP_TW_RECYCLED] += 1
            tw = np.int64(tcb_alloc(t))
        if tw >= 0 and flow_insert(core.flows, lip, lport, rip, rport, tw) != 0:
            tcb_free(t, tw)
            tw = np.int64(-1)
        disarm_all(core, cid)
        tcp_purge_queues(core, cid, True)
        set_state(core, cid, TCPS_CLOSED)
        if tw < 0:
            core.stats[STAT_TCP_CONN_TABLE_FULL] += 1
            return np.int64(-1)
        core.listen.port_refs[lport] += 1
        c.lip[tw] = lip
        c.rip[tw] = rip
        c.lport[tw] = lport
        c.rport[tw] = rport
        c.iss[tw] = c.iss[cid]
        c.reuse[tw] = c.reuse[cid]  # Linux: the TIME-WAIT bucket keeps sk_reuse, sk_reuseport
        c.tos[tw] = c.tos[cid]  # (tw_tos; its IP_TTL: segment._timewait_input)
        c.ttl[tw] = c.ttl[cid]
        c.irs[tw] = c.irs[cid]
        c.owner[tw] = -1
        c.listener[tw] = -1
        h.tflags[tw] = TF_ORPHAN | (
            h.tflags[cid] & np.uint32(TF_TS_OK | TF_WSCALE_OK | TF_PMTU_LOCKED))
        h.snd_una[tw] = h.snd_una[cid]
        h.snd_nxt[tw] = h.snd_nxt[cid]
        h.snd_max[tw] = h.snd_max[cid]
        h.snd_wnd[tw] = h.snd_wnd[cid]
        h.rcv_nxt[tw] = h.rcv_nxt[cid]
        h.rcv_wnd[tw] = h.rcv_wnd[cid]
        h.rcv_wup[tw] = h.rcv_wup[cid]
        h.rcv_adv[tw] = h.rcv_adv[cid]
        h.rcv_wscale[tw] = h.rcv_wscale[cid]
        h.snd_wscale[tw] = h.snd_wscale[cid]
        h.ts_recent[tw] = h.ts_recent[cid]
        h.ts_recent_age[tw] = h.ts_recent_age[cid]
        h.ts_offset[tw] = h.ts_offset[cid]
        h.rto[tw] = h.rto[cid]
        h.mss[tw] = h.mss[cid]
        row_src = core.tcp_tmpl[cid]
        row_dst = core.tcp_tmpl[tw]
        for i in range(TMPL_SIZE):
            row_dst[i] = row_src[i]
        h.tflags[tw] |= h.tflags[cid] & np.uint32(TF_TMPL_MAC)
    # to TIME-WAIT, at the FIFO's tail
    t.hot.tflags[tw] |= np.uint32(TF_ORPHAN)
    set_state(core, tw, TCPS_TIME_WAIT)
    tail = core.var[V_TCP_TW_TAIL]
    c.link_prev[tw] = tail
    c.link_next[tw] = -1
    if tail >= 0:
        c.link_next[tail] = tw
    else:
        core.var[V_TCP_TW_HEAD] = tw
    core.var[V_TCP_TW_TAIL] = tw
    core.var[V_TCP_TW_COUNT] += 1
    core.stats[STAT_TCP_TIME_WAIT_ENTERED] += 1
    arm(core, tw, TIMER_TIMEWAIT, now + core.cfg[CFG_TCP_TIME_WAIT_US])
    return np.int64(tw)


@kernel
def tcp_time_wait_restart(core, cid, now):
    """A segment that re-arms TIME-WAIT's 2*MSL (RFC 9293 §3.10.7.4: a retransmitted FIN)."""
    arm(core, cid, TIMER_TIMEWAIT, now + core.cfg[CFG_TCP_TIME_WAIT_US])
