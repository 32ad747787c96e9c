"""Memory helpers for hot ``@njit`` code: ``copy_bytes`` (memcpy) and ``borrow`` (unowned view).

``copy_bytes``: Numba compiles ``dst[a:b] = src[c:d]`` to an element loop with an overlap
check; for a 1500-byte frame that is ~15x slower than the ``llvm.memcpy`` this intrinsic emits
(measured: ~370 ns vs ~25 ns).  The sim NIC copies every frame twice (into a ring slot on
transmit, out into the receiver's pool on receive, like DMA), so this is its hottest line.

``borrow``: every array a jitted function receives as an argument (or takes out of a NamedTuple)
gets an NRT reference-count increment on entry and a decrement on exit, each an atomic
read-modify-write behind an out-of-line call.  Numba's refcount pruning removes such pairs only
in straight-line code: once the callee branches, LLVM sinks the decrements into a merge block and
the pass no longer matches them.  Measured here: a helper taking five arrays with one if/else
costs ~39 ns per call; the same helper given borrowed arrays ~0.5 ns; the sim NIC went from
162 to 83 ns per forwarded 64-byte frame.  ``borrow(a)`` returns a view of ``a`` with no
meminfo, so the refcount calls on it are null checks that LLVM folds away.  It is only safe
while the original stays alive, i.e. within the call that received it: never return, store or
capture a borrowed array.
"""

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.imputils import impl_ret_borrowed, lower_getattr_generic
from numba.core.typing.templates import AttributeTemplate, infer_getattr
from numba.extending import NativeValue, intrinsic, models, overload, register_model, unbox

from fsdp.pool.pool import Pool


@intrinsic
def borrow(typingctx, arr):
    """A view of ``arr`` that owns nothing (no meminfo, no parent): free to pass to helpers.

    Valid only while the caller's ``arr`` is alive; must not escape the current call.
    """
    if not isinstance(arr, types.Array):
        return None
    sig = arr(arr)

    def codegen(context, builder, signature, args):
        return _borrow_value(context, builder, signature.args[0], args[0])

    return sig, codegen


def _byte_pointer(context, builder, arrty, arr, offty, off):
    ary = context.make_array(arrty)(context, builder, arr)
    index = context.cast(builder, off, offty, types.intp)
    return builder.gep(ary.data, [index])


@intrinsic
def copy_bytes(typingctx, dst, dst_off, src, src_off, n):
    """Copy ``n`` bytes from ``src`` at flat offset ``src_off`` to ``dst`` at ``dst_off``.

    Both arrays must be C-contiguous uint8 (any number of dimensions: offsets are flat byte
    offsets from the first element) and must not overlap.  No bounds checks: the caller owns them.
    """
    for a in (dst, src):
        if not isinstance(a, types.Array) or a.dtype != types.uint8 or a.layout != "C":
            return None
    for o in (dst_off, src_off, n):
        if not isinstance(o, types.Integer):
            return None
    sig = types.void(dst, dst_off, src, src_off, n)

    def codegen(context, builder, signature, args):
        dty, doty, sty, soty, nty = signature.args
        dptr = _byte_pointer(context, builder, dty, args[0], doty, args[1])
        sptr = _byte_pointer(context, builder, sty, args[2], soty, args[3])
        count = context.cast(builder, args[4], nty, types.intp)
        cgutils.raw_memcpy(builder, dptr, sptr, count, 1)
        return context.get_dummy_value()

    return sig, codegen


def load_u64_le(buf, off):
    """The 8 bytes of C-contiguous uint8 array ``buf`` at flat byte offset ``off`` as a
    little-endian uint64: one unaligned load when jitted (on a little-endian host, which x86-64
    and arm64 Linux are), instead of eight byte loads and shifts.  No bounds check."""
    flat = np.asarray(buf).reshape(-1)
    return np.uint64(int.from_bytes(bytes(flat[off : off + 8]), "little"))


