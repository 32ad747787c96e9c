"""The user calls of RFC 9293 §3.10.1-§3.10.6 (OPEN, SEND, RECEIVE, CLOSE, ABORT, STATUS) as the
jitted API the Python socket layer calls (fsdp.sockapi).

Every call takes the core's ``CoreState`` first and returns an int64; a negative value is
``-errno`` with Linux's errno numbers.  Semantics follow Linux's socket calls where the RFC is
silent (net/ipv4/tcp.c ``tcp_sendmsg``, ``tcp_recvmsg``, ``tcp_close``, ``tcp_shutdown``,
``tcp_disconnect``; af_inet.c ``inet_shutdown``; sock.c ``sock_setsockopt``):

* ``tcp_send``: a pending error is returned (and cleared) first, then -EPIPE once sending is
  shut down or the connection is gone, -EAGAIN while connecting or when SO_SNDBUF is full.
* ``tcp_recv``: queued data first, then 0 at the peer's FIN, then a pending error, then 0 after
  shutdown(SHUT_RD) or the end of a connection, -ENOTCONN on a socket that never connected,
  else -EAGAIN.  Reading may send a window update (Linux tcp_cleanup_rbuf).
* ``tcp_close`` with unread data resets the connection (RFC 9293 §3.10.4 allows, RFC 2525 §2.17
  recommends, Linux does); otherwise FIN after the queued data, and the engine finishes the
  close alone (the TCB becomes an orphan; TIME-WAIT included).
* SO_RCVBUF / SO_SNDBUF are doubled and floored as Linux does (getsockopt returns the doubled
  value).
"""

import numpy as np
from numba import njit, types

from fsdp.atomic import fetch_and, fetch_or
from fsdp.core.config import (
    CFG_CORE_ID,
    CFG_GATEWAY,
    CFG_IP,
    CFG_N_CORES,
    CFG_NETMASK,
    CFG_RFD,
    CFG_SOMAXCONN,
    CFG_TCP_CC,
    CFG_TCP_ECN,
    CFG_TCP_FIN_TIMEOUT_US,
    CFG_TCP_KEEPALIVE_INTVL_US,
    CFG_TCP_KEEPALIVE_PROBES,
    CFG_TCP_KEEPALIVE_TIME_US,
    CFG_TCP_RCVBUF,
    CFG_TCP_RTO_INITIAL_US,
    CFG_TCP_SACK,
    CFG_TCP_SNDBUF,
    CFG_TCP_SYN_RETRIES,
    CFG_TCP_TIMESTAMPS,
    CFG_TCP_WINDOW_SCALING,
    CFG_TTL,
)
from fsdp.core.output import tx_flush
from fsdp.core.stats import (
    STAT_TCP_ABORT_ON_CLOSE,
    STAT_TCP_ABORT_ON_LINGER,
    STAT_TCP_ACCEPT_RESET,
    STAT_TCP_ACTIVE_OPENS,
)
from fsdp.core.timerwheel import (
    TIMER_FIN_WAIT_2,
    TIMER_KEEPALIVE,
    TIMER_RTO,
)
from fsdp.core.vars import V_NOW, V_TX_N, V_TX_OVF_HEAD
from fsdp.driver.jitmem import RootEntry, borrow_core, copy_bytes
from fsdp.driver.toeplitz import RETA_SIZE, rss_hash_ipv4_l4
from fsdp.pool.pool import HEADROOM, MAX_FRAME_LEN, frame_alloc, frame_free
from fsdp.tcp.cc import cc_set_algo
from fsdp.tcp.conn import tcp_conn_alloc, tcp_conn_free
from fsdp.tcp.drs import drs_adjust
from fsdp.tcp.ecn import ecn_init, ecn_tos_bits
from fsdp.tcp.flowtable import flow_lookup
from fsdp.tcp.frameflags import FRAME_F_TCP_PSH, FRAME_F_TCP_SENT
from fsdp.tcp.isn import isn_generate
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.listen import (
    LM_PORT_CURSOR,
    LS_LISTEN,
    PORT_EPHEMERAL_HI,
    PORT_EPHEMERAL_LO,
    REUSE_ADDR,
    REUSE_PORT,
    listen_acc_remove,
    listen_add,
    listen_conflict,
    listen_is_valid,
    listen_remove,
    listen_syn_remove,
)
from fsdp.tcp.reass import rcvq_release
from fsdp.tcp.segment import tcp_initial_rcv_window, tcp_sync_mss
from fsdp.tcp.tcb import (
    CC_CUBIC,
    CC_NEWRENO,
    TCPS_CLOSE_WAIT,
    TCPS_CLOSED,
    TCPS_CLOSING,
    TCPS_ESTABLISHED,
    TCPS_FIN_WAIT_1,
    TCPS_FIN_WAIT_2,
    TCPS_LAST_ACK,
    TCPS_SYN_RECEIVED,
    TCPS_SYN_SENT,
    TCPS_TIME_WAIT,
    TF_ACK_NOW,
    TF_CORK,
    TF_DELACK,
    TF_FIN_RECEIVED,
    TF_KEEPALIVE,
    TF_NODELAY,
    TF_OOBINLINE,
    TF_ORPHAN,
    TF_RCV_SHUTDOWN,
    TF_RCVBUF_LOCK,
    TF_RTT_TIMING,
    TF_SACK_OK,
    TF_SEND_SYN,
    TF_SND_SHUTDOWN,
    TF_SNDBUF_LOCK,
    TF_TS_OK,
    TF_URG_DATA,
    TF_WSCALE_OK,
    URG_VALID,
    tcb_touch,
)
from fsdp.tcp.tcbops import arm, disarm, is_alloc, keepalive_idle_us, set_state
from fsdp.tcp.tcp_output import (
    tcp_output,
    tcp_queue_fin,
    tcp_raw_window,
    tcp_receive_window,
    tcp_send_rst,
    tcp_tmpl_ip_fields,
    tcp_ttl,
)
from fsdp.tcp.urgent import (
    tcp_mark_urgent,
    tcp_recv_marked,
    tcp_recv_urg_k,
    tcp_urg_unreadable,
)
from fsdp.wire.tcp import seq_diff

# --- errno (Linux) ---------------------------------------------------------------------------
EPIPE = 32
EAGAIN = 11
ENOMEM = 12
EINVAL = 22
EOPNOTSUPP = 95
EADDRINUSE = 98
EADDRNOTAVAIL = 99
ENETUNREACH = 101
ECONNRESET = 104
ENOBUFS = 105
EISCONN = 106
ENOTCONN = 107
ETIMEDOUT = 110
ECONNREFUSED = 111
EHOSTUNREACH = 113
EALREADY = 114
EINPROGRESS = 115

# --- options (tcp_setopt / tcp_getopt) -------------------------------------------------------
OPT_NODELAY = 1  # TCP_NODELAY: 0/1
OPT_KEEPALIVE = 2  # SO_KEEPALIVE: 0/1
OPT_KEEPIDLE = 3  # TCP_KEEPIDLE: seconds, 1..32767
OPT_KEEPINTVL = 4  # TCP_KEEPINTVL: seconds, 1..32767
OPT_KEEPCNT = 5  # TCP_KEEPCNT: 1..127
OPT_RCVBUF = 6  # SO_RCVBUF: bytes (stored and reported doubled, as Linux)
OPT_SNDBUF = 7  # SO_SNDBUF: bytes (doubled)
OPT_LINGER = 8  # SO_LINGER: seconds, -1 = off
OPT_MAXSEG = 9  # TCP_MAXSEG: bytes, 88..65535 (get: the current send MSS)
OPT_CONGESTION = 10  # TCP_CONGESTION: CC_NEWRENO / CC_CUBIC
OPT_CORK = 11  # TCP_CORK: 0/1
OPT_REUSEADDR = 12  # SO_REUSEADDR: 0/1 (what a later bind of the port checks, TIME-WAIT included)
OPT_REUSEPORT = 13  # SO_REUSEPORT: 0/1 (the same, for SO_REUSEPORT)
OPT_BACKLOG = 14  # a listener's backlog, set again by listen() (tcp_listen_setopt only)
OPT_TOS = 15  # IP_TOS: the TOS byte of the connection's segments, 0..255 (RFC 9293 MUST-48)
OPT_TTL = 16  # IP_TTL: 1..255, 0 = the stack's ``ttl`` (get: the TTL in use)
OPT_OOBINLINE = 17  # SO_OOBINLINE: 0/1 (fsdp.tcp.urgent)
OPT_SYNCNT = 18  # TCP_SYNCNT: SYN retransmissions before connect() fails, 1..127
OPT_USER_TIMEOUT = 19  # TCP_USER_TIMEOUT: ms, 0 = none (RFC 5482; fsdp.tcp.tcp_timers)

