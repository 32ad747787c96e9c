"""The socket layer's per-connection calls into the engine: accept, recv, send, close (and any
usercall without a buffer), as one object per stack, ``Stack._engine``.

Two implementations with the same methods:

* ``fsdp._native.Engine`` (native/fsdp_native.c), when that module was built: it calls the
  engine's compiled ``usercall`` from C with Numba's native calling convention, ~40 ns a call,
  and reads the clock and the caller's bytes itself;
* :class:`PyEngine`, otherwise (or with ``FSDP_NATIVE=0``): the same calls through Numba's
  entries (fsdp.tcp.usercalls.usercall_entry), ~200 ns each (the CPython wrapper builds an
  argument tuple and unboxes three arrays).

The native one is used only when the compiled function's type is exactly the one the C file
is written for (``_native.NATIVE_TYPE``) and a first call agrees with the Numba entry's.

Methods (``core``: the core's index in the stack; results as the usercalls', -errno on
failure): ``call(core, op, cid, a, b, c, d)`` -> int; ``send(core, cid, data)`` -> bytes
taken; ``recv(core, cid, n)`` -> bytes (b"" at end of file) or -errno; ``accept(core, lid)``
-> (cid, lip, lport, rip, rport) or -errno; ``close(core, cid)`` -> int.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from fsdp.driver.jitmem import CoreRef
from fsdp.tcp import usercalls as uc

try:
    from fsdp import _native
except ImportError:  # not built (no C compiler at install): the Numba entries serve
    _native = None

_U8, _I64, _I32 = uc.UC_U8, uc.UC_I64, uc.UC_I32
_OP_ACCEPT, _OP_SEND, _OP_RECV, _OP_CLOSE = uc.OP_ACCEPT, uc.OP_SEND, uc.OP_RECV, uc.OP_CLOSE
_monotonic_ns = time.monotonic_ns
SCRATCH_BYTES = 65536
_scratch = threading.local()


def scratch_buffer() -> tuple[np.ndarray, memoryview, np.ndarray]:
    """This thread's scratch buffers: uint8[SCRATCH_BYTES] and a memoryview of it (what a send
    of read-only bytes is copied into and a recv reads into, so neither makes an array: the
    engine copies in and out during the call), and int64[4] (accept's addresses).  Per thread:
    another thread may call between a call and the read of its result."""
    try:
        return _scratch.buf
    except AttributeError:
        arr = np.empty(SCRATCH_BYTES, np.uint8)
        _scratch.buf = (arr, memoryview(arr), np.empty(4, np.int64))
        return _scratch.buf


def send_array(view: memoryview, n: int) -> np.ndarray:
    """``view`` (``n`` bytes, unsigned) as what the engine's send takes: writable 1-D uint8.  A
    writable buffer is used in place; a read-only one (``bytes``, the usual case) is copied
    into the thread's scratch buffer -- a memcpy, ~12x cheaper than a new array -- or, past
    its size, into a new array."""
    if not view.readonly:
        return np.frombuffer(view, np.uint8)
    if n > SCRATCH_BYTES:
        return np.array(view, np.uint8)
    arr, mv, _ = scratch_buffer()
    mv[:n] = view
    return arr


class PyEngine:
    """The engine's calls through Numba's entries: the reference for ``_native.Engine``."""

    __slots__ = ("_entries", "_refs", "_clock", "_virtual")

    def __init__(self, refs, clock, virtual_clock: bool = True) -> None:
        self._refs = refs
        self._entries = [uc.usercall_entry(r) for r in refs]
        self._clock = clock
        self._virtual = virtual_clock  # False: the clock is the host's (read here, inline)

    def _now(self) -> int:
        return self._clock() if self._virtual else _monotonic_ns() // 1000

    def call(self, core: int, op: int, cid: int, a: int, b: int, c: int, d: int) -> int:
        if op == _OP_SEND or op == _OP_RECV:
            raise ValueError("call() makes no send or recv: use send() / recv()")
        return int(self._entries[core](self._refs[core], op, cid, a, b, c, d, self._now(),
                                       _U8, _I64, _I32))

    def send(self, core: int, cid: int, data) -> int:
        view = memoryview(data).cast("B")
        n = view.nbytes
        arr = send_array(view, n) if n else _U8
        return int(self._entries[core](self._refs[core], _OP_SEND, cid, 0, n, 0, 0,
                                       self._now(), arr, _I64, _I32))

    def recv(self, core: int, cid: int, n: int):
        if n <= 0:
            raise ValueError("recv() needs a size > 0")
        if n <= SCRATCH_BYTES:
            arr, mv, _ = scratch_buffer()
        else:
            arr = np.empty(n, np.uint8)
            mv = memoryview(arr)
        rc = int(self._entries[core](self._refs[core], _OP_RECV, cid, 0, n, 0, 0, self._now(),
                                     arr, _I64, _I32))
        if rc < 0:
            return rc
        return bytes(mv[:rc])

    def accept(self, core: int, lid: int):
        addrs = scratch_buffer()[2]
        cid = int(self._entries[core](self._refs[core], _OP_ACCEPT, lid, 0, 0, 0, 0, 0, _U8,
                                      addrs, _I32))
        if cid < 0:
            return cid
        return (cid, *addrs.tolist())

    def close(self, core: int, cid: int) -> int:
        return int(self._entries[core](self._refs[core], _OP_CLOSE, cid, 0, 0, 0, 0,
                                       self._now(), _U8, _I64, _I32))


def _native_root(entry, ref: CoreRef) -> tuple[int, str]:
    """The usercall compiled for ``ref``'s type as a native function: (address, LLVM type in
    Numba's native calling convention)."""
    entry.get(ref)  # compiled, or loaded from the cache, for this type
    cres = entry.dispatcher.overloads[(ref._numba_type_, *entry.arg_types)]
    ctx = cres.target_context
    fnty = ctx.call_conv.get_function_type(cres.signature.return_type, cres.signature.args)
    return int(cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)), str(fnty)


