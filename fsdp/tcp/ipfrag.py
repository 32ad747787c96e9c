"""IPv4 fragment reassembly for a host (RFC 791 §3.2 "Fragmentation and Reassembly", RFC 1122
§3.3.2: a host MUST reassemble), per core and bounded, as Linux's ``ip_fragment.c`` does it.

A datagram is identified by (source, destination, protocol, identification) (RFC 791).  Each
one being reassembled holds one *slot* of the core's ``IpFragTable`` and one pool frame, the
datagram assembled in place: the Ethernet and IP headers of the first fragment (offset 0, kept
as received until the datagram is complete) end at ``ASM_PAYLOAD``, where the payload starts,
and every fragment's data is copied to ``ASM_PAYLOAD + offset``.  A bitmap of 8-byte blocks
(fragment offsets count in 8 bytes) says what is held.  When the first and the last fragment
are in and nothing between is missing, the header gets the total length, a zero fragment
field and a new checksum, and the frame goes on up the stack as if it had arrived whole (its
TCP segment, if another core owns the flow, is handed to that core: ``fsdp.tcp.input``).

As Linux (``ip_frag_queue``, ``inet_frag_queue_insert``, ``ip_expire``):

* a fragment that carries only bytes already held is a duplicate: dropped, the datagram kept;
* one that overlaps held bytes partly discards the whole datagram (RFC 5722's rule, which Linux
  applies to IPv4 too), as does a last fragment (MF clear) that ends before bytes already held
  or differs from an earlier last fragment, a fragment past a known end, and an empty one;
* a non-last fragment's length is cut to a multiple of 8 (RFC 791: only the last may end
  elsewhere);
* a datagram not complete ``ipfrag_time`` seconds (default 30) after its first fragment arrived
  is discarded and, if its offset-0 fragment was received, answered with ICMP Time Exceeded,
  "fragment reassembly time exceeded" (code 1), quoting that fragment as received (RFC 792,
  RFC 1122 §3.3.2 SHOULD).

Bounds (fsdp's, not Linux's): a core reassembles at most ``IPFRAG_SLOTS`` datagrams at once
(the first fragment of a further one evicts the oldest, counted as ``ip_reasm_evicted``; Linux
bounds memory instead, with ``ipfrag_high_thresh``, and refuses new datagrams past it), and a
datagram must fit one pool frame: at most ``MAX_DATAGRAM`` bytes of IP datagram (Linux takes up
to 65,535), larger ones are discarded and counted as ``ip_reasm_oversize``.  The IP options of
non-first fragments are ignored, as RFC 791 allows (only the first fragment's header is kept).
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from fsdp.core.config import CFG_IPFRAG_TIME_US
from fsdp.core.stats import (
    STAT_IP_FRAG_DUP,
    STAT_IP_FRAGMENT,
    STAT_IP_REASM_EVICTED,
    STAT_IP_REASM_FAILS,
        STAT_IP_REASM_OK,
    STAT_IP_REASM_OVERLAPS,
    STAT_IP_REASM_OVERSIZE,
    STAT_IP_REASM_TIMEOUT,
    STAT_POOL_EMPTY,
)
from fsdp.core.vars import NO_DEADLINE, V_IPFRAG_TIMER_US
from fsdp.driver.jitmem import copy_bytes
from fsdp.pool.pool import FRAME_F_REASSEMBLED, MAX_FRAME_LEN, frame_alloc, frame_free
from fsdp.tcp.icmp import icmp_send_error
from fsdp.tcp.kernel import kernel
from fsdp.wire.ethernet import ETH_HLEN
from fsdp.wire.icmp import ICMP_TIME_EXCEEDED
from fsdp.wire.ipv4 import (
    IP_FLAG_MF,
    IP_FRAG_OFFSET_MASK,
    IP_HLEN_MIN,
    ip_dst,
    ip_frag,
    ip_hlen,
    ip_id,
    ip_proto,
    ip_set_length_and_frag,
    ip_src,
    ip_total_len,
)

IPFRAG_SLOTS = 64  # datagrams a core reassembles at once (each holds one pool frame)
IP_HLEN_MAX = 60
ASM_PAYLOAD = ETH_HLEN + IP_HLEN_MAX  # where the payload starts in the assembly frame
MAX_DATAGRAM = MAX_FRAME_LEN - ETH_HLEN  # the largest datagram reassembled (a frame's worth)
HELD_WORDS = 4  # 256 blocks of 8 bytes: more than MAX_DATAGRAM's payload
ICMP_EXC_FRAGTIME = 1  # RFC 792: "fragment reassembly time exceeded"

FQ_FIRST_IN = 1  # the fragment at offset 0 is in (its header is the datagram's)
FQ_LAST_IN = 2  # the fragment with MF clear is in: the length is known


class IpFragTable(NamedTuple):
    """The datagrams a core is reassembling, one slot each (struct of arrays)."""

    addrs: np.ndarray  # int64[S]: source << 32 | destination
    ident: np.ndarray  # int64[S]: identification << 8 | protocol
    fid: np.ndarray  # int32[S]: the assembly frame, -1 = free slot
    deadline: np.ndarray  # int64[S]: µs when the datagram is given up
    flags: np.ndarray  # int32[S]: FQ_*
    length: np.ndarray  # int32[S]: payload bytes: the end seen so far, exact once FQ_LAST_IN
    meat: np.ndarray  # int32[S]: payload bytes held
    hlen: np.ndarray  # int32[S]: the first fragment's header length (once FQ_FIRST_IN)
    kind: np.ndarray  # int32[S]: the destination kind (fsdp.tcp.ip.DST_*)
    held: np.ndarray  # uint64[S, HELD_WORDS]: payload blocks of 8 bytes held


def ipfrag_table_create() -> IpFragTable:
    s = IPFRAG_SLOTS
    return IpFragTable(
        addrs=np.zeros(s, np.int64),
        ident=np.zeros(s, np.int64),
        fid=np.full(s, -1, np.int32),
        deadline=np.zeros(s, np.int64),
        flags=np.zeros(s, np.int32),
        length=np.zeros(s, np.int32),
        meat=np.zeros(s, np.int32),
        hlen=np.zeros(s, np.int32),
        kind=np.zeros(s, np.int32),
        held=np.zeros((s, HELD_WORDS), np.uint64),
    )


def ipfrag_held_frames(frags: IpFragTable) -> int:
    """Pool frames the table holds (for Stack.audit)."""
    return int(np.count_nonzero(frags.fid >= 0))


@njit(inline="always", cache=True)
def _discard(core, s, reason):
    """Give up slot ``s``'s datagram: free its frame, count ip_reasm_fails and ``reason``."""
    t = core.frags
    frame_free(core.pool, t.fid[s])
    t.fid[s] = -1
    core.stats[STAT_IP_REASM_FAILS] += 1
    if reason >= 0:
        core.stats[reason] += 1


