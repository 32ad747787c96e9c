"""One hashed, hierarchical timing wheel per core for the TCP timers.

Implements Varghese & Lauck, "Hashed and Hierarchical Timing Wheels" (SOSP 1987): scheme 6 (a
hashed wheel, O(1) start/stop) arranged as scheme 7 (two levels plus an overflow list), the way
Linux's timer wheel and Kafka's purgatory do it, with one change that TCP tests need: expiry is
**exact to the microsecond and in time order**, never early and never rounded to a tick.

Timers are named, not allocated.  A connection has at most one pending timer of each kind
(``TIMER_RTO``, ``TIMER_DELACK`` ...), so timer ``(conn, kind)`` lives at the fixed index
``conn * n_kinds + kind`` of preallocated columns; arming a pending timer moves it (re-arm), and
nothing on any path allocates.  Each list is circular and doubly linked through ``next``/``prev``
with a *sentinel* node per list (ids ``n_timers ...``), so unlinking needs no head bookkeeping and
the sentinel left alone in a list tells which list just became empty.

Time is cut into ticks of ``tick_us`` µs (a power of two, so a tick is a shift) and ticks into
*groups* of ``n_slots`` ticks.  With ``cur`` the cursor tick (everything before it has fired) and
``G = cur // n_slots``::

    level 0   n_slots slots, one tick each: the ticks of group G      (slot = tick % n_slots)
    level 1   n_slots slots, one group each: groups G+1 .. G+n_slots  (slot = group % n_slots)
    overflow  one unsorted list: anything later (> n_slots^2 ticks away)

With the defaults (1024 µs ticks, 4096 slots) level 0 spans 4.2 s, level 1 4.9 h: RTO, delayed ACK,
TIME_WAIT (60 s) and keep-alive (2 h) never reach the overflow list.  A timer already due when
armed goes into the cursor's slot.  When the cursor enters a new group, that group's level-1 slot
is *cascaded* (each timer moves once, O(1)) into level 0; the overflow list is scanned only when
its minimum (kept as a lower bound) comes within level 1's reach.

Order and exactness.  A level-0 slot holds a single tick, so slots fire in time order; inside a
slot timers fire by ``(expires, timer index)``.  Slots are appended to unsorted (O(1) arm) with a
per-slot ``sorted`` flag that survives in-order appends (the usual case: TCP arms ``now + rto``);
a slot that lost it is merge-sorted in place (O(k log k), no allocation) when it is expired.
A timer fires when ``expires <= now``, never before.  ``timer_expire`` returns at most ``max_n``
timers; the rest stay pending, still due, and come first in the next call.

Costs.  ``timer_arm``, ``timer_cancel``, re-arm: O(1).  ``timer_expire``: O(fired) plus O(words)
bitmap scans to skip empty slots, plus O(k) per cascaded group or overflow scan (not bounded by
``max_n``: 100k keep-alives armed in the same millisecond cascade together, once, ~1 ms of work).
``timer_next_deadline``: O(1) while the cached minimum is valid (an arm keeps it valid; cancelling
the earliest timer or expiring invalidates it); otherwise O(n_slots / 64) bitmap words plus,
for the first non-empty slot, O(1) when it is flagged sorted (level 0: (expires, id) order;
level 1: non-decreasing expires, which timers of one duration armed in time order keep, as
TIME-WAIT's are) or else one scan of it (level 0: the timers of one tick; level 1: of one group,
which at 10k closes/s is ~40k TIME-WAIT timers: a scan per query used to take half of a
short-connection server's time); the overflow list only when both levels are empty.  Measured on the
2-core dev VM with 100k timers pending: arm or re-arm ~7 ns (cache-resident) to ~160 ns (random
connections: cache misses), cancel ~1 ns, pending/expires < 1 ns, next deadline ~60 ns cached,
expiry ~200 ns per fired timer.

Refcounts.  Numba increfs every array of a NamedTuple argument when a kernel is entered and
decrefs it after the argument's last use; its pruning pass removes the pair only when the last
use is on every path (no early ``return`` after a branch that used the table, no ``//`` by a
runtime value, whose ZeroDivisionError path counts as an exit).  Otherwise each call pays two
atomic operations per column (here ~90 ns for 7 columns).  So the inlined kernels below end with
an unconditional use of the table (a counter), take branch-free paths where short, and ticks are
shifts; ``tests/tcp/test_timerwheel.py`` checks the generated code of the hot calls.

Memory: 16 bytes per timer (``expires`` int64, ``next``/``prev`` int32), i.e. ``16 * n_kinds``
bytes per connection (128 B with the 8 kinds below), plus about 18 bytes per slot.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

# Timer kinds: one pending timer of each kind per connection.
TIMER_RTO = 0  # retransmission, SYN retransmission included (RFC 6298, RFC 9293 §3.8.1)
TIMER_DELACK = 1  # delayed ACK, < 500 ms (RFC 9293 §3.8.6.3, RFC 1122 §4.2.3.2)
TIMER_PERSIST = 2  # zero-window probe (RFC 9293 §3.8.6.1, RFC 1122 §4.2.2.17)
TIMER_KEEPALIVE = 3  # keep-alive idle / probe interval (RFC 1122 §4.2.3.6, RFC 9293 §3.8.4)
TIMER_TIMEWAIT = 4  # 2*MSL in TIME-WAIT (RFC 9293 §3.6.1)
TIMER_SYNACK = 5  # SYN-ACK retransmission in SYN-RECEIVED (RFC 9293 §3.5, RFC 6298 (5.7))
TIMER_FIN_WAIT_2 = 6  # orphaned FIN-WAIT-2 timeout (Linux tcp_fin_timeout)
TIMER_REORDER = 7  # RACK reordering window: deem late segments lost (RFC 8985 §6.3)
N_TIMER_KINDS = 8
TIMER_NAMES = (
    "rto", "delack", "persist", "keepalive", "timewait", "synack", "fin_wait_2", "reorder",
)

# Error codes
ERR_TIMER_BAD_ID = -1  # connection or kind out of range
ERR_TIMER_BAD_TIME = -2  # negative expiry

# meta indices
TW_CUR = 0  # cursor tick: every timer of an earlier tick has fired
TW_TICK_US = 1
TW_SHIFT = 2  # log2(n_slots)
TW_N_KINDS = 3
TW_PENDING = 4  # timers pending
TW_NEXT = 5  # cached earliest expiry (-1 = none) ...
TW_NEXT_VALID = 6  # ... valid when 1
TW_OVF_MIN = 7  # lower bound of the overflow list's earliest expiry (while it is non-empty)
TW_FIRED = 8  # counters: timers fired ...
TW_CASCADED = 9  # ... moved from level 1 or the overflow list into a lower level
TW_OVF_SCANS = 10  # ... overflow list scans
TW_SORTS = 11  # ... level-0 slots merge-sorted at expiry
TW_ARMS = 12  # ... timer_arm calls that armed a timer
TW_CANCELS = 13  # ... timers stopped by timer_cancel / timer_cancel_all
TW_MAX_CONNS = 14
TW_TICK_SHIFT = 15  # log2(tick_us): a tick is a shift, not a 64-bit division
TW_META_SIZE = 16

_ONE = np.uint64(1)
_ZERO = np.uint64(0)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


class TimerWheel(NamedTuple):
    """Per-core timers.  Timer ``i = conn * n_kinds + kind``; node ``n_timers + l`` is the sentinel
    of list ``l``: level-0 slot ``s`` is list ``s``, level-1 slot ``s`` list ``n_slots + s``, the
    overflow list ``2 * n_slots``.  Bit ``l`` of ``bitmap`` is set while list ``l`` is non-empty."""

    expires: np.ndarray  # int64[n_timers]: due time (µs); -1 = not pending
    next: np.ndarray  # int32[n_timers + 2 * n_slots + 1]
    prev: np.ndarray  # int32[n_timers + 2 * n_slots + 1]
    sorted: np.ndarray  # uint8[2 * n_slots]: level-0 slot s in (expires, id) order (s < n_slots);
    #                     level-1 slot in non-decreasing expires (n_slots + s): its head is its min
    bitmap: np.ndarray  # uint64[2 * n_slots // 64 + 1]: non-empty lists, bit = list index
    meta: np.ndarray  # int64[TW_META_SIZE]


def timerwheel_create(
    max_conns: int,
    n_kinds: int = N_TIMER_KINDS,
    tick_us: int = 1024,
    n_slots: int = 4096,
    now: int = 0,
) -> TimerWheel:
    """A wheel for ``max_conns`` connections with ``n_kinds`` timers each, ticks of ``tick_us`` µs
    (a power of two: the default 1024 µs is "1 ms"; expiry stays exact to the µs regardless)
    and ``n_slots`` slots per level (a power of two, >= 4); ``now`` is the clock at creation."""
    if max_conns < 1 or n_kinds < 1 or max_conns * n_kinds + 2 * n_slots + 1 > 0x7FFFFFFF:
        raise ValueError(f"bad wheel size: {max_conns} connections x {n_kinds} kinds")
    if tick_us < 1 or tick_us & (tick_us - 1):
        raise ValueError(f"tick_us must be a power of two, not {tick_us}")
    if n_slots < 4 or n_slots & (n_slots - 1):
        raise ValueError(f"n_slots must be a power of two >= 4, not {n_slots}")
    if now < 0:
        raise ValueError("now must be >= 0")
    n_timers = max_conns * n_kinds
    n_nodes = n_timers + 2 * n_slots + 1
    nxt = np.full(n_nodes, -1, np.int32)
    prv = np.full(n_nodes, -1, np.int32)
    sentinels = np.arange(n_timers, n_nodes, dtype=np.int32)
    nxt[n_timers:] = sentinels  # every list starts empty: the sentinel points at itself
    prv[n_timers:] = sentinels
    meta = np.zeros(TW_META_SIZE, np.int64)
    meta[TW_CUR] = now // tick_us
    meta[TW_TICK_US] = tick_us
    meta[TW_TICK_SHIFT] = tick_us.bit_length() - 1
    meta[TW_MAX_CONNS] = max_conns
    meta[TW_SHIFT] = n_slots.bit_length() - 1
    meta[TW_N_KINDS] = n_kinds
    meta[TW_NEXT] = -1
    meta[TW_NEXT_VALID] = 1
    meta[TW_OVF_MIN] = -1
    return TimerWheel(
        expires=np.full(n_timers, -1, np.int64),
        next=nxt,
        prev=prv,
        sorted=np.ones(2 * n_slots, np.uint8),
        bitmap=np.zeros(2 * n_slots // 64 + 1, np.uint64),
        meta=meta,
    )


def timerwheel_bytes(w: TimerWheel) -> int:
    """Bytes held by the wheel's arrays."""
    return sum(a.nbytes for a in w)


