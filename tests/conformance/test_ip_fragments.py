"""IPv4 fragments: reassembly of what arrives (RFC 791 §3.2, RFC 1122 §3.3.2: a host MUST
reassemble) and fragmentation of what is sent when a datagram exceeds the MTU with DF clear
(RFC 791 §2.3, RFC 1122 §3.3.3).

The peer sends fragments built by hand: the whole datagram is built first (so its ICMP, TCP or
UDP checksum covers all of it), then its IP payload is cut and each piece goes in its own IP
header with the same identification, the offset in 8-byte units and MF on all but the last.

As Linux (``ip_defrag``, ``ip_frag_queue``, ``inet_frag_queue_insert``, ``ip_expire``,
``ip_fragment``):

* A datagram is reassembled whatever order its fragments come in and handed on once whole: an
  echo request is answered by one reply (DF clear, not fragmented when it fits the MTU), a TCP
  segment is acknowledged and its data read, a SYN split inside its TCP header gets a SYN-ACK.
* A fragment that brings only bytes already held is a duplicate: dropped, the datagram kept, the
  bytes first received kept even if the duplicate's differ.
* The whole datagram is discarded (silently, and fragments sent after that cannot complete it)
  when a fragment partly overlaps what is held (RFC 5722's rule, which Linux applies to IPv4),
  when a last fragment (MF clear) ends before bytes already held or where an earlier last
  fragment did not, when a fragment reaches past a known end, when a fragment is empty, and when
  it would grow past 65,535 bytes.  A non-last fragment's length is cut down to a multiple of 8.
* A datagram not complete ``ipfrag_time`` seconds after its first-arriving fragment is dropped;
  if its offset-0 fragment was among those received, ICMP Time Exceeded code 1 quotes that
  fragment as received (header untouched: its total length and MF) -- as much as fits a 576-byte
  ICMP datagram, i.e. up to 548 bytes, not only the header and 8 bytes.  Later fragments do not
  extend the timer.
* An ICMP error about a reassembled datagram (port unreachable) quotes the reassembled datagram:
  its header with the full total length, no MF, offset 0 and a new header checksum.
* A reply longer than the 1500-byte MTU leaves in fragments with DF clear, one identification,
  full 1500-byte fragments (1480 bytes of data) and a last one with the rest.
"""

import itertools

import pytest
from helpers import (
    LOCAL_IP,
    PEER_IP,
    PEER_ISN,
    PEER_TS0,
    PEER_WIN,
    Conn,
    Seg,
    accept,
    handshake_passive,
    listen,
    read_all,
    syn_options,
)
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.packet import Raw
from scapy.utils import checksum

ECHO_ID = 0x4242
IP_DF = 2  # in Scapy's 3-bit flags field
IP_MF = 1
FULL = 1480  # the data of a full fragment at MTU 1500
ICMP_QUOTE_MAX = 576 - 20 - 8  # Linux quotes what fits a 576-byte ICMP datagram


# ---- building fragments ----
def pattern(n: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + 3 + salt) & 0xFF for i in range(n))


def echo_request(n: int = 1000, *, ip_id: int = 0x1234, seq: int = 1, salt: int = 0):
    """An echo request with ``n`` bytes of recognisable data (its IP payload is n + 8 bytes)."""
    return (
        IP(src=PEER_IP, dst=LOCAL_IP, id=ip_id)
        / ICMP(type=8, id=ECHO_ID, seq=seq)
        / Raw(pattern(n, salt))
    )


def frag(pkt, start: int, end: int, *, mf: bool | None = None, data: bytes | None = None):
    """The fragment of datagram ``pkt`` (a Scapy IP packet, built whole) holding bytes
    [start, end) of its IP payload: the same header (identification, protocol, TOS, TTL), offset
    start / 8, MF unless it reaches the payload's end (or as ``mf`` says).  ``data`` replaces the
    bytes carried (a forged or empty fragment)."""
    assert start % 8 == 0
    whole = IP(bytes(pkt))
    payload = bytes(whole)[4 * whole.ihl : whole.len]
    if mf is None:
        mf = end < len(payload)
    return IP(
        src=whole.src,
        dst=whole.dst,
        id=whole.id,
        proto=whole.proto,
        tos=whole.tos,
        ttl=whole.ttl,
        flags=IP_MF if mf else 0,
        frag=start // 8,
    ) / Raw(payload[start:end] if data is None else data)


