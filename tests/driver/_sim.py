"""Shared helpers for the sim NIC tests: small wires, Scapy frames, expected RSS queues."""

from __future__ import annotations

import ipaddress
import struct

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from fsdp.driver.sim import SimWire
from fsdp.driver.toeplitz import DEFAULT_RSS_KEY, RETA_SIZE, toeplitz_hash
from fsdp.pool.pool import AUDIT_OK, pool_audit

MAC_A = 0x020000000001
MAC_B = 0x020000000002
MAC_C = 0x020000000003
MAC_D = 0x020000000004
BCAST = "ff:ff:ff:ff:ff:ff"


def mac_str(mac: int) -> str:
    return ":".join(f"{b:02x}" for b in mac.to_bytes(6, "big"))


def small_wire(**kw) -> SimWire:
    """A private wire small enough to keep tests fast."""
    kw.setdefault("max_ports", 4)
    kw.setdefault("max_queues", 4)
    kw.setdefault("ring_slots", 64)
    kw.setdefault("fdir_size", 64)
    return SimWire.private(**kw)


def tcp_frame(src_mac, dst_mac, sip, dip, sport, dport, payload=b"", **ip_kw) -> bytes:
    return bytes(
        Ether(src=mac_str(src_mac), dst=mac_str(dst_mac) if isinstance(dst_mac, int) else dst_mac)
        / IP(src=sip, dst=dip, **ip_kw)
        / TCP(sport=sport, dport=dport)
        / payload
    )


def udp_frame(src_mac, dst_mac, sip, dip, sport, dport, payload=b"", **ip_kw) -> bytes:
    return bytes(
        Ether(src=mac_str(src_mac), dst=mac_str(dst_mac) if isinstance(dst_mac, int) else dst_mac)
        / IP(src=sip, dst=dip, **ip_kw)
        / UDP(sport=sport, dport=dport)
        / payload
    )


def expected_queue(sip, dip, sport=None, dport=None, reta=None, n_queues=4, key=DEFAULT_RSS_KEY):
    """The queue a NIC picks: reference Toeplitz hash of the received 4- (or 2-) tuple, RETA."""
    data = ipaddress.IPv4Address(sip).packed + ipaddress.IPv4Address(dip).packed
    if sport is not None:
        data += struct.pack("!HH", sport, dport)
    h = toeplitz_hash(key, data)
    if reta is None:
        return (h % RETA_SIZE) % n_queues
    return int(reta[h & (RETA_SIZE - 1)])


def assert_port_clean(*ports) -> None:
    """Every frame of every port's inject/drain pool is free again."""
    for port in ports:
        port.audit()
        assert pool_audit(port.pool) == AUDIT_OK
