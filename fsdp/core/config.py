"""Stack options: names, defaults, validation, and their jitted form (the ``cfg`` array).

``fsdp.Stack(..., **options)`` and ``fsdp.testing.Harness(..., **options)`` accept exactly the
names in :data:`DEFAULTS`; anything else is a ``TypeError`` like any Python call with an unknown
keyword.  Times are given in seconds and kept in integer microseconds on the data path.
"""

from dataclasses import dataclass, fields

import numpy as np

# ---- cfg array indices (read-only configuration seen by the jitted loop) ----
CFG_IP = 0
CFG_NETMASK = 1
CFG_GATEWAY = 2  # 0 = no default route
CFG_MAC = 3
CFG_CORE_ID = 4
CFG_N_CORES = 5
CFG_ARP_REACHABLE_US = 6
CFG_ARP_RETRANS_US = 7
CFG_ARP_PROBES = 8
CFG_ARP_QUEUE_LEN = 9
CFG_ARP_GC_US = 10
CFG_ARP_REPLY_CORE = 11  # -1: every core answers ARP requests it sees; k: only core k does
CFG_ICMP_RATE = 12  # ICMP error messages per second (token bucket), 0 = unlimited
CFG_ICMP_BURST = 13
CFG_ICMP_ECHO_IGNORE_BCAST = 14
CFG_TTL = 15
CFG_RX_CSUM_OFFLOAD = 16  # the NIC verifies checksums and flags frames
CFG_TX_CSUM_OFFLOAD = 17  # the NIC fills in checksums of frames flagged FRAME_F_TX_CSUM
CFG_CAPTURE = 18  # copy every rx/tx frame to the capture ring
CFG_RX_BURST = 19
CFG_SIZE = 32


@dataclass
class StackOptions:
    """Tunables of a stack (the names ``**options`` accepts), with the production defaults."""

    pool_frames: int = 8192  # frames per core (2 KiB each)
    rx_burst: int = 32  # frames read from the NIC queue per pass
    ttl: int = 64  # IPv4 TTL of what we send (Linux ip_default_ttl)
    arp_entries: int = 256  # neighbour cache size per core (power of two)
    arp_reachable: float = 30.0  # s a confirmed neighbour stays REACHABLE (Linux base_reachable_time)
    arp_retrans: float = 1.0  # s between ARP requests while resolving (Linux retrans_time)
    arp_probes: int = 3  # requests before a neighbour is declared unreachable (Linux mcast_solicit)
    arp_queue_len: int = 64  # packets held per unresolved neighbour; the oldest is dropped (Linux)
    arp_gc: float = 60.0  # s an unused STALE neighbour is kept
    icmp_ratelimit: int = 1000  # ICMP error messages per second per core (Linux icmp_msgs_per_sec)
    icmp_burst: int = 50  # token bucket depth (Linux icmp_msgs_burst)
    icmp_echo_ignore_broadcasts: bool = True  # Linux default, RFC 1122 §3.2.2.6 allows either
    rx_csum_offload: bool = False
    tx_csum_offload: bool = False

    @classmethod
    def from_options(cls, options: dict) -> "StackOptions":
        known = {f.name for f in fields(cls)}
        for name in options:
            if name not in known:
                raise TypeError(f"unexpected stack option {name!r}")
        opts = cls(**options)
        opts.validate()
        return opts

    def validate(self) -> None:
        def positive_int(name, lo=1, hi=1 << 31):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"option {name} must be an int, not {type(v).__name__}")
            if not lo <= v <= hi:
                raise ValueError(f"option {name}={v} out of range [{lo}, {hi}]")

        def seconds(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"option {name} must be a number of seconds")
            if not 0 < v < 1e7:
                raise ValueError(f"option {name}={v} must be > 0 seconds")

        positive_int("pool_frames", 64, 1 << 24)
        positive_int("rx_burst", 1, 1024)
        positive_int("ttl", 1, 255)
        positive_int("arp_entries", 8, 1 << 20)
        if self.arp_entries & (self.arp_entries - 1):
            raise ValueError("option arp_entries must be a power of two")
        positive_int("arp_probes", 1, 100)
        positive_int("arp_queue_len", 1, 1 << 16)
        positive_int("icmp_ratelimit", 0, 1 << 30)
        positive_int("icmp_burst", 1, 1 << 30)
        for name in ("arp_reachable", "arp_retrans", "arp_gc"):
            seconds(name)


def us(seconds: float) -> int:
    return int(round(seconds * 1_000_000))


def cfg_create(
    opts: StackOptions, *, ip: int, netmask: int, gateway: int, mac: int, core_id: int,
    n_cores: int, arp_reply_core: int,
) -> np.ndarray:
    cfg = np.zeros(CFG_SIZE, np.int64)
    cfg[CFG_IP] = ip
    cfg[CFG_NETMASK] = netmask
    cfg[CFG_GATEWAY] = gateway
    cfg[CFG_MAC] = mac
    cfg[CFG_CORE_ID] = core_id
    cfg[CFG_N_CORES] = n_cores
    cfg[CFG_ARP_REACHABLE_US] = us(opts.arp_reachable)
    cfg[CFG_ARP_RETRANS_US] = us(opts.arp_retrans)
    cfg[CFG_ARP_PROBES] = opts.arp_probes
    cfg[CFG_ARP_QUEUE_LEN] = opts.arp_queue_len
    cfg[CFG_ARP_GC_US] = us(opts.arp_gc)
    cfg[CFG_ARP_REPLY_CORE] = arp_reply_core
    cfg[CFG_ICMP_RATE] = opts.icmp_ratelimit
    cfg[CFG_ICMP_BURST] = opts.icmp_burst
    cfg[CFG_ICMP_ECHO_IGNORE_BCAST] = int(opts.icmp_echo_ignore_broadcasts)
    cfg[CFG_TTL] = opts.ttl
    cfg[CFG_RX_CSUM_OFFLOAD] = int(opts.rx_csum_offload)
    cfg[CFG_TX_CSUM_OFFLOAD] = int(opts.tx_csum_offload)
    cfg[CFG_RX_BURST] = opts.rx_burst
    return cfg
