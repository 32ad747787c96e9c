"""Closing: active and passive close, half-close, simultaneous close (RFC 9293 §3.6, §3.10.4,
§3.10.7.4 eighth step), aborts (RFC 9293 §3.10.5, RFC 2525 §2.17 data loss on close), resets
received (RFC 9293 §3.10.7.4 second step) and what the application then sees."""

import socket
import struct

import pytest
from helpers import (
    PEER_IP,
    handshake_passive,
    listen,
    read_all,
    syn_ack_of,
    watch,
)
from scapy.layers.inet import TCP

LINGER_0 = struct.pack("ii", 1, 0)


def test_active_close_sends_fin(h):
    """RFC 9293 §3.10.4 (CLOSE in ESTABLISHED): close() queues a FIN after the data: FIN|ACK with
    SEG.SEQ = SND.NXT."""
    c = handshake_passive(h, 8080)
    c.sock.close()
    (fin,) = c.recv()
    assert (fin.flags, fin.seq, fin.ack, fin.len) == ("FA", 1, 1, 0)


def test_active_close_full_sequence(h):
    """RFC 9293 §3.6 figure 12 (normal close): FIN ->, <- ACK (FIN-WAIT-2, silent), <- FIN,
    ACK -> of SEG.SEQ+1 at once (TIME-WAIT)."""
    c = handshake_passive(h, 8080)
    c.sock.close()
    assert c.recv()[0].flags == "FA"
    c.send("A")  # acknowledges the FIN
    assert c.recv() == []
    c.send("FA")
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 2, 2)


def test_passive_close_full_sequence(h):
    """RFC 9293 §3.6 (the peer closes first): its FIN is acknowledged, recv() returns b"" (EOF),
    the application's close() sends our FIN (LAST-ACK), whose ACK ends the connection silently."""
    c = handshake_passive(h, 8080)
    c.send("FA")
    h.advance(0.01)
    assert [(s.flags, s.ack) for s in c.recv()] == [("A", 2)]
    assert c.sock.recv(10) == b""
    c.sock.close()
    (fin,) = c.recv()
    assert (fin.flags, fin.seq, fin.ack) == ("FA", 1, 2)
    c.send("A")
    assert c.recv() == []


def test_fin_before_any_data_is_acked_at_once(h):
    """RFC 9293 §3.10.7.4 (eighth, FIN: send an ACK for it): as Linux, a FIN arriving before any
    data is acknowledged at once (within a tick: no delayed-ACK state exists yet)."""
    c = handshake_passive(h, 8080)
    c.send("FA")
    h.advance(0.01)
    (ack,) = c.recv()
    assert ack.ack == 2


