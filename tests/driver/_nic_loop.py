"""A tiny per-core loop written against the backend-neutral nic_* calls (used by test_api.py;
in its own module so its ``cache=True`` compilation can be checked from fresh processes)."""

from numba import njit

from fsdp.driver.api import nic_next_event, nic_rx_burst, nic_tx_burst
from fsdp.driver.jitmem import borrow
from fsdp.pool.pool import FRAME_SIZE


@njit(cache=True, nogil=True)
def echo_once(q, pool, ids, now):
    """Receive a burst, swap the MACs of every frame, send it back; (n, next event)."""
    n = nic_rx_burst(q, pool, ids, ids.shape[0], now)
    data = borrow(pool.data).reshape(-1)
    for i in range(n):
        base = ids[i] * FRAME_SIZE + pool.off[ids[i]]
        for k in range(6):
            t = data[base + k]
            data[base + k] = data[base + 6 + k]
            data[base + 6 + k] = t
    nic_tx_burst(q, pool, ids, n, now)
    return n, nic_next_event(q)
