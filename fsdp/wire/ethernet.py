"""Ethernet II frames (IEEE 802.3, DIX).

::

     0                   6                  12       14
    +-------------------+-------------------+--------+------------
    |  destination MAC  |    source MAC     |  type  | payload ...
    +-------------------+-------------------+--------+------------

MAC addresses are handled as 48-bit integers.  802.1Q tags are not parsed: a tagged frame has
type 0x8100 and is dropped as an unknown EtherType (fsdp sits on untagged links).
"""

from numba import njit

from fsdp.wire.byteorder import get_u16, get_u48, set_u16, set_u48

ETH_DST = 0
ETH_SRC = 6
ETH_TYPE = 12
ETH_HLEN = 14

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV6 = 0x86DD

MAC_BROADCAST = 0xFFFFFFFFFFFF
MAC_GROUP_BIT = 0x010000000000  # I/G bit of the first octet: multicast or broadcast

ERR_ETH_TRUNCATED = -1


@njit(inline="always", cache=True)
def eth_check(buf, off, n):
    """0 if ``n`` bytes at ``off`` can hold an Ethernet header, else ERR_ETH_TRUNCATED."""
    if n < ETH_HLEN:
        return ERR_ETH_TRUNCATED
    return 0


@njit(inline="always", cache=True)
def eth_dst(buf, off):
    return get_u48(buf, off + ETH_DST)


@njit(inline="always", cache=True)
def eth_src(buf, off):
    return get_u48(buf, off + ETH_SRC)


@njit(inline="always", cache=True)
def eth_type(buf, off):
    return get_u16(buf, off + ETH_TYPE)


@njit(inline="always", cache=True)
def eth_set_dst(buf, off, mac):
    set_u48(buf, off + ETH_DST, mac)


@njit(inline="always", cache=True)
def eth_set_src(buf, off, mac):
    set_u48(buf, off + ETH_SRC, mac)


@njit(inline="always", cache=True)
def eth_set_type(buf, off, ethertype):
    set_u16(buf, off + ETH_TYPE, ethertype)


@njit(inline="always", cache=True)
def eth_build(buf, off, dst, src, ethertype):
    """Write a whole Ethernet header at ``off``."""
    set_u48(buf, off + ETH_DST, dst)
    set_u48(buf, off + ETH_SRC, src)
    set_u16(buf, off + ETH_TYPE, ethertype)


@njit(inline="always", cache=True)
def mac_is_group(mac):
    return (mac & MAC_GROUP_BIT) != 0


def mac_to_int(mac: str) -> int:
    """``"02:00:00:00:00:01"`` -> 0x020000000001 (ValueError on anything else)."""
    parts = mac.split(":") if isinstance(mac, str) else None
    if not parts or len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise ValueError(f"invalid MAC address {mac!r}")
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        raise ValueError(f"invalid MAC address {mac!r}") from None
    v = 0
    for o in octets:
        v = (v << 8) | o
    return v


def mac_to_str(mac: int) -> str:
    return ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -8, -8))
