"""fsdp.tcp.isn: SipHash-2-4 known answers, RFC 6528 ISNs, SYN cookies, the host secret."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsdp.tcp.isn import (
    SECRET_COOKIE_K0,
    SECRET_COOKIE_K1,
    SECRET_ISN_K0,
    SECRET_ISN_K1,
    SYNCOOKIE_MSSTAB,
    SYNCOOKIE_PERIOD_US,
    host_secret_create,
    isn_generate,
    isn_secret_create,
    siphash24,
    siphash24_2u64,
    siphash24_3u64,
    syncookie_check,
    syncookie_make,
    syncookie_mss,
    syncookie_mss_index,
)

# The SipHash paper's reference vectors (Aumasson & Bernstein 2012, Appendix A and the reference
# implementation's vectors.h): key = 00 01 .. 0f, message i = 00 01 .. (i-1), output read as a
# little-endian uint64.  Vector 15 is the paper's worked example a129ca6149be45e5.
SIPHASH24_VECTORS = [
    0x726FDB47DD0E0E31, 0x74F839C593DC67FD, 0x0D6C8009D9A94F5A, 0x85676696D7FB7E2D,
    0xCF2794E0277187B7, 0x18765564CD99A68D, 0xCBC9466E58FEE3CE, 0xAB0200F58B01D137,
    0x93F5F5799A932462, 0x9E0082DF0BA9E4B0, 0x7A5DBBC594DDB9F3, 0xF4B32F46226BADA7,
    0x751E8FBC860EE5FB, 0x14EA5627C0843D90, 0xF723CA908E7AF2EE, 0xA129CA6149BE45E5,
    0x3F2ACC7F57C29BDB, 0x699AE9F52CBE4794, 0x4BC1B3F0968DD39C, 0xBB6DC91DA77961BD,
    0xBED65CF21AA2EE98, 0xD0F2CBB02E3B67C7, 0x93536795E3A33E88, 0xA80C038CCD5CCEC8,
    0xB8AD50C6F649AF94, 0xBCE192DE8A85B8EA, 0x17D835B85BBB15F3, 0x2F2E6163076BCFAD,
    0xDE4DAAACA71DC9A5, 0xA6A2506687956571, 0xAD87A3535C49EF28, 0x32D892FAD841C342,
    0x7127512F72F27CCE, 0xA7F32346F95978E3, 0x12E0B01ABB051238, 0x15E034D40FA197AE,
    0x314DFFBE0815A3B4, 0x027990F029623981, 0xCADCD4E59EF40C4D, 0x9ABFD8766A33735C,
    0x0E3EA96B5304A7D0, 0xAD0C42D6FC585992, 0x187306C89BC215A9, 0xD4A60ABCF3792B95,
    0xF935451DE4F21DF2, 0xA9538F0419755787, 0xDB9ACDDFF56CA510, 0xD06C98CD5C0975EB,
    0xE612A3CB9ECBA951, 0xC766E62CFCADAF96, 0xEE64435A9752FE72, 0xA192D576B245165A,
    0x0A8787BF8ECB74B2, 0x81B3E73D20B49B6F, 0x7FA8220BA3B2ECEA, 0x245731C13CA42499,
    0xB78DBFAF3A8D83BD, 0xEA1AD565322A1A0B, 0x60E61C23A3795013, 0x6606D7E446282B93,
    0x6CA4ECB15C5F91E1, 0x9F626DA15C9625F3, 0xE51B38608EF25F57, 0x958A324CEB064572,
]  # fmt: skip
KEY_K0 = int.from_bytes(bytes(range(8)), "little")
KEY_K1 = int.from_bytes(bytes(range(8, 16)), "little")
M64 = (1 << 64) - 1


def ref_siphash24(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 in plain Python integers, straight from the paper's description."""

    def rotl(x, b):
        return ((x << b) | (x >> (64 - b))) & M64

    def rnd(v):
        v0, v1, v2, v3 = v
        v0 = (v0 + v1) & M64
        v1 = rotl(v1, 13) ^ v0
        v0 = rotl(v0, 32)
        v2 = (v2 + v3) & M64
        v3 = rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & M64
        v3 = rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & M64
        v1 = rotl(v1, 17) ^ v2
        v2 = rotl(v2, 32)
        return [v0, v1, v2, v3]

    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261,
         k1 ^ 0x7465646279746573]  # fmt: skip
    tail = len(msg) % 8
    words = [int.from_bytes(msg[i : i + 8], "little") for i in range(0, len(msg) - tail, 8)]
    words.append(int.from_bytes(msg[len(msg) - tail :], "little") | ((len(msg) & 0xFF) << 56))
    for m in words:
        v[3] ^= m
        v = rnd(rnd(v))
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        v = rnd(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _sip(k0, k1, msg: bytes) -> int:
    return int(siphash24(np.uint64(k0), np.uint64(k1), np.frombuffer(msg, np.uint8), len(msg)))


@pytest.mark.parametrize("n", range(64))
def test_siphash24_reference_vectors(n):
    msg = bytes(range(n))
    assert _sip(KEY_K0, KEY_K1, msg) == SIPHASH24_VECTORS[n]
    assert ref_siphash24(bytes(range(16)), msg) == SIPHASH24_VECTORS[n]


def test_siphash24_paper_example():
    # Appendix A: the 15-byte message 00..0e; the tag bytes e5 45 be 49 61 ca 29 a1.
    tag = _sip(KEY_K0, KEY_K1, bytes(range(15)))
    assert tag.to_bytes(8, "little") == bytes.fromhex("e545be4961ca29a1")


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), msg=st.binary(max_size=40))
def test_siphash24_matches_plain_python(key, msg):
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    assert _sip(k0, k1, msg) == ref_siphash24(key, msg)


