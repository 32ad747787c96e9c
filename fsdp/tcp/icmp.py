"""ICMP for a host (RFC 792; RFC 1122 §3.2.2): echo, errors we send, errors we receive.

* Echo requests to our unicast address are answered with the same identifier, sequence number
  and data (RFC 1122 §3.2.2.6); to a broadcast address they are ignored by default, as Linux
  does (``icmp_echo_ignore_broadcasts``).
* Errors we generate (port / protocol unreachable) follow RFC 1122 §3.2.2 and RFC 1812
  §4.3.2.7: never about an ICMP error, a broadcast/multicast destination or a non-unicast
  source; they quote the original IP header and as much data as keeps the error within 576
  bytes (as Linux), and a per-core token bucket limits their rate (RFC 1812 §4.3.2.8).
* Errors we receive (destination unreachable, time exceeded, parameter problem) that quote a
  TCP segment we sent go to TCP (fsdp.tcp.tcp_icmp), on the core that owns the connection:
  the quote must hold the IP header and the first 8 bytes of the TCP header (RFC 792; Linux
  icmp_unreach), and an error sent to a broadcast or multicast address is dropped (RFC 1122
  §3.2.2).  Time exceeded in fragment reassembly is ignored, as Linux does.  Source quench and
  redirects are counted and ignored.
* Echo replies for our own pings are logged (``EchoLog``) so ``Stack.ping`` can match them.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from fsdp.core.config import (
    CFG_ICMP_BURST,
    CFG_ICMP_ECHO_IGNORE_BCAST,
    CFG_ICMP_RATE,
    CFG_RX_CSUM_OFFLOAD,
)
from fsdp.core.stats import (
    STAT_ICMP_BAD_CSUM,
    STAT_ICMP_DEST_UNREACH_IN,
    STAT_ICMP_ECHO_BROADCAST_IGNORED,
    STAT_ICMP_ECHO_REPLIES_IN,
    STAT_ICMP_ECHO_REPLIES_OUT,
    STAT_ICMP_ECHO_REQUESTS_IN,
    STAT_ICMP_ECHO_REQUESTS_OUT,
    STAT_ICMP_ERR_BAD_QUOTE,
    STAT_ICMP_ERR_NO_CONN,
    STAT_ICMP_ERR_TO_BROADCAST,
    STAT_ICMP_ERRORS_OUT,
    STAT_ICMP_IN,
    STAT_ICMP_OTHER_IN,
    STAT_ICMP_RATE_LIMITED,
    STAT_ICMP_TRUNCATED,
    STAT_POOL_EMPTY,
)
from fsdp.core.vars import V_ICMP_REFILL_US, V_ICMP_TOKENS, V_PING_COUNT
from fsdp.pool.pool import (
    FRAME_F_REDIRECTED,
    FRAME_F_RX_CSUM_OK,
    HEADROOM,
    MAX_FRAME_LEN,
    frame_alloc,
    frame_free,
)
from fsdp.tcp.input import hand_to_core, tcp_tuple_owner
from fsdp.tcp.ip import DST_UNICAST, ip_output
from fsdp.tcp.tcp_icmp import tcp_icmp_error
from fsdp.wire.ethernet import ETH_HLEN
from fsdp.wire.icmp import (
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_HLEN,
    ICMP_PARAM_PROBLEM,
    ICMP_REDIRECT,
    ICMP_SOURCE_QUENCH,
    ICMP_TIME_EXCEEDED,
    icmp_build,
    icmp_check,
    icmp_code,
    icmp_id,
    icmp_next_hop_mtu,
    icmp_seq,
    icmp_type,
)
from fsdp.wire.ipv4 import (
    IP_HLEN_MIN,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    ip_dst,
    ip_hlen,
    ip_proto,
    ip_src,
    ip_total_len,
)
from fsdp.wire.tcp import tcp_dport, tcp_seq, tcp_sport

ICMP_ERROR_MAX_LEN = 576 - IP_HLEN_MIN  # RFC 1812 §4.3.2.3: the whole error within 576 bytes
IPTOS_PREC_INTERNETCONTROL = 0xC0  # Linux sends ICMP errors with this precedence
ICMP_MAX_KNOWN_TYPE = 18  # Linux NR_ICMP_TYPES: higher types are treated as errors
ICMP_EXC_FRAGTIME = 1  # time exceeded in fragment reassembly (not about a segment we sent)
TCP_QUOTE_MIN = 8  # bytes of the quoted TCP header an error must carry: ports and sequence

ECHO_LOG_SIZE = 256


class EchoLog(NamedTuple):
    """Ring of received echo replies: who, which (id, seq), when, how many bytes."""

    src: np.ndarray  # int64[ECHO_LOG_SIZE]
    ident: np.ndarray  # int32
    seq: np.ndarray  # int32
    t_us: np.ndarray  # int64
    size: np.ndarray  # int32: ICMP data bytes


def echo_log_create() -> EchoLog:
    return EchoLog(
        src=np.zeros(ECHO_LOG_SIZE, np.int64),
        ident=np.zeros(ECHO_LOG_SIZE, np.int32),
        seq=np.zeros(ECHO_LOG_SIZE, np.int32),
        t_us=np.zeros(ECHO_LOG_SIZE, np.int64),
        size=np.zeros(ECHO_LOG_SIZE, np.int32),
    )


@njit(inline="always", cache=True)
def icmp_type_is_error(t):
    return (
        t == ICMP_DEST_UNREACH
        or t == ICMP_SOURCE_QUENCH
        or t == ICMP_REDIRECT
        or t == ICMP_TIME_EXCEEDED
        or t == ICMP_PARAM_PROBLEM
    )


@njit(cache=True)
def icmp_rate_allow(core, now):
    """Token bucket of ICMP error messages (rate per second, burst depth); True to send one."""
    rate = core.cfg[CFG_ICMP_RATE]
    if rate == 0:
        return True
    cap = core.cfg[CFG_ICMP_BURST] * 1000
    elapsed = now - core.var[V_ICMP_REFILL_US]
    tokens = core.var[V_ICMP_TOKENS]
    if elapsed > 0:
        tokens = min(cap, tokens + elapsed * rate // 1000)
        core.var[V_ICMP_REFILL_US] = now
    if tokens < 1000:
        core.var[V_ICMP_TOKENS] = tokens
        return False
    core.var[V_ICMP_TOKENS] = tokens - 1000
    return True


@njit(cache=True)
def icmp_send_error(core, fid, dst_kind, icmp_type_, code, rest, now):
    """Answer the received IPv4 packet in frame ``fid`` (validated, Ethernet at ``off``) with an
    ICMP error, if the rules allow.  Does not free ``fid``."""
    if dst_kind != DST_UNICAST:
        return  # RFC 1122 §3.2.2: never about a broadcast/multicast datagram
    pool = core.pool
    buf = pool.data[fid]
    ip_off = pool.off[fid] + ETH_HLEN
    if ip_proto(buf, ip_off) == IPPROTO_ICMP:
        hl = ip_hlen(buf, ip_off)
        # never about an ICMP error (or a packet too short to tell)
        if ip_total_len(buf, ip_off) < hl + 1 or icmp_type_is_error(buf[ip_off + hl]):
            return
        if buf[ip_off + hl] > ICMP_MAX_KNOWN_TYPE:
            return  # unknown types are treated as errors, as Linux does
    if not icmp_rate_allow(core, now):
        core.stats[STAT_ICMP_RATE_LIMITED] += 1
        return
    out = frame_alloc(pool)
    if out < 0:
        core.stats[STAT_POOL_EMPTY] += 1
        return
    quote = min(ip_total_len(buf, ip_off), ICMP_ERROR_MAX_LEN - ICMP_HLEN)
    o = pool.off[out]
    obuf = pool.data[out]
    obuf[o + ICMP_HLEN : o + ICMP_HLEN + quote] = buf[ip_off : ip_off + quote]
    n = ICMP_HLEN + quote
    icmp_build(obuf, o, icmp_type_, code, rest, n)
    pool.length[out] = n
    core.stats[STAT_ICMP_ERRORS_OUT] += 1
    tos = (buf[ip_off + 1] & 0x1E) | IPTOS_PREC_INTERNETCONTROL
    ip_output(core, out, ip_src(buf, ip_off), IPPROTO_ICMP, tos, 0, False, -1, now)


@njit(cache=True)
def icmp_send_echo(core, dst, ident, seq, size, now):
    """Send an echo request with ``size`` data bytes (a byte pattern); False if impossible."""
    if size < 0 or size > MAX_FRAME_LEN - (HEADROOM + ICMP_HLEN + IP_HLEN_MIN + ETH_HLEN):
        return False
    pool = core.pool
    fid = frame_alloc(pool)
    if fid < 0:
        core.stats[STAT_POOL_EMPTY] += 1
        return False
    o = pool.off[fid]
    buf = pool.data[fid]
    for i in range(size):
        buf[o + ICMP_HLEN + i] = (i + 0x10) & 0xFF
    icmp_build(buf, o, ICMP_ECHO_REQUEST, 0, ((ident & 0xFFFF) << 16) | (seq & 0xFFFF),
               ICMP_HLEN + size)
    pool.length[fid] = ICMP_HLEN + size
    core.stats[STAT_ICMP_ECHO_REQUESTS_OUT] += 1
    ip_output(core, fid, dst, IPPROTO_ICMP, 0, 0, False, -1, now)
    return True


@njit(cache=True)
def icmp_input(core, fid, dst_kind, now):
    """Process a received ICMP message (frame validated by ip_validate); frees the frame."""
    pool = core.pool
    buf = pool.data[fid]
    ip_off = pool.off[fid] + ETH_HLEN
    hl = ip_hlen(buf, ip_off)
    off = ip_off + hl
    n = ip_total_len(buf, ip_off) - hl
    core.stats[STAT_ICMP_IN] += 1
    verified = (pool.flags[fid] & FRAME_F_RX_CSUM_OK) != 0 and core.cfg[CFG_RX_CSUM_OFFLOAD] != 0
    err = icmp_check(buf, off, n, not verified)
    if err != 0:
        if n < ICMP_HLEN:
            core.stats[STAT_ICMP_TRUNCATED] += 1
        else:
            core.stats[STAT_ICMP_BAD_CSUM] += 1
        frame_free(pool, fid)
        return
    t = icmp_type(buf, off)
    if t == ICMP_ECHO_REQUEST:
        core.stats[STAT_ICMP_ECHO_REQUESTS_IN] += 1
        if dst_kind != DST_UNICAST and core.cfg[CFG_ICMP_ECHO_IGNORE_BCAST] != 0:
            core.stats[STAT_ICMP_ECHO_BROADCAST_IGNORED] += 1
            frame_free(pool, fid)
            return
        _echo_reply(core, fid, ip_off, off, n, now)
        return
    if t == ICMP_ECHO_REPLY:
        core.stats[STAT_ICMP_ECHO_REPLIES_IN] += 1
        log = core.echo_log
        k = core.var[V_PING_COUNT]
        i = k % ECHO_LOG_SIZE
        log.src[i] = ip_src(buf, ip_off)
        log.ident[i] = icmp_id(buf, off)
        log.seq[i] = icmp_seq(buf, off)
        log.t_us[i] = now
        log.size[i] = n - ICMP_HLEN
        core.var[V_PING_COUNT] = k + 1
    elif t == ICMP_DEST_UNREACH or t == ICMP_TIME_EXCEEDED or t == ICMP_PARAM_PROBLEM:
        if t == ICMP_DEST_UNREACH:
            core.stats[STAT_ICMP_DEST_UNREACH_IN] += 1
        else:
            core.stats[STAT_ICMP_OTHER_IN] += 1
        if dst_kind != DST_UNICAST:
            core.stats[STAT_ICMP_ERR_TO_BROADCAST] += 1  # RFC 1122 §3.2.2 (Linux icmp_rcv)
        elif not (t == ICMP_TIME_EXCEEDED and icmp_code(buf, off) == ICMP_EXC_FRAGTIME):
            if _error_to_tcp(core, fid, off, n, t, now):
                return  # (handed to the core that owns the connection)
    else:
        core.stats[STAT_ICMP_OTHER_IN] += 1  # (source quench, redirect: ignored)
    frame_free(pool, fid)


@njit(cache=True)
def _error_to_tcp(core, fid, off, n, t, now):
    """Give TCP the ICMP error at ``off`` (``n`` bytes) about a segment it sent.  True if the
    frame went to another core (input.hand_to_core), False if the caller frees it."""
    pool = core.pool
    buf = pool.data[fid]
    q = off + ICMP_HLEN  # the quoted datagram: IP header, then at least 8 bytes of TCP
    qn = n - ICMP_HLEN
    if qn < IP_HLEN_MIN:
        core.stats[STAT_ICMP_ERR_BAD_QUOTE] += 1
        return False
    qhl = ip_hlen(buf, q)
    if qhl < IP_HLEN_MIN or qn < qhl + TCP_QUOTE_MIN:
        core.stats[STAT_ICMP_ERR_BAD_QUOTE] += 1
        return False
    if ip_proto(buf, q) != IPPROTO_TCP:
        core.stats[STAT_ICMP_ERR_NO_CONN] += 1  # (UDP has no sockets here)
        return False
    th = q + qhl
    lip = ip_src(buf, q)
    rip = ip_dst(buf, q)
    lport = np.int64(tcp_sport(buf, th))  # (the quote is a segment we sent: its source is ours)
    rport = np.int64(tcp_dport(buf, th))
    seq = np.int64(tcp_seq(buf, th))
    mtu = np.int64(icmp_next_hop_mtu(buf, off))
    if tcp_icmp_error(core, lip, lport, rip, rport, seq, t, icmp_code(buf, off), mtu, now):
        return False
    owner = np.int64(-1)
    if (pool.flags[fid] & FRAME_F_REDIRECTED) == 0:
        owner = tcp_tuple_owner(core, lip, lport, rip, rport)
    if owner < 0:
        core.stats[STAT_ICMP_ERR_NO_CONN] += 1
        return False
    hand_to_core(core, fid, owner)
    return True


@njit(cache=True)
def _echo_reply(core, fid, ip_off, off, n, now):
    """Turn the echo request in ``fid`` into its reply in place (same data, id and seq; IP
    options are not echoed)."""
    pool = core.pool
    buf = pool.data[fid]
    src = ip_src(buf, ip_off)
    tos = buf[ip_off + 1]
    ident_seq = (icmp_id(buf, off) << 16) | icmp_seq(buf, off)
    icmp_build(buf, off, ICMP_ECHO_REPLY, 0, ident_seq, n)
    pool.off[fid] = off
    pool.length[fid] = n
    core.stats[STAT_ICMP_ECHO_REPLIES_OUT] += 1
    ip_output(core, fid, src, IPPROTO_ICMP, tos, 0, False, -1, now)
