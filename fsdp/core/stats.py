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
    "ip_fragment",  # fragments received (Linux ReasmReqds; fsdp.tcp.ipfrag reassembles them)
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
    # TCP engine (fsdp/tcp): connections
    "tcp_active_opens",  # connect() sent a SYN
    "tcp_passive_opens",  # a listener created a connection (SYN-RECEIVED)
    "tcp_attempt_fails",  # SYN-SENT / SYN-RECEIVED connections that failed
    "tcp_estab_resets",  # ESTABLISHED / CLOSE-WAIT connections reset
    "tcp_segs_out",  # segments sent by connections (RSTs of CLOSED counted in tcp_rst_out)
    "tcp_retrans_segs",  # segments sent again
    "tcp_conn_table_full",  # no free TCB (max_conns)
    # segment validation
    "tcp_not_unicast",  # TCP to a broadcast address
    "tcp_bad_port",  # source or destination port 0
    "tcp_syn_fin",  # SYN together with FIN (dropped, as Linux)
    "tcp_md5_unexpected",  # MD5 signature option with no key (RFC 2385 §3, dropped as Linux)
    "tcp_out_of_window",  # RFC 9293 §3.10.7.4 first check: unacceptable segment
    "tcp_paws_dropped",  # RFC 7323 §5 PAWS: old timestamp
    "tcp_oow_acks_limited",  # ACK to an unacceptable segment not sent (per-connection rate limit)
    "tcp_rst_accepted",  # RST that reset a connection
    "tcp_rst_ignored",  # RST outside the window, or in a state that ignores it
    "tcp_challenge_acks",  # RFC 5961 challenge ACKs sent
    "tcp_challenge_acks_limited",  # challenge ACKs suppressed by the rate limits
    "tcp_syn_challenge",  # SYN in a synchronized state (RFC 5961 §4)
    "tcp_ack_unsent",  # SEG.ACK > SND.NXT (RFC 5961 §5.2)
    "tcp_ack_too_old",  # SEG.ACK < SND.UNA - MAX.SND.WND (RFC 5961 §5.2)
    "tcp_bad_ack_syn_recv",  # unacceptable ACK in SYN-RECEIVED (answered with RST)
    "tcp_no_ack_dropped",  # segment without ACK in a synchronized state
    "tcp_data_after_shutdown",  # data for a connection closed for reading (answered with RST)
    "tcp_rcv_queue_full",  # in-order data beyond the receive buffer
    "tcp_ofo_queued",  # out-of-order segments kept for reassembly
    "tcp_ofo_dropped",  # out-of-order segments dropped (reassembly memory bound)
    "tcp_dup_data",  # segments that carried only data already received
    "tcp_urg_in",  # segments with URG (RFC 9293 §3.8.5: fsdp.tcp.urgent)
    # listeners
    "tcp_listen_overflows",  # final ACK or SYN dropped: accept queue full
    "tcp_listen_drops",  # SYNs dropped by a listener (any reason)
    "tcp_syn_backlog_full",  # SYN backlog full and SYN cookies off
    "tcp_syncookies_sent",  # stateless SYN-ACKs (RFC 4987 §3.6)
    "tcp_syncookies_recv",  # connections created from a valid cookie
    "tcp_syncookies_failed",  # ACKs to a listener with an invalid cookie
    "tcp_synack_retrans",  # SYN-ACKs sent again
    "tcp_accept_reset",  # connections reset because the listener closed before accept()
    # timers and loss recovery
    "tcp_timeouts",  # retransmission timer expirations (RFC 6298 (5.4))
    "tcp_syn_retrans",  # SYNs sent again
    "tcp_fast_retrans",  # fast retransmissions (RFC 5681 §3.2, RFC 6675)
    "tcp_recovery_episodes",  # fast recovery episodes entered
    "tcp_sack_recovery",  # recovery episodes that used the SACK scoreboard (RFC 6675)
    "tcp_partial_acks",  # RFC 6582 partial ACKs in recovery
    "tcp_limited_transmit",  # segments sent by limited transmit (RFC 3042)
    "tcp_timeout_aborts",  # connections given up after too many retransmissions (ETIMEDOUT)
    "tcp_persist_probes",  # zero-window probes (RFC 9293 §3.8.6.1)
    "tcp_keepalive_probes",  # keep-alive probes (RFC 1122 §4.2.3.6)
    "tcp_keepalive_aborts",  # connections dropped after unanswered keep-alives
    "tcp_delayed_acks",  # ACKs sent by the delayed-ACK timer
    "tcp_dup_acks_in",  # duplicate ACKs received (RFC 5681 §2 definition)
    "tcp_dsacks_sent",  # D-SACK blocks sent (RFC 2883)
    "tcp_rtt_samples",  # RTT measurements (RFC 6298, RFC 7323 §4)
    # closing
    "tcp_abort_on_close",  # close() with unread data: RST (RFC 9293 §3.10.4, as Linux)
    "tcp_abort_on_linger",  # SO_LINGER 0 close: RST
    "tcp_abort_on_data",  # data arrived after close(): RST
    "tcp_fin_wait2_timeouts",  # orphaned FIN-WAIT-2 connections ended by tcp_fin_timeout
    "tcp_time_wait_entered",  # connections that entered TIME-WAIT
    "tcp_tw_recycled",  # oldest TIME-WAIT TCB reused because tcp_max_tw_buckets was reached
    "tcp_tw_killed",  # TIME-WAIT ended by a RST (Linux tcp_rfc1337=0)
    "tcp_tw_reopened",  # SYN reopening a TIME-WAIT 4-tuple (RFC 6191 / RFC 1122 §4.2.2.13)
    "tcp_icmp_unreach",  # ICMP errors TCP acted on: a soft error kept or an opening aborted
    "tcp_no_frame",  # segments not sent: no free frame
    "tcp_loss_probes",  # tail loss probes sent (RFC 8985 §7)
    "tcp_loss_probe_recovery",  # losses repaired by a tail loss probe (cwnd reduced, §7.4)
    # per-core steering (DESIGN.md §3)
    "tcp_redirected",  # segments handed to the core that owns their flow or listener
    # this host to itself (Linux: over lo)
    "ip_loopback",  # frames to this host's own address, delivered without the NIC
    "ip_loopback_dropped",  # of them, dropped: no free frame for the copy
    # per-core steering, continued
    "tcp_redirect_dropped",  # segments for another core dropped: its queue was full
    # ICMP errors about TCP connections (RFC 1122 §4.2.3.9, RFC 5927; fsdp.tcp.tcp_icmp)
    "icmp_err_bad_quote",  # ICMP errors dropped: the quote is not an IP header + 8 bytes
    "icmp_err_no_conn",  # ICMP errors about no connection of ours (Linux ICMP InErrors)
    "icmp_err_to_broadcast",  # ICMP errors sent to a broadcast/multicast address: dropped
    "tcp_icmp_out_of_window",  # quoting a sequence number not in flight (Linux OutOfWindowIcmps)
    "tcp_icmp_aborts",  # connection openings ended by an ICMP error
    "tcp_pmtu_reduced",  # path MTU lowered by fragmentation needed (RFC 1191)
    # IPv4 fragments (RFC 791, RFC 1122 §3.3.2; fsdp.tcp.ipfrag): Linux's Reasm*/Frag* MIBs
    "ip_reasm_ok",  # datagrams reassembled (ReasmOKs)
    "ip_reasm_fails",  # datagrams given up, for any of the reasons below (ReasmFails)
    "ip_reasm_timeout",  # of them, not complete within ipfrag_time (ReasmTimeout)
    "ip_reasm_overlaps",  # of them, a fragment overlapped data already held (ReasmOverlaps)
    "ip_reasm_oversize",  # of them, larger than one frame holds (Linux takes up to 64 KiB)
    "ip_reasm_evicted",  # of them, the oldest, given up for a new one: every slot in use
    "ip_frag_dup",  # fragments that carried only bytes already held: dropped, datagram kept
    "ip_frag_ok",  # datagrams sent in fragments (FragOKs)
    "ip_frag_creates",  # fragments sent (FragCreates)
    "ip_frag_fails",  # datagrams over the MTU not sent: DF set, or no frame (FragFails)
    # RACK's reordering window (RFC 8985 §6.2 steps 3-4; fsdp.tcp.rack)
    "tcp_dsacks_recv",  # D-SACK blocks received (RFC 2883; Linux TCPDSACKRecv)
    "tcp_sack_reorder",  # ACKs whose SACK or cumulative ACK showed reordering (TCPSACKReorder)
    "tcp_reo_wnd_grown",  # D-SACKs that widened the reordering window (spurious retransmits)
    # undoing a reduction shown spurious (RFC 3522, RFC 3708, RFC 4015; fsdp.tcp.undo)
    "tcp_undo_recovery",  # fast recoveries undone by timestamps (Linux TCPFull/PartialUndo)
    "tcp_undo_dsack",  # reductions undone: every retransmission D-SACKed (TCPDSACKUndo)
    "tcp_undo_loss",  # RTO recoveries undone (Linux TCPLossUndo)
    "tcp_spurious_rtos",  # of them, shown spurious by F-RTO (RFC 5682; TCPSpuriousRTOs)
    # Explicit Congestion Notification (RFC 3168; fsdp.tcp.ecn)
    "tcp_ecn_negotiated",  # connections that agreed on ECN in their handshake
    "tcp_ecn_ce_recv",  # data segments that arrived marked CE (congestion experienced)
    "tcp_ecn_cwr_episodes",  # window reductions an ECE started (Linux's CWR state)
    "tcp_ts_reorder",  # holes filled by the original, as a timestamp showed (TCPTSReorder)
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
STAT_TCP_ACTIVE_OPENS = 53
STAT_TCP_PASSIVE_OPENS = 54
STAT_TCP_ATTEMPT_FAILS = 55
STAT_TCP_ESTAB_RESETS = 56
STAT_TCP_SEGS_OUT = 57
STAT_TCP_RETRANS_SEGS = 58
STAT_TCP_CONN_TABLE_FULL = 59
STAT_TCP_NOT_UNICAST = 60
STAT_TCP_BAD_PORT = 61
STAT_TCP_SYN_FIN = 62
STAT_TCP_MD5_UNEXPECTED = 63
STAT_TCP_OUT_OF_WINDOW = 64
STAT_TCP_PAWS_DROPPED = 65
STAT_TCP_OOW_ACKS_LIMITED = 66
STAT_TCP_RST_ACCEPTED = 67
STAT_TCP_RST_IGNORED = 68
STAT_TCP_CHALLENGE_ACKS = 69
STAT_TCP_CHALLENGE_ACKS_LIMITED = 70
STAT_TCP_SYN_CHALLENGE = 71
STAT_TCP_ACK_UNSENT = 72
STAT_TCP_ACK_TOO_OLD = 73
STAT_TCP_BAD_ACK_SYN_RECV = 74
STAT_TCP_NO_ACK_DROPPED = 75
STAT_TCP_DATA_AFTER_SHUTDOWN = 76
STAT_TCP_RCV_QUEUE_FULL = 77
STAT_TCP_OFO_QUEUED = 78
STAT_TCP_OFO_DROPPED = 79
STAT_TCP_DUP_DATA = 80
STAT_TCP_URG_IN = 81
STAT_TCP_LISTEN_OVERFLOWS = 82
STAT_TCP_LISTEN_DROPS = 83
STAT_TCP_SYN_BACKLOG_FULL = 84
STAT_TCP_SYNCOOKIES_SENT = 85
STAT_TCP_SYNCOOKIES_RECV = 86
STAT_TCP_SYNCOOKIES_FAILED = 87
STAT_TCP_SYNACK_RETRANS = 88
STAT_TCP_ACCEPT_RESET = 89
STAT_TCP_TIMEOUTS = 90
STAT_TCP_SYN_RETRANS = 91
STAT_TCP_FAST_RETRANS = 92
STAT_TCP_RECOVERY_EPISODES = 93
STAT_TCP_SACK_RECOVERY = 94
STAT_TCP_PARTIAL_ACKS = 95
STAT_TCP_LIMITED_TRANSMIT = 96
STAT_TCP_TIMEOUT_ABORTS = 97
STAT_TCP_PERSIST_PROBES = 98
STAT_TCP_KEEPALIVE_PROBES = 99
STAT_TCP_KEEPALIVE_ABORTS = 100
STAT_TCP_DELAYED_ACKS = 101
STAT_TCP_DUP_ACKS_IN = 102
STAT_TCP_DSACKS_SENT = 103
STAT_TCP_RTT_SAMPLES = 104
STAT_TCP_ABORT_ON_CLOSE = 105
STAT_TCP_ABORT_ON_LINGER = 106
STAT_TCP_ABORT_ON_DATA = 107
STAT_TCP_FIN_WAIT2_TIMEOUTS = 108
STAT_TCP_TIME_WAIT_ENTERED = 109
STAT_TCP_TW_RECYCLED = 110
STAT_TCP_TW_KILLED = 111
STAT_TCP_TW_REOPENED = 112
STAT_TCP_ICMP_UNREACH = 113
STAT_TCP_NO_FRAME = 114
STAT_TCP_LOSS_PROBES = 115
STAT_TCP_LOSS_PROBE_RECOVERY = 116
STAT_TCP_REDIRECTED = 117
STAT_IP_LOOPBACK = 118
STAT_IP_LOOPBACK_DROPPED = 119
STAT_TCP_REDIRECT_DROPPED = 120
STAT_ICMP_ERR_BAD_QUOTE = 121
STAT_ICMP_ERR_NO_CONN = 122
STAT_ICMP_ERR_TO_BROADCAST = 123
STAT_TCP_ICMP_OUT_OF_WINDOW = 124
STAT_TCP_ICMP_ABORTS = 125
STAT_TCP_PMTU_REDUCED = 126
STAT_IP_REASM_OK = 127
STAT_IP_REASM_FAILS = 128
STAT_IP_REASM_TIMEOUT = 129
STAT_IP_REASM_OVERLAPS = 130
STAT_IP_REASM_OVERSIZE = 131
STAT_IP_REASM_EVICTED = 132
STAT_IP_FRAG_DUP = 133
STAT_IP_FRAG_OK = 134
STAT_IP_FRAG_CREATES = 135
STAT_IP_FRAG_FAILS = 136
STAT_TCP_DSACKS_RECV = 137
STAT_TCP_SACK_REORDER = 138
STAT_TCP_REO_WND_GROWN = 139
STAT_TCP_UNDO_RECOVERY = 140
STAT_TCP_UNDO_DSACK = 141
STAT_TCP_UNDO_LOSS = 142
STAT_TCP_SPURIOUS_RTOS = 143
STAT_TCP_ECN_NEGOTIATED = 144
STAT_TCP_ECN_CE_RECV = 145
STAT_TCP_ECN_CWR_EPISODES = 146
STAT_TCP_TS_REORDER = 147

STAT_COUNT = len(STAT_NAMES)


def stats_create() -> np.ndarray:
    return np.zeros(STAT_COUNT, np.int64)


def stats_dict(stats: np.ndarray) -> dict[str, int]:
    return {name: int(stats[i]) for i, name in enumerate(STAT_NAMES)}
