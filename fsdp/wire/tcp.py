"""TCP headers and options (RFC 9293 §3.1; options: RFC 7323, RFC 2018, RFC 6691).

Read first: RFC 9293 §3.1 (header format, option rules "must be able to receive a TCP option
in any segment", §3.2 MSS), RFC 7323 §2 (window scale) and §3 (timestamps), RFC 2018 §2-§3
(SACK-permitted, SACK blocks), RFC 1982 / RFC 9293 §3.4 (sequence number arithmetic).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |   0  TCP_SPORT, TCP_DPORT
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Sequence Number                        |   4  TCP_SEQ
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Acknowledgment Number                      |   8  TCP_ACK
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Data |       |C|E|U|A|P|R|S|F|                               |
    | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |  12  OFF, FLAGS, WIN
    |       |       |R|E|G|K|H|T|N|N|                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Checksum            |         Urgent Pointer        |  16  TCP_CSUM, TCP_URP
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                           [Options]                           |  20  (doff * 4 - 20 bytes)
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Validation is two-step (PyTCP style): ``tcp_check`` (can the header be read?) runs first and
alone guarantees that every accessor and ``tcp_parse_options(buf, off, tcp_hlen(buf, off), ...)``
stay inside ``buf[off:off+n]``; the checksum (``tcp_verify_csum``) and the meaning of the
fields (SYN+FIN, port 0, which options a state accepts) are the TCP engine's business.

Where the RFCs leave a choice the parser and the option writers behave **as Linux**
(``tcp_parse_options`` in net/ipv4/tcp_input.c, ``tcp_options_write`` in
net/ipv4/tcp_output.c): the engine is checked against Linux on the wire.

All multi-byte accessors return int64 (never uint64) so that arithmetic with int64 table
columns never turns into float64 under Numba.
"""

import numpy as np
from numba import njit

from fsdp.wire.byteorder import get_u16, get_u32, set_u16, set_u32
from fsdp.wire.checksum import l4_checksum

# --- header offsets -------------------------------------------------------------------------
TCP_SPORT = 0
TCP_DPORT = 2
TCP_SEQ = 4
TCP_ACK = 8
TCP_OFF = 12  # data offset in the high nibble (32-bit words); low nibble reserved (AE, RFC 3168)
TCP_FLAGS = 13
TCP_WIN = 14
TCP_CSUM = 16
TCP_URP = 18
TCP_HLEN_MIN = 20
TCP_HLEN_MAX = 60  # data offset 15
TCP_OPT_SPACE = TCP_HLEN_MAX - TCP_HLEN_MIN  # 40 bytes of options at most

# --- flags (byte 13) ------------------------------------------------------------------------
TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20
TH_ECE = 0x40  # RFC 3168
TH_CWR = 0x80  # RFC 3168

# --- option kinds and lengths (IANA "TCP Option Kind Numbers") -------------------------------
TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2  # RFC 9293 §3.2
TCPOPT_WSCALE = 3  # RFC 7323 §2
TCPOPT_SACK_PERM = 4  # RFC 2018 §2
TCPOPT_SACK = 5  # RFC 2018 §3
TCPOPT_TIMESTAMP = 8  # RFC 7323 §3
TCPOPT_MD5SIG = 19  # RFC 2385: only flagged, never verified (fsdp has no keys)

TCPOLEN_MSS = 4
TCPOLEN_WSCALE = 3
TCPOLEN_SACK_PERM = 2
TCPOLEN_TIMESTAMP = 10
TCPOLEN_SACK_BASE = 2
TCPOLEN_SACK_PERBLOCK = 8
TCPOLEN_MD5SIG = 18
TCPOLEN_TS_ALIGNED = 12  # NOP NOP TS, the layout every non-SYN segment uses

TCP_MAX_WSCALE = 14  # RFC 7323 §2.3: a larger shift is used as 14
TCP_MAX_SACK_BLOCKS = 4  # 2 + 4*8 = 34 <= 40 option bytes

# --- parsed options: an int64 array of TOPT_SIZE with named slots ----------------------------
TOPT_PRESENT = 0  # OPTF_* bits of the options seen (valid ones only)
TOPT_MSS = 1
TOPT_WSCALE = 2  # already clamped to TCP_MAX_WSCALE
TOPT_TS_VAL = 3
TOPT_TS_ECR = 4
TOPT_SACK_N = 5  # 0..4 blocks
TOPT_SACK_BLOCKS = 6  # 8 slots: left0, right0, left1, right1, ...
TOPT_SIZE = TOPT_SACK_BLOCKS + 2 * TCP_MAX_SACK_BLOCKS

