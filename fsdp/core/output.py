"""The transmit batch of a core: frames ready for the wire wait in ``core.tx_ids`` and leave in
one ``tx_burst`` per pass (or earlier when the batch fills), as DESIGN.md §1 describes."""

from numba import njit

from fsdp.core.config import CFG_CAPTURE
from fsdp.core.stats import STAT_CAPTURE_DROPPED, STAT_TX_BYTES, STAT_TX_FRAMES
from fsdp.core.vars import V_TX_N, V_TX_OVF_HEAD, V_TX_OVF_TAIL
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
    """Hand everything queued to the NIC, a burst of ``core.tx_ids`` at a time (also with 0
    frames: the NIC releases delayed frames then)."""
    pool = core.pool
    batch = core.tx_ids.shape[0]
    while True:
        n = core.var[V_TX_N]
        head = core.var[V_TX_OVF_HEAD]
        while n < batch and head >= 0:
            core.tx_ids[n] = head
            nxt = pool.next[head]
            pool.next[head] = -1
            head = nxt
            n += 1
        core.var[V_TX_OVF_HEAD] = head
        if head < 0:
            core.var[V_TX_OVF_TAIL] = -1
        nic_tx_burst(core.nic, pool, core.tx_ids, n, now)
        core.var[V_TX_N] = 0
        if head < 0:
            break


@njit(cache=True)
def tx_enqueue(core, fid, now):
    """Queue a complete Ethernet frame for transmission; it leaves at the pass's ``tx_flush``,
    where the NIC takes ownership of it.  Never calls the NIC itself: every output path then
    compiles without the NIC backend's code (one copy of it, in the loop's flush)."""
    core.stats[STAT_TX_FRAMES] += 1
    core.stats[STAT_TX_BYTES] += core.pool.length[fid]
    if core.cfg[CFG_CAPTURE]:
        capture_frame(core, fid, now, CAPTURE_TX)
    n = core.var[V_TX_N]
    if n < core.tx_ids.shape[0]:
        core.tx_ids[n] = fid
        core.var[V_TX_N] = n + 1
        return
    # the burst array is full: chain the frame through pool.next until the flush
    core.pool.next[fid] = -1
    tail = core.var[V_TX_OVF_TAIL]
    if tail >= 0:
        core.pool.next[tail] = fid
    else:
        core.var[V_TX_OVF_HEAD] = fid
    core.var[V_TX_OVF_TAIL] = fid
