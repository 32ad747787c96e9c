"""The per-core listen table, and which local ports are in use (Fastsocket's local listen table).

Each core has its own table (*listen spawn*: ``listen()`` installs the listener in every core's
table, so a SYN is answered by the core the NIC steered it to, with nothing shared).  A listener
is an id into a record array (``rec``, one record per listener); listeners on one port are
chained through ``next`` from ``port_head[port]``, so finding the listener of a SYN is one array
load and a short walk.

A listener owns two lists of connection ids, linked through the TCB's ``link_prev`` /
``link_next`` columns (a TCB is on at most one list: this one or the TIME-WAIT FIFO):

* ``syn_*``: its children in SYN-RECEIVED (Linux's request sockets; they count against the SYN
  backlog, which is the listen backlog as in Linux);
* ``acc_*``: established children waiting for ``accept()``, oldest first.

Limits are Linux's (net/ipv4/tcp_input.c ``tcp_conn_request``, include/net/sock.h):
``max_backlog = min(backlog, somaxconn)``; the SYN queue is full when it holds *more* than
``max_backlog`` children and the accept queue when it holds more than ``max_backlog`` (so
``listen(s, 0)`` still takes one connection, as on Linux).

``port_refs[p]`` counts the connections (any state, TIME-WAIT included) whose local port is
``p``: bind() and listen() consult it for EADDRINUSE, connect() for a free ephemeral port.

SO_REUSEPORT groups (Linux net/core/sock_reuseport.c): listeners that all set SO_REUSEPORT may
share a port.  The listeners of a port with the same bound address and SO_REUSEPORT are one
group; a SYN picks one member by a keyed hash of its 4-tuple, so every segment of a flow
(retransmitted SYN, cookie ACK, TIME-WAIT reopen) picks the same member while the group is
unchanged.  There is no group record: the members are found on the port's chain.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from fsdp.atomic import fetch_and
from fsdp.tcp.flowtable import flow_hash

LISTEN_MAX = 1024  # listeners per core
LS_FREE = 0
LS_LISTEN = 1

# ``reuse`` bits of a listener and of a connection (TCB cold.reuse): the socket options a later
# bind() of the port is checked against (Linux sk_reuse / sk_reuseport; a child and a TIME-WAIT
# keep their listener's / socket's, as sk_clone_lock and inet_twsk_alloc copy them)
REUSE_ADDR = 1  # SO_REUSEADDR
REUSE_PORT = 2  # SO_REUSEPORT

# meta indices
LM_FREE_HEAD = 0  # first free listener id (chained through ``next``), -1 = full
LM_IN_USE = 1
LM_PORT_CURSOR = 2  # ephemeral port search position (Linux: per-destination perturbation)
LM_SIZE = 4

PORT_EPHEMERAL_LO = 32768  # Linux net.ipv4.ip_local_port_range
PORT_EPHEMERAL_HI = 60999


LISTEN_DTYPE = np.dtype(
    [
        ("state", np.int8),  # LS_*
        ("lip", np.int64),  # bound address, 0 = any
        ("lport", np.int32),
        ("backlog", np.int32),  # min(backlog, somaxconn)
        ("reuse", np.int8),  # REUSE_* bits: SO_REUSEADDR, SO_REUSEPORT
        ("next", np.int32),  # next listener on the same port / next free id
        ("gen", np.uint32),  # allocations of this id
        ("syn_head", np.int32),  # SYN-RECEIVED children
        ("syn_count", np.int32),
        ("acc_head", np.int32),  # accept queue, oldest first
        ("acc_tail", np.int32),
        ("acc_count", np.int32),
        ("ov_us", np.int64),  # last SYN cookie sent (cookie ACKs are checked for 2 min after)
        # SO_RCVBUF / SO_SNDBUF set on the listening socket (stored doubled, as Linux), 0 = the
        # stack's default: children inherit them from the SYN on (the SYN-ACK's window and
        # scale already follow a small SO_RCVBUF, Linux tcp_openreq_init_rwin)
        ("rcv_buf", np.int32),
        ("snd_buf", np.int32),
        # IP_TOS / IP_TTL of the listening socket (0 TTL: the stack's): the SYN-ACK carries
        # them and the children inherit them (Linux sk_clone_lock copies the inet socket)
        ("tos", np.uint8),
        ("ttl", np.uint8),
    ]
)


class ListenTable(NamedTuple):
    rec: np.ndarray  # np.recarray of LISTEN_DTYPE, one record per listener id
    port_head: np.ndarray  # int32[65536]: first listener on each port, -1 = none
    port_refs: np.ndarray  # int32[65536]: connections using each local port
    meta: np.ndarray  # int64[LM_SIZE]


def listen_table_create(seed: int = 0) -> ListenTable:
    n = LISTEN_MAX
    rec = np.zeros(n, LISTEN_DTYPE).view(np.recarray)
    rec.next[:] = np.arange(1, n + 1, dtype=np.int32)
    rec.next[-1] = -1
    for f in ("syn_head", "acc_head", "acc_tail"):
        rec[f] = -1
    meta = np.zeros(LM_SIZE, np.int64)
    meta[LM_FREE_HEAD] = 0
    meta[LM_PORT_CURSOR] = seed % (PORT_EPHEMERAL_HI - PORT_EPHEMERAL_LO + 1)
    return ListenTable(
        rec=rec,
        port_head=np.full(65536, -1, np.int32),
        port_refs=np.zeros(65536, np.int32),
        meta=meta,
    )


@njit(inline="always", cache=True)
def listen_is_valid(ls, lid):
    return lid >= 0 and lid < ls.rec.shape[0] and ls.rec.state[lid] == LS_LISTEN


@njit(inline="always", cache=True)
def _same_group(ls, lid, lip):
    """True if listener ``lid`` belongs to the SO_REUSEPORT group bound to ``lip`` (Linux
    inet_reuseport_add_sock: SO_REUSEPORT, and the same address, a wildcard matching only a
    wildcard)."""
    return ls.rec.lip[lid] == lip and (ls.rec.reuse[lid] & REUSE_PORT) != 0


@njit(cache=True)
def listen_lookup(ls, flows, dst, dport, src, sport):
    """The listener for a segment ``src:sport -> dst:dport``, or -1.  One bound to ``dst``
    exactly wins over a wildcard one (Linux compute_score); when the winner is in an
    SO_REUSEPORT group, a member picked by the flow's hash (Linux lookup_reuseport:
    reuseport_select_sock, ``reciprocal_scale(inet_ehashfn(...), num_socks)``)."""
    best = -1
    lid = ls.port_head[dport]
    while lid >= 0:
        a = ls.rec.lip[lid]
        if a == dst:
            best = lid
            break
        if a == 0 and best < 0:
            best = lid
        lid = ls.rec.next[lid]
    if best < 0 or (ls.rec.reuse[best] & REUSE_PORT) == 0:
        return best
    lip = ls.rec.lip[best]
    n = 0
    lid = ls.port_head[dport]
    while lid >= 0:
        if _same_group(ls, lid, lip):
            n += 1
        lid = ls.rec.next[lid]
    if n == 1:
        return best
    # Linux reciprocal_scale: the high 32 bits of the hash times n, in [0, n)
    k = np.int64(((flow_hash(flows, dst, dport, src, sport) >> np.uint64(32)) * np.uint64(n))
                 >> np.uint64(32))
    lid = ls.port_head[dport]
    while lid >= 0:
        if _same_group(ls, lid, lip):
            if k == 0:
                return lid
            k -= 1
        lid = ls.rec.next[lid]
    return best  # not reached: the group has n members


@njit(cache=True)
def listen_conflict(ls, lip, lport, reuse):
    """True if a listener holds ``lport`` on an address overlapping ``lip`` (0 = any), unless
    both it and the binding socket (``reuse``: its REUSE_* bits) set SO_REUSEPORT (Linux
    inet_bind_conflict: SO_REUSEADDR never shares a port with a listener, SO_REUSEPORT does,
    whatever the two addresses)."""
    lid = ls.port_head[lport]
    while lid >= 0:
        a = ls.rec.lip[lid]
        if a == 0 or lip == 0 or a == lip:
            if (reuse & REUSE_PORT) == 0 or (ls.rec.reuse[lid] & REUSE_PORT) == 0:
                return True
        lid = ls.rec.next[lid]
    return False


@njit(cache=True)
def listen_note_overflow(ls, lid, now):
    """Stamp the SYN-cookie window of listener ``lid``: a cookie ACK is checked for 2 minutes
    after.  An SO_REUSEPORT group shares one stamp (Linux tcp_synq_overflow keeps it in the
    group, reuse->synq_overflow_ts), so the ACK is taken whichever member it lands on."""
    t = now if now != 0 else 1
    if (ls.rec.reuse[lid] & REUSE_PORT) == 0:
        ls.rec.ov_us[lid] = t
        return
    lip = ls.rec.lip[lid]
    m = ls.port_head[ls.rec.lport[lid]]
    while m >= 0:
        if _same_group(ls, m, lip):
            ls.rec.ov_us[m] = t
        m = ls.rec.next[m]


@njit(cache=True)
def listen_add(ls, lip, lport, backlog, reuse):
    """A new listener with REUSE_* bits ``reuse`` (no conflict check here); its id, or -1 when
    the table is full.  A new SO_REUSEPORT group member takes the group's SYN-cookie stamp."""
    lid = ls.meta[LM_FREE_HEAD]
    if lid < 0:
        return np.int64(-1)
    ls.meta[LM_FREE_HEAD] = ls.rec.next[lid]
    ls.meta[LM_IN_USE] += 1
    ls.rec.state[lid] = LS_LISTEN
    ls.rec.lip[lid] = lip
    ls.rec.lport[lid] = lport
    ls.rec.backlog[lid] = backlog
    ls.rec.reuse[lid] = reuse
    ls.rec.gen[lid] += 1
    ls.rec.syn_head[lid] = -1
    ls.rec.syn_count[lid] = 0
    ls.rec.acc_head[lid] = -1
    ls.rec.acc_tail[lid] = -1
    ls.rec.acc_count[lid] = 0
    ls.rec.ov_us[lid] = 0
    if (reuse & REUSE_PORT) != 0:
        m = ls.port_head[lport]
        while m >= 0:
            if _same_group(ls, m, lip):
                ls.rec.ov_us[lid] = ls.rec.ov_us[m]
                break
            m = ls.rec.next[m]
    ls.rec.rcv_buf[lid] = 0
    ls.rec.snd_buf[lid] = 0
    ls.rec.tos[lid] = 0
    ls.rec.ttl[lid] = 0
    ls.rec.next[lid] = ls.port_head[lport]
    ls.port_head[lport] = lid
    return np.int64(lid)


