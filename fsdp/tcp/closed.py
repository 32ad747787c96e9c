"""Segments that find no connection and no listener: the CLOSED state of RFC 9293 §3.10.7.1.

    "If the state is CLOSED (i.e., TCB does not exist), then all data in the incoming segment is
    discarded.  An incoming segment containing a RST is discarded.  An incoming segment not
    containing a RST causes a RST to be sent in response.  [...] If the ACK bit is off, sequence
    number zero is used, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.  If the ACK bit is on,
    <SEQ=SEG.ACK><CTL=RST>."

The reset carries no options and a zero window, with DF set and IP ID 0, as Linux sends it
(tcp_v4_send_reset through the per-CPU control socket).
"""

from numba import njit

from fsdp.core.config import CFG_IP
from fsdp.core.stats import STAT_POOL_EMPTY, STAT_TCP_RST_OUT
from fsdp.pool.pool import frame_alloc
from fsdp.tcp.ip import DST_UNICAST, ip_output
from fsdp.wire.ipv4 import IPPROTO_TCP
from fsdp.wire.tcp import TH_ACK, TH_FIN, TH_RST, TH_SYN, TCP_HLEN_MIN, tcp_build, tcp_set_checksum


@njit(cache=True)
def tcp_send_reset(core, dst_kind, src_ip, sport, dport, seq, ack, flags, seg_len, now):
    """Answer a segment (its addresses, ports, SEQ, ACK, flags, payload length) with a RST as
    the CLOSED state does.  Never answers a RST (RFC 9293 §3.10.7.1), nor a broadcast."""
    if (flags & TH_RST) != 0 or dst_kind != DST_UNICAST:
        return
    pool = core.pool
    fid = frame_alloc(pool)
    if fid < 0:
        core.stats[STAT_POOL_EMPTY] += 1
        return
    if flags & TH_ACK:
        r_seq = ack
        r_ack = 0
        r_flags = TH_RST
    else:
        seg_len += (1 if flags & TH_SYN else 0) + (1 if flags & TH_FIN else 0)
        r_seq = 0
        r_ack = (seq + seg_len) & 0xFFFFFFFF
        r_flags = TH_RST | TH_ACK
    buf = pool.data[fid]
    off = pool.off[fid]
    tcp_build(buf, off, dport, sport, r_seq, r_ack, r_flags, 0, 0, 0)
    tcp_set_checksum(buf, off, TCP_HLEN_MIN, core.cfg[CFG_IP], src_ip)
    pool.length[fid] = TCP_HLEN_MIN
    core.stats[STAT_TCP_RST_OUT] += 1
    ip_output(core, fid, src_ip, IPPROTO_TCP, 0, True, 0, now)
