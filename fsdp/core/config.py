"""Stack options: names, defaults, validation, and their jitted form (the ``cfg`` array).

``fsdp.Stack(..., **options)`` and ``fsdp.testing.Harness(..., **options)`` accept exactly the
names in :data:`DEFAULTS`; anything else is a ``TypeError`` like any Python call with an unknown
keyword.  Times are given in seconds and kept in integer microseconds on the data path.
"""

from dataclasses import dataclass, fields

import numpy as np

from fsdp.pool.pool import FRAME_SIZE

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
# TCP (fsdp/tcp): see StackOptions for meanings; times in µs
CFG_TCP_MSS = 20  # MSS we advertise: MTU - 40
CFG_TCP_TIMESTAMPS = 21
CFG_TCP_SACK = 22
CFG_TCP_DSACK = 23
CFG_TCP_WINDOW_SCALING = 24
CFG_TCP_RCVBUF = 25  # default SO_RCVBUF (tcp_rmem[1])
CFG_TCP_RCVBUF_MAX = 26  # tcp_rmem[2]: sets the window scale we offer
CFG_TCP_SNDBUF = 27  # default SO_SNDBUF (tcp_wmem[1])
CFG_TCP_SYNCOOKIES = 28
CFG_TCP_SYN_RETRIES = 29
CFG_TCP_SYNACK_RETRIES = 30
CFG_TCP_RETRIES2 = 31
CFG_TCP_ORPHAN_RETRIES = 32
CFG_TCP_FIN_TIMEOUT_US = 33
CFG_TCP_KEEPALIVE_TIME_US = 34
CFG_TCP_KEEPALIVE_INTVL_US = 35
CFG_TCP_KEEPALIVE_PROBES = 36
CFG_TCP_MAX_TW = 37
CFG_TCP_MAX_SYN_BACKLOG = 38
CFG_TCP_ABORT_ON_OVERFLOW = 39
CFG_TCP_CHALLENGE_ACK_LIMIT = 40
CFG_TCP_INVALID_RATELIMIT_US = 41
CFG_TCP_RTO_MIN_US = 42
CFG_TCP_RTO_INITIAL_US = 43
CFG_TCP_RTO_MAX_US = 44
CFG_TCP_CC = 45  # CC_NEWRENO / CC_CUBIC (fsdp.tcp.tcb)
CFG_TCP_SLOW_START_AFTER_IDLE = 46
CFG_TCP_RFC1337 = 47
CFG_TCP_DELAYED_ACK = 48
CFG_TCP_INIT_CWND = 49  # segments (RFC 6928)
CFG_TCP_REORDERING = 50  # duplicate-ACK threshold (RFC 5681 §3.2: 3)
CFG_TCP_TIME_WAIT_US = 51  # 2*MSL (Linux TCP_TIMEWAIT_LEN, 60 s)
CFG_SOMAXCONN = 52
CFG_TCP_MAX_REASS = 53  # out-of-order bytes per connection, 0 = the receive buffer
CFG_TCP_SNDBUF_MAX = 54  # tcp_wmem[2]: the ceiling of automatic send-buffer growth
CFG_RFD = 55  # receive flow deliver: active opens pick ports whose replies RSS steers here
#                                wants (the listener's core when listen spawn is off)
CFG_IPFRAG_TIME_US = 56  # how long a datagram's fragments are kept (Linux ipfrag_time)
CFG_TCP_RECOVERY = 57  # TCP_RECOVERY_RACK: RACK loss detection with SACK (Linux tcp_recovery)
CFG_TCP_FRTO = 58  # F-RTO after a retransmission timeout (RFC 5682; Linux tcp_frto)
CFG_TCP_ECN = 59  # ECN (RFC 3168): 0 off, 1 asked for and accepted, 2 accepted (Linux tcp_ecn)
CFG_TCP_MODERATE_RCVBUF = 60  # receive-buffer autotuning (fsdp.tcp.drs; Linux tcp_moderate_rcvbuf)
CFG_TCP_RCVBUF_AUTO_MAX = 61  # the most autotuning gives one connection (rcvbuf_autotune_max)
CFG_SIZE = 64


