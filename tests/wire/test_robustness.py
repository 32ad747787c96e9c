"""Robustness of every wire check and accessor on truncated and random bytes.

No check or accessor may raise or read outside ``buf[off:off+n]``, and each check returns the
error its docstring documents.  Buffers are exactly ``off + n`` bytes long, and a subset runs
interpreted (``_helpers.interpreted``: the jitted function and its jitted callees as plain
Python), where a read past the end raises IndexError; compiled code would read it silently.

Expected results come from small pure-Python references of each check written from the RFC
rules (stumpy style), not from the code under test.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether

from fsdp.wire import arp, checksum, ethernet, icmp, ipv4, tcp

from ._helpers import BYTEORDER_INTERPRETED_OK, EXISTING_INTERPRETED_OK, buf, interpreted

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def u16(d: bytes, i: int) -> int:
    return int.from_bytes(d[i : i + 2], "big")


def rfc1071(d: bytes) -> int:
    if len(d) % 2:
        d += b"\x00"
    s = sum(u16(d, i) for i in range(0, len(d), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# --- pure-Python references -------------------------------------------------------------------


def ref_eth_check(d: bytes) -> int:
    return 0 if len(d) >= 14 else ethernet.ERR_ETH_TRUNCATED


def ref_arp_check(d: bytes) -> int:
    if len(d) < 28:
        return arp.ERR_ARP_TRUNCATED
    if u16(d, 0) != 1 or u16(d, 2) != 0x0800 or d[4] != 6 or d[5] != 4:
        return arp.ERR_ARP_UNSUPPORTED
    return 0 if u16(d, 6) in (1, 2) else arp.ERR_ARP_BAD_OPER


def ref_ip_check(d: bytes, verify: bool) -> int:
    if len(d) < 20:
        return ipv4.ERR_IP_TRUNCATED
    if d[0] >> 4 != 4:
        return ipv4.ERR_IP_VERSION
    hlen = (d[0] & 15) * 4
    if hlen < 20:
        return ipv4.ERR_IP_BAD_HLEN
    total = u16(d, 2)
    if total < hlen:
        return ipv4.ERR_IP_BAD_TOTAL_LEN if total >= 20 else ipv4.ERR_IP_BAD_HLEN
    if hlen > len(d) or total > len(d):
        return ipv4.ERR_IP_TRUNCATED
    if verify and rfc1071(d[:hlen]) != 0:
        return ipv4.ERR_IP_BAD_CSUM
    return 0


def ref_icmp_check(d: bytes, verify: bool) -> int:
    if len(d) < 8:
        return icmp.ERR_ICMP_TRUNCATED
    return icmp.ERR_ICMP_BAD_CSUM if verify and rfc1071(d) != 0 else 0


def ref_tcp_check(d: bytes) -> int:
    if len(d) < 20:
        return tcp.ERR_TCP_TRUNCATED
    if d[12] >> 4 < 5:
        return tcp.ERR_TCP_BAD_DOFF
    return tcp.ERR_TCP_HDR_TRUNCATED if (d[12] >> 4) * 4 > len(d) else 0


def ref_tcp_options(area: bytes, syn: bool):
    """Linux's tcp_parse_options, transliterated to Python: (err, present, mss, ws, ts, sack)."""
    present, mss, ws, ts, sack, i = 0, 0, 0, (0, 0), [], 0
    err = 0
    while i < len(area):
        kind = area[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if len(area) - i < 2 or area[i + 1] < 2 or area[i + 1] > len(area) - i:
            err = tcp.ERR_TCP_OPT_MALFORMED
            break
        size, body = area[i + 1], area[i + 2 : i + area[i + 1]]
        if kind == 2 and size == 4 and syn and u16(body, 0):
            present, mss = present | tcp.OPTF_MSS, u16(body, 0)
        elif kind == 3 and size == 3 and syn:
            present, ws = present | tcp.OPTF_WSCALE, min(body[0], 14)
        elif kind == 4 and size == 2 and syn:
            present |= tcp.OPTF_SACK_PERM
        elif kind == 8 and size == 10:
            present |= tcp.OPTF_TS
            ts = (int.from_bytes(body[:4], "big"), int.from_bytes(body[4:], "big"))
        elif kind == 5 and size >= 10 and (size - 2) % 8 == 0:
            present |= tcp.OPTF_SACK
            words = [int.from_bytes(body[j : j + 4], "big") for j in range(0, size - 2, 4)]
            sack = words[:8]
        elif kind == 19 and size == 18:
            present |= tcp.OPTF_MD5SIG
        i += size
    return err, present, mss, ws, ts, sack


def run_tcp_options(fn, b, off, hlen, syn):
    opts = np.zeros(tcp.TOPT_SIZE, dtype=np.int64)
    err = fn(b, off, hlen, syn, opts)
    n = int(opts[tcp.TOPT_SACK_N])
    sack = [int(x) for x in opts[tcp.TOPT_SACK_BLOCKS : tcp.TOPT_SACK_BLOCKS + 2 * n]]
    ts = (int(opts[tcp.TOPT_TS_VAL]), int(opts[tcp.TOPT_TS_ECR]))
    return (
        int(err),
        int(opts[tcp.TOPT_PRESENT]),
        int(opts[tcp.TOPT_MSS]),
        int(opts[tcp.TOPT_WSCALE]),
        ts,
        sack,
    )


# --- strategies ---------------------------------------------------------------------------------

# Random bytes, biased towards headers that pass the first checks so the deep paths run too.
random_bytes = st.binary(max_size=80)
prefix = st.integers(0, 3)


def _tcp_like(draw_bytes, doff, flags):
    d = bytearray(draw_bytes)
    if len(d) > 13:
        d[12] = (doff << 4) | (d[12] & 0x0F)
        d[13] = flags
    return bytes(d)


tcp_like = st.builds(
    _tcp_like, st.binary(max_size=64), st.integers(0, 15), st.sampled_from([0x02, 0x12, 0x10, 0x18])
)
tcp_option_items = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"\x00",
                b"\x01",
                b"\x02\x04\x05\xb4",
                b"\x03\x03\x0f",
                b"\x04\x02",
                b"\x08\x0a" + bytes(range(8)),
                b"\x05\x0a" + bytes(range(8)),
                b"\x13\x12" + bytes(16),
            ]
        ),
        st.binary(min_size=1, max_size=12),
    ),
    max_size=10,
)