@njit(cache=True)
def listen_remove(ls, lid):
    """Unchain listener ``lid`` from its port and free the id (its lists must be empty)."""
    port = ls.rec.lport[lid]
    prev = -1
    cur = ls.port_head[port]
    while cur >= 0 and cur != lid:
        prev = cur
        cur = ls.rec.next[cur]
    if cur == lid:
        if prev < 0:
            ls.port_head[port] = ls.rec.next[lid]
        else:
            ls.rec.next[prev] = ls.rec.next[lid]
    ls.rec.state[lid] = LS_FREE
    ls.rec.next[lid] = ls.meta[LM_FREE_HEAD]
    ls.meta[LM_FREE_HEAD] = lid
    ls.meta[LM_IN_USE] -= 1


@njit(inline="always", cache=True)
def listen_syn_queue_full(ls, lid):
    """Linux inet_csk_reqsk_queue_is_full: more SYN-RECEIVED children than the backlog."""
    return ls.rec.syn_count[lid] > ls.rec.backlog[lid]


@njit(inline="always", cache=True)
def listen_accept_queue_full(ls, lid):
    """Linux sk_acceptq_is_full: more queued connections than the backlog."""
    return ls.rec.acc_count[lid] > ls.rec.backlog[lid]


# --- the two child lists (links are TCB columns: cold.link_prev / cold.link_next) ------------
@njit(inline="always", cache=True)
def _unlink(cold, cid):
    p = cold.link_prev[cid]
    n = cold.link_next[cid]
    if p >= 0:
        cold.link_next[p] = n
    if n >= 0:
        cold.link_prev[n] = p
    cold.link_prev[cid] = -1
    cold.link_next[cid] = -1
    return p, n