@dataclass
class StackOptions:
    """Tunables of a stack (the names ``**options`` accepts), with the production defaults."""

    pool_frames: int = 8192  # frames per core (2 KiB each)
    rx_burst: int = 32  # frames read from the NIC queue per pass
    ttl: int = 64  # IPv4 TTL of what we send (Linux ip_default_ttl)
    arp_entries: int = 256  # neighbour cache size per core (power of two)
    # s a confirmed neighbour stays REACHABLE (Linux base_reachable_time)
    arp_reachable: float = 30.0
    arp_retrans: float = 1.0  # s between ARP requests while resolving (Linux retrans_time)
    arp_probes: int = 3  # requests before a neighbour is declared unreachable (Linux mcast_solicit)
    arp_queue_len: int = 64  # packets held per unresolved neighbour; the oldest is dropped (Linux)
    arp_gc: float = 60.0  # s an unused STALE neighbour is kept
    icmp_ratelimit: int = 1000  # ICMP error messages per second per core (Linux icmp_msgs_per_sec)
    icmp_burst: int = 50  # token bucket depth (Linux icmp_msgs_burst)
    ipfrag_time: int = 30  # s to complete a fragmented datagram (Linux ipfrag_time)
    icmp_echo_ignore_broadcasts: bool = True  # Linux default, RFC 1122 §3.2.2.6 allows either
    rx_csum_offload: bool = False
    tx_csum_offload: bool = False
    # ---- TCP.  Names and units are Linux's sysctls (Documentation/networking/ip-sysctl.rst) where
    # one exists, so a scenario can set the same knob on fsdp and on the kernel. ----
    max_conns: int = 65536  # TCBs per core (embryonic and TIME-WAIT ones included)
    mtu: int = 1500  # the MSS we advertise is mtu - 40 (RFC 9293 §3.7.1, RFC 6691)
    tcp_timestamps: int = 1  # RFC 7323 §3
    tcp_sack: int = 1  # RFC 2018
    tcp_dsack: int = 1  # RFC 2883
    tcp_window_scaling: int = 1  # RFC 7323 §2
    tcp_rmem: object = "4096 131072 33554432"  # min, default SO_RCVBUF, max (sets the scale)
    tcp_wmem: object = "4096 16384 4194304"  # min, default SO_SNDBUF, max
    tcp_syncookies: int = 1  # 0 never, 1 when a SYN backlog is full, 2 always (RFC 4987 §3.6)
    tcp_syn_retries: int = 6  # SYN retransmissions: 1, 2, 4 ... 32 s, give up at 127 s
    tcp_synack_retries: int = 5  # SYN-ACK retransmissions
    tcp_retries2: int = 15  # data retransmissions before ETIMEDOUT (as a time, like Linux)
    tcp_orphan_retries: int = 0  # for connections the application closed (0 = Linux's 8)
    tcp_fin_timeout: int = 60  # s an orphaned FIN-WAIT-2 connection waits for the peer's FIN
    tcp_keepalive_time: int = 7200  # s idle before the first probe (RFC 1122 §4.2.3.6)
    tcp_keepalive_intvl: int = 75  # s between probes
    tcp_keepalive_probes: int = 9  # unanswered probes before the connection is dropped
    tcp_max_tw_buckets: int = 16384  # TIME-WAIT TCBs per core; when full the oldest is recycled
    tcp_max_syn_backlog: int = 4096  # SYN-RECEIVED cap without SYN cookies (Linux's rule)
    tcp_abort_on_overflow: int = 0  # 1: answer a final ACK to a full accept queue with RST
    tcp_challenge_ack_limit: int = 2147483647  # challenge ACKs per second per core (RFC 5961 §7)
    tcp_invalid_ratelimit: int = 500  # ms between out-of-window/challenge ACKs per connection
    tcp_rto_min_us: int = 200000  # RFC 6298 (2.4) says 1 s; Linux (and fsdp) 200 ms
    tcp_rto_initial: float = 1.0  # s, RFC 6298 (2.1)
    tcp_rto_max: float = 120.0  # s, RFC 6298 (2.5) allows an upper bound >= 60 s
    tcp_congestion_control: str = "reno"  # "reno" (RFC 5681 + RFC 6582) or "cubic" (RFC 9438)
    tcp_slow_start_after_idle: int = 1  # RFC 5681 §4.1 restart window after an idle period
    tcp_rfc1337: int = 0  # 1: a RST does not end TIME-WAIT (RFC 1337); Linux's default is 0
    tcp_delayed_ack: int = 1  # RFC 1122 §4.2.3.2 / RFC 9293 §3.8.6.3 (Linux: 40 ms minimum)
    tcp_init_cwnd: int = 10  # initial window, segments (RFC 6928; Linux route initcwnd)
    tcp_reordering: int = 3  # duplicate ACKs that trigger fast retransmit (RFC 5681 §3.2)
    tcp_recovery: int = 1  # 1: RACK (RFC 8985 §6) finds losses with SACK, as Linux; 0: RFC 6675
    tcp_frto: int = 2  # F-RTO after an RTO (RFC 5682; Linux's default 2), 0: go-back-N at once
    # ECN (RFC 3168), as Linux's tcp_ecn: 2 (its default) accepts it when a peer's SYN asks,
    # 1 also asks for it in our SYNs, 0 never uses it
    tcp_ecn: int = 2
    # receive-buffer autotuning (Linux tcp_moderate_rcvbuf): a connection whose application keeps
    # up grows its buffer, and the window it offers, towards what the path needs
    # (fsdp.tcp.drs); never past rcvbuf_autotune_max(), never when the application set SO_RCVBUF
    tcp_moderate_rcvbuf: int = 1
    tcp_time_wait: float = 60.0  # s in TIME-WAIT (2*MSL; Linux TCP_TIMEWAIT_LEN)
    tcp_max_reass: int = 0  # out-of-order bytes held per connection, 0 = its receive buffer
    somaxconn: int = 4096  # listen() backlog cap (Linux net.core.somaxconn)
    # Receive flow deliver (Fastsocket, DESIGN.md §3): a core's connect() picks a local port
    # whose reply the NIC's RSS steers back to that core (where the NIC exposes its RSS key and
    # redirection table, and the port has several queues).  Off, on a multi-queue port, a core
    # picks ports that name it (port % cores == core) and a reply RSS puts on another core is
    # handed over by that core's software (nic_redirect): an extra hop per misdelivered segment.
    receive_flow_deliver: bool = True
    # Listen spawn (Fastsocket): listen() installs the listener in every core's listen table.
    # Off, only core 0 listens; a SYN (and the rest of its flow) that RSS gives another core is
    # handed to core 0 (the global fallback), which then does all connection work.
    listen_spawn: bool = True
    # Counters and connection tables in a shared-memory file, for fsdp stat / fsdp ss
    # (fsdp.core.statseg); off: private memory, nothing another process can read.
    stats_segment: bool = True
    # Records per core in the capture ring the stats segment also holds, which `fsdp capture`
    # drains from another process (fsdp.apps.observe.run_capture); 0: no such ring.  Its pages
    # (2 KiB a record) take memory only once a capture has written them.
    capture_slots: int = 1024

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
        positive_int("capture_slots", 0, 1 << 20)
        positive_int("rx_burst", 1, 1024)
        positive_int("ttl", 1, 255)
        positive_int("arp_entries", 8, 1 << 20)
        if self.arp_entries & (self.arp_entries - 1):
            raise ValueError("option arp_entries must be a power of two")
        positive_int("arp_probes", 1, 100)
        positive_int("arp_queue_len", 1, 1 << 16)
        positive_int("icmp_ratelimit", 0, 1 << 30)
        positive_int("icmp_burst", 1, 1 << 30)
        positive_int("ipfrag_time", 1, 1 << 20)
        for name in ("arp_reachable", "arp_retrans", "arp_gc"):
            seconds(name)
        positive_int("max_conns", 16, 1 << 24)
        positive_int("mtu", 576, 9000)
        for name in ("tcp_timestamps", "tcp_sack", "tcp_dsack", "tcp_window_scaling",
                     "tcp_abort_on_overflow", "tcp_slow_start_after_idle", "tcp_rfc1337",
                     "tcp_delayed_ack", "tcp_moderate_rcvbuf"):
            v = getattr(self, name)
            if isinstance(v, bool):
                setattr(self, name, int(v))
            positive_int(name, 0, 1)
        positive_int("tcp_syncookies", 0, 2)
        positive_int("tcp_syn_retries", 1, 127)
        positive_int("tcp_synack_retries", 0, 127)
        positive_int("tcp_retries2", 0, 127)
        positive_int("tcp_orphan_retries", 0, 127)
        positive_int("tcp_fin_timeout", 1, 1 << 20)
        positive_int("tcp_keepalive_time", 1, 32767)
        positive_int("tcp_keepalive_intvl", 1, 32767)
        positive_int("tcp_keepalive_probes", 1, 127)
        positive_int("tcp_max_tw_buckets", 0, 1 << 24)
        positive_int("tcp_max_syn_backlog", 1, 1 << 24)
        positive_int("tcp_challenge_ack_limit", 0, 2147483647)
        positive_int("tcp_invalid_ratelimit", 0, 1 << 20)
        positive_int("tcp_rto_min_us", 1, 120_000_000)
        positive_int("tcp_init_cwnd", 1, 1000)
        positive_int("tcp_reordering", 1, 300)
        positive_int("tcp_recovery", 0, 1)
        positive_int("tcp_frto", 0, 2)
        positive_int("tcp_ecn", 0, 2)
        positive_int("tcp_max_reass", 0, 1 << 30)
        positive_int("somaxconn", 1, 1 << 20)
        for name in ("tcp_rto_initial", "tcp_rto_max", "tcp_time_wait"):
            seconds(name)
        self.tcp_rmem = _triple("tcp_rmem", self.tcp_rmem)
        self.tcp_wmem = _triple("tcp_wmem", self.tcp_wmem)
        if self.tcp_congestion_control not in _CC_NAMES:
            raise ValueError(
                f"option tcp_congestion_control={self.tcp_congestion_control!r}: "
                f"one of {sorted(_CC_NAMES)}"
            )


