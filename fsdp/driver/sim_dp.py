"""The sim NIC's data path: what one core runs against its own queue of a sim port.

A core calls :func:`sim_rx_burst`, :func:`sim_tx_burst` and :func:`sim_next_event` on its
:class:`SimQueue` (or the backend-neutral ``nic_*`` calls of :mod:`fsdp.driver.api`).  The switch
has no thread of its own: **switching happens in the sender's transmit path**, which picks the
destination ports by destination MAC, the receive queue(s) at each destination as a real NIC
would (ARP/broadcast to every queue, Flow Director, else Toeplitz RSS + RETA), applies the
sender's egress faults and checksum offload, and copies the frame into the single-producer/
single-consumer ring (sender port, tx queue) -> (receiver port, rx queue).  The receiver copies
frames out of its rings into its own pool, like DMA.  Nothing here allocates or raises; drops are
counted in the queue's ``SIMQ_STAT_*`` row.

Ring protocol: the producer writes a burst's slots, then publishes ``tail`` once per burst and
destination with a release store (:func:`_ring_bells`); the consumer loads ``tail`` with
acquire, reads the slots, then publishes ``head`` with release, which the producer loads with
acquire before reusing slots.  Counters are free-running int64.  Publishing per burst, not per
frame, matters with many cores: a consumer polling ``tail`` holds its cache line, and every
store to it is a coherence miss for the producer (one per burst instead of one per frame).

Performance rule for this file: Numba updates an array's reference count (an atomic op behind a
function call) whenever an array is taken out of a NamedTuple or sliced into a view, and an
inlined helper that receives a tuple copies all its arrays.  So the entry points take each array
out of the queue and the pool once per burst, helpers receive arrays and the int-only
:class:`SimGeo`, and nothing per frame makes a view.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from fsdp.atomic import fence, fetch_add, futex_wake, load_acquire, store_release
from fsdp.driver.jitmem import borrow, borrow_pool, copy_bytes
from fsdp.driver.sim_layout import (
    BELL_SEQ,
    BELL_SLEEPERS,
    BELL_STRIDE,
    FDIR_KEY_ADDR,
    FDIR_KEY_PORTS,
    FDIR_NF,
    FDIR_QUEUE,
    FDIR_VALID,
    FLT_CE_MARK,
    FLT_CORRUPT,
    FLT_DELAY_US,
    FLT_DROP,
    FLT_DUP,
    FLT_GEN,
    FLT_JITTER_US,
    FLT_NF,
    FLT_ON,
    FLT_RATE_BPS,
    FLT_REORDER,
    FLT_REORDER_US,
    FLT_SEED,
    HDR_PORT_GEN,
    PORT_ATTACHED,
    PORT_FDIR_COUNT,
    PORT_MAC,
    PORT_N_QUEUES,
    PORT_NF,
    PORT_PROMISC,
    PORT_RX_CSUM,
    PORT_STATE,
    PORT_TX_CSUM,
    RING_CTRL_STRIDE,
    RING_HEAD,
    RING_TAIL,
    SIMQ_STAT_DELAY_OVERFLOW,
    SIMQ_STAT_FAULT_CE,
    SIMQ_STAT_FAULT_CORRUPT,
    SIMQ_STAT_FAULT_DELAY,
    SIMQ_STAT_FAULT_DROP,
    SIMQ_STAT_FAULT_DUP,
    SIMQ_STAT_FAULT_REORDER,
    SIMQ_STAT_NO_DEST,
    SIMQ_STAT_RING_FULL,
    SIMQ_STAT_RX_BYTES,
    SIMQ_STAT_RX_CSUM_BAD,
    SIMQ_STAT_RX_FRAMES,
    SIMQ_STAT_RX_NOBUF,
    SIMQ_STAT_TX_BAD_LEN,
    SIMQ_STAT_TX_BYTES,
    SIMQ_STAT_TX_FRAMES,
    SIMQ_STAT_TX_RUNT,
    SIMQ_STAT_WIRE_COPIES,
    SLOT_HDR,
    SLOT_SIZE,
)
from fsdp.driver.toeplitz import RETA_SIZE, rss_hash_frame_ipv4_at
from fsdp.pool.pool import (
    FRAME_F_REDIRECTED,
    FRAME_F_RX_CSUM_BAD,
    FRAME_F_RX_CSUM_OK,
    FRAME_F_TX_CSUM,
    FRAME_SIZE,
    HEADROOM,
    MAX_FRAME_LEN,
    frame_alloc_burst,
    frame_free_burst,
)
from fsdp.wire.byteorder import get_u16, get_u32, get_u48, set_u16
from fsdp.wire.checksum import checksum, csum_fold, csum_partial, ipv4_pseudo_sum
from fsdp.wire.ethernet import (
    ETH_HLEN,
    ETH_TYPE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    MAC_BROADCAST,
    MAC_GROUP_BIT,
)
from fsdp.wire.ipv4 import (
    IP_CSUM,
    IP_DST,
    IP_FLAG_MF,
    IP_FRAG,
    IP_FRAG_OFFSET_MASK,
    IP_HLEN_MIN,
    IP_LEN,
    IP_PROTO,
    IP_SRC,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
)

# Private per-queue state: the first QS_N words of SimQueue.priv.
QS_RX_CURSOR = 0  # next source ring to poll first (round-robin fairness)
QS_PORT_GEN = 1  # header port generation the peer/source caches were built for
QS_N_SRC = 2
QS_N_PEERS = 3
QS_FAULT_GEN = 4  # fault generation the RNG was seeded for
QS_RATE_NEXT_NS = 5  # rate limiter: when the egress link is next idle (ns)
QS_DL_COUNT = 6  # frames waiting in the delay line
QS_DL_SEQ = 7  # insertion counter: equal release times leave in FIFO order
QS_DL_FREE_TOP = 8
QS_RNG = 9  # xorshift64* state (bits of a uint64)
QS_N_SRC_PEERS = 10  # source rings [0, this) come from other ports; the rest from sibling queues
QS_PUSHED = 11  # rings pushed to since the last doorbell check (p_pushed[:this], _ring_bells)
QS_N = 16

# Peer cache entries (the other attached ports) in SimQueue.priv.
PEER_PORT = 0
PEER_MAC = 1
PEER_PROMISC = 2
PEER_NQ = 3
PEER_NF = 4

# Frame classes for queue selection.
CLS_OTHER = 0  # non-IP or unparsable: queue 0
CLS_ARP = 1  # every queue
CLS_IPV4 = 2  # 2-tuple RSS
CLS_IPV4_L4 = 3  # TCP/UDP, not a fragment: 4-tuple RSS


class SimGeo(NamedTuple):
    """Where one queue's data lives: ids, geometry, and word offsets into ``ctl`` and ``priv``.

    Ints only, so passing it around costs nothing.
    """

    port: int
    queue: int
    max_ports: int
    max_queues: int
    ring_slots: int
    fdir_size: int
    dl_cap: int  # delay-line frames
    c_ports: int  # ctl offsets of the int64 sections
    c_faults: int
    c_reta: int
    c_stats: int  # this queue's counters row
    c_fdir: int
    c_ring: int
    c_bells: int
    p_peers: int  # priv offsets
    p_src: int
    p_head: int
    p_pushed: int
    p_pending: int
    p_dl_time: int
    p_dl_seq: int
    p_dl_row: int
    p_dl_free: int
    p_dl_len: int
    p_dl_corrupt: int


class SimQueue(NamedTuple):
    """One core's view of one queue of a sim port: the shared wire plus private state.

    Only arrays and ints, so jitted callers compile once and cache.  Exactly one core may use a
    given SimQueue (it is the sole producer of its tx rings and sole consumer of its rx rings).
    """

    geo: SimGeo
    ctl: np.ndarray  # shared int64: header, ports, faults, reta, stats, fdir, ring heads/tails
    rss: np.ndarray  # shared uint32[max_ports, 12, 256]: per-port Toeplitz tables
    ring: np.ndarray  # shared uint8: ring slots
    priv: np.ndarray  # private int64: QS_* state, peer cache, source rings, head cache, heap
    dl: np.ndarray  # private uint8[dl_cap * SLOT_SIZE]: delay-line frames


def sim_priv_layout(max_ports: int, max_queues: int, dl_cap: int) -> tuple[dict, int]:
    """Offsets of the sections of a queue's private array, and its length in words."""
    offs = {}
    off = QS_N
    for name, words in (
        ("p_peers", max_ports * PEER_NF),
        ("p_src", max_ports * max_queues),
        ("p_head", max_ports * max_queues),
        ("p_pushed", max_ports * max_queues),  # destination queues pushed to this burst ...
        ("p_pending", max_ports * max_queues),  # ... and the frames not yet published to each
        ("p_dl_time", dl_cap),
        ("p_dl_seq", dl_cap),
        ("p_dl_row", dl_cap),
        ("p_dl_free", dl_cap),
        ("p_dl_len", dl_cap),
        ("p_dl_corrupt", dl_cap),
    ):
        offs[name] = off
        off += words
    return offs, off


