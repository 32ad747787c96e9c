"""Jitted drivers for the TCP benchmarks (``benchmarks/tcp_bulk.py``, ``tcp_short.py``,
``tcp_faults.py``): two stacks, one core each, on one sim wire, in one thread.

Python enters once per *call*, never once per packet: ``bench_run`` loops over iterations of

    application calls (fsdp.tcp.usercalls ``*_k``) -> run_once(core A) -> run_once(core B)

until a deadline (µs) or an iteration budget, reading a monotonic µs clock inside the loop
(``clock_us``: ``clock_gettime(CLOCK_MONOTONIC)``, ~20 ns, linked by symbol name so the kernels
stay cacheable), so ``now`` is real time for timers, RTT samples and latencies.

``bench_run`` is the only function Python calls (``op`` picks the workload): every root that
takes a ``CoreState`` compiles the whole engine into itself and a CPython wrapper that unboxes
~170 arrays per core, so one root keeps a cold start to one engine compile (fsdp.tcp.kernel).
It lives in a library module (not a script's ``__main__``) so that ``cache=True`` works.  The
Python helpers at the bottom (``BenchPair``, ``machine_info``) build the two stacks and the
connections the scripts share.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from fsdp.atomic import cpu_yield
from fsdp.core.state import CoreState
from fsdp.driver.jitmem import borrow_core

if "tcb" not in CoreState._fields:
    # The benchmarks drive the TCP engine; without it there is nothing to measure.
    raise ImportError("the TCP engine is not wired into the per-core loop on this checkout")

from fsdp.apps.http_native import (  # noqa: E402
    HC_ITERS,
    HC_LAST_ERRNO,
    HC_STOP,
    client_open,
    hist_record,
    http_client_step,
    http_server_step,
)
from fsdp.core.loop import run_once  # noqa: E402
from fsdp.tcp.kernel import kernel  # noqa: E402
from fsdp.tcp.usercalls import (  # noqa: E402
    EAGAIN,
    ENOBUFS,
    EV_CLOSED,
    EV_CONNECTED,
    EV_ERROR,
)
from fsdp.tcp.usercalls import tcp_abort_k as tcp_abort  # noqa: E402
from fsdp.tcp.usercalls import tcp_accept_k as tcp_accept  # noqa: E402
from fsdp.tcp.usercalls import tcp_accept_pending_k as tcp_accept_pending  # noqa: E402
from fsdp.tcp.usercalls import tcp_close_k as tcp_close  # noqa: E402
from fsdp.tcp.usercalls import tcp_recv_k as tcp_recv  # noqa: E402
from fsdp.tcp.usercalls import tcp_send_k as tcp_send  # noqa: E402
from fsdp.tcp.usercalls import tcp_status_k as tcp_status  # noqa: E402

# --- a µs clock inside njit ----------------------------------------------------------------------
_CLOCK_MONOTONIC = 1


@intrinsic
def _clock_monotonic_ns(typingctx):
    """``clock_gettime(CLOCK_MONOTONIC)`` in ns.  The call is emitted by symbol name (resolved
    from libc when the code is loaded), not as an address, so functions using it can be cached."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        i64 = ir.IntType(64)
        timespec = ir.LiteralStructType([i64, i64])
        fnty = ir.FunctionType(i32, [i32, timespec.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, timespec)
        builder.call(fn, [ir.Constant(i32, _CLOCK_MONOTONIC), ts])
        zero = ir.Constant(i32, 0)
        sec = builder.load(builder.gep(ts, [zero, zero]))
        nsec = builder.load(builder.gep(ts, [zero, ir.Constant(i32, 1)]))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return sig, codegen


YIELD_AFTER_EMPTY = 8  # empty passes in a row before a polling loop yields its CPU


@njit(inline="always", cache=True)
def yield_when_idle(empty, worked):
    """The run of empty passes after this one; at YIELD_AFTER_EMPTY the loop yields its CPU
    (atomic.cpu_yield): a worker that shares a CPU (more workers than CPUs: ``fsdp demo
    --cores 2`` on two) otherwise spins out its time slice while the peer it waits for cannot
    run, and every exchange waits for the scheduler (32k conn/s against 372k on one core).
    On a CPU of its own the yield returns at once."""
    if worked:
        return 0
    empty += 1
    if empty >= YIELD_AFTER_EMPTY:
        cpu_yield()
        return 0
    return empty


@njit(cache=True)
def clock_us():
    """Monotonic time in µs: the same clock as ``time.monotonic_ns() // 1000``."""
    return _clock_monotonic_ns() // 1000


# --- streams: bulk and duplex transfers ----------------------------------------------------------
# One endpoint's stream state, a row of int64 ``st[endpoint, :]``:
SS_SEND_OFF = 0  # next byte of ``src`` to hand to tcp_send
SS_SEND_END = 1  # end of the bytes available in ``src`` (Python refills)
SS_RECV_LEN = 2  # bytes of ``dst`` filled (Python drains)
SS_SENT = 3  # bytes accepted by tcp_send, total
SS_RECEIVED = 4  # bytes returned by tcp_recv, total
SS_ERROR = 5  # the first -errno a call returned (other than EAGAIN/ENOBUFS), else 0
SS_EOF = 6  # 1 once tcp_recv returned 0 (the peer's FIN)
ST_ROW = 16  # ``st`` is int64[2, ST_ROW]: the stream rows, or row 0 = the SC_ counters

# Kernel flags
SF_LOOP_SEND = 1  # when src is used up, start again at 0 (endless sender, bulk)
SF_DISCARD_RECV = 2  # when dst is full, reuse it from 0 (the data is not kept, bulk)
SF_ONE_SIDE = 4  # drive endpoint 0 only (core ``a``, stream row 0): the other endpoint runs in
#                  another process, on its own core

# ``stream_run`` return codes (>= 0); < 0 is an error (see SS_ERROR)
SR_TIME = 0  # deadline or iteration budget reached
SR_DRAIN = 1  # a receive buffer is full or a source is used up: Python's turn


@kernel
def _stream_send(core, cid, src, st, row, now):
    off = st[row, SS_SEND_OFF]
    end = st[row, SS_SEND_END]
    if off >= end or st[row, SS_ERROR] != 0:
        return
    r = tcp_send(core, cid, src, off, end - off, now)
    if r > 0:
        st[row, SS_SEND_OFF] = off + r
        st[row, SS_SENT] += r
    elif r < 0 and r != -EAGAIN and r != -ENOBUFS:
        st[row, SS_ERROR] = r


@kernel
def _stream_recv(core, cid, dst, st, row, now):
    have = st[row, SS_RECV_LEN]
    room = dst.shape[0] - have
    if room <= 0 or st[row, SS_ERROR] != 0:
        return
    r = tcp_recv(core, cid, dst, have, room, False, now)
    if r > 0:
        st[row, SS_RECV_LEN] = have + r
        st[row, SS_RECEIVED] += r
    elif r == 0:
        st[row, SS_EOF] = 1
    elif r != -EAGAIN:
        st[row, SS_ERROR] = r


@kernel
def _stream_run(a, b, a_cid, b_cid, a_src, b_src, a_dst, b_dst, st, flags, deadline_us, max_iters):
    """Move bytes both ways between endpoint 0 (core ``a``, connection ``a_cid``) and endpoint 1
    (core ``b``, ``b_cid``): each iteration sends what ``src`` still holds, runs both cores and
    reads into ``dst``.  A direction with nothing to send simply idles (bulk = one direction).

    Stops at ``deadline_us``, after ``max_iters`` iterations, or (without the SF_ flags) when a
    ``dst`` is full or a ``src`` used up, so Python can hash/refill.  ``st`` is int64[2, ST_ROW].
    Returns SR_* or the first error."""
    loop_send = (flags & SF_LOOP_SEND) != 0
    discard = (flags & SF_DISCARD_RECV) != 0
    both = (flags & SF_ONE_SIDE) == 0
    rows = 2 if both else 1
    it = 0
    now = clock_us()
    while it < max_iters and now < deadline_us:
        it += 1
        _stream_send(a, a_cid, a_src, st, 0, now)
        if both:
            _stream_send(b, b_cid, b_src, st, 1, now)
        run_once(a, now)
        if both:
            run_once(b, now)
            _stream_recv(b, b_cid, b_dst, st, 1, now)
        _stream_recv(a, a_cid, a_dst, st, 0, now)
        if st[0, SS_ERROR] != 0:
            return st[0, SS_ERROR]
        if both and st[1, SS_ERROR] != 0:
            return st[1, SS_ERROR]
        stop = False
        for row in range(rows):
            if st[row, SS_SEND_OFF] >= st[row, SS_SEND_END] and st[row, SS_SEND_END] > 0:
                if loop_send:
                    st[row, SS_SEND_OFF] = 0
                else:
                    stop = True
        for row in range(rows):
            cap = a_dst.shape[0] if row == 0 else b_dst.shape[0]
            if st[row, SS_RECV_LEN] >= cap:
                if discard:
                    st[row, SS_RECV_LEN] = 0
                else:
                    stop = True
        if stop:
            return np.int64(SR_DRAIN)
        now = clock_us()
    return np.int64(SR_TIME)


# --- short connections ---------------------------------------------------------------------------
# Client slot phases
CP_IDLE = 0
CP_CONNECTING = 1
CP_WAIT_RESPONSE = 2
CP_WAIT_EOF = 3
# Server slot phases
SP_FREE = 0
SP_WAIT_REQUEST = 1
SP_WAIT_EOF = 2  # --closer client: the response is out, wait for the client's FIN

# Columns of the client slots (int64[concurrency, CS_SIZE]) and server slots
CS_CID = 0
CS_PHASE = 1
CS_T0 = 2
CS_GOT = 3
CS_SIZE = 4
SV_CID = 0
SV_PHASE = 1
SV_GOT = 2
SV_SIZE = 4

# Counters (``st[0, :]``)
SC_STARTED = 0  # tcp_connect succeeded
SC_COMPLETED = 1  # response received and the client closed
SC_CONNECT_ERRORS = 2  # tcp_connect failed (EADDRNOTAVAIL: ephemeral ports exhausted, ENOBUFS)
SC_PORT_EXHAUSTED = 3  # tcp_ephemeral_port found no port
SC_CLIENT_ERRORS = 4  # reset / error / EOF before the whole response on the client
SC_SERVER_ERRORS = 5  # reset / error / short request on the server
SC_ACCEPTED = 6
SC_SERVER_FULL = 7  # accepted connections left in the accept queue: no free server slot
SC_ITERS = 8
SC_SERVER_NS = 9  # time spent in the server's application calls and run_once (ns)
SC_CLIENT_NS = 10  # the same for the client
SC_LAST_ERRNO = 11

CLOSER_SERVER = 0  # HTTP/1.0 Connection: close: the server closes after the response
CLOSER_CLIENT = 1  # the client closes after the response; the server closes on its FIN


@kernel
def _client_fail(client, slots, k, counters, err, now):
    counters[SC_CLIENT_ERRORS] += 1
    counters[SC_LAST_ERRNO] = err
    tcp_abort(client, slots[k, CS_CID], now)
    slots[k, CS_CID] = -1
    slots[k, CS_PHASE] = CP_IDLE


@kernel
def _client_step(client, sip, sport, slots, buf, req, hist, counters, closer, start_new, now):
    """One pass over the client's connections: open, request, read the response, close."""
    n_req = req.shape[0]
    n_resp = buf.shape[0]
    for k in range(slots.shape[0]):
        ph = slots[k, CS_PHASE]
        if ph == CP_IDLE:
            if not start_new:
                continue
            cid = client_open(client, sip, sport, now, counters, SC_STARTED,
                              SC_PORT_EXHAUSTED, SC_CONNECT_ERRORS, SC_LAST_ERRNO)
            if cid < 0:
                continue
            slots[k, CS_CID] = cid
            slots[k, CS_PHASE] = CP_CONNECTING
            slots[k, CS_T0] = now
            slots[k, CS_GOT] = 0
            continue
        cid = slots[k, CS_CID]
        if ph == CP_CONNECTING:
            ev = tcp_status(client, cid)
            if (ev & (EV_ERROR | EV_CLOSED)) != 0:
                _client_fail(client, slots, k, counters, 111, now)
                continue
            if (ev & EV_CONNECTED) == 0:
                continue
            r = tcp_send(client, cid, req, 0, n_req, now)
            if r == n_req:
                slots[k, CS_PHASE] = CP_WAIT_RESPONSE
            elif r < 0 and r != -EAGAIN:
                _client_fail(client, slots, k, counters, -r, now)
            # a partial write of 64 bytes cannot happen with any sane SO_SNDBUF
            continue
        if ph == CP_WAIT_RESPONSE:
            got = slots[k, CS_GOT]
            r = tcp_recv(client, cid, buf, got, n_resp - got, False, now)
            if r == -EAGAIN:
                continue
            if r <= 0:
                _client_fail(client, slots, k, counters, -r if r < 0 else 0, now)
                continue
            got += r
            slots[k, CS_GOT] = got
            if got < n_resp:
                continue
            hist_record(hist, now - slots[k, CS_T0])
            if closer == CLOSER_CLIENT:
                tcp_close(client, cid, now)
                counters[SC_COMPLETED] += 1
                slots[k, CS_CID] = -1
                slots[k, CS_PHASE] = CP_IDLE
                continue
            slots[k, CS_PHASE] = CP_WAIT_EOF
            ph = CP_WAIT_EOF  # the FIN often came with the response: look now
        if ph == CP_WAIT_EOF:
            r = tcp_recv(client, cid, buf, 0, n_resp, False, now)
            if r == -EAGAIN:
                continue
            if r != 0:
                _client_fail(client, slots, k, counters, -r if r < 0 else 0, now)
                continue
            tcp_close(client, cid, now)
            counters[SC_COMPLETED] += 1
            slots[k, CS_CID] = -1
            slots[k, CS_PHASE] = CP_IDLE


@kernel
def _server_fail(server, sv, j, counters, err, now):
    counters[SC_SERVER_ERRORS] += 1
    counters[SC_LAST_ERRNO] = err
    tcp_abort(server, sv[j, SV_CID], now)
    sv[j, SV_CID] = -1
    sv[j, SV_PHASE] = SP_FREE


@kernel
def _server_step(server, lid, sv, buf, resp, counters, closer, now):
    """Accept what the listener holds, answer every complete request, close."""
    n_req = buf.shape[0]
    n_resp = resp.shape[0]
    queue_empty = False
    for j in range(sv.shape[0]):
        if sv[j, SV_PHASE] == SP_FREE:
            if queue_empty:
                continue
            cid = tcp_accept(server, lid)
            if cid < 0:
                queue_empty = True  # stop asking this pass
                continue
            counters[SC_ACCEPTED] += 1
            sv[j, SV_CID] = cid
            sv[j, SV_PHASE] = SP_WAIT_REQUEST
            sv[j, SV_GOT] = 0
        cid = sv[j, SV_CID]
        ph = sv[j, SV_PHASE]
        if ph == SP_WAIT_REQUEST:
            got = sv[j, SV_GOT]
            r = tcp_recv(server, cid, buf, got, n_req - got, False, now)
            if r == -EAGAIN:
                continue
            if r <= 0:
                _server_fail(server, sv, j, counters, -r if r < 0 else 0, now)
                continue
            got += r
            sv[j, SV_GOT] = got
            if got < n_req:
                continue
            w = tcp_send(server, cid, resp, 0, n_resp, now)
            if w != n_resp:
                _server_fail(server, sv, j, counters, -w if w < 0 else 0, now)
                continue
            if closer == CLOSER_SERVER:
                tcp_close(server, cid, now)  # FIN right behind the response
                sv[j, SV_CID] = -1
                sv[j, SV_PHASE] = SP_FREE
            else:
                sv[j, SV_PHASE] = SP_WAIT_EOF
        elif ph == SP_WAIT_EOF:
            r = tcp_recv(server, cid, buf, 0, n_req, False, now)
            if r == -EAGAIN:
                continue
            if r != 0:
                _server_fail(server, sv, j, counters, -r if r < 0 else 0, now)
                continue
            tcp_close(server, cid, now)
            sv[j, SV_CID] = -1
            sv[j, SV_PHASE] = SP_FREE
    if not queue_empty and tcp_accept_pending(server, lid) > 0:
        counters[SC_SERVER_FULL] += 1


@kernel
def _short_run(
    client,
    server,
    lid,
    sip,
    sport,
    slots,
    sv,
    cbuf,
    sbuf,
    req,
    resp,
    hist,
    counters,
    closer,
    deadline_us,
    max_iters,
    start_new,
):
    """Short connections between ``client`` and ``server`` (listening on ``sport``, id ``lid``):
    each client slot loops connect -> request -> response -> close; the server answers and
    closes (``closer``).  Latency from tcp_connect to the last response byte goes into ``hist``
    (1 µs bins, the last bin holds everything slower).  ``start_new`` False lets the
    connections in flight finish.  Runs until ``deadline_us`` or ``max_iters``."""
    it = 0
    now = clock_us()
    while it < max_iters and now < deadline_us:
        it += 1
        t0 = now
        _client_step(client, sip, sport, slots, cbuf, req, hist, counters, closer, start_new, now)
        run_once(client, now)
        t1 = clock_us()
        _server_step(server, lid, sv, sbuf, resp, counters, closer, t1)
        run_once(server, t1)
        now = clock_us()
        counters[SC_CLIENT_NS] += (t1 - t0) * 1000
        counters[SC_SERVER_NS] += (now - t1) * 1000
    counters[SC_ITERS] += it
    return np.int64(0)


# --- HTTP (fsdp demo / serve / bench): one side per process ------------------------------------
# The application step scans every connection slot (a tcp_recv or tcp_status each); it runs only
# when it can find something new: after a pass that received frames, after a step that changed
# a counter (a slot freed, a connection started), and at least every STEP_EVERY_US (timers can
# end a connection without a frame).  Scanning on every empty pass was a third of the loop.
STEP_EVERY_US = 1000


@kernel
def _activity(counters):
    """A number that changes whenever a step accepted, served, started, finished or failed."""
    t = 0
    for i in range(HC_LAST_ERRNO):
        t += counters[i]
    return t


@kernel
def _http_serve_run(server, lid, sv, buf, rb, resp, split, counters, mode, deadline_us, max_iters,
                    slot_of, hs):
    """The native HTTP (or echo) server on one core until the deadline, ``max_iters`` or
    ``counters[HC_STOP]`` (set by another process: the counters live in shared memory)."""
    it = 0
    now = clock_us()
    n = 1
    busy = True
    next_step = now
    empty = 0
    while it < max_iters and now < deadline_us and counters[HC_STOP] == 0:
        it += 1
        if n > 0 or busy or now >= next_step:
            before = _activity(counters)
            http_server_step(server, lid, sv, buf, rb, resp, split, counters, mode, now,
                             slot_of, hs)
            busy = _activity(counters) != before
            next_step = now + STEP_EVERY_US
        n = run_once(server, now)
        empty = yield_when_idle(empty, n > 0 or busy)
        now = clock_us()
    counters[HC_ITERS] += it
    return np.int64(0)


@kernel
def _http_load_run(client, sip, sport, slots, buf, rb, req, hist, counters, keepalive, start_new,
                   deadline_us, max_iters, slot_of, hs):
    """The native HTTP load generator on one core (see http_client_step), same stop rules."""
    it = 0
    now = clock_us()
    n = 1
    busy = True
    next_step = now
    empty = 0
    while it < max_iters and now < deadline_us and counters[HC_STOP] == 0:
        it += 1
        if n > 0 or busy or now >= next_step:
            before = _activity(counters)
            http_client_step(client, sip, sport, slots, buf, rb, req, hist, counters, keepalive,
                             start_new, now, slot_of, hs)
            busy = _activity(counters) != before
            next_step = now + STEP_EVERY_US
        n = run_once(client, now)
        empty = yield_when_idle(empty, n > 0 or busy)
        now = clock_us()
    counters[HC_ITERS] += it
    return np.int64(0)


# --- the one root Python calls -------------------------------------------------------------------
OP_STREAM = 0  # _stream_run
OP_SHORT = 1  # _short_run
OP_HTTP_SERVE = 2  # _http_serve_run (core ``a``)
OP_HTTP_LOAD = 3  # _http_load_run (core ``a``)
# ``prm`` (int64[P_SIZE]) carries the scalar arguments
P_DEADLINE_US = 0
P_MAX_ITERS = 1
P_FLAGS = 2  # OP_STREAM: SF_*
P_A_CID = 3  # OP_STREAM: endpoint 0's connection
P_B_CID = 4  # OP_STREAM: endpoint 1's connection
P_LID = 5  # OP_SHORT: the server's listener
P_SIP = 6  # OP_SHORT: the server's address and port
P_SPORT = 7
P_CLOSER = 8  # OP_SHORT: CLOSER_*
P_START_NEW = 9  # OP_SHORT, OP_HTTP_LOAD: 0 lets the connections in flight finish
P_MODE = 10  # OP_HTTP_SERVE: MODE_HTTP / MODE_ECHO
P_SPLIT = 11  # OP_HTTP_SERVE: resp[:split] is the close response, resp[split:] the keep-alive one
P_REGION = 12  # OP_HTTP_*: bytes of the read buffer per slot
P_KEEPALIVE = 13  # OP_HTTP_LOAD: 1 = requests reuse the connection
P_SIZE = 16


@njit(cache=True)
def bench_run(a, b, op, prm, u0, u1, u2, u3, st, slots, sv, hist, ids):
    """Run workload ``op`` on cores ``a`` (client) and ``b`` (server) until
    ``prm[P_DEADLINE_US]`` or ``prm[P_MAX_ITERS]`` iterations.

    OP_STREAM: ``u0``/``u1`` the client's/server's source, ``u2``/``u3`` their receive buffers,
    ``st`` the two stream rows (SS_*); returns SR_* or -errno.
    OP_SHORT: ``u0`` request, ``u1`` response, ``u2``/``u3`` client/server read buffers,
    ``slots``/``sv`` the client/server connection slots, ``hist`` latencies, ``st[0]`` the SC_
    counters; returns 0.
    OP_HTTP_SERVE (fsdp.apps.http_native): ``u0`` responses, ``u3`` read buffer, ``sv`` slots,
    ``ids`` the connection id -> slot map, ``slots`` the step state (``step_slots`` makes
    all three), ``st[0]`` the HC_ counters.  OP_HTTP_LOAD: ``u0`` request, ``u2`` read buffer,
    ``slots``, ``ids`` and ``sv`` its slots, id -> slot map and step state (``step_slots``),
    ``hist``, ``st[0]``.  Only core ``a`` is used (pass it as ``b`` too).  ``ids`` is unused
    (empty) for the other ops.
"""
    a = borrow_core(a)
    b = borrow_core(b)
    if op == OP_STREAM:
        return _stream_run(
            a,
            b,
            prm[P_A_CID],
            prm[P_B_CID],
            u0,
            u1,
            u2,
            u3,
            st,
            prm[P_FLAGS],
            prm[P_DEADLINE_US],
            prm[P_MAX_ITERS],
        )
    if op == OP_SHORT:
        return _short_run(
            a,
            b,
            prm[P_LID],
            prm[P_SIP],
            prm[P_SPORT],
            slots,
            sv,
            u2,
            u3,
            u0,
            u1,
            hist,
            st[0],
            prm[P_CLOSER],
            prm[P_DEADLINE_US],
            prm[P_MAX_ITERS],
            prm[P_START_NEW] != 0,
        )
    if op == OP_HTTP_SERVE:
        return _http_serve_run(
            a,
            prm[P_LID],
            sv,
            u3,
            prm[P_REGION],
            u0,
            prm[P_SPLIT],
            st[0],
            prm[P_MODE],
            prm[P_DEADLINE_US],
            prm[P_MAX_ITERS],
            ids,
            slots,
        )
    if op == OP_HTTP_LOAD:
        return _http_load_run(
            a,
            prm[P_SIP],
            prm[P_SPORT],
            slots,
            u2,
            prm[P_REGION],
            u0,
            hist,
            st[0],
            prm[P_KEEPALIVE] != 0,
            prm[P_START_NEW] != 0,
            prm[P_DEADLINE_US],
            prm[P_MAX_ITERS],
            ids,
            sv,
        )
    return np.int64(-22)


def monotonic_us() -> int:
    """``clock_us`` from Python: the same clock (CLOCK_MONOTONIC)."""
    return time.monotonic_ns() // 1000


_EMPTY_U8 = np.zeros(0, np.uint8)
_EMPTY_2D = np.zeros((0, 4), np.int64)
_EMPTY_I64 = np.zeros(0, np.int64)


def stream_run(
    a, b, a_cid, b_cid, a_src, b_src, a_dst, b_dst, st, flags, deadline_us, max_iters=1 << 62
) -> int:
    """OP_STREAM from Python (see ``_stream_run``)."""
    prm = np.zeros(P_SIZE, np.int64)
    prm[P_DEADLINE_US] = deadline_us
    prm[P_MAX_ITERS] = max_iters
    prm[P_FLAGS] = flags
    prm[P_A_CID] = a_cid
    prm[P_B_CID] = b_cid
    return int(
        bench_run(
            a, b, OP_STREAM, prm, a_src, b_src, a_dst, b_dst, st, _EMPTY_2D, _EMPTY_2D, _EMPTY_I64,
            _EMPTY_I64,
        )
    )


def short_run(
    client,
    server,
    lid,
    sip,
    sport,
    slots,
    sv,
    cbuf,
    sbuf,
    req,
    resp,
    hist,
    st,
    closer,
    deadline_us,
    max_iters=1 << 62,
    start_new=True,
) -> int:
    """OP_SHORT from Python (see ``_short_run``); the counters are ``st[0]``."""
    prm = np.zeros(P_SIZE, np.int64)
    prm[P_DEADLINE_US] = deadline_us
    prm[P_MAX_ITERS] = max_iters
    prm[P_LID] = lid
    prm[P_SIP] = sip
    prm[P_SPORT] = sport
    prm[P_CLOSER] = closer
    prm[P_START_NEW] = int(bool(start_new))
    return int(bench_run(client, server, OP_SHORT, prm, req, resp, cbuf, sbuf, st, slots, sv, hist,
                         _EMPTY_I64))


# --- Python side ---------------------------------------------------------------------------------
def machine_info() -> dict:
    """What the numbers were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "machine": platform.platform(),
        "processor": model or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_1m_at_start": round(load, 2) if load is not None else None,
    }


class BenchPair:
    """Two ``fsdp.Stack``s, one core each, on a private sim wire: ``server`` (10.77.0.1) and
    ``client`` (10.77.0.2), neighbours resolved statically (no ARP in the measurement)."""

    SERVER_IP = "10.77.0.1"
    CLIENT_IP = "10.77.0.2"
    SERVER_MAC = 0x02004D000001
    CLIENT_MAC = 0x02004D000002

    def __init__(self, ring_slots: int = 1024, **options):
        from fsdp.core.stack import Stack
        from fsdp.driver.sim import SimWire

        self.wire = SimWire.private(
            max_ports=2, max_queues=1, ring_slots=ring_slots, name=f"bench-{os.getpid()}"
        )
        self._ports = []
        try:
            sp = self.wire.attach(1, self.SERVER_MAC)
            self._ports.append(sp)
            cp = self.wire.attach(1, self.CLIENT_MAC)
            self._ports.append(cp)
            ip = f"{self.SERVER_IP}/24"
            self.server = Stack(nic=sp, ip=ip, mac=self.SERVER_MAC, **options)
            ip = f"{self.CLIENT_IP}/24"
            self.client = Stack(nic=cp, ip=ip, mac=self.CLIENT_MAC, **options)
            self.server.add_neighbor(self.CLIENT_IP, self.CLIENT_MAC)
            self.client.add_neighbor(self.SERVER_IP, self.SERVER_MAC)
        except BaseException:
            self.close()
            raise
        self.S = self.server._refs[0]
        self.C = self.client._refs[0]
        self.server_ip_int = int(self.server.interface.ip)
        self.client_ip_int = int(self.client.interface.ip)
        self.settle(0.0)  # load (or compile) the kernels now, not inside a timed call

    @property
    def ports(self):
        return tuple(self._ports)

    def listen(self, port: int, backlog: int = 4096) -> int:
        from fsdp.tcp.usercalls import tcp_listen

        lid = int(tcp_listen(self.S, 0, port, backlog, True))
        if lid < 0:
            raise OSError(-lid, f"tcp_listen({port}): {os.strerror(-lid)}")
        return lid

    def connect(self, lid: int, port: int, lport: int = 0, timeout: float = 5.0) -> tuple[int, int]:
        """One established connection client -> server:port; (client cid, server cid).  The
        handshake runs in ``bench_run`` (2 ms slices); Python only polls accept and status."""
        from fsdp.tcp.usercalls import (
            EV_CLOSED,
            EV_CONNECTED,
            tcp_accept,
            tcp_connect,
            tcp_ephemeral_port,
            tcp_status,
        )

        if lport == 0:
            lport = tcp_ephemeral_port(self.C, 0, self.server_ip_int, port)
            if lport < 0:
                raise OSError(-lport, "no ephemeral port")
        ccid = tcp_connect(self.C, 0, lport, self.server_ip_int, port, monotonic_us())
        if ccid < 0:
            raise OSError(-ccid, f"connect to {self.SERVER_IP}:{port}: {os.strerror(-ccid)}")
        scid = -1
        end = monotonic_us() + int(timeout * 1e6)
        while monotonic_us() < end:
            self.settle(0.002)
            if scid < 0:
                scid = tcp_accept(self.S, lid)
            ev = tcp_status(self.C, ccid)
            if scid >= 0 and ev & EV_CONNECTED:
                return ccid, scid
            if ev & EV_CLOSED:
                break
        raise OSError(110, f"connection to {self.SERVER_IP}:{port} not established in {timeout} s")

    def settle(self, seconds: float) -> None:
        """Run both cores for ``seconds`` with no application calls (handshakes, FINs, timers)."""
        st = np.zeros((2, ST_ROW), np.int64)
        stream_run(
            self.C,
            self.S,
            -1,
            -1,
            _EMPTY_U8,
            _EMPTY_U8,
            _EMPTY_U8,
            _EMPTY_U8,
            st,
            SF_DISCARD_RECV,
            monotonic_us() + int(seconds * 1e6),
        )

    def close(self) -> None:
        for s in ("client", "server"):
            st = getattr(self, s, None)
            if st is not None:
                st.close()
        for p in self._ports:
            p.close()
        self._ports = []
        self.wire.close()

    def __enter__(self) -> BenchPair:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- profiling: name the jitted code for perf -------------------------------------------------
class PerfMap:
    """Write ``/tmp/perf-<pid>.map`` so ``perf report`` names Numba's jitted functions.

    llvmlite's LLVM has no perf JIT listener, so samples in jitted code show as ``[JIT] tid``
    addresses.  ``start()`` (before the first call of the kernels) records the object code of
    every library Numba loads or compiles from then on; ``write()`` reads each object's symbol
    table (``nm``) and places it at its load address (one global symbol the engine can resolve
    fixes the object's .text base).  Usage: ``perf record -g -e cpu-clock python SCRIPT
    --perf-map``, then ``perf report``."""

    def __init__(self) -> None:
        self.objects: list[bytes] = []

    def start(self) -> None:
        from numba.core.codegen import JITCodeLibrary
        from numba.core.registry import cpu_target

        codegen = cpu_target.target_context.codegen()
        compiled_hook = JITCodeLibrary._object_compiled_hook
        getbuffer_hook = JITCodeLibrary._object_getbuffer_hook
        objects = self.objects

        def on_compiled(ll_module, buf):
            objects.append(bytes(buf))
            return compiled_hook(ll_module, buf)

        def on_getbuffer(ll_module):
            buf = getbuffer_hook(ll_module)
            if buf:
                objects.append(bytes(buf))
            return buf

        codegen._engine.set_object_cache(on_compiled, on_getbuffer)
        self._engine = codegen._engine

    def write(self) -> str:
        import subprocess
        import tempfile

        path = f"/tmp/perf-{os.getpid()}.map"
        seen = set()
        lines = []
        for obj in self.objects:
            with tempfile.NamedTemporaryFile(suffix=".o") as f:
                f.write(obj)
                f.flush()
                out = subprocess.run(
                    ["nm", "-S", "--defined-only", f.name], capture_output=True, text=True
                ).stdout
            syms = []
            for line in out.splitlines():
                parts = line.split()
                if len(parts) == 4 and parts[2] in "tTwW":
                    syms.append((int(parts[0], 16), int(parts[1], 16), parts[2], parts[3]))
            # Weak symbols (NRT_incref, ...) resolve to whichever object defined them first;
            # the object's own global functions agree on its base.
            bases: dict[int, int] = {}
            for value, _, kind, name in syms:
                if kind == "T" and self._engine.is_symbol_defined(name):
                    addr = self._engine.get_function_address(name)
                    if addr:
                        bases[addr - value] = bases.get(addr - value, 0) + 1
            if not bases:
                continue
            base = max(bases, key=bases.get)
            for value, size, _, name in syms:
                if size and (base + value) not in seen:
                    seen.add(base + value)
                    lines.append(f"{base + value:x} {size:x} {name}\n")
        with open(path, "w") as f:
            f.writelines(lines)
        return path
