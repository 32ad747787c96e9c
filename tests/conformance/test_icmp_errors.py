"""How TCP acts on received ICMP errors (RFC 1122 §4.2.3.9, RFC 9293 §3.9.2.2 MUST-54..56,
SHLD-25/26), the checks an ICMP error must pass first (RFC 5927 §4.1: the quoted sequence number;
RFC 792: the quoted IP header plus 8 bytes; no errors addressed to a broadcast address), Path MTU
discovery on "fragmentation needed" (RFC 1191, RFC 5927 §5), and OPEN to a broadcast or multicast
address (RFC 1122 §4.2.3.10, RFC 9293 MUST-46).

The peer plays a router: an error is ``IP(src=router, dst=stack) / ICMP(type, code) / <the start
of a datagram the stack sent>``.  As Linux:

* SYN-SENT: any accepted error aborts the connect at once (RFC 5461: widely implemented, also for
  the "soft" codes), with the errno of Linux's ``icmp_err_convert`` table; nothing is sent.
* ESTABLISHED: no error aborts the connection, not even the "hard" port/protocol unreachable
  (RFC 5927 §7.2); it is kept as a *soft error* that SO_ERROR reports once, that an acceptable
  ACK clears, and that replaces ETIMEDOUT when the retransmissions run out.
* SYN-RECEIVED: net/host unreachable, time exceeded and parameter problem quoting exactly the
  SYN-ACK's sequence number drop the embryonic connection silently; other codes do nothing.
* Fragmentation needed lowers the path MTU (never below 552: below that DF is cleared) and resends
  the unacknowledged data at once in segments that fit.
"""

import errno
import socket
import struct

import pytest
from helpers import (
    LOCAL_IP,
    PEER_IP,
    PEER_ISN,
    TS_MSS,
    accept,
    complete_connect,
    connect_start,
    handshake_passive,
    listen,
    syn_ack_of,
    syn_options,
    watch,
)
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

ROUTER_IP = "192.0.2.254"  # a router on the stack's link (the peer is on-link: any router works)
PEER_MAC = "02:00:00:00:00:02"

# (type, code)
NET_UNREACH = (3, 0)
HOST_UNREACH = (3, 1)
PROTO_UNREACH = (3, 2)
PORT_UNREACH = (3, 3)
FRAG_NEEDED = (3, 4)
ADMIN_PROHIBITED = (3, 13)
TTL_EXCEEDED = (11, 0)
PARAM_PROBLEM = (12, 0)
SOURCE_QUENCH = (4, 0)


# ---- building ICMP errors ----
def icmp_error(about, kind, *, mtu=0, src=PEER_IP, dst=LOCAL_IP, seq=None, sport=None,
               dport=None, quote_len=None, gw=ROUTER_IP):
    """An ICMP error ``kind`` = (type, code) from ``src`` about ``about``: a segment the stack sent
    (a helpers ``Seg``) or a Scapy IP packet.  The quote is that whole IP datagram (RFC 792: the
    header and at least 64 bits of data), cut to ``quote_len`` bytes, or with its TCP sequence
    number replaced by ``seq`` (relative to the segment's own numbering) or its ports replaced.
    ``mtu``: the next-hop MTU of a "fragmentation needed" (RFC 1191 §4); ``gw``: a redirect's
    gateway."""
    pkt = about if isinstance(about, Packet) else about.pkt
    ip = pkt[IP]
    q = bytearray(bytes(ip)[:ip.len])
    off = 4 * ip.ihl
    if seq is not None:
        delta = seq - about.seq
        q[off + 4:off + 8] = struct.pack("!I", (ip[TCP].seq + delta) % (1 << 32))
    if sport is not None:
        q[off:off + 2] = struct.pack("!H", sport)
    if dport is not None:
        q[off + 2:off + 4] = struct.pack("!H", dport)
    if quote_len is not None:
        q = q[:quote_len]
    type_, code = kind
    extra = {"nexthopmtu": mtu} if type_ == 3 else {"gw": gw} if type_ == 5 else {}
    return IP(src=src, dst=dst) / ICMP(type=type_, code=code, **extra) / Raw(bytes(q))


def so_error(sock) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def name(err: int) -> str:
    return errno.errorcode.get(err, str(err))


