"""PAWS, protection against wrapped sequence numbers (RFC 7323 §5), and timestamp validation of
incoming segments as Linux does it."""

import pytest
from helpers import handshake_passive, read_all, watch

TS_RECENT = 100_000


def with_ts_recent(h):
    """An established connection whose TS.Recent is 100000 (one in-order data byte "a")."""
    c = handshake_passive(h, 8080)
    c.send("PA", data=b"a", tsval=TS_RECENT)
    (ack,) = c.recv()
    assert ack.tsecr == TS_RECENT
    assert read_all(c.sock) == b"a"
    return c


def test_old_timestamp_segment_is_dropped_and_acked(h):
    """RFC 7323 §5.3 (R1: SEG.TSval < TS.Recent -> not acceptable: send an ACK, drop): the data
    is not delivered and the ACK repeats RCV.NXT and echoes TS.Recent."""
    c = with_ts_recent(h)
    c.send("PA", data=b"old", tsval=1)
    (ack,) = c.recv()
    assert (ack.ack, ack.tsecr) == (2, TS_RECENT)
    assert read_all(c.sock) == b""


def test_equal_timestamp_is_accepted(h):
    """RFC 7323 §5.3 (only SEG.TSval < TS.Recent fails): an equal TSval passes."""
    c = with_ts_recent(h)
    c.send("PA", data=b"same", tsval=TS_RECENT)
    assert c.recv()[0].ack == 6
    assert read_all(c.sock) == b"same"


def test_one_tick_older_timestamp_is_tolerated(h):
    """RFC 7323 §5.3 rejects any older TSval; as Linux (TCP_PAWS_WINDOW = 1) a TSval one tick
    below TS.Recent still passes."""
    c = with_ts_recent(h)
    c.send("PA", data=b"b", tsval=TS_RECENT - 1)
    assert c.recv()[0].ack == 3
    assert read_all(c.sock) == b"b"


def test_timestamp_comparison_wraps_at_2_31(h):
    """RFC 7323 §5.2 (timestamps compare in 2^31 modular arithmetic): a TSval 2^31 + 5 ahead of
    TS.Recent is in fact older, so the segment is rejected."""
    c = with_ts_recent(h)
    c.send("PA", data=b"w", tsval=(TS_RECENT + (1 << 31) + 5) % (1 << 32))
    assert c.recv()[0].ack == 2
    assert read_all(c.sock) == b""


def test_newer_timestamp_far_ahead_is_accepted(h):
    """RFC 7323 §5.2: a TSval up to 2^31 - 1 ahead is newer, accepted, and becomes TS.Recent."""
    c = with_ts_recent(h)
    c.send("PA", data=b"n", tsval=TS_RECENT + (1 << 30))
    (ack,) = c.recv()
    assert (ack.ack, ack.tsecr) == (3, TS_RECENT + (1 << 30))


def test_every_paws_rejection_gets_an_ack(h):
    """RFC 7323 §5.3 (R1: send an acknowledgment in reply): as Linux, these ACKs are not rate
    limited: three old segments in a row get three ACKs."""
    c = with_ts_recent(h)
    acks = []
    for _ in range(3):
        c.send("PA", data=b"o", tsval=1)
        acks += c.recv()
    assert [a.ack for a in acks] == [2, 2, 2]


def test_paws_does_not_apply_to_rst(h):
    """RFC 7323 §5.3 (R1 ... "and if the RST bit is not set"): a RST with an old TSval and the
    exact sequence number still resets the connection."""
    c = with_ts_recent(h)
    c.send("R", tsval=1)
    assert c.recv() == []
    with pytest.raises(ConnectionResetError):
        c.sock.recv(10)


def test_paws_applies_to_a_pure_ack(h):
    """RFC 7323 §5.3: an ACK-only segment with an old TSval is not acceptable either: it gets a
    dup ACK and does not acknowledge our data, which is then retransmitted."""
    c = with_ts_recent(h)
    c.sock.send(b"data")
    (d,) = c.recv()
    c.send("A", tsval=1)
    (ack,) = c.recv()
    assert (ack.flags, ack.len) == ("A", 0)
    seen = watch(c, 0.4)
    assert any(s.seq == d.seq and s.len == 4 for _, s in seen)


def test_paws_applies_to_fin(h):
    """RFC 7323 §5.3: a FIN with an old TSval is dropped (ACK sent); the application sees no
    EOF."""
    c = with_ts_recent(h)
    c.send("FA", tsval=1)
    assert c.recv()[0].ack == 2
    with pytest.raises(BlockingIOError):
        c.sock.recv(10)


def test_tsecr_from_the_future_is_dropped(h):
    """RFC 7323 §4.3 (TSecr echoes a TSval we sent): as Linux 6.x, a segment whose TSecr is newer
    than any TSval sent is dropped and answered with an ACK."""
    c = with_ts_recent(h)
    c.send("PA", data=b"f", tsecr=(c.last_tsval + 100_000) % (1 << 32))
    assert c.recv()[0].ack == 2
    assert read_all(c.sock) == b""


def test_tsecr_zero_on_an_ack_is_dropped(h):
    """RFC 7323 §3.2 (TSecr is valid when ACK is set): as Linux 6.x, an ACK-bearing data segment
    with TSecr 0 is dropped and answered with an ACK."""
    c = with_ts_recent(h)
    c.send("PA", data=b"z", tsecr=0)
    assert c.recv()[0].ack == 2
    assert read_all(c.sock) == b""
