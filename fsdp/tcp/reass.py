"""Receive-side reassembly: the out-of-order queue, and the SACK / D-SACK blocks we send.

Read first: RFC 9293 §3.10.7.4 ("segment text" beyond RCV.NXT is held until the gap fills),
RFC 2018 §4 (which blocks a data receiver reports, first block = the contiguous block holding the
segment that triggered the ACK, then the most recently reported ones) and §8 (a receiver may
renege: discard data it SACKed), RFC 2883 §4 (D-SACK: the first block reports a duplicate, once).
Where the RFCs leave a choice fsdp does as Linux, whose code was read for this module
(net/ipv4/tcp_input.c: ``tcp_data_queue``, ``tcp_data_queue_ofo``, ``tcp_ofo_queue``,
``tcp_prune_ofo_queue``, ``tcp_sack_new_ofo_skb``, ``tcp_sack_maybe_coalesce``,
``tcp_sack_remove``, ``tcp_dsack_set``, ``tcp_dsack_extend``, ``tcp_send_dupack``, ``tcp_fin``;
net/ipv4/tcp_output.c: ``tcp_options_write``).

The out-of-order queue of connection ``cid`` is a chain of pool frames from ``t.hot.ooo_head``
through ``pool.next``, sorted by sequence number and non-overlapping; each frame holds payload only,
at ``[pool.off, pool.off + pool.length)``, ``pool.tag`` is the sequence number of its first byte and
``FRAME_F_TCP_FIN`` marks the frame whose segment carried FIN (the FIN takes the sequence number
after the frame's last byte, RFC 9293 §3.4).  ``t.hot.ooo_bytes`` counts the payload bytes held.
A frame's *range* is ``[tag, tag + length + FIN)``: a FIN occupies sequence space here exactly as
in Linux's ``end_seq``, so a retransmission that adds only the FIN is not a duplicate.

Insertion (``reass_insert``), as ``tcp_data_queue_ofo``:

* bytes already held win: the new segment is trimmed at the front against the frame that holds
  its first byte and at the back against the first frame it does not cover; frames it covers
  entirely are freed (Linux drops them, "merge_right").  A segment held entirely is freed and
  reported as a duplicate (0).  Unlike Linux, which keeps overlapping skbs and trims at delivery,
  the queue never overlaps, so ``ooo_bytes`` is exact.
* a segment that continues the previous frame is copied into that frame's tailroom when it fits
  (``tcp_ooo_try_coalesce``): small segments do not cost a frame each.
* memory: after trimming, the queue may hold ``max_ooo_bytes`` payload bytes and
  ``reass_frame_cap(max_ooo_bytes)`` frames (a 2 KiB frame per 1-byte segment would otherwise let
  one peer empty the core's pool).  Over either limit, the frames *above* the new segment are
  pruned from the highest sequence down, as ``tcp_prune_ofo_queue`` does ("let a chance for holes
  to be filled"), if that makes room; otherwise the new segment is dropped
  (``REASS_ERR_NOMEM``) and nothing is pruned (Linux may prune and then still drop).

Delivery (``reass_deliver``), as ``tcp_ofo_queue``: after the caller appended in-order data and
advanced ``rcv_nxt``, frames starting at or below ``rcv_nxt`` move to the end of the receive
queue (their already received prefix trimmed, wholly old ones freed) and ``rcv_nxt`` follows.
Reaching a FIN frame advances ``rcv_nxt`` past the FIN, frees whatever is still queued out of
order (``tcp_fin`` purges it: data after a FIN is not data), and sets ``REASS_FIN_REACHED`` in
the result; the caller runs its FIN processing (state change, ``TF_FIN_RECEIVED``).  A FIN-only
frame is freed, not queued.  The FIN of an *in-order* segment is the caller's: then, as
``tcp_fin``, it calls ``reass_free`` and ``sack_reset``.

SACK (connections with ``TF_SACK_OK``): ``reass_insert_sack`` / ``reass_deliver_sack`` do the
above plus every SACK and D-SACK update Linux makes on those paths; ``sack_on_ooo``,
``sack_on_rcv_nxt``, ``sack_on_duplicate`` are the pieces, for callers that use the plain
functions.  The engine, per data segment, as ``tcp_data_queue``:

    sack_dsack_clear(s, cid)                          # Linux: tp->rx_opt.dsack = 0
    seg entirely old (end <= rcv_nxt):   sack_on_duplicate(s, cid, seq, end, rcv_nxt); ACK now
    seg.seq < rcv_nxt < end (partial):   sack_on_duplicate(...), then as in-order
    seg.seq == rcv_nxt (in-order):       append to rcv_q, advance rcv_nxt, reass_deliver_sack
    seg.seq > rcv_nxt (out of order):    reass_insert_sack; ACK now
    every ACK we send:                   n = sack_blocks(s, cid, blocks, 3 if TS else 4)

Blocks (RFC 2018 §4).  Up to ``SACK_MAX_BLOCKS`` (4, Linux ``TCP_NUM_SACKS``) blocks in recency
order.  After an out-of-order arrival the first block is the contiguous run *of the queue* that
holds the segment, and blocks it joined are merged into it (``tcp_sack_new_ofo_skb`` +
``tcp_sack_maybe_coalesce``; touching blocks merge, as Linux's ``tcp_sack_extend``); the others
keep their order and the oldest falls off a full list.  ``sack_blocks`` puts a pending D-SACK
first and clears it (``tcp_options_write``), then the blocks, at most ``max_blocks``.  Where this
differs from Linux, it is in what RFC 2018 asks: (1) a block is always the whole contiguous run
the queue holds (RFC 2018 §4 "MUST specify the contiguous block of data containing the segment"),
where Linux reports only the new segment's range next to data whose block fell off a full list;
(2) blocks whose data is gone (pruned) are dropped or shortened at the next ``sack_on_ooo``.  As
Linux, a prune forgets every block (``tcp_sack_reset`` in ``tcp_prune_ofo_queue``) in
``reass_insert_sack``.

D-SACK (RFC 2883, Linux's choices): a wholly old segment reports ``[seq, end)``, a partial one
``[seq, rcv_nxt)`` (``tcp_data_queue``, ``tcp_send_dupack``); out of order, the first overlap with
held data *sets* it and later overlaps *extend* it only where they touch (``tcp_dsack_set`` /
``tcp_dsack_extend``); at delivery, frames overlapping data just received in order extend it as
``tcp_ofo_queue``'s ``dsack_high`` does.  So the last ACK of RFC 2883 §4's example 6 reads, as
Linux sends it, ``1500-2500`` (D-SACK), ``1500-3000``, ``3500-4000``.  D-SACK blocks are always
recorded: with Linux's ``tcp_dsack`` sysctl off, the engine calls ``sack_dsack_clear`` before
building the ACK.

Cost: the queue is a singly linked list without a tail pointer (``TcbHot`` has no
``ooo_tail``), so an insertion walks the queue, O(frames held), and ``sack_on_ooo`` walks it once
more to find the run; Linux's ``ooo_last_skb`` makes the common append O(1).  Nothing here
allocates.

Results: ``reass_insert``: >= 0 payload bytes newly held (0: a duplicate, or only a FIN added),
``REASS_ERR_NOMEM``, ``REASS_ERR_INVAL``; the frame is the queue's or freed in every case.
``reass_deliver``: bytes moved to the receive queue, ``| REASS_FIN_REACHED`` when the FIN is in
sequence (``reass_result_bytes`` / ``reass_result_fin`` take it apart).
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from fsdp.pool.pool import FRAME_SIZE, HEADROOM, frame_free, frame_free_chain
from fsdp.tcp.frameflags import FRAME_F_TCP_FIN, FRAME_F_TCP_RX_COPIED, FRAME_F_TCP_RX_FRAG
from fsdp.tcp.tcb import tcb_touch
from fsdp.wire.tcp import seq_geq, seq_gt, seq_leq, seq_lt

# --- results ----------------------------------------------------------------------------------
REASS_ERR_NOMEM = -1  # over the queue's byte or frame limit even after pruning: segment dropped
REASS_ERR_INVAL = -2  # bad frame id, connection id or length: segment dropped
REASS_FIN_REACHED = 1 << 40  # reass_deliver: the peer's FIN is in sequence (rcv_nxt is past it)
REASS_BYTES_MASK = REASS_FIN_REACHED - 1

# --- memory bound -----------------------------------------------------------------------------
# The frame limit is max(REASS_OOO_MIN_FRAMES, max_ooo_bytes // REASS_OOO_FRAME_CHARGE): a full
# window of 536-byte segments fits (max/536 frames), a flood of 1-byte segments does not take
# thousands of 2 KiB frames (Linux bounds the same attack by charging skb truesize).
REASS_OOO_FRAME_CHARGE = 128
REASS_OOO_MIN_FRAMES = 64

# --- SACK -------------------------------------------------------------------------------------
SACK_MAX_BLOCKS = 4  # blocks remembered per connection (Linux TCP_NUM_SACKS; 40 option bytes)

_M32 = 0xFFFFFFFF
_NOT_FIN = 0xFFFFFFFF ^ FRAME_F_TCP_FIN


@njit(inline="always", cache=True)
def reass_result_bytes(r):
    """Bytes delivered, from a ``reass_deliver`` result (>= 0)."""
    return r & REASS_BYTES_MASK


@njit(inline="always", cache=True)
def reass_result_fin(r):
    """True if a ``reass_deliver`` result (>= 0) says the FIN was reached."""
    return r >= 0 and (r & REASS_FIN_REACHED) != 0


@njit(inline="always", cache=True)
def reass_frame_cap(max_ooo_bytes):
    """Frames the out-of-order queue may hold under a byte limit of ``max_ooo_bytes``."""
    return max(REASS_OOO_MIN_FRAMES, max_ooo_bytes // REASS_OOO_FRAME_CHARGE)


# --- frame helpers ----------------------------------------------------------------------------
@njit(inline="always", cache=True)
def _frame_end(pool, f):
    """Sequence number after frame ``f``'s data and FIN."""
    e = pool.tag[f] + pool.length[f]
    if pool.flags[f] & FRAME_F_TCP_FIN:
        e += 1
    return e & _M32