SOCK_MIN_RCVBUF = 2304  # Linux: 2 * (2048 + sizeof(struct sk_buff)) rounded
SOCK_MIN_SNDBUF = 4608
SYSCTL_RMEM_MAX = 212992  # net.core.rmem_max / wmem_max defaults: setsockopt's cap
SYSCTL_WMEM_MAX = 212992

# --- tcp_status bits -------------------------------------------------------------------------
EV_READABLE = 1  # data, EOF or an error to report
EV_WRITABLE = 2  # connected with send space (or a write would fail at once)
EV_ERROR = 4  # an error is pending (tcp_take_error)
EV_CONNECTED = 8  # synchronized (ESTABLISHED ... LAST-ACK)
EV_EOF = 16  # the peer's FIN arrived, or reading was shut down
EV_CLOSED = 32  # the connection is over (CLOSED)
EV_URGENT = 64  # the urgent byte is here (Linux EPOLLPRI: select()'s exceptional condition)

# --- tcp_conn_info indices ---------------------------------------------------------------------
CI_LIP = 0
CI_LPORT = 1
CI_RIP = 2
CI_RPORT = 3
CI_STATE = 4  # TCPS_*
CI_SND_Q = 5  # bytes queued to send, not yet acknowledged (ss Send-Q)
CI_RCV_Q = 6  # bytes received, not yet read (ss Recv-Q)
CI_MSS = 7  # send MSS
CI_RCV_MSS = 8
CI_CWND = 9  # bytes
CI_SSTHRESH = 10
CI_SRTT_US = 11
CI_RTTVAR_US = 12
CI_RTO_US = 13
CI_SND_WND = 14
CI_RCV_WND = 15
CI_RETRANS = 16  # segments retransmitted
CI_SEGS_IN = 17
CI_SEGS_OUT = 18
CI_BYTES_ACKED = 19
CI_BYTES_RECEIVED = 20
CI_SND_WSCALE = 21  # -1: no window scaling
CI_RCV_WSCALE = 22
CI_FLAGS = 23  # TF_* bits
CI_ERROR = 24  # pending errno (not cleared)
CI_BACKLOG = 25  # listeners: accept queue length
CI_REORD_SEEN = 26  # reorderings detected (RFC 8985 §6.2 step 3; Linux tcpi_reord_seen)
CI_DSACK_DUPS = 27  # segments the peer reported received twice (D-SACK; tcpi_dsack_dups)
CI_SIZE = 32

M32 = 0xFFFFFFFF


# --- helpers ---------------------------------------------------------------------------------
@kernel
def _valid(core, cid):
    return is_alloc(core, cid) and core.tcb.cold.owner[cid] >= 0


@kernel_inline
def _route_ok(core, rip):
    """A unicast route to ``rip``: on our subnet or through the gateway.  TCP is point to
    point: an OPEN to a multicast, the limited broadcast or our subnet's broadcast address is
    refused (RFC 1122 §4.2.3.10, RFC 9293 MUST-46; Linux tcp_v4_connect: ENETUNREACH for a
    route of type broadcast or multicast)."""
    mask = core.cfg[CFG_NETMASK]
    if (rip & 0xF0000000) == 0xE0000000 or rip == 0xFFFFFFFF:
        return False
    if (rip & mask) == (core.cfg[CFG_IP] & mask):
        # the directed broadcast exists on a subnet of /30 or wider (Linux fib_add_ifaddr)
        host = ~mask & 0xFFFFFFFF
        return host < 3 or (rip & host) != host
    return core.cfg[CFG_GATEWAY] != 0


@njit(inline="always", cache=True)
def _connected_state(st):
    return (
        st == TCPS_ESTABLISHED or st == TCPS_CLOSE_WAIT or st == TCPS_FIN_WAIT_1
        or st == TCPS_FIN_WAIT_2 or st == TCPS_CLOSING or st == TCPS_LAST_ACK
    )  # fmt: skip


# --- passive open ----------------------------------------------------------------------------
@kernel
def tcp_bind_check_k(core, lip, lport, reuse):
    """0 if ``lip:lport`` may be bound by a socket with the REUSE_* bits ``reuse``, else
    -EADDRINUSE.  Linux inet_bind_conflict, for each socket holding the port on an
    overlapping address: a listener conflicts unless both set SO_REUSEPORT; a connection
    (TIME-WAIT included: it keeps its socket's bits, a child its listener's) conflicts unless
    both set SO_REUSEADDR (``reuse && sk2->sk_reuse && sk2 not listening``) or both set
    SO_REUSEPORT (same owner: always, in one process)."""
    if lport <= 0 or lport > 65535:
        return np.int64(-EINVAL) if lport != 0 else np.int64(0)
    ls = core.listen
    if listen_conflict(ls, lip, lport, reuse):
        return np.int64(-EADDRINUSE)
    if ls.port_refs[lport] > 0:
        if reuse == 0:
            return np.int64(-EADDRINUSE)
        # rare (a bind to a port in use, with a reuse option): look at each connection on it
        c = core.tcb.cold
        for cid in range(c.shape[0]):
            if (c.lport[cid] == lport and is_alloc(core, cid)
                    and (lip == 0 or c.lip[cid] == 0 or c.lip[cid] == lip)):
                shared = reuse & np.int64(c.reuse[cid])
                if (shared & (REUSE_ADDR | REUSE_PORT)) == 0:
                    return np.int64(-EADDRINUSE)
    return np.int64(0)


@kernel_inline
def tcp_listen_k(core, lip, lport, backlog, reuse):
    """RFC 9293 §3.10.1 passive OPEN: a listener on ``lip:lport`` (lip 0 = any) with the
    REUSE_* bits ``reuse``; its id.  With SO_REUSEPORT it may join the listeners already there
    (an SO_REUSEPORT group, Linux reuseport_add_sock)."""
    rc = tcp_bind_check_k(core, lip, lport, reuse)
    if rc < 0:
        return rc
    if lport <= 0:
        return np.int64(-EINVAL)
    mx = core.cfg[CFG_SOMAXCONN]
    b = np.int64(backlog)
    if b < 0 or b > mx:
        b = mx
    lid = listen_add(core.listen, lip, lport, b, reuse & (REUSE_ADDR | REUSE_PORT))
    if lid < 0:
        return np.int64(-ENOBUFS)
    # Tell the port's other cores (in any process) that this one listens on lport.
    fetch_or(core.listen_map, lport, np.int64(1) << core.cfg[CFG_CORE_ID])
    return lid


@kernel
def tcp_unlisten_k(core, lid, now):
    """Close listener ``lid``: embryonic connections are dropped silently, connections never
    accepted are reset (Linux inet_csk_listen_stop with net.ipv4.tcp_migrate_req=0: an
    SO_REUSEPORT group's other members keep theirs, and take the port's new SYNs)."""
    ls = core.listen
    if not listen_is_valid(ls, lid):
        return np.int64(-EINVAL)
    c = core.tcb.cold
    h = core.tcb.hot
    while ls.rec.syn_head[lid] >= 0:
        cid = ls.rec.syn_head[lid]
        listen_syn_remove(ls, c, lid, cid)
        c.listener[cid] = -1
        tcp_conn_free(core, cid)
    while ls.rec.acc_head[lid] >= 0:
        cid = ls.rec.acc_head[lid]
        listen_acc_remove(ls, c, lid, cid)
        c.listener[cid] = -1
        st = h.state[cid]
        if st == TCPS_ESTABLISHED or st == TCPS_CLOSE_WAIT or st == TCPS_SYN_RECEIVED:
            core.stats[STAT_TCP_ACCEPT_RESET] += 1
            tcp_send_rst(core, cid, now)
        tcp_conn_free(core, cid)
    lport = ls.rec.lport[lid]
    listen_remove(ls, lid)
    if ls.port_head[lport] < 0:  # this core's last listener on lport (of any group)
        fetch_and(core.listen_map, lport, ~(np.int64(1) << core.cfg[CFG_CORE_ID]))
    return np.int64(0)


@kernel_inline
def tcp_accept_k(core, lid):
    """The oldest established connection of listener ``lid`` (now owned by the caller), or
    -EAGAIN."""
    ls = core.listen
    if not listen_is_valid(ls, lid):
        return np.int64(-EINVAL)
    cid = ls.rec.acc_head[lid]
    if cid < 0:
        return np.int64(-EAGAIN)
    c = core.tcb.cold
    listen_acc_remove(ls, c, lid, cid)
    c.listener[cid] = -1
    c.owner[cid] = 1
    return np.int64(cid)


