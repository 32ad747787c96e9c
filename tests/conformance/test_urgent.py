"""Urgent data: the URG bit and the urgent pointer (RFC 9293 §3.8.5: MUST-30 support it, MUST-31
any length, MUST-62 the pointer names the octet *after* the urgent data, MUST-32/33 tell the
application and let it find the mark; MUST-66 URG is processed with a zero window), as Linux
implements them with the BSD socket API (RFC 6093 §3-§4).

As Linux (``tcp_check_urg``/``tcp_urg`` on input, ``tcp_recvmsg_locked``/``tcp_recv_urg`` in the
socket, ``tcp_mark_urg`` and ``__tcp_transmit_skb`` on output; ``tcp_stdurg`` 0):

* The urgent byte is SEG.SEQ + SEG.UP - 1, the byte *before* the pointer (SEG.UP 0: SEG.SEQ
  itself).  Only that one byte is out of band: ``recv(MSG_OOB)`` returns it (one byte whatever the
  size asked), once; the rest of the urgent data is ordinary data.  Without SO_OOBINLINE the byte
  is taken out of the stream: a plain read skips it.
* The mark: a plain read (recv, recv_into, MSG_PEEK) that has copied something stops before the
  urgent byte's position, whether or not the byte was read out of band, SO_OOBINLINE or not; the
  next read starts at it.  Once a read passes the mark the byte is gone (``MSG_OOB``: EINVAL).
* ``recv(MSG_OOB)``: EINVAL when there is no urgent byte to give (none came, already read,
  SO_OOBINLINE on), EAGAIN when the pointer is known but its byte has not arrived -- never
  blocking, even on a blocking socket --, b"" (EOF) for that case after a FIN, ENOTCONN after a
  RST and on a listener.
* The newest pointer wins: an earlier urgent byte not yet passed becomes ordinary inline data
  (even one already read out of band), unless the reader stands exactly at its mark, in which case
  it is skipped.  A pointer into data already received (before RCV.NXT) is ignored.
* ``send(data, MSG_OOB)`` makes the last byte of ``data`` urgent: SND.UP = the byte after it.
  Every segment that starts before SND.UP carries URG and SND.UP - SEG.SEQ, retransmissions,
  pure ACKs and window probes included, until an ACK covers SND.UP.  While SND.UP is
  unacknowledged Nagle does not hold anything back.
"""

import errno
import socket
import struct
import time

import pytest
from helpers import (
    LOCAL_IP,
    TS_MSS,
    connect_start,
    handshake_active,
    handshake_passive,
    listen,
    read_all,
    watch,
)

OOB = socket.MSG_OOB
PEEK = socket.MSG_PEEK
SOL = socket.SOL_SOCKET
M = TS_MSS


def rd(sock, n: int = 100, flags: int = 0):
    """``sock.recv(n, flags)``: the bytes, or the name of the errno it raised ("EINVAL")."""
    try:
        return sock.recv(n, flags)
    except OSError as e:
        return errno.errorcode[e.errno]


def sd(sock, data: bytes, flags: int = 0):
    """``sock.send(data, flags)``: the count, or the name of the errno it raised."""
    try:
        return sock.send(data, flags)
    except OSError as e:
        return errno.errorcode[e.errno]


def urgent(c, data: bytes, urg: int | None = None, flags: str = "PAU") -> None:
    """The peer sends ``data`` with URG and SEG.UP = ``urg`` (default: its length, so that its last
    byte is the urgent one)."""
    c.send(flags, data=data, urg=len(data) if urg is None else urg)


def inline(sock, on: int = 1) -> None:
    sock.setsockopt(SOL, socket.SO_OOBINLINE, on)


def abcx_def(h):
    """A passive connection that received "abcX" (URG, X urgent) then "def"; both ACKed."""
    c = handshake_passive(h, 8080)
    urgent(c, b"abcX")
    c.send("PA", data=b"def")
    assert [(s.flags, s.ack) for s in c.recv()] == [("A", 5), ("A", 8)]
    return c


def read_abc_then(c, oob_read: str, rest: bytes) -> None:
    """After "abcX" (X urgent): X read out of band ``first``, ``at_mark`` or ``never``, around
    two plain reads, which give b"abc" (stopping at the mark) and then ``rest`` (X skipped)."""
    if oob_read == "first":
        assert rd(c.sock, 1, OOB) == b"X"
    assert rd(c.sock) == b"abc"
    if oob_read == "at_mark":
        assert rd(c.sock, 1, OOB) == b"X"
    assert rd(c.sock) == rest


