"""Per-core packet pools (fsdp's "skb pool").

One core owns one pool: a single preallocated, page-aligned frame array plus metadata columns
(struct-of-arrays, indexed by an int32 frame id, -1 = none) and a free stack.  Nothing on the data
path allocates: the NIC receives into pool frames, TCP queues chain them through ``next``, the
transmit path hands them back.  A frame is *free* (refcnt 0, on the free stack) or *owned*
(refcnt >= 1); :func:`pool_audit` checks exactly that, and the tests use it to prove no leaks.

Layout of one frame::

    0              off                     off+length                 FRAME_SIZE
    |-- headroom --|====== packet bytes =====|-------- tailroom --------|

Output paths put the payload at ``HEADROOM`` and prepend headers, so a segment is built in place.
"""

import mmap
from typing import NamedTuple

import numpy as np
from numba import njit

FRAME_SIZE = 2048  # bytes per frame: an Ethernet frame of MTU 1500 plus headroom fits
HEADROOM = 128  # room to prepend Ethernet (14) + IPv4 (20) + TCP with options (60)
MAX_FRAME_LEN = FRAME_SIZE - HEADROOM

# Frame flags (pool.flags): what the NIC or the stack knows about a frame.
FRAME_F_RX_CSUM_OK = 0x1  # the NIC verified the IPv4 and L4 checksums (rx offload)
FRAME_F_RX_CSUM_BAD = 0x2  # the NIC found a bad checksum (rx offload)
FRAME_F_TX_CSUM = 0x4  # the NIC must fill in the IPv4/L4 checksums (tx offload)
FRAME_F_REDIRECTED = 0x8  # handed over by a sibling queue (nic_redirect): never redirect again
FRAME_F_LOOPED = 0x10  # sent by this host to itself (core/output.py): no NIC saw it
FRAME_F_REASSEMBLED = 0x20  # a datagram put together from IP fragments (fsdp.tcp.ipfrag)

# pool.meta indices
POOL_META_FREE_TOP = 0  # number of entries on the free stack
POOL_META_ALLOC_FAIL = 1  # allocations that found the pool empty
POOL_META_BAD_FREE = 2  # frees of a free frame or an id out of range (ignored, counted)
POOL_META_SIZE = 4


class Pool(NamedTuple):
    """A per-core frame pool: frames ``data[i]`` and their metadata columns."""

    data: np.ndarray  # uint8[n_frames, FRAME_SIZE], page aligned
    off: np.ndarray  # int32[n]: first byte of the packet within the frame
    length: np.ndarray  # int32[n]: packet bytes
    next: np.ndarray  # int32[n]: next frame of a chain (queue link), -1 = end
    refcnt: np.ndarray  # int16[n]: 0 = free
    flags: np.ndarray  # uint32[n]: FRAME_F_*
    tag: np.ndarray  # int64[n]: owner's scratch (TCP: sequence number of the first byte)
    free_stack: np.ndarray  # int32[n]
    meta: np.ndarray  # int64[POOL_META_SIZE]


def pool_create(n_frames: int) -> Pool:
    """Allocate a pool of ``n_frames`` frames; memory is ``n_frames * FRAME_SIZE``
    plus ~24 B/frame."""
    if not isinstance(n_frames, int) or n_frames < 1 or n_frames > 0x7FFFFFFF:
        raise ValueError(f"pool size must be a positive int, not {n_frames!r}")
    buf = mmap.mmap(-1, n_frames * FRAME_SIZE)  # anonymous, page aligned (AF_XDP UMEM needs it)
    data = np.frombuffer(buf, dtype=np.uint8).reshape(n_frames, FRAME_SIZE)
    pool = Pool(
        data=data,
        off=np.full(n_frames, HEADROOM, np.int32),
        length=np.zeros(n_frames, np.int32),
        next=np.full(n_frames, -1, np.int32),
        refcnt=np.zeros(n_frames, np.int16),
        flags=np.zeros(n_frames, np.uint32),
        tag=np.zeros(n_frames, np.int64),
        # Pop order 0, 1, 2 ...: low ids first keeps a lightly loaded core's frames cache-warm.
        free_stack=np.arange(n_frames - 1, -1, -1, dtype=np.int32),
        meta=np.zeros(POOL_META_SIZE, np.int64),
    )
    pool.meta[POOL_META_FREE_TOP] = n_frames
    return pool


@njit(inline="always", cache=True)
def pool_n_frames(pool):
    return pool.refcnt.shape[0]


@njit(inline="always", cache=True)
def pool_n_free(pool):
    return pool.meta[POOL_META_FREE_TOP]


