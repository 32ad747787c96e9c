"""``fsdp capture --out FILE.pcap``: another process writes a pcap of what a running stack
receives and sends, from the capture ring in the stack's stats segment (CONTRACT.md §3)."""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.all import TCP, Raw, rdpcap

import fsdp

ROOT = Path(__file__).resolve().parents[2]


def _fsdp(*argv, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "fsdp", *argv], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT, **kw)


def _start_capture(*argv):
    """``fsdp capture`` in the background, returned once it says it is writing."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "fsdp", "capture", *argv], env=env, cwd=ROOT,
                         stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    assert "writing" in line, line + p.stderr.read()
    return p


def _stop_capture(p, stacks):
    """SIGINT, keeping the stacks polled meanwhile (blocking calls would, too)."""
    p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while p.poll() is None and time.monotonic() < deadline:
        for s in stacks:
            s.poll()
        time.sleep(0.001)
    rest = p.stderr.read()
    assert p.wait(5) == 0, rest
    return rest


def _exchange(server, client, port):
    ls = server.socket()
    ls.bind(("0.0.0.0", port))
    ls.listen()
    c = client.socket()
    c.settimeout(10)
    c.connect(("10.4.2.1", port))
    a, _ = ls.accept()
    a.settimeout(10)
    c.sendall(b"hello over the wire")
    assert a.recv(100) == b"hello over the wire"
    a.sendall(b"and back")
    assert c.recv(100) == b"and back"
    c.close()
    assert a.recv(100) == b""
    a.close()
    ls.close()
    for _ in range(50):  # the last ACKs
        server.poll()
        client.poll()


def test_capture_writes_what_the_stack_sent_and_received(fresh_wire, tmp_path):
    out = tmp_path / "server.pcap"
    mine = tmp_path / "client.pcap"
    # the client has no stats segment: the server is the one stack of this process to capture
    with fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.1/24") as server, \
            fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.2/24", stats_segment=False) as client:
        started = time.time()
        p = _start_capture("--out", str(out), "--pid", str(os.getpid()))
        # the same frames, seen from the other end: the client's own in-process capture
        client.capture(str(mine))
        _exchange(server, client, 8080)
        client.stop_capture()
        summary = _stop_capture(p, [server, client])
        ended = time.time()
    assert "0 dropped" in summary
    theirs = rdpcap(str(out))
    ours = rdpcap(str(mine))
    assert len(theirs) >= 9  # ARP, three-way handshake, two data segments, two FINs, ACKs
    # every frame the client sent the server received, and the other way round, byte for byte
    assert sorted(bytes(f) for f in theirs) == sorted(bytes(f) for f in ours)
    tcp = [f for f in theirs if TCP in f]
    assert tcp[0][TCP].flags == "S" and tcp[1][TCP].flags == "SA"
    payloads = [bytes(f[Raw].load) for f in tcp if Raw in f]
    assert payloads == [b"hello over the wire", b"and back"]
    assert sum(1 for f in tcp if f[TCP].flags.F) == 2
    stamps = [float(f.time) for f in theirs]
    assert stamps == sorted(stamps)
    assert started - 1 <= stamps[0] and stamps[-1] <= ended + 1  # wall-clock time, like tcpdump


def test_one_capture_at_a_time_and_the_stack_gets_its_ring_back(fresh_wire, tmp_path):
    with fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.1/24") as server, \
            fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.2/24", stats_segment=False) as client:
        p = _start_capture("--out", str(tmp_path / "a.pcap"), "--pid", str(os.getpid()))
        try:
            r = _fsdp("capture", "--out", str(tmp_path / "b.pcap"), "--pid", str(os.getpid()))
            assert r.returncode == 1 and r.stderr.count("\n") == 1
            assert "already being captured" in r.stderr
            with pytest.raises(OSError) as e:
                server.capture(str(tmp_path / "c.pcap"))
            assert e.value.errno == errno.EBUSY
        finally:
            _stop_capture(p, [server, client])
        # the stack's own capture works once the other has gone, and gives its ring back after
        server.capture(str(tmp_path / "own.pcap"))
        _exchange(server, client, 8081)
        server.stop_capture()
        assert any(Raw in f for f in rdpcap(str(tmp_path / "own.pcap")))
        r = _fsdp("capture", "--out", str(tmp_path / "d.pcap"), "--pid", str(os.getpid()),
                  "--seconds", "0.2")
        assert r.returncode == 0, r.stderr


def test_a_killed_capture_leaves_the_next_one_free(fresh_wire, tmp_path):
    with fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.1/24") as server, \
            fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.2/24", stats_segment=False) as client:
        p = _start_capture("--out", str(tmp_path / "a.pcap"), "--pid", str(os.getpid()))
        p.kill()
        p.wait(10)
        p = _start_capture("--out", str(tmp_path / "b.pcap"), "--pid", str(os.getpid()))
        _exchange(server, client, 8082)
        assert "0 dropped" in _stop_capture(p, [server, client])
        assert any(Raw in f for f in rdpcap(str(tmp_path / "b.pcap")))


def test_capture_errors_are_one_line(fresh_wire, tmp_path):
    from fsdp.core.statseg import live_segments

    r = _fsdp("capture", "--out", str(tmp_path / "x.pcap"), "--pid", "999999")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no running fsdp stack" in r.stderr
    for bad in (["--count", "0"], ["--snaplen", "0"], ["--host", "::1"], ["--host", "10.1"],
                ["--port", "70000"]):
        r = _fsdp("capture", "--out", str(tmp_path / "x.pcap"), *bad)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, (bad, r.stderr)
    me = str(os.getpid())
    with fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.1/24") as a, \
            fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.2/24", stats_segment=False):
        r = _fsdp("capture", "--out", str(tmp_path / "no-dir" / "x.pcap"), "--pid", me)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        # two running stacks (a second one here: other processes' come and go) and no
        # --pid: the capture must be told which
        with fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.4/24"):
            assert len(live_segments()) > 1
            r = _fsdp("capture", "--out", str(tmp_path / "x.pcap"), "--seconds", "0.1")
            assert r.returncode == 1 and "choose with --pid P or --all" in r.stderr, r.stderr
        # nothing was left switched on by the failure: the stack can capture itself
        a.capture(str(tmp_path / "own.pcap"))
        a.stop_capture()
    with fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.3/24", capture_slots=0):
        r = _fsdp("capture", "--out", str(tmp_path / "x.pcap"), "--pid", me, "--seconds", "0.1")
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "capture_slots=0" in r.stderr


def _filter_frames():
    """Frames of every kind the filter tells apart: TCP and UDP both ways, ICMP, ARP request and
    reply, IPv4 with options, a later fragment (no ports in it), IPv6, a cut frame."""
    from scapy.all import ARP, ICMP, IP, UDP, Ether, IPv6

    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    a, b, c = "10.4.2.1", "10.4.2.2", "10.4.2.3"
    return [bytes(f) for f in (
        e / IP(src=a, dst=b) / TCP(sport=40000, dport=80),
        e / IP(src=b, dst=a) / TCP(sport=80, dport=40000, flags="SA"),
        e / IP(src=c, dst=a) / TCP(sport=443, dport=40001),
        e / IP(src=a, dst=c) / UDP(sport=53, dport=5353) / Raw(b"q"),
        e / IP(src=b, dst=c) / UDP(sport=40002, dport=80),
        e / IP(src=a, dst=b) / ICMP(),
        e / IP(src=c, dst=b, options=b"\x94\x04\x00\x00") / TCP(sport=22, dport=80),
        e / IP(src=a, dst=b, frag=185, proto=6) / Raw(b"\x00\x50\x00\x50" + b"x" * 20),
        Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=a, pdst=c),
        e / ARP(op=2, psrc=c, pdst=b),
        e / IPv6() / TCP(sport=80, dport=80),
        e / IPv6() / UDP(sport=53, dport=53),
    )] + [bytes(e / IP(src=a, dst=b) / TCP(sport=80, dport=80))[:30]]


FILTERS = [  # (hosts, ports, protocols), and the same as a tcpdump expression
    ((), (), (), ""),
    (("10.4.2.3",), (), (), "host 10.4.2.3"),
    ((), (80,), (), "port 80"),
    ((), (80, 53), (), "(port 80 or port 53)"),
    ((), (), ("icmp", "arp"), "(icmp or arp)"),
    ((), (), ("udp",), "udp"),
    (("10.4.2.1", "10.4.2.2"), (80,), ("tcp",), "(host 10.4.2.1 or host 10.4.2.2) and port 80 "
                                                 "and tcp"),
    (("10.4.2.2",), (), ("arp",), "host 10.4.2.2 and arp"),
]


def test_capture_filter_selects_the_frames_tcpdump_selects(tmp_path):
    """fsdp capture's --host/--port/--proto against tcpdump's own filter on the same frames
    (the frames tcpdump reads from a pcap and writes back out are the ones its expression
    matches)."""
    import shutil

    from scapy.all import Ether, wrpcap

    from fsdp.driver.pcap import CaptureFilter

    frames = _filter_frames()
    # what each filter must keep, by index: written out by hand, then checked against tcpdump
    expected = [list(range(13)), [2, 3, 4, 6, 8, 9], [0, 1, 4, 6, 10], [0, 1, 3, 4, 6, 10, 11],
                [5, 8, 9], [3, 4, 11], [0, 1, 6], [9]]
    for (hosts, ports, protos, _), want in zip(FILTERS, expected, strict=True):
        f = CaptureFilter(hosts, ports, protos)
        got = [i for i, fr in enumerate(frames) if f.matches(fr)]
        assert got == want, (hosts, ports, protos, got)
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump is not installed (scripts/test installs it as root): the filter "
                    "was checked against the hand-written selections only")
    src = tmp_path / "all.pcap"
    wrpcap(str(src), [Ether(x) for x in frames])
    for (*_, expr), want in zip(FILTERS, expected, strict=True):
        out = tmp_path / "out.pcap"
        r = subprocess.run([tcpdump, "-r", str(src), "-w", str(out), *expr.split()],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        kept = [bytes(p) for p in rdpcap(str(out))] if out.stat().st_size > 24 else []
        assert kept == [frames[i] for i in want], expr


def test_capture_cli_filters_by_port(fresh_wire, tmp_path):
    out = tmp_path / "port.pcap"
    with fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.1/24") as server, \
            fsdp.Stack(nic=f"sim:{fresh_wire}", ip="10.4.2.2/24", stats_segment=False) as client:
        p = _start_capture("--out", str(out), "--pid", str(os.getpid()), "--port", "8084",
                           "--proto", "tcp", "--snaplen", "60")
        _exchange(server, client, 8083)
        _exchange(server, client, 8084)
        summary = _stop_capture(p, [server, client])
    frames = rdpcap(str(out))
    assert len(frames) >= 8 and all(TCP in f for f in frames)
    assert all(8084 in (f[TCP].sport, f[TCP].dport) for f in frames)
    # 60 bytes of each (Ethernet, IPv4, TCP with timestamps: 66 bytes of headers), and the
    # length on the wire of every frame, as tcpdump -s 60 writes them
    assert all(len(bytes(f)) == 60 for f in frames)
    wire_lengths = [f.wirelen for f in frames]
    assert min(wire_lengths) >= 66 and 66 + len(b"hello over the wire") in wire_lengths
    n_out = int(summary.split(" filtered out")[0].rsplit(", ", 1)[1])
    assert n_out >= 8, summary  # the other connection's frames (and the ARP exchange)
