"""UDP arriving at fsdp (RFC 768; RFC 1122 §4.1).

fsdp has no UDP sockets, so every UDP port is closed: a well-formed datagram to our unicast
address is answered with ICMP port unreachable (RFC 1122 §4.1.3.1 SHOULD), as Linux answers
a closed port; malformed ones and bad checksums are dropped and counted.
"""

from numba import njit

from fsdp.core.config import CFG_RX_CSUM_OFFLOAD
from fsdp.core.stats import STAT_UDP_BAD_CSUM, STAT_UDP_IN, STAT_UDP_MALFORMED
from fsdp.pool.pool import FRAME_F_RX_CSUM_OK, frame_free
from fsdp.tcp.icmp import icmp_send_error
from fsdp.wire.byteorder import get_u16
from fsdp.wire.checksum import l4_checksum
from fsdp.wire.ethernet import ETH_HLEN
from fsdp.wire.icmp import ICMP_DEST_UNREACH, ICMP_UNREACH_PORT
from fsdp.wire.ipv4 import IPPROTO_UDP, ip_dst, ip_hlen, ip_src, ip_total_len

UDP_HLEN = 8
UDP_LEN = 4
UDP_CSUM = 6


@njit(cache=True)
def udp_input(core, fid, dst_kind, now):
    pool = core.pool
    buf = pool.data[fid]
    ip_off = pool.off[fid] + ETH_HLEN
    hl = ip_hlen(buf, ip_off)
    off = ip_off + hl
    n = ip_total_len(buf, ip_off) - hl
    core.stats[STAT_UDP_IN] += 1
    if n < UDP_HLEN or get_u16(buf, off + UDP_LEN) < UDP_HLEN or get_u16(buf, off + UDP_LEN) > n:
        core.stats[STAT_UDP_MALFORMED] += 1
        frame_free(pool, fid)
        return
    ulen = get_u16(buf, off + UDP_LEN)
    verified = (pool.flags[fid] & FRAME_F_RX_CSUM_OK) != 0 and core.cfg[CFG_RX_CSUM_OFFLOAD] != 0
    # A zero checksum means "not computed" (RFC 768).
    if not verified and get_u16(buf, off + UDP_CSUM) != 0:
        if l4_checksum(buf, off, ulen, ip_src(buf, ip_off), ip_dst(buf, ip_off), IPPROTO_UDP) != 0:
            core.stats[STAT_UDP_BAD_CSUM] += 1
            frame_free(pool, fid)
            return
    icmp_send_error(core, fid, dst_kind, ICMP_DEST_UNREACH, ICMP_UNREACH_PORT, 0, now)
    frame_free(pool, fid)
