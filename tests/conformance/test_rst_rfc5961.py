"""Blind in-window attacks (RFC 5961): RST and SYN in the window draw a challenge ACK instead of
acting (§3, §4), old or too-new ACKs (§5), and the challenge-ACK rate limit (§7; as Linux one per
500 ms per connection, tcp_invalid_ratelimit)."""

import pytest
from helpers import accept, handshake_passive, listen, read_all, syn_ack_of, syn_options


def alive(c) -> bool:
    """The connection still carries data both ways."""
    c.send("PA", data=b"ping")
    got = c.recv()
    c.sock.send(b"pong")
    got += c.recv()
    return read_all(c.sock) == b"ping" and any(s.data == b"pong" for s in got)


def test_rst_with_exact_sequence_resets(h):
    """RFC 5961 §3.2 (RST with SEG.SEQ = RCV.NXT: reset the connection): nothing is sent and the
    application sees ECONNRESET."""
    c = handshake_passive(h, 8080)
    c.send("R", options=[])
    assert c.recv() == []
    with pytest.raises(ConnectionResetError):
        c.sock.recv(1)


def test_rst_ack_with_exact_sequence_resets(h):
    """RFC 5961 §3.2: RST|ACK with the exact sequence number resets too."""
    c = handshake_passive(h, 8080)
    c.send("RA", options=[])
    assert c.recv() == []
    with pytest.raises(ConnectionResetError):
        c.sock.recv(1)


def test_rst_in_window_gets_challenge_ack(h):
    """RFC 5961 §3.2 (RST in the window but not exact: send a challenge ACK
    <SEQ=SND.NXT><ACK=RCV.NXT> and drop it): the connection survives."""
    c = handshake_passive(h, 8080)
    c.send("R", seq=c.snd_nxt + 10, options=[])
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 1, 1)
    h.advance(0.6)
    assert alive(c)


def test_rst_out_of_window_is_dropped_silently(h):
    """RFC 5961 §3.2 (RST outside the window: discard silently)."""
    c = handshake_passive(h, 8080)
    c.send("R", seq=c.snd_nxt + 10_000_000, options=[])
    assert c.recv() == []
    assert alive(c)


def test_rst_below_rcv_nxt_is_dropped_silently(h):
    """RFC 5961 §3.2: a RST with a sequence number just below RCV.NXT is outside the window."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"x" * 100)
    c.recv()
    read_all(c.sock)
    c.send("R", seq=50, options=[])
    assert c.recv() == []
    assert alive(c)


def test_challenge_acks_are_rate_limited(h):
    """RFC 5961 §7 (challenge ACKs SHOULD be rate limited): as Linux, at most one per 500 ms per
    connection: a second in-window RST 300 ms later gets none, a third 600 ms later gets one."""
    c = handshake_passive(h, 8080)
    c.send("R", seq=c.snd_nxt + 10, options=[])
    assert len(c.recv()) == 1
    h.advance(0.3)
    c.send("R", seq=c.snd_nxt + 20, options=[])
    assert c.recv() == []
    h.advance(0.3)
    c.send("R", seq=c.snd_nxt + 30, options=[])
    assert len(c.recv()) == 1


def test_syn_in_established_gets_challenge_ack(h):
    """RFC 5961 §4.2 (any SYN in a synchronized state: challenge ACK, drop): the connection is
    not reset."""
    c = handshake_passive(h, 8080)
    c.send("S", seq=c.snd_nxt + 5, options=syn_options(c.tsval()))
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 1, 1)
    h.advance(0.6)
    assert alive(c)


def test_syn_at_rcv_nxt_gets_challenge_ack(h):
    """RFC 5961 §4.2: even a SYN with SEG.SEQ = RCV.NXT only draws a challenge ACK."""
    c = handshake_passive(h, 8080)
    c.send("S", seq=c.snd_nxt, options=[])
    (ack,) = c.recv()
    assert (ack.flags, ack.ack) == ("A", 1)


def test_syn_out_of_window_gets_challenge_ack(h):
    """RFC 5961 §4.2 (regardless of the sequence number): a SYN far outside the window gets the
    challenge ACK too, as Linux."""
    c = handshake_passive(h, 8080)
    c.send("S", seq=c.snd_nxt + 50_000_000, options=[])
    (ack,) = c.recv()
    assert (ack.flags, ack.ack) == ("A", 1)


def test_challenge_ack_limit_is_shared_by_rst_and_syn(h):
    """RFC 5961 §7: as Linux the per-connection limit covers every challenge ACK: a SYN right after
    a challenged RST gets none; 550 ms later it gets one."""
    c = handshake_passive(h, 8080)
    c.send("R", seq=c.snd_nxt + 10, options=[])
    assert len(c.recv()) == 1
    c.send("S", seq=c.snd_nxt + 10, options=[])
    assert c.recv() == []
    h.advance(0.55)
    c.send("S", seq=c.snd_nxt + 10, options=[])
    assert len(c.recv()) == 1


def test_ack_below_isn_gets_challenge_ack(h):
    """RFC 5961 §5.2 (SEG.ACK < SND.UNA - MAX.SND.WND: challenge ACK, drop): as Linux MAX.SND.WND is
    capped by the bytes acknowledged so far, so right after the handshake any ACK below SND.UNA
    is challenged."""
    c = handshake_passive(h, 8080)
    c.send("A", ack=0)
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 1, 1)


def test_slightly_old_ack_is_ignored(h):
    """RFC 5961 §5.2 (SND.UNA - MAX.SND.WND <= SEG.ACK < SND.UNA: a duplicate, acceptable): after
    100 bytes were acknowledged, an ACK 1 byte older draws nothing."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"x" * 100)
    c.recv()
    c.send("A")
    c.send("A", ack=100)
    assert c.recv() == []


