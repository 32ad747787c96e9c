"""IPv4 input and ICMP through the harness (RFC 791, RFC 792, RFC 1122 §3.2)."""

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert
from scapy.layers.l2 import Ether
from scapy.packet import Raw

STACK_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"


def test_echo_request_gets_exact_reply(harness):
    harness.send(
        IP(src="192.0.2.2", dst="192.0.2.1", tos=0x10) / ICMP(id=0x1234, seq=7) / (b"x" * 100)
    )
    out = harness.recv()
    assert len(out) == 1
    r = out[0]
    assert (r.src, r.dst) == (STACK_MAC, PEER_MAC)
    ip = r[IP]
    assert (ip.src, ip.dst, ip.ttl, ip.proto, ip.ihl, ip.tos) == (
        "192.0.2.1", "192.0.2.2", 64, 1, 5, 0x10
    )
    assert ip.len == 20 + 8 + 100 and ip.frag == 0
    icmp = r[ICMP]
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (0, 0, 0x1234, 7)
    assert icmp.load == b"x" * 100
    # checksums as Scapy computes them
    assert ip.chksum == IP(bytes(ip)).__class__(bytes(ip)).chksum
    rebuilt = IP(bytes(ip))
    del rebuilt.chksum
    del rebuilt[ICMP].chksum
    rebuilt = IP(bytes(rebuilt))
    assert (rebuilt.chksum, rebuilt[ICMP].chksum) == (ip.chksum, icmp.chksum)
    s = harness.stats()
    assert s["icmp_echo_requests_in"] == 1 and s["icmp_echo_replies_out"] == 1
    harness.audit()


def test_echo_with_ip_options_is_answered_without_them(harness):
    harness.send(
        IP(src="192.0.2.2", dst="192.0.2.1", options=[IPOption_Router_Alert(), IPOption_NOP()])
        / ICMP(seq=1)
        / b"abc"
    )
    out = harness.recv()
    assert len(out) == 1 and out[0][IP].ihl == 5 and out[0][ICMP].load == b"abc"


def test_ethernet_padding_is_ignored(harness):
    frame = bytes(
        Ether(src=PEER_MAC, dst=STACK_MAC) / IP(src="192.0.2.2", dst="192.0.2.1") / ICMP(seq=3)
    )
    harness.send(frame + b"\x00" * 18)  # padded to the 60-byte minimum
    out = harness.recv()
    assert len(out) == 1 and out[0][IP].len == 28


def test_broadcast_echo_is_ignored_by_default(harness):
    harness.send(
        Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="192.0.2.2", dst="192.0.2.255")
        / ICMP()
    )
    harness.send(
        Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="192.0.2.2", dst="255.255.255.255")
        / ICMP()
    )
    assert harness.recv() == []
    assert harness.stats()["icmp_echo_broadcast_ignored"] == 2


def test_udp_to_closed_port_gets_port_unreachable(harness):
    orig = IP(src="192.0.2.2", dst="192.0.2.1", id=99) / UDP(sport=5000, dport=53) / (b"q" * 10)
    harness.send(orig)
    out = harness.recv()
    assert len(out) == 1
    r = out[0]
    assert r[IP].dst == "192.0.2.2" and r[IP].tos == 0xC0
    icmp = r[ICMP]
    assert (icmp.type, icmp.code) == (3, 3)
    quoted = bytes(icmp.payload)
    assert quoted == bytes(orig)  # the whole (small) datagram is quoted
    harness.audit()


def test_icmp_error_is_limited_to_576_bytes(harness):
    harness.send(IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=1, dport=2) / (b"z" * 1400))
    (r,) = harness.recv()
    assert r[IP].len == 576


def test_unknown_protocol_gets_protocol_unreachable(harness):
    harness.send(IP(src="192.0.2.2", dst="192.0.2.1", proto=253) / b"hello")
    (r,) = harness.recv()
    assert (r[ICMP].type, r[ICMP].code) == (3, 2)
    assert harness.stats()["ip_unknown_proto"] == 1


def test_no_error_about_an_icmp_error(harness):
    err = (
        IP(src="192.0.2.2", dst="192.0.2.1")
        / ICMP(type=3, code=1)
        / IP(src="192.0.2.1", dst="192.0.2.2")
        / UDP()
    )
    harness.send(err)
    assert harness.recv() == []
    assert harness.stats()["icmp_dest_unreach_in"] == 1


def test_icmp_errors_are_rate_limited():
    from fsdp.testing import Harness

    with Harness(icmp_ratelimit=10, icmp_burst=3) as h:
        for i in range(6):
            h.send(IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=1000 + i, dport=9))
        assert len(h.recv()) == 3
        assert h.stats()["icmp_rate_limited"] == 3
        h.advance(0.1)  # one token per 100 ms
        h.send(IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=2000, dport=9))
        assert len(h.recv()) == 1


