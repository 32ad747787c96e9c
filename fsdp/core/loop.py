"""The per-core poll loop: ``run_once(core, now)``, one jitted pass (DESIGN.md §1).

    rx_burst -> Ethernet demux -> ARP | IPv4 -> ICMP | UDP | TCP
    -> due timers -> (application calls) -> tx_burst

Python enters once per pass, not once per packet.  ``now`` is integer microseconds: a monotonic
clock in production, a virtual clock in tests.
"""

import numpy as np
from numba import njit

from fsdp.core.config import CFG_CAPTURE, CFG_MAC, CFG_RX_BURST
from fsdp.core.output import CAPTURE_RX, capture_frame, take_looped, tx_flush
from fsdp.core.stats import (
    STAT_ETH_NOT_FOR_US,
    STAT_ETH_TRUNCATED,
    STAT_ETH_UNKNOWN_TYPE,
    STAT_IP_UNKNOWN_PROTO,
    STAT_RX_BYTES,
    STAT_RX_FRAMES,
)
from fsdp.core.timerwheel import timer_next_deadline, timer_work_due
from fsdp.core.vars import (
    NO_DEADLINE,
    V_ARP_TIMER_US,
    V_IPFRAG_TIMER_US,
    V_LO_IN_HEAD,
    V_NOW,
    V_PASSES,
)
from fsdp.driver.api import nic_next_event, nic_rx_burst
from fsdp.driver.jitmem import borrow_core
from fsdp.pool.pool import frame_free
from fsdp.tcp.icmp import icmp_input, icmp_send_error
from fsdp.tcp.input import tcp_input
from fsdp.tcp.ip import ip_validate
from fsdp.tcp.ipfrag import ip_reassemble, ipfrag_expire
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.neighbor import arp_input, arp_timers
from fsdp.tcp.tcb import TCB_META_TOUCH_EPOCH, TCB_META_TOUCHED, TOUCH_LOG_SIZE
from fsdp.tcp.tcp_timers import tcp_timers_run
from fsdp.tcp.udp import udp_input
from fsdp.tcp.usercalls import tcp_listen_status_k, tcp_status_k
from fsdp.wire.ethernet import (
    ETH_HLEN,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    MAC_BROADCAST,
    eth_dst,
    eth_type,
)
from fsdp.wire.icmp import ICMP_DEST_UNREACH, ICMP_UNREACH_PROTOCOL
from fsdp.wire.ipv4 import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ip_is_fragment, ip_proto


@kernel_inline
def ip_input(core, fid, now):
    kind = ip_validate(core, fid)
    if kind < 0:
        return
    pool = core.pool
    if ip_is_fragment(pool.data[fid], pool.off[fid] + ETH_HLEN):
        fid = ip_reassemble(core, fid, kind, now)
        if fid < 0:
            return  # held until the datagram is complete (or dropped, counted)
    proto = ip_proto(pool.data[fid], pool.off[fid] + ETH_HLEN)
    if proto == IPPROTO_TCP:
        tcp_input(core, fid, kind, now)
    elif proto == IPPROTO_ICMP:
        icmp_input(core, fid, kind, now)
    elif proto == IPPROTO_UDP:
        udp_input(core, fid, kind, now)
    else:
        # RFC 1122 §3.2.2.1: protocol unreachable SHOULD be sent (Linux does).
        core.stats[STAT_IP_UNKNOWN_PROTO] += 1
        icmp_send_error(core, fid, kind, ICMP_DEST_UNREACH, ICMP_UNREACH_PROTOCOL, 0, now)
        frame_free(pool, fid)


