"""Per-core counters (``netstat -s`` for fsdp): one int64 array per core, named indices.

Every drop in fsdp is counted here by reason.  ``STAT_NAMES[i]`` is the public name of counter
``i`` (what ``Stack.stats()`` and ``fsdp stat`` print).  Add a counter by appending a name and a
constant; the test suite checks that the two lists agree.
"""

import numpy as np

STAT_NAMES = (
    # link layer
    "rx_frames",
    "rx_bytes",
    "tx_frames",
    "tx_bytes",
    "eth_truncated",
    "eth_not_for_us",
    "eth_unknown_type",
    "pool_empty",  # an output path could not allocate a frame
    # ARP (RFC 826, RFC 1122 §2.3.2)
    "arp_in",
    "arp_malformed",
    "arp_bogus",  # group sender MAC/IP, or our own MAC as sender
    "arp_conflict",  # another host claims our IPv4 address
    "arp_requests_in",
    "arp_replies_in",
    "arp_requests_out",
    "arp_replies_out",
    "arp_table_full",
    "arp_resolve_failed",  # frames dropped because a neighbour never answered
    "arp_queue_drop",  # frames dropped from a full queue of a resolving neighbour
    # IPv4 (RFC 791, RFC 1122 §3.2.1)
    "ip_in",
    "ip_truncated",
    "ip_bad_version",
    "ip_bad_hlen",
    "ip_bad_total_len",
    "ip_bad_csum",
    "ip_bad_src",  # martian source: zero, loopback, multicast, broadcast, ours
    "ip_not_for_us",
    "ip_fragment",  # fragments are not reassembled: dropped
    "ip_unknown_proto",
    "ip_out",
    "ip_no_route",
    # ICMP (RFC 792, RFC 1122 §3.2.2)
    "icmp_in",
    "icmp_truncated",
    "icmp_bad_csum",
    "icmp_echo_requests_in",
    "icmp_echo_replies_in",
    "icmp_echo_broadcast_ignored",
    "icmp_dest_unreach_in",
    "icmp_other_in",
    "icmp_echo_replies_out",
    "icmp_echo_requests_out",
    "icmp_errors_out",
    "icmp_rate_limited",
    # UDP (no sockets: answered with ICMP port unreachable, as Linux does for a closed port)
    "udp_in",
    "udp_malformed",
    "udp_bad_csum",
    # TCP (the engine adds its own counters after these)
    "tcp_in",
    "tcp_malformed",
    "tcp_bad_csum",
    "tcp_rst_out",
    "tcp_no_listener",
    # the NIC queue
    "nic_tx_dropped",
    "capture_dropped",
)

STAT_RX_FRAMES = 0
STAT_RX_BYTES = 1
STAT_TX_FRAMES = 2
STAT_TX_BYTES = 3
STAT_ETH_TRUNCATED = 4
STAT_ETH_NOT_FOR_US = 5
STAT_ETH_UNKNOWN_TYPE = 6
STAT_POOL_EMPTY = 7
STAT_ARP_IN = 8
STAT_ARP_MALFORMED = 9
STAT_ARP_BOGUS = 10
STAT_ARP_CONFLICT = 11
STAT_ARP_REQUESTS_IN = 12
STAT_ARP_REPLIES_IN = 13
STAT_ARP_REQUESTS_OUT = 14
STAT_ARP_REPLIES_OUT = 15
STAT_ARP_TABLE_FULL = 16
STAT_ARP_RESOLVE_FAILED = 17
STAT_ARP_QUEUE_DROP = 18
STAT_IP_IN = 19
STAT_IP_TRUNCATED = 20
STAT_IP_BAD_VERSION = 21
STAT_IP_BAD_HLEN = 22
STAT_IP_BAD_TOTAL_LEN = 23
STAT_IP_BAD_CSUM = 24
STAT_IP_BAD_SRC = 25
STAT_IP_NOT_FOR_US = 26
STAT_IP_FRAGMENT = 27
STAT_IP_UNKNOWN_PROTO = 28
STAT_IP_OUT = 29
STAT_IP_NO_ROUTE = 30
STAT_ICMP_IN = 31
STAT_ICMP_TRUNCATED = 32
STAT_ICMP_BAD_CSUM = 33
STAT_ICMP_ECHO_REQUESTS_IN = 34
STAT_ICMP_ECHO_REPLIES_IN = 35
STAT_ICMP_ECHO_BROADCAST_IGNORED = 36
STAT_ICMP_DEST_UNREACH_IN = 37
STAT_ICMP_OTHER_IN = 38
STAT_ICMP_ECHO_REPLIES_OUT = 39
STAT_ICMP_ECHO_REQUESTS_OUT = 40
STAT_ICMP_ERRORS_OUT = 41
STAT_ICMP_RATE_LIMITED = 42
STAT_UDP_IN = 43
STAT_UDP_MALFORMED = 44
STAT_UDP_BAD_CSUM = 45
STAT_TCP_IN = 46
STAT_TCP_MALFORMED = 47
STAT_TCP_BAD_CSUM = 48
STAT_TCP_RST_OUT = 49
STAT_TCP_NO_LISTENER = 50
STAT_NIC_TX_DROPPED = 51
STAT_CAPTURE_DROPPED = 52

STAT_COUNT = len(STAT_NAMES)


def stats_create() -> np.ndarray:
    return np.zeros(STAT_COUNT, np.int64)


def stats_dict(stats: np.ndarray) -> dict[str, int]:
    return {name: int(stats[i]) for i, name in enumerate(STAT_NAMES)}