def split(pkt, *cuts: int) -> list:
    """``pkt`` cut at the given payload offsets: split(p, 504) -> [0, 504), [504, end)."""
    n = len(bytes(pkt)) - 20
    bounds = [0, *cuts, n]
    return [frag(pkt, a, b) for a, b in itertools.pairwise(bounds)]


def deliver(h, pkt, *cuts: int) -> list:
    """Send ``pkt`` cut at ``cuts`` (``split``): the stack must send nothing until the last
    fragment; returns what it sent then."""
    *head, last = split(pkt, *cuts)
    for f in head:
        h.send(f)
        assert h.recv() == []
    h.send(last)
    return h.recv()


def split_full(pkt) -> list:
    """``pkt`` in fragments of 1480 bytes (what fits the MTU) and a last one with the rest."""
    n = len(bytes(pkt)) - 20
    return split(pkt, *range(FULL, n, FULL))


# ---- what the stack sent ----
def summaries(frames) -> list[str]:
    return [p.summary() for p in frames]


def ip_bytes(p) -> bytes:
    """A frame's IP datagram, Ethernet padding excluded."""
    return bytes(p[IP])[: p[IP].len]


def assert_plain_ip(p, proto: int) -> None:
    """An unfragmented datagram from the stack to the peer, DF clear, TTL 64, good checksum."""
    ip = p[IP]
    assert (ip.src, ip.dst, ip.proto, ip.ihl) == (LOCAL_IP, PEER_IP, proto, 5), p.summary()
    assert (int(ip.flags), ip.frag) == (0, 0), p.summary()
    assert ip.ttl == 64
    assert checksum(bytes(ip)[:20]) == 0


def assert_echo_reply(frames, n: int = 1000, *, seq: int = 1, salt: int = 0) -> None:
    """``frames`` is exactly one echo reply to echo_request(n, seq=seq, salt=salt): not
    fragmented, DF clear, the same identifier, sequence number and data."""
    assert len(frames) == 1, summaries(frames)
    (p,) = frames
    assert_plain_ip(p, 1)
    assert_echo_reply_bytes(ip_bytes(p)[20:], n, seq=seq, salt=salt)


def assert_echo_reply_bytes(icmp: bytes, n: int, *, seq: int = 1, salt: int = 0) -> None:
    e = ICMP(icmp)
    assert (e.type, e.code, e.id, e.seq) == (0, 0, ECHO_ID, seq)
    assert icmp[8:] == pattern(n, salt)
    assert checksum(icmp) == 0


def send_all(h, frags_) -> None:
    """Send fragments one by one; nothing may come back until the last."""
    for f in frags_[:-1]:
        h.send(f)
        assert h.recv() == []
    h.send(frags_[-1])


def watch_frames(h, duration: float, step: float = 0.05) -> list[tuple[float, object]]:
    """Let ``duration`` seconds pass in ``step``s; return (time since the call, frame) for every
    frame the stack sent meanwhile (times are upper bounds, +step)."""
    t0 = h.now
    out = []
    while h.now - t0 < duration - 1e-9:
        h.advance(min(step, duration - (h.now - t0)))
        out += [(h.now - t0, p) for p in h.recv()]
    return out


# ---- reassembly ----
def test_echo_in_two_fragments(h):
    """RFC 1122 §3.3.2 (a host MUST reassemble): a 1000-byte echo request in two fragments (504
    bytes with MF, then 504 at offset 63) gets nothing for the first and exactly one reply for the
    second: unfragmented, DF clear, TTL 64, the same identifier, sequence number and data."""
    assert_echo_reply(deliver(h, echo_request(1000), 504))
    h.audit()


def test_echo_in_three_fragments_reversed(h):
    """RFC 791 §3.2 (fragments may arrive in any order): the last fragment first, then the
    middle, then the first: one reply, when the first arrives."""
    req = echo_request(1000)
    send_all(h, split(req, 336, 672)[::-1])
    assert_echo_reply(h.recv())
    h.audit()