def test_fin_after_data_is_delayed_acked(h):
    """RFC 9293 §3.8.6.3 (the ACK of a FIN may be delayed): as Linux, a FIN after data moves the
    connection to interactive mode and its ACK waits for the delayed-ACK timer (~40 ms), so an
    application answer can carry it."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"x")
    assert len(c.recv()) == 1
    c.send("FA")
    assert c.recv() == []
    h.advance(0.25)
    (ack,) = c.recv()
    assert ack.ack == 3


def test_data_with_fin_is_delivered_then_eof(h):
    """RFC 9293 §3.10.7.4 (text, then FIN): data and FIN in one segment: the data reads back, then
    EOF; as Linux the ACK (SEG.SEQ + len + 1) is delayed (~40 ms)."""
    c = handshake_passive(h, 8080)
    c.send("FPA", data=b"bye")
    assert c.recv() == []
    assert read_all(c.sock) == b"bye"
    assert c.sock.recv(10) == b""
    h.advance(0.25)
    (ack,) = c.recv()
    assert ack.ack == 5


def test_out_of_order_fin_waits_for_the_gap(h):
    """RFC 9293 §3.10.7.4 (a FIN is processed in sequence order): a FIN beyond a gap is
    held (dup ACK, SACK block including the FIN); when the gap is filled the ACK covers both."""
    c = handshake_passive(h, 8080)
    c.send("FA", seq=11)
    (dup,) = c.recv()
    assert (dup.ack, dup.sack) == (1, [(11, 12)])
    c.send("PA", seq=1, data=b"0123456789")
    (ack,) = c.recv()
    assert ack.ack == 12
    assert read_all(c.sock) == b"0123456789"
    assert c.sock.recv(1) == b""


def test_send_after_peer_half_close(h):
    """RFC 9293 §3.10.2 (SEND in CLOSE-WAIT is allowed): after the peer's FIN, the application
    can still send; its close() then sends FIN with the next sequence number."""
    c = handshake_passive(h, 8080)
    c.send("FA")
    h.advance(0.01)
    c.recv()
    c.sock.send(b"late")
    (d,) = c.recv()
    assert (d.seq, d.ack, d.data) == (1, 2, b"late")
    c.sock.close()
    (fin,) = c.recv()
    assert (fin.flags, fin.seq) == ("FA", 5)


def test_shutdown_write_half_close(h):
    """RFC 9293 §3.6 (half-close): shutdown(SHUT_WR) sends FIN but the stack keeps receiving and
    acknowledging the peer's data until the peer's FIN (then EOF)."""
    c = handshake_passive(h, 8080)
    c.sock.shutdown(socket.SHUT_WR)
    (fin,) = c.recv()
    assert (fin.flags, fin.seq) == ("FA", 1)
    c.send("PA", data=b"more")
    (ack,) = c.recv()
    assert (ack.seq, ack.ack) == (2, 5)
    assert read_all(c.sock) == b"more"
    c.send("FA")
    h.advance(0.25)
    assert c.recv()[-1].ack == 6
    assert c.sock.recv(10) == b""


def test_send_after_shutdown_write_fails(h):
    """RFC 9293 §3.10.2 (SEND after CLOSE: error "connection closing"): after shutdown(SHUT_WR)
    send() raises BrokenPipeError (EPIPE) and nothing goes on the wire."""
    c = handshake_passive(h, 8080)
    c.sock.shutdown(socket.SHUT_WR)
    c.recv()
    with pytest.raises(BrokenPipeError):
        c.sock.send(b"x")
    assert c.recv() == []


def test_simultaneous_close(h):
    """RFC 9293 §3.6 figure 13: FINs cross: our FIN, the peer's FIN (not acking ours) is
    acknowledged (CLOSING), and the ACK of our FIN leads to TIME-WAIT silently."""
    c = handshake_passive(h, 8080)
    c.sock.close()
    assert c.recv()[0].flags == "FA"
    c.send("FA", seq=1, ack=1)
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 2, 2)
    c.send("A", seq=2, ack=2)
    assert c.recv() == []


def test_fin_combined_with_queued_data(h):
    """RFC 9293 §3.10.4 (FIN after all queued data): data held by a zero window and close() go
    out as one segment carrying data and FIN (as Linux) once the window opens."""
    c = handshake_passive(h, 8080, ack_win=0)
    c.sock.send(b"q" * 100)
    c.sock.close()
    assert c.recv() == []
    c.send("A", win=100)
    (d,) = c.recv()
    assert (d.flags, d.seq, d.len) == ("FPA", 1, 100)


def test_close_with_unread_data_sends_rst(h):
    """RFC 9293 §3.10.4 / RFC 2525 §2.17 (data loss on close): closing with unread received data
    aborts with RST|ACK (SEG.SEQ = SND.NXT) instead of FIN, as Linux."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"abc")
    c.recv()
    c.sock.close()
    (r,) = c.recv()
    assert (r.flags, r.seq, r.ack) == ("RA", 1, 4)


