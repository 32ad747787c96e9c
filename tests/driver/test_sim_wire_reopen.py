"""Opening a sim wire that another process uses with another geometry fails with ValueError,
and leaves nothing locked: an open right after it, while the error is still being handled (its
traceback alive), gets the wire as it is (before the fix it waited on the lock forever)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fsdp.driver.sim import attach_named

ROOT = Path(__file__).resolve().parents[2]


def _alarm(signum, frame):
    raise TimeoutError("the reopen waited on the wire's lock")


def test_a_failed_open_with_another_geometry_does_not_keep_the_wire_locked():
    name = f"reopen-{os.getpid()}"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from fsdp.driver.sim import attach_named; "
         f"p = attach_named({name!r}, 1, 0x020000000011); print('ok', flush=True); "
         "sys.stdin.read(); p.close()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        assert holder.stdout.readline().strip() == "ok"  # in use: its geometry stays
        signal.alarm(30)
        try:
            attach_named(name, 1, 0x020000000012, max_ports=4, ring_slots=1024)
        except ValueError:
            port = attach_named(name, 1, 0x020000000012)  # the traceback is alive here
            assert port.wire.ring_slots == 256 and port.wire.max_ports == 8
            port.close()
        else:
            pytest.fail("a geometry that differs from a wire in use must raise ValueError")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        holder.communicate("", timeout=30)
