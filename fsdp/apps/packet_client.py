"""The packet client: an HTTP/1.0 load generator written directly on NIC frames, with no TCP
stack under it (what TRex's stateful mode or a hardware tester does), for scaling runs.

Why it exists: the demo's default client is a whole fsdp stack per core, and a connection costs
it about what it costs the server.  On a 16-CPU machine, 8 server cores then need 8 client cores
that are each as fast as a server core, and the server's scaling is hidden behind the client's
(the 8-core point of the first device run was client-bound).  A client that keeps, per
connection, a row of nine integers and answers each server segment with at most one frame built
in place costs a fraction of that, so a few client cores can load many server cores.

It is a correct TCP peer for the exchange it drives, by RFC 9293:

* active open with ``<SYN>`` (MSS option only: no window scaling, SACK or timestamps are
  offered, so none are used), ISS per local port advanced by 2^24 each time the port is reused,
  so a SYN that meets the server's TIME-WAIT for the same 4-tuple is "after" it (RFC 6191 §2,
  RFC 1122 §4.2.2.13) and reopens it;
* ``<SYN,ACK>`` acking our SYN: the third segment carries the request (``ACK,PSH`` + data);
* response bytes are taken only in order (``SEG.SEQ = RCV.NXT``), anything else is answered
  with an ACK of ``RCV.NXT`` (§3.10.7.4); the server's FIN (in order) completes the response and
  is answered with ``<FIN,ACK>`` (we close at once, as an HTTP/1.0 client does at EOF);
* the connection counts as completed there (the stack client's close() at EOF); the ACK of
  our FIN ends it and frees the port (the server holds TIME-WAIT: it closed first);
* ``<RST>``: the connection fails (refused in SYN-SENT), counted, unless the response and its
  FIN were already in; an unacceptable ACK in SYN-SENT is answered ``<SEQ=SEG.ACK><CTL=RST>``;
* retransmission: SYN after 1 s (RFC 6298 §2.1), the request and the FIN after 200 ms (Linux's
  TCP_RTO_MIN), doubling, 6 tries, then ``<RST>`` and an error.

Each worker owns one queue of a multi-queue sim port and only local ports whose replies the
NIC's RSS (Toeplitz key + RETA of its port) steers to that queue (:func:`ports_for_queue`):
receive flow deliver done by the client, as Fastsocket's.  ARP requests for its address are
answered.  The response is checked for ``HTTP/1.x 200`` in its first segment.

Counters are the demo's ``HC_*`` row and latency histogram (connect to the response's last
byte, 1 µs bins), so ``fsdp.apps.loadgen.measure`` reads both clients the same way.
"""

import numpy as np
from numba import njit

from fsdp.apps.bench_kernels import _clock_monotonic_ns, yield_when_idle
from fsdp.apps.http_native import (
    HC_BAD_RESPONSES,
    HC_CLIENT_ERRORS,
    HC_COMPLETED,
    HC_CONNECT_ERRORS,
    HC_ITERS,
    HC_LAST_ERRNO,
    HC_REQUESTS,
    HC_STARTED,
    HC_STOP,
    hist_record,
)
from fsdp.driver.api import nic_borrow, nic_redirect, nic_rx_burst, nic_tx_burst
from fsdp.driver.jitmem import borrow_pool, copy_bytes
from fsdp.driver.toeplitz import rss_hash_ipv4_l4
from fsdp.pool.pool import (
    FRAME_F_RX_CSUM_BAD,
    FRAME_F_RX_CSUM_OK,
    FRAME_F_TX_CSUM,
    FRAME_SIZE,
    HEADROOM,
    frame_alloc,
    frame_free,
)
from fsdp.wire.arp import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    arp_build,
    arp_check,
    arp_oper,
    arp_sha,
    arp_spa,
    arp_tpa,
)
from fsdp.wire.byteorder import get_u16, get_u32, set_u16, set_u32
from fsdp.wire.checksum import checksum, l4_checksum
from fsdp.wire.ethernet import ETHERTYPE_ARP, ETHERTYPE_IPV4, eth_build
from fsdp.wire.tcp import TH_ACK, TH_FIN, TH_PSH, TH_RST, TH_SYN

