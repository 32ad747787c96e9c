"""TCP urgent data (RFC 9293 §3.8.5, MUST-30..33, MUST-62; RFC 6093), the way Linux does it
(net/ipv4/tcp_input.c tcp_check_urg / tcp_urg, tcp.c tcp_recvmsg_locked / tcp_recv_urg /
tcp_mark_urg, tcp_output.c __tcp_transmit_skb / tcp_write_wakeup).

RFC 6093 settles the old ambiguity: the urgent pointer names the byte *after* the urgent data,
and only the last urgent byte is special in practice.  Like every BSD-derived stack, Linux treats
exactly that one byte as "out of band":

Receiving
* A segment with URG names the urgent byte SEG.SEQ + SEG.UP - 1 (SEG.UP 0: SEG.SEQ itself,
  Linux tcp_stdurg 0).  A pointer to data already received (before RCV.NXT) or already read is
  ignored, so is one no newer than the pointer we hold; otherwise it replaces it (only the
  newest byte is out of band; an older one not yet read becomes ordinary data, unless the
  reader stands right at its mark: then it is skipped as if just read).
* The byte's value is taken from whichever segment holds it (``URG_NOTYET`` until then).
* A read stops at the mark when it has copied something; at the mark, without SO_OOBINLINE,
  the byte is skipped (``recv(MSG_OOB)`` returns it, once); with SO_OOBINLINE it is read in
  line.  Reading past the mark ends the urgency.
* ``recv(MSG_OOB)`` never waits: EINVAL without urgent data (or with SO_OOBINLINE, or once
  read), EAGAIN while the byte has not arrived, end of file if it never can, ENOTCONN after
  a reset (``tcp_recv_urg_k``).
* Readable (``tcp_status_k``) needs a byte besides the skipped urgent byte at the mark; the
  byte's arrival is ``EV_URGENT`` (Linux EPOLLPRI), which transparent mode's ``select.select``
  reports in its exceptional list.

Sending
* ``send(MSG_OOB)`` sets SND.UP to the end of what it queued (urgent mode, ``TF_URG_MODE``,
  until SND.UNA reaches SND.UP).  Every segment that starts before SND.UP, a pure ACK or a
  retransmission too, carries URG and SND.UP - SEG.SEQ (0xFFFF when that does not fit 16 bits
  and the data reaches that far); Nagle does not hold segments back in urgent mode; a window
  probe in urgent mode first sends an ACK at SND.UNA that carries the pointer.

The state: ``cold.snd_up`` (SND.UP), ``cold.rcv_up`` (the urgent byte's sequence number),
``cold.urg_data`` (``URG_*`` | the byte), and the hot flags ``TF_URG_MODE``, ``TF_URG_DATA``
(urg_data is not 0: the read path's one test) and ``TF_OOBINLINE``.  Nothing here runs for a
connection that never saw URG.
"""

import numpy as np

from fsdp.core.stats import STAT_TCP_URG_IN
from fsdp.driver.jitmem import copy_bytes
from fsdp.pool.pool import frame_free
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.reass import rcvq_release
from fsdp.tcp.tcb import (
    TCPS_CLOSED,
    TF_FIN_RECEIVED,
    TF_OOBINLINE,
    TF_RCV_SHUTDOWN,
    TF_URG_DATA,
    TF_URG_MODE,
    URG_NOTYET,
    URG_READ,
    URG_VALID,
    tcb_touch,
)
from fsdp.wire.tcp import TH_URG, seq_diff, seq_gt, seq_lt

M32 = 0xFFFFFFFF
URG_RECV_EOF = 256  # tcp_recv_urg_k: end of file (recv returns b""), not a byte


@kernel_inline
def tcp_copied_seq(core, cid):
    """The sequence number of the next byte the application reads (Linux copied_seq): what the
    receive queue holds ends at RCV.NXT, less the peer's FIN."""
    h = core.tcb.hot
    fin = 1 if (h.tflags[cid] & TF_FIN_RECEIVED) != 0 else 0
    return (np.int64(h.rcv_nxt[cid]) - np.int64(h.rcv_q_bytes[cid]) - fin) & M32


@kernel_inline
def _clear_urg(core, cid):
    core.tcb.cold.urg_data[cid] = 0
    core.tcb.hot.tflags[cid] &= ~np.uint32(TF_URG_DATA)


