"""ARP (fsdp.wire.arp) against Scapy's ARP."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP

from fsdp.wire.arp import (
    ARP_LEN,
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    ERR_ARP_BAD_OPER,
    ERR_ARP_TRUNCATED,
    ERR_ARP_UNSUPPORTED,
    arp_build,
    arp_check,
    arp_oper,
    arp_sha,
    arp_spa,
    arp_tha,
    arp_tpa,
)
from fsdp.wire.ethernet import mac_to_str
from fsdp.wire.ipv4 import int_to_ip

from ._helpers import buf

macs = st.integers(0, 2**48 - 1)
ips = st.integers(0, 2**32 - 1)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([ARP_OP_REQUEST, ARP_OP_REPLY]), macs, ips, macs, ips)
def test_parse_and_build_match_scapy(op, sha, spa, tha, tpa):
    raw = bytes(
        ARP(
            op=op,
            hwsrc=mac_to_str(sha),
            psrc=int_to_ip(spa),
            hwdst=mac_to_str(tha),
            pdst=int_to_ip(tpa),
        )
    )
    b = buf(raw)
    assert arp_check(b, 0, len(raw)) == 0
    assert (arp_oper(b, 0), arp_sha(b, 0), arp_spa(b, 0), arp_tha(b, 0), arp_tpa(b, 0)) == (
        op,
        sha,
        spa,
        tha,
        tpa,
    )
    out = buf(bytes(ARP_LEN))
    assert arp_build(out, 0, op, sha, spa, tha, tpa) == ARP_LEN
    assert out.tobytes() == raw


GOOD = bytes(ARP(op=1, hwsrc="02:00:00:00:00:02", psrc="192.0.2.2", pdst="192.0.2.1"))


def _patch(at, value: bytes) -> bytes:
    return GOOD[:at] + value + GOOD[at + len(value) :]


CHECK_CASES = [
    # (description, bytes, expected)
    ("valid request", GOOD, 0),
    ("valid with Ethernet padding after it", GOOD + bytes(18), 0),
    ("27 bytes", GOOD[:27], ERR_ARP_TRUNCATED),
    ("empty", b"", ERR_ARP_TRUNCATED),
    ("hardware type 6 (IEEE 802)", _patch(0, b"\x00\x06"), ERR_ARP_UNSUPPORTED),
    ("protocol type IPv6", _patch(2, b"\x86\xdd"), ERR_ARP_UNSUPPORTED),
    ("hardware length 8", _patch(4, b"\x08"), ERR_ARP_UNSUPPORTED),
    ("protocol length 16", _patch(5, b"\x10"), ERR_ARP_UNSUPPORTED),
    ("RARP request (op 3)", _patch(6, b"\x00\x03"), ERR_ARP_BAD_OPER),
    ("op 0", _patch(6, b"\x00\x00"), ERR_ARP_BAD_OPER),
]


@pytest.mark.parametrize("desc,data,expected", CHECK_CASES, ids=[c[0] for c in CHECK_CASES])
def test_check_table(desc, data, expected):
    assert arp_check(buf(data), 0, len(data)) == expected
