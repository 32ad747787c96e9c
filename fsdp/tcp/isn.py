"""Initial sequence numbers (RFC 6528) and SYN cookies (RFC 4987 §3.6), keyed with SipHash-2-4.

ISN (RFC 6528 §3)::

    ISN = M + F(localip, localport, remoteip, remoteport, secretkey)

``M`` is the 4 µs clock RFC 9293 §3.4.1 asks for (``now >> 2``, ``now`` in µs) and ``F`` is
SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF", 2012), a keyed PRF, over the
4-tuple, truncated to 32 bits, as Linux's ``secure_tcp_seq``.  Different 4-tuples get unrelated
sequence spaces, so an off-path attacker who sees our ISNs for one connection learns nothing about
another (RFC 6528 §4); one 4-tuple's ISNs still grow with the clock, which keeps old duplicates of
a previous incarnation out of the new one's window (RFC 9293 §3.4.1).

SYN cookies (used when a listener's SYN backlog is full; RFC 4987 §3.6).  The server keeps no
state for the SYN; its SYN-ACK's ISS *is* the state::

    cookie = H1(4-tuple) + peer_isn + (count mod 2^8) << 24 | MAC22 << 2 | mss_index   (mod 2^32)
    MAC22  = H2(4-tuple, peer_isn, count, mss_index) mod 2^22

``count`` is a coarse clock (``now // SYNCOOKIE_PERIOD_US``, 64 s); ``mss_index`` picks one of the
4 entries of ``SYNCOOKIE_MSSTAB`` (Linux's IPv4 ``msstab``); ``H1``, ``H2`` are SipHash-2-4 under a
key of their own, domain-separated.  Adding ``H1`` and the peer's ISN (the Bernstein/Linux trick)
makes the cookie look like any other ISN.  Unlike Linux, which adds the MSS index to a hash, the
low 24 bits are a MAC over everything the cookie stands for, so changing the peer's ISN, the
4-tuple, the period or the index by any amount invalidates it (probability 2^-22 of a false
accept), instead of shifting to a neighbouring MSS.  On the final ACK (``cookie = SEG.ACK - 1``,
``peer_isn = SEG.SEQ - 1``) ``syncookie_check`` subtracts ``H1`` and ``peer_isn``, accepts the
current and the previous period only (``SYNCOOKIE_MAX_AGE``), and checks the MAC.  A blind forger
passes with about 2/2^8 * 2^-22 = 2^-29 per ACK.  The cookie itself carries only the MSS; with
timestamps, window scale, SACK permission and the ECN agreement ride in the SYN-ACK's TSval, as
Linux's cookie_init_timestamp (``segment._cookie_ts_options``); without them they are lost.

Secrets: 256 bits, a 128-bit key for ISNs (and timestamp offsets) and an independent 128-bit key
for cookies, as four uint64 words: ``host_secret_create()`` gives every stack of this machine's
user the same one until the next boot (as Linux's per-boot secrets; see its doc), and
``isn_secret_create()`` draws a fresh one.

Numba note: SipHash runs on uint64 only; every constant is a ``np.uint64`` so no operand mixes
signed and unsigned (that would promote to float64).  Results are returned as int64 in [0, 2^32).
"""

import os

import numpy as np
from numba import njit

# secret (uint64[SECRET_WORDS]) layout
SECRET_ISN_K0 = 0
SECRET_ISN_K1 = 1
SECRET_COOKIE_K0 = 2
SECRET_COOKIE_K1 = 3
SECRET_WORDS = 4

SYNCOOKIE_PERIOD_US = 64_000_000  # the coarse clock: a cookie is good for 64 to 128 s
SYNCOOKIE_MAX_AGE = 2  # periods accepted: the current one and the previous one
SYNCOOKIE_MSSTAB = np.array([536, 1300, 1440, 1460], np.int64)  # Linux's IPv4 msstab
_COOKIE_BITS = 24  # the period counter sits above the MAC and the index
_INDEX_BITS = 2  # mss_index: 4 entries
_INDEX_MASK = (1 << _INDEX_BITS) - 1
_MAC_MASK = (1 << (_COOKIE_BITS - _INDEX_BITS)) - 1

_M32 = np.uint64(0xFFFFFFFF)
_C0 = np.uint64(0x736F6D6570736575)  # "somepseudorandomlygeneratedbytes"
_C1 = np.uint64(0x646F72616E646F6D)
_C2 = np.uint64(0x6C7967656E657261)
_C3 = np.uint64(0x7465646279746573)
_FF = np.uint64(0xFF)


def isn_secret_create(seed: bytes | None = None) -> np.ndarray:
    """A secret: 32 bytes from ``os.urandom`` (or ``seed``, for tests)."""
    raw = os.urandom(8 * SECRET_WORDS) if seed is None else seed
    if len(raw) != 8 * SECRET_WORDS:
        raise ValueError(f"the secret is {8 * SECRET_WORDS} bytes, not {len(raw)}")
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64)