ETH_HLEN = 14
IP_HLEN = 20
TCP_HLEN = 20
MSS = 1460
WINDOW = 65535  # no window scaling offered: the field is the window
M32 = 0xFFFFFFFF
ISS_STEP = 1 << 24  # per reuse of a local port: more than a connection's bytes, < 2^31
RTO_SYN_US = 1_000_000  # RFC 6298 §2.1 (initial RTO, and what Linux waits for a SYN-ACK)
RTO_US = 200_000  # Linux TCP_RTO_MIN
MAX_TRIES = 6
SCAN_EVERY_US = 1000  # retransmission timers are looked at once a millisecond
RX_BURST = 64
TX_MAX = 256
STARTS_PER_PASS = 32  # new connections per loop pass (a ring holds 1024 frames)

# --- parameters (int64[K_SIZE]) -------------------------------------------------------------
K_LIP = 0
K_RIP = 1
K_RPORT = 2
K_LMAC = 3
K_RMAC = 4
K_TX_CSUM = 5  # 1: the NIC fills in checksums (FRAME_F_TX_CSUM)
K_DEADLINE_US = 6
K_START_NEW = 7  # 0: let the connections in flight finish, start none
K_RFD = 8  # 1: our ports are those RSS steers to our queue; 0: port % K_N_QUEUES names a queue
K_QUEUE = 9
K_N_QUEUES = 10
K_SIZE = 12

# --- run state and the worker's own counters (int64[V_SIZE]) ---------------------------------
V_FIFO_HEAD = 0  # the free local ports: a FIFO over ``ports`` (least recently used first)
V_FIFO_COUNT = 1
V_ACTIVE = 2  # connections in flight
V_SLOT_TOP = 3  # free slot stack height
V_NEXT_SCAN = 4
V_IP_ID = 5
V_STRAY = 6  # frames not for a connection of ours (other address, port, protocol)
V_OUT_OF_ORDER = 7  # segments not at RCV.NXT (answered with an ACK)
V_RETRANSMITS = 8
V_ARP_REPLIES = 9
V_BAD_CSUM = 10
V_NOBUF = 11  # no frame for a SYN or a RST: tried again next pass
V_RESETS = 12  # RSTs received
V_HANDED_OVER = 13  # RFD off: segments for another worker's port, passed to its queue
V_BUSY_NS = 14  # time in loop passes that received, sent or started something: with the wall
#                 time, how close this client is to being what limits a run
V_SIZE = 16

# --- a connection (int64[concurrency, PC_SIZE]) ------------------------------------------------
PC_PORT = 0
PC_STATE = 1
PC_ISS = 2
PC_RCV_NXT = 3
PC_T0 = 4  # SYN sent, µs
PC_GOT = 5  # response bytes
PC_STATUS = 6  # 1: the response began "HTTP/1.x 200", 0: it did not, -1: no byte yet
PC_DEADLINE = 7  # retransmission timer, µs
PC_TRIES = 8
PC_UNACKED = 9  # in-order data segments not acked yet
PC_SIZE = 12

PS_FREE = 0
PS_SYN_SENT = 1
PS_REQUESTED = 2  # the request went with the handshake's ACK; reading the response
PS_FIN_SENT = 3  # the response and its FIN are in, our FIN is out: waiting for its ACK


def ports_for_queue(toeplitz_table, reta, lip: int, rip: int, rport: int, queue: int,
                    lo: int = 32768, hi: int = 60999) -> np.ndarray:
    """The local ports in ``lo..hi`` whose replies from ``rip:rport`` the NIC's RSS steers to
    ``queue`` (Toeplitz over src ip, dst ip, src port, dst port of the reply, then the RETA)."""
    return _ports_for_queue(toeplitz_table, np.asarray(reta, np.int64), np.int64(lip),
                            np.int64(rip), np.int64(rport), np.int64(queue), np.int64(lo),
                            np.int64(hi))


