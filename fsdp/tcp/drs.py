"""Receive-buffer autotuning ("dynamic right-sizing"), as Linux 6.18's tcp_rcv_space_adjust.

Read first: Linux net/ipv4/tcp_input.c (tcp_rcv_rtt_update, tcp_rcv_rtt_measure,
tcp_rcv_rtt_measure_ts, tcp_init_buffer_space, tcp_rcvbuf_grow, tcp_rcv_space_adjust and the end
of tcp_data_queue_ofo), and the sysctls tcp_moderate_rcvbuf and tcp_rmem.

The window a receiver offers is a share of its receive buffer (``tcp_output.tcp_free_space``).
A fixed buffer caps the rate at buffer / RTT: the default 128 KiB buffer offers ~86 KB, 1.7 MB/s
over a 50 ms path.  Linux therefore measures how much the application reads per round trip and,
when that grows, grows the buffer so the sender may double its rate in the next round trip.
fsdp does the same, with the same arithmetic, so it offers the windows Linux does:

* **The receiver's RTT** (``cold.rcv_rtt_us8``, µs << 3, as Linux's rcv_rtt_est.rtt_us).
  Samples come from the timestamps of segments at least one MSS long (our TSval echoed: now -
  TSecr, in ms; a zero is no sample), once per new TSecr, and from the time RCV.NXT takes to
  advance by one window (an upper bound, taken only when it lowers the estimate).  The estimate
  follows the minimum; a larger timestamp sample is smoothed in (7/8 old) only while the receive
  queue is empty, so a slow application does not inflate it.
* **What the application reads per RTT** (``cold.rcvq_space``).  After a read, once an RTT has
  passed since the last measurement, the bytes read since then less the bytes still queued
  are compared with the last RTT's; when more, the buffer grows.  It starts at
  min(rcv_ssthresh, RCV.WND, 10 * MSS) when the connection is established.
* **The growth** (tcp_rcvbuf_grow): a window of twice the new amount ("DRS is always one RTT
  late") plus twice the old window's growth scaled by the amount's growth ("slow start: allow the
  sender to double its rate"), plus the span of out-of-order data held; the buffer that offers
  that window at the measured payload ratio, at most tcp_rmem[2].  The buffer only grows, and the
  window clamp follows it; the window itself then opens as segments arrive
  (``segment._grow_window``).  Out-of-order data also grows the buffer by its span (a reordering
  or a loss must not stall the sender), for a connection the application has accepted.
* **Not when** the application set SO_RCVBUF (``TF_RCVBUF_LOCK``) or the stack option
  ``tcp_moderate_rcvbuf`` is 0.

Where fsdp differs: Linux measures after each socket buffer a read copies, and coalesces arriving
segments into buffers of up to 64 KB; fsdp keeps one frame per segment, so it measures once per
read, after the copy (the bytes read by the whole call, less what it left queued).  And the most
a connection's buffer grows to (``CFG_TCP_RCVBUF_AUTO_MAX``, ``config.rcvbuf_autotune_max``) has
two bounds of fsdp's own besides tcp_rmem[2]: a quarter of the core's packet pool (the memory
Linux's tcp_mem limits guard), and half the NIC queue's receive ring in full frames (the burst a
userspace stack's ring absorbs; on a default 256-slot sim wire that is a 185 KB window).
"""

import numpy as np

from fsdp.core.config import CFG_TCP_MODERATE_RCVBUF, CFG_TCP_RCVBUF_AUTO_MAX
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.reass import reass_last_end
from fsdp.tcp.tcb import TF_RCVBUF_LOCK
from fsdp.tcp.tcp_output import tcp_advmss, tcp_ts_now
from fsdp.tcp.urgent import tcp_copied_seq
from fsdp.wire.tcp import seq_diff, seq_lt

M32 = 0xFFFFFFFF
TCP_INIT_CWND = 10  # Linux's constant, not the stack option: the first RTT's read estimate
TCP_TS_MS_MAX = 0x7FFFFFFF // 1000  # Linux tcp_rtt_tsopt_us: a larger delta is no sample


@kernel_inline
def _rcv_rtt_update(core, cid, sample_us, win_dep):
    """Linux tcp_rcv_rtt_update: the estimate follows the minimum; a larger sample from the
    timestamps (``win_dep`` False) is smoothed in only while nothing waits to be read."""
    c = core.tcb.cold
    old = np.int64(c.rcv_rtt_us8[cid])
    m = np.int64(sample_us) << 3
    if old == 0 or m < old:
        new = m
    else:
        if win_dep:
            return
        if np.int64(core.tcb.hot.rcv_nxt[cid]) != tcp_copied_seq(core, cid):
            return
        new = old - (old >> 3) + np.int64(sample_us)
    c.rcv_rtt_us8[cid] = new if new < M32 else M32


