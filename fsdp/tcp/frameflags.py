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
