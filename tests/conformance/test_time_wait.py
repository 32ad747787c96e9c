"""TIME-WAIT (RFC 9293 §3.10.7.4 TIME-WAIT rules, §3.6.1), reopening from TIME-WAIT with a new
SYN (RFC 6191 with timestamps, RFC 9293 §3.6.1 without), and RST in TIME-WAIT (RFC 1337: Linux's
default tcp_rfc1337=0 lets a RST end it)."""

from helpers import handshake_passive, syn_options, watch


def time_wait(h, **kw):
    """An actively closed connection in TIME-WAIT (FIN ->, <- ACK, <- FIN, ACK ->)."""
    c = handshake_passive(h, 8080, **kw)
    c.sock.close()
    assert c.recv()[0].flags == "FA"
    c.send("A")
    c.send("FA")
    (ack,) = c.recv()
    assert (ack.seq, ack.ack) == (2, 2)
    return c


def test_retransmitted_fin_in_time_wait_is_acked(h):
    """RFC 9293 §3.10.7.4 (TIME-WAIT: a retransmission of the remote FIN is acknowledged and the
    2 MSL timeout restarted)."""
    c = time_wait(h)
    c.send("FA", seq=1)
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 2, 2)


def test_time_wait_persists(h):
    """RFC 9293 §3.6.1 (TIME-WAIT lasts 2 MSL; as Linux 60 s): 1.5 s later the connection still
    answers a retransmitted FIN, and it sends nothing by itself meanwhile."""
    c = time_wait(h)
    assert watch(c, 1.5, 0.1) == []
    c.send("FA", seq=1)
    assert [(s.flags, s.ack) for s in c.recv()] == [("A", 2)]


def test_pure_ack_in_time_wait_is_ignored(h):
    """RFC 9293 §3.10.7.4 (TIME-WAIT, ACK without FIN or data): nothing to answer."""
    c = time_wait(h)
    c.send("A")
    assert c.recv() == []


def test_data_in_time_wait_gets_an_ack(h):
    """RFC 9293 §3.10.7.4 (first check: unacceptable segment -> ACK): data after the peer's FIN
    is out of the window and answered with <SEQ=SND.NXT><ACK=RCV.NXT>."""
    c = time_wait(h)
    c.send("PA", seq=1000, data=b"x")
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 2, 2)


def test_rst_ends_time_wait(h):
    """RFC 1337 (TIME-WAIT assassination) lets a stack ignore RST in TIME-WAIT; as Linux
    (tcp_rfc1337=0) a RST ends it: a later FIN meets a closed port and gets RST."""
    c = time_wait(h)
    c.send("R", options=[])
    assert c.recv() == []
    c.send("FA", seq=1)
    (r,) = c.recv()
    assert (r.flags, r.seq) == ("R", 2)


def test_new_syn_with_newer_timestamp_reopens(h):
    """RFC 6191 §2 (a SYN whose TSval is newer reopens a TIME-WAIT connection): the listener
    answers with a SYN-ACK whose ISN is, as Linux, the old SND.NXT + 65537."""
    c = time_wait(h)
    syn_seq = c.snd_nxt + 1000
    c.send("S", seq=syn_seq, options=syn_options(c.tsval() + 10))
    (sa,) = c.recv()
    assert sa.flags == "SA" and sa.ack == syn_seq + 1
    assert sa.seq == 2 + 65535 + 2


def test_new_syn_with_newer_timestamp_and_lower_seq_reopens(h):
    """RFC 6191 §2: with timestamps the TSval decides, so even a SYN below RCV.NXT reopens."""
    c = time_wait(h)
    c.send("S", seq=c.snd_nxt - 1000, options=syn_options(c.tsval() + 10))
    (sa,) = c.recv()
    assert sa.flags == "SA"


def test_new_syn_with_old_timestamp_gets_ack(h):
    """RFC 7323 §5 (PAWS) with RFC 6191: a SYN with an older TSval is rejected: the TIME-WAIT
    connection answers with its ACK <SEQ=SND.NXT><ACK=RCV.NXT>."""
    c = time_wait(h)
    c.send("S", seq=c.snd_nxt + 1000, options=syn_options(10))
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 2, 2)


def test_new_syn_above_rcv_nxt_reopens_without_timestamps(h):
    """RFC 9293 §3.6.1 (reopen from TIME-WAIT if the new ISN is above the old sequence space):
    without timestamps a SYN with SEG.SEQ > RCV.NXT gets a SYN-ACK."""
    c = time_wait(h, options=syn_options(None))
    syn_seq = c.snd_nxt + 1000
    c.send("S", seq=syn_seq, options=syn_options(None))
    (sa,) = c.recv()
    assert (sa.flags, sa.ack) == ("SA", syn_seq + 1)


def test_new_syn_below_rcv_nxt_gets_ack_without_timestamps(h):
    """RFC 9293 §3.6.1: without timestamps a SYN below RCV.NXT could be an old duplicate: the
    TIME-WAIT connection answers with an ACK instead."""
    c = time_wait(h, options=syn_options(None))
    c.send("S", seq=c.snd_nxt - 1000, options=syn_options(None))
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 2, 2)


def test_passive_closer_has_no_time_wait(h):
    """RFC 9293 §3.6 (LAST-ACK -> CLOSED): the side that closed second keeps no state: a
    retransmitted FIN then meets a closed port and gets RST."""
    c = handshake_passive(h, 8080)
    c.send("FA")
    h.advance(0.01)
    c.recv()
    c.sock.close()
    c.recv()
    c.send("A")
    assert c.recv() == []
    c.send("FA", seq=1)
    (r,) = c.recv()
    assert (r.flags, r.seq) == ("R", 2)