# ---- receiving: the urgent byte and the mark ----
def test_urgent_byte_is_taken_out_of_band(h):
    """RFC 9293 §3.8.5 (MUST-30, MUST-62), RFC 6093 §4: "abcX" with URG and SEG.UP 4: as Linux
    (tcp_check_urg: the byte before the pointer) X is the urgent byte: recv(100, MSG_OOB) returns
    just b"X", a plain read returns b"abc" (X is pulled out of the stream), then nothing more;
    later data reads normally.  The urgent byte is ordinary sequence space: the ACK is 5, and the
    stack's ACKs carry no URG."""
    c = handshake_passive(h, 8080)
    urgent(c, b"abcX")
    (a,) = c.recv()
    assert (a.flags, a.ack) == ("A", 5)
    assert rd(c.sock, 100, OOB) == b"X"
    assert rd(c.sock) == b"abc"
    assert rd(c.sock) == "EAGAIN"
    c.send("PA", data=b"def")
    assert c.recv()[0].ack == 8
    assert rd(c.sock) == b"def"


@pytest.mark.parametrize("oob_read", ["never", "first", "at_mark"])
def test_read_stops_at_the_mark(h, oob_read):
    """RFC 9293 §3.8.5 (MUST-33: the application can tell where the urgent data ends), RFC 6093
    §3: "abcX" (URG, X urgent) then "def".  As Linux (tcp_recvmsg_locked: "Are we at urgent data?
    Stop if we have read anything"), a read of 100 bytes returns b"abc" only, and the next one
    b"def" (X skipped).  The out-of-band byte can be read before the first read (``first``) or
    between the two (``at_mark``); if it was not (``never``), passing the mark loses it:
    recv(MSG_OOB) then raises EINVAL."""
    c = abcx_def(h)
    read_abc_then(c, oob_read, b"def")
    assert rd(c.sock) == "EAGAIN"
    assert rd(c.sock, 1, OOB) == "EINVAL"


def test_recv_into_stops_at_the_mark(h):
    """As recv (MUST-33): recv_into of 100 bytes gives 3 ("abc"), then 3 ("def", X skipped)."""
    c = abcx_def(h)
    buf = bytearray(100)
    assert c.sock.recv_into(buf) == 3 and buf[:3] == b"abc"
    assert c.sock.recv_into(buf) == 3 and buf[:3] == b"def"


def test_small_reads_around_the_mark(h):
    """One segment "abcXdef" with SEG.UP 4 (the urgent byte inside it): reads of 2 bytes give
    b"ab", b"c" (stopped at the mark), b"de" (X skipped), b"f"; the byte is still there out of band
    until the mark is passed (here it was, so EINVAL)."""
    c = handshake_passive(h, 8080)
    urgent(c, b"abcXdef", urg=4)
    c.recv()
    assert [rd(c.sock, 2) for _ in range(5)] == [b"ab", b"c", b"de", b"f", "EAGAIN"]
    assert rd(c.sock, 1, OOB) == "EINVAL"


def test_peek_stops_at_the_mark_too(h):
    """As Linux (the same loop serves MSG_PEEK): a peek stops before the mark (b"abc"); a peek at
    the mark skips the urgent byte (b"def") but, consuming nothing, keeps it: recv(MSG_OOB) still
    gives b"X"; the reads then give b"def", and the byte is gone (EINVAL)."""
    c = abcx_def(h)
    assert rd(c.sock, 100, PEEK) == b"abc"
    assert rd(c.sock) == b"abc"
    assert rd(c.sock, 100, PEEK) == b"def"
    assert rd(c.sock, 1, OOB) == b"X"
    assert rd(c.sock, 100, PEEK) == b"def"
    assert rd(c.sock) == b"def"
    assert rd(c.sock, 1, OOB) == "EINVAL"


# ---- receiving: recv(MSG_OOB) results ----
def test_recv_oob_without_urgent_data_is_einval(h):
    """As Linux (tcp_recv_urg: "No URG data to read" -> EINVAL): recv(MSG_OOB) on a connection
    that never received URG raises EINVAL, before and after ordinary data arrived; MSG_OOB|MSG_PEEK
    too; the ordinary data stays queued."""
    c = handshake_passive(h, 8080)
    assert rd(c.sock, 1, OOB) == "EINVAL"
    c.send("PA", data=b"xyz")
    c.recv()
    assert rd(c.sock, 1, OOB) == "EINVAL"
    assert rd(c.sock, 1, OOB | PEEK) == "EINVAL"
    assert rd(c.sock) == b"xyz"


def test_urgent_byte_reads_once(h):
    """RFC 6093 §3 (one byte of out-of-band data): as Linux the byte is read once: a second
    recv(MSG_OOB), or MSG_OOB|MSG_PEEK, raises EINVAL (tcp_recv_urg: TCP_URG_READ)."""
    c = handshake_passive(h, 8080)
    urgent(c, b"abcX")
    c.recv()
    assert rd(c.sock, 1, OOB) == b"X"
    assert rd(c.sock, 1, OOB) == "EINVAL"
    assert rd(c.sock, 1, OOB | PEEK) == "EINVAL"
    assert rd(c.sock) == b"abc"


