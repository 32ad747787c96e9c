"""fsdp.core.timerwheel against a naive reference (a dict and a sort).

Every test checks the wheel's full invariant (``timerwheel_audit``) after each step: lists,
bitmaps, placement by level, sorted flags, the cached next deadline, the overflow bound.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from fsdp.core.timerwheel import (
    ERR_TIMER_BAD_ID,
    ERR_TIMER_BAD_TIME,
    N_TIMER_KINDS,
    TIMER_DELACK,
    TIMER_KEEPALIVE,
    TIMER_NAMES,
    TIMER_RTO,
    TIMER_TIMEWAIT,
    TW_AUDIT_OK,
    TW_CASCADED,
    TW_OVF_SCANS,
    timer_arm,
    timer_cancel,
    timer_cancel_all,
    timer_count,
    timer_expire,
    timer_expires,
    timer_next_deadline,
    timer_pending,
    timer_work_due,
    timerwheel_audit,
    timerwheel_create,
)


class RefWheel:
    """The specification: a dict of timer index -> expiry; due timers fire by (expires, index)."""

    def __init__(self, n_kinds):
        self.nk = n_kinds
        self.t = {}

    def arm(self, conn, kind, exp):
        self.t[conn * self.nk + kind] = exp

    def cancel(self, conn, kind):
        return self.t.pop(conn * self.nk + kind, None) is not None

    def expire(self, now, max_n):
        due = sorted((e, i) for i, e in self.t.items() if e <= now)[:max_n]
        for _, i in due:
            del self.t[i]
        return [(i // self.nk, i % self.nk, e) for e, i in due]

    def next_deadline(self):
        return min(self.t.values(), default=-1)


def _expire(w, now, max_n):
    oc = np.full(max(max_n, 1), -7, np.int32)
    ok = np.full(max(max_n, 1), -7, np.int32)
    n = timer_expire(w, now, oc, ok, max_n)
    return list(zip(oc[:n].tolist(), ok[:n].tolist(), strict=True))


def test_kinds_named():
    assert len(TIMER_NAMES) == N_TIMER_KINDS
    assert TIMER_NAMES[TIMER_RTO] == "rto" and TIMER_NAMES[TIMER_TIMEWAIT] == "timewait"


def test_create_validates():
    for kw in ({"n_slots": 100}, {"n_slots": 2}, {"tick_us": 0}, {"tick_us": 1000}, {"now": -1}):
        with pytest.raises(ValueError):
            timerwheel_create(4, **kw)
    with pytest.raises(ValueError):
        timerwheel_create(0)


def test_arm_cancel_rearm_basics():
    w = timerwheel_create(10, n_kinds=4, tick_us=1024, n_slots=64)
    assert timer_next_deadline(w) == -1
    assert timer_arm(w, 3, 1, 5_500) == 0
    assert timer_pending(w, 3, 1) and not timer_pending(w, 3, 0)
    assert timer_expires(w, 3, 1) == 5_500 and timer_expires(w, 3, 2) == -1
    assert timer_count(w) == 1 and timer_next_deadline(w) == 5_500
    assert timer_arm(w, 3, 1, 2_000) == 0  # re-arm earlier: still one timer
    assert timer_count(w) == 1 and timer_next_deadline(w) == 2_000
    assert timer_arm(w, 3, 1, 9_000) == 0  # re-arm later: the cache must not keep 2000
    assert timer_next_deadline(w) == 9_000
    assert timer_cancel(w, 3, 1) and not timer_cancel(w, 3, 1)
    assert timer_count(w) == 0 and timer_next_deadline(w) == -1
    assert timerwheel_audit(w) == TW_AUDIT_OK


def test_bad_ids_and_times_are_errors_not_crashes():
    w = timerwheel_create(10, n_kinds=4, n_slots=64)
    assert timer_arm(w, 10, 0, 1) == ERR_TIMER_BAD_ID
    assert timer_arm(w, -1, 0, 1) == ERR_TIMER_BAD_ID
    assert timer_arm(w, 0, 4, 1) == ERR_TIMER_BAD_ID
    assert timer_arm(w, 0, -1, 1) == ERR_TIMER_BAD_ID
    assert timer_arm(w, 0, 0, -5) == ERR_TIMER_BAD_TIME
    assert not timer_cancel(w, 10, 0) and not timer_pending(w, 0, 9)
    assert timer_expires(w, -3, 0) == -1 and timer_cancel_all(w, 99) == 0
    assert timer_count(w) == 0 and timerwheel_audit(w) == TW_AUDIT_OK


def test_exact_to_the_microsecond_never_early():
    w = timerwheel_create(4, tick_us=1024, n_slots=64)
    timer_arm(w, 0, TIMER_RTO, 1_500)  # both in tick 1 (1024 .. 2047 µs)
    timer_arm(w, 1, TIMER_RTO, 1_499)
    assert _expire(w, 1_498, 8) == []
    assert _expire(w, 1_499, 8) == [(1, TIMER_RTO)]
    assert _expire(w, 1_499, 8) == []
    assert timer_next_deadline(w) == 1_500
    assert _expire(w, 1_500, 8) == [(0, TIMER_RTO)]
    assert timerwheel_audit(w) == TW_AUDIT_OK


def test_same_tick_fires_in_microsecond_order():
    w = timerwheel_create(64, n_kinds=2, tick_us=1024, n_slots=64)
    rng = np.random.default_rng(1)
    exps = rng.integers(10 * 1024, 11 * 1024, 64)  # one tick, shuffled arming order
    for c, e in enumerate(exps):
        timer_arm(w, c, 1, int(e))
    got = _expire(w, 11 * 1024, 100)
    want = sorted(range(64), key=lambda c: (exps[c], c * 2 + 1))
    assert [c for c, _ in got] == want


def test_past_and_now_arm_fire_at_next_expire():
    w = timerwheel_create(4, tick_us=128, n_slots=64, now=1_000_000)
    _expire(w, 1_000_000, 4)
    timer_arm(w, 2, TIMER_DELACK, 5)  # long past
    timer_arm(w, 1, TIMER_DELACK, 1_000_000)  # exactly now
    assert timer_next_deadline(w) == 5
    assert _expire(w, 1_000_000, 4) == [(2, TIMER_DELACK), (1, TIMER_DELACK)]
    assert timerwheel_audit(w) == TW_AUDIT_OK


def test_max_n_bounds_a_pass_and_the_rest_stay_due():
    w = timerwheel_create(100, n_kinds=1, tick_us=1024, n_slots=64)
    for c in range(100):
        timer_arm(w, c, 0, 1000 * (c % 7) + c)  # spread over 7 ticks, interleaved ids
    want = sorted(range(100), key=lambda c: (1000 * (c % 7) + c, c))
    got = []
    while True:
        part = _expire(w, 10**6, 7)
        assert len(part) <= 7
        assert timerwheel_audit(w) == TW_AUDIT_OK
        if not part:
            break
        got += [c for c, _ in part]
    assert got == want and timer_count(w) == 0


def test_cancel_all_kinds_of_a_connection():
    w = timerwheel_create(3, tick_us=1024, n_slots=64)
    for k in range(N_TIMER_KINDS):
        timer_arm(w, 1, k, 1000 * (k + 1) * 10_000)  # levels 0, 1 and the overflow list
    timer_arm(w, 2, 0, 7)
    assert timer_cancel_all(w, 1) == N_TIMER_KINDS
    assert timer_count(w) == 1 and timerwheel_audit(w) == TW_AUDIT_OK
    assert timer_next_deadline(w) == 7


def test_tcp_scale_long_timers_jump_to_each_deadline():
    """100,000 connections with the default wheel (1024 µs x 4096): TIME_WAIT (60 s), keep-alive
    (2 h) and RTOs; a virtual clock that always jumps to the next deadline sees every timer once,
    in order, exactly on time."""
    n = 100_000
    w = timerwheel_create(n, now=10**12)
    rng = np.random.default_rng(7)
    t0 = 10**12
    kinds = rng.choice([TIMER_RTO, TIMER_TIMEWAIT, TIMER_KEEPALIVE], n)
    delay = np.where(kinds == TIMER_TIMEWAIT, 60_000_000, 7_200_000_000)
    delay = np.where(kinds == TIMER_RTO, rng.integers(200_000, 3_000_000, n), delay)
    exps = t0 + delay + rng.integers(0, 5_000_000, n)  # connections opened over 5 s
    for c in range(n):
        assert timer_arm(w, c, int(kinds[c]), int(exps[c])) == 0
    assert timerwheel_audit(w) == TW_AUDIT_OK
    oc = np.zeros(4096, np.int32)
    ok = np.zeros(4096, np.int32)
    fired_c, fired_at = [], []
    while True:
        now = timer_next_deadline(w)
        if now < 0:
            break
        k = timer_expire(w, now, oc, ok, 4096)
        assert k >= 1
        fired_c.append(oc[:k].copy())
        fired_at.append(np.full(k, now))
        assert (ok[:k] == kinds[oc[:k]]).all()
    fc = np.concatenate(fired_c)
    fa = np.concatenate(fired_at)
    assert len(fc) == n and len(np.unique(fc)) == n  # each exactly once
    assert (fa == exps[fc]).all()  # fired exactly at its deadline
    order = np.lexsort((fc * N_TIMER_KINDS + kinds[fc], exps[fc]))
    assert (order == np.arange(n)).all()  # in (time, index) order
    assert timer_count(w) == 0 and timerwheel_audit(w) == TW_AUDIT_OK
    assert w.meta[TW_CASCADED] > 0


def test_far_timers_use_and_leave_the_overflow_list():
    w = timerwheel_create(4, tick_us=8, n_slots=64)  # level 1 ends 64*64 ticks = 32.8 ms out
    timer_arm(w, 0, 0, 10_000_000)
    timer_arm(w, 1, 0, 10_000_001)
    timer_arm(w, 2, 0, 30)
    assert timerwheel_audit(w) == TW_AUDIT_OK
    assert _expire(w, 9_999_999, 4) == [(2, 0)]
    assert timer_next_deadline(w) == 10_000_000
    assert _expire(w, 10_000_000, 4) == [(0, 0)]
    assert _expire(w, 20_000_000, 4) == [(1, 0)]
    assert w.meta[TW_OVF_SCANS] >= 1 and timerwheel_audit(w) == TW_AUDIT_OK


def test_cursor_follows_the_clock_so_new_timers_skip_the_overflow_list():
    """A wheel whose cursor is far behind the clock (made at 0, used on a monotonic clock; or no
    timer fired for hours) must not put every new timer in the overflow list: the loop runs
    timer_expire whenever the cursor is behind (timer_work_due), which moves it to the clock."""
    w = timerwheel_create(4, tick_us=8, n_slots=64)  # level 1 ends 32.8 ms out
    now = 10_000_000_000
    assert timer_work_due(w, now)  # nothing due, but the cursor is behind
    assert _expire(w, now, 4) == []
    assert not timer_work_due(w, now)
    timer_arm(w, 0, TIMER_TIMEWAIT, now + 20_000)  # level 1
    timer_arm(w, 1, TIMER_RTO, now + 200)  # level 0
    timer_arm(w, 2, TIMER_TIMEWAIT, now + 20_008)
    sentinel = w.expires.shape[0] + 2 * 64  # the overflow list's sentinel node
    assert w.next[sentinel] == sentinel and w.meta[TW_OVF_SCANS] == 0
    assert not timer_work_due(w, now + 7)  # same tick, nothing due
    assert timer_work_due(w, now + 8)  # next tick: advance
    timer_cancel(w, 1, TIMER_RTO)  # the earliest: the next query recomputes from level 1
    assert timer_next_deadline(w) == now + 20_000
    assert timerwheel_audit(w) == TW_AUDIT_OK
    assert _expire(w, now + 20_008, 4) == [(0, TIMER_TIMEWAIT), (2, TIMER_TIMEWAIT)]
    assert timerwheel_audit(w) == TW_AUDIT_OK


def test_level_one_slot_keeps_its_minimum_at_the_head_for_in_order_arms():
    """Timers of one duration armed in time order (TIME-WAIT) keep a level-1 slot flagged
    sorted, so the next deadline is its head, not a scan; an out-of-order arm clears the flag
    and the answer stays exact."""
    w = timerwheel_create(8, tick_us=8, n_slots=64)
    for c in range(6):
        timer_arm(w, c, TIMER_TIMEWAIT, 1000 + c)  # group 1: level-1 slot 65
    assert w.sorted[64 + 1] == 1 and timerwheel_audit(w) == TW_AUDIT_OK
    assert timer_next_deadline(w) == 1000
    timer_arm(w, 6, TIMER_TIMEWAIT, 999)  # out of order
    assert w.sorted[64 + 1] == 0 and timerwheel_audit(w) == TW_AUDIT_OK
    timer_cancel(w, 6, TIMER_TIMEWAIT)
    timer_cancel(w, 0, TIMER_TIMEWAIT)
    assert timer_next_deadline(w) == 1001 and timerwheel_audit(w) == TW_AUDIT_OK
    for c in range(1, 6):
        timer_cancel(w, c, TIMER_TIMEWAIT)
    assert w.sorted[64 + 1] == 1  # an emptied slot counts as sorted again


def test_overflow_moves_down_as_soon_as_level_one_can_hold_it():
    """A timer just past level 1's reach must move into level 1 when the cursor's group advances
    (here via a cascade of another group), not only when it is about to fire."""
    w = timerwheel_create(4, tick_us=8, n_slots=64)
    group_us = 8 * 64
    timer_arm(w, 0, 0, 1 * group_us + 5)  # level 1, group 1
    timer_arm(w, 1, 0, 65 * group_us + 5)  # group 65 > 0 + 64: overflow
    timer_arm(w, 2, 0, 66 * group_us + 5)  # group 66: still overflow after moving to group 1
    assert timerwheel_audit(w) == TW_AUDIT_OK
    assert _expire(w, group_us + 5, 4) == [(0, 0)]  # cursor now in group 1: 65 <= 1 + 64
    assert timerwheel_audit(w) == TW_AUDIT_OK
    assert _expire(w, 65 * group_us + 5, 4) == [(1, 0)]
    assert _expire(w, 66 * group_us + 5, 4) == [(2, 0)]
    assert timerwheel_audit(w) == TW_AUDIT_OK


def test_cascade_keeps_time_order_inside_a_slot():
    """Timers cascaded from level 1 arrive in list order, not time order: the slot they land in
    must be sorted before it fires (and the emptied level-1 list must not mark it sorted)."""
    w = timerwheel_create(4, n_kinds=1, tick_us=8, n_slots=8)  # a group is 64 µs
    timer_arm(w, 0, 0, 64 + 5)  # group 1, first tick: level 1
    timer_arm(w, 1, 0, 64 + 1)  # same tick, earlier
    timer_arm(w, 2, 0, 64 + 30)  # same group, a later tick: the last one cascaded
    assert _expire(w, 63, 4) == []
    assert _expire(w, 64, 4) == []  # the cursor enters group 1: cascade
    assert timerwheel_audit(w) == TW_AUDIT_OK
    assert _expire(w, 70, 4) == [(1, 0), (0, 0)]
    assert _expire(w, 100, 4) == [(2, 0)]


# --- generated code: the hot calls must not pay a refcount per column (module doc, "Refcounts")


@njit
def _loop_arm_cancel(w, n):
    s = 0
    for k in range(n):
        s += timer_arm(w, k & 7, 1, 1000 + k)
        s += timer_cancel(w, (k + 3) & 7, 1)
        s += timer_cancel_all(w, (k + 5) & 7)
    return s


@njit
def _loop_queries(w, n):
    s = 0
    for k in range(n):
        s += timer_pending(w, k & 7, 1) + timer_expires(w, k & 7, 2) + timer_count(w)
    return s


@pytest.mark.parametrize("loop", [_loop_arm_cancel, _loop_queries], ids=lambda f: f.__name__)
def test_hot_calls_are_free_of_refcount_traffic(loop):
    w = timerwheel_create(8, n_slots=64)
    loop(w, 100)
    ir = loop.inspect_llvm(loop.signatures[0])
    assert ir.count("call void @NRT_incref") == 0, "a table column is incref'd on the hot path"
    assert timerwheel_audit(w) == TW_AUDIT_OK


# --- property test: random arm / cancel / re-arm / advance sequences --------------------------

N_CONNS, N_KINDS, TICK = 12, 3, 8


def _ops(slots):
    level0 = TICK * slots  # reach of one group ...
    level1 = TICK * slots * slots  # ... and of level 1
    delays = st.one_of(
        st.integers(-3 * TICK, 3 * TICK),  # in the past, now, this tick, the next
        st.integers(0, 2 * level0),
        st.integers(level0 - 2 * TICK, level0 + 2 * TICK),
        st.integers(0, 2 * level1),
        st.integers(level1 - level0, level1 + level0),
        st.integers(0, 50 * level1),  # the overflow list
    )
    conns, kinds = st.integers(0, N_CONNS - 1), st.integers(0, N_KINDS - 1)
    return st.lists(
        st.one_of(
            st.tuples(st.just("arm"), conns, kinds, delays),
            st.tuples(st.just("cancel"), conns, kinds),
            st.tuples(st.just("cancel_all"), conns),
            st.tuples(
                st.just("advance"),
                st.one_of(st.integers(0, 3 * TICK), delays.map(abs)),
                st.integers(0, 5),
            ),
            st.tuples(st.just("jump"), st.integers(1, 5)),  # a virtual clock's jump
        ),
        max_size=60,
    )


@settings(max_examples=400, deadline=None)
@given(start=st.integers(0, 10**9), data=st.data())
@pytest.mark.parametrize("slots", [8, 64])
def test_wheel_matches_reference(slots, start, data):
    seq = data.draw(_ops(slots))
    w = timerwheel_create(N_CONNS, n_kinds=N_KINDS, tick_us=TICK, n_slots=slots, now=start)
    ref = RefWheel(N_KINDS)
    now = start
    for op in seq:
        if op[0] == "arm":
            _, c, k, d = op
            e = max(now + d, 0)
            assert timer_arm(w, c, k, e) == 0
            ref.arm(c, k, e)
        elif op[0] == "cancel":
            _, c, k = op
            assert timer_cancel(w, c, k) == ref.cancel(c, k)
        elif op[0] == "cancel_all":
            c = op[1]
            want = sum(ref.cancel(c, k) for k in range(N_KINDS))
            assert timer_cancel_all(w, c) == want
        else:
            if op[0] == "advance":
                now += op[1]
                max_n = op[2]
            else:
                nd = timer_next_deadline(w)
                now = max(now, nd)
                max_n = op[1]
            want = ref.expire(now, max_n)
            assert all(e <= now for _, _, e in want)
            assert _expire(w, now, max_n) == [(c, k) for c, k, _ in want]
        assert timerwheel_audit(w) == TW_AUDIT_OK
        assert timer_next_deadline(w) == ref.next_deadline()
        assert timer_count(w) == len(ref.t)
        for i in range(N_CONNS * N_KINDS):
            assert timer_expires(w, i // N_KINDS, i % N_KINDS) == ref.t.get(i, -1)
    # Drain: everything left fires exactly once, at its time, in order.
    while ref.t:
        now = max(now, timer_next_deadline(w))
        assert _expire(w, now, 3) == [(c, k) for c, k, _ in ref.expire(now, 3)]
    assert timer_next_deadline(w) == -1 and timerwheel_audit(w) == TW_AUDIT_OK
