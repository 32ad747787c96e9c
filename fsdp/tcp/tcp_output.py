"""TCP output: segments built from a per-connection header template, the send window, Nagle,
SWS avoidance, retransmission, ACK policy helpers and the receive window we advertise.

Read first: RFC 9293 §3.7.4 (Nagle), §3.8.6.2 (SWS avoidance, sender and receiver), §3.8.6.3
(delayed ACK), RFC 6298 §5 (managing the retransmission timer), RFC 7323 §2-§4 (window scale,
timestamps), RFC 2018 §4 (SACK blocks we send), RFC 5681 §3 and RFC 6675 §5 (what may be sent
during recovery).  Where an RFC leaves a choice, this is Linux (net/ipv4/tcp_output.c):
``__tcp_select_window`` for the window we offer, Minshall's Nagle (``tcp_nagle_check``),
``tcp_send_fin``'s FIN on the unsent tail, ``tcp_xmit_probe_skb``'s window probes (an ACK with
SEQ = SND.UNA - 1).

Header template (Fastsocket's direct TCP): each connection has a 40-byte row in
``core.tcp_tmpl`` holding its Ethernet header (next hop MAC, ours, IPv4), its IPv4 header
(DF, TTL, protocol, addresses; length, id and checksum zero) and its two ports.  A segment is the
row copied in front of the TCP header, three fields and two checksums filled in: no route or
neighbour lookup per segment.  The next hop's MAC is resolved once (``TF_TMPL_MAC``); until the
neighbour is known, segments go through ``ip_output`` (which queues them on the resolving
neighbour), and every retransmission timeout resolves it again (Linux's dst negative advice).

Every segment is a fresh frame: the payload is copied from the send queue, so a queued frame is
never in the NIC's hands and can be trimmed, split or freed at any time.
"""

import numpy as np
from numba import njit

from fsdp.core.config import (
    CFG_GATEWAY,
    CFG_IP,
    CFG_MAC,
    CFG_NETMASK,
    CFG_TCP_DELAYED_ACK,
    CFG_TCP_INIT_CWND,
    CFG_TCP_RECOVERY,
    CFG_TCP_REORDERING,
    CFG_TCP_RTO_MAX_US,
    CFG_TCP_RTO_MIN_US,
    CFG_TCP_SLOW_START_AFTER_IDLE,
    CFG_TTL,
    CFG_TX_CSUM_OFFLOAD,
)
from fsdp.core.output import tx_enqueue
from fsdp.core.stats import (
    STAT_IP_OUT,
    STAT_TCP_LIMITED_TRANSMIT,
    STAT_TCP_LOSS_PROBES,
    STAT_TCP_NO_FRAME,
    STAT_TCP_RETRANS_SEGS,
    STAT_TCP_SEGS_OUT,
)
from fsdp.core.timerwheel import (
    TIMER_DELACK,
    TIMER_PERSIST,
    TIMER_REORDER,
    TIMER_RTO,
)
from fsdp.core.vars import V_IP_ID, V_TCP_XMIT_ORDER
from fsdp.driver.jitmem import copy_bytes
from fsdp.pool.pool import FRAME_F_TX_CSUM, HEADROOM, MAX_FRAME_LEN, frame_alloc, frame_free
from fsdp.tcp.cc import (
    cc_after_idle,
    cc_counts_prr_out,
    cc_cwnd_validate,
    cc_in_cwr,
    cc_prr_sent,
)
from fsdp.tcp.ecn import ecn_syn_flags, ecn_xmit
from fsdp.tcp.frameflags import (
    FRAME_F_TCP_EVER_RETRANS,
    FRAME_F_TCP_FIN,
    FRAME_F_TCP_LOST,
    FRAME_F_TCP_PSH,
    FRAME_F_TCP_RETRANS,
    FRAME_F_TCP_SENT,
)
from fsdp.tcp.ip import ip_output
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.neighbor import ARP_INCOMPLETE, arp_lookup
from fsdp.tcp.rack import RACK_NO_DUPTHRESH, rack_min_rtt_update, rack_reo_wnd
from fsdp.tcp.reass import sack_block_count, sack_blocks
from fsdp.tcp.sack_scoreboard import (
    frame_set_xmit_time,
    frame_xmit_order,
    frame_xmit_time,
    scoreboard_next_seg,
    scoreboard_pipe,
    scoreboard_rack_detect_loss,
    scoreboard_sacked_segments,
)
from fsdp.tcp.tcb import (
    TCPS_CLOSE_WAIT,
    TCPS_CLOSED,
    TCPS_CLOSING,
    TCPS_ESTABLISHED,
    TCPS_FIN_WAIT_1,
    TCPS_LAST_ACK,
    TCPS_SYN_RECEIVED,
    TCPS_SYN_SENT,
    TCPS_TIME_WAIT,
    TF_ACK_NOW,
    TF_CORK,
    TF_DELACK,
    TF_FIN_SENT,
    TF_IN_LOSS,
    TF_IN_RECOVERY,
    TF_LIMITED_XMIT,
    TF_NODELAY,
    TF_PINGPONG,
    TF_PMTU_LOCKED,
    TF_SACK_OK,
    TF_SACKED_OUT,
    TF_SEND_SYN,
    TF_TLP_ARMED,
    TF_TLP_OUT,
    TF_TLP_RETRANS,
    TF_TMPL_MAC,
    TF_TS_OK,
    TF_URG_MODE,
    TF_WSCALE_OK,
)
from fsdp.tcp.tcbops import arm, armed, disarm, expires, is_alloc
from fsdp.tcp.undo import FRTO_NEW_DATA, FRTO_ON, undo_note_retransmit
from fsdp.tcp.urgent import tcp_urg_pointer, tcp_urg_probe_due
from fsdp.wire.byteorder import set_u16, set_u32
from fsdp.wire.checksum import checksum
from fsdp.wire.ethernet import ETH_HLEN
from fsdp.wire.ipv4 import IP_HLEN_MIN, IPPROTO_TCP
from fsdp.wire.tcp import (
    TH_ACK,
    TH_FIN,
    TH_PSH,
    TH_RST,
    TH_SYN,
    TH_URG,
    seq_diff,
    seq_gt,
    seq_lt,
    tcp_build,
    tcp_set_checksum,
    tcp_write_sack_option,
    tcp_write_syn_options,
    tcp_write_ts_option,
)

M32 = 0xFFFFFFFF
TMPL_SIZE = 40  # bytes of header template per connection (38 used)
_TMPL_IP = ETH_HLEN  # IPv4 header at 14
_TMPL_PORTS = ETH_HLEN + IP_HLEN_MIN  # TCP ports at 34
_HDR_OFF = HEADROOM - ETH_HLEN - IP_HLEN_MIN  # where a built frame starts (TCP header at HEADROOM)

TCP_MAX_WINDOW = 65535  # the 16-bit window field (RFC 9293 §3.1)
TCP_PAWS_24DAYS_US = 24 * 24 * 3600 * 1_000_000  # RFC 7323 §5.5

# syn_options argument of tcp_xmit: which options a segment carries
OPTS_NORMAL = 0  # timestamps (if negotiated) and SACK blocks (if any)
OPTS_SYN = 1  # SYN / SYN-ACK options (the TF_* bits say which were negotiated / offered)
OPTS_NONE = 2  # no options at all


@kernel_inline
def tcp_advmss(core, cid):
    """Linux tp->advmss: the MSS we advertised, less the timestamp option once it is agreed
    (the payload of a full segment from the peer)."""
    adv = np.int64(core.tcb.cold.adv_mss[cid])
    if (core.tcb.hot.tflags[cid] & TF_TS_OK) != 0:
        adv -= 12
    return adv