@kernel
def _consume(core, cid, k):
    """Take ``k`` bytes (at most the head frame's) off the front of the receive queue."""
    h = core.tcb.hot
    pool = core.pool
    fid = h.rcv_q_head[cid]
    ln = np.int64(pool.length[fid])
    if k >= ln:
        rcvq_release(pool, h, cid, fid)
        nxt = pool.next[fid]
        pool.next[fid] = -1
        frame_free(pool, fid)
        h.rcv_q_head[cid] = nxt
        if nxt < 0:
            h.rcv_q_tail[cid] = -1
        k = ln
    else:
        pool.off[fid] += k
        pool.length[fid] -= k
        pool.tag[fid] = (pool.tag[fid] + k) & M32
    h.rcv_q_bytes[cid] -= k
    tcb_touch(core.tcb, cid)  # maybe no longer readable (fsdp.core.loop.poll_status)


@kernel
def _check_urg(core, cid, seq, urp):
    """A segment at ``seq`` with URG and urgent pointer ``urp`` (Linux tcp_check_urg)."""
    h = core.tcb.hot
    c = core.tcb.cold
    ptr = np.int64(urp)
    if ptr != 0:
        ptr -= 1  # the pointer names the byte after the urgent one (RFC 6093)
    ptr = (ptr + seq) & M32
    copied = tcp_copied_seq(core, cid)
    if seq_gt(copied, ptr):
        return  # urgent data already read
    if seq_lt(ptr, h.rcv_nxt[cid]):
        return  # into data already received: not replayed
    ud = np.int64(c.urg_data[cid])
    if ud != 0 and not seq_gt(ptr, c.rcv_up[cid]):
        return  # the pointer we hold is as new
    if (
        ud != 0
        and np.int64(c.rcv_up[cid]) == copied
        and (h.tflags[cid] & TF_OOBINLINE) == 0
        and copied != np.int64(h.rcv_nxt[cid])
        and h.rcv_q_head[cid] >= 0
    ):
        # the reader stands at the old urgent byte: it goes as if just read
        _consume(core, cid, 1)
    c.urg_data[cid] = URG_NOTYET
    c.rcv_up[cid] = ptr
    h.tflags[cid] |= np.uint32(TF_URG_DATA)


@kernel
def tcp_urg(core, cid, fid, seq, n, flags, urp):
    """An accepted segment (``seq``, ``n`` payload bytes in frame ``fid``, ``flags``, ``urp``)
    that has URG, or arrives while urgent data is pending (Linux tcp_urg): record a new
    pointer, and take the urgent byte's value if this segment holds it."""
    c = core.tcb.cold
    if (flags & TH_URG) != 0:
        core.stats[STAT_TCP_URG_IN] += 1
        _check_urg(core, cid, seq, urp)
    if c.urg_data[cid] == URG_NOTYET:
        k = seq_diff(c.rcv_up[cid], seq)
        if k >= 0 and k < n:
            pool = core.pool
            c.urg_data[cid] = URG_VALID | np.uint16(pool.data[fid, pool.off[fid] + k])
            tcb_touch(core.tcb, cid)  # EV_URGENT (fsdp.core.loop.poll_status)


@kernel
def tcp_recv_marked(core, cid, out, off, n, peek):
    """``tcp_recv_k``'s copy while urgent data is pending (Linux tcp_recvmsg_locked): up to
    ``n`` bytes into ``out[off:]``, stopping at the mark once something was copied; the urgent
    byte at the mark is skipped unless SO_OOBINLINE; reading past the mark ends the urgency.
    Returns the bytes copied (the queue is left as it was with ``peek``)."""
    h = core.tcb.hot
    c = core.tcb.cold
    pool = core.pool
    w = np.int64(pool.data.shape[1])
    inline = (h.tflags[cid] & TF_OOBINLINE) != 0
    seq = tcp_copied_seq(core, cid)
    up = np.int64(c.rcv_up[cid])
    copied = np.int64(0)
    fid = h.rcv_q_head[cid]
    skip = np.int64(0)  # bytes of ``fid`` already passed (a peek)
    while fid >= 0 and copied < n:
        avail = np.int64(pool.length[fid]) - skip
        if avail <= 0:
            fid = pool.next[fid]
            skip = 0
            continue
        used = n - copied
        if used > avail:
            used = avail
        if c.urg_data[cid] != 0:
            k = seq_diff(up, seq)
            if k == 0:
                if copied > 0:
                    break  # stop at the mark
                if not inline:
                    seq = (seq + 1) & M32  # the urgent byte is not part of the stream
                    if peek:
                        skip += 1
                    else:
                        _consume(core, cid, 1)
                        _clear_urg(core, cid)  # read past the mark
                        fid = h.rcv_q_head[cid]
                    continue
            elif k > 0 and k < used:
                used = k  # up to the mark
        copy_bytes(out, off + copied, pool.data, fid * w + pool.off[fid] + skip, used)
        copied += used
        if c.urg_data[cid] != 0 and not peek and seq_gt((seq + used) & M32, up):
            _clear_urg(core, cid)  # read past the mark (in line)
        seq = (seq + used) & M32
        if peek:
            skip += used
        else:
            _consume(core, cid, used)
            fid = h.rcv_q_head[cid]
    return copied


