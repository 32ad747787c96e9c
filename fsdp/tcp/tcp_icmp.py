"""What TCP does with a received ICMP error about one of its connections (RFC 1122 §4.2.3.9,
RFC 9293 MUST-54..56, RFC 5927), the way Linux does it (net/ipv4/tcp_ipv4.c tcp_v4_err).

The ICMP layer (fsdp.tcp.icmp) has checked the message and its quote (the IP header and at
least the first 8 bytes of the TCP header fsdp sent); here the quote's 4-tuple names the
connection and its sequence number must be one this connection has sent and not had
acknowledged, SND.UNA <= SEG.SEQ <= the highest sent (RFC 5927 §4.1: anything else is a
forgery or a stale message, counted and ignored).  Then:

* **Opening connections** (SYN-SENT, or an active open's SYN-RECEIVED) are aborted by any
  destination unreachable (except fragmentation needed), time exceeded or parameter problem:
  ``connect()`` fails at once with the errno Linux maps the message to (port unreachable
  ECONNREFUSED, host unreachable EHOSTUNREACH, ...), no RST is sent.  RFC 1122 lets a
  connection in progress treat these as hard errors, and RFC 5461 §4.1 describes why stacks do.
* **A passive open's SYN-RECEIVED** (Linux: a request socket) quoting exactly our SYN-ACK's
  ISN is dropped silently by network/host unreachable, time exceeded and parameter problem
  (Linux tcp_req_err), counted as a listen drop; other codes leave it to its retransmissions.
* **Synchronized connections** keep going (MUST-56: no abort on these): the error is kept as
  the connection's *soft error*.  ``getsockopt(SO_ERROR)`` returns it (once) when no hard error
  is pending, a connection that then times out reports it instead of ETIMEDOUT, and any
  acceptable ACK clears it (Linux sk_err_soft).
* **Fragmentation needed** (RFC 1191 path MTU discovery; every segment fsdp sends has DF)
  lowers the connection's path MTU to the next-hop MTU the message reports, never raising it.
  Below Linux's floor of 552 (``min_pmtu``; an old-style message reports 0) the path MTU is
  552 and locked: segments then go without DF.  The send MSS follows (MTU - 40 - options); the
  queued data is cut to it, what was in flight is marked lost and sent again at once within the
  congestion window, which keeps its size in segments (Linux tcp_simple_retransmit: "units
  changed"), no RTO needed.  In SYN-SENT the MTU is remembered for after the handshake.  The
  path MTU belongs to the connection, not to the destination (Linux caches it per destination
  for 10 minutes, so later connections start with it).
* Source quench (RFC 6633) and redirects are ignored, as are messages about a listener, a
  TIME-WAIT or a closed connection.
"""

import numpy as np

from fsdp.core.config import CFG_TCP_MSS
from fsdp.core.stats import (
    STAT_ICMP_ERR_NO_CONN,
    STAT_TCP_ATTEMPT_FAILS,
    STAT_TCP_ICMP_ABORTS,
    STAT_TCP_ICMP_OUT_OF_WINDOW,
    STAT_TCP_ICMP_UNREACH,
    STAT_TCP_LISTEN_DROPS,
    STAT_TCP_PMTU_REDUCED,
)
from fsdp.tcp.cc import cc_leave_cwr
from fsdp.tcp.conn import tcp_set_closed
from fsdp.tcp.flowtable import flow_lookup
from fsdp.tcp.frameflags import (
    FRAME_F_TCP_LOST,
    FRAME_F_TCP_RETRANS,
    FRAME_F_TCP_SACKED,
    FRAME_F_TCP_SENT,
)
from fsdp.tcp.kernel import kernel
from fsdp.tcp.segment import tcp_sync_mss
from fsdp.tcp.tcb import (
    TCP_INFINITE_SSTHRESH,
    TCPS_CLOSED,
    TCPS_LISTEN,
    TCPS_SYN_RECEIVED,
    TCPS_SYN_SENT,
    TCPS_TIME_WAIT,
    TF_IN_LOSS,
    TF_IN_RECOVERY,
    TF_PASSIVE,
    TF_PMTU_LOCKED,
)
from fsdp.tcp.tcp_output import tcp_push, tcp_split_frame, tcp_tmpl_ip_fields
from fsdp.tcp.undo import undo_clear
from fsdp.wire.icmp import (
    ICMP_DEST_UNREACH,
    ICMP_PARAM_PROBLEM,
    ICMP_TIME_EXCEEDED,
    ICMP_UNREACH_HOST,
    ICMP_UNREACH_NEEDFRAG,
    ICMP_UNREACH_NET,
)
from fsdp.wire.tcp import seq_leq

