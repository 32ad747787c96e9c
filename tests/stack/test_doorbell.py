"""An idle selector sleeps on its stack's queue doorbell (fsdp.core.stack.idle_sleep): a frame
sent to the queue ends the sleep at once instead of at the end of a nap (DESIGN.md: "sleep on
something that wakes it ... an eventfd doorbell for sim"; here a futex word in the wire's shared
memory).  The doorbell itself is tested in tests/driver/test_sim_doorbell.py."""

import gc
import itertools
import os
import subprocess
import sys
import threading
import time

import pytest

import fsdp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_n = itertools.count()


def _wire():
    return f"sim:belltest-{os.getpid()}-{next(_n)}"


_CLIENT = """
import sys, time, fsdp
with fsdp.Stack(nic=sys.argv[1], ip="10.67.0.2/24") as c:
    s = c.socket()
    s.settimeout(10)
    s.getsockopt(1, 8)  # SO_RCVBUF: the usercalls are compiled (or loaded) before "ready"
    print("ready", flush=True)
    sys.stdin.readline()
    print(time.monotonic(), flush=True)  # CLOCK_MONOTONIC: the same clock in every process
    s.connect(("10.67.0.1", 80))
    s.sendall(b"hi")
    s.close()
"""


@pytest.mark.parametrize("kernel_fd", [False, True], ids=["fsdp-only", "with-a-pipe"])
def test_an_idle_selector_wakes_when_a_connection_arrives(kernel_fd):
    """One stack in this process, its selector idle with naps growing toward 10 s: a connection
    from another process ends the nap when its SYN arrives, not when the nap would have ended.
    With a kernel fd registered too (a pipe here; asyncio's self-pipe in an event loop) the
    selector sleeps in poll(2), and the doorbell's relay fd wakes it."""
    from fsdp.core.stack import live_stacks
    from fsdp.selectors import EVENT_READ, FsdpSelector

    gc.collect()  # stacks earlier tests dropped without close(): one stack in the process
    wire = _wire()
    with fsdp.Stack(nic=wire, ip="10.67.0.1/24") as server:
        # the one stack on a real clock (a harness's stack, on a virtual one, does not count)
        assert [s for s in live_stacks() if not s._virtual_clock] == [server]
        ls = server.socket()
        ls.bind(("0.0.0.0", 80))
        ls.listen()
        ls.setblocking(False)
        env = dict(os.environ, PYTHONPATH=ROOT)
        client = subprocess.Popen([sys.executable, "-c", _CLIENT, wire], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        rfd, wfd = os.pipe()
        try:
            assert client.stdout.readline() == "ready\n"
            with FsdpSelector(busy_poll_us=0, idle_sleep_us=10_000_000) as sel:
                sel.register(ls, EVENT_READ)
                if kernel_fd:
                    sel.register(rfd, EVENT_READ)
                # Naps double from 20 µs: the one under way at 2.0 s began at ~1.31 s and lasts
                # ~1.31 s, so a plain sleep would see the SYN ~0.6 s late.
                go = threading.Timer(2.0, lambda: (client.stdin.write("go\n"),
                                                   client.stdin.flush()))
                go.start()
                got = sel.select(30)
                t_ready = time.monotonic()
                go.join()
                assert [k.fileobj for k, _ in got] == [ls]
            conn, _ = ls.accept()
            conn.settimeout(10)
            assert conn.recv(2) == b"hi"
            out, _ = client.communicate(timeout=30)
            assert client.returncode == 0
            t_connect = float(out.split()[0])
            assert 0 <= t_ready - t_connect < 0.2, t_ready - t_connect
        finally:
            os.close(rfd)
            os.close(wfd)
            client.kill()
            client.wait()
