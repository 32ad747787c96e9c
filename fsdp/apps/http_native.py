"""The native HTTP server and load generator: jitted application steps that run inside a core's
poll loop (the path the proxy will use), driven by ``fsdp.apps.bench_kernels.bench_run``
(ops OP_HTTP_SERVE and OP_HTTP_LOAD: one root keeps a cold start to one engine compile).

Workload (Fastsocket's evaluation): HTTP/1.0 ``GET``, one connection per request, the server
closes first (``Connection: close``), so TIME-WAIT lands on the server.  With
``Connection: keep-alive`` in the request the server keeps the connection open and the client
sends its next request on it (``fsdp bench --keepalive``).

The steps take the core, the connection slots (int64 rows, one per connection in flight), one
byte region of ``rb`` bytes per slot inside a flat uint8 buffer, and the counters (``HC_*``, a
row of int64 the parent process may read while the loop runs: it lives in shared memory).
Parsing is the minimum a load generator and a static server need: the end of the header
(CRLF CRLF), the request method, the status code, Content-Length and the keep-alive token.
"""

import numpy as np
from numba import njit

from fsdp.tcp.kernel import kernel
from fsdp.tcp.tcb import TCB_META_TOUCH_EPOCH, TCB_META_TOUCHED, TOUCH_LOG_SIZE
from fsdp.tcp.usercalls import EAGAIN, EV_CLOSED, EV_CONNECTED, EV_ERROR
from fsdp.tcp.usercalls import tcp_abort_k as tcp_abort
from fsdp.tcp.usercalls import tcp_accept_k as tcp_accept
from fsdp.tcp.usercalls import tcp_accept_pending_k as tcp_accept_pending
from fsdp.tcp.usercalls import tcp_close_k as tcp_close
from fsdp.tcp.usercalls import tcp_connect_k as tcp_connect
from fsdp.tcp.usercalls import tcp_ephemeral_port_k as tcp_ephemeral_port
from fsdp.tcp.usercalls import tcp_recv_k as tcp_recv
from fsdp.tcp.usercalls import tcp_send_k as tcp_send
from fsdp.tcp.usercalls import tcp_status_k as tcp_status

# --- counters: one int64 row (``st[0]`` of bench_run), readable live from another process ------
HC_STARTED = 0  # client: tcp_connect succeeded
HC_COMPLETED = 1  # client: connections that got their response(s) and closed cleanly
HC_REQUESTS = 2  # client: complete responses (= HC_COMPLETED without keep-alive)
HC_CONNECT_ERRORS = 3  # client: tcp_connect failed
HC_PORT_EXHAUSTED = 4  # client: no ephemeral port
HC_CLIENT_ERRORS = 5  # client: reset / error / EOF before the whole response
HC_BAD_RESPONSES = 6  # client: not "HTTP/1.x 200", or a header larger than a slot's region
HC_ACCEPTED = 7  # server
HC_SERVED = 8  # server: responses sent (echo: connections finished)
HC_SERVER_ERRORS = 9  # server: reset / error / EOF inside a request
HC_BAD_REQUESTS = 10  # server: not GET, or a header larger than a slot's region
HC_SERVER_FULL = 11  # server: connections waiting in the accept queue, every slot busy
HC_ECHO_BYTES = 12  # server, echo mode: bytes echoed
HC_LAST_ERRNO = 13
HC_ITERS = 14
HC_STOP = 15  # set to 1 by the parent: the loop returns at its next iteration
HC_SIZE = 16

# --- a slot table (int64[n, SLOT_SIZE]), the server's and the load generator's: the columns
# both use (phase 0 = free), then each one's own --------------------------------------------------
SLOT_CID = 0
SLOT_PHASE = 1
SLOT_NEXT_FREE = 7  # the next free slot (a list from hs[0, HSV_FREE]), -1 at its end
SLOT_SIZE = 8

# --- client slot columns -------------------------------------------------------------------------
HS_CID = SLOT_CID
HS_PHASE = SLOT_PHASE
HS_T0 = 2  # when the request's connect (or, keep-alive, its send) started, µs
HS_GOT = 3  # bytes of the current response received
HS_HDR_END = 4  # offset of the body in the response, -1 until the header is complete
HS_CLEN = 5  # Content-Length, -1 if absent (the body then ends at EOF)
HS_SIZE = SLOT_SIZE