@njit(cache=True)
def _ports_for_queue(table, reta, lip, rip, rport, queue, lo, hi):
    out = np.empty(hi - lo + 1, np.int64)
    n = 0
    mask = reta.shape[0] - 1
    for p in range(lo, hi + 1):
        if reta[rss_hash_ipv4_l4(table, rip, lip, rport, p) & mask] == queue:
            out[n] = p
            n += 1
    return out[:n]


@njit(cache=True)
def _emit(data, pool, fid, prm, v, lport, seq, ack, flags, req, with_req):
    """Write a TCP segment from ``lport`` to the server into frame ``fid`` (its headroom on):
    ``flags``, ``seq``/``ack``, the MSS option on a SYN, the request as payload if
    ``with_req``."""
    base = fid * FRAME_SIZE + HEADROOM
    opt = 4 if (flags & TH_SYN) != 0 else 0
    plen = req.shape[0] if with_req else 0
    tcp_len = TCP_HLEN + opt + plen
    eth_build(data, base, prm[K_RMAC], prm[K_LMAC], ETHERTYPE_IPV4)
    ip = base + ETH_HLEN
    data[ip] = 0x45
    data[ip + 1] = 0
    set_u16(data, ip + 2, IP_HLEN + tcp_len)
    set_u16(data, ip + 4, v[V_IP_ID])
    v[V_IP_ID] = (v[V_IP_ID] + 1) & 0xFFFF
    set_u16(data, ip + 6, 0x4000)  # DF, as Linux (RFC 1191)
    data[ip + 8] = 64
    data[ip + 9] = 6
    set_u16(data, ip + 10, 0)
    set_u32(data, ip + 12, prm[K_LIP])
    set_u32(data, ip + 16, prm[K_RIP])
    th = ip + IP_HLEN
    set_u16(data, th, lport)
    set_u16(data, th + 2, prm[K_RPORT])
    set_u32(data, th + 4, seq & M32)
    set_u32(data, th + 8, ack & M32 if (flags & TH_ACK) != 0 else 0)
    data[th + 12] = ((TCP_HLEN + opt) >> 2) << 4
    data[th + 13] = flags
    set_u16(data, th + 14, WINDOW)
    set_u16(data, th + 16, 0)
    set_u16(data, th + 18, 0)
    if opt:
        data[th + 20] = 2  # MSS (RFC 9293 §3.2)
        data[th + 21] = 4
        set_u16(data, th + 22, MSS)
    if plen:
        copy_bytes(data, th + TCP_HLEN + opt, req, 0, plen)
    pool.off[fid] = HEADROOM
    pool.length[fid] = ETH_HLEN + IP_HLEN + tcp_len
    if prm[K_TX_CSUM] != 0:
        pool.flags[fid] = FRAME_F_TX_CSUM
    else:
        pool.flags[fid] = 0
        set_u16(data, ip + 10, checksum(data, ip, IP_HLEN))
        set_u16(data, th + 16, l4_checksum(data, th, tcp_len, prm[K_LIP], prm[K_RIP], 6))


@njit(cache=True)
def _send_state(data, pool, fid, prm, v, slots, s, req):
    """(Re)send what connection ``s``'s state owes: its SYN, its request, or its FIN."""
    st = slots[s, PC_STATE]
    port = slots[s, PC_PORT]
    iss = slots[s, PC_ISS]
    if st == PS_SYN_SENT:
        _emit(data, pool, fid, prm, v, port, iss, 0, TH_SYN, req, False)
    elif st == PS_REQUESTED:
        _emit(data, pool, fid, prm, v, port, iss + 1, slots[s, PC_RCV_NXT], TH_ACK | TH_PSH, req,
              True)
    else:
        _emit(data, pool, fid, prm, v, port, iss + 1 + req.shape[0], slots[s, PC_RCV_NXT],
              TH_FIN | TH_ACK, req, False)


