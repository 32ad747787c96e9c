"""Bits of ``pool.flags`` that the TCP engine uses on frames held in its queues.

The low bits (0x00FF) belong to the NIC (``FRAME_F_RX_CSUM_*``, ``FRAME_F_TX_CSUM`` in
``fsdp/pool/pool.py``).  TCP queues (send/retransmission, receive, out-of-order) are chains of
frames linked through ``pool.next``; each frame holds payload bytes only, at
``[pool.off, pool.off + pool.length)``, and ``pool.tag`` is the sequence number of its first byte.
"""

FRAME_F_TCP_FIN = 0x0100  # the segment this payload came with (or goes out with) carries FIN
FRAME_F_TCP_SACKED = 0x0200  # sender scoreboard: the peer SACKed this whole frame (RFC 6675)
FRAME_F_TCP_RETRANS = 0x0400  # sent more than once (Karn: no RTT sample from it)
FRAME_F_TCP_LOST = 0x0800  # sender scoreboard: deemed lost (RFC 6675 IsLost)
FRAME_F_TCP_SENT = 0x1000  # sent at least once
FRAME_F_TCP_PSH = 0x2000  # the segment goes out with PSH (the last one of an application write)
FRAME_F_TCP_EVER_RETRANS = 0x4000  # sent more than once, ever (Karn's rule: no RTT sample; the
# scoreboard's FRAME_F_TCP_RETRANS is cleared at each recovery episode)
# Receive-queue frames: how Linux would have queued the segment (tcp_try_coalesce into the socket
# buffer before it), which sets what it charges the receive buffer (reass.rcvq_charge)
FRAME_F_TCP_RX_FRAG = 0x8000  # added to the buffer before as a page fragment
FRAME_F_TCP_RX_COPIED = 0x10000  # copied into the tailroom of the buffer before

# Send-queue frames keep their latest transmission time (µs, big-endian int64) in the first 8
# bytes of the frame's headroom (payload starts at pool.off >= HEADROOM): Linux's per-skb
# timestamp, for RTT samples (RFC 6298 with Karn) and the retransmission give-up clock.
FRAME_XMIT_TIME_OFF = 0
# ... and after it (big-endian uint32) the core's transmission counter at that send: which of two
# frames sent in the same µs went first (RACK, RFC 8985 §6.2; Linux keeps a time-sorted list
# with a ns clock).
FRAME_XMIT_ORDER_OFF = 8