HP_IDLE = 0
HP_CONNECTING = 1
HP_WAIT_RESPONSE = 2
HP_WAIT_EOF = 3  # the whole response is in: wait for the server's FIN

# --- server slot columns -------------------------------------------------------------------------
SV_CID = SLOT_CID
SV_PHASE = SLOT_PHASE
SV_GOT = 2  # bytes of the current request in the slot's region
SV_PEND_OFF = 3  # echo: bytes of the region still to send
SV_PEND_END = 4
SV_SIZE = SLOT_SIZE

# --- a step's state (int64[1, HSV_SIZE]): the server's and the load generator's ----------------
HSV_POS = 0  # how far the step has read its core's touched log (TCB_META_TOUCHED then)
HSV_FULL = 1  # nonzero: visit every busy slot (the first step, and when the log wrapped)
HSV_FREE = 2  # the first free (idle) slot, -1 when every slot is busy
HSV_SIZE = 4

SP_FREE = 0
SP_REQUEST = 1  # http: reading a request; echo: echoing
SP_ECHO = 2

MODE_HTTP = 0
MODE_ECHO = 1

_CR = 13
_LF = 10
_KEEP_ALIVE = np.frombuffer(b"keep-alive", np.uint8).copy()
_CONTENT_LENGTH = np.frombuffer(b"\r\ncontent-length:", np.uint8).copy()


@kernel
def http_header_end(buf, base, n, scan_from):
    """Offset (from ``base``) just past the first CRLF CRLF in ``buf[base:base+n]``, looking from
    ``scan_from`` on (earlier bytes were searched before); -1 if not there yet."""
    i = scan_from - 3
    if i < 0:
        i = 0
    while i + 3 < n:
        p = base + i
        if buf[p + 3] == _LF and buf[p + 2] == _CR and buf[p + 1] == _LF and buf[p] == _CR:
            return i + 4
        i += 1
    return -1


@kernel
def http_find_ci(buf, base, n, pattern):
    """Offset of ``pattern`` (lower case) in ``buf[base:base+n]`` ignoring ASCII case, or -1."""
    m = pattern.shape[0]
    for i in range(n - m + 1):
        ok = True
        for j in range(m):
            c = buf[base + i + j]
            if 65 <= c <= 90:
                c += 32
            if c != pattern[j]:
                ok = False
                break
        if ok:
            return i
    return -1


@kernel
def http_content_length(buf, base, hdr_end):
    """The Content-Length of a response header ``buf[base:base+hdr_end]``, -1 if absent/bad."""
    i = http_find_ci(buf, base, hdr_end, _CONTENT_LENGTH)
    if i < 0:
        return -1
    p = i + _CONTENT_LENGTH.shape[0]
    while p < hdr_end and buf[base + p] == 32:
        p += 1
    v = 0
    digits = 0
    while p < hdr_end and 48 <= buf[base + p] <= 57 and digits < 12:
        v = v * 10 + (buf[base + p] - 48)
        p += 1
        digits += 1
    return v if digits > 0 else -1


@kernel
def http_status_ok(buf, base, hdr_end):
    """True for ``HTTP/1.x 200``."""
    if hdr_end < 12:
        return False
    b = base
    return (
        buf[b] == 72 and buf[b + 1] == 84 and buf[b + 2] == 84 and buf[b + 3] == 80
        and buf[b + 4] == 47 and buf[b + 5] == 49 and buf[b + 6] == 46
        and buf[b + 9] == 50 and buf[b + 10] == 48 and buf[b + 11] == 48
    )


@kernel
def http_is_get(buf, base, n):
    return n >= 4 and buf[base] == 71 and buf[base + 1] == 69 and buf[base + 2] == 84 and (
        buf[base + 3] == 32
    )


# --- the client ---------------------------------------------------------------------------------
@kernel
def _client_fail(client, slots, k, counters, which, err, now):
    counters[which] += 1
    counters[HC_LAST_ERRNO] = err
    tcp_abort(client, slots[k, HS_CID], now)
    slots[k, HS_CID] = -1
    slots[k, HS_PHASE] = HP_IDLE


