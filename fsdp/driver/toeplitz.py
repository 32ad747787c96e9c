"""Software Toeplitz RSS hash: the one home for it in fsdp.

Receive Side Scaling (Microsoft's "RSS hashing functions" and "Verifying the RSS hash
calculation"; Intel 82599 datasheet 7.1.2.8) spreads flows over NIC queues:

    hash  = Toeplitz(key, input)          input = src ip | dst ip | src port | dst port
    queue = reta[hash & (RETA_SIZE - 1)]  (the *received* packet's fields, in that order)

For every set bit ``j`` of the input (bit 0 = the most significant bit of ``input[0]``) the hash
XORs in the 32 key bits starting at key bit ``j``.  Because bit ``j`` only ever selects the key
window at ``j``, the contribution of input byte ``i`` depends on ``i`` and its value alone, so a
table ``T[i, v]`` (``n_bytes`` x 256 words) turns a 12-byte hash into 12 loads and XORs.  The
2-tuple hash of the first 8 bytes uses the same table's first 8 rows.

The sim NIC steers with these functions and the TCP layer uses the same ones to pick source ports
whose reply hashes back to the opening core (DESIGN.md §3, *Receive Flow Deliver*).
"""

import numpy as np
from numba import njit

RETA_SIZE = 128  # redirection table entries (82599, most NICs); the hash's low 7 bits index it
RSS_KEY_SIZE = 40  # bytes; enough for the 36-byte IPv6 4-tuple input

# Microsoft's verification key (also the 82599 datasheet's and DPDK's test key).
DEFAULT_RSS_KEY = bytes.fromhex(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa"
)

RSS_IPV4_L4_BYTES = 12  # src ip (4), dst ip (4), src port (2), dst port (2)
RSS_IPV4_BYTES = 8  # src ip, dst ip


def toeplitz_hash(key: bytes, data: bytes) -> int:
    """Reference bit-by-bit Toeplitz hash of ``data`` under ``key`` (Microsoft's pseudocode).

    Slow and obviously right: tests compare the table-driven kernels against it.
    """
    key = bytes(key)
    data = bytes(data)
    if len(key) < len(data) + 4:
        raise ValueError(f"a {len(data)}-byte input needs a key of at least {len(data) + 4} bytes")
    k = int.from_bytes(key, "big")
    key_bits = len(key) * 8
    result = 0
    for j in range(len(data) * 8):
        if data[j >> 3] & (0x80 >> (j & 7)):
            # the 32 key bits starting at bit j ("left-most 32 bits of K" after j shifts)
            result ^= (k >> (key_bits - 32 - j)) & 0xFFFFFFFF
    return result


def toeplitz_table(key: bytes, n_bytes: int = RSS_IPV4_L4_BYTES) -> np.ndarray:
    """``uint32[n_bytes, 256]``: ``T[i, v]`` = hash contribution of input byte ``i`` being ``v``."""
    key = bytes(key)
    if n_bytes < 1 or len(key) < n_bytes + 4:
        raise ValueError(f"a key of {len(key)} bytes cannot hash {n_bytes}-byte inputs")
    k = int.from_bytes(key, "big")
    key_bits = len(key) * 8
    table = np.zeros((n_bytes, 256), dtype=np.uint32)
    values = np.arange(256)
    for i in range(n_bytes):
        for b in range(8):
            window = (k >> (key_bits - 32 - (i * 8 + b))) & 0xFFFFFFFF
            selected = (values & (0x80 >> b)) != 0
            table[i, selected] ^= np.uint32(window)
    return table


def default_reta(n_queues: int, size: int = RETA_SIZE) -> np.ndarray:
    """Round-robin redirection table (``reta[i] = i % n_queues``), the usual driver default."""
    if n_queues < 1:
        raise ValueError(f"n_queues must be >= 1, not {n_queues}")
    return (np.arange(size) % n_queues).astype(np.int32)


@njit(inline="always", cache=True)
def _table_u32(table, row, v):
    """XOR-contributions of the 4 bytes of the 32-bit big-endian ``v`` at input rows row..row+3."""
    return (
        table[row, (v >> 24) & 0xFF]
        ^ table[row + 1, (v >> 16) & 0xFF]
        ^ table[row + 2, (v >> 8) & 0xFF]
        ^ table[row + 3, v & 0xFF]
    )


@njit(cache=True)
def rss_hash_ipv4(table, src_ip, dst_ip):
    """2-tuple RSS hash (IPv4 without ports: ICMP, fragments, other protocols)."""
    h = _table_u32(table, 0, src_ip) ^ _table_u32(table, 4, dst_ip)
    return np.int64(h) & 0xFFFFFFFF


@njit(cache=True)
def rss_hash_ipv4_l4(table, src_ip, dst_ip, src_port, dst_port):
    """4-tuple RSS hash of a received TCP/UDP segment: src ip, dst ip, src port, dst port."""
    h = (
        _table_u32(table, 0, src_ip)
        ^ _table_u32(table, 4, dst_ip)
        ^ table[8, (src_port >> 8) & 0xFF]
        ^ table[9, src_port & 0xFF]
        ^ table[10, (dst_port >> 8) & 0xFF]
        ^ table[11, dst_port & 0xFF]
    )
    return np.int64(h) & 0xFFFFFFFF


@njit(inline="always", cache=True)
def rss_hash_frame_ipv4(table, buf, ip_off, l4_off):
    """RSS hash straight from packet bytes: the IPv4 header at ``ip_off``; ports at ``l4_off``.

    ``l4_off < 0`` gives the 2-tuple hash.  The caller has checked the bytes are there.  The
    addresses are bytes 12..19 of the IPv4 header, already in the hash's input order.
    """
    h = np.uint32(0)
    for i in range(RSS_IPV4_BYTES):
        h ^= table[i, buf[ip_off + 12 + i]]
    if l4_off >= 0:
        for i in range(4):
            h ^= table[RSS_IPV4_BYTES + i, buf[l4_off + i]]
    return np.int64(h) & 0xFFFFFFFF


@njit(inline="always", cache=True)
def rss_hash_frame_ipv4_at(tables, k, buf, ip_off, l4_off):
    """:func:`rss_hash_frame_ipv4` with table ``tables[k]`` of a stack of tables (one per port),
    without making a view (a view costs Numba a reference-count update per frame)."""
    h = np.uint32(0)
    for i in range(RSS_IPV4_BYTES):
        h ^= tables[k, i, buf[ip_off + 12 + i]]
    if l4_off >= 0:
        for i in range(4):
            h ^= tables[k, RSS_IPV4_BYTES + i, buf[l4_off + i]]
    return np.int64(h) & 0xFFFFFFFF