def assert_connect_gone(c) -> None:
    """The connection no longer exists: a late SYN-ACK meets a closed port (<SEQ=SEG.ACK><RST>)."""
    c.send("SA", 0, 1, options=syn_options(c.tsval()))
    (r,) = c.recv()
    assert (r.flags, r.seq) == ("R", 1)


# ---- SYN-SENT ----
def test_port_unreachable_refuses_connect(h):
    """RFC 1122 §4.2.3.9 (Destination Unreachable code 3 is a hard error: abort): a port
    unreachable quoting our SYN fails connect() at once with ECONNREFUSED; no RST is sent and the
    SYN is never retransmitted."""
    c, syn = connect_start(h)
    h.send(icmp_error(syn, PORT_UNREACH))
    assert c.recv() == []
    assert c.sock.connect_ex((PEER_IP, 9000)) == errno.ECONNREFUSED
    assert watch(c, 1.5, 0.05) == []


@pytest.mark.parametrize(
    "kind, err",
    [
        ((3, 0), errno.ENETUNREACH),
        ((3, 1), errno.EHOSTUNREACH),
        ((3, 2), errno.ENOPROTOOPT),
        ((3, 3), errno.ECONNREFUSED),
        ((3, 5), errno.EOPNOTSUPP),  # source route failed
        ((3, 6), errno.ENETUNREACH),  # destination network unknown
        ((3, 7), errno.EHOSTDOWN),  # destination host unknown
        ((3, 8), errno.ENONET),  # source host isolated
        ((3, 9), errno.ENETUNREACH),  # network administratively prohibited
        ((3, 10), errno.EHOSTUNREACH),  # host administratively prohibited
        ((3, 11), errno.ENETUNREACH),  # network unreachable for TOS
        ((3, 12), errno.EHOSTUNREACH),  # host unreachable for TOS
        ((3, 13), errno.EHOSTUNREACH),  # communication administratively prohibited
        ((3, 14), errno.EHOSTUNREACH),  # host precedence violation
        ((3, 15), errno.EHOSTUNREACH),  # precedence cutoff in effect
        ((11, 0), errno.EHOSTUNREACH),  # TTL exceeded in transit
        ((12, 0), errno.EPROTO),
        ((12, 1), errno.EPROTO),  # missing a required option
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else name(v),
)
def test_icmp_error_aborts_connect(h, kind, err):
    """RFC 1122 §4.2.3.9 / RFC 9293 MUST-54 (act on the ICMP error) and RFC 5461 (widely
    implemented: even a soft error rejects a pending connection request): as Linux, every
    destination unreachable code 0-15 but 4, time exceeded in transit and parameter problem abort
    SYN-SENT at once; SO_ERROR gives the errno of Linux's icmp_err_convert table (once), nothing
    is sent, and a late SYN-ACK finds no connection."""
    c, syn = connect_start(h)
    h.send(icmp_error(syn, kind))
    assert c.recv() == []
    assert name(so_error(c.sock)) == name(err)
    assert so_error(c.sock) == 0
    assert_connect_gone(c)


@pytest.mark.parametrize(
    "kind",
    [SOURCE_QUENCH, (5, 0), (5, 1), (3, 16), (3, 255), (11, 1)],
    ids=["source-quench", "redirect-net", "redirect-host", "unreach-code-16", "unreach-code-255",
         "reassembly-time-exceeded"],
)
def test_ignored_icmp_leaves_connect_pending(h, kind):
    """RFC 9293 MUST-55 / RFC 6633 (Source Quench is ignored); a redirect from a router that is
    not our first hop changes nothing (RFC 1122 §3.2.2.2); as Linux, destination unreachable codes
    above 15 and time exceeded code 1 (fragment reassembly) are ignored too: connect() stays
    pending and completes when the SYN-ACK comes (the ACK still goes straight to the peer)."""
    c, syn = connect_start(h)
    h.send(icmp_error(syn, kind))
    assert c.recv() == []
    assert so_error(c.sock) == 0
    complete_connect(c)


@pytest.mark.parametrize("src", [ROUTER_IP, "198.51.100.1"], ids=["on-link", "off-link"])
def test_icmp_error_from_a_router_is_accepted(h, src):
    """RFC 1122 §4.2.3.9: the error comes from whichever router dropped the SYN, on the link or
    further away, not from the peer: as Linux it is acted on all the same (EHOSTUNREACH)."""
    c, syn = connect_start(h)
    h.send(icmp_error(syn, HOST_UNREACH, src=src))
    assert c.recv() == []
    assert so_error(c.sock) == errno.EHOSTUNREACH


@pytest.mark.parametrize("seq", [0, 1], ids=["snd-una", "snd-nxt"])
def test_icmp_quoting_seq_in_window_aborts_connect(h, seq):
    """RFC 5927 §4.1 (the quoted SEG.SEQ must lie in the send window): in SYN-SENT SND.UNA = ISS and
    SND.NXT = ISS + 1; as Linux both ends are accepted (it checks SND.UNA <= SEG.SEQ <= SND.NXT)."""
    c, syn = connect_start(h)
    h.send(icmp_error(syn, HOST_UNREACH, seq=seq))
    assert so_error(c.sock) == errno.EHOSTUNREACH


@pytest.mark.parametrize("seq", [-1, 2, 1 << 31], ids=["below", "above", "far"])
def test_icmp_quoting_seq_outside_window_is_ignored(h, seq):
    """RFC 5927 §4.1: an error whose quoted sequence number is outside [SND.UNA, SND.NXT] cannot
    be about a segment in flight and is dropped: the connect completes normally."""
    c, syn = connect_start(h)
    h.send(icmp_error(syn, HOST_UNREACH, seq=seq))
    assert c.recv() == []
    assert so_error(c.sock) == 0
    complete_connect(c)


def _quoted_other_peer(c, syn):
    p = icmp_error(syn, HOST_UNREACH)
    q = bytearray(p[Raw].load)
    q[16:20] = bytes([192, 0, 2, 3])
    p[Raw].load = bytes(q)
    return p


def _quoted_udp(c, syn):
    p = icmp_error(syn, HOST_UNREACH)
    q = bytearray(p[Raw].load)
    q[9] = 17
    p[Raw].load = bytes(q)
    return p


@pytest.mark.parametrize(
    "make",
    [
        lambda c, syn: icmp_error(syn, HOST_UNREACH, sport=c.lport + 1),
        lambda c, syn: icmp_error(syn, HOST_UNREACH, dport=9001),
        _quoted_other_peer,
        _quoted_udp,
    ],
    ids=["other-local-port", "other-remote-port", "other-remote-address", "protocol-udp"],
)
def test_icmp_about_another_connection_is_ignored(h, make):
    """RFC 1122 §4.2.3.9 (the error is directed to the connection named by the quoted IP and TCP
    headers): a quote naming other ports, another address or another protocol matches no
    connection and changes nothing here."""
    c, syn = connect_start(h)
    h.send(make(c, syn))
    assert c.recv() == []
    assert so_error(c.sock) == 0
    complete_connect(c)


@pytest.mark.parametrize("quote_len", [20, 24, 27])
def test_icmp_with_short_quote_is_ignored(h, quote_len):
    """RFC 792 / RFC 1122 §3.2.2 (the error carries the IP header and the first 64 bits of data):
    as Linux, a quote shorter than IP header + 8 bytes (ports and sequence number) is dropped."""
    c, syn = connect_start(h)
    h.send(icmp_error(syn, HOST_UNREACH, quote_len=quote_len))
    assert c.recv() == []
    assert so_error(c.sock) == 0
    complete_connect(c)


def test_icmp_with_minimal_quote_is_accepted(h):
    """RFC 792: IP header + 8 bytes is all a router has to quote; that is enough to act on."""
    c, syn = connect_start(h)
    h.send(icmp_error(syn, HOST_UNREACH, quote_len=28))
    assert so_error(c.sock) == errno.EHOSTUNREACH


@pytest.mark.parametrize(
    "dst, mac",
    [("192.0.2.255", "ff:ff:ff:ff:ff:ff"), ("255.255.255.255", "ff:ff:ff:ff:ff:ff"),
     ("224.0.0.1", "01:00:5e:00:00:01")],
    ids=["subnet-broadcast", "limited-broadcast", "all-hosts-multicast"],
)
def test_icmp_error_to_broadcast_is_ignored(h, dst, mac):
    """RFC 1122 §3.2.2 (no ICMP error is sent about a datagram whose source is not a single host,
    so an error addressed to a broadcast or multicast address is bogus): as Linux it is dropped
    (an Ethernet broadcast frame to our own IP address is taken: see the next scenario)."""
    c, syn = connect_start(h)
    h.send(Ether(src=PEER_MAC, dst=mac) / icmp_error(syn, HOST_UNREACH, dst=dst))
    assert c.recv() == []
    assert so_error(c.sock) == 0
    complete_connect(c)


def test_icmp_error_in_ethernet_broadcast_is_accepted(h):
    """Counterpart of the above: only the IP destination matters; an Ethernet broadcast frame
    addressed to our IP address is acted on."""
    c, syn = connect_start(h)
    h.send(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / icmp_error(syn, HOST_UNREACH))
    assert so_error(c.sock) == errno.EHOSTUNREACH


# ---- ESTABLISHED ----
def data_in_flight(h, n: int = 100):
    c = handshake_passive(h, 8080)
    c.sock.send(b"d" * n)
    (d,) = c.recv()
    assert (d.seq, d.len) == (1, n)
    return c, d


@pytest.mark.parametrize(
    "kind, err",
    [
        (NET_UNREACH, errno.ENETUNREACH),
        (HOST_UNREACH, errno.EHOSTUNREACH),
        (PROTO_UNREACH, errno.ENOPROTOOPT),
        (PORT_UNREACH, errno.ECONNREFUSED),
        (ADMIN_PROHIBITED, errno.EHOSTUNREACH),
        (TTL_EXCEEDED, errno.EHOSTUNREACH),
        (PARAM_PROBLEM, errno.EPROTO),
    ],
    ids=["net-unreach", "host-unreach", "proto-unreach", "port-unreach", "admin-prohibited",
         "ttl-exceeded", "param-problem"],
)
def test_icmp_error_does_not_abort_established(h, kind, err):
    """RFC 9293 MUST-56 (a soft error MUST NOT abort the connection) and SHLD-25 (make it
    available to the application); for the "hard" codes 2 and 3 Linux too keeps the connection
    (RFC 5927 §7.2: treat hard errors as soft ones in synchronized states).  As Linux: nothing is
    sent, recv() does not fail, SO_ERROR reports the error once, then the connection goes on: the
    data is ACKed, new data is sent and received."""
    c, d = data_in_flight(h)
    h.send(icmp_error(d, kind))
    assert c.recv() == []
    with pytest.raises(BlockingIOError):
        c.sock.recv(10)
    assert name(so_error(c.sock)) == name(err)
    assert so_error(c.sock) == 0
    c.send("A")
    assert c.recv() == []
    c.sock.send(b"e" * 10)
    (e,) = c.recv()
    assert (e.seq, e.len) == (101, 10)
    c.send("PA", data=b"hello")
    (ack,) = c.recv()
    assert ack.ack == 6
    assert c.sock.recv(10) == b"hello"


def test_soft_error_is_cleared_by_an_ack(h):
    """RFC 1122 §4.2.3.9 (soft errors are transient): as Linux, an acceptable ACK shows the path
    works again and clears the stored soft error: SO_ERROR then reads 0."""
    c, d = data_in_flight(h)
    h.send(icmp_error(d, HOST_UNREACH))
    c.send("A")
    assert c.recv() == []
    assert so_error(c.sock) == 0


@pytest.mark.parametrize(
    "seq, err",
    [(1, errno.EHOSTUNREACH), (50, errno.EHOSTUNREACH), (101, errno.EHOSTUNREACH), (0, 0),
     (102, 0), (100_000, 0)],
    ids=["snd-una", "inside", "snd-nxt", "below-snd-una", "above-snd-nxt", "far"],
)
def test_established_icmp_seq_validation(h, seq, err):
    """RFC 5927 §4.1 (accept only SND.UNA <= SEG.SEQ < SND.NXT): with 100 bytes in flight
    (SND.UNA = 1, SND.NXT = 101), as Linux the quote is accepted from SND.UNA to SND.NXT
    *inclusive* (a soft error SO_ERROR reports), and ignored outside."""
    c, d = data_in_flight(h)
    h.send(icmp_error(d, HOST_UNREACH, seq=seq))
    assert c.recv() == []
    assert name(so_error(c.sock)) == name(err)


def test_icmp_about_acknowledged_data_is_ignored(h):
    """RFC 5927 §4.1: once the data is ACKed (SND.UNA = SND.NXT = 101) an error quoting it is
    stale and ignored."""
    c, d = data_in_flight(h)
    c.send("A")
    h.send(icmp_error(d, HOST_UNREACH))
    assert c.recv() == []
    assert so_error(c.sock) == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, err",
    [(None, errno.ETIMEDOUT), (HOST_UNREACH, errno.EHOSTUNREACH),
     (PORT_UNREACH, errno.ECONNREFUSED)],
    ids=["no-icmp", "host-unreach", "port-unreach"],
)
def test_timeout_reports_the_soft_error(harness_factory, kind, err):
    """RFC 1122 §4.2.3.9 / RFC 9293 SHLD-25 (report soft errors to the application) with R2
    (RFC 9293 MUST-20): when the retransmissions run out (tcp_retries2=1: ~1.7 s here) the
    connection is dropped without a RST, and as Linux the error the application gets is the
    last soft error the ICMP left (EHOSTUNREACH, ECONNREFUSED) instead of ETIMEDOUT."""
    h = harness_factory(tcp_retries2=1)
    c, d = data_in_flight(h)
    if kind is not None:
        h.send(icmp_error(d, kind))
    seen = watch(c, 2.3, 0.05)
    assert seen and all((s.flags, s.seq, s.len) == ("PA", 1, 100) for _, s in seen)
    with pytest.raises(OSError) as exc:
        c.sock.recv(10)
    assert name(exc.value.errno) == name(err)


