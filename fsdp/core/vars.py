"""Indices of ``core.var``: the per-core runtime scalars the jitted loop reads and writes."""

V_NOW = 0  # the time (µs) of the current pass
V_TX_N = 1  # frames waiting in core.tx_ids
V_IP_ID = 2  # next IPv4 identification
V_ICMP_TOKENS = 3  # ICMP error token bucket, in millitokens
V_ICMP_REFILL_US = 4  # time of the last refill
V_ARP_TIMER_US = 5  # earliest ARP deadline (-1 = none)
V_PING_COUNT = 6  # echo replies logged so far (the log is a ring)
V_PASSES = 7  # run_once calls
V_SIZE = 16

NO_DEADLINE = -1
