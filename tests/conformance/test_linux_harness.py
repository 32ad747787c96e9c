"""The LinuxHarness itself (not a conformance scenario): the namespace, the TAP, cleanup."""

import os
import socket
import subprocess

import pytest
from helpers import LOCAL_IP, handshake_passive, linux_harness_class
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether


def namespaces() -> list[str]:
    """This process's harness namespaces (``fsdp-lx-<pid>-<n>``): another test worker makes and
    removes its own meanwhile."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mine = f"fsdp-lx-{os.getpid()}-"
    return [n for n in (line.split()[0] for line in out.splitlines() if line.strip())
            if n.startswith(mine)]


@pytest.fixture
def lh():
    h = linux_harness_class()()
    yield h
    h.close()


def test_namespace_is_private_and_removed_on_close():
    h = linux_harness_class()()
    assert h.netns in namespaces()
    assert h.netns.startswith(f"fsdp-lx-{os.getpid()}-")
    h.close()
    h.close()  # idempotent
    assert h.netns not in namespaces()


def test_context_manager_cleans_up_on_error():
    with pytest.raises(RuntimeError), linux_harness_class()() as h:
        name = h.netns
        raise RuntimeError("boom")
    assert name not in namespaces()


def test_unknown_option_is_a_type_error():
    before = namespaces()
    with pytest.raises(TypeError):
        linux_harness_class()(no_such_option=1)
    assert namespaces() == before


def test_options_reach_the_namespace_sysctls():
    with linux_harness_class()(tcp_syncookies=2, tcp_fin_timeout=7) as h:
        assert h.sysctl("net/ipv4/tcp_syncookies") == "2"
        assert h.sysctl("net/ipv4/tcp_fin_timeout") == "7"
        assert h.sysctl("net/ipv4/tcp_congestion_control") == "reno"


def test_sockets_live_in_the_namespace(lh):
    s = lh.socket()
    assert s.gettimeout() == 0.0  # non-blocking
    s.bind((LOCAL_IP, 8080))  # only the namespace has this address
    with pytest.raises(OSError), socket.socket() as outside:
        outside.bind((LOCAL_IP, 8080))


def test_frames_carry_full_checksums(lh):
    c = handshake_passive(lh, 8080)
    c.sock.send(b"x" * 3000)
    for s in c.recv():
        p = s.pkt
        raw_ip, raw_tcp = p[IP].chksum, p[TCP].chksum
        fresh = Ether(bytes(p))
        del fresh[IP].chksum
        del fresh[TCP].chksum
        fresh = Ether(bytes(fresh))
        assert (fresh[IP].chksum, fresh[TCP].chksum) == (raw_ip, raw_tcp)
        assert len(bytes(p)) <= 1514  # no GSO super-frames


def test_the_wire_is_quiet(lh):
    """No router solicitations, MLD, IGMP or ARP from an idle namespace."""
    lh.advance(0.5)
    assert lh.recv() == []


def test_runt_frames_are_dropped(lh):
    lh.send(b"\x02\x00\x00\x00\x00\x01\x02\x00")
    assert lh.recv() == []


def test_arp_requests_are_answered(lh):
    from scapy.layers.l2 import ARP

    lh.send(Ether(src=lh.peer_mac, dst="ff:ff:ff:ff:ff:ff") /
            ARP(op=1, hwsrc=lh.peer_mac, psrc=lh.peer_ip, pdst=lh.ip))
    (r,) = lh.recv()
    assert r[ARP].op == 2 and r[ARP].hwsrc == lh.mac


def test_real_time_clock(lh):
    t = lh.now
    lh.advance(0.2)
    assert 0.19 <= lh.now - t <= 0.35
    with pytest.raises(ValueError):
        lh.advance(-1)