@kernel
def _client_request(client, slots, k, req, counters, now):
    """Send the request on slot ``k``'s connection; False (slot failed) if it did not fit."""
    n = req.shape[0]
    r = tcp_send(client, slots[k, HS_CID], req, 0, n, now)
    if r != n:
        # a request of a few hundred bytes always fits an empty send buffer
        _client_fail(client, slots, k, counters, HC_CLIENT_ERRORS, -r if r < 0 else 0, now)
        return False
    slots[k, HS_PHASE] = HP_WAIT_RESPONSE
    slots[k, HS_GOT] = 0
    slots[k, HS_HDR_END] = -1
    slots[k, HS_CLEN] = -1
    return True


@njit(inline="always", cache=True)
def hist_record(hist, lat_us):
    """One latency into ``hist`` (1 µs bins; the last bin holds the rest)."""
    if lat_us < 0:
        lat_us = 0
    if lat_us >= hist.shape[0]:
        lat_us = hist.shape[0] - 1
    hist[lat_us] += 1


@kernel
def _client_record(slots, k, hist, counters, now):
    hist_record(hist, now - slots[k, HS_T0])
    counters[HC_REQUESTS] += 1


def step_slots(n: int, max_conns: int):
    """A slot table of ``n`` free slots on the free list, its connection id -> slot map and its
    step state (``hs``): what :func:`http_server_step` and :func:`http_client_step` keep."""
    slots = np.zeros((n, SLOT_SIZE), np.int64)
    slots[:, SLOT_CID] = -1
    slots[:, SLOT_NEXT_FREE] = np.arange(1, n + 1)
    slots[n - 1, SLOT_NEXT_FREE] = -1
    slot_of = np.full(max_conns, -1, np.int64)
    hs = np.zeros((1, HSV_SIZE), np.int64)
    hs[0, HSV_FULL] = 1
    hs[0, HSV_FREE] = 0 if n > 0 else -1
    return slots, slot_of, hs


# A step reads its core's touched log (fsdp.tcp.tcb.tcb_touch, the ready list fsdp.selectors
# reads too) to visit only the slots whose connection changed since its last step:
#     full, pos, head = step_begin(t, hs)
#     full: every busy slot; else, for q in range(pos, head): logged_slot(t, q, slots, slot_of)
#     ... slot_take / slot_release_if_free ...
#     step_end(t, hs)
@njit(inline="always", cache=True)
def step_begin(t, hs):
    """(full, pos, head): visit every busy slot (the first step, or the log wrapped past this
    reader), else the ids logged in [pos, head)."""
    head = t.meta[TCB_META_TOUCHED]
    pos = hs[0, HSV_POS]
    full = hs[0, HSV_FULL] != 0 or head - pos >= TOUCH_LOG_SIZE or head < pos
    hs[0, HSV_FULL] = 0
    return full, pos, head


@njit(inline="always", cache=True)
def logged_slot(t, q, slots, slot_of):
    """The slot of the id at log entry ``q``, or -1 (not one of ours any more)."""
    cid = t.touch_log[q & (TOUCH_LOG_SIZE - 1)]
    k = slot_of[cid]
    if k >= 0 and slots[k, SLOT_CID] == cid:
        return k
    return np.int64(-1)


@njit(inline="always", cache=True)
def slot_take(slots, hs, slot_of, cid):
    """Put connection ``cid`` in the first free slot (the caller checked there is one)."""
    k = hs[0, HSV_FREE]
    hs[0, HSV_FREE] = slots[k, SLOT_NEXT_FREE]
    slot_of[cid] = k
    slots[k, SLOT_CID] = cid
    return k


@njit(inline="always", cache=True)
def slot_release_if_free(slots, k, cid, slot_of, hs):
    """After a visit: if slot ``k``'s connection ``cid`` ended (phase 0), the slot goes back on
    the free list."""
    if slots[k, SLOT_PHASE] == 0:
        slot_of[cid] = -1
        slots[k, SLOT_NEXT_FREE] = hs[0, HSV_FREE]
        hs[0, HSV_FREE] = k


