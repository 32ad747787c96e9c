"""Egress fault injection on a sim port (netem-like), seeded and per-queue reproducible.

Each fault is checked over thousands of frames against its configured probability, and the
frames themselves are checked: a corrupt frame differs in exactly one bit, reordered frames
arrive out of order, delayed frames arrive exactly when the virtual clock reaches them.
"""

import struct

import pytest
from scapy.layers.inet import IP

from ._sim import MAC_A, MAC_B, assert_port_clean, small_wire, udp_frame

N = 10_000


@pytest.fixture
def pair():
    w = small_wire(ring_slots=1024)
    a = w.attach(1, MAC_A, delay_slots=2048)
    b = w.attach(1, MAC_B)
    yield a, b
    w.close()


_TEMPLATES: dict[int, bytes] = {}


def numbered(i: int, size: int = 0) -> bytes:
    """A UDP frame carrying sequence number ``i`` (built from a Scapy template: fast)."""
    t = _TEMPLATES.get(size)
    if t is None:
        t = _TEMPLATES[size] = udp_frame(
            MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1000, 2000, bytes(4 + size)
        )
        t = _TEMPLATES[size] = t[:40] + b"\0\0" + t[42:]  # UDP checksum 0: none
    return t[:42] + struct.pack("!I", i) + t[46:]


def seq_of(frame: bytes) -> int:
    return struct.unpack("!I", frame[42:46])[0]


def send_all(a, b, n, now=0, size=0):
    got = []
    for i in range(n):
        a.inject(numbered(i, size), now=now)
        if i % 500 == 499:
            got += b.drain()
    return got + b.drain()


def within(count, expected, tolerance):
    return abs(count - expected) <= tolerance


def test_drop(pair):
    a, b = pair
    a.set_faults(drop=0.1, seed=1)
    got = send_all(a, b, N)
    st = a.stats()
    assert within(len(got), 0.9 * N, 300)
    assert st["fault_drop"] == N - len(got)
    seqs = [seq_of(f) for f in got]
    assert seqs == sorted(seqs)  # drops do not reorder
    assert_port_clean(a, b)


def test_duplicate(pair):
    a, b = pair
    a.set_faults(duplicate=0.2, seed=2)
    got = send_all(a, b, N)
    assert within(len(got) - N, 0.2 * N, 300)
    assert a.stats()["fault_dup"] == len(got) - N
    seqs = [seq_of(f) for f in got]
    assert sorted(set(seqs)) == list(range(N))
    assert seqs == sorted(seqs)  # a duplicate follows its original


def test_corrupt_flips_exactly_one_bit(pair):
    a, b = pair
    a.set_faults(corrupt=0.1, seed=3)
    got = send_all(a, b, N, size=20)
    assert len(got) == N
    corrupted = 0
    for i, f in enumerate(got):
        want = numbered(i, 20)
        assert len(f) == len(want)
        diff = int.from_bytes(f, "big") ^ int.from_bytes(want, "big")
        bits = diff.bit_count()
        assert bits in (0, 1)
        corrupted += bits
    assert within(corrupted, 0.1 * N, 300)
    assert a.stats()["fault_corrupt"] == corrupted


def test_ce_mark_marks_only_ect_frames(pair):
    """RFC 3168 §5, as an AQM router: an ECN-capable frame may be marked CE (its IP header
    checksum fixed); a Not-ECT frame never is (a router would drop it instead)."""
    a, b = pair
    a.set_faults(ce_mark=0.1, seed=9)
    ect = udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1000, 2000, bytes(8), tos=0x22)
    plain = udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1000, 2000, bytes(8), tos=0x20)
    got = []
    for i in range(N):
        a.inject(ect if i % 2 else plain)
        if i % 500 == 499:
            got += b.drain()
    got += b.drain()
    assert len(got) == N
    marked = 0
    for i, f in enumerate(got):
        if i % 2 == 0:
            assert f == plain
            continue
        ip = IP(f[14:])
        assert ip.tos in (0x22, 0x23)
        assert checksum_ok(f[14:34])
        if ip.tos == 0x23:
            marked += 1
            assert f[:15] + f[16:24] + f[26:] == ect[:15] + ect[16:24] + ect[26:]
        else:
            assert f == ect
    assert within(marked, 0.1 * N / 2, 200)
    assert a.stats()["fault_ce"] == marked


