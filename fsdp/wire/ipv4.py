"""IPv4 headers (RFC 791, host requirements RFC 1122 §3.2).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  IHL  |Type of Service|          Total Length         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Identification        |Flags|      Fragment Offset    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Time to Live |    Protocol   |         Header Checksum       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       Source Address                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination Address                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options (IHL > 5)                          |
"""

import numpy as np
from numba import njit

from fsdp.wire.byteorder import get_u16, get_u32, set_u8, set_u16, set_u32
from fsdp.wire.checksum import checksum

IP_VHL = 0
IP_TOS = 1
IP_LEN = 2
IP_ID = 4
IP_FRAG = 6
IP_TTL = 8
IP_PROTO = 9
IP_CSUM = 10
IP_SRC = 12
IP_DST = 16
IP_HLEN_MIN = 20

IP_FLAG_DF = 0x4000
IP_FLAG_MF = 0x2000
IP_FRAG_OFFSET_MASK = 0x1FFF

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

IP_DEFAULT_TTL = 64  # RFC 1700 / Linux net.ipv4.ip_default_ttl

IP_BROADCAST = 0xFFFFFFFF

ERR_IP_TRUNCATED = -1  # fewer than 20 bytes, or fewer than the header/total length says
ERR_IP_VERSION = -2
ERR_IP_BAD_HLEN = -3  # IHL < 5 or beyond the total length
ERR_IP_BAD_TOTAL_LEN = -4  # total length < header length
ERR_IP_BAD_CSUM = -5


@njit(inline="always", cache=True)
def ip_version(buf, off):
    return buf[off + IP_VHL] >> 4


@njit(inline="always", cache=True)
def ip_hlen(buf, off):
    """Header length in bytes (IHL * 4)."""
    return np.int64(buf[off + IP_VHL] & 0x0F) * 4


@njit(inline="always", cache=True)
def ip_total_len(buf, off):
    return get_u16(buf, off + IP_LEN)


@njit(inline="always", cache=True)
def ip_id(buf, off):
    return get_u16(buf, off + IP_ID)


@njit(inline="always", cache=True)
def ip_frag(buf, off):
    """The flags + fragment offset word."""
    return get_u16(buf, off + IP_FRAG)


@njit(inline="always", cache=True)
def ip_is_fragment(buf, off):
    """True for any fragment of a fragmented datagram (MF set or a nonzero offset)."""
    return (get_u16(buf, off + IP_FRAG) & (IP_FLAG_MF | IP_FRAG_OFFSET_MASK)) != 0


@njit(inline="always", cache=True)
def ip_ttl(buf, off):
    return buf[off + IP_TTL]


@njit(inline="always", cache=True)
def ip_proto(buf, off):
    return buf[off + IP_PROTO]


@njit(inline="always", cache=True)
def ip_csum(buf, off):
    return get_u16(buf, off + IP_CSUM)


@njit(inline="always", cache=True)
def ip_src(buf, off):
    return get_u32(buf, off + IP_SRC)


@njit(inline="always", cache=True)
def ip_dst(buf, off):
    return get_u32(buf, off + IP_DST)


@njit(inline="always", cache=True)
def ip_set_csum(buf, off, v):
    set_u16(buf, off + IP_CSUM, v)


@njit(cache=True)
def ip_check(buf, off, n, verify_csum):
    """Integrity of an IPv4 header in ``n`` available bytes: 0 or an ERR_IP_* code.

    ``n`` may exceed the total length (Ethernet pads short frames to 60 bytes); callers trim to
    ``ip_total_len``.  The header checksum is verified unless the NIC already did it.
    """
    if n < IP_HLEN_MIN:
        return ERR_IP_TRUNCATED
    if ip_version(buf, off) != 4:
        return ERR_IP_VERSION
    hlen = ip_hlen(buf, off)
    if hlen < IP_HLEN_MIN:
        return ERR_IP_BAD_HLEN
    total = ip_total_len(buf, off)
    if total < hlen:
        return ERR_IP_BAD_TOTAL_LEN if total >= IP_HLEN_MIN else ERR_IP_BAD_HLEN
    if hlen > n or total > n:
        return ERR_IP_TRUNCATED
    if verify_csum and checksum(buf, off, hlen) != 0:
        return ERR_IP_BAD_CSUM
    return 0


@njit(cache=True)
def ip_set_length_and_frag(buf, off, total_len, frag):
    """Rewrite the total length and the flags/fragment-offset field of the header at ``off``
    (a fragment made or a datagram reassembled) and its checksum."""
    set_u16(buf, off + IP_LEN, total_len)
    set_u16(buf, off + IP_FRAG, frag)
    set_u16(buf, off + IP_CSUM, 0)
    set_u16(buf, off + IP_CSUM, checksum(buf, off, ip_hlen(buf, off)))


@njit(cache=True)
def ip_build(buf, off, src, dst, proto, payload_len, ident, ttl, tos, dont_fragment):
    """Write a 20-byte IPv4 header (no options) with its checksum; returns the header length."""
    buf[off + IP_VHL] = 0x45
    set_u8(buf, off + IP_TOS, tos)
    set_u16(buf, off + IP_LEN, IP_HLEN_MIN + payload_len)
    set_u16(buf, off + IP_ID, ident)
    set_u16(buf, off + IP_FRAG, IP_FLAG_DF if dont_fragment else 0)
    set_u8(buf, off + IP_TTL, ttl)
    set_u8(buf, off + IP_PROTO, proto)
    set_u16(buf, off + IP_CSUM, 0)
    set_u32(buf, off + IP_SRC, src)
    set_u32(buf, off + IP_DST, dst)
    set_u16(buf, off + IP_CSUM, checksum(buf, off, IP_HLEN_MIN))
    return IP_HLEN_MIN


def ip_to_int(addr: str) -> int:
    """Dotted quad -> 32-bit int (ValueError on anything else)."""
    import ipaddress

    return int(ipaddress.IPv4Address(addr))


def int_to_ip(v: int) -> str:
    import ipaddress

    return str(ipaddress.IPv4Address(v))
