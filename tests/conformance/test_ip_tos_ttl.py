"""Per-socket IP options: the Differentiated Services field (IP_TOS; RFC 9293 §3.9.1.11 MUST-48,
SHLD-21, SHLD-22; RFC 1122 §4.2.4.2; RFC 2474; RFC 3168 §6.1 for the two ECN bits) and the TTL
(IP_TTL; RFC 9293 §3.9.2 MUST-49, RFC 1122 §4.2.2.19: the TTL of TCP segments MUST be
configurable).

As Linux (``do_ip_setsockopt``, ``__ip_sock_set_tos``, ``ip_send_unicast_reply``):

* Defaults: IP_TOS 0, IP_TTL ``ip_default_ttl`` (64); IP_TTL -1 goes back to that default.
* IP_TOS on a TCP socket leaves the low 2 (ECN) bits to TCP: 0x2B reads back and goes out as 0x28;
  the value is cut to a byte (0x1FF -> 0xFC, -1 -> 0xFC, 0x100 -> 0).  An option of 1 to 3 bytes
  is read as one byte, of 0 bytes as 0 (no error).  IP_TTL takes 1..255 or -1, else EINVAL (an
  empty option too).
* Every segment a socket sends -- SYN, SYN-ACK, data, ACK, FIN, retransmission, the RST of an
  abort -- carries the values in force when it leaves.  A passive open uses the listener's
  values as they are when each SYN-ACK (retransmissions included) is sent, and the accepted
  socket inherits them as they are when the handshake's last ACK arrives.
* What the stack sends *in answer to a segment* without a full socket (``ip_send_unicast_reply``)
  does not use the socket's values: RSTs (closed port, ACK to a listener, SYN-RECEIVED or
  SYN-SENT bad ACK, data after close) and SYN-RECEIVED ACKs carry the incoming segment's TOS with
  the ECN bits cleared and the default TTL; a TIME-WAIT ACK carries the socket's TOS but the
  default TTL.  The SYN-ACK does not reflect the SYN's TOS (tcp_reflect_tos 0).
"""

import errno
import socket
import struct

import pytest
from helpers import (
    LOCAL_IP,
    PEER_IP,
    PEER_ISN,
    Conn,
    Seg,
    accept,
    complete_connect,
    handshake_passive,
    listen,
    syn_ack_of,
    syn_options,
    watch,
)
from scapy.layers.inet import IP, TCP

IP_TOS = socket.IP_TOS
IP_TTL = socket.IP_TTL
SOL_IP = socket.IPPROTO_IP
LINGER_0 = struct.pack("ii", 1, 0)


def ip_of(seg) -> tuple[int, int]:
    """(TOS, TTL) of a segment the stack sent (a helpers ``Seg`` or a Scapy frame)."""
    pkt = seg.pkt if isinstance(seg, Seg) else seg
    return pkt[IP].tos, pkt[IP].ttl


def get(sock) -> tuple[int, int]:
    return sock.getsockopt(SOL_IP, IP_TOS), sock.getsockopt(SOL_IP, IP_TTL)


def set_opts(sock, tos: int | None = None, ttl: int | None = None) -> None:
    if tos is not None:
        sock.setsockopt(SOL_IP, IP_TOS, tos)
    if ttl is not None:
        sock.setsockopt(SOL_IP, IP_TTL, ttl)


def connect_with(h, tos: int | None = None, ttl: int | None = None, pport: int = 9000):
    """helpers.connect_start with IP_TOS / IP_TTL set before connect(): (conn, its SYN)."""
    s = h.socket()
    set_opts(s, tos, ttl)
    err = s.connect_ex((PEER_IP, pport))
    assert err == errno.EINPROGRESS, errno.errorcode.get(err, err)
    (p,) = h.recv()
    assert str(p[TCP].flags) == "S"
    c = Conn(h, p[TCP].sport, pport)
    c.sock = s
    c.isn = p[TCP].seq
    c.syn = Seg(p, c)
    c.rcv_nxt = 1
    c.last_tsval = c.syn.tsval
    return c, c.syn