OPTF_MSS = 0x01
OPTF_WSCALE = 0x02
OPTF_SACK_PERM = 0x04
OPTF_TS = 0x08
OPTF_SACK = 0x10
OPTF_MD5SIG = 0x20  # Linux drops segments carrying it when no key is configured (RFC 2385 §3)

# --- errors ---------------------------------------------------------------------------------
ERR_TCP_TRUNCATED = -1  # fewer than 20 bytes
ERR_TCP_BAD_DOFF = -2  # data offset < 5 (Linux: tcp_v4_rcv "bad_packet", counted as InErrs)
ERR_TCP_HDR_TRUNCATED = -3  # data offset * 4 > segment length (Linux: pskb_may_pull fails)
ERR_TCP_OPT_MALFORMED = -4  # option length missing, < 2 or past the header; earlier ones kept


# --- integrity ------------------------------------------------------------------------------
@njit(inline="always", cache=True)
def tcp_check(buf, off, n):
    """Integrity of a TCP segment of ``n`` bytes (from the IP total length): 0 or ERR_TCP_*.

    After 0, the fixed header and the whole option area (``tcp_hlen`` bytes) are readable.
    """
    if n < TCP_HLEN_MIN:
        return ERR_TCP_TRUNCATED
    hlen = np.int64(buf[off + TCP_OFF] >> 4) * 4
    if hlen < TCP_HLEN_MIN:
        return ERR_TCP_BAD_DOFF
    if hlen > n:
        return ERR_TCP_HDR_TRUNCATED
    return 0


@njit(cache=True)
def tcp_verify_csum(buf, off, n, src_ip, dst_ip):
    """True if the checksum over pseudo-header + ``n`` segment bytes verifies (RFC 9293 §3.1)."""
    return l4_checksum(buf, off, n, src_ip, dst_ip, 6) == 0


# --- accessors ------------------------------------------------------------------------------
@njit(inline="always", cache=True)
def tcp_sport(buf, off):
    return np.int64(get_u16(buf, off + TCP_SPORT))


@njit(inline="always", cache=True)
def tcp_dport(buf, off):
    return np.int64(get_u16(buf, off + TCP_DPORT))


@njit(inline="always", cache=True)
def tcp_seq(buf, off):
    return np.int64(get_u32(buf, off + TCP_SEQ))


@njit(inline="always", cache=True)
def tcp_ack(buf, off):
    return np.int64(get_u32(buf, off + TCP_ACK))


@njit(inline="always", cache=True)
def tcp_hlen(buf, off):
    """Header length in bytes (data offset * 4), options included."""
    return np.int64(buf[off + TCP_OFF] >> 4) * 4


@njit(inline="always", cache=True)
def tcp_flags(buf, off):
    """The eight flag bits (TH_*) of byte 13."""
    return np.int64(buf[off + TCP_FLAGS])


@njit(inline="always", cache=True)
def tcp_win(buf, off):
    """The raw 16-bit window field (not yet shifted by the window scale)."""
    return np.int64(get_u16(buf, off + TCP_WIN))


@njit(inline="always", cache=True)
def tcp_csum(buf, off):
    return np.int64(get_u16(buf, off + TCP_CSUM))


@njit(inline="always", cache=True)
def tcp_urp(buf, off):
    return np.int64(get_u16(buf, off + TCP_URP))


@njit(inline="always", cache=True)
def tcp_set_sport(buf, off, v):
    set_u16(buf, off + TCP_SPORT, v)


@njit(inline="always", cache=True)
def tcp_set_dport(buf, off, v):
    set_u16(buf, off + TCP_DPORT, v)


@njit(inline="always", cache=True)
def tcp_set_seq(buf, off, v):
    set_u32(buf, off + TCP_SEQ, v)


@njit(inline="always", cache=True)
def tcp_set_ack(buf, off, v):
    set_u32(buf, off + TCP_ACK, v)


@njit(inline="always", cache=True)
def tcp_set_hlen(buf, off, hlen):
    """Set the data offset from a header length in bytes (a multiple of 4, 20..60); clears the
    reserved bits."""
    buf[off + TCP_OFF] = ((hlen >> 2) & 0x0F) << 4


