"""Checksum offload on sim ports: rx verification flags and tx checksum filling."""

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from fsdp.pool.pool import FRAME_F_RX_CSUM_BAD, FRAME_F_RX_CSUM_OK, FRAME_F_TX_CSUM

from ._sim import MAC_A, MAC_B, mac_str, small_wire

ETH = Ether(src=mac_str(MAC_A), dst=mac_str(MAC_B))


@pytest.fixture
def pair():
    w = small_wire()
    a = w.attach(1, MAC_A)
    b = w.attach(1, MAC_B, rx_csum=True)
    yield a, b
    w.close()


def rx_flags(a, b, frame: bytes) -> int:
    a.inject(frame)
    (got,) = b.drain(with_flags=True)
    assert got[0] == frame
    return got[1]


GOOD = [
    ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2) / b"hello",
    ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2) / b"odd",
    ETH / IP(src="10.0.0.1", dst="10.0.0.2", options=[b"\x01" * 4]) / TCP() / b"opts",
    ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / (b"x" * 33),
    ETH / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / b"ping",
]


@pytest.mark.parametrize("pkt", GOOD, ids=lambda p: p.summary())
def test_rx_csum_ok(pair, pkt):
    a, b = pair
    assert rx_flags(a, b, bytes(pkt)) == FRAME_F_RX_CSUM_OK


@pytest.mark.parametrize(
    "pkt",
    [
        ETH / IP(src="10.0.0.1", dst="10.0.0.2", chksum=0x1234) / TCP() / b"a",
        ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(chksum=0x1234) / b"a",
        ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(chksum=0x1234) / b"a",
        ETH / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(chksum=0x1234) / b"a",
        ETH / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", chksum=1) / TCP() / b"a",
    ],
    ids=lambda p: p.summary(),
)
def test_rx_csum_bad(pair, pkt):
    a, b = pair
    assert rx_flags(a, b, bytes(pkt)) == FRAME_F_RX_CSUM_BAD
    assert b.stats()["rx_csum_bad"] == 1


@pytest.mark.parametrize(
    "pkt",
    [
        ETH / ARP(),
        ETH / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / TCP(chksum=1) / b"a",  # fragment
        ETH / IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / b"gre?",
        Ether(bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / b"abc")[:40]),  # cut short
    ],
    ids=lambda p: p.summary(),
)
def test_rx_csum_not_verifiable(pair, pkt):
    a, b = pair
    assert rx_flags(a, b, bytes(pkt)) == 0


def test_udp_without_checksum_is_ok(pair):
    a, b = pair
    f = bytearray(bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / b"nochecksum"))
    f[40:42] = b"\0\0"
    assert rx_flags(a, b, bytes(f)) == FRAME_F_RX_CSUM_OK


def test_rx_csum_off_sets_no_flags(pair):
    a, b = pair
    b.set_offload(rx_csum=False)
    assert b.offloads == {"rx_csum": False, "tx_csum": False}
    bad = bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(chksum=1))
    assert rx_flags(a, b, bad) == 0


def zero_checksums(pkt) -> bytes:
    """The frame with garbage in its IPv4 and L4 checksum fields."""
    p = pkt.copy()
    p[IP].chksum = 0xDEAD
    for layer in (TCP, UDP, ICMP):
        if layer in p:
            p[layer].chksum = 0xBEEF
    return bytes(p)


@pytest.mark.parametrize("pkt", GOOD, ids=lambda p: p.summary())
def test_tx_csum_fills_checksums(pair, pkt):
    a, b = pair
    a.set_offload(tx_csum=True)
    a.inject(zero_checksums(pkt), flags=FRAME_F_TX_CSUM)
    assert b.drain() == [bytes(pkt)]


def test_tx_csum_needs_the_frame_flag_and_the_port_setting(pair):
    a, b = pair
    pkt = GOOD[0]
    raw = zero_checksums(pkt)
    a.inject(raw, flags=FRAME_F_TX_CSUM)  # offload off on the port: untouched
    a.set_offload(tx_csum=True)
    a.inject(raw)  # flag not set: untouched
    a.inject(raw, flags=FRAME_F_TX_CSUM)
    assert b.drain() == [raw, raw, bytes(pkt)]


def test_tx_csum_udp_zero_becomes_ffff(pair):
    """RFC 768: a UDP checksum that computes to 0 is sent as 0xffff."""
    a, b = pair
    a.set_offload(tx_csum=True)
    base = ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
    # With the checksum of the zero-payload datagram as the payload word, the one's-complement
    # sum becomes 0xffff and the computed checksum 0.
    c = Ether(bytes(base / b"\0\0"))[UDP].chksum
    raw = zero_checksums(base / c.to_bytes(2, "big"))
    a.inject(raw, flags=FRAME_F_TX_CSUM)
    (got,) = b.drain()
    assert got[40:42] == b"\xff\xff"


def test_tx_csum_and_corruption_compose(pair):
    """Corruption happens on the wire, after the NIC computed the checksum: the receiver's
    rx offload then flags the frame bad, unless the flipped bit is in the Ethernet header or
    makes the IPv4 header unparsable (version/IHL, total length): then it cannot verify."""
    a, b = pair
    a.set_offload(tx_csum=True)
    a.set_faults(corrupt=1.0, seed=9)
    bad = 0
    for i in range(50):
        pkt = ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=i + 1, dport=80) / (b"z" * 40)
        a.inject(zero_checksums(pkt), flags=FRAME_F_TX_CSUM)
        ((got, flags),) = b.drain(with_flags=True)
        (pos,) = [k for k, (x, y) in enumerate(zip(got, bytes(pkt), strict=True)) if x != y]
        if pos < 12:
            assert flags == FRAME_F_RX_CSUM_OK  # MAC addresses are not checksummed here
        elif pos in (12, 13):
            assert flags == 0  # no longer IPv4
        elif pos in (14, 16, 17):
            assert flags != FRAME_F_RX_CSUM_OK
        else:
            assert flags == FRAME_F_RX_CSUM_BAD, pos
            bad += 1
    assert bad >= 30