@njit(inline="always", cache=True)
def _trim_front(pool, f, k):
    """Drop the first ``k`` payload bytes of frame ``f`` (k <= its length)."""
    pool.off[f] += k
    pool.length[f] -= k
    pool.tag[f] = (pool.tag[f] + k) & _M32


@njit(inline="always", cache=True)
def rx_truesize(pool, fid):
    """What Linux would charge to the receive buffer for received frame ``fid``: the skb
    truesize of a frame built in place (tun_build_skb / build_skb: the frame plus NET_SKB_PAD,
    64-byte aligned, plus struct sk_buff (256) and skb_shared_info (320)), 2176 bytes for a
    full 1514-byte frame and 768 for a small one.  The window is a share of SO_RCVBUF minus
    these charges, so fsdp offers the windows Linux does.  The frame's wire length is read from
    where its payload ends (invariant under partial reads)."""
    wire = np.int64(pool.off[fid]) + np.int64(pool.length[fid]) - HEADROOM
    return ((wire + 64 + 63) & ~np.int64(63)) + 576


@njit(inline="always", cache=True)
def rx_tailroom(pool, fid):
    """The tailroom of the socket buffer Linux builds for received frame ``fid``
    (``rx_truesize``'s data area less the frame and NET_SKB_PAD): 0..63 bytes."""
    wire = np.int64(pool.off[fid]) + np.int64(pool.length[fid]) - HEADROOM
    return ((wire + 64 + 63) & ~np.int64(63)) - (wire + 64)


