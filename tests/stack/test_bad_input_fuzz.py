"""Bad input never crashes the loop or leaks a frame (property-based, thousands of frames)."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from fsdp.core.stats import STAT_NAMES
from fsdp.testing import Harness

STACK_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"

_h = None


def _harness():
    global _h
    if _h is None:
        _h = Harness(pool_frames=256)
    return _h


def _templates():
    base = Ether(src=PEER_MAC, dst=STACK_MAC)
    ip = IP(src="192.0.2.2", dst="192.0.2.1")
    return [
        bytes(base / ip / ICMP(id=1, seq=2) / b"ping"),
        bytes(
            base
            / ip
            / TCP(
                sport=1,
                dport=80,
                flags="S",
                options=[("MSS", 1460), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (1, 0))],
            )
        ),
        bytes(base / ip / UDP(sport=1, dport=53) / b"dns"),
        bytes(
            Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=PEER_MAC, psrc="192.0.2.2", pdst="192.0.2.1")
        ),
        bytes(base / IP(src="192.0.2.2", dst="192.0.2.1", ihl=7, options=b"\x01" * 8) / ICMP()),
    ]


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    template=st.integers(0, 4),
    mutations=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 200),
    extra=st.binary(max_size=40),
)
def test_mutated_frames_never_crash_or_leak(template, mutations, cut, extra):
    h = _harness()
    frame = bytearray(_templates()[template])
    for pos, val in mutations:
        if pos < len(frame):
            frame[pos] = val
    frame = bytes(frame[: max(cut, 0)]) + extra if cut < len(frame) else bytes(frame) + extra
    h.send(frame)
    h.recv_bytes()


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_never_crash_or_leak(data):
    h = _harness()
    h.send(data)
    h.recv_bytes()


def test_zz_after_fuzzing_nothing_leaked_and_stack_still_answers():
    h = _harness()
    h.advance(10.0)  # let every ARP resolution started by the fuzzers time out
    h.recv_bytes()
    h.audit()
    s = h.stats()
    assert s["rx_frames"] >= 1500  # mutated destination MACs are filtered by the NIC
    drops = sum(
        s[k] for k in STAT_NAMES if k not in ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes")
    )
    assert drops > 0
    h.send(IP(src="192.0.2.2", dst="192.0.2.1") / ICMP(id=9, seq=9))
    out = h.recv()
    assert any(p.haslayer(ICMP) and p[ICMP].type == 0 and p[ICMP].seq == 9 for p in out)


def test_pool_exhaustion_is_graceful():
    """With a tiny pool and a resolving neighbour holding frames, replies fail to allocate:
    counted, never a crash, and everything comes back once the neighbour times out."""
    with Harness(pool_frames=64, arp_queue_len=1000) as h:
        rnd = random.Random(1)
        for i in range(200):
            h.send(
                Ether(src="02:00:00:00:00:09", dst=STACK_MAC)
                / IP(src="192.0.2.9", dst="192.0.2.1")
                / ICMP(seq=i)
                / bytes(rnd.randrange(256) for _ in range(8))
            )
        s = h.stats()
        assert s["pool_empty"] > 0 or s["rx_frames"] < 200
        for _ in range(10):  # each resolution cycle (3 s) drains at most a pool's worth
            h.advance(3.0)
        h.recv_bytes()
        h.audit()
        assert h.stats()["pool_free"] == 64