# --- bitmaps ------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _bit_set(bm, i):
    bm[i >> 6] |= _ONE << np.uint64(i & 63)


@njit(inline="always", cache=True)
def _ctz(x):
    """Index of the lowest set bit of a non-zero uint64."""
    n = 0
    if (x & np.uint64(0xFFFFFFFF)) == _ZERO:
        n += 32
        x >>= np.uint64(32)
    if (x & np.uint64(0xFFFF)) == _ZERO:
        n += 16
        x >>= np.uint64(16)
    if (x & np.uint64(0xFF)) == _ZERO:
        n += 8
        x >>= np.uint64(8)
    if (x & np.uint64(0xF)) == _ZERO:
        n += 4
        x >>= np.uint64(4)
    if (x & np.uint64(0x3)) == _ZERO:
        n += 2
        x >>= np.uint64(2)
    if (x & _ONE) == _ZERO:
        n += 1
    return n


@njit(cache=True)
def _bitmap_next(bm, start, stop):
    """The first set bit in ``[start, stop)``, or -1."""
    if start >= stop:
        return -1
    wi = start >> 6
    word = bm[wi] & (_ALL << np.uint64(start & 63))
    last = (stop - 1) >> 6
    while True:
        if word != _ZERO:
            i = wi * 64 + _ctz(word)
            return i if i < stop else -1
        wi += 1
        if wi > last:
            return -1
        word = bm[wi]