@kernel
def tcp_recv_urg_k(core, cid, peek):
    """recv(MSG_OOB) on a connection (Linux tcp_recv_urg): the urgent byte (0..255; kept with
    ``peek``), ``URG_RECV_EOF`` at end of file, or -errno; it never waits."""
    h = core.tcb.hot
    c = core.tcb.cold
    f = h.tflags[cid]
    ud = np.int64(c.urg_data[cid])
    if (f & TF_OOBINLINE) != 0 or ud == 0 or ud == URG_READ:
        return np.int64(-22)  # EINVAL: "Yes this is right !" (no urgent data to read)
    st = h.state[cid]
    if st == TCPS_CLOSED and (f & TF_FIN_RECEIVED) == 0:
        return np.int64(-107)  # ENOTCONN: reset, even with the byte here
    if (ud & URG_VALID) != 0:
        if not peek:
            c.urg_data[cid] = URG_READ
            tcb_touch(core.tcb, cid)  # EV_URGENT no more
        return ud & 0xFF
    if st == TCPS_CLOSED or (f & (TF_FIN_RECEIVED | TF_RCV_SHUTDOWN)) != 0:
        return np.int64(URG_RECV_EOF)
    return np.int64(-11)  # EAGAIN: the byte has not arrived (never a wait, as BSD)


@kernel_inline
def tcp_urg_unreadable(core, cid):
    """1 if the only thing a read would find first is the urgent byte it skips (Linux tcp_poll
    counts it out of the readable bytes), else 0."""
    h = core.tcb.hot
    if (h.tflags[cid] & (TF_URG_DATA | TF_OOBINLINE)) != TF_URG_DATA:
        return 0
    return 1 if np.int64(core.tcb.cold.rcv_up[cid]) == tcp_copied_seq(core, cid) else 0


# --- sending ------------------------------------------------------------------------------------
@kernel_inline
def tcp_mark_urgent(core, cid):
    """send(MSG_OOB) queued its data: SND.UP is the end of it (Linux tcp_mark_urg)."""
    h = core.tcb.hot
    core.tcb.cold.snd_up[cid] = (np.int64(h.snd_una[cid]) + np.int64(h.snd_q_bytes[cid])) & M32
    h.tflags[cid] |= np.uint32(TF_URG_MODE)


@kernel_inline
def tcp_urg_acked(core, cid, ack):
    """SND.UNA moved to ``ack``: urgent mode ends once it reaches SND.UP (Linux
    tcp_clean_rtx_queue pulls snd_up along)."""
    h = core.tcb.hot
    if (h.tflags[cid] & TF_URG_MODE) != 0 and not seq_lt(ack, core.tcb.cold.snd_up[cid]):
        h.tflags[cid] &= ~np.uint32(TF_URG_MODE)


@kernel_inline
def tcp_urg_pointer(core, cid, seq):
    """The urgent pointer of a segment at ``seq``, or -1 for none (Linux __tcp_transmit_skb):
    SND.UP - SEG.SEQ while the segment starts before SND.UP, 0xFFFF when that is too far for 16
    bits but the data reaches that far."""
    h = core.tcb.hot
    if (h.tflags[cid] & TF_URG_MODE) == 0:
        return np.int64(-1)
    up = core.tcb.cold.snd_up[cid]
    if not seq_lt(seq, up):
        return np.int64(-1)
    d = seq_diff(up, seq)
    if d < 0x10000:
        return d
    if seq_gt((seq + 0xFFFF) & M32, h.snd_nxt[cid]):
        return np.int64(0xFFFF)
    return np.int64(-1)


@kernel_inline
def tcp_urg_probe_due(core, cid):
    """A window probe in urgent mode sends an ACK at SND.UNA first, which carries the pointer
    (Linux tcp_write_wakeup: SND.UP in SND.UNA+1 .. SND.UNA+0xFFFF)."""
    h = core.tcb.hot
    if (h.tflags[cid] & TF_URG_MODE) == 0:
        return False
    d = seq_diff(core.tcb.cold.snd_up[cid], h.snd_una[cid])
    return d >= 1 and d <= 0xFFFF
