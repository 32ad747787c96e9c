"""ICMP (fsdp.wire.icmp) against Scapy's ICMP: echo fields and checksums."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP

from fsdp.wire.icmp import (
    ERR_ICMP_BAD_CSUM,
    ERR_ICMP_TRUNCATED,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_HLEN,
    ICMP_UNREACH_NEEDFRAG,
    icmp_build,
    icmp_check,
    icmp_code,
    icmp_id,
    icmp_seq,
    icmp_type,
)

from ._helpers import buf


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=101))
def test_echo_parse_and_build_match_scapy(ident, seq, payload):
    raw = bytes(ICMP(type=ICMP_ECHO_REQUEST, id=ident, seq=seq) / payload)
    b = buf(raw)
    assert icmp_check(b, 0, len(raw), True) == 0
    assert (icmp_type(b, 0), icmp_code(b, 0), icmp_id(b, 0), icmp_seq(b, 0)) == (8, 0, ident, seq)
    # The reply fsdp builds: same id/seq/data, type 0; checksum must equal Scapy's.
    out = buf(bytes(ICMP_HLEN) + payload)
    n = len(raw)
    assert icmp_build(out, 0, ICMP_ECHO_REPLY, 0, (ident << 16) | seq, n) == n
    assert out.tobytes() == bytes(ICMP(type=ICMP_ECHO_REPLY, id=ident, seq=seq) / payload)


def test_frag_needed_matches_scapy():
    quote = bytes(IP(src="192.0.2.1", dst="198.51.100.7", flags="DF") / TCP())[:28]
    expected = bytes(ICMP(type=3, code=4, nexthopmtu=1400) / quote)
    out = buf(bytes(ICMP_HLEN) + quote)
    icmp_build(out, 0, ICMP_DEST_UNREACH, ICMP_UNREACH_NEEDFRAG, 1400, len(expected))
    assert out.tobytes() == expected


GOOD = bytes(ICMP(type=8, id=0x1234, seq=1) / b"hello")

CHECK_CASES = [
    # (description, bytes, verify_csum, expected)
    ("valid echo request", GOOD, True, 0),
    ("header only", bytes(ICMP(type=8)), True, 0),
    ("odd-length payload", bytes(ICMP(type=8) / b"abc"), True, 0),
    ("7 bytes", GOOD[:7], True, ERR_ICMP_TRUNCATED),
    ("empty", b"", True, ERR_ICMP_TRUNCATED),
    ("bad checksum", GOOD[:2] + b"\x00\x00" + GOOD[4:], True, ERR_ICMP_BAD_CSUM),
    ("bad checksum, not verified", GOOD[:2] + b"\x00\x00" + GOOD[4:], False, 0),
    ("payload cut (checksum no longer matches)", GOOD[:-1], True, ERR_ICMP_BAD_CSUM),
]


@pytest.mark.parametrize("desc,data,verify,expected", CHECK_CASES, ids=[c[0] for c in CHECK_CASES])
def test_check_table(desc, data, verify, expected):
    assert icmp_check(buf(data), 0, len(data), verify) == expected
