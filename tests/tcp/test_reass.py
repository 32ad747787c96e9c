"""fsdp.tcp.reass: the out-of-order queue, delivery, and the SACK / D-SACK blocks we send.

Expected values are Linux's (net/ipv4/tcp_input.c: tcp_data_queue, tcp_data_queue_ofo,
tcp_ofo_queue, tcp_sack_new_ofo_skb, tcp_sack_remove, tcp_dsack_set/extend), computed by hand
from that code; the RFC 2018 §4 and RFC 2883 §4 examples are replayed packet by packet.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

from fsdp.pool.pool import (
    AUDIT_OK,
    HEADROOM,
    frame_alloc,
    frame_free_chain,
    pool_audit,
    pool_create,
    pool_n_free,
)
from fsdp.tcp.frameflags import FRAME_F_TCP_FIN
from fsdp.tcp.reass import (
    REASS_ERR_INVAL,
    REASS_ERR_NOMEM,
    REASS_FIN_REACHED,
    SACK_MAX_BLOCKS,
    reass_deliver,
    reass_deliver_sack,
    reass_frame_cap,
    reass_free,
    reass_insert,
    reass_insert_sack,
    reass_result_bytes,
    reass_result_fin,
    sack_blocks,
    sack_dsack_clear,
    sack_on_duplicate,
    sack_on_ooo,
    sack_on_rcv_nxt,
    sack_reset,
    sack_state_create,
)
from fsdp.tcp.tcb import tcb_alloc, tcb_table_create

M32 = 0xFFFFFFFF
HDR = 54  # Ethernet + IPv4 + TCP: the payload starts after them, as on a received frame
BIG = 1 << 30  # a byte limit that is never reached


def pattern(seq, n, flip=False):
    """The stream's bytes at sequence numbers seq .. seq+n-1 (a function of the number only)."""
    v = ((np.arange(n, dtype=np.int64) + seq) & M32) % 251
    return (v ^ 0xFF if flip else v).astype(np.uint8)


def lt(a, b):
    return ((a - b) & M32) >= 0x80000000