@kernel_inline
def tcp_accept_pending_k(core, lid):
    ls = core.listen
    if not listen_is_valid(ls, lid):
        return np.int64(-EINVAL)
    return np.int64(ls.rec.acc_count[lid])


@kernel_inline
def tcp_listen_status_k(core, lid):
    ls = core.listen
    if not listen_is_valid(ls, lid):
        return np.int64(EV_CLOSED | EV_ERROR)
    return np.int64(EV_READABLE if ls.rec.acc_count[lid] > 0 else 0)


# --- active open -----------------------------------------------------------------------------
@kernel_inline
def _port_steers_here(core, lip, lport, rip, rport):
    """Receive flow deliver (DESIGN.md §3, Fastsocket §3.3): True if the NIC's RSS steers the
    reply to this 4-tuple (src rip:rport, dst lip:lport) to this core's queue, so the
    connection's every segment stays on the core that opened it.  Always True with RFD off or
    one queue (a flow rule in the NIC's Flow Director overrides RSS; none is installed here)."""
    n = core.cfg[CFG_N_CORES]
    if n <= 1:
        return True
    if core.cfg[CFG_RFD] == 0:
        # RFD off: the port names its core, so whichever core RSS hands the reply to can pass
        # it on (fsdp.tcp.input._flow_owner)
        return lport % n == core.cfg[CFG_CORE_ID]
    h = rss_hash_ipv4_l4(core.rss, rip, lip, rport, lport)
    return core.reta[h & (RETA_SIZE - 1)] == core.cfg[CFG_CORE_ID]


@kernel_inline
def tcp_ephemeral_port_k(core, lip, rip, rport):
    """A local port in Linux's ephemeral range (32768-60999) for a connection to
    ``rip:rport``: no listener on it and the 4-tuple free (rip 0: the port wholly unused, for
    bind() to port 0).  Even ports first for connect(), odd first for bind(), as Linux.
    -EADDRNOTAVAIL when the range is exhausted."""
    ls = core.listen
    span = PORT_EPHEMERAL_HI - PORT_EPHEMERAL_LO + 1
    start = ls.meta[LM_PORT_CURSOR]
    a = lip if lip != 0 else core.cfg[CFG_IP]
    want_odd = 1 if rip == 0 else 0
    n_cores = core.cfg[CFG_N_CORES]
    by_port = rip != 0 and n_cores > 1 and core.cfg[CFG_RFD] == 0 and n_cores % 2 == 0
    for parity_pass in range(2):
        par = want_odd if parity_pass == 0 else 1 - want_odd
        if by_port and (core.cfg[CFG_CORE_ID] & 1) != par:
            continue  # no port of this parity names this core (_port_steers_here)
        for i in range(0, span, 2):
            off = (start + i) % span
            port = PORT_EPHEMERAL_LO + off
            if (port & 1) != par:
                port += 1
                if port > PORT_EPHEMERAL_HI:
                    port = PORT_EPHEMERAL_LO + par
            if listen_conflict(ls, 0, port, 0):
                continue  # Linux inet_csk_find_open_port: not even an SO_REUSEPORT group's
            if rip == 0:
                if ls.port_refs[port] > 0:
                    continue
            elif flow_lookup(core.flows, a, port, rip, rport) >= 0:
                continue
            if rip != 0 and not _port_steers_here(core, a, port, rip, rport):
                continue
            # The next search starts past the port taken, not just 2 past this one's start
            # (Linux __inet_hash_connect: table_perturb += i + step).  With receive flow
            # deliver the ports that steer to this core come in runs (Toeplitz is linear in
            # the port's bits), and a cursor moved by 2 scans into the same run again and
            # takes back a port freed microseconds ago: its peer still holds the 4-tuple in
            # TIME-WAIT, the new ISN is not above the old RCV.NXT (RFC 6528's clock moved
            # a few ticks), the SYN is refused (RFC 9293 §3.10.7.4; RFC 6191) and the
            # connection waits a 1 s SYN retransmission.
            ls.meta[LM_PORT_CURSOR] = (start + i + 2) % span
            return np.int64(port)
    ls.meta[LM_PORT_CURSOR] = (start + 2) % span
    return np.int64(-EADDRNOTAVAIL)


@kernel
def tcp_connect_k(core, lip, lport, rip, rport, ip_fields, now):
    """RFC 9293 §3.10.1 active OPEN: send a SYN from ``lip:lport`` to ``rip:rport``; the new
    connection's id (SYN-SENT).  ``ip_fields``: the socket's IP_TOS | IP_TTL << 8 (0: none),
    which the SYN already carries."""
    if rport <= 0 or rport > 65535 or lport <= 0 or lport > 65535 or rip == 0:
        return np.int64(-EINVAL)
    if lip == 0:
        lip = core.cfg[CFG_IP]
    if not _route_ok(core, rip):
        return np.int64(-ENETUNREACH)
    if flow_lookup(core.flows, lip, lport, rip, rport) >= 0:
        return np.int64(-EADDRNOTAVAIL)
    cid = tcp_conn_alloc(core, lip, lport, rip, rport)
    if cid < 0:
        return np.int64(-ENOBUFS)
    t = core.tcb
    h = t.hot
    c = t.cold
    c.owner[cid] = 1
    c.created_us[cid] = now
    f = np.int64(0)
    if core.cfg[CFG_TCP_TIMESTAMPS] != 0:
        f |= TF_TS_OK
    if core.cfg[CFG_TCP_SACK] != 0:
        f |= TF_SACK_OK
    if core.cfg[CFG_TCP_WINDOW_SCALING] != 0:
        f |= TF_WSCALE_OK
    h.tflags[cid] |= f
    ecn_init(t, cid, core.cfg[CFG_TCP_ECN] == 1)  # ECN asked for in the SYN (fsdp.tcp.ecn)
    set_state(core, cid, TCPS_SYN_SENT)
    iss = isn_generate(core.isn_secret, lip, lport, rip, rport, now)
    c.iss[cid] = iss
    h.snd_una[cid] = iss
    h.snd_nxt[cid] = (iss + 1) & M32
    h.snd_max[cid] = (iss + 1) & M32
    c.tos[cid] = ip_fields & 0xFF
    c.ttl[cid] = (ip_fields >> 8) & 0xFF
    tcp_tmpl_ip_fields(core, cid)
    tcp_initial_rcv_window(core, cid)
    # the give-up clock of the SYN (Linux tcp_connect: retrans_stamp); 0 would mean "none", and
    # a virtual clock may connect at 0
    h.retrans_stamp[cid] = now if now > 0 else 1
    h.rtt_start_us[cid] = now
    h.tflags[cid] |= np.uint32(TF_RTT_TIMING)
    core.stats[STAT_TCP_ACTIVE_OPENS] += 1
    h.tflags[cid] |= np.uint32(TF_SEND_SYN)
    tcp_output(core, cid, now)
    arm(core, cid, TIMER_RTO, now + core.cfg[CFG_TCP_RTO_INITIAL_US])
    return np.int64(cid)


# --- data ------------------------------------------------------------------------------------
@kernel
def tcp_take_error_k(core, cid):
    """The pending error (errno), cleared; 0 if none."""
    if not is_alloc(core, cid):
        return np.int64(0)
    c = core.tcb.cold
    e = np.int64(c.error[cid])
    c.error[cid] = 0
    tcb_touch(core.tcb, cid)  # EV_ERROR cleared (fsdp.core.loop.poll_status)
    return e


@kernel
def tcp_send_k(core, cid, data, off, n, now):
    """SEND (RFC 9293 §3.10.2): copy up to ``n`` bytes of ``data[off:]`` into the send queue
    (a small write is coalesced into the unsent tail segment, up to one MSS) and transmit
    what the windows allow; the bytes accepted or -errno."""
    return _send(core, cid, data, off, n, False, now)


@kernel
def tcp_send_oob_k(core, cid, data, off, n, now):
    """send(MSG_OOB): ``tcp_send_k`` whose last byte is urgent (RFC 9293 §3.8.5,
    fsdp.tcp.urgent)."""
    return _send(core, cid, data, off, n, True, now)


@kernel_inline
def _send(core, cid, data, off, n, urgent, now):
    if not _valid(core, cid):
        return np.int64(-EINVAL)
    t = core.tcb
    h = t.hot
    c = t.cold
    if c.error[cid] != 0:
        return -tcp_take_error_k(core, cid)
    st = h.state[cid]
    if (h.tflags[cid] & TF_SND_SHUTDOWN) != 0:
        return np.int64(-EPIPE)
    if st == TCPS_SYN_SENT or st == TCPS_SYN_RECEIVED:
        return np.int64(-EAGAIN)
    if st != TCPS_ESTABLISHED and st != TCPS_CLOSE_WAIT:
        return np.int64(-EPIPE)
    if n <= 0:
        return np.int64(0)
    done = _send_queue(core, cid, data, off, n)
    if done > 0:
        if urgent:
            tcp_mark_urgent(core, cid)  # SND.UP: the end of this write (send(MSG_OOB))
        tcp_output(core, cid, now)
    return done