@njit(inline="always", cache=True)
def _reject(core, s, reason, fid):
    """The fragment ``fid`` makes slot ``s``'s datagram invalid: discard both; -1."""
    _discard(core, s, reason)
    frame_free(core.pool, fid)
    return -1


@njit(inline="always", cache=True)
def _blocks_held(t, s, first, last):
    """How many of the 8-byte blocks ``first`` .. ``last - 1`` slot ``s`` holds."""
    k = 0
    for b in range(first, last):
        k += np.int64((t.held[s, b >> 6] >> np.uint64(b & 63)) & np.uint64(1))
    return k


@njit(inline="always", cache=True)
def _find_or_make(core, addrs, ident, kind, now):
    """The slot of datagram (addrs, ident), made (with its assembly frame) if new; -1 when the
    pool is empty (counted)."""
    t = core.frags
    free = -1
    for s in range(t.fid.shape[0]):
        if t.fid[s] < 0:
            if free < 0:
                free = s
        elif t.addrs[s] == addrs and t.ident[s] == ident:
            return s
    if free < 0:
        # every slot in use: the oldest datagram gives way.  Fragments that never complete (a
        # flood, or a lossy path) would otherwise shut out every new datagram for ipfrag_time;
        # a datagram being reassembled normally completes within a round trip.  (Linux bounds
        # memory instead and refuses new datagrams past ipfrag_high_thresh; before 4.17 its
        # evictor dropped the oldest, as here.)
        free = 0
        for s in range(1, t.fid.shape[0]):
            if t.deadline[s] < t.deadline[free]:
                free = s
        _discard(core, free, STAT_IP_REASM_EVICTED)
    af = frame_alloc(core.pool)
    if af < 0:
        core.stats[STAT_POOL_EMPTY] += 1
        return -1
    core.pool.flags[af] = FRAME_F_REASSEMBLED
    s = free
    t.fid[s] = af
    t.addrs[s] = addrs
    t.ident[s] = ident
    t.flags[s] = 0
    t.length[s] = 0
    t.meat[s] = 0
    t.hlen[s] = 0
    t.kind[s] = kind
    for w in range(HELD_WORDS):
        t.held[s, w] = 0
    # RFC 1122 §3.3.2: the timer starts with the first fragment to arrive, whichever it is,
    # and later fragments do not restart it (Linux arms it once, in inet_frag_create)
    d = now + core.cfg[CFG_IPFRAG_TIME_US]
    t.deadline[s] = d
    cur = core.var[V_IPFRAG_TIMER_US]
    if cur == NO_DEADLINE or d < cur:
        core.var[V_IPFRAG_TIMER_US] = d
    return s