@kernel
def client_open(client, sip, sport, now, counters, c_started, c_port_exhausted,
                c_connect_errors, c_last_errno):
    """A load generator's active open to ``sip:sport`` from an ephemeral port: the new
    connection's id, or -1 with the failure counted (the ``c_*`` are the caller's counter
    indices: the HTTP client's HC_ row, tcp_short's SC_ row)."""
    port = tcp_ephemeral_port(client, 0, sip, sport)
    if port < 0:
        counters[c_port_exhausted] += 1
        counters[c_last_errno] = -port
        return np.int64(-1)
    cid = tcp_connect(client, 0, port, sip, sport, 0, now)
    if cid < 0:
        counters[c_connect_errors] += 1
        counters[c_last_errno] = -cid
        return np.int64(-1)
    counters[c_started] += 1
    return cid


@njit(inline="always", cache=True)
def step_end(t, hs):
    """What the step did to its own connections is logged too, and already handled: read the
    log up to here, and start a new epoch so that the next change of any id is logged again."""
    hs[0, HSV_POS] = t.meta[TCB_META_TOUCHED]
    t.meta[TCB_META_TOUCH_EPOCH] += 1


@kernel
def _client_visit(client, slots, k, buf, rb, req, hist, counters, keepalive, now):
    """Move slot ``k``'s connection on as far as it can go now: connected -> request sent ->
    the response read (all of what is queued) -> closed, or the next request (keep-alive)."""
    cid = slots[k, HS_CID]
    ph = slots[k, HS_PHASE]
    if ph == HP_CONNECTING:
        ev = tcp_status(client, cid)
        if (ev & (EV_ERROR | EV_CLOSED)) != 0:
            _client_fail(client, slots, k, counters, HC_CLIENT_ERRORS, 111, now)
            return
        if (ev & EV_CONNECTED) == 0:
            return
        if not _client_request(client, slots, k, req, counters, now):
            return
        ph = HP_WAIT_RESPONSE
    base = k * rb
    while ph == HP_WAIT_RESPONSE:
        got = slots[k, HS_GOT]
        hdr = slots[k, HS_HDR_END]
        if hdr < 0:
            room = rb - got
            if room <= 0:
                _client_fail(client, slots, k, counters, HC_BAD_RESPONSES, 0, now)
                return
            r = tcp_recv(client, cid, buf, base + got, room, False, now)
        else:
            r = tcp_recv(client, cid, buf, base, rb, False, now)  # body: counted, dropped
        if r == -EAGAIN:
            return
        if r < 0:
            _client_fail(client, slots, k, counters, HC_CLIENT_ERRORS, -r, now)
            return
        clen = slots[k, HS_CLEN]
        if r == 0:  # EOF: the end of a response without Content-Length, else too early
            if hdr < 0 or (clen >= 0 and got < hdr + clen):
                _client_fail(client, slots, k, counters, HC_CLIENT_ERRORS, 0, now)
                return
            _client_record(slots, k, hist, counters, now)
            tcp_close(client, cid, now)
            counters[HC_COMPLETED] += 1
            slots[k, HS_CID] = -1
            slots[k, HS_PHASE] = HP_IDLE
            return
        old = got
        got += r
        slots[k, HS_GOT] = got
        if hdr < 0:
            hdr = http_header_end(buf, base, got, old)
            if hdr < 0:
                continue
            if not http_status_ok(buf, base, hdr):
                _client_fail(client, slots, k, counters, HC_BAD_RESPONSES, 0, now)
                return
            clen = http_content_length(buf, base, hdr)
            slots[k, HS_HDR_END] = hdr
            slots[k, HS_CLEN] = clen
        if clen < 0 or got < hdr + clen:
            continue
        _client_record(slots, k, hist, counters, now)
        if keepalive:
            slots[k, HS_T0] = now
            _client_request(client, slots, k, req, counters, now)
            return  # the next response cannot be there yet: its arrival is logged
        slots[k, HS_PHASE] = HP_WAIT_EOF
        ph = HP_WAIT_EOF  # the FIN usually came with the response: look now
    if ph == HP_WAIT_EOF:
        r = tcp_recv(client, cid, buf, base, rb, False, now)
        if r == -EAGAIN:
            return
        if r != 0:  # bytes after the announced body, or an error
            _client_fail(client, slots, k, counters, HC_CLIENT_ERRORS, -r if r < 0 else 0, now)
            return
        tcp_close(client, cid, now)
        counters[HC_COMPLETED] += 1
        slots[k, HS_CID] = -1
        slots[k, HS_PHASE] = HP_IDLE


