"""The transmit batch of a core: frames ready for the wire wait in ``core.tx_ids`` and leave in
one ``tx_burst`` per pass (or earlier when the batch fills), as DESIGN.md §1 describes.

Frames this host sends to itself (to its own MAC: ``ip_output`` routes the host's own address
there, as Linux routes it over ``lo``) never reach the NIC: ``tx_flush`` copies each one, fills
in its checksums, and hands the copy to the core RSS would have given it -- this core's
loopback list, which the next pass receives (``take_looped``), or a sibling's queue
(``nic_redirect``)."""

import numpy as np
from numba import njit

from fsdp.core.config import CFG_CAPTURE, CFG_CORE_ID, CFG_MAC, CFG_N_CORES
from fsdp.core.stats import (
    STAT_CAPTURE_DROPPED,
    STAT_IP_LOOPBACK,
    STAT_IP_LOOPBACK_DROPPED,
    STAT_TX_BYTES,
    STAT_TX_FRAMES,
)
from fsdp.core.vars import (
    V_LO_IN_COUNT,
    V_LO_IN_HEAD,
    V_LO_IN_TAIL,
    V_LO_OUT_HEAD,
    V_LO_OUT_TAIL,
    V_TX_N,
    V_TX_OVF_HEAD,
    V_TX_OVF_TAIL,
)
from fsdp.driver.api import nic_redirect, nic_tx_burst
from fsdp.driver.pcap import capture_append
from fsdp.driver.sim_dp import tx_csum_fill
from fsdp.driver.toeplitz import RETA_SIZE, rss_hash_frame_ipv4
from fsdp.pool.pool import FRAME_F_LOOPED, frame_alloc, frame_free
from fsdp.wire.byteorder import get_u48
from fsdp.wire.ethernet import ETH_HLEN
from fsdp.wire.ipv4 import IPPROTO_TCP

CAPTURE_RX = 0
CAPTURE_TX = 1


@njit(cache=True)
def capture_frame(core, fid, now, direction):
    pool = core.pool
    if not capture_append(
        core.capture, pool.data[fid], pool.off[fid], pool.length[fid], now, direction
    ):
        core.stats[STAT_CAPTURE_DROPPED] += 1


@njit(cache=True)
def tx_flush(core, now):
    """Hand everything queued to the NIC, a burst of ``core.tx_ids`` at a time (also with 0
    frames: the NIC releases delayed frames then)."""
    pool = core.pool
    batch = core.tx_ids.shape[0]
    while True:
        n = core.var[V_TX_N]
        head = core.var[V_TX_OVF_HEAD]
        while n < batch and head >= 0:
            core.tx_ids[n] = head
            nxt = pool.next[head]
            pool.next[head] = -1
            head = nxt
            n += 1
        core.var[V_TX_OVF_HEAD] = head
        if head < 0:
            core.var[V_TX_OVF_TAIL] = -1
        nic_tx_burst(core.nic, pool, core.tx_ids, n, now)
        core.var[V_TX_N] = 0
        if head < 0:
            break
    if core.var[V_LO_OUT_HEAD] >= 0:
        _loop_back(core)


@njit(inline="always", cache=True)
def _chain_push(pool, var, head_v, tail_v, fid):
    pool.next[fid] = -1
    tail = var[tail_v]
    if tail >= 0:
        pool.next[tail] = fid
    else:
        var[head_v] = fid
    var[tail_v] = fid


@njit(cache=True)
def _looped_queue(core, buf, off, n):
    """The queue RSS would give a frame this host sent itself (TCP: by its 4-tuple, with the
    port's key and redirection table, as the NIC hashes; anything else: this core's)."""
    me = core.cfg[CFG_CORE_ID]
    if core.cfg[CFG_N_CORES] <= 1 or n < ETH_HLEN + 20:
        return me
    ip = off + ETH_HLEN
    ihl = (np.int64(buf[ip]) & 0x0F) * 4
    if buf[ip + 9] != IPPROTO_TCP or n < ETH_HLEN + ihl + 4:
        return me
    h = rss_hash_frame_ipv4(core.rss, buf, ip, ip + ihl)
    return np.int64(core.reta[h & (RETA_SIZE - 1)])


@njit(cache=True)
def _loop_back(core):
    """Deliver the frames this host sent itself: a copy of each (the original may be a TCP
    segment kept for retransmission), checksums filled in (there is no NIC to do an offloaded
    one), to the core RSS gives it; the original is released as a NIC would."""
    pool = core.pool
    fid = core.var[V_LO_OUT_HEAD]
    core.var[V_LO_OUT_HEAD] = -1
    core.var[V_LO_OUT_TAIL] = -1
    me = core.cfg[CFG_CORE_ID]
    while fid >= 0:
        nxt = pool.next[fid]
        pool.next[fid] = -1
        n = pool.length[fid]
        off = pool.off[fid]
        cp = frame_alloc(pool)
        if cp < 0:
            core.stats[STAT_IP_LOOPBACK_DROPPED] += 1
        else:
            pool.data[cp, off:off + n] = pool.data[fid, off:off + n]
            pool.off[cp] = off
            pool.length[cp] = n
            pool.flags[cp] = FRAME_F_LOOPED
            tx_csum_fill(pool.data[cp], off, n)
            core.stats[STAT_IP_LOOPBACK] += 1
            q = _looped_queue(core, pool.data[cp], off, n)
            if q != me and nic_redirect(core.nic, pool, cp, q) != 0:
                frame_free(pool, cp)
            else:
                _chain_push(pool, core.var, V_LO_IN_HEAD, V_LO_IN_TAIL, cp)
                core.var[V_LO_IN_COUNT] += 1
        frame_free(pool, fid)
        fid = nxt


@njit(cache=True)
def take_looped(core):
    """The frames this host sent itself for this core (a chain through pool.next, -1 if none),
    now the caller's to receive."""
    fid = core.var[V_LO_IN_HEAD]
    core.var[V_LO_IN_HEAD] = -1
    core.var[V_LO_IN_TAIL] = -1
    core.var[V_LO_IN_COUNT] = 0
    return fid


@njit(cache=True)
def tx_enqueue(core, fid, now):
    """Queue a complete Ethernet frame for transmission; it leaves at the pass's ``tx_flush``,
    where the NIC takes ownership of it.  Never calls the NIC itself: every output path then
    compiles without the NIC backend's code (one copy of it, in the loop's flush)."""
    pool = core.pool
    if np.int64(get_u48(pool.data[fid], pool.off[fid])) == core.cfg[CFG_MAC]:
        # to this host itself: looped back in tx_flush, never on the wire (Linux: over lo)
        _chain_push(pool, core.var, V_LO_OUT_HEAD, V_LO_OUT_TAIL, fid)
        return
    core.stats[STAT_TX_FRAMES] += 1
    core.stats[STAT_TX_BYTES] += core.pool.length[fid]
    if core.cfg[CFG_CAPTURE]:
        capture_frame(core, fid, now, CAPTURE_TX)
    n = core.var[V_TX_N]
    if n < core.tx_ids.shape[0]:
        core.tx_ids[n] = fid
        core.var[V_TX_N] = n + 1
        return
    # the burst array is full: chain the frame through pool.next until the flush
    core.pool.next[fid] = -1
    tail = core.var[V_TX_OVF_TAIL]
    if tail >= 0:
        core.pool.next[tail] = fid
    else:
        core.var[V_TX_OVF_HEAD] = fid
    core.var[V_TX_OVF_TAIL] = fid