# --------------------------------------------------------------------------- Flow Director keys


@njit(cache=True)
def fdir_key(src_ip, dst_ip, src_port, dst_port, proto):
    """The two key words of a Flow Director rule (shared by the control plane and the lookup)."""
    k_addr = np.int64(
        (np.uint64(src_ip & 0xFFFFFFFF) << np.uint64(32)) | np.uint64(dst_ip & 0xFFFFFFFF)
    )
    k_ports = FDIR_VALID | ((src_port & 0xFFFF) << 24) | ((dst_port & 0xFFFF) << 8) | (proto & 0xFF)
    return k_addr, np.int64(k_ports)


@njit(cache=True)
def fdir_bucket(k_addr, k_ports, mask):
    """Home bucket of a key: a multiplicative mix of both words (not Toeplitz: any good mix)."""
    h = np.uint64(k_addr) ^ (np.uint64(k_ports) * np.uint64(0x9E3779B97F4A7C15))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(31)
    return np.int64(h >> np.uint64(16)) & mask


@njit(cache=True)
def _fdir_lookup(g, ctl, p, k_addr, k_ports):
    """Queue of the rule for this key on port ``p``, or -1."""
    mask = g.fdir_size - 1
    table = g.c_fdir + p * g.fdir_size * FDIR_NF
    b = fdir_bucket(k_addr, k_ports, mask)
    for _ in range(g.fdir_size):
        e = table + b * FDIR_NF
        kp = ctl[e + FDIR_KEY_PORTS]
        if kp == 0:
            return -1
        if kp == k_ports and ctl[e + FDIR_KEY_ADDR] == k_addr:
            return ctl[e + FDIR_QUEUE]
        b = (b + 1) & mask
    return -1