class Rx:
    """One connection's receive side, driven as the engine will drive it (Linux tcp_data_queue)."""

    def __init__(self, rcv_nxt, max_ooo=BIG, n_frames=512, max_blocks=4):
        self.pool = pool_create(n_frames)
        self.t = tcb_table_create(3)
        tcb_alloc(self.t)
        self.cid = tcb_alloc(self.t)  # id 1: a wrong index would show
        self.s = sack_state_create(3)
        self.t.hot.rcv_nxt[self.cid] = rcv_nxt & M32
        self.max_ooo = max_ooo
        self.max_blocks = max_blocks
        self.fin = False
        self.out = np.zeros(2 * SACK_MAX_BLOCKS, np.int64)

    @property
    def rcv_nxt(self):
        return int(self.t.hot.rcv_nxt[self.cid])

    def frame(self, seq, n, flip=False, pad=0):
        """A received frame with ``n`` payload bytes after the headers (and ``pad`` bytes of
        Ethernet padding the caller's length still counts)."""
        f = frame_alloc(self.pool)
        assert f >= 0
        off = HEADROOM + HDR
        self.pool.off[f] = off
        self.pool.length[f] = n + pad
        self.pool.data[f, off : off + n] = pattern(seq, n, flip)
        self.pool.data[f, off + n : off + n + pad] = 0xEE
        return f

    # --- raw calls -----------------------------------------------------------------------
    def insert(self, seq, n, fin=False, flip=False, sack=True):
        f = self.frame(seq, n, flip, pad=3)
        if sack:
            return reass_insert_sack(
                self.pool, self.t, self.s, self.cid, f, seq & M32, n, fin, self.max_ooo
            )
        return reass_insert(self.pool, self.t, self.cid, f, seq & M32, n, fin, self.max_ooo)

    def append_in_order(self, seq, n):
        """What the engine does with in-order data: queue it, advance rcv_nxt."""
        assert seq & M32 == self.rcv_nxt
        f = self.frame(seq, n)
        p, h, c = self.pool, self.t.hot, self.cid
        p.tag[f] = seq & M32
        p.length[f] = n
        p.next[f] = -1
        if h.rcv_q_tail[c] >= 0:
            p.next[h.rcv_q_tail[c]] = f
        else:
            h.rcv_q_head[c] = f
        h.rcv_q_tail[c] = f
        h.rcv_q_bytes[c] += n
        h.rcv_nxt[c] = (seq + n) & M32

    # --- one data segment, Linux's tcp_data_queue order ------------------------------------
    def segment(self, seq, n, fin=False):
        """Process a data segment; returns what the ACK says: (ack, [blocks], result).
        ``self.path`` says which way it went: "none", "old", "in" or "ooo"."""
        seq &= M32
        end = (seq + n + fin) & M32
        self.path = "none"
        if n + fin == 0 or self.fin:
            return self.ack(None)
        sack_dsack_clear(self.s, self.cid)
        rcv = self.rcv_nxt
        if not lt(rcv, end):  # wholly old: a retransmission
            self.path = "old"
            sack_on_duplicate(self.s, self.cid, seq, end, rcv)
            return self.ack(0)
        if lt(seq, rcv):  # partial: D-SACK the old part, queue the rest in order
            sack_on_duplicate(self.s, self.cid, seq, end, rcv)
            k = (rcv - seq) & M32
            seq, n = rcv, n - k
            if n < 0:  # only the FIN is new
                n = 0
        if seq == rcv:
            self.path = "in"
            if n:
                self.append_in_order(seq, n)
            if fin:  # tcp_fin: FIN in sequence, out-of-order data and SACK state dropped
                self.t.hot.rcv_nxt[self.cid] = (self.rcv_nxt + 1) & M32
                self.fin = True
                reass_free(self.pool, self.t, self.cid)
                sack_reset(self.s, self.cid)
                return self.ack(REASS_FIN_REACHED)
            r = reass_deliver_sack(self.pool, self.t, self.s, self.cid)
            self.fin = reass_result_fin(r)
            return self.ack(r)
        self.path = "ooo"
        f = self.frame(seq, n, pad=1)
        r = reass_insert_sack(self.pool, self.t, self.s, self.cid, f, seq, n, fin, self.max_ooo)
        return self.ack(r)

    def pending_dsack(self):
        c = self.cid
        return (int(self.s.dsack_left[c]), int(self.s.dsack_right[c])) if self.s.dsack[c] else None

    def ack(self, result):
        self.dsack = self.pending_dsack()  # (sack_blocks sends and clears it)
        k = sack_blocks(self.s, self.cid, self.out, self.max_blocks)
        blocks = [(int(self.out[2 * i]), int(self.out[2 * i + 1])) for i in range(k)]
        return self.rcv_nxt, blocks, result

    # --- inspection ------------------------------------------------------------------------
    def frames(self):
        """(seq, length, fin) of every out-of-order frame, in queue order."""
        out, f = [], self.t.hot.ooo_head[self.cid]
        while f >= 0:
            fin = bool(self.pool.flags[f] & FRAME_F_TCP_FIN)
            out.append((int(self.pool.tag[f]), int(self.pool.length[f]), fin))
            f = self.pool.next[f]
        return out

    def runs(self):
        """Contiguous runs of the queue in sequence space (a FIN takes one number)."""
        runs = []
        for seq, n, fin in self.frames():
            end = (seq + n + fin) & M32
            if runs and runs[-1][1] == seq:
                runs[-1][1] = end
            else:
                runs.append([seq, end])
        return [tuple(r) for r in runs]

    def fins(self):
        return {(seq + n) & M32 for seq, n, fin in self.frames() if fin}

    def held_bytes_ok(self, flipped=lambda b: False):
        """Every held byte is the stream's (the flipped stream's where ``flipped(seq)``)."""
        for seq, n, _ in self.frames():
            f = self._frame_at(seq)
            got = self.pool.data[f, self.pool.off[f] : self.pool.off[f] + n]
            for i in range(n):
                b = (seq + i) & M32
                if got[i] != pattern(b, 1, flipped(b))[0]:
                    return False
        return True

    def _frame_at(self, seq):
        f = self.t.hot.ooo_head[self.cid]
        while self.pool.tag[f] != seq:
            f = self.pool.next[f]
        return f

    def stream(self):
        """(first seq, bytes) of the receive queue, checking it is contiguous."""
        p, f = self.pool, self.t.hot.rcv_q_head[self.cid]
        first, expect, parts = None, None, []
        while f >= 0:
            if first is None:
                first = int(p.tag[f])
            else:
                assert int(p.tag[f]) == expect
            parts.append(p.data[f, p.off[f] : p.off[f] + p.length[f]].copy())
            expect = (int(p.tag[f]) + int(p.length[f])) & M32
            f = p.next[f]
        data = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
        assert len(data) == self.t.hot.rcv_q_bytes[self.cid]
        return first, data

    def check_invariants(self, sack=True):
        h, c = self.t.hot, self.cid
        frames = self.frames()
        assert h.ooo_bytes[c] == sum(n for _, n, _ in frames)
        prev_end = self.rcv_nxt
        for seq, n, fin in frames:
            assert n + fin > 0
            assert lt(prev_end, seq) or prev_end == seq  # sorted, no overlap, above rcv_nxt
            prev_end = (seq + n + fin) & M32
        assert (len(frames) > 0) == (h.ooo_head[c] >= 0)
        for other in (0, 2):  # the neighbours' state is never written
            assert h.ooo_head[other] == -1 and h.rcv_q_head[other] == -1
            assert h.rcv_nxt[other] == 0 and h.ooo_bytes[other] == 0
            assert self.s.num[other] == 0 and self.s.dsack[other] == 0
            base = other * SACK_MAX_BLOCKS
            assert not self.s.left[base : base + SACK_MAX_BLOCKS].any()
            assert not self.s.right[base : base + SACK_MAX_BLOCKS].any()
        if not sack:
            return
        # SACK blocks: held runs, disjoint, at most 4.
        runs = self.runs()
        num = int(self.s.num[c])
        assert 0 <= num <= SACK_MAX_BLOCKS
        base = c * SACK_MAX_BLOCKS
        blocks = [(int(self.s.left[base + k]), int(self.s.right[base + k])) for k in range(num)]
        assert len(set(blocks)) == num
        for b in blocks:
            assert b in runs, (b, runs)

    def teardown_ok(self):
        frame_free_chain(self.pool, self.t.hot.rcv_q_head[self.cid])
        self.t.hot.rcv_q_head[self.cid] = self.t.hot.rcv_q_tail[self.cid] = -1
        reass_free(self.pool, self.t, self.cid)
        return pool_audit(self.pool) == AUDIT_OK and pool_n_free(self.pool) == len(self.pool.refcnt)