SKB_STRUCT_SIZE = 256  # SKB_DATA_ALIGN(sizeof(struct sk_buff)): what a stolen head does not keep
MAX_SKB_FRAGS = 17


@njit(inline="always", cache=True)
def rx_charge(pool, fid):
    """What receive-queue frame ``fid`` charges the receive buffer (``rcvq_charge``)."""
    f = pool.flags[fid]
    if f & FRAME_F_TCP_RX_COPIED:
        return np.int64(0)
    if f & FRAME_F_TCP_RX_FRAG:
        return rx_truesize(pool, fid) - SKB_STRUCT_SIZE
    return rx_truesize(pool, fid)


@njit(inline="always", cache=True)
def rcvq_charge(pool, h, cid, f):
    """Charge frame ``f``, about to join the receive queue, as Linux's tcp_queue_rcv does: it
    coalesces a segment into the queue's last socket buffer (tcp_try_coalesce /
    skb_try_coalesce) when that buffer has tailroom for the payload (copied: charged nothing) or
    fewer than MAX_SKB_FRAGS fragments (its head becomes a fragment: charged its truesize less
    struct sk_buff, 1920 bytes for a full frame); otherwise the segment is a buffer of its own,
    charged its truesize (2176).  Observed on Linux 6.18 with SO_MEMINFO (LINUX_NOTES §23): 20
    full segments queued unread charge 2176, then 1920 each, then 2176 again at the 19th."""
    tail = h.rcv_q_tail[cid]
    if tail >= 0 and (pool.flags[tail] & FRAME_F_TCP_FIN) == 0:
        n = np.int64(pool.length[f])
        room = np.int64(h.rcv_skb_room[cid])
        if n <= room:
            pool.flags[f] |= FRAME_F_TCP_RX_COPIED
            h.rcv_skb_room[cid] = room - n
            return
        if h.rcv_skb_frags[cid] < MAX_SKB_FRAGS:
            pool.flags[f] |= FRAME_F_TCP_RX_FRAG
            h.rcv_skb_frags[cid] += 1
            h.rcv_skb_room[cid] = 0
            h.rcv_mem[cid] += rx_truesize(pool, f) - SKB_STRUCT_SIZE
            return
    pool.flags[f] &= ~np.uint32(FRAME_F_TCP_RX_FRAG | FRAME_F_TCP_RX_COPIED)
    h.rcv_skb_frags[cid] = 0
    h.rcv_skb_room[cid] = rx_tailroom(pool, f)
    h.rcv_mem[cid] += rx_truesize(pool, f)