@kernel_inline
def _send_queue(core, cid, data, off, n):
    """``tcp_send_k``'s copy of ``n`` > 0 bytes into the send queue: the bytes taken, or
    -errno."""
    h = core.tcb.hot
    pool = core.pool
    space = np.int64(h.snd_buf[cid]) - np.int64(h.snd_q_bytes[cid])
    if space <= 0:
        return np.int64(-EAGAIN)
    if n > space:
        n = space
    mss = np.int64(h.mss[cid])
    if mss > MAX_FRAME_LEN:
        mss = np.int64(MAX_FRAME_LEN)
    done = np.int64(0)
    tail = h.snd_q_tail[cid]
    # coalesce into the unsent tail frame
    if tail >= 0 and h.snd_q_unsent[cid] >= 0 and (pool.flags[tail] & FRAME_F_TCP_SENT) == 0:
        room = mss - np.int64(pool.length[tail])
        end_room = np.int64(pool.data.shape[1]) - (pool.off[tail] + pool.length[tail])
        if room > end_room:
            room = end_room
        if room > 0:
            k = n if n < room else room
            dst = pool.off[tail] + pool.length[tail]
            copy_bytes(pool.data, tail * np.int64(pool.data.shape[1]) + dst, data, off, k)
            pool.length[tail] += k
            done += k
    while done < n:
        f = frame_alloc(pool)
        if f < 0:
            break
        k = n - done
        if k > mss:
            k = mss
        # memcpy (jitmem.copy_bytes), not Numba's element loop
        copy_bytes(pool.data, f * np.int64(pool.data.shape[1]) + HEADROOM, data, off + done, k)
        pool.off[f] = HEADROOM
        pool.length[f] = k
        pool.flags[f] = 0
        pool.tag[f] = (np.int64(h.snd_una[cid]) + np.int64(h.snd_q_bytes[cid]) + done) & M32
        pool.next[f] = -1
        tail = h.snd_q_tail[cid]
        if tail >= 0:
            pool.next[tail] = f
        else:
            h.snd_q_head[cid] = f
        h.snd_q_tail[cid] = f
        if h.snd_q_unsent[cid] < 0:
            h.snd_q_unsent[cid] = f
        done += k
    if done == 0:
        return np.int64(-ENOBUFS)
    h.snd_q_bytes[cid] += done
    tcb_touch(core.tcb, cid)  # less room to write (fsdp.core.loop.poll_status)
    tail = h.snd_q_tail[cid]
    if tail >= 0:
        pool.flags[tail] |= FRAME_F_TCP_PSH  # the end of a write (Linux tcp_push)
    return done


@kernel_inline
def _cleanup_rbuf(core, cid, copied, now):
    """Linux tcp_cleanup_rbuf: after a read, ACK if a delayed ACK is owed for more than one
    segment, or if the window can now at least double (RFC 9293 §3.8.6.2.2)."""
    h = core.tcb.hot
    c = core.tcb.cold
    st = h.state[cid]
    if not _connected_state(st) and st != TCPS_SYN_RECEIVED:
        return
    time_to_ack = False
    if (h.tflags[cid] & TF_DELACK) != 0:
        if seq_diff(h.rcv_nxt[cid], h.rcv_wup[cid]) > np.int64(h.rcv_mss[cid]):
            time_to_ack = True
    if copied > 0 and not time_to_ack and (h.tflags[cid] & TF_FIN_RECEIVED) == 0 and (
            h.tflags[cid] & TF_RCV_SHUTDOWN) == 0:
        now_w = tcp_receive_window(core, cid)
        if 2 * now_w <= np.int64(c.window_clamp[cid]):
            new_w = tcp_raw_window(core, cid)
            if new_w > 0 and new_w >= 2 * now_w:
                time_to_ack = True
    if time_to_ack:
        h.tflags[cid] |= np.uint32(TF_ACK_NOW)
        tcp_output(core, cid, now)


@kernel
def tcp_recv_k(core, cid, out, off, n, peek, now):
    """RECEIVE (RFC 9293 §3.10.3): copy up to ``n`` queued bytes into ``out[off:]``; the count,
    0 at EOF, or -errno (order as Linux tcp_recvmsg, see the module doc)."""
    if not _valid(core, cid):
        return np.int64(-EINVAL)
    t = core.tcb
    h = t.hot
    c = t.cold
    pool = core.pool
    if n <= 0:
        return np.int64(0)
    copied = np.int64(0)
    fid = h.rcv_q_head[cid]
    marked = (h.tflags[cid] & TF_URG_DATA) != 0
    if marked:
        # mind the urgent mark (fsdp.tcp.urgent; the queue's bookkeeping is done there)
        copied = tcp_recv_marked(core, cid, out, off, n, peek)
        fid = -1
    while fid >= 0 and copied < n:
        ln = np.int64(pool.length[fid])
        k = n - copied
        if k > ln:
            k = ln
        src = pool.off[fid]
        copy_bytes(out, off + copied, pool.data, fid * np.int64(pool.data.shape[1]) + src, k)
        copied += k
        nxt = pool.next[fid]
        if not peek:
            if k == ln:
                rcvq_release(pool, h, cid, fid)
                pool.next[fid] = -1
                frame_free(pool, fid)
                h.rcv_q_head[cid] = nxt
                if nxt < 0:
                    h.rcv_q_tail[cid] = -1
            else:
                pool.off[fid] += k
                pool.length[fid] -= k
                pool.tag[fid] = (pool.tag[fid] + k) & M32
        fid = nxt
    if copied > 0:
        if not peek:
            if not marked:
                h.rcv_q_bytes[cid] -= copied
                tcb_touch(core.tcb, cid)  # maybe no longer readable (fsdp.core.loop.poll_status)
            drs_adjust(core, cid, now)  # Linux tcp_recvmsg_locked: tcp_rcv_space_adjust
            _cleanup_rbuf(core, cid, copied, now)
        return copied
    st = h.state[cid]
    if (h.tflags[cid] & TF_FIN_RECEIVED) != 0:
        return np.int64(0)
    if c.error[cid] != 0:
        return -tcp_take_error_k(core, cid)
    if (h.tflags[cid] & TF_RCV_SHUTDOWN) != 0:
        return np.int64(0)
    if st == TCPS_CLOSED:
        if c.segs_in[cid] > 0 and h.snd_una[cid] != c.iss[cid]:
            return np.int64(0)  # a connection that ended
        return np.int64(-ENOTCONN)
    return np.int64(-EAGAIN)


# --- closing ---------------------------------------------------------------------------------
@kernel
def _send_fin(core, cid, now):
    """ESTABLISHED/SYN-RECEIVED -> FIN-WAIT-1, CLOSE-WAIT -> LAST-ACK, FIN after the queued
    data (RFC 9293 §3.10.4); True if a FIN was queued."""
    t = core.tcb
    h = t.hot
    st = h.state[cid]
    if (h.tflags[cid] & TF_SND_SHUTDOWN) != 0:
        return False
    if st == TCPS_ESTABLISHED or st == TCPS_SYN_RECEIVED:
        set_state(core, cid, TCPS_FIN_WAIT_1)
    elif st == TCPS_CLOSE_WAIT:
        set_state(core, cid, TCPS_LAST_ACK)
    else:
        return False
    h.tflags[cid] |= np.uint32(TF_SND_SHUTDOWN)
    tcb_touch(t, cid)  # EV_WRITABLE (fsdp.core.loop.poll_status)
    tcp_queue_fin(core, cid)
    tcp_output(core, cid, now)
    return True


@kernel_inline
def tcp_shutdown_k(core, cid, how, now):
    """shutdown(2): how 0 = SHUT_RD, 1 = SHUT_WR, 2 = SHUT_RDWR; 0 or -ENOTCONN."""
    if not _valid(core, cid):
        return np.int64(-EINVAL)
    if how < 0 or how > 2:
        return np.int64(-EINVAL)
    h = core.tcb.hot
    st = h.state[cid]
    tcb_touch(core.tcb, cid)  # shutdown flags: readiness (fsdp.core.loop.poll_status)
    if how == 0 or how == 2:
        h.tflags[cid] |= np.uint32(TF_RCV_SHUTDOWN)
    if st == TCPS_CLOSED:
        return np.int64(-ENOTCONN)
    if how == 1 or how == 2:
        if st == TCPS_SYN_SENT:
            h.tflags[cid] |= np.uint32(TF_SND_SHUTDOWN)  # FIN once established
        else:
            _send_fin(core, cid, now)
    return np.int64(0)