# --- insertion: a table of cases ----------------------------------------------------------------
# rcv_nxt = 1000.  existing: (seq, n, fin) inserted first; new: (seq, n, fin), its bytes flipped so
# that which copy of an overlap was kept shows.  Expected: result, runs, FIN positions, D-SACK.
INSERT_CASES = [
    # name, existing, new, result, runs, fins, dsack
    ("into an empty queue", [], (1100, 100, 0), 100, [(1100, 1200)], set(), None),
    ("appended", [(1100, 100, 0)], (1200, 100, 0), 100, [(1100, 1300)], set(), None),
    ("prepended", [(1200, 100, 0)], (1100, 100, 0), 100, [(1100, 1300)], set(), None),
    ("a second run", [(1100, 100, 0)], (1300, 50, 0), 50, [(1100, 1200), (1300, 1350)], set(),
     None),
    ("fills the gap", [(1100, 100, 0), (1300, 100, 0)], (1200, 100, 0), 100, [(1100, 1400)],
     set(), None),
    ("left overlap", [(1100, 100, 0)], (1150, 100, 0), 50, [(1100, 1250)], set(), (1150, 1200)),
    ("right overlap", [(1200, 100, 0)], (1150, 100, 0), 50, [(1150, 1300)], set(), (1200, 1250)),
    ("inside", [(1100, 200, 0)], (1150, 100, 0), 0, [(1100, 1300)], set(), (1150, 1250)),
    ("exact duplicate", [(1100, 100, 0)], (1100, 100, 0), 0, [(1100, 1200)], set(), (1100, 1200)),
    ("same start, longer", [(1100, 100, 0)], (1100, 200, 0), 100, [(1100, 1300)], set(),
     (1100, 1200)),
    ("same end, earlier", [(1200, 100, 0)], (1100, 200, 0), 100, [(1100, 1300)], set(),
     (1200, 1300)),
    ("covers one", [(1200, 50, 0)], (1100, 300, 0), 250, [(1100, 1400)], set(), (1200, 1250)),
    # Linux: dsack_set(1150,1200); the covered [1250,1300) and the right overlap [1350,1400) do
    # not touch it, so tcp_dsack_extend leaves it.
    ("covers one, overlaps both neighbours", [(1100, 100, 0), (1250, 50, 0), (1350, 100, 0)],
     (1150, 250, 0), 100, [(1100, 1450)], set(), (1150, 1200)),
    ("between two, overlapping both", [(1100, 100, 0), (1300, 100, 0)], (1150, 200, 0), 100,
     [(1100, 1400)], set(), (1150, 1200)),
    ("covers two, touching", [(1200, 50, 0), (1250, 50, 0)], (1150, 200, 0), 100,
     [(1150, 1350)], set(), (1200, 1300)),
    # FIN (it takes sequence number seq+n)
    ("FIN out of order", [], (1100, 100, 1), 100, [(1100, 1201)], {1200}, None),
    ("FIN alone", [], (1200, 0, 1), 0, [(1200, 1201)], {1200}, None),
    ("a retransmission adds the FIN", [(1100, 100, 0)], (1100, 100, 1), 0, [(1100, 1201)],
     {1200}, (1100, 1200)),
    ("FIN duplicate", [(1100, 100, 1)], (1100, 100, 1), 0, [(1100, 1201)], {1200},
     (1100, 1201)),
    ("data past a held FIN", [(1100, 100, 1)], (1150, 150, 0), 99, [(1100, 1300)], {1200},
     (1150, 1201)),
    ("held data where our FIN would be", [(1200, 100, 0)], (1100, 100, 1), 100, [(1100, 1300)],
     set(), (1200, 1201)),
    ("covers a held FIN", [(1200, 50, 1)], (1100, 300, 0), 250, [(1100, 1400)], set(),
     (1200, 1251)),
    # defensive: the caller should send only data above rcv_nxt
    ("partly below rcv_nxt", [], (950, 100, 0), 50, [(1000, 1050)], set(), (950, 1000)),
    ("wholly below rcv_nxt", [], (900, 100, 0), 0, [], set(), (900, 1000)),
]  # fmt: skip


@pytest.mark.parametrize("sack", [True, False], ids=["insert_sack", "insert"])
@pytest.mark.parametrize(
    "name,existing,new,result,runs,fins,dsack", INSERT_CASES, ids=[c[0] for c in INSERT_CASES]
)
def test_insert_table(name, existing, new, result, runs, fins, dsack, sack):
    rx = Rx(1000)
    for seq, n, fin in existing:
        assert rx.insert(seq, n, bool(fin), sack=sack) == n
    seq, n, fin = new
    assert rx.insert(seq, n, bool(fin), flip=True, sack=sack) == result
    assert rx.runs() == runs and rx.fins() == fins
    rx.check_invariants()
    # Bytes held before stay; the new segment's bytes fill only what was missing, except where
    # it covered a held segment entirely (freed, as Linux drops covered skbs).
    new_end = seq + n + fin
    kept = [(a, a + k) for a, k, f in existing if not (a > seq and a + k + f <= new_end)]
    assert rx.held_bytes_ok(lambda b: not any(a <= b < z for a, z in kept))
    if sack:
        assert rx.pending_dsack() == dsack
    assert rx.teardown_ok()


def test_inserted_payload_is_trimmed_to_n_and_padding_never_reaches_the_queue():
    rx = Rx(1000)
    assert rx.insert(1100, 10) == 10  # the frame's length said 13 (3 bytes of padding)
    assert rx.frames() == [(1100, 10, False)] and rx.held_bytes_ok()
    assert rx.insert(1110, 10) == 10
    assert rx.frames() == [(1100, 20, False)] and rx.held_bytes_ok()  # coalesced, no padding
    assert rx.teardown_ok()