HOST_SECRET_DIR = "/dev/shm"  # a tmpfs: emptied at boot, as Linux draws its secrets at boot


def host_secret_create(directory: str | None = None) -> np.ndarray:
    """The secret every stack of this machine's user shares until the next boot: 32 random
    bytes kept in ``DIRECTORY/fsdp-tcp-secret-<uid>`` (mode 0600; made by the first stack).

    Linux keys its ISNs (RFC 6528) and its timestamp offsets (RFC 7323 §5.4) with secrets drawn
    once per boot, so a program that exits and starts again on the same host goes on with the
    same sequence and timestamp spaces: its new SYN to a port the peer still holds in TIME-WAIT
    has a newer timestamp (and a higher ISN), and the peer lets it reopen the 4-tuple (RFC 6191,
    RFC 9293 §3.10.7.4).  A secret per stack made every restarted client a new host: in half of
    the address pairs every such SYN was refused (ACK, RST, retransmission).  Where the file
    cannot be made or is not this user's own 0600 file of 32 bytes, a fresh secret serves (the
    old behaviour)."""
    path = os.path.join(directory or HOST_SECRET_DIR, f"fsdp-tcp-secret-{os.getuid()}")
    n = 8 * SECRET_WORDS
    try:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            # made whole under another name, then linked: a stack never reads half a secret,
            # and of two made at once one is kept (link fails on the second)
            tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}"
            wfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(wfd, os.urandom(n))
            finally:
                os.close(wfd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            raw = os.read(fd, n + 1)
        finally:
            os.close(fd)
    except OSError:
        return isn_secret_create()
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or len(raw) != n:
        return isn_secret_create()
    return isn_secret_create(raw)


# --- SipHash-2-4 -------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _rotl(x, b):
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@njit(inline="always", cache=True)
def _sipround(v0, v1, v2, v3):
    v0 += v1
    v1 = _rotl(v1, 13)
    v1 ^= v0
    v0 = _rotl(v0, 32)
    v2 += v3
    v3 = _rotl(v3, 16)
    v3 ^= v2
    v0 += v3
    v3 = _rotl(v3, 21)
    v3 ^= v0
    v2 += v1
    v1 = _rotl(v1, 17)
    v1 ^= v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@njit(inline="always", cache=True)
def _sip_init(k0, k1):
    return k0 ^ _C0, k1 ^ _C1, k0 ^ _C2, k1 ^ _C3


@njit(inline="always", cache=True)
def _sip_compress(v0, v1, v2, v3, m):
    """Absorb one 64-bit word with c = 2 SipRounds."""
    v3 ^= m
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= m
    return v0, v1, v2, v3


@njit(inline="always", cache=True)
def _sip_finish(v0, v1, v2, v3):
    """d = 4 SipRounds of finalization."""
    v2 ^= _FF
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


@njit(cache=True)
def siphash24(k0, k1, data, n):
    """SipHash-2-4 of bytes ``data[:n]`` (uint8) under key ``(k0, k1)`` (the 16 key bytes read as
    two little-endian uint64); returns the uint64 tag (the paper's 8 output bytes, read LE)."""
    k0 = np.uint64(k0)
    k1 = np.uint64(k1)
    v0, v1, v2, v3 = _sip_init(k0, k1)
    full = n - (n & 7)
    for i in range(0, full, 8):
        m = np.uint64(0)
        for j in range(8):
            m |= np.uint64(data[i + j]) << np.uint64(8 * j)
        v0, v1, v2, v3 = _sip_compress(v0, v1, v2, v3, m)
    b = np.uint64(n & 0xFF) << np.uint64(56)
    for j in range(n & 7):
        b |= np.uint64(data[full + j]) << np.uint64(8 * j)
    v0, v1, v2, v3 = _sip_compress(v0, v1, v2, v3, b)
    return _sip_finish(v0, v1, v2, v3)


@njit(cache=True)
def siphash24_2u64(k0, k1, m0, m1):
    """SipHash-2-4 of the 16 bytes ``LE64(m0) || LE64(m1)``, without a byte buffer."""
    v0, v1, v2, v3 = _sip_init(np.uint64(k0), np.uint64(k1))
    v0, v1, v2, v3 = _sip_compress(v0, v1, v2, v3, np.uint64(m0))
    v0, v1, v2, v3 = _sip_compress(v0, v1, v2, v3, np.uint64(m1))
    v0, v1, v2, v3 = _sip_compress(v0, v1, v2, v3, np.uint64(16) << np.uint64(56))
    return _sip_finish(v0, v1, v2, v3)


@njit(cache=True)
def siphash24_3u64(k0, k1, m0, m1, m2):
    """SipHash-2-4 of the 24 bytes ``LE64(m0) || LE64(m1) || LE64(m2)``."""
    v0, v1, v2, v3 = _sip_init(np.uint64(k0), np.uint64(k1))
    v0, v1, v2, v3 = _sip_compress(v0, v1, v2, v3, np.uint64(m0))
    v0, v1, v2, v3 = _sip_compress(v0, v1, v2, v3, np.uint64(m1))
    v0, v1, v2, v3 = _sip_compress(v0, v1, v2, v3, np.uint64(m2))
    v0, v1, v2, v3 = _sip_compress(v0, v1, v2, v3, np.uint64(24) << np.uint64(56))
    return _sip_finish(v0, v1, v2, v3)


# --- ISNs ---------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _addr_word(lip, rip):
    return (np.uint64(lip & 0xFFFFFFFF) << np.uint64(32)) | np.uint64(rip & 0xFFFFFFFF)


@njit(inline="always", cache=True)
def _port_word(lport, rport):
    return np.uint64(((lport & 0xFFFF) << 16) | (rport & 0xFFFF))


@njit(inline="always", cache=True)
def _low32(h):
    return np.int64(h & _M32)


@njit(cache=True)
def isn_generate(secret, lip, lport, rip, rport, now):
    """RFC 6528 ISN for the connection ``lip:lport <-> rip:rport`` at ``now`` (µs)."""
    f = siphash24_2u64(
        secret[SECRET_ISN_K0], secret[SECRET_ISN_K1], _addr_word(lip, rip), _port_word(lport, rport)
    )
    return ((now >> 2) + _low32(f)) & 0xFFFFFFFF


# --- SYN cookies --------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _cookie_h1(secret, lip, lport, rip, rport):
    return _low32(
        siphash24_3u64(
            secret[SECRET_COOKIE_K0],
            secret[SECRET_COOKIE_K1],
            _addr_word(lip, rip),
            _port_word(lport, rport),
            np.uint64(0),
        )
    )


@njit(inline="always", cache=True)
def _cookie_mac(secret, lip, lport, rip, rport, peer_isn, count, mss_index):
    """MAC22 over (4-tuple, peer ISN, period, MSS index); bit 40 separates it from H1's input."""
    ports_isn = _port_word(lport, rport) | (np.uint64(peer_isn & 0xFFFFFFFF) << np.uint64(32))
    third = (
        np.uint64(count & 0xFFFFFFFF)
        | (np.uint64(mss_index & 0xFF) << np.uint64(32))
        | (np.uint64(1) << np.uint64(40))
    )
    h = siphash24_3u64(
        secret[SECRET_COOKIE_K0], secret[SECRET_COOKIE_K1], _addr_word(lip, rip), ports_isn, third
    )
    return _low32(h) & _MAC_MASK


@njit(cache=True)
def syncookie_mss_index(mss):
    """The index of the largest ``SYNCOOKIE_MSSTAB`` entry <= ``mss`` (0 below the smallest)."""
    i = SYNCOOKIE_MSSTAB.shape[0] - 1
    while i > 0 and SYNCOOKIE_MSSTAB[i] > mss:
        i -= 1
    return i


@njit(cache=True)
def syncookie_mss(mss_index):
    """The MSS a cookie's ``mss_index`` stands for."""
    return SYNCOOKIE_MSSTAB[mss_index]


@njit(cache=True)
def syncookie_make(secret, lip, lport, rip, rport, peer_isn, mss_index, now):
    """The ISS of a stateless SYN-ACK answering the SYN ``rip:rport -> lip:lport`` with sequence
    number ``peer_isn``; ``mss_index`` (0..3) comes back in the ACK; -1 if out of range."""
    if mss_index < 0 or mss_index >= SYNCOOKIE_MSSTAB.shape[0] or now < 0:
        return np.int64(-1)
    count = now // SYNCOOKIE_PERIOD_US
    mac = _cookie_mac(secret, lip, lport, rip, rport, peer_isn, count, mss_index)
    body = ((count & 0xFF) << _COOKIE_BITS) | (mac << _INDEX_BITS) | mss_index
    h1 = _cookie_h1(secret, lip, lport, rip, rport)
    return (h1 + (peer_isn & 0xFFFFFFFF) + body) & 0xFFFFFFFF


@njit(cache=True)
def syncookie_check(secret, lip, lport, rip, rport, peer_isn, cookie, now):
    """Validate the ACK completing a cookie handshake (``cookie = SEG.ACK - 1``, ``peer_isn =
    SEG.SEQ - 1``): the encoded ``mss_index``, or -1 for a wrong tuple, ISN, or a stale cookie."""
    if now < 0:
        return np.int64(-1)
    count = now // SYNCOOKIE_PERIOD_US
    body = (cookie - _cookie_h1(secret, lip, lport, rip, rport) - peer_isn) & 0xFFFFFFFF
    age = (count - (body >> _COOKIE_BITS)) & 0xFF
    if age >= SYNCOOKIE_MAX_AGE or age > count:
        return np.int64(-1)
    idx = body & _INDEX_MASK
    mac = (body >> _INDEX_BITS) & _MAC_MASK
    if mac != _cookie_mac(secret, lip, lport, rip, rport, peer_isn, count - age, idx):
        return np.int64(-1)
    return np.int64(idx)
