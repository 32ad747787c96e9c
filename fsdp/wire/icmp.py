"""ICMP for IPv4 (RFC 792; host requirements RFC 1122 §3.2.2).

::

     0                   1                   2                   3
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Identifier (echo) / unused   |  Sequence (echo) / next-hop MTU|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Data: echo payload, or the offending IP header + 8 bytes      |
"""

from numba import njit

from fsdp.wire.byteorder import get_u16, set_u8, set_u16
from fsdp.wire.checksum import checksum

ICMP_TYPE = 0
ICMP_CODE = 1
ICMP_CSUM = 2
ICMP_ID = 4
ICMP_SEQ = 6
ICMP_HLEN = 8

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_REDIRECT = 5
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAM_PROBLEM = 12

# Destination unreachable codes (RFC 792, RFC 1122 §3.2.2.1)
ICMP_UNREACH_NET = 0
ICMP_UNREACH_HOST = 1
ICMP_UNREACH_PROTOCOL = 2
ICMP_UNREACH_PORT = 3
ICMP_UNREACH_NEEDFRAG = 4

ERR_ICMP_TRUNCATED = -1
ERR_ICMP_BAD_CSUM = -2


@njit(cache=True)
def icmp_check(buf, off, n, verify_csum):
    """Integrity of an ICMP message of ``n`` bytes (the IP payload): 0 or ERR_ICMP_*."""
    if n < ICMP_HLEN:
        return ERR_ICMP_TRUNCATED
    if verify_csum and checksum(buf, off, n) != 0:
        return ERR_ICMP_BAD_CSUM
    return 0


@njit(inline="always", cache=True)
def icmp_type(buf, off):
    return buf[off + ICMP_TYPE]


@njit(inline="always", cache=True)
def icmp_code(buf, off):
    return buf[off + ICMP_CODE]


@njit(inline="always", cache=True)
def icmp_id(buf, off):
    return get_u16(buf, off + ICMP_ID)


@njit(inline="always", cache=True)
def icmp_seq(buf, off):
    return get_u16(buf, off + ICMP_SEQ)


@njit(inline="always", cache=True)
def icmp_next_hop_mtu(buf, off):
    """A fragmentation-needed message's next-hop MTU (RFC 1191 §4: the low 16 bits of the
    header's second word; 0 from a router older than RFC 1191)."""
    return get_u16(buf, off + ICMP_SEQ)


@njit(cache=True)
def icmp_build(buf, off, icmp_type_, code, rest, n):
    """Fill the 8-byte ICMP header at ``off`` (``rest`` = the second 32-bit word: id<<16|seq for
    echo, next-hop MTU for "fragmentation needed", 0 otherwise) and checksum the ``n``-byte message
    whose data already follows the header."""
    set_u8(buf, off + ICMP_TYPE, icmp_type_)
    set_u8(buf, off + ICMP_CODE, code)
    set_u16(buf, off + ICMP_CSUM, 0)
    set_u16(buf, off + ICMP_ID, rest >> 16)
    set_u16(buf, off + ICMP_SEQ, rest & 0xFFFF)
    set_u16(buf, off + ICMP_CSUM, checksum(buf, off, n))
    return n
