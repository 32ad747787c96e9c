"""The per-core established-connection table: IPv4 4-tuple -> connection id.

What RFC 9293 §3.10.7 ("SEGMENT ARRIVES") starts with, "find the TCB", and Linux's ``ehash`` /
Fastsocket's per-core local established table do: one exact-match lookup per received segment.
One core owns one table (share-nothing), so nothing here is atomic.

Layout.  Open addressing with linear probing in a power-of-two array of 16-byte buckets::

    slots[2*i]     = lip << 32 | rip                        (uint64)
    slots[2*i + 1] = (lport << 16 | rport) << 32 | conn     (uint64; all ones = empty)

Key and value share a bucket so that a probe touches one cache line (4 buckets per line) instead
of one line per column: the table is a single 1-D column of words, not key and value columns
(measured on a 2-core x86 VM: 66 vs 81 ns per hit at 1M connections, once the table is out of
cache; equal when it fits).  An entry's ``conn`` is 0 .. 2^31-1, so no entry is all ones.

Load factor <= 0.5: ``flowtable_create(capacity)`` sizes the array to the next power of two
>= 2 * capacity and ``flow_insert`` refuses entry ``capacity + 1`` (ERR_FLOW_FULL).  At 50% load
linear probing averages 1.5 probes for a hit and 2.5 for a miss (Knuth, TAOCP vol. 3 §6.4).
Deletion is backward-shift (Knuth's Algorithm R): later entries of the cluster move back into the
hole, so there are no tombstones and lookups never slow down with churn.

Hash.  Not the identity, and keyed: remote hosts choose ``rip`` and ``rport``, and an unkeyed hash
lets them aim every connection at one cluster (hash flooding).  Each word is mixed with a per-core
random 128-bit seed through the SplitMix64 finalizer (Steele, Lea & Flood, OOPSLA 2014; a bijection
on 64 bits with full avalanche)::

    h = mix(mix(addrs ^ seed0) ^ ports ^ seed1)

``mix(addrs ^ seed0)`` is a secret permutation of the addresses, so two keys collide only if the
attacker can predict it.  This is a fast keyed mixer, not a PRF (the same trade Linux makes with
jhash and a boot-time secret for ``ehash``); ISNs and cookies, which must be unpredictable, use
SipHash (``fsdp.tcp.isn``).

Memory: 16 bytes per bucket = 32 to 64 bytes per connection of capacity.

The kernels are inlined and written so that Numba can prune its per-call refcounting of the
table's arrays (see ``fsdp.core.timerwheel``, "Refcounts"); a test checks ``flow_lookup``'s code.
"""

import os
from typing import NamedTuple

import numpy as np
from numba import njit

ERR_FLOW_EXISTS = -1  # the 4-tuple is already in the table
ERR_FLOW_FULL = -2  # ``capacity`` connections are in the table
ERR_FLOW_BAD_ID = -3  # connection id outside 0 .. 2^31-1

# meta indices
FT_COUNT = 0
FT_CAPACITY = 1
FT_META_SIZE = 4

_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


class FlowTable(NamedTuple):
    slots: np.ndarray  # uint64[2 * size]: (addrs, ports << 32 | conn) per bucket
    seed: np.ndarray  # uint64[2]: the per-core hash key
    meta: np.ndarray  # int64[FT_META_SIZE]


def flowtable_create(capacity: int, seed: bytes | None = None) -> FlowTable:
    """A table for up to ``capacity`` connections, keyed with 16 random bytes (or ``seed``)."""
    if not isinstance(capacity, int) or capacity < 1 or capacity > 1 << 30:
        raise ValueError(f"flow table capacity must be 1 .. 2^30, not {capacity!r}")
    raw = os.urandom(16) if seed is None else seed
    if len(raw) != 16:
        raise ValueError("the flow table seed is 16 bytes")
    size = max(16, 1 << (2 * capacity - 1).bit_length())
    meta = np.zeros(FT_META_SIZE, np.int64)
    meta[FT_CAPACITY] = capacity
    return FlowTable(
        slots=np.full(2 * size, _EMPTY, np.uint64),
        seed=np.frombuffer(raw, dtype="<u8").astype(np.uint64),
        meta=meta,
    )


@njit(inline="always", cache=True)
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@njit(inline="always", cache=True)
def _addr_word(lip, rip):
    return (np.uint64(lip & 0xFFFFFFFF) << _S32) | np.uint64(rip & 0xFFFFFFFF)


@njit(inline="always", cache=True)
def _port_word(lport, rport):
    return np.uint64(((lport & 0xFFFF) << 16) | (rport & 0xFFFF))


@njit(inline="always", cache=True)
def _keyed(t, addrs, ports):
    return _mix(_mix(addrs ^ t.seed[0]) ^ ports ^ t.seed[1])


@njit(inline="always", cache=True)
def _home(t, addrs, ports):
    return np.int64(_keyed(t, addrs, ports) & np.uint64((t.slots.shape[0] >> 1) - 1))


