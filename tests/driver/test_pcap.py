"""pcap capture: the classic-format writer and the jitted per-core capture ring."""

import io
import shutil
import struct
import subprocess

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from fsdp.driver.pcap import (
    CAPTURE_DIR_RX,
    CAPTURE_DIR_TX,
    PcapWriter,
    capture_append,
    capture_drain,
    capture_drops,
    capture_ring_create,
)

from ._sim import MAC_A, MAC_B, tcp_frame


def frames(n, payload=10):
    return [
        tcp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1000 + i, 80, b"p" * payload)
        for i in range(n)
    ]


def test_writer_roundtrip_with_scapy(tmp_path):
    path = tmp_path / "out.pcap"
    fs = frames(3)
    times = [0, 1_500_000, 2_000_001]
    with PcapWriter(str(path)) as w:
        for f, t in zip(fs, times, strict=True):
            w.write(f, t)
    raw = path.read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack("<IHHiIII", raw[:24])
    assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 65535, 1)
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == fs
    assert [int(round(float(p.time) * 1e6)) for p in pkts] == times
    assert pkts[1][TCP].sport == 1001


def test_writer_to_file_object_and_snaplen():
    buf = io.BytesIO()
    w = PcapWriter(buf, snaplen=40)
    (f,) = frames(1, payload=100)
    w.write(f, 7)
    w.close()
    w.close()
    buf.seek(0)
    (p,) = rdpcap(buf)
    assert bytes(p) == f[:40] and p.wirelen == len(f)
    with pytest.raises(ValueError):
        PcapWriter(io.BytesIO(), snaplen=0)


def test_capture_ring_append_drain_and_drops(tmp_path):
    ring = capture_ring_create(slots=4, snaplen=64)
    fs = frames(6, payload=60)
    pool = np.zeros((6, 2048), np.uint8)
    for i, f in enumerate(fs):
        pool[i, 128 : 128 + len(f)] = np.frombuffer(f, np.uint8)
    results = [
        capture_append(
            ring, pool[i], 128, len(fs[i]), 1000 + i, CAPTURE_DIR_RX if i % 2 else CAPTURE_DIR_TX
        )
        for i in range(6)
    ]
    assert results == [True] * 4 + [False] * 2
    assert capture_drops(ring) == 2
    path = tmp_path / "ring.pcap"
    with PcapWriter(str(path), snaplen=64) as w:
        assert capture_drain(ring, w) == 4
    assert capture_drain(ring, None) == 0
    pkts = rdpcap(str(path))
    assert [bytes(p) for p in pkts] == [f[:64] for f in fs[:4]]
    assert [p.wirelen for p in pkts] == [len(f) for f in fs[:4]]
    assert list(ring.direction[:4]) == [CAPTURE_DIR_TX, CAPTURE_DIR_RX] * 2
    # room again after draining, and the ring wraps
    assert capture_append(ring, pool[4], 128, len(fs[4]), 5000, CAPTURE_DIR_RX)
    with PcapWriter(io.BytesIO()) as w:
        assert capture_drain(ring, w) == 1 and w.frames == 1


def test_tcpdump_reads_it(tmp_path):
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        print("tcpdump is not installed: skipping the tcpdump -r check")
        pytest.skip("tcpdump not installed")
    path = tmp_path / "td.pcap"
    with PcapWriter(str(path)) as w:
        for i, f in enumerate(frames(3)):
            w.write(f, i * 1000)
    out = subprocess.run(
        [tcpdump, "-n", "-r", str(path)], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3 and "10.0.0.1.1000 > 10.0.0.2.80" in lines[0]


def test_scapy_parses_captured_ip():
    buf = io.BytesIO()
    with PcapWriter(buf) as w:
        w.write(bytes(Ether() / IP(dst="1.2.3.4") / TCP()), 0)
        data = buf.getvalue()
    (p,) = rdpcap(io.BytesIO(data))
    assert p[IP].dst == "1.2.3.4"