@njit(cache=True)
def _bitmap_next_circular(bm, lo, start, stop):
    """The first set bit at or cyclically after ``start`` within ``[lo, stop)``, or -1."""
    i = _bitmap_next(bm, start, stop)
    if i < 0 and start > lo:
        i = _bitmap_next(bm, lo, start)
    return i


# --- lists --------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _n_timers(w):
    return w.expires.shape[0]


@njit(inline="always", cache=True)
def _before(w, a, b):
    """Timer ``a`` fires before timer ``b``: ordered by (expires, index)."""
    ea = w.expires[a]
    eb = w.expires[b]
    return ea < eb or (ea == eb and a < b)


@njit(inline="always", cache=True)
def _append(w, head, x):
    p = w.prev[head]
    w.next[p] = x
    w.prev[x] = p
    w.next[x] = head
    w.prev[head] = x


@njit(inline="always", cache=True)
def _unlink(w, x):
    """Take pending timer ``x`` off its list, keeping the bitmap and sorted flags right."""
    p = w.prev[x]
    q = w.next[x]
    w.next[p] = q
    w.prev[q] = p
    w.next[x] = -1
    w.prev[x] = -1
    # Only the sentinel left: list ``lst`` is now empty.  Written without branches on purpose
    # (module doc, "Refcounts"); an empty slot counts as sorted.
    nt = _n_timers(w)
    lst = p - nt
    emptied = (p == q) & (p >= nt)
    b = lst if emptied else 0
    w.bitmap[b >> 6] &= ~(np.uint64(emptied) << np.uint64(b & 63))
    emptied01 = emptied & (lst < w.sorted.shape[0])  # a level-0 or level-1 slot
    w.sorted[lst if emptied01 else 0] |= np.uint8(emptied01)


