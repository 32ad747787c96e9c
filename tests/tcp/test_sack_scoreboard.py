"""fsdp.tcp.sack_scoreboard over a real Pool and TcbTable: RFC 2018/2883 block examples, RFC 6675
IsLost / SetPipe / NextSeg, RTO marking, RACK's loss marking (RFC 8985 §6.2), and a
frame-by-frame Python model under hypothesis."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fsdp.pool.pool import frame_alloc, frame_free, pool_audit, pool_create
from fsdp.tcp.frameflags import (
    FRAME_F_TCP_EVER_RETRANS,
    FRAME_F_TCP_FIN,
    FRAME_F_TCP_LOST,
    FRAME_F_TCP_RETRANS,
    FRAME_F_TCP_SACKED,
    FRAME_F_TCP_SENT,
)
from fsdp.tcp.sack_scoreboard import (
    frame_set_xmit_time,
    scoreboard_clear,
    scoreboard_dsack,
    scoreboard_enter_recovery,
    scoreboard_highest_sacked,
    scoreboard_is_lost,
    scoreboard_next_seg,
    scoreboard_next_seg_rule3,
    scoreboard_pipe,
    scoreboard_rack_detect_loss,
    scoreboard_reset,
    scoreboard_sacked_bytes,
    scoreboard_update,
)
from fsdp.tcp.tcb import TF_SACKED_OUT, tcb_alloc, tcb_table_create

M32 = 0xFFFFFFFF


class Conn:
    """A connection whose send queue holds ``lens`` segments from ``start``; the first
    ``n_sent`` are sent (snd_max after them), the rest unsent."""

    def __init__(self, start, lens, mss, n_sent=None, fin=False, pool_frames=128):
        self.pool = pool_create(pool_frames)
        self.t = tcb_table_create(2)
        self.cid = tcb_alloc(self.t)
        h, cid = self.t.hot, self.cid
        h.mss[cid] = mss
        n_sent = len(lens) if n_sent is None else n_sent
        self.fids = []
        seq = start
        smax = start
        for i, n in enumerate(lens):
            f = frame_alloc(self.pool)
            self.pool.tag[f] = seq & M32
            self.pool.length[f] = n
            if fin and i == len(lens) - 1:
                self.pool.flags[f] |= FRAME_F_TCP_FIN
                n += 1
            if i < n_sent:
                self.pool.flags[f] |= FRAME_F_TCP_SENT
                smax = seq + n
            if self.fids:
                self.pool.next[self.fids[-1]] = f
            self.fids.append(f)
            seq += n
        h.snd_q_head[cid] = self.fids[0]
        h.snd_q_tail[cid] = self.fids[-1]
        h.snd_q_unsent[cid] = self.fids[n_sent] if n_sent < len(lens) else -1
        h.snd_una[cid] = start & M32
        h.snd_nxt[cid] = smax & M32
        h.snd_max[cid] = smax & M32

    def sack(self, *edges, now=0):
        blocks = np.zeros(8, np.int64)
        blocks[: len(edges)] = [e & M32 for e in edges]
        return int(scoreboard_update(self.pool, self.t, self.cid, blocks, len(edges) // 2, now)[0])

    def dsack(self, *edges):
        blocks = np.array([e & M32 for e in edges] or [0], np.int64)
        return bool(scoreboard_dsack(self.t, self.cid, blocks, len(edges) // 2))

    def ack(self, seq):
        """Cumulative ACK: snd_una = seq, frames wholly below it freed (the engine's job)."""
        h, cid = self.t.hot, self.cid
        h.snd_una[cid] = seq & M32
        while self.fids:
            f = self.fids[0]
            end = int(self.pool.tag[f]) + int(self.pool.length[f])
            end += 1 if self.pool.flags[f] & FRAME_F_TCP_FIN else 0
            if ((seq - end) & M32) >= 0x80000000:  # end > seq
                break
            self.fids.pop(0)
            h.snd_q_head[cid] = self.pool.next[f]
            frame_free(self.pool, f)
        if not self.fids:
            h.snd_q_head[cid] = h.snd_q_tail[cid] = -1

    def flags(self, i, bit):
        return bool(self.pool.flags[self.fids[i]] & bit)

    def sacked(self):
        return [self.flags(i, FRAME_F_TCP_SACKED) for i in range(len(self.fids))]

    def retransmit(self, i):
        self.pool.flags[self.fids[i]] |= FRAME_F_TCP_RETRANS

    def pipe(self, dupthresh=3):
        return int(scoreboard_pipe(self.pool, self.t, self.cid, dupthresh))

    def next_seg(self, dupthresh=3):
        f = int(scoreboard_next_seg(self.pool, self.t, self.cid, dupthresh))
        return None if f < 0 else self.fids.index(f)

    def rule3(self):
        f = int(scoreboard_next_seg_rule3(self.pool, self.t, self.cid))
        return None if f < 0 else self.fids.index(f)

    def is_lost(self, i, dupthresh=3):
        return bool(scoreboard_is_lost(self.pool, self.t, self.cid, self.fids[i], dupthresh))

    def sacked_bytes(self):
        return int(scoreboard_sacked_bytes(self.pool, self.t, self.cid))

    def highest_sacked(self):
        return int(scoreboard_highest_sacked(self.pool, self.t, self.cid))


# --- RFC 2018 §5 examples: left edge 5000, eight 500-byte segments ----------------------------
def test_rfc2018_case2_first_segment_dropped():
    """The first segment is lost, the other seven arrive: each ACK 5000 carries one growing
    block 5500-6000 ... 5500-9000."""
    c = Conn(5000, [500] * 8, mss=500)
    for k in range(1, 8):
        assert c.sack(5500, 5500 + 500 * k) == 500  # one more segment each time
        assert c.sacked() == [False] + [True] * k + [False] * (7 - k)
        assert c.sacked_bytes() == 500 * k and c.highest_sacked() == 5500 + 500 * k
        # IsLost(5000): 3 SACKed segments above (DupThresh), or more than 2*SMSS bytes
        assert c.is_lost(0) == (k >= 3)
        assert c.next_seg() == (0 if k >= 3 else None)
    assert c.sack(5500, 9000) == 0  # nothing new


def test_rfc2018_case3_alternate_segments_dropped():
    """The 2nd, 4th, 6th and 8th segments are dropped; then the 4th and 2nd arrive late."""
    c = Conn(5000, [500] * 8, mss=500)
    c.ack(5500)  # the first segment arrives: ACK 5500, no SACK
    assert c.sack(6000, 6500) == 500
    assert c.sack(7000, 7500, 6000, 6500) == 500
    assert c.sack(8000, 8500, 7000, 7500, 6000, 6500) == 500
    assert c.sacked() == [False, True, False, True, False, True, False]
    assert c.highest_sacked() == 8500
    # three SACKed segments above 5500: lost; 6500 and 7500 have two and one above
    assert [c.is_lost(i) for i in (0, 2, 4, 6)] == [True, False, False, False]
    # the 4th segment (6500-6999) arrives: ACK 5500, SACK 6000-7500, 8000-8500
    assert c.sack(6000, 7500, 8000, 8500) == 500
    assert c.sacked() == [False, True, True, True, False, True, False]
    # the 2nd segment arrives: ACK 7500, SACK 8000-8500
    c.ack(7500)
    assert c.sack(8000, 8500) == 0
    assert c.sacked() == [False, True, False] and c.sacked_bytes() == 500


def test_partial_coverage_marks_nothing():
    c = Conn(5000, [500] * 4, mss=500)
    assert c.sack(5250, 6000) == 500  # half of 5000-5499, all of 5500-5999
    assert c.sacked() == [False, True, False, False]
    assert c.sack(6100, 6900) == 0  # inside two frames, covering neither
    assert c.sacked() == [False, True, False, False]


def test_blocks_clipped_to_sent_data():
    c = Conn(1000, [1000] * 6, mss=1000, n_sent=4)  # 1000-4999 sent, 5000-6999 queued
    assert c.sack(3000, 7000) == 2000  # only the sent frames 3000-4999
    assert c.sacked() == [False, False, True, True, False, False]
    assert c.sack(5000, 7000) == 0 and c.sack(4000, 3000) == 0  # beyond snd_max; inverted
    assert c.highest_sacked() == 5000


# --- D-SACK (RFC 2883 §4) ---------------------------------------------------------------------
def test_dsack_below_cumulative_ack():
    """RFC 2883 §4.1.1: a duplicate of 3000-3499 arrives after ACK 4000."""
    c = Conn(4000, [500] * 4, mss=500)
    assert c.dsack(3000, 3500)
    assert c.sack(3000, 3500) == 0 and c.sacked_bytes() == 0


def test_dsack_inside_second_block():
    """RFC 2883 §4.1.2 shape: out-of-order 4000-4999 held, 4000-4499 arrives again: ACK 3000,
    SACK 4000-4500 (D-SACK), 4000-5000."""
    c = Conn(3000, [500] * 6, mss=500)
    assert c.dsack(4000, 4500, 4000, 5000)
    assert c.sack(4000, 4500, 4000, 5000) == 1000  # the second block still counts
    assert c.sacked() == [False, False, True, True, False, False]
    assert not c.dsack(4000, 5000)
    assert not c.dsack(5000, 5500, 4000, 4500)  # a first block outside the second is a SACK
    assert not c.dsack()


# --- RFC 6675 §4: IsLost, SetPipe, NextSeg ---------------------------------------------------
def _ten(sacked, mss=1000):
    """Ten 1000-byte segments from 0, ``sacked`` segment indices SACKed."""
    c = Conn(0, [1000] * 10, mss=mss)
    for i in sacked:
        c.sack(1000 * i, 1000 * i + 1000)
    return c


def test_pipe_and_nextseg_one_loss():
    c = _ten([1, 2, 3])
    assert c.is_lost(0) and not c.is_lost(4) and not c.is_lost(1)  # SACKed: not lost
    assert c.pipe() == 6000  # 4..9 in flight; 0 lost; 1-3 SACKed
    assert c.next_seg() == 0 and c.rule3() == 0
    c.retransmit(0)
    assert c.pipe() == 7000  # the retransmission is in flight (S1 <= HighRxt)
    assert c.next_seg() is None and c.rule3() is None  # rule (2), new data, is the engine's


def test_pipe_and_nextseg_two_losses():
    c = _ten([2, 3, 4])
    assert c.is_lost(0) and c.is_lost(1)
    assert c.pipe() == 5000
    assert c.next_seg() == 0
    c.retransmit(0)
    assert c.next_seg() == 1 and c.pipe() == 6000
    c.retransmit(1)
    assert c.next_seg() is None and c.pipe() == 7000


def test_not_yet_lost_holes_rule3():
    c = _ten([2, 3])  # two SACKed segments: below DupThresh and 2*SMSS not exceeded
    assert not c.is_lost(0) and not c.is_lost(1)
    assert c.pipe() == 8000 and c.next_seg() is None
    assert c.rule3() == 0  # RFC 6675 rule (3): the first hole below the highest SACK
    c.retransmit(0)
    assert c.rule3() == 1 and c.pipe() == 9000
    assert c.next_seg(dupthresh=2) == 1  # DupThresh 2: two SACKed segments above suffice


def test_is_lost_byte_rule_after_mss_shrinks():
    """Frames queued at 1460 bytes, MSS now 1000 (path MTU fell): two SACKed frames are
    2920 > (DupThresh-1)*SMSS = 2000 bytes, so the hole is lost with only two SACKs."""
    c = Conn(0, [1460] * 5, mss=1000)
    c.sack(1460, 4380)
    assert c.is_lost(0) and c.next_seg() == 0
    c.t.hot.mss[c.cid] = 1460
    assert not c.is_lost(0) and c.next_seg() is None


def test_fin_counts_one_sequence_number():
    c = Conn(0, [1000, 1000, 1000], mss=1000, fin=True)  # the FIN after 2999: snd_max 3001
    assert int(c.t.hot.snd_max[c.cid]) == 3001
    assert c.sack(2000, 3001) == 1001 and c.highest_sacked() == 3001
    assert c.pipe() == 2000


def test_partially_acked_head_counts_its_rest():
    c = Conn(0, [1000] * 4, mss=1000)
    c.t.hot.snd_una[c.cid] = 400  # the engine has not trimmed the head frame yet
    assert c.pipe() == 3600
    c.sack(1000, 4000)
    assert c.is_lost(0) and c.pipe() == 0 and c.sacked_bytes() == 3000


def test_enter_recovery_clears_retrans_of_sent_frames_only():
    c = Conn(0, [1000] * 4, mss=1000, n_sent=3)
    for i in range(4):
        c.retransmit(i)
    scoreboard_enter_recovery(c.pool, c.t, c.cid)
    assert [c.flags(i, FRAME_F_TCP_RETRANS) for i in range(4)] == [False, False, False, True]


def test_sequence_wraparound():
    start = (1 << 32) - 2500
    c = Conn(start, [1000] * 5, mss=1000)  # 2^32-2500 .. 2500, across zero
    assert c.sack(start + 1000, (start + 4000) & M32) == 3000
    assert c.sacked() == [False, True, True, True, False]
    assert c.highest_sacked() == (start + 4000) & M32
    assert c.is_lost(0) and c.pipe() == 1000 and c.next_seg() == 0


# --- RTO (RFC 6675 §5.1, Linux tcp_timeout_mark_lost) ---------------------------------------
def test_rto_keeps_sacks_marks_rest_lost():
    c = _ten([3, 4])
    c.retransmit(0)
    assert not scoreboard_clear(c.pool, c.t, c.cid)  # head not SACKed: no reneging
    assert c.sacked() == [False] * 3 + [True] * 2 + [False] * 5
    assert all(c.flags(i, FRAME_F_TCP_LOST) for i in (0, 1, 2, 5, 6, 7, 8, 9))
    assert not any(c.flags(i, FRAME_F_TCP_RETRANS) for i in range(10))
    assert c.pipe() == 0
    # go-back retransmission in order, skipping SACKed frames, above the highest SACK too
    order = []
    while (i := c.next_seg()) is not None:
        order.append(i)
        c.retransmit(i)
    assert order == [0, 1, 2, 5, 6, 7, 8, 9] and c.pipe() == 8000
    c.sack(5000, 6000)  # a retransmission SACKed: no longer lost, no longer in flight
    assert not c.flags(5, FRAME_F_TCP_LOST) and c.pipe() == 7000


def test_rto_with_sacked_head_means_reneging():
    c = _ten([1, 2])
    c.pool.flags[c.fids[0]] |= FRAME_F_TCP_SACKED  # the receiver SACKed but never ACKed it
    assert scoreboard_clear(c.pool, c.t, c.cid)
    assert not any(c.sacked())
    assert all(c.flags(i, FRAME_F_TCP_LOST) for i in range(10))
    assert c.next_seg() == 0


def test_reset_drops_every_mark():
    c = _ten([4, 5, 6])
    c.retransmit(0)
    scoreboard_clear(c.pool, c.t, c.cid)
    scoreboard_reset(c.pool, c.t, c.cid)
    mask = FRAME_F_TCP_SACKED | FRAME_F_TCP_LOST | FRAME_F_TCP_RETRANS
    assert all(c.pool.flags[f] & mask == 0 for f in c.fids)
    assert all(c.pool.flags[f] & FRAME_F_TCP_SENT for f in c.fids)
    assert c.pipe() == 10000


def test_empty_queue():
    c = Conn(0, [1000], mss=1000)
    c.ack(1000)
    assert c.t.hot.snd_q_head[c.cid] == -1
    assert c.sack(0, 1000) == 0 and c.pipe() == 0 and c.next_seg() is None
    assert c.sacked_bytes() == 0 and c.highest_sacked() == 1000
    assert not scoreboard_is_lost(c.pool, c.t, c.cid, -1, 3)
    assert not scoreboard_clear(c.pool, c.t, c.cid)
    assert pool_audit(c.pool) == 0


# --- a frame-by-frame model under hypothesis -------------------------------------------------
class Model:
    """The scoreboard kept as Python lists, from the RFCs' definitions (quadratic, plainly
    right): offsets from the first sequence number, frames wholly SACKed or not."""

    def __init__(self, lens, n_sent):
        self.lens, self.n_sent = lens, n_sent
        self.starts = [sum(lens[:i]) for i in range(len(lens))]
        self.snd_max = sum(lens[:n_sent])
        self.sacked = [False] * len(lens)
        self.lost = [False] * len(lens)  # marked by an RTO
        self.retrans = [False] * len(lens)

    def dsack(self, blocks):  # RFC 2883 §4
        if not blocks:
            return False
        (l0, r0) = blocks[0]
        return l0 < 0 or (len(blocks) > 1 and l0 >= blocks[1][0] and r0 <= blocks[1][1])

    def update(self, blocks):
        new = 0
        dsack = self.dsack(blocks)
        for b, (lo, hi) in enumerate(blocks):
            lo, hi = max(lo, 0), min(hi, self.snd_max)
            if (dsack and b == 0) or lo >= hi:
                continue
            for i in range(self.n_sent):
                s, e = self.starts[i], self.starts[i] + self.lens[i]
                if lo <= s and e <= hi and not self.sacked[i]:
                    self.sacked[i], self.lost[i] = True, False
                    new += self.lens[i]
        return new

    def rto(self):
        reneged = self.sacked[0]
        for i in range(self.n_sent):
            self.sacked[i] = self.sacked[i] and not reneged
            self.lost[i] = not self.sacked[i]
            self.retrans[i] = False
        return reneged

    def is_lost(self, i, dupthresh, mss):
        if self.sacked[i]:
            return False
        above = [j for j in range(i + 1, self.n_sent) if self.sacked[j]]
        return (self.lost[i] or len(above) >= dupthresh
                or sum(self.lens[j] for j in above) > (dupthresh - 1) * mss)  # fmt: skip

    def pipe(self, dupthresh, mss):  # RFC 6675 SetPipe over un-SACKed frames
        return sum((0 if self.is_lost(i, dupthresh, mss) else self.lens[i])
                   + (self.lens[i] if self.retrans[i] else 0)
                   for i in range(self.n_sent) if not self.sacked[i])  # fmt: skip

    def next_seg(self, dupthresh, mss):  # RFC 6675 NextSeg rule (1)
        for i in range(self.n_sent):
            if not self.retrans[i] and self.is_lost(i, dupthresh, mss):
                return i
        return None


# --- RACK (RFC 8985 §6.2 step 5) ------------------------------------------------------------
NO_DUPTHRESH = 1 << 30


def rack_conn(xmit_us, mss=100):
    """Segments of ``mss`` bytes sent at the times ``xmit_us`` (µs), in order, all
    outstanding."""
    c = Conn(1000, [mss] * len(xmit_us), mss)
    for i, (f, x) in enumerate(zip(c.fids, xmit_us, strict=True)):
        frame_set_xmit_time(c.pool, f, x, i + 1)
    return c


def detect(c, now, reo_wnd=0):
    lost, timeout = scoreboard_rack_detect_loss(c.pool, c.t, c.cid, now, reo_wnd)
    marked = [i for i, f in enumerate(c.fids) if c.pool.flags[f] & FRAME_F_TCP_LOST]
    return int(lost), int(timeout), marked


def test_rack_marks_what_was_sent_before_the_delivered_segment():
    """RFC 8985 §6.2: segment 2 (sent at 300 µs) SACKed at 1000 µs: RACK.rtt = 700; segments 0
    and 1, sent earlier, are lost once their send time + 700 + reo_wnd has passed (with reo_wnd
    150: segment 0 at once, segment 1 50 µs later); segment 3, sent later, never is; pipe then
    counts only segment 3."""
    c = rack_conn([100, 200, 300, 400])
    c.sack(1200, 1300, now=1000)
    assert (int(c.t.hot.rack_xmit_us[c.cid]), int(c.t.hot.rack_rtt_us[c.cid])) == (300, 700)
    assert detect(c, 1000, reo_wnd=150) == (100, 50, [0])
    assert detect(c, 1050, reo_wnd=150) == (100, 0, [0, 1])
    assert scoreboard_pipe(c.pool, c.t, c.cid, NO_DUPTHRESH) == 100


def test_rack_timeout_is_the_latest_frame_still_in_its_window():
    """RFC 8985 §6.3: not yet due frames give the reordering timer: the one sent last is due
    last (send time + RACK.rtt + reo_wnd - now)."""
    c = rack_conn([100, 200, 300, 400])
    c.sack(1200, 1300, now=1000)
    lost, timeout, marked = detect(c, 1000, reo_wnd=400)
    assert (lost, marked) == (0, []) and timeout == 200 + 700 + 400 - 1000
    assert detect(c, 1000 + timeout, reo_wnd=400) == (200, 0, [0, 1])


def test_rack_finds_a_lost_retransmission():
    """RFC 8985 §3.3: a retransmission (sent again at 500 µs) is lost when a segment sent after
    it (600 µs) is delivered and RACK.rtt has passed: its episode mark goes, so NextSeg returns
    it again; RFC 6675's IsLost never would."""
    c = rack_conn([100, 200, 300, 600])
    f0 = c.fids[0]
    c.pool.flags[f0] |= FRAME_F_TCP_LOST | FRAME_F_TCP_RETRANS
    frame_set_xmit_time(c.pool, f0, 500, 10)
    c.sack(1100, 1300, now=700)  # segments 1, 2: sent before the retransmission
    assert detect(c, 700)[2] == [0]  # still marked, but resent: not lost again yet
    assert c.pool.flags[f0] & FRAME_F_TCP_RETRANS
    c.sack(1100, 1300, 1300, 1400, now=800)  # segment 3, sent after it
    assert detect(c, 800) == (100, 0, [0])
    assert not c.pool.flags[f0] & FRAME_F_TCP_RETRANS
    assert scoreboard_next_seg(c.pool, c.t, c.cid, NO_DUPTHRESH) == f0


def test_sack_gives_an_rtt_sample_by_karns_rule():
    """Linux's first_sackt / last_sackt: the newly SACKed frames never retransmitted time the
    path (the earliest sent for SRTT, the latest for the minimum RTT); a retransmitted one is
    ambiguous and left out (RFC 6298 §3)."""
    c = rack_conn([100, 200, 300, 400])
    c.pool.flags[c.fids[3]] |= FRAME_F_TCP_RETRANS
    blocks = np.zeros(8, np.int64)
    blocks[:2] = [1100, 1400]
    got = scoreboard_update(c.pool, c.t, c.cid, blocks, 1, 1000)
    assert tuple(int(x) for x in got) == (300, 200, 300, -1, 0)
    blocks[:2] = [1100, 1400]
    assert tuple(int(x) for x in scoreboard_update(c.pool, c.t, c.cid, blocks, 1, 1100)) == (
        0, -1, -1, -1, 0)


def _sack_reordered(c, *edges):
    """One ACK's SACK blocks as the engine takes them: (newly SACKed, reordering seen); the
    engine then sets TF_SACKED_OUT, which makes hot.rack_fack RACK.fack for the next ACK."""
    blocks = np.zeros(8, np.int64)
    blocks[: len(edges)] = edges
    got = scoreboard_update(c.pool, c.t, c.cid, blocks, len(edges) // 2, 0)
    if got[0] > 0:
        c.t.hot.tflags[c.cid] |= TF_SACKED_OUT
    return int(got[0]), int(got[3])


def test_a_segment_sacked_below_the_highest_one_delivered_is_reordering():
    """RFC 8985 §6.2 step 3 (Linux tcp_sacktag_one / tcp_check_sack_reordering): a segment
    never retransmitted that is newly SACKed below RACK.fack, the highest sequence delivered
    before, arrived out of order; one that was retransmitted proves nothing, and blocks of
    one ACK are taken in sequence order (two at once above the cumulative ACK: no
    reordering)."""
    c = rack_conn([100] * 6)
    assert _sack_reordered(c, 1300, 1400, 1100, 1200) == (200, -1)
    assert c.t.hot.rack_fack[c.cid] == 1400
    assert _sack_reordered(c, 1200, 1400, 1100, 1200) == (100, 1200)  # 2 below 3
    c.pool.flags[c.fids[0]] |= FRAME_F_TCP_RETRANS
    c.pool.flags[c.fids[0]] |= FRAME_F_TCP_EVER_RETRANS
    assert _sack_reordered(c, 1000, 1400) == (100, -1)  # 0 was resent
    assert _sack_reordered(c, 1000, 1500) == (100, -1)  # 4 above 3
    assert c.t.hot.rack_fack[c.cid] == 1500


def test_rack_orders_sends_of_the_same_microsecond_by_transmission():
    """RFC 8985 §6.2 RACK_sent_after with a tie in time: a retransmission sent in the same µs
    as an original, but after it, is not "sent before" it (the transmission counter, not the
    sequence number, breaks the tie)."""
    c = rack_conn([100, 100, 100])
    f0 = c.fids[0]
    c.pool.flags[f0] |= FRAME_F_TCP_LOST | FRAME_F_TCP_RETRANS
    frame_set_xmit_time(c.pool, f0, 100, 4)  # resent in the same µs, after segments 1 and 2
    c.sack(1100, 1200, now=100)
    assert detect(c, 100) == (0, 0, [0])  # 1 went before the resend: 0 is not lost again
    assert c.pool.flags[f0] & FRAME_F_TCP_RETRANS


def test_rack_ignores_a_retransmission_delivered_too_soon():
    """RFC 8985 §6.2 step 2: a retransmitted segment ACKed sooner than min_RTT after its resend
    was probably delivered as the original: it does not move RACK."""
    c = rack_conn([100, 200])
    c.t.hot.min_rtt_us[c.cid] = 1000
    c.pool.flags[c.fids[1]] |= FRAME_F_TCP_RETRANS
    frame_set_xmit_time(c.pool, c.fids[1], 900, 10)
    c.sack(1100, 1200, now=1200)  # 300 µs after the resend < min_RTT
    assert int(c.t.hot.rack_xmit_us[c.cid]) == 0
    assert detect(c, 5000) == (0, 0, [])


@given(
    lens=st.lists(st.integers(1, 1460), min_size=1, max_size=24),
    unsent=st.integers(0, 4),
    start=st.integers(0, M32),
    mss=st.integers(100, 1460),
    dupthresh=st.integers(1, 5),
    acks=st.lists(
        st.tuples(st.lists(st.tuples(st.integers(-3000, 40000), st.integers(-3000, 40000)),
                           max_size=4),
                  st.sets(st.integers(0, 23), max_size=3), st.booleans()),
        min_size=1, max_size=6),
)  # fmt: skip
@settings(max_examples=150, deadline=None)
def test_against_model(lens, unsent, start, mss, dupthresh, acks):
    """SACKed bytes never exceed the sent data, pipe is never negative, NextSeg never returns a
    SACKed frame: all three follow from matching the model exactly."""
    n_sent = max(len(lens) - unsent, 1)
    c = Conn(start, lens, mss=mss, n_sent=n_sent)
    m = Model(lens, n_sent)
    for blocks, retrans, rto in acks:
        edges = [(start + a) & M32 for b in blocks for a in b]
        assert c.dsack(*edges) == m.dsack(blocks)
        assert c.sack(*edges) == m.update(blocks)
        assert c.sacked() == m.sacked
        sacked_bytes = sum(n for n, s in zip(lens, m.sacked, strict=True) if s)
        assert c.sacked_bytes() == sacked_bytes <= m.snd_max
        for i in retrans:
            if i < n_sent:
                c.retransmit(i)
                m.retrans[i] = True
        if rto:
            assert scoreboard_clear(c.pool, c.t, c.cid) == m.rto()
            assert c.sacked() == m.sacked
        assert [c.flags(i, FRAME_F_TCP_LOST) for i in range(len(lens))] == m.lost
        assert 0 <= c.pipe(dupthresh) == m.pipe(dupthresh, mss) <= 2 * m.snd_max
        nxt = c.next_seg(dupthresh)
        assert nxt == m.next_seg(dupthresh, mss)
        if nxt is not None:
            assert not m.sacked[nxt] and not m.retrans[nxt]
        for i in range(n_sent):
            assert c.is_lost(i, dupthresh) == m.is_lost(i, dupthresh, mss)
        high = max((m.starts[i] + lens[i] for i in range(n_sent) if m.sacked[i]), default=0)
        assert c.highest_sacked() == (start + high) & M32
        assert not any(m.sacked[n_sent:]) and not any(c.sacked()[n_sent:])  # unsent: unscored
    assert pool_audit(c.pool) == 0