def test_oob_peek_leaves_the_byte(h):
    """As Linux (tcp_recv_urg with MSG_PEEK): MSG_OOB|MSG_PEEK returns the byte and leaves it:
    twice b"X", then MSG_OOB b"X", then EINVAL."""
    c = handshake_passive(h, 8080)
    urgent(c, b"abcX")
    c.recv()
    assert rd(c.sock, 1, OOB | PEEK) == b"X"
    assert rd(c.sock, 1, OOB | PEEK) == b"X"
    assert rd(c.sock, 1, OOB) == b"X"
    assert rd(c.sock, 1, OOB) == "EINVAL"
    assert rd(c.sock) == b"abc"


def test_urgent_pointer_beyond_the_data_is_eagain(h):
    """RFC 9293 §3.8.5 (MUST-32: the pointer is known before its byte): "ab" with URG and SEG.UP 5
    names byte 5, not received yet.  As Linux (tcp_urg: TCP_URG_NOTYET; tcp_recv_urg: EAGAIN)
    recv(MSG_OOB) raises EAGAIN, the data before reads normally (b"ab": the mark is not reached)."""
    c = handshake_passive(h, 8080)
    urgent(c, b"ab", urg=5)
    assert c.recv()[0].ack == 3
    assert rd(c.sock, 1, OOB) == "EAGAIN"
    assert rd(c.sock) == b"ab"
    assert rd(c.sock, 1, OOB) == "EAGAIN"


def test_recv_oob_never_blocks(h):
    """As Linux (tcp_recv_urg: "this call should never block, independent of the blocking state
    of the socket"): on a *blocking* socket, recv(MSG_OOB) with the urgent byte not yet there
    raises BlockingIOError (EAGAIN) at once.  (A kernel socket gets a 1 s SO_RCVTIMEO so that a
    wrong answer cannot hang the test; the stdlib's settimeout() would instead retry EAGAIN until
    it raised TimeoutError.)"""
    c = handshake_passive(h, 8080)
    urgent(c, b"ab", urg=5)
    c.recv()
    c.sock.setblocking(True)
    if isinstance(c.sock, socket.socket):
        c.sock.setsockopt(SOL, socket.SO_RCVTIMEO, struct.pack("ll", 1, 0))
    t0 = time.monotonic()
    with pytest.raises(BlockingIOError):
        c.sock.recv(1, OOB)
    assert time.monotonic() - t0 < 0.5


@pytest.mark.parametrize("flags", ["PA", "PAU"])
def test_urgent_byte_arriving_later(h, flags):
    """The byte named by an earlier pointer ("ab", SEG.UP 5) arrives in "cdX" (bytes 3-5), without
    URG or with URG and the same pointer (SEG.UP 3; as Linux a pointer not after the current one is
    a duplicate).  As Linux (tcp_urg takes the byte from whichever segment holds it) recv(MSG_OOB)
    now gives b"X"; the stream reads b"cd" then skips X: b"ef" follows."""
    c = handshake_passive(h, 8080)
    urgent(c, b"ab", urg=5)
    assert rd(c.sock) == b"ab"
    if flags == "PAU":
        urgent(c, b"cdX", urg=3)
    else:
        c.send("PA", data=b"cdX")
    assert [s.ack for s in c.recv()] == [3, 6]
    assert rd(c.sock, 1, OOB) == b"X"
    assert rd(c.sock) == b"cd"
    assert rd(c.sock) == "EAGAIN"
    c.send("PA", data=b"ef")
    c.recv()
    assert rd(c.sock) == b"ef"


# ---- receiving: several pointers ----
@pytest.mark.parametrize("x_read", [False, True], ids=["x_unread", "x_read_oob"])
def test_newer_urgent_pointer_makes_the_old_byte_ordinary(h, x_read):
    """RFC 9293 §3.10.7.4 (sixth, URG: RCV.UP <- max(RCV.UP, SEG.UP)): "abcX" (X urgent), then
    "defY" (Y urgent) before the reader reached X.  As Linux (tcp_check_urg replaces urg_seq)
    only Y is out of band now: one read gives b"abcXdef" -- X inline, *even when it was already
    read out of band* (``x_read_oob``: the application sees it twice) -- stopping at Y's mark;
    recv(MSG_OOB) gives b"Y"."""
    c = handshake_passive(h, 8080)
    urgent(c, b"abcX")
    if x_read:
        assert rd(c.sock, 1, OOB) == b"X"
    urgent(c, b"defY")
    assert [s.ack for s in c.recv()] == [5, 9]
    assert rd(c.sock) == b"abcXdef"
    assert rd(c.sock, 1, OOB) == b"Y"
    assert rd(c.sock) == "EAGAIN"


