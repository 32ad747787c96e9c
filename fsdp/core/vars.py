"""Indices of ``core.var``: the per-core runtime scalars the jitted loop reads and writes."""

V_NOW = 0  # the time (µs) of the current pass
V_TX_N = 1  # frames waiting in core.tx_ids
V_IP_ID = 2  # next IPv4 identification
V_ICMP_TOKENS = 3  # ICMP error token bucket, in millitokens
V_ICMP_REFILL_US = 4  # time of the last refill
V_ARP_TIMER_US = 5  # earliest ARP deadline (-1 = none)
V_PING_COUNT = 6  # echo replies logged so far (the log is a ring)
V_PASSES = 7  # run_once calls
# TCP engine
V_TCP_CHALLENGE_SEC = 8  # the second (now // 1e6) the challenge-ACK budget belongs to
V_TCP_CHALLENGE_LEFT = 9  # challenge ACKs still allowed in that second (RFC 5961 §7)
V_TCP_TW_HEAD = 10  # oldest TIME-WAIT TCB (FIFO through cold.link_next), -1 = none
V_TCP_TW_TAIL = 11
V_TCP_TW_COUNT = 12
V_TX_OVF_HEAD = 13  # frames queued beyond core.tx_ids, chained through pool.next, -1 = none
V_TX_OVF_TAIL = 14
V_TCP_RST_PENDING = 15  # a RST answering the segment being processed (fsdp.tcp.input sends it)
V_TCP_RST_SEQ = 16
V_TCP_RST_ACK = 17
V_TCP_RST_FLAGS = 18
V_LO_OUT_HEAD = 19  # frames this host sent to itself, waiting for tx_flush (chained through
V_LO_OUT_TAIL = 20  # pool.next, -1 = none) ...
V_LO_IN_HEAD = 21  # ... and their copies, waiting for the next pass to receive them
V_LO_IN_TAIL = 22
V_LO_IN_COUNT = 23
V_IPFRAG_TIMER_US = 24  # earliest reassembly deadline (fsdp.tcp.ipfrag), -1 = none
V_TCP_XMIT_ORDER = 25  # count of data segments sent: their order within one µs (fsdp.tcp.rack)
V_SIZE = 32

NO_DEADLINE = -1
