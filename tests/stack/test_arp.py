"""ARP through the harness (RFC 826, RFC 1122 §2.3.2): Scapy frames in, exact frames out."""

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from fsdp.testing import Harness

STACK_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"
OTHER_MAC = "02:00:00:00:00:99"


def arp_request(
    src_mac=PEER_MAC, src_ip="192.0.2.2", dst_ip="192.0.2.1", eth_dst="ff:ff:ff:ff:ff:ff"
):
    return Ether(src=src_mac, dst=eth_dst) / ARP(
        op=1, hwsrc=src_mac, psrc=src_ip, hwdst="00:00:00:00:00:00", pdst=dst_ip
    )


def test_answers_request_for_its_address(harness):
    harness.send(arp_request())
    out = harness.recv()
    assert len(out) == 1
    r = out[0]
    assert r.dst == PEER_MAC and r.src == STACK_MAC and r.type == 0x0806
    a = r[ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen, a.op) == (1, 0x0800, 6, 4, 2)
    assert (a.hwsrc, a.psrc, a.hwdst, a.pdst) == (STACK_MAC, "192.0.2.1", PEER_MAC, "192.0.2.2")
    assert len(r) == 42  # no padding: the NIC pads, as Linux's frames on a TAP show
    s = harness.stats()
    assert s["arp_requests_in"] == 1 and s["arp_replies_out"] == 1
    harness.audit()


def test_ignores_request_for_another_address(harness):
    harness.send(arp_request(dst_ip="192.0.2.77"))
    assert harness.recv() == []
    assert harness.stats()["arp_requests_in"] == 1
    harness.audit()


def test_learns_requester_then_uses_its_mac():
    """RFC 826: a request for us adds the sender; traffic to it then needs no resolution."""
    with Harness() as h:
        h.send(arp_request(src_mac=OTHER_MAC, src_ip="192.0.2.9"))
        h.recv()
        h.send(
            Ether(src=OTHER_MAC, dst=STACK_MAC)
            / IP(src="192.0.2.9", dst="192.0.2.1")
            / ICMP(id=7, seq=1)
        )
        out = h.recv()
        assert len(out) == 1 and out[0].dst == OTHER_MAC and out[0][ICMP].type == 0
        assert h.stats()["arp_requests_out"] == 0
        assert any(n["ip"] == "192.0.2.9" and n["mac"] == OTHER_MAC for n in h.stack.neighbors())


def test_resolves_unknown_neighbour_and_flushes_queued_packet():
    with Harness() as h:
        echo = (
            Ether(src=OTHER_MAC, dst=STACK_MAC)
            / IP(src="192.0.2.9", dst="192.0.2.1")
            / ICMP(id=3, seq=4)
            / b"payload"
        )
        # The request comes from a host we do not know and is not an ARP: we must resolve it.
        h.send(echo)
        out = h.recv()
        assert len(out) == 1
        req = out[0]
        assert req.dst == "ff:ff:ff:ff:ff:ff" and req[ARP].op == 1
        assert req[ARP].pdst == "192.0.2.9" and req[ARP].psrc == "192.0.2.1"
        assert req[ARP].hwsrc == STACK_MAC and req[ARP].hwdst == "00:00:00:00:00:00"
        h.send(
            Ether(src=OTHER_MAC, dst=STACK_MAC)
            / ARP(op=2, hwsrc=OTHER_MAC, psrc="192.0.2.9", hwdst=STACK_MAC, pdst="192.0.2.1")
        )
        out = h.recv()
        assert len(out) == 1 and out[0].dst == OTHER_MAC
        assert out[0][ICMP].type == 0 and out[0][ICMP].load == b"payload"
        h.audit()


def test_resolution_retries_then_gives_up_and_drops_queue():
    with Harness() as h:
        for seq in range(3):
            h.send(
                Ether(src=OTHER_MAC, dst=STACK_MAC)
                / IP(src="192.0.2.9", dst="192.0.2.1")
                / ICMP(seq=seq)
            )
        assert [p[ARP].op for p in h.recv()] == [1]  # one request, three packets queued
        h.advance(0.999)
        assert h.recv() == []
        h.advance(0.001)
        assert len(h.recv()) == 1  # retransmitted after arp_retrans (1 s)
        h.advance(1.0)
        assert len(h.recv()) == 1  # third and last probe
        h.advance(1.0)
        assert h.recv() == []
        s = h.stats()
        assert s["arp_requests_out"] == 3 and s["arp_resolve_failed"] == 3
        assert not any(n["ip"] == "192.0.2.9" for n in h.stack.neighbors())
        h.audit()