@kernel
def tcp_abort_k(core, cid, now):
    """ABORT (RFC 9293 §3.10.5; SO_LINGER with 0 s): RST in the states that need one, then the
    TCB is freed."""
    if not is_alloc(core, cid):
        return np.int64(-EINVAL)
    h = core.tcb.hot
    st = h.state[cid]
    if st == TCPS_ESTABLISHED or st == TCPS_CLOSE_WAIT or st == TCPS_FIN_WAIT_1 or (
            st == TCPS_FIN_WAIT_2 or st == TCPS_SYN_RECEIVED):
        core.stats[STAT_TCP_ABORT_ON_LINGER] += 1
        tcp_send_rst(core, cid, now)
    tcp_conn_free(core, cid)
    return np.int64(0)


@kernel
def tcp_close_k(core, cid, now):
    """CLOSE (RFC 9293 §3.10.4) as Linux's tcp_close: the socket lets go of the connection.
    Unread data -> RST now; SO_LINGER 0 -> RST; otherwise FIN after the queued data and the
    engine completes the close and frees the TCB."""
    if not is_alloc(core, cid):
        return np.int64(-EINVAL)
    t = core.tcb
    h = t.hot
    c = t.cold
    st = h.state[cid]
    if st == TCPS_CLOSED or st == TCPS_SYN_SENT or st == TCPS_TIME_WAIT:
        tcp_conn_free(core, cid)
        return np.int64(0)
    if c.linger_s[cid] == 0:
        return tcp_abort_k(core, cid, now)
    c.owner[cid] = -1
    h.tflags[cid] |= np.uint32(TF_ORPHAN | TF_RCV_SHUTDOWN)
    tcb_touch(core.tcb, cid)  # EV_EOF (fsdp.core.loop.poll_status)
    if h.rcv_q_bytes[cid] > 0:
        core.stats[STAT_TCP_ABORT_ON_CLOSE] += 1
        tcp_send_rst(core, cid, now)
        tcp_conn_free(core, cid)
        return np.int64(0)
    _send_fin(core, cid, now)
    st = h.state[cid]
    if st == TCPS_FIN_WAIT_2:
        arm(core, cid, TIMER_FIN_WAIT_2, now + core.cfg[CFG_TCP_FIN_TIMEOUT_US])
    return np.int64(0)


# --- options ---------------------------------------------------------------------------------
@kernel
def tcp_setopt_k(core, cid, opt, value):
    """setsockopt for the engine's options (OPT_*): 0 or -EINVAL."""
    if not is_alloc(core, cid):
        return np.int64(-EINVAL)
    t = core.tcb
    h = t.hot
    c = t.cold
    now = core.var[V_NOW]
    v = np.int64(value)
    if opt == OPT_NODELAY:
        if v != 0:
            h.tflags[cid] |= np.uint32(TF_NODELAY)
            tcp_output(core, cid, now)
        else:
            h.tflags[cid] &= ~np.uint32(TF_NODELAY)
    elif opt == OPT_SYNCNT:
        if v < 1 or v > 127:  # (Linux MAX_TCP_SYNCNT)
            return np.int64(-EINVAL)
        c.syn_retries[cid] = v
    elif opt == OPT_USER_TIMEOUT:
        if v < 0 or v > 0x7FFFFFFF:
            return np.int64(-EINVAL)
        c.user_timeout_ms[cid] = v
    elif opt == OPT_OOBINLINE:
        if v != 0:
            h.tflags[cid] |= np.uint32(TF_OOBINLINE)
        else:
            h.tflags[cid] &= ~np.uint32(TF_OOBINLINE)
        tcb_touch(core.tcb, cid)  # the byte at the mark is readable or not (tcp_status_k)
    elif opt == OPT_CORK:
        if v != 0:
            h.tflags[cid] |= np.uint32(TF_CORK)
        else:
            h.tflags[cid] &= ~np.uint32(TF_CORK)
            tcp_output(core, cid, now)
    elif opt == OPT_KEEPALIVE:
        if v != 0:
            if (h.tflags[cid] & TF_KEEPALIVE) == 0:
                h.tflags[cid] |= np.uint32(TF_KEEPALIVE)
                if _connected_state(h.state[cid]):
                    arm(core, cid, TIMER_KEEPALIVE, now + keepalive_idle_us(core, cid))
        else:
            h.tflags[cid] &= ~np.uint32(TF_KEEPALIVE)
            disarm(core, cid, TIMER_KEEPALIVE)
    elif opt == OPT_KEEPIDLE:
        if v < 1 or v > 32767:
            return np.int64(-EINVAL)
        c.ka_idle_ms[cid] = v * 1000
        if (h.tflags[cid] & TF_KEEPALIVE) != 0 and _connected_state(h.state[cid]):
            arm(core, cid, TIMER_KEEPALIVE, h.last_rcv_us[cid] + v * 1_000_000)
    elif opt == OPT_KEEPINTVL:
        if v < 1 or v > 32767:
            return np.int64(-EINVAL)
        c.ka_intvl_us[cid] = v * 1_000_000
    elif opt == OPT_KEEPCNT:
        if v < 1 or v > 127:
            return np.int64(-EINVAL)
        c.ka_probes[cid] = v
    elif opt == OPT_RCVBUF:
        if v < 0:
            v = 0
        if v > SYSCTL_RMEM_MAX:
            v = SYSCTL_RMEM_MAX
        b = 2 * v
        h.rcv_buf[cid] = b if b > SOCK_MIN_RCVBUF else SOCK_MIN_RCVBUF
        h.tflags[cid] |= np.uint32(TF_RCVBUF_LOCK)
        if h.state[cid] == TCPS_SYN_SENT and h.snd_una[cid] == np.int64(c.iss[cid]):
            tcp_initial_rcv_window(core, cid)
    elif opt == OPT_SNDBUF:
        if v < 0:
            v = 0
        if v > SYSCTL_WMEM_MAX:
            v = SYSCTL_WMEM_MAX
        b = 2 * v
        h.snd_buf[cid] = b if b > SOCK_MIN_SNDBUF else SOCK_MIN_SNDBUF
        h.tflags[cid] |= np.uint32(TF_SNDBUF_LOCK)  # Linux SOCK_SNDBUF_LOCK: no growth
        tcb_touch(core.tcb, cid)  # room to write (fsdp.core.loop.poll_status)
    elif opt == OPT_LINGER:
        c.linger_s[cid] = -1 if v < 0 else (v if v < 32767 else 32767)
    elif opt == OPT_MAXSEG:
        if v < 88 or v > 65535:
            return np.int64(-EINVAL)
        c.user_mss[cid] = v
        if _connected_state(h.state[cid]):
            tcp_sync_mss(core, cid)
    elif opt == OPT_CONGESTION:
        if v != CC_NEWRENO and v != CC_CUBIC:
            return np.int64(-EINVAL)
        cc_set_algo(t, cid, v)
    elif opt == OPT_REUSEADDR or opt == OPT_REUSEPORT:
        bit = np.uint8(REUSE_ADDR if opt == OPT_REUSEADDR else REUSE_PORT)
        c.reuse[cid] = (c.reuse[cid] | bit) if v != 0 else (c.reuse[cid] & ~bit)
    elif opt == OPT_TOS or opt == OPT_TTL:
        if v < 0 or v > 255:
            return np.int64(-EINVAL)
        if opt == OPT_TOS:
            c.tos[cid] = v
        else:
            c.ttl[cid] = v
        tcp_tmpl_ip_fields(core, cid)  # the next segment carries it
    else:
        return np.int64(-EINVAL)
    return np.int64(0)