# ---- SYN-RECEIVED ----
@pytest.mark.parametrize(
    "kind", [NET_UNREACH, HOST_UNREACH, TTL_EXCEEDED, PARAM_PROBLEM],
    ids=["net-unreach", "host-unreach", "ttl-exceeded", "param-problem"],
)
def test_icmp_drops_syn_received(h, kind):
    """RFC 1122 §4.2.3.9 applied to a passive open: as Linux, net/host unreachable, time exceeded
    and parameter problem quoting the SYN-ACK remove the embryonic connection silently (nothing is
    sent, accept() sees nothing); the peer's ACK then meets no connection: <SEQ=SEG.ACK><RST>."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    h.send(icmp_error(sa, kind))
    assert c.recv() == []
    c.send("A", 1, 1)
    (r,) = c.recv()
    assert (r.flags, r.seq) == ("R", 1)
    with pytest.raises(BlockingIOError):
        lst.accept()


def test_dropped_syn_received_stops_synack_retransmission(h):
    """As above: after a host unreachable the SYN-ACK is not retransmitted (it is due at 1 s)."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    h.send(icmp_error(sa, HOST_UNREACH))
    assert watch(c, 1.3, 0.05) == []


@pytest.mark.parametrize(
    "kind",
    [PROTO_UNREACH, PORT_UNREACH, ADMIN_PROHIBITED, SOURCE_QUENCH, FRAG_NEEDED],
    ids=["proto-unreach", "port-unreach", "admin-prohibited", "source-quench", "frag-needed"],
)
def test_icmp_leaves_syn_received_alone(h, kind):
    """As Linux, the other errors leave an embryonic connection alone (not even a port or
    protocol unreachable removes it, nor does fragmentation needed change its MSS): the peer's
    ACK completes it and accept() returns it."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    h.send(icmp_error(sa, kind, mtu=1280))
    assert c.recv() == []
    c.send("A", 1, 1)
    assert c.recv() == []
    assert accept(lst).getpeername() == (PEER_IP, 40000)


@pytest.mark.parametrize("seq", [1, -1, 1000], ids=["isn+1", "isn-1", "far"])
def test_syn_received_icmp_must_quote_the_isn(h, seq):
    """RFC 5927 §4.1 (SND.UNA <= SEG.SEQ < SND.NXT, i.e. exactly ISS in SYN-RECEIVED): as Linux, a
    host unreachable whose quote is not the SYN-ACK's own sequence number is ignored (even ISS + 1,
    which SYN-SENT accepts): the peer's ACK completes the handshake."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    h.send(icmp_error(sa, HOST_UNREACH, seq=seq))
    assert c.recv() == []
    c.send("A", 1, 1)
    assert c.recv() == []
    assert accept(lst).getpeername() == (PEER_IP, 40000)


