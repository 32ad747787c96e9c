"""Network byte order loads and stores over ``(buf, off)``.

Every wire accessor in fsdp is built from these.  They are tiny ``inline="always"`` kernels so a
header field read compiles to one or two loads and a byte swap; none of them checks bounds (the
``*_check`` function of each protocol validates lengths once, first, as in smoltcp).  Loads
return int64: numpy 2 keeps uint8 arithmetic in uint8 when interpreted, and a jitted
uint64/int64 mix becomes float64.
"""

import numpy as np
from numba import njit


@njit(inline="always", cache=True)
def get_u8(buf, off):
    return np.int64(buf[off])


@njit(inline="always", cache=True)
def get_u16(buf, off):
    return (np.int64(buf[off]) << 8) | np.int64(buf[off + 1])


@njit(inline="always", cache=True)
def get_u32(buf, off):
    return (
        (np.int64(buf[off]) << 24)
        | (np.int64(buf[off + 1]) << 16)
        | (np.int64(buf[off + 2]) << 8)
        | np.int64(buf[off + 3])
    )


@njit(inline="always", cache=True)
def get_u48(buf, off):
    """A 48-bit MAC address as an integer (big-endian), the form fsdp keeps MACs in."""
    return (get_u16(buf, off) << 32) | get_u32(buf, off + 2)


@njit(inline="always", cache=True)
def set_u8(buf, off, v):
    buf[off] = v & 0xFF


@njit(inline="always", cache=True)
def set_u16(buf, off, v):
    buf[off] = (v >> 8) & 0xFF
    buf[off + 1] = v & 0xFF


@njit(inline="always", cache=True)
def set_u32(buf, off, v):
    buf[off] = (v >> 24) & 0xFF
    buf[off + 1] = (v >> 16) & 0xFF
    buf[off + 2] = (v >> 8) & 0xFF
    buf[off + 3] = v & 0xFF


@njit(inline="always", cache=True)
def set_u48(buf, off, v):
    set_u16(buf, off, v >> 32)
    set_u32(buf, off + 2, v & 0xFFFFFFFF)
