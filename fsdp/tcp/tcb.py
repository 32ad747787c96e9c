"""The TCB table: every connection's Transmission Control Block, hot and cold records.

Read first: RFC 9293 §3.3.1 (the send and receive sequence variables, named here exactly:
``snd_una, snd_nxt, snd_wnd, snd_wl1, snd_wl2, iss, rcv_nxt, rcv_wnd, irs``) and §3.3.2 (the
states and the transitions of Figure 5); RFC 6298 (``srtt, rttvar, rto``), RFC 5681 and RFC 6582
(``cwnd, ssthresh, dupacks, recover``), RFC 7323 (window scale, ``ts_recent``, ``ts_recent_age``).

Layout.  A connection is an int32 id indexing two packed record arrays (``np.recarray``), split
by temperature: ``hot`` (``TCB_HOT_DTYPE``) holds what ``tcp_input`` / ``tcp_output`` touch for
every segment (sequence space, windows, RTT and congestion state, queue heads, flags), ``cold``
(``TCB_COLD_DTYPE``) what only set-up, teardown, options and statistics touch (addresses,
ISS/IRS, owner, keep-alive settings, counters).  A field reads as a column, in Python and in
Numba alike: ``t.hot.snd_una[cid]`` is the record field through a strided view.  One segment
touches many fields of one connection, which then share cache lines.  Records rather than one
array per field also keep the table two arrays wide: Numba increfs, and compiles code for, every
array of a NamedTuple argument at every call boundary (90 columns made each engine kernel take
seconds to compile and ``CoreState`` 166 arrays wide; now it is 78).  The addresses are cold because
segments are found through the flow table and built from a per-connection header template (DESIGN
§4), not from these columns.

Sequence numbers are uint32 columns (RFC 9293 §3.4 arithmetic is modulo 2^32: compare them with
``fsdp.wire.tcp.seq_lt`` and friends, never with ``<``).  Times are int64 µs.  ``srtt < 0`` means
"no RTT sample yet" (a sample of 0 µs is possible on a virtual clock).  Send and receive queues
are chains of pool frames linked through ``pool.next`` (head, tail, byte count), so an idle
connection holds no buffer memory.

Allocation: a free list through ``free_next`` (LIFO, so a just-freed, cache-warm id is reused
first); ``tcb_alloc`` resets every column of the id to the defaults ``tcb_table_create`` writes,
and bumps ``gen`` so that a stale (id, gen) pair held by the socket layer is detectable.

States: every change goes through ``tcb_set_state`` (as smoltcp's ``set_state``), which checks it
against RFC 9293 Figure 5 plus the event paths of §3.10 (table ``_ALLOWED`` below) and keeps a
per-state count (``ss -s``).  An illegal transition is refused, counted, and returned as an error.

Columns the engine borrows from Linux's ``tcp_sock`` keep Linux's names (``rcv_wup``,
``rcv_ssthresh``, ``window_clamp``, ``mdev``, ``ack_ato`` ...), so its code can be read side by
side with ``net/ipv4/tcp_*.c``.

Memory: 461 bytes per connection (hot 318 + cold 131 + free-list link 4 + the touched log's
stamp 8; the records are packed), excluding queued frames and the timer wheel's 16 bytes per
timer; ``tcb_bytes_per_conn()`` computes it from the dtypes and a test holds it within 464 bytes.
100,000 connections take 46 MB.

Refcounts.  Numba increfs every array of a table argument when a kernel is entered and decrefs it
after the argument's last use; unless its pruning pass can pair the two, each call pays two
atomics per array.  The kernels below are inlined and end with an unconditional use of the table,
which lets the pair be pruned (``tcb_set_state`` then costs < 1 ns).  ``tests/tcp/test_tcb.py``
checks the generated code.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from fsdp.tcp.undo import UNDO_NONE

# --- states (RFC 9293 §3.3.2); the values are fsdp's own, the names Linux ss prints -------------
TCPS_CLOSED = 0
TCPS_LISTEN = 1
TCPS_SYN_SENT = 2
TCPS_SYN_RECEIVED = 3
TCPS_ESTABLISHED = 4
TCPS_FIN_WAIT_1 = 5
TCPS_FIN_WAIT_2 = 6
TCPS_CLOSE_WAIT = 7
TCPS_CLOSING = 8
TCPS_LAST_ACK = 9
TCPS_TIME_WAIT = 10
TCPS_COUNT = 11
TCPS_NAMES = (
    "UNCONN",  # iproute2 ss's name for CLOSE
    "LISTEN",
    "SYN-SENT",
    "SYN-RECV",
    "ESTAB",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "CLOSE-WAIT",
    "CLOSING",
    "LAST-ACK",
    "TIME-WAIT",
)
# RFC 9293 §3.3.2: "synchronized" states, where a reset is in-window checked and ACKs are sent.
TCPS_M_SYNCHRONIZED = sum(1 << s for s in range(TCPS_ESTABLISHED, TCPS_COUNT))

# --- flags (hot.tflags bits) -------------------------------------------------------------------
TF_NODELAY = 1 << 0  # TCP_NODELAY: Nagle off (RFC 9293 §3.7.4)
TF_KEEPALIVE = 1 << 1  # SO_KEEPALIVE (RFC 1122 §4.2.3.6)
TF_FIN_SENT = 1 << 2  # our FIN has a sequence number (snd_max covers it)
TF_FIN_RECEIVED = 1 << 3  # the peer's FIN is in sequence (rcv_nxt is past it)
TF_TS_OK = 1 << 4  # timestamps negotiated (RFC 7323 §3.2)
TF_SACK_OK = 1 << 5  # SACK permitted both ways (RFC 2018 §2)
TF_WSCALE_OK = 1 << 6  # window scaling negotiated (RFC 7323 §2.2)
TF_ACK_NOW = 1 << 7  # send an ACK at the next output
TF_DELACK = 1 << 8  # an ACK is being delayed (RFC 9293 §3.8.6.3)
TF_IN_RECOVERY = 1 << 9  # fast recovery (RFC 6582 §3.2)
TF_SND_SHUTDOWN = 1 << 10  # the application shut down sending: FIN after the queue
TF_RCV_SHUTDOWN = 1 << 11  # the application shut down receiving
TF_PASSIVE = 1 << 12  # created by a listener (SYN-RECEIVED returns to LISTEN on RST)
TF_SYNCOOKIE = 1 << 13  # established from a SYN cookie (no SYN options but the MSS)
TF_ORPHAN = 1 << 14  # closed by the application; the stack finishes the close alone
TF_RTT_TIMING = 1 << 15  # rtt_seq / rtt_start_us time a segment (RFC 6298 §3, Karn)
TF_CORK = 1 << 16  # TCP_CORK: hold partial segments until full or uncorked
TF_IN_LOSS = 1 << 17  # RTO recovery: retransmitting after a timeout (RFC 5681 §3.1, Linux CA_Loss)
TF_PINGPONG = 1 << 18  # interactive: delayed ACKs ride on replies (Linux icsk_ack.pingpong)
TF_TMPL_MAC = 1 << 19  # the header template's next-hop MAC is resolved (DESIGN §4)
TF_SNDBUF_LOCK = 1 << 20  # SO_SNDBUF set by the application: no automatic growth (Linux)
TF_RCVBUF_LOCK = 1 << 21  # SO_RCVBUF set by the application
TF_SEND_SYN = 1 << 22  # output owes a SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED)
TF_SACKED_OUT = 1 << 23  # the peer SACKed data still outstanding above SND.UNA (Linux
# sacked_out > 0): sending follows pipe (RFC 6675 §5 step 3), no loss probe (RFC 8985 §7.2)
TF_LIMITED_XMIT = 1 << 24  # output may send one new segment beyond cwnd (RFC 3042)
TF_TLP_ARMED = 1 << 25  # TIMER_RTO holds a tail-loss-probe timeout (RFC 8985 §7.2), not an RTO
TF_TLP_OUT = 1 << 26  # a loss probe is outstanding up to hot.tlp_high_seq (RFC 8985 §7.4)
TF_TLP_RETRANS = 1 << 27  # ... and it was a retransmission (not new data)
TF_PMTU_LOCKED = 1 << 28  # the path MTU fell below 552: segments go without DF (tcp_icmp)
TF_OOBINLINE = 1 << 29  # SO_OOBINLINE: the urgent byte stays in the stream (fsdp.tcp.urgent)
TF_URG_MODE = 1 << 30  # urgent data sent and not yet acknowledged: cold.snd_up is SND.UP
TF_URG_DATA = 1 << 31  # cold.urg_data is not 0: reads mind the urgent mark (fsdp.tcp.urgent)

# cold.urg_data: the received urgent byte's state (Linux TCP_URG_*), with the byte itself in the
# low 8 bits once it is here; cold.rcv_up is its sequence number
URG_VALID = 0x100  # the byte has arrived and can be read out of band
URG_NOTYET = 0x200  # the pointer is known, the byte not yet received
URG_READ = 0x400  # the byte was read out of band

# congestion control algorithms (hot.cc_algo)
CC_NEWRENO = 0  # RFC 5681 + RFC 6582
CC_CUBIC = 1  # RFC 9438

# defaults
TCP_DEFAULT_MSS = 536  # RFC 9293 §3.7.1: send MSS when the peer sent no MSS option (IPv4)
TCP_INITIAL_RTO_US = 1_000_000  # RFC 6298 (2.1)
TCP_INFINITE_SSTHRESH = 0x7FFFFFFF  # RFC 5681 §3.1: "arbitrarily high"
TCP_KEEPALIVE_IDLE_US = 7_200_000_000  # RFC 1122 §4.2.3.6: >= 2 hours
TCP_KEEPALIVE_INTVL_US = 75_000_000  # Linux tcp_keepalive_intvl
TCP_KEEPALIVE_PROBES = 9  # Linux tcp_keepalive_probes
TCP_DEFAULT_RCV_RATIO = 128  # rcv_ratio until measured: 50% (Linux TCP_DEFAULT_SCALING_RATIO)

# errors
ERR_TCB_BAD_ID = -1  # not an allocated id
ERR_TCB_BAD_STATE = -2  # not a TCPS_* value
ERR_TCB_BAD_TRANSITION = -3  # not allowed by RFC 9293 (refused, counted)

# meta indices
TCB_META_FREE_HEAD = 0  # first free id, -1 = table full
TCB_META_IN_USE = 1
TCB_META_ALLOC_FAIL = 2  # tcb_alloc found no free id
TCB_META_BAD_FREE = 3  # double frees / bad ids (ignored, counted)
TCB_META_BAD_TRANSITION = 4  # refused state changes
TCB_META_FREED_WITH_FRAMES = 5  # freed while a queue still held frames (a leak upstream)
TCB_META_TOUCHED = 6  # ids appended to touch_log so far (monotonic; tcb_touch)
TCB_META_TOUCH_EPOCH = 7  # bumped by each selector read of the log (fsdp.core.loop.poll_status)
TCB_META_SIZE = 8

# The touched log (epoll's ready list, Fastsocket's "fast epoll"): the ids whose readiness may
# have changed, so a selector recomputes those rows only.  A ring: a reader that fell
# TOUCH_LOG_SIZE entries (or more) behind scans every row instead.
TOUCH_LOG_SIZE = 4096  # a power of two

TCB_ALLOCATED = -2  # free_next of an id in use (free ids hold the next free id or -1)


def _allowed_table() -> np.ndarray:
    """Bit ``new`` of ``_ALLOWED[old]`` is set if ``old -> new`` is a legal transition."""
    edges = {
        # RFC 9293 Figure 5, plus: a listener's child TCB starts CLOSED and enters SYN-RECEIVED
        # (as Linux's request/child sockets do); RFC 1122 §4.2.2.13 reopening from TIME-WAIT.
        # CLOSED -> TIME-WAIT: a fresh TCB takes over the 4-tuple of a connection whose socket
        # still holds its own TCB (Linux's inet_timewait_sock replacing the socket).
        TCPS_CLOSED: (TCPS_LISTEN, TCPS_SYN_SENT, TCPS_SYN_RECEIVED, TCPS_TIME_WAIT),
        # §3.10.2 SEND in LISTEN turns the connection active; SYN received.
        TCPS_LISTEN: (TCPS_SYN_SENT, TCPS_SYN_RECEIVED),
        # Simultaneous open (Figure 8); SYN-ACK received.
        TCPS_SYN_SENT: (TCPS_SYN_RECEIVED, TCPS_ESTABLISHED),
        # ACK of SYN; CLOSE; RST of a passive open goes back to LISTEN (§3.10.7.4).
        TCPS_SYN_RECEIVED: (TCPS_ESTABLISHED, TCPS_FIN_WAIT_1, TCPS_LISTEN),
        TCPS_ESTABLISHED: (TCPS_FIN_WAIT_1, TCPS_CLOSE_WAIT),
        # ACK of FIN; FIN (simultaneous close); FIN with the ACK of ours in one segment.
        TCPS_FIN_WAIT_1: (TCPS_FIN_WAIT_2, TCPS_CLOSING, TCPS_TIME_WAIT),
        TCPS_FIN_WAIT_2: (TCPS_TIME_WAIT,),
        TCPS_CLOSE_WAIT: (TCPS_LAST_ACK,),
        TCPS_CLOSING: (TCPS_TIME_WAIT,),
        TCPS_LAST_ACK: (),
        TCPS_TIME_WAIT: (TCPS_SYN_RECEIVED,),
    }
    table = np.zeros(TCPS_COUNT, np.int32)
    for old, news in edges.items():
        # Every state may go to CLOSED (RST, ABORT, timeouts) and "change" to itself.
        for new in (*news, TCPS_CLOSED, old):
            table[old] |= 1 << new
    return table


_ALLOWED = _allowed_table()


# Hot fields: touched for every segment by input or output.
TCB_HOT_DTYPE = np.dtype(
    [
        ("state", np.int8),  # TCPS_*
        ("tflags", np.uint32),  # TF_* (not "flags": that is every numpy array's own attribute)
        # send sequence space (RFC 9293 §3.3.1)
        ("snd_una", np.uint32),  # oldest unacknowledged
        ("snd_nxt", np.uint32),  # next to send
        ("snd_max", np.uint32),  # highest sent (snd_nxt goes back on retransmission)
        ("snd_wnd", np.uint32),  # send window, bytes (scaled)
        ("snd_wl1", np.uint32),  # SEG.SEQ of the last window update
        ("snd_wl2", np.uint32),  # SEG.ACK of the last window update
        ("max_sndwnd", np.uint32),  # largest window the peer offered (§3.8.6.2.1 SWS avoidance)
        # receive sequence space
        ("rcv_nxt", np.uint32),  # next expected
        ("rcv_wnd", np.uint32),  # receive window, bytes
        ("rcv_adv", np.uint32),  # right edge last advertised (never shrink it, §3.8.6.2.2)
        ("rcv_wup", np.uint32),  # rcv_nxt when the window was last advertised (Linux rcv_wup)
        ("rcv_ssthresh", np.uint32),  # receive-window growth limit, bytes (Linux rcv_ssthresh)
        ("rcv_mss", np.int32),  # estimate of the peer's MSS (delayed-ACK decisions)
        ("rcv_buf", np.int32),  # SO_RCVBUF, bytes
        ("snd_buf", np.int32),  # SO_SNDBUF, bytes
        ("snd_sml", np.uint32),  # end of the last small segment sent (Minshall's Nagle)
        ("rcv_mem", np.int32),  # receive queue charge: Linux sk_rmem_alloc, the skb truesize of
        # each queued frame (reass.rx_truesize); the window is rcv_ratio of SO_RCVBUF minus it
        ("rcv_mem_pending", np.int32),  # charge of frames read whose socket buffer is not yet
        # wholly read (Linux frees a buffer, and its charge, at its last byte: reass.rcvq_release)
        ("rcv_skb_frags", np.int8),  # fragments of the queue's last socket buffer (Linux nr_frags)
        ("rcv_skb_room", np.int8),  # its tailroom while it has none (reass.rx_tailroom)
        ("rcv_ratio", np.int16),  # payload share of that charge in 1/256 (Linux scaling_ratio)
        # options (RFC 7323, RFC 9293 §3.7.1)
        ("mss", np.int32),  # effective send MSS (payload bytes per segment)
        ("snd_wscale", np.int8),  # shift applied to the peer's window field
        ("rcv_wscale", np.int8),  # shift applied to ours
        ("ts_recent", np.uint32),  # TSval to echo (RFC 7323 §4.3)
        ("ts_recent_age", np.int64),  # µs when ts_recent was recorded (PAWS 24-day rule, §5.5)
        ("ts_offset", np.uint32),  # random per-connection offset of our TSval clock
        # RTT estimation (RFC 6298)
        ("srtt", np.int32),  # µs; < 0: no sample yet
        ("rttvar", np.int32),  # µs
        ("mdev", np.int32),  # µs: Linux's mean deviation, smoothed (tcp_rtt_estimator)
        ("mdev_max", np.int32),  # µs: its maximum over the last RTT
        ("rto", np.int32),  # µs, with backoff applied
        ("rtt_seq", np.uint32),  # segment being timed (TF_RTT_TIMING), Karn's algorithm
        ("rtt_start_us", np.int64),  # when it was sent
        ("rexmit_count", np.int16),  # consecutive RTO expirations (backoff exponent, (5.5))
        ("retrans_stamp", np.int64),  # µs: first retransmission of the oldest segment, 0 = none
        # congestion control (RFC 5681, RFC 6582; RFC 9438)
        ("cwnd", np.uint32),  # bytes
        ("ssthresh", np.uint32),  # bytes
        ("dupacks", np.int16),  # duplicate ACKs in a row
        ("recover", np.uint32),  # snd_max when fast recovery began (RFC 6582)
        ("cc_algo", np.int8),  # CC_*
        ("cc_w_max", np.uint32),  # CUBIC W_max, bytes (RFC 9438 §4.1); unused by NewReno
        ("cc_epoch_us", np.int64),  # CUBIC congestion-avoidance epoch start
        # RFC 7661 cwnd validation, as Linux tcp_cwnd_validate: whether the current window's
        # flight filled cwnd, and the most it had in flight otherwise (cc.cc_cwnd_validate)
        ("cwnd_limited", np.int8),  # Linux is_cwnd_limited
        ("max_flight", np.uint32),  # bytes (Linux max_packets_out, in segments)
        ("cwnd_usage_seq", np.uint32),  # SND.NXT when that window began (Linux cwnd_usage_seq)
        # RFC 6937 proportional rate reduction in fast recovery (cc.cc_prr_ack), bytes
        ("prr_prior_cwnd", np.uint32),  # cwnd when recovery began (RFC 6937 RecoverFS; Linux)
        ("prr_delivered", np.uint32),  # delivered to the peer since recovery began
        ("prr_out", np.uint32),  # sent since recovery began; before it, the bytes limited
        # transmit sent since the duplicate ACKs began (RFC 5681 §3.2 step 2 leaves them out
        # of FlightSize)
        # RACK loss detection (RFC 8985 §6, fsdp.tcp.rack): the most recently sent segment
        # known delivered, and the minimum RTT its reordering window is a quarter of
        ("rack_xmit_us", np.int64),  # RACK.xmit_ts: when it was (last) sent, 0 = none
        ("rack_xmit_order", np.uint32),  # its transmission counter (RACK.end_seq's role)
        ("rack_rtt_us", np.int32),  # RACK.rtt: the RTT that delivery measured
        ("min_rtt_us", np.int32),  # smallest RTT sample in the last 300 s, -1 = none (Linux
        # tcp_min_rtt with tcp_min_rtt_wlen)
        ("min_rtt_stamp_s", np.uint32),  # when it was taken, s
        # RACK's reordering window (RFC 8985 §6.2 steps 3-4, fsdp.tcp.rack)
        ("rack_fack", np.uint32),  # RACK.fack: end of the highest segment SACKed, while
        # TF_SACKED_OUT (Linux tcp_highest_sack_seq; otherwise SND.UNA stands for it)
        ("rack_dsack_round", np.uint32),  # SND.NXT when a D-SACK last widened the window
        ("rack_reo_wnd_mult", np.uint8),  # RACK.reo_wnd_mult (Linux rack.reo_wnd_steps)
        ("rack_reo_wnd_persist", np.uint8),  # recoveries the widened window outlasts
        ("rack_state", np.uint8),  # rack.RACK_REORDERING_SEEN, rack.RACK_DSACK_ROUND
        ("reordering", np.uint16),  # DupThresh raised by reordering seen (Linux tp->reordering;
        # 0 = the stack's tcp_reordering: tcp_output.tcp_reordering)
        # undoing a reduction that proves spurious (RFC 3522, RFC 4015; fsdp.tcp.undo)
        ("undo_marker", np.uint32),  # SND.UNA when the episode began (Linux undo_marker)
        ("undo_retrans", np.int16),  # its retransmissions not D-SACKed; undo.UNDO_NONE: none
        ("prior_ssthresh", np.uint32),  # ssthresh before the reduction, 0 = none (Linux)
        ("frto", np.uint8),  # F-RTO after an RTO (RFC 5682, Linux tp->frto): 0 off, 1 on,
        # 2 = step 2b, the next send is new data (undo.FRTO_NEW_DATA)
        ("ecn_flags", np.uint8),  # ecn.ECN_* (RFC 3168; Linux tp->ecn_flags)
        # queues: chains of pool frames through pool.next
        ("snd_q_head", np.int32),  # oldest frame (from snd_una)
        ("snd_q_tail", np.int32),  # int32
        ("snd_q_unsent", np.int32),  # first frame not yet sent, -1 = all sent
        ("snd_q_bytes", np.int32),  # bytes queued (unacknowledged + unsent)
        ("rcv_q_head", np.int32),  # in-order data for the application
        ("rcv_q_tail", np.int32),  # int32
        ("rcv_q_bytes", np.int32),  # int32
        ("ooo_head", np.int32),  # out-of-order segments, by sequence number
        ("ooo_bytes", np.int32),  # int32 (reassembly memory is bounded by it)
        ("delack_segs", np.int8),  # full-sized segments received since our last ACK
        ("ack_quick", np.int16),  # ACKs still to send at once (Linux quick-ack mode)
        ("ack_ato", np.int32),  # µs: delayed-ACK timeout estimate
        ("ack_lrcv_us", np.int64),  # when data last arrived (the ato estimator)
        ("tlp_high_seq", np.int64),  # SND.NXT when the loss probe went out (TLP.end_seq)
        ("last_oow_ack_us", np.int64),  # 1 + time of the last challenge/OOW ACK, 0 = none
        # activity
        ("last_rcv_us", np.int64),  # last segment received (keep-alive idle time)
        ("last_snd_us", np.int64),  # last data sent (RFC 5681 §4.1 restart after idle)
    ]
)


# Cold fields: set-up, teardown, options and statistics.
TCB_COLD_DTYPE = np.dtype(
    [
        ("lip", np.uint32),  # local IPv4 address
        ("rip", np.uint32),  # remote IPv4 address
        ("lport", np.uint16),  # uint16
        ("rport", np.uint16),  # uint16
        ("iss", np.uint32),  # initial send sequence number (fsdp.tcp.isn)
        ("irs", np.uint32),  # initial receive sequence number
        ("peer_mss", np.uint16),  # MSS option the peer sent (TCP_DEFAULT_MSS without one)
        ("adv_mss", np.uint16),  # MSS option we sent
        ("owner", np.int32),  # socket id, -1 = none (orphaned or not yet accepted)
        ("listener", np.int32),  # the listener that created it, -1 = active open
        ("gen", np.uint32),  # allocation generation of this id
        ("created_us", np.int64),  # int64
        ("snd_up", np.uint32),  # SND.UP: the byte after the urgent data (RFC 9293 §3.8.5, RFC 6093)
        ("rcv_up", np.uint32),  # the sequence number of the received urgent byte (Linux urg_seq)
        ("urg_data", np.uint16),  # URG_* and the urgent byte (Linux urg_data)
        ("ka_idle_ms", np.uint32),  # TCP_KEEPIDLE (ms: 32767 s at most)
        ("ka_intvl_us", np.int32),  # TCP_KEEPINTVL (µs, <= 35 min)
        ("ka_probes", np.int8),  # TCP_KEEPCNT
        ("probes_out", np.int8),  # keep-alive / zero-window probes unanswered
        ("linger_s", np.int16),  # SO_LINGER seconds, -1 = off
        ("user_mss", np.uint16),  # TCP_MAXSEG (88..65535), 0 = not set
        ("syn_retries", np.uint8),  # TCP_SYNCNT, 0 = the stack's ``tcp_syn_retries``
        ("user_timeout_ms", np.uint32),  # TCP_USER_TIMEOUT (RFC 5482), 0 = none
        ("window_clamp", np.uint32),  # largest receive window to offer, bytes (TCP_WINDOW_CLAMP)
        # receive-buffer autotuning (fsdp.tcp.drs, Linux rcv_rtt_est and rcvq_space)
        ("rcv_rtt_us8", np.uint32),  # the receiver's RTT estimate, µs << 3, 0 = none yet
        ("rcv_rtt_seq", np.uint32),  # RCV.NXT that ends the window being timed
        ("rcv_rtt_time_us", np.int64),  # when that window began, 0 = not started
        ("rcv_rtt_last_tsecr", np.uint32),  # the TSecr last sampled
        ("rcvq_space", np.int32),  # bytes the application read in the last RTT measured
        ("rcvq_seq", np.uint32),  # the read position (copied_seq) when this RTT began
        ("rcvq_time_us", np.int64),  # when this RTT began
        ("error", np.int32),  # pending socket error (errno), 0 = none
        ("pmtu", np.uint16),  # path MTU learned from fragmentation needed (RFC 1191), 0 = none
        ("tos", np.uint8),  # IP_TOS of its segments (RFC 9293 MUST-48; a child: its listener's)
        ("ttl", np.uint8),  # IP_TTL of its segments, 0 = the stack's ``ttl`` (MUST-49)
        ("soft_error", np.uint8),  # last ICMP error of a synchronized connection (Linux
        # sk_err_soft: SO_ERROR and a timeout report it; an acceptable ACK clears it)
        ("reuse", np.uint8),  # listen.REUSE_* of its socket (a child: its listener's), for bind
        ("link_prev", np.int32),  # a list through TCBs (the TIME-WAIT FIFO), -1 = none
        ("link_next", np.int32),  # int32
        ("segs_in", np.uint32),  # statistics (tcp_info)
        ("segs_out", np.uint32),  # uint32
        ("total_retrans", np.uint32),  # uint32
        ("reord_seen", np.uint32),  # reorderings detected (Linux tcpi_reord_seen)
        ("dsack_dups", np.uint32),  # segments the peer reported received twice (tcpi_dsack_dups)
        ("bytes_acked", np.int64),  # int64
        ("bytes_received", np.int64),  # int64
    ]
)


class TcbTable(NamedTuple):
    hot: np.ndarray  # np.recarray of TCB_HOT_DTYPE: hot.snd_una[cid] (a field view)
    cold: np.ndarray  # np.recarray of TCB_COLD_DTYPE
    free_next: np.ndarray  # int32[max_conns]: next free id; TCB_ALLOCATED for ids in use
    state_count: np.ndarray  # int64[TCPS_COUNT]: allocated TCBs per state
    meta: np.ndarray  # int64[TCB_META_SIZE]
    touch_log: np.ndarray  # int64[TOUCH_LOG_SIZE]: ids touched, entry n at n % TOUCH_LOG_SIZE
    # (int64: an int32 one cost the callers Numba's refcount pruning)
    touch_stamp: np.ndarray  # int64[max_conns]: the epoch an id was last appended in


_HOT_DEFAULTS = {
    "state": TCPS_CLOSED, "mss": TCP_DEFAULT_MSS, "rcv_mss": TCP_DEFAULT_MSS,
    "rcv_ratio": TCP_DEFAULT_RCV_RATIO, "srtt": -1, "min_rtt_us": -1,
    "rack_reo_wnd_mult": 1, "undo_retrans": UNDO_NONE,
    "rto": TCP_INITIAL_RTO_US,
    "ssthresh": TCP_INFINITE_SSTHRESH, "cc_algo": CC_NEWRENO, "snd_q_head": -1,
    "snd_q_tail": -1, "snd_q_unsent": -1, "rcv_q_head": -1, "rcv_q_tail": -1, "ooo_head": -1,
}  # fmt: skip
_COLD_DEFAULTS = {
    "peer_mss": TCP_DEFAULT_MSS, "owner": -1, "listener": -1,
    "ka_idle_ms": TCP_KEEPALIVE_IDLE_US // 1000, "ka_intvl_us": TCP_KEEPALIVE_INTVL_US,
    "ka_probes": TCP_KEEPALIVE_PROBES, "linger_s": -1,
    "link_prev": -1, "link_next": -1,
}  # fmt: skip


def tcb_table_create(max_conns: int) -> TcbTable:
    """A table of ``max_conns`` TCBs, all free, every column at its default."""
    if not isinstance(max_conns, int) or max_conns < 1 or max_conns > 0x7FFFFFFF:
        raise ValueError(f"max_conns must be 1 .. 2^31-1, not {max_conns!r}")
    hot = np.zeros(max_conns, TCB_HOT_DTYPE).view(np.recarray)
    for f, v in _HOT_DEFAULTS.items():
        hot[f] = v
    cold = np.zeros(max_conns, TCB_COLD_DTYPE).view(np.recarray)
    for f, v in _COLD_DEFAULTS.items():
        cold[f] = v
    free_next = np.arange(1, max_conns + 1, dtype=np.int32)
    free_next[-1] = -1
    meta = np.zeros(TCB_META_SIZE, np.int64)
    meta[TCB_META_FREE_HEAD] = 0
    meta[TCB_META_TOUCH_EPOCH] = 1  # stamps start at 0: every id's first touch is logged
    return TcbTable(hot, cold, free_next, np.zeros(TCPS_COUNT, np.int64), meta,
                    np.zeros(TOUCH_LOG_SIZE, np.int64), np.zeros(max_conns, np.int64))


def tcb_bytes_per_conn() -> int:
    """Bytes of table per connection: every column's itemsize plus the free-list link."""
    return (
        TCB_HOT_DTYPE.itemsize
        + TCB_COLD_DTYPE.itemsize
        + np.dtype(np.int32).itemsize
        + np.dtype(np.int64).itemsize  # touch_stamp
    )