def test_tcp_to_closed_port_gets_reset(harness):
    harness.send(
        IP(src="192.0.2.2", dst="192.0.2.1") / TCP(sport=40000, dport=80, flags="S", seq=1000)
    )
    (r,) = harness.recv()
    t = r[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, t.flags, t.window) == (80, 40000, 0, 1001, "RA", 0)
    assert r[IP].flags == "DF" and r[IP].id == 0
    harness.send(
        IP(src="192.0.2.2", dst="192.0.2.1") / TCP(sport=40000, dport=80, flags="A", seq=5, ack=777)
    )
    (r,) = harness.recv()
    assert (r[TCP].seq, r[TCP].flags) == (777, "R")
    harness.send(
        IP(src="192.0.2.2", dst="192.0.2.1") / TCP(sport=40000, dport=80, flags="R", seq=5)
    )
    assert harness.recv() == []  # never answer a RST with a RST
    harness.send(
        IP(src="192.0.2.2", dst="192.0.2.1")
        / TCP(sport=40000, dport=80, flags="PA", seq=5, ack=9)
        / b"data"
    )
    (r,) = harness.recv()
    assert (r[TCP].seq, r[TCP].flags) == (9, "R")
    harness.send(
        IP(src="192.0.2.2", dst="192.0.2.1") / TCP(sport=40000, dport=80, flags="F", seq=5) / b"ab"
    )
    (r,) = harness.recv()
    assert (r[TCP].seq, r[TCP].ack, r[TCP].flags) == (0, 8, "RA")
    harness.audit()


@pytest.mark.parametrize(
    "pkt, counter",
    [
        (IP(src="192.0.2.2", dst="192.0.2.1", chksum=0x1234) / ICMP(), "ip_bad_csum"),
        (IP(src="192.0.2.2", dst="192.0.2.1", version=6) / ICMP(), "ip_bad_version"),
        (IP(src="192.0.2.2", dst="192.0.2.1", ihl=4) / ICMP(), "ip_bad_hlen"),
        (IP(src="192.0.2.2", dst="192.0.2.1", len=200) / ICMP(), "ip_truncated"),
        (IP(src="192.0.2.2", dst="192.0.2.77") / ICMP(), "ip_not_for_us"),
        (IP(src="127.0.0.1", dst="192.0.2.1") / ICMP(), "ip_bad_src"),
        (IP(src="224.0.0.1", dst="192.0.2.1") / ICMP(), "ip_bad_src"),
        (IP(src="192.0.2.1", dst="192.0.2.1") / ICMP(), "ip_bad_src"),
        (IP(src="192.0.2.255", dst="192.0.2.1") / ICMP(), "ip_bad_src"),
        (IP(src="192.0.2.2", dst="192.0.2.1") / ICMP(chksum=0xBEEF), "icmp_bad_csum"),
        (IP(src="192.0.2.2", dst="192.0.2.1", proto=1) / b"abc", "icmp_truncated"),
        (IP(src="192.0.2.2", dst="192.0.2.1") / UDP(chksum=0x1111), "udp_bad_csum"),
        (IP(src="192.0.2.2", dst="192.0.2.1", proto=17) / b"abc", "udp_malformed"),
        (IP(src="192.0.2.2", dst="192.0.2.1") / TCP(chksum=0x1111), "tcp_bad_csum"),
        (IP(src="192.0.2.2", dst="192.0.2.1") / TCP(dataofs=15), "tcp_malformed"),
        (IP(src="192.0.2.2", dst="192.0.2.1", proto=6) / b"abcd", "tcp_malformed"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_ip_input_is_dropped_and_counted(harness, pkt, counter):
    harness.send(pkt)
    assert harness.recv() == []
    assert harness.stats()[counter] == 1
    harness.audit()


@pytest.mark.parametrize(
    "frame, counter",
    [
        (b"\x02\x00\x00\x00\x00\x01\x02\x00", "eth_truncated"),
        (
            bytes(Ether(src=PEER_MAC, dst=STACK_MAC, type=0x86DD) / Raw(b"\x60" + b"\x00" * 39)),
            "eth_unknown_type",
        ),
        (bytes(Ether(src=PEER_MAC, dst=STACK_MAC, type=0x0800)), "ip_truncated"),
        (
            bytes(
                Ether(src=PEER_MAC, dst="01:00:5e:00:00:01")
                / IP(src="192.0.2.2", dst="192.0.2.1")
                / ICMP()
            ),
            "eth_not_for_us",
        ),
    ],
)
def test_bad_frames_are_dropped_and_counted(harness, frame, counter):
    harness.send(frame)
    assert harness.recv() == []
    assert harness.stats()[counter] == 1
    harness.audit()


def test_virtual_clock(harness):
    assert harness.now == 0.0
    harness.advance(1.5)
    assert harness.now == 1.5
    with pytest.raises(ValueError):
        harness.advance(-1)


def test_nic_filters_other_stations_unicast(harness):
    """Like a real NIC out of promiscuous mode, the sim port never delivers others' unicast."""
    harness.send(
        Ether(src=PEER_MAC, dst="02:00:00:00:00:55") / IP(src="192.0.2.2", dst="192.0.2.1") / ICMP()
    )
    assert harness.recv() == []
    assert harness.stats()["rx_frames"] == 0
