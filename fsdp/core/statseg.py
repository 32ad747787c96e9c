"""The shared-memory stats segment: a running stack's counters and connection tables, readable
from another process (``fsdp stat``, ``fsdp ss``), like ``netstat -s`` and ``ss`` read the
kernel's.

A :class:`fsdp.Stack` made with ``stats_segment=True`` (the default) moves each core's counters
(``stats``), TCB tables (``tcb.hot``, ``tcb.cold``) and listen table (``listen.rec``) into one
file in the sim NIC's shared-memory directory (``/dev/shm/fsdp`` where it has room), named
``stat-<pid>-<n>``.  The engine keeps writing them where it always did: there is no copy and no
extra work on the data path.  Layout: a 4 KiB page (magic, then the offset and length of the
description), the arrays (each page aligned), then the description: JSON with the pid, stack
address, NIC, cores, counter names, and every array's name, dtype, shape and offset.  A reader maps
the file read-only; what it sees is a live, unlocked view (a row may be mid-update, as with
/proc/net/tcp).  The file is removed when the stack closes; one left by a process that died is
removed by the next reader that finds it.
"""

from __future__ import annotations

import glob
import json
import mmap
import os
import time

import numpy as np

MAGIC = b"FSDPSTAT1\n"
HEADER_SIZE = 4096
_PAGE = 4096
_counter = iter(range(1 << 30))


def _dtype_spec(dt: np.dtype):
    return dt.descr if dt.names else dt.str


def _dtype_from(spec) -> np.dtype:
    if isinstance(spec, str):
        return np.dtype(spec)
    return np.dtype([tuple(f) if len(f) == 2 else (f[0], f[1], tuple(f[2])) for f in spec])


class StatsSegment:
    """The writer's side: a file holding ``arrays`` (copied in once); ``views[name]`` are the
    arrays the stack must use from then on."""

    def __init__(self, info: dict, arrays: dict[str, np.ndarray]):
        from fsdp.driver.sim import shm_path

        layout = []
        off = HEADER_SIZE
        for name, a in arrays.items():
            layout.append({"name": name, "dtype": _dtype_spec(a.dtype), "shape": list(a.shape),
                           "offset": off})
            off += -(-a.nbytes // _PAGE) * _PAGE
        header = dict(info, pid=os.getpid(), created=time.time(), arrays=layout)
        blob = json.dumps(header).encode()
        json_off = off
        size = off + len(blob)
        self.path = shm_path(f"stat-{os.getpid()}-{next(_counter)}", size)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.views: dict[str, np.ndarray] = {}
        for item, (name, a) in zip(layout, arrays.items(), strict=True):
            v = np.ndarray(a.shape, a.dtype, buffer=self._map, offset=item["offset"])
            raw = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            if raw.any():  # (tmpfs pages stay unallocated where an array is all zeros)
                np.frombuffer(self._map, np.uint8, a.nbytes, item["offset"])[:] = raw
            if isinstance(a, np.recarray):
                v = v.view(np.recarray)
            self.views[name] = v
        self._map[json_off:size] = blob
        m = len(MAGIC)
        self._map[m : m + 8] = json_off.to_bytes(8, "little")
        self._map[m + 8 : m + 16] = len(blob).to_bytes(8, "little")
        self._map[:m] = MAGIC  # last: a reader that sees the magic sees the rest

    def close(self) -> None:
        """Remove the file (the stack's arrays stay valid: the mapping lives on with them)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def read_segment(path: str, writable: bool = False) -> tuple[dict, dict[str, np.ndarray]] | None:
    """(header, arrays) of one segment, or None if it is gone or not a segment.  The arrays are
    read-only unless ``writable`` (what ``fsdp capture`` needs to switch a capture on; a
    PermissionError says the file is another user's).  ``header["path"]`` is the file."""
    try:
        with open(path, "r+b" if writable else "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_WRITE if writable
                          else mmap.ACCESS_READ)
    except PermissionError:
        if writable:
            raise
        return None
    except (FileNotFoundError, ValueError, OSError):
        return None
    k = len(MAGIC)
    if len(m) < HEADER_SIZE or m[:k] != MAGIC:
        return None
    json_off = int.from_bytes(m[k : k + 8], "little")
    n = int.from_bytes(m[k + 8 : k + 16], "little")
    header = json.loads(m[json_off : json_off + n])
    header["path"] = path
    arrays = {}
    for item in header["arrays"]:
        dt = _dtype_from(item["dtype"])
        a = np.ndarray(tuple(item["shape"]), dt, buffer=m, offset=item["offset"])
        arrays[item["name"]] = a.view(np.recarray) if dt.names else a
    return header, arrays


def live_segments(pid: int | None = None) -> list[tuple[dict, dict[str, np.ndarray]]]:
    """Every running stack's segment (of process ``pid`` only, if given), oldest first; files
    of dead processes are removed."""
    from fsdp.driver.sim import _pid_alive, shm_dirs  # (the sim reclaims dead ports the same way)

    found = []
    for d in shm_dirs():
        for path in glob.glob(os.path.join(d, "stat-*-*")):
            try:
                owner = int(os.path.basename(path).split("-")[1])
            except (IndexError, ValueError):
                continue
            if not _pid_alive(owner):
                try:
                    os.unlink(path)
                except OSError:
                    pass
                continue
            if pid is not None and owner != pid:
                continue
            seg = read_segment(path)
            if seg is not None:
                found.append(seg)
    found.sort(key=lambda s: (s[0]["created"], s[0]["pid"]))
    return found
