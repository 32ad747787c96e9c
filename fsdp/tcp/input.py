"""TCP segment arrival: validation, then demultiplexing (RFC 9293 §3.10.7).

Integrity first (header length, checksum), counted by reason; then the segment goes to its
connection, its listener, or the CLOSED-state reset.  The connection engine (established
hash, listen tables) plugs in here.
"""

from numba import njit

from fsdp.core.config import CFG_RX_CSUM_OFFLOAD
from fsdp.core.stats import STAT_TCP_BAD_CSUM, STAT_TCP_IN, STAT_TCP_MALFORMED, STAT_TCP_NO_LISTENER
from fsdp.pool.pool import FRAME_F_RX_CSUM_OK, frame_free
from fsdp.tcp.closed import tcp_send_reset
from fsdp.wire.ethernet import ETH_HLEN
from fsdp.wire.ipv4 import ip_dst, ip_hlen, ip_src, ip_total_len
from fsdp.wire.tcp import (
    tcp_ack,
    tcp_check,
    tcp_dport,
    tcp_flags,
    tcp_hlen,
    tcp_seq,
    tcp_sport,
    tcp_verify_csum,
)


@njit(cache=True)
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
    verified = (pool.flags[fid] & FRAME_F_RX_CSUM_OK) != 0 and core.cfg[CFG_RX_CSUM_OFFLOAD] != 0
    if not verified and not tcp_verify_csum(buf, off, n, src, ip_dst(buf, ip_off)):
        core.stats[STAT_TCP_BAD_CSUM] += 1
        frame_free(pool, fid)
        return
    core.stats[STAT_TCP_NO_LISTENER] += 1
    tcp_send_reset(
        core, dst_kind, src, tcp_sport(buf, off), tcp_dport(buf, off), tcp_seq(buf, off),
        tcp_ack(buf, off), tcp_flags(buf, off), n - tcp_hlen(buf, off), now,
    )
    frame_free(pool, fid)
