"""Rings and pools: ring-full drops, pool-empty backpressure, fairness, frame ownership."""

import numpy as np
import pytest

from fsdp.driver.sim import sim_next_event, sim_rx_burst, sim_tx_burst
from fsdp.pool.pool import (
    AUDIT_OK,
    HEADROOM,
    MAX_FRAME_LEN,
    frame_alloc,
    frame_free,
    frame_ref,
    pool_audit,
    pool_create,
    pool_n_free,
)

from ._sim import MAC_A, MAC_B, MAC_C, assert_port_clean, small_wire, tcp_frame, udp_frame


@pytest.fixture
def wire():
    w = small_wire(ring_slots=8)
    yield w
    w.close()


def load(pool, frame: bytes) -> int:
    fid = frame_alloc(pool)
    assert fid >= 0
    pool.data[fid, HEADROOM : HEADROOM + len(frame)] = np.frombuffer(frame, np.uint8)
    pool.length[fid] = len(frame)
    return fid


def test_ring_full_is_a_counted_drop(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(1, MAC_B)
    frames = [udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, i) for i in range(12)]
    for f in frames:
        a.inject(f)
    st = a.stats()
    assert st["ring_full"] == 4 and st["tx_frames"] == 12 and st["wire_copies"] == 8
    assert b.drain() == frames[:8]
    a.inject(frames[0])  # room again
    assert b.drain() == frames[:1]
    assert_port_clean(a, b)


def test_pool_empty_is_backpressure_not_loss(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(1, MAC_B)
    frames = [udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, i) for i in range(6)]
    for f in frames:
        a.inject(f)
    pool = pool_create(4)
    ids = np.zeros(16, np.int32)
    q = b.queue(0)
    assert sim_rx_burst(q, pool, ids, 16, 0) == 4
    held = ids[:4].copy()
    assert sim_rx_burst(q, pool, ids, 16, 0) == 0  # pool empty: frames stay in the ring
    assert b.stats()["rx_nobuf"] >= 1
    got = [pool.data[f, HEADROOM : HEADROOM + pool.length[f]].tobytes() for f in held]
    for f in held:
        frame_free(pool, f)
    n = sim_rx_burst(q, pool, ids, 16, 0)
    assert n == 2
    got += [pool.data[f, HEADROOM : HEADROOM + pool.length[f]].tobytes() for f in ids[:n]]
    for f in ids[:n]:
        frame_free(pool, f)
    assert got == frames
    assert pool_audit(pool) == AUDIT_OK and pool_n_free(pool) == 4
    assert b.stats()["rx_frames"] == 6


def test_rx_is_fair_between_sources():
    w = small_wire(ring_slots=64)
    a = w.attach(1, MAC_A)
    c = w.attach(1, MAC_C)
    b = w.attach(1, MAC_B)
    for i in range(40):
        a.inject(udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, i))
        c.inject(udp_frame(MAC_C, MAC_B, "10.0.0.3", "10.0.0.2", 1, i))
    pool = pool_create(64)
    ids = np.zeros(8, np.int32)
    q = b.queue(0)
    sources = []
    for _ in range(10):
        n = sim_rx_burst(q, pool, ids, 8, 0)
        sources.append({int(pool.data[f, HEADROOM + 11]) for f in ids[:n]})
        for f in ids[:n]:
            frame_free(pool, f)
    # bursts alternate between the two senders: neither starves the other
    assert sources[:10] == [{1}, {3}] * 5 or sources[:10] == [{3}, {1}] * 5
    w.close()


def test_tx_frees_by_refcount_and_never_writes_the_sender_frame(wire):
    a = wire.attach(1, MAC_A, tx_csum=True)
    b = wire.attach(1, MAC_B)
    pool = pool_create(8)
    f = tcp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 5, 6, payload=b"data")
    fid = load(pool, f)
    pool.flags[fid] = 0x4  # FRAME_F_TX_CSUM: the NIC fills checksums in its copy only
    pool.data[fid, HEADROOM + 50 : HEADROOM + 52] = 0
    before = pool.data[fid].copy()
    frame_ref(pool, fid)  # also held by, say, a retransmission queue
    ids = np.array([fid], np.int32)
    assert sim_tx_burst(a.queue(0), pool, ids, 1, 0) == 1
    assert pool.refcnt[fid] == 1  # the NIC dropped its reference only
    assert (pool.data[fid] == before).all()
    assert b.drain() == [f]  # the wire copy has the right checksum again
    frame_free(pool, fid)
    assert pool_audit(pool) == AUDIT_OK and pool_n_free(pool) == 8


def test_bad_frames_are_counted_and_freed(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(1, MAC_B)
    pool = pool_create(8)
    good = tcp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 5, 6)
    ids = np.array([load(pool, good) for _ in range(4)], np.int32)
    pool.length[ids[0]] = -1
    pool.length[ids[1]] = MAX_FRAME_LEN + 1
    pool.off[ids[2]] = 2040  # runs past the frame
    assert sim_tx_burst(a.queue(0), pool, ids, 4, 0) == 4
    assert a.stats()["tx_bad_len"] == 3
    assert b.drain() == [good]
    assert pool_audit(pool) == AUDIT_OK and pool_n_free(pool) == 8


