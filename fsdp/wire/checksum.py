"""The Internet checksum (RFC 1071), the IPv4 pseudo-header, and incremental update (RFC 1624).

The one home for checksums in fsdp: IPv4 header, ICMP, TCP and UDP all use these.  Sums are kept
as unfolded 64-bit one's-complement accumulators so pieces (pseudo-header, header, payload) add
up before a single fold.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def csum_partial(buf, off, n, initial):
    """Add ``buf[off:off+n]`` as big-endian 16-bit words to the accumulator ``initial``.

    An odd trailing byte is padded with a zero on the right (RFC 1071 §4.1); the caller must
    therefore start every piece but the last at an even offset *within the checksummed data*.
    """
    s = np.int64(initial)
    end = off + n
    i = off
    # Eight bytes per step: four 16-bit words summed into a 64-bit accumulator cannot overflow
    # for any frame size fsdp handles (2^48 words would be needed).
    while i + 8 <= end:
        s += (
            ((np.int64(buf[i]) << 8) | np.int64(buf[i + 1]))
            + ((np.int64(buf[i + 2]) << 8) | np.int64(buf[i + 3]))
            + ((np.int64(buf[i + 4]) << 8) | np.int64(buf[i + 5]))
            + ((np.int64(buf[i + 6]) << 8) | np.int64(buf[i + 7]))
        )
        i += 8
    while i + 2 <= end:
        s += (np.int64(buf[i]) << 8) | np.int64(buf[i + 1])
        i += 2
    if i < end:
        s += np.int64(buf[i]) << 8
    return s


@njit(inline="always", cache=True)
def csum_fold(s):
    """Fold an accumulator to 16 bits and complement it: the value that goes in the header."""
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


@njit(inline="always", cache=True)
def ipv4_pseudo_sum(src, dst, proto, l4_len):
    """Accumulator for the IPv4 pseudo-header (RFC 9293 §3.1, RFC 768)."""
    return (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + l4_len


@njit(cache=True)
def checksum(buf, off, n):
    """The finished checksum of ``buf[off:off+n]`` (0 in the result means the data verified)."""
    return csum_fold(csum_partial(buf, off, n, 0))


@njit(cache=True)
def l4_checksum(buf, off, n, src, dst, proto):
    """Checksum of a TCP/UDP/ICMP-in-IPv4 message with its pseudo-header (ICMP: pass proto 0 and
    it is omitted, RFC 792 has no pseudo-header)."""
    initial = ipv4_pseudo_sum(src, dst, proto, n) if proto != 0 else 0
    return csum_fold(csum_partial(buf, off, n, initial))


@njit(inline="always", cache=True)
def csum_update16(old_csum, old_word, new_word):
    """Incrementally update a header checksum when one 16-bit word changes (RFC 1624 eqn. 3):
    HC' = ~(~HC + ~m + m')."""
    s = ((~old_csum) & 0xFFFF) + ((~old_word) & 0xFFFF) + (new_word & 0xFFFF)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


@njit(inline="always", cache=True)
def csum_update32(old_csum, old_val, new_val):
    """Incremental update for a changed 32-bit field (two words), e.g. an IPv4 address."""
    c = csum_update16(old_csum, old_val >> 16, new_val >> 16)
    return csum_update16(c, old_val & 0xFFFF, new_val & 0xFFFF)