@njit(inline="always", cache=True)
def tcp_set_flags(buf, off, v):
    buf[off + TCP_FLAGS] = v & 0xFF


@njit(inline="always", cache=True)
def tcp_set_win(buf, off, v):
    set_u16(buf, off + TCP_WIN, v)


@njit(inline="always", cache=True)
def tcp_set_csum(buf, off, v):
    set_u16(buf, off + TCP_CSUM, v)


@njit(inline="always", cache=True)
def tcp_set_urp(buf, off, v):
    set_u16(buf, off + TCP_URP, v)


# --- builders -------------------------------------------------------------------------------
@njit(cache=True)
def tcp_build(buf, off, sport, dport, seq, ack, flags, window, urp, opt_len):
    """Write the fixed 20-byte header at ``off`` with data offset (20 + opt_len) / 4 and a zero
    checksum; returns the header length.  ``opt_len`` is what the option writers returned (a
    multiple of 4, <= 40); the options themselves go at ``off + 20``."""
    hlen = TCP_HLEN_MIN + opt_len
    set_u16(buf, off + TCP_SPORT, sport)
    set_u16(buf, off + TCP_DPORT, dport)
    set_u32(buf, off + TCP_SEQ, seq)
    set_u32(buf, off + TCP_ACK, ack)
    buf[off + TCP_OFF] = ((hlen >> 2) & 0x0F) << 4
    buf[off + TCP_FLAGS] = flags & 0xFF
    set_u16(buf, off + TCP_WIN, window)
    set_u16(buf, off + TCP_CSUM, 0)
    set_u16(buf, off + TCP_URP, urp)
    return hlen


@njit(cache=True)
def tcp_set_checksum(buf, off, n, src_ip, dst_ip):
    """Compute and store the checksum of the ``n``-byte segment (header, options, payload) with
    the IPv4 pseudo-header (RFC 9293 §3.1); returns the value stored."""
    set_u16(buf, off + TCP_CSUM, 0)
    c = l4_checksum(buf, off, n, src_ip, dst_ip, 6)
    set_u16(buf, off + TCP_CSUM, c)
    return c