def test_zero_burst_and_next_event(wire):
    a = wire.attach(2, MAC_A)
    pool = pool_create(2)
    ids = np.zeros(2, np.int32)
    assert sim_tx_burst(a.queue(1), pool, ids, 0, 123) == 0
    assert sim_rx_burst(a.queue(1), pool, ids, 2, 123) == 0  # no peers yet
    assert sim_next_event(a.queue(1)) == -1


def test_every_tx_queue_reaches_the_receiver(wire):
    a = wire.attach(4, MAC_A)
    b = wire.attach(1, MAC_B)
    frames = [udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, q) for q in range(4)]
    for q, f in enumerate(frames):
        a.inject(f, queue=q)
    assert sorted(b.drain()) == sorted(frames)
    per_q = a.stats()["per_queue"]
    assert [s["tx_frames"] for s in per_q] == [1, 1, 1, 1]
    assert b.stats()["rx_frames"] == 4


def test_detached_port_stops_receiving_and_slot_is_reused_clean(wire):
    a = wire.attach(1, MAC_A)
    b = wire.attach(1, MAC_B)
    f = udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, 2)
    a.inject(f)  # left unread in b's ring
    b.close()
    b.close()  # idempotent
    a.inject(f)
    assert a.stats()["no_dest"] == 1
    b2 = wire.attach(1, MAC_B)
    assert b2.port_id == b.port_id
    assert b2.drain() == []  # the old owner's frames are not delivered to the new one
    a.inject(f)
    assert b2.drain() == [f]


def test_frames_a_port_sent_before_it_left_still_arrive(wire):
    """Frames on the wire when their sender detaches (its process closed its stack, or exited)
    arrive, as frames in flight do: a client that sends its last data and exits at once must
    not lose them to a receiver that had not polled yet."""
    a = wire.attach(1, MAC_A)
    b = wire.attach(1, MAC_B)
    frames = [udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, i) for i in range(3)]
    for f in frames:
        a.inject(f)
    a.close()
    assert b.drain() == frames
    assert b.drain() == []
    a2 = wire.attach(1, MAC_A)  # the slot's next owner continues the ring
    a2.inject(frames[0])
    assert b.drain() == [frames[0]]


def test_redirect_hands_a_frame_to_a_sibling_queue_flagged():
    """nic_redirect (sim_redirect): core 0 passes a frame to queue 2 of its own port, where it
    arrives once, byte for byte, flagged FRAME_F_REDIRECTED; the sender keeps its frame."""
    from fsdp.driver.api import nic_redirect
    from fsdp.driver.sim import sim_redirect
    from fsdp.pool.pool import FRAME_F_REDIRECTED

    w = small_wire()
    try:
        a = w.attach(4, MAC_A)
        w.attach(1, MAC_B)  # a peer, so the port's source rings are built
        pool = pool_create(8)
        frame = tcp_frame(MAC_B, MAC_A, "10.0.0.2", "10.0.0.1", 80, 40000, b"hello")
        fid = load(pool, frame)
        assert sim_redirect(a.queue(0), pool, fid, 2) == 1
        assert nic_redirect(a.queue(0), pool, fid, 0) == 0  # to itself: no
        assert sim_redirect(a.queue(0), pool, fid, 4) == 0  # no such queue
        assert sim_redirect(a.queue(0), pool, fid, -1) == 0
        frame_free(pool, fid)  # the sender's frame stayed the sender's
        rx = pool_create(8)
        ids = np.zeros(8, np.int32)
        for q in (1, 3):
            assert sim_rx_burst(a.queue(q), rx, ids, 8, 0) == 0
        assert sim_rx_burst(a.queue(2), rx, ids, 8, 0) == 1
        got = ids[0]
        assert bytes(rx.data[got, HEADROOM : HEADROOM + rx.length[got]]) == frame
        assert rx.flags[got] & FRAME_F_REDIRECTED
        frame_free(rx, got)
        assert pool_audit(pool) == AUDIT_OK and pool_audit(rx) == AUDIT_OK
        # the same frame sent by the peer port arrives unflagged
        b = w.attach(1, MAC_C)
        tx = pool_create(4)
        t_ids = np.zeros(1, np.int32)
        t_ids[0] = load(tx, frame)
        assert sim_tx_burst(b.queue(0), tx, t_ids, 1, 0) == 1
        got_flags = []
        for q in range(4):
            for k in range(sim_rx_burst(a.queue(q), rx, ids, 8, 0)):
                got_flags.append(int(rx.flags[ids[k]]))
                frame_free(rx, ids[k])
        assert got_flags == [0]
    finally:
        w.close()
