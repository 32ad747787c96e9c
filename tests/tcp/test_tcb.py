"""fsdp.tcp.tcb: the TCB table's allocator, defaults, memory budget and state transitions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from fsdp.tcp.tcb import (
    ERR_TCB_BAD_ID,
    ERR_TCB_BAD_STATE,
    ERR_TCB_BAD_TRANSITION,
    TCB_META_ALLOC_FAIL,
    TCB_META_BAD_FREE,
    TCB_META_BAD_TRANSITION,
    TCB_META_FREED_WITH_FRAMES,
    TCP_DEFAULT_MSS,
    TCP_INITIAL_RTO_US,
    TCPS_CLOSE_WAIT,
    TCPS_CLOSED,
    TCPS_CLOSING,
    TCPS_COUNT,
    TCPS_ESTABLISHED,
    TCPS_FIN_WAIT_1,
    TCPS_FIN_WAIT_2,
    TCPS_LAST_ACK,
    TCPS_LISTEN,
    TCPS_M_SYNCHRONIZED,
    TCPS_NAMES,
    TCPS_SYN_RECEIVED,
    TCPS_SYN_SENT,
    TCPS_TIME_WAIT,
    tcb_alloc,
    tcb_audit,
    tcb_bytes_per_conn,
    tcb_free,
    tcb_in_states,
    tcb_in_use,
    tcb_set_state,
    tcb_table_create,
)
from fsdp.wire.tcp import seq_add, seq_lt

BYTES_PER_CONN_BUDGET = 504  # excluding queued frames and timers (autotuning's 36 B and the
# receive queue's coalescing state, 6 B, made it 504)


def _columns(t):
    """Every field as a column (a view into the hot or cold record array)."""
    return {**{f"hot.{k}": t.hot[k] for k in t.hot.dtype.names},
            **{f"cold.{k}": t.cold[k] for k in t.cold.dtype.names}}  # fmt: skip


def test_state_names_are_linux_ss():
    assert len(TCPS_NAMES) == TCPS_COUNT == 11
    assert TCPS_NAMES[TCPS_ESTABLISHED] == "ESTAB"
    assert TCPS_NAMES[TCPS_SYN_SENT] == "SYN-SENT" and TCPS_NAMES[TCPS_SYN_RECEIVED] == "SYN-RECV"
    assert TCPS_NAMES[TCPS_FIN_WAIT_1] == "FIN-WAIT-1" and TCPS_NAMES[TCPS_TIME_WAIT] == "TIME-WAIT"
    assert TCPS_NAMES[TCPS_CLOSED] == "UNCONN" and TCPS_NAMES[TCPS_LAST_ACK] == "LAST-ACK"
    assert [TCPS_CLOSED, TCPS_LISTEN, TCPS_SYN_SENT, TCPS_SYN_RECEIVED, TCPS_ESTABLISHED,
            TCPS_FIN_WAIT_1, TCPS_FIN_WAIT_2, TCPS_CLOSE_WAIT, TCPS_CLOSING, TCPS_LAST_ACK,
            TCPS_TIME_WAIT] == list(range(11))  # fmt: skip


def test_bytes_per_connection_budget():
    t = tcb_table_create(10)
    # the free-list link and the touched log's stamp (selectors' readiness) are per id too
    measured = (sum(a.itemsize for a in _columns(t).values()) + t.free_next.itemsize
                + t.touch_stamp.itemsize)
    assert tcb_bytes_per_conn() == measured
    assert measured <= BYTES_PER_CONN_BUDGET, f"TCB grew to {measured} B per connection"
    for a in _columns(t).values():
        assert a.ndim == 1 and a.shape == (10,)
    # packed records: the fields tile each record exactly
    assert (t.hot.itemsize + t.cold.itemsize + t.free_next.itemsize
            + t.touch_stamp.itemsize) == measured


@njit
def _alloc_n(t, out):
    for k in range(out.shape[0]):
        out[k] = tcb_alloc(t)


@njit
def _free_all(t, ids):
    ok = 0
    for k in range(ids.shape[0]):
        ok += tcb_free(t, ids[k])
    return ok


def test_100k_connections_fit_and_nothing_leaks():
    n = 100_000
    t = tcb_table_create(n)
    ids = np.empty(n, np.int32)
    ids[:3] = [tcb_alloc(t) for _ in range(3)]  # through the Python dispatcher too
    _alloc_n(t, ids[3:])
    assert (np.sort(ids) == np.arange(n)).all() and ids[:3].tolist() == [0, 1, 2]
    assert tcb_in_use(t) == n and tcb_alloc(t) == -1 and t.meta[TCB_META_ALLOC_FAIL] == 1
    assert tcb_audit(t) == 0 and t.state_count[TCPS_CLOSED] == n
    assert _free_all(t, ids) == n
    assert tcb_in_use(t) == 0 and tcb_audit(t) == 0 and t.state_count.sum() == 0
    _alloc_n(t, ids)
    assert len(np.unique(ids)) == n and (t.cold.gen == 2).all()
    # all but the free-list link (4) and the touched log's stamp (8)
    assert sum(a.nbytes for a in _columns(t).values()) / n == tcb_bytes_per_conn() - 4 - 8


def test_alloc_resets_every_column_to_the_create_defaults():
    fresh = tcb_table_create(4)
    t = tcb_table_create(4)
    i = tcb_alloc(t)
    rng = np.random.default_rng(0)
    for name, a in _columns(t).items():  # scribble over every column but the generation
        if name != "cold.gen":
            a[i] = rng.integers(1, 100)
    t.hot.state[i] = TCPS_CLOSED  # (keep the per-state count consistent)
    assert tcb_free(t, i)
    assert tcb_alloc(t) == i  # LIFO: the cache-warm id comes back first
    for name, a in _columns(t).items():
        if name != "cold.gen":
            assert a[i] == _columns(fresh)[name][i], name
    assert t.cold.gen[i] == 2
    # Some defaults spelled out (RFC 9293 §3.7.1, RFC 6298 (2.1), "no sample yet").
    assert t.hot.mss[i] == TCP_DEFAULT_MSS == 536 and t.hot.rto[i] == TCP_INITIAL_RTO_US
    assert t.hot.srtt[i] == -1 and t.hot.snd_q_head[i] == -1 and t.cold.owner[i] == -1


def test_bad_and_double_free_are_counted_not_fatal():
    t = tcb_table_create(3)
    i = tcb_alloc(t)
    assert tcb_free(t, i) and not tcb_free(t, i)
    assert not tcb_free(t, -1) and not tcb_free(t, 3) and not tcb_free(t, 2)
    assert t.meta[TCB_META_BAD_FREE] == 4 and tcb_audit(t) == 0 and tcb_in_use(t) == 0


def test_free_with_frames_still_queued_is_reported():
    t = tcb_table_create(2)
    i = tcb_alloc(t)
    t.hot.rcv_q_head[i] = 17
    assert tcb_free(t, i) and t.meta[TCB_META_FREED_WITH_FRAMES] == 1


# --- state transitions ------------------------------------------------------------------------

C, L, SS, SR, E = TCPS_CLOSED, TCPS_LISTEN, TCPS_SYN_SENT, TCPS_SYN_RECEIVED, TCPS_ESTABLISHED
F1, F2, CW, CL, LA, TW = (TCPS_FIN_WAIT_1, TCPS_FIN_WAIT_2, TCPS_CLOSE_WAIT, TCPS_CLOSING,
                          TCPS_LAST_ACK, TCPS_TIME_WAIT)  # fmt: skip
# RFC 9293 Figure 5 written out edge by edge (plus the documented extras), independently of the
# module's table.  Every state may also go to CLOSED and stay where it is.
LEGAL = {
    (C, L), (C, SS), (C, SR),  # passive open, active open, a listener's child
    (C, TW),  # a TIME-WAIT TCB taking over a socket-owned connection's 4-tuple (fsdp.tcp.conn)
    (L, SS), (L, SR),  # SEND in LISTEN (§3.10.2), SYN received
    (SS, SR), (SS, E),  # simultaneous open, SYN-ACK received
    (SR, E), (SR, F1), (SR, L),  # ACK of SYN, CLOSE, RST of a passive open (§3.10.7.4)
    (E, F1), (E, CW),  # CLOSE, FIN received
    (F1, F2), (F1, CL), (F1, TW),  # ACK of FIN, FIN, FIN + ACK of FIN
    (F2, TW), (CW, LA), (CL, TW),
    (TW, SR),  # RFC 1122 §4.2.2.13: a new SYN may reopen from TIME-WAIT
}  # fmt: skip


def _in_state(t, s):
    """A fresh TCB driven legally to state ``s``."""
    paths = {C: [], L: [L], SS: [SS], SR: [L, SR], E: [SS, E], F1: [SS, E, F1],
             F2: [SS, E, F1, F2], CW: [SS, E, CW], CL: [SS, E, F1, CL], LA: [SS, E, CW, LA],
             TW: [SS, E, F1, F2, TW]}  # fmt: skip
    i = tcb_alloc(t)
    for step in paths[s]:
        assert tcb_set_state(t, i, step) == 0
    return i


def test_transition_matrix_is_rfc_9293():
    t = tcb_table_create(TCPS_COUNT * TCPS_COUNT)
    for old in range(TCPS_COUNT):
        for new in range(TCPS_COUNT):
            i = _in_state(t, old)
            legal = (old, new) in LEGAL or new == C or new == old
            rc = tcb_set_state(t, i, new)
            assert (rc == 0) == legal, (TCPS_NAMES[old], TCPS_NAMES[new])
            assert t.hot.state[i] == (new if legal else old)
            if not legal:
                assert rc == ERR_TCB_BAD_TRANSITION
    illegal = TCPS_COUNT * TCPS_COUNT - len(LEGAL) - TCPS_COUNT - (TCPS_COUNT - 1)
    assert t.meta[TCB_META_BAD_TRANSITION] == illegal
    assert tcb_audit(t) == 0


@pytest.mark.parametrize(
    "path",
    [
        [SS, E, F1, F2, TW, C],  # active open, active close
        [L, SR, E, CW, LA, C],  # passive open, passive close
        [SS, SR, E, F1, CL, TW, C],  # simultaneous open and close
        [L, SR, L, SR, E, F1, TW, C],  # RST back to LISTEN; FIN+ACK straight to TIME-WAIT
        [SS, E, C],  # reset
    ],
)
def test_lifecycles_and_counts(path):
    t = tcb_table_create(2)
    i = tcb_alloc(t)
    for s in path:
        assert tcb_set_state(t, i, s) == 0
        assert t.state_count[s] == 1 and t.state_count.sum() == 1 and tcb_audit(t) == 0


def test_set_state_errors():
    t = tcb_table_create(2)
    assert tcb_set_state(t, 0, TCPS_LISTEN) == ERR_TCB_BAD_ID  # not allocated
    assert tcb_set_state(t, 5, TCPS_LISTEN) == ERR_TCB_BAD_ID
    i = tcb_alloc(t)
    assert tcb_set_state(t, i, TCPS_COUNT) == ERR_TCB_BAD_STATE
    assert tcb_set_state(t, i, -1) == ERR_TCB_BAD_STATE
    assert tcb_set_state(t, i, TCPS_ESTABLISHED) == ERR_TCB_BAD_TRANSITION
    assert t.hot.state[i] == TCPS_CLOSED and tcb_audit(t) == 0


def test_in_states():
    t = tcb_table_create(2)
    i = tcb_alloc(t)
    assert not tcb_in_states(t, i, TCPS_M_SYNCHRONIZED)
    tcb_set_state(t, i, TCPS_SYN_SENT)
    assert tcb_in_states(t, i, (1 << TCPS_SYN_SENT) | (1 << TCPS_LISTEN))
    tcb_set_state(t, i, TCPS_ESTABLISHED)
    assert tcb_in_states(t, i, TCPS_M_SYNCHRONIZED)


@njit
def _advance_snd_nxt(t, i, n):
    t.hot.snd_nxt[i] = seq_add(t.hot.snd_nxt[i], n)
    return seq_lt(t.cold.iss[i], t.hot.snd_nxt[i])


def test_sequence_columns_wrap_modulo_2_32():
    t = tcb_table_create(1)
    i = tcb_alloc(t)
    t.cold.iss[i] = 0xFFFFFFF0
    t.hot.snd_nxt[i] = 0xFFFFFFF0
    assert _advance_snd_nxt(t, i, 0x20)  # past the wrap, still "after" iss
    assert t.hot.snd_nxt[i] == 0x10


@njit
def _loop_hot_calls(t, n):
    s = 0
    for k in range(n):
        s += tcb_set_state(t, k & 3, TCPS_CLOSED)
        s += tcb_in_states(t, k & 3, TCPS_M_SYNCHRONIZED) + tcb_in_use(t)
        i = tcb_alloc(t)
        s += i + tcb_free(t, i)
    return s


def test_hot_calls_are_free_of_refcount_traffic():
    """~85 columns: a call that increfs them all costs microseconds (module doc, "Refcounts")."""
    t = tcb_table_create(8)
    for _ in range(4):
        tcb_alloc(t)
    _loop_hot_calls(t, 10)
    ir = _loop_hot_calls.inspect_llvm(_loop_hot_calls.signatures[0])
    assert ir.count("call void @NRT_incref") == 0
    assert tcb_audit(t) == 0 and tcb_in_use(t) == 4


# --- property test: alloc / free / set_state against a model ----------------------------------

ops = st.lists(
    st.one_of(
        st.just(("alloc",)),
        st.tuples(st.just("free"), st.integers(-1, 8)),
        st.tuples(st.just("state"), st.integers(-1, 8), st.integers(-1, TCPS_COUNT)),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(seq=ops)
def test_matches_model(seq):
    t = tcb_table_create(8)
    states = {}  # allocated id -> state
    for op in seq:
        if op[0] == "alloc":
            i = tcb_alloc(t)
            if len(states) == 8:
                assert i == -1
            else:
                assert i not in states and 0 <= i < 8
                states[i] = C
        elif op[0] == "free":
            assert tcb_free(t, op[1]) == (op[1] in states)
            states.pop(op[1], None)
        else:
            _, i, s = op
            rc = tcb_set_state(t, i, s)
            if i not in states:
                assert rc == ERR_TCB_BAD_ID
            elif not 0 <= s < TCPS_COUNT:
                assert rc == ERR_TCB_BAD_STATE
            elif (states[i], s) in LEGAL or s in (C, states[i]):
                assert rc == 0
                states[i] = s
            else:
                assert rc == ERR_TCB_BAD_TRANSITION
        assert tcb_audit(t) == 0 and tcb_in_use(t) == len(states)
        for i, s in states.items():
            assert t.hot.state[i] == s
        assert t.state_count.tolist() == [list(states.values()).count(s) for s in range(11)]
