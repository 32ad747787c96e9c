"""fsdp.tcp.ecn and the ECN reduction in fsdp.tcp.cc: RFC 3168 §6.1's state per connection, as
Linux's tcp_ecn_* functions and its CWR state.  The wire behaviour is in
tests/conformance/test_ecn.py, held to Linux."""

import pytest

from fsdp.tcp.cc import (
    cc_counts_prr_out,
    cc_cwr_done,
    cc_cwr_to_recovery,
    cc_end_cwr,
    cc_enter_cwr,
    cc_in_cwr,
    cc_init,
    cc_on_rto,
)
from fsdp.tcp.ecn import (
    ECN_DEMAND_CWR,
    ECN_IN_CWR,
    ECN_OK,
    ECN_QUEUE_CWR,
    ECN_RX_CE,
    ECN_RX_QUICKACK,
    ECN_RX_QUIET,
    IPTOS_ECN_CE,
    IPTOS_ECN_ECT0,
    IPTOS_ECN_ECT1,
    IPTOS_ECN_NOT_ECT,
    ecn_accept_cwr,
    ecn_check_ce,
    ecn_echoed,
    ecn_init,
    ecn_rcv_synack,
    ecn_syn_asks,
    ecn_syn_flags,
    ecn_tos_bits,
    ecn_xmit,
)
from fsdp.tcp.tcb import CC_CUBIC, TF_IN_RECOVERY, tcb_alloc, tcb_table_create
from fsdp.tcp.undo import UNDO_NONE
from fsdp.wire.tcp import TH_ACK, TH_CWR, TH_ECE, TH_PSH, TH_SYN

MSS = 1000
SAE = TH_SYN | TH_ACK | TH_ECE


def conn(on=True):
    t = tcb_table_create(2)
    cid = tcb_alloc(t)
    ecn_init(t, cid, on)
    return t, cid


@pytest.mark.parametrize("mode, flags, ip_ecn, asks", [
    (2, TH_SYN | TH_ECE | TH_CWR, IPTOS_ECN_NOT_ECT, True),
    (1, TH_SYN | TH_ECE | TH_CWR, IPTOS_ECN_NOT_ECT, True),
    (0, TH_SYN | TH_ECE | TH_CWR, IPTOS_ECN_NOT_ECT, False),  # tcp_ecn 0: never
    (2, TH_SYN | TH_ECE, IPTOS_ECN_NOT_ECT, False),  # both bits needed (RFC 3168 §6.1.1)
    (2, TH_SYN | TH_CWR, IPTOS_ECN_NOT_ECT, False),
    (2, TH_SYN | TH_ECE | TH_CWR, IPTOS_ECN_ECT0, False),  # an ECT SYN: mangled (Linux)
    (2, TH_SYN | TH_ECE | TH_CWR, IPTOS_ECN_CE, False),
])
def test_syn_asks(mode, flags, ip_ecn, asks):
    assert ecn_syn_asks(mode, flags, ip_ecn) is asks


def test_syn_flags_ask_once_and_synack_always_agrees():
    t, cid = conn()
    assert ecn_syn_flags(t, cid, TH_SYN, False) == TH_SYN | TH_ECE | TH_CWR
    assert ecn_syn_flags(t, cid, TH_SYN, True) == TH_SYN  # resent: no ECN setup (fallback)
    assert ecn_syn_flags(t, cid, TH_SYN | TH_ACK, True) == SAE
    t, cid = conn(False)
    assert ecn_syn_flags(t, cid, TH_SYN, False) == TH_SYN
    assert ecn_syn_flags(t, cid, TH_SYN | TH_ACK, False) == TH_SYN | TH_ACK


@pytest.mark.parametrize("flags, agreed", [
    (SAE, True), (TH_SYN | TH_ACK, False), (SAE | TH_CWR, False),
    (TH_SYN | TH_ECE | TH_CWR, True), (TH_SYN | TH_ECE, False),  # simultaneous open's SYN
])
def test_synack_agrees_with_ece_alone(flags, agreed):
    t, cid = conn()
    assert ecn_rcv_synack(t, cid, flags) is agreed
    assert bool(t.hot.ecn_flags[cid] & ECN_OK) is agreed


def test_only_new_data_is_ect_and_takes_the_queued_cwr():
    t, cid = conn()
    t.hot.ecn_flags[cid] |= ECN_QUEUE_CWR
    assert ecn_xmit(t, cid, TH_ACK, False) == (TH_ACK, IPTOS_ECN_NOT_ECT)  # pure ACK / resend
    assert t.hot.ecn_flags[cid] & ECN_QUEUE_CWR  # still queued
    assert ecn_xmit(t, cid, TH_ACK | TH_PSH, True) == (TH_ACK | TH_PSH | TH_CWR, IPTOS_ECN_ECT0)
    assert ecn_xmit(t, cid, TH_ACK, True) == (TH_ACK, IPTOS_ECN_ECT0)  # CWR went once
    t, cid = conn(False)
    assert ecn_xmit(t, cid, TH_ACK, True) == (TH_ACK, IPTOS_ECN_NOT_ECT)