@kernel
def ip_reassemble(core, fid, kind, now):
    """Take fragment ``fid`` (validated by ip_validate, destination kind ``kind``); returns the
    frame of the whole datagram when this fragment completed it, else -1 (the fragment is
    consumed either way)."""
    pool = core.pool
    buf = pool.data[fid]
    ip_off = pool.off[fid] + ETH_HLEN
    hl = ip_hlen(buf, ip_off)
    frag = ip_frag(buf, ip_off)
    offset = np.int64(frag & IP_FRAG_OFFSET_MASK) * 8
    end = offset + ip_total_len(buf, ip_off) - hl
    core.stats[STAT_IP_FRAGMENT] += 1
    addrs = (np.int64(ip_src(buf, ip_off)) << 32) | np.int64(ip_dst(buf, ip_off))
    ident = (np.int64(ip_id(buf, ip_off)) << 8) | np.int64(ip_proto(buf, ip_off))
    s = _find_or_make(core, addrs, ident, kind, now)
    if s < 0:
        frame_free(pool, fid)
        return -1
    t = core.frags
    if (frag & IP_FLAG_MF) == 0:
        # the last fragment: nothing held may lie beyond it, and there is only one end
        if end < t.length[s] or ((t.flags[s] & FQ_LAST_IN) != 0 and end != t.length[s]):
            return _reject(core, s, -1, fid)
        t.flags[s] |= FQ_LAST_IN
        t.length[s] = end
    else:
        end &= ~np.int64(7)  # RFC 791: a fragment with MF set carries a multiple of 8 bytes
        if end > t.length[s]:
            if (t.flags[s] & FQ_LAST_IN) != 0:
                return _reject(core, s, -1, fid)  # bytes beyond the end the last fragment gave
            t.length[s] = end
    if end == offset:
        return _reject(core, s, -1, fid)  # an empty fragment (Linux discards the datagram)
    first_hl = np.int64(IP_HLEN_MIN)  # (the first fragment's header: not known yet)
    if (t.flags[s] & FQ_FIRST_IN) != 0:
        first_hl = t.hlen[s]
    elif offset == 0:
        first_hl = hl
    if first_hl + t.length[s] > MAX_DATAGRAM:
        return _reject(core, s, STAT_IP_REASM_OVERSIZE, fid)
    first_b = offset >> 3
    last_b = (end + 7) >> 3
    held = _blocks_held(t, s, first_b, last_b)
    if held == last_b - first_b:
        core.stats[STAT_IP_FRAG_DUP] += 1  # only bytes already held: the datagram stays
        frame_free(pool, fid)
        return -1
    if held != 0:
        return _reject(core, s, STAT_IP_REASM_OVERLAPS, fid)
    af = t.fid[s]
    abuf = pool.data[af]
    w = np.int64(pool.data.shape[1])
    copy_bytes(pool.data, af * w + ASM_PAYLOAD + offset, pool.data, fid * w + ip_off + hl,
               end - offset)
    for b in range(first_b, last_b):
        t.held[s, b >> 6] |= np.uint64(1) << np.uint64(b & 63)
    t.meat[s] += end - offset
    if offset == 0:
        # the datagram's headers are the first fragment's, as received until it is complete
        # (what a timeout's ICMP error quotes)
        h0 = ASM_PAYLOAD - hl - ETH_HLEN
        copy_bytes(pool.data, af * w + h0, pool.data, fid * w + ip_off - ETH_HLEN, ETH_HLEN + hl)
        pool.off[af] = h0
        t.hlen[s] = hl
        t.flags[s] |= FQ_FIRST_IN
    frame_free(pool, fid)
    if (t.flags[s] & (FQ_FIRST_IN | FQ_LAST_IN)) != (FQ_FIRST_IN | FQ_LAST_IN):
        return -1
    if t.meat[s] != t.length[s]:
        return -1
    # complete: one datagram, not a fragment any more (RFC 791 reassembly step)
    hl0 = t.hlen[s]
    ip_set_length_and_frag(abuf, ASM_PAYLOAD - hl0, hl0 + t.length[s], 0)
    pool.length[af] = ETH_HLEN + hl0 + t.length[s]
    t.fid[s] = -1
    core.stats[STAT_IP_REASM_OK] += 1
    return af


@kernel
def ipfrag_expire(core, now):
    """Give up the datagrams whose time is over (RFC 1122 §3.3.2), answering those whose first
    fragment came with ICMP Time Exceeded code 1 (Linux ip_expire); sets the next deadline."""
    t = core.frags
    nxt = np.int64(NO_DEADLINE)
    for s in range(t.fid.shape[0]):
        af = t.fid[s]
        if af < 0:
            continue
        if t.deadline[s] <= now:
            if (t.flags[s] & FQ_FIRST_IN) != 0:
                icmp_send_error(core, af, t.kind[s], ICMP_TIME_EXCEEDED, ICMP_EXC_FRAGTIME, 0, now)
            _discard(core, s, STAT_IP_REASM_TIMEOUT)
        elif nxt == NO_DEADLINE or t.deadline[s] < nxt:
            nxt = t.deadline[s]
    core.var[V_IPFRAG_TIMER_US] = nxt