EPROTO = 71
EHOSTUNREACH = 113
ICMP_UNREACH_MAX_CODE = 15  # Linux NR_ICMP_UNREACH: higher codes are ignored
PMTU_MIN = 552  # Linux ip_rt_min_pmtu (512 + 20 + 20): the lowest path MTU believed

# errno for each destination-unreachable code (Linux icmp_err_convert, RFC 1812 §5.2.7.1)
_UNREACH_ERRNO = np.array(
    [
        101,  # 0 network unreachable: ENETUNREACH
        113,  # 1 host unreachable: EHOSTUNREACH
        92,  # 2 protocol unreachable: ENOPROTOOPT
        111,  # 3 port unreachable: ECONNREFUSED
        90,  # 4 fragmentation needed: EMSGSIZE (path MTU, not an error here)
        95,  # 5 source route failed: EOPNOTSUPP
        101,  # 6 destination network unknown: ENETUNREACH
        112,  # 7 destination host unknown: EHOSTDOWN
        64,  # 8 source host isolated: ENONET
        101,  # 9 network administratively prohibited: ENETUNREACH
        113,  # 10 host administratively prohibited: EHOSTUNREACH
        101,  # 11 network unreachable for TOS: ENETUNREACH
        113,  # 12 host unreachable for TOS: EHOSTUNREACH
        113,  # 13 communication administratively prohibited: EHOSTUNREACH
        113,  # 14 host precedence violation: EHOSTUNREACH
        113,  # 15 precedence cutoff in effect: EHOSTUNREACH
    ],
    np.int64,
)


@kernel
def tcp_icmp_error(core, lip, lport, rip, rport, seq, icmp_type_, code, mtu, now):
    """Act on an ICMP error quoting a segment ``lip:lport -> rip:rport`` with sequence number
    ``seq`` (``mtu``: the next-hop MTU of a fragmentation needed message).  False if no
    connection of this core has that 4-tuple (the caller may pass the message to the core that
    owns it), True otherwise (acted on, or ignored and counted)."""
    cid = flow_lookup(core.flows, lip, lport, rip, rport)
    if cid < 0:
        return False
    t = core.tcb
    h = t.hot
    c = t.cold
    st = h.state[cid]
    if st == TCPS_TIME_WAIT or st == TCPS_CLOSED or st == TCPS_LISTEN:
        core.stats[STAT_ICMP_ERR_NO_CONN] += 1  # Linux finds no socket to tell
        return True
    if st == TCPS_SYN_RECEIVED and (h.tflags[cid] & TF_PASSIVE) != 0:
        # Linux tcp_req_err: the quote must be our SYN-ACK, whose sequence number is the ISS
        if (seq & 0xFFFFFFFF) != np.int64(c.iss[cid]):
            core.stats[STAT_TCP_ICMP_OUT_OF_WINDOW] += 1
            return True
        drop = icmp_type_ == ICMP_PARAM_PROBLEM or icmp_type_ == ICMP_TIME_EXCEEDED or (
            icmp_type_ == ICMP_DEST_UNREACH
            and (code == ICMP_UNREACH_NET or code == ICMP_UNREACH_HOST)
        )
        if drop:
            # "there is no good way to pass the error to the newly created socket, and POSIX
            # does not want network errors returned from accept()" (Linux): drop it silently
            core.stats[STAT_TCP_ICMP_ABORTS] += 1
            core.stats[STAT_TCP_LISTEN_DROPS] += 1
            tcp_set_closed(core, cid, 0)
        return True
    # RFC 5927 §4.1: only a segment in flight can have caused the error
    if not (seq_leq(h.snd_una[cid], seq) and seq_leq(seq, h.snd_max[cid])):
        core.stats[STAT_TCP_ICMP_OUT_OF_WINDOW] += 1
        return True
    err = np.int64(0)
    if icmp_type_ == ICMP_DEST_UNREACH:
        if code > ICMP_UNREACH_MAX_CODE:
            return True
        if code == ICMP_UNREACH_NEEDFRAG:
            tcp_pmtu_update(core, cid, mtu, now)  # not an error (Linux tcp_v4_mtu_reduced)
            return True
        err = _UNREACH_ERRNO[code]
    elif icmp_type_ == ICMP_TIME_EXCEEDED:
        err = np.int64(EHOSTUNREACH)
    elif icmp_type_ == ICMP_PARAM_PROBLEM:
        err = np.int64(EPROTO)
    else:
        return True  # source quench (RFC 6633: ignored), redirect (no routing table)
    core.stats[STAT_TCP_ICMP_UNREACH] += 1
    if st == TCPS_SYN_SENT or st == TCPS_SYN_RECEIVED:
        core.stats[STAT_TCP_ICMP_ABORTS] += 1
        core.stats[STAT_TCP_ATTEMPT_FAILS] += 1
        tcp_set_closed(core, cid, err)
    else:
        c.soft_error[cid] = err
    return True