def _ip_like(draw_bytes, ihl, total_delta):
    d = bytearray(draw_bytes)
    if len(d) >= 20:
        d[0] = 0x40 | ihl
        total = max(0, min(0xFFFF, len(d) + total_delta))
        d[2:4] = total.to_bytes(2, "big")
        d[10:12] = b"\x00\x00"
        if total_delta % 3 == 0:  # a third with a correct checksum
            d[10:12] = rfc1071(bytes(d[: min(ihl * 4, len(d))])).to_bytes(2, "big")
    return bytes(d)


ip_like = st.builds(_ip_like, st.binary(max_size=80), st.integers(0, 15), st.integers(-30, 10))


# --- jitted: every check returns what the reference says -----------------------------------------


@FUZZ
@given(st.one_of(random_bytes, tcp_like), prefix)
@example(b"", 0)
def test_tcp_check_and_options_match_reference(data, off):
    b = buf(bytes(off) + data)
    err = tcp.tcp_check(b, off, len(data))
    assert err == ref_tcp_check(data)
    if err == 0:
        hlen = tcp.tcp_hlen(b, off)
        syn = bool(data[13] & tcp.TH_SYN)
        got = run_tcp_options(tcp.tcp_parse_options, b, off, hlen, syn)
        assert got == ref_tcp_options(data[20:hlen], syn)