@njit(inline="always", cache=True)
def _reset(t, i):
    """Every column of ``i`` back to what ``tcb_table_create`` writes (a test checks they agree)."""
    h = t.hot
    h.state[i] = TCPS_CLOSED
    h.tflags[i] = 0
    h.snd_una[i] = 0
    h.snd_nxt[i] = 0
    h.snd_max[i] = 0
    h.snd_wnd[i] = 0
    h.snd_wl1[i] = 0
    h.snd_wl2[i] = 0
    h.max_sndwnd[i] = 0
    h.rcv_nxt[i] = 0
    h.rcv_wnd[i] = 0
    h.rcv_adv[i] = 0
    h.rcv_wup[i] = 0
    h.rcv_ssthresh[i] = 0
    h.rcv_mss[i] = TCP_DEFAULT_MSS
    h.rcv_buf[i] = 0
    h.snd_buf[i] = 0
    h.snd_sml[i] = 0
    h.rcv_mem[i] = 0
    h.rcv_mem_pending[i] = 0
    h.rcv_skb_frags[i] = 0
    h.rcv_skb_room[i] = 0
    h.rcv_ratio[i] = TCP_DEFAULT_RCV_RATIO
    h.mss[i] = TCP_DEFAULT_MSS
    h.snd_wscale[i] = 0
    h.rcv_wscale[i] = 0
    h.ts_recent[i] = 0
    h.ts_recent_age[i] = 0
    h.ts_offset[i] = 0
    h.srtt[i] = -1
    h.rttvar[i] = 0
    h.mdev[i] = 0
    h.mdev_max[i] = 0
    h.rto[i] = TCP_INITIAL_RTO_US
    h.rtt_seq[i] = 0
    h.rtt_start_us[i] = 0
    h.rexmit_count[i] = 0
    h.retrans_stamp[i] = 0
    h.cwnd[i] = 0
    h.ssthresh[i] = TCP_INFINITE_SSTHRESH
    h.dupacks[i] = 0
    h.recover[i] = 0
    h.cc_algo[i] = CC_NEWRENO
    h.cc_w_max[i] = 0
    h.cc_epoch_us[i] = 0
    h.cwnd_limited[i] = 0
    h.max_flight[i] = 0
    h.cwnd_usage_seq[i] = 0
    h.prr_prior_cwnd[i] = 0
    h.prr_delivered[i] = 0
    h.prr_out[i] = 0
    h.rack_xmit_us[i] = 0
    h.rack_xmit_order[i] = 0
    h.rack_rtt_us[i] = 0
    h.min_rtt_us[i] = -1
    h.min_rtt_stamp_s[i] = 0
    h.rack_fack[i] = 0
    h.rack_dsack_round[i] = 0
    h.rack_reo_wnd_mult[i] = 1
    h.rack_reo_wnd_persist[i] = 0
    h.rack_state[i] = 0
    h.reordering[i] = 0
    h.undo_marker[i] = 0
    h.undo_retrans[i] = UNDO_NONE
    h.prior_ssthresh[i] = 0
    h.frto[i] = 0
    h.ecn_flags[i] = 0
    h.snd_q_head[i] = -1
    h.snd_q_tail[i] = -1
    h.snd_q_unsent[i] = -1
    h.snd_q_bytes[i] = 0
    h.rcv_q_head[i] = -1
    h.rcv_q_tail[i] = -1
    h.rcv_q_bytes[i] = 0
    h.ooo_head[i] = -1
    h.ooo_bytes[i] = 0
    h.delack_segs[i] = 0
    h.ack_quick[i] = 0
    h.ack_ato[i] = 0
    h.ack_lrcv_us[i] = 0
    h.last_oow_ack_us[i] = 0
    h.tlp_high_seq[i] = 0
    h.last_rcv_us[i] = 0
    h.last_snd_us[i] = 0
    c = t.cold
    c.lip[i] = 0
    c.rip[i] = 0
    c.lport[i] = 0
    c.rport[i] = 0
    c.iss[i] = 0
    c.irs[i] = 0
    c.peer_mss[i] = TCP_DEFAULT_MSS
    c.adv_mss[i] = 0
    c.owner[i] = -1
    c.listener[i] = -1
    # gen is not reset: it counts allocations of this id
    c.created_us[i] = 0
    c.snd_up[i] = 0
    c.rcv_up[i] = 0
    c.urg_data[i] = 0
    c.ka_idle_ms[i] = TCP_KEEPALIVE_IDLE_US // 1000
    c.ka_intvl_us[i] = TCP_KEEPALIVE_INTVL_US
    c.ka_probes[i] = TCP_KEEPALIVE_PROBES
    c.probes_out[i] = 0
    c.linger_s[i] = -1
    c.user_mss[i] = 0
    c.syn_retries[i] = 0
    c.user_timeout_ms[i] = 0
    c.window_clamp[i] = 0
    c.rcv_rtt_us8[i] = 0
    c.rcv_rtt_seq[i] = 0
    c.rcv_rtt_time_us[i] = 0
    c.rcv_rtt_last_tsecr[i] = 0
    c.rcvq_space[i] = 0
    c.rcvq_seq[i] = 0
    c.rcvq_time_us[i] = 0
    c.error[i] = 0
    c.soft_error[i] = 0
    c.pmtu[i] = 0
    c.tos[i] = 0
    c.ttl[i] = 0
    c.reuse[i] = 0
    c.link_prev[i] = -1
    c.link_next[i] = -1
    c.segs_in[i] = 0
    c.segs_out[i] = 0
    c.total_retrans[i] = 0
    c.reord_seen[i] = 0
    c.dsack_dups[i] = 0
    c.bytes_acked[i] = 0
    c.bytes_received[i] = 0