@njit(inline="always", cache=True)
def flow_hash(t, lip, lport, rip, rport):
    """The table's keyed 64-bit hash of a 4-tuple (uint64).  Also what picks a SYN's member of
    an SO_REUSEPORT group (``listen.listen_lookup``), as Linux hashes both with inet_ehashfn."""
    return _keyed(t, _addr_word(lip, rip), _port_word(lport, rport))


@njit(inline="always", cache=True)
def _find(t, addrs, ports):
    """Bucket holding the key, or ``-1 - b`` where ``b`` is the empty bucket that ends its run."""
    slots = t.slots
    mask = (slots.shape[0] >> 1) - 1
    i = _home(t, addrs, ports)
    for _ in range(mask + 1):
        b = slots[2 * i + 1]
        if b == _EMPTY:
            return -1 - i
        if slots[2 * i] == addrs and (b >> _S32) == ports:
            return i
        i = (i + 1) & mask
    return -1 - (mask + 1)  # only reachable if the load invariant were broken


@njit(inline="always", cache=True)
def flow_lookup(t, lip, lport, rip, rport):
    """The connection id of ``lip:lport <-> rip:rport``, or -1."""
    i = _find(t, _addr_word(lip, rip), _port_word(lport, rport))
    b = t.slots[2 * i + 1] if i >= 0 else _EMPTY
    return np.int32(b & _M32)  # an empty bucket's low half is all ones: -1


@njit(inline="always", cache=True)
def flow_insert(t, lip, lport, rip, rport, conn):
    """Map the 4-tuple to ``conn``: 0, ERR_FLOW_EXISTS, ERR_FLOW_FULL or ERR_FLOW_BAD_ID."""
    rc = 0
    if conn < 0 or conn > 0x7FFFFFFF:
        rc = ERR_FLOW_BAD_ID
    else:
        addrs = _addr_word(lip, rip)
        ports = _port_word(lport, rport)
        i = _find(t, addrs, ports)
        if i >= 0:
            rc = ERR_FLOW_EXISTS
        else:
            i = -1 - i
            if t.meta[FT_COUNT] >= t.meta[FT_CAPACITY] or i > (t.slots.shape[0] >> 1) - 1:
                rc = ERR_FLOW_FULL
            else:
                t.slots[2 * i] = addrs
                t.slots[2 * i + 1] = (ports << _S32) | np.uint64(conn)
    t.meta[FT_COUNT] += rc == 0  # the table's last use on every path (module doc)
    return rc


@njit(inline="always", cache=True)
def flow_remove(t, lip, lport, rip, rport):
    """Remove the 4-tuple; True if it was there.  Backward-shift deletion: no tombstones."""
    slots = t.slots
    i = _find(t, _addr_word(lip, rip), _port_word(lport, rport))
    if i >= 0:
        mask = (slots.shape[0] >> 1) - 1
        hole = i
        j = i
        while True:
            j = (j + 1) & mask
            b = slots[2 * j + 1]
            if b == _EMPTY:
                break
            home = _home(t, slots[2 * j], b >> _S32)
            # The entry at j may fill the hole iff the hole lies on its probe path [home, j).
            if ((j - home) & mask) >= ((j - hole) & mask):
                slots[2 * hole] = slots[2 * j]
                slots[2 * hole + 1] = b
                hole = j
        slots[2 * hole] = 0
        slots[2 * hole + 1] = _EMPTY
    t.meta[FT_COUNT] -= i >= 0
    return i >= 0


@njit(inline="always", cache=True)
def flow_count(t):
    """Connections in the table."""
    return t.meta[FT_COUNT]


@njit(cache=True)
def flow_probe_stats(t):
    """(mean, max) displacement of the entries from their home bucket: probes - 1 for a hit."""
    slots = t.slots
    mask = (slots.shape[0] >> 1) - 1
    total = 0
    worst = 0
    n = 0
    for i in range(mask + 1):
        b = slots[2 * i + 1]
        if b != _EMPTY:
            d = (i - _home(t, slots[2 * i], b >> _S32)) & mask
            total += d
            n += 1
            if d > worst:
                worst = d
    return (total / n if n else 0.0), worst


# flowtable_audit() results
FT_AUDIT_OK = 0
FT_AUDIT_BAD_COUNT = -1
FT_AUDIT_UNREACHABLE = -2  # an empty bucket between an entry and its home
FT_AUDIT_DUPLICATE = -3


@njit(cache=True)
def flowtable_audit(t):
    """Check that every entry is findable and counted once (tests; O(size * cluster))."""
    slots = t.slots
    mask = (slots.shape[0] >> 1) - 1
    n = 0
    for i in range(mask + 1):
        b = slots[2 * i + 1]
        if b == _EMPTY:
            continue
        n += 1
        j = _home(t, slots[2 * i], b >> _S32)
        while j != i:
            if slots[2 * j + 1] == _EMPTY:
                return FT_AUDIT_UNREACHABLE
            if slots[2 * j] == slots[2 * i] and (slots[2 * j + 1] >> _S32) == (b >> _S32):
                return FT_AUDIT_DUPLICATE
            j = (j + 1) & mask
    if n != t.meta[FT_COUNT] or n > t.meta[FT_CAPACITY]:
        return FT_AUDIT_BAD_COUNT
    return FT_AUDIT_OK