@settings(max_examples=200, deadline=None)
@given(k=st.integers(0, M64), j=st.integers(0, M64), ws=st.lists(st.integers(0, M64), min_size=3,
       max_size=3))  # fmt: skip
def test_word_variants_equal_the_byte_version(k, j, ws):
    b2 = b"".join(w.to_bytes(8, "little") for w in ws[:2])
    b3 = b2 + ws[2].to_bytes(8, "little")
    u = [np.uint64(w) for w in ws]
    assert int(siphash24_2u64(np.uint64(k), np.uint64(j), u[0], u[1])) == _sip(k, j, b2)
    assert int(siphash24_3u64(np.uint64(k), np.uint64(j), u[0], u[1], u[2])) == _sip(k, j, b3)


# --- secrets and ISNs ---------------------------------------------------------------------------

SECRET = isn_secret_create(bytes(range(100, 132)))
LIP, RIP = 0x0A000001, 0xC0A80102


def test_secret_create():
    a, b = isn_secret_create(), isn_secret_create()
    assert a.dtype == np.uint64 and a.shape == (4,) and not (a == b).all()
    assert SECRET[SECRET_ISN_K0] == int.from_bytes(bytes(range(100, 108)), "little")
    with pytest.raises(ValueError):
        isn_secret_create(b"short")


def test_the_host_secret_is_one_per_user_and_private(tmp_path):
    """Every stack of the machine's user gets the same secret (until the file goes, at boot):
    another process too; the file is the user's, mode 0600, 32 bytes."""
    a = host_secret_create(str(tmp_path))
    b = host_secret_create(str(tmp_path))
    assert a.dtype == np.uint64 and a.shape == (4,) and (a == b).all()
    path = tmp_path / f"fsdp-tcp-secret-{os.getuid()}"
    st_ = path.stat()
    assert st_.st_mode & 0o777 == 0o600 and st_.st_size == 32
    assert (a == isn_secret_create(path.read_bytes())).all()
    other = subprocess.run(
        [sys.executable, "-c", "import sys; from fsdp.tcp.isn import host_secret_create as h; "
         "print(' '.join(str(int(w)) for w in h(sys.argv[1])))", str(tmp_path)],
        capture_output=True, text=True, check=True).stdout.split()
    assert [int(w) for w in other] == [int(w) for w in a]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # (no temporary left)