# ---- LISTEN and TIME-WAIT ----
@pytest.mark.parametrize(
    "kind", [HOST_UNREACH, PORT_UNREACH, PARAM_PROBLEM, FRAG_NEEDED],
    ids=["host-unreach", "port-unreach", "param-problem", "frag-needed"],
)
def test_icmp_for_listener_without_request_is_ignored(h, kind):
    """RFC 1122 §4.2.3.9 (the error goes to the connection that caused it): an error quoting a
    SYN-ACK from a listening port when no such embryonic connection exists matches nothing: the
    listener answers the next SYN, and (for fragmentation needed) the path MTU is unchanged: the
    new connection still sends 1448-byte segments."""
    lst = listen(h, 8080)
    fake = IP(src=LOCAL_IP, dst=PEER_IP, flags="DF") / TCP(
        sport=8080, dport=40000, flags="SA", seq=123456, ack=PEER_ISN + 1,
        options=[("MSS", 1460)])
    h.send(icmp_error(IP(bytes(fake)), kind, mtu=1280))
    assert h.recv() == []
    c, sa = syn_ack_of(h, 8080, listener=lst)
    c.send("A", 1, 1)
    sock = accept(lst)
    sock.send(b"y" * 3000)
    assert [s.len for s in c.recv()] == [TS_MSS, TS_MSS, 3000 - 2 * TS_MSS]


