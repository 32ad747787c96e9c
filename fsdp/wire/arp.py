"""ARP for IPv4 over Ethernet (RFC 826).

::

     0        2        4    5    6        8                14          18                24    28
    +--------+--------+----+----+--------+-----------------+-----------+-----------------+-----+
    | htype  | ptype  |hlen|plen| oper   | sender MAC (sha)| sender IP | target MAC (tha)| tpa |
    +--------+--------+----+----+--------+-----------------+-----------+-----------------+-----+
"""

from numba import njit

from fsdp.wire.byteorder import get_u16, get_u32, get_u48, set_u8, set_u16, set_u32, set_u48
from fsdp.wire.ethernet import ETHERTYPE_IPV4

ARP_HTYPE = 0
ARP_PTYPE = 2
ARP_HLEN = 4
ARP_PLEN = 5
ARP_OPER = 6
ARP_SHA = 8
ARP_SPA = 14
ARP_THA = 18
ARP_TPA = 24
ARP_LEN = 28

ARP_HTYPE_ETHERNET = 1
ARP_OP_REQUEST = 1
ARP_OP_REPLY = 2

ERR_ARP_TRUNCATED = -1
ERR_ARP_UNSUPPORTED = -2  # not Ethernet/IPv4 (other hardware or protocol types, lengths)
ERR_ARP_BAD_OPER = -3


@njit(cache=True)
def arp_check(buf, off, n):
    """Integrity and sanity of an ARP packet of ``n`` bytes: 0, or an ERR_ARP_* code."""
    if n < ARP_LEN:
        return ERR_ARP_TRUNCATED
    if (
        get_u16(buf, off + ARP_HTYPE) != ARP_HTYPE_ETHERNET
        or get_u16(buf, off + ARP_PTYPE) != ETHERTYPE_IPV4
        or buf[off + ARP_HLEN] != 6
        or buf[off + ARP_PLEN] != 4
    ):
        return ERR_ARP_UNSUPPORTED
    op = get_u16(buf, off + ARP_OPER)
    if op != ARP_OP_REQUEST and op != ARP_OP_REPLY:
        return ERR_ARP_BAD_OPER
    return 0


@njit(inline="always", cache=True)
def arp_oper(buf, off):
    return get_u16(buf, off + ARP_OPER)


@njit(inline="always", cache=True)
def arp_sha(buf, off):
    return get_u48(buf, off + ARP_SHA)


@njit(inline="always", cache=True)
def arp_spa(buf, off):
    return get_u32(buf, off + ARP_SPA)


@njit(inline="always", cache=True)
def arp_tha(buf, off):
    return get_u48(buf, off + ARP_THA)


@njit(inline="always", cache=True)
def arp_tpa(buf, off):
    return get_u32(buf, off + ARP_TPA)


@njit(cache=True)
def arp_build(buf, off, oper, sha, spa, tha, tpa):
    """Write a 28-byte Ethernet/IPv4 ARP packet at ``off``; returns its length."""
    set_u16(buf, off + ARP_HTYPE, ARP_HTYPE_ETHERNET)
    set_u16(buf, off + ARP_PTYPE, ETHERTYPE_IPV4)
    set_u8(buf, off + ARP_HLEN, 6)
    set_u8(buf, off + ARP_PLEN, 4)
    set_u16(buf, off + ARP_OPER, oper)
    set_u48(buf, off + ARP_SHA, sha)
    set_u32(buf, off + ARP_SPA, spa)
    set_u48(buf, off + ARP_THA, tha)
    set_u32(buf, off + ARP_TPA, tpa)
    return ARP_LEN
