"""Malformed or unexpected input (RFC 9293 §3.1 header, §3.10.7 segment arrives, MUST-64/-69,
RFC 1122 §4.2.2.12 closed ports): dropped or answered as the RFCs say, never accepted as data."""

from helpers import (
    LOCAL_IP,
    PEER_IP,
    handshake_passive,
    listen,
    read_all,
    syn_options,
)
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw


def tcp_to(dport, flags, seq=5, ack=0, data=b"", **kw):
    p = IP(src=PEER_IP, dst=LOCAL_IP) / TCP(sport=40000, dport=dport, flags=flags, seq=seq,
                                            ack=ack, **kw)
    return p / Raw(data) if data else p


def test_bad_checksum_to_closed_port_is_dropped(h):
    """RFC 9293 §3.1 (MUST-2/-3 checksum): a SYN with a wrong checksum draws no RST."""
    h.send(tcp_to(8081, "S", chksum=0x1234, options=syn_options()))
    assert h.recv() == []


def test_bad_checksum_in_established_is_dropped(h):
    """RFC 9293 §3.1: a data segment with a bad checksum is neither delivered nor acknowledged."""
    c = handshake_passive(h, 8080)
    h.send(c.seg("PA", data=b"bad", chksum=0x1234))
    assert c.recv() == []
    assert read_all(c.sock) == b""
    c.send("PA", data=b"good")
    assert c.recv()[0].ack == 5


def test_data_offset_below_five_is_dropped(h):
    """RFC 9293 §3.1 (Data Offset >= 5): a header claiming 16 bytes is discarded."""
    c = handshake_passive(h, 8080)
    h.send(c.seg("PA", data=b"bad", dataofs=4))
    assert c.recv() == []
    assert read_all(c.sock) == b""


def test_data_offset_beyond_the_segment_is_dropped(h):
    """RFC 9293 §3.1: a Data Offset larger than the segment cannot be parsed; it is discarded."""
    c = handshake_passive(h, 8080)
    h.send(c.seg("PA", data=b"bad", dataofs=15))
    assert c.recv() == []
    assert read_all(c.sock) == b""


def test_truncated_tcp_header_is_dropped(h):
    """RFC 9293 §3.1: an IP datagram too short for a TCP header is discarded."""
    listen(h, 8080)
    h.send(IP(src=PEER_IP, dst=LOCAL_IP, proto=6) / Raw(b"\x9c\x40\x1f\x90\x00\x00"))
    assert h.recv() == []


def test_bad_option_length_keeps_the_segment(h):
    """RFC 9293 §3.1 (MUST-7: be prepared for an illegal option length): as Linux, option parsing
    stops but the data segment itself is processed and acknowledged."""
    c = handshake_passive(h, 8080)
    raw = IP(src=PEER_IP, dst=LOCAL_IP) / TCP(
        sport=c.pport, dport=c.lport, flags="PA", seq=c.peer_isn + c.snd_nxt,
        ack=c.isn + c.rcv_nxt, dataofs=6, window=65535) / Raw(b"\x08\x01\x00\x00xyz")
    h.send(raw)
    assert c.recv()[0].ack == 4
    assert read_all(c.sock) == b"xyz"


def test_unknown_option_in_data_segment_is_ignored(h):
    """RFC 9293 §3.1 (MUST-68): an unknown option of valid length is skipped; the segment counts."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"ghi", options=[(99, b"\x01")])
    assert c.recv()[0].ack == 4
    assert read_all(c.sock) == b"ghi"


def test_segment_without_ack_in_established_is_dropped(h):
    """RFC 9293 §3.10.7.4 (fifth: if the ACK bit is off, drop the segment): data without ACK is
    neither delivered nor acknowledged."""
    c = handshake_passive(h, 8080)
    h.send(c.seg("P", data=b"noack"))
    assert c.recv() == []
    assert read_all(c.sock) == b""


def test_fin_without_ack_in_established_is_dropped(h):
    """RFC 9293 §3.10.7.4 (fifth): a FIN without ACK is dropped; no EOF."""
    c = handshake_passive(h, 8080)
    h.send(c.seg("F"))
    assert c.recv() == []
    try:
        c.sock.recv(1)
        raise AssertionError("EOF after a FIN without ACK")
    except BlockingIOError:
        pass


def test_data_beyond_the_window_is_acked_and_dropped(h):
    """RFC 9293 §3.10.7.4 (first: an unacceptable segment gets <SEQ=SND.NXT><ACK=RCV.NXT>)."""
    c = handshake_passive(h, 8080)
    c.send("PA", seq=10_000_000, data=b"far")
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 1, 1)
    assert read_all(c.sock) == b""


def test_old_duplicate_data_is_acked(h):
    """RFC 9293 §3.10.7.4 (first: a segment entirely below RCV.NXT is unacceptable -> ACK), with a
    D-SACK block (RFC 2883) since SACK is on."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"0123456789")
    c.recv()
    c.send("PA", seq=1, data=b"01234")
    (ack,) = c.recv()
    assert (ack.ack, ack.sack) == (11, [(1, 6)])


