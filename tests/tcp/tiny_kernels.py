"""A small chain of kernels under two roots, for the link-only compile tests
(tests/tcp/test_kernel_link_only.py) and the compile_time benchmark's smoke test: each copies
this file into its own directory, so Numba caches it apart from every other run."""

import numpy as np
from numba import njit

from fsdp.tcp.kernel import kernel


@kernel
def leaf(x):
    if x == 77:
        raise ValueError("bad value", x)
    return x * 3 + 1


@kernel
def mid(a, x):
    s = 0
    for i in range(x):
        a[i] = leaf(i)
        s += a[i]
    return s


@njit(cache=True)
def root(x):
    a = np.zeros(x, np.int64)
    return mid(a, x) + leaf(x)


@njit(cache=True)
def other_root(x):
    return leaf(x) + 1


def warm():
    assert root(5) == 51 and other_root(5) == 17
