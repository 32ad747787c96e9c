"""Ethernet II headers (fsdp.wire.ethernet) against Scapy's Ether."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import Ether

from fsdp.wire.ethernet import (
    ERR_ETH_TRUNCATED,
    ETH_HLEN,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    MAC_BROADCAST,
    eth_build,
    eth_check,
    eth_dst,
    eth_set_dst,
    eth_set_src,
    eth_set_type,
    eth_src,
    eth_type,
    mac_is_group,
    mac_to_int,
    mac_to_str,
)

from ._helpers import buf

macs = st.integers(0, 2**48 - 1)


@settings(max_examples=60, deadline=None)
@given(macs, macs, st.integers(0, 0xFFFF), st.binary(max_size=8))
def test_parse_matches_scapy(dst, src, etype, payload):
    pkt = Ether(dst=mac_to_str(dst), src=mac_to_str(src), type=etype) / payload
    raw = bytes(pkt)
    b = buf(raw)
    assert eth_check(b, 0, len(raw)) == 0
    assert (eth_dst(b, 0), eth_src(b, 0), eth_type(b, 0)) == (dst, src, etype)


@settings(max_examples=60, deadline=None)
@given(macs, macs, st.integers(0, 0xFFFF))
def test_build_matches_scapy(dst, src, etype):
    b = buf(bytes(ETH_HLEN + 2))
    eth_build(b, 1, dst, src, etype)
    assert b.tobytes()[1:-1] == bytes(Ether(dst=mac_to_str(dst), src=mac_to_str(src), type=etype))
    c = buf(bytes(ETH_HLEN))
    eth_set_dst(c, 0, dst)
    eth_set_src(c, 0, src)
    eth_set_type(c, 0, etype)
    assert c.tobytes() == b.tobytes()[1:-1]


CHECK_CASES = [
    # (description, n, expected)
    ("empty frame", 0, ERR_ETH_TRUNCATED),
    ("13 bytes: type cut", 13, ERR_ETH_TRUNCATED),
    ("header only", 14, 0),
    ("minimum frame without FCS", 60, 0),
]


@pytest.mark.parametrize("desc,n,expected", CHECK_CASES, ids=[c[0] for c in CHECK_CASES])
def test_check_table(desc, n, expected):
    assert eth_check(buf(bytes(n)), 0, n) == expected


def test_scapy_arp_broadcast_frame():
    raw = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01", type=0x0806) / bytes(28))
    b = buf(raw)
    assert eth_dst(b, 0) == MAC_BROADCAST and eth_type(b, 0) == ETHERTYPE_ARP
    assert eth_src(b, 0) == 0x020000000001


MAC_CASES = [
    ("unicast", "02:00:00:00:00:01", 0x020000000001, False),
    ("broadcast", "ff:ff:ff:ff:ff:ff", MAC_BROADCAST, True),
    ("IPv4 multicast", "01:00:5e:00:00:fb", 0x01005E0000FB, True),
    ("single hex digits", "2:0:0:0:0:a", 0x02000000000A, False),
]


@pytest.mark.parametrize("desc,text,value,group", MAC_CASES, ids=[c[0] for c in MAC_CASES])
def test_mac_conversions(desc, text, value, group):
    assert mac_to_int(text) == value
    assert mac_to_int(mac_to_str(value)) == value
    assert mac_is_group(value) == group


@pytest.mark.parametrize(
    "bad", ["", "02:00:00:00:00", "02:00:00:00:00:01:02", "02-00-00-00-00-01", "gg:0:0:0:0:0", 5]
)
def test_mac_to_int_rejects(bad):
    with pytest.raises(ValueError):
        mac_to_int(bad)


def test_ethertype_constants():
    assert ETHERTYPE_IPV4 == 0x0800 and ETHERTYPE_ARP == 0x0806
