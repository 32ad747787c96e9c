"""Packet capture: a classic pcap writer and a jitted per-core capture ring.

A core appends the frames it receives and sends to its own :class:`CaptureRing` from the poll
loop (:func:`capture_append`: a copy of up to ``snaplen`` bytes, never blocking: a full ring
counts a drop); Python drains rings into a :class:`PcapWriter` now and then
(:func:`capture_drain`).  Files are classic libpcap format (magic 0xa1b2c3d4, microsecond
timestamps, LINKTYPE_ETHERNET), readable by tcpdump, Wireshark and Scapy.
"""

from __future__ import annotations

import struct
from typing import BinaryIO, NamedTuple

import numpy as np
from numba import njit

from fsdp.atomic import load_acquire, store_release
from fsdp.driver.jitmem import borrow, copy_bytes

PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
PCAP_VERSION = (2, 4)
LINKTYPE_ETHERNET = 1

# Record size of the ring a stack's stats segment holds for `fsdp capture`: a whole frame of the
# packet pool (2 KiB buffers), so nothing is cut.
SHARED_CAPTURE_SNAPLEN = 2048

CAPTURE_DIR_RX = 0
CAPTURE_DIR_TX = 1

# CaptureRing.meta indices
CAP_HEAD = 0  # next record to drain (free-running; written by the consumer)
CAP_TAIL = 1  # next record to write (free-running; written by the core, after the record)
CAP_DROPS = 2  # records lost because the ring was full
CAP_OWNER = 3  # pid of the process draining a shared ring (`fsdp capture`), 0 for none
CAP_META_N = 4


class PcapWriter:
    """Write Ethernet frames to a classic pcap file (or an open binary file object)."""

    def __init__(self, path_or_file: str | BinaryIO, snaplen: int = 65535):
        if not isinstance(snaplen, int) or not 1 <= snaplen <= 0x3FFFFFFF:
            raise ValueError(f"snaplen must be a positive int, not {snaplen!r}")
        self.snaplen = snaplen
        if isinstance(path_or_file, (str, bytes)) or hasattr(path_or_file, "__fspath__"):
            self._file = open(path_or_file, "wb")  # noqa: SIM115 - closed by close()
            self._owns = True
        else:
            self._file = path_or_file
            self._owns = False
        self.frames = 0
        self._file.write(
            struct.pack("<IHHiIII", PCAP_MAGIC, *PCAP_VERSION, 0, 0, snaplen, LINKTYPE_ETHERNET)
        )

    def write(self, frame: bytes, ts_us: int, orig_len: int | None = None) -> None:
        """One record: ``frame`` (cut to snaplen) captured at ``ts_us`` microseconds."""
        data = bytes(frame)
        wire_len = len(data) if orig_len is None else orig_len
        data = data[: self.snaplen]
        ts_us = int(ts_us)
        self._file.write(
            struct.pack("<IIII", ts_us // 1_000_000, ts_us % 1_000_000, len(data), wire_len)
        )
        self._file.write(data)
        self.frames += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        if self._owns:
            self._file.close()
        else:
            self._file.flush()
        self._file = None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CaptureRing(NamedTuple):
    """A core's capture ring: ``slots`` records of up to ``snaplen`` bytes each."""

    data: np.ndarray  # uint8[slots, snaplen]
    length: np.ndarray  # int32[slots]: bytes stored
    orig_len: np.ndarray  # int32[slots]: the frame's length on the wire
    ts: np.ndarray  # int64[slots]: microseconds
    direction: np.ndarray  # uint8[slots]: CAPTURE_DIR_RX / CAPTURE_DIR_TX
    meta: np.ndarray  # int64[CAP_META_N]


def capture_ring_create(slots: int = 1024, snaplen: int = 2048) -> CaptureRing:
    if not isinstance(slots, int) or slots < 1:
        raise ValueError(f"slots must be a positive int, not {slots!r}")
    if not isinstance(snaplen, int) or snaplen < 1:
        raise ValueError(f"snaplen must be a positive int, not {snaplen!r}")
    return CaptureRing(
        data=np.zeros((slots, snaplen), np.uint8),
        length=np.zeros(slots, np.int32),
        orig_len=np.zeros(slots, np.int32),
        ts=np.zeros(slots, np.int64),
        direction=np.zeros(slots, np.uint8),
        meta=np.zeros(CAP_META_N, np.int64),
    )


@njit(cache=True, nogil=True)
def capture_append(ring, buf, off, n, ts_us, direction):
    """Record ``buf[off:off+n]`` (cut to snaplen); False (a counted drop) if the ring is full."""
    # Straight-line wrapper over borrowed arrays: no per-frame reference counting (jitmem.py).
    return _capture_append(
        borrow(ring.data), borrow(ring.length), borrow(ring.orig_len), borrow(ring.ts),
        borrow(ring.direction), borrow(ring.meta), borrow(buf), off, n, ts_us, direction,
    )  # fmt: skip


@njit(cache=True)
def _capture_append(data, length, orig_len, ts, dirs, meta, buf, off, n, ts_us, direction):
    # The ring may be drained by another process (``fsdp capture``, a ring in the stack's stats
    # segment): the record is written before the tail that publishes it (a release store), and
    # the consumer's head is read before the slot it frees is reused (an acquire load).
    slots = length.shape[0]
    head = load_acquire(meta, CAP_HEAD)
    tail = meta[CAP_TAIL]
    if tail - head >= slots:
        meta[CAP_DROPS] += 1
        return False
    s = tail % slots
    k = min(n, data.shape[1])
    if k > 0:
        copy_bytes(data, s * data.shape[1], buf, off, k)
    length[s] = k
    orig_len[s] = n
    ts[s] = ts_us
    dirs[s] = direction
    store_release(meta, CAP_TAIL, tail + 1)
    return True


def capture_take(ring: CaptureRing) -> list[tuple[int, bytes, int]]:
    """Take every record in ``ring``, oldest first: (timestamp µs, bytes, length on the wire).

    The core writes records and publishes them by its tail (``_capture_append``); this reads the
    tail, then the records, then frees them by writing the head.  On x86-64 (the rings' only
    target so far: see fsdp.atomic) plain loads and stores keep that order, so the consumer may
    be another process mapping the ring (``fsdp capture``)."""
    head = int(ring.meta[CAP_HEAD])
    tail = int(ring.meta[CAP_TAIL])
    slots = ring.length.shape[0]
    out = []
    for i in range(head, tail):
        s = i % slots
        k = int(ring.length[s])
        out.append((int(ring.ts[s]), ring.data[s, :k].tobytes(), int(ring.orig_len[s])))
    ring.meta[CAP_HEAD] = tail
    return out


def capture_drain(ring: CaptureRing, writer: PcapWriter | None) -> int:
    """Write every record in ``ring`` to ``writer`` (None: discard); returns how many."""
    records = capture_take(ring)
    if writer is not None:
        for ts_us, frame, orig_len in records:
            writer.write(frame, ts_us, orig_len)
    return len(records)


def capture_drops(ring: CaptureRing) -> int:
    return int(ring.meta[CAP_DROPS])