@njit(inline="always", cache=True)
def _place(w, x):
    """Put pending timer ``x`` (``expires`` already set) on the list its expiry belongs to."""
    nt = _n_timers(w)
    n = w.sorted.shape[0] >> 1
    shift = w.meta[TW_SHIFT]
    cur = w.meta[TW_CUR]
    exp = w.expires[x]
    tick = max(exp >> w.meta[TW_TICK_SHIFT], cur)  # already due: fire with the cursor's slot
    g = tick >> shift
    cur_g = cur >> shift
    if g == cur_g:
        lst = tick & (n - 1)
    elif g - cur_g <= n:
        lst = n + (g & (n - 1))
    else:
        lst = 2 * n
    head = nt + lst
    last = w.prev[head]
    was_empty = last == head
    # A level-0 slot stays sorted while timers arrive in (expires, index) order (its timers fire
    # in that order); a level-1 slot while expiries do not decrease (only its minimum is ever
    # needed, for the next deadline: timers of one duration armed in time order, e.g. TIME-WAIT,
    # keep the head the minimum instead of a scan of the whole group per deadline query).
    prev = last if last < nt else x
    out_of_order = _before(w, x, prev) if lst < n else w.expires[x] < w.expires[prev]
    s01 = lst if lst < 2 * n else 0
    w.sorted[s01] &= np.uint8(not (lst < 2 * n and out_of_order))
    _append(w, head, x)
    _bit_set(w.bitmap, lst)
    # The overflow list's lower bound (only meaningful while the list is non-empty).
    om = w.meta[TW_OVF_MIN]
    lower = lst == 2 * n and (was_empty or exp < om)
    w.meta[TW_OVF_MIN] = exp if lower else om