# --------------------------------------------------------------------------- parsing and steering


@njit(cache=True)
def _classify(buf, off, n):
    """(class, ip offset, l4 offset or -1) of a frame; never reads past ``off + n``."""
    if n < ETH_HLEN:
        return CLS_OTHER, -1, -1
    etype = get_u16(buf, off + ETH_TYPE)
    if etype == ETHERTYPE_ARP:
        return CLS_ARP, -1, -1
    if etype != ETHERTYPE_IPV4 or n < ETH_HLEN + IP_HLEN_MIN:
        return CLS_OTHER, -1, -1
    ip = off + ETH_HLEN
    vhl = np.int64(buf[ip])
    ihl = (vhl & 0x0F) * 4
    if (vhl >> 4) != 4 or ihl < IP_HLEN_MIN or ETH_HLEN + ihl > n:
        return CLS_OTHER, -1, -1
    proto = buf[ip + IP_PROTO]
    fragment = (get_u16(buf, ip + IP_FRAG) & (IP_FLAG_MF | IP_FRAG_OFFSET_MASK)) != 0
    if not fragment and (proto == IPPROTO_TCP or proto == IPPROTO_UDP):
        if ETH_HLEN + ihl + 4 > n:
            return CLS_OTHER, -1, -1  # truncated before the ports
        return CLS_IPV4_L4, ip, ip + ihl
    return CLS_IPV4, ip, -1


@njit(cache=True)
def _steer(g, ctl, rss, p, nq, cls, buf, ip, l4):
    """Receive queue of port ``p`` for a non-replicated frame: Flow Director, else RSS."""
    if cls != CLS_IPV4 and cls != CLS_IPV4_L4:
        return 0
    if ctl[g.c_ports + p * PORT_NF + PORT_FDIR_COUNT] > 0:
        sport = 0
        dport = 0
        if l4 >= 0:
            sport = np.int64(get_u16(buf, l4))
            dport = np.int64(get_u16(buf, l4 + 2))
        k_addr, k_ports = fdir_key(
            np.int64(get_u32(buf, ip + IP_SRC)),
            np.int64(get_u32(buf, ip + IP_DST)),
            sport,
            dport,
            np.int64(buf[ip + IP_PROTO]),
        )
        fq = _fdir_lookup(g, ctl, p, k_addr, k_ports)
        if fq >= 0 and fq < nq:
            return fq
    h = rss_hash_frame_ipv4_at(rss, p, buf, ip, l4)
    dq = ctl[g.c_reta + p * RETA_SIZE + (h & (RETA_SIZE - 1))]
    if dq < 0 or dq >= nq:
        return 0
    return dq


# --------------------------------------------------------------------------- checksum offload


@njit(cache=True)
def tx_csum_fill(buf, off, n):
    """Fill in the IPv4 header checksum and the TCP/UDP/ICMP checksum of the frame at ``off``.

    What the fields held before is ignored (a NIC computes them as if zero).  Fragments get the
    IPv4 header checksum only; anything unparsable is left as it is.
    """
    if n < ETH_HLEN + IP_HLEN_MIN or get_u16(buf, off + ETH_TYPE) != ETHERTYPE_IPV4:
        return
    ip = off + ETH_HLEN
    vhl = np.int64(buf[ip])
    ihl = (vhl & 0x0F) * 4
    total = np.int64(get_u16(buf, ip + IP_LEN))
    if (vhl >> 4) != 4 or ihl < IP_HLEN_MIN or total < ihl or ETH_HLEN + total > n:
        return
    set_u16(buf, ip + IP_CSUM, 0)
    set_u16(buf, ip + IP_CSUM, checksum(buf, ip, ihl))
    if (get_u16(buf, ip + IP_FRAG) & (IP_FLAG_MF | IP_FRAG_OFFSET_MASK)) != 0:
        return
    proto = np.int64(buf[ip + IP_PROTO])
    l4 = ip + ihl
    l4_len = total - ihl
    if proto == IPPROTO_TCP and l4_len >= 20:
        field = l4 + 16
    elif proto == IPPROTO_UDP and l4_len >= 8:
        field = l4 + 6
    elif proto == IPPROTO_ICMP and l4_len >= 4:
        field = l4 + 2
    else:
        return
    set_u16(buf, field, 0)
    initial = 0
    if proto != IPPROTO_ICMP:
        initial = ipv4_pseudo_sum(
            np.int64(get_u32(buf, ip + IP_SRC)), np.int64(get_u32(buf, ip + IP_DST)), proto, l4_len
        )
    c = csum_fold(csum_partial(buf, l4, l4_len, initial))
    if proto == IPPROTO_UDP and c == 0:
        c = 0xFFFF  # RFC 768: a computed zero is sent as all ones
    set_u16(buf, field, c)