def test_much_older_ack_gets_challenge_ack(h):
    """RFC 5961 §5.2: an ACK older than SND.UNA by more than the bytes acknowledged so far (the
    Linux bound) is challenged."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"x" * 100)
    c.recv()
    c.send("A")
    c.send("A", ack=-900)
    (ack,) = c.recv()
    assert (ack.seq, ack.ack) == (101, 1)


def test_data_with_slightly_old_ack_is_accepted(h):
    """RFC 5961 §5.2 (an acceptable old ACK does not make the data unacceptable)."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"x" * 100)
    c.recv()
    c.send("A")
    c.send("PA", ack=50, data=b"old")
    assert c.recv()[0].ack == 4
    assert read_all(c.sock) == b"old"


def test_ack_of_unsent_data_gets_ack(h):
    """RFC 9293 §3.10.7.4 (SEG.ACK > SND.NXT: send an ACK, drop the segment), RFC 5961 §5.2."""
    c = handshake_passive(h, 8080)
    c.send("A", ack=1000)
    (ack,) = c.recv()
    assert (ack.seq, ack.ack) == (1, 1)


def test_data_with_ack_of_unsent_data_is_dropped(h):
    """RFC 9293 §3.10.7.4 (drop the segment): its data is not delivered."""
    c = handshake_passive(h, 8080)
    c.send("PA", ack=1000, data=b"zz")
    (ack,) = c.recv()
    assert ack.ack == 1
    assert read_all(c.sock) == b""


def test_rst_in_window_in_syn_received_gets_challenge_ack(h):
    """RFC 5961 §3.2 applies in SYN-RECEIVED: a RST in the window but not exact gets a challenge
    ACK and the handshake can still complete (with the ACK echoing the SYN-ACK's TSval)."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    c.send("R", seq=1000, options=[])
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 1, 1)
    c.send("A", 1, 1, tsecr=sa.tsval)
    assert accept(lst).getpeername()[1] == 40000


def test_rst_exact_in_syn_received_drops_the_attempt(h):
    """RFC 9293 §3.10.7.4 (SYN-RECEIVED, RST: a passive open returns to LISTEN): the embryonic
    connection is gone, so the final ACK then draws a RST."""
    lst = listen(h, 8080)
    c, sa = syn_ack_of(h, 8080, listener=lst)
    c.send("R", seq=1, options=[])
    assert c.recv() == []
    c.send("A", 1, 1)
    (r,) = c.recv()
    assert (r.flags, r.seq) == ("R", 1)
    with pytest.raises(BlockingIOError):
        lst.accept()
