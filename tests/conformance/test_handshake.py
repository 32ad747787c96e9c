"""Connection establishment: passive and active opens, LISTEN and SYN-SENT input (RFC 9293 §3.5,
§3.10.7.2, §3.10.7.3)."""

import errno

import pytest
from helpers import (
    LOCAL_IP,
    PEER_IP,
    PEER_ISN,
    PEER_TS0,
    Conn,
    accept,
    connect_start,
    connected,
    handshake_active,
    listen,
    option_kinds,
    read_all,
    syn_ack_of,
    syn_options,
)
from scapy.layers.inet import IP, TCP


def test_synack_acknowledges_syn_and_offers_options(h):
    """RFC 9293 §3.10.7.2: a SYN to a listener gets SYN-ACK seq=ISS ack=IRS+1; options laid out as
    Linux (mss, sackOK, TS, nop, wscale), TSecr echoing the SYN's TSval, wscale 10."""
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080)
    assert (sa.flags, sa.seq, sa.ack, sa.len) == ("SA", 0, 1, 0)
    assert option_kinds(sa.pkt) == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]
    assert sa.opts["MSS"] == 1460
    assert sa.opts["WScale"] == 10  # ilog2(tcp_rmem[2] = 32 MiB) - 15, as Linux
    assert sa.tsecr == PEER_TS0


def test_synack_window_and_ip_header(h):
    """RFC 7323 §2.2: the SYN-ACK window is never scaled; as Linux it is 65535 rounded down to a
    multiple of the payload MSS (1448 with timestamps: 65160), sent with DF, TTL 64, IP id 0."""
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080)
    assert sa.win == 65160
    ip = sa.pkt[IP]
    assert (ip.flags, ip.ttl, ip.id, ip.tos) == ("DF", 64, 0, 0)
    assert (ip.src, ip.dst) == (LOCAL_IP, PEER_IP)


def test_synack_to_optionless_syn_carries_only_mss(h):
    """RFC 9293 §3.7.1, RFC 7323 §1.3: options the SYN did not offer are not used; a SYN without
    options gets a SYN-ACK with only MSS 1460 and window 64240 (44 x 1460), as Linux."""
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, options=[])
    assert option_kinds(sa.pkt) == ["MSS"]
    assert sa.opts["MSS"] == 1460
    assert sa.win == 64240


@pytest.mark.parametrize(
    "offered, layout",
    [
        (syn_options(None, wscale=None), ["MSS", "NOP", "NOP", "SAckOK"]),
        (syn_options(mss=None, sack=False, wscale=None), ["MSS", "NOP", "NOP", "Timestamp"]),
        ([("MSS", 1460), ("NOP", None), ("WScale", 7)], ["MSS", "NOP", "WScale"]),
    ],
    ids=["sack-only", "ts-only", "wscale-only"],
)
def test_synack_answers_only_offered_options(h, offered, layout):
    """RFC 2018 §2, RFC 7323 §2.2/§3.2: SACK-permitted, timestamps and window scale appear in the
    SYN-ACK only when the SYN carried them; the padding is Linux's (NOP NOP before 4-byte-misaligned
    options, NOP before wscale)."""
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, options=offered)
    assert option_kinds(sa.pkt) == layout


def test_accept_waits_for_the_third_ack(h):
    """RFC 9293 §3.5: the connection is ESTABLISHED (accept() returns it) only after the ACK of the
    SYN-ACK; before that accept() raises BlockingIOError."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    with pytest.raises(BlockingIOError):
        lst.accept()
    c.send("A", 1, 1)
    assert c.recv() == []
    sock = accept(lst)
    assert sock.getpeername() == (PEER_IP, 40000)
    assert sock.getsockname() == (LOCAL_IP, 8080)


def test_data_on_the_third_ack_is_delivered(h):
    """RFC 9293 §3.10.7.4 (SYN-RECEIVED, ACK acceptable -> ESTABLISHED, then process the text):
    data carried by the handshake-completing ACK is queued and acknowledged."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    c.send("PA", 1, 1, data=b"hello")
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 1, 6)
    sock = accept(lst)
    assert read_all(sock) == b"hello"


