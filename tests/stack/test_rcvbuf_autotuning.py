"""Receive-buffer autotuning end to end (fsdp.tcp.drs, Linux tcp_rcv_space_adjust): two fsdp
stacks on a sim wire with a 50 ms round trip.  A receiver that keeps up grows its buffer, so the
window is no longer what limits the transfer; SO_RCVBUF set by the application,
``tcp_moderate_rcvbuf=0`` and a small packet pool each bound it.  The window rules themselves are
held to Linux in tests/conformance/test_window.py."""

import hashlib
import itertools
import os
import socket
import time

from bulk_pair import connected_pair, stream

import fsdp
from fsdp.driver.sim import SimWire

_wires = itertools.count()
SIZE = 3_000_000
ONE_WAY_US = 25_000


def transfer(rcvbuf: int | None = None, ring_slots: int | None = None,
             **server_options) -> tuple[int, float]:
    """Send SIZE bytes client -> server over a 50 ms RTT (on a wire whose receive rings have
    ``ring_slots`` slots, else the default 256); returns the receiving socket's SO_RCVBUF at
    the end and the seconds the transfer took."""
    name = f"drs-{os.getpid()}-{next(_wires)}"
    wire = f"sim:{name}"
    geometry = SimWire.open(name, ring_slots=ring_slots) if ring_slots else None
    server = fsdp.Stack(nic=wire, ip="10.9.1.1/24", **server_options)
    client = fsdp.Stack(nic=wire, ip="10.9.1.2/24", tcp_wmem="4096 16384 33554432")
    try:
        client.port.set_faults(delay_us=ONE_WAY_US)
        server.port.set_faults(delay_us=ONE_WAY_US)
        c, s = connected_pair(server, client, "10.9.1.1", rcvbuf=rcvbuf)
        data = os.urandom(SIZE)
        start = time.monotonic()
        got = stream(c, s, data, recv_size=1 << 20)
        took = time.monotonic() - start
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        return s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), took
    finally:
        client.close()
        server.close()
        if geometry is not None:
            geometry.close()


def test_a_receiver_that_keeps_up_grows_its_buffer():
    """From the 128 KiB default (an 86 KB window: 1.7 MB/s over 50 ms) the buffer grows to
    what the receive ring bounds it to (a 185 KB window), so the transfer takes fewer round
    trips; with ``tcp_moderate_rcvbuf=0`` it stays."""
    grown, _ = transfer()
    fixed, took_fixed = transfer(tcp_moderate_rcvbuf=0)
    assert grown == 128 * 2176  # half the sim wire's 256-slot receive ring, in full frames
    assert fixed == 131072
    # the fixed window is what bounds that transfer: 3 MB at 86 KB per 50 ms RTT takes at
    # least ~1.75 s (how much faster the grown one is depends on this host's load: the
    # session note has the numbers, a timed assertion would be flaky)
    assert took_fixed >= 1.7


def test_so_rcvbuf_set_by_the_application_is_kept():
    """SO_RCVBUF set before listen() (Linux SOCK_RCVBUF_LOCK) turns autotuning off for the
    connections it accepts: the doubled value stays."""
    assert transfer(rcvbuf=200_000)[0] == 400_000


def test_the_core_pool_and_the_receive_ring_bound_the_growth():
    """fsdp's own bounds: a quarter of the core's packet pool (1024 frames of 2 KiB here: 512
    KiB), so one connection cannot hold the core's frames; and half the NIC queue's receive ring
    in full frames (a 2048-slot ring: 1024 x 2176 bytes), so a window's burst fits the ring."""
    assert transfer(pool_frames=1024, ring_slots=4096)[0] == 1024 * 2048 // 4
    assert transfer(ring_slots=2048)[0] == 1024 * 2176