@njit(cache=True)
def _sort_slot(w, s):
    """Merge-sort level-0 slot ``s`` by (expires, index) in place: bottom-up merge sort of a
    linked list (O(k log k) compares, no allocation), then the prev links are rebuilt."""
    nt = _n_timers(w)
    head = nt + s
    first = w.next[head]
    if first == head:
        w.sorted[s] = 1
        return
    w.next[w.prev[head]] = -1  # a -1 terminated singly linked list from ``first``
    lst = first
    width = 1
    while True:
        p = lst
        lst = -1
        tail = -1
        merges = 0
        while p != -1:
            merges += 1
            q = p
            psize = 0
            for _ in range(width):
                psize += 1
                q = w.next[q]
                if q == -1:
                    break
            qsize = width
            while psize > 0 or (qsize > 0 and q != -1):
                if psize == 0:
                    e = q
                    q = w.next[q]
                    qsize -= 1
                elif qsize == 0 or q == -1:
                    e = p
                    p = w.next[p]
                    psize -= 1
                elif _before(w, q, p):
                    e = q
                    q = w.next[q]
                    qsize -= 1
                else:  # stable: p first on ties (there are none: indices differ)
                    e = p
                    p = w.next[p]
                    psize -= 1
                if tail == -1:
                    lst = e
                else:
                    w.next[tail] = e
                tail = e
            p = q
        w.next[tail] = -1
        if merges <= 1:
            break
        width *= 2
    prv = head
    x = lst
    while x != -1:
        w.prev[x] = prv
        w.next[prv] = x
        prv = x
        x = w.next[x]
    w.next[prv] = head
    w.prev[head] = prv
    w.sorted[s] = 1
    w.meta[TW_SORTS] += 1


@njit(cache=True)
def _list_min(w, head):
    """The earliest expiry on one list (a scan; the head when the list is a sorted slot)."""
    best = -1
    x = w.next[head]
    while x != head:
        e = w.expires[x]
        if best < 0 or e < best:
            best = e
        x = w.next[x]
    return best


@njit(cache=True)
def _scan_overflow(w):
    """Move every overflow timer that level 1 (or 0) can now hold; recompute the list's minimum."""
    nt = _n_timers(w)
    n = w.sorted.shape[0] >> 1
    head = nt + 2 * n
    shift = w.meta[TW_SHIFT]
    tick_shift = w.meta[TW_TICK_SHIFT]
    limit_g = (w.meta[TW_CUR] >> shift) + n
    w.meta[TW_OVF_SCANS] += 1
    best = -1
    x = w.next[head]
    while x != head:
        nxt = w.next[x]
        e = w.expires[x]
        if ((e >> tick_shift) >> shift) <= limit_g:
            _unlink(w, x)
            _place(w, x)
            w.meta[TW_CASCADED] += 1
        elif best < 0 or e < best:
            best = e
        x = nxt
    w.meta[TW_OVF_MIN] = best


@njit(cache=True)
def _advance_group(w, target):
    """Move the cursor to the start of the next group that holds timers (or of ``target``'s group,
    whichever is first), cascading that group's level-1 slot into level 0."""
    nt = _n_timers(w)
    n = w.sorted.shape[0] >> 1
    mask = n - 1
    shift = w.meta[TW_SHIFT]
    g = w.meta[TW_CUR] >> shift
    new_g = target >> shift
    l1 = _bitmap_next_circular(w.bitmap, n, n + ((g + 1) & mask), 2 * n)
    if l1 >= 0:
        g1 = g + 1 + ((l1 - n - (g + 1)) & mask)
        if g1 < new_g:
            new_g = g1
    og = -1
    if w.next[nt + 2 * n] != nt + 2 * n:  # the overflow list is not empty
        og = (w.meta[TW_OVF_MIN] >> w.meta[TW_TICK_SHIFT]) >> shift
        if og < new_g:
            new_g = og
    w.meta[TW_CUR] = new_g << shift
    # Level 1 held groups g+1 .. g+n and none before new_g, so slot new_g % n holds group new_g.
    head = nt + n + (new_g & mask)
    while w.next[head] != head:
        x = w.next[head]
        _unlink(w, x)
        _place(w, x)
        w.meta[TW_CASCADED] += 1
    if og >= 0 and og <= new_g + n:
        _scan_overflow(w)