@njit(cache=True)
def rx_csum_status(buf, off, n):
    """FRAME_F_RX_CSUM_OK, FRAME_F_RX_CSUM_BAD, or 0 (not verifiable: not IPv4, malformed,
    a fragment, or a protocol other than TCP/UDP/ICMP with a good header checksum)."""
    if n < ETH_HLEN + IP_HLEN_MIN or get_u16(buf, off + ETH_TYPE) != ETHERTYPE_IPV4:
        return 0
    ip = off + ETH_HLEN
    vhl = np.int64(buf[ip])
    ihl = (vhl & 0x0F) * 4
    total = np.int64(get_u16(buf, ip + IP_LEN))
    if (vhl >> 4) != 4 or ihl < IP_HLEN_MIN or total < ihl or ETH_HLEN + total > n:
        return 0
    if checksum(buf, ip, ihl) != 0:
        return FRAME_F_RX_CSUM_BAD
    if (get_u16(buf, ip + IP_FRAG) & (IP_FLAG_MF | IP_FRAG_OFFSET_MASK)) != 0:
        return 0
    proto = np.int64(buf[ip + IP_PROTO])
    l4 = ip + ihl
    l4_len = total - ihl
    if proto == IPPROTO_TCP and l4_len >= 20:
        pass
    elif proto == IPPROTO_UDP and l4_len >= 8:
        if get_u16(buf, l4 + 6) == 0:
            return FRAME_F_RX_CSUM_OK  # RFC 768: no checksum was sent
    elif proto == IPPROTO_ICMP and l4_len >= 4:
        pass
    else:
        return 0
    initial = 0
    if proto != IPPROTO_ICMP:
        initial = ipv4_pseudo_sum(
            np.int64(get_u32(buf, ip + IP_SRC)), np.int64(get_u32(buf, ip + IP_DST)), proto, l4_len
        )
    if csum_fold(csum_partial(buf, l4, l4_len, initial)) != 0:
        return FRAME_F_RX_CSUM_BAD
    return FRAME_F_RX_CSUM_OK


# --------------------------------------------------------------------------- caches and RNG


@njit(cache=True)
def _rebuild_caches(g, ctl, priv, gen):
    """Peer list (for switching) and source rings (for receiving) from the port table."""
    mp = g.max_ports
    mq = g.max_queues
    n_peers = 0
    n_src = 0
    for p in range(mp):
        row = g.c_ports + p * PORT_NF
        if p == g.port:
            continue
        nq = min(ctl[row + PORT_N_QUEUES], mq)
        if ctl[row + PORT_STATE] != PORT_ATTACHED:
            # A port that left (its process closed the stack, or exited) may have sent frames
            # this queue has not read yet: they were on the wire and still arrive, as frames in
            # flight do on a link whose sender goes away.  Its rings toward this queue stay
            # sources until the next rebuild; a reattached slot's new owner continues them.
            for sq in range(nq):
                r = ((p * mq + sq) * mp + g.port) * mq + g.queue
                ci = g.c_ring + r * RING_CTRL_STRIDE
                if load_acquire(ctl, ci + RING_TAIL) != ctl[ci + RING_HEAD]:
                    priv[g.p_src + n_src] = r
                    n_src += 1
            continue
        pe = g.p_peers + n_peers * PEER_NF
        priv[pe + PEER_PORT] = p
        priv[pe + PEER_MAC] = ctl[row + PORT_MAC]
        priv[pe + PEER_PROMISC] = ctl[row + PORT_PROMISC]
        priv[pe + PEER_NQ] = nq
        n_peers += 1
        for sq in range(nq):
            priv[g.p_src + n_src] = ((p * mq + sq) * mp + g.port) * mq + g.queue
            n_src += 1
    priv[QS_N_SRC_PEERS] = n_src
    # The port's other queues hand this one frames too (sim_redirect: a core passing a segment
    # to the core that owns its connection or listener).
    own_nq = min(ctl[g.c_ports + g.port * PORT_NF + PORT_N_QUEUES], mq)
    for sq in range(own_nq):
        if sq != g.queue:
            priv[g.p_src + n_src] = ((g.port * mq + sq) * mp + g.port) * mq + g.queue
            n_src += 1
    priv[QS_N_PEERS] = n_peers
    priv[QS_N_SRC] = n_src
    if priv[QS_RX_CURSOR] >= n_src:
        priv[QS_RX_CURSOR] = 0
    priv[QS_PORT_GEN] = gen


@njit(inline="always", cache=True)
def _sync_ports(g, ctl, priv):
    """Rebuild the caches when a port attached or detached anywhere (one load when not)."""
    gen = load_acquire(ctl, HDR_PORT_GEN)
    if gen != priv[QS_PORT_GEN]:
        _rebuild_caches(g, ctl, priv, gen)


