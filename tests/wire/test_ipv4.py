"""IPv4 headers (fsdp.wire.ipv4) against Scapy's IP: fields, options, fragments, and every
way ip_check rejects a header."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, IPOption_NOP, IPOption_Router_Alert, fragment
from scapy.layers.l2 import Ether

from fsdp.wire.ipv4 import (
    ERR_IP_BAD_CSUM,
    ERR_IP_BAD_HLEN,
    ERR_IP_BAD_TOTAL_LEN,
    ERR_IP_TRUNCATED,
    ERR_IP_VERSION,
    IP_FLAG_DF,
    IP_FLAG_MF,
    IP_FRAG_OFFSET_MASK,
    IP_HLEN_MIN,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    int_to_ip,
    ip_build,
    ip_check,
    ip_csum,
    ip_dst,
    ip_frag,
    ip_hlen,
    ip_id,
    ip_is_fragment,
    ip_proto,
    ip_src,
    ip_to_int,
    ip_total_len,
    ip_ttl,
    ip_version,
)

from ._helpers import buf

ips = st.integers(0, 2**32 - 1)


@settings(max_examples=60, deadline=None)
@given(
    ips,
    ips,
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=40),
)
def test_fields_match_scapy(src, dst, ident, ttl, tos, proto, payload):
    raw = bytes(
        IP(
            src=int_to_ip(src),
            dst=int_to_ip(dst),
            id=ident,
            ttl=ttl,
            tos=tos,
            proto=proto,
            flags="DF",
        )
        / payload
    )
    p = IP(raw)
    b = buf(raw)
    assert ip_check(b, 0, len(raw), True) == 0
    assert ip_version(b, 0) == 4 and ip_hlen(b, 0) == 20
    assert ip_total_len(b, 0) == p.len == len(raw)
    assert (ip_id(b, 0), ip_ttl(b, 0), ip_proto(b, 0)) == (ident, ttl, proto)
    assert (ip_src(b, 0), ip_dst(b, 0), ip_csum(b, 0)) == (src, dst, p.chksum)
    assert ip_frag(b, 0) == IP_FLAG_DF and not ip_is_fragment(b, 0)


@settings(max_examples=60, deadline=None)
@given(
    ips,
    ips,
    st.integers(0, 0xFFFF),
    st.integers(1, 255),
    st.integers(0, 255),
    st.sampled_from([IPPROTO_ICMP, IPPROTO_TCP, 17]),
    st.booleans(),
    st.integers(0, 1480),
)
def test_build_matches_scapy(src, dst, ident, ttl, tos, proto, df, payload_len):
    b = buf(bytes(IP_HLEN_MIN))
    assert ip_build(b, 0, src, dst, proto, payload_len, ident, ttl, tos, df) == IP_HLEN_MIN
    expected = bytes(
        IP(
            src=int_to_ip(src),
            dst=int_to_ip(dst),
            id=ident,
            ttl=ttl,
            tos=tos,
            proto=proto,
            flags="DF" if df else 0,
            len=20 + payload_len,
        )
    )
    assert b.tobytes() == expected


def test_header_with_options():
    raw = bytes(IP(src="192.0.2.2", dst="192.0.2.1", options=[IPOption_Router_Alert()]) / ICMP())
    b = buf(raw)
    assert ip_hlen(b, 0) == 24 and ip_check(b, 0, len(raw), True) == 0
    assert ip_total_len(b, 0) == 24 + 8


def test_header_with_40_bytes_of_options():
    raw = bytes(IP(options=[IPOption_NOP()] * 40) / ICMP())
    b = buf(raw)
    assert ip_hlen(b, 0) == 60 and ip_check(b, 0, len(raw), True) == 0


def test_fragments_from_scapy():
    frags = fragment(IP(src="192.0.2.2", dst="192.0.2.1") / ICMP() / (b"x" * 100), fragsize=32)
    assert len(frags) > 2
    for i, f in enumerate(frags):
        raw = bytes(f)
        b = buf(raw)
        assert ip_check(b, 0, len(raw), True) == 0
        assert ip_is_fragment(b, 0)
        word = ip_frag(b, 0)
        assert (word & IP_FRAG_OFFSET_MASK) == f.frag
        assert bool(word & IP_FLAG_MF) == (i < len(frags) - 1)
    assert ip_frag(buf(bytes(frags[0])), 0) & IP_FRAG_OFFSET_MASK == 0  # first: offset 0, MF


def test_ethernet_padding_is_allowed():
    # A 28-byte IP/ICMP datagram travels in a 60-byte frame: 18 bytes of padding after it.
    frame = bytes(Ether() / IP(src="192.0.2.2", dst="192.0.2.1") / ICMP())
    frame += bytes(60 - len(frame))
    b = buf(frame)
    assert ip_check(b, 14, len(frame) - 14, True) == 0
    assert ip_total_len(b, 14) == 28  # the caller trims to this


def _ip(**kw) -> bytes:
    return bytes(IP(src="192.0.2.2", dst="192.0.2.1", **kw) / TCP())


GOOD = _ip()
OPT = _ip(options=[IPOption_Router_Alert()])  # IHL 6, 44 bytes


def _with_csum(raw: bytes) -> bytes:
    """Recompute the header checksum of patched bytes so only the intended fault remains."""
    from fsdp.wire.checksum import checksum

    hlen = min((raw[0] & 0x0F) * 4, len(raw))
    b = buf(raw[:10] + b"\x00\x00" + raw[12:])
    c = checksum(b, 0, max(hlen, 20))
    return raw[:10] + c.to_bytes(2, "big") + raw[12:]


CHECK_CASES = [
    # (description, bytes, n (None: all), verify_csum, expected)
    ("valid", GOOD, None, True, 0),
    ("valid with options", OPT, None, True, 0),
    ("bad checksum", GOOD[:10] + b"\x12\x34" + GOOD[12:], None, True, ERR_IP_BAD_CSUM),
    ("bad checksum, NIC verified", GOOD[:10] + b"\x12\x34" + GOOD[12:], None, False, 0),
    ("19 bytes", GOOD[:19], None, True, ERR_IP_TRUNCATED),
    ("empty", b"", None, True, ERR_IP_TRUNCATED),
    ("version 6", _with_csum(b"\x65" + GOOD[1:]), None, True, ERR_IP_VERSION),
    ("version 0", _with_csum(b"\x05" + GOOD[1:]), None, True, ERR_IP_VERSION),
    ("IHL 4", _with_csum(b"\x44" + GOOD[1:]), None, True, ERR_IP_BAD_HLEN),
    ("IHL 0", _with_csum(b"\x40" + GOOD[1:]), None, True, ERR_IP_BAD_HLEN),
    (
        "total length > available",
        _with_csum(GOOD[:2] + b"\x00\x64" + GOOD[4:]),
        None,
        True,
        ERR_IP_TRUNCATED,
    ),
    ("total length cut by one byte", GOOD, len(GOOD) - 1, True, ERR_IP_TRUNCATED),
    ("IHL 6 but only 22 bytes (header cut)", OPT, 22, True, ERR_IP_TRUNCATED),
    (
        "total length 20 < IHL 6",
        _with_csum(OPT[:2] + b"\x00\x14" + OPT[4:]),
        None,
        True,
        ERR_IP_BAD_TOTAL_LEN,
    ),
    # total < 20 is reported as a bad header length (the header cannot fit the datagram)
    ("total length 19", _with_csum(GOOD[:2] + b"\x00\x13" + GOOD[4:]), None, True, ERR_IP_BAD_HLEN),
    ("total length 0", _with_csum(GOOD[:2] + b"\x00\x00" + GOOD[4:]), None, True, ERR_IP_BAD_HLEN),
    (
        "IHL 15 in a 40-byte datagram",
        _with_csum(b"\x4f" + GOOD[1:]),
        None,
        True,
        ERR_IP_BAD_TOTAL_LEN,
    ),
]


@pytest.mark.parametrize(
    "desc,data,n,verify,expected", CHECK_CASES, ids=[c[0] for c in CHECK_CASES]
)
def test_check_table(desc, data, n, verify, expected):
    n = len(data) if n is None else n
    assert ip_check(buf(data), 0, n, verify) == expected


def test_scapy_agrees_bad_checksum_is_bad():
    raw = GOOD[:10] + b"\x12\x34" + GOOD[12:]
    assert IP(raw).chksum != IP(bytes(IP(raw[:10] + b"\x00\x00" + raw[12:]))).chksum


@pytest.mark.parametrize(
    "text,value", [("0.0.0.0", 0), ("192.0.2.1", 0xC0000201), ("255.255.255.255", 0xFFFFFFFF)]
)
def test_address_conversions(text, value):
    assert ip_to_int(text) == value and int_to_ip(value) == text


@pytest.mark.parametrize("bad", ["", "1.2.3", "256.0.0.1", "::1"])
def test_ip_to_int_rejects(bad):
    with pytest.raises(ValueError):
        ip_to_int(bad)