@njit(inline="always", cache=True)
def frame_alloc(pool):
    """Take one frame (refcnt 1, off = HEADROOM, length 0); -1 when the pool is empty."""
    top = pool.meta[POOL_META_FREE_TOP]
    if top == 0:
        pool.meta[POOL_META_ALLOC_FAIL] += 1
        return -1
    top -= 1
    fid = pool.free_stack[top]
    pool.meta[POOL_META_FREE_TOP] = top
    pool.refcnt[fid] = 1
    pool.off[fid] = HEADROOM
    pool.length[fid] = 0
    pool.next[fid] = -1
    pool.flags[fid] = 0
    return fid


@njit(cache=True)
def frame_alloc_burst(pool, out, n):
    """Fill ``out[:k]`` with up to ``n`` fresh frames; returns k (< n when the pool runs dry)."""
    top = pool.meta[POOL_META_FREE_TOP]
    k = min(n, top)
    for i in range(k):
        top -= 1
        fid = pool.free_stack[top]
        pool.refcnt[fid] = 1
        pool.off[fid] = HEADROOM
        pool.length[fid] = 0
        pool.next[fid] = -1
        pool.flags[fid] = 0
        out[i] = fid
    pool.meta[POOL_META_FREE_TOP] = top
    if k < n:
        pool.meta[POOL_META_ALLOC_FAIL] += 1
    return k


@njit(inline="always", cache=True)
def frame_ref(pool, fid):
    """Another owner holds ``fid`` (e.g. the retransmission queue and the NIC at once)."""
    pool.refcnt[fid] += 1


@njit(inline="always", cache=True)
def frame_free(pool, fid):
    """Drop one reference; the frame returns to the free stack when none is left.

    A bad id or a double free is ignored and counted, never allowed to corrupt the free stack.
    """
    if fid < 0 or fid >= pool.refcnt.shape[0] or pool.refcnt[fid] <= 0:
        pool.meta[POOL_META_BAD_FREE] += 1
        return
    rc = pool.refcnt[fid] - 1
    pool.refcnt[fid] = rc
    if rc == 0:
        top = pool.meta[POOL_META_FREE_TOP]
        pool.free_stack[top] = fid
        pool.meta[POOL_META_FREE_TOP] = top + 1


@njit(cache=True)
def frame_free_burst(pool, ids, n):
    for i in range(n):
        frame_free(pool, ids[i])


@njit(cache=True)
def frame_free_chain(pool, head):
    """Free a chain linked through ``next``; returns the number of frames released."""
    n = 0
    fid = head
    while fid >= 0:
        nxt = pool.next[fid]
        pool.next[fid] = -1
        frame_free(pool, fid)
        fid = nxt
        n += 1
    return n


@njit(cache=True)
def frame_copy(pool, src):
    """A new frame holding the same packet bytes and flags as ``src``; -1 if the pool is empty."""
    dst = frame_alloc(pool)
    if dst < 0:
        return -1
    off = pool.off[src]
    n = pool.length[src]
    pool.data[dst, off : off + n] = pool.data[src, off : off + n]
    pool.off[dst] = off
    pool.length[dst] = n
    pool.flags[dst] = pool.flags[src]
    pool.tag[dst] = pool.tag[src]
    return dst


# pool_audit() results
AUDIT_OK = 0
AUDIT_FREE_STACK_OVERFLOW = -1  # more entries than frames
AUDIT_FREE_BUT_REFERENCED = -2  # a free-stack entry with refcnt != 0
AUDIT_DUPLICATE_FREE = -3  # the same frame twice on the free stack
AUDIT_LOST_FRAME = -4  # refcnt 0 but not on the free stack
AUDIT_NEGATIVE_REFCNT = -5


@njit(cache=True)
def pool_audit(pool):
    """Check the invariant *every frame is either free or owned*; returns AUDIT_OK or an error."""
    n = pool.refcnt.shape[0]
    top = pool.meta[POOL_META_FREE_TOP]
    if top < 0 or top > n:
        return AUDIT_FREE_STACK_OVERFLOW
    seen = np.zeros(n, np.uint8)
    for i in range(top):
        fid = pool.free_stack[i]
        if fid < 0 or fid >= n:
            return AUDIT_FREE_STACK_OVERFLOW
        if pool.refcnt[fid] != 0:
            return AUDIT_FREE_BUT_REFERENCED
        if seen[fid]:
            return AUDIT_DUPLICATE_FREE
        seen[fid] = 1
    for fid in range(n):
        if pool.refcnt[fid] < 0:
            return AUDIT_NEGATIVE_REFCNT
        if pool.refcnt[fid] == 0 and not seen[fid]:
            return AUDIT_LOST_FRAME
    return AUDIT_OK


def pool_owned_ids(pool: Pool) -> np.ndarray:
    """Ids of the frames currently owned (for leak reports in tests and ``fsdp stat``)."""
    return np.nonzero(pool.refcnt > 0)[0].astype(np.int32)