@njit(cache=True)
def _finish(slots, free_slots, s, v, ports, port_slot):
    """Connection ``s`` is over: its slot and its port are free (the port at the FIFO's end)."""
    port = slots[s, PC_PORT]
    port_slot[port] = -1
    n_ports = ports.shape[0]
    ports[(v[V_FIFO_HEAD] + v[V_FIFO_COUNT]) % n_ports] = port
    v[V_FIFO_COUNT] += 1
    slots[s, PC_STATE] = PS_FREE
    v[V_ACTIVE] -= 1
    free_slots[v[V_SLOT_TOP]] = s
    v[V_SLOT_TOP] += 1


@njit(cache=True)
def _seq_after(a, b):
    """a > b in sequence space (RFC 9293 §3.4)."""
    d = (a - b) & M32
    return d != 0 and d < 0x80000000


@njit(cache=True)
def _input(nic, data, pool, fid, prm, v, slots, free_slots, ports, port_slot, req, hist, counters,
           now):
    """One received frame: 1 if ``fid`` now holds a reply to send, 0 if it was freed."""
    b = pool.off[fid] + fid * FRAME_SIZE
    n = np.int64(pool.length[fid])
    if n < ETH_HLEN + IP_HLEN:
        v[V_STRAY] += 1
        frame_free(pool, fid)
        return 0
    et = get_u16(data, b + 12)
    if et == ETHERTYPE_ARP:
        a = b + ETH_HLEN
        if (arp_check(data, a, n - ETH_HLEN) == 0 and arp_oper(data, a) == ARP_OP_REQUEST
                and arp_tpa(data, a) == prm[K_LIP]):
            sha = arp_sha(data, a)
            spa = arp_spa(data, a)
            base = fid * FRAME_SIZE + HEADROOM
            eth_build(data, base, sha, prm[K_LMAC], ETHERTYPE_ARP)
            arp_build(data, base + ETH_HLEN, ARP_OP_REPLY, prm[K_LMAC], prm[K_LIP], sha, spa)
            pool.off[fid] = HEADROOM
            pool.length[fid] = 60  # the minimum Ethernet frame, padded
            pool.flags[fid] = 0
            v[V_ARP_REPLIES] += 1
            return 1
        v[V_STRAY] += 1
        frame_free(pool, fid)
        return 0
    ip = b + ETH_HLEN
    if et != ETHERTYPE_IPV4 or (data[ip] >> 4) != 4 or data[ip + 9] != 6:
        v[V_STRAY] += 1
        frame_free(pool, fid)
        return 0
    ihl = np.int64(data[ip] & 0x0F) * 4
    total = np.int64(get_u16(data, ip + 2))
    if (ihl < IP_HLEN or total < ihl + TCP_HLEN or ETH_HLEN + total > n
            or np.int64(get_u32(data, ip + 12)) != prm[K_RIP]
            or np.int64(get_u32(data, ip + 16)) != prm[K_LIP]):
        v[V_STRAY] += 1
        frame_free(pool, fid)
        return 0
    th = ip + ihl
    tl = total - ihl
    fl = np.int64(pool.flags[fid])
    if (fl & FRAME_F_RX_CSUM_BAD) != 0 or (
        (fl & FRAME_F_RX_CSUM_OK) == 0
        and (checksum(data, ip, ihl) != 0
             or l4_checksum(data, th, tl, prm[K_RIP], prm[K_LIP], 6) != 0)):
        v[V_BAD_CSUM] += 1
        frame_free(pool, fid)
        return 0
    lport = np.int64(get_u16(data, th + 2))
    s = np.int64(port_slot[lport])
    if s < 0 and prm[K_RFD] == 0 and lport % prm[K_N_QUEUES] != prm[K_QUEUE]:
        # without receive flow deliver RSS lands replies on any worker's queue: the port names
        # the owner (as the stack does with RFD off), and the segment is handed over to it
        if nic_redirect(nic, pool, fid, lport % prm[K_N_QUEUES]) == 1:
            v[V_HANDED_OVER] += 1
        else:
            v[V_STRAY] += 1
        frame_free(pool, fid)
        return 0
    thl = np.int64(data[th + 12] >> 4) * 4
    if np.int64(get_u16(data, th)) != prm[K_RPORT] or s < 0 or thl < TCP_HLEN or thl > tl:
        v[V_STRAY] += 1  # a late segment of a finished connection, or not ours
        frame_free(pool, fid)
        return 0
    seq = np.int64(get_u32(data, th + 4))
    ack = np.int64(get_u32(data, th + 8))
    flags = np.int64(data[th + 13])
    plen = tl - thl
    st = slots[s, PC_STATE]
    iss = slots[s, PC_ISS]
    if (flags & TH_RST) != 0:
        # RFC 9293 §3.10.7.3: in SYN-SENT a RST is acceptable if it acks our SYN; elsewhere if
        # it is in the window (we only ever have RCV.NXT: exact match, RFC 5961 §3.2 style)
        ok = (((flags & TH_ACK) != 0 and ack == ((iss + 1) & M32)) if st == PS_SYN_SENT
              else seq == slots[s, PC_RCV_NXT])
        frame_free(pool, fid)
        if ok:
            v[V_RESETS] += 1
            if st != PS_FIN_SENT:  # after the response and its FIN a RST only ends it early
                counters[HC_CONNECT_ERRORS if st == PS_SYN_SENT else HC_CLIENT_ERRORS] += 1
                counters[HC_LAST_ERRNO] = 111 if st == PS_SYN_SENT else 104
            _finish(slots, free_slots, s, v, ports, port_slot)
        return 0
    if st == PS_SYN_SENT:
        if (flags & TH_ACK) != 0 and ack != ((iss + 1) & M32):
            # §3.10.7.3: an unacceptable ACK (say, from a TIME-WAIT that did not take our SYN
            # as a new incarnation) gets <SEQ=SEG.ACK><CTL=RST>; our SYN is sent again later
            v[V_OUT_OF_ORDER] += 1
            _emit(data, pool, fid, prm, v, slots[s, PC_PORT], ack, 0, TH_RST, req, False)
            return 1
        if (flags & (TH_SYN | TH_ACK)) != (TH_SYN | TH_ACK):
            v[V_STRAY] += 1  # a SYN without ACK (simultaneous open) is not for a client
            frame_free(pool, fid)
            return 0
        slots[s, PC_RCV_NXT] = (seq + 1) & M32
        slots[s, PC_STATE] = PS_REQUESTED
        slots[s, PC_DEADLINE] = now + RTO_US
        slots[s, PC_TRIES] = 0
        _send_state(data, pool, fid, prm, v, slots, s, req)
        return 1
    if (flags & TH_SYN) != 0:
        # our handshake ACK (with the request) was lost: the server sent its SYN-ACK again
        v[V_OUT_OF_ORDER] += 1
        _send_state(data, pool, fid, prm, v, slots, s, req)
        return 1
    rcv_nxt = slots[s, PC_RCV_NXT]
    fin = (flags & TH_FIN) != 0
    if st == PS_REQUESTED:
        if plen == 0 and not fin:
            frame_free(pool, fid)  # the ACK of our request
            return 0
        if seq != rcv_nxt:
            v[V_OUT_OF_ORDER] += 1  # §3.10.7.4: not acceptable here: ACK RCV.NXT
            _emit(data, pool, fid, prm, v, slots[s, PC_PORT], iss + 1 + req.shape[0], rcv_nxt,
                  TH_ACK, req, False)
            return 1
        if plen > 0:
            if slots[s, PC_STATUS] < 0:
                p = th + thl
                good = (plen >= 12 and data[p] == 72 and data[p + 1] == 84 and data[p + 2] == 84
                        and data[p + 3] == 80 and data[p + 4] == 47 and data[p + 5] == 49
                        and data[p + 6] == 46 and data[p + 8] == 32 and data[p + 9] == 50
                        and data[p + 10] == 48 and data[p + 11] == 48)  # "HTTP/1.x 200"
                slots[s, PC_STATUS] = 1 if good else 0
            slots[s, PC_GOT] += plen
            rcv_nxt = (rcv_nxt + plen) & M32
            slots[s, PC_RCV_NXT] = rcv_nxt
        if not fin:
            # RFC 9293 §3.8.6.3: ACK at least every second full-sized segment; a small response
            # is followed at once by the FIN, and both are acked together
            slots[s, PC_UNACKED] += 1
            if slots[s, PC_UNACKED] < 2:
                frame_free(pool, fid)
                return 0
            slots[s, PC_UNACKED] = 0
            _emit(data, pool, fid, prm, v, slots[s, PC_PORT], iss + 1 + req.shape[0], rcv_nxt,
                  TH_ACK, req, False)
            return 1
        slots[s, PC_RCV_NXT] = (rcv_nxt + 1) & M32
        hist_record(hist, now - slots[s, PC_T0])
        if slots[s, PC_STATUS] == 1:
            # the whole response and the server's FIN are in and we close: done, as the stack
            # client counts it (its close() comes at EOF); the ACK of our FIN frees the port
            counters[HC_REQUESTS] += 1
            counters[HC_COMPLETED] += 1
        else:
            counters[HC_BAD_RESPONSES] += 1
        slots[s, PC_STATE] = PS_FIN_SENT
        slots[s, PC_DEADLINE] = now + RTO_US
        slots[s, PC_TRIES] = 0
        _send_state(data, pool, fid, prm, v, slots, s, req)
        return 1
    # PS_FIN_SENT
    fin_seq = (iss + 1 + req.shape[0]) & M32
    if (flags & TH_ACK) != 0 and ack == ((fin_seq + 1) & M32):
        frame_free(pool, fid)
        _finish(slots, free_slots, s, v, ports, port_slot)
        return 0
    if fin or plen > 0:
        v[V_OUT_OF_ORDER] += 1  # a retransmission: our FIN (or its ACK) was lost
        _send_state(data, pool, fid, prm, v, slots, s, req)
        return 1
    frame_free(pool, fid)
    return 0


