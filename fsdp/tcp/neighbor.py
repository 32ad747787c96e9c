"""The per-core neighbour (ARP) cache and ARP input/output (RFC 826; RFC 1122 §2.3.2).

Each core keeps its own cache (share-nothing).  The NIC delivers ARP to every queue where it can
(the sim NIC replicates ARP and broadcasts), so every core learns every neighbour; one core
(``CFG_ARP_REPLY_CORE``) answers requests so a request gets one reply, not one per core.

Entry states follow Linux's NUD machine, simplified::

    (none) --output--> INCOMPLETE --reply--> REACHABLE --reachable time--> STALE --gc--> (none)
    INCOMPLETE --probes exhausted--> (none)   [queued frames dropped, counted]
    STALE --output--> DELAY --delay--> PROBE --reply--> REACHABLE
                                             --probes exhausted--> (none)
    STATIC: configured, never changed by ARP.

A resolving neighbour holds a bounded queue of IP packets; when it is full the oldest is dropped
(RFC 1122 §2.3.2.2: "SHOULD save at least one (the latest) packet").
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from fsdp.core.config import (
    CFG_ARP_GC_US,
    CFG_ARP_PROBES,
    CFG_ARP_QUEUE_LEN,
    CFG_ARP_REACHABLE_US,
    CFG_ARP_REPLY_CORE,
    CFG_ARP_RETRANS_US,
    CFG_CORE_ID,
    CFG_IP,
    CFG_MAC,
)
from fsdp.core.output import tx_enqueue
from fsdp.core.stats import (
    STAT_ARP_BOGUS,
    STAT_ARP_CONFLICT,
    STAT_ARP_IN,
    STAT_ARP_MALFORMED,
    STAT_ARP_QUEUE_DROP,
    STAT_ARP_REPLIES_IN,
    STAT_ARP_REPLIES_OUT,
    STAT_ARP_REQUESTS_IN,
    STAT_ARP_REQUESTS_OUT,
    STAT_ARP_RESOLVE_FAILED,
    STAT_ARP_TABLE_FULL,
    STAT_POOL_EMPTY,
)
from fsdp.core.vars import NO_DEADLINE, V_ARP_TIMER_US, V_NOW
from fsdp.pool.pool import frame_alloc, frame_free, frame_free_chain
from fsdp.wire.arp import (
    ARP_LEN,
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    arp_build,
    arp_check,
    arp_oper,
    arp_sha,
    arp_spa,
    arp_tpa,
)
from fsdp.wire.ethernet import (
    ETH_HLEN,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    MAC_BROADCAST,
    eth_build,
    mac_is_group,
)

ARP_FREE = 0
ARP_INCOMPLETE = 1
ARP_REACHABLE = 2
ARP_STALE = 3
ARP_DELAY = 4
ARP_PROBE = 5
ARP_STATIC = 6
ARP_STATE_NAMES = ("free", "incomplete", "reachable", "stale", "delay", "probe", "static")

ARP_DELAY_FIRST_PROBE_US = 5_000_000  # Linux delay_first_probe_time: wait for upper-layer proof


class ArpTable(NamedTuple):
    """Open-addressing (linear probing) hash from IPv4 address to neighbour; key 0 = empty."""

    ip: np.ndarray  # int64[n]
    mac: np.ndarray  # int64[n]
    state: np.ndarray  # int8[n]: ARP_*
    deadline: np.ndarray  # int64[n]: next timer event (µs), -1 none
    probes: np.ndarray  # int32[n]: requests sent in the current resolution/probe
    q_head: np.ndarray  # int32[n]: packets waiting for resolution, chained through pool.next
    q_tail: np.ndarray  # int32[n]
    q_len: np.ndarray  # int32[n]


def arp_table_create(n_entries: int) -> ArpTable:
    return ArpTable(
        ip=np.zeros(n_entries, np.int64),
        mac=np.zeros(n_entries, np.int64),
        state=np.zeros(n_entries, np.int8),
        deadline=np.full(n_entries, NO_DEADLINE, np.int64),
        probes=np.zeros(n_entries, np.int32),
        q_head=np.full(n_entries, -1, np.int32),
        q_tail=np.full(n_entries, -1, np.int32),
        q_len=np.zeros(n_entries, np.int32),
    )


@njit(inline="always", cache=True)
def _home(t, ip):
    return ((ip * 2654435761) >> 7) & (t.ip.shape[0] - 1)


@njit(cache=True)
def arp_lookup(t, ip):
    """Slot of ``ip`` or -1."""
    mask = t.ip.shape[0] - 1
    i = _home(t, ip)
    for _ in range(t.ip.shape[0]):
        k = t.ip[i]
        if k == ip:
            return i
        if k == 0:
            return -1
        i = (i + 1) & mask
    return -1


@njit(cache=True)
def _arp_insert(t, ip):
    """A fresh slot for ``ip`` (not present), or -1 when the table is full."""
    mask = t.ip.shape[0] - 1
    i = _home(t, ip)
    for _ in range(t.ip.shape[0]):
        if t.ip[i] == 0:
            t.ip[i] = ip
            t.mac[i] = 0
            t.state[i] = ARP_FREE
            t.deadline[i] = NO_DEADLINE
            t.probes[i] = 0
            t.q_head[i] = -1
            t.q_tail[i] = -1
            t.q_len[i] = 0
            return i
        i = (i + 1) & mask
    return -1


@njit(cache=True)
def _arp_move(t, dst, src):
    t.ip[dst] = t.ip[src]
    t.mac[dst] = t.mac[src]
    t.state[dst] = t.state[src]
    t.deadline[dst] = t.deadline[src]
    t.probes[dst] = t.probes[src]
    t.q_head[dst] = t.q_head[src]
    t.q_tail[dst] = t.q_tail[src]
    t.q_len[dst] = t.q_len[src]


@njit(cache=True)
def arp_remove(core, slot):
    """Delete an entry (dropping any packets still waiting) with backward-shift deletion, so no
    tombstones ever slow lookups down."""
    t = core.arp
    if t.q_len[slot] > 0:
        core.stats[STAT_ARP_RESOLVE_FAILED] += t.q_len[slot]
        frame_free_chain(core.pool, t.q_head[slot])
    mask = t.ip.shape[0] - 1
    hole = slot
    j = slot
    while True:
        j = (j + 1) & mask
        if t.ip[j] == 0:
            break
        home = _home(t, t.ip[j])
        # The entry at j may fill the hole unless its home lies cyclically in (hole, j].
        if hole <= j:
            stays = hole < home <= j
        else:
            stays = home > hole or home <= j
        if not stays:
            _arp_move(t, hole, j)
            hole = j
    t.ip[hole] = 0
    t.state[hole] = ARP_FREE
    t.deadline[hole] = NO_DEADLINE
    t.q_head[hole] = -1
    t.q_tail[hole] = -1
    t.q_len[hole] = 0


@njit(inline="always", cache=True)
def _arm(core, slot, deadline):
    core.arp.deadline[slot] = deadline
    cur = core.var[V_ARP_TIMER_US]
    if cur == NO_DEADLINE or deadline < cur:
        core.var[V_ARP_TIMER_US] = deadline


@njit(cache=True)
def arp_send(core, oper, eth_dst, tha, tpa, now):
    """Transmit an ARP packet from this host; False if no frame could be allocated."""
    pool = core.pool
    fid = frame_alloc(pool)
    if fid < 0:
        core.stats[STAT_POOL_EMPTY] += 1
        return False
    buf = pool.data[fid]
    off = pool.off[fid]
    mac = core.cfg[CFG_MAC]
    eth_build(buf, off, eth_dst, mac, ETHERTYPE_ARP)
    arp_build(buf, off + ETH_HLEN, oper, mac, core.cfg[CFG_IP], tha, tpa)
    pool.length[fid] = ETH_HLEN + ARP_LEN
    if oper == ARP_OP_REQUEST:
        core.stats[STAT_ARP_REQUESTS_OUT] += 1
    else:
        core.stats[STAT_ARP_REPLIES_OUT] += 1
    tx_enqueue(core, fid, now)
    return True


@njit(inline="always", cache=True)
def _send_with_mac(core, fid, mac, now):
    """Prepend the Ethernet header to an IPv4 packet and queue it for the wire."""
    pool = core.pool
    off = pool.off[fid] - ETH_HLEN
    eth_build(pool.data[fid], off, mac, core.cfg[CFG_MAC], ETHERTYPE_IPV4)
    pool.off[fid] = off
    pool.length[fid] += ETH_HLEN
    tx_enqueue(core, fid, now)


@njit(cache=True)
def _flush_queue(core, slot, now):
    t = core.arp
    fid = t.q_head[slot]
    mac = t.mac[slot]
    while fid >= 0:
        nxt = core.pool.next[fid]
        core.pool.next[fid] = -1
        _send_with_mac(core, fid, mac, now)
        fid = nxt
    t.q_head[slot] = -1
    t.q_tail[slot] = -1
    t.q_len[slot] = 0


@njit(cache=True)
def neigh_output(core, fid, next_hop, now):
    """Send the IPv4 packet in frame ``fid`` to the on-link host ``next_hop``, resolving its MAC
    first if needed (the frame waits on the neighbour's queue meanwhile).  Takes ownership."""
    if next_hop == core.cfg[CFG_IP]:
        # this host itself: its own MAC, no ARP (the frame is looped back, core/output.py)
        _send_with_mac(core, fid, core.cfg[CFG_MAC], now)
        return
    t = core.arp
    slot = arp_lookup(t, next_hop)
    if slot < 0:
        slot = _arp_insert(t, next_hop)
        if slot < 0:
            core.stats[STAT_ARP_TABLE_FULL] += 1
            frame_free(core.pool, fid)
            return
        t.state[slot] = ARP_INCOMPLETE
        t.probes[slot] = 1
        _arm(core, slot, now + core.cfg[CFG_ARP_RETRANS_US])
        arp_send(core, ARP_OP_REQUEST, MAC_BROADCAST, 0, next_hop, now)
    st = t.state[slot]
    if st == ARP_INCOMPLETE:
        if t.q_len[slot] >= core.cfg[CFG_ARP_QUEUE_LEN]:
            old = t.q_head[slot]  # as Linux: the oldest waiting packet makes room
            t.q_head[slot] = core.pool.next[old]
            core.pool.next[old] = -1
            frame_free(core.pool, old)
            t.q_len[slot] -= 1
            core.stats[STAT_ARP_QUEUE_DROP] += 1
            if t.q_head[slot] < 0:
                t.q_tail[slot] = -1
        core.pool.next[fid] = -1
        if t.q_tail[slot] >= 0:
            core.pool.next[t.q_tail[slot]] = fid
        else:
            t.q_head[slot] = fid
        t.q_tail[slot] = fid
        t.q_len[slot] += 1
        return
    if st == ARP_STALE:
        t.state[slot] = ARP_DELAY
        _arm(core, slot, now + ARP_DELAY_FIRST_PROBE_US)
    _send_with_mac(core, fid, t.mac[slot], now)


@njit(cache=True)
def neigh_confirm(core, ip, now):
    """Upper-layer proof of reachability (a TCP ACK for new data, RFC 1122 §2.3.2.1): refresh a
    neighbour without an ARP exchange, as Linux's dst_confirm does."""
    t = core.arp
    slot = arp_lookup(t, ip)
    if slot >= 0 and t.state[slot] != ARP_STATIC and t.state[slot] != ARP_INCOMPLETE:
        t.state[slot] = ARP_REACHABLE
        t.probes[slot] = 0
        _arm(core, slot, now + core.cfg[CFG_ARP_REACHABLE_US])


@njit(cache=True)
def arp_add_static(core, ip, mac):
    """A permanent neighbour (never aged or overridden by ARP); False if the table is full."""
    t = core.arp
    slot = arp_lookup(t, ip)
    if slot < 0:
        slot = _arp_insert(t, ip)
        if slot < 0:
            return False
    t.mac[slot] = mac
    t.state[slot] = ARP_STATIC
    t.deadline[slot] = NO_DEADLINE
    if t.q_len[slot] > 0:
        _flush_queue(core, slot, core.var[V_NOW])
    return True


@njit(cache=True)
def arp_input(core, fid, now):
    """Process one received ARP frame (RFC 826 "Packet Reception"); frees it."""
    pool = core.pool
    buf = pool.data[fid]
    off = pool.off[fid] + ETH_HLEN
    n = pool.length[fid] - ETH_HLEN
    core.stats[STAT_ARP_IN] += 1
    if arp_check(buf, off, n) != 0:
        core.stats[STAT_ARP_MALFORMED] += 1
        frame_free(pool, fid)
        return
    oper = arp_oper(buf, off)
    sha = arp_sha(buf, off)
    spa = arp_spa(buf, off)
    tpa = arp_tpa(buf, off)
    frame_free(pool, fid)
    if oper == ARP_OP_REQUEST:
        core.stats[STAT_ARP_REQUESTS_IN] += 1
    else:
        core.stats[STAT_ARP_REPLIES_IN] += 1
    my_ip = core.cfg[CFG_IP]
    # Sanity: a sender must be a unicast station with a unicast (or, for RFC 5227 probes, zero)
    # address, and not us.
    if (
        mac_is_group(sha)
        or sha == 0
        or sha == core.cfg[CFG_MAC]
        or spa == 0xFFFFFFFF
        or (spa >> 28) == 0xE
    ):
        core.stats[STAT_ARP_BOGUS] += 1
        return
    if spa == my_ip:
        core.stats[STAT_ARP_CONFLICT] += 1  # someone else claims our address: never learn it
        return
    for_us = tpa == my_ip
    t = core.arp
    # RFC 826 merge: update the sender's entry if we have one ...
    slot = arp_lookup(t, spa) if spa != 0 else -1
    if slot >= 0 and t.state[slot] != ARP_STATIC:
        st = t.state[slot]
        if oper == ARP_OP_REPLY:
            t.mac[slot] = sha
            t.state[slot] = ARP_REACHABLE
            t.probes[slot] = 0
            _arm(core, slot, now + core.cfg[CFG_ARP_REACHABLE_US])
        elif st == ARP_INCOMPLETE or t.mac[slot] != sha:
            # A request proves the sender exists but not that it hears us: STALE, as Linux.
            t.mac[slot] = sha
            t.state[slot] = ARP_STALE
            t.probes[slot] = 0
            _arm(core, slot, now + core.cfg[CFG_ARP_GC_US])
        if st == ARP_INCOMPLETE and t.q_len[slot] > 0:
            _flush_queue(core, slot, now)
    elif slot < 0 and spa != 0 and for_us and oper == ARP_OP_REQUEST:
        # ... and, if the request is for us, add the sender (it is about to talk to us).
        slot = _arp_insert(t, spa)
        if slot < 0:
            core.stats[STAT_ARP_TABLE_FULL] += 1
        else:
            t.mac[slot] = sha
            t.state[slot] = ARP_STALE
            _arm(core, slot, now + core.cfg[CFG_ARP_GC_US])
    if oper == ARP_OP_REQUEST and for_us:
        reply_core = core.cfg[CFG_ARP_REPLY_CORE]
        if reply_core < 0 or reply_core == core.cfg[CFG_CORE_ID]:
            arp_send(core, ARP_OP_REPLY, sha, sha, spa, now)


@njit(cache=True)
def arp_timers(core, now):
    """Fire every due neighbour timer, then re-arm the core's earliest ARP deadline."""
    t = core.arp
    retrans = core.cfg[CFG_ARP_RETRANS_US]
    max_probes = core.cfg[CFG_ARP_PROBES]
    i = 0
    n = t.ip.shape[0]
    while i < n:
        if t.ip[i] == 0 or t.deadline[i] == NO_DEADLINE or t.deadline[i] > now:
            i += 1
            continue
        st = t.state[i]
        if st == ARP_INCOMPLETE or st == ARP_PROBE:
            if t.probes[i] < max_probes:
                t.probes[i] += 1
                t.deadline[i] = now + retrans
                dst = MAC_BROADCAST if st == ARP_INCOMPLETE else t.mac[i]
                arp_send(core, ARP_OP_REQUEST, dst, 0, t.ip[i], now)
            else:
                arp_remove(core, i)
                continue  # backward shift may have moved another entry into slot i
        elif st == ARP_REACHABLE:
            t.state[i] = ARP_STALE
            t.deadline[i] = now + core.cfg[CFG_ARP_GC_US]
        elif st == ARP_DELAY:
            t.state[i] = ARP_PROBE
            t.probes[i] = 1
            t.deadline[i] = now + retrans
            arp_send(core, ARP_OP_REQUEST, t.mac[i], 0, t.ip[i], now)
        elif st == ARP_STALE:
            arp_remove(core, i)
            continue
        else:
            t.deadline[i] = NO_DEADLINE
        i += 1
    earliest = NO_DEADLINE
    for j in range(n):
        d = t.deadline[j]
        if t.ip[j] != 0 and d != NO_DEADLINE and (earliest == NO_DEADLINE or d < earliest):
            earliest = d
    core.var[V_ARP_TIMER_US] = earliest


@njit(cache=True)
def arp_queued_frames(core):
    """Frames held by resolving neighbours (for the leak audit)."""
    total = 0
    for i in range(core.arp.ip.shape[0]):
        if core.arp.ip[i] != 0:
            total += core.arp.q_len[i]
    return total
