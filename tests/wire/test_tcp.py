"""TCP headers and options (fsdp.wire.tcp) against Scapy's TCP and Linux's byte layouts.

Option parsing follows Linux's tcp_parse_options where the RFCs leave a choice; the tables
below spell those choices out one by one.  Option writing must produce exactly the bytes Linux
puts on the wire (tcp_options_write), written out here by hand.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from fsdp.wire.ipv4 import int_to_ip
from fsdp.wire.tcp import (
    ERR_TCP_BAD_DOFF,
    ERR_TCP_HDR_TRUNCATED,
    ERR_TCP_OPT_MALFORMED,
    ERR_TCP_TRUNCATED,
    OPTF_MD5SIG,
    OPTF_MSS,
    OPTF_SACK,
    OPTF_SACK_PERM,
    OPTF_TS,
    OPTF_WSCALE,
    TH_ACK,
    TH_CWR,
    TH_ECE,
    TH_FIN,
    TH_PSH,
    TH_RST,
    TH_SYN,
    TH_URG,
    TOPT_MSS,
    TOPT_PRESENT,
    TOPT_SACK_BLOCKS,
    TOPT_SACK_N,
    TOPT_SIZE,
    TOPT_TS_ECR,
    TOPT_TS_VAL,
    TOPT_WSCALE,
    seq_add,
    seq_diff,
    seq_geq,
    seq_gt,
    seq_leq,
    seq_lt,
    tcp_ack,
    tcp_build,
    tcp_check,
    tcp_csum,
    tcp_dport,
    tcp_flags,
    tcp_hlen,
    tcp_parse_options,
    tcp_seq,
    tcp_set_ack,
    tcp_set_checksum,
    tcp_set_csum,
    tcp_set_dport,
    tcp_set_flags,
    tcp_set_hlen,
    tcp_set_seq,
    tcp_set_sport,
    tcp_set_urp,
    tcp_set_win,
    tcp_sport,
    tcp_urp,
    tcp_verify_csum,
    tcp_win,
    tcp_write_sack_option,
    tcp_write_syn_options,
    tcp_write_ts_option,
)

from ._helpers import buf

SRC, DST = 0xC0000202, 0xC0000201  # 192.0.2.2 -> 192.0.2.1
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


def test_flag_values_match_scapy():
    expected = {
        "F": TH_FIN,
        "S": TH_SYN,
        "R": TH_RST,
        "P": TH_PSH,
        "A": TH_ACK,
        "U": TH_URG,
        "E": TH_ECE,
        "C": TH_CWR,
    }
    for letter, bit in expected.items():
        assert int(TCP(flags=letter).flags) == bit


# --- header fields --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(u16, u16, u32, u32, st.integers(0, 255), u16, u16, st.binary(max_size=30))
def test_fields_match_scapy(sport, dport, seq, ack, flags, win, urp, payload):
    raw = bytes(
        TCP(
            sport=sport,
            dport=dport,
            seq=seq,
            ack=ack,
            flags=flags,
            window=win,
            urgptr=urp,
            chksum=0x1234,
        )
        / payload
    )
    b = buf(raw)
    assert tcp_check(b, 0, len(raw)) == 0
    assert (tcp_sport(b, 0), tcp_dport(b, 0), tcp_seq(b, 0), tcp_ack(b, 0)) == (
        sport,
        dport,
        seq,
        ack,
    )
    assert (tcp_hlen(b, 0), tcp_flags(b, 0), tcp_win(b, 0), tcp_csum(b, 0), tcp_urp(b, 0)) == (
        20,
        flags,
        win,
        0x1234,
        urp,
    )


@settings(max_examples=60, deadline=None)
@given(u16, u16, u32, u32, st.integers(0, 255), u16, u16)
def test_build_and_setters_match_scapy(sport, dport, seq, ack, flags, win, urp):
    expected = bytes(
        TCP(
            sport=sport,
            dport=dport,
            seq=seq,
            ack=ack,
            flags=flags,
            window=win,
            urgptr=urp,
            chksum=0,
        )
    )
    b = buf(bytes(22))
    assert tcp_build(b, 1, sport, dport, seq, ack, flags, win, urp, 0) == 20
    assert b.tobytes()[1:21] == expected and b[0] == 0 and b[21] == 0
    c = buf(b"\xff" * 20)
    tcp_set_sport(c, 0, sport)
    tcp_set_dport(c, 0, dport)
    tcp_set_seq(c, 0, seq)
    tcp_set_ack(c, 0, ack)
    tcp_set_hlen(c, 0, 20)
    tcp_set_flags(c, 0, flags)
    tcp_set_win(c, 0, win)
    tcp_set_csum(c, 0, 0)
    tcp_set_urp(c, 0, urp)
    assert c.tobytes() == expected


def test_build_sets_data_offset_from_option_length():
    b = buf(bytes(60))
    assert tcp_build(b, 0, 1, 2, 3, 4, TH_SYN, 5, 0, 20) == 40
    assert b[12] == 0xA0 and tcp_hlen(b, 0) == 40
    assert tcp_build(b, 0, 1, 2, 3, 4, TH_SYN, 5, 0, 40) == 60
    assert b[12] == 0xF0


# --- checksum -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(u32, u32, st.binary(max_size=61), st.booleans())
def test_checksum_matches_scapy(src, dst, payload, with_opts):
    opts = [("MSS", 1460), ("NOP", None), ("WScale", 7)] if with_opts else []
    pkt = IP(
        bytes(
            IP(src=int_to_ip(src), dst=int_to_ip(dst))
            / TCP(sport=1234, dport=80, flags="PA", options=opts)
            / payload
        )
    )
    seg = bytes(pkt[TCP])
    b = buf(seg)
    n = len(seg)
    assert tcp_verify_csum(b, 0, n, src, dst)
    assert not tcp_verify_csum(b, 0, n, src ^ 1, dst)  # the pseudo-header counts
    b[16:18] = 0
    assert tcp_set_checksum(b, 0, n, src, dst) == pkt[TCP].chksum
    assert b.tobytes() == seg


def test_verify_rejects_flipped_payload_bit():
    seg = bytes(IP(bytes(IP(src="192.0.2.2", dst="192.0.2.1") / TCP() / b"data"))[TCP])
    b = buf(seg)
    b[-1] ^= 0x01
    assert not tcp_verify_csum(b, 0, len(seg), SRC, DST)


# --- tcp_check ------------------------------------------------------------------------------

HDR = bytes(TCP(sport=1, dport=2))  # data offset 5
SYN = bytes(TCP(flags="S", options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]))  # 28


def _doff(raw: bytes, doff: int) -> bytes:
    return raw[:12] + bytes([(doff << 4) | (raw[12] & 0x0F)]) + raw[13:]


CHECK_CASES = [
    # (description, bytes, n (None: len), expected)
    ("minimal header", HDR, None, 0),
    ("header with payload", HDR + b"abc", None, 0),
    ("header with options", SYN, None, 0),
    ("19 bytes", HDR[:19], None, ERR_TCP_TRUNCATED),
    ("empty", b"", None, ERR_TCP_TRUNCATED),
    ("data offset 4", _doff(HDR, 4), None, ERR_TCP_BAD_DOFF),
    ("data offset 0", _doff(HDR, 0), None, ERR_TCP_BAD_DOFF),
    ("data offset 7 but 24 bytes", _doff(SYN, 7)[:24], None, ERR_TCP_HDR_TRUNCATED),
    ("data offset 15 in 20 bytes", _doff(HDR, 15), None, ERR_TCP_HDR_TRUNCATED),
    ("options cut by the IP total length", SYN, 27, ERR_TCP_HDR_TRUNCATED),
    ("data offset 15, 60 bytes", _doff(HDR, 15) + bytes(40), None, 0),
    ("reserved bits set are ignored", HDR[:12] + b"\x5f" + HDR[13:], None, 0),
]


@pytest.mark.parametrize("desc,data,n,expected", CHECK_CASES, ids=[c[0] for c in CHECK_CASES])
def test_check_table(desc, data, n, expected):
    n = len(data) if n is None else n
    assert tcp_check(buf(data), 0, n) == expected


# --- option parsing -------------------------------------------------------------------------


def parse(opt_bytes: bytes, syn: bool, off: int = 0):
    """Run tcp_parse_options over a header carrying ``opt_bytes``; returns (err, dict)."""
    assert len(opt_bytes) % 4 == 0 and len(opt_bytes) <= 40
    raw = bytes(off) + _doff(HDR, 5 + len(opt_bytes) // 4) + opt_bytes
    b = buf(raw)
    assert tcp_check(b, off, len(raw) - off) == 0
    opts = np.full(TOPT_SIZE, -7, dtype=np.int64)  # garbage: the parser must clear it
    err = tcp_parse_options(b, off, tcp_hlen(b, off), syn, opts)
    return err, decode(opts)


def decode(opts) -> dict:
    present = int(opts[TOPT_PRESENT])
    d = {}
    if present & OPTF_MSS:
        d["mss"] = int(opts[TOPT_MSS])
    if present & OPTF_WSCALE:
        d["wscale"] = int(opts[TOPT_WSCALE])
    if present & OPTF_SACK_PERM:
        d["sack_perm"] = True
    if present & OPTF_TS:
        d["ts"] = (int(opts[TOPT_TS_VAL]), int(opts[TOPT_TS_ECR]))
    if present & OPTF_SACK:
        n = int(opts[TOPT_SACK_N])
        blocks = [int(x) for x in opts[TOPT_SACK_BLOCKS : TOPT_SACK_BLOCKS + 2 * n]]
        d["sack"] = list(zip(blocks[::2], blocks[1::2], strict=True))
    if present & OPTF_MD5SIG:
        d["md5"] = True
    if not present & (OPTF_MSS | OPTF_WSCALE | OPTF_TS | OPTF_SACK):
        # absent options leave their slots at 0
        assert int(opts[TOPT_MSS]) == int(opts[TOPT_WSCALE]) == int(opts[TOPT_SACK_N]) == 0
    return d


h = bytes.fromhex
TS = h("0101080a0000000a00000014")  # NOP NOP TS val=10 ecr=20
OPT_CASES = [
    # (description, SYN?, option bytes, expected error, expected options)
    ("no options", True, b"", 0, {}),
    (
        "Linux SYN: mss,sackOK,TS,nop,wscale",
        True,
        h("020405b4 0402080a 00000001 00000000 01030307"),
        0,
        {"mss": 1460, "sack_perm": True, "ts": (1, 0), "wscale": 7},
    ),
    (
        "Linux SYN without TS: mss,nop,nop,sackOK,nop,wscale",
        True,
        h("020405b4 01010402 01030307"),
        0,
        {"mss": 1460, "sack_perm": True, "wscale": 7},
    ),
    ("NOP NOP TS on an ACK", False, TS, 0, {"ts": (10, 20)}),
    ("TS on a SYN", True, TS, 0, {"ts": (10, 20)}),
    (
        "TS with top bits set",
        False,
        h("0101080a ffffffff 80000000"),
        0,
        {"ts": (0xFFFFFFFF, 0x80000000)},
    ),
    # RFC 9293 §3.2 / RFC 7323 §2.2 / RFC 2018 §2: SYN-only options are ignored elsewhere
    ("MSS on a non-SYN is ignored", False, h("020405b4"), 0, {}),
    ("window scale on a non-SYN is ignored", False, h("01030307"), 0, {}),
    ("SACK-permitted on a non-SYN is ignored", False, h("01010402"), 0, {}),
    # RFC 7323 §2.3: shift > 14 is used as 14
    ("window scale 14 kept", True, h("0103030e"), 0, {"wscale": 14}),
    ("window scale 15 clamped to 14", True, h("0103030f"), 0, {"wscale": 14}),
    ("window scale 255 clamped to 14", True, h("010303ff"), 0, {"wscale": 14}),
    ("window scale 0", True, h("01030300"), 0, {"wscale": 0}),
    ("MSS 0 is ignored (as Linux)", True, h("02040000"), 0, {}),
    ("MSS 65535", True, h("0204ffff"), 0, {"mss": 65535}),
    # wrong-length known options are skipped by their length, parsing goes on (as Linux)
    (
        "MSS with length 3 skipped, TS after it parsed",
        True,
        h("020305 01 080a0000000a00000014 0000"),
        0,
        {"ts": (10, 20)},
    ),
    ("MSS with length 6 skipped", True, h("020605b40000 0101"), 0, {}),
    ("window scale with length 4 skipped", True, h("03040700"), 0, {}),
    ("SACK-permitted with length 3 skipped", True, h("040300 01"), 0, {}),
    ("TS with length 8 skipped", False, h("0808000000010000"), 0, {}),
    ("TS with length 12 skipped", False, h("080c 000000010000000200000000") + h("0000"), 0, {}),
    ("MD5 signature flagged", False, h("0101 1312") + bytes(16), 0, {"md5": True}),
    ("MD5 with wrong length not flagged", False, h("1304 0000"), 0, {}),
    # unknown kinds are skipped by their length (RFC 9293 §3.1)
    ("unknown kind 254 skipped", True, h("fe04aabb 020405b4"), 0, {"mss": 1460}),
    ("unknown kind with length 2", True, h("1e02 0101 020405b4"), 0, {"mss": 1460}),
    ("TFO cookie (34) skipped", True, h("220a 0102030405060708 0000"), 0, {}),
    # EOL ends the list (RFC 9293 §3.1)
    ("EOL first: nothing after it is read", True, h("00000000 020405b4"), 0, {}),
    ("EOL after MSS", True, h("020405b4 00030307"), 0, {"mss": 1460}),
    ("NOPs only", True, h("01010101"), 0, {}),
    # malformed: parsing stops, what came before is kept (as Linux)
    ("kind in the last byte, no length", True, h("01010102"), ERR_TCP_OPT_MALFORMED, {}),
    (
        "MSS then kind with no length byte",
        True,
        h("020405b4 01010108"),
        ERR_TCP_OPT_MALFORMED,
        {"mss": 1460},
    ),
    ("length 0 (silly option)", True, h("020405b4 fe000000"), ERR_TCP_OPT_MALFORMED, {"mss": 1460}),
    ("length 1 (silly option)", True, h("020405b4 05010000"), ERR_TCP_OPT_MALFORMED, {"mss": 1460}),
    ("TS length runs past the header", False, h("01010101 0101080a"), ERR_TCP_OPT_MALFORMED, {}),
    ("MSS length runs past the header", True, h("01010204"), ERR_TCP_OPT_MALFORMED, {}),
    (
        "malformed option stops: later MSS not read",
        True,
        h("fe00 0000 020405b4"),
        ERR_TCP_OPT_MALFORMED,
        {},
    ),
    ("unknown length 40 in a 40-byte area, first byte", True, h("fe28") + bytes(38), 0, {}),
    (
        "unknown length 41 runs past a 40-byte area",
        True,
        h("fe29") + bytes(38),
        ERR_TCP_OPT_MALFORMED,
        {},
    ),
    # SACK (RFC 2018 §3): 2 + 8k bytes, k >= 1, at most 4 blocks
    ("SACK one block", False, h("0101050a 00000001 00000002"), 0, {"sack": [(1, 2)]}),
    (
        "SACK two blocks",
        False,
        h("01010512 00000001 00000002 00000005 00000009"),
        0,
        {"sack": [(1, 2), (5, 9)]},
    ),
    (
        "SACK four blocks (34 bytes)",
        False,
        h("01010522") + b"".join(i.to_bytes(4, "big") for i in range(1, 9)),
        0,
        {"sack": [(1, 2), (3, 4), (5, 6), (7, 8)]},
    ),
    (
        "TS then SACK three blocks (40 bytes)",
        False,
        TS + h("0101051a") + b"".join(i.to_bytes(4, "big") for i in range(1, 7)),
        0,
        {"ts": (10, 20), "sack": [(1, 2), (3, 4), (5, 6)]},
    ),
    (
        "SACK on a SYN is still reported (engine decides)",
        True,
        h("0101050a 00000001 00000002"),
        0,
        {"sack": [(1, 2)]},
    ),
    ("SACK with no blocks (length 2) ignored", False, h("0502 0101"), 0, {}),
    ("SACK length 9 ignored", False, h("0509 00000000000000 010101"), 0, {}),
    ("SACK length 14 (not 2+8k) ignored", False, h("050e") + bytes(12) + h("0101"), 0, {}),
    ("SACK top-bit edges", False, h("0101050a ffffffff 00000000"), 0, {"sack": [(0xFFFFFFFF, 0)]}),
    # repeated options: the last one wins (as Linux)
    ("MSS twice: the last wins", True, h("020405b4 02040218"), 0, {"mss": 536}),
    (
        "valid MSS, then wrong-length MSS: the valid one stays",
        True,
        h("020405b4 020300 01"),
        0,
        {"mss": 1460},
    ),
    ("window scale twice: the last wins", True, h("01030307 01030302"), 0, {"wscale": 2}),
    (
        "SACK twice: the last wins",
        False,
        h("0101050a 00000001 00000002 0101050a 00000003 00000004"),
        0,
        {"sack": [(3, 4)]},
    ),
    (
        "two-block SACK then one-block SACK",
        False,
        h("01010512 00000001 00000002 00000005 00000009 0101050a 00000003 00000004"),
        0,
        {"sack": [(3, 4)]},
    ),
]


@pytest.mark.parametrize("desc,syn,data,err,expected", OPT_CASES, ids=[c[0] for c in OPT_CASES])
def test_parse_options_table(desc, syn, data, err, expected):
    assert parse(data, syn) == (err, expected)
    assert parse(data, syn, off=3) == (err, expected)  # offsets are relative to the header


def test_parse_leaves_no_stale_sack_blocks():
    b = buf(_doff(HDR, 8) + h("01010512 00000001 00000002 00000005 00000009"))
    opts = np.zeros(TOPT_SIZE, dtype=np.int64)
    tcp_parse_options(b, 0, 32, False, opts)
    c = buf(_doff(HDR, 6) + h("01010101"))
    tcp_parse_options(c, 0, 24, False, opts)
    assert not opts.any()


# Scapy as a second opinion: random well-formed option lists, built and parsed by Scapy; the
# expected result applies Linux's rules to Scapy's parse (a naive reference, stumpy style).
scapy_option = st.one_of(
    st.tuples(st.just("MSS"), u16),
    st.tuples(st.just("WScale"), st.integers(0, 255)),
    st.tuples(st.just("SAckOK"), st.just(b"")),
    st.tuples(st.just("Timestamp"), st.tuples(u32, u32)),
    st.tuples(
        st.just("SAck"),
        st.lists(u32, min_size=2, max_size=8).filter(lambda v: len(v) % 2 == 0).map(tuple),
    ),
    st.tuples(st.just("NOP"), st.none()),
    st.tuples(st.just("MD5"), st.just(bytes(16))),
)


def _size(o):
    return {"MSS": 4, "WScale": 3, "SAckOK": 2, "Timestamp": 10, "NOP": 1, "MD5": 18}.get(
        o[0], 2 + 4 * len(o[1]) if o[0] == "SAck" else 0
    )


def linux_reference(scapy_opts, syn: bool) -> dict:
    d = {}
    for name, value in scapy_opts:
        if name == "EOL":
            break
        if name == "MSS" and syn and value:
            d["mss"] = value
        elif name == "WScale" and syn:
            d["wscale"] = min(value, 14)
        elif name == "SAckOK" and syn:
            d["sack_perm"] = True
        elif name == "Timestamp":
            d["ts"] = tuple(value)
        elif name == "SAck" and value:
            d["sack"] = list(zip(value[::2], value[1::2], strict=True))
        elif name == "MD5":
            d["md5"] = True
    return d


@settings(max_examples=150, deadline=None)
@given(st.lists(scapy_option, max_size=8), st.booleans())
def test_parse_options_agrees_with_scapy(options, syn):
    while sum(_size(o) for o in options) > 40:
        options = options[:-1]
    raw = bytes(TCP(flags="S" if syn else "A", options=options))
    parsed = TCP(raw).options  # Scapy's reading of the same bytes
    b = buf(raw)
    assert tcp_check(b, 0, len(raw)) == 0
    opts = np.zeros(TOPT_SIZE, dtype=np.int64)
    err = tcp_parse_options(b, 0, tcp_hlen(b, 0), syn, opts)
    assert err == 0
    assert decode(opts) == linux_reference(parsed, syn)


# --- option writing: Linux's layouts ---------------------------------------------------------

SYN_LAYOUTS = [
    # (description, mss, wscale, sack_perm, ts_on, expected bytes as Linux sends them)
    (
        "mss,sackOK,TS,nop,wscale (Linux default)",
        1460,
        7,
        True,
        True,
        "020405b4 0402080a 01020304 00000000 01030307",
    ),
    ("mss,sackOK,TS", 1460, -1, True, True, "020405b4 0402080a 01020304 00000000"),
    (
        "mss,nop,nop,TS,nop,wscale",
        1460,
        7,
        False,
        True,
        "020405b4 0101080a 01020304 00000000 01030307",
    ),
    ("mss,nop,nop,TS", 1460, -1, False, True, "020405b4 0101080a 01020304 00000000"),
    ("mss,nop,nop,sackOK,nop,wscale", 1460, 7, True, False, "020405b4 01010402 01030307"),
    ("mss,nop,nop,sackOK", 1460, -1, True, False, "020405b4 01010402"),
    ("mss,nop,wscale", 1460, 7, False, False, "020405b4 01030307"),
    ("mss", 1460, -1, False, False, "020405b4"),
    ("mss 536, wscale 0", 536, 0, False, False, "02040218 01030300"),
    (
        "mss 65495 (loopback), wscale 14",
        65495,
        14,
        True,
        True,
        "0204ffd7 0402080a 01020304 00000000 0103030e",
    ),
    ("no mss: sackOK,TS,nop,wscale", 0, 7, True, True, "0402080a 01020304 00000000 01030307"),
    ("nothing", 0, -1, False, False, ""),
]


@pytest.mark.parametrize(
    "desc,mss,ws,sack,ts,expected", SYN_LAYOUTS, ids=[c[0] for c in SYN_LAYOUTS]
)
def test_syn_options_linux_layout(desc, mss, ws, sack, ts, expected):
    expected = h(expected)
    b = buf(b"\xee" * 64)
    n = tcp_write_syn_options(b, 2, mss, ws, sack, 0x01020304, 0, ts)
    assert n == len(expected) and n % 4 == 0
    assert b.tobytes()[22 : 22 + n] == expected
    assert b[:22].tobytes() == b"\xee" * 22 and b[22 + n :].tobytes() == b"\xee" * (42 - n)
    # Build the SYN around it: Scapy reads back what was written, and fsdp's parser agrees.
    hlen = tcp_build(b, 2, 40000, 80, 1, 0, TH_SYN, 65535, 0, n)
    seg = b.tobytes()[2 : 2 + hlen]
    assert TCP(seg).dataofs * 4 == hlen
    opts = np.zeros(TOPT_SIZE, dtype=np.int64)
    assert tcp_parse_options(b, 2, hlen, True, opts) == 0
    want = {}
    if mss:
        want["mss"] = mss
    if ws >= 0:
        want["wscale"] = ws
    if sack:
        want["sack_perm"] = True
    if ts:
        want["ts"] = (0x01020304, 0)
    assert decode(opts) == want == linux_reference(TCP(seg).options, True)


def test_syn_ack_echoes_tsecr():
    b = buf(bytes(60))
    n = tcp_write_syn_options(b, 0, 1460, 7, True, 0xAABBCCDD, 0x11223344, True)
    assert b.tobytes()[20 : 20 + n] == h("020405b4 0402080a aabbccdd 11223344 01030307")


def test_ts_option_layout():
    b = buf(bytes(32))
    assert tcp_write_ts_option(b, 0, 0, 0xDEADBEEF, 7) == 12
    assert b.tobytes()[20:32] == h("0101080a deadbeef 00000007")
    assert TCP(b.tobytes()[:12] + b"\x80" + b.tobytes()[13:]).options == [
        ("NOP", None),
        ("NOP", None),
        ("Timestamp", (0xDEADBEEF, 7)),
    ]


SACK_LAYOUTS = [
    # (description, pos, blocks, n_blocks, expected bytes, new pos)
    ("one block", 0, [1, 2], 1, "0101050a 00000001 00000002", 12),
    (
        "four blocks fill 36 bytes",
        0,
        list(range(1, 9)),
        4,
        "01010522" + "".join(f"{i:08x}" for i in range(1, 9)),
        36,
    ),
    (
        "after TS: three blocks",
        12,
        list(range(1, 9)),
        3,
        "0101051a" + "".join(f"{i:08x}" for i in range(1, 7)),
        40,
    ),
    (
        "after TS: a fourth block does not fit",
        12,
        list(range(1, 9)),
        4,
        "0101051a" + "".join(f"{i:08x}" for i in range(1, 7)),
        40,
    ),
    (
        "more than four asked",
        0,
        list(range(1, 11)),
        5,
        "01010522" + "".join(f"{i:08x}" for i in range(1, 9)),
        36,
    ),
    ("zero blocks: nothing written", 12, [1, 2], 0, "", 12),
    ("no room at 36", 36, [1, 2], 1, "", 36),
]


@pytest.mark.parametrize(
    "desc,pos,blocks,nb,expected,new_pos", SACK_LAYOUTS, ids=[c[0] for c in SACK_LAYOUTS]
)
def test_sack_option_layout(desc, pos, blocks, nb, expected, new_pos):
    b = buf(b"\xee" * 61)
    arr = np.array(blocks, dtype=np.int64)
    assert tcp_write_sack_option(b, 0, pos, arr, nb) == new_pos
    assert b.tobytes()[20 + pos : 20 + new_pos] == h(expected)
    assert b.tobytes()[20 + new_pos :] == b"\xee" * (41 - new_pos)


def test_ack_with_ts_and_sack_reads_back_in_scapy():
    b = buf(bytes(60))
    pos = tcp_write_ts_option(b, 0, 0, 100, 200)
    blocks = np.array([1000, 2000, 3000, 4000], dtype=np.int64)
    pos = tcp_write_sack_option(b, 0, pos, blocks, 2)
    assert pos == 32
    hlen = tcp_build(b, 0, 80, 40000, 5, 999, TH_ACK, 512, 0, pos)
    seg = b.tobytes()[:hlen]
    assert [o for o in TCP(seg).options if o[0] != "NOP"] == [
        ("Timestamp", (100, 200)),
        ("SAck", (1000, 2000, 3000, 4000)),
    ]
    err, d = 0, None
    opts = np.zeros(TOPT_SIZE, dtype=np.int64)
    err = tcp_parse_options(b, 0, hlen, False, opts)
    d = decode(opts)
    assert err == 0 and d == {"ts": (100, 200), "sack": [(1000, 2000), (3000, 4000)]}


# --- sequence arithmetic --------------------------------------------------------------------


def s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


SEQ_CASES = [
    # (description, a, b, a<b, a>b)
    ("equal", 5, 5, False, False),
    ("plain less", 1, 2, True, False),
    ("plain greater", 2, 1, False, True),
    ("wrap: 0xffffffff < 0", 0xFFFFFFFF, 0, True, False),
    ("wrap: 0 > 0xfffffff0", 0, 0xFFFFFFF0, False, True),
    ("2^31 - 1 ahead", 0x7FFFFFFF, 0, False, True),
    # exactly 2^31 apart is ambiguous (RFC 1982 §3.2); Linux's before()/after() say both
    ("2^31 apart: before() and after() both true", 0, 0x80000000, True, True),
]


@pytest.mark.parametrize("desc,a,b,lt,gt", SEQ_CASES, ids=[c[0] for c in SEQ_CASES])
def test_seq_table(desc, a, b, lt, gt):
    assert seq_lt(a, b) == lt and seq_gt(a, b) == gt
    assert seq_geq(a, b) == (not lt) and seq_leq(a, b) == (not gt)
    assert seq_diff(a, b) == s32(a - b)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(u32, st.sampled_from([0, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])),
    u32,
    st.sampled_from(["int", "uint64", "int64"]),
)
def test_seq_same_jitted_interpreted_and_reference(a, b, kind):
    conv = {"int": int, "uint64": np.uint64, "int64": np.int64}[kind]
    ca, cb = conv(a), conv(b)
    ref = {
        "lt": s32(a - b) < 0,
        "gt": s32(b - a) < 0,
        "leq": not s32(b - a) < 0,
        "geq": not s32(a - b) < 0,
        "diff": s32(a - b),
        "add": (a + b) & 0xFFFFFFFF,
    }
    for name, fn in [
        ("lt", seq_lt),
        ("gt", seq_gt),
        ("leq", seq_leq),
        ("geq", seq_geq),
        ("diff", seq_diff),
        ("add", seq_add),
    ]:
        assert fn(ca, cb) == ref[name], name
        assert fn.py_func(ca, cb) == ref[name], name
    assert seq_lt(a, b) == seq_gt(b, a)  # after(a, b) == before(b, a), as Linux


def test_seq_helpers_mix_accessor_results_with_ints():
    # tcp_seq returns int64; mixing it with Python ints and uint64 must not become float64.
    b = buf(bytes(HDR[:4]) + h("fffffff0") + HDR[8:])
    s = tcp_seq(b, 0)
    assert seq_lt(s, 5) and seq_gt(seq_add(s, 0x20), s) and seq_diff(seq_add(s, 0x20), s) == 0x20
    assert seq_lt(np.uint64(s), np.int64(5))
