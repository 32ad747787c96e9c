"""``@kernel``: ``@njit(cache=True)`` for functions that only jitted code calls.

Two things make a large Numba code base slow to compile, and ``kernel`` removes both:

* The CPython wrapper.  A jitted function whose arguments include ``core`` (the CoreState
  NamedTuple of ~80 arrays) spends most of its compile time on the wrapper that unboxes every
  array from Python objects.  Engine internals are never called from Python, so they are compiled
  without the CPython and cfunc wrappers; only the roots Python calls (``run_once``,
  ``next_deadline``, the usercall dispatcher) keep theirs.
* Specialization on argument types.  Called from jitted code, a dispatcher compiles one version
  per distinct argument types, and a constant argument is typed as its literal value: calling
  ``tcp_set_closed(core, cid, 104)`` and ``tcp_set_closed(core, cid, 111)``, or passing an id read
  from an int32 column in one place and an int64 in another, compiles (and links, and optimizes)
  the whole callee tree again.  A kernel's dispatcher sees every integer argument as int64, non
  literal: one version per kernel.

Measured on the 2-core dev VM: a cold compile of the engine went from over 20 minutes to a few.
"""

from numba import njit, types


def _plain(ty):
    """The argument type a kernel is compiled for: no literals, integers widened to int64."""
    ty = types.unliteral(ty)
    if isinstance(ty, types.Integer) and (ty.signed or ty.bitwidth < 64):
        return types.int64
    return ty


def kernel(fn):
    """Decorate an engine-internal jitted function (not callable from Python)."""
    disp = njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)(fn)
    resolve = disp.get_call_template

    def get_call_template(args, kws):
        return resolve(tuple(_plain(a) for a in args), {k: _plain(v) for k, v in kws.items()})

    disp.get_call_template = get_call_template
    return disp


def kernel_inline(fn):
    """A kernel with a single call site, inlined there by Numba (no library of its own).

    Numba links each compiled function with everything it calls and optimizes the result, so a
    chain of calls re-optimizes the code below each link: folding one-caller steps of a chain
    (``eth_input -> ip_input -> tcp_input``, the state handlers of ``tcp_segment``) into their
    caller removes those repeats.  Functions called from several places stay kernels."""
    return njit(inline="always", cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)(fn)