def test_segment_without_flags_to_closed_port_gets_rst(h):
    """RFC 9293 §3.10.7.1 (CLOSED, no ACK: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>): a segment
    with no flags at all is answered so."""
    h.send(tcp_to(8081, ""))
    (r,) = h.recv()
    assert (str(r[TCP].flags), r[TCP].seq, r[TCP].ack) == ("RA", 0, 5)


def test_fin_to_closed_port_gets_rst(h):
    """RFC 9293 §3.10.7.1: FIN counts in SEG.LEN: RST|ACK with ACK = SEG.SEQ + 1."""
    h.send(tcp_to(8081, "F"))
    (r,) = h.recv()
    assert (str(r[TCP].flags), r[TCP].seq, r[TCP].ack) == ("RA", 0, 6)


def test_data_to_closed_port_with_ack_gets_rst(h):
    """RFC 9293 §3.10.7.1 (CLOSED, ACK on: <SEQ=SEG.ACK><CTL=RST>)."""
    h.send(tcp_to(8081, "PA", ack=777, data=b"data"))
    (r,) = h.recv()
    assert (str(r[TCP].flags), r[TCP].seq) == ("R", 777)


def test_rst_to_closed_port_is_ignored(h):
    """RFC 9293 §3.10.7.1 (an incoming RST in CLOSED is discarded; never RST a RST)."""
    h.send(tcp_to(8081, "R"))
    h.send(tcp_to(8081, "RA", ack=9))
    assert h.recv() == []


def test_syn_rst_to_listener_is_dropped(h):
    """RFC 9293 §3.10.7.2 (LISTEN: check RST first, ignore it): SYN+RST creates nothing and draws
    no answer."""
    listen(h, 8080)
    h.send(tcp_to(8080, "SR", options=syn_options()))
    assert h.recv() == []


def test_all_flags_to_listener_are_dropped(h):
    """RFC 9293 §3.10.7.2: a "Christmas tree" segment carries RST, so the listener ignores it."""
    listen(h, 8080)
    h.send(tcp_to(8080, "FSRPAUEC"))
    assert h.recv() == []


def test_no_flags_to_listener_are_dropped(h):
    """RFC 9293 §3.10.7.2 (LISTEN: anything without SYN, ACK or RST: drop it)."""
    listen(h, 8080)
    h.send(tcp_to(8080, ""))
    assert h.recv() == []


def test_syn_with_urg_to_listener_is_answered(h):
    """RFC 9293 §3.10.7.2: URG on a SYN is irrelevant; the SYN is answered normally."""
    listen(h, 8080)
    h.send(tcp_to(8080, "SU", options=syn_options()))
    (sa,) = h.recv()
    assert str(sa[TCP].flags) == "SA" and sa[TCP].ack == 6


def test_syn_with_mss_zero_uses_the_default(h):
    """RFC 9293 §3.7.1: as Linux, an MSS option of 0 is ignored and the default 536 applies (524
    with timestamps)."""
    opts = [("MSS", 0)] + syn_options()[1:]
    c = handshake_passive(h, 8080, options=opts)
    c.sock.send(b"m" * 1000)
    assert c.recv()[0].len == 524


def test_tcp_to_broadcast_address_is_ignored(h):
    """RFC 1122 §4.2.3.10 (a SYN to a broadcast or multicast address MUST be ignored)."""
    listen(h, 8080)
    h.send(Ether(src="02:00:00:00:00:02", dst="ff:ff:ff:ff:ff:ff") /
           IP(src=PEER_IP, dst="192.0.2.255") / TCP(sport=40000, dport=8080, flags="S", seq=5,
                                                    options=syn_options()))
    assert h.recv() == []


def test_syn_from_broadcast_source_is_ignored(h):
    """RFC 1122 §4.2.3.10 / §3.2.1.3 (a segment from a broadcast or multicast source is dropped)."""
    listen(h, 8080)
    h.send(IP(src="224.0.0.5", dst=LOCAL_IP) / TCP(sport=40000, dport=8080, flags="S", seq=5,
                                                     options=syn_options()))
    assert h.recv() == []