@njit(inline="always", cache=True)
def rcvq_release(pool, h, cid, f):
    """Frame ``f``, the head of the receive queue, has been read whole: Linux releases a socket
    buffer's charge when its last byte is read, so the charge of ``f`` waits with the frames
    read before it until the frame that ends its buffer (the queue's last one, or one followed
    by a frame that starts a buffer)."""
    nxt = pool.next[f]
    c = rx_charge(pool, f)
    if nxt < 0 or (pool.flags[nxt] & (FRAME_F_TCP_RX_FRAG | FRAME_F_TCP_RX_COPIED)) == 0:
        h.rcv_mem[cid] -= np.int64(h.rcv_mem_pending[cid]) + c
        h.rcv_mem_pending[cid] = 0
    else:
        h.rcv_mem_pending[cid] += c


@njit(inline="always", cache=True)
def _rcvq_append(pool, h, cid, f):
    rcvq_charge(pool, h, cid, f)
    tail = h.rcv_q_tail[cid]
    pool.next[f] = -1
    if tail >= 0:
        pool.next[tail] = f
    else:
        h.rcv_q_head[cid] = f
    h.rcv_q_tail[cid] = f
    h.rcv_q_bytes[cid] += pool.length[f]


@njit(inline="always", cache=True)
def _dsack_extend(has, lo, hi, a, b):
    """``tcp_dsack_extend``: [a, b) becomes the D-SACK block if none is pending, else grows the
    pending one where it touches or overlaps it (``tcp_sack_extend``) and is ignored otherwise."""
    if not has:
        return True, a, b
    if seq_leq(a, hi) and seq_leq(lo, b):
        if seq_lt(a, lo):
            lo = a
        if seq_gt(b, hi):
            hi = b
    return True, lo, hi


