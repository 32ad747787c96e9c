"""The state one core owns (mTCP's per-core struct, as a NamedTuple of arrays).

Everything the jitted loop touches for core *i* hangs off one ``CoreState``: its NIC queue, its
packet pool, its tables, its counters.  Nothing in it is shared with another core.
"""

import os
from typing import Any, NamedTuple

import numpy as np

from fsdp.core.config import CFG_RFD, StackOptions, cfg_create
from fsdp.core.stats import stats_create
from fsdp.core.timerwheel import TimerWheel, timerwheel_create
from fsdp.core.vars import (
    NO_DEADLINE,
    V_ARP_TIMER_US,
    V_ICMP_TOKENS,
    V_IPFRAG_TIMER_US,
    V_LO_IN_HEAD,
    V_LO_IN_TAIL,
    V_LO_OUT_HEAD,
    V_LO_OUT_TAIL,
    V_SIZE,
    V_TCP_TW_HEAD,
    V_TCP_TW_TAIL,
    V_TX_OVF_HEAD,
    V_TX_OVF_TAIL,
)
from fsdp.driver.api import nic_rx_ring_slots
from fsdp.driver.pcap import capture_ring_create
from fsdp.driver.toeplitz import RETA_SIZE, RSS_IPV4_L4_BYTES
from fsdp.pool.pool import Pool, pool_create
from fsdp.tcp.flowtable import FlowTable, flowtable_create
from fsdp.tcp.icmp import EchoLog, echo_log_create
from fsdp.tcp.ipfrag import IpFragTable, ipfrag_table_create
from fsdp.tcp.isn import host_secret_create
from fsdp.tcp.listen import ListenTable, listen_table_create
from fsdp.tcp.neighbor import ArpTable, arp_table_create
from fsdp.tcp.reass import SackState, sack_state_create
from fsdp.tcp.segment import SEG_SIZE
from fsdp.tcp.tcb import TcbTable, tcb_table_create
from fsdp.tcp.tcp_output import TMPL_SIZE
from fsdp.wire.tcp import TOPT_SIZE

TX_BATCH = 64  # frames queued before an early tx_burst within a pass
TIMER_BATCH = 64  # timers handled per timer_expire call


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
    frags: IpFragTable  # IPv4 datagrams being reassembled
    capture: Any  # CaptureRing
    # ---- the TCP engine (fsdp/tcp) ----
    tcb: TcbTable  # every connection's TCB, max_conns of them
    flows: FlowTable  # 4-tuple -> connection id
    listen: ListenTable  # listeners and local port use
    timers: TimerWheel  # TCP timers (TIMER_* kinds per connection)
    sack: SackState  # SACK / D-SACK blocks each connection sends
    isn_secret: np.ndarray  # uint64[4]: RFC 6528 ISN key and SYN cookie key
    tcp_tmpl: np.ndarray  # uint8[max_conns, TMPL_SIZE]: per-connection header templates
    tcp_seg: np.ndarray  # int64[SEG_SIZE]: the segment being processed (fsdp.tcp.segment)
    tcp_opt: np.ndarray  # int64[TOPT_SIZE]: its parsed options
    tcp_blocks: np.ndarray  # int64[8]: SACK blocks scratch
    tmr_conn: np.ndarray  # int32[TIMER_BATCH]: timer_expire output
    tmr_kind: np.ndarray  # int32[TIMER_BATCH]
    # ---- receive flow deliver: the NIC port's RSS, live (fsdp.driver.toeplitz) ----
    rss: np.ndarray  # uint32[12, 256]: Toeplitz table of the port's key
    reta: np.ndarray  # int64[RETA_SIZE]: its redirection table
    # ---- listen spawn's global fallback: which cores of the port listen on each TCP port ----
    listen_map: np.ndarray  # int64[65536], bit q = queue q's core (usercalls, tcp.input)


def core_state_create(
    opts: StackOptions, nic_queue, *, ip: int, netmask: int, gateway: int, mac: int,
    core_id: int, n_cores: int, arp_reply_core: int, steering=None, listen_map=None,
) -> CoreState:
    """``steering``: ``(rss_table, reta)``, live views of the NIC port's RSS state, or None
    where the NIC has none to show (receive flow deliver is then off).  ``listen_map``: the
    port's global listen table (int64[65536], shared by all its cores), or None for a core
    alone on its port."""
    cfg = cfg_create(
        opts, ip=ip, netmask=netmask, gateway=gateway, mac=mac, core_id=core_id,
        n_cores=n_cores, arp_reply_core=arp_reply_core,
        rx_ring_slots=nic_rx_ring_slots(nic_queue),
    )
    var = np.zeros(V_SIZE, np.int64)
    var[V_ARP_TIMER_US] = NO_DEADLINE
    var[V_IPFRAG_TIMER_US] = NO_DEADLINE
    var[V_ICMP_TOKENS] = opts.icmp_burst * 1000
    var[V_TCP_TW_HEAD] = -1
    var[V_TCP_TW_TAIL] = -1
    var[V_TX_OVF_HEAD] = -1
    var[V_TX_OVF_TAIL] = -1
    for v in (V_LO_OUT_HEAD, V_LO_OUT_TAIL, V_LO_IN_HEAD, V_LO_IN_TAIL):
        var[v] = -1
    if steering is None:
        cfg[CFG_RFD] = 0
        steering = (np.zeros((RSS_IPV4_L4_BYTES, 256), np.uint32), np.zeros(RETA_SIZE, np.int64))
    if listen_map is None:
        listen_map = np.zeros(65536, np.int64)
    secret = host_secret_create()
    n = opts.max_conns
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
        frags=ipfrag_table_create(),
        capture=capture_ring_create(slots=1, snaplen=64),
        tcb=tcb_table_create(n),
        flows=flowtable_create(n),
        # (where the ephemeral port search starts: this stack's own, not the host's)
        listen=listen_table_create(int.from_bytes(os.urandom(4), "little")),
        timers=timerwheel_create(n),
        sack=sack_state_create(n),
        isn_secret=secret,
        tcp_tmpl=np.zeros((n, TMPL_SIZE), np.uint8),
        tcp_seg=np.zeros(SEG_SIZE, np.int64),
        tcp_opt=np.zeros(TOPT_SIZE, np.int64),
        tcp_blocks=np.zeros(8, np.int64),
        tmr_conn=np.zeros(TIMER_BATCH, np.int32),
        tmr_kind=np.zeros(TIMER_BATCH, np.int32),
        rss=steering[0],
        reta=steering[1],
        listen_map=listen_map,
    )