@njit(cache=True)
def listen_syn_add(ls, cold, lid, cid):
    cold.link_prev[cid] = -1
    h = ls.rec.syn_head[lid]
    cold.link_next[cid] = h
    if h >= 0:
        cold.link_prev[h] = cid
    ls.rec.syn_head[lid] = cid
    ls.rec.syn_count[lid] += 1


@njit(cache=True)
def listen_syn_remove(ls, cold, lid, cid):
    if ls.rec.syn_head[lid] == cid:
        ls.rec.syn_head[lid] = cold.link_next[cid]
    _unlink(cold, cid)
    ls.rec.syn_count[lid] -= 1


@njit(cache=True)
def listen_acc_add(ls, cold, lid, cid):
    t = ls.rec.acc_tail[lid]
    cold.link_next[cid] = -1
    cold.link_prev[cid] = t
    if t >= 0:
        cold.link_next[t] = cid
    else:
        ls.rec.acc_head[lid] = cid
    ls.rec.acc_tail[lid] = cid
    ls.rec.acc_count[lid] += 1


@njit(cache=True)
def listen_acc_remove(ls, cold, lid, cid):
    if ls.rec.acc_head[lid] == cid:
        ls.rec.acc_head[lid] = cold.link_next[cid]
    if ls.rec.acc_tail[lid] == cid:
        ls.rec.acc_tail[lid] = cold.link_prev[cid]
    _unlink(cold, cid)
    ls.rec.acc_count[lid] -= 1


@njit(cache=True)
def listen_map_forget(listen_map, core_id):
    """Clear core ``core_id``'s bit from every port of a global listen table (CoreState.
    listen_map): its worker died, and segments must stop being handed to it.  Atomic per port,
    as live cores may listen or close meanwhile."""
    bit = np.int64(1) << core_id
    for port in range(listen_map.shape[0]):
        if (listen_map[port] & bit) != 0:
            fetch_and(listen_map, port, ~bit)
