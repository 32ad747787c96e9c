"""Shared helpers for the wire tests.

* ``buf(data)``: a uint8 numpy buffer exactly ``len(data)`` long, so any read past the data
  raises IndexError in interpreted mode.
* ``interpreted(fn)``: the pure-Python version of a jitted function *and of every jitted function
  it calls* (``fn.py_func`` alone would still call the compiled helpers, which do not check
  bounds).  Module globals are copied, so nothing in fsdp is patched.
"""

import types

import numpy as np
from numba.core.registry import CPUDispatcher

from fsdp.wire import byteorder


def buf(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=np.uint8).copy()


_globals_copies: dict[int, dict] = {}
_pure_functions: dict[object, types.FunctionType] = {}


def interpreted(dispatcher):
    """Deep ``py_func``: ``dispatcher`` and its jitted callees, all as plain Python."""
    if dispatcher in _pure_functions:
        return _pure_functions[dispatcher]
    fn = dispatcher.py_func
    key = id(fn.__globals__)
    fresh = key not in _globals_copies
    if fresh:
        _globals_copies[key] = dict(fn.__globals__)
    g = _globals_copies[key]
    pure = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__, fn.__closure__)
    _pure_functions[dispatcher] = pure
    if fresh:
        for name, value in list(g.items()):
            if isinstance(value, CPUDispatcher):
                g[name] = interpreted(value)
    return pure


def _byteorder_interpreted_ok() -> bool:
    b = buf(b"\x12\x34\x56\x78")
    return (
        interpreted(byteorder.get_u16)(b, 0) == 0x1234
        and interpreted(byteorder.get_u32)(b, 0) == 0x12345678
    )


def _checksum_interpreted_ok() -> bool:
    from fsdp.wire.checksum import checksum

    try:
        return interpreted(checksum)(buf(b"\x12\x34\x56"), 0, 3) == 0x97CB
    except OverflowError:
        return False


# Under NumPy 2 (NEP 50) ``np.uint8 << 8`` stays uint8, so fsdp.wire.byteorder's loads give
# wrong values when not jitted (reported with the fix).  Value comparisons in interpreted mode
# are only made when that is fixed; no-crash and error-code checks always run.
BYTEORDER_INTERPRETED_OK = _byteorder_interpreted_ok()
# The same NEP 50 rule makes checksum.csum_partial's accumulator a uint8 when not jitted: wrong
# sums, then OverflowError in csum_fold (reported with the fix).
CHECKSUM_INTERPRETED_OK = _checksum_interpreted_ok()
EXISTING_INTERPRETED_OK = BYTEORDER_INTERPRETED_OK and CHECKSUM_INTERPRETED_OK