def test_squeezed_between_two_frames_is_a_duplicate():
    # 1400-byte frames have no tailroom for each other: two frames, back to back.
    rx = Rx(1000)
    assert rx.insert(2000, 1400) == 1400 and rx.insert(3400, 1400) == 1400
    assert [n for _, n, _ in rx.frames()] == [1400, 1400]
    # Linux: dsack_set(2700, 3400) against the first, tcp_dsack_extend(3400, 4100) touches it.
    assert rx.insert(2700, 1400, flip=True) == 0
    assert rx.pending_dsack() == (2700, 4100)
    assert rx.runs() == [(2000, 4800)] and rx.held_bytes_ok()
    assert rx.teardown_ok()


def test_small_segments_coalesce_large_ones_do_not():
    rx = Rx(1000)
    for i in range(20):  # 20 x 90 bytes fit one frame's tailroom
        assert rx.insert(1100 + 90 * i, 90) == 90
    assert rx.frames() == [(1100, 1800, False)] and rx.held_bytes_ok()
    assert pool_n_free(rx.pool) == len(rx.pool.refcnt) - 1
    assert rx.insert(2900, 1448) == 1448  # does not fit: a frame of its own
    assert len(rx.frames()) == 2 and rx.runs() == [(1100, 4348)]
    assert rx.insert(4348, 0, fin=True) == 0  # a FIN folds into the frame before it
    assert rx.frames()[-1] == (2900, 1448, True) and len(rx.frames()) == 2
    assert rx.teardown_ok()


def test_frames_shared_with_another_owner_are_not_written():
    rx = Rx(1000)
    assert rx.insert(1100, 10) == 10
    f = rx.t.hot.ooo_head[rx.cid]
    rx.pool.refcnt[f] += 1  # e.g. a capture still holds it
    assert rx.insert(1110, 10) == 10
    assert rx.frames() == [(1100, 10, False), (1110, 10, False)]
    rx.pool.refcnt[f] -= 1
    assert rx.teardown_ok()


def test_bad_arguments_are_refused_and_the_frame_freed():
    rx = Rx(1000)
    f = rx.frame(1100, 10)
    assert reass_insert(rx.pool, rx.t, rx.cid, f, 1100, 11, False, BIG) == REASS_ERR_INVAL
    f = rx.frame(1100, 10)
    assert reass_insert(rx.pool, rx.t, rx.cid, f, 1100, -1, False, BIG) == REASS_ERR_INVAL
    f = rx.frame(1100, 10)
    assert reass_insert(rx.pool, rx.t, 7, f, 1100, 10, False, BIG) == REASS_ERR_INVAL
    f = rx.frame(1100, 10)
    assert reass_insert_sack(rx.pool, rx.t, rx.s, -1, f, 1100, 10, False, BIG) == REASS_ERR_INVAL
    assert reass_insert(rx.pool, rx.t, rx.cid, -1, 1100, 10, False, BIG) == REASS_ERR_INVAL
    f = rx.frame(1100, 0)
    assert reass_insert(rx.pool, rx.t, rx.cid, f, 1100, 0, False, BIG) == 0  # no data, no FIN
    assert reass_deliver(rx.pool, rx.t, 9) == REASS_ERR_INVAL
    assert rx.frames() == [] and rx.teardown_ok()


# --- memory bound -------------------------------------------------------------------------------
def test_over_the_byte_limit_the_highest_data_is_pruned_or_the_segment_dropped():
    rx = Rx(1000, max_ooo=300)
    for seq in (1100, 1300, 1500):
        assert rx.insert(seq, 100) == 100
    base = rx.s.num[rx.cid]
    assert base == 3 and rx.t.hot.ooo_bytes[rx.cid] == 300
    # Above everything held: nothing above it to prune, dropped; the queue is untouched.
    free = pool_n_free(rx.pool)
    assert rx.insert(1700, 100) == REASS_ERR_NOMEM
    assert pool_n_free(rx.pool) == free and rx.runs() == [(1100, 1200), (1300, 1400), (1500, 1600)]
    assert rx.s.num[rx.cid] == 3  # Linux drops before the SACK update
    # A lower segment evicts from the top (tcp_prune_ofo_queue), only as much as needed.
    assert rx.insert(1200, 50) == 50
    assert rx.runs() == [(1100, 1250), (1300, 1400)] and rx.t.hot.ooo_bytes[rx.cid] == 250
    rx.check_invariants()
    # As Linux, pruning forgets every block (tcp_sack_reset); the new block is the whole run
    # holding the segment (RFC 2018 §4), where Linux would send [1200,1250).
    assert rx.ack(None)[1] == [(1100, 1250)]
    # Duplicates and trimmed retransmissions are measured after trimming: they still fit.
    assert rx.insert(1100, 150) == 0 and rx.insert(1250, 100) == 50
    assert rx.t.hot.ooo_bytes[rx.cid] == 300 and rx.runs() == [(1100, 1400)]
    assert rx.teardown_ok()


def test_pruning_happens_only_where_it_makes_room():
    rx = Rx(1000, max_ooo=250)
    assert rx.insert(1500, 100) == 100 and rx.insert(1700, 100) == 100
    # 300 bytes cannot fit even with everything above them gone: dropped, nothing pruned
    # (Linux would prune first and drop anyway).
    assert rx.insert(1100, 300) == REASS_ERR_NOMEM
    assert rx.runs() == [(1500, 1600), (1700, 1800)]
    # 200 bytes fit once both frames above are gone.
    assert rx.insert(1100, 200) == 200
    assert rx.runs() == [(1100, 1300)] and rx.t.hot.ooo_bytes[rx.cid] == 200
    assert rx.teardown_ok()


