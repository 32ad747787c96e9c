"""TCP segment arrival: validation, then demultiplexing (RFC 9293 §3.10.7).

Integrity first (header length, checksum), counted by reason; then the segment goes to its
connection (the flow table), its listener (the listen table), or the CLOSED-state reset.  The
frame is trimmed to the payload (``pool.off``/``pool.length``, ``pool.tag`` = SEG.SEQ) and the
header fields are copied to ``core.tcp_seg``, the options to ``core.tcp_opt``
(fsdp.tcp.segment).
"""

import numpy as np

from fsdp.core.config import (
    CFG_CORE_ID,
    CFG_N_CORES,
    CFG_RFD,
    CFG_RX_CSUM_OFFLOAD,
)
from fsdp.core.stats import (
    STAT_TCP_BAD_CSUM,
    STAT_TCP_IN,
    STAT_TCP_MALFORMED,
    STAT_TCP_MD5_UNEXPECTED,
    STAT_TCP_NO_LISTENER,
    STAT_TCP_NOT_UNICAST,
    STAT_TCP_REDIRECT_DROPPED,
    STAT_TCP_REDIRECTED,
)
from fsdp.core.vars import V_TCP_RST_ACK, V_TCP_RST_FLAGS, V_TCP_RST_PENDING, V_TCP_RST_SEQ
from fsdp.driver.api import nic_redirect
from fsdp.driver.toeplitz import RETA_SIZE, rss_hash_ipv4_l4
from fsdp.pool.pool import FRAME_F_REASSEMBLED, FRAME_F_REDIRECTED, FRAME_F_RX_CSUM_OK, frame_free
from fsdp.tcp.closed import tcp_emit_rst, tcp_send_reset
from fsdp.tcp.flowtable import flow_lookup
from fsdp.tcp.ip import DST_UNICAST
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.listen import PORT_EPHEMERAL_HI, PORT_EPHEMERAL_LO, listen_lookup
from fsdp.tcp.segment import (
    SEG_ACK,
    SEG_DPORT,
    SEG_DST,
    SEG_ECN,
    SEG_FLAGS,
    SEG_KIND,
    SEG_LEN,
    SEG_REOPEN,
    SEG_SEQ,
    SEG_SPORT,
    SEG_SRC,
    SEG_TOS,
    SEG_URP,
    SEG_WND,
    tcp_listen_input,
    tcp_segment,
    tcp_time_wait_reopen,
)
from fsdp.tcp.tcb import TF_ACK_NOW
from fsdp.tcp.tcp_output import tcp_output
from fsdp.wire.ethernet import ETH_HLEN
from fsdp.wire.ipv4 import ip_dst, ip_hlen, ip_src, ip_total_len
from fsdp.wire.tcp import (
    OPTF_MD5SIG,
    TH_SYN,
    TOPT_PRESENT,
    tcp_ack,
    tcp_check,
    tcp_dport,
    tcp_flags,
    tcp_hlen,
    tcp_parse_options,
    tcp_seq,
    tcp_sport,
    tcp_urp,
    tcp_verify_csum,
    tcp_win,
)


@kernel_inline
def _flow_owner(core, dport):
    """The core that should see a segment this core has no connection or listener for, or -1
    (answer it here).  With receive flow deliver off, an active open's local port names its core
    (usercalls._port_steers_here).  Otherwise a core that listens on ``dport`` takes it: the
    port's global listen table (CoreState.listen_map) says which ones do -- Fastsocket's global
    listen fallback, for a core whose worker has no listener (listen spawn off, or a prefork
    worker that has not listened yet).  Always the lowest such core, so every segment of one
    flow goes to the same one."""
    n = core.cfg[CFG_N_CORES]
    if n <= 1:
        return np.int64(-1)
    me = core.cfg[CFG_CORE_ID]
    if core.cfg[CFG_RFD] == 0 and dport >= PORT_EPHEMERAL_LO and dport <= PORT_EPHEMERAL_HI:
        owner = dport % n
        if owner != me:
            return np.int64(owner)
    others = core.listen_map[dport] & ~(np.int64(1) << me)
    if others == 0:
        return np.int64(-1)
    owner = np.int64(0)
    while (others & 1) == 0:
        others >>= 1
        owner += 1
    return owner