@pytest.mark.parametrize(
    "order",
    [(0, 1, 1, 2), (2, 0, 2, 1), (0, 0, 1, 2)],
    ids=["middle-twice", "last-twice", "first-twice"],
)
def test_exact_duplicate_fragment(h, order):
    """RFC 791 §3.2 (a duplicate adds nothing): a fragment of a three-fragment echo request sent
    twice among the others -> as Linux it is dropped and exactly one reply comes, when the set is
    complete.  Sent again after that, it starts a datagram of its own that never completes:
    nothing."""
    req = echo_request(1000)
    fs = split(req, 336, 672)
    send_all(h, [fs[i] for i in order])
    assert_echo_reply(h.recv())
    h.send(fs[order[-1]])
    assert h.recv() == []
    h.audit()


@pytest.mark.parametrize(
    "start, end", [(8, 200), (0, 200), (0, 504)], ids=["inside", "same-start", "same-range"]
)
def test_fragment_inside_held_data_is_a_duplicate(h, start, end):
    """As Linux (``inet_frag_queue_insert``: IPFRAG_DUP), a fragment lying wholly inside bytes
    already held is a duplicate even when its bytes differ: dropped, the first bytes kept.
    Held [0, 504); a forged [start, end) of 0xEE bytes; then the rest -> one reply carrying the
    original data."""
    req = echo_request(1000)
    first, last = split(req, 504)
    h.send(first)
    h.send(frag(req, start, end, mf=True, data=b"\xee" * (end - start)))
    assert h.recv() == []
    h.send(last)
    assert_echo_reply(h.recv())
    h.audit()


def test_nonfinal_fragment_length_cut_to_multiple_of_8(h):
    """RFC 791 (every fragment but the last carries a multiple of 8 bytes): as Linux
    (``ip_frag_queue``: ``end &= ~7``) a first fragment of 500 bytes with MF is taken as 496;
    the rest sent from offset 496 then completes the datagram with no overlap -> one reply with
    the right data (were the 4 bytes kept, [496, 500) would overlap and discard it)."""
    req = echo_request(1000)
    h.send(frag(req, 0, 500))
    assert h.recv() == []
    h.send(frag(req, 496, 1008))
    assert_echo_reply(h.recv())
    h.audit()


def test_interleaved_datagrams(h):
    """RFC 791 §3.2 (a datagram is identified by source, destination, protocol and
    identification): fragments of two echo requests with different identifications, interleaved,
    are reassembled apart: each reply comes when its own datagram is complete, with its own
    data."""
    a = split(echo_request(1000, ip_id=0x1234, seq=1), 504)
    b = split(echo_request(1000, ip_id=0x1235, seq=2, salt=1), 504)
    send_all(h, [a[0], b[0], b[1]])
    assert_echo_reply(h.recv(), seq=2, salt=1)
    h.send(a[1])
    assert_echo_reply(h.recv(), seq=1)
    h.audit()


def test_bad_checksum_after_reassembly(h):
    """The ICMP checksum covers the whole reassembled message: one byte flipped in the last
    fragment -> no reply.  A fresh, intact datagram is answered."""
    req = echo_request(1000)
    first, last = split(req, 504)
    bad = bytearray(bytes(last[Raw]))
    bad[10] ^= 0xFF
    send_all(h, [first, frag(req, 504, 1008, data=bytes(bad))])
    assert h.recv() == []
    send_all(h, split(echo_request(1000, ip_id=0x1235, seq=2), 504))
    assert_echo_reply(h.recv(), seq=2)
    h.audit()