def test_frame_limit_bounds_tiny_segments():
    cap = reass_frame_cap(1000)
    assert cap == 64 and reass_frame_cap(1 << 20) == (1 << 20) // 128
    rx = Rx(1000, max_ooo=1000)
    for i in range(cap):  # 1-byte segments with gaps: a frame each
        assert rx.insert(2000 + 2 * i, 1) == 1
    assert rx.insert(2000 + 2 * cap, 1) == REASS_ERR_NOMEM  # 65 bytes held, but 65 frames
    assert rx.insert(1500, 1) == 1  # lower: the highest frame makes room
    assert len(rx.frames()) == cap and rx.frames()[-1][0] == 2000 + 2 * (cap - 2)
    rx.check_invariants()
    assert rx.teardown_ok()


# --- delivery -------------------------------------------------------------------------------
def test_deliver_moves_what_became_contiguous():
    rx = Rx(1000)
    assert reass_deliver(rx.pool, rx.t, rx.cid) == 0  # empty
    rx.insert(1100, 100)
    rx.insert(1300, 100)
    assert reass_deliver(rx.pool, rx.t, rx.cid) == 0 and rx.rcv_nxt == 1000  # still a gap
    rx.append_in_order(1000, 100)
    r = reass_deliver(rx.pool, rx.t, rx.cid)
    assert r == 100 and reass_result_bytes(r) == 100 and not reass_result_fin(r)
    assert rx.rcv_nxt == 1200 and rx.runs() == [(1300, 1400)]
    first, data = rx.stream()
    assert first == 1000 and (data == pattern(1000, 200)).all()
    rx.check_invariants(sack=False)  # (plain reass_deliver leaves the SACK state alone)
    assert rx.teardown_ok()


def test_deliver_trims_what_in_order_data_already_brought():
    rx = Rx(1000)
    rx.insert(1100, 100)
    rx.insert(1250, 50)
    rx.append_in_order(1000, 260)  # covers [1100,1200) whole and [1250,1260)
    assert reass_deliver(rx.pool, rx.t, rx.cid) == 40
    assert rx.rcv_nxt == 1300 and rx.frames() == []
    first, data = rx.stream()
    assert first == 1000 and (data == pattern(1000, 300)).all()
    assert rx.teardown_ok()


def test_deliver_reaches_the_fin_and_drops_what_lies_past_it():
    rx = Rx(1000)
    rx.insert(1100, 100, fin=True)
    rx.insert(1300, 100)  # after the FIN: not data (tcp_fin purges it)
    rx.append_in_order(1000, 100)
    r = reass_deliver(rx.pool, rx.t, rx.cid)
    assert r == 100 | REASS_FIN_REACHED and reass_result_fin(r) and reass_result_bytes(r) == 100
    assert rx.rcv_nxt == 1201 and rx.frames() == [] and rx.t.hot.ooo_bytes[rx.cid] == 0
    f = rx.t.hot.rcv_q_tail[rx.cid]
    assert rx.pool.flags[f] & FRAME_F_TCP_FIN  # the frame keeps what its segment carried
    assert rx.teardown_ok()


def test_deliver_a_fin_alone():
    rx = Rx(1000)
    assert rx.insert(1100, 0, fin=True) == 0 and rx.runs() == [(1100, 1101)]
    rx.append_in_order(1000, 100)
    assert reass_deliver(rx.pool, rx.t, rx.cid) == REASS_FIN_REACHED
    assert rx.rcv_nxt == 1101 and rx.t.hot.rcv_q_bytes[rx.cid] == 100  # no empty frame queued
    assert rx.teardown_ok()


def test_wraparound_at_two_to_the_32():
    isn = (1 << 32) - 150
    rx = Rx(isn)
    for seq in (isn + 200, isn + 100, isn + 50, isn + 140):  # across 0, out of order
        assert rx.insert(seq & M32, 50 if seq != isn + 140 else 30, fin=seq == isn + 200) > 0
    fin_run = ((isn + 200) & M32, (isn + 251) & M32)
    assert fin_run == (50, 101)
    assert rx.runs() == [((isn + 50) & M32, (isn + 170) & M32), fin_run]
    rx.check_invariants()
    assert rx.segment(isn, 50)[:2] == ((isn + 170) & M32, [fin_run])
    ack, blocks, _ = rx.segment(isn + 170, 30)
    assert ack == 101 and rx.fin and blocks == []
    first, data = rx.stream()
    assert first == isn and (data == pattern(isn, 250)).all()
    assert rx.teardown_ok()


def test_reass_free_returns_the_frames():
    rx = Rx(1000)
    for seq in (1100, 3000, 3200):
        rx.insert(seq, 1400 if seq == 1100 else 50)
    assert reass_free(rx.pool, rx.t, rx.cid) == 3
    assert rx.t.hot.ooo_head[rx.cid] == -1 and rx.t.hot.ooo_bytes[rx.cid] == 0
    assert reass_free(rx.pool, rx.t, rx.cid) == 0 and rx.teardown_ok()


# --- SACK blocks: RFC 2018 §4 ---------------------------------------------------------------
def test_rfc2018_case2_first_segment_lost():
    rx = Rx(5000)
    for i in range(1, 8):
        ack, blocks, _ = rx.segment(5000 + 500 * i, 500)
        assert (ack, blocks) == (5000, [(5500, 5500 + 500 * i)])
    assert rx.segment(5000, 500)[:2] == (9000, [])
    rx.check_invariants()
    assert rx.teardown_ok()


