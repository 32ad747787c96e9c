"""A compile-time cost of Numba's that fsdp's engine multiplies, removed in place.

Each call of an ``inline="always"`` function is inlined by running Numba's untyped pipeline over
the callee's bytecode once more (bytecode translation, IR building, the callee's own inlining,
...), although the result depends only on the function and the compile flags.  A cold compile of
the engine (``tests/engine_warmup.py``) did that 1,185 times, for ~180 distinct helpers.  The
inliner deep-copies what the pipeline returns before it changes anything
(``InlineWorker.inline_ir``), so one run per function and flags is kept here, and each call site
gets a copy with a fresh function identity: its ``unique_name`` makes the inlined variables'
names distinct per site, as a fresh run does (two sites inlining one helper into one caller must
not share variables, which SSA reconstruction and typing would merge).  Measured side by side on
the 2-CPU VM: 179 translations instead of 1,185, the whole compile 254 s instead of 280 s.

The key holds the flags and the target context's class, not the context object: each compile
makes its own copy of the CPU target context with the options its flags choose (Numba's
``_make_subtarget``).  The two flags that only choose the wrappers lowering generates
(``no_cpython_wrapper``, ``no_cfunc_wrapper``: kernels set them, the roots Python calls do not)
are left out of it; the untyped pipeline does not read them.

This changes nothing that is compiled: ``FSDP_NUMBA_PATCHES=0`` leaves Numba alone, and the
patch is installed only where this Numba has what it wraps.  The link-only kernel libraries,
the larger change of the same kind, live with ``@kernel`` in ``fsdp.tcp.kernel``.
"""

import os

_memo: dict = {}
# flags that decide which wrappers lowering generates, and nothing before it
_WRAPPER_FLAGS = ("no_cpython_wrapper", "no_cfunc_wrapper")


def _hashable(value):
    """``value``, or for the options objects Numba keeps unhashable (ParallelOptions,
    FastMathOptions, InlineOptions) their repr, which shows every field."""
    try:
        hash(value)
        return value
    except TypeError:
        return type(value).__name__, repr(value)


def _flags_key(flags) -> tuple:
    values = flags.values()
    for name in _WRAPPER_FLAGS:
        values.pop(name, None)
    return tuple((k, _hashable(v)) for k, v in sorted(values.items()))


def _install_inline_memo() -> bool:
    from numba.core import inline_closurecall as icc

    worker = getattr(icc, "InlineWorker", None)
    run = getattr(worker, "run_untyped_passes", None)
    if run is None:
        return False
    if getattr(worker, "_fsdp_memo_installed", False):
        return True  # (a reloaded module must not wrap Numba's method twice)
    from numba.core.bytecode import FunctionIdentity

    if not hasattr(FunctionIdentity, "derive"):
        return False

    def run_untyped_passes(self, func, enable_ssa=False):
        if self.flags is None:
            return run(self, func, enable_ssa)
        self.flags.enable_ssa = enable_ssa  # (what a run does first to the caller's flags)
        try:
            key = (func, id(self.typingctx), type(self.targetctx), _flags_key(self.flags))
            hash(key)
        except TypeError:  # (a flags value that cannot be keyed: no memo for it)
            return run(self, func, enable_ssa)
        ir = _memo.get(key)
        if ir is None:
            ir = _memo[key] = run(self, func, enable_ssa)
        site = ir.copy()  # blocks shallow-copied: inline_ir deep-copies them before editing
        site.func_id = ir.func_id.derive()
        return site

    worker.run_untyped_passes = run_untyped_passes
    worker._fsdp_memo_installed = True
    return True


def install() -> None:
    """Install the inline memo, unless ``FSDP_NUMBA_PATCHES=0``."""
    if os.environ.get("FSDP_NUMBA_PATCHES", "1") != "0":
        _install_inline_memo()