@pytest.mark.parametrize(
    "kind", [HOST_UNREACH, PORT_UNREACH, PARAM_PROBLEM],
    ids=["host-unreach", "port-unreach", "param-problem"],
)
def test_icmp_in_time_wait_is_ignored(h, kind):
    """RFC 1122 §4.2.3.9: nothing is in flight in TIME-WAIT; as Linux an error quoting our last
    ACK is ignored: nothing is sent and the connection still answers a retransmitted FIN."""
    c = handshake_passive(h, 8080)
    c.sock.close()
    assert c.recv()[0].flags == "FA"
    c.send("A")
    c.send("FA")
    (last,) = c.recv()
    assert (last.flags, last.seq, last.ack) == ("A", 2, 2)
    h.send(icmp_error(last, kind))
    assert c.recv() == []
    c.send("FA", seq=1)
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 2, 2)


# ---- Path MTU discovery: fragmentation needed (3/4) ----
def full_segments_in_flight(h, n: int = 4):
    """n full-sized segments in flight, unacknowledged.  rtt=0.1: the tail loss probe is ~0.2 s
    away, out of the way of what follows."""
    c = handshake_passive(h, 8080, rtt=0.1)
    c.sock.send(b"p" * (n * TS_MSS))
    segs = c.recv()
    assert [(s.seq, s.len) for s in segs] == [(1 + i * TS_MSS, TS_MSS) for i in range(n)]
    assert all(s.pkt[IP].flags.DF for s in segs)
    return c, segs