def test_syn_to_closed_port_gets_rst_ack(h):
    """RFC 9293 §3.10.7.1: a SYN to a port nobody listens on gets
    <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK> with window 0 and no options."""
    c = Conn(h, 8081, 40000)
    c.isn = 0
    h.send(IP(src=PEER_IP, dst=LOCAL_IP) / TCP(sport=40000, dport=8081, flags="S", seq=PEER_ISN,
                                                options=syn_options()))
    (r,) = h.recv()
    t = r[TCP]
    assert (str(t.flags), t.seq, t.ack, t.window) == ("RA", 0, PEER_ISN + 1, 0)
    assert option_kinds(r) == []


def test_rst_to_listener_is_ignored(h):
    """RFC 9293 §3.10.7.2: in LISTEN an incoming RST is ignored."""
    lst = listen(h, 8080)
    h.send(IP(src=PEER_IP, dst=LOCAL_IP) / TCP(sport=40000, dport=8080, flags="R", seq=PEER_ISN))
    assert h.recv() == []
    with pytest.raises(BlockingIOError):
        lst.accept()


def test_ack_to_listener_gets_rst(h):
    """RFC 9293 §3.10.7.2: in LISTEN any ACK is bad: <SEQ=SEG.ACK><CTL=RST>."""
    listen(h, 8080)
    h.send(IP(src=PEER_IP, dst=LOCAL_IP) / TCP(sport=40000, dport=8080, flags="A", seq=PEER_ISN,
                                                ack=123456))
    (r,) = h.recv()
    assert (str(r[TCP].flags), r[TCP].seq) == ("R", 123456)


def test_syn_fin_to_listener_is_dropped(h):
    """RFC 9293 §3.10.7.2 leaves SYN+FIN open; as Linux, a SYN with FIN to a listener is dropped
    silently and no connection is created."""
    lst = listen(h, 8080)
    h.send(IP(src=PEER_IP, dst=LOCAL_IP) / TCP(sport=40000, dport=8080, flags="SF", seq=PEER_ISN,
                                                options=syn_options()))
    assert h.recv() == []
    with pytest.raises(BlockingIOError):
        lst.accept()


def test_syn_with_data_acks_only_the_syn(h):
    """RFC 9293 §3.10.7.2 (data in a SYN may be queued or dropped): as Linux without Fast Open,
    the SYN-ACK acknowledges only the SYN and the data must be sent again."""
    lst = listen(h, 8080)
    c = Conn(h, 8080, 40000)
    h.send(IP(src=PEER_IP, dst=LOCAL_IP) / TCP(sport=40000, dport=8080, flags="S", seq=PEER_ISN,
                                                options=syn_options()) / b"early")
    (sa,) = h.recv()
    assert str(sa[TCP].flags) == "SA" and sa[TCP].ack == PEER_ISN + 1
    c.isn = sa[TCP].seq
    c.snd_nxt = c.rcv_nxt = 1
    c.last_tsval = sa[TCP].options[2][1][0]
    c.send("A")
    sock = accept(lst)
    assert read_all(sock) == b""
    c.send("PA", data=b"again")
    assert c.recv()[0].ack == 6
    assert read_all(sock) == b"again"


def test_retransmitted_syn_in_syn_received_gets_synack_again(h):
    """RFC 9293 §3.10.7.4 (SYN-RECEIVED, duplicate SYN): as Linux, a retransmitted SYN (same ISN)
    is answered with a retransmitted SYN-ACK carrying the same sequence numbers."""
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080)
    h.send(IP(src=PEER_IP, dst=LOCAL_IP) / TCP(sport=40000, dport=8080, flags="S", seq=PEER_ISN,
                                                options=syn_options()))
    (again,) = c.recv()
    assert (again.flags, again.seq, again.ack) == ("SA", 0, 1)
    assert option_kinds(again.pkt) == option_kinds(sa.pkt)