@njit(cache=True)
def _start(data, pool, prm, v, slots, free_slots, ports, port_slot, port_iss, req, counters, tx,
           ntx, now):
    """Open one connection: a free slot, the least recently used port, a SYN in ``tx``."""
    fid = frame_alloc(pool)
    if fid < 0:
        v[V_NOBUF] += 1
        return ntx
    n_ports = ports.shape[0]
    port = ports[v[V_FIFO_HEAD]]
    v[V_FIFO_HEAD] = (v[V_FIFO_HEAD] + 1) % n_ports
    v[V_FIFO_COUNT] -= 1
    v[V_SLOT_TOP] -= 1
    s = free_slots[v[V_SLOT_TOP]]
    port_slot[port] = s
    iss = (port_iss[port] + ISS_STEP) & M32
    port_iss[port] = iss
    slots[s, PC_PORT] = port
    slots[s, PC_STATE] = PS_SYN_SENT
    slots[s, PC_ISS] = iss
    slots[s, PC_RCV_NXT] = 0
    slots[s, PC_T0] = now
    slots[s, PC_GOT] = 0
    slots[s, PC_STATUS] = -1
    slots[s, PC_DEADLINE] = now + RTO_SYN_US
    slots[s, PC_TRIES] = 0
    slots[s, PC_UNACKED] = 0
    v[V_ACTIVE] += 1
    counters[HC_STARTED] += 1
    _emit(data, pool, fid, prm, v, port, iss, 0, TH_SYN, req, False)
    tx[ntx] = fid
    return ntx + 1


