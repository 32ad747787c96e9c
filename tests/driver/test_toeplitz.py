"""Toeplitz RSS against Microsoft's published verification suite (IPv4 rows).

Source: Microsoft, "Verifying the RSS Hash Calculation" (also Intel 82599 datasheet 7.1.2.8.3),
key 6d5a56da...01fa.  Rows: source -> destination of the received packet, 2-tuple hash (IPv4
only) and 4-tuple hash (IPv4 with TCP ports).
"""

import ipaddress
import struct

import numpy as np
import pytest

from fsdp.driver.toeplitz import (
    DEFAULT_RSS_KEY,
    RETA_SIZE,
    default_reta,
    rss_hash_frame_ipv4,
    rss_hash_ipv4,
    rss_hash_ipv4_l4,
    toeplitz_hash,
    toeplitz_table,
)

MS_IPV4_SUITE = [
    # (src ip, src port, dst ip, dst port, ipv4 hash, ipv4+tcp hash)
    ("66.9.149.187", 2794, "161.142.100.80", 1766, 0x323E8FC2, 0x51CCC178),
    ("199.92.111.2", 14230, "65.69.140.83", 4739, 0xD718262A, 0xC626B0EA),
    ("24.19.198.95", 12898, "12.22.207.184", 38024, 0xD2D0A5DE, 0x5C2B394A),
    ("38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xAFC7327F),
    ("153.39.163.191", 44251, "202.188.127.2", 1303, 0x5D1809C5, 0x10E828A2),
]


def _ip(s):
    return int(ipaddress.IPv4Address(s))


@pytest.mark.parametrize("src,sport,dst,dport,h2,h4", MS_IPV4_SUITE)
def test_reference_matches_microsoft(src, sport, dst, dport, h2, h4):
    a, b = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    assert toeplitz_hash(DEFAULT_RSS_KEY, a + b) == h2
    assert toeplitz_hash(DEFAULT_RSS_KEY, a + b + struct.pack("!HH", sport, dport)) == h4


@pytest.mark.parametrize("src,sport,dst,dport,h2,h4", MS_IPV4_SUITE)
def test_table_matches_microsoft(src, sport, dst, dport, h2, h4):
    table = toeplitz_table(DEFAULT_RSS_KEY)
    assert rss_hash_ipv4(table, _ip(src), _ip(dst)) == h2
    assert rss_hash_ipv4_l4(table, _ip(src), _ip(dst), sport, dport) == h4
    # and straight from packet bytes (IPv4 header at 0, ports at 20)
    buf = np.zeros(24, np.uint8)
    buf[12:16] = np.frombuffer(ipaddress.IPv4Address(src).packed, np.uint8)
    buf[16:20] = np.frombuffer(ipaddress.IPv4Address(dst).packed, np.uint8)
    buf[20:24] = np.frombuffer(struct.pack("!HH", sport, dport), np.uint8)
    assert rss_hash_frame_ipv4(table, buf, 0, 20) == h4
    assert rss_hash_frame_ipv4(table, buf, 0, -1) == h2


def test_table_equals_reference_random_key():
    rng = np.random.default_rng(7)
    key = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    table = toeplitz_table(key)
    for _ in range(50):
        s, d = (int(x) for x in rng.integers(0, 2**32, 2))
        sp, dp = (int(x) for x in rng.integers(0, 2**16, 2))
        data = struct.pack("!IIHH", s, d, sp, dp)
        assert rss_hash_ipv4_l4(table, s, d, sp, dp) == toeplitz_hash(key, data)
        assert rss_hash_ipv4(table, s, d) == toeplitz_hash(key, data[:8])


def test_reta_and_errors():
    reta = default_reta(3)
    assert reta.shape == (RETA_SIZE,) and list(reta[:5]) == [0, 1, 2, 0, 1]
    with pytest.raises(ValueError):
        default_reta(0)
    with pytest.raises(ValueError):
        toeplitz_hash(b"\x01" * 8, b"\x00" * 8)
    with pytest.raises(ValueError):
        toeplitz_table(b"\x01" * 12, 12)
