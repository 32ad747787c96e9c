"""The state one core owns (mTCP's per-core struct, as a NamedTuple of arrays).

Everything the jitted loop touches for core *i* hangs off one ``CoreState``: its NIC queue, its
packet pool, its tables, its counters.  Nothing in it is shared with another core.
"""

from typing import Any, NamedTuple

import numpy as np

from fsdp.core.config import StackOptions, cfg_create
from fsdp.core.stats import stats_create
from fsdp.core.vars import NO_DEADLINE, V_ARP_TIMER_US, V_ICMP_TOKENS, V_SIZE
from fsdp.driver.pcap import capture_ring_create
from fsdp.pool.pool import Pool, pool_create
from fsdp.tcp.icmp import EchoLog, echo_log_create
from fsdp.tcp.neighbor import ArpTable, arp_table_create

TX_BATCH = 64  # frames queued before an early tx_burst within a pass


class CoreState(NamedTuple):
    cfg: np.ndarray  # int64[CFG_SIZE]: configuration (read-only for the loop)
    var: np.ndarray  # int64[V_SIZE]: runtime scalars
    stats: np.ndarray  # int64[STAT_COUNT]
    pool: Pool
    nic: Any  # the backend's queue NamedTuple (e.g. SimQueue)
    rx_ids: np.ndarray  # int32[rx_burst]
    tx_ids: np.ndarray  # int32[TX_BATCH]
    arp: ArpTable
    echo_log: EchoLog
    capture: Any  # CaptureRing


def core_state_create(
    opts: StackOptions, nic_queue, *, ip: int, netmask: int, gateway: int, mac: int,
    core_id: int, n_cores: int, arp_reply_core: int,
) -> CoreState:
    cfg = cfg_create(
        opts, ip=ip, netmask=netmask, gateway=gateway, mac=mac, core_id=core_id,
        n_cores=n_cores, arp_reply_core=arp_reply_core,
    )
    var = np.zeros(V_SIZE, np.int64)
    var[V_ARP_TIMER_US] = NO_DEADLINE
    var[V_ICMP_TOKENS] = opts.icmp_burst * 1000
    return CoreState(
        cfg=cfg,
        var=var,
        stats=stats_create(),
        pool=pool_create(opts.pool_frames),
        nic=nic_queue,
        rx_ids=np.zeros(max(opts.rx_burst, 1), np.int32),
        tx_ids=np.zeros(TX_BATCH, np.int32),
        arp=arp_table_create(opts.arp_entries),
        echo_log=echo_log_create(),
        capture=capture_ring_create(slots=1, snaplen=64),
    )
