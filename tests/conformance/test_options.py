"""TCP options after negotiation: timestamps (RFC 7323 §3-§5), MSS (RFC 9293 §3.7.1, RFC 6691),
SACK-permitted (RFC 2018), window scale (RFC 7323 §2), and option parsing robustness
(RFC 9293 §3.1, as Linux's tcp_parse_options)."""

from helpers import (
    LOCAL_IP,
    PEER_IP,
    PEER_ISN,
    Conn,
    accept,
    handshake_passive,
    listen,
    option_kinds,
    read_all,
    syn_ack_of,
    syn_options,
)
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw


def raw_syn(opt_bytes: bytes, port: int = 8080, pport: int = 40000):
    """A SYN whose option bytes are given raw (padded to 32 bits with zeros = EOL)."""
    opt_bytes += b"\x00" * (-len(opt_bytes) % 4)
    return IP(src=PEER_IP, dst=LOCAL_IP) / TCP(
        sport=pport, dport=port, flags="S", seq=PEER_ISN, window=65535,
        dataofs=5 + len(opt_bytes) // 4) / Raw(opt_bytes)


def synack_for_raw(h, opt_bytes: bytes, listener=None):
    h.send(raw_syn(opt_bytes))
    (sa,) = h.recv()
    assert str(sa[TCP].flags) == "SA"
    return sa


MSS_1460 = b"\x02\x04\x05\xb4"
SACK_OK = b"\x04\x02"
WS_7 = b"\x03\x03\x07"


def test_data_segments_carry_timestamps(h):
    """RFC 7323 §3.2: once negotiated, every segment carries TSopt (Linux layout NOP NOP TS), with
    TSecr echoing the peer's latest in-order TSval."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"ping", tsval=777_000)
    (ack,) = c.recv()
    assert option_kinds(ack.pkt) == ["NOP", "NOP", "Timestamp"]
    assert ack.tsecr == 777_000
    c.sock.send(b"pong")
    (d,) = c.recv()
    assert option_kinds(d.pkt) == ["NOP", "NOP", "Timestamp"] and d.tsecr == 777_000


def test_ts_recent_is_not_updated_by_out_of_order_segment(h):
    """RFC 7323 §4.3 (2): TS.Recent is taken only from a segment with SEG.SEQ =< Last.ACK.sent,
    so the dup ACK for an out-of-order segment still echoes the older TSval."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"a" * 100, tsval=100_000)
    assert c.recv()[0].tsecr == 100_000
    c.send("PA", seq=201, data=b"c" * 100, tsval=100_050)
    (dup,) = c.recv()
    assert (dup.ack, dup.tsecr) == (101, 100_000)


def test_tsval_clock_ticks_in_milliseconds(h):
    """RFC 7323 §5.4 (a clock between 1 ms and 1 s per tick): as Linux, TSval ticks once per
    millisecond, so 300 ms later it has grown by about 300."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"a")
    (d1,) = c.recv()
    c.send("A")
    h.advance(0.3)
    c.sock.send(b"b")
    (d2,) = c.recv()
    assert 290 <= (d2.tsval - d1.tsval) % (1 << 32) <= 400


def test_no_timestamps_unless_the_syn_offered_them(h):
    """RFC 7323 §3.2: without TSopt in the SYN neither side sends it; the SYN-ACK and the data
    carry no timestamps."""
    c = handshake_passive(h, 8080, options=syn_options(None))
    assert "Timestamp" not in c.synack.opts
    c.sock.send(b"data")
    (d,) = c.recv()
    assert d.opts == {} and d.len == 4


def test_no_sack_blocks_unless_permitted(h):
    """RFC 2018 §2: SACK options are sent only if SACK-permitted was received in the SYN; the
    duplicate ACK for out-of-order data then has no SACK blocks."""
    c = handshake_passive(h, 8080, options=syn_options(sack=False))
    c.send("PA", seq=101, data=b"x" * 100)
    (dup,) = c.recv()
    assert (dup.ack, dup.sack) == (1, [])
    assert "SAck" not in dup.opts


def test_no_window_scaling_unless_offered(h):
    """RFC 7323 §2.2: without WScale in the SYN, windows are unscaled both ways: the window field
    is the byte count.  As Linux, the right edge stays where it was offered (RFC 9293 §3.8.6.2.2):
    after 10 unread bytes the window reads 65160 - 10."""
    c = handshake_passive(h, 8080, options=syn_options(wscale=None))
    assert "WScale" not in c.synack.opts
    c.send("PA", data=b"x" * 10)
    (ack,) = c.recv()
    assert ack.win == 65150


def test_peer_mss_limits_segment_size(h):
    """RFC 9293 §3.7.1, RFC 6691: segments carry at most the peer's MSS minus the TCP options
    (1000 - 12 timestamp bytes = 988)."""
    c = handshake_passive(h, 8080, options=syn_options(mss=1000))
    c.sock.send(b"z" * 3000)
    segs = c.recv()
    assert [s.len for s in segs] == [988, 988, 988, 36]


def test_peer_mss_without_timestamps(h):
    """RFC 9293 §3.7.1: without timestamps a full segment is exactly the peer's MSS."""
    c = handshake_passive(h, 8080, options=syn_options(None, mss=1000))
    c.sock.send(b"z" * 2500)
    assert [s.len for s in c.recv()] == [1000, 1000, 500]


def test_default_mss_is_536_without_mss_option(h):
    """RFC 9293 §3.7.1 (MUST-15): without an MSS option the send MSS is 536; with timestamps the
    payload is 524."""
    c = handshake_passive(h, 8080, options=syn_options(mss=None))
    c.sock.send(b"z" * 1200)
    assert [s.len for s in c.recv()] == [524, 524, 152]


def test_unknown_option_is_skipped(h):
    """RFC 9293 §3.1 (MUST-68: ignore unknown options with a valid length): the options after it
    are still honoured."""
    listen(h, 8080)
    sa = synack_for_raw(h, MSS_1460 + b"\x63\x04\xab\xcd" + SACK_OK + b"\x01" + WS_7)
    assert option_kinds(sa) == ["MSS", "NOP", "NOP", "SAckOK", "NOP", "WScale"]


def test_option_with_bad_length_ends_parsing(h):
    """RFC 9293 §3.1 (MUST-64/MUST-69: be prepared for illegal option lengths): as Linux, a length
    below 2 ends parsing; the options before it are kept, the SYN still answered."""
    listen(h, 8080)
    sa = synack_for_raw(h, MSS_1460 + b"\x63\x01" + SACK_OK + WS_7)
    assert option_kinds(sa) == ["MSS"]


def test_option_running_past_the_header_ends_parsing(h):
    """RFC 9293 §3.1: an option whose length runs past the header is ignored with whatever
    follows; as Linux the SYN is still answered with the options parsed before it."""
    listen(h, 8080)
    sa = synack_for_raw(h, MSS_1460 + SACK_OK + b"\x08\x28")
    assert option_kinds(sa) == ["MSS", "NOP", "NOP", "SAckOK"]


def test_eol_ends_option_list(h):
    """RFC 9293 §3.1 (End of Option List): nothing after EOL is an option."""
    listen(h, 8080)
    sa = synack_for_raw(h, MSS_1460 + b"\x00" + b"\x01\x01\x01" + SACK_OK + b"\x01" + WS_7)
    assert option_kinds(sa) == ["MSS"]


def test_mss_option_with_wrong_length_is_ignored(h):
    """RFC 9293 §3.1: as Linux, an MSS option whose length is not 4 is skipped (the default 536
    applies) while later options still count."""
    lst = listen(h, 8080)
    sa = synack_for_raw(h, b"\x02\x06\x05\xb4\x00\x00" + SACK_OK)
    assert option_kinds(sa) == ["MSS", "NOP", "NOP", "SAckOK"]
    c = Conn(h, 8080, 40000, ts=False)
    c.isn = sa[TCP].seq
    c.snd_nxt = c.rcv_nxt = 1
    c.send("A")
    sock = accept(lst)
    sock.send(b"m" * 1200)
    assert [s.len for s in c.recv()] == [536, 536, 128]


def test_mss_option_outside_syn_is_ignored(h):
    """RFC 9293 §3.7.1: MSS is only sent (and honoured) in SYNs; as Linux, an MSS option on an
    established segment changes nothing."""
    c = handshake_passive(h, 8080)
    opts = [("MSS", 200), ("NOP", None), ("NOP", None), ("Timestamp", (c.tsval(), c.last_tsval))]
    c.send("PA", data=b"q", options=opts)
    c.recv()
    c.sock.send(b"w" * 2000)
    assert [s.len for s in c.recv()] == [1448, 552]


def test_segment_without_timestamp_is_accepted(h):
    """RFC 7323 §3.2 says a segment without TSopt SHOULD be dropped once timestamps are on; as
    Linux, it is accepted and acknowledged (with TSopt)."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"nots", options=[])
    (ack,) = c.recv()
    assert ack.ack == 5 and "Timestamp" in ack.opts
    assert read_all(c.sock) == b"nots"


def test_synack_timestamp_echo_and_established_tsecr(h):
    """RFC 7323 §4.3: the SYN-ACK's TSecr echoes the SYN's TSval; the stack's first ACK after the
    handshake echoes the TSval of the handshake-completing ACK."""
    listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, options=syn_options(4242))
    assert sa.tsecr == 4242
    c.send("A", tsval=4343)
    c.send("PA", data=b"x", tsval=4444)
    assert c.recv()[0].tsecr == 4444
