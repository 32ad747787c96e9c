"""Named sim wires across processes: two stacks exchange frames both ways, a core process
polls one queue of a port another process attached, and a dead process's port is reclaimed."""

import os
import queue
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from fsdp.driver import open_nic
from fsdp.driver.sim_layout import HDR_N_ATTACHED

from ._sim import MAC_A, MAC_B, MAC_C, expected_queue, udp_frame

GEOMETRY = {"max_ports": 4, "max_queues": 2, "ring_slots": 64, "fdir_size": 16}


@pytest.fixture(autouse=True)
def sim_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FSDP_SIM_DIR", str(tmp_path))
    return tmp_path


def spawn(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )


def expect_line(proc, want: str, timeout: float = 120.0) -> str:
    """The child's next stdout line (it must start with ``want``)."""
    line = proc.stdout.readline()
    if not line.startswith(want):
        proc.kill()
        raise AssertionError(f"child said {line!r}, stderr: {proc.stderr.read()[-2000:]}")
    return line.strip()


def drain_until(port, n, timeout=60.0, **kw):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += port.drain(**kw)
        if len(got) < n:
            time.sleep(0.001)
    return got


def test_two_processes_exchange_frames_both_ways(sim_dir):
    a = open_nic("sim:xproc", 1, MAC_A, **GEOMETRY)
    child = spawn(
        f"""
        import sys, time
        from fsdp.driver import open_nic
        b = open_nic("sim:xproc", 1, {MAC_B})
        print("ready", b.port_id, flush=True)
        got = []
        while len(got) < 50:
            got += b.drain()
            time.sleep(0.001)
        for f in got:  # answer each frame: swap MACs
            b.inject(f[6:12] + f[0:6] + f[12:])
        print("echoed", len(got), flush=True)
        sys.stdin.readline()
        b.close()
        print("closed", flush=True)
        """
    )
    try:
        expect_line(child, "ready")
        frames = [udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1000, i) for i in range(50)]
        for f in frames:
            a.inject(f)
        expect_line(child, "echoed 50")
        back = drain_until(a, 50)
        assert back == [f[6:12] + f[0:6] + f[12:] for f in frames]
        assert a.stats()["rx_frames"] == 50
        child.stdin.write("\n")
        child.stdin.flush()
        expect_line(child, "closed")
        assert child.wait(30) == 0
        assert os.path.exists(sim_dir / "xproc")  # port A is still attached
    finally:
        child.kill()
        a.close()
    assert not os.path.exists(sim_dir / "xproc")


def test_core_process_polls_its_own_queue_of_a_shared_port(sim_dir):
    """A parent attaches a 2-queue port; a 'core' process joins it and polls queue 1 only."""
    a = open_nic("sim:cores", 2, MAC_A, **GEOMETRY)
    b = open_nic("sim:cores", 1, MAC_B)
    flows = [(1000 + i, 80) for i in range(40)]
    on_q1 = [f for f in flows if expected_queue("10.0.0.2", "10.0.0.1", *f, n_queues=2) == 1]
    assert 5 < len(on_q1) < 35
    child = spawn(
        f"""
        import time
        from fsdp.driver.sim import join_port
        port = join_port("cores", {a.port_id})
        q1 = port.queue(1)
        print("ready", flush=True)
        got = []
        deadline = time.monotonic() + 60
        while len(got) < {len(on_q1)} and time.monotonic() < deadline:
            got += port.drain(queue=1)
            time.sleep(0.001)
        print("got", sorted(int.from_bytes(f[34:36], "big") for f in got), flush=True)
        port.close()
        """
    )
    try:
        expect_line(child, "ready")
        for sport, dport in flows:
            b.inject(udp_frame(MAC_B, MAC_A, "10.0.0.2", "10.0.0.1", sport, dport))
        line = expect_line(child, "got")
        assert line == f"got {sorted(s for s, _ in on_q1)}"
        q0 = drain_until(a, len(flows) - len(on_q1), queue=0)
        assert sorted(int.from_bytes(f[34:36], "big") for f in q0) == sorted(
            s for s, _ in flows if (s, 80) not in on_q1
        )
        assert child.wait(30) == 0
        assert (
            not a.closed and a.wire.header[HDR_N_ATTACHED] == 2
        )  # the joined handle did not detach it
    finally:
        child.kill()
        a.close()
        b.close()


def test_dead_process_port_is_reclaimed(sim_dir):
    a = open_nic("sim:stale", 1, MAC_A, **GEOMETRY)
    try:
        child = spawn(
            f"""
            import os
            from fsdp.driver import open_nic
            c = open_nic("sim:stale", 1, {MAC_C})
            print("attached", c.port_id, flush=True)
            os._exit(0)  # dies without detaching
            """
        )
        expect_line(child, "attached")
        assert child.wait(30) == 0
        assert (
            a.wire.header[HDR_N_ATTACHED] == 2
        )  # the dead port still counts until someone attaches
        c = open_nic("sim:stale", 1, MAC_C)  # would be EADDRINUSE if not reclaimed
        assert a.wire.header[HDR_N_ATTACHED] == 2
        c.close()
    finally:
        a.close()
    assert not os.path.exists(sim_dir / "stale")


def test_forked_child_does_not_detach_its_parents_port(sim_dir):
    a = open_nic("sim:fork", 1, MAC_A, **GEOMETRY)
    try:
        pid = os.fork()
        if pid == 0:  # the child: closing (or atexit) must leave the parent's port alone
            try:
                a.close()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert a.wire.header[HDR_N_ATTACHED] == 1 and not a.closed
        b = open_nic("sim:fork", 1, MAC_B)
        f = udp_frame(MAC_B, MAC_A, "10.0.0.2", "10.0.0.1", 1, 2)
        b.inject(f)
        assert a.drain() == [f]
        b.close()
    finally:
        a.close()
    assert not os.path.exists(sim_dir / "fork")


def test_concurrent_producer_and_consumer_lose_and_tear_nothing(sim_dir):
    """A child floods a small ring while this process drains it: every frame that was not
    counted as a ring-full drop arrives once, in order, byte for byte."""
    a = open_nic("sim:flood", 1, MAC_A, **GEOMETRY)
    n = 6000
    child = spawn(
        f"""
        import struct
        from fsdp.driver import open_nic
        from tests.driver._sim import udp_frame
        b = open_nic("sim:flood", 1, {MAC_B})
        print("ready", flush=True)
        base = udp_frame({MAC_B}, {MAC_A}, "10.0.0.2", "10.0.0.1", 7, 7, bytes(64))
        for i in range({n}):
            body = struct.pack("!I", i) * 16
            b.inject(base[:42] + body)
        st = b.stats()
        print("sent", st["tx_frames"], st["ring_full"], flush=True)
        input()
        b.close()
        """
    )
    try:
        expect_line(child, "ready")
        lines = queue.Queue()
        threading.Thread(target=lambda: lines.put(child.stdout.readline()), daemon=True).start()
        got = []
        sent = None
        deadline = time.monotonic() + 120
        while (sent is None or len(got) < sent) and time.monotonic() < deadline:
            got += a.drain()
            if sent is None and not lines.empty():
                _, tx, full = lines.get().split()
                sent = int(tx) - int(full)
        seqs = []
        for f in got:
            body = f[42:]
            (i,) = struct.unpack("!I", body[:4])
            assert body == struct.pack("!I", i) * 16, "torn frame"
            seqs.append(i)
        assert len(seqs) == sent and seqs == sorted(set(seqs))
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(30) == 0
    finally:
        child.kill()
        a.close()
