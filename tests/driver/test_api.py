"""The backend-neutral nic_* calls: compile-time dispatch in jitted code, runtime dispatch from
Python, and cache=True callers that really load from Numba's cache in a fresh process."""

import json
import os
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest

from fsdp.driver.api import nic_borrow, nic_next_event, nic_rx_burst, nic_tx_burst
from fsdp.pool.pool import AUDIT_OK, pool_audit, pool_create

from ._nic_loop import echo_once
from ._sim import MAC_A, MAC_B, small_wire, udp_frame

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_jitted_loop_through_nic_calls():
    w = small_wire()
    a = w.attach(1, MAC_A)
    b = w.attach(1, MAC_B)
    frames = [udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, i) for i in range(5)]
    for f in frames:
        a.inject(f)
    pool = pool_create(16)
    ids = np.zeros(8, np.int32)
    n, ev = echo_once(b.queue(0), pool, ids, 0)
    assert (n, ev) == (5, -1)
    assert a.drain() == [f[6:12] + f[0:6] + f[12:] for f in frames]
    assert pool_audit(pool) == AUDIT_OK and int(pool.refcnt.sum()) == 0
    w.close()


def test_python_dispatch():
    w = small_wire()
    a = w.attach(1, MAC_A)
    b = w.attach(1, MAC_B)
    a.inject(udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, 2))
    pool = pool_create(4)
    ids = np.zeros(4, np.int32)
    assert nic_rx_burst(b.queue(0), pool, ids, 4, 0) == 1
    assert nic_tx_burst(b.queue(0), pool, ids, 1, 0) == 1
    assert nic_next_event(b.queue(0)) == -1
    assert nic_borrow(b.queue(0)) is b.queue(0)  # from Python there is nothing to save

    class Other(NamedTuple):
        x: int

    with pytest.raises(TypeError, match="not a registered NIC queue"):
        nic_rx_burst(Other(1), pool, ids, 4, 0)
    w.close()


_CACHE_PROBE = """
import json, sys, numpy as np
sys.path.insert(0, sys.argv[1])
from probe_loop import echo_once
from fsdp.driver.sim import SimWire
from fsdp.pool.pool import pool_create
w = SimWire.private(max_ports=4, max_queues=4, ring_slots=64, fdir_size=64)
p = w.attach(1, 0x020000000001)
echo_once(p.queue(0), pool_create(16), np.zeros(8, np.int32), 0)
s = echo_once.stats
print(json.dumps({"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values())}))
"""


def test_cache_true_caller_loads_from_cache_in_a_fresh_process(tmp_path):
    """Overload-based dispatch must not defeat caching of the per-core loop: a fresh process
    compiles it once (cache miss), the next one loads it (hit, no compile)."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_nic_loop.py")
    with open(src) as f:
        (tmp_path / "probe_loop.py").write_text(f.read())
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", _CACHE_PROBE, str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs == [{"hits": 0, "misses": 1}, {"hits": 1, "misses": 0}], runs