def test_rfc2018_case3_every_other_segment_lost_then_filled():
    rx = Rx(5000)
    script = [  # triggering segment -> ACK, blocks (RFC 2018 §4, case 3)
        (5000, 5500, []),
        (6000, 5500, [(6000, 6500)]),
        (7000, 5500, [(7000, 7500), (6000, 6500)]),
        (8000, 5500, [(8000, 8500), (7000, 7500), (6000, 6500)]),
        (6500, 5500, [(6000, 7500), (8000, 8500)]),  # the 4th segment arrives late
        (5500, 7500, [(8000, 8500)]),  # the 2nd, retransmitted
    ]
    for seq, ack, blocks in script:
        assert rx.segment(seq, 500)[:2] == (ack, blocks), seq
        rx.check_invariants()
    assert rx.teardown_ok()


def test_at_most_four_blocks_three_with_timestamps():
    for max_blocks in (4, 3):
        rx = Rx(1000, max_blocks=max_blocks)
        for i in range(6):
            rx.segment(1100 + 100 * i, 50)
            rx.check_invariants()
        want = [(1100 + 100 * i, 1150 + 100 * i) for i in range(5, 1, -1)][:max_blocks]
        assert rx.ack(None)[1] == want
        assert rx.s.num[rx.cid] == 4  # the oldest two fell off
        # A D-SACK goes first and takes a place.
        _, blocks, _ = rx.segment(1300, 50)
        assert blocks[0] == (1300, 1350) and blocks[1] == (1300, 1350)
        assert len(blocks) == max_blocks
        assert rx.ack(None)[1][0] == (1300, 1350)  # sent once
        assert rx.teardown_ok()


def test_block_of_data_whose_block_fell_off_is_the_whole_run():
    # RFC 2018 §4: the first block is "the contiguous block of data containing the segment".
    # Linux would report only [1150,1160) (and merge nothing): its block for [1100,1150) is gone.
    rx = Rx(1000)
    for i in range(5):
        rx.segment(1100 + 100 * i, 50)
    assert (1100, 1150) not in rx.ack(None)[1]
    assert rx.segment(1150, 10)[1][0] == (1100, 1160)
    assert rx.teardown_ok()


# --- D-SACK: RFC 2883 §4 --------------------------------------------------------------------
def test_rfc2883_example1_duplicate_segment():
    rx = Rx(3000)
    assert rx.segment(3000, 500)[:2] == (3500, [])
    assert rx.segment(3500, 500)[:2] == (4000, [])
    assert rx.segment(3000, 500)[:2] == (4000, [(3000, 3500)])
    assert rx.ack(None)[1] == []  # reported once
    assert rx.teardown_ok()


def test_rfc2883_example2_out_of_order_and_duplicate():
    rx = Rx(3000)
    rx.segment(3000, 500)
    rx.segment(3500, 500)
    assert rx.segment(4500, 500)[:2] == (4000, [(4500, 5000)])
    assert rx.segment(3000, 500)[:2] == (4000, [(3000, 3500), (4500, 5000)])
    assert rx.teardown_ok()


def test_rfc2883_example3_duplicate_of_an_out_of_order_segment():
    rx = Rx(3500)
    assert rx.segment(3500, 500)[:2] == (4000, [])
    assert rx.segment(4500, 500)[:2] == (4000, [(4500, 5000)])
    assert rx.segment(5000, 500)[:2] == (4000, [(4500, 5500)])
    assert rx.segment(5000, 500)[:2] == (4000, [(5000, 5500), (4500, 5500)])
    assert rx.teardown_ok()


def test_rfc2883_example4_single_duplicate_subsegment():
    rx = Rx(500)
    assert rx.segment(500, 500)[:2] == (1000, [])
    assert rx.segment(2000, 500)[:2] == (1000, [(2000, 2500)])
    assert rx.segment(1000, 500)[:2] == (1500, [(2000, 2500)])
    assert rx.segment(1000, 1000)[:2] == (2500, [(1000, 1500)])
    assert rx.teardown_ok()


def test_rfc2883_example5_two_duplicate_subsegments_below_the_ack():
    rx = Rx(500)
    rx.segment(500, 500)
    assert rx.segment(3000, 500)[:2] == (1000, [(3000, 3500)])
    assert rx.segment(1000, 500)[:2] == (1500, [(3000, 3500)])
    assert rx.segment(2000, 500)[:2] == (1500, [(2000, 2500), (3000, 3500)])
    # Only the first duplicate is reported; [2000,2500) does not touch it (tcp_dsack_extend).
    assert rx.segment(1000, 1500)[:2] == (2500, [(1000, 1500), (3000, 3500)])
    assert rx.teardown_ok()


def test_rfc2883_example6_duplicates_above_the_ack_as_linux_reports_them():
    # The RFC's table keeps the touching blocks 2000-2500 and 1500-2000 apart and D-SACKs only
    # 1500-2000; Linux merges touching blocks (tcp_sack_extend) and extends the D-SACK over the
    # second held segment the retransmission covers (tcp_dsack_extend in merge_right).
    rx = Rx(500)
    rx.segment(500, 500)
    assert rx.segment(3500, 500)[:2] == (1000, [(3500, 4000)])
    assert rx.segment(1500, 500)[:2] == (1000, [(1500, 2000), (3500, 4000)])
    assert rx.segment(2000, 500)[:2] == (1000, [(1500, 2500), (3500, 4000)])
    assert rx.segment(1500, 1500)[:2] == (1000, [(1500, 2500), (1500, 3000), (3500, 4000)])
    assert rx.teardown_ok()


def test_dsack_of_out_of_order_data_the_in_order_segment_also_brought():
    # tcp_ofo_queue: frames below the new rcv_nxt extend the D-SACK up to dsack_high.
    rx = Rx(1000)
    rx.segment(1150, 250)
    assert rx.segment(1000, 300)[:2] == (1400, [(1150, 1300)])
    # Linux's dsack_high quirk: the block runs to where the in-order data ended.
    rx2 = Rx(1000)
    rx2.segment(1150, 50)
    rx2.segment(1250, 150)
    assert rx2.segment(1000, 300)[:2] == (1400, [(1150, 1300)])
    for r in (rx, rx2):
        first, data = r.stream()
        assert first == 1000 and (data == pattern(1000, 400)).all() and r.teardown_ok()


