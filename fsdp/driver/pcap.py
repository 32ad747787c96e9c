"""Packet capture: a classic pcap writer and a jitted per-core capture ring.

A core appends the frames it receives and sends to its own :class:`CaptureRing` from the poll
loop (:func:`capture_append`: a copy of up to ``snaplen`` bytes, never blocking: a full ring
counts a drop); Python drains rings into a :class:`PcapWriter` now and then
(:func:`capture_drain`).  Files are classic libpcap format (magic 0xa1b2c3d4, microsecond
timestamps, LINKTYPE_ETHERNET), readable by tcpdump, Wireshark and Scapy.
"""

from __future__ import annotations

import ipaddress
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


def capture_drain(ring: CaptureRing, writer: PcapWriter | None,
                  match: CaptureFilter | None = None) -> int:
    """Write every record in ``ring`` that ``match`` keeps (None or empty: all) to ``writer``
    (None: discard); returns how many records were taken."""
    records = capture_take(ring)
    if writer is not None:
        for ts_us, frame, orig_len in records:
            if not match or match.matches(frame):
                writer.write(frame, ts_us, orig_len)
    return len(records)


def capture_drops(ring: CaptureRing) -> int:
    return int(ring.meta[CAP_DROPS])


_PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}  # IPv4 protocol numbers; "arp" by EtherType


class CaptureFilter:
    """Which frames ``fsdp capture`` writes, as tcpdump's ``host``/``port``/protocol
    primitives: a frame matches when it matches every kind given (``--host A --port P`` is
    ``host A and port P``) and any one value of a kind (``--port 80 --port 443`` is
    ``port 80 or port 443``).  ``host`` is an IPv4 source or destination (an ARP frame's sender
    or target address); ``port`` a TCP or UDP source or destination port (the first fragment of
    a datagram carries them; later fragments do not match, as in tcpdump); ``proto`` one of
    tcp, udp, icmp, arp.  IPv6 frames (which fsdp drops, but receives) match ``port``, ``tcp``
    and ``udp`` as in tcpdump.  No value of any kind: every frame."""

    def __init__(self, hosts=(), ports=(), protos=()) -> None:
        try:
            self.hosts = {int(ipaddress.IPv4Address(h)) for h in hosts}
        except ValueError as e:
            raise ValueError(f"--host: {e} (an IPv4 address)") from None
        self.ports = set(ports)
        for p in self.ports:
            if not 0 <= p <= 65535:
                raise ValueError(f"--port {p}: not a port number (0-65535)")
        self.protos = set(protos)
        for p in self.protos:
            if p not in _PROTOCOLS and p != "arp":
                raise ValueError(f"--proto {p}: one of arp, icmp, tcp, udp")

    def __bool__(self) -> bool:
        return bool(self.hosts or self.ports or self.protos)

    def matches(self, frame: bytes) -> bool:
        if len(frame) < 14:
            return not self
        ethertype = int.from_bytes(frame[12:14], "big")
        if ethertype == 0x0806:  # ARP for IPv4 over Ethernet: addresses at 14+14 and 14+24
            if self.ports or (self.protos and "arp" not in self.protos):
                return False
            if not self.hosts:
                return True
            if len(frame) < 42:
                return False
            return (int.from_bytes(frame[28:32], "big") in self.hosts
                    or int.from_bytes(frame[38:42], "big") in self.hosts)
        if ethertype == 0x86DD:  # IPv6 (fsdp drops it, but a capture shows what arrived)
            return self._matches_ipv6(frame)
        if ethertype != 0x0800 or len(frame) < 34 or frame[14] >> 4 != 4:
            return not self
        proto = frame[23]
        if self.protos and not any(_PROTOCOLS.get(p) == proto for p in self.protos):
            return False
        if self.hosts and (int.from_bytes(frame[26:30], "big") not in self.hosts
                           and int.from_bytes(frame[30:34], "big") not in self.hosts):
            return False
        if self.ports:
            ihl = (frame[14] & 0x0F) * 4
            first_fragment = int.from_bytes(frame[20:22], "big") & 0x1FFF == 0
            at = 14 + ihl
            if proto not in (6, 17) or not first_fragment or len(frame) < at + 4:
                return False
            return (int.from_bytes(frame[at:at + 2], "big") in self.ports
                    or int.from_bytes(frame[at + 2:at + 4], "big") in self.ports)
        return True

    def _matches_ipv6(self, frame: bytes) -> bool:
        """As tcpdump: an IPv4 ``host`` never matches; ``tcp``/``udp`` and ``port`` look at the
        fixed header's next header only (no extension-header chain); ``icmp`` is ICMPv4."""
        if not self:
            return True
        if self.hosts or len(frame) < 54:
            return False
        nh = frame[20]
        if self.protos and not any(p in ("tcp", "udp") and _PROTOCOLS[p] == nh
                                   for p in self.protos):
            return False
        if self.ports:
            if nh not in (6, 17) or len(frame) < 58:
                return False
            return (int.from_bytes(frame[54:56], "big") in self.ports
                    or int.from_bytes(frame[56:58], "big") in self.ports)
        return True