@intrinsic
def _load_u64_le(typingctx, buf, off):
    if not isinstance(buf, types.Array) or buf.dtype != types.uint8 or buf.layout != "C":
        return None
    if not isinstance(off, types.Integer):
        return None
    sig = types.uint64(buf, off)

    def codegen(context, builder, signature, args):
        ptr = _byte_pointer(context, builder, signature.args[0], args[0], signature.args[1],
                            args[1])
        p64 = builder.bitcast(ptr, ir.IntType(64).as_pointer())
        return builder.load(p64, align=1)

    return sig, codegen


@overload(load_u64_le, jit_options={"cache": True})
def _ol_load_u64_le(buf, off):
    def impl(buf, off):
        return _load_u64_le(buf, off)

    return impl


def borrow_pool(pool):
    """The pool with every column borrowed: pool calls and frame views cost no refcounting.

    A per-core loop can take ``borrow_pool(core.pool)`` once per pass and hand it to the NIC and
    pool calls of that pass (same lifetime rule as :func:`borrow`).  From Python, where there is
    nothing to save and a borrowed array would outlive its owner's guarantee, it returns ``pool``.
    """
    return pool


@overload(borrow_pool, jit_options={"cache": True})
def _ol_borrow_pool(pool):
    def impl(pool):
        return Pool(
            borrow(pool.data),
            borrow(pool.off),
            borrow(pool.length),
            borrow(pool.next),
            borrow(pool.refcnt),
            borrow(pool.flags),
            borrow(pool.tag),
            borrow(pool.free_stack),
            borrow(pool.meta),
        )

    return impl


def _borrow_value(context, builder, ty, val):
    """``val`` (of numba type ``ty``) with every array inside it borrowed (no meminfo)."""
    if isinstance(ty, types.Array):
        src = context.make_array(ty)(context, builder, val)
        dst = context.make_array(ty)(context, builder)
        for name in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(dst, name, getattr(src, name))
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)
        dst.parent = cgutils.get_null_value(dst.parent.type)
        return dst._getvalue()
    if isinstance(ty, types.BaseTuple):
        items = [
            _borrow_value(context, builder, mty, builder.extract_value(val, i))
            for i, mty in enumerate(ty.types)
        ]
        return context.make_tuple(builder, ty, items)
    # Anything else in a CoreState is a plain value; the caller of an intrinsic owns a new
    # reference to what it returns, so take one (a no-op for scalars).
    context.nrt.incref(builder, ty, val)
    return val


def _has_only_arrays_and_scalars(ty) -> bool:
    if isinstance(ty, types.Array):
        return True
    if isinstance(ty, types.BaseTuple):
        return all(_has_only_arrays_and_scalars(t) for t in ty.types)
    return isinstance(ty, (types.Integer, types.Float, types.Boolean))


@intrinsic
def borrow_core(typingctx, core):
    """``core`` (a CoreState, or any tuple tree of arrays and scalars) with every array borrowed,
    as fsdp.driver.jitmem.borrow does for one array: the NRT reference counting that every
    kernel call otherwise does on each of the ~170 arrays it receives (an atomic add and an
    atomic sub per array per call, 60% of a short-connection run in perf) becomes a null check.
    Valid only within the call that received ``core`` (Python's CoreState keeps the arrays
    alive); never store or return a borrowed core.  A :class:`CoreRef` (defined below) is
    returned as it is: it owns nothing either, and its fields read like a CoreState's."""
    if isinstance(core, CoreRefType):
        sig = core(core)

        def codegen_ref(context, builder, signature, args):
            return args[0]  # already borrowed: fields are read from its table (CoreRef below)

        return sig, codegen_ref
    if not isinstance(core, types.BaseTuple) or not _has_only_arrays_and_scalars(core):
        return None
    sig = core(core)

    def codegen(context, builder, signature, args):
        return _borrow_value(context, builder, signature.args[0], args[0])

    return sig, codegen