def listen_with(h, port: int, tos: int | None = None, ttl: int | None = None):
    """helpers.listen with IP_TOS / IP_TTL set before listen()."""
    s = h.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    set_opts(s, tos, ttl)
    s.bind((LOCAL_IP, port))
    s.listen(16)
    return s


def with_tos(pkt, tos: int):
    pkt[IP].tos = tos
    return pkt


# ---- defaults ----
def test_defaults(h):
    """RFC 9293 MUST-48/49: as Linux a fresh TCP socket reads IP_TOS 0 and IP_TTL 64
    (ip_default_ttl); its SYN, the handshake ACK, data and the ACK of the peer's data all carry
    TOS 0 and TTL 64."""
    c, syn = connect_with(h)
    assert get(c.sock) == (0, 64)
    assert ip_of(syn) == (0, 64)
    assert ip_of(complete_connect(c)) == (0, 64)
    c.sock.send(b"d" * 10)
    (d,) = c.recv()
    assert d.len == 10 and ip_of(d) == (0, 64)
    c.send("PA", data=b"p" * 5)
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("A", 6) and ip_of(a) == (0, 64)


def test_default_ttl_follows_ip_default_ttl(harness_factory):
    """RFC 9293 MUST-49 (the TTL is configurable): as Linux the default is the ip_default_ttl
    setting (fsdp: ``ttl``): with 100, a fresh socket reads 100 and its SYN carries TTL 100;
    IP_TTL -1 after 7 goes back to 100."""
    h = harness_factory(ttl=100)
    s = h.socket()
    assert get(s) == (0, 100)
    s.setsockopt(SOL_IP, IP_TTL, 7)
    s.setsockopt(SOL_IP, IP_TTL, -1)
    assert s.getsockopt(SOL_IP, IP_TTL) == 100
    assert s.connect_ex((PEER_IP, 9000)) == errno.EINPROGRESS
    (syn,) = h.recv()
    assert ip_of(syn) == (0, 100)


# ---- active open and established ----
def test_active_open_carries_tos_and_ttl(h):
    """RFC 9293 MUST-48, SHLD-22 (pass the application's Diffserv field to IP unchanged), MUST-49:
    IP_TOS 0x28 and IP_TTL 7 set before connect(): the SYN, the handshake ACK, data, the ACK of the
    peer's data and the FIN all carry TOS 0x28, TTL 7, and getsockopt reads them back."""
    c, syn = connect_with(h, 0x28, 7)
    assert get(c.sock) == (0x28, 7)
    assert ip_of(syn) == (0x28, 7)
    assert ip_of(complete_connect(c)) == (0x28, 7)
    c.sock.send(b"d" * 10)
    (d,) = c.recv()
    assert (d.flags, d.len) == ("PA", 10) and ip_of(d) == (0x28, 7)
    c.send("PA", data=b"p" * 5)
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("A", 6) and ip_of(a) == (0x28, 7)
    assert c.sock.recv(10) == b"p" * 5
    c.sock.close()
    (f,) = c.recv()
    assert f.flags == "FA" and ip_of(f) == (0x28, 7)


