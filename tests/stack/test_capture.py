"""pcap capture of a stack, read back with Scapy (and tcpdump where installed)."""

import itertools
import os
import shutil
import subprocess

import pytest
from scapy.layers.inet import ICMP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

import fsdp

_n = itertools.count()


def test_capture_of_a_ping_exchange(tmp_path):
    wire = f"sim:captest-{os.getpid()}-{next(_n)}"
    path = tmp_path / "a.pcap"
    with fsdp.Stack(nic=wire, ip="10.7.0.1/24") as a, fsdp.Stack(nic=wire, ip="10.7.0.2/24") as b:
        a.capture(str(path))
        rtts = a.ping("10.7.0.2", 2, timeout=2.0)
        assert all(r is not None for r in rtts)
        a.stop_capture()
        b.audit()
    pkts = rdpcap(str(path))
    kinds = [("arp", p[ARP].op) if p.haslayer(ARP) else ("icmp", p[ICMP].type) for p in pkts]
    # Wall-clock time: a cold JIT compile inside the first call can make ARP retransmit, so ARP
    # is checked loosely: requests first, then at least one reply before the first echo.
    first_icmp = kinds.index(("icmp", 8))
    assert kinds[0] == ("arp", 1) and ("arp", 2) in kinds[:first_icmp]
    assert [k for k in kinds if k[0] == "icmp"] == [("icmp", 8), ("icmp", 0)] * 2
    ts = [float(p.time) for p in pkts]
    assert ts == sorted(ts)
    if shutil.which("tcpdump"):
        out = subprocess.run(
            ["tcpdump", "-nr", str(path)], capture_output=True, text=True, check=True
        )
        assert out.stdout.count("ICMP echo request") == 2


def test_capture_one_queue_only(tmp_path):
    wire = f"sim:captest-{os.getpid()}-{next(_n)}"
    with fsdp.Stack(nic=wire, ip="10.7.1.1/24", cores=2) as a:
        with pytest.raises(ValueError):
            a.capture(str(tmp_path / "x.pcap"), queue=2)
        a.capture(str(tmp_path / "q1.pcap"), queue=1)
        a.stop_capture()
    assert len(rdpcap(str(tmp_path / "q1.pcap"))) == 0


def test_capture_started_mid_connection_keeps_its_sockets_working(tmp_path):
    """capture() rebuilds each core's CoreRef (the capture ring is new): the sockets' calls,
    which go straight to each core's compiled entry, follow it, and the data sent after the
    capture began is in the file."""
    from scapy.layers.inet import TCP

    wire = f"sim:captest-{os.getpid()}-{next(_n)}"
    path = tmp_path / "mid.pcap"
    with fsdp.Stack(nic=wire, ip="10.7.2.1/24") as a, fsdp.Stack(nic=wire, ip="10.7.2.2/24") as b:
        ls = a.socket()
        ls.bind(("0.0.0.0", 7))
        ls.listen(4)
        c = b.socket()
        c.settimeout(5)
        c.connect(("10.7.2.1", 7))
        ls.settimeout(5)
        s, _ = ls.accept()
        s.settimeout(5)
        a.capture(str(path))
        c.sendall(b"before-close")
        assert s.recv(100) == b"before-close"
        s.sendall(b"reply")
        assert c.recv(100) == b"reply"
        s.close()
        assert c.recv(100) == b""
        c.close()
        a.stop_capture()
    payloads = [bytes(p[TCP].payload) for p in rdpcap(str(path)) if p.haslayer(TCP)]
    assert b"before-close" in payloads and b"reply" in payloads


def test_capture_keeps_only_what_its_filter_matches(tmp_path):
    """Stack.capture(host=, port=, proto=): tcpdump's primitives, as fsdp capture's; a ping and
    two connections, of which the file keeps one connection's frames."""
    from scapy.layers.inet import TCP

    wire = f"sim:captest-{os.getpid()}-{next(_n)}"
    path = tmp_path / "port.pcap"
    with fsdp.Stack(nic=wire, ip="10.7.2.1/24") as a, fsdp.Stack(nic=wire, ip="10.7.2.2/24") as b:
        with pytest.raises(ValueError):
            a.capture(str(tmp_path / "x.pcap"), host="10.7.2")
        with pytest.raises(ValueError):
            a.capture(str(tmp_path / "x.pcap"), proto="sctp")
        a.capture(str(path), port=[8092], proto="tcp")
        assert a.ping("10.7.2.2", 1, timeout=2.0)[0] is not None
        for port in (8091, 8092):
            ls = a.socket()
            ls.bind(("0.0.0.0", port))
            ls.listen()
            c = b.socket()
            c.settimeout(10)
            c.connect(("10.7.2.1", port))
            s, _ = ls.accept()
            s.settimeout(10)
            c.sendall(b"port %d" % port)
            assert s.recv(100) == b"port %d" % port
            c.close()
            s.close()
            ls.close()
        for _ in range(50):
            a.poll()
            b.poll()
        a.stop_capture()
    pkts = rdpcap(str(path))
    assert len(pkts) >= 6 and all(TCP in p and 8092 in (p[TCP].sport, p[TCP].dport) for p in pkts)
    assert [bytes(p[TCP].payload) for p in pkts if len(p[TCP].payload)] == [b"port 8092"]