@kernel_inline
def tcp_getopt_k(core, cid, opt):
    """getsockopt for OPT_*; ``cid`` -1 gives the stack's default for a new socket."""
    if cid < 0:
        if opt == OPT_KEEPIDLE:
            return core.cfg[CFG_TCP_KEEPALIVE_TIME_US] // 1_000_000
        if opt == OPT_KEEPINTVL:
            return core.cfg[CFG_TCP_KEEPALIVE_INTVL_US] // 1_000_000
        if opt == OPT_KEEPCNT:
            return core.cfg[CFG_TCP_KEEPALIVE_PROBES]
        if opt == OPT_RCVBUF:
            return core.cfg[CFG_TCP_RCVBUF]
        if opt == OPT_SNDBUF:
            return core.cfg[CFG_TCP_SNDBUF]
        if opt == OPT_LINGER:
            return np.int64(-1)
        if opt == OPT_MAXSEG:
            return np.int64(536)
        if opt == OPT_CONGESTION:
            return core.cfg[CFG_TCP_CC]
        if opt == OPT_TTL:
            return core.cfg[CFG_TTL] & 0xFF
        if opt == OPT_SYNCNT:
            return core.cfg[CFG_TCP_SYN_RETRIES]
        return np.int64(0)
    if not is_alloc(core, cid):
        return np.int64(-EINVAL)
    h = core.tcb.hot
    c = core.tcb.cold
    if opt == OPT_NODELAY:
        return np.int64(1 if (h.tflags[cid] & TF_NODELAY) != 0 else 0)
    if opt == OPT_CORK:
        return np.int64(1 if (h.tflags[cid] & TF_CORK) != 0 else 0)
    if opt == OPT_OOBINLINE:
        return np.int64(1 if (h.tflags[cid] & TF_OOBINLINE) != 0 else 0)
    if opt == OPT_SYNCNT:
        n = np.int64(c.syn_retries[cid])
        return n if n > 0 else core.cfg[CFG_TCP_SYN_RETRIES]
    if opt == OPT_USER_TIMEOUT:
        return np.int64(c.user_timeout_ms[cid])
    if opt == OPT_KEEPALIVE:
        return np.int64(1 if (h.tflags[cid] & TF_KEEPALIVE) != 0 else 0)
    if opt == OPT_KEEPIDLE:
        return np.int64(c.ka_idle_ms[cid]) // 1000
    if opt == OPT_KEEPINTVL:
        return np.int64(c.ka_intvl_us[cid]) // 1_000_000
    if opt == OPT_KEEPCNT:
        return np.int64(c.ka_probes[cid])
    if opt == OPT_RCVBUF:
        return np.int64(h.rcv_buf[cid])
    if opt == OPT_SNDBUF:
        return np.int64(h.snd_buf[cid])
    if opt == OPT_LINGER:
        return np.int64(c.linger_s[cid])
    if opt == OPT_MAXSEG:
        if _connected_state(h.state[cid]):
            return np.int64(h.mss[cid])
        um = np.int64(c.user_mss[cid])
        return um if um > 0 else np.int64(536)
    if opt == OPT_CONGESTION:
        return np.int64(h.cc_algo[cid])
    if opt == OPT_TOS:
        return np.int64(c.tos[cid]) | ecn_tos_bits(core.tcb, cid)
    if opt == OPT_TTL:
        return tcp_ttl(core, cid)
    return np.int64(-EINVAL)


# --- status ----------------------------------------------------------------------------------
@kernel_inline
def tcp_status_k(core, cid):
    """EV_* bits of connection ``cid`` (Linux tcp_poll, RFC 9293 §3.10.6 STATUS)."""
    if not is_alloc(core, cid):
        return np.int64(EV_CLOSED)
    h = core.tcb.hot
    c = core.tcb.cold
    st = h.state[cid]
    f = h.tflags[cid]
    ev = np.int64(0)
    if c.error[cid] != 0:
        ev |= EV_ERROR | EV_READABLE | EV_WRITABLE
    if h.rcv_q_bytes[cid] > tcp_urg_unreadable(core, cid):
        ev |= EV_READABLE
    if (f & (TF_FIN_RECEIVED | TF_RCV_SHUTDOWN)) != 0:
        ev |= EV_READABLE | EV_EOF
    if (f & TF_URG_DATA) != 0 and (c.urg_data[cid] & URG_VALID) != 0:
        ev |= EV_URGENT
    if st == TCPS_CLOSED:
        ev |= EV_CLOSED | EV_READABLE | EV_WRITABLE
    elif _connected_state(st):
        ev |= EV_CONNECTED
        if (f & TF_SND_SHUTDOWN) != 0:
            ev |= EV_WRITABLE  # a write fails at once with EPIPE
        elif st == TCPS_ESTABLISHED or st == TCPS_CLOSE_WAIT:
            free = np.int64(h.snd_buf[cid]) - np.int64(h.snd_q_bytes[cid])
            if free > 0 and 2 * free >= np.int64(h.snd_q_bytes[cid]):
                ev |= EV_WRITABLE  # Linux sk_stream_is_writeable: free >= queued / 2
    return ev


@kernel_inline
def tcp_conn_info_k(core, cid, out):
    """``ss -i``-like facts about connection ``cid`` into ``out`` (int64[CI_SIZE]); 0 or
    -EINVAL."""
    for i in range(out.shape[0]):
        out[i] = 0
    if not is_alloc(core, cid) or out.shape[0] < CI_SIZE:
        return np.int64(-EINVAL)
    h = core.tcb.hot
    c = core.tcb.cold
    f = h.tflags[cid]
    out[CI_LIP] = c.lip[cid]
    out[CI_LPORT] = c.lport[cid]
    out[CI_RIP] = c.rip[cid]
    out[CI_RPORT] = c.rport[cid]
    out[CI_STATE] = h.state[cid]
    out[CI_SND_Q] = h.snd_q_bytes[cid]
    out[CI_RCV_Q] = h.rcv_q_bytes[cid]
    out[CI_MSS] = h.mss[cid]
    out[CI_RCV_MSS] = h.rcv_mss[cid]
    out[CI_CWND] = h.cwnd[cid]
    out[CI_SSTHRESH] = h.ssthresh[cid]
    srtt = np.int64(h.srtt[cid])
    out[CI_SRTT_US] = srtt >> 3 if srtt > 0 else 0
    out[CI_RTTVAR_US] = np.int64(h.mdev[cid]) >> 2
    out[CI_RTO_US] = h.rto[cid]
    out[CI_SND_WND] = h.snd_wnd[cid]
    out[CI_RCV_WND] = h.rcv_wnd[cid]
    out[CI_RETRANS] = c.total_retrans[cid]
    out[CI_SEGS_IN] = c.segs_in[cid]
    out[CI_SEGS_OUT] = c.segs_out[cid]
    out[CI_BYTES_ACKED] = c.bytes_acked[cid]
    out[CI_BYTES_RECEIVED] = c.bytes_received[cid]
    ws = (f & TF_WSCALE_OK) != 0
    out[CI_SND_WSCALE] = h.snd_wscale[cid] if ws else -1
    out[CI_RCV_WSCALE] = h.rcv_wscale[cid] if ws else -1
    out[CI_FLAGS] = f
    out[CI_ERROR] = c.error[cid]
    out[CI_REORD_SEEN] = c.reord_seen[cid]
    out[CI_DSACK_DUPS] = c.dsack_dups[cid]
    return np.int64(0)


@kernel_inline
def tcp_listen_info_k(core, lid, out):
    """Listener ``lid`` in ``tcp_conn_info``'s layout (state LISTEN, CI_BACKLOG)."""
    for i in range(out.shape[0]):
        out[i] = 0
    ls = core.listen
    if not listen_is_valid(ls, lid) or out.shape[0] < CI_SIZE:
        return np.int64(-EINVAL)
    out[CI_LIP] = ls.rec.lip[lid]
    out[CI_LPORT] = ls.rec.lport[lid]
    out[CI_STATE] = 1  # TCPS_LISTEN
    out[CI_RCV_Q] = ls.rec.acc_count[lid]  # ss: Recv-Q of a listener is its accept queue
    out[CI_SND_Q] = ls.rec.backlog[lid]  # ss: Send-Q of a listener is its backlog
    out[CI_BACKLOG] = ls.rec.acc_count[lid]
    return np.int64(0)


@kernel_inline
def tcp_conn_list_k(core, out_ids):
    """Ids of the connections in any state but CLOSED (embryonic and TIME-WAIT included)."""
    t = core.tcb
    n = 0
    for cid in range(t.hot.state.shape[0]):
        if n >= out_ids.shape[0]:
            break
        if is_alloc(core, cid) and t.hot.state[cid] != TCPS_CLOSED:
            out_ids[n] = cid
            n += 1
    return np.int64(n)


@kernel_inline
def tcp_listen_list_k(core, out_ids):
    ls = core.listen
    n = 0
    for lid in range(ls.rec.shape[0]):
        if n >= out_ids.shape[0]:
            break
        if ls.rec.state[lid] == LS_LISTEN:
            out_ids[n] = lid
            n += 1
    return np.int64(n)


@kernel
def _chain_len(pool, head):
    n = 0
    f = head
    while f >= 0:
        n += 1
        f = pool.next[f]
    return n


@kernel_inline
def tcp_held_frames_k(core):
    """Frames held by the TCP queues of every connection (send, receive, out-of-order): the
    engine's share of ``Stack.audit``."""
    t = core.tcb
    h = t.hot
    pool = core.pool
    n = np.int64(0)
    for cid in range(h.state.shape[0]):
        if is_alloc(core, cid):
            n += _chain_len(pool, h.snd_q_head[cid])
            n += _chain_len(pool, h.rcv_q_head[cid])
            n += _chain_len(pool, h.ooo_head[cid])
    return n