@pytest.mark.parametrize("bad", ["mode 0644", "16 bytes", "a directory"])
def test_a_host_secret_file_that_is_not_private_is_not_used(tmp_path, bad):
    path = tmp_path / f"fsdp-tcp-secret-{os.getuid()}"
    if bad == "a directory":
        path.mkdir()
    else:
        path.write_bytes(bytes(range(32 if bad == "mode 0644" else 16)))
        path.chmod(0o644 if bad == "mode 0644" else 0o600)
    a, b = host_secret_create(str(tmp_path)), host_secret_create(str(tmp_path))
    assert not (a == b).all()  # fresh ones, each time
    assert not (a == isn_secret_create(bytes(range(32)))).all()


def test_without_a_place_for_the_host_secret_a_fresh_one_serves(tmp_path):
    a = host_secret_create(str(tmp_path / "missing"))
    b = host_secret_create(str(tmp_path / "missing"))
    assert a.shape == (4,) and not (a == b).all()


def test_isn_is_m_plus_f():
    """RFC 6528 §3 literally: M = now >> 2 (4 µs), F = SipHash-2-4 of the 4-tuple, mod 2^32."""
    key = int(SECRET[SECRET_ISN_K0]).to_bytes(8, "little") + int(SECRET[SECRET_ISN_K1]).to_bytes(
        8, "little"
    )
    msg = ((LIP << 32) | RIP).to_bytes(8, "little") + ((80 << 16) | 40000).to_bytes(8, "little")
    f = ref_siphash24(key, msg) & 0xFFFFFFFF
    for now in (0, 3, 4, 123_456_789, 2**40 + 7):
        assert isn_generate(SECRET, LIP, 80, RIP, 40000, now) == ((now >> 2) + f) & 0xFFFFFFFF


def test_isn_clock_and_wrap():
    base = isn_generate(SECRET, LIP, 80, RIP, 40000, 0)
    assert isn_generate(SECRET, LIP, 80, RIP, 40000, 3) == base  # 4 µs granularity
    assert isn_generate(SECRET, LIP, 80, RIP, 40000, 4) == (base + 1) & 0xFFFFFFFF
    # The clock part wraps in 2^32 * 4 µs = 4.77 h, as RFC 9293 §3.4.1 describes.
    assert isn_generate(SECRET, LIP, 80, RIP, 40000, 4 << 32) == base


@settings(max_examples=200, deadline=None)
@given(
    t=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 65535), st.integers(0, 2**32 - 1),
                st.integers(0, 65535)),
    now=st.integers(0, 2**50),
    flip=st.integers(0, 95),
)  # fmt: skip
def test_isn_properties(t, now, flip):
    isn = isn_generate(SECRET, *t, now)
    assert 0 <= isn < 2**32
    assert isn_generate(SECRET, *t, now) == isn  # a function of its inputs only
    # Another tuple (one bit flipped) or another secret gives an unrelated ISN.
    u = list(t)
    field, bit = (0, flip) if flip < 32 else (1, flip - 32) if flip < 48 else (
        (2, flip - 48) if flip < 80 else (3, flip - 80))  # fmt: skip
    u[field] ^= 1 << bit
    other = isn_generate(SECRET, *u, now)
    other_secret = isn_secret_create(bytes(range(1, 33)))
    assert other != isn or isn_generate(other_secret, *t, now) != isn  # 2^-64 false alarm


def test_isn_spreads_over_the_sequence_space():
    isns = np.array([isn_generate(SECRET, LIP, 80, RIP, p, 0) for p in range(20000)])
    assert len(np.unique(isns)) > 19990
    hist = np.histogram(isns, bins=16, range=(0, 2**32))[0]
    assert hist.min() > 1000 and hist.max() < 1500  # ~1250 each


# --- SYN cookies --------------------------------------------------------------------------------


def test_mss_table():
    assert SYNCOOKIE_MSSTAB.tolist() == [536, 1300, 1440, 1460]
    for mss, idx in ((100, 0), (536, 0), (1299, 0), (1300, 1), (1440, 2), (1459, 2), (1460, 3),
                     (9000, 3)):  # fmt: skip
        assert syncookie_mss_index(mss) == idx
    assert [syncookie_mss(i) for i in range(4)] == [536, 1300, 1440, 1460]