@njit(cache=True)
def _timers(data, pool, prm, v, slots, free_slots, ports, port_slot, req, counters, tx, ntx,
            now):
    """Retransmit what is overdue; after MAX_TRIES, reset the connection and count an error."""
    for s in range(slots.shape[0]):
        st = slots[s, PC_STATE]
        if st == PS_FREE or now < slots[s, PC_DEADLINE] or ntx >= tx.shape[0]:
            continue
        fid = frame_alloc(pool)
        if fid < 0:
            v[V_NOBUF] += 1
            break
        slots[s, PC_TRIES] += 1
        if slots[s, PC_TRIES] > MAX_TRIES:
            # give up: RFC 9293 §3.10.7 abort: <SEQ=SND.NXT><CTL=RST>
            snd = slots[s, PC_ISS] + (0 if st == PS_SYN_SENT else 1 + req.shape[0])
            _emit(data, pool, fid, prm, v, slots[s, PC_PORT], snd, 0, TH_RST, req, False)
            if st != PS_FIN_SENT:  # the response was in: only our FIN's ACK never came
                counters[HC_CONNECT_ERRORS if st == PS_SYN_SENT else HC_CLIENT_ERRORS] += 1
                counters[HC_LAST_ERRNO] = 110  # ETIMEDOUT
            _finish(slots, free_slots, s, v, ports, port_slot)
        else:
            v[V_RETRANSMITS] += 1
            _send_state(data, pool, fid, prm, v, slots, s, req)
            rto = RTO_SYN_US if st == PS_SYN_SENT else RTO_US
            slots[s, PC_DEADLINE] = now + (rto << slots[s, PC_TRIES])
        tx[ntx] = fid
        ntx += 1
    return ntx


