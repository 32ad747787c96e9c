"""Layout of a sim wire in shared memory: one file (or anonymous mapping) holds the whole switch.

::

    offset 0   header      int64[HDR_N]                 magic, version, geometry, attached-port
                                                         count, port generation
    (4 KiB aligned sections follow, in this order; the int64 ones form one "ctl" array)
    ports      int64[max_ports, PORT_NF]                state, pid, MAC, n_queues, promisc, offloads
    faults     int64[max_ports, FLT_NF]                 per-port egress fault configuration
    reta       int64[max_ports, RETA_SIZE]              per-port redirection table
    stats      int64[max_ports, max_queues, STAT_STRIDE] per-queue counters (SIMQ_STAT_*)
    fdir       int64[max_ports, fdir_size, FDIR_NF]     per-port exact-match Flow Director table
    bells      int64[max_ports, max_queues, BELL_STRIDE] per-queue doorbell: a futex word a sender
                                                         bumps and wakes when a thread polling
                                                         the queue sleeps (BELL_SLEEPERS > 0)
    ring_ctrl  int64[n_rings * RING_CTRL_STRIDE]        head (consumer) and tail (producer) of each
                                                         ring, each on its own 64-byte line
    rss_table  uint32[max_ports, 12, 256]               per-port Toeplitz lookup table (toeplitz.py)
    rss_key    uint8[max_ports, RSS_KEY_SLOT]           per-port key (40 bytes used)
    listen_map int64[max_ports, 65536]                  per-port global listen table: bit q of
                                                         [p, tcp_port] = queue q's core listens
    ring_data  uint8[n_rings * ring_slots * SLOT_SIZE]  slots: u16 length (LE), frame at SLOT_HDR

``n_rings = (max_ports * max_queues) ** 2``: one single-producer/single-consumer ring per
(sender port, tx queue) -> (receiver port, rx queue).  The layout is fixed by the geometry, so
every process maps every ring from the start; the file is sparse and a ring's pages are only
touched once it carries traffic.

The data path sees the wire as three arrays (``ctl``, ``rss_table``, ``ring_data``) plus word
offsets: every array a jitted function touches costs Numba an atomic reference-count update
when it is taken out of a NamedTuple, so the queue carries as few as possible.
"""

import numpy as np

from fsdp.driver.toeplitz import RETA_SIZE, RSS_IPV4_L4_BYTES
from fsdp.pool.pool import MAX_FRAME_LEN

SIM_MAGIC = 0x314D495350445346  # b"FSDPSIM1" little-endian
SIM_VERSION = 3  # bump when the layout changes
PAGE = 4096

# Header fields: int64 indices.
HDR_MAGIC = 0
HDR_VERSION = 1
HDR_MAX_PORTS = 2
HDR_MAX_QUEUES = 3
HDR_RING_SLOTS = 4
HDR_SLOT_SIZE = 5
HDR_FDIR_SIZE = 6
HDR_TOTAL_SIZE = 7
HDR_N_ATTACHED = 8  # live ports on the wire, all processes; the file is unlinked at 0
HDR_PORT_GEN = 9  # bumped on every attach/detach: queues rebuild their peer/source caches
HDR_READY = 10  # written last by the initializer
HDR_N = 64

# Port table fields.
PORT_STATE = 0  # PORT_FREE / PORT_ATTACHED
PORT_PID = 1  # owner process: a dead owner's port is reclaimed by the next attach
PORT_MAC = 2
PORT_N_QUEUES = 3
PORT_PROMISC = 4
PORT_RX_CSUM = 5  # verify checksums on receive, set FRAME_F_RX_CSUM_OK/BAD
PORT_TX_CSUM = 6  # fill in checksums of FRAME_F_TX_CSUM frames on transmit
PORT_FDIR_COUNT = 7  # installed Flow Director rules (0: skip the lookup)
PORT_NF = 16

PORT_FREE = 0
PORT_ATTACHED = 1

RSS_KEY_SLOT = 64

