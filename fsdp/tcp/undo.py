"""Undoing a congestion-window reduction that proves spurious, as Linux's tcp_input.c.

Read first: RFC 3522 §2 (Eifel detection: an ACK echoing a timestamp older than the first
retransmission shows the original arrived, so the retransmission was not needed), RFC 2883 §4
and RFC 3708 (every retransmission D-SACKed: all were unnecessary), RFC 4015 §3 (the response:
restore what the loss response reduced), and Linux's tcp_init_undo, tcp_may_undo,
tcp_packet_delayed, tcp_undo_cwnd_reduction and tcp_try_undo_{recovery,partial,dsack,loss}.

An episode that may be undone starts with fast recovery (``segment.tcp_enter_fast_recovery``)
or with the first RTO of a loss (``cc.cc_on_rto``): ``undo_init`` records SND.UNA
(``undo_marker``) and the slow-start threshold before the reduction (``prior_ssthresh``, Linux
tcp_current_ssthresh); the window before it is ``prr_prior_cwnd`` (Linux prior_cwnd, PRR's
RecoverFS).  ``undo_retrans`` then counts the segments retransmitted in the episode
(``undo_note_retransmit``) less those the peer D-SACKs (``undo_dsack``).  The engine undoes
(``undo_cwnd_reduction``: cwnd = max(cwnd, prior cwnd), ssthresh = max(ssthresh, prior)) when
``undo_may`` holds -- nothing retransmitted is still unaccounted for, or an ACK echoes a
timestamp from before the first retransmission (``segment._packet_delayed``) -- at the end of a
fast or RTO recovery, at a partial ACK in fast recovery (Eifel: then the lost marks go too),
on any ACK of an RTO recovery, and on a D-SACK once recovery is over.

An RTO may also be shown spurious by F-RTO (RFC 5682, SACK-enhanced as Linux's
tcp_process_loss; ``hot.frto``): the first ACK after it that advances SND.UNA sends new data
rather than more retransmissions (step 2b); if the next one (S)ACKs a segment sent before the
RTO that was never retransmitted, the RTO was spurious and is undone (step 3b); a duplicate
ACK or a SACK of the new data says the loss was real (step 3a), and the lost segments go.

A D-SACK at or below SND.UNA counts the segments it reports (Linux's "dumb counting" of
forgotten data); one above SND.UNA counts the retransmitted segments of the queue it covers,
as Linux's tcp_sacktag_one does.
"""

import numpy as np
from numba import njit

from fsdp.tcp.ecn import ecn_withdraw_cwr
from fsdp.wire.tcp import seq_gt, seq_leq

UNDO_NONE = -2  # no episode that may be undone (Linux undo_marker == 0)
# hot.frto: F-RTO (RFC 5682) after an RTO, as Linux tcp_process_loss
FRTO_ON = 1  # the RTO may prove spurious: the ACKs after it decide
FRTO_NEW_DATA = 2  # step 2b: the next send is new data, not the segments the RTO marked lost
UNDO_NO_RETRANS = -1  # an episode, nothing retransmitted yet (Linux undo_retrans == -1)
_UNDO_RETRANS_MAX = 0x7FFF


@njit(cache=True)
def undo_init(t, cid, prior_ssthresh):
    """A window reduction starts (Linux tcp_init_undo with prior_ssthresh set)."""
    h = t.hot
    h.undo_marker[cid] = h.snd_una[cid]
    h.undo_retrans[cid] = UNDO_NO_RETRANS
    h.prior_ssthresh[cid] = prior_ssthresh


@njit(cache=True)
def undo_clear(t, cid):
    """A reduction that may not be undone (Linux: prior_ssthresh = undo_marker = 0): an ECN
    reduction, a path MTU drop's resend."""
    h = t.hot
    h.undo_retrans[cid] = UNDO_NONE
    h.prior_ssthresh[cid] = 0


@njit(cache=True)
def undo_active(t, cid):
    """An episode may still be undone (Linux ``tp->undo_marker != 0``)."""
    return t.hot.undo_retrans[cid] != UNDO_NONE


@njit(cache=True)
def undo_note_retransmit(t, cid):
    """A segment was retransmitted (Linux tcp_retransmit_skb: undo_retrans += pcount)."""
    h = t.hot
    r = np.int64(h.undo_retrans[cid])
    if r == UNDO_NONE:
        return
    r = r + 1 if r >= 0 else np.int64(1)
    h.undo_retrans[cid] = r if r < _UNDO_RETRANS_MAX else _UNDO_RETRANS_MAX


@njit(cache=True)
def undo_dsack(t, cid, right, prior_una, dups, resent):
    """A valid D-SACK, ending at ``right`` after the episode began, reported segments received
    twice: ``dups`` of them if it lies at or below the SND.UNA before this ACK (data already
    forgotten: Linux tcp_check_dsack's "dumb counting"), else the ``resent`` retransmitted
    segments of the queue it covers (``scoreboard_dsack_resent``; Linux tcp_sacktag_one).
    That many of the episode's retransmissions were not needed."""
    h = t.hot
    r = np.int64(h.undo_retrans[cid])
    if r <= 0 or not seq_gt(right, h.undo_marker[cid]):
        return
    r -= dups if seq_leq(right, prior_una) else resent
    h.undo_retrans[cid] = r if r > 0 else np.int64(0)


@njit(cache=True)
def undo_may(t, cid, delayed):
    """Linux tcp_may_undo: an episode, and every retransmission D-SACKed or an ACK ``delayed``
    (echoing a timestamp from before the first retransmission)."""
    r = t.hot.undo_retrans[cid]
    return r != UNDO_NONE and (r == 0 or delayed)


@njit(cache=True)
def undo_cwnd_reduction(t, cid):
    """Linux tcp_undo_cwnd_reduction (RFC 4015 §3): cwnd back to at least what it was, ssthresh
    back to at least its former value, and the episode can no longer be undone.  Lost marks are
    the caller's (``sack_scoreboard.scoreboard_unmark_lost``)."""
    h = t.hot
    prior = np.int64(h.prior_ssthresh[cid])
    if prior != 0:
        pc = np.int64(h.prr_prior_cwnd[cid])
        if pc > np.int64(h.cwnd[cid]):
            h.cwnd[cid] = pc
        if prior > np.int64(h.ssthresh[cid]):
            h.ssthresh[cid] = prior
            ecn_withdraw_cwr(t, cid)  # the CWR not yet sent is no longer true (Linux)
    h.undo_retrans[cid] = UNDO_NONE