def test_queue_bound_drops_oldest():
    with Harness(arp_queue_len=2) as h:
        for seq in range(5):
            h.send(
                Ether(src=OTHER_MAC, dst=STACK_MAC)
                / IP(src="192.0.2.9", dst="192.0.2.1")
                / ICMP(seq=seq)
            )
        h.recv()
        h.send(
            Ether(src=OTHER_MAC, dst=STACK_MAC)
            / ARP(op=2, hwsrc=OTHER_MAC, psrc="192.0.2.9", hwdst=STACK_MAC, pdst="192.0.2.1")
        )
        out = h.recv()
        assert [p[ICMP].seq for p in out] == [3, 4]  # the newest survive
        assert h.stats()["arp_queue_drop"] == 3
        h.audit()


def test_reachable_entry_goes_stale_then_is_probed_on_use():
    with Harness(arp_reachable=10.0) as h:
        echo = Ether(src=OTHER_MAC, dst=STACK_MAC) / IP(src="192.0.2.9", dst="192.0.2.1") / ICMP()
        h.send(echo)
        h.recv()
        h.send(
            Ether(src=OTHER_MAC, dst=STACK_MAC)
            / ARP(op=2, hwsrc=OTHER_MAC, psrc="192.0.2.9", hwdst=STACK_MAC, pdst="192.0.2.1")
        )
        h.recv()
        state = {n["ip"]: n["state"] for n in h.stack.neighbors()}
        assert state["192.0.2.9"] == "reachable"
        h.advance(10.0)
        assert {n["ip"]: n["state"] for n in h.stack.neighbors()}["192.0.2.9"] == "stale"
        h.send(echo)  # used while stale: sent at once with the cached MAC, then probed
        out = h.recv()
        assert len(out) == 1 and out[0].haslayer(ICMP) and out[0].dst == OTHER_MAC
        h.advance(5.0)
        probe = h.recv()
        assert len(probe) == 1 and probe[0][ARP].op == 1 and probe[0].dst == OTHER_MAC  # unicast
        h.audit()


def test_static_peer_is_never_overridden(harness):
    harness.send(
        Ether(src=OTHER_MAC, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=2, hwsrc=OTHER_MAC, psrc="192.0.2.2", pdst="192.0.2.1")
    )
    harness.send(IP(src="192.0.2.2", dst="192.0.2.1") / ICMP())
    assert harness.recv()[0].dst == PEER_MAC


@pytest.mark.parametrize(
    "frame, counter",
    [
        (arp_request() / b"", None),
        (
            Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff", type=0x0806) / b"\x00\x01\x08\x00\x06\x04",
            "arp_malformed",
        ),
        (
            Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwtype=6, pdst="192.0.2.1"),
            "arp_malformed",
        ),
        (
            Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=9, pdst="192.0.2.1"),
            "arp_malformed",
        ),
        (arp_request(src_mac="01:00:5e:00:00:01"), "arp_bogus"),
        (arp_request(src_ip="255.255.255.255"), "arp_bogus"),
        (arp_request(src_mac=STACK_MAC), "arp_bogus"),
        (arp_request(src_ip="192.0.2.1"), "arp_conflict"),
    ],
)
def test_bad_arp_is_dropped_and_counted(harness, frame, counter):
    harness.send(frame)
    out = harness.recv()
    if counter is None:
        assert len(out) == 1
    else:
        assert out == []
        assert harness.stats()[counter] == 1
    harness.audit()


def test_arp_probe_with_zero_sender_is_answered(harness):
    """RFC 5227 probe (sender IP 0.0.0.0) for our address: we defend it with a reply."""
    harness.send(arp_request(src_ip="0.0.0.0"))
    out = harness.recv()
    assert len(out) == 1 and out[0][ARP].op == 2 and out[0][ARP].pdst == "0.0.0.0"
    assert not any(n["ip"] == "0.0.0.0" for n in harness.stack.neighbors())