@njit(inline="always", cache=True)
def tcb_touch(t, i):
    """Log that id ``i``'s readiness (``tcp_status_k``) may have changed: called wherever a
    column it reads is written (allocation, state, error, queue bytes, send buffer, FIN and
    shutdown flags).  At most one entry per id per epoch: a reader that read the log before
    this epoch began finds the entry after its position."""
    # Branch-free: a branch here cost the callers Numba's refcount pruning (an incref per
    # array use; tests/tcp/test_tcb.py).  The entry is written either way, counted only when
    # new: the slot at the count is one no reader reads (poll_status reads fewer than
    # TOUCH_LOG_SIZE entries back).
    e = t.meta[TCB_META_TOUCH_EPOCH]
    new = np.int64(t.touch_stamp[i] != e)
    t.touch_stamp[i] = e
    n = t.meta[TCB_META_TOUCHED]
    t.touch_log[n & (TOUCH_LOG_SIZE - 1)] = i
    t.meta[TCB_META_TOUCHED] = n + new


@njit(inline="always", cache=True)
def tcb_alloc(t):
    """A fresh TCB id (state CLOSED, every column at its default), or -1 if the table is full."""
    i = t.meta[TCB_META_FREE_HEAD]
    if i < 0:
        t.meta[TCB_META_ALLOC_FAIL] += 1
        return np.int32(-1)
    t.meta[TCB_META_FREE_HEAD] = t.free_next[i]
    t.free_next[i] = TCB_ALLOCATED
    tcb_touch(t, i)
    _reset(t, i)
    t.cold.gen[i] += 1
    t.meta[TCB_META_IN_USE] += 1
    t.state_count[TCPS_CLOSED] += 1
    return np.int32(i)