# A queue's doorbell (fsdp.driver.sim.queue_sleep, sim_dp._ring_bells).
BELL_SEQ = 0  # futex word (its low 32 bits): bumped by a sender that finds sleepers
BELL_SLEEPERS = 1  # threads asleep on BELL_SEQ (any process; several threads may poll a queue)
BELL_STRIDE = 8  # one 64-byte line per queue

# Flow Director entry fields.  A key is two words: (src ip << 32 | dst ip) and
# (FDIR_VALID | src port << 24 | dst port << 8 | proto).
FDIR_KEY_ADDR = 0
FDIR_KEY_PORTS = 1
FDIR_QUEUE = 2
FDIR_NF = 4
FDIR_VALID = 1 << 62
FDIR_MAX_LOAD_NUM = 3  # refuse rules beyond 3/4 full: linear probing stays short
FDIR_MAX_LOAD_DEN = 4

# Fault configuration fields (per port, applied to what the port transmits).  Probabilities are
# stored as thresholds on a 53-bit uniform draw: p * 2**53.
FLT_GEN = 0  # bumped by every set_faults(): queues reseed and reload
FLT_ON = 1
FLT_SEED = 2
FLT_DROP = 3
FLT_DUP = 4
FLT_REORDER = 5
FLT_CORRUPT = 6
FLT_DELAY_US = 7
FLT_JITTER_US = 8
FLT_RATE_BPS = 9
FLT_REORDER_US = 10  # how long a reordered frame is held back so later frames overtake it
FLT_CE_MARK = 11  # an ECN-capable IPv4 frame is marked CE (RFC 3168 §5), as an AQM router would
FLT_NF = 16
FLT_PROB_ONE = 1 << 53

# Per-queue counters (shared memory, one 256-byte row per queue).
SIMQ_STAT_TX_FRAMES = 0  # frames handed to tx_burst
SIMQ_STAT_TX_BYTES = 1
SIMQ_STAT_RX_FRAMES = 2  # frames delivered into the pool by rx_burst
SIMQ_STAT_RX_BYTES = 3
SIMQ_STAT_RING_FULL = 4  # copies dropped: the destination ring was full
SIMQ_STAT_FAULT_DROP = 5
SIMQ_STAT_FAULT_DUP = 6
SIMQ_STAT_FAULT_CORRUPT = 7
SIMQ_STAT_FAULT_REORDER = 8
SIMQ_STAT_FAULT_DELAY = 9  # frames that waited in the delay line (delay, jitter, rate, reorder)
SIMQ_STAT_DELAY_OVERFLOW = 10  # delay line full: dropped
SIMQ_STAT_NO_DEST = 11  # no port takes this destination MAC (unknown unicast, no promisc port)
SIMQ_STAT_RX_NOBUF = 12  # rx_burst found the pool empty (frames stay in the ring)
SIMQ_STAT_TX_BAD_LEN = 13  # dropped: longer than MAX_FRAME_LEN, or off/length outside the frame
SIMQ_STAT_WIRE_COPIES = 14  # copies written into rings (one per destination queue)
SIMQ_STAT_RX_CSUM_BAD = 15  # received with a bad checksum (rx_csum offload on)
SIMQ_STAT_TX_RUNT = 16  # sent shorter than an Ethernet header (carried anyway, to queue 0)
SIMQ_STAT_FAULT_CE = 17  # ECN-capable frames marked CE (FLT_CE_MARK)
SIMQ_STAT_N = 18
SIMQ_STAT_NAMES = (
    "tx_frames",
    "tx_bytes",
    "rx_frames",
    "rx_bytes",
    "ring_full",
    "fault_drop",
    "fault_dup",
    "fault_corrupt",
    "fault_reorder",
    "fault_delay",
    "delay_overflow",
    "no_dest",
    "rx_nobuf",
    "tx_bad_len",
    "wire_copies",
    "rx_csum_bad",
    "tx_runt",
    "fault_ce",
)
STAT_STRIDE = 32  # 256 bytes per queue: no two cores' counters share a cache line