def assert_contiguous(segs, start: int) -> None:
    for s in segs:
        assert s.seq == start, segs
        start += s.len


@pytest.mark.parametrize(
    "mtu, payload, df",
    [(1280, 1228, True), (576, 524, True), (552, 500, True), (500, 500, False),
     (68, 500, False), (0, 500, False)],
    ids=["1280", "576", "552", "500", "68", "0"],
)
def test_frag_needed_resends_in_smaller_segments(h, mtu, payload, df):
    """RFC 1191 §3/§6.4 (lower the path MTU to the reported next-hop MTU; TCP resends at once in
    segments that fit), RFC 9293 MUST-54.  With 4 x 1448 bytes in flight, as Linux: the
    unacknowledged data is retransmitted at once, from SND.UNA, contiguous, in segments of at most
    MTU - 52 bytes (IP and TCP headers, timestamps), and new data later goes out in segments of
    exactly that size.  Linux's floor is 552 (min_pmtu): a smaller MTU, and an "old-style" message
    with MTU 0 (RFC 1191 §5), give 500-byte segments *without DF* from then on; at exactly 552 DF
    stays.  (Linux re-cuts its 2896-byte send buffers: 1228, 1228, 440, ... for 1280; at most the
    10 segments of the congestion window are resent.)"""
    c, segs = full_segments_in_flight(h)
    h.send(icmp_error(segs[0], FRAG_NEEDED, mtu=mtu))
    rtx = c.recv()
    assert rtx, "no retransmission after fragmentation needed"
    assert_contiguous(rtx, 1)
    assert rtx[0].len == payload and max(s.len for s in rtx) == payload
    assert len(rtx) <= 10
    assert all(s.pkt[IP].len <= payload + 52 for s in rtx)
    assert all(bool(s.pkt[IP].flags.DF) == df for s in rtx)
    if mtu == 1280:
        assert rtx[-1].seq + rtx[-1].len == 1 + 4 * TS_MSS  # all of it
    assert so_error(c.sock) == 0
    c.send("A", ack=1 + 4 * TS_MSS)
    assert c.recv() == []
    c.sock.send(b"q" * 3000)
    new = c.recv()
    assert_contiguous(new, 1 + 4 * TS_MSS)
    assert [s.len for s in new[:-1]] == [payload] * (len(new) - 1)
    assert sum(s.len for s in new) == 3000 and new[-1].len <= payload
    assert all(bool(s.pkt[IP].flags.DF) == df for s in new)