def test_dsack_set_versus_extend_when_one_is_still_pending():
    # Without sack_dsack_clear, Linux's distinction shows: a partial overlap *sets* the D-SACK
    # (tcp_dsack_set), replacing a same-start skb only *extends* it (tcp_dsack_extend).
    for new, want in (((1150, 100), (1150, 1200)), ((1100, 200), (500, 600))):
        rx = Rx(1000)
        rx.insert(1100, 100)
        sack_on_duplicate(rx.s, rx.cid, 500, 600, 1000)  # pending, not sent
        assert rx.insert(*new) == 50 if new[0] == 1150 else rx.insert(*new) == 100
        assert rx.pending_dsack() == want
        assert rx.teardown_ok()


def test_a_fin_in_sequence_forgets_every_block_and_the_dsack():
    rx = Rx(1000)
    rx.segment(1200, 100, fin=True)
    rx.segment(1400, 10)  # past the FIN
    assert rx.ack(None)[1] == [(1400, 1410), (1200, 1301)]
    ack, blocks, r = rx.segment(1000, 250)  # overlaps [1200,1250): a D-SACK, then tcp_fin
    assert (ack, blocks) == (1301, []) and reass_result_fin(r) and rx.frames() == []
    assert rx.teardown_ok()


def test_sack_pieces():
    s = sack_state_create(2)
    out = np.zeros(8, np.uint32)
    sack_on_duplicate(s, 1, 100, 100, 500)  # empty: nothing
    assert sack_blocks(s, 1, out, 4) == 0
    sack_on_duplicate(s, 1, 400, 600, 500)  # partial: cut at rcv_nxt (tcp_data_queue)
    assert sack_blocks(s, 1, out, 0) == 0 and s.dsack[1] == 1  # no room: stays pending
    assert sack_blocks(s, 1, out, 4) == 1 and list(out[:2]) == [400, 500]
    sack_on_duplicate(s, 1, 700, 800, 500)  # out of order: as given
    sack_dsack_clear(s, 1)
    assert sack_blocks(s, 1, out, 4) == 0
    # sack_on_rcv_nxt: drop blocks below, cut a straddling one, keep the order.
    s.left[4:8] = [900, 100, 300, 700]
    s.right[4:8] = [1000, 200, 450, 800]
    s.num[1] = 4
    assert sack_on_rcv_nxt(s, 1, 400) == 3
    assert sack_blocks(s, 1, out, 4) == 3 and list(out[:6]) == [900, 1000, 400, 450, 700, 800]
    sack_on_duplicate(s, 1, (1 << 32) - 10, 20, 5)  # across 2^32
    assert sack_blocks(s, 1, out, 1) == 1 and list(out[:2]) == [(1 << 32) - 10, 5]
    sack_reset(s, 1)
    assert s.num[1] == 0 and s.dsack[1] == 0 and s.num[0] == 0
    with pytest.raises(ValueError):
        sack_state_create(0)


def test_sack_on_ooo_drops_blocks_whose_data_is_gone():
    rx = Rx(1000)
    for seq in (1100, 1300, 1500):
        rx.insert(seq, 50, sack=False)
    c, s = rx.cid, rx.s
    for seq in (1100, 1300, 1500):
        sack_on_ooo(s, c, seq, seq + 50, rx.pool, rx.t)
    assert rx.ack(None)[1] == [(1500, 1550), (1300, 1350), (1100, 1150)]
    # Pruned behind the SACK state's back (plain reass_insert): the stale block goes.
    rx.max_ooo = 110
    assert rx.insert(1200, 10, sack=False) == 10
    assert rx.runs() == [(1100, 1150), (1200, 1210), (1300, 1350)]
    assert sack_on_ooo(s, c, 1200, 1210, rx.pool, rx.t) == 3
    assert rx.ack(None)[1] == [(1200, 1210), (1300, 1350), (1100, 1150)]
    assert rx.teardown_ok()


# --- called from jitted code, as the engine does ------------------------------------------
@njit(cache=True)
def _engine_like(pool, t, s, cid, f1, f2, out):
    # (typed values: a literal argument would compile another specialization of each kernel)
    no, yes, big = np.bool_(False), np.bool_(True), np.int64(1 << 20)
    r1 = reass_insert_sack(pool, t, s, cid, f1, np.int64(1100), np.int64(100), no, big)
    t.hot.rcv_nxt[cid] = 1100  # as if [1000,1100) came in order
    r2 = reass_deliver_sack(pool, t, s, cid)
    r3 = reass_insert(pool, t, cid, f2, np.int64(1300), np.int64(10), yes, big)
    sack_on_ooo(s, cid, np.int64(1300), np.int64(1311), pool, t)
    n = sack_blocks(s, cid, out, np.int64(3))
    return r1, r2, r3, n, reass_deliver(pool, t, cid), reass_free(pool, t, cid)


def test_callable_from_jitted_code():
    # (int64 arguments, as the Python-side tests use: one specialization of each kernel)
    rx = Rx(1000)
    f1, f2 = rx.frame(1100, 100), rx.frame(1300, 10)
    out = np.zeros(8, np.int64)
    assert _engine_like(rx.pool, rx.t, rx.s, rx.cid, f1, f2, out) == (100, 100, 10, 1, 0, 1)
    assert list(out[:2]) == [1300, 1311] and rx.rcv_nxt == 1200
    assert rx.teardown_ok()