@njit(cache=True)
def _rand(priv):
    """xorshift64* (Vigna): the queue's private, reproducible stream; 53 uniform bits."""
    x = np.uint64(priv[QS_RNG])
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    priv[QS_RNG] = np.int64(x)
    return np.int64((x * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(11))


@njit(cache=True)
def sim_seed_rng(seed, mac, queue):
    """splitmix64 of (seed, port MAC, queue): a nonzero xorshift state, stable across runs."""
    z = np.uint64(seed) ^ (np.uint64(mac) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(queue + 1)
    z += np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    if z == 0:
        z = np.uint64(1)
    return np.int64(z)


@njit(cache=True)
def _sync_faults(g, ctl, priv):
    """True when the port has egress faults configured; reseeds on every new configuration."""
    f = g.c_faults + g.port * FLT_NF
    gen = ctl[f + FLT_GEN]
    if gen != priv[QS_FAULT_GEN]:
        priv[QS_FAULT_GEN] = gen
        mac = ctl[g.c_ports + g.port * PORT_NF + PORT_MAC]
        priv[QS_RNG] = sim_seed_rng(ctl[f + FLT_SEED], mac, g.queue)
        priv[QS_RATE_NEXT_NS] = 0
    return ctl[f + FLT_ON] != 0


# --------------------------------------------------------------------------- rings and delivery


MARK_CE = -2  # in place of a corrupt bit: the copy is marked CE (FLT_CE_MARK)


@njit(cache=True)
def _is_ect(buf, off, n):
    """An IPv4 frame whose ECN field says ECT(0) or ECT(1): a router may mark it CE instead of
    dropping it (RFC 3168 §5)."""
    if n < ETH_HLEN + 20 or get_u16(buf, off + 12) != ETHERTYPE_IPV4:
        return False
    e = buf[off + ETH_HLEN + 1] & 3
    return e == 1 or e == 2


@njit(cache=True)
def _mark_ce(buf, ip):
    """Set the ECN field of the IPv4 header at ``ip`` to CE and fix its header checksum."""
    buf[ip + 1] |= np.uint8(3)
    hlen = np.int64(buf[ip] & 0xF) * 4
    set_u16(buf, ip + 10, 0)
    set_u16(buf, ip + 10, checksum(buf, ip, hlen))


@njit(cache=True)
def _ring_push(g, ctl, ring, priv, p, dq, buf, off, n, csum, corrupt_bit):
    """Copy one frame into ring (this queue) -> (port p, queue dq); 1 if written, 0 if full."""
    dst = p * g.max_queues + dq
    r = (g.port * g.max_queues + g.queue) * (g.max_ports * g.max_queues) + dst
    ci = g.c_ring + r * RING_CTRL_STRIDE
    slots = g.ring_slots
    pend = priv[g.p_pending + dst]
    tail = ctl[ci + RING_TAIL] + pend  # slots written this burst are published at its end
    hc = g.p_head + dst
    if tail - priv[hc] >= slots:
        priv[hc] = load_acquire(ctl, ci + RING_HEAD)
        if tail - priv[hc] >= slots:
            ctl[g.c_stats + SIMQ_STAT_RING_FULL] += 1
            return 0
    slot = (r * slots + (tail & (slots - 1))) * SLOT_SIZE
    base = slot + SLOT_HDR
    copy_bytes(ring, base, buf, off, n)
    ring[slot] = n & 0xFF
    ring[slot + 1] = n >> 8
    if csum:
        tx_csum_fill(ring, base, n)
    if corrupt_bit >= 0:
        ring[base + (corrupt_bit >> 3)] ^= np.uint8(0x80 >> (corrupt_bit & 7))
    elif corrupt_bit == MARK_CE:
        _mark_ce(ring, base + ETH_HLEN)
    if pend == 0:  # the burst's end publishes the tail and rings the doorbell (_ring_bells)
        priv[g.p_pushed + priv[QS_PUSHED]] = dst
        priv[QS_PUSHED] += 1
    priv[g.p_pending + dst] = pend + 1
    return 1


@njit(cache=True)
def _ring_bells(g, ctl, priv):
    """Publish the tail of every ring this queue wrote frames to since the last call, then wake
    the threads asleep on those queues' doorbells (fsdp.driver.sim.queue_sleep): once per
    burst, not per frame.  Every path that calls _ring_push ends with this call.

    The hand-shake is Dekker's: a sleeper counts itself in BELL_SLEEPERS with a locked
    instruction, *then* looks at its rings one last time, then waits on BELL_SEQ (if it still
    holds what it read before counting itself).  A sender publishes its tails, *then* (after a
    full fence: a release store may pass a later load) reads BELL_SLEEPERS.  So either the
    sleeper's last look sees the frame, or the sender sees the sleeper and bumps BELL_SEQ before
    or after its futex wait begins -- the kernel checks the word under its lock -- and no wake is
    lost."""
    n = priv[QS_PUSHED]
    if n == 0:
        return
    priv[QS_PUSHED] = 0
    first = (g.port * g.max_queues + g.queue) * (g.max_ports * g.max_queues)
    for i in range(n):
        dst = priv[g.p_pushed + i]
        ci = g.c_ring + (first + dst) * RING_CTRL_STRIDE
        store_release(ctl, ci + RING_TAIL, ctl[ci + RING_TAIL] + priv[g.p_pending + dst])
        priv[g.p_pending + dst] = 0
    fence()
    for i in range(n):
        dst = priv[g.p_pushed + i]
        b = g.c_bells + dst * BELL_STRIDE
        if ctl[b + BELL_SLEEPERS] > 0:
            fetch_add(ctl, b + BELL_SEQ, 1)
            futex_wake(ctl, b + BELL_SEQ)


@njit(cache=True)
def sim_bell_count(ctl, idx, delta):
    """``ctl[idx] += delta`` with a locked instruction (a full barrier): a thread counts itself
    in (or out of) a doorbell's sleepers, visibly to senders before its next look at its rings
    (_ring_bells)."""
    fetch_add(ctl, idx, delta)


@njit(cache=True)
def _deliver(g, ctl, rss, ring, priv, buf, off, n, csum, corrupt_bit):
    """The switch: send one frame to every port that takes it, on the queue(s) it steers to.

    A runt (shorter than an Ethernet header: the test harness sends them on purpose) is switched
    by its destination MAC when it has one, flooded when it has not, and lands on queue 0.
    """
    if n >= 6:
        dst_mac = np.int64(get_u48(buf, off))
        group = (dst_mac & MAC_GROUP_BIT) != 0
    else:
        dst_mac = np.int64(-1)
        group = True
    cls, ip, l4 = _classify(buf, off, n)
    replicate = (cls == CLS_ARP or dst_mac == MAC_BROADCAST) and n >= ETH_HLEN
    copies = 0
    takers = 0
    for k in range(priv[QS_N_PEERS]):
        pe = g.p_peers + k * PEER_NF
        if not (group or priv[pe + PEER_MAC] == dst_mac or priv[pe + PEER_PROMISC] != 0):
            continue
        takers += 1
        p = priv[pe + PEER_PORT]
        nq = priv[pe + PEER_NQ]
        if replicate:
            for dq in range(nq):
                copies += _ring_push(g, ctl, ring, priv, p, dq, buf, off, n, csum, corrupt_bit)
        else:
            dq = _steer(g, ctl, rss, p, nq, cls, buf, ip, l4)
            copies += _ring_push(g, ctl, ring, priv, p, dq, buf, off, n, csum, corrupt_bit)
    if takers == 0:
        ctl[g.c_stats + SIMQ_STAT_NO_DEST] += 1
    ctl[g.c_stats + SIMQ_STAT_WIRE_COPIES] += copies


# --------------------------------------------------------------------------- the delay line


@njit(cache=True)
def _dl_before(priv, g, i, t, s):
    """Heap order: entry i leaves before (t, s)?"""
    ti = priv[g.p_dl_time + i]
    return ti < t or (ti == t and priv[g.p_dl_seq + i] < s)


@njit(cache=True)
def _dl_set(priv, g, i, t, s, row):
    priv[g.p_dl_time + i] = t
    priv[g.p_dl_seq + i] = s
    priv[g.p_dl_row + i] = row


@njit(cache=True)
def _dl_push(g, ctl, priv, dl, buf, off, n, csum, corrupt_bit, release):
    """Hold a copy of the frame until ``release`` (µs); False (counted) when the line is full."""
    count = priv[QS_DL_COUNT]
    if count >= g.dl_cap:
        ctl[g.c_stats + SIMQ_STAT_DELAY_OVERFLOW] += 1
        return False
    top = priv[QS_DL_FREE_TOP] - 1
    row = priv[g.p_dl_free + top]
    priv[QS_DL_FREE_TOP] = top
    base = row * SLOT_SIZE
    copy_bytes(dl, base, buf, off, n)
    if csum:
        tx_csum_fill(dl, base, n)
    priv[g.p_dl_len + row] = n
    priv[g.p_dl_corrupt + row] = corrupt_bit
    seq = priv[QS_DL_SEQ]
    priv[QS_DL_SEQ] = seq + 1
    i = count
    while i > 0:  # sift up
        parent = (i - 1) >> 1
        if _dl_before(priv, g, parent, release, seq):
            break
        _dl_set(
            priv,
            g,
            i,
            priv[g.p_dl_time + parent],
            priv[g.p_dl_seq + parent],
            priv[g.p_dl_row + parent],
        )
        i = parent
    _dl_set(priv, g, i, release, seq, row)
    priv[QS_DL_COUNT] = count + 1
    return True


@njit(cache=True)
def _dl_pop(g, priv):
    """Remove the earliest heap entry; returns its delay-line row."""
    row = priv[g.p_dl_row]
    count = priv[QS_DL_COUNT] - 1
    priv[QS_DL_COUNT] = count
    if count > 0:
        t = priv[g.p_dl_time + count]
        s = priv[g.p_dl_seq + count]
        r = priv[g.p_dl_row + count]
        i = 0
        while True:  # sift down
            c = 2 * i + 1
            if c >= count:
                break
            if c + 1 < count and _dl_before(
                priv, g, c + 1, priv[g.p_dl_time + c], priv[g.p_dl_seq + c]
            ):
                c += 1
            if not _dl_before(priv, g, c, t, s):
                break
            _dl_set(priv, g, i, priv[g.p_dl_time + c], priv[g.p_dl_seq + c], priv[g.p_dl_row + c])
            i = c
        _dl_set(priv, g, i, t, s, r)
    return row


@njit(cache=True)
def _dl_release(g, ctl, rss, ring, priv, dl, now):
    """Put every frame whose release time has come on the wire, earliest first."""
    while priv[QS_DL_COUNT] > 0 and priv[g.p_dl_time] <= now:
        row = _dl_pop(g, priv)
        n = priv[g.p_dl_len + row]
        _deliver(g, ctl, rss, ring, priv, dl, row * SLOT_SIZE, n, False, priv[g.p_dl_corrupt + row])
        top = priv[QS_DL_FREE_TOP]
        priv[g.p_dl_free + top] = row
        priv[QS_DL_FREE_TOP] = top + 1


@njit(cache=True)
def _tx_faulty(g, ctl, rss, ring, priv, dl, buf, off, n, csum, now):
    """Egress with faults (netem-like): drop, duplicate, corrupt, CE marks, rate, delay/jitter,
    reorder."""
    f = g.c_faults + g.port * FLT_NF
    st = g.c_stats
    if ctl[f + FLT_DROP] > 0 and _rand(priv) < ctl[f + FLT_DROP]:
        ctl[st + SIMQ_STAT_FAULT_DROP] += 1
        return
    copies = 1
    if ctl[f + FLT_DUP] > 0 and _rand(priv) < ctl[f + FLT_DUP]:
        ctl[st + SIMQ_STAT_FAULT_DUP] += 1
        copies = 2
    for _ in range(copies):
        corrupt_bit = -1
        if ctl[f + FLT_CORRUPT] > 0 and _rand(priv) < ctl[f + FLT_CORRUPT]:
            ctl[st + SIMQ_STAT_FAULT_CORRUPT] += 1
            corrupt_bit = _rand(priv) % (n * 8)
        elif ctl[f + FLT_CE_MARK] > 0 and _is_ect(buf, off, n) and (
                _rand(priv) < ctl[f + FLT_CE_MARK]):
            ctl[st + SIMQ_STAT_FAULT_CE] += 1
            corrupt_bit = MARK_CE
        release = now
        rate = ctl[f + FLT_RATE_BPS]
        if rate > 0:
            # Pacing: the frame leaves when the link is idle and arrives once fully serialized.
            start = max(now * 1000, priv[QS_RATE_NEXT_NS])
            finish = start + (n * 8 * 1_000_000_000) // rate
            priv[QS_RATE_NEXT_NS] = finish
            release = (finish + 999) // 1000
        delay = ctl[f + FLT_DELAY_US]
        jitter = ctl[f + FLT_JITTER_US]
        if jitter > 0:
            delay += _rand(priv) % (2 * jitter + 1) - jitter
            if delay < 0:
                delay = 0
        release += delay
        if ctl[f + FLT_REORDER] > 0 and _rand(priv) < ctl[f + FLT_REORDER]:
            ctl[st + SIMQ_STAT_FAULT_REORDER] += 1
            release += ctl[f + FLT_REORDER_US]  # held back: frames sent after it overtake it
        if release <= now:
            _deliver(g, ctl, rss, ring, priv, buf, off, n, csum, corrupt_bit)
        elif _dl_push(g, ctl, priv, dl, buf, off, n, csum, corrupt_bit, release):
            ctl[st + SIMQ_STAT_FAULT_DELAY] += 1


# --------------------------------------------------------------------------- the per-core API


@njit(cache=True, nogil=True)
def _sim_borrow(q):
    """``q`` with borrowed arrays (see jitmem.borrow): what ``nic_borrow`` gives jitted code
    (from Python, ``nic_borrow`` returns ``q`` itself: never call this from Python)."""
    return SimQueue(
        q.geo, borrow(q.ctl), borrow(q.rss), borrow(q.ring), borrow(q.priv), borrow(q.dl)
    )


@njit(cache=True, nogil=True)
def sim_rx_burst(q, pool, out_ids, max_n, now):
    """Receive up to ``max_n`` frames into fresh ``pool`` frames; their ids go to ``out_ids``.

    Source rings are drained round-robin, starting one further each call.  When the pool runs
    dry the rest stays in the rings (backpressure, counted in SIMQ_STAT_RX_NOBUF).
    """
    # Straight-line on purpose: Numba's refcount pruning then removes the increments of the
    # arguments' arrays, and the work below runs on borrowed ones (see jitmem.borrow).
    return _rx_burst(
        q.geo, borrow(q.ctl), borrow(q.ring), borrow(q.priv), borrow_pool(pool),
        borrow(out_ids), max_n, now,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def sim_tx_burst(q, pool, ids, n, now):
    """Transmit frames ``ids[:n]`` of ``pool``; takes ownership of all of them and returns n.

    Each frame is switched, steered, fault-injected and copied into the destination rings (or
    dropped and counted), then released with ``frame_free`` (a frame still referenced elsewhere,
    e.g. by a retransmission queue, stays alive).  Delay-line frames due by ``now`` leave first;
    ``n == 0`` only does that.
    """
    return _tx_burst(
        q.geo, borrow(q.ctl), borrow(q.rss), borrow(q.ring), borrow(q.priv), borrow(q.dl),
        borrow_pool(pool), borrow(ids), n, now,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def sim_redirect(q, pool, fid, queue):
    """Copy frame ``fid`` to queue ``queue`` of this port (a sibling core's), where it arrives
    flagged FRAME_F_REDIRECTED; the caller keeps (and frees) the frame.  1 if handed over, 0 if
    the queue does not exist, is this one, or its ring is full (counted as ring full)."""
    g = q.geo
    ctl = borrow(q.ctl)
    nq = min(ctl[g.c_ports + g.port * PORT_NF + PORT_N_QUEUES], g.max_queues)
    if queue < 0 or queue >= nq or queue == g.queue:
        return 0
    n = pool.length[fid]
    if n < 0 or n > MAX_FRAME_LEN:
        return 0
    data = borrow(pool.data).reshape(-1)  # flat offsets, as the transmit path
    base = fid * FRAME_SIZE + pool.off[fid]
    priv = borrow(q.priv)
    done = _ring_push(g, ctl, borrow(q.ring), priv, g.port, queue, data, base, n, False, -1)
    _ring_bells(g, ctl, priv)
    return done


@njit(cache=True, nogil=True)
def sim_next_event(q):
    """Earliest delay-line release time (µs), or -1 when nothing waits."""
    return _next_event(q.geo, borrow(q.priv))


@njit(cache=True)
def _next_event(g, priv):
    if priv[QS_DL_COUNT] > 0:
        return priv[g.p_dl_time]
    return np.int64(-1)


@njit(cache=True)
def _rx_burst(g, ctl, ring, priv, pool, out, max_n, now):
    _sync_ports(g, ctl, priv)
    n_src = priv[QS_N_SRC]
    if n_src == 0 or max_n <= 0:
        return 0
    data = pool.data  # 2-D; copy_bytes takes flat offsets
    length = pool.length
    flags = pool.flags
    rx_csum = ctl[g.c_ports + g.port * PORT_NF + PORT_RX_CSUM] != 0
    slots = g.ring_slots
    mask = slots - 1
    n = 0
    nbytes = 0
    starved = False
    j = priv[QS_RX_CURSOR]
    if j >= n_src:
        j = 0
    n_peer_src = priv[QS_N_SRC_PEERS]
    next_cursor = j + 1
    for _ in range(n_src):
        r = priv[g.p_src + j]
        ci = g.c_ring + r * RING_CTRL_STRIDE
        head = ctl[ci + RING_HEAD]
        avail = load_acquire(ctl, ci + RING_TAIL) - head
        if avail > 0:
            take = min(avail, max_n - n)
            got = frame_alloc_burst(pool, out[n:], take)
            if got < take:
                starved = True  # pool empty: leave the rest in the ring
            for k in range(got):
                fid = out[n + k]
                slot = (r * slots + ((head + k) & mask)) * SLOT_SIZE
                flen = np.int64(ring[slot]) | (np.int64(ring[slot + 1]) << 8)
                if flen > MAX_FRAME_LEN:
                    flen = 0  # never trust shared memory with a copy length
                fbase = fid * FRAME_SIZE + HEADROOM
                copy_bytes(data, fbase, ring, slot + SLOT_HDR, flen)
                length[fid] = flen
                if rx_csum:
                    cs = rx_csum_status(data[fid], HEADROOM, flen)  # borrowed: a free view
                    flags[fid] = cs
                    if cs == FRAME_F_RX_CSUM_BAD:
                        ctl[g.c_stats + SIMQ_STAT_RX_CSUM_BAD] += 1
                if j >= n_peer_src:
                    flags[fid] |= FRAME_F_REDIRECTED
                nbytes += flen
            n += got
            store_release(ctl, ci + RING_HEAD, head + got)
            if starved:
                ctl[g.c_stats + SIMQ_STAT_RX_NOBUF] += 1
                next_cursor = j  # resume here: these frames are next
                break
            if n >= max_n:
                next_cursor = j + 1  # the next call starts with the following ring
                break
        j += 1
        if j == n_src:
            j = 0
    if next_cursor >= n_src:
        next_cursor = 0
    priv[QS_RX_CURSOR] = next_cursor
    ctl[g.c_stats + SIMQ_STAT_RX_FRAMES] += n
    ctl[g.c_stats + SIMQ_STAT_RX_BYTES] += nbytes
    return n


@njit(cache=True)
def _tx_burst(g, ctl, rss, ring, priv, dl, pool, ids, n, now):
    _sync_ports(g, ctl, priv)
    faulty = _sync_faults(g, ctl, priv)
    if priv[QS_DL_COUNT] > 0:
        _dl_release(g, ctl, rss, ring, priv, dl, now)
    if n <= 0:
        _ring_bells(g, ctl, priv)
        return 0
    tx_csum = ctl[g.c_ports + g.port * PORT_NF + PORT_TX_CSUM] != 0
    data = pool.data.reshape(-1)
    offs = pool.off
    length = pool.length
    flags = pool.flags
    n_frames = length.shape[0]
    nbytes = 0
    for i in range(n):
        fid = ids[i]
        if fid < 0 or fid >= n_frames:
            ctl[g.c_stats + SIMQ_STAT_TX_BAD_LEN] += 1  # frame_free_burst counts a bad free
            continue
        off = offs[fid]
        flen = length[fid]
        nbytes += flen
        if flen < 0 or flen > MAX_FRAME_LEN or off < 0 or off + flen > FRAME_SIZE:
            ctl[g.c_stats + SIMQ_STAT_TX_BAD_LEN] += 1
            continue
        if flen < ETH_HLEN:
            ctl[g.c_stats + SIMQ_STAT_TX_RUNT] += 1
        base = fid * FRAME_SIZE + off
        csum = tx_csum and (flags[fid] & FRAME_F_TX_CSUM) != 0
        if faulty:
            _tx_faulty(g, ctl, rss, ring, priv, dl, data, base, flen, csum, now)
        else:
            _deliver(g, ctl, rss, ring, priv, data, base, flen, csum, -1)
    frame_free_burst(pool, ids, n)
    _ring_bells(g, ctl, priv)
    ctl[g.c_stats + SIMQ_STAT_TX_FRAMES] += n
    ctl[g.c_stats + SIMQ_STAT_TX_BYTES] += nbytes
    return n


def _register():
    from fsdp.driver.api import register_backend

    register_backend(SimQueue, sim_rx_burst, sim_tx_burst, sim_next_event, _sim_borrow,
                     redirect=sim_redirect)


_register()
