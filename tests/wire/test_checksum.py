"""The Internet checksum (RFC 1071), pseudo-header sums and incremental update (RFC 1624)."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import checksum as scapy_checksum

from fsdp.wire.checksum import (
    checksum,
    csum_fold,
    csum_partial,
    csum_update16,
    csum_update32,
    ipv4_pseudo_sum,
    l4_checksum,
)

from ._helpers import buf


def reference_checksum(data: bytes) -> int:
    """Naive RFC 1071 §4.1: sum 16-bit words (odd byte padded right), fold, complement."""
    if len(data) % 2:
        data += b"\x00"
    s = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_rfc1071_section3_example():
    # RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (one's complement), checksum 220d.
    data = bytes.fromhex("0001f203f4f5f6f7")
    s = csum_partial(buf(data), 0, 8, 0)
    assert ~csum_fold(s) & 0xFFFF == 0xDDF2
    assert checksum(buf(data), 0, 8) == 0x220D
    assert scapy_checksum(data) == 0x220D


CASES = [
    # (description, data, expected checksum)
    ("empty", b"", 0xFFFF),
    ("one byte is padded on the right", b"\x01", 0xFEFF),
    ("one word", b"\x12\x34", 0xEDCB),
    ("odd length", b"\x12\x34\x56", 0x97CB),
    ("carry folds around", b"\xff\xff\x00\x01", 0xFFFE),
    ("all ones sum to -0", b"\xff\xff\xff\xff", 0x0000),
    ("data with its own checksum verifies", bytes.fromhex("0001f203f4f5f6f7220d"), 0x0000),
]


@pytest.mark.parametrize("desc,data,expected", CASES, ids=[c[0] for c in CASES])
def test_checksum_table(desc, data, expected):
    assert checksum(buf(data), 0, len(data)) == expected
    assert reference_checksum(data) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 5))
def test_checksum_matches_reference_and_scapy(data, off):
    b = buf(bytes(off) + data)
    assert checksum(b, off, len(data)) == reference_checksum(data) == scapy_checksum(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.data())
def test_partial_sums_add_up_at_even_split(data, d):
    split = d.draw(st.integers(0, len(data) // 2)) * 2
    b = buf(data)
    s = csum_partial(b, 0, split, 0)
    s = csum_partial(b, split, len(data) - split, s)
    assert csum_fold(s) == checksum(b, 0, len(data))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.sampled_from([6, 17]),
    st.binary(max_size=64),
)
def test_l4_checksum_matches_scapy(src, dst, proto, payload):
    from fsdp.wire.ipv4 import int_to_ip

    l4 = TCP(sport=1, dport=2) if proto == 6 else UDP(sport=1, dport=2)
    pkt = IP(bytes(IP(src=int_to_ip(src), dst=int_to_ip(dst)) / l4 / payload))
    seg = bytes(pkt.payload)
    b = buf(seg)
    # Verifying a segment with a correct checksum gives 0 ...
    assert l4_checksum(b, 0, len(seg), src, dst, proto) == 0
    # ... and recomputing with the field zeroed gives Scapy's value.
    field = 16 if proto == 6 else 6
    expected = int.from_bytes(seg[field : field + 2], "big")
    b[field : field + 2] = 0
    got = l4_checksum(b, 0, len(seg), src, dst, proto)
    # UDP transmits a computed 0 as 0xffff (RFC 768); the sum itself is the same.
    assert got == expected or (proto == 17 and got == 0 and expected == 0xFFFF)


def test_ipv4_pseudo_sum_fields():
    # src 10.0.0.1, dst 10.0.0.2, TCP, 20 bytes: 0x0a00+0x0001+0x0a00+0x0002+6+20
    assert ipv4_pseudo_sum(0x0A000001, 0x0A000002, 6, 20) == 0x0A00 + 1 + 0x0A00 + 2 + 6 + 20


def test_icmp_has_no_pseudo_header():
    data = bytes.fromhex("0800000012340001") + b"abc"
    assert l4_checksum(buf(data), 0, len(data), 0x01020304, 0x05060708, 0) == checksum(
        buf(data), 0, len(data)
    )


def test_rfc1624_section4_example():
    # RFC 1624 §4: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285; eqn. 3 gives 0x0000 (not -0 0xFFFF).
    assert csum_update16(0xDD2F, 0x5555, 0x3285) == 0x0000


def _words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=8, max_size=60).filter(lambda d: len(d) % 2 == 0), st.data())
def test_incremental_update16_equals_recompute(data, d):
    nwords = len(data) // 2
    c_at = d.draw(st.integers(0, nwords - 1))  # where the checksum field is
    w_at = d.draw(st.integers(0, nwords - 1).filter(lambda i: i != c_at))
    new = d.draw(st.integers(0, 0xFFFF))
    b = buf(data)
    b[2 * c_at : 2 * c_at + 2] = 0
    old_csum = checksum(b, 0, len(data))
    old = int(b[2 * w_at]) << 8 | int(b[2 * w_at + 1])
    b[2 * w_at], b[2 * w_at + 1] = new >> 8, new & 0xFF
    full = checksum(b, 0, len(data))
    inc = csum_update16(old_csum, old, new)
    if not any(_words(b.tobytes())):
        # All-zero data: eqn. 3 gives +0 where a full recompute gives -0 (RFC 1624 §3); never
        # the case for IPv4 (version nibble) or TCP/UDP (pseudo-header).
        assert (inc, full) == (0x0000, 0xFFFF)
    else:
        assert inc == full


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=20, max_size=20),
    st.integers(0, 2**32 - 1),
    st.sampled_from([12, 16]),
)
def test_incremental_update32_on_ipv4_address(header, new_addr, at):
    b = buf(bytes([0x45]) + header[1:])  # an IPv4-like header: never all zero
    b[10:12] = 0
    b[10:12] = list(checksum(b, 0, 20).to_bytes(2, "big"))
    old_csum = int(b[10]) << 8 | int(b[11])
    old_addr = int.from_bytes(b[at : at + 4].tobytes(), "big")
    b[at : at + 4] = list(new_addr.to_bytes(4, "big"))
    b_full = b.copy()
    b_full[10:12] = 0
    assume(True)
    assert csum_update32(old_csum, old_addr, new_addr) == checksum(b_full, 0, 20)
    b[10:12] = list(csum_update32(old_csum, old_addr, new_addr).to_bytes(2, "big"))
    assert checksum(b, 0, 20) == 0  # the updated header verifies
