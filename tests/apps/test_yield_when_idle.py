"""A polling worker yields its CPU after a run of empty passes (fsdp.apps.bench_kernels.
yield_when_idle, sched_yield underneath), so workers that share a CPU let each other run."""

import numpy as np
from numba import njit

from fsdp.apps.bench_kernels import YIELD_AFTER_EMPTY, yield_when_idle


@njit
def _runs(worked, out):
    empty = 0
    for i in range(worked.shape[0]):
        empty = yield_when_idle(empty, worked[i] != 0)
        out[i] = empty


def test_the_run_of_empty_passes_resets_on_work_and_after_each_yield():
    n = 3 * YIELD_AFTER_EMPTY
    worked = np.zeros(n, np.int64)
    worked[5] = 1
    out = np.zeros(n, np.int64)
    _runs(worked, out)
    expect = []
    empty = 0
    for w in worked:
        empty = 0 if w else (0 if empty + 1 >= YIELD_AFTER_EMPTY else empty + 1)
        expect.append(empty)
    assert out.tolist() == expect
    assert expect[5] == 0 and max(expect) == YIELD_AFTER_EMPTY - 1  # reset by work; yields