@pytest.mark.parametrize("x_read", [False, True], ids=["x_unread", "x_read_oob"])
def test_newer_urgent_pointer_while_the_reader_is_at_the_mark(h, x_read):
    """As Linux (tcp_check_urg: "we pretend that we have just read the urgent byte"): when the
    reader stands exactly at X's mark (it read b"abc") and "defY" brings a new pointer, X is
    skipped rather than made inline: the reads give b"def", recv(MSG_OOB) b"Y"."""
    c = handshake_passive(h, 8080)
    urgent(c, b"abcX")
    c.recv()
    if x_read:
        assert rd(c.sock, 1, OOB) == b"X"
    assert rd(c.sock) == b"abc"
    urgent(c, b"defY")
    c.recv()
    assert rd(c.sock) == b"def"
    assert rd(c.sock, 1, OOB) == b"Y"
    assert rd(c.sock) == "EAGAIN"


@pytest.mark.parametrize("consumed", ["read", "unread"])
def test_urgent_pointer_into_received_data_is_ignored(h, consumed):
    """As Linux (tcp_check_urg: "Ignore urgent data that we've already seen and read"; "Do not
    replay urg ptr": a pointer before RCV.NXT is dropped): after "abcdef" (bytes 1-6), a segment
    overlapping it with URG naming byte 2 (``read``: "abcdefgh" at 1, SEG.UP 2, the data already
    read) or byte 4 (``unread``: "defgh" at 4, SEG.UP 1) sets no urgent data: recv(MSG_OOB) is
    EINVAL, the new bytes are ordinary data."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"abcdef")
    c.recv()
    if consumed == "read":
        assert rd(c.sock) == b"abcdef"
        c.send("PAU", seq=1, data=b"abcdefgh", urg=2)
    else:
        c.send("PAU", seq=4, data=b"defgh", urg=1)
    assert c.recv()[0].ack == 9
    assert rd(c.sock, 1, OOB) == "EINVAL"
    assert read_all(c.sock) == (b"gh" if consumed == "read" else b"abcdefgh")


def test_urgent_pointer_zero_names_the_first_byte(h):
    """RFC 9293 §3.1 (SEG.UP is an offset from SEG.SEQ): as Linux (tcp_check_urg subtracts 1 only
    from a non-zero pointer) URG with SEG.UP 0 makes the segment's *first* byte urgent: after
    "xyz", "abcd" with SEG.UP 0: the reads give b"xyz" (stopped at the mark), then b"bcd";
    recv(MSG_OOB) gives b"a"."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"xyz")
    urgent(c, b"abcd", urg=0)
    assert [s.ack for s in c.recv()] == [4, 8]
    assert rd(c.sock) == b"xyz"
    assert rd(c.sock, 1, OOB) == b"a"
    assert rd(c.sock) == b"bcd"


# ---- receiving: zero window ----
def full_receive_window(h):
    """A passive connection with SO_RCVBUF 4096 on the listener (window 2896, wscale 0, see
    test_window) whose window the peer filled with 3 x 1448 unread bytes: RCV.NXT 4345, window
    0 (the delayed ACK says so)."""
    lst = h.socket()
    lst.setsockopt(SOL, socket.SO_RCVBUF, 4096)
    lst.bind((LOCAL_IP, 8080))
    lst.listen(8)
    c = handshake_passive(h, 8080, listener=lst)
    for _ in range(3):
        c.send("A", data=b"f" * M)
    h.advance(0.1)
    assert [(s.ack, s.win) for s in c.recv()][-1] == (1 + 3 * M, 0)
    return c


def test_urgent_pointer_is_taken_in_a_zero_window(h):
    """RFC 9293 §3.10.7.4 (MUST-66: URG is processed even with a zero window): a bare URG ACK at
    RCV.NXT (acceptable: it holds no data) with SEG.UP 3 names byte RCV.NXT + 2.  As Linux it is
    recorded (recv(MSG_OOB) EAGAIN, not EINVAL; no reply); once the application made room and the
    peer sent "abc" there, recv(MSG_OOB) gives b"c" and the stream b"ab"."""
    c = full_receive_window(h)
    c.send("AU", urg=3)
    assert c.recv() == []
    assert rd(c.sock, 1, OOB) == "EAGAIN"
    assert len(read_all(c.sock)) == 3 * M
    assert [(s.flags, s.ack, s.win) for s in c.recv()] == [("A", 1 + 3 * M, 2896)]
    c.send("PA", data=b"abc")
    assert rd(c.sock, 1, OOB) == b"c"
    assert rd(c.sock) == b"ab"


