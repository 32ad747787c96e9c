"""IPv4 fragment reassembly and fragmentation through the harness (RFC 791 §3.2, RFC 1122 §3.3.2;
fsdp.tcp.ipfrag, fsdp.tcp.ip.ip_output).  What Linux does with the same fragments is held in
tests/conformance/test_ip_fragments.py; these check fsdp's own bounds and counters."""

import errno

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP

from fsdp.tcp.ipfrag import IPFRAG_SLOTS, MAX_DATAGRAM
from fsdp.testing import Harness

SRC, DST = "192.0.2.2", "192.0.2.1"
PEER_ISN = 1000


def datagram(payload_layer, ident=0x4242, **ip):
    """The bytes of a whole IP datagram (checksums computed over all of it)."""
    return bytes(IP(src=SRC, dst=DST, id=ident, **ip) / payload_layer)


def cut(whole: bytes, *pieces: tuple[int, int]) -> list[IP]:
    """Fragments of the datagram ``whole`` carrying payload bytes [start, end) each, in the
    order given; MF is set on every piece that does not reach the end."""
    hdr = IP(whole)
    payload = whole[hdr.ihl * 4 :]
    out = []
    for start, end in pieces:
        more = end < len(payload)
        out.append(IP(src=hdr.src, dst=hdr.dst, id=hdr.id, proto=hdr.proto, ttl=hdr.ttl,
                      flags="MF" if more else 0, frag=start // 8) / payload[start:end])
    return out


def echo(n: int, ident=0x4242, seq=1):
    data = bytes((i * 7 + 3) & 0xFF for i in range(n))
    return datagram(ICMP(id=0x77, seq=seq) / data, ident), data


def send_all(h, frags):
    for f in frags:
        h.send(f)


def test_an_echo_request_in_two_fragments_is_answered_whole(harness):
    whole, data = echo(1000)
    send_all(harness, cut(whole, (0, 504), (504, 1008)))
    (r,) = harness.recv()
    assert r[IP].frag == 0 and r[IP].flags == 0 and r[IP].len == 28 + 1000
    assert (r[ICMP].type, r[ICMP].id, r[ICMP].seq, r[ICMP].load) == (0, 0x77, 1, data)
    s = harness.stats()
    assert (s["ip_fragment"], s["ip_reasm_ok"], s["ip_reasm_fails"]) == (2, 1, 0)
    harness.audit()


def test_fragments_in_reverse_order_and_a_duplicate(harness):
    whole, data = echo(1200)
    a, b, c = cut(whole, (0, 400), (400, 800), (800, 1208))
    send_all(harness, [c, b, b, a])
    (r,) = harness.recv()
    assert r[ICMP].load == data
    s = harness.stats()
    assert (s["ip_fragment"], s["ip_frag_dup"], s["ip_reasm_ok"]) == (4, 1, 1)
    harness.audit()


def test_a_partly_overlapping_fragment_discards_the_datagram(harness):
    whole, data = echo(800)
    a, b = cut(whole, (0, 400), (400, 808))
    harness.send(a)
    harness.send(cut(whole, (200, 600))[0])  # bytes 200..400 are already held
    harness.send(b)  # starts a new datagram under the same id: never complete
    assert harness.recv() == []
    s = harness.stats()
    assert (s["ip_reasm_overlaps"], s["ip_reasm_fails"], s["ip_reasm_ok"]) == (1, 1, 0)
    harness.audit()  # the held fragment's frame is accounted for
    whole2, data2 = echo(800, ident=0x4343)
    send_all(harness, cut(whole2, (0, 400), (400, 808)))
    (r,) = harness.recv()
    assert r[ICMP].load == data2
    harness.audit()


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param((200, 304), id="last-fragment-before-held-bytes"),
        pytest.param((400, 600), id="a-second-different-end"),
        pytest.param((400, 400), id="empty-fragment"),
    ],
)
def test_inconsistent_ends_discard_the_datagram(harness, bad):
    whole, _ = echo(800)
    payload = whole[20:]
    start, end = bad
    last = cut(whole, (400, 808))[0]  # the last fragment: the payload is 808 bytes
    # MF clear on the first two (a second end), set on the empty one
    flags = "MF" if start == end else 0
    harness.send(last)
    harness.send(IP(src=SRC, dst=DST, id=0x4242, proto=1, flags=flags, frag=start // 8)
                 / payload[start:end])
    harness.send(cut(whole, (0, 400))[0])  # would have completed it: starts a new one instead
    assert harness.recv() == []
    s = harness.stats()
    assert (s["ip_reasm_fails"], s["ip_reasm_ok"]) == (1, 0)
    harness.audit()


def test_reassembly_timeout_sends_time_exceeded_quoting_the_first_fragment():
    with Harness(ipfrag_time=2) as h:
        whole, _ = echo(1000)
        first, last = cut(whole, (0, 600), (600, 1008))
        h.send(first)
        h.advance(1.9)
        assert h.recv() == []
        h.advance(0.2)
        (r,) = h.recv()
        assert (r[IP].dst, r[ICMP].type, r[ICMP].code) == (SRC, 11, 1)
        assert r[IP].len == 576
        quote = bytes(r[IP])[28:]
        assert quote == bytes(first)[: 576 - 28]  # the first fragment as received, cut at 576
        s = h.stats()
        assert (s["ip_reasm_timeout"], s["ip_reasm_fails"], s["icmp_errors_out"]) == (1, 1, 1)
        # without the first fragment: given up as quietly
        h.send(cut(whole, (600, 1008))[0])
        h.advance(2.5)
        assert h.recv() == []
        assert h.stats()["ip_reasm_timeout"] == 2
        h.audit()


def test_a_datagram_larger_than_a_frame_is_discarded_and_counted(harness):
    n = MAX_DATAGRAM - 20 + 8  # 8 bytes more than one frame holds
    whole = datagram(UDP(sport=5, dport=7) / bytes(n - 8))
    pieces = [(i, min(i + 1000, n)) for i in range(0, n, 1000)]
    send_all(harness, cut(whole, *pieces))
    assert harness.recv() == []
    s = harness.stats()
    assert (s["ip_reasm_oversize"], s["ip_reasm_fails"], s["udp_in"]) == (1, 1, 0)
    harness.audit()


def test_the_largest_datagram_a_frame_holds_is_reassembled(harness):
    n = MAX_DATAGRAM - 20 - 8  # ICMP data bytes
    whole, data = echo(n)
    pieces = [(i, min(i + 1000, n + 8)) for i in range(0, n + 8, 1000)]
    send_all(harness, cut(whole, *pieces))
    frags = harness.recv()
    assert len(frags) == 2  # the reply exceeds the 1500-byte MTU: sent in two fragments
    assert harness.stats()["ip_reasm_ok"] == 1
    harness.audit()


def test_with_every_slot_in_use_a_new_datagram_evicts_the_oldest(harness):
    seconds = []
    for i in range(IPFRAG_SLOTS + 1):
        whole, _ = echo(100, ident=i + 1, seq=i)
        a, b = cut(whole, (0, 56), (56, 108))
        seconds.append(b)
        harness.send(a)
        harness.advance(0.001)  # (each one younger than the last)
    s = harness.stats()
    assert (s["ip_reasm_evicted"], s["ip_reasm_fails"]) == (1, 1)
    harness.audit()
    send_all(harness, seconds[1:])  # completes every one but the first, which lost its half
    replies = harness.recv()
    assert sorted(p[ICMP].seq for p in replies) == list(range(1, IPFRAG_SLOTS + 1))
    assert harness.stats()["ip_reasm_ok"] == IPFRAG_SLOTS
    harness.send(seconds[0])  # a datagram of its own now, never complete
    assert harness.recv() == []
    harness.audit()


def test_an_echo_reply_larger_than_the_mtu_is_sent_in_fragments(harness):
    whole, data = echo(1600)
    send_all(harness, cut(whole, (0, 800), (800, 1608)))
    out = harness.recv()
    assert [(p[IP].frag * 8, p[IP].len, str(p[IP].flags)) for p in out] == [
        (0, 1500, "MF"), (1480, 20 + 128, "")
    ]
    assert out[0][IP].id == out[1][IP].id
    reply = IP(bytes(out[0][IP])[:20]) / (bytes(out[0][IP].payload) + bytes(out[1][IP].payload))
    icmp = ICMP(bytes(reply.payload))
    assert (icmp.type, icmp.id, icmp.seq, icmp.load) == (0, 0x77, 1, data)
    check = ICMP(bytes(icmp))
    del check.chksum
    assert ICMP(bytes(check)).chksum == icmp.chksum
    s = harness.stats()
    assert (s["ip_frag_ok"], s["ip_frag_creates"]) == (1, 2)
    harness.audit()


def _passive_open(h, port, sport):
    """Handshake as the peer with a listener on ``port``; returns (accepted socket, our next
    sequence number, the stack's next sequence number)."""
    h.send(IP(src=SRC, dst=DST) / TCP(sport=sport, dport=port, flags="S", seq=PEER_ISN,
                                      options=[("MSS", 1460)]))
    (sa,) = h.recv()
    assert sa[TCP].flags == "SA"
    h.send(IP(src=SRC, dst=DST) / TCP(sport=sport, dport=port, flags="A", seq=PEER_ISN + 1,
                                      ack=sa[TCP].seq + 1, window=65535))
    return PEER_ISN + 1, sa[TCP].seq + 1


def test_a_tcp_segment_in_fragments_is_received(harness):
    ls = harness.socket()
    ls.bind((DST, 80))
    ls.listen(8)
    seq, ack = _passive_open(harness, 80, 40000)
    conn, _ = ls.accept()
    conn.setblocking(False)
    body = bytes(range(256)) * 5
    whole = datagram(TCP(sport=40000, dport=80, flags="PA", seq=seq, ack=ack, window=65535)
                     / body)
    send_all(harness, cut(whole, (0, 16), (16, 640), (640, 20 + len(body))))
    assert conn.recv(4096) == body
    harness.advance(0.5)
    acks = [p for p in harness.recv() if TCP in p]
    assert acks and acks[-1][TCP].ack == seq + len(body)
    assert harness.stats()["ip_reasm_ok"] == 1
    harness.audit()  # (before close: its FIN would hold a frame until acknowledged)


def test_reassembled_segments_go_to_the_core_that_owns_the_flow():
    """On four cores the NIC steers fragments by their addresses only, so every fragment lands
    on one core; a reassembled SYN or data segment whose 4-tuple RSS gives another core is
    handed to that core (not answered by the landing core's listener, nor reset)."""
    with Harness(cores=4) as h:
        ls = h.socket()
        ls.bind((DST, 80))
        ls.listen(64)
        conns = []
        for sport in range(41000, 41012):
            syn = datagram(TCP(sport=sport, dport=80, flags="S", seq=PEER_ISN,
                               options=[("MSS", 1460), ("NOP", None), ("NOP", None)]))
            send_all(h, cut(syn, (0, 16), (16, len(syn) - 20)))
            (sa,) = h.recv()
            assert sa[TCP].flags == "SA" and sa[TCP].dport == sport
            h.send(IP(src=SRC, dst=DST) / TCP(sport=sport, dport=80, flags="A", seq=PEER_ISN + 1,
                                              ack=sa[TCP].seq + 1, window=65535))
            conns.append((sport, sa[TCP].seq + 1))
        accepted = {}
        for _ in range(len(conns)):
            s, addr = ls.accept()
            s.setblocking(False)
            accepted[addr[1]] = s
        for sport, ack in conns:
            body = sport.to_bytes(2, "big") * 300
            seg = datagram(TCP(sport=sport, dport=80, flags="PA", seq=PEER_ISN + 1, ack=ack,
                               window=65535) / body, ident=sport)
            send_all(h, cut(seg, (0, 304), (304, 20 + len(body))))
            assert accepted[sport].recv(4096) == body
        st = h.stats()
        per_core = st["per_core"]
        assert st["tcp_rst_out"] == 0 and st["ip_reasm_ok"] == 2 * len(conns)
        landed = [i for i, c in enumerate(per_core) if c["ip_reasm_ok"]]
        assert len(landed) == 1  # one queue got every fragment ...
        assert per_core[landed[0]]["tcp_redirected"] > 0  # ... and handed segments on
        assert len({s._core for s in accepted.values()}) > 1
        h.audit()


def test_a_fragmented_udp_datagram_to_a_closed_port_is_answered_once(harness):
    whole = datagram(UDP(sport=5000, dport=9) / bytes(900))
    send_all(harness, cut(whole, (0, 456), (456, 908)))
    (r,) = harness.recv()
    assert (r[ICMP].type, r[ICMP].code) == (3, 3)
    quoted = IP(bytes(r[ICMP].payload))
    assert (quoted.len, quoted.flags, quoted.frag) == (928, 0, 0)  # the reassembled header
    assert harness.stats()["ip_reasm_ok"] == 1
    harness.audit()


def test_connect_is_unaffected_by_fragment_handling(harness):
    """A sanity check of the unfragmented path: a SYN still goes out with DF set."""
    s = harness.socket()
    assert s.connect_ex((SRC, 9000)) == errno.EINPROGRESS
    (p,) = harness.recv()
    assert p[IP].flags == "DF" and p[IP].frag == 0


def test_a_ping_larger_than_the_mtu_between_two_stacks_and_to_itself():
    """Stack.ping with 1600 bytes of data: the request leaves in two fragments, the other stack
    reassembles it and answers in two fragments, which the first reassembles; the same over
    the loopback path to its own address."""
    import os

    import fsdp

    wire = f"sim:pingfrag-{os.getpid()}"
    with fsdp.Stack(nic=wire, ip="10.5.0.1/24") as a, fsdp.Stack(nic=wire, ip="10.5.0.2/24") as b:
        assert None not in a.ping("10.5.0.2", count=2, size=1600, timeout=5)
        for s in (a.stats(), b.stats()):
            assert (s["ip_frag_ok"], s["ip_frag_creates"], s["ip_reasm_ok"]) == (2, 4, 2)
        assert None not in a.ping("10.5.0.1", count=1, size=1600, timeout=5)
        assert a.stats()["ip_reasm_ok"] == 4  # its own request and its own reply
        a.audit()
        b.audit()