_CC_NAMES = {"reno": 0, "newreno": 0, "cubic": 1}  # values are fsdp.tcp.tcb.CC_*


def _triple(name: str, v) -> tuple[int, int, int]:
    """Linux's ``min default max`` byte triple, as a string "4096 131072 6291456" or 3 ints."""
    if isinstance(v, str):
        parts = v.split()
    elif isinstance(v, (tuple, list)):
        parts = list(v)
    else:
        raise TypeError(f"option {name} must be 'min default max' or 3 ints")
    try:
        lo, default, hi = (int(x) for x in parts)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}={v!r}: expected three integers") from None
    if not 1 <= lo <= default <= hi <= 1 << 30:
        raise ValueError(f"option {name}={v!r}: need 1 <= min <= default <= max <= 2^30")
    return lo, default, hi


def us(seconds: float) -> int:
    return int(round(seconds * 1_000_000))


# What a full 1514-byte frame charges to a receive buffer (reass.rx_truesize, Linux's skb
# truesize of such a frame): a buffer of k of these offers a window of about k segments.
FULL_FRAME_TRUESIZE = 2176


def rcvbuf_autotune_max(opts: StackOptions, rx_ring_slots: int = 0) -> int:
    """The largest receive buffer autotuning gives a connection (fsdp.tcp.drs): tcp_rmem[2], as
    Linux, and two bounds of fsdp's own.  A quarter of the core's packet pool: a connection that
    stops reading after its buffer grew cannot leave the core's other connections without
    frames (the role of Linux's tcp_mem limits).  And, where the NIC queue's receive ring is
    known (``rx_ring_slots``), half of it in full frames: the sender may send a whole window in
    one burst, and a userspace stack's receive ring is the only buffer between the wire and the
    loop that drains it; a window larger than the ring turns bursts into ring-full drops (a
    window of 1,900 segments into a 256-slot sim ring cut a bulk stream from ~880 to ~150 MB/s).
    """
    cap = min(opts.tcp_rmem[2], opts.pool_frames * FRAME_SIZE // 4)
    if rx_ring_slots > 0:
        cap = min(cap, (rx_ring_slots // 2) * FULL_FRAME_TRUESIZE)
    return cap


def cfg_create(
    opts: StackOptions, *, ip: int, netmask: int, gateway: int, mac: int, core_id: int,
    n_cores: int, arp_reply_core: int, rx_ring_slots: int = 0,
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
    cfg[CFG_IPFRAG_TIME_US] = opts.ipfrag_time * 1_000_000
    cfg[CFG_RX_CSUM_OFFLOAD] = int(opts.rx_csum_offload)
    cfg[CFG_TX_CSUM_OFFLOAD] = int(opts.tx_csum_offload)
    cfg[CFG_RX_BURST] = opts.rx_burst
    cfg[CFG_TCP_MSS] = opts.mtu - 40
    cfg[CFG_TCP_TIMESTAMPS] = opts.tcp_timestamps
    cfg[CFG_TCP_SACK] = opts.tcp_sack
    cfg[CFG_TCP_DSACK] = opts.tcp_dsack
    cfg[CFG_TCP_WINDOW_SCALING] = opts.tcp_window_scaling
    cfg[CFG_TCP_RCVBUF] = opts.tcp_rmem[1]
    cfg[CFG_TCP_RCVBUF_MAX] = opts.tcp_rmem[2]
    cfg[CFG_TCP_SNDBUF] = opts.tcp_wmem[1]
    cfg[CFG_TCP_SNDBUF_MAX] = opts.tcp_wmem[2]
    cfg[CFG_TCP_SYNCOOKIES] = opts.tcp_syncookies
    cfg[CFG_TCP_SYN_RETRIES] = opts.tcp_syn_retries
    cfg[CFG_TCP_SYNACK_RETRIES] = opts.tcp_synack_retries
    cfg[CFG_TCP_RETRIES2] = opts.tcp_retries2
    cfg[CFG_TCP_ORPHAN_RETRIES] = opts.tcp_orphan_retries
    cfg[CFG_TCP_FIN_TIMEOUT_US] = us(opts.tcp_fin_timeout)
    cfg[CFG_TCP_KEEPALIVE_TIME_US] = us(opts.tcp_keepalive_time)
    cfg[CFG_TCP_KEEPALIVE_INTVL_US] = us(opts.tcp_keepalive_intvl)
    cfg[CFG_TCP_KEEPALIVE_PROBES] = opts.tcp_keepalive_probes
    cfg[CFG_TCP_MAX_TW] = opts.tcp_max_tw_buckets
    cfg[CFG_TCP_MAX_SYN_BACKLOG] = opts.tcp_max_syn_backlog
    cfg[CFG_TCP_ABORT_ON_OVERFLOW] = opts.tcp_abort_on_overflow
    cfg[CFG_TCP_CHALLENGE_ACK_LIMIT] = opts.tcp_challenge_ack_limit
    cfg[CFG_TCP_INVALID_RATELIMIT_US] = opts.tcp_invalid_ratelimit * 1000
    cfg[CFG_TCP_RTO_MIN_US] = opts.tcp_rto_min_us
    cfg[CFG_TCP_RTO_INITIAL_US] = us(opts.tcp_rto_initial)
    cfg[CFG_TCP_RTO_MAX_US] = us(opts.tcp_rto_max)
    cfg[CFG_TCP_CC] = _CC_NAMES[opts.tcp_congestion_control]
    cfg[CFG_TCP_SLOW_START_AFTER_IDLE] = opts.tcp_slow_start_after_idle
    cfg[CFG_TCP_RFC1337] = opts.tcp_rfc1337
    cfg[CFG_TCP_DELAYED_ACK] = opts.tcp_delayed_ack
    cfg[CFG_TCP_INIT_CWND] = opts.tcp_init_cwnd
    cfg[CFG_TCP_REORDERING] = opts.tcp_reordering
    cfg[CFG_TCP_RECOVERY] = opts.tcp_recovery
    cfg[CFG_TCP_FRTO] = opts.tcp_frto
    cfg[CFG_TCP_ECN] = opts.tcp_ecn
    cfg[CFG_TCP_MODERATE_RCVBUF] = opts.tcp_moderate_rcvbuf
    cfg[CFG_TCP_RCVBUF_AUTO_MAX] = rcvbuf_autotune_max(opts, rx_ring_slots)
    cfg[CFG_TCP_TIME_WAIT_US] = us(opts.tcp_time_wait)
    cfg[CFG_SOMAXCONN] = opts.somaxconn
    cfg[CFG_RFD] = int(opts.receive_flow_deliver)
    cfg[CFG_TCP_MAX_REASS] = opts.tcp_max_reass
    return cfg