# ---- CoreRef: a core passed as one pointer ---------------------------------------------
#
# A CoreState is a NamedTuple of ~170 arrays.  Passed by value, it costs twice:
# * from Python, Numba's CPython wrapper types and unboxes every array before the first
#   instruction runs (~12 µs per call measured on the dev VM): every socket call and poll pass;
# * between jitted kernels, Numba's calling convention flattens it into ~1,200 scalar arguments
#   (7 per array), stored and reloaded on every call, and the callee cannot see that the arrays
#   own nothing, so it keeps the out-of-line NRT reference-count calls on each one it uses.
# A ``CoreRef`` is the address of a flat int64 table holding each array's data pointer, shape and
# strides (and each scalar's value), written once when the core is made.  Its Numba type names
# the CoreState type (the dispatcher fingerprints ``_numba_type_`` without looking inside), it
# travels as one i64, and ``ref.field`` reads like the CoreState's field: the lowering loads that
# field's words from the table (marked invariant: the table never changes while the core lives,
# so LLVM merges and hoists the loads, and drops those of fields a function does not use) and
# builds arrays with a null meminfo, whose reference-count calls fold away.


class CoreRefType(types.Type):
    """Numba type of a :class:`CoreRef` to a CoreState of type ``core_type``."""

    def __init__(self, core_type):
        self.core_type = core_type
        super().__init__(name=f"CoreRef({core_type})")


@register_model(CoreRefType)
class _CoreRefModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.IntType(64))


@unbox(CoreRefType)
def _unbox_core_ref(typ, obj, c):
    # The int in the CoreRef's ``_addr`` slot, loaded from the slot's offset in the object
    # (_ADDR_SLOT_OFFSET): looking the attribute up by name (a str made from C, hashed, then
    # CoreRef's __getattr__ hook) cost ~0.1 µs of every call from Python.  Only CoreRefs have
    # this type (typeof reads their _numba_type_), and __init__ always sets the slot.
    i8p = ir.IntType(8).as_pointer()
    slot = c.builder.gep(c.builder.bitcast(obj, i8p),
                         [ir.Constant(ir.IntType(64), _ADDR_SLOT_OFFSET)])
    addr = c.builder.load(c.builder.bitcast(slot, c.pyapi.pyobj.as_pointer()))
    val = c.pyapi.long_as_longlong(addr)
    return NativeValue(val, is_error=c.pyapi.c_api_error())


def _table_words(ty, val, out: list) -> None:
    """Append the table words of ``val`` (numba type ``ty``) to ``out`` (layout read by
    ``_load_value``): an array is data pointer, shape..., strides...; a scalar is its value."""
    if isinstance(ty, types.Array):
        out.append(val.ctypes.data)
        out.extend(int(n) for n in val.shape)
        out.extend(int(s) for s in val.strides)
    elif isinstance(ty, types.BaseTuple):
        for t, v in zip(ty.types, val, strict=True):
            _table_words(t, v, out)
    elif isinstance(ty, types.Float):
        out.append(int(np.array([val], np.float64).view(np.int64)[0]))
    elif isinstance(ty, (types.Integer, types.Boolean)):
        out.append(int(val))
    else:
        raise TypeError(f"CoreRef cannot hold a {ty}")


class CoreRef:
    """A core for jitted roots, passed as one pointer (see above).  Keeps ``core`` alive; build a
    new one whenever the CoreState is replaced (e.g. ``_replace``)."""

    __slots__ = ("core", "_table", "_addr", "_numba_type_")

    def __init__(self, core):
        import numba

        ty = numba.typeof(core)
        if not _has_only_arrays_and_scalars(ty):
            raise TypeError(f"CoreRef needs a tuple tree of arrays and scalars, not {ty}")
        words: list = []
        _table_words(ty, core, words)
        self.core = core
        self._table = np.array(words, dtype=np.int64)
        self._addr = int(self._table.ctypes.data)
        self._numba_type_ = CoreRefType(ty)

    def __getattr__(self, name):
        # read-only access to the core's fields from Python (core.stats, core.var, ...)
        return getattr(self.core, name)


def _slot_offset(cls, name: str) -> int:
    """Byte offset of slot ``name`` in instances of ``cls``: where a probe instance holds the
    object stored in it (CPython lays slots out after the object header, in an order of its
    choosing, so it is found, not assumed)."""
    import ctypes

    probe = object.__new__(cls)
    marker = object()
    setattr(probe, name, marker)
    for off in range(object.__basicsize__, cls.__basicsize__, ctypes.sizeof(ctypes.c_void_p)):
        if ctypes.c_void_p.from_address(id(probe) + off).value == id(marker):
            return off
    raise RuntimeError(f"slot {name!r} of {cls.__name__} not found")