@kernel
def eth_input(core, fid, now):
    """Demultiplex one received frame by EtherType; every path frees or keeps the frame."""
    pool = core.pool
    n = pool.length[fid]
    core.stats[STAT_RX_FRAMES] += 1
    core.stats[STAT_RX_BYTES] += n
    if core.cfg[CFG_CAPTURE]:
        capture_frame(core, fid, now, CAPTURE_RX)
    if n < ETH_HLEN:
        core.stats[STAT_ETH_TRUNCATED] += 1
        frame_free(pool, fid)
        return
    buf = pool.data[fid]
    off = pool.off[fid]
    dst = eth_dst(buf, off)
    if dst != core.cfg[CFG_MAC] and dst != MAC_BROADCAST:
        # Another station's unicast (promiscuous delivery) or a multicast group we never joined.
        core.stats[STAT_ETH_NOT_FOR_US] += 1
        frame_free(pool, fid)
        return
    t = eth_type(buf, off)
    if t == ETHERTYPE_IPV4:
        ip_input(core, fid, now)
    elif t == ETHERTYPE_ARP:
        arp_input(core, fid, now)
    else:
        core.stats[STAT_ETH_UNKNOWN_TYPE] += 1
        frame_free(pool, fid)


@kernel
def core_timers(core, now):
    t = core.var[V_ARP_TIMER_US]
    if t != NO_DEADLINE and t <= now:
        arp_timers(core, now)
    t = core.var[V_IPFRAG_TIMER_US]
    if t != NO_DEADLINE and t <= now:
        ipfrag_expire(core, now)
    if timer_work_due(core.timers, now):
        tcp_timers_run(core, now)


@njit(cache=True)
def run_once(core, now):
    """One pass of the core's loop at time ``now`` (µs); returns the number of frames received."""
    # every engine kernel takes the whole CoreState: borrowed, its ~70 arrays cost no atomic
    # reference counting per call (fsdp.driver.jitmem.borrow_core)
    core = borrow_core(core)
    core.var[V_NOW] = now
    core.var[V_PASSES] += 1
    n = nic_rx_burst(core.nic, core.pool, core.rx_ids, core.cfg[CFG_RX_BURST], now)
    for i in range(n):
        eth_input(core, core.rx_ids[i], now)
    if core.var[V_LO_IN_HEAD] >= 0:  # what this host sent itself (core/output.py)
        fid = take_looped(core)
        pool = core.pool
        while fid >= 0:
            nxt = pool.next[fid]
            pool.next[fid] = -1
            eth_input(core, fid, now)
            n += 1
            fid = nxt
    core_timers(core, now)
    tx_flush(core, now)
    return n


@njit(cache=True)
def next_deadline(core):
    """The earliest time (µs) something is due on this core, or NO_DEADLINE."""
    core = borrow_core(core)
    d = core.var[V_ARP_TIMER_US]
    f = core.var[V_IPFRAG_TIMER_US]
    if f != NO_DEADLINE and (d == NO_DEADLINE or f < d):
        d = f
    w = timer_next_deadline(core.timers)
    if w != NO_DEADLINE and (d == NO_DEADLINE or w < d):
        d = w
    e = nic_next_event(core.nic)
    if e != NO_DEADLINE and (d == NO_DEADLINE or e < d):
        d = e
    if core.var[V_LO_IN_HEAD] >= 0:
        d = core.var[V_NOW]  # frames this host sent itself wait for the next pass
    return d


# ---- readiness for selectors: one pass plus the status of many sockets in one call ----
# A selector's rows on one core: int64, POLL_ROW values a row, flat.
POLL_ROW = 5
PR_ID = 0  # a connection id, or a listener id (kind 1); < 0: a free row
PR_STATUS = 1  # out: EV_* bits after the pass (fsdp.tcp.usercalls); kept from the last look
PR_KIND = 2  # 0 a connection, 1 a listener
PR_WANTED = 3  # EV_* bits that make the row ready
PR_SEEN = 4  # the SEL_PASS that last looked at the row (so a pass looks at a row once)
# ... and its cursor, int64[SEL_SIZE]:
SEL_POS = 0  # how far it has read its core's touched log (TCB_META_TOUCHED then)
SEL_NREADY = 1  # ready[:SEL_NREADY]: rows to look at again (last pass's ready ones, new ones)
SEL_FULL = 2  # nonzero: look at every row this pass (set at first, and when unsure)
SEL_PASS = 3  # passes that looked at rows incrementally
SEL_NLISTEN = 4  # listener rows, looked at every pass: lrows[:SEL_NLISTEN]
SEL_SHARED = 5  # connection ids with two rows (rowof names one): look at every row meanwhile
SEL_SIZE = 8