def test_urgent_data_beyond_a_zero_window_is_dropped(h):
    """As Linux 6.18 (tcp_validate_incoming -> tcp_sequence drops a segment that ends beyond the
    window while the receive queue holds data, before tcp_urg sees it): "abcX" with URG into a
    zero window is answered with a duplicate ACK (window 0) and leaves no urgent pointer
    (recv(MSG_OOB) EINVAL); resent without URG after the window opened, it is ordinary data."""
    c = full_receive_window(h)
    urgent(c, b"abcX")
    assert [(s.flags, s.ack, s.win) for s in c.recv()] == [("A", 1 + 3 * M, 0)]
    assert rd(c.sock, 1, OOB) == "EINVAL"
    assert len(read_all(c.sock)) == 3 * M
    c.recv()
    c.send("PA", seq=1 + 3 * M, data=b"abcX")
    assert rd(c.sock, 1, OOB) == "EINVAL"
    assert read_all(c.sock) == b"abcX"


# ---- receiving: SO_OOBINLINE ----
@pytest.mark.parametrize("value, stored", [(1, 1), (5, 1), (-1, 1), (0, 0)])
def test_oobinline_option_values(h, value, stored):
    """As Linux (sk_setsockopt: a boolean int): SO_OOBINLINE reads 0 on a new socket; any
    non-zero int sets it (reads 1), 0 clears it; an option shorter than an int is EINVAL."""
    s = h.socket()
    assert s.getsockopt(SOL, socket.SO_OOBINLINE) == 0
    s.setsockopt(SOL, socket.SO_OOBINLINE, 1 - stored)
    s.setsockopt(SOL, socket.SO_OOBINLINE, value)
    assert s.getsockopt(SOL, socket.SO_OOBINLINE) == stored
    with pytest.raises(OSError) as exc:
        s.setsockopt(SOL, socket.SO_OOBINLINE, b"\x01")
    assert exc.value.errno == errno.EINVAL
    assert s.getsockopt(SOL, socket.SO_OOBINLINE) == stored


@pytest.mark.parametrize("at_arrival, at_read", [(1, 1), (0, 1)], ids=["before", "after"])
def test_oobinline_keeps_the_byte_in_the_stream(h, at_arrival, at_read):
    """RFC 6093 §5 (SO_OOBINLINE, what new applications should use): with SO_OOBINLINE set -- before
    the urgent data arrived or after (as Linux, it is looked at when the application reads) --
    recv(MSG_OOB) and MSG_OOB|MSG_PEEK raise EINVAL and X stays in the stream.  The read still
    stops at the mark (b"abc"), the next gives b"Xdef"."""
    c = handshake_passive(h, 8080)
    inline(c.sock, at_arrival)
    urgent(c, b"abcX")
    c.send("PA", data=b"def")
    c.recv()
    inline(c.sock, at_read)
    assert rd(c.sock, 1, OOB) == "EINVAL"
    assert rd(c.sock, 1, OOB | PEEK) == "EINVAL"
    assert rd(c.sock) == b"abc"
    assert rd(c.sock) == b"Xdef"
    assert rd(c.sock, 1, OOB) == "EINVAL"


def test_oobinline_cleared_after_arrival_gives_the_byte_out_of_band(h):
    """As Linux (the urgent byte is recorded whatever SO_OOBINLINE says; the option is looked at on
    each read): urgent data that arrived with SO_OOBINLINE set, cleared before the read, is out of
    band: recv(MSG_OOB) b"X", the reads b"abc", b"def"."""
    c = handshake_passive(h, 8080)
    inline(c.sock)
    urgent(c, b"abcX")
    c.send("PA", data=b"def")
    c.recv()
    inline(c.sock, 0)
    assert rd(c.sock, 1, OOB) == b"X"
    assert rd(c.sock) == b"abc"
    assert rd(c.sock) == b"def"


def test_oobinline_newer_pointer_moves_the_stop(h):
    """With SO_OOBINLINE, two urgent bytes X then Y before any read: as Linux only the newest mark
    stops a read: b"abcXdef", then b"Ygh"."""
    c = handshake_passive(h, 8080)
    inline(c.sock)
    urgent(c, b"abcX")
    urgent(c, b"defY")
    c.send("PA", data=b"gh")
    c.recv()
    assert rd(c.sock) == b"abcXdef"
    assert rd(c.sock) == b"Ygh"


def test_oobinline_is_inherited_by_accept(h):
    """As Linux (sk_clone_lock copies the socket flags): SO_OOBINLINE set on the listener is 1 on
    the accepted socket, and urgent data stays inline there (MSG_OOB: EINVAL; b"abc", b"X")."""
    lst = listen(h, 8080)
    assert lst.getsockopt(SOL, socket.SO_OOBINLINE) == 0
    inline(lst)
    assert lst.getsockopt(SOL, socket.SO_OOBINLINE) == 1
    c = handshake_passive(h, 8080, listener=lst)
    assert c.sock.getsockopt(SOL, socket.SO_OOBINLINE) == 1
    urgent(c, b"abcX")
    c.recv()
    assert rd(c.sock, 1, OOB) == "EINVAL"
    assert rd(c.sock) == b"abc"
    assert rd(c.sock) == b"X"