_ADDR_SLOT_OFFSET = _slot_offset(CoreRef, "_addr")


def _load_value(context, builder, ty, base, idx, invariant=False):
    """The value of numba type ``ty`` read from table words ``idx..``; returns (value, next idx).
    ``invariant``: tag the loads ``!invariant.load`` (the table never changes)."""
    i64 = ir.IntType(64)

    def word(k):
        load = builder.load(builder.gep(base, [ir.Constant(i64, k)]))
        if invariant:
            load.set_metadata("invariant.load", builder.module.add_metadata([]))
        return load

    if isinstance(ty, types.Array):
        ary = context.make_array(ty)(context, builder)
        data = builder.inttoptr(word(idx), ary.data.type)
        shape = [word(idx + 1 + k) for k in range(ty.ndim)]
        strides = [word(idx + 1 + ty.ndim + k) for k in range(ty.ndim)]
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(
            context.get_data_type(ty.dtype)))
        context.populate_array(
            ary, data=data, shape=cgutils.pack_array(builder, shape),
            strides=cgutils.pack_array(builder, strides), itemsize=itemsize, meminfo=None,
        )
        return ary._getvalue(), idx + 1 + 2 * ty.ndim
    if isinstance(ty, types.BaseTuple):
        items = []
        for mty in ty.types:
            v, idx = _load_value(context, builder, mty, base, idx, invariant)
            items.append(v)
        return context.make_tuple(builder, ty, items), idx
    w = word(idx)
    if isinstance(ty, types.Boolean):
        return builder.icmp_unsigned("!=", w, ir.Constant(i64, 0)), idx + 1
    if isinstance(ty, types.Float):
        v = builder.bitcast(w, ir.DoubleType())
        return context.cast(builder, v, types.float64, ty), idx + 1
    return context.cast(builder, w, types.int64, ty), idx + 1


def _table_len(ty) -> int:
    """Table words of a value of numba type ``ty`` (see ``_table_words``)."""
    if isinstance(ty, types.Array):
        return 1 + 2 * ty.ndim
    if isinstance(ty, types.BaseTuple):
        return sum(_table_len(t) for t in ty.types)
    return 1


@infer_getattr
class _CoreRefAttributes(AttributeTemplate):
    key = CoreRefType

    def generic_resolve(self, ref, attr):
        core = ref.core_type
        if attr in core.fields:
            return core.types[core.fields.index(attr)]
        return None


@lower_getattr_generic(CoreRefType)
def _core_ref_getattr(context, builder, typ, value, attr):
    core = typ.core_type
    i = core.fields.index(attr)
    offset = sum(_table_len(t) for t in core.types[:i])
    base = builder.inttoptr(value, ir.IntType(64).as_pointer())
    field, _ = _load_value(context, builder, core.types[i], base, offset, invariant=True)
    return impl_ret_borrowed(context, builder, core.types[i], field)


class RootEntry:
    """Calls of a jitted root whose first argument is a :class:`CoreRef` and whose other
    arguments always have the types ``arg_types``: ``get(core)`` is the root's compiled entry
    point for them.  Calling it skips the dispatcher's per-call type resolution, about 0.5 µs
    of a ~0.85 µs call (most of it typing the CoreRef, whose type Numba's C dispatcher cannot
    fingerprint).  The entry does not check its arguments: callers pass exactly those types
    (Python ints for integers, 1-D C-contiguous writable arrays of the dtypes named).  A core
    that is not a CoreRef (a plain CoreState, in tests) gets the dispatcher."""

    __slots__ = ("dispatcher", "arg_types", "ref_type", "entry")

    def __init__(self, dispatcher, *arg_types) -> None:
        self.dispatcher = dispatcher
        self.arg_types = arg_types
        self.ref_type = None
        self.entry = None

    def get(self, core):
        t = getattr(core, "_numba_type_", None)
        if t is self.ref_type and t is not None:
            return self.entry
        if not isinstance(core, CoreRef):
            return self.dispatcher
        entry = self.dispatcher.compile((t, *self.arg_types))  # compiled, or from the cache
        self.ref_type, self.entry = t, entry
        return entry
