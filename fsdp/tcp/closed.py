"""Segments that find no connection and no listener: the CLOSED state of RFC 9293 §3.10.7.1.

    "If the state is CLOSED (i.e., TCB does not exist), then all data in the incoming segment is
    discarded.  An incoming segment containing a RST is discarded.  An incoming segment not
    containing a RST causes a RST to be sent in response.  [...] If the ACK bit is off, sequence
    number zero is used, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.  If the ACK bit is on,
    <SEQ=SEG.ACK><CTL=RST>."

The reset carries no options and a zero window, with DF set and IP ID 0, as Linux sends it
(tcp_v4_send_reset through the per-CPU control socket): the segment's own TOS without the ECN
bits and the stack's TTL, whatever a socket set (it answers the segment, not a socket).  The
connection engine answers bad segments of existing connections (RFC 9293 §3.10.7.2-§3.10.7.4,
"<SEQ=SEG.ACK><CTL=RST>") with the same rule, so ``tcp_reset_reply`` and ``tcp_emit_rst`` are
its one home.
"""

import numpy as np

from fsdp.core.config import CFG_IP
from fsdp.core.stats import STAT_POOL_EMPTY, STAT_TCP_RST_OUT
from fsdp.pool.pool import frame_alloc
from fsdp.tcp.ip import DST_UNICAST, ip_output
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.wire.ipv4 import IPPROTO_TCP
from fsdp.wire.tcp import TCP_HLEN_MIN, TH_ACK, TH_FIN, TH_RST, TH_SYN, tcp_build, tcp_set_checksum


@kernel
def tcp_reset_reply(seq, ack, flags, seg_len):
    """The (SEQ, ACK, flags) of the RST answering a segment (§3.10.7.1); flags 0: no reset
    (never answer a RST)."""
    if (flags & TH_RST) != 0:
        return np.int64(0), np.int64(0), np.int64(0)
    if flags & TH_ACK:
        return np.int64(ack), np.int64(0), np.int64(TH_RST)
    n = np.int64(seg_len) + (1 if flags & TH_SYN else 0) + (1 if flags & TH_FIN else 0)
    return np.int64(0), (np.int64(seq) + n) & 0xFFFFFFFF, np.int64(TH_RST | TH_ACK)


@kernel
def tcp_emit_rst(core, dst_ip, sport, dport, seq, ack, flags, tos, now):
    """Send a bare RST segment (no options, window 0, IP TOS ``tos``) from our ``sport`` to
    ``dst_ip:dport``."""
    pool = core.pool
    fid = frame_alloc(pool)
    if fid < 0:
        core.stats[STAT_POOL_EMPTY] += 1
        return
    buf = pool.data[fid]
    off = pool.off[fid]
    tcp_build(buf, off, sport, dport, seq, ack, flags, 0, 0, 0)
    tcp_set_checksum(buf, off, TCP_HLEN_MIN, core.cfg[CFG_IP], dst_ip)
    pool.length[fid] = TCP_HLEN_MIN
    core.stats[STAT_TCP_RST_OUT] += 1
    ip_output(core, fid, dst_ip, np.int64(IPPROTO_TCP), np.int64(tos), np.int64(0), True,
              np.int64(0), now)


@kernel_inline
def tcp_send_reset(core, dst_kind, src_ip, sport, dport, seq, ack, flags, seg_len, tos, now):
    """Answer a segment (its addresses, ports, SEQ, ACK, flags, payload length, TOS without the
    ECN bits) with a RST as the CLOSED state does.  Never answers a RST (RFC 9293 §3.10.7.1),
    nor a broadcast."""
    if dst_kind != DST_UNICAST:
        return
    r_seq, r_ack, r_flags = tcp_reset_reply(seq, ack, flags, seg_len)
    if r_flags != 0:
        tcp_emit_rst(core, src_ip, dport, sport, r_seq, r_ack, r_flags, tos, now)