RING_CTRL_STRIDE = 16  # int64 words per ring: head at +0, tail at +8 (separate cache lines)
RING_HEAD = 0
RING_TAIL = 8

SLOT_SIZE = 2048
SLOT_HDR = 64  # little-endian u16 length at bytes 0-1; the frame starts cache-line aligned
assert SLOT_HDR + MAX_FRAME_LEN <= SLOT_SIZE

DEFAULT_MAX_PORTS = 8
DEFAULT_MAX_QUEUES = 16
DEFAULT_RING_SLOTS = 256
DEFAULT_FDIR_SIZE = 4096

RSS_ROWS = RSS_IPV4_L4_BYTES


def _align(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def check_geometry(max_ports: int, max_queues: int, ring_slots: int, fdir_size: int) -> None:
    """ValueError unless the geometry is usable."""
    for name, v, lo, hi in (
        ("max_ports", max_ports, 2, 64),
        ("max_queues", max_queues, 1, 64),
        ("ring_slots", ring_slots, 2, 1 << 16),
        ("fdir_size", fdir_size, 4, 1 << 20),
    ):
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an int in [{lo}, {hi}], not {v!r}")
    if not _is_pow2(ring_slots):
        raise ValueError(f"ring_slots must be a power of two, not {ring_slots}")
    if not _is_pow2(fdir_size):
        raise ValueError(f"fdir_size must be a power of two, not {fdir_size}")


def wire_layout(max_ports: int, max_queues: int, ring_slots: int, fdir_size: int) -> dict:
    """``{section: (byte offset, dtype, shape)}`` plus ``"total"``: the size of the wire."""
    n_rings = (max_ports * max_queues) ** 2
    sections = [
        ("header", np.int64, (HDR_N,)),
        ("ports", np.int64, (max_ports, PORT_NF)),
        ("faults", np.int64, (max_ports, FLT_NF)),
        ("reta", np.int64, (max_ports, RETA_SIZE)),
        ("stats", np.int64, (max_ports, max_queues, STAT_STRIDE)),
        ("fdir", np.int64, (max_ports, fdir_size, FDIR_NF)),
        ("bells", np.int64, (max_ports, max_queues, BELL_STRIDE)),
        ("ring_ctrl", np.int64, (n_rings * RING_CTRL_STRIDE,)),
        ("rss_table", np.uint32, (max_ports, RSS_ROWS, 256)),
        ("rss_key", np.uint8, (max_ports, RSS_KEY_SLOT)),
        ("listen_map", np.int64, (max_ports, 65536)),
        ("ring_data", np.uint8, (n_rings * ring_slots * SLOT_SIZE,)),
    ]
    layout = {}
    off = 0
    for name, dtype, shape in sections:
        layout[name] = (off, dtype, shape)
        off = _align(off + int(np.prod(shape)) * np.dtype(dtype).itemsize)
    layout["total"] = off
    layout["n_rings"] = n_rings
    return layout


def map_sections(buf, layout: dict) -> dict:
    """numpy views of every section of a mapped wire ``buf`` (an mmap)."""
    views = {}
    for name, entry in layout.items():
        if not isinstance(entry, tuple):
            continue
        off, dtype, shape = entry
        count = int(np.prod(shape))
        views[name] = np.frombuffer(buf, dtype=dtype, count=count, offset=off).reshape(shape)
    # The data path's single int64 array over every int64 section (header .. ring_ctrl).
    ctl_end = layout["ring_ctrl"][0] + int(np.prod(layout["ring_ctrl"][2])) * 8
    views["ctl"] = np.frombuffer(buf, dtype=np.int64, count=ctl_end // 8, offset=0)
    return views


def ctl_offset(layout: dict, section: str) -> int:
    """Word offset of an int64 section inside the ``ctl`` array."""
    off, dtype, _ = layout[section]
    assert dtype == np.int64 and off % 8 == 0
    return off // 8