def checksum_ok(header: bytes) -> bool:
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def test_reorder_really_reorders(pair):
    a, b = pair
    a.set_faults(reorder=0.1, reorder_us=50, seed=4)
    got = []
    for t in range(2000):  # one frame per microsecond
        a.inject(numbered(t), now=t)
        got += b.drain()
    a.flush(now=10_000)
    got += b.drain()
    seqs = [seq_of(f) for f in got]
    assert sorted(seqs) == list(range(2000))
    held = a.stats()["fault_reorder"]
    assert within(held, 200, 60)
    # A frame held back at t=k leaves at t=k+50, before frame k+50 (due frames go first), so
    # the highest number ahead of it is k+49 (a bit less when that one was held too).
    late = 0
    running_max = -1
    for s in seqs:
        if s < running_max:
            late += 1
            assert min(s + 40, 1990) <= running_max <= s + 49, (s, running_max)
        running_max = max(running_max, s)
    assert late == held


def test_delay_releases_at_the_right_virtual_time(pair):
    a, b = pair
    a.set_faults(delay_us=500, seed=5)
    for i in range(10):
        a.inject(numbered(i), now=100 + i)
    assert b.drain() == []
    assert a.next_event() == 600
    a.flush(now=599)
    assert b.drain() == []
    a.flush(now=600)
    assert [seq_of(f) for f in b.drain()] == [0]
    a.flush(now=605)
    assert [seq_of(f) for f in b.drain()] == [1, 2, 3, 4, 5]
    assert a.next_event() == 606
    a.flush(now=10_000)
    assert [seq_of(f) for f in b.drain()] == [6, 7, 8, 9]
    assert a.next_event() == -1
    assert a.stats()["fault_delay"] == 10


def test_jitter_stays_in_its_window(pair):
    a, b = pair
    a.set_faults(delay_us=1000, jitter_us=200, seed=6)
    for i in range(500):
        a.inject(numbered(i), now=0)
    arrivals = {}
    t = 0
    while a.next_event() >= 0:
        t = a.next_event()
        a.flush(now=t)
        for f in b.drain():
            arrivals[seq_of(f)] = t
    assert len(arrivals) == 500
    times = list(arrivals.values())
    assert 800 <= min(times) < 850 and 1150 < max(times) <= 1200
    assert len(set(times)) > 100


def test_rate_limit_paces_frames(pair):
    a, b = pair
    a.set_faults(rate_bps=8_000_000, seed=7)  # one byte per microsecond
    frame_len = len(numbered(0, 54))
    assert frame_len == 100
    for i in range(5):
        a.inject(numbered(i, 54), now=0)
    times = []
    while a.next_event() >= 0:
        t = a.next_event()
        a.flush(now=t)
        times += [t] * len(b.drain())
    assert times == [100, 200, 300, 400, 500]
    # an idle link starts fresh: the next frame takes one serialization time from `now`
    a.inject(numbered(9, 54), now=10_000)
    assert a.next_event() == 10_100


def test_delay_line_overflow_is_counted():
    w = small_wire()
    a = w.attach(1, MAC_A, delay_slots=8)
    b = w.attach(1, MAC_B)
    a.set_faults(delay_us=10)
    for i in range(12):
        a.inject(numbered(i))
    st = a.stats()
    assert st["delay_overflow"] == 4 and st["fault_delay"] == 8 and st["delay_line"] == 8
    a.flush(now=10)
    assert [seq_of(f) for f in b.drain()] == list(range(8))
    assert_port_clean(a, b)
    w.close()


def test_same_seed_same_faults_other_seed_different():
    def run(seed):
        w = small_wire(ring_slots=512)
        a = w.attach(1, MAC_A)
        b = w.attach(1, MAC_B)
        a.set_faults(drop=0.3, corrupt=0.2, seed=seed)
        got = send_all(a, b, 400)
        w.close()
        return got

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_clearing_faults(pair):
    a, b = pair
    a.set_faults(drop=1.0)
    a.inject(numbered(0))
    assert b.drain() == []
    a.set_faults()
    a.inject(numbered(1))
    assert [seq_of(f) for f in b.drain()] == [1]


@pytest.mark.parametrize(
    "kw",
    [
        {"drop": -0.1},
        {"drop": 1.5},
        {"duplicate": "0.1"},
        {"corrupt": True},
        {"reorder": float("nan")},
        {"delay_us": -1},
        {"delay_us": 1.5},
        {"jitter_us": -5},
        {"rate_bps": -1},
        {"seed": -1},
        {"reorder_us": None},
        {"ce_mark": 1.5},
    ],
)
def test_bad_fault_arguments_raise(pair, kw):
    a, _ = pair
    with pytest.raises(ValueError):
        a.set_faults(**kw)