@njit(inline="always", cache=True)
def tcb_free(t, i):
    """Return id ``i`` to the free list; False (and counted) for a bad id or a double free.

    The caller frees the queued frames and cancels the timers first; a TCB freed with frames
    still queued is counted in ``TCB_META_FREED_WITH_FRAMES`` (a leak detector)."""
    if i < 0 or i >= t.free_next.shape[0] or t.free_next[i] != TCB_ALLOCATED:
        t.meta[TCB_META_BAD_FREE] += 1
        return False
    h = t.hot
    if h.snd_q_head[i] >= 0 or h.rcv_q_head[i] >= 0 or h.ooo_head[i] >= 0:
        t.meta[TCB_META_FREED_WITH_FRAMES] += 1
    t.state_count[h.state[i]] -= 1
    h.state[i] = TCPS_CLOSED
    t.free_next[i] = t.meta[TCB_META_FREE_HEAD]
    t.meta[TCB_META_FREE_HEAD] = i
    t.meta[TCB_META_IN_USE] -= 1
    tcb_touch(t, i)
    return True


@njit(inline="always", cache=True)
def tcb_in_use(t):
    """TCBs allocated."""
    return t.meta[TCB_META_IN_USE]


@njit(inline="always", cache=True)
def tcb_is_allocated(t, i):
    """True if ``i`` is an id in use."""
    in_range = (i >= 0) & (i < t.free_next.shape[0])
    return in_range & (t.free_next[i if in_range else 0] == TCB_ALLOCATED)  # one load, no branch