@njit(inline="always", cache=True)
def _row_status(core, rows, r):
    """Recompute row ``r``'s (offset) PR_STATUS; True if a wanted bit is set."""
    ident = rows[r + PR_ID]
    if ident < 0:
        rows[r + PR_STATUS] = 0
        return False
    if rows[r + PR_KIND] == 1:
        ev = tcp_listen_status_k(core, ident)
    else:
        ev = tcp_status_k(core, ident)
    rows[r + PR_STATUS] = ev
    return (ev & rows[r + PR_WANTED]) != 0


@njit(inline="always", cache=True)
def _look_once(core, rows, i, p, ready, k):
    """Row ``i``'s status, at most once in incremental pass ``p`` (PR_SEEN): its index goes to
    ``ready[k]`` if a wanted bit is set.  Returns the new count of ready rows."""
    r = i * POLL_ROW
    if rows[r + PR_SEEN] == p:
        return k
    rows[r + PR_SEEN] = p
    if _row_status(core, rows, r):
        ready[k] = i
        return k + 1
    return k


@njit(cache=True)
def poll_status(core, now, rows, ready, sel, rowof, lrows):
    """``run_once(core, now)``, then the EV_* status of a selector's rows on this core: what it
    needs to know of all its sockets here, in one call instead of one per socket.

    Level-triggered, in O(ready + changed), as epoll's ready list: a connection's status can
    change only where a column ``tcp_status_k`` reads is written, and each such place logs the
    id (``fsdp.tcp.tcb.tcb_touch``).  So a pass looks at the rows that were ready last time
    (still ready?) or that the selector added (``ready[:sel[SEL_NREADY]]``), the rows of the
    ids logged since ``sel[SEL_POS]`` (``rowof``: connection id -> row, int32, -1 none), and
    every listener row (``lrows[:sel[SEL_NLISTEN]]``; few).  Every other row's PR_STATUS is
    still right: nothing it depends on was written.  Every row is looked at when
    ``sel[SEL_FULL]`` is set or the log wrapped past the selector's position.  The log is
    read, never consumed: each selector has its own position.

    The indices of the ready rows go to ``ready`` (int64, at least as many as there are rows).
    Returns frames received * 2**32 + how many rows are ready.  No rows: a pass only."""
    core = borrow_core(core)
    n = run_once(core, now)
    nrows = rows.shape[0] // POLL_ROW
    if nrows == 0:
        return np.int64(n) << 32
    t = core.tcb
    head = t.meta[TCB_META_TOUCHED]
    pos = sel[SEL_POS]
    k = 0
    # (tcb_touch may overwrite the slot of entry head - TOUCH_LOG_SIZE: not read here)
    if sel[SEL_FULL] != 0 or sel[SEL_SHARED] != 0 or head - pos >= TOUCH_LOG_SIZE or head < pos:
        for i in range(nrows):
            if _row_status(core, rows, i * POLL_ROW):
                ready[k] = i
                k += 1
        sel[SEL_FULL] = 0
    else:
        p = sel[SEL_PASS] + 1
        sel[SEL_PASS] = p
        # the rows to look at again, compacted in place (k <= j: nothing unread is overwritten)
        for j in range(sel[SEL_NREADY]):
            k = _look_once(core, rows, ready[j], p, ready, k)
        log = t.touch_log
        for q in range(pos, head):
            i = rowof[log[q & (TOUCH_LOG_SIZE - 1)]]
            if i >= 0:
                k = _look_once(core, rows, i, p, ready, k)
        for j in range(sel[SEL_NLISTEN]):
            k = _look_once(core, rows, lrows[j], p, ready, k)
    sel[SEL_POS] = head
    sel[SEL_NREADY] = k
    # a new epoch: an id touched from now on is logged again, after this position
    t.meta[TCB_META_TOUCH_EPOCH] += 1
    return (np.int64(n) << 32) + k