def test_ip_tos_shows_whether_the_last_send_was_ect():
    """Linux's inet->tos: INET_ECN_xmit on new data, INET_ECN_dontxmit on anything else."""
    t, cid = conn()
    assert ecn_tos_bits(t, cid) == 0
    ecn_xmit(t, cid, TH_ACK | TH_PSH, True)
    assert ecn_tos_bits(t, cid) == IPTOS_ECN_ECT0
    ecn_xmit(t, cid, TH_ACK, False)
    assert ecn_tos_bits(t, cid) == 0
    t, cid = conn(False)
    ecn_xmit(t, cid, TH_ACK | TH_PSH, True)
    assert ecn_tos_bits(t, cid) == 0


def test_ce_demands_ece_until_cwr():
    t, cid = conn()
    assert ecn_check_ce(t, cid, IPTOS_ECN_NOT_ECT) == ECN_RX_QUIET  # nothing ECT seen yet
    assert ecn_check_ce(t, cid, IPTOS_ECN_ECT1) == ECN_RX_QUIET
    assert ecn_check_ce(t, cid, IPTOS_ECN_NOT_ECT) == ECN_RX_QUICKACK  # likely a resend
    assert ecn_check_ce(t, cid, IPTOS_ECN_CE) == ECN_RX_CE
    assert ecn_check_ce(t, cid, IPTOS_ECN_CE) == ECN_RX_QUIET  # already echoing
    assert ecn_xmit(t, cid, TH_ACK, False) == (TH_ACK | TH_ECE, IPTOS_ECN_NOT_ECT)
    assert not ecn_accept_cwr(t, cid, TH_ACK)
    assert ecn_accept_cwr(t, cid, TH_ACK | TH_CWR)
    assert ecn_xmit(t, cid, TH_ACK, False) == (TH_ACK, IPTOS_ECN_NOT_ECT)
    t, cid = conn(False)
    assert ecn_check_ce(t, cid, IPTOS_ECN_CE) == ECN_RX_QUIET
    assert (t.hot.ecn_flags[cid] & ECN_DEMAND_CWR) == 0


def test_ece_counts_only_on_ecn_connections_and_never_on_a_syn():
    t, cid = conn()
    assert ecn_echoed(t, cid, TH_ACK | TH_ECE)
    assert not ecn_echoed(t, cid, TH_ACK)
    assert not ecn_echoed(t, cid, SAE)
    t, cid = conn(False)
    assert not ecn_echoed(t, cid, TH_ACK | TH_ECE)


def reducing(cwnd=10 * MSS, una=1000, nxt=11000, algo=None):
    t, cid = conn()
    h = t.hot
    h.mss[cid] = MSS
    cc_init(t, cid, MSS)
    if algo is not None:
        h.cc_algo[cid] = algo
    h.cwnd[cid] = cwnd
    h.snd_una[cid] = una
    h.snd_max[cid] = nxt
    h.snd_nxt[cid] = nxt
    return t, cid


def test_ece_halves_cwnd_once_per_window():
    t, cid = reducing()
    h = t.hot
    cc_enter_cwr(t, cid)
    assert cc_in_cwr(t, cid) and cc_counts_prr_out(t, cid)
    assert h.ssthresh[cid] == 5 * MSS  # RFC 3168 §6.1.2: half of cwnd (NewReno)
    assert h.ecn_flags[cid] & ECN_QUEUE_CWR
    assert h.prior_ssthresh[cid] == 0 and h.undo_retrans[cid] == UNDO_NONE  # no undo
    assert h.recover[cid] == 11000 and h.prr_prior_cwnd[cid] == 10 * MSS
    assert not cc_cwr_done(t, cid, 11000)  # held until an ACK passes its start (Linux)
    assert cc_cwr_done(t, cid, 11001)
    h.cwnd[cid] = 3 * MSS
    cc_end_cwr(t, cid)
    assert h.cwnd[cid] == 5 * MSS and not cc_in_cwr(t, cid)


def test_cubic_reduces_by_beta():
    t, cid = reducing(algo=CC_CUBIC)
    cc_enter_cwr(t, cid)
    assert t.hot.ssthresh[cid] == 7 * MSS  # cwnd*β (717/1024), in whole segments


def test_loss_during_the_reduction_keeps_it():
    t, cid = reducing()
    h = t.hot
    cc_enter_cwr(t, cid)
    h.snd_max[cid] = 15000
    cc_cwr_to_recovery(t, cid)
    assert h.tflags[cid] & TF_IN_RECOVERY and not cc_in_cwr(t, cid)
    assert (h.ssthresh[cid], h.recover[cid]) == (5 * MSS, 11000)


def test_rto_ends_the_reduction_and_queues_cwr():
    t, cid = reducing()
    h = t.hot
    cc_enter_cwr(t, cid)
    h.ecn_flags[cid] ^= ECN_QUEUE_CWR  # (the CWR went)
    cc_on_rto(t, cid, 10 * MSS, 0)
    assert not cc_in_cwr(t, cid) and h.ecn_flags[cid] & ECN_QUEUE_CWR
    assert h.ssthresh[cid] == 5 * MSS  # not reduced twice (snd_una < recover)
    assert (h.ecn_flags[cid] & ECN_IN_CWR) == 0