# ---- receiving: no connection, FIN, RST ----
@pytest.mark.parametrize("state, err", [("listener", "ENOTCONN"), ("fresh", "EINVAL"),
                                        ("bound", "EINVAL"), ("syn_sent", "EINVAL")])
def test_recv_oob_without_a_connection(h, state, err):
    """As Linux: on a listener tcp_recvmsg_locked answers ENOTCONN before it looks at MSG_OOB
    (MSG_OOB|MSG_PEEK too); on a socket never connected, bound or connecting, tcp_recv_urg finds
    no urgent data: EINVAL (where a plain recv would say ENOTCONN or EAGAIN)."""
    if state == "listener":
        s = listen(h, 8080)
    elif state == "syn_sent":
        s = connect_start(h)[0].sock
    else:
        s = h.socket()
        if state == "bound":
            s.bind((LOCAL_IP, 8080))
    assert rd(s, 1, OOB) == err
    assert rd(s, 1, OOB | PEEK) == err


@pytest.mark.parametrize("oob_read", ["never", "first", "at_mark"])
def test_urgent_byte_before_fin(h, oob_read):
    """"abcX" with URG and FIN in one segment (X the last byte).  As Linux: the reads give b"abc"
    then b"" (X skipped, then EOF); recv(MSG_OOB) gives b"X" before the mark is passed (first, or
    at the mark: CLOSE-WAIT does not matter), EINVAL after."""
    c = handshake_passive(h, 8080)
    urgent(c, b"abcX", flags="FPAU")
    read_abc_then(c, oob_read, b"")
    assert rd(c.sock) == b""
    assert rd(c.sock, 1, OOB) == "EINVAL"


def test_urgent_pointer_beyond_fin_reads_eof(h):
    """As Linux (tcp_recv_urg: a pointer whose byte has not come, after RCV_SHUTDOWN -> 0): "ab"
    with SEG.UP 5, then FIN: recv(MSG_OOB) returns b"" (not EAGAIN), before and after the reads
    (b"ab", then b"")."""
    c = handshake_passive(h, 8080)
    urgent(c, b"ab", urg=5)
    c.send("FA")
    assert rd(c.sock, 1, OOB) == b""
    assert rd(c.sock) == b"ab"
    assert rd(c.sock) == b""
    assert rd(c.sock, 1, OOB) == b""


@pytest.mark.parametrize("data, urg, stream, after", [
    (b"abcX", 4, b"abc", "EINVAL"), (b"ab", 5, b"ab", "ENOTCONN")], ids=["byte_there", "notyet"])
def test_recv_oob_after_reset(h, data, urg, stream, after):
    """As Linux (tcp_recv_urg: a closed socket that never saw a FIN -> ENOTCONN, checked before the
    byte is given): after a RST, recv(MSG_OOB) raises ENOTCONN even with the urgent byte there; the
    queued data is read (stopping at the mark), then ECONNRESET (the read passed the mark: the byte
    is dropped).  Then MSG_OOB is EINVAL if the byte was there (passed), ENOTCONN if not."""
    c = handshake_passive(h, 8080)
    urgent(c, data, urg=urg)
    c.send("RA")
    c.recv()
    assert rd(c.sock, 1, OOB) == "ENOTCONN"
    assert rd(c.sock) == stream
    assert rd(c.sock) == "ECONNRESET"
    assert rd(c.sock, 1, OOB) == after


# ---- sending ----
@pytest.mark.parametrize("opener", ["passive", "active"])
def test_send_oob_marks_the_last_byte(h, opener):
    """RFC 9293 §3.8.5 (MUST-62: the pointer names the octet after the urgent data), RFC 6093 §4:
    as Linux (tcp_mark_urg: SND.UP = write_seq after the data) send(b"abc", MSG_OOB) returns 3 and
    sends one segment URG|PSH|ACK, seq 1, SEG.UP 3 (seq + 3 = 4, the byte after c), payload b"abc".
    Data written afterwards (seq 4 = SND.UP) carries no URG."""
    c = handshake_passive(h, 8080) if opener == "passive" else handshake_active(h)
    assert c.sock.send(b"abc", OOB) == 3
    (s,) = c.recv()
    assert (s.flags, s.seq, s.ack, s.urg, s.data) == ("PAU", 1, 1, 3, b"abc")
    assert c.sock.send(b"def") == 3
    (s,) = c.recv()
    assert (s.flags, s.seq, s.data) == ("PA", 4, b"def")