# --- the out-of-order queue -------------------------------------------------------------------
@njit(cache=True)
def _insert_core(pool, t, cid, fid, seq, n, fin, max_ooo_bytes, d_has, d_lo, d_hi):
    """``reass_insert``'s work; also returns whether it pruned and the D-SACK block that Linux
    would hold afterwards, starting from the pending one ``(d_has, d_lo, d_hi)``.

    Returns ``(result, pruned, d_has, d_lo, d_hi)``."""
    if fid < 0 or fid >= pool.refcnt.shape[0]:
        frame_free(pool, fid)  # counts the bad id
        return np.int64(REASS_ERR_INVAL), False, d_has, d_lo, d_hi
    h = t.hot
    n = np.int64(n)
    if cid < 0 or cid >= h.ooo_head.shape[0] or n < 0 or n > pool.length[fid]:
        frame_free(pool, fid)
        return np.int64(REASS_ERR_INVAL), False, d_has, d_lo, d_hi
    fin_i = np.int64(1) if fin else np.int64(0)
    if n + fin_i == 0:  # nothing that takes sequence space (Linux drops it before the queue)
        frame_free(pool, fid)
        return np.int64(0), False, d_has, d_lo, d_hi

    dh, dl, dr = d_has, np.int64(d_lo), np.int64(d_hi)
    s = np.int64(seq) & _M32
    e = (s + n + fin_i) & _M32
    pool.tag[fid] = s
    pool.length[fid] = n  # the payload only (drops Ethernet padding after it)
    pool.next[fid] = -1
    if fin:
        pool.flags[fid] |= FRAME_F_TCP_FIN
    else:
        pool.flags[fid] &= _NOT_FIN

    # The caller sends only data above rcv_nxt; trim defensively what is not (tcp_data_queue).
    rcv = np.int64(h.rcv_nxt[cid])
    if seq_lt(s, rcv):
        if seq_leq(e, rcv):
            frame_free(pool, fid)
            return np.int64(0), False, True, s, e
        dh, dl, dr = True, s, rcv
        _trim_front(pool, fid, (rcv - s) & _M32)
        s = rcv

    # Frames wholly before the new one.
    prev = -1
    cur = h.ooo_head[cid]
    n_frames = 0
    while cur >= 0 and seq_leq(_frame_end(pool, cur), s):
        prev = cur
        cur = pool.next[cur]
        n_frames += 1

    # A frame holding the new segment's first byte: keep its bytes, trim ours.
    if cur >= 0 and seq_leq(pool.tag[cur], s):
        ce = _frame_end(pool, cur)
        if seq_geq(ce, e):  # "All the bits are present. Drop."
            frame_free(pool, fid)
            return np.int64(0), False, True, s, e
        if pool.tag[cur] == s:  # Linux replaces that skb and D-SACKs it with tcp_dsack_extend
            dh, dl, dr = _dsack_extend(dh, dl, dr, s, ce)
        else:  # "Partial overlap": tcp_dsack_set
            dh, dl, dr = True, s, ce
        _trim_front(pool, fid, (ce - s) & _M32)
        s = ce
        prev = cur
        cur = pool.next[cur]
        n_frames += 1

    # Frames the new segment covers entirely go (Linux: merge_right), reported as duplicates.
    first_covered = cur
    n_covered = 0
    covered_bytes = np.int64(0)
    while cur >= 0 and seq_leq(_frame_end(pool, cur), e):
        dh, dl, dr = _dsack_extend(dh, dl, dr, pool.tag[cur], _frame_end(pool, cur))
        n_covered += 1
        covered_bytes += pool.length[cur]
        cur = pool.next[cur]
    right = cur

    # The first frame not covered: our tail (and our FIN, whose number it holds) give way.
    if right >= 0 and seq_lt(pool.tag[right], e):
        dh, dl, dr = _dsack_extend(dh, dl, dr, pool.tag[right], e)
        pool.length[fid] = (pool.tag[right] - s) & _M32
        pool.flags[fid] &= _NOT_FIN
        e = pool.tag[right]
        if pool.length[fid] == 0:  # squeezed between two frames: nothing new
            frame_free(pool, fid)
            return np.int64(0), False, dh, dl, dr

    n_above = 0
    bytes_above = np.int64(0)
    c = right
    while c >= 0:
        n_above += 1
        bytes_above += pool.length[c]
        c = pool.next[c]

    new_len = np.int64(pool.length[fid])
    new_fin = (pool.flags[fid] & FRAME_F_TCP_FIN) != 0
    coalesce = False
    if prev >= 0 and (pool.flags[prev] & FRAME_F_TCP_FIN) == 0 and pool.refcnt[prev] == 1:
        p_end = pool.off[prev] + pool.length[prev]
        coalesce = _frame_end(pool, prev) == s and p_end + new_len <= FRAME_SIZE

    # Memory bound, then Linux's pruning of what lies above the new segment.
    bytes_after = h.ooo_bytes[cid] + new_len - covered_bytes
    frames_after = n_frames + n_above + (0 if coalesce else 1)
    cap_bytes = np.int64(max_ooo_bytes)
    cap_frames = reass_frame_cap(cap_bytes)
    pruned = False
    if bytes_after > cap_bytes or frames_after > cap_frames:
        if bytes_after - bytes_above > cap_bytes or frames_after - n_above > cap_frames:
            frame_free(pool, fid)
            return np.int64(REASS_ERR_NOMEM), False, d_has, d_lo, d_hi
        room_bytes = cap_bytes - (bytes_after - bytes_above)
        room_frames = cap_frames - (frames_after - n_above)
        kept_bytes = np.int64(0)
        kept_frames = 0
        last = -1
        c = right
        while c >= 0 and kept_bytes + pool.length[c] <= room_bytes and kept_frames < room_frames:
            kept_bytes += pool.length[c]
            kept_frames += 1
            last = c
            c = pool.next[c]
        if last >= 0:
            pool.next[last] = -1
        else:
            right = -1
        frame_free_chain(pool, c)
        bytes_after -= bytes_above - kept_bytes
        pruned = True

    c = first_covered
    for _ in range(n_covered):
        nxt = pool.next[c]
        pool.next[c] = -1
        frame_free(pool, c)
        c = nxt

    if coalesce:
        dst = pool.off[prev] + pool.length[prev]
        src = pool.off[fid]
        pool.data[prev, dst : dst + new_len] = pool.data[fid, src : src + new_len]
        pool.length[prev] += new_len
        if new_fin:
            pool.flags[prev] |= FRAME_F_TCP_FIN
        pool.next[prev] = right
        frame_free(pool, fid)
    else:
        pool.next[fid] = right
        if prev >= 0:
            pool.next[prev] = fid
        else:
            h.ooo_head[cid] = fid
    h.ooo_bytes[cid] = bytes_after
    return new_len - covered_bytes, pruned, dh, dl, dr


@njit(cache=True)
def reass_insert(pool, t, cid, fid, seq, n, fin, max_ooo_bytes):
    """Queue frame ``fid``, holding ``n`` payload bytes for ``[seq, seq+n)`` (+ FIN at seq+n if
    ``fin``), out of order on connection ``cid``; the payload starts at ``pool.off[fid]``.

    Takes ownership of ``fid`` in every case.  Returns the payload bytes newly held (0 for a
    duplicate), ``REASS_ERR_NOMEM`` (over the limits even after pruning; dropped) or
    ``REASS_ERR_INVAL`` (dropped).  See the module docstring for trimming, coalescing, limits."""
    r, _, _, _, _ = _insert_core(
        pool, t, cid, fid, seq, n, fin, max_ooo_bytes, np.bool_(False), np.int64(0), np.int64(0)
    )  # (np.bool_: a literal False would compile a second specialization)
    return r