# --- public API ---------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _remove(w, x):
    """Cancel pending timer ``x``."""
    w.meta[TW_NEXT_VALID] &= w.expires[x] != w.meta[TW_NEXT]  # it may have been the earliest
    _unlink(w, x)
    w.expires[x] = -1
    w.meta[TW_PENDING] -= 1


@njit(inline="always", cache=True)
def timer_arm(w, conn, kind, expires):
    """(Re-)arm timer ``(conn, kind)`` to fire at ``expires`` µs (absolute; may be in the past:
    it then fires at the next ``timer_expire``).  Returns 0 or ERR_TIMER_*.  O(1)."""
    nk = w.meta[TW_N_KINDS]
    rc = 0
    if conn < 0 or kind < 0 or kind >= nk or conn >= w.meta[TW_MAX_CONNS]:
        rc = ERR_TIMER_BAD_ID
    elif expires < 0:
        rc = ERR_TIMER_BAD_TIME
    else:
        x = conn * nk + kind
        if w.expires[x] >= 0:
            _remove(w, x)
        w.expires[x] = expires
        _place(w, x)
        w.meta[TW_PENDING] += 1
        if w.meta[TW_NEXT_VALID]:
            nd = w.meta[TW_NEXT]
            if nd < 0 or expires < nd:
                w.meta[TW_NEXT] = expires
    w.meta[TW_ARMS] += rc == 0  # the table's last use on every path (module doc, "Refcounts")
    return rc


@njit(inline="always", cache=True)
def timer_cancel(w, conn, kind):
    """Stop timer ``(conn, kind)``; True if it was pending.  O(1)."""
    nk = w.meta[TW_N_KINDS]
    x = -1
    if conn >= 0 and kind >= 0 and kind < nk and conn < w.meta[TW_MAX_CONNS]:
        x = conn * nk + kind
        if w.expires[x] >= 0:
            _remove(w, x)
        else:
            x = -1
    w.meta[TW_CANCELS] += x >= 0
    return x >= 0


@njit(inline="always", cache=True)
def timer_cancel_all(w, conn):
    """Stop every timer of ``conn`` (when its TCB is freed); returns how many were pending."""
    nk = w.meta[TW_N_KINDS]
    n = 0
    if conn >= 0 and conn < w.meta[TW_MAX_CONNS]:
        for kind in range(nk):
            x = conn * nk + kind
            if w.expires[x] >= 0:
                _remove(w, x)
                n += 1
    w.meta[TW_CANCELS] += n
    return n


@njit(inline="always", cache=True)
def timer_pending(w, conn, kind):
    """True if timer ``(conn, kind)`` is armed."""
    return timer_expires(w, conn, kind) >= 0


@njit(inline="always", cache=True)
def timer_expires(w, conn, kind):
    """When timer ``(conn, kind)`` fires (µs), or -1 if it is not armed."""
    nk = w.meta[TW_N_KINDS]
    ok = (conn >= 0) & (kind >= 0) & (kind < nk) & (conn < w.meta[TW_MAX_CONNS])
    x = conn * nk + kind if ok else 0  # branch-free: one unconditional load (module doc)
    e = w.expires[x]
    return e if ok else np.int64(-1)


@njit(inline="always", cache=True)
def timer_count(w):
    """Timers pending."""
    return w.meta[TW_PENDING]


