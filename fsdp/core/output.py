"""The transmit batch of a core: frames ready for the wire wait in ``core.tx_ids`` and leave in
one ``tx_burst`` per pass (or earlier when the batch fills), as DESIGN.md §1 describes."""

from numba import njit

from fsdp.core.config import CFG_CAPTURE
from fsdp.core.stats import STAT_CAPTURE_DROPPED, STAT_TX_BYTES, STAT_TX_FRAMES
from fsdp.core.vars import V_TX_N
from fsdp.driver.api import nic_tx_burst
from fsdp.driver.pcap import capture_append

CAPTURE_RX = 0
CAPTURE_TX = 1


@njit(cache=True)
def capture_frame(core, fid, now, direction):
    pool = core.pool
    if not capture_append(
        core.capture, pool.data[fid], pool.off[fid], pool.length[fid], now, direction
    ):
        core.stats[STAT_CAPTURE_DROPPED] += 1


@njit(cache=True)
def tx_flush(core, now):
    """Hand the batch to the NIC (also with 0 frames: the NIC releases delayed frames then)."""
    n = core.var[V_TX_N]
    nic_tx_burst(core.nic, core.pool, core.tx_ids, n, now)
    core.var[V_TX_N] = 0


@njit(cache=True)
def tx_enqueue(core, fid, now):
    """Queue a complete Ethernet frame for transmission; the NIC takes ownership of it."""
    core.stats[STAT_TX_FRAMES] += 1
    core.stats[STAT_TX_BYTES] += core.pool.length[fid]
    if core.cfg[CFG_CAPTURE]:
        capture_frame(core, fid, now, CAPTURE_TX)
    n = core.var[V_TX_N]
    core.tx_ids[n] = fid
    core.var[V_TX_N] = n + 1
    if n + 1 == core.tx_ids.shape[0]:
        tx_flush(core, now)
