"""IPv4 input and output for a host (RFC 791; RFC 1122 §3.2.1, §3.3).

Input validates in two steps (integrity, then sanity), counts every drop by reason, and hands
the transport payload to ICMP, UDP or TCP.  Output prepends a 20-byte header and picks the next
hop: the destination itself when on-link, else the default gateway.
"""

import numpy as np
from numba import njit

from fsdp.core.config import (
    CFG_GATEWAY,
    CFG_IP,
    CFG_MAC,
    CFG_NETMASK,
    CFG_RX_CSUM_OFFLOAD,
    CFG_TCP_MSS,
    CFG_TTL,
)
from fsdp.core.output import tx_enqueue
from fsdp.core.stats import (
    STAT_IP_BAD_CSUM,
    STAT_IP_BAD_HLEN,
    STAT_IP_BAD_SRC,
    STAT_IP_BAD_TOTAL_LEN,
    STAT_IP_BAD_VERSION,
    STAT_IP_FRAG_CREATES,
    STAT_IP_FRAG_FAILS,
    STAT_IP_FRAG_OK,
    STAT_IP_IN,
    STAT_IP_NO_ROUTE,
    STAT_IP_NOT_FOR_US,
    STAT_IP_OUT,
    STAT_IP_TRUNCATED,
    STAT_POOL_EMPTY,
)
from fsdp.core.vars import V_IP_ID
from fsdp.driver.jitmem import copy_bytes
from fsdp.pool.pool import (
    FRAME_F_LOOPED,
    FRAME_F_REDIRECTED,
    FRAME_F_RX_CSUM_OK,
    frame_alloc,
    frame_free,
)
from fsdp.tcp.neighbor import neigh_output
from fsdp.wire.ethernet import ETH_HLEN, ETHERTYPE_IPV4, MAC_BROADCAST, eth_build
from fsdp.wire.ipv4 import (
    ERR_IP_BAD_CSUM,
    ERR_IP_BAD_HLEN,
    ERR_IP_BAD_TOTAL_LEN,
    ERR_IP_TRUNCATED,
    ERR_IP_VERSION,
    IP_BROADCAST,
    IP_FLAG_MF,
    IP_HLEN_MIN,
    ip_build,
    ip_check,
    ip_dst,
    ip_hlen,
    ip_set_length_and_frag,
    ip_src,
    ip_total_len,
)

# What ip_input tells the transport about the destination address.
DST_UNICAST = 0
DST_BROADCAST = 1


@njit(inline="always", cache=True)
def ip_is_martian_source(core, src):
    """RFC 1122 §3.2.1.3: a source must be a unicast address of another host: not 0.0.0.0/8,
    127/8 (loopback never appears on a wire), multicast/reserved (224/3), the limited or our
    subnet's broadcast, or our own address."""
    first = src >> 24
    if first == 0 or first == 127 or first >= 224:
        return True
    mask = core.cfg[CFG_NETMASK]
    if mask != 0xFFFFFFFF and (src | mask) & 0xFFFFFFFF == 0xFFFFFFFF:
        return True  # directed broadcast of our subnet
    return src == core.cfg[CFG_IP]


@njit(inline="always", cache=True)
def ip_dst_kind(core, dst):
    """DST_UNICAST for our address, DST_BROADCAST for the limited or our directed broadcast,
    -1 for anything else (a host does not forward: RFC 1122 §3.3.1)."""
    if dst == core.cfg[CFG_IP]:
        return DST_UNICAST
    if dst == IP_BROADCAST:
        return DST_BROADCAST
    mask = core.cfg[CFG_NETMASK]
    if mask != 0xFFFFFFFF and dst == ((core.cfg[CFG_IP] & mask) | (~mask & 0xFFFFFFFF)):
        return DST_BROADCAST
    return -1


@njit(cache=True)
def ip_validate(core, fid):
    """Integrity and sanity checks of the IPv4 packet after the Ethernet header of frame ``fid``.

    Returns the destination kind (>= 0) and trims the frame to the IP total length (Ethernet
    padding), or a negative value after counting the reason and freeing the frame.
    """
    pool = core.pool
    buf = pool.data[fid]
    off = pool.off[fid] + ETH_HLEN
    n = pool.length[fid] - ETH_HLEN
    core.stats[STAT_IP_IN] += 1
    verified = (pool.flags[fid] & FRAME_F_RX_CSUM_OK) != 0 and core.cfg[CFG_RX_CSUM_OFFLOAD] != 0
    err = ip_check(buf, off, n, not verified)
    if err != 0:
        if err == ERR_IP_TRUNCATED:
            core.stats[STAT_IP_TRUNCATED] += 1
        elif err == ERR_IP_VERSION:
            core.stats[STAT_IP_BAD_VERSION] += 1
        elif err == ERR_IP_BAD_HLEN:
            core.stats[STAT_IP_BAD_HLEN] += 1
        elif err == ERR_IP_BAD_TOTAL_LEN:
            core.stats[STAT_IP_BAD_TOTAL_LEN] += 1
        elif err == ERR_IP_BAD_CSUM:
            core.stats[STAT_IP_BAD_CSUM] += 1
        frame_free(pool, fid)
        return -1
    pool.length[fid] = ETH_HLEN + ip_total_len(buf, off)  # drop link-layer padding
    kind = ip_dst_kind(core, ip_dst(buf, off))
    if kind < 0:
        core.stats[STAT_IP_NOT_FOR_US] += 1
        frame_free(pool, fid)
        return -1
    src = ip_src(buf, off)
    if ip_is_martian_source(core, src) and not (
        # our own address is a valid source on the loopback path only (this host to itself;
        # a sibling core's hand-over of such a frame is one too: a wire frame from our
        # address was dropped here, before any hand-over)
        src == core.cfg[CFG_IP] and (pool.flags[fid] & (FRAME_F_LOOPED | FRAME_F_REDIRECTED)) != 0
    ):
        core.stats[STAT_IP_BAD_SRC] += 1
        frame_free(pool, fid)
        return -1
    return kind