# --- the one root Python calls ------------------------------------------------------------------
# Every usercall goes through ``usercall``: one compiled entry point (with one CPython wrapper)
# instead of one per call, since each wrapper costs seconds of compile time (fsdp.tcp.kernel).
# Jitted callers use the ``*_k`` kernels directly.
OP_BIND_CHECK = 0
@kernel
def tcp_listen_setopt_k(core, lid, opt, v):
    """An option set on a listening socket that its children must have from the SYN on:
    SO_RCVBUF (it sets the SYN-ACK's window and scale) and SO_SNDBUF, doubled and floored as
    for a connection, IP_TOS and IP_TTL (the SYN-ACK's header).  Other options are applied to
    each child when it is accepted.  Also the backlog of a second listen() (capped at
    somaxconn, as tcp_listen_k caps the first)."""
    ls = core.listen
    if not listen_is_valid(ls, lid):
        return np.int64(-EINVAL)
    if opt == OPT_BACKLOG:
        mx = core.cfg[CFG_SOMAXCONN]
        ls.rec.backlog[lid] = v if 0 <= v <= mx else mx
        return np.int64(0)
    if opt == OPT_TOS or opt == OPT_TTL:
        if v < 0 or v > 255:
            return np.int64(-EINVAL)
        if opt == OPT_TOS:
            ls.rec.tos[lid] = v
        else:
            ls.rec.ttl[lid] = v
        return np.int64(0)
    if v < 0:
        v = 0
    if opt == OPT_RCVBUF:
        if v > SYSCTL_RMEM_MAX:
            v = SYSCTL_RMEM_MAX
        b = 2 * v
        ls.rec.rcv_buf[lid] = b if b > SOCK_MIN_RCVBUF else SOCK_MIN_RCVBUF
    elif opt == OPT_SNDBUF:
        if v > SYSCTL_WMEM_MAX:
            v = SYSCTL_WMEM_MAX
        b = 2 * v
        ls.rec.snd_buf[lid] = b if b > SOCK_MIN_SNDBUF else SOCK_MIN_SNDBUF
    return np.int64(0)


OP_LISTEN = 1
OP_UNLISTEN = 2
OP_ACCEPT = 3
OP_ACCEPT_PENDING = 4
OP_LISTEN_STATUS = 5
OP_EPHEMERAL_PORT = 6
OP_CONNECT = 7
OP_TAKE_ERROR = 8
OP_SEND = 9
OP_RECV = 10
OP_SHUTDOWN = 11
OP_ABORT = 12
OP_CLOSE = 13
OP_SETOPT = 14
OP_GETOPT = 15
OP_STATUS = 16
OP_CONN_INFO = 17
OP_LISTEN_INFO = 18
OP_CONN_LIST = 19
OP_LISTEN_LIST = 20
OP_HELD_FRAMES = 21
OP_LISTEN_SETOPT = 22
OP_SEND_OOB = 23
OP_RECV_OOB = 24

# OP_RECV's ``c``: 0 a read, 1 a peek (MSG_PEEK), RECV_AS_POLLED a read as CPython makes it on a
# socket with a timeout: it waits for POLLIN before recv(2), and Linux does not count the urgent
# byte at the mark as readable (tcp_poll), so that byte alone is left where it is (EAGAIN)
# rather than skipped as recv(2) itself would (fsdp.tcp.urgent).
RECV_AS_POLLED = 2


@njit(cache=True)
def usercall(core, op, cid, a, b, c, d, now, buf, out, ids):
    """Dispatch usercall ``op``: integer arguments ``a..d``, byte buffer ``buf``, int64 output
    ``out``, int32 output ``ids``; returns the call's int64 result."""
    core = borrow_core(core)  # no per-array reference counting in the kernels below
    rc = np.int64(0)
    if op == OP_SEND:
        rc = tcp_send_k(core, cid, buf, a, b, now)
    elif op == OP_RECV:
        if c == RECV_AS_POLLED and _valid(core, cid) and tcp_urg_unreadable(core, cid) != 0 and (
            tcp_status_k(core, cid) & EV_READABLE
        ) == 0:
            rc = np.int64(-EAGAIN)  # only the urgent byte at the mark: not readable (below)
        else:
            rc = tcp_recv_k(core, cid, buf, a, b, c == 1, now)
    elif op == OP_STATUS:
        rc = tcp_status_k(core, cid)
    elif op == OP_BIND_CHECK:
        rc = tcp_bind_check_k(core, a, b, c)
    elif op == OP_LISTEN:
        rc = tcp_listen_k(core, a, b, c, d)
    elif op == OP_UNLISTEN:
        rc = tcp_unlisten_k(core, cid, now)
    elif op == OP_ACCEPT:
        rc = tcp_accept_k(core, cid)
        if rc >= 0 and out.shape[0] >= 4:  # the addresses accept() returns, in the same call
            c = core.tcb.cold
            out[CI_LIP] = c.lip[rc]
            out[CI_LPORT] = c.lport[rc]
            out[CI_RIP] = c.rip[rc]
            out[CI_RPORT] = c.rport[rc]
    elif op == OP_ACCEPT_PENDING:
        rc = tcp_accept_pending_k(core, cid)
    elif op == OP_LISTEN_STATUS:
        rc = tcp_listen_status_k(core, cid)
    elif op == OP_EPHEMERAL_PORT:
        rc = tcp_ephemeral_port_k(core, a, b, c)
    elif op == OP_CONNECT:
        rc = tcp_connect_k(core, a, b, c, d, cid, now)  # (cid: the IP header fields)
    elif op == OP_TAKE_ERROR:
        rc = tcp_take_error_k(core, cid)
        if rc == 0 and a != 0 and is_alloc(core, cid):
            # SO_ERROR: else the soft error, once (Linux sock_getsockopt: sk_err_soft)
            rc = np.int64(core.tcb.cold.soft_error[cid])
            core.tcb.cold.soft_error[cid] = 0
    elif op == OP_SHUTDOWN:
        rc = tcp_shutdown_k(core, cid, a, now)
    elif op == OP_ABORT:
        rc = tcp_abort_k(core, cid, now)
    elif op == OP_CLOSE:
        rc = tcp_close_k(core, cid, now)
    elif op == OP_SETOPT:
        rc = tcp_setopt_k(core, cid, a, b)
    elif op == OP_GETOPT:
        rc = tcp_getopt_k(core, cid, a)
    elif op == OP_CONN_INFO:
        rc = tcp_conn_info_k(core, cid, out)
    elif op == OP_LISTEN_INFO:
        rc = tcp_listen_info_k(core, cid, out)
    elif op == OP_CONN_LIST:
        rc = tcp_conn_list_k(core, ids)
    elif op == OP_LISTEN_LIST:
        rc = tcp_listen_list_k(core, ids)
    elif op == OP_HELD_FRAMES:
        rc = tcp_held_frames_k(core)
    elif op == OP_LISTEN_SETOPT:
        rc = tcp_listen_setopt_k(core, cid, a, b)
    elif op == OP_SEND_OOB:
        rc = tcp_send_oob_k(core, cid, buf, a, b, now)
    elif op == OP_RECV_OOB:
        rc = tcp_recv_urg_k(core, cid, c != 0) if _valid(core, cid) else np.int64(-EINVAL)
    else:
        rc = np.int64(-EINVAL)
    # What the call queued (data, a FIN, a window update, a SYN, RSTs) leaves now, as a send(2)
    # on Linux transmits before it returns: the caller needs no extra pass of the loop for it.
    if core.var[V_TX_N] > 0 or core.var[V_TX_OVF_HEAD] >= 0:
        tx_flush(core, now if now > 0 else core.var[V_NOW])
    return rc


# The unused array arguments of a call: one of each type, so every call has the same types
UC_U8 = _U8 = np.zeros(1, np.uint8)
UC_I64 = _I64 = np.zeros(1, np.int64)
UC_I32 = _I32 = np.zeros(1, np.int32)
# usercall's compiled entry for the argument types the wrappers below always pass
_ENTRY = RootEntry(usercall, *([types.int64] * 7), types.Array(types.uint8, 1, "C"),
                   types.Array(types.int64, 1, "C"), types.Array(types.int32, 1, "C"))


def usercall_entry(core):
    """``usercall`` for ``core`` without the wrappers below: called with Python ints and the
    arrays exactly as they pass them (the socket layer's per-connection hot path keeps one per
    core, so a call is one C call: no wrapper, no entry lookup)."""
    return _ENTRY.get(core)