@FUZZ
@given(tcp_option_items, st.booleans())
def test_tcp_options_from_option_soup_match_reference(items, syn):
    area = b"".join(items)[:40]
    area += bytes(-len(area) % 4)
    seg = bytes(TCP(flags="S"))[:12] + bytes([(5 + len(area) // 4) << 4]) + bytes(7) + area
    b = buf(seg)
    assert tcp.tcp_check(b, 0, len(seg)) == 0
    assert run_tcp_options(tcp.tcp_parse_options, b, 0, len(seg), syn) == ref_tcp_options(area, syn)


@FUZZ
@given(st.one_of(random_bytes, ip_like), prefix, st.booleans())
def test_ip_check_matches_reference(data, off, verify):
    assert ipv4.ip_check(buf(bytes(off) + data), off, len(data), verify) == ref_ip_check(
        data, verify
    )


@FUZZ
@given(random_bytes, prefix, st.booleans())
def test_eth_arp_icmp_checks_match_reference(data, off, verify):
    b = buf(bytes(off) + data)
    assert ethernet.eth_check(b, off, len(data)) == ref_eth_check(data)
    assert icmp.icmp_check(b, off, len(data), verify) == ref_icmp_check(data, verify)
    arp_data = bytes.fromhex("000108000604") + data[6:] if len(data) > 6 and data[0] & 1 else data
    b2 = buf(bytes(off) + arp_data)
    assert arp.arp_check(b2, off, len(arp_data)) == ref_arp_check(arp_data)


# --- truncations of real packets ------------------------------------------------------------------

SYN_FULL = bytes(
    TCP(
        sport=40000,
        dport=80,
        flags="S",
        options=[
            ("MSS", 1460),
            ("SAckOK", b""),
            ("Timestamp", (1, 0)),
            ("NOP", None),
            ("WScale", 7),
        ],
    )
)
ACK_SACK = bytes(
    TCP(
        flags="A",
        options=[
            ("NOP", None),
            ("NOP", None),
            ("Timestamp", (5, 6)),
            ("NOP", None),
            ("NOP", None),
            ("SAck", (1, 2, 3, 4, 5, 6)),
        ],
    )
    / b"payload"
)
IP_OPT = bytes(IP(src="192.0.2.2", dst="192.0.2.1", options=b"\x94\x04\x00\x00") / ICMP() / b"x")
ARP_REQ = bytes(ARP(pdst="192.0.2.1"))
FRAME = bytes(Ether() / IP() / ICMP())


def test_every_truncation_of_real_packets():
    for pkt in (SYN_FULL, ACK_SACK):
        for n in range(len(pkt) + 1):
            d = pkt[:n]
            assert tcp.tcp_check(buf(d), 0, n) == ref_tcp_check(d), n
            assert interpreted(tcp.tcp_check)(buf(d), 0, n) == ref_tcp_check(d), n
    for n in range(len(IP_OPT) + 1):
        d = IP_OPT[:n]
        for verify in (True, False):
            assert ipv4.ip_check(buf(d), 0, n, verify) == ref_ip_check(d, verify), n
    for n in range(len(ARP_REQ) + 1):
        assert arp.arp_check(buf(ARP_REQ[:n]), 0, n) == ref_arp_check(ARP_REQ[:n])
    for n in range(len(FRAME) + 1):
        assert ethernet.eth_check(buf(FRAME[:n]), 0, n) == ref_eth_check(FRAME[:n])
        d = FRAME[34:n]
        assert icmp.icmp_check(buf(d), 0, len(d), True) == ref_icmp_check(d, True)


# --- interpreted: no out-of-bounds reads, same answers --------------------------------------------

TCP_READERS = [
    tcp.tcp_sport,
    tcp.tcp_dport,
    tcp.tcp_seq,
    tcp.tcp_ack,
    tcp.tcp_hlen,
    tcp.tcp_flags,
    tcp.tcp_win,
    tcp.tcp_csum,
    tcp.tcp_urp,
]
IP_READERS = [
    ipv4.ip_version,
    ipv4.ip_hlen,
    ipv4.ip_total_len,
    ipv4.ip_id,
    ipv4.ip_frag,
    ipv4.ip_is_fragment,
    ipv4.ip_ttl,
    ipv4.ip_proto,
    ipv4.ip_csum,
    ipv4.ip_src,
    ipv4.ip_dst,
]
ARP_READERS = [arp.arp_oper, arp.arp_sha, arp.arp_spa, arp.arp_tha, arp.arp_tpa]
ETH_READERS = [ethernet.eth_dst, ethernet.eth_src, ethernet.eth_type]
ICMP_READERS = [icmp.icmp_type, icmp.icmp_code, icmp.icmp_id, icmp.icmp_seq]


@settings(max_examples=100, deadline=None)
@given(st.one_of(random_bytes, tcp_like), prefix)
def test_tcp_interpreted_never_reads_past_the_segment(data, off):
    b = buf(bytes(off) + data)
    err = interpreted(tcp.tcp_check)(b, off, len(data))
    assert err == ref_tcp_check(data)
    if err != 0:
        return
    for reader in TCP_READERS:
        interpreted(reader)(b, off)
    hlen = int(interpreted(tcp.tcp_hlen)(b, off))
    syn = bool(data[13] & tcp.TH_SYN)
    got = run_tcp_options(interpreted(tcp.tcp_parse_options), b, off, hlen, syn)
    want = ref_tcp_options(data[20:hlen], syn)
    if BYTEORDER_INTERPRETED_OK:
        assert got == want
    else:  # multi-byte values are wrong until byteorder is fixed; the walk itself is right
        assert got[0] == want[0]


# The interpreted runs of the pre-existing modules crash or misread under NumPy 2 until the
# byteorder/checksum fixes land (see _helpers); they then pass and these marks can go.
existing_interpreted = pytest.mark.xfail(
    not EXISTING_INTERPRETED_OK,
    reason="byteorder/checksum are not NumPy-2 safe when not jitted (np.uint8 arithmetic)",
    raises=(OverflowError, AssertionError),
    strict=False,
)


@existing_interpreted
def test_ip_truncations_interpreted():
    for n in range(len(IP_OPT) + 1):
        d = IP_OPT[:n]
        for verify in (True, False):
            assert interpreted(ipv4.ip_check)(buf(d), 0, n, verify) == ref_ip_check(d, verify)


@existing_interpreted
@settings(max_examples=50, deadline=None, report_multiple_bugs=False)
@given(random_bytes, prefix)
def test_tcp_verify_csum_interpreted(data, off):
    b = buf(bytes(off) + data)
    seg_ok = interpreted(tcp.tcp_verify_csum)(b, off, len(data), 0x01020304, 0x05060708)
    assert seg_ok == tcp.tcp_verify_csum(b, off, len(data), 0x01020304, 0x05060708)


@existing_interpreted
@settings(max_examples=100, deadline=None, report_multiple_bugs=False)
@given(st.one_of(random_bytes, ip_like), prefix, st.booleans())
def test_l2_l3_interpreted_never_read_past_the_packet(data, off, verify):
    b = buf(bytes(off) + data)
    n = len(data)
    assert interpreted(ipv4.ip_check)(b, off, n, verify) == ref_ip_check(data, verify)
    if ipv4.ip_check(b, off, n, verify) == 0:
        for reader in IP_READERS:
            interpreted(reader)(b, off)
    if interpreted(ethernet.eth_check)(b, off, n) == 0:
        for reader in ETH_READERS:
            interpreted(reader)(b, off)
    if interpreted(icmp.icmp_check)(b, off, n, verify) == 0:
        for reader in ICMP_READERS:
            interpreted(reader)(b, off)
    if arp.arp_check(b, off, n) == 0:
        for reader in ARP_READERS:
            interpreted(reader)(b, off)
    assert interpreted(checksum.checksum)(b, off, n) == rfc1071(data)
    assert interpreted(arp.arp_check)(b, off, n) == ref_arp_check(data)


def test_option_writers_stay_inside_60_bytes_interpreted():
    # A 60-byte buffer (off 0) is the largest header: writers must never go past it.
    b = buf(bytes(60))
    n = interpreted(tcp.tcp_write_syn_options)(b, 0, 65535, 14, True, 0xFFFFFFFF, 0xFFFFFFFF, True)
    assert n == 20
    blocks = np.arange(1, 11, dtype=np.int64)
    for pos in range(0, 41, 4):
        new = interpreted(tcp.tcp_write_sack_option)(b, 0, pos, blocks, 5)
        assert new <= 40 and (new - pos) % 8 == 4 or new == pos
    assert interpreted(tcp.tcp_write_ts_option)(b, 0, 28, 1, 2) == 40
    assert interpreted(tcp.tcp_build)(b, 0, 1, 2, 3, 4, 5, 6, 7, 40) == 60