@kernel
def _client_visit_free(client, slots, k, buf, rb, req, hist, counters, keepalive, now,
                       slot_of, hs):
    """Visit slot ``k``; if its connection ended, the slot goes back on the free list."""
    cid = slots[k, HS_CID]
    _client_visit(client, slots, k, buf, rb, req, hist, counters, keepalive, now)
    slot_release_if_free(slots, k, cid, slot_of, hs)


@kernel
def http_client_step(client, sip, sport, slots, buf, rb, req, hist, counters, keepalive,
                     start_new, now, slot_of, hs):
    """One step of the load generator: move on the connections whose state changed since the
    last step (the core's touched log, as http_server_step), then open a connection on every
    free slot (``start_new``): connect, send ``req``, read the response (the header into the
    slot's region, the body counted and dropped), close after the server's FIN, or
    (``keepalive``) send the next request on the same connection.  Latency, from connect
    (keep-alive: from the send) to the last response byte, goes into ``hist`` (1 µs bins)."""
    t = client.tcb
    full, pos, head = step_begin(t, hs)
    if full:
        for k in range(slots.shape[0]):
            if slots[k, HS_PHASE] != HP_IDLE:
                _client_visit_free(client, slots, k, buf, rb, req, hist, counters, keepalive,
                                   now, slot_of, hs)
    else:
        for q in range(pos, head):
            k = logged_slot(t, q, slots, slot_of)
            if k >= 0:
                _client_visit_free(client, slots, k, buf, rb, req, hist, counters, keepalive,
                                   now, slot_of, hs)
    while start_new and hs[0, HSV_FREE] >= 0:
        cid = client_open(client, sip, sport, now, counters, HC_STARTED, HC_PORT_EXHAUSTED,
                          HC_CONNECT_ERRORS, HC_LAST_ERRNO)
        if cid < 0:
            break
        k = slot_take(slots, hs, slot_of, cid)
        slots[k, HS_PHASE] = HP_CONNECTING
        slots[k, HS_T0] = now
    step_end(t, hs)


# --- the server ---------------------------------------------------------------------------------
@kernel
def _server_fail(server, sv, j, counters, which, err, now):
    counters[which] += 1
    counters[HC_LAST_ERRNO] = err
    tcp_abort(server, sv[j, SV_CID], now)
    sv[j, SV_CID] = -1
    sv[j, SV_PHASE] = SP_FREE


@kernel
def _server_done(server, sv, j, now):
    tcp_close(server, sv[j, SV_CID], now)
    sv[j, SV_CID] = -1
    sv[j, SV_PHASE] = SP_FREE


@kernel
def _server_http(server, sv, j, buf, rb, resp, split, counters, now):
    """Read a request into slot ``j``'s region; at CRLF CRLF answer it (``resp[:split]``, then
    close; ``resp[split:]`` and keep the connection when the request asked for keep-alive)."""
    cid = sv[j, SV_CID]
    base = j * rb
    got = sv[j, SV_GOT]
    room = rb - got
    if room <= 0:
        _server_fail(server, sv, j, counters, HC_BAD_REQUESTS, 0, now)
        return
    r = tcp_recv(server, cid, buf, base + got, room, False, now)
    if r == -EAGAIN:
        return
    if r == 0 and got == 0:  # the client closed between keep-alive requests
        _server_done(server, sv, j, now)
        return
    if r <= 0:
        _server_fail(server, sv, j, counters, HC_SERVER_ERRORS, -r if r < 0 else 0, now)
        return
    old = got
    got += r
    sv[j, SV_GOT] = got
    end = http_header_end(buf, base, got, old)
    if end < 0:
        return
    if not http_is_get(buf, base, end):
        _server_fail(server, sv, j, counters, HC_BAD_REQUESTS, 0, now)
        return
    keep = split < resp.shape[0] and http_find_ci(buf, base, end, _KEEP_ALIVE) >= 0
    off = split if keep else 0
    n = resp.shape[0] - split if keep else split
    w = tcp_send(server, cid, resp, off, n, now)
    if w != n:  # an empty send buffer always takes a small response
        _server_fail(server, sv, j, counters, HC_SERVER_ERRORS, -w if w < 0 else 0, now)
        return
    counters[HC_SERVED] += 1
    if keep:
        sv[j, SV_GOT] = 0  # a pipelined next request would start here; clients here wait
        return
    _server_done(server, sv, j, now)  # FIN right behind the response