# --- option parsing -------------------------------------------------------------------------
@njit(cache=True)
def tcp_parse_options(buf, off, hlen, is_syn, opts):
    """Parse the option area ``buf[off+20 : off+hlen]`` into ``opts`` (int64[TOPT_SIZE]).

    Returns 0, or ERR_TCP_OPT_MALFORMED when parsing stopped at a malformed option; the options
    before it stay in ``opts`` and the segment is still processed (as Linux).  Only options that
    are valid for this segment set their OPTF_* bit in ``opts[TOPT_PRESENT]``.  Run
    ``tcp_check`` first: ``hlen`` must not exceed the segment.

    Rules (RFC 9293 §3.1 leaves the handling of bad options open; fsdp does as Linux's
    tcp_parse_options):

    * EOL ends the list; NOP is one byte of padding (RFC 9293 §3.1).
    * Any other kind has a length byte counting kind and length.  A missing length byte, a
      length < 2 ("silly option") or one running past the header stops parsing (as Linux).
    * A known option with the wrong length, or on a segment it does not belong to, is skipped
      by its length and ignored (as Linux); unknown kinds are skipped by their length (RFC 9293
      §3.1: "must be prepared to handle an illegal option length"; RFC 1122 §4.2.2.5).
    * MSS: length 4, SYN only (RFC 9293 §3.2: "only in SYN segments"); a value of 0 is ignored
      (as Linux, which keeps its default).
    * Window scale: length 3, SYN only (RFC 7323 §2.2); a shift > 14 is used as 14 (§2.3).
    * SACK-permitted: length 2, SYN only (RFC 2018 §2).
    * Timestamps: length 10, on any segment (RFC 7323 §3.2); whether the connection accepts
      them is the engine's decision.
    * SACK: length 2 + 8k with k >= 1 (RFC 2018 §3); at most 4 blocks are kept (as Linux's
      TCP_NUM_SACKS; 40 option bytes cannot hold more anyway).  Whether SACK was negotiated is
      the engine's decision.
    * A repeated option overwrites the earlier one (as Linux: the last occurrence wins).
    """
    for i in range(TOPT_SIZE):
        opts[i] = 0
    present = 0
    err = 0
    p = off + TCP_HLEN_MIN
    end = off + hlen
    while p < end:
        kind = np.int64(buf[p])
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            p += 1
            continue
        if end - p < 2:  # no room for the length byte
            err = ERR_TCP_OPT_MALFORMED
            break
        size = np.int64(buf[p + 1])
        if size < 2 or size > end - p:
            err = ERR_TCP_OPT_MALFORMED
            break
        if kind == TCPOPT_MSS:
            if size == TCPOLEN_MSS and is_syn:
                mss = np.int64(get_u16(buf, p + 2))
                if mss != 0:
                    opts[TOPT_MSS] = mss
                    present |= OPTF_MSS
        elif kind == TCPOPT_WSCALE:
            if size == TCPOLEN_WSCALE and is_syn:
                ws = np.int64(buf[p + 2])
                opts[TOPT_WSCALE] = ws if ws <= TCP_MAX_WSCALE else TCP_MAX_WSCALE
                present |= OPTF_WSCALE
        elif kind == TCPOPT_SACK_PERM:
            if size == TCPOLEN_SACK_PERM and is_syn:
                present |= OPTF_SACK_PERM
        elif kind == TCPOPT_TIMESTAMP:
            if size == TCPOLEN_TIMESTAMP:
                opts[TOPT_TS_VAL] = np.int64(get_u32(buf, p + 2))
                opts[TOPT_TS_ECR] = np.int64(get_u32(buf, p + 6))
                present |= OPTF_TS
        elif kind == TCPOPT_SACK:
            body = size - TCPOLEN_SACK_BASE
            if body >= TCPOLEN_SACK_PERBLOCK and body % TCPOLEN_SACK_PERBLOCK == 0:
                nblk = body // TCPOLEN_SACK_PERBLOCK
                if nblk > TCP_MAX_SACK_BLOCKS:
                    nblk = TCP_MAX_SACK_BLOCKS
                for b in range(2 * TCP_MAX_SACK_BLOCKS):
                    opts[TOPT_SACK_BLOCKS + b] = 0
                for b in range(nblk):
                    q = p + TCPOLEN_SACK_BASE + b * TCPOLEN_SACK_PERBLOCK
                    opts[TOPT_SACK_BLOCKS + 2 * b] = np.int64(get_u32(buf, q))
                    opts[TOPT_SACK_BLOCKS + 2 * b + 1] = np.int64(get_u32(buf, q + 4))
                opts[TOPT_SACK_N] = nblk
                present |= OPTF_SACK
        elif kind == TCPOPT_MD5SIG:
            if size == TCPOLEN_MD5SIG:
                present |= OPTF_MD5SIG
        p += size
    opts[TOPT_PRESENT] = present
    return err


# --- option writers -------------------------------------------------------------------------
# Every writer takes the TCP header offset ``off`` and a position ``pos`` inside the option
# area (bytes after the fixed header), writes at buf[off + 20 + pos], and returns the new
# position.  Each writes whole 32-bit words, so the total stays 4-byte aligned and can be
# passed to tcp_build as ``opt_len``.


@njit(inline="always", cache=True)
def _put_word(buf, p, b0, b1, b2, b3):
    buf[p] = b0
    buf[p + 1] = b1
    buf[p + 2] = b2
    buf[p + 3] = b3


@njit(cache=True)
def tcp_write_syn_options(buf, off, mss, wscale, sack_perm, ts_val, ts_ecr, ts_on):
    """Write the options of a SYN or SYN-ACK at ``off + 20``; returns their length.

    ``mss`` <= 0 omits MSS; ``wscale`` < 0 omits window scale; ``sack_perm``/``ts_on`` are
    booleans.  Order and packing are Linux's tcp_options_write, so fsdp's SYNs look like
    Linux's on the wire:

    * MSS ``02 04 mm mm``
    * timestamps: ``04 02 08 0a`` (SACK-permitted folded into the TS word) or ``01 01 08 0a``,
      then TSval, TSecr
    * SACK-permitted without timestamps: ``01 01 04 02``
    * window scale: ``01 03 03 ws``

    All on: ``<mss, sackOK, TS, nop, wscale>`` = 20 bytes.
    """
    p = off + TCP_HLEN_MIN
    if mss > 0:
        _put_word(buf, p, TCPOPT_MSS, TCPOLEN_MSS, (mss >> 8) & 0xFF, mss & 0xFF)
        p += 4
    if ts_on:
        if sack_perm:
            _put_word(
                buf, p, TCPOPT_SACK_PERM, TCPOLEN_SACK_PERM, TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP
            )
        else:
            _put_word(buf, p, TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP)
        set_u32(buf, p + 4, ts_val)
        set_u32(buf, p + 8, ts_ecr)
        p += 12
    elif sack_perm:
        _put_word(buf, p, TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK_PERM, TCPOLEN_SACK_PERM)
        p += 4
    if wscale >= 0:
        _put_word(buf, p, TCPOPT_NOP, TCPOPT_WSCALE, TCPOLEN_WSCALE, wscale & 0xFF)
        p += 4
    return p - (off + TCP_HLEN_MIN)