@njit(cache=True)
def _deliver_core(pool, t, cid, d_has, d_lo, d_hi):
    """``reass_deliver``'s work plus ``tcp_ofo_queue``'s D-SACK of data received twice.

    Returns ``(result, d_has, d_lo, d_hi)``."""
    h = t.hot
    dh, dl, dr = d_has, np.int64(d_lo), np.int64(d_hi)
    if cid < 0 or cid >= h.ooo_head.shape[0]:
        return np.int64(REASS_ERR_INVAL), dh, dl, dr
    rcv = np.int64(h.rcv_nxt[cid])
    dsack_high = rcv
    head = h.ooo_head[cid]
    ooo_bytes = np.int64(h.ooo_bytes[cid])
    delivered = np.int64(0)
    fin_reached = False
    while head >= 0:
        f = head
        start = pool.tag[f]
        if seq_gt(start, rcv):
            break
        end = _frame_end(pool, f)
        if seq_lt(start, dsack_high):  # bytes also in the data just received in order
            hi = dsack_high
            if seq_lt(end, dsack_high):
                dsack_high = end
            dh, dl, dr = _dsack_extend(dh, dl, dr, start, hi)
        head = pool.next[f]
        pool.next[f] = -1
        ooo_bytes -= pool.length[f]
        if seq_leq(end, rcv):  # received already ("ofo packet was already received")
            frame_free(pool, f)
            continue
        if seq_lt(start, rcv):
            _trim_front(pool, f, (rcv - start) & _M32)
        length = np.int64(pool.length[f])
        rcv = (rcv + length) & _M32
        delivered += length
        has_fin = (pool.flags[f] & FRAME_F_TCP_FIN) != 0
        if length > 0:
            _rcvq_append(pool, h, cid, f)
            tcb_touch(t, cid)  # rcv_q_bytes: readable (fsdp.core.loop.poll_status)
        else:
            frame_free(pool, f)
        if has_fin:
            rcv = (rcv + 1) & _M32
            fin_reached = True
            frame_free_chain(pool, head)  # tcp_fin: out-of-order data after a FIN is dropped
            head = -1
            ooo_bytes = 0
            break
    h.ooo_head[cid] = head
    h.ooo_bytes[cid] = ooo_bytes
    h.rcv_nxt[cid] = rcv
    if fin_reached:
        delivered |= REASS_FIN_REACHED
    return delivered, dh, dl, dr


@njit(cache=True)
def reass_deliver(pool, t, cid):
    """Move the out-of-order frames now contiguous with ``rcv_nxt`` to the receive queue and
    advance ``rcv_nxt``; call after every advance of ``rcv_nxt`` by in-order data.

    Returns the bytes moved, ``| REASS_FIN_REACHED`` when the peer's FIN came into sequence
    (``rcv_nxt`` is then past it and the rest of the queue is freed), or ``REASS_ERR_INVAL``."""
    r, _, _, _ = _deliver_core(pool, t, cid, np.bool_(False), np.int64(0), np.int64(0))
    return r


@njit(cache=True)
def reass_free(pool, t, cid):
    """Free connection ``cid``'s whole out-of-order queue (teardown, or an in-order FIN);
    returns the frames freed."""
    n = frame_free_chain(pool, t.hot.ooo_head[cid])
    t.hot.ooo_head[cid] = -1
    t.hot.ooo_bytes[cid] = 0
    return n


@njit(cache=True)
def reass_last_end(pool, t, cid):
    """The sequence number after the highest out-of-order data held (Linux
    ``TCP_SKB_CB(tp->ooo_last_skb)->end_seq``), or ``rcv_nxt`` when none is held.  Walks the
    queue: O(frames held)."""
    f = t.hot.ooo_head[cid]
    if f < 0:
        return np.int64(t.hot.rcv_nxt[cid])
    while pool.next[f] >= 0:
        f = pool.next[f]
    return np.int64(_frame_end(pool, f))


# --- SACK blocks we send ----------------------------------------------------------------------
class SackState(NamedTuple):
    """Per-connection SACK blocks to send (RFC 2018 §4) and the pending D-SACK (RFC 2883).

    Block ``k`` (0 = most recent) of connection ``cid`` is ``[left[i], right[i])`` with
    ``i = cid * SACK_MAX_BLOCKS + k``, for ``k < num[cid]``."""

    left: np.ndarray  # uint32[max_conns * 4]
    right: np.ndarray  # uint32[max_conns * 4]
    num: np.ndarray  # int8[max_conns]: blocks held
    dsack: np.ndarray  # int8[max_conns]: 1 = a D-SACK block waits for the next ACK
    dsack_left: np.ndarray  # uint32[max_conns]
    dsack_right: np.ndarray  # uint32[max_conns]


