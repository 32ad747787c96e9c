"""A sim queue's doorbell (fsdp.driver.sim.queue_sleep): a thread that polls a queue can sleep
until a frame is sent to it, in any process, and no wake-up is lost to the race between its
last look at the rings and the start of its wait (sim_dp._ring_bells has the hand-shake)."""

import random
import threading
import time

import pytest

from fsdp.driver.sim import queue_sleep
from fsdp.driver.sim_layout import BELL_SLEEPERS, BELL_STRIDE

from ._sim import MAC_A, MAC_B, udp_frame
from .test_sim_multiprocess import expect_line, spawn

FRAME = udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1000, 2000, b"ring")


@pytest.fixture(autouse=True)
def sim_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FSDP_SIM_DIR", str(tmp_path))
    return tmp_path


def _sleepers(q) -> int:
    g = q.geo
    return int(q.ctl[g.c_bells + (g.port * g.max_queues + g.queue) * BELL_STRIDE + BELL_SLEEPERS])


def _sleep_until_frame(port, q, timeout_s):
    """Sleep on ``q``'s doorbell until a frame arrives; (frames, seconds taken, sleeps)."""
    got = []

    def poll():
        got.extend(port.drain())
        return bool(got)

    t0 = time.monotonic()
    sleeps = 0
    while not got:
        if not queue_sleep(q, timeout_s, poll):
            sleeps += 1
            poll()
    return got, time.monotonic() - t0, sleeps


def test_a_sender_in_another_process_never_loses_the_wake_up():
    """300 rounds: the child sends one frame at a random moment around the parent's arming
    (0-300 µs after it is told to); every sleep with a 2 s timeout must end at the frame."""
    from fsdp.driver import open_nic

    b = open_nic("sim:bell", 1, MAC_B, max_ports=4, max_queues=2, ring_slots=64, fdir_size=16)
    child = spawn(f"""
        import sys, time
        from fsdp.driver import open_nic
        a = open_nic("sim:bell", 1, {MAC_A})
        frame = bytes.fromhex("{FRAME.hex()}")
        a.inject(frame)  # compile (or load) the transmit path before the timed rounds
        print("ready", flush=True)
        for line in sys.stdin:
            t = time.perf_counter() + int(line) / 1e6
            while time.perf_counter() < t:
                pass
            a.inject(frame)
        a.close()
    """)
    try:
        expect_line(child, "ready")
        q = b.queue(0)
        assert len(_sleep_until_frame(b, q, 2.0)[0]) == 1  # the warm-up frame
        rng = random.Random(7)
        slept = 0
        for i in range(300):
            child.stdin.write(f"{rng.randrange(0, 300)}\n")
            child.stdin.flush()
            got, took, sleeps = _sleep_until_frame(b, q, 2.0)
            assert got == [FRAME]
            # A lost wake-up shows as a round of 2 s (the timeout); a wake takes microseconds
            # to a few ms on a loaded machine.
            assert took < 1.0, (i, took)
            slept += sleeps  # the rounds did sleep on the doorbell, not only find frames at once
        assert _sleepers(q) == 0
    finally:
        child.stdin.close()
        child.wait(30)
        b.close()


def test_every_sleeper_of_a_queue_wakes():
    """Two threads asleep on one queue (a selector and a blocking recv, say): one frame wakes
    both, and each counts itself out again."""
    from fsdp.driver import open_nic

    b = open_nic("sim:bell2", 1, MAC_B, max_ports=4, max_queues=2, ring_slots=64, fdir_size=16)
    a = open_nic("sim:bell2", 1, MAC_A)
    try:
        q = b.queue(0)
        queue_sleep(q, 0, lambda: False)  # compile (or load) the arming path first
        a.inject(FRAME)
        b.drain()
        woke = []

        def sleeper():
            t0 = time.monotonic()
            queue_sleep(q, 10.0, lambda: False)  # its last look sees nothing: it sleeps
            woke.append(time.monotonic() - t0)

        threads = [threading.Thread(target=sleeper) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while _sleepers(q) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert _sleepers(q) == 2
        time.sleep(0.05)  # both inside their waits by now
        a.inject(FRAME)
        for t in threads:
            t.join(5)
        assert len(woke) == 2 and max(woke) < 5.0, woke
        assert _sleepers(q) == 0
        assert b.drain() == [FRAME]
    finally:
        a.close()
        b.close()


def test_without_a_frame_the_sleep_lasts_its_timeout():
    from fsdp.driver import open_nic

    b = open_nic("sim:bell3", 1, MAC_B, max_ports=4, max_queues=2, ring_slots=64, fdir_size=16)
    try:
        q = b.queue(0)
        t0 = time.monotonic()
        assert queue_sleep(q, 0.05, lambda: False) is False
        assert time.monotonic() - t0 >= 0.045
        t0 = time.monotonic()
        assert queue_sleep(q, 5.0, lambda: True) is True  # frames in its last look: no sleep
        assert time.monotonic() - t0 < 1.0
        assert _sleepers(q) == 0
    finally:
        b.close()


def test_a_relay_fd_becomes_readable_when_its_queue_is_rung():
    """A selector with kernel fds sleeps in poll(2): the queue's BellRelay turns a ring into
    readiness of an eventfd.  A worker's one-queue slice of a port relays its own queue; closing
    the port stops the relay's thread."""
    import select

    from fsdp.apps.percore import QueueSlice
    from fsdp.driver import open_nic

    from ._sim import expected_queue

    b = open_nic("sim:bell4", 2, MAC_B, max_ports=4, max_queues=2, ring_slots=64, fdir_size=16)
    a = open_nic("sim:bell4", 1, MAC_A)
    try:
        relay = QueueSlice(b, 1).bell_relay(0)
        assert relay is b.bell_relay(1)
        sport = next(p for p in range(1000, 2000)
                     if expected_queue("10.0.0.1", "10.0.0.2", p, 2000, n_queues=2) == 1)
        frame = udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", sport, 2000, b"ring")
        q = b.queue(1)
        queue_sleep(q, 0, lambda: False)  # compile (or load) the arming path first
        woke = []

        def sleeper():
            t0 = time.monotonic()
            queue_sleep(q, 10.0, lambda: relay.drain() or False,
                        wait=lambda t: select.select([relay.fd], [], [], t))
            woke.append(time.monotonic() - t0)

        t = threading.Thread(target=sleeper)
        t.start()
        deadline = time.monotonic() + 5
        while _sleepers(q) < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)
        a.inject(frame)
        t.join(5)
        assert woke and woke[0] < 5.0, woke
        assert b.drain(queue=1) == [frame]
        thread = relay._thread
    finally:
        a.close()
        b.close()
    assert not thread.is_alive()  # stopped before the wire's memory went away