@kernel
def tcp_tuple_owner(core, lip, lport, rip, rport):
    """The core that holds (or would take) connection ``lip:lport <-> rip:rport``, or -1 when
    it is this one, for a packet the NIC could not steer by the 4-tuple: an ICMP error about the
    connection or a reassembled datagram (the NIC hashes both by their addresses only, so they
    may land on any core).  Where the connection's own segments go: with receive flow deliver
    off, an active open's port names its core; otherwise the core RSS gives the 4-tuple (RFD
    chose an active open's port for that), unless the port has listeners and that core is not
    one of them: then the lowest that is (the global listen fallback, ``_flow_owner``)."""
    n = core.cfg[CFG_N_CORES]
    if n <= 1:
        return np.int64(-1)
    if core.cfg[CFG_RFD] == 0 and lport >= PORT_EPHEMERAL_LO and lport <= PORT_EPHEMERAL_HI:
        owner = np.int64(lport % n)
    else:
        owner = np.int64(core.reta[rss_hash_ipv4_l4(core.rss, rip, lip, rport, lport)
                                   & (RETA_SIZE - 1)])
        listeners = core.listen_map[lport]
        if listeners != 0 and ((listeners >> owner) & 1) == 0:
            owner = np.int64(0)
            while (listeners & 1) == 0:
                listeners >>= 1
                owner += 1
    if owner == core.cfg[CFG_CORE_ID]:
        return np.int64(-1)
    return owner


@kernel_inline
def _redirect_to_owner(core, fid, ip_off, ip_len, dport):
    """Hand the segment (restored to its whole Ethernet frame) to the core that owns its flow
    or listener; True if it is gone (the frame is freed here), False if this core answers it.
    A frame already redirected once is never passed on again: it is answered where it is.  When
    the owner's queue is full the segment is dropped, as a full NIC queue drops it (the peer
    retransmits): answering here would reset a connection that another core owns or would
    accept."""
    pool = core.pool
    if (pool.flags[fid] & FRAME_F_REDIRECTED) != 0:
        return False
    owner = _flow_owner(core, dport)
    if owner < 0:
        return False
    pool.off[fid] = ip_off - ETH_HLEN
    pool.length[fid] = ETH_HLEN + ip_len
    hand_to_core(core, fid, owner)
    return True


@kernel_inline
def hand_to_core(core, fid, owner):
    """Pass the Ethernet frame ``fid`` to core ``owner``'s queue (it arrives there flagged
    FRAME_F_REDIRECTED) and free it here.  When that queue is full the frame is dropped, as a
    full NIC queue drops it (counted), never answered here."""
    pool = core.pool
    if nic_redirect(core.nic, pool, fid, owner) == 0:
        core.stats[STAT_TCP_REDIRECT_DROPPED] += 1
    else:
        core.stats[STAT_TCP_REDIRECTED] += 1
    frame_free(pool, fid)