# --- clocks ---------------------------------------------------------------------------------
@kernel
def tcp_ts_now(core, cid, now):
    """Our TSval: a millisecond clock with the connection's random offset (RFC 7323 §5.4,
    Linux's tcp_time_stamp_ts + ts_offset)."""
    return (now // 1000 + np.int64(core.tcb.hot.ts_offset[cid])) & M32


# --- header template ------------------------------------------------------------------------
@kernel_inline
def tcp_tmpl_init(core, cid):
    """Write connection ``cid``'s header template from its addresses and ports."""
    row = core.tcp_tmpl[cid]
    c = core.tcb.cold
    for i in range(TMPL_SIZE):
        row[i] = 0
    mac = core.cfg[CFG_MAC]
    for i in range(6):
        row[6 + i] = (mac >> (8 * (5 - i))) & 0xFF
    row[12] = 0x08
    row[13] = 0x00
    row[_TMPL_IP] = 0x45
    row[_TMPL_IP + 9] = IPPROTO_TCP
    set_u32(row, _TMPL_IP + 12, np.int64(c.lip[cid]))
    set_u32(row, _TMPL_IP + 16, np.int64(c.rip[cid]))
    set_u16(row, _TMPL_PORTS, np.int64(c.lport[cid]))
    set_u16(row, _TMPL_PORTS + 2, np.int64(c.rport[cid]))
    core.tcb.hot.tflags[cid] &= ~np.uint32(TF_TMPL_MAC)
    tcp_tmpl_ip_fields(core, cid)


@kernel_inline
def tcp_ttl(core, cid):
    """The TTL of ``cid``'s segments: its IP_TTL, else the stack's (RFC 9293 MUST-49)."""
    ttl = np.int64(core.tcb.cold.ttl[cid])
    return ttl if ttl != 0 else core.cfg[CFG_TTL] & 0xFF


@kernel_inline
def tcp_tmpl_ip_fields(core, cid):
    """Write the IP header fields ``cid`` may change into its template: TOS (IP_TOS, RFC 9293
    MUST-48), TTL (IP_TTL) and DF (RFC 1191; off once the path MTU is locked, tcp_icmp)."""
    row = core.tcp_tmpl[cid]
    row[_TMPL_IP + 1] = core.tcb.cold.tos[cid]
    row[_TMPL_IP + 6] = 0 if (core.tcb.hot.tflags[cid] & TF_PMTU_LOCKED) != 0 else 0x40
    row[_TMPL_IP + 8] = tcp_ttl(core, cid)


@kernel_inline
def tcp_ip_fields_from_listener(core, cid):
    """A passive open takes its listener's IP_TOS / IP_TTL as they are now: for each SYN-ACK
    and at the final ACK (Linux sends the SYN-ACK for the listener and clones it then)."""
    c = core.tcb.cold
    lid = c.listener[cid]
    if lid >= 0 and c.owner[cid] < 0:
        c.tos[cid] = core.listen.rec.tos[lid]
        c.ttl[cid] = core.listen.rec.ttl[lid]
        tcp_tmpl_ip_fields(core, cid)


@kernel_inline
def tcp_tmpl_resolve(core, cid):
    """Cache the next hop's MAC in the template if the neighbour is known; True if cached."""
    rip = np.int64(core.tcb.cold.rip[cid])
    mask = core.cfg[CFG_NETMASK]
    if (rip & mask) == (core.cfg[CFG_IP] & mask):
        nh = rip
    else:
        nh = core.cfg[CFG_GATEWAY]
        if nh == 0:
            return False
    if nh == core.cfg[CFG_IP]:
        mac = core.cfg[CFG_MAC]  # a connection to this host itself (looped back)
    else:
        t = core.arp
        slot = arp_lookup(t, nh)
        if slot < 0 or t.state[slot] == ARP_INCOMPLETE or t.mac[slot] == 0:
            return False
        mac = t.mac[slot]
    row = core.tcp_tmpl[cid]
    for i in range(6):
        row[i] = (mac >> (8 * (5 - i))) & 0xFF
    core.tcb.hot.tflags[cid] |= np.uint32(TF_TMPL_MAC)
    return True


@kernel_inline
def _emit(core, cid, fid, tcp_len, ident, ect, now):
    """Send the TCP segment at ``pool.data[fid, HEADROOM:HEADROOM+tcp_len]``: template headers
    when the next hop is cached, else through ip_output; IPv4 id ``ident`` (-1: the core's
    counter), IP ECN field ``ect`` (fsdp.tcp.ecn).  Takes ownership."""
    pool = core.pool
    h = core.tcb.hot
    buf = pool.data[fid]
    c = core.tcb.cold
    lip = np.int64(c.lip[cid])
    rip = np.int64(c.rip[cid])
    offload = core.cfg[CFG_TX_CSUM_OFFLOAD] != 0
    if offload:
        pool.flags[fid] |= FRAME_F_TX_CSUM
    else:
        tcp_set_checksum(buf, HEADROOM, tcp_len, lip, rip)
    if (h.tflags[cid] & TF_TMPL_MAC) == 0 and not tcp_tmpl_resolve(core, cid):
        pool.off[fid] = HEADROOM
        pool.length[fid] = tcp_len
        ip_output(core, fid, rip, np.int64(IPPROTO_TCP), np.int64(c.tos[cid]) | ect,
                  tcp_ttl(core, cid), (h.tflags[cid] & TF_PMTU_LOCKED) == 0, ident, now)
        return
    row = core.tcp_tmpl[cid]
    base = _HDR_OFF
    for i in range(_TMPL_PORTS):
        buf[base + i] = row[i]
    ip = base + ETH_HLEN
    buf[ip + 1] = (buf[ip + 1] & 0xFC) | ect
    set_u16(buf, ip + 2, IP_HLEN_MIN + tcp_len)
    if ident < 0:
        ident = core.var[V_IP_ID]
        core.var[V_IP_ID] = (ident + 1) & 0xFFFF
    set_u16(buf, ip + 4, ident)
    set_u16(buf, ip + 10, checksum(buf, ip, IP_HLEN_MIN))
    pool.off[fid] = base
    pool.length[fid] = ETH_HLEN + IP_HLEN_MIN + tcp_len
    core.stats[STAT_IP_OUT] += 1
    tx_enqueue(core, fid, now)


# --- the receive window we offer (RFC 9293 §3.8.6.2.2; Linux __tcp_select_window) -----------
@kernel_inline
def tcp_full_space(core, cid):
    """Window-worth of the receive buffer: the measured payload ratio (``rcv_ratio``, Linux
    scaling_ratio, 50% until measured) of SO_RCVBUF, at most the window clamp."""
    h = core.tcb.hot
    s = (np.int64(h.rcv_buf[cid]) * np.int64(h.rcv_ratio[cid])) >> 8
    wc = np.int64(core.tcb.cold.window_clamp[cid])
    return s if s < wc else wc


@kernel_inline
def tcp_free_space(core, cid):
    h = core.tcb.hot
    # Linux tcp_space(): the scaling ratio's share of SO_RCVBUF less what the queued frames
    # are charged (their skb truesize); out-of-order bytes at a full frame's ratio
    ooo = np.int64(h.ooo_bytes[cid]) * 2176 // 1448
    s = np.int64(h.rcv_buf[cid]) - np.int64(h.rcv_mem[cid]) - ooo
    if s <= 0:
        return np.int64(0)
    return (s * np.int64(h.rcv_ratio[cid])) >> 8


@kernel
def tcp_receive_window(core, cid):
    """What is left of the window last advertised (Linux tcp_receive_window)."""
    h = core.tcb.hot
    w = seq_diff(h.rcv_adv[cid], h.rcv_nxt[cid])
    return w if w > 0 else np.int64(0)


@kernel
def tcp_raw_window(core, cid):
    """The window the buffer allows now, before the never-shrink rule (Linux
    __tcp_select_window, including receiver SWS avoidance: below half the buffer free and less
    than one MSS free, offer nothing)."""
    h = core.tcb.hot
    mss = np.int64(h.rcv_mss[cid])
    free = tcp_free_space(core, cid)
    full = tcp_full_space(core, cid)
    if mss > full:
        mss = full
    if mss < 1:
        mss = np.int64(1)
    if free < (full >> 1):
        h.ack_quick[cid] = 0
        if free < mss:
            return np.int64(0)
    ssth = np.int64(h.rcv_ssthresh[cid])
    if free > ssth:
        free = ssth
    ws = np.int64(h.rcv_wscale[cid])
    if ws > 0:
        w = free
        if ((w >> ws) << ws) != w:
            w = ((w >> ws) + 1) << ws
        return w
    w = np.int64(h.rcv_wnd[cid])
    if w <= free - mss or w > free:
        w = (free // mss) * mss
    elif mss == full and free > w + (full >> 1):
        w = free
    return w


@kernel_inline
def tcp_select_window(core, cid):
    """The window field of the next segment: never shrinks the right edge already offered
    (RFC 9293 §3.8.6.2.2, RFC 7323 §2.4), scaled; records rcv_wnd, rcv_wup, rcv_adv."""
    h = core.tcb.hot
    ws = np.int64(h.rcv_wscale[cid])
    cur = tcp_receive_window(core, cid)
    new = tcp_raw_window(core, cid)
    if new < cur:
        new = ((cur + (np.int64(1) << ws) - 1) >> ws) << ws  # ALIGN(cur, 1 << ws)
    top = np.int64(TCP_MAX_WINDOW) << ws
    if new > top:
        new = top
    rn = np.int64(h.rcv_nxt[cid])
    h.rcv_wnd[cid] = new
    h.rcv_wup[cid] = rn
    h.rcv_adv[cid] = (rn + new) & M32
    return new >> ws


# --- building a segment ---------------------------------------------------------------------
@kernel
def tcp_xmit(core, cid, seq, flags, src_fid, src_off, n, opts_kind, now):
    """Build and send one segment of ``cid``: SEQ ``seq``, control bits ``flags`` (ACK adds
    RCV.NXT), payload ``n`` bytes from frame ``src_fid`` at ``src_off``, options per
    ``opts_kind``.  False if no frame was free (counted; the caller's timers retry)."""
    pool = core.pool
    h = core.tcb.hot
    c = core.tcb.cold
    fid = frame_alloc(pool)
    if fid < 0:
        core.stats[STAT_TCP_NO_FRAME] += 1
        return False
    buf = pool.data[fid]
    off = HEADROOM
    st = h.state[cid]
    hf = h.tflags[cid]
    ts_on = (hf & TF_TS_OK) != 0
    # options first: their length sets the data offset
    opt_len = 0
    if opts_kind == OPTS_SYN:
        ws = np.int64(h.rcv_wscale[cid]) if (hf & TF_WSCALE_OK) != 0 else np.int64(-1)
        opt_len = tcp_write_syn_options(
            buf, off, np.int64(c.adv_mss[cid]), ws, (hf & TF_SACK_OK) != 0,
            tcp_ts_now(core, cid, now), np.int64(h.ts_recent[cid]) if (flags & TH_ACK) else 0,
            ts_on,
        )  # fmt: skip
    elif opts_kind == OPTS_NORMAL:
        if ts_on:
            opt_len = tcp_write_ts_option(
                buf, off, 0, tcp_ts_now(core, cid, now), np.int64(h.ts_recent[cid])
            )
        if (hf & TF_SACK_OK) != 0 and (flags & TH_ACK) != 0 and (flags & TH_RST) == 0:
            blocks = core.tcp_blocks
            nb = sack_blocks(core.sack, cid, blocks, 3 if ts_on else 4)
            if nb > 0:
                opt_len = tcp_write_sack_option(buf, off, opt_len, blocks, nb)
    # window: a SYN's is never scaled (RFC 7323 §2.2); TIME-WAIT keeps the last offer
    if (flags & TH_SYN) != 0:
        w = np.int64(h.rcv_wnd[cid])
        win = w if w < TCP_MAX_WINDOW else np.int64(TCP_MAX_WINDOW)
    elif st == TCPS_TIME_WAIT:
        win = tcp_receive_window(core, cid) >> np.int64(h.rcv_wscale[cid])
        if win > TCP_MAX_WINDOW:
            win = np.int64(TCP_MAX_WINDOW)
    else:
        win = tcp_select_window(core, cid)
    ack = np.int64(h.rcv_nxt[cid]) if (flags & TH_ACK) != 0 else np.int64(0)
    ect = np.int64(0)
    if st != TCPS_TIME_WAIT:  # (Linux answers from TIME-WAIT without the socket's ECN state)
        # only data never sent before is ECN-capable (RFC 3168 §6.1.5; fsdp.tcp.ecn)
        flags, ect = ecn_xmit(core.tcb, cid, flags, n > 0 and not seq_lt(seq, h.snd_max[cid]))
    urp = np.int64(0)
    if (hf & TF_URG_MODE) != 0:
        up = tcp_urg_pointer(core, cid, seq & M32)  # RFC 9293 §3.8.5 (fsdp.tcp.urgent)
        if up >= 0:
            urp = up
            flags |= TH_URG
    hlen = tcp_build(
        buf, off, np.int64(c.lport[cid]), np.int64(c.rport[cid]), seq & M32, ack, flags, win, urp,
        opt_len,
    )  # fmt: skip
    if n > 0:
        # memcpy, not Numba's element loop (~15x faster for a full segment; jitmem.copy_bytes)
        w = np.int64(pool.data.shape[1])
        copy_bytes(buf, off + hlen, pool.data, src_fid * w + src_off, n)
    c.segs_out[cid] += 1
    core.stats[STAT_TCP_SEGS_OUT] += 1
    if (flags & TH_ACK) != 0:
        tcp_ack_sent(core, cid)
    # IP id 0 on a SYN-ACK, as Linux (its request sockets build it with ip_build_and_send_pkt)
    ident = np.int64(0) if (flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK) else np.int64(-1)
    _emit(core, cid, fid, hlen + n, ident, ect, now)
    return True


@kernel_inline
def tcp_ack_sent(core, cid):
    """Every segment carrying an ACK ends a delayed ACK (Linux tcp_event_ack_sent): the timer
    stops, quick-ACK credit decreases."""
    h = core.tcb.hot
    if (h.tflags[cid] & (TF_DELACK | TF_ACK_NOW)) != 0:
        if h.ack_quick[cid] > 0:
            h.ack_quick[cid] -= 1
    h.tflags[cid] &= ~np.uint32(TF_DELACK | TF_ACK_NOW)
    h.delack_segs[cid] = 0
    disarm(core, cid, TIMER_DELACK)


@kernel
def tcp_send_ack(core, cid, now):
    """A pure ACK: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (RFC 9293 §3.10.7.4)."""
    h = core.tcb.hot
    return tcp_xmit(core, cid, np.int64(h.snd_nxt[cid]), TH_ACK, -1, 0, 0, OPTS_NORMAL, now)


@kernel_inline
def tcp_send_probe(core, cid, now):
    """A window / keep-alive probe: an ACK with SEQ = SND.UNA - 1, which the peer must answer
    with an ACK (Linux tcp_xmit_probe_skb; RFC 1122 §4.2.3.6 allows the garbage octet to be
    left out).  In urgent mode an ACK at SND.UNA goes first: it carries the urgent pointer
    (Linux tcp_write_wakeup; fsdp.tcp.urgent)."""
    h = core.tcb.hot
    if tcp_urg_probe_due(core, cid):
        tcp_xmit(core, cid, np.int64(h.snd_una[cid]), TH_ACK, -1, 0, 0, OPTS_NORMAL, now)
    return tcp_xmit(
        core, cid, (np.int64(h.snd_una[cid]) - 1) & M32, TH_ACK, -1, 0, 0, OPTS_NORMAL, now
    )


@kernel
def tcp_send_reply_ack(core, cid, tos, now):
    """An ACK answering the segment being processed for a passive open still in SYN-RECEIVED:
    Linux sends it for the request, not from a socket, so it carries the segment's TOS ``tos``
    and the stack's TTL, not the listener's IP_TOS / IP_TTL (tcp_v4_send_ack)."""
    c = core.tcb.cold
    own_tos = c.tos[cid]
    own_ttl = c.ttl[cid]
    c.tos[cid] = tos
    c.ttl[cid] = 0
    tcp_tmpl_ip_fields(core, cid)
    tcp_send_ack(core, cid, now)
    c.tos[cid] = own_tos
    c.ttl[cid] = own_ttl
    tcp_tmpl_ip_fields(core, cid)


@kernel
def tcp_send_rst(core, cid, now):
    """Reset the connection from our side (ABORT, RFC 9293 §3.10.5; Linux
    tcp_send_active_reset): <SEQ=SND.NXT><CTL=RST,ACK>, options as any segment."""
    h = core.tcb.hot
    flags = TH_RST
    if h.state[cid] != TCPS_SYN_SENT:
        flags |= TH_ACK
    return tcp_xmit(core, cid, np.int64(h.snd_nxt[cid]), flags, -1, 0, 0, OPTS_NORMAL, now)


@kernel
def tcp_send_syn(core, cid, again, now):
    """The SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED), sent or sent ``again``, with the ECN
    setup bits (fsdp.tcp.ecn)."""
    h = core.tcb.hot
    flags = TH_SYN
    if h.state[cid] == TCPS_SYN_RECEIVED:
        flags |= TH_ACK
        tcp_ip_fields_from_listener(core, cid)
    flags = ecn_syn_flags(core.tcb, cid, flags, again)
    iss = np.int64(core.tcb.cold.iss[cid])
    return tcp_xmit(core, cid, iss, flags, -1, 0, 0, OPTS_SYN, now)


# --- the retransmission timer (RFC 6298 §5) --------------------------------------------------
@kernel
def tcp_rto_us(core, cid):
    """The current RTO with backoff (RFC 6298 (5.5)), at most tcp_rto_max (RFC 6298 (2.5))."""
    h = core.tcb.hot
    r = np.int64(h.rto[cid]) << np.int64(h.rexmit_count[cid])
    mx = core.cfg[CFG_TCP_RTO_MAX_US]
    return r if r < mx else mx


@kernel
def tcp_arm_rto(core, cid, now):
    core.tcb.hot.tflags[cid] &= ~np.uint32(TF_TLP_ARMED)
    arm(core, cid, TIMER_RTO, now + tcp_rto_us(core, cid))


# --- tail loss probe (RFC 8985 §7; Linux tcp_schedule_loss_probe / tcp_send_loss_probe) --------
TCP_TIMEOUT_MIN_US = 2_000  # Linux TCP_TIMEOUT_MIN: 2 jiffies at HZ=1000
TLP_WC_DELACK_US = 200_000  # RFC 8985 §7.2 WCDelAckT (Linux: TCP_RTO_MIN)
TCP_TIMEOUT_INIT_US = 1_000_000  # no RTT sample yet (RFC 6298 (2.1))


@kernel
def tcp_schedule_loss_probe(core, cid, now, advancing_rto):
    """Arm the probe timeout in place of the RTO (RFC 8985 §7.2: PTO = 2*SRTT, plus the
    worst-case delayed ACK when one segment is in flight (Linux: else 2 jiffies), never later
    than the RTO would fire).  As Linux (Open state only), only with SACK, outside recovery and
    with no SACKed data outstanding.  True if armed."""
    h = core.tcb.hot
    f = h.tflags[cid]
    if (f & TF_SACK_OK) == 0 or (f & (TF_IN_RECOVERY | TF_IN_LOSS | TF_SACKED_OUT)) != 0:
        return False
    if not tcp_can_send_data(h.state[cid]):
        return False
    flight = tcp_flight(core, cid)
    if flight <= 0:
        return False
    srtt = np.int64(h.srtt[cid])
    if srtt > 0:
        timeout = srtt >> 2  # srtt is kept in 1/8 µs: 2 * SRTT
        head = h.snd_q_head[cid]
        second = core.pool.next[head] if head >= 0 else np.int32(-1)
        if second < 0 or second == h.snd_q_unsent[cid]:
            # one segment in flight (Linux packets_out == 1: segments, not bytes)
            timeout += TLP_WC_DELACK_US
        else:
            timeout += TCP_TIMEOUT_MIN_US
    else:
        timeout = np.int64(TCP_TIMEOUT_INIT_US)
    rto = tcp_rto_us(core, cid)
    if advancing_rto:
        delta = rto
    else:
        head = h.snd_q_head[cid]
        delta = rto
        if head >= 0:
            delta = rto - (now - frame_xmit_time(core.pool, head))
    if delta > 0 and timeout > delta:
        timeout = delta
    arm(core, cid, TIMER_RTO, now + timeout)
    h.tflags[cid] |= np.uint32(TF_TLP_ARMED)
    return True


@kernel
def tcp_set_xmit_timer(core, cid, now):
    """After an ACK that leaves data in flight: the probe timeout, else the RTO (Linux
    tcp_set_xmit_timer)."""
    if not tcp_schedule_loss_probe(core, cid, now, True):
        tcp_arm_rto(core, cid, now)


@kernel
def tcp_send_loss_probe(core, cid, now):
    """The probe timeout fired (RFC 8985 §7.3): send one new segment if the windows allow,
    else retransmit the last segment sent; then the RTO takes over.  One probe at a time."""
    h = core.tcb.hot
    pool = core.pool
    f = h.tflags[cid]
    if not tcp_can_send_data(h.state[cid]) or tcp_flight(core, cid) <= 0:
        return
    if (f & TF_TLP_OUT) != 0 or (f & (TF_IN_RECOVERY | TF_IN_LOSS)) != 0:
        tcp_arm_rto(core, cid, now)
        return
    sent_new = False
    unsent = h.snd_q_unsent[cid]
    if unsent >= 0:
        sent_new = tcp_output_new(core, cid, np.int64(h.mss[cid]), now) > 0
    if not sent_new:
        last = h.snd_q_head[cid]
        if last < 0 or (pool.flags[last] & FRAME_F_TCP_SENT) == 0:
            tcp_arm_rto(core, cid, now)
            return
        while pool.next[last] >= 0 and pool.next[last] != h.snd_q_unsent[cid]:
            last = pool.next[last]
        stamp = h.retrans_stamp[cid]
        if not tcp_xmit_frame(core, cid, last, now, True):
            tcp_arm_rto(core, cid, now)
            return
        # the probe does not start the give-up clock (Linux sends it with
        # __tcp_retransmit_skb, which leaves retrans_stamp alone)
        h.retrans_stamp[cid] = stamp
        h.tflags[cid] |= np.uint32(TF_TLP_RETRANS)
    else:
        h.tflags[cid] &= ~np.uint32(TF_TLP_RETRANS)
    core.stats[STAT_TCP_LOSS_PROBES] += 1
    h.tlp_high_seq[cid] = h.snd_nxt[cid]
    h.tflags[cid] |= np.uint32(TF_TLP_OUT)
    tcp_arm_rto(core, cid, now)


@kernel
def tcp_rtt_sample(core, cid, rtt_us, now):
    """RFC 6298 §2 with Linux's integer estimator (tcp_rtt_estimator): srtt in 1/8 µs units,
    mdev = 4*RTTVAR, and RTO = SRTT + max(mdev, tcp_rto_min) (Linux keeps the variance term
    at least the minimum RTO rather than clamping the sum: RFC 6298 (2.4) says 1 s, Linux's
    200 ms is what peers meet).  RACK's minimum RTT follows the samples too."""
    h = core.tcb.hot
    rack_min_rtt_update(core.tcb, cid, rtt_us, now)
    m = np.int64(rtt_us)
    if m < 1:
        m = np.int64(1)
    rto_min = core.cfg[CFG_TCP_RTO_MIN_US]
    srtt = np.int64(h.srtt[cid])
    if srtt > 0:
        m -= srtt >> 3
        srtt += m
        if m < 0:
            m = -m
            m -= np.int64(h.mdev[cid]) >> 2
            if m > 0:
                m >>= 3
        else:
            m -= np.int64(h.mdev[cid]) >> 2
        mdev = np.int64(h.mdev[cid]) + m
        h.mdev[cid] = mdev
        if mdev > np.int64(h.mdev_max[cid]):
            h.mdev_max[cid] = mdev
            if mdev > np.int64(h.rttvar[cid]):
                h.rttvar[cid] = mdev
        if seq_gt(h.snd_una[cid], h.rtt_seq[cid]):  # once per RTT: decay rttvar
            mmax = np.int64(h.mdev_max[cid])
            rv = np.int64(h.rttvar[cid])
            if mmax < rv:
                h.rttvar[cid] = rv - ((rv - mmax) >> 2)
            h.rtt_seq[cid] = h.snd_nxt[cid]
            h.mdev_max[cid] = rto_min
    else:
        srtt = m << 3
        h.mdev[cid] = m << 1
        rv = m << 1
        h.rttvar[cid] = rv if rv > rto_min else rto_min
        h.mdev_max[cid] = h.rttvar[cid]
        h.rtt_seq[cid] = h.snd_nxt[cid]
    if srtt < 1:
        srtt = np.int64(1)
    if srtt > 0x7FFFFFFF:
        srtt = np.int64(0x7FFFFFFF)
    h.srtt[cid] = srtt
    rto = (srtt >> 3) + np.int64(h.rttvar[cid])
    mx = core.cfg[CFG_TCP_RTO_MAX_US]
    h.rto[cid] = rto if rto < mx else mx


# --- the send queue -------------------------------------------------------------------------
@kernel
def frame_seq_len(pool, fid):
    """Sequence numbers a queue frame occupies: payload plus one for FIN."""
    n = np.int64(pool.length[fid])
    if (pool.flags[fid] & FRAME_F_TCP_FIN) != 0:
        n += 1
    return n


@kernel_inline
def tcp_split_frame(core, cid, fid, k):
    """Cut queue frame ``fid`` after ``k`` payload bytes (Linux tcp_fragment); the rest goes
    to a new frame linked after it.  False if no frame is free."""
    pool = core.pool
    h = core.tcb.hot
    nf = frame_alloc(pool)
    if nf < 0:
        core.stats[STAT_TCP_NO_FRAME] += 1
        return False
    rest = np.int64(pool.length[fid]) - k
    src = pool.off[fid] + k
    w = np.int64(pool.data.shape[1])
    copy_bytes(pool.data, nf * w + HEADROOM, pool.data, fid * w + src, rest)
    pool.off[nf] = HEADROOM
    pool.length[nf] = rest
    pool.tag[nf] = (pool.tag[fid] + k) & M32
    keep = FRAME_F_TCP_FIN | FRAME_F_TCP_PSH
    # (a piece of a lost frame is lost too: the scoreboard sends it again next)
    copy = keep | FRAME_F_TCP_SENT | FRAME_F_TCP_EVER_RETRANS | FRAME_F_TCP_LOST
    pool.flags[nf] = pool.flags[fid] & copy
    pool.flags[fid] = pool.flags[fid] & ~np.uint32(keep)
    pool.length[fid] = k
    pool.next[nf] = pool.next[fid]
    pool.next[fid] = nf
    if h.snd_q_tail[cid] == fid:
        h.snd_q_tail[cid] = nf
    frame_set_xmit_time(pool, nf, frame_xmit_time(pool, fid), frame_xmit_order(pool, fid))
    return True


@kernel_inline
def tcp_queue_fin(core, cid):
    """Queue our FIN after the data (RFC 9293 §3.10.4): on the unsent tail frame if there is
    one (Linux tcp_send_fin), else on a new empty frame.  False if no frame is free."""
    pool = core.pool
    h = core.tcb.hot
    tail = h.snd_q_tail[cid]
    if h.snd_q_unsent[cid] >= 0 and tail >= 0:
        pool.flags[tail] |= FRAME_F_TCP_FIN
        return True
    f = frame_alloc(pool)
    if f < 0:
        core.stats[STAT_TCP_NO_FRAME] += 1
        return False
    pool.length[f] = 0
    pool.flags[f] = FRAME_F_TCP_FIN
    pool.tag[f] = (np.int64(h.snd_una[cid]) + np.int64(h.snd_q_bytes[cid])) & M32
    pool.next[f] = -1
    if tail >= 0:
        pool.next[tail] = f
    else:
        h.snd_q_head[cid] = f
    h.snd_q_tail[cid] = f
    if h.snd_q_unsent[cid] < 0:
        h.snd_q_unsent[cid] = f
    return True


@kernel_inline
def tcp_sack_option_len(core, cid):
    """Bytes the SACK option of the next segment takes (RFC 2018 §3: 2 NOPs + 2 + 8 per block,
    at most 3 blocks beside timestamps, 4 without); 0 when none is owed."""
    hf = core.tcb.hot.tflags[cid]
    if (hf & TF_SACK_OK) == 0:
        return np.int64(0)
    nb = sack_block_count(core.sack, cid, 3 if (hf & TF_TS_OK) != 0 else 4)
    return np.int64(4 + 8 * nb) if nb > 0 else np.int64(0)


@kernel
def _refill_frame(core, cid, fid):
    """Move bytes forward into unsent frame ``fid`` from the unsent frames after it, up to one
    MSS, freeing any that empties (its PSH and FIN pass to ``fid``).  Linux keeps a write in
    buffers larger than a segment and cuts them where the current MSS falls; fsdp's queue holds
    one segment per frame, so a frame cut short is topped up again rather than leaving a tiny
    segment behind every cut."""
    pool = core.pool
    h = core.tcb.hot
    w = np.int64(pool.data.shape[1])
    mss = np.int64(h.mss[cid])
    if mss > MAX_FRAME_LEN:
        mss = np.int64(MAX_FRAME_LEN)
    while (pool.flags[fid] & FRAME_F_TCP_FIN) == 0:
        nxt = pool.next[fid]
        if nxt < 0 or pool.length[nxt] == 0:
            break  # the end of the queue, or a bare FIN (it stays its own frame)
        end = np.int64(pool.off[fid]) + np.int64(pool.length[fid])
        room = mss - np.int64(pool.length[fid])
        if room > w - end:
            room = w - end
        if room <= 0:
            break
        k = np.int64(pool.length[nxt])
        if k > room:
            k = room
        copy_bytes(pool.data, fid * w + end, pool.data, nxt * w + pool.off[nxt], k)
        pool.length[fid] += k
        pool.flags[fid] &= ~np.uint32(FRAME_F_TCP_PSH)  # the write's end now lies further on
        pool.off[nxt] += k
        pool.length[nxt] -= k
        pool.tag[nxt] = (pool.tag[nxt] + k) & M32
        if pool.length[nxt] == 0:
            pool.flags[fid] |= pool.flags[nxt] & np.uint32(FRAME_F_TCP_FIN | FRAME_F_TCP_PSH)
            pool.next[fid] = pool.next[nxt]
            if h.snd_q_tail[cid] == nxt:
                h.snd_q_tail[cid] = fid
            frame_free(pool, nxt)


@kernel
def tcp_fit_frame(core, cid, fid, cap):
    """Cut queue frame ``fid`` to ``cap`` payload bytes, the segment size its options leave
    (RFC 9293 §3.7.1 MUST-16; Linux tcp_fragment to tcp_current_mss in tcp_write_xmit and
    __tcp_retransmit_skb).  The rest becomes the next frame: for a frame never sent it is filled
    up again from the data behind it; a sent frame's rest is sent on its own (lost, if the frame
    was).  False if no frame was free."""
    if not tcp_split_frame(core, cid, fid, cap):
        return False
    if (core.pool.flags[fid] & FRAME_F_TCP_SENT) == 0:
        _refill_frame(core, cid, core.pool.next[fid])
    return True


@kernel
def tcp_xmit_frame(core, cid, fid, now, rexmit):
    """Send queue frame ``fid`` as one segment (its payload, PSH, FIN); a retransmission if
    ``rexmit`` (Karn: the frame never again gives an RTT sample).  A frame longer than the MSS
    less this segment's SACK option is cut to fit first (``tcp_fit_frame``)."""
    pool = core.pool
    h = core.tcb.hot
    cap = np.int64(h.mss[cid]) - tcp_sack_option_len(core, cid)
    if np.int64(pool.length[fid]) > cap and not tcp_fit_frame(core, cid, fid, cap):
        return False
    flags = TH_ACK
    fl = pool.flags[fid]
    if (fl & FRAME_F_TCP_FIN) != 0:
        flags |= TH_FIN
    if (fl & FRAME_F_TCP_PSH) != 0:
        flags |= TH_PSH
    seq = pool.tag[fid]
    n = np.int64(pool.length[fid])
    if not tcp_xmit(core, cid, seq, flags, fid, pool.off[fid], n, OPTS_NORMAL, now):
        return False
    end = (seq + frame_seq_len(pool, fid)) & M32
    if cc_counts_prr_out(core.tcb, cid):
        cc_prr_sent(core.tcb, cid, frame_seq_len(pool, fid))  # RFC 6937 prr_out
    if rexmit:
        if h.retrans_stamp[cid] == 0:
            # the give-up clock starts at the first retransmission (Linux tcp_retransmit_skb:
            # the segment's time stamp once it was sent again)
            h.retrans_stamp[cid] = now
        pool.flags[fid] = fl | FRAME_F_TCP_RETRANS | FRAME_F_TCP_EVER_RETRANS
        core.tcb.cold.total_retrans[cid] += 1
        undo_note_retransmit(core.tcb, cid)
        core.stats[STAT_TCP_RETRANS_SEGS] += 1
    else:
        if n > 0 and now - h.ack_lrcv_us[cid] < np.int64(h.ack_ato[cid]):
            h.tflags[cid] |= np.uint32(TF_PINGPONG)  # a reply within ato of the last data in

        pool.flags[fid] = fl | FRAME_F_TCP_SENT
        if seq_gt(end, h.snd_max[cid]):
            h.snd_max[cid] = end
        if seq_gt(end, h.snd_nxt[cid]):
            h.snd_nxt[cid] = end
        if n < cap:
            h.snd_sml[cid] = end  # Minshall's Nagle: the last small segment sent
        if (fl & FRAME_F_TCP_FIN) != 0:
            h.tflags[cid] |= np.uint32(TF_FIN_SENT)
        h.last_snd_us[cid] = now
    order = (core.var[V_TCP_XMIT_ORDER] + 1) & M32
    core.var[V_TCP_XMIT_ORDER] = order
    frame_set_xmit_time(pool, fid, now, order)
    if not armed(core, cid, TIMER_RTO):
        tcp_arm_rto(core, cid, now)  # RFC 6298 (5.1)
    return True


@kernel
def tcp_flight(core, cid):
    """Sequence numbers sent and not cumulatively acknowledged."""
    h = core.tcb.hot
    return (np.int64(h.snd_max[cid]) - np.int64(h.snd_una[cid])) & M32


@kernel_inline
def _nagle_ok(core, cid, fid, n):
    """May a segment of ``n`` < MSS bytes go now?  Linux's tcp_nagle_test: TCP_NODELAY, a FIN,
    or no earlier small segment unacknowledged (Minshall's variant of RFC 9293 §3.7.4); TCP_CORK
    holds partial segments."""
    h = core.tcb.hot
    f = h.tflags[cid]
    if (core.pool.flags[fid] & FRAME_F_TCP_FIN) != 0 or (f & TF_URG_MODE) != 0:
        return True  # (Linux tcp_nagle_test: "Don't use the nagle rule for urgent data")
    if (f & TF_CORK) != 0:
        return False
    if (f & TF_NODELAY) != 0:
        return True
    una = h.snd_una[cid]
    sml = h.snd_sml[cid]
    if seq_gt(sml, una) and not seq_gt(sml, h.snd_nxt[cid]):
        return False
    return True


@kernel
def tcp_output_new(core, cid, cwnd_room, now):
    """Send unsent queue frames while the peer's window, ``cwnd_room`` sequence numbers of
    congestion window, Nagle and sender SWS avoidance allow (RFC 9293 §3.8.6.2.1).  Returns the
    segments sent; arms the persist timer when the window stops data with nothing in flight."""
    pool = core.pool
    h = core.tcb.hot
    sent = 0
    mss = np.int64(h.mss[cid])
    room = np.int64(cwnd_room)
    while True:
        fid = h.snd_q_unsent[cid]
        if fid < 0:
            break
        seq = pool.tag[fid]
        wnd_end = (np.int64(h.snd_una[cid]) + np.int64(h.snd_wnd[cid])) & M32
        usable = seq_diff(wnd_end, seq)
        n = np.int64(pool.length[fid])
        need = frame_seq_len(pool, fid)
        if room < need and room < mss:
            break  # congestion window full (a whole segment or nothing)
        if need > usable:
            # Sender SWS avoidance: send part of the frame only if at least one MSS fits, or
            # half of the largest window the peer ever offered (RFC 9293 §3.8.6.2.1).
            part = usable if usable < room else room
            big = part >= mss or (part > 0 and part >= (np.int64(h.max_sndwnd[cid]) >> 1))
            if part > 0 and part < n and big:
                if not tcp_split_frame(core, cid, fid, part):
                    break
                continue
            if tcp_flight(core, cid) == 0 and not armed(core, cid, TIMER_RTO):
                if not armed(core, cid, TIMER_PERSIST):
                    tcp_arm_persist(core, cid, now)
            break
        if n < mss and pool.next[fid] < 0 and (pool.flags[fid] & FRAME_F_TCP_FIN) == 0:
            # A partial segment at the queue's end waits as Nagle says; one with data behind
            # it cannot grow and goes (Linux tcp_write_xmit: TCP_NAGLE_PUSH unless the last).
            if not _nagle_ok(core, cid, fid, n):
                if tcp_flight(core, cid) == 0 and not armed(core, cid, TIMER_RTO) and not (
                    armed(core, cid, TIMER_PERSIST)
                ):
                    # held by TCP_CORK with nothing in flight: the probe timer sends it
                    # (Linux tcp_check_probe_timer; MUST-60: never held indefinitely)
                    tcp_arm_persist(core, cid, now)
                break
        if not tcp_xmit_frame(core, cid, fid, now, False):
            break
        h.snd_q_unsent[cid] = pool.next[fid]
        room -= frame_seq_len(pool, fid)  # (less than ``need`` if it was cut to fit)
        sent += 1
    return sent


@kernel_inline
def tcp_probe0_base(core, cid):
    """The zero-window probe's base interval: the RTO, at least the minimum RTO (Linux
    tcp_probe0_base), which the persist timer backs off and TCP_USER_TIMEOUT's model time of
    the probes sent counts in."""
    base = np.int64(core.tcb.hot.rto[cid])
    mn = core.cfg[CFG_TCP_RTO_MIN_US]
    return base if base > mn else mn


@kernel
def tcp_arm_persist(core, cid, now):
    """The persist timer (RFC 9293 §3.8.6.1): the RTO with backoff, at least the minimum RTO
    (Linux tcp_probe0_when)."""
    h = core.tcb.hot
    t = tcp_probe0_base(core, cid) << np.int64(h.rexmit_count[cid])
    mx = core.cfg[CFG_TCP_RTO_MAX_US]
    if t > mx:
        t = mx
    arm(core, cid, TIMER_PERSIST, now + t)


@njit(inline="always", cache=True)
def tcp_can_send_data(st):
    return (
        st == TCPS_ESTABLISHED
        or st == TCPS_CLOSE_WAIT
        or st == TCPS_FIN_WAIT_1
        or st == TCPS_CLOSING
        or st == TCPS_LAST_ACK
    )


@kernel_inline
def tcp_reordering(core, cid):
    """The connection's DupThresh (Linux tp->reordering): the stack's ``tcp_reordering``, or
    more once the connection saw deeper reordering (``rack.rack_note_reordering``)."""
    r = np.int64(core.tcb.hot.reordering[cid])
    base = np.int64(core.cfg[CFG_TCP_REORDERING])
    return r if r > base else base


@kernel
def tcp_loss_dupthresh(core, cid):
    """The DupThresh the scoreboard's IsLost uses: ``tcp_reordering``, or, when RACK finds the
    losses (SACK and ``tcp_recovery`` 1, as Linux), one no count of SACKed segments reaches, so
    that only RACK's marks make a frame lost."""
    if (core.tcb.hot.tflags[cid] & TF_SACK_OK) != 0 and core.cfg[CFG_TCP_RECOVERY] != 0:
        return np.int64(RACK_NO_DUPTHRESH)
    return tcp_reordering(core, cid)


@kernel
def tcp_rack_detect_loss(core, cid, now):
    """Run RACK over the send queue (RFC 8985 §6.2 step 5) with the reordering window of the
    moment (``rack.rack_reo_wnd``) and arm the reordering timer for the frames not yet due
    (§6.3: plus Linux's TCP_TIMEOUT_MIN).  Returns the sequence numbers newly marked lost."""
    h = core.tcb.hot
    pool = core.pool
    t = core.tcb
    busy = (h.tflags[cid] & (TF_IN_RECOVERY | TF_IN_LOSS)) != 0
    wnd = rack_reo_wnd(t, cid, busy, scoreboard_sacked_segments(pool, t, cid),
                       tcp_reordering(core, cid))  # fmt: skip
    lost, timeout = scoreboard_rack_detect_loss(pool, t, cid, now, wnd)
    if timeout > 0:
        arm(core, cid, TIMER_REORDER, now + timeout + TCP_TIMEOUT_MIN_US)
    return lost


@kernel
def tcp_recovery_pipe(core, cid):
    """Bytes in flight during loss recovery (RFC 6675 §4 SetPipe; Linux tcp_packets_in_flight):
    the scoreboard's count, which leaves out lost frames not yet resent and counts resent ones
    twice.  Without SACK, fast recovery also leaves out one segment per duplicate ACK (each
    says a segment left the network), never the whole flight (Linux's reno sacked_out,
    tcp_limit_reno_sacked).  Never negative."""
    h = core.tcb.hot
    pipe = scoreboard_pipe(core.pool, core.tcb, cid, tcp_loss_dupthresh(core, cid))
    f = h.tflags[cid]
    if (f & TF_SACK_OK) == 0 and (f & TF_IN_RECOVERY) != 0:
        pipe -= tcp_reno_sacked(core, cid)
    return pipe if pipe > 0 else np.int64(0)


@kernel_inline
def tcp_open_pipe(core, cid):
    """In flight outside fast and RTO recovery: the flight, or with SACKed data outstanding
    what the scoreboard counts, so that what left the network makes room (RFC 6675 §5 step 3,
    limited transmit by pipe; Linux always counts tcp_packets_in_flight)."""
    if (core.tcb.hot.tflags[cid] & TF_SACKED_OUT) != 0:
        return tcp_recovery_pipe(core, cid)
    return tcp_flight(core, cid)


@kernel
def tcp_reno_sacked(core, cid):
    """Without SACK: the bytes the duplicate ACKs of this recovery stand for, one SMSS each,
    and never the whole flight (at most all but one segment; Linux tcp_limit_reno_sacked)."""
    h = core.tcb.hot
    mss = np.int64(h.mss[cid])
    if mss <= 0:
        return np.int64(0)
    flight = tcp_flight(core, cid)
    cap = (flight + mss - 1) // mss - 1
    n = np.int64(h.dupacks[cid])
    if n > cap:
        n = cap
    return n * mss if n > 0 else np.int64(0)


# --- output: retransmissions first, then new data (RFC 5681, RFC 6675 §5, RFC 6298 §5) --------
@kernel
def tcp_push(core, cid, now):
    """Send what the windows allow: in RTO recovery (``TF_IN_LOSS``) or fast recovery (SACK or
    not; cwnd set by RFC 6937 PRR) the lost segments first while ``pipe < cwnd`` (RFC 6675 §5
    NextSeg (1), Linux tcp_xmit_retransmit_queue), then new data (NextSeg (2)).  Returns the
    segments sent."""
    h = core.tcb.hot
    st = h.state[cid]
    if not tcp_can_send_data(st):
        return 0
    pool = core.pool
    t = core.tcb
    f = h.tflags[cid]
    mss = np.int64(h.mss[cid])
    cwnd = np.int64(h.cwnd[cid])
    sent = 0
    if h.snd_q_unsent[cid] >= 0 and tcp_flight(core, cid) == 0:
        if core.cfg[CFG_TCP_SLOW_START_AFTER_IDLE] != 0:
            # RFC 5681 §4.1
            cc_after_idle(t, cid, now, tcp_rto_us(core, cid), core.cfg[CFG_TCP_INIT_CWND])
        cwnd = np.int64(h.cwnd[cid])
    dupthresh = tcp_loss_dupthresh(core, cid)
    if (f & (TF_IN_LOSS | TF_IN_RECOVERY)) != 0:
        pipe = tcp_recovery_pipe(core, cid)
        if h.frto[cid] == FRTO_NEW_DATA:
            # RFC 5682 step 2b (Linux tcp_xmit_recovery with REXMIT_NEW): new data rather than
            # the segments the RTO took for lost; those only if no new data can go
            h.frto[cid] = FRTO_ON
            sent_from = h.snd_max[cid]
            fresh = tcp_output_new(core, cid, cwnd - pipe, now)
            if seq_gt(h.snd_nxt[cid], h.recover[cid]):
                limited = cwnd - pipe - seq_diff(h.snd_max[cid], sent_from) < mss
                cc_cwnd_validate(t, cid, limited, tcp_flight(core, cid))
                return fresh
            h.frto[cid] = 0
        while pipe + mss <= cwnd or (pipe == 0 and sent == 0):
            fid = scoreboard_next_seg(pool, t, cid, dupthresh)
            if fid < 0:
                break
            if not tcp_xmit_frame(core, cid, fid, now, True):
                return sent
            if fid == h.snd_q_head[cid]:
                tcp_arm_rto(core, cid, now)  # Linux: the head's retransmission restarts it
            sent += 1
            pipe += frame_seq_len(pool, fid)
        room = cwnd - pipe
    else:
        room = cwnd - tcp_open_pipe(core, cid)
    fresh = 0
    sent_from = h.snd_max[cid]
    had_new_data = h.snd_q_unsent[cid] >= 0
    if room > 0 or had_new_data:
        fresh = tcp_output_new(core, cid, room, now)
        if fresh > 0:
            tcp_schedule_loss_probe(core, cid, now, False)  # Linux tcp_write_xmit
            if (f & (TF_IN_LOSS | TF_IN_RECOVERY)) == 0 and h.dupacks[cid] > 0 and not (
                    cc_in_cwr(t, cid)):
                # limited transmit by pipe: kept out of the FlightSize of ssthresh
                cc_prr_sent(t, cid, seq_diff(h.snd_max[cid], sent_from))
                core.stats[STAT_TCP_LIMITED_TRANSMIT] += fresh
        sent += fresh
    # RFC 7661: did this flight fill cwnd (no room left for a segment)?  As Linux's
    # tcp_write_xmit -> tcp_cwnd_validate: after sending new data, or when cwnd held it back
    limited = room - seq_diff(h.snd_max[cid], sent_from) < mss
    if fresh > 0 or (limited and had_new_data):
        cc_cwnd_validate(t, cid, limited, tcp_flight(core, cid))
    return sent

# --- ACK policy (RFC 9293 §3.8.6.3, RFC 1122 §4.2.3.2; Linux __tcp_ack_snd_check) -------------
TCP_ATO_MIN_US = 40_000  # Linux TCP_ATO_MIN / TCP_DELACK_MIN (HZ/25)
TCP_DELACK_MAX_US = 200_000  # Linux TCP_DELACK_MAX (HZ/5)
TCP_ATO_MAX_US = 500_000  # RFC 1122 §4.2.3.2: a delayed ACK MUST be sent within 0.5 s


@kernel_inline
def tcp_ack_snd_check(core, cid, now):
    """After a segment: send the ACK it asks for now, or delay it (Linux __tcp_ack_snd_check /
    tcp_send_delayed_ack; RFC 9293 §3.8.6.3: at least every second full-sized segment, within
    500 ms).  Does nothing if no ACK is pending."""
    h = core.tcb.hot
    f = h.tflags[cid]
    if (f & (TF_ACK_NOW | TF_DELACK)) == 0:
        return
    if (f & TF_ACK_NOW) == 0:
        rcvd = seq_diff(h.rcv_nxt[cid], h.rcv_wup[cid])
        more_than_one = rcvd > np.int64(h.rcv_mss[cid]) and tcp_raw_window(
            core, cid
        ) >= np.int64(h.rcv_wnd[cid])
        quick = h.ack_quick[cid] > 0 and (f & TF_PINGPONG) == 0
        if not (more_than_one or quick or core.cfg[CFG_TCP_DELAYED_ACK] == 0):
            _schedule_delack(core, cid, now)
            return
    tcp_send_ack(core, cid, now)


@kernel_inline
def _schedule_delack(core, cid, now):
    h = core.tcb.hot
    # No floor: before any data arrived ato is 0 and Linux's timer fires on the next tick (a
    # FIN or a window probe answered "at once"); data sets ato to TCP_ATO_MIN first.
    ato = np.int64(h.ack_ato[cid])
    if ato > TCP_ATO_MIN_US:
        max_ato = np.int64(TCP_ATO_MAX_US)
        if (h.tflags[cid] & TF_PINGPONG) != 0:
            max_ato = np.int64(TCP_DELACK_MAX_US)
        srtt = np.int64(h.srtt[cid])
        if srtt > 0:
            rtt = srtt >> 3
            if rtt < TCP_ATO_MIN_US:
                rtt = np.int64(TCP_ATO_MIN_US)
            if rtt < max_ato:
                max_ato = rtt
        if ato > max_ato:
            ato = max_ato
    if ato > TCP_DELACK_MAX_US:
        ato = np.int64(TCP_DELACK_MAX_US)
    due = now + ato
    cur = expires(core, cid, TIMER_DELACK)
    if cur >= 0:
        if cur <= now + (ato >> 2):
            tcp_send_ack(core, cid, now)  # about to fire anyway
            return
        if cur < due:
            due = cur
    h.tflags[cid] |= np.uint32(TF_DELACK)
    arm(core, cid, TIMER_DELACK, due)


# --- the output pass --------------------------------------------------------------------------
@kernel
def tcp_output(core, cid, now):
    """Everything connection ``cid`` owes the wire, built here and only here (BSD's
    tcp_output): a SYN or SYN-ACK, one limited-transmit segment (RFC 3042), the lost segments
    and new data the windows allow (``tcp_push``: fast retransmit and recovery included), and
    the ACK owed now or its delayed-ACK timer.  The state machine only sets ``TF_*`` requests
    (and cwnd); input, timers and user calls end with this call."""
    if not is_alloc(core, cid):
        return
    h = core.tcb.hot
    pool = core.pool
    st = h.state[cid]
    if st == TCPS_CLOSED:
        h.tflags[cid] &= ~np.uint32(TF_ACK_NOW | TF_DELACK | TF_SEND_SYN)
        return
    f = h.tflags[cid]
    if (f & TF_SEND_SYN) != 0:
        h.tflags[cid] &= ~np.uint32(TF_SEND_SYN)
        if st == TCPS_SYN_SENT or st == TCPS_SYN_RECEIVED:
            tcp_send_syn(core, cid, False, now)
    if tcp_can_send_data(st):
        if (f & TF_LIMITED_XMIT) != 0:
            h.tflags[cid] &= ~np.uint32(TF_LIMITED_XMIT)
            fid = h.snd_q_unsent[cid]
            if fid >= 0 and np.int64(pool.length[fid]) <= np.int64(h.mss[cid]):
                wnd_end = (np.int64(h.snd_una[cid]) + np.int64(h.snd_wnd[cid])) & M32
                if not seq_gt((pool.tag[fid] + frame_seq_len(pool, fid)) & M32, wnd_end):
                    if tcp_xmit_frame(core, cid, fid, now, False):
                        h.snd_q_unsent[cid] = pool.next[fid]
                        core.stats[STAT_TCP_LIMITED_TRANSMIT] += 1
                        if not cc_counts_prr_out(core.tcb, cid):
                            # kept out of the FlightSize that sets ssthresh (RFC 5681 §3.2)
                            cc_prr_sent(core.tcb, cid, frame_seq_len(pool, fid))
        tcp_push(core, cid, now)
    tcp_ack_snd_check(core, cid, now)