# (held, bad fragment as (start, end, MF, data or None), completing): the echo request of 1200
# bytes has 1208 bytes of payload, cut A [0, 504), B [504, 800), C [800, 1008), E [1008, 1208).
BAD = {
    # RFC 5722 (a partial overlap discards the datagram; Linux: IPFRAG_OVERLAP)
    "overlap-end": ("A", (496, 696, True, b"\xee" * 200), "BCE"),
    "overlap-start": ("B", (0, 512, True, b"\xee" * 512), "ACE"),
    # ip_frag_queue: a last fragment that ends before held bytes or elsewhere than a first last
    "last-ends-below-held": ("AC", (504, 800, False, None), "BE"),
    "second-last-elsewhere": ("AE", (1208, 1216, False, b"\xee" * 8), "BC"),
    # ... a fragment past the known end, an empty fragment
    "past-known-end": ("AE", (1208, 1216, True, b"\xee" * 8), "BC"),
    "empty": ("A", (504, 504, True, b""), "BCE"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_fragment_discards_datagram(h, case):
    """As Linux, these fragments discard the whole datagram being reassembled, silently: a
    partial overlap with different bytes (RFC 5722 §4, which Linux applies to IPv4), a last
    fragment (MF clear) ending below bytes already held or away from an earlier last fragment's
    end, a fragment past the known end, an empty fragment.  The fragments that would have
    completed the datagram then get no reply (they start a new one); a fresh complete datagram
    under another identification is answered (the stack is fine)."""
    req = echo_request(1200)
    cuts = {"A": (0, 504), "B": (504, 800), "C": (800, 1008), "E": (1008, 1208)}
    held, (start, end, mf, data), completing = BAD[case]
    for name in held:
        h.send(frag(req, *cuts[name]))
    assert h.recv() == []
    h.send(frag(req, start, end, mf=mf, data=data))
    assert h.recv() == []
    for name in completing:
        h.send(frag(req, *cuts[name]))
        assert h.recv() == []
    send_all(h, split(echo_request(1200, ip_id=0x1235, seq=2), 504, 800, 1008))
    assert_echo_reply(h.recv(), 1200, seq=2)
    h.audit()


def test_datagram_over_65535_bytes_is_discarded(h):
    """RFC 791 (the total length is 16 bits): fragments covering 65,544 bytes of payload (a
    65,564-byte datagram, the "ping of death") are never handed on: as Linux nothing is sent
    (Linux discards it when reassembling, fsdp earlier: it keeps datagrams of one pool frame).
    A normal echo request afterwards is answered."""
    n = 65536 - 20 + 8
    body = bytes(ICMP(type=8, id=ECHO_ID, seq=1)) + pattern(n - 8)
    for start in range(0, n, FULL):
        end = min(start + FULL, n)
        h.send(
            IP(
                src=PEER_IP,
                dst=LOCAL_IP,
                id=0x1234,
                proto=1,
                flags=IP_MF if end < n else 0,
                frag=start // 8,
            )
            / Raw(body[start:end])
        )
    assert h.recv() == []
    send_all(h, split(echo_request(1000, ip_id=0x1235, seq=2), 504))
    assert_echo_reply(h.recv(), seq=2)
    h.audit()


# ---- TCP and UDP in fragments ----
def test_tcp_data_in_fragments(h):
    """RFC 1122 §3.3.2: a 1200-byte data segment in two IP fragments (600 bytes of TCP, then the
    rest) on an established connection: nothing after the first; after the second the stack
    ACKs it (at once, as after any first data) and the data reads back whole."""
    c = handshake_passive(h, 8080)
    data = pattern(1200)
    seg = c.seg("PA", data=data)
    seg[IP].id = 0x4321
    first, last = split(seg, 600)
    h.send(first)
    assert c.recv() == []
    h.send(last)
    c.snd_nxt = 1 + 1200
    (a,) = c.recv()
    assert (a.flags, a.seq, a.ack) == ("A", 1, 1201)
    assert read_all(c.sock) == data
    h.audit()


def test_syn_in_fragments(h):
    """A SYN whose TCP header is split: 16 bytes (ports, numbers, flags, window, checksum,
    urgent pointer) in the first fragment, the 24 bytes of options in the second.  Nothing
    after the first; a SYN-ACK after the second that shows every option was read (MSS, SACK
    permitted, timestamps echoing the SYN's TSval, window scaling); the handshake completes."""
    lst = listen(h, 8080)
    syn = IP(src=PEER_IP, dst=LOCAL_IP, id=0x999) / TCP(
        sport=40000, dport=8080, flags="S", seq=PEER_ISN, window=PEER_WIN, options=syn_options()
    )
    assert len(bytes(syn[TCP])) == 40
    frames = deliver(h, syn, 16)
    assert len(frames) == 1 and TCP in frames[0], summaries(frames)
    c = Conn(h, 8080, 40000)
    c.isn = frames[0][TCP].seq
    sa = Seg(frames[0], c)
    assert (sa.flags, sa.seq, sa.ack) == ("SA", 0, 1)
    assert sa.opts["MSS"] == 1460 and "SAckOK" in sa.opts and "WScale" in sa.opts
    assert sa.tsecr == PEER_TS0
    c.snd_nxt = c.rcv_nxt = 1
    c.last_tsval = sa.tsval
    c.send("A", 1, 1)
    c.sock = accept(lst)
    assert c.recv() == []
    h.audit()


def test_closed_port_rst_after_reassembly(h):
    """RFC 9293 §3.10.7.1 (a segment to a closed port is answered by a RST) once the datagram is
    whole: a 1000-byte ACK segment in two fragments to a port nobody listens on -> nothing for
    the first fragment, then `R seq=SEG.ACK` (Linux's reply, unfragmented)."""
    seg = (
        IP(src=PEER_IP, dst=LOCAL_IP, id=0x55)
        / TCP(sport=40000, dport=8081, flags="PA", seq=PEER_ISN, ack=77)
        / Raw(pattern(1000))
    )
    frames = deliver(h, seg, 512)
    assert len(frames) == 1 and TCP in frames[0], summaries(frames)
    t = frames[0][TCP]
    assert (str(t.flags), t.seq, t.sport, t.dport) == ("R", 77, 8081, 40000)
    h.audit()


def test_udp_to_closed_port_quotes_reassembled_datagram(h):
    """RFC 1122 §4.1.3.1 (ICMP port unreachable for a closed UDP port) after reassembly: one
    ICMP 3/3 for the datagram (none for the first fragment).  As Linux the quote is the
    *reassembled* datagram: its header with total length 1028, no MF, offset 0 and a new header
    checksum (the bytes of the datagram as if sent whole), then its data, 548 bytes in all (the
    error fills 576 bytes); TOS 0xC0, TTL 64, DF clear."""
    dgram = (
        IP(src=PEER_IP, dst=LOCAL_IP, id=0x77) / UDP(sport=5000, dport=7777) / Raw(pattern(1000))
    )
    send_all(h, split(dgram, 504))
    frames = h.recv()
    assert len(frames) == 1, summaries(frames)
    (p,) = frames
    assert_plain_ip(p, 1)
    assert p[IP].tos == 0xC0
    raw = ip_bytes(p)[20:]
    assert raw[:2] == b"\x03\x03" and raw[4:8] == b"\0\0\0\0"
    assert checksum(raw) == 0
    assert raw[8:] == bytes(dgram)[:ICMP_QUOTE_MAX]
    h.audit()


# ---- reassembly timeout ----
@pytest.mark.slow
@pytest.mark.parametrize("first_len", [504, FULL])
def test_reassembly_timeout_sends_time_exceeded(harness_factory, first_len):
    """RFC 1122 §3.3.2 (SHOULD send Time Exceeded when reassembly times out; the timeout is
    configurable: ipfrag_time 1 here) and RFC 792: only the first fragment (offset 0, MF) of a
    1600-byte echo request -> ~1 s later one ICMP Time Exceeded, code 1 (fragment reassembly),
    TOS 0xC0, TTL 64, whose quote is that fragment as received -- its header untouched (total
    length of the fragment, MF set) and as Linux as much of it as fits a 576-byte ICMP datagram:
    the whole 524-byte fragment, or the first 548 bytes of a 1500-byte one.  The datagram is
    gone: its last fragment afterwards gets no reply."""
    h = harness_factory(ipfrag_time=1)
    req = echo_request(1600)
    first = frag(req, 0, first_len)
    h.send(first)
    assert h.recv() == []
    seen = watch_frames(h, 1.5)
    assert len(seen) == 1, [(t, p.summary()) for t, p in seen]
    t, p = seen[0]
    assert 0.95 <= t <= 1.3, t
    assert_plain_ip(p, 1)
    assert p[IP].tos == 0xC0
    raw = ip_bytes(p)[20:]
    assert raw[:2] == b"\x0b\x01" and raw[4:8] == b"\0\0\0\0"
    assert checksum(raw) == 0
    quote = raw[8:]
    assert len(quote) == min(20 + first_len, ICMP_QUOTE_MAX)
    assert quote == bytes(first)[:ICMP_QUOTE_MAX]
    q = IP(quote[:20])
    assert (q.len, int(q.flags), q.frag, q.id) == (20 + first_len, IP_MF, 0, 0x1234)
    h.send(frag(req, first_len, 1608))
    assert h.recv() == []
    h.audit()


@pytest.mark.slow
def test_reassembly_timeout_without_first_fragment_is_silent(harness_factory):
    """RFC 792 / RFC 1122 §3.3.2 (Time Exceeded only if fragment zero is available): the last
    fragment of one datagram and a middle fragment of another, never completed -> when
    reassembly times out (ipfrag_time 1) nothing is sent.  Both are gone: the first fragment
    of the first datagram then gets no reply."""
    h = harness_factory(ipfrag_time=1)
    a = echo_request(1000)
    b = echo_request(1000, ip_id=0x1235, seq=2)
    h.send(frag(a, 504, 1008))
    h.send(frag(b, 336, 672))
    assert h.recv() == []
    assert watch_frames(h, 1.5) == []
    h.send(frag(a, 0, 504))
    assert h.recv() == []
    h.audit()


@pytest.mark.slow
def test_reassembly_timer_runs_from_first_arrival(harness_factory):
    """As Linux the timer starts with the datagram's first-arriving fragment and later fragments
    do not extend it (RFC 791's per-fragment TTL rule is not used): the last fragment at 0 s,
    the first (offset 0) at 0.5 s, the middle never -> Time Exceeded ~1 s after the *start*,
    quoting the offset-0 fragment whole; the middle sent then gets no reply."""
    h = harness_factory(ipfrag_time=1)
    req = echo_request(1000)
    first, middle, last = split(req, 336, 672)
    t0 = h.now
    h.send(last)
    h.advance(0.5)
    h.send(first)
    assert h.recv() == []
    since = h.now - t0
    seen = [(since + t, p) for t, p in watch_frames(h, 1.0)]
    assert len(seen) == 1, [(t, p.summary()) for t, p in seen]
    t, p = seen[0]
    assert 0.95 <= t <= 1.3, t
    raw = ip_bytes(p)[20:]
    assert raw[:2] == b"\x0b\x01"
    assert raw[8:] == bytes(first)
    h.send(middle)
    assert h.recv() == []
    h.audit()


# ---- fragmenting what is sent ----
@pytest.mark.parametrize(
    "n, layout",
    [
        (1472, [(1500, 0, False)]),
        (1473, [(1500, 0, True), (21, 1480, False)]),
        (1600, [(1500, 0, True), (148, 1480, False)]),
    ],
    ids=["1472-fits", "1473", "1600"],
)
def test_oversize_reply_is_fragmented(h, n, layout):
    """RFC 791 §2.3 / RFC 1122 §3.3.3 (a datagram larger than the MTU, DF clear, is sent in
    fragments): an echo request with ``n`` bytes of data (sent in 1480-byte fragments) is
    answered by an echo reply of 28 + n bytes, which as Linux leaves as (total length, offset,
    MF): a 1500-byte datagram still whole; above that full 1500-byte fragments (1480 bytes of
    data, offset 0) and a last one with the rest (offset 1480).  All fragments: DF clear, the same
    identification, TTL 64, header checksum good; joined, they are the reply with the request's
    identifier, sequence number and data."""
    send_all(h, split_full(echo_request(n)))
    frames = h.recv()
    got = [(p[IP].len, p[IP].frag * 8, bool(int(p[IP].flags) & IP_MF)) for p in frames]
    assert got == layout, summaries(frames)
    assert len({p[IP].id for p in frames}) == 1
    for p in frames:
        ip = p[IP]
        assert (ip.src, ip.dst, ip.proto, ip.ihl, ip.ttl) == (LOCAL_IP, PEER_IP, 1, 5, 64)
        assert not int(ip.flags) & IP_DF
        assert checksum(bytes(ip)[:20]) == 0
    assert_echo_reply_bytes(b"".join(ip_bytes(p)[20:] for p in frames), n)
    h.audit()