def test_each_segment_of_an_urgent_write_points_to_its_end(h):
    """RFC 9293 §3.8.5 (MUST-31: urgent data of any length): as Linux (__tcp_transmit_skb sets
    URG and SND.UP - SEG.SEQ on every segment starting before SND.UP) a 3000-byte urgent write is
    three segments that all carry URG, pointers 3000, 1552, 104 (seq + pointer = 3001 for each);
    the last has PSH.  Data written after the ACK (seq 3001) has no URG."""
    c = handshake_passive(h, 8080)
    assert c.sock.send(b"x" * 3000, OOB) == 3000
    segs = c.recv()
    assert [(s.seq, s.len, s.urg) for s in segs] == [(1, M, 3000), (1 + M, M, 3000 - M),
                                                      (1 + 2 * M, 104, 104)]
    assert all("U" in s.flags and "A" in s.flags for s in segs)
    assert "P" in segs[-1].flags
    c.send("A", ack=3001)
    assert c.recv() == []
    assert c.sock.send(b"def") == 3
    (s,) = c.recv()
    assert (s.flags, s.seq, s.data) == ("PA", 3001, b"def")


def test_newest_urgent_write_moves_the_pointer(h):
    """As Linux (SND.UP is simply moved by each urgent write): with Nagle off, send(b"a", MSG_OOB),
    send(b"b", MSG_OOB), send(b"c") give "a" (URG, seq 1, SEG.UP 1), "b" (URG, seq 2, SEG.UP 1)
    and "c" (no URG)."""
    c = handshake_passive(h, 8080)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sock.send(b"a", OOB)
    c.sock.send(b"b", OOB)
    c.sock.send(b"c")
    assert [(s.flags, s.seq, s.urg if "U" in s.flags else None, s.data) for s in c.recv()] == [
        ("PAU", 1, 1, b"a"), ("PAU", 2, 1, b"b"), ("PA", 3, None, b"c")]


def test_urgent_pointer_is_sent_while_the_window_is_closed(h):
    """RFC 9293 §3.8.5 / MUST-66 seen from the sender: with the peer's window 0, urgent data that
    cannot be sent is still signalled.  As Linux: send(b"abc", MSG_OOB) puts nothing on the wire;
    the ACK of the peer's data carries URG (seq 1, SEG.UP 3); the zero-window probe (~RTO later)
    is *two* bare ACKs (tcp_write_wakeup: an extra one at SND.UNA when SND.UP is ahead of it):
    seq 1 SEG.UP 3, then the usual seq 0 (SND.UNA - 1) SEG.UP 4.  The window opening sends "abc"
    with URG, SEG.UP 3; the peer's ACK of it ends urgent mode (the next ACK has no URG)."""
    c = handshake_passive(h, 8080, ack_win=0)
    assert c.sock.send(b"abc", OOB) == 3
    assert c.recv() == []
    c.send("PA", data=b"p", win=0)
    assert [(s.flags, s.seq, s.ack, s.urg, s.len) for s in c.recv()] == [("AU", 1, 2, 3, 0)]
    probes = [s for _, s in watch(c, 0.35, 0.02)]
    assert [(s.flags, s.seq, s.urg, s.len) for s in probes] == [("AU", 1, 3, 0), ("AU", 0, 4, 0)]
    c.send("A", win=100)
    assert [(s.flags, s.seq, s.urg, s.data) for s in c.recv()] == [("PAU", 1, 3, b"abc")]
    c.send("A", ack=4, win=100)
    c.send("PA", data=b"q", win=100)
    assert [(s.flags, s.seq, s.ack) for s in c.recv()] == [("A", 4, 3)]


def test_data_written_after_urgent_joins_its_segment(h):
    """As Linux (an urgent write does not end the queued segment): with the window closed,
    send(b"ab"), send(b"c", MSG_OOB), send(b"de") leave one segment "abcde" when the window opens,
    with URG and SEG.UP 3 (c is the urgent byte)."""
    c = handshake_passive(h, 8080, ack_win=0)
    c.sock.send(b"ab")
    c.sock.send(b"c", OOB)
    c.sock.send(b"de")
    assert c.recv() == []
    c.send("A", win=100)
    assert [(s.flags, s.seq, s.urg, s.data) for s in c.recv()] == [("PAU", 1, 3, b"abcde")]


def test_retransmission_keeps_urg(h):
    """RFC 9293 §3.8.5: as Linux (the header is built as each segment leaves) an unacknowledged
    urgent segment is retransmitted (the tail loss probe, ~0.22 s) with URG and the same pointer:
    seq 1, SEG.UP 3, b"abc"."""
    c = handshake_passive(h, 8080)
    c.sock.send(b"abc", OOB)
    c.recv()
    rtx = [s for _, s in watch(c, 0.35, 0.02)]
    assert rtx
    assert all((s.flags, s.seq, s.urg, s.data) == ("PAU", 1, 3, b"abc") for s in rtx), rtx