@njit(inline="always", cache=True)
def tcps_transition_ok(old, new):
    """Whether RFC 9293 (Figure 5 and §3.10) lets a connection go from ``old`` to ``new``."""
    return (_ALLOWED[old] >> new) & 1 == 1


@njit(inline="always", cache=True)
def tcb_set_state(t, i, new_state):
    """The one place a connection changes state: 0, or ERR_TCB_* (the state is then unchanged).

    Keeps ``state_count`` right; a hook for tracing state changes belongs here."""
    rc = 0
    if not tcb_is_allocated(t, i):
        rc = ERR_TCB_BAD_ID
    elif new_state < 0 or new_state >= TCPS_COUNT:
        rc = ERR_TCB_BAD_STATE
    else:
        old = t.hot.state[i]
        if not tcps_transition_ok(old, new_state):
            rc = ERR_TCB_BAD_TRANSITION
        elif old != new_state:
            t.state_count[old] -= 1
            t.state_count[new_state] += 1
            t.hot.state[i] = new_state
            tcb_touch(t, i)
    t.meta[TCB_META_BAD_TRANSITION] += rc == ERR_TCB_BAD_TRANSITION  # last use on every path
    return rc


@njit(inline="always", cache=True)
def tcb_in_states(t, i, mask):
    """True if connection ``i`` is in one of the states of ``mask`` (bits ``1 << TCPS_*``)."""
    return (mask >> t.hot.state[i]) & 1 == 1


@njit(cache=True)
def tcb_audit(t):
    """0 if the free list, the in-use count and the per-state counts agree; else a negative code
    (-1 free list broken, -2 in-use count wrong, -3 per-state counts wrong).  O(max_conns)."""
    n = t.free_next.shape[0]
    seen = np.zeros(n, np.uint8)
    free = 0
    i = t.meta[TCB_META_FREE_HEAD]
    while i >= 0:
        if i >= n or seen[i] or t.free_next[i] == TCB_ALLOCATED:
            return -1
        seen[i] = 1
        free += 1
        i = t.free_next[i]
    counts = np.zeros(TCPS_COUNT, np.int64)
    used = 0
    for j in range(n):
        if t.free_next[j] == TCB_ALLOCATED:
            used += 1
            counts[t.hot.state[j]] += 1
        elif not seen[j]:
            return -1  # neither allocated nor on the free list: lost
    if used != t.meta[TCB_META_IN_USE] or used + free != n:
        return -2
    for s in range(TCPS_COUNT):
        if counts[s] != t.state_count[s]:
            return -3
    return 0