def test_segment_after_abort_gets_rst(h):
    """RFC 9293 §3.10.7.1 (CLOSED): once aborted, the connection no longer exists: further data
    draws a RST with SEG.SEQ = the segment's ACK."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"abc")
    c.recv()
    c.sock.close()
    c.recv()
    c.send("PA", data=b"def")
    (r,) = c.recv()
    assert (r.flags, r.seq) == ("R", 1)


def test_so_linger_zero_aborts_with_rst(h):
    """RFC 9293 §3.10.5 (ABORT): close() with SO_LINGER {on, 0} sends RST|ACK at SND.NXT and no
    FIN."""
    c = handshake_passive(h, 8080)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
    c.sock.close()
    (r,) = c.recv()
    assert (r.flags, r.seq, r.ack) == ("RA", 1, 1)


def test_so_linger_zero_after_data_uses_snd_nxt(h):
    """RFC 9293 §3.10.5: the abort RST carries SEG.SEQ = SND.NXT, past data already sent."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"q" * 100)
    c.recv()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
    c.sock.close()
    (r,) = c.recv()
    assert (r.flags, r.seq, r.ack) == ("RA", 101, 1)


def test_rst_received_reports_connection_reset(h):
    """RFC 9293 §3.10.7.4 (second, RST in ESTABLISHED: "connection reset"): recv() raises
    ConnectionResetError once, then reads EOF; send() raises BrokenPipeError, as Linux."""
    c = handshake_passive(h, 8080)
    c.send("R", seq=1, options=[])
    assert c.recv() == []
    with pytest.raises(ConnectionResetError):
        c.sock.recv(10)
    assert c.sock.recv(10) == b""
    with pytest.raises(BrokenPipeError):
        c.sock.send(b"x")


def test_rst_after_peer_fin_breaks_the_pipe(h):
    """RFC 9293 §3.10.7.4 (RST in CLOSE-WAIT): the connection is gone; a send() raises
    BrokenPipeError."""
    c = handshake_passive(h, 8080)
    c.send("FA")
    h.advance(0.01)
    c.recv()
    c.send("R", options=[])
    with pytest.raises(BrokenPipeError):
        c.sock.send(b"y")
    assert c.recv() == []


def test_closing_listener_resets_unaccepted_connections(h):
    """RFC 9293 §3.10.4 (CLOSE of a LISTEN): as Linux, connections completed but not yet
    accepted are reset (RST|ACK); half-open ones (SYN-RECEIVED) are dropped silently."""
    lst = listen(h, 8080)
    c2, _ = syn_ack_of(h, 8080, pport=40001, listener=lst)
    c2.send("A", 1, 1)
    c3, _ = syn_ack_of(h, 8080, pport=40002, listener=lst)
    lst.close()
    frames = h.recv()
    assert [(f[TCP].dport, str(f[TCP].flags), f[TCP].seq - c2.isn) for f in frames] == [
        (40001, "RA", 1)]


def test_accepted_connection_survives_listener_close(h):
    """RFC 9293 §3.10.4: closing the listener does not affect connections already accepted."""
    c = handshake_passive(h, 8080)
    c.listener.close()
    assert h.recv() == []
    c.send("PA", data=b"still")
    assert c.recv()[0].ack == 6
    assert read_all(c.sock) == b"still"


def test_orphaned_fin_wait_2_times_out(harness_factory):
    """RFC 9293 §3.10.4 leaves FIN-WAIT-2 unbounded; as Linux, a closed (orphaned) connection
    waits tcp_fin_timeout for the peer's FIN, then disappears silently: a later FIN gets RST."""
    h = harness_factory(tcp_fin_timeout=1)
    c = handshake_passive(h, 8080)
    c.sock.close()
    c.recv()
    c.send("A")
    assert watch(c, 1.4, 0.05) == []
    c.send("FA")
    (r,) = c.recv()
    assert r.flags == "R" and r.seq == 2


def test_fin_wait_2_before_timeout_still_completes(harness_factory):
    """RFC 9293 §3.10.7.4 (FIN in FIN-WAIT-2): within tcp_fin_timeout the peer's FIN is
    acknowledged normally."""
    h = harness_factory(tcp_fin_timeout=1)
    c = handshake_passive(h, 8080)
    c.sock.close()
    c.recv()
    c.send("A")
    h.advance(0.5)
    c.send("FA")
    (ack,) = c.recv()
    assert (ack.flags, ack.ack) == ("A", 2)
    assert ack.pkt.dst == ack.pkt.dst and PEER_IP