def native_unavailable(refs) -> str | None:
    """Why ``_native.Engine`` cannot serve these cores, or None when it can."""
    if _native is None:
        return "fsdp._native was not built"
    if os.environ.get("FSDP_NATIVE", "1") == "0":
        return "FSDP_NATIVE=0"
    if (_native.OP_ACCEPT, _native.OP_SEND, _native.OP_RECV, _native.OP_CLOSE,
            getattr(_native, "RECV_AS_POLLED", None)) != (
            _OP_ACCEPT, _OP_SEND, _OP_RECV, _OP_CLOSE, uc.RECV_AS_POLLED):
        return "fsdp._native was built for other usercall numbers"
    for r in refs:
        if not isinstance(r, CoreRef):
            return "a core that is not a CoreRef"
        if _native_root(uc._ENTRY, r)[1] != _native.NATIVE_TYPE:
            return "this Numba compiles usercall to another native type"
    return None


def make_engine(refs, clock, virtual_clock: bool):
    """The calls for a stack's cores ``refs`` (CoreRefs) with clock ``clock`` (µs): native
    where it can be (see the module doc), else :class:`PyEngine`."""
    refs = tuple(refs)
    if native_unavailable(refs) is None:
        fns = tuple(_native_root(uc._ENTRY, r)[0] for r in refs)
        engine = _native.Engine(fns, refs, clock if virtual_clock else None)
        # one harmless call both ways (status of no connection): the ABI agrees
        if all(engine.call(i, uc.OP_STATUS, -1, 0, 0, 0, 0)
               == PyEngine(refs, clock, virtual_clock).call(i, uc.OP_STATUS, -1, 0, 0, 0, 0)
               for i in range(len(refs))):
            return engine
    return PyEngine(refs, clock, virtual_clock)
