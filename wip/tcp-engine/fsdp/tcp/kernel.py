"""``@kernel``: ``@njit(cache=True)`` for functions that only jitted code calls.

A jitted function whose arguments include ``core`` (the CoreState NamedTuple: ~170 arrays) costs
seconds to compile for its CPython wrapper alone (unboxing every array; measured ~4.5 s on the
2-core dev VM, vs ~0.5 s for the function without one).  Engine internals are never called from
Python, so they are compiled without the CPython and cfunc wrappers; only the roots Python calls
(``run_once``, ``next_deadline``, the usercall dispatcher) keep theirs.  Cached like any
``cache=True`` function.
"""

from numba import njit


def kernel(fn):
    """Decorate an engine-internal jitted function (not callable from Python)."""
    return njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)(fn)