@njit(cache=True)
def timer_expire(w, now, out_conn, out_kind, max_n):
    """Fire due timers: write up to ``max_n`` of those with ``expires <= now`` into ``out_conn``
    / ``out_kind`` in time order (ties by timer index) and return how many.  Fired timers are no
    longer pending (the caller re-arms what it needs).  Timers left over by ``max_n`` stay due and
    come first next time.  ``now`` is monotonic: an earlier ``now`` than last time fires only
    what is due by it, and is otherwise harmless."""
    if max_n > out_conn.shape[0]:
        max_n = out_conn.shape[0]
    if max_n > out_kind.shape[0]:
        max_n = out_kind.shape[0]
    if max_n <= 0 or now < 0:
        return 0
    nt = _n_timers(w)
    n = w.sorted.shape[0] >> 1
    mask = n - 1
    shift = w.meta[TW_SHIFT]
    nk = w.meta[TW_N_KINDS]
    target = now >> w.meta[TW_TICK_SHIFT]
    count = 0
    while True:
        cur = w.meta[TW_CUR]
        s = cur & mask
        head = nt + s
        if w.next[head] != head:
            if not w.sorted[s]:
                _sort_slot(w, s)
            while count < max_n:
                x = w.next[head]
                if x == head or w.expires[x] > now:
                    break
                _unlink(w, x)
                w.expires[x] = -1
                conn = x // nk
                out_conn[count] = conn
                out_kind[count] = x - conn * nk
                count += 1
            if w.next[head] != head:
                break  # max_n reached, or the rest of this tick is not due yet
        if count >= max_n or cur >= target:
            break
        g = cur >> shift
        s2 = _bitmap_next(w.bitmap, s + 1, n)
        if s2 >= 0:
            t2 = (g << shift) + s2
            if t2 > target:
                w.meta[TW_CUR] = target
                break
            w.meta[TW_CUR] = t2
            continue
        if target < ((g + 1) << shift):
            w.meta[TW_CUR] = target
            break
        _advance_group(w, target)
    if count > 0:
        w.meta[TW_PENDING] -= count
        w.meta[TW_FIRED] += count
        w.meta[TW_NEXT_VALID] = 0
    return count


@njit(cache=True)
def _next_deadline_compute(w):
    """Recompute and cache the earliest expiry (the slow half of ``timer_next_deadline``)."""
    nt = _n_timers(w)
    n = w.sorted.shape[0] >> 1
    best = -1
    s = _bitmap_next(w.bitmap, 0, n)
    if s >= 0:
        head = nt + s
        if w.sorted[s]:
            best = w.expires[w.next[head]]
        else:
            best = _list_min(w, head)
    else:
        g = w.meta[TW_CUR] >> w.meta[TW_SHIFT]
        lst = _bitmap_next_circular(w.bitmap, n, n + ((g + 1) & (n - 1)), 2 * n)
        if lst >= 0:
            best = w.expires[w.next[nt + lst]] if w.sorted[lst] else _list_min(w, nt + lst)
        else:
            head = nt + 2 * n
            if w.next[head] != head:
                best = _list_min(w, head)
                w.meta[TW_OVF_MIN] = best
    w.meta[TW_NEXT] = best
    w.meta[TW_NEXT_VALID] = 1
    return best


@njit(inline="always", cache=True)
def timer_next_deadline(w):
    """The earliest pending expiry in µs (exact), or -1 when no timer is armed.

    O(1) while cached; after an invalidation O(n_slots / 64) plus one slot scan (module doc)."""
    if not w.meta[TW_NEXT_VALID]:
        _next_deadline_compute(w)
    return w.meta[TW_NEXT]


@njit(inline="always", cache=True)
def timer_work_due(w, now):
    """True when ``timer_expire(w, now, ...)`` has work: a timer is due by ``now``, or the cursor
    is a tick or more behind ``now``'s.  The per-core loop calls ``timer_expire`` on either, so
    the cursor follows the clock even while no timer fires (a short-connection server cancels
    every RTO and its TIME-WAIT timers are a minute away): a cursor left behind places new timers
    relative to an old tick, past level 1's reach into the overflow list, whose minimum is a scan
    of the whole list.  O(1) while the next deadline is cached."""
    d = timer_next_deadline(w)
    return (d >= 0 and d <= now) or (now >> w.meta[TW_TICK_SHIFT]) > w.meta[TW_CUR]