def test_cookie_roundtrip_every_mss_and_window():
    p = SYNCOOKIE_PERIOD_US
    for idx in range(4):
        for made in (0, 5, p - 1, 17 * p + 3):
            c = syncookie_make(SECRET, LIP, 80, RIP, 40000, 123456, idx, made)
            assert 0 <= c < 2**32
            period_end = (made // p + 1) * p
            for check in (made, period_end - 1, period_end, period_end + p - 1):
                assert syncookie_check(SECRET, LIP, 80, RIP, 40000, 123456, c, check) == idx
            for check in (period_end + p, period_end + 5 * p, made - p if made >= p else None):
                if check is not None:
                    assert syncookie_check(SECRET, LIP, 80, RIP, 40000, 123456, c, check) == -1


def test_cookie_neighbours_do_not_verify():
    """Off-by-a-little ACK or SEQ numbers must not decode to a neighbouring MSS index."""
    for idx in range(4):
        c = syncookie_make(SECRET, LIP, 80, RIP, 40000, 1000, idx, 0)
        for d in (-3, -2, -1, 1, 2, 3, 4, 1 << 22, 1 << 24):
            assert syncookie_check(SECRET, LIP, 80, RIP, 40000, 1000, (c + d) % 2**32, 0) == -1
            assert syncookie_check(SECRET, LIP, 80, RIP, 40000, 1000 + d, c, 0) == -1


def test_cookie_bad_mss_index():
    assert syncookie_make(SECRET, LIP, 80, RIP, 40000, 1, 4, 0) == -1
    assert syncookie_make(SECRET, LIP, 80, RIP, 40000, 1, -1, 0) == -1


def test_forged_cookies_rarely_pass():
    rng = np.random.default_rng(3)
    now = 1000 * SYNCOOKIE_PERIOD_US
    passed = sum(
        syncookie_check(SECRET, LIP, 80, RIP, 40000, 99, int(c), now) >= 0
        for c in rng.integers(0, 2**32, 20000)
    )
    assert passed == 0  # expected 20000 * 2^-29


@settings(max_examples=300, deadline=None)
@given(
    t=st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 65535), st.integers(0, 2**32 - 1),
                st.integers(1, 65535)),
    peer_isn=st.integers(0, 2**32 - 1),
    idx=st.integers(0, 3),
    made=st.integers(0, 2**45),
    later=st.integers(0, 2 * SYNCOOKIE_PERIOD_US),
    which=st.integers(0, 4),
    delta=st.integers(1, 2**32 - 1),
    flip=st.integers(0, 31),
)  # fmt: skip
def test_cookie_verifies_for_its_tuple_and_window_only(
    t, peer_isn, idx, made, later, which, delta, flip
):
    c = syncookie_make(SECRET, *t, peer_isn, idx, made)
    now = made + later
    fresh = now // SYNCOOKIE_PERIOD_US - made // SYNCOOKIE_PERIOD_US <= 1
    assert syncookie_check(SECRET, *t, peer_isn, c, now) == (idx if fresh else -1)
    # Any changed bit of the cookie (the ACK number) invalidates it ...
    assert syncookie_check(SECRET, *t, peer_isn, c ^ (1 << flip), made) == -1
    # ... and so does changing lip, lport, rip, rport or the peer's ISN, by any amount, even 1
    # (a false accept needs a 22-bit MAC collision).
    u = list(t) + [peer_isn]
    mod = (2**32, 65536, 2**32, 65536, 2**32)[which]
    u[which] = (u[which] + delta) % mod
    if u[which] == (list(t) + [peer_isn])[which]:
        return
    assert syncookie_check(SECRET, *u[:4], u[4], c, made) == -1


def test_cookie_secret_is_separate_from_isn_secret():
    s2 = SECRET.copy()
    s2[SECRET_ISN_K0] ^= np.uint64(1)
    c = syncookie_make(SECRET, LIP, 80, RIP, 40000, 5, 2, 0)
    assert syncookie_check(s2, LIP, 80, RIP, 40000, 5, c, 0) == 2
    s2[SECRET_COOKIE_K1] ^= np.uint64(1)
    assert syncookie_check(s2, LIP, 80, RIP, 40000, 5, c, 0) == -1
    assert SECRET_COOKIE_K0 != SECRET_ISN_K1