@njit(cache=True, nogil=True)
def packet_client_run(q, pool_owned, prm, v, slots, free_slots, ports, port_slot, port_iss, req,
                      hist, counters, rx, tx):
    """Drive the connections until ``prm[K_DEADLINE_US]`` or ``counters[HC_STOP]``: open new
    ones up to ``slots.shape[0]`` in flight (while ``prm[K_START_NEW]``), answer what arrives,
    retransmit what is overdue.  Returns the connections still in flight."""
    nic = nic_borrow(q)
    pool = borrow_pool(pool_owned)
    data = pool.data.reshape(-1)  # flat: frame ``fid`` starts at fid * FRAME_SIZE
    conc = slots.shape[0]
    it = 0
    empty = 0
    t = _clock_monotonic_ns()
    now = t // 1000
    while now < prm[K_DEADLINE_US] and counters[HC_STOP] == 0:
        it += 1
        ntx = 0
        if prm[K_START_NEW] != 0:
            k = 0
            while v[V_ACTIVE] < conc and v[V_FIFO_COUNT] > 0 and k < STARTS_PER_PASS:
                ntx = _start(data, pool, prm, v, slots, free_slots, ports, port_slot, port_iss,
                             req, counters, tx, ntx, now)
                k += 1
        got = nic_rx_burst(nic, pool, rx, RX_BURST, now)
        for i in range(got):
            fid = rx[i]
            if _input(nic, data, pool, fid, prm, v, slots, free_slots, ports, port_slot, req, hist,
                      counters, now) == 1:
                tx[ntx] = fid
                ntx += 1
        if now >= v[V_NEXT_SCAN]:
            v[V_NEXT_SCAN] = now + SCAN_EVERY_US
            ntx = _timers(data, pool, prm, v, slots, free_slots, ports, port_slot, req, counters,
                          tx, ntx, now)
        nic_tx_burst(nic, pool, tx, ntx, now)
        t_end = _clock_monotonic_ns()
        if ntx > 0 or got > 0:
            v[V_BUSY_NS] += t_end - t
        empty = yield_when_idle(empty, ntx > 0 or got > 0)
        if empty == 0 and ntx == 0 and got == 0:  # it yielded its CPU: time moved on meanwhile
            t_end = _clock_monotonic_ns()
        t = t_end
        now = t // 1000
    counters[HC_ITERS] += it
    return v[V_ACTIVE]


