"""Explicit Congestion Notification for TCP (RFC 3168 §6.1), as Linux's classic ECN.

Read first: RFC 3168 §6.1.1 (negotiation: an "ECN-setup SYN" carries ECE and CWR, an
"ECN-setup SYN-ACK" ECE alone), §6.1.2 (the sender halves its window once per window of data
on an ECE and sets CWR on the next new data segment), §6.1.3 (the receiver sets ECE on every
ACK after a CE-marked segment until one with CWR arrives), §6.1.5 and §6.1.6 (retransmissions,
pure ACKs and window probes are not ECN-capable), then Linux's tcp_ecn_* functions
(include/net/tcp_ecn.h, tcp_input.c, tcp_output.c) and its sysctl tcp_ecn.

Each rule below was observed on Linux 6.18 (tests/conformance/test_ecn.py):

* The stack option ``tcp_ecn`` is Linux's: 2 (the default) accepts ECN when a peer's SYN asks,
  1 also asks in our SYNs, 0 never uses it.
* Passive open: a SYN with ECE and CWR that is itself Not-ECT (RFC 3168 §6.1.1: a SYN is never
  ECN-capable; Linux takes an ECT one for mangled) gets a SYN-ACK with ECE, resent ones too.  An
  Accurate ECN SYN (AE as well) gets classic ECN.  A SYN cookie keeps the agreement in its
  TSval, as Linux's cookie_init_timestamp: without timestamps a cookie has no ECN.
* Active open (``tcp_ecn`` 1): the SYN carries ECE and CWR and a resent SYN neither (Linux's
  tcp_ecn_fallback: a path may drop ECN-setup SYNs); a SYN-ACK with ECE and without CWR agrees.
* Sending: new data segments are ECT(0); pure ACKs, retransmissions, window probes, FIN-only
  segments and SYNs are Not-ECT (Linux tcp_ecn_send, INET_ECN_dontxmit).
* Receiving: a data segment marked CE makes every segment we send carry ECE until a segment
  with CWR arrives (a pure ACK's CWR counts too); the CE mark starts quick ACKs (Linux's
  tcp_enter_quickack_mode(sk, 2)), a data segment with CWR is ACKed at once, and a Not-ECT
  segment after ECT ones, likely a retransmission, quick-ACKed too.
* Responding: an ACK with ECE outside recovery reduces the window as a loss would (RFC 3168
  §6.1.2 halves cwnd: NewReno ssthresh = cwnd/2, CUBIC cwnd*β), cwnd brought down by PRR over
  the next ACKs (Linux's CWR state: ``ECN_IN_CWR``, ``cc.cc_enter_cwr``), at most once per
  window: until an ACK passes the SND.NXT of its start.  A loss found meanwhile starts fast
  recovery without a second reduction.  The next new data segment carries CWR, also after the
  reductions of fast recovery and an RTO (Linux tcp_init_cwnd_reduction, tcp_enter_loss); an
  undo that restores ssthresh takes that CWR back (Linux tcp_ecn_withdraw_cwr).

The TCB's ``ecn_flags`` column holds the state (``tcb.ECN_*``, Linux's ecn_flags bits).
"""

import numpy as np
from numba import njit

from fsdp.wire.tcp import TH_ACK, TH_CWR, TH_ECE, TH_SYN

# hot.ecn_flags, as Linux's tp->ecn_flags
ECN_OK = 1 << 0  # negotiated in the handshake (RFC 3168 §6.1.1)
ECN_QUEUE_CWR = 1 << 1  # the window was reduced: the next new data segment carries CWR
ECN_DEMAND_CWR = 1 << 2  # CE received: every segment carries ECE until a CWR arrives
ECN_SEEN = 1 << 3  # an ECT or CE segment arrived (a later Not-ECT one is likely a retransmission)
ECN_IN_CWR = 1 << 4  # reducing the window after an ECE (Linux's TCP_CA_CWR state, RFC 3168 §6.1.2)
# the last segment sent was ECT(0): getsockopt(IP_TOS) shows it, as Linux's inet->tos, which
# tcp_ecn_send sets (INET_ECN_xmit) and clears (INET_ECN_dontxmit) with each send
ECN_LAST_ECT = 1 << 5

# the ECN field of the IP header (RFC 3168 §5): the low two bits of the TOS byte
IPTOS_ECN_MASK = 0x3
IPTOS_ECN_NOT_ECT = 0x0
IPTOS_ECN_ECT1 = 0x1
IPTOS_ECN_ECT0 = 0x2
IPTOS_ECN_CE = 0x3

# what a received segment's ECN field asks of the ACK policy (ecn_check_ce)
ECN_RX_QUIET = 0
ECN_RX_QUICKACK = 1  # a Not-ECT segment after ECT ones: likely a retransmission
ECN_RX_CE = 2  # the first CE mark since the last CWR: the sender must hear of it soon
ECN_QUICKACKS = 2  # quick ACKs either starts (Linux tcp_enter_quickack_mode(sk, 2))

_ECE_CWR = TH_ECE | TH_CWR


@njit(cache=True)
def ecn_syn_asks(mode, flags, ip_ecn):
    """A passive open's SYN with control bits ``flags`` and IP ECN field ``ip_ecn`` is an
    ECN-setup SYN that stack option ``tcp_ecn`` = ``mode`` accepts (Linux
    tcp_ecn_create_request)."""
    return mode != 0 and (flags & _ECE_CWR) == _ECE_CWR and ip_ecn == IPTOS_ECN_NOT_ECT


@njit(cache=True)
def ecn_init(t, cid, on):
    """A connection starts with ECN agreed (``on``: a passive open whose SYN asked) or asked for
    (an active open with ``tcp_ecn`` 1), or without."""
    t.hot.ecn_flags[cid] = ECN_OK if on else 0


