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

import os

from numba import njit, types
from numba.core import codegen as _codegen
from numba.core import compiler as _compiler
from numba.core import typed_passes as _typed_passes
from numba.core.compiler_machinery import register_pass

# --- Link-only libraries -------------------------------------------------------------------
#
# Numba finalizes every compiled function's library on the spot: it links in the libraries of
# everything the function calls, runs LLVM's O3 module passes over the result and generates
# machine code for it.  A kernel has no Python entry, so its machine code is never run: only its
# LLVM IR is used, linked into the roots that call it, which run O3 and generate code over
# everything once more.  Along a call chain ``run_once -> eth_input -> tcp_input ->
# tcp_segment -> ...`` each level re-optimized and re-generated the levels below it: a cold
# compile spent ~100 of its ~320 s in O3 and code generation (2-core VM; now ~58 s:
# benchmarks/compile_time.py measures both ways).
#
# A kernel's library is therefore *link-only*: finalizing it links its callees and stops; a
# root's library (run_once, usercall, the jitted functions Python calls) optimizes and
# generates code for the whole tree once, as before.  Cached, a kernel keeps its linked IR
# (kind "fsdp-link") instead of object code.  FSDP_LINK_ONLY_KERNELS=0 compiles kernels the
# usual way (a cache written either way loads either way).

_LINK_KIND = "fsdp-link"
_Library = _codegen.CPUCodeLibrary
_NEEDED = ("finalize", "serialize_using_object_code", "_unserialize", "_get_module_for_linking",
           "_finalize_dynamic_globals", "_verify_declare_only_symbols", "_finalize_final_module")


def _link_only_supported() -> bool:
    """This Numba's code library has the methods the link-only library builds on."""
    return (all(hasattr(_Library, name) for name in _NEEDED)
            and hasattr(getattr(_codegen, "JITCPUCodegen", None), "set_env")
            and hasattr(_typed_passes, "NativeLowering"))


def _install_link_only() -> bool:
    if getattr(_Library, "_fsdp_link_only_installed", False):
        return True  # (a reloaded module must not wrap Numba's methods twice)
    if not _link_only_supported():
        return False
    finalize = _Library.finalize
    serialize = _Library.serialize_using_object_code
    unserialize = _Library._unserialize.__func__

    def link_only_finalize(self):
        if not getattr(self, "_fsdp_link_only", False):
            return finalize(self)
        self._raise_if_finalized()
        seen = set()
        for library in self._linking_libraries:
            if library not in seen:
                seen.add(library)
                self._reload_init.update(library._reload_init)
                self._final_module.link_in(library._get_module_for_linking(), preserve=True)
        self._finalize_dynamic_globals()  # so caching still refuses a library that has them
        self._verify_declare_only_symbols()
        self._finalized = True

    def link_only_serialize(self):
        if not getattr(self, "_fsdp_link_only", False):
            return serialize(self)
        self._ensure_finalized()
        return (self.name, _LINK_KIND, self._get_module_for_linking().as_bitcode())

    def link_only_unserialize(cls, codegen, state):
        name, kind, data = state
        if kind != _LINK_KIND:
            return unserialize(cls, codegen, state)
        self = codegen.create_library(name)
        self._fsdp_link_only = True
        self._final_module = self._shared_module = _codegen.ll.parse_bitcode(data)
        self._finalized = True
        return self

    # Numba writes each compiled function's Environment address (what boxing a value for a
    # raised exception reads) into a global of its machine code.  A link-only library has no
    # machine code: the address is written once a root that holds a copy is generated.
    codegen_cls = _codegen.JITCPUCodegen
    set_env = codegen_cls.set_env
    finalize_module = _Library._finalize_final_module
    pending_envs: dict = {}

    def link_only_set_env(self, env_name, env):
        if self._engine.get_global_value_address(env_name):
            return set_env(self, env_name, env)
        pending_envs[env_name] = env
        return None

    def finalize_module_and_envs(self):
        finalize_module(self)
        engine = self._codegen._engine
        for name in [n for n in pending_envs if engine.get_global_value_address(n)]:
            set_env(self._codegen, name, pending_envs.pop(name))

    codegen_cls.set_env = link_only_set_env
    _Library._finalize_final_module = finalize_module_and_envs
    _Library.finalize = link_only_finalize
    _Library.serialize_using_object_code = link_only_serialize
    _Library._unserialize = classmethod(link_only_unserialize)
    _Library._fsdp_link_only_installed = True
    return True


@register_pass(mutates_CFG=True, analysis_only=False)
class _LinkOnlyLowering(_typed_passes.NativeLowering):
    """Numba's lowering pass, with the function's library marked link-only first."""

    _name = "fsdp_link_only_lowering"

    def run_pass(self, state):
        if state.library is None:
            state.library = state.targetctx.codegen().create_library(state.func_id.func_qualname)
            state.library.enable_object_caching()
        state.library._fsdp_link_only = True
        return super().run_pass(state)


class _LinkOnlyCompiler(_compiler.CompilerBase):
    """Numba's nopython pipeline with :class:`_LinkOnlyLowering` for its lowering pass."""

    def define_pipelines(self):
        pm = _compiler.DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm.passes = [(_LinkOnlyLowering, "native lowering, link-only library")
                     if cls is _typed_passes.NativeLowering else (cls, what)
                     for cls, what in pm.passes]
        pm.finalize()
        return [pm]


_LINK_ONLY = _install_link_only() and os.environ.get("FSDP_LINK_ONLY_KERNELS", "1") != "0"


def _plain(ty):
    """The argument type a kernel is compiled for: no literals, integers widened to int64."""
    ty = types.unliteral(ty)
    if isinstance(ty, types.Integer) and (ty.signed or ty.bitwidth < 64):
        return types.int64
    return ty


def kernel(fn):
    """Decorate an engine-internal jitted function (not callable from Python)."""
    extra = {"pipeline_class": _LinkOnlyCompiler} if _LINK_ONLY else {}
    disp = njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, **extra)(fn)
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