class PacketClient:
    """One worker's state: ``concurrency`` connections on ``queue`` of ``port`` (a SimPort this
    process joined), to ``rip:rport``.  ``run(seconds)`` drives them; ``drain(seconds)`` lets
    those in flight finish."""

    def __init__(self, port, queue: int, lip: int, lmac: int, rip: int, rmac: int, rport: int,
                 concurrency: int, request: bytes, counters, hist, rfd: bool = True,
                 pool_frames: int = 0):
        from fsdp.driver.toeplitz import toeplitz_table
        from fsdp.pool.pool import pool_create

        n_queues = port.n_queues
        if rfd:
            ports = ports_for_queue(toeplitz_table(port.rss_key), port.reta, lip, rip, rport,
                                    queue)
        else:
            ports = np.arange(32768, 61000, dtype=np.int64)
            ports = ports[ports % n_queues == queue]
        if concurrency < 1 or concurrency > len(ports):
            raise ValueError(f"concurrency {concurrency} must be 1..{len(ports)}: the local "
                             f"ports of queue {queue}")
        self.q = port.queue(queue)
        self.pool = pool_create(pool_frames or max(1024, 4 * concurrency + 2 * TX_MAX))
        self.prm = np.zeros(K_SIZE, np.int64)
        self.prm[[K_LIP, K_RIP, K_RPORT, K_LMAC, K_RMAC]] = (lip, rip, rport, lmac, rmac)
        self.prm[K_TX_CSUM] = int(port.offloads["tx_csum"])
        self.prm[K_START_NEW] = 1
        self.prm[K_RFD] = int(bool(rfd))
        self.prm[K_QUEUE] = queue
        self.prm[K_N_QUEUES] = n_queues
        self.v = np.zeros(V_SIZE, np.int64)
        self.v[V_FIFO_COUNT] = len(ports)
        self.v[V_SLOT_TOP] = concurrency
        self.slots = np.zeros((concurrency, PC_SIZE), np.int64)
        self.free_slots = np.arange(concurrency, dtype=np.int64)[::-1].copy()
        self.ports = ports.copy()
        self.port_slot = np.full(65536, -1, np.int32)
        rng = np.random.default_rng()
        self.port_iss = rng.integers(0, 1 << 32, 65536, dtype=np.int64)
        self.req = np.frombuffer(request, np.uint8).copy()
        self.counters = counters
        self.hist = hist
        self.rx = np.zeros(RX_BURST, np.int64)
        self.tx = np.zeros(TX_MAX + RX_BURST + 2 * STARTS_PER_PASS, np.int64)
        self.run(0.0)  # compile (or load) the loop now: the first run's deadline is not for that

    def run(self, seconds: float) -> int:
        from fsdp.apps.bench_kernels import monotonic_us

        self.prm[K_DEADLINE_US] = monotonic_us() + int(seconds * 1e6)
        return int(packet_client_run(self.q, self.pool, self.prm, self.v, self.slots,
                                     self.free_slots, self.ports, self.port_slot, self.port_iss,
                                     self.req, self.hist, self.counters, self.rx, self.tx))

    def drain(self, seconds: float) -> int:
        """Start no more; run until every connection is over or ``seconds`` pass."""
        import time

        self.prm[K_START_NEW] = 0
        end = time.monotonic() + seconds
        left = int(self.v[V_ACTIVE])
        while left > 0 and time.monotonic() < end:
            left = self.run(min(0.01, max(0.0, end - time.monotonic())))
        return left

    @property
    def stats(self) -> dict:
        v = self.v
        return {"in_flight": int(v[V_ACTIVE]), "stray": int(v[V_STRAY]),
                "out_of_order": int(v[V_OUT_OF_ORDER]), "retransmits": int(v[V_RETRANSMITS]),
                "arp_replies": int(v[V_ARP_REPLIES]), "bad_csum": int(v[V_BAD_CSUM]),
                "no_buffer": int(v[V_NOBUF]), "resets": int(v[V_RESETS]),
                "handed_over": int(v[V_HANDED_OVER]), "busy_ns": int(v[V_BUSY_NS])}