# --- properties -------------------------------------------------------------------------------
def linux_sack_model(blocks, seq, end, queue_was_empty):
    """tcp_sack_new_ofo_skb + tcp_sack_maybe_coalesce, in Python; returns True if a block fell
    off the full list (then fsdp may report more than Linux, see the module docstring)."""

    def extend(b, a, z):
        if not lt(b[1], a) and not lt(z, b[0]):  # !after(a, b.end) && !after(b.start, z)
            if lt(a, b[0]):
                b[0] = a
            if lt(b[1], z):
                b[1] = z
            return True
        return False

    if queue_was_empty:
        blocks[:] = [[seq, end]]
        return False
    for i, b in enumerate(blocks):
        if extend(b, seq, end):
            blocks.insert(0, blocks.pop(i))
            k = 1
            while k < len(blocks):
                if extend(blocks[0], *blocks[k]):
                    blocks.pop(k)
                else:
                    k += 1
            return False
    blocks.insert(0, [seq, end])
    if len(blocks) > SACK_MAX_BLOCKS:
        del blocks[SACK_MAX_BLOCKS:]
        return True
    return False


MAX_SEG = 1800  # payload bytes a received frame holds after the headers (2048 - 128 - 54 - pad)


@st.composite
def transmissions(draw, max_len=3000):
    """A stream and the segments that carry it: a first segmentation, retransmissions with other
    boundaries, in a random order with duplicates; a segment reaching the end carries FIN."""
    length = draw(st.integers(1, max_len))
    isn = draw(st.one_of(st.integers(0, M32), st.integers((1 << 32) - 2 * max_len, M32)))
    segs = []
    for _ in range(draw(st.integers(1, 3))):
        cuts = draw(st.sets(st.integers(1, length - 1), max_size=30)) if length > 1 else set()
        bounds = [0, *sorted(cuts), length]
        for a, z in zip(bounds, bounds[1:], strict=False):
            segs += [(x, min(z, x + MAX_SEG)) for x in range(a, z, MAX_SEG)]
    for _ in range(draw(st.integers(0, 10))):  # arbitrary overlapping retransmissions
        a = draw(st.integers(0, length - 1))
        segs.append((a, draw(st.integers(a + 1, min(length, a + MAX_SEG)))))
    order = draw(st.permutations(range(len(segs))))
    return length, isn, [segs[i] for i in order]


def _run(rx, length, isn, segs, check_linux):
    """Feed ``segs``; check the invariants after each, and (``check_linux``) that the blocks are
    those of a Python model of Linux's for as long as no block has fallen off a full list."""
    linux, linux_valid = [], check_linux
    ack = None
    for a, z in segs:
        fin = z == length
        seq, n = (isn + a) & M32, z - a
        end = (seq + n + fin) & M32
        rcv_before = rx.rcv_nxt
        ooo_was_empty = rx.t.hot.ooo_head[rx.cid] < 0
        held_before = rx.runs()
        ack, _, r = rx.segment(seq, n, fin)
        rx.check_invariants()
        assert rx.t.hot.ooo_bytes[rx.cid] <= rx.max_ooo
        assert len(rx.frames()) <= reass_frame_cap(rx.max_ooo)
        if rx.dsack is not None:
            # A D-SACK lies inside the segment that triggered it and starts at a byte that was
            # received before (RFC 2883 §4).
            dl, dr = rx.dsack
            assert not lt(dl, seq) and not lt(end, dr) and lt(dl, dr), (rx.dsack, seq, end)
            assert lt(dl, rcv_before) or any(not lt(dl, x) and lt(dl, y) for x, y in held_before)
        if rx.path == "ooo" and r >= 0:  # tcp_data_queue_ofo
            if linux_sack_model(linux, seq, end, ooo_was_empty):
                linux_valid = False
        elif rx.path == "in":  # tcp_fin, or tcp_sack_remove
            if rx.fin or rx.t.hot.ooo_head[rx.cid] < 0:
                linux = []
            else:
                linux = [b for b in linux if lt(rx.rcv_nxt, b[0])]
        if linux_valid:
            base = rx.cid * SACK_MAX_BLOCKS
            ours = [[int(rx.s.left[base + k]), int(rx.s.right[base + k])]
                    for k in range(rx.s.num[rx.cid])]  # fmt: skip
            assert ours == linux, (ours, linux)
    return ack


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transmissions())
def test_any_segmentation_in_any_order_reassembles_the_stream(tx):
    length, isn, segs = tx
    rx = Rx(isn, n_frames=1024)
    ack = _run(rx, length, isn, segs, check_linux=True)
    assert rx.fin and ack == (isn + length + 1) & M32 and rx.frames() == []
    first, data = rx.stream()
    assert first == isn and (data == pattern(isn, length)).all()
    assert rx.teardown_ok()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transmissions(max_len=2500), st.integers(0, 1500), st.randoms(use_true_random=False))
def test_bounded_queue_still_reassembles_with_retransmissions(tx, max_ooo, rnd):
    length, isn, segs = tx
    rx = Rx(isn, max_ooo=max_ooo, n_frames=1024)
    for _ in range(len(segs) + 1):  # the sender resends everything until it is all ACKed
        _run(rx, length, isn, segs, check_linux=False)
        if rx.fin:
            break
        segs = rnd.sample(segs, len(segs))
    assert rx.fin and rx.rcv_nxt == (isn + length + 1) & M32
    first, data = rx.stream()
    assert first == isn and (data == pattern(isn, length)).all()
    assert rx.teardown_ok()