def sack_state_create(max_conns: int) -> SackState:
    """SACK state for connection ids ``0 .. max_conns-1``, all empty (17 bytes per connection
    for the blocks, 9 for the D-SACK)."""
    if not isinstance(max_conns, int) or max_conns < 1 or max_conns > 0x7FFFFFFF:
        raise ValueError(f"max_conns must be 1 .. 2^31-1, not {max_conns!r}")
    return SackState(
        left=np.zeros(max_conns * SACK_MAX_BLOCKS, np.uint32),
        right=np.zeros(max_conns * SACK_MAX_BLOCKS, np.uint32),
        num=np.zeros(max_conns, np.int8),
        dsack=np.zeros(max_conns, np.int8),
        dsack_left=np.zeros(max_conns, np.uint32),
        dsack_right=np.zeros(max_conns, np.uint32),
    )


@njit(inline="always", cache=True)
def sack_reset(s, cid):
    """Forget every block and the pending D-SACK (Linux ``tcp_sack_reset``: connection set-up,
    FIN in sequence, reneging)."""
    s.num[cid] = 0
    s.dsack[cid] = 0


@njit(inline="always", cache=True)
def sack_dsack_clear(s, cid):
    """Forget a D-SACK not yet sent; Linux does at the start of every data segment
    (``tcp_data_queue``), so a D-SACK only ever reports the segment that triggers the ACK."""
    s.dsack[cid] = 0


@njit(inline="always", cache=True)
def _dsack_store(s, cid, has, lo, hi):
    s.dsack[cid] = 1 if has else 0
    if has:
        s.dsack_left[cid] = lo & _M32
        s.dsack_right[cid] = hi & _M32


@njit(cache=True)
def sack_on_duplicate(s, cid, seq, end, rcv_nxt):
    """A duplicate segment ``[seq, end)`` arrived: report it first in the next ACK, once
    (RFC 2883 §4, Linux ``tcp_dsack_set``).  Below ``rcv_nxt`` the block is cut at ``rcv_nxt``
    (a partial segment reports its old part, as ``tcp_data_queue`` / ``tcp_send_dupack``); an
    out-of-order duplicate is reported as given.  An empty range changes nothing."""
    a = np.int64(seq) & _M32
    b = np.int64(end) & _M32
    r = np.int64(rcv_nxt) & _M32
    if a == b:
        return
    if seq_lt(a, r) and seq_gt(b, r):
        b = r
    _dsack_store(s, cid, True, a, b)


@njit(cache=True)
def sack_on_ooo(s, cid, seq, end, pool, t):
    """After an out-of-order segment ``[seq, end)`` was queued (or found held already): the
    contiguous run of the queue that holds it becomes block 0, blocks it joined merge into it,
    the others keep their order, the oldest falls off a full list (RFC 2018 §4; Linux
    ``tcp_sack_new_ofo_skb``).  Blocks are re-read from the queue, so one whose data was pruned
    is dropped or shortened.  Returns the number of blocks."""
    base = cid * SACK_MAX_BLOCKS
    num = np.int64(s.num[cid])
    a = np.int64(seq) & _M32
    b = np.int64(end) & _M32
    if not seq_gt(b, a):
        b = (a + 1) & _M32
    unresolved = (np.int64(1) << num) - 1  # bit k: old block k not yet found in the queue
    found = False
    new_left = np.int64(0)
    new_right = np.int64(0)
    have_run = False
    run_left = np.int64(0)
    run_right = np.int64(0)
    fs = np.int64(0)
    fe = np.int64(0)
    f = t.hot.ooo_head[cid]
    while True:
        if f >= 0:
            fs = pool.tag[f]
            fe = _frame_end(pool, f)
            if have_run and fs == run_right:
                run_right = fe
                f = pool.next[f]
                continue
        if have_run:  # [run_left, run_right) is a whole run of the queue
            if not found and seq_lt(run_left, b) and seq_lt(a, run_right):
                found = True
                new_left = run_left
                new_right = run_right
            for k in range(num):
                if (unresolved >> k) & 1:
                    lk = np.int64(s.left[base + k])
                    if seq_leq(run_left, lk) and seq_lt(lk, run_right):
                        s.left[base + k] = run_left
                        s.right[base + k] = run_right
                        unresolved &= ~(np.int64(1) << k)
            if found and unresolved == 0:
                break
        if f < 0:
            break
        run_left = fs
        run_right = fe
        have_run = True
        f = pool.next[f]

    m = 0  # compact: drop blocks no longer held, merged into the new one, or repeated
    for k in range(num):
        if (unresolved >> k) & 1:
            continue
        lk = s.left[base + k]
        if found and lk == new_left:
            continue
        repeated = False
        for j in range(m):
            if s.left[base + j] == lk:
                repeated = True
        if repeated:
            continue
        s.left[base + m] = lk
        s.right[base + m] = s.right[base + k]
        m += 1
    if found:
        if m > SACK_MAX_BLOCKS - 1:
            m = SACK_MAX_BLOCKS - 1
        for k in range(m, 0, -1):
            s.left[base + k] = s.left[base + k - 1]
            s.right[base + k] = s.right[base + k - 1]
        s.left[base] = new_left
        s.right[base] = new_right
        m += 1
    s.num[cid] = m
    return m