def test_bad_ack_in_syn_received_gets_rst(h):
    """RFC 9293 §3.10.7.4 (SYN-RECEIVED, unacceptable ACK): <SEQ=SEG.ACK><CTL=RST>; the pending
    connection survives and a correct ACK still completes it."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    c.send("A", 1, 1000)
    (r,) = c.recv()
    assert (r.flags, r.seq) == ("R", 1000)
    c.send("A", 1, 1)
    assert accept(lst).getpeername() == (PEER_IP, 40000)


def test_active_open_syn(h):
    """RFC 9293 §3.5, RFC 7323, RFC 2018: connect() sends one SYN: ack 0, no ACK flag, options as
    Linux (mss 1460, sackOK, TS with TSecr 0, nop, wscale 10), window 64240, DF."""
    c, syn = connect_start(h)
    assert syn.flags == "S" and syn.pkt[TCP].ack == 0
    assert option_kinds(syn.pkt) == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]
    assert (syn.opts["MSS"], syn.opts["WScale"], syn.tsecr) == (1460, 10, 0)
    assert syn.win == 64240
    assert syn.pkt[IP].flags == "DF" and syn.pkt[IP].ttl == 64
    assert syn.pkt[TCP].dport == 9000


def test_active_open_completes_on_synack(h):
    """RFC 9293 §3.10.7.3 (SYN-SENT, SYN-ACK acceptable): ESTABLISHED, ACK <SEQ=1><ACK=1> at once;
    its window is 64240 scaled by 10, rounded up: 63, as Linux."""
    c = handshake_active(h)
    ack = c.handshake_ack
    assert ack.win == 63
    assert ack.tsecr == c.synack_tsval
    assert c.sock.getpeername() == (PEER_IP, 9000)


def test_active_open_refused_by_rst(h):
    """RFC 9293 §3.10.7.3 (SYN-SENT, RST with acceptable ACK): the connection is refused
    (ECONNREFUSED) and nothing is sent back."""
    c, syn = connect_start(h)
    c.send("RA", 0, 1, options=[])
    assert c.recv() == []
    assert c.sock.connect_ex((PEER_IP, 9000)) == errno.ECONNREFUSED


def test_active_open_ignores_rst_without_ack(h):
    """RFC 9293 §3.10.7.3 (SYN-SENT): a RST without ACK is dropped; the SYN-ACK that follows still
    completes the connection."""
    c, syn = connect_start(h)
    c.send("R", 0, options=[])
    assert c.recv() == []
    c.send("SA", 0, 1, options=syn_options(c.tsval()))
    (ack,) = c.recv()
    assert (ack.flags, ack.ack) == ("A", 1)
    assert connected(c.sock)


def test_active_open_ignores_rst_with_bad_ack(h):
    """RFC 9293 §3.10.7.3 (SYN-SENT, unacceptable ACK with RST): the segment is dropped and the
    connection attempt goes on.  As Linux, an unacceptable ACK before any SYN retransmission
    re-arms the timer to 2 ticks (~8 ms): the SYN is sent again at once."""
    c, syn = connect_start(h)
    c.send("RA", 0, 100, options=[])
    h.advance(0.05)
    assert [(s.flags, s.seq) for s in c.recv()] == [("S", 0)]
    c.send("SA", 0, 1, options=syn_options(c.tsval()))
    assert c.recv()[0].flags == "A"
    assert connected(c.sock)


def test_active_open_synack_with_bad_ack_gets_rst(h):
    """RFC 9293 §3.10.7.3 (SYN-SENT, SEG.ACK =< ISS or > SND.NXT): send <SEQ=SEG.ACK><CTL=RST>;
    the connection stays in SYN-SENT (as Linux the SYN is resent ~8 ms later, the peer may have
    dropped a stale connection on the RST) and a correct SYN-ACK completes it."""
    c, syn = connect_start(h)
    c.send("SA", 0, 5, options=syn_options(c.tsval()))
    h.advance(0.05)
    assert [(s.flags, s.seq) for s in c.recv()] == [("R", 5), ("S", 0)]
    c.send("SA", 0, 1, options=syn_options(c.tsval()))
    assert c.recv()[0].flags == "A"
    assert connected(c.sock)


def test_simultaneous_open(h):
    """RFC 9293 §3.5 figure 7: a SYN crossing ours in SYN-SENT moves to SYN-RECEIVED and is
    answered by SYN-ACK with our ISS; the peer's SYN-ACK then establishes the connection."""
    c, syn = connect_start(h)
    c.send("S", 0, options=syn_options(c.tsval()))
    (sa,) = c.recv()
    assert (sa.flags, sa.seq, sa.ack) == ("SA", 0, 1)
    c.send("SA", 0, 1, options=syn_options(c.tsval()))
    c.send("A", 1, 1)
    assert connected(c.sock)
    c.send("PA", 1, 1, data=b"hi")
    assert c.recv()[-1].ack == 3
    assert read_all(c.sock) == b"hi"