@njit(cache=True)
def ecn_rcv_synack(t, cid, flags):
    """The SYN-ACK of our ECN-setup SYN agrees only with ECE set and CWR clear (RFC 3168 §6.1.1;
    Linux tcp_ecn_rcv_synack); a simultaneous open's SYN only with both set (tcp_ecn_rcv_syn).
    Returns whether ECN is on."""
    h = t.hot
    if (h.ecn_flags[cid] & ECN_OK) == 0:
        return False
    if (flags & TH_ACK) != 0:
        ok = (flags & _ECE_CWR) == TH_ECE
    else:
        ok = (flags & _ECE_CWR) == _ECE_CWR
    if not ok:
        h.ecn_flags[cid] = 0
    return ok


@njit(cache=True)
def ecn_on(t, cid):
    return (t.hot.ecn_flags[cid] & ECN_OK) != 0


@njit(cache=True)
def ecn_syn_flags(t, cid, flags, again):
    """Control bits for our SYN (ECE and CWR when asking, not when ``again``: Linux
    tcp_ecn_clear_syn) or SYN-ACK (ECE when agreed, resent ones too: tcp_ecn_make_synack)."""
    if (t.hot.ecn_flags[cid] & ECN_OK) == 0:
        return flags
    if (flags & TH_ACK) != 0:
        return flags | TH_ECE
    return flags if again else flags | _ECE_CWR


@njit(cache=True)
def ecn_xmit(t, cid, flags, new_data):
    """A segment other than a SYN is about to go with control bits ``flags``: returns (flags,
    the IP ECN field).  ``new_data``: it carries data never sent before.  Only such a segment is
    ECT(0) (RFC 3168 §6.1.5/§6.1.6) and takes the CWR a reduction queued (§6.1.2); every
    segment carries ECE while a CE mark awaits its CWR (§6.1.3).  Linux tcp_ecn_send."""
    h = t.hot
    ef = np.int64(h.ecn_flags[cid])
    if (ef & ECN_OK) == 0 or (flags & TH_SYN) != 0:
        return flags, IPTOS_ECN_NOT_ECT
    ect = IPTOS_ECN_NOT_ECT
    if new_data:
        ect = IPTOS_ECN_ECT0
        ef |= ECN_LAST_ECT
        if (ef & ECN_QUEUE_CWR) != 0:
            flags |= TH_CWR
            ef &= ~ECN_QUEUE_CWR
    else:
        ef &= ~ECN_LAST_ECT
    h.ecn_flags[cid] = ef
    if (ef & ECN_DEMAND_CWR) != 0:
        flags |= TH_ECE
    return flags, ect


@njit(cache=True)
def ecn_tos_bits(t, cid):
    """The ECN bits getsockopt(IP_TOS) adds to the TOS byte: ECT(0) if the last segment sent
    was ECT (Linux inet->tos after tcp_ecn_send), else none."""
    return IPTOS_ECN_ECT0 if (np.int64(t.hot.ecn_flags[cid]) & ECN_LAST_ECT) != 0 else 0


@njit(cache=True)
def ecn_check_ce(t, cid, ip_ecn):
    """A data segment arrived with IP ECN field ``ip_ecn`` (Linux __tcp_ecn_check_ce): a CE mark
    demands ECE on what we send until CWR; returns ECN_RX_* for the ACK policy."""
    h = t.hot
    ef = np.int64(h.ecn_flags[cid])
    if (ef & ECN_OK) == 0:
        return ECN_RX_QUIET
    if ip_ecn == IPTOS_ECN_NOT_ECT:
        return ECN_RX_QUICKACK if (ef & ECN_SEEN) != 0 else ECN_RX_QUIET
    r = ECN_RX_QUIET
    if ip_ecn == IPTOS_ECN_CE:
        if (ef & ECN_DEMAND_CWR) == 0:
            r = ECN_RX_CE
        ef |= ECN_DEMAND_CWR
    h.ecn_flags[cid] = ef | ECN_SEEN
    return r


@njit(cache=True)
def ecn_accept_cwr(t, cid, flags):
    """A segment with CWR ends our ECE echo (RFC 3168 §6.1.3, Linux tcp_ecn_accept_cwr).
    Returns True if it had CWR (a data segment's is ACKed at once: the sender's window may be
    down to one segment)."""
    h = t.hot
    if (flags & TH_CWR) == 0 or (h.ecn_flags[cid] & ECN_OK) == 0:
        return False
    h.ecn_flags[cid] &= ~np.uint8(ECN_DEMAND_CWR)
    return True


@njit(cache=True)
def ecn_echoed(t, cid, flags):
    """An ACK (not a SYN) carries ECE on an ECN connection: the peer saw congestion (Linux
    tcp_ecn_rcv_ecn_echo)."""
    return (flags & (TH_ECE | TH_SYN)) == TH_ECE and (t.hot.ecn_flags[cid] & ECN_OK) != 0


@njit(cache=True)
def ecn_queue_cwr(t, cid):
    """The window was reduced: tell the peer with CWR on the next new data (RFC 3168 §6.1.2)."""
    h = t.hot
    if (h.ecn_flags[cid] & ECN_OK) != 0:
        h.ecn_flags[cid] |= np.uint8(ECN_QUEUE_CWR)


@njit(cache=True)
def ecn_withdraw_cwr(t, cid):
    """The reduction was undone before its CWR went (Linux tcp_ecn_withdraw_cwr)."""
    t.hot.ecn_flags[cid] &= ~np.uint8(ECN_QUEUE_CWR)
