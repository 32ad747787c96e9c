"""A tiny per-core loop written against the backend-neutral nic_* calls (used by test_api.py;
in its own module so its ``cache=True`` compilation can be checked from fresh processes)."""

from numba import njit

from fsdp.driver.api import nic_borrow, nic_next_event, nic_rx_burst, nic_tx_burst
from fsdp.driver.jitmem import borrow, borrow_pool


@njit(cache=True, nogil=True)
def echo_once(q, pool, ids, now):
    """Receive a burst, swap the MACs of every frame, send it back; (n, next event)."""
    nic = nic_borrow(q)
    pool = borrow_pool(pool)
    ids = borrow(ids)
    n = nic_rx_burst(nic, pool, ids, ids.shape[0], now)
    for i in range(n):
        row = pool.data[ids[i]]
        off = pool.off[ids[i]]
        for k in range(6):
            t = row[off + k]
            row[off + k] = row[off + 6 + k]
            row[off + 6 + k] = t
    nic_tx_burst(nic, pool, ids, n, now)
    return n, nic_next_event(nic)