@njit(inline="always", cache=True)
def ip_payload_off(pool, fid):
    """Offset of the transport header of a validated frame (IP options skipped via the IHL)."""
    off = pool.off[fid] + ETH_HLEN
    return off + ip_hlen(pool.data[fid], off)


@njit(inline="always", cache=True)
def ip_next_ident(core):
    ident = core.var[V_IP_ID]
    core.var[V_IP_ID] = (ident + 1) & 0xFFFF
    return ident


@njit(inline="always", cache=True)
def _link_output(core, fid, dst, next_hop, now):
    """Send the IP datagram in ``fid`` to ``next_hop`` (the limited broadcast: to the Ethernet
    broadcast address, no ARP).  Takes ownership."""
    pool = core.pool
    if dst == IP_BROADCAST:
        off = pool.off[fid] - ETH_HLEN
        eth_build(pool.data[fid], off, MAC_BROADCAST, core.cfg[CFG_MAC], ETHERTYPE_IPV4)
        pool.off[fid] = off
        pool.length[fid] += ETH_HLEN
        tx_enqueue(core, fid, now)
        return
    neigh_output(core, fid, next_hop, now)


@njit(cache=True)
def _fragment_output(core, fid, dst, next_hop, mtu, now):
    """Send the datagram in ``fid`` (a 20-byte header, DF clear, larger than ``mtu``) as
    fragments, as RFC 791 §3.2 and Linux's ip_do_fragment cut it: each but the last carries the
    most data that fits the MTU in a multiple of 8 bytes, all with the datagram's header and
    identification, MF set on all but the last.  Frees ``fid``."""
    pool = core.pool
    w = np.int64(pool.data.shape[1])
    ip_off = pool.off[fid]
    total = np.int64(pool.length[fid]) - IP_HLEN_MIN
    step = (mtu - IP_HLEN_MIN) & ~np.int64(7)
    offset = np.int64(0)
    while offset < total:
        n = min(step, total - offset)
        out = frame_alloc(pool)
        if out < 0:
            core.stats[STAT_POOL_EMPTY] += 1
            core.stats[STAT_IP_FRAG_FAILS] += 1
            break
        o = pool.off[out]
        obuf = pool.data[out]
        copy_bytes(pool.data, out * w + o, pool.data, fid * w + ip_off, IP_HLEN_MIN)
        copy_bytes(pool.data, out * w + o + IP_HLEN_MIN, pool.data,
                   fid * w + ip_off + IP_HLEN_MIN + offset, n)
        more = IP_FLAG_MF if offset + n < total else 0
        ip_set_length_and_frag(obuf, o, IP_HLEN_MIN + n, more | (offset >> 3))
        pool.length[out] = IP_HLEN_MIN + n
        core.stats[STAT_IP_FRAG_CREATES] += 1
        _link_output(core, out, dst, next_hop, now)
        offset += n
    if offset >= total:
        core.stats[STAT_IP_FRAG_OK] += 1
    frame_free(pool, fid)


@njit(cache=True)
def ip_output(core, fid, dst, proto, tos, ttl, dont_fragment, ident, now):
    """Send the transport message at ``pool.off[fid]`` (``pool.length[fid]`` bytes) to ``dst``.

    ``ttl`` 0 is the stack's (``ttl``); ``ident`` is the IPv4 identification, or -1 for the
    core's running counter.

    Prepends the IPv4 header and routes: on-link destinations directly, others through the
    gateway; the limited broadcast goes to the Ethernet broadcast address.  A datagram larger
    than the MTU is sent in fragments unless ``dont_fragment`` (TCP keeps its segments within
    the MTU; an echo reply to a reassembled request may not fit).  Takes ownership.
    """
    pool = core.pool
    n = pool.length[fid]
    off = pool.off[fid] - IP_HLEN_MIN
    ip_build(
        pool.data[fid], off, core.cfg[CFG_IP], dst, proto, n,
        ip_next_ident(core) if ident < 0 else ident,
        ttl if ttl != 0 else core.cfg[CFG_TTL], tos, dont_fragment,
    )
    pool.off[fid] = off
    pool.length[fid] = n + IP_HLEN_MIN
    core.stats[STAT_IP_OUT] += 1
    next_hop = dst
    if dst != IP_BROADCAST:
        mask = core.cfg[CFG_NETMASK]
        if (dst & mask) != (core.cfg[CFG_IP] & mask):
            next_hop = core.cfg[CFG_GATEWAY]
            if next_hop == 0:
                core.stats[STAT_IP_NO_ROUTE] += 1
                frame_free(pool, fid)
                return
    mtu = core.cfg[CFG_TCP_MSS] + 40  # the interface's MTU (StackOptions.mtu)
    if n + IP_HLEN_MIN > mtu and not dont_fragment:
        _fragment_output(core, fid, dst, next_hop, mtu, now)
        return
    _link_output(core, fid, dst, next_hop, now)
