"""The sim NIC's switch and queue selection: what a frame's destination port and rx queue are.

Switching (sender side): by destination MAC; group addresses go to every other port, unknown
unicast only to promiscuous ports, promiscuous ports get a copy of everything, and nothing ever
comes back to its sender.  Queue selection (receiver's NIC): ARP and broadcast to every queue,
Flow Director exact match, else Toeplitz RSS through the RETA; odd frames to queue 0.
"""

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether

from fsdp.driver.toeplitz import RETA_SIZE

from ._sim import (
    BCAST,
    MAC_A,
    MAC_B,
    MAC_C,
    MAC_D,
    assert_port_clean,
    expected_queue,
    mac_str,
    small_wire,
    tcp_frame,
    udp_frame,
)


@pytest.fixture
def wire():
    w = small_wire()
    yield w
    w.close()


def per_queue(port):
    """{queue: [frames]} of everything waiting on the port."""
    return {q: port.drain(queue=q) for q in range(port.n_queues)}


def test_rss_4tuple_lands_on_reta_queue(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    flows = [("10.0.0.1", "10.0.0.2", 1024 + i * 7, 80) for i in range(40)]
    for sip, dip, sp, dp in flows:
        a.inject(tcp_frame(MAC_A, MAC_B, sip, dip, sp, dp))
        a.inject(udp_frame(MAC_A, MAC_B, sip, dip, sp, dp))
        got = per_queue(b)
        want = expected_queue(sip, dip, sp, dp)
        assert [len(got[q]) for q in range(4)] == [2 if q == want else 0 for q in range(4)]
    used = {expected_queue(*f) for f in flows}
    assert len(used) == 4, "40 flows should spread over all 4 queues"
    assert_port_clean(a, b)


def test_rss_follows_custom_key_and_reta(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    key = bytes(range(1, 41))
    reta = np.array([3 - (i % 4) for i in range(RETA_SIZE)])
    b.set_rss(key=key, reta=reta)
    assert b.rss_key == key and list(b.reta) == list(reta)
    for i in range(20):
        sp = 40000 + i
        a.inject(tcp_frame(MAC_A, MAC_B, "192.168.1.9", "10.1.2.3", sp, 443))
        want = expected_queue("192.168.1.9", "10.1.2.3", sp, 443, reta=reta, key=key)
        assert len(b.drain(queue=want)) == 1


def test_non_l4_and_fragments_use_2tuple(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    pairs = [("10.0.0.1", f"10.0.{i}.{i * 3 % 250}") for i in range(1, 12)]
    for sip, dip in pairs:
        want = expected_queue(sip, dip)
        icmp = bytes(Ether(src=mac_str(MAC_A), dst=mac_str(MAC_B)) / IP(src=sip, dst=dip) / ICMP())
        frag = tcp_frame(MAC_A, MAC_B, sip, dip, 5555, 80, payload=b"x" * 32, flags="MF")
        later = udp_frame(MAC_A, MAC_B, sip, dip, 1, 2, frag=10)
        for f in (icmp, frag, later):
            a.inject(f)
            assert len(b.drain(queue=want)) == 1, (sip, dip)


def test_ip_options_move_the_ports(wire):
    """L4 is found through the IHL: a header with options still hashes the right ports."""
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    for i in range(12):
        sp = 2000 + 13 * i
        f = tcp_frame(MAC_A, MAC_B, "10.9.8.7", "10.0.0.2", sp, 8080, options=[b"\x01" * 8])
        assert Ether(f)[IP].ihl == 7
        a.inject(f)
        assert len(b.drain(queue=expected_queue("10.9.8.7", "10.0.0.2", sp, 8080))) == 1


def test_flow_director_overrides_rss(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    flow = ("10.0.0.1", "10.0.0.2", 33333, 80)
    rss_q = expected_queue(*flow)
    target = (rss_q + 1) % 4
    assert b.add_flow_rule(*flow, 6, target)
    assert b.flow_rules() == 1
    a.inject(tcp_frame(MAC_A, MAC_B, *flow))
    assert len(b.drain(queue=target)) == 1
    # the same addresses and ports over UDP are another rule's business: RSS
    a.inject(udp_frame(MAC_A, MAC_B, *flow))
    assert len(b.drain(queue=rss_q)) == 1
    # replacing and deleting
    assert b.add_flow_rule(*flow, 6, (target + 1) % 4)
    assert b.flow_rules() == 1
    a.inject(tcp_frame(MAC_A, MAC_B, *flow))
    assert len(b.drain(queue=(target + 1) % 4)) == 1
    assert b.del_flow_rule(*flow, 6)
    assert not b.del_flow_rule(*flow, 6)
    a.inject(tcp_frame(MAC_A, MAC_B, *flow))
    assert len(b.drain(queue=rss_q)) == 1


def test_flow_director_icmp_rule_uses_zero_ports(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    want = (expected_queue("10.0.0.1", "10.0.0.2") + 2) % 4
    assert b.add_flow_rule("10.0.0.1", "10.0.0.2", 0, 0, 1, want)
    a.inject(
        bytes(
            Ether(src=mac_str(MAC_A), dst=mac_str(MAC_B))
            / IP(src="10.0.0.1", dst="10.0.0.2")
            / ICMP()
        )
    )
    assert len(b.drain(queue=want)) == 1


def test_flow_director_table_fill_and_delete_keeps_lookups(wire):
    """Fill the (64-entry) table to its limit, delete half: every remaining rule still works."""
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    rules = [("10.0.0.1", "10.0.0.2", 1000 + i, 80, 6, i % 4) for i in range(100)]
    installed = [r for r in rules if b.add_flow_rule(*r)]
    assert len(installed) == 48  # 3/4 of 64, then the table refuses
    for r in installed[::2]:
        assert b.del_flow_rule(*r[:5])
    for r in installed[1::2]:
        a.inject(tcp_frame(MAC_A, MAC_B, *r[:4]))
        assert len(b.drain(queue=r[5])) == 1, r
    assert b.flow_rules() == 24


def test_arp_and_broadcast_reach_every_queue_of_every_other_port(wire):
    a = wire.attach(2, MAC_A)
    b = wire.attach(4, MAC_B)
    c = wire.attach(3, MAC_C)
    arp = bytes(Ether(src=mac_str(MAC_A), dst=BCAST) / ARP(psrc="10.0.0.1", pdst="10.0.0.3"))
    a.inject(arp)
    for port in (b, c):
        got = per_queue(port)
        assert all(got[q] == [arp] for q in range(port.n_queues))
    assert a.drain() == []  # never back to the sender
    # a unicast ARP reply is replicated over the receiver's queues too
    reply = bytes(Ether(src=mac_str(MAC_C), dst=mac_str(MAC_A)) / ARP(op=2))
    c.inject(reply)
    assert all(v == [reply] for v in per_queue(a).values())
    assert b.drain() == []
    # an IPv4 broadcast is replicated as well
    bc = udp_frame(MAC_A, BCAST, "10.0.0.1", "10.0.0.255", 68, 67)
    a.inject(bc)
    assert all(v == [bc] for v in per_queue(b).values())
    assert all(v == [bc] for v in per_queue(c).values())
    assert_port_clean(a, b, c)


def test_multicast_goes_to_every_other_port_one_queue(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    c = wire.attach(2, MAC_C)
    f = udp_frame(MAC_A, "01:00:5e:00:00:fb", "10.0.0.1", "224.0.0.251", 5353, 5353)
    a.inject(f)
    assert len(b.drain()) == 1 and len(c.drain()) == 1 and a.drain() == []
    assert len(b.drain()) == 0
    a.inject(f)
    assert len(b.drain(queue=expected_queue("10.0.0.1", "224.0.0.251", 5353, 5353))) == 1


def test_unknown_unicast_only_to_promiscuous_ports(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(1, MAC_B)
    p = wire.attach(2, MAC_C, promisc=True)
    f = tcp_frame(MAC_A, MAC_D, "10.0.0.1", "10.0.0.4", 1, 2)
    a.inject(f)
    assert b.drain() == [] and a.drain() == []
    assert p.drain() == [f]
    # with no promiscuous port it is counted as undeliverable
    p.close()
    a.inject(f)
    assert a.stats()["no_dest"] == 1


def test_promiscuous_port_sees_everything_but_its_own(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(1, MAC_B)
    p = wire.attach(1, MAC_C, promisc=True)
    f1 = tcp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, 2)
    f2 = tcp_frame(MAC_B, MAC_A, "10.0.0.2", "10.0.0.1", 2, 1)
    a.inject(f1)
    b.inject(f2)
    assert b.drain() == [f1] and a.drain() == [f2]
    assert p.drain() == [f1, f2]
    own = tcp_frame(MAC_C, MAC_A, "10.0.0.3", "10.0.0.1", 3, 1)
    p.inject(own)
    assert a.drain() == [own] and p.drain() == []


def test_frame_to_own_mac_is_not_looped_back(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(1, MAC_B)
    a.inject(tcp_frame(MAC_A, MAC_A, "10.0.0.1", "10.0.0.1", 1, 2))
    assert a.drain() == [] and b.drain() == []
    assert a.stats()["no_dest"] == 1


@pytest.mark.parametrize(
    "frame",
    [
        bytes.fromhex("020000000002020000000001"),  # 12 bytes: below an Ethernet header
        bytes.fromhex("0200000000020200000000010800"),  # IPv4 type, no IP header
        bytes.fromhex("020000000002020000000001080045000028"),  # truncated IP header
        bytes.fromhex("02000000000202000000000108004f") + bytes(40),  # IHL 15 > frame
        bytes.fromhex("020000000002020000000001080041") + bytes(40),  # IHL 1
        bytes.fromhex("020000000002020000000001080065") + bytes(40),  # version 6
        bytes.fromhex("020000000002020000000001080045000028000040004006") + bytes(10),
        bytes.fromhex("02000000000202000000000186dd") + bytes(60),  # IPv6: not IPv4
    ],
)
def test_truncated_or_garbage_frames_go_to_queue_0(wire, frame):
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    a.inject(frame)
    assert b.drain(queue=0) == [frame]
    assert b.drain() == []


def test_runts_stay_truncated_on_the_wire(wire):
    """The harness sends cut frames on purpose: they arrive as sent (queue 0), counted."""
    a = wire.attach(1, MAC_A)
    b = wire.attach(4, MAC_B)
    c = wire.attach(1, MAC_C)
    to_b = bytes.fromhex("020000000002") + b"\x02\x00"
    for f in (to_b, to_b[:6]):
        a.inject(f)
        assert b.drain(queue=0) == [f] and c.drain() == []
    for f in (b"", b"\x02\x00"):  # no destination MAC at all: flooded
        a.inject(f)
        assert b.drain(queue=0) == [f] and c.drain() == [f]
    assert a.stats()["tx_runt"] == 4
    with pytest.raises(ValueError):
        a.inject(bytes(1921))


def test_fuzzed_frames_never_crash_the_switch(wire):
    rng = np.random.default_rng(3)
    a = wire.attach(2, MAC_A)
    b = wire.attach(4, MAC_B)
    p = wire.attach(1, MAC_C, promisc=True)
    base = tcp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1234, 80, payload=b"y" * 30)
    sent = 0
    for i in range(300):
        f = bytearray(base[: rng.integers(0, len(base) + 1)])
        for _ in range(rng.integers(1, 6)):
            if len(f) > 12:
                f[rng.integers(12, len(f))] = rng.integers(0, 256)
        a.inject(bytes(f), queue=i % 2)
        sent += 1
        b.drain()
        p.drain()
    assert a.stats()["tx_frames"] == sent
    assert_port_clean(a, b, p)