@njit(cache=True)
def sack_on_rcv_nxt(s, cid, rcv_nxt):
    """``rcv_nxt`` advanced: drop the blocks now wholly below it, cut one that straddles it
    (Linux ``tcp_sack_remove``).  Returns the number of blocks."""
    base = cid * SACK_MAX_BLOCKS
    r = np.int64(rcv_nxt) & _M32
    m = 0
    for k in range(s.num[cid]):
        lk = np.int64(s.left[base + k])
        rk = np.int64(s.right[base + k])
        if seq_leq(rk, r):
            continue
        if seq_lt(lk, r):
            lk = r
        s.left[base + m] = lk
        s.right[base + m] = rk
        m += 1
    s.num[cid] = m
    return m


@njit(cache=True)
def sack_blocks(s, cid, out, max_blocks):
    """The SACK blocks for the next ACK of ``cid``: a pending D-SACK first (then cleared: it is
    sent once), then the blocks most recent first; at most ``max_blocks`` (3 with timestamps,
    4 without: RFC 2018 §3).  Writes ``out[2i], out[2i+1]`` = left, right edge of block ``i``
    (the layout ``tcp_write_sack_option`` reads); returns the number of blocks."""
    lim = min(np.int64(max_blocks), SACK_MAX_BLOCKS)
    n = 0
    if lim <= 0:
        return n
    if s.dsack[cid]:
        out[0] = s.dsack_left[cid]
        out[1] = s.dsack_right[cid]
        s.dsack[cid] = 0
        n = 1
    base = cid * SACK_MAX_BLOCKS
    k = 0
    while n < lim and k < s.num[cid]:
        out[2 * n] = s.left[base + k]
        out[2 * n + 1] = s.right[base + k]
        n += 1
        k += 1
    return n


@njit(cache=True)
def sack_block_count(s, cid, max_blocks):
    """How many blocks ``sack_blocks`` would write now (a pending D-SACK counts as one), without
    using the D-SACK up: what the next segment's option will take (Linux
    tcp_established_options)."""
    n = np.int64(s.num[cid]) + (1 if s.dsack[cid] else 0)
    lim = min(np.int64(max_blocks), SACK_MAX_BLOCKS)
    return n if n < lim else lim


@njit(cache=True)
def reass_insert_sack(pool, t, s, cid, fid, seq, n, fin, max_ooo_bytes):
    """``reass_insert`` plus Linux's SACK and D-SACK updates on that path (``tcp_data_queue_ofo``):
    overlaps with held data set/extend the D-SACK block, a prune forgets every block
    (``tcp_sack_reset``), and the run holding the segment becomes block 0 even when the segment
    was a duplicate.  Same results as ``reass_insert``."""
    if cid < 0 or cid >= s.num.shape[0]:
        return reass_insert(pool, t, cid, fid, seq, n, fin, max_ooo_bytes)
    r, pruned, dh, dl, dr = _insert_core(
        pool, t, cid, fid, seq, n, fin, max_ooo_bytes,
        s.dsack[cid] != 0, np.int64(s.dsack_left[cid]), np.int64(s.dsack_right[cid]),
    )  # fmt: skip
    if r < 0:
        return r
    if pruned:
        sack_reset(s, cid)
    _dsack_store(s, cid, dh, dl, dr)
    n_seq = np.int64(n) + (1 if fin else 0)
    if n_seq > 0:
        sack_on_ooo(s, cid, seq, np.int64(seq) + n_seq, pool, t)
    return r


@njit(cache=True)
def reass_deliver_sack(pool, t, s, cid):
    """``reass_deliver`` plus Linux's SACK updates (``tcp_ofo_queue``, ``tcp_sack_remove``):
    frames overlapping the in-order data just received extend the D-SACK block, blocks below the
    new ``rcv_nxt`` go (all of them once the queue is empty), and a FIN in sequence forgets every
    block and the D-SACK (``tcp_fin``).  Same results as ``reass_deliver``."""
    if cid < 0 or cid >= s.num.shape[0]:
        return reass_deliver(pool, t, cid)
    r, dh, dl, dr = _deliver_core(
        pool, t, cid, s.dsack[cid] != 0, np.int64(s.dsack_left[cid]), np.int64(s.dsack_right[cid])
    )
    if r < 0:
        return r
    _dsack_store(s, cid, dh, dl, dr)
    if r & REASS_FIN_REACHED:
        sack_reset(s, cid)
    elif t.hot.ooo_head[cid] < 0:
        s.num[cid] = 0
    else:
        sack_on_rcv_nxt(s, cid, t.hot.rcv_nxt[cid])
    return r