@njit(cache=True)
def tcp_write_ts_option(buf, off, pos, ts_val, ts_ecr):
    """Write ``NOP NOP TS(10)`` (12 bytes, RFC 7323 Appendix A layout, as Linux) at option
    position ``pos``; returns ``pos + 12``."""
    p = off + TCP_HLEN_MIN + pos
    _put_word(buf, p, TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP)
    set_u32(buf, p + 4, ts_val)
    set_u32(buf, p + 8, ts_ecr)
    return pos + TCPOLEN_TS_ALIGNED


@njit(cache=True)
def tcp_write_sack_option(buf, off, pos, blocks, n_blocks):
    """Write ``NOP NOP SACK(2 + 8n)`` with blocks ``blocks[0..2n)`` (left0, right0, left1, ...)
    at option position ``pos``; returns the new position.

    ``n_blocks`` is cut to what fits in the 40 option bytes after ``pos`` (4 alone, 3 after
    timestamps: RFC 2018 §3, as Linux); nothing is written when no block fits.
    """
    room = (TCP_OPT_SPACE - pos - 4) // TCPOLEN_SACK_PERBLOCK
    n = n_blocks
    if n > TCP_MAX_SACK_BLOCKS:
        n = TCP_MAX_SACK_BLOCKS
    if n > room:
        n = room
    if n <= 0:
        return pos
    p = off + TCP_HLEN_MIN + pos
    _put_word(
        buf, p, TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK, TCPOLEN_SACK_BASE + n * TCPOLEN_SACK_PERBLOCK
    )
    p += 4
    for i in range(n):
        set_u32(buf, p, blocks[2 * i])
        set_u32(buf, p + 4, blocks[2 * i + 1])
        p += 8
    return pos + 4 + n * TCPOLEN_SACK_PERBLOCK


# --- sequence number arithmetic (RFC 9293 §3.4, RFC 1982) -------------------------------------
# Values are taken modulo 2^32, so any int64/uint64/Python int gives the same answer jitted and
# interpreted.  Two numbers exactly 2^31 apart are ambiguous (RFC 1982 §3.2); fsdp answers like
# Linux's before()/after(): seq_lt(a, b) and seq_gt(a, b) are then both true.


@njit(inline="always", cache=True)
def seq_diff(a, b):
    """``a - b`` as a signed 32-bit distance (Linux ``(s32)(a - b)``)."""
    d = (np.int64(a) - np.int64(b)) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


@njit(inline="always", cache=True)
def seq_lt(a, b):
    """a < b in sequence space (Linux ``before(a, b)``)."""
    return ((np.int64(a) - np.int64(b)) & 0xFFFFFFFF) >= 0x80000000


@njit(inline="always", cache=True)
def seq_gt(a, b):
    """a > b in sequence space (Linux ``after(a, b)`` = ``before(b, a)``)."""
    return ((np.int64(b) - np.int64(a)) & 0xFFFFFFFF) >= 0x80000000


@njit(inline="always", cache=True)
def seq_leq(a, b):
    """a <= b in sequence space (Linux ``!after(a, b)``)."""
    return ((np.int64(b) - np.int64(a)) & 0xFFFFFFFF) < 0x80000000


@njit(inline="always", cache=True)
def seq_geq(a, b):
    """a >= b in sequence space (Linux ``!before(a, b)``)."""
    return ((np.int64(a) - np.int64(b)) & 0xFFFFFFFF) < 0x80000000


@njit(inline="always", cache=True)
def seq_add(a, n):
    """``a + n`` modulo 2^32."""
    return (np.int64(a) + np.int64(n)) & 0xFFFFFFFF