@kernel
def drs_rtt_measure(core, cid, now):
    """Linux tcp_rcv_rtt_measure, for each in-order data segment (after RCV.NXT moved): the
    time RCV.NXT takes to pass the end of the window offered when the timing began."""
    c = core.tcb.cold
    h = core.tcb.hot
    t0 = np.int64(c.rcv_rtt_time_us[cid])
    if t0 != 0:
        if seq_lt(h.rcv_nxt[cid], c.rcv_rtt_seq[cid]):
            return
        d = now - t0
        _rcv_rtt_update(core, cid, d if d > 0 else np.int64(1), True)
    c.rcv_rtt_seq[cid] = (np.int64(h.rcv_nxt[cid]) + np.int64(h.rcv_wnd[cid])) & M32
    c.rcv_rtt_time_us[cid] = now


@kernel
def drs_rtt_measure_ts(core, cid, now, tsecr, seg_len):
    """Linux tcp_rcv_rtt_measure_ts, for each segment of an ESTABLISHED connection that carries
    a timestamp (after its ACK was processed): one sample per new TSecr, from a segment at least
    the peer's MSS long (``seg_len`` counts a FIN, as end_seq - seq)."""
    c = core.tcb.cold
    if np.int64(c.rcv_rtt_last_tsecr[cid]) == tsecr:
        return
    c.rcv_rtt_last_tsecr[cid] = tsecr
    if seg_len >= np.int64(core.tcb.hot.rcv_mss[cid]):
        delta = (tcp_ts_now(core, cid, now) - tsecr) & M32
        if delta > 0 and delta < TCP_TS_MS_MAX:
            _rcv_rtt_update(core, cid, delta * 1000, False)


@kernel
def drs_init(core, cid, now):
    """Linux tcp_init_buffer_space's part, when the connection is established: the first RTT's
    estimate of what the application reads is min(rcv_ssthresh, RCV.WND, 10 MSS)."""
    h = core.tcb.hot
    c = core.tcb.cold
    c.rcvq_time_us[cid] = now
    c.rcvq_seq[cid] = tcp_copied_seq(core, cid)
    adv = tcp_advmss(core, cid)
    space = np.int64(h.rcv_ssthresh[cid])
    if np.int64(h.rcv_wnd[cid]) < space:
        space = np.int64(h.rcv_wnd[cid])
    if TCP_INIT_CWND * adv < space:
        space = TCP_INIT_CWND * adv
    c.rcvq_space[cid] = space


@kernel
def drs_grow(core, cid, newval):
    """Linux tcp_rcvbuf_grow: record ``newval`` as the last RTT's reading and grow the buffer
    (never shrink it) to offer twice it, plus the slow-start allowance and the out-of-order
    span; the window clamp follows."""
    h = core.tcb.hot
    c = core.tcb.cold
    old = np.int64(c.rcvq_space[cid])
    c.rcvq_space[cid] = newval
    if core.cfg[CFG_TCP_MODERATE_RCVBUF] == 0 or (h.tflags[cid] & TF_RCVBUF_LOCK) != 0:
        return
    rcvwin = np.int64(newval) << 1
    if old > 0 and newval > old:
        rcvwin += ((rcvwin * (newval - old)) // old) << 1
    if h.ooo_head[cid] >= 0:
        rcvwin += seq_diff(reass_last_end(core.pool, core.tcb, cid), h.rcv_nxt[cid])
    ratio = np.int64(h.rcv_ratio[cid])
    cap = np.int64(core.cfg[CFG_TCP_RCVBUF_AUTO_MAX])
    rcvbuf = (rcvwin << 8) // ratio  # Linux tcp_space_from_win
    if rcvbuf > cap:
        rcvbuf = cap
    if rcvbuf > np.int64(h.rcv_buf[cid]):
        h.rcv_buf[cid] = rcvbuf
        c.window_clamp[cid] = (rcvbuf * ratio) >> 8  # Linux tcp_win_from_space


@kernel
def drs_adjust(core, cid, now):
    """Linux tcp_rcv_space_adjust, after a read that took data: once an RTT has passed since
    the last measurement, the bytes read since then less those still queued; more than the
    last RTT's grows the buffer."""
    c = core.tcb.cold
    rtt8 = np.int64(c.rcv_rtt_us8[cid])
    if rtt8 == 0:
        return
    if now - np.int64(c.rcvq_time_us[cid]) < (rtt8 >> 3):
        return
    seq = tcp_copied_seq(core, cid)
    copied = seq_diff(seq, c.rcvq_seq[cid]) - seq_diff(core.tcb.hot.rcv_nxt[cid], seq)
    if copied > np.int64(c.rcvq_space[cid]):
        drs_grow(core, cid, copied)
    c.rcvq_seq[cid] = seq
    c.rcvq_time_us[cid] = now


@kernel
def drs_ofo_queued(core, cid):
    """The end of Linux tcp_data_queue_ofo: out-of-order data held grows the buffer by its span,
    for a connection the application holds (not one waiting in the accept queue or closed)."""
    if core.tcb.cold.owner[cid] >= 0:
        drs_grow(core, cid, np.int64(core.tcb.cold.rcvq_space[cid]))