# timerwheel_audit() results
TW_AUDIT_OK = 0
TW_AUDIT_BAD_LINK = -1  # next/prev disagree, or a list does not close
TW_AUDIT_BAD_COUNT = -2  # pending count, or a pending timer on no list / twice
TW_AUDIT_BAD_BITMAP = -3
TW_AUDIT_MISPLACED = -4  # a timer on a list its expiry does not belong to
TW_AUDIT_UNSORTED = -5  # a slot flagged sorted is not
TW_AUDIT_BAD_CACHE = -6  # cached next deadline or overflow bound wrong


@njit(cache=True)
def timerwheel_audit(w):
    """Check every invariant the wheel relies on (tests; O(n_timers))."""
    nt = _n_timers(w)
    n = w.sorted.shape[0] >> 1
    mask = n - 1
    shift = w.meta[TW_SHIFT]
    tick_shift = w.meta[TW_TICK_SHIFT]
    cur = w.meta[TW_CUR]
    g = cur >> shift
    seen = np.zeros(nt, np.uint8)
    total = 0
    true_min = -1
    ovf_min = -1
    for lst in range(2 * n + 1):
        bit = (w.bitmap[lst >> 6] >> np.uint64(lst & 63)) & _ONE
        head = nt + lst
        x = w.next[head]
        prv = head
        k = 0
        last = -1
        while x != head:
            if x < 0 or x >= nt or w.prev[x] != prv or seen[x] or w.expires[x] < 0:
                return TW_AUDIT_BAD_LINK
            seen[x] = 1
            k += 1
            if k > nt:
                return TW_AUDIT_BAD_LINK
            e = w.expires[x]
            if true_min < 0 or e < true_min:
                true_min = e
            tick = e >> tick_shift
            if lst < n:
                if lst < (cur & mask):
                    return TW_AUDIT_MISPLACED
                if tick != (g << shift) + lst and not (tick < cur and lst == (cur & mask)):
                    return TW_AUDIT_MISPLACED
                if w.sorted[lst] and last >= 0 and _before(w, x, last):
                    return TW_AUDIT_UNSORTED
            elif lst < 2 * n:
                tg = tick >> shift
                if tg <= g or tg > g + n or (tg & mask) != lst - n:
                    return TW_AUDIT_MISPLACED
                if w.sorted[lst] and last >= 0 and e < w.expires[last]:
                    return TW_AUDIT_UNSORTED
            else:
                if (tick >> shift) <= g + n:
                    return TW_AUDIT_MISPLACED
                if ovf_min < 0 or e < ovf_min:
                    ovf_min = e
            last = x
            prv = x
            x = w.next[x]
        if w.prev[head] != prv:
            return TW_AUDIT_BAD_LINK
        total += k
        if (bit != _ZERO) != (k > 0):
            return TW_AUDIT_BAD_BITMAP
        if lst < 2 * n and k == 0 and not w.sorted[lst]:
            return TW_AUDIT_UNSORTED
    for x in range(nt):
        if (w.expires[x] >= 0) != (seen[x] == 1):
            return TW_AUDIT_BAD_COUNT
    if total != w.meta[TW_PENDING]:
        return TW_AUDIT_BAD_COUNT
    if w.meta[TW_NEXT_VALID] and w.meta[TW_NEXT] != true_min:
        return TW_AUDIT_BAD_CACHE
    for b in range(2 * n + 1, w.bitmap.shape[0] * 64):  # bits past the last list stay clear
        if (w.bitmap[b >> 6] >> np.uint64(b & 63)) & _ONE:
            return TW_AUDIT_BAD_BITMAP
    if ovf_min >= 0 and w.meta[TW_OVF_MIN] > ovf_min:  # a lower bound while non-empty
        return TW_AUDIT_BAD_CACHE
    return TW_AUDIT_OK