@pytest.mark.parametrize(
    "mtu, seq",
    [(1500, None), (1600, None), (1280, 0), (1280, 1 + 4 * TS_MSS + 1)],
    ids=["mtu-equal", "mtu-larger", "seq-below-snd-una", "seq-above-snd-nxt"],
)
def test_frag_needed_ignored(h, mtu, seq):
    """RFC 1191 §3 (never raise the PMTU estimate from a Datagram Too Big), RFC 5927 §4.1/§5
    (check the quoted sequence number first): a next-hop MTU not below the current 1500, or a
    quote outside [SND.UNA, SND.NXT], changes nothing: no retransmission, and new data still goes
    out in 1448-byte segments with DF."""
    c, segs = full_segments_in_flight(h)
    h.send(icmp_error(segs[0], FRAG_NEEDED, mtu=mtu, seq=seq))
    assert c.recv() == []
    c.send("A", ack=1 + 4 * TS_MSS)
    assert c.recv() == []
    c.sock.send(b"q" * 3000)
    new = c.recv()
    assert [s.len for s in new] == [TS_MSS, TS_MSS, 3000 - 2 * TS_MSS]
    assert all(s.pkt[IP].flags.DF for s in new)


def test_frag_needed_in_syn_sent_lowers_the_mss(h):
    """RFC 1191, RFC 9293 MUST-54: fragmentation needed is not an error for connect() (the SYN was
    small; as Linux nothing is sent and the connect stays pending), but the path MTU is
    remembered: after the handshake (peer MSS 1460) data goes out in 1280 - 52 = 1228-byte
    segments."""
    c, syn = connect_start(h)
    h.send(icmp_error(syn, FRAG_NEEDED, mtu=1280))
    assert c.recv() == []
    assert so_error(c.sock) == 0
    complete_connect(c)
    c.sock.send(b"z" * 3000)
    assert [s.len for s in c.recv()] == [1228, 1228, 3000 - 2 * 1228]


# ---- OPEN to a broadcast or multicast address ----
@pytest.mark.parametrize(
    "dst", ["255.255.255.255", "192.0.2.255", "224.0.0.1", "239.1.2.3"],
    ids=["limited-broadcast", "subnet-broadcast", "all-hosts", "multicast"],
)
def test_connect_to_broadcast_or_multicast_fails(h, dst):
    """RFC 1122 §4.2.3.10 / RFC 9293 MUST-46 (an OPEN call for a broadcast or multicast remote
    address MUST be rejected): as Linux, connect() fails at once with ENETUNREACH and nothing is
    sent (no SYN, no ARP)."""
    s = h.socket()
    assert name(s.connect_ex((dst, 9000))) == name(errno.ENETUNREACH)
    h.advance(0.05)
    assert h.recv() == []