def test_set_on_established_connection(h):
    """RFC 9293 SHLD-21 (the application can change the Diffserv field during the connection),
    MUST-49: set on an established connection, the new values are used from the next segment on:
    IP_TTL 33 alone -> the next ACK carries TOS 0, TTL 33; then IP_TOS 0x88 -> ACKs, data and the
    FIN carry 0x88 and 33."""
    c = handshake_passive(h, 8080)
    c.sock.setsockopt(SOL_IP, IP_TTL, 33)
    c.send("PA", data=b"a" * 3)
    (a,) = c.recv()
    assert a.flags == "A" and ip_of(a) == (0, 33)
    c.sock.setsockopt(SOL_IP, IP_TOS, 0x88)
    assert get(c.sock) == (0x88, 33)
    c.send("PA", data=b"b" * 3)
    (a,) = c.recv()
    assert a.flags == "A" and ip_of(a) == (0x88, 33)
    c.sock.send(b"d" * 10)
    (d,) = c.recv()
    assert d.len == 10 and ip_of(d) == (0x88, 33)
    c.send("A")
    assert c.sock.recv(10) == b"a" * 3 + b"b" * 3
    c.sock.close()
    (f,) = c.recv()
    assert f.flags == "FA" and ip_of(f) == (0x88, 33)