@kernel
def _server_echo(server, sv, j, buf, rb, counters, now):
    cid = sv[j, SV_CID]
    base = j * rb
    off = sv[j, SV_PEND_OFF]
    end = sv[j, SV_PEND_END]
    if off < end:
        w = tcp_send(server, cid, buf, base + off, end - off, now)
        if w == -EAGAIN:
            return
        if w < 0:
            _server_fail(server, sv, j, counters, HC_SERVER_ERRORS, -w, now)
            return
        sv[j, SV_PEND_OFF] = off + w
        counters[HC_ECHO_BYTES] += w
        return
    r = tcp_recv(server, cid, buf, base, rb, False, now)
    if r == -EAGAIN:
        return
    if r == 0:
        counters[HC_SERVED] += 1
        _server_done(server, sv, j, now)
        return
    if r < 0:
        _server_fail(server, sv, j, counters, HC_SERVER_ERRORS, -r, now)
        return
    sv[j, SV_PEND_OFF] = 0
    sv[j, SV_PEND_END] = r
    w = tcp_send(server, cid, buf, base, r, now)
    if w > 0:
        sv[j, SV_PEND_OFF] = w
        counters[HC_ECHO_BYTES] += w
    elif w != -EAGAIN:
        _server_fail(server, sv, j, counters, HC_SERVER_ERRORS, -w, now)


@kernel
def _server_visit(server, sv, j, buf, rb, resp, split, counters, mode, now, slot_of, hs):
    """Serve slot ``j`` once; if that ended its connection, the slot goes back on the free
    list."""
    cid = sv[j, SV_CID]
    if mode == MODE_ECHO:
        _server_echo(server, sv, j, buf, rb, counters, now)
    else:
        _server_http(server, sv, j, buf, rb, resp, split, counters, now)
    slot_release_if_free(sv, j, cid, slot_of, hs)


@kernel
def http_server_step(server, lid, sv, buf, rb, resp, split, counters, mode, now, slot_of, hs):
    """Serve the connections whose state changed since the last step, then accept what
    listener ``lid`` holds into free slots and serve each new one at once.

    Which connections changed is what the core's touched log says (fsdp.tcp.tcb.tcb_touch,
    the ready list fsdp.selectors reads too): a step costs O(changed), not O(slots), so a core
    with few connections of many slots does not pay for the idle ones.  An HTTP visit does all
    the work its connection has (the request is read whole, answered, closed), so a slot needs
    no visit until its connection changes again.  Echo mode may leave bytes queued (a full
    region, a full send buffer): it visits every busy slot each step."""
    t = server.tcb
    full, pos, head = step_begin(t, hs)
    if full or mode == MODE_ECHO:
        for j in range(sv.shape[0]):
            if sv[j, SV_PHASE] != SP_FREE:
                _server_visit(server, sv, j, buf, rb, resp, split, counters, mode, now, slot_of,
                              hs)
    else:
        for q in range(pos, head):
            j = logged_slot(t, q, sv, slot_of)
            if j >= 0:
                _server_visit(server, sv, j, buf, rb, resp, split, counters, mode, now, slot_of,
                              hs)
    while hs[0, HSV_FREE] >= 0:
        cid = tcp_accept(server, lid)
        if cid < 0:
            break
        counters[HC_ACCEPTED] += 1
        j = slot_take(sv, hs, slot_of, cid)
        sv[j, SV_PHASE] = SP_REQUEST
        sv[j, SV_GOT] = 0
        sv[j, SV_PEND_OFF] = 0
        sv[j, SV_PEND_END] = 0
        _server_visit(server, sv, j, buf, rb, resp, split, counters, mode, now, slot_of, hs)
    if hs[0, HSV_FREE] < 0 and tcp_accept_pending(server, lid) > 0:
        counters[HC_SERVER_FULL] += 1
    step_end(t, hs)