def test_retransmission_takes_the_current_urgent_pointer(h):
    """As Linux (__tcp_transmit_skb looks at SND.UP when the segment leaves): "a" sent plain, then
    "b" urgent (SND.UP 3): retransmissions that start at seq 1 now carry URG (seq + SEG.UP = 3),
    though the original "a" did not.  (Linux's probe resends "b", then the RTO resends from seq 1,
    "a" and "b" merged in one segment.)"""
    c = handshake_passive(h, 8080)
    c.sock.send(b"a")
    c.sock.send(b"b", OOB)
    assert [(s.flags, s.seq) for s in c.recv()] == [("PA", 1), ("PAU", 2)]
    rtx = [s for _, s in watch(c, 0.35, 0.02)]
    assert any(s.seq == 1 for s in rtx), rtx
    assert all("U" in s.flags and s.seq + s.urg == 3 for s in rtx), rtx


def test_urgent_send_bypasses_nagle(h):
    """RFC 9293 §3.7.4 (Nagle) and §3.8.5: as Linux (tcp_nagle_test: "Don't use the nagle rule
    for urgent data") with Nagle on and "a" unacknowledged, send(b"b", MSG_OOB) goes out at once
    (URG, SEG.UP 1) -- and so does every small write while SND.UP is unacknowledged ("c", and "d"
    after an ACK of "a" only); once an ACK covers SND.UP, Nagle holds small writes again ("f").
    (A 100 ms first RTT keeps Linux's tail loss probe, 2 SRTT away, out of the way.)"""
    c = handshake_passive(h, 8080, rtt=0.1)
    c.sock.send(b"a")
    assert [s.data for s in c.recv()] == [b"a"]
    c.sock.send(b"b", OOB)
    assert [(s.flags, s.seq, s.urg, s.data) for s in c.recv()] == [("PAU", 2, 1, b"b")]
    c.sock.send(b"c")
    assert [(s.flags, s.seq, s.data) for s in c.recv()] == [("PA", 3, b"c")]
    c.send("A", ack=2)
    assert c.recv() == []
    c.sock.send(b"d")
    assert [(s.flags, s.seq, s.data) for s in c.recv()] == [("PA", 4, b"d")]
    c.send("A", ack=5)
    assert c.recv() == []
    c.sock.send(b"e")
    assert [(s.flags, s.seq, s.data) for s in c.recv()] == [("PA", 5, b"e")]
    c.sock.send(b"f")
    assert c.recv() == []
    c.send("A", ack=6)
    assert [(s.flags, s.seq, s.data) for s in c.recv()] == [("PA", 6, b"f")]


@pytest.mark.parametrize("state, err", [("fresh", "EPIPE"), ("listener", "EPIPE"),
                                        ("syn_sent", "EAGAIN"), ("shut_wr", "EPIPE")])
def test_send_oob_without_a_connection(h, state, err):
    """As Linux (tcp_sendmsg_locked: sk_stream_wait_connect gives EPIPE outside SYN-SENT/
    SYN-RECEIVED, a non-blocking connect in progress EAGAIN; SEND_SHUTDOWN gives EPIPE):
    send(b"a", MSG_OOB) raises as a plain send would; b"" with MSG_OOB too.  Nothing is sent."""
    if state == "listener":
        s = listen(h, 8080)
    elif state == "syn_sent":
        s = connect_start(h)[0].sock
    elif state == "shut_wr":
        c = handshake_passive(h, 8080)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.recv()[0].flags == "FA"
        s = c.sock
    else:
        s = h.socket()
    assert sd(s, b"a", OOB) == err
    assert sd(s, b"", OOB) == err
    assert h.recv() == []


def test_send_oob_in_close_wait(h):
    """After the peer's FIN (CLOSE-WAIT) an urgent write goes out as in ESTABLISHED: "a" with URG,
    SEG.UP 1."""
    c = handshake_passive(h, 8080)
    c.send("FA")
    h.advance(0.06)
    c.recv()
    assert c.sock.send(b"a", OOB) == 1
    (s,) = c.recv()
    assert (s.flags, s.seq, s.ack, s.urg, s.data) == ("PAU", 1, 2, 1, b"a")


def test_send_empty_oob_does_nothing(h):
    """As Linux (tcp_sendmsg_locked marks the pointer in tcp_push, only when it copied something):
    send(b"", MSG_OOB) returns 0, sends nothing and sets no urgent pointer: data queued behind a
    closed window before it ("ab") leaves without URG when the window opens."""
    c = handshake_passive(h, 8080, ack_win=0)
    c.sock.send(b"ab")
    assert c.sock.send(b"", OOB) == 0
    assert c.recv() == []
    c.send("A", win=100)
    assert [(s.flags, s.seq, s.data) for s in c.recv()] == [("PA", 1, b"ab")]