def test_retransmission_carries_the_new_values(h):
    """RFC 9293 SHLD-22 (the *current* value goes to IP): as Linux the IP header is built when a
    segment leaves, so data sent with TOS 0 / TTL 64 and retransmitted after IP_TOS 0x28 / IP_TTL 7
    were set goes out again with 0x28 / 7 (the first retransmission, a tail loss probe, is due
    ~0.2 s after the send)."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"d" * 100)
    (d,) = c.recv()
    assert ip_of(d) == (0, 64)
    set_opts(c.sock, 0x28, 7)
    rtx = [s for _, s in watch(c, 0.35, 0.02)]
    assert rtx and all((s.seq, s.len) == (1, 100) for s in rtx), rtx
    assert all(ip_of(s) == (0x28, 7) for s in rtx)


# ---- IP_TOS values ----
@pytest.mark.parametrize(
    "value, stored",
    [(0x28, 0x28), (0x2B, 0x28), (0x03, 0), (0xFF, 0xFC), (0x1FF, 0xFC), (0x100, 0),
     (-1, 0xFC), (-4, 0xFC), (0x7FFFFFFF, 0xFC), (-(1 << 31), 0)],
    ids=["0x28", "0x2B", "0x03", "0xFF", "0x1FF", "0x100", "-1", "-4", "int-max", "int-min"],
)
def test_ip_tos_values(h, value, stored):
    """RFC 3168 §6.1 (the ECN field belongs to TCP), RFC 2474 (the DS field is the upper 6 bits):
    as Linux IP_TOS on a TCP socket never fails; the ECN bits are cleared (0x2B -> 0x28) and the
    int is cut to the 8-bit field (0x1FF and -1 -> 0xFC, 0x100 -> 0).  getsockopt reads the stored
    value and the SYN carries it."""
    c, syn = connect_with(h, value)
    assert c.sock.getsockopt(SOL_IP, IP_TOS) == stored
    assert ip_of(syn) == (stored, 64)


@pytest.mark.parametrize(
    "optval, stored",
    [(b"\x10", 0x10), (b"\x2b", 0x28), (b"\xff", 0xFC), (b"\x10\x00", 0x10),
     (b"\x10\x00\x00", 0x10), (b"\x28\x00\x00\x00", 0x28), (b"\x28\x00\x00\x00\x00\x00", 0x28),
     (b"", 0)],
    ids=["1-byte", "1-byte-ecn", "1-byte-ff", "2-bytes", "3-bytes", "int", "6-bytes", "empty"],
)
def test_ip_tos_as_bytes(h, optval, stored):
    """As Linux: an IP_TOS option shorter than an int (1 to 3 bytes) is read as one byte (the
    first), an int-sized or longer one as an int (little-endian here), and an empty one as 0 --
    no error: a socket holding 0x40 then reads ``stored`` and its SYN carries it."""
    s = h.socket()
    s.setsockopt(SOL_IP, IP_TOS, 0x40)
    s.setsockopt(SOL_IP, IP_TOS, optval)
    assert s.getsockopt(SOL_IP, IP_TOS) == stored
    assert s.connect_ex((PEER_IP, 9000)) == errno.EINPROGRESS
    (syn,) = h.recv()
    assert ip_of(syn) == (stored, 64)


def test_ip_tos_null_zero_length(h):
    """As Linux, setsockopt(IP_TOS) with no buffer and length 0 (Python's ``setsockopt(level,
    opt, None, 0)``) succeeds and sets 0."""
    s = h.socket()
    s.setsockopt(SOL_IP, IP_TOS, 0x40)
    s.setsockopt(SOL_IP, IP_TOS, None, 0)
    assert s.getsockopt(SOL_IP, IP_TOS) == 0


def test_getsockopt_short_buffer(h):
    """As Linux, getsockopt(IP_TOS / IP_TTL) with a buffer shorter than an int returns one byte;
    with 4 bytes or more, the int (little-endian here, 4 bytes)."""
    s = h.socket()
    set_opts(s, 0x28, 7)
    assert s.getsockopt(SOL_IP, IP_TOS, 1) == b"\x28"
    assert s.getsockopt(SOL_IP, IP_TTL, 2) == b"\x07"
    assert s.getsockopt(SOL_IP, IP_TOS, 4) == struct.pack("i", 0x28)
    assert s.getsockopt(SOL_IP, IP_TTL, 8) == struct.pack("i", 7)


# ---- IP_TTL values ----
@pytest.mark.parametrize(
    "value, result",
    [(1, 1), (255, 255), (-1, 64), (0, errno.EINVAL), (256, errno.EINVAL), (-2, errno.EINVAL),
     (1000, errno.EINVAL)],
    ids=["1", "255", "-1", "0", "256", "-2", "1000"],
)
def test_ip_ttl_values(h, value, result):
    """RFC 9293 MUST-49, RFC 791 (TTL is 8 bits, 0 means discard): as Linux IP_TTL takes 1..255,
    and -1 meaning "the default" (reads back 64); 0, 256 and other values fail with EINVAL and
    leave the previous value (9).  The SYN carries what getsockopt reads."""
    s = h.socket()
    s.setsockopt(SOL_IP, IP_TTL, 9)
    if result == errno.EINVAL:
        with pytest.raises(OSError) as exc:
            s.setsockopt(SOL_IP, IP_TTL, value)
        assert errno.errorcode.get(exc.value.errno) == "EINVAL"
        result = 9
    else:
        s.setsockopt(SOL_IP, IP_TTL, value)
    assert s.getsockopt(SOL_IP, IP_TTL) == result
    assert s.connect_ex((PEER_IP, 9000)) == errno.EINPROGRESS
    (syn,) = h.recv()
    assert ip_of(syn) == (0, result)


@pytest.mark.parametrize(
    "optval, result",
    [(b"\x07", 7), (b"\xff", 255), (b"\x07\x00", 7), (b"\x07\x00\x00\x00", 7),
     (b"\x00", errno.EINVAL), (b"", errno.EINVAL), (None, errno.EINVAL)],
    ids=["1-byte", "1-byte-ff", "2-bytes", "int", "1-byte-zero", "empty", "null-zero-length"],
)
def test_ip_ttl_as_bytes(h, optval, result):
    """As Linux: an IP_TTL option of 1 to 3 bytes is read as one byte, of 4 as an int; a zero byte
    is EINVAL like 0, and an empty option (b"" or no buffer with length 0) is EINVAL -- unlike
    IP_TOS.  A failed call leaves the previous value (9)."""
    s = h.socket()
    s.setsockopt(SOL_IP, IP_TTL, 9)
    args = (None, 0) if optval is None else (optval,)
    if result == errno.EINVAL:
        with pytest.raises(OSError) as exc:
            s.setsockopt(SOL_IP, IP_TTL, *args)
        assert errno.errorcode.get(exc.value.errno) == "EINVAL"
        result = 9
    else:
        s.setsockopt(SOL_IP, IP_TTL, *args)
    assert s.getsockopt(SOL_IP, IP_TTL) == result


# ---- passive open ----
def test_passive_open_uses_listener_options(h):
    """RFC 9293 MUST-48/49 on a passive open: IP_TOS 0x10 and IP_TTL 9 set on the socket before
    listen(): the SYN-ACK carries them, the accepted socket inherits them (getsockopt) and its
    data and ACKs carry them.  Changing the listener afterwards does not touch the accepted
    socket."""
    lst = listen_with(h, 8080, 0x10, 9)
    assert get(lst) == (0x10, 9)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    assert ip_of(sa) == (0x10, 9)
    c.send("A", 1, 1)
    sock = accept(lst)
    assert get(sock) == (0x10, 9)
    set_opts(lst, 0x20, 20)
    sock.send(b"d" * 10)
    (d,) = c.recv()
    assert d.len == 10 and ip_of(d) == (0x10, 9)
    c.send("PA", data=b"p" * 5)
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("A", 6) and ip_of(a) == (0x10, 9)
    assert get(sock) == (0x10, 9)


def assert_accepted_with(c, lst, tos: int, ttl: int) -> None:
    """The handshake's last ACK ->; the accepted socket reads (tos, ttl) back and its data carry
    them."""
    c.send("A", 1, 1)
    sock = accept(lst)
    assert get(sock) == (tos, ttl)
    sock.send(b"d")
    (d,) = c.recv()
    assert ip_of(d) == (tos, ttl)


def test_listener_options_set_after_listen(h):
    """As Linux, IP_TOS 0x20 / IP_TTL 20 set on a socket already listening are used for the next
    SYN-ACK and inherited by the connection accepted after it."""
    lst = listen(h, 8080)
    set_opts(lst, 0x20, 20)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    assert ip_of(sa) == (0x20, 20)
    assert_accepted_with(c, lst, 0x20, 20)


def test_listener_change_during_handshake(h):
    """As Linux, the SYN-ACK takes the listener's values when it is sent and the new connection
    takes them when the handshake's last ACK arrives: SYN-ACK with 0x10 / 9, then the listener is
    set to 0x20 / 20, then the ACK: the accepted socket has 0x20 / 20 and sends with them."""
    lst = listen_with(h, 8080, 0x10, 9)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    assert ip_of(sa) == (0x10, 9)
    set_opts(lst, 0x20, 20)
    assert_accepted_with(c, lst, 0x20, 20)


def test_synack_retransmission_uses_current_listener_options(h):
    """As Linux, a retransmitted SYN-ACK (~1 s, the initial RTO) is built from the listener's
    values at that moment: 0x10 / 9 for the first, 0x20 / 20 for the retransmission after the
    listener was changed."""
    lst = listen_with(h, 8080, 0x10, 9)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    assert ip_of(sa) == (0x10, 9)
    set_opts(lst, 0x20, 20)
    rtx = [s for _, s in watch(c, 1.3, 0.05)]
    assert [(s.flags, s.seq) for s in rtx] == [("SA", 0)]
    assert ip_of(rtx[0]) == (0x20, 20)


@pytest.mark.parametrize("listener_tos", [None, 0x10], ids=["no-ip-tos", "ip-tos-0x10"])
def test_synack_does_not_reflect_syn_tos(h, listener_tos):
    """RFC 9293 §3.9.1.11 (each direction's Diffserv field is set by its own application): as
    Linux with tcp_reflect_tos 0 (the default), a SYN with TOS 0x48 gets a SYN-ACK with the
    listener's TOS (0, or its IP_TOS 0x10), and the accepted connection keeps that TOS."""
    lst = listen_with(h, 8080, listener_tos)
    want = listener_tos or 0
    h.send(IP(src=PEER_IP, dst=LOCAL_IP, tos=0x48) / TCP(
        sport=40000, dport=8080, flags="S", seq=PEER_ISN, options=syn_options()))
    (sa,) = h.recv()
    assert str(sa[TCP].flags) == "SA"
    assert ip_of(sa) == (want, 64)
    c = Conn(h, 8080, 40000)
    c.isn = sa[TCP].seq
    c.snd_nxt = c.rcv_nxt = 1
    c.last_tsval = Seg(sa, c).tsval
    h.send(with_tos(c.seg("A"), 0x48))
    sock = accept(lst)
    assert sock.getsockopt(SOL_IP, IP_TOS) == want
    sock.send(b"d")
    (d,) = c.recv()
    assert ip_of(d) == (want, 64)


# ---- RSTs and ACKs ----
@pytest.mark.parametrize("how", ["unread-data", "linger-0"])
def test_abort_rst_carries_socket_options(h, how):
    """RFC 9293 §3.10.5 (ABORT sends a RST), SHLD-22: the RST a socket sends when it aborts --
    close() with unread data, or close() with SO_LINGER {1, 0} -- is the socket's own segment:
    as Linux it carries the socket's TOS 0x28 and TTL 7."""
    c = handshake_passive(h, 8080)
    set_opts(c.sock, 0x28, 7)
    if how == "unread-data":
        c.send("PA", data=b"p" * 5)
        c.recv()
    else:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
    c.sock.close()
    (r,) = c.recv()
    assert r.flags == "RA" and ip_of(r) == (0x28, 7)


def test_challenge_ack_carries_socket_options(h):
    """RFC 5961 §3.2: the challenge ACK to an in-window RST is the connection's own segment: as
    Linux it carries the socket's TOS 0x28 / TTL 7, not the RST's TOS 0x48."""
    c = handshake_passive(h, 8080)
    set_opts(c.sock, 0x28, 7)
    h.send(with_tos(c.seg("R", seq=c.snd_nxt + 10), 0x48))
    (a,) = c.recv()
    assert (a.flags, a.seq, a.ack) == ("A", 1, 1)
    assert ip_of(a) == (0x28, 7)


@pytest.mark.parametrize("flags", ["S", "A"], ids=["syn", "ack"])
@pytest.mark.parametrize(
    "tos, reflected",
    [(0, 0), (0x48, 0x48), (0x4B, 0x48), (0x03, 0), (0xFC, 0xFC)],
    ids=["0", "0x48", "0x4B", "ecn-only", "0xFC"],
)
def test_rst_to_closed_port_reflects_tos(h, flags, tos, reflected):
    """RFC 9293 §3.10.7.1 (CLOSED: a RST answers any segment but a RST): no socket owns this RST;
    as Linux (ip_send_unicast_reply) it carries the incoming segment's TOS with the ECN bits
    cleared (0x4B -> 0x48) and the default TTL 64."""
    h.send(IP(src=PEER_IP, dst=LOCAL_IP, tos=tos) / TCP(
        sport=40000, dport=8081, flags=flags, seq=PEER_ISN, ack=5 if flags == "A" else 0,
        options=syn_options() if flags == "S" else []))
    (r,) = h.recv()
    assert str(r[TCP].flags) == ("RA" if flags == "S" else "R")
    assert ip_of(r) == (reflected, 64)


@pytest.mark.parametrize("tos", [0, 0x4B], ids=["0", "0x4B"])
def test_rst_from_listener_reflects_tos(h, tos):
    """RFC 9293 §3.10.7.2 (LISTEN: an ACK gets <SEQ=SEG.ACK><CTL=RST>): as Linux the RST carries
    the ACK's TOS without the ECN bits and TTL 64, whatever the listener's IP_TOS (0x10) and IP_TTL
    (9)."""
    listen_with(h, 8080, 0x10, 9)
    h.send(IP(src=PEER_IP, dst=LOCAL_IP, tos=tos) / TCP(
        sport=40000, dport=8080, flags="A", seq=PEER_ISN, ack=123456))
    (r,) = h.recv()
    assert (str(r[TCP].flags), r[TCP].seq) == ("R", 123456)
    assert ip_of(r) == (tos & 0xFC, 64)


@pytest.mark.parametrize("tos", [0, 0x4B], ids=["0", "0x4B"])
def test_syn_received_replies_reflect_tos(h, tos):
    """RFC 9293 §3.10.7.4 in SYN-RECEIVED (an unacceptable ACK gets <SEQ=SEG.ACK><CTL=RST>; an
    out-of-window segment gets an ACK): as Linux both are sent for the request, not by a socket:
    they carry the incoming TOS without the ECN bits and TTL 64, not the listener's 0x10 / 9 that
    the SYN-ACK carries."""
    lst = listen_with(h, 8080, 0x10, 9)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    assert ip_of(sa) == (0x10, 9)
    h.send(with_tos(c.seg("A", 1, 1000), tos))
    (r,) = c.recv()
    assert (r.flags, r.seq) == ("R", 1000)
    assert ip_of(r) == (tos & 0xFC, 64)
    h.send(with_tos(c.seg("PA", 100_000, 1, data=b"z"), tos))
    (a,) = c.recv()
    assert (a.flags, a.seq, a.ack) == ("A", 1, 1)
    assert ip_of(a) == (tos & 0xFC, 64)


def test_syn_sent_rst_for_bad_ack_reflects_tos(h):
    """RFC 9293 §3.10.7.3 (SYN-SENT, unacceptable ACK: <SEQ=SEG.ACK><CTL=RST>): as Linux this RST
    answers the segment, not the socket: it carries the SYN-ACK's TOS 0x48 and TTL 64 although the
    socket has 0x28 / 7; the SYN resent ~8 ms later is the socket's again (0x28 / 7)."""
    c, syn = connect_with(h, 0x28, 7)
    h.send(with_tos(c.seg("SA", 0, 5, options=syn_options(c.tsval())), 0x48))
    h.advance(0.05)
    segs = c.recv()
    assert [(s.flags, s.seq) for s in segs] == [("R", 5), ("S", 0)]
    assert ip_of(segs[0]) == (0x48, 64)
    assert ip_of(segs[1]) == (0x28, 7)


def test_rst_for_data_after_close_reflects_tos(h):
    """RFC 9293 §3.10.7.4 / RFC 2525 §2.17 (data for a closed socket is answered by a RST): as
    Linux that RST answers the segment: after close() (FIN sent with 0x28 / 7) the peer's data with
    TOS 0x48 gets a RST with TOS 0x48 and TTL 64."""
    c = handshake_passive(h, 8080)
    set_opts(c.sock, 0x28, 7)
    c.sock.close()
    (f,) = c.recv()
    assert f.flags == "FA" and ip_of(f) == (0x28, 7)
    h.send(with_tos(c.seg("PA", data=b"late"), 0x48))
    (r,) = c.recv()
    assert r.flags == "R" and ip_of(r) == (0x48, 64)


def test_time_wait_ack_keeps_tos_not_ttl(h):
    """RFC 9293 §3.10.7.4 (TIME-WAIT: a retransmitted FIN is acknowledged): as Linux the TIME-WAIT
    ACK carries the closed socket's TOS (0x28) but the default TTL 64, not its IP_TTL 7, whatever
    the FIN's TOS (0x48); the ACK of the first FIN, sent by the socket itself, has 0x28 / 7."""
    c = handshake_passive(h, 8080)
    set_opts(c.sock, 0x28, 7)
    c.sock.close()
    (f,) = c.recv()
    assert f.flags == "FA" and ip_of(f) == (0x28, 7)
    c.send("FA")
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("A", 2) and ip_of(a) == (0x28, 7)
    h.send(with_tos(c.seg("FA", seq=1), 0x48))
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("A", 2) and ip_of(a) == (0x28, 64)