@kernel
def tcp_input(core, fid, dst_kind, now):
    """Process one received TCP segment (frame validated by ip_validate); takes ownership."""
    pool = core.pool
    buf = pool.data[fid]
    ip_off = pool.off[fid] + ETH_HLEN
    hl = ip_hlen(buf, ip_off)
    off = ip_off + hl
    n = ip_total_len(buf, ip_off) - hl
    core.stats[STAT_TCP_IN] += 1
    if tcp_check(buf, off, n) != 0:
        core.stats[STAT_TCP_MALFORMED] += 1
        frame_free(pool, fid)
        return
    src = ip_src(buf, ip_off)
    dst = ip_dst(buf, ip_off)
    verified = (pool.flags[fid] & FRAME_F_RX_CSUM_OK) != 0 and core.cfg[CFG_RX_CSUM_OFFLOAD] != 0
    if not verified and not tcp_verify_csum(buf, off, n, src, dst):
        core.stats[STAT_TCP_BAD_CSUM] += 1
        frame_free(pool, fid)
        return
    hlen = tcp_hlen(buf, off)
    flags = tcp_flags(buf, off)
    seq = tcp_seq(buf, off)
    sport = tcp_sport(buf, off)
    dport = tcp_dport(buf, off)
    if (pool.flags[fid] & (FRAME_F_REASSEMBLED | FRAME_F_REDIRECTED)) == FRAME_F_REASSEMBLED:
        # put together from fragments, which the NIC steered by addresses only: to the core
        # its segments go to, before this core's tables (whose listener would take it) see it
        owner = tcp_tuple_owner(core, dst, dport, src, sport)
        if owner >= 0:
            hand_to_core(core, fid, owner)
            return
    s = core.tcp_seg
    s[SEG_SEQ] = seq
    s[SEG_ACK] = tcp_ack(buf, off)
    s[SEG_FLAGS] = flags
    s[SEG_WND] = tcp_win(buf, off)
    s[SEG_LEN] = n - hlen
    s[SEG_SRC] = src
    s[SEG_DST] = dst
    s[SEG_SPORT] = sport
    s[SEG_DPORT] = dport
    s[SEG_URP] = tcp_urp(buf, off)
    s[SEG_KIND] = dst_kind
    s[SEG_TOS] = buf[ip_off + 1] & 0xFC  # (ECN bits: RFC 3168 §6.1.1, never reflected)
    s[SEG_ECN] = buf[ip_off + 1] & 0x3  # (fsdp.tcp.ecn)
    tcp_parse_options(buf, off, hlen, (flags & TH_SYN) != 0, core.tcp_opt)
    if dst_kind != DST_UNICAST:
        core.stats[STAT_TCP_NOT_UNICAST] += 1  # TCP is point to point (Linux: PACKET_HOST)
        frame_free(pool, fid)
        return
    if (core.tcp_opt[TOPT_PRESENT] & OPTF_MD5SIG) != 0:
        core.stats[STAT_TCP_MD5_UNEXPECTED] += 1  # RFC 2385 §3: no key, drop (as Linux)
        frame_free(pool, fid)
        return
    # the frame now holds the payload only
    pool.off[fid] = off + hlen
    pool.length[fid] = n - hlen
    pool.tag[fid] = seq
    core.var[V_TCP_RST_PENDING] = 0
    out = np.int64(-1)
    cid = flow_lookup(core.flows, dst, dport, src, sport)
    if cid >= 0:
        out = tcp_segment(core, cid, fid, now)
        if out == SEG_REOPEN:
            # a SYN reopening a TIME-WAIT connection (RFC 6191): to the listener, if any
            lid = listen_lookup(core.listen, core.flows, dst, dport, src, sport)
            if lid >= 0:
                out = tcp_time_wait_reopen(core, cid, lid, now)
            else:
                core.tcb.hot.tflags[cid] |= np.uint32(TF_ACK_NOW)
                out = np.int64(cid)
            frame_free(pool, fid)
    else:
        lid = listen_lookup(core.listen, core.flows, dst, dport, src, sport)
        if lid >= 0:
            out = tcp_listen_input(core, lid, fid, now)
        elif _redirect_to_owner(core, fid, ip_off, hl + n, dport):
            pass  # another core owns this flow (or the listener): it answers
        else:
            core.stats[STAT_TCP_NO_LISTENER] += 1
            tcp_send_reset(
                core, dst_kind, src, sport, dport, seq, s[SEG_ACK], flags, s[SEG_LEN], s[SEG_TOS],
                now,
            )  # fmt: skip
            frame_free(pool, fid)
    if out >= 0:
        tcp_output(core, out, now)
    if core.var[V_TCP_RST_PENDING] != 0:
        # a RST answering this segment (RFC 9293 §3.10.7: "<SEQ=SEG.ACK><CTL=RST>" ...)
        core.var[V_TCP_RST_PENDING] = 0
        tcp_emit_rst(
            core, src, dport, sport, core.var[V_TCP_RST_SEQ], core.var[V_TCP_RST_ACK],
            core.var[V_TCP_RST_FLAGS], s[SEG_TOS], now,
        )  # fmt: skip
