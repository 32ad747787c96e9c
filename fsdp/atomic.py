"""Atomic loads, stores and read-modify-writes on numpy array elements, usable from ``@njit``.

The sim NIC's rings live in shared memory and are polled by other processes (one per core).  A
single-producer/single-consumer ring needs exactly two orderings: the producer's *release* store of
its tail after writing the slots, and the consumer's *acquire* load of that tail before reading
them (and the mirror for the head).  Numba has no CPU atomics, so these intrinsics emit LLVM's
atomic instructions directly; on x86-64 they compile to plain moves plus a compiler barrier.
"""

import platform

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


def _element_pointer(context, builder, arrty, arr, idxty, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    index = context.cast(builder, idx, idxty, types.intp)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [index], wraparound=False)


@intrinsic
def load_acquire(typingctx, arr, idx):
    """``arr[idx]`` with acquire ordering (pairs with :func:`store_release`)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = arr.dtype(arr, idx)

    def codegen(context, builder, signature, args):
        arrty, idxty = signature.args
        ptr = _element_pointer(context, builder, arrty, args[0], idxty, args[1])
        width = context.get_abi_sizeof(context.get_value_type(arrty.dtype))
        return builder.load_atomic(ptr, "acquire", width)

    return sig, codegen


@intrinsic
def store_release(typingctx, arr, idx, val):
    """``arr[idx] = val`` with release ordering: every earlier store is visible before this one."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx, val)

    def codegen(context, builder, signature, args):
        arrty, idxty, valty = signature.args
        ptr = _element_pointer(context, builder, arrty, args[0], idxty, args[1])
        value = context.cast(builder, args[2], valty, arrty.dtype)
        width = context.get_abi_sizeof(context.get_value_type(arrty.dtype))
        builder.store_atomic(value, ptr, "release", width)
        return context.get_dummy_value()

    return sig, codegen


def _fetch_op(op: str, doc: str):
    """An intrinsic ``f(arr, idx, val)``: LLVM ``atomicrmw op`` on ``arr[idx]`` (sequentially
    consistent); returns the old value."""

    @intrinsic
    def fetch(typingctx, arr, idx, val):
        if not isinstance(arr, types.Array) or not isinstance(arr.dtype, types.Integer):
            return None
        sig = arr.dtype(arr, idx, val)

        def codegen(context, builder, signature, args):
            arrty, idxty, valty = signature.args
            ptr = _element_pointer(context, builder, arrty, args[0], idxty, args[1])
            value = context.cast(builder, args[2], valty, arrty.dtype)
            return builder.atomic_rmw(op, ptr, value, "seq_cst")

        return sig, codegen

    fetch.__doc__ = doc
    return fetch


fetch_add = _fetch_op("add", "Atomically ``arr[idx] += val``; returns the old value.")
fetch_or = _fetch_op("or", "Atomically ``arr[idx] |= val``; returns the old value.")
fetch_and = _fetch_op("and", "Atomically ``arr[idx] &= val``; returns the old value.")


@intrinsic
def compare_exchange(typingctx, arr, idx, expected, desired):
    """Atomically replace ``arr[idx]`` by ``desired`` if it equals ``expected``; returns success."""
    if not isinstance(arr, types.Array) or not isinstance(arr.dtype, types.Integer):
        return None
    sig = types.boolean(arr, idx, expected, desired)

    def codegen(context, builder, signature, args):
        arrty, idxty, expty, desty = signature.args
        ptr = _element_pointer(context, builder, arrty, args[0], idxty, args[1])
        exp = context.cast(builder, args[2], expty, arrty.dtype)
        des = context.cast(builder, args[3], desty, arrty.dtype)
        pair = builder.cmpxchg(ptr, exp, des, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return sig, codegen


_X86_64 = platform.machine() in ("x86_64", "AMD64")
if _X86_64:
    from llvmlite import binding as _llvm

    _llvm.initialize_native_asmparser()  # Numba does not: inline asm needs it (fence below)


@intrinsic
def fence(typingctx):
    """A full memory barrier: every earlier store is visible before any later load.  For
    Dekker-style hand-shakes, where a release store followed by a plain load is not enough
    (``fsdp.driver.sim_dp._ring_bells``).  On x86-64 a locked no-op on the stack top, as Linux's
    ``smp_mb()`` (arch/x86/include/asm/barrier.h): as strong as ``mfence`` for ordinary memory
    and cheaper; elsewhere LLVM's ``fence seq_cst``."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86_64:
            fnty = ir.FunctionType(ir.VoidType(), [])
            builder.asm(fnty, "lock orl $$0, -4(%rsp)", "~{memory},~{dirflag},~{fpsr},~{flags}",
                        [], side_effect=True)
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


SYS_FUTEX = {"aarch64": 98}.get(platform.machine(), 202)  # x86-64: 202
_FUTEX_WAKE = 1  # not FUTEX_PRIVATE_FLAG: the word is in memory other processes map


@intrinsic
def futex_wake(typingctx, arr, idx):
    """Wake every thread in ``futex(FUTEX_WAIT)`` on the 32-bit word at ``&arr[idx]`` (the low
    half of an int64 element on little-endian x86-64), in any process that maps it: the
    ``syscall`` is emitted by symbol name, so functions using it can be cached.  Returns the
    number woken (or -1)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = types.int64(arr, idx)

    def codegen(context, builder, signature, args):
        arrty, idxty = signature.args
        ptr = _element_pointer(context, builder, arrty, args[0], idxty, args[1])
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64], var_arg=True)
        fn = cgutils.get_or_insert_function(builder.module, fnty, "syscall")
        addr = builder.ptrtoint(ptr, i64)
        return builder.call(fn, [ir.Constant(i64, SYS_FUTEX), addr, ir.Constant(i64, _FUTEX_WAKE),
                                 ir.Constant(i64, 0x7FFFFFFF), ir.Constant(i64, 0),
                                 ir.Constant(i64, 0), ir.Constant(i64, 0)])

    return sig, codegen


@intrinsic
def cpu_yield(typingctx):
    """``sched_yield()``: give the CPU to another runnable thread, if any (else it returns at
    once, a ~0.3 µs syscall).  A polling loop calls it after a run of empty passes, so on a
    CPU it shares (more workers than CPUs) the peer it waits for gets to run instead of the
    loop spinning out its time slice.  Emitted by symbol name, so callers can be cached."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, []),
                                            "sched_yield")
        return builder.sext(builder.call(fn, []), ir.IntType(64))

    return sig, codegen


_ = ir  # llvmlite is the backend these intrinsics target; imported so a missing one fails early