@kernel
def tcp_pmtu_update(core, cid, mtu, now):
    """Fragmentation needed with next-hop MTU ``mtu`` for connection ``cid`` (RFC 1191 §3, §6;
    Linux __ip_rt_update_pmtu then tcp_v4_mtu_reduced)."""
    t = core.tcb
    h = t.hot
    c = t.cold
    if (h.tflags[cid] & TF_PMTU_LOCKED) != 0:
        return
    cur = np.int64(c.pmtu[cid])
    if cur == 0:
        cur = core.cfg[CFG_TCP_MSS] + 40  # the interface's MTU
    if mtu >= cur:
        return  # RFC 1191 §3: a Datagram Too Big never raises the estimate
    if mtu < PMTU_MIN:
        mtu = PMTU_MIN if cur > PMTU_MIN else cur
        h.tflags[cid] |= np.uint32(TF_PMTU_LOCKED)  # Linux "locks" it there, without DF
        tcp_tmpl_ip_fields(core, cid)
    c.pmtu[cid] = mtu
    core.stats[STAT_TCP_PMTU_REDUCED] += 1
    if h.state[cid] == TCPS_SYN_SENT:
        return  # (the MSS is set at the handshake, from the path MTU too)
    old_mss = np.int64(h.mss[cid])
    tcp_sync_mss(core, cid)
    mss = np.int64(h.mss[cid])
    if mss >= old_mss:
        return
    # the congestion window keeps its size in segments (Linux counts it in packets)
    h.cwnd[cid] = max(np.int64(h.cwnd[cid]) * mss // old_mss, mss)
    if h.ssthresh[cid] != TCP_INFINITE_SSTHRESH:
        h.ssthresh[cid] = max(np.int64(h.ssthresh[cid]) * mss // old_mss, 2 * mss)
    if _cut_queue(core, cid, mss):
        _simple_retransmit(core, cid, now)


@kernel
def _cut_queue(core, cid, mss):
    """Cut every queued frame longer than ``mss`` into segments of ``mss`` bytes (Linux
    tcp_fragment as each is sent); the pieces of frames already sent are marked lost.  True if
    any sent frame was cut."""
    pool = core.pool
    h = core.tcb.hot
    lost = False
    fid = h.snd_q_head[cid]
    while fid >= 0:
        fl = pool.flags[fid]
        sent = (fl & FRAME_F_TCP_SENT) != 0
        if pool.length[fid] > mss and (fl & FRAME_F_TCP_SACKED) == 0:
            end = pool.next[fid]
            piece = fid
            while pool.length[piece] > mss:
                if not tcp_split_frame(core, cid, piece, mss):
                    break  # (no free frame: the rest goes as it is, and may be refused again)
                piece = pool.next[piece]
            if sent:
                lost = True
                piece = fid
                while piece != end and piece >= 0:
                    pool.flags[piece] = (pool.flags[piece] | FRAME_F_TCP_LOST) & ~np.uint32(
                        FRAME_F_TCP_RETRANS)
                    piece = pool.next[piece]
            fid = end
        else:
            fid = pool.next[fid]
    return lost


@kernel
def _simple_retransmit(core, cid, now):
    """Send again, now, what no longer fits the path (Linux tcp_simple_retransmit): loss
    recovery without a reduction of the congestion window ("we do not increase amount of data
    in network, but units changed"), ssthresh at least 3/4 of cwnd."""
    h = core.tcb.hot
    f = h.tflags[cid]
    if (f & TF_IN_LOSS) == 0:
        cwnd = np.int64(h.cwnd[cid])
        floor = (cwnd >> 1) + (cwnd >> 2)  # Linux tcp_current_ssthresh
        if np.int64(h.ssthresh[cid]) < floor:
            h.ssthresh[cid] = floor
        h.recover[cid] = h.snd_max[cid]
        h.dupacks[cid] = 0
        h.tflags[cid] = (f & ~np.uint32(TF_IN_RECOVERY)) | np.uint32(TF_IN_LOSS)
        cc_leave_cwr(core.tcb, cid)  # (Linux's CWR state gives way to Loss)
        undo_clear(core.tcb, cid)  # nothing to undo, and no F-RTO: this was no timeout
        h.frto[cid] = 0
    tcp_push(core, cid, now)