def _bytes_arg(data) -> np.ndarray:
    """``data`` as the dispatcher's one buffer type: 1-D, C-contiguous, writable uint8 (a
    read-only buffer, e.g. from ``bytes``, is copied: its type would compile a second root)."""
    a = np.asarray(data, dtype=np.uint8).reshape(-1)
    if not a.flags.c_contiguous or not a.flags.writeable:
        a = np.array(a, dtype=np.uint8, copy=True)
    return a


def _call(core, op, cid=-1, a=0, b=0, c=0, d=0, now=0, buf=_U8, out=_I64, ids=_I32) -> int:
    return int(usercall(core, op, int(cid), int(a), int(b), int(c), int(d), int(now), buf, out,
                        ids))


# --- the usercall API (Python entry points; see the module doc for semantics) -------------------
def _reuse_bits(reuseaddr, reuseport) -> int:
    return (REUSE_ADDR if reuseaddr else 0) | (REUSE_PORT if reuseport else 0)


def tcp_bind_check(core, lip, lport, reuseaddr, reuseport=False) -> int:
    """0 if ``lip:lport`` may be bound by a socket with these options, else -EADDRINUSE."""
    return _call(core, OP_BIND_CHECK, a=lip, b=lport, c=_reuse_bits(reuseaddr, reuseport))


def tcp_listen(core, lip, lport, backlog, reuseaddr, reuseport=False) -> int:
    """A listener on ``lip:lport`` (0 = any address): its id, -EADDRINUSE or -ENOBUFS.  With
    ``reuseport`` it joins the SO_REUSEPORT listeners already on the address, if any."""
    return _call(core, OP_LISTEN, a=lip, b=lport, c=backlog,
                 d=_reuse_bits(reuseaddr, reuseport))


def tcp_listen_setopt(core, lid, opt, value) -> int:
    """SO_RCVBUF / SO_SNDBUF (OPT_*) of listener ``lid``, for its children, or its backlog
    (OPT_BACKLOG): 0 or -EINVAL."""
    return _call(core, OP_LISTEN_SETOPT, lid, a=opt, b=value)


def tcp_unlisten(core, lid, now) -> int:
    """Close a listener; connections never accepted are reset (as Linux)."""
    return _call(core, OP_UNLISTEN, lid, now=now)


def tcp_accept(core, lid, addrs=_I64) -> int:
    """The oldest established connection of listener ``lid``, or -EAGAIN.  ``addrs``
    (1-D C-contiguous int64, 4 or more) receives its (lip, lport, rip, rport) at CI_LIP ..
    CI_RPORT."""
    # (the calls a socket makes per connection go straight to the compiled entry: _call's
    # keyword binding and the dispatcher's type resolution each cost about what the call does)
    if addrs.dtype != np.int64 or addrs.ndim != 1 or not addrs.flags.c_contiguous:
        raise TypeError("addrs must be a 1-D C-contiguous int64 array")
    return int(_ENTRY.get(core)(core, OP_ACCEPT, int(lid), 0, 0, 0, 0, 0, _U8, addrs, _I32))


def tcp_accept_pending(core, lid) -> int:
    return _call(core, OP_ACCEPT_PENDING, lid)


def tcp_listen_status(core, lid) -> int:
    """EV_READABLE when the accept queue is not empty."""
    return _call(core, OP_LISTEN_STATUS, lid)


def tcp_ephemeral_port(core, lip, rip, rport) -> int:
    """A free local port (32768-60999) for ``rip:rport``, or -EADDRNOTAVAIL."""
    return _call(core, OP_EPHEMERAL_PORT, a=lip, b=rip, c=rport)


def tcp_connect(core, lip, lport, rip, rport, now, tos: int = 0, ttl: int = 0) -> int:
    """Active open: a SYN-SENT connection's id, or -errno.  ``tos``/``ttl``: the socket's
    IP_TOS / IP_TTL (0 TTL: the stack's), carried from the SYN on."""
    return _call(core, OP_CONNECT, (tos & 0xFF) | ((ttl & 0xFF) << 8), a=lip, b=lport, c=rip,
                 d=rport, now=now)


def tcp_take_error(core, cid, soft: bool = False) -> int:
    """The pending errno (cleared), 0 if none; with ``soft`` (SO_ERROR), else the last ICMP
    error of a synchronized connection (cleared)."""
    return _call(core, OP_TAKE_ERROR, cid, a=int(soft))


def tcp_send(core, cid, data, off, n, now) -> int:
    """Queue ``data[off:off+n]`` (uint8): bytes accepted or -errno."""
    return int(_ENTRY.get(core)(core, OP_SEND, int(cid), int(off), int(n), 0, 0, int(now),
                                _bytes_arg(data), _I64, _I32))


def tcp_send_array(core, cid, arr, n, now) -> int:
    """``tcp_send`` of ``arr[:n]``; ``arr`` must already be the dispatcher's buffer type (1-D,
    C-contiguous, writable uint8) and the others ints: the socket layer's hot path, with no
    conversion and no type resolution."""
    return _ENTRY.get(core)(core, OP_SEND, cid, 0, n, 0, 0, now, arr, _I64, _I32)


def tcp_recv(core, cid, out, off, n, peek, now) -> int:
    """Read into ``out[off:off+n]`` (writable uint8): bytes, 0 at EOF, or -errno."""
    return int(usercall(core, OP_RECV, int(cid), int(off), int(n), 1 if peek else 0, 0,
                        int(now), out, _I64, _I32))


def tcp_recv_array(core, cid, out, n, peek, now) -> int:
    """``tcp_recv`` into ``out[:n]``; ``out`` must be 1-D, C-contiguous, writable uint8 and the
    others ints (``peek`` 0 or 1): the socket layer's hot path, with no type resolution."""
    return _ENTRY.get(core)(core, OP_RECV, cid, 0, n, peek, 0, now, out, _I64, _I32)


def tcp_send_oob(core, cid, data, off, n, now) -> int:
    """``tcp_send`` of urgent data (send(MSG_OOB)): its last byte is out of band."""
    return _call(core, OP_SEND_OOB, cid, a=off, b=n, now=now, buf=_bytes_arg(data))


def tcp_recv_oob(core, cid, peek) -> int:
    """recv(MSG_OOB): the urgent byte (0..255), ``URG_RECV_EOF``, or -errno; never waits."""
    return _call(core, OP_RECV_OOB, cid, c=1 if peek else 0)


def tcp_shutdown(core, cid, how, now) -> int:
    """shutdown(2), how = SHUT_RD (0), SHUT_WR (1), SHUT_RDWR (2): 0 or -ENOTCONN."""
    return _call(core, OP_SHUTDOWN, cid, a=how, now=now)


def tcp_close(core, cid, now) -> int:
    """The application lets go: RST if data is unread, else FIN; the engine frees the TCB."""
    return int(_ENTRY.get(core)(core, OP_CLOSE, int(cid), 0, 0, 0, 0, int(now), _U8, _I64, _I32))


def tcp_abort(core, cid, now) -> int:
    """SO_LINGER 0 close: RST now, TCB freed."""
    return _call(core, OP_ABORT, cid, now=now)


def tcp_setopt(core, cid, opt, value) -> int:
    """Set an OPT_* option: 0 or -EINVAL."""
    return _call(core, OP_SETOPT, cid, a=opt, b=value)


def tcp_getopt(core, cid, opt) -> int:
    """An OPT_* option's value; ``cid`` -1 gives the default for a new socket."""
    return _call(core, OP_GETOPT, cid, a=opt)


def tcp_status(core, cid) -> int:
    """EV_* bits."""
    return int(_ENTRY.get(core)(core, OP_STATUS, int(cid), 0, 0, 0, 0, 0, _U8, _I64, _I32))


def tcp_conn_info(core, cid, out) -> int:
    """Fill ``out`` (int64[CI_SIZE]) with the CI_* facts of connection ``cid``."""
    return _call(core, OP_CONN_INFO, cid, out=out)


def tcp_listen_info(core, lid, out) -> int:
    """Fill ``out`` (int64[CI_SIZE]) with listener ``lid``'s facts."""
    return _call(core, OP_LISTEN_INFO, lid, out=out)


def tcp_conn_list(core, out_ids) -> int:
    """Ids of live connections (any state but CLOSED) into ``out_ids`` (int32); the count."""
    return _call(core, OP_CONN_LIST, ids=out_ids)


def tcp_listen_list(core, out_ids) -> int:
    """Ids of listeners into ``out_ids`` (int32); the count."""
    return _call(core, OP_LISTEN_LIST, ids=out_ids)


def tcp_held_frames(core) -> int:
    """Frames held by every connection's send, receive and out-of-order queues (audit)."""
    return _call(core, OP_HELD_FRAMES)
