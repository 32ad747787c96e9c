"""``fsdp stat`` and ``fsdp ss``: the counters and connection tables of running stacks, read
from their shared-memory stats segments (fsdp.core.statseg) by another process, like
``netstat -s`` and ``ss -tan`` read the kernel's.

Pure Python (listed in fsdp._jitcache._PURE_PYTHON).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from fsdp.core.statseg import live_segments

if TYPE_CHECKING:
    from fsdp.driver.pcap import CaptureFilter


def _cores(header: dict, arrays: dict) -> list[int]:
    return list(range(int(header["cores"])))


def _core_id(header: dict, arrays: dict, i: int) -> int:
    return int(arrays[f"core{i}.cfg"][header["cfg_core_id"]])


def stack_counters(header: dict, arrays: dict) -> dict:
    """{name: total} over the stack's cores, and ``per_core``."""
    names = header["stat_names"]
    per_core = []
    for i in _cores(header, arrays):
        st = np.array(arrays[f"core{i}.stats"])  # one snapshot per core
        per_core.append({n: int(st[k]) for k, n in enumerate(names)})
    total = {n: sum(c[n] for c in per_core) for n in names}
    return {"counters": total, "per_core": per_core}


def _addr(ip: int, port: int) -> str:
    return f"{ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)}:{int(port)}"


def stack_sockets(header: dict, arrays: dict) -> list[dict]:
    """Connections (every state but CLOSED) and listeners of every core of one stack."""
    from fsdp.tcp.listen import LS_LISTEN
    from fsdp.tcp.tcb import TCPS_CLOSED, TCPS_NAMES

    rows = []
    for i in _cores(header, arrays):
        core = _core_id(header, arrays, i)
        ls = arrays[f"core{i}.listen"]
        for lid in np.nonzero(np.asarray(ls.state) == LS_LISTEN)[0]:
            r = ls[lid]
            rows.append({
                "state": "LISTEN", "recv_q": int(r.acc_count), "send_q": int(r.backlog),
                "local": _addr(r.lip, r.lport), "peer": "0.0.0.0:*", "core": core,
                "pid": header["pid"],
            })
        hot, cold = arrays[f"core{i}.tcb_hot"], arrays[f"core{i}.tcb_cold"]
        for cid in np.nonzero(np.asarray(hot.state) != TCPS_CLOSED)[0]:
            h, c = hot[cid], cold[cid]
            st = int(h.state)
            rows.append({
                "state": TCPS_NAMES[st] if 0 <= st < len(TCPS_NAMES) else str(st),
                "recv_q": int(h.rcv_q_bytes), "send_q": int(h.snd_q_bytes),
                "local": _addr(c.lip, c.lport), "peer": _addr(c.rip, c.rport), "core": core,
                "pid": header["pid"],
            })
    return rows


def _segments(pid: int | None):
    segs = live_segments(pid)
    if not segs:
        who = f"process {pid}" if pid is not None else "this machine"
        raise RuntimeError(f"no running fsdp stack found on {who} (stats_segment off, or none "
                           "started)")
    return segs


def nic_counters(header: dict) -> dict | None:
    """The counters the stack's NIC keeps for its queues (``sim``: fsdp.driver.sim's
    SIMQ_STAT_*: ring_full counts frames a queue sent that found the receiving ring full, as
    a NIC's rx_missed counts them at the receiver), summed; None for a NIC without any."""
    sources = [x for x in header.get("nic_counters") or [] if x is not None]
    if not sources:
        return None
    from fsdp.driver.sim import read_queue_counters

    return read_queue_counters(sources)


def run_stat(pid: int | None = None, as_json: bool = False, show_zero: bool = False) -> int:
    """``fsdp stat``: each running stack's counters (non-zero ones unless ``show_zero``), then
    its NIC's (``nic_counters``)."""
    out = []
    for header, arrays in _segments(pid):
        c = stack_counters(header, arrays)
        out.append({"pid": header["pid"], "ip": header["ip"], "nic": header["nic"],
                    "cores": header["cores"], **c, "nic_counters": nic_counters(header)})
    if as_json:
        print(json.dumps(out))
        return 0
    for s in out:
        print(f"pid {s['pid']}  {s['ip']}  {s['nic']}  {s['cores']} core(s)")
        for name, v in s["counters"].items():
            if v or show_zero:
                print(f"    {v:>14,}  {name}")
        for name, v in (s["nic_counters"] or {}).items():
            if v or show_zero:
                print(f"    {v:>14,}  nic {name}")
    return 0


def run_ss(pid: int | None = None, listening: bool = False, all_states: bool = False,
           as_json: bool = False) -> int:
    """``fsdp ss``: connections (``-l``: listeners; ``-a``: both) of every running stack."""
    rows = []
    for header, arrays in _segments(pid):
        rows.extend(stack_sockets(header, arrays))
    if not all_states:
        rows = [r for r in rows if (r["state"] == "LISTEN") == listening]
    if as_json:
        print(json.dumps(rows))
        return 0
    w = sys.stdout.write
    w(f"{'State':<12} {'Recv-Q':>7} {'Send-Q':>7} {'Local Address:Port':<22} "
      f"{'Peer Address:Port':<22} {'pid':>7} {'core':>4}\n")
    for r in rows:
        w(f"{r['state']:<12} {r['recv_q']:>7} {r['send_q']:>7} {r['local']:<22} "
          f"{r['peer']:<22} {r['pid']:>7} {r['core']:>4}\n")
    return 0


def _capture_targets(pids: list[int] | None, all_stacks: bool) -> list[tuple[dict, dict]]:
    """The segments ``fsdp capture`` drains: those of ``pids``, every one with ``all_stacks``,
    else the only running stack (more than one is an error naming them)."""
    if pids:
        segs = [seg for p in dict.fromkeys(pids) for seg in _segments(p)]
    else:
        segs = _segments(None)
        if len(segs) > 1 and not all_stacks:
            names = ", ".join(f"pid {h['pid']} {h['ip']}" for h, _ in segs[:6])
            raise RuntimeError(f"{len(segs)} fsdp stacks are running ({names}"
                               f"{', ...' if len(segs) > 6 else ''}): choose with --pid P "
                               "or --all")
    return segs


class _Capture:
    """One stack's shared capture rings, claimed for this process: an exclusive lock on the
    segment file (a second `fsdp capture` is refused; a killed one releases it), this pid in
    each ring's CAP_OWNER (what the stack's own Stack.capture() checks), capture switched on."""

    def __init__(self, header: dict):
        import fcntl

        from fsdp.core.statseg import read_segment
        from fsdp.driver.pcap import CAP_DROPS, CAP_HEAD, CAP_OWNER, CAP_TAIL, CaptureRing

        who = f"pid {header['pid']}'s stack ({header['ip']})"
        if not header.get("capture_slots"):
            raise RuntimeError(f"{who} has no capture ring (made with capture_slots=0, or by "
                               "an older fsdp)")
        try:
            seg = read_segment(header["path"], writable=True)
        except PermissionError:
            raise RuntimeError(f"no permission to capture {who}: run as its user") from None
        if seg is None:
            raise RuntimeError(f"{who} exited")
        self.header, arrays = seg
        self._lock = open(header["path"], "rb")  # noqa: SIM115 - closed by release()
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"{who} is already being captured by another fsdp capture") \
                from None
        n = int(self.header["cores"])
        self._cfg = [arrays[f"core{i}.cfg"] for i in range(n)]
        self.rings = [CaptureRing(*(arrays[f"core{i}.capture_{f}"] for f in CaptureRing._fields))
                      for i in range(n)]
        flag = int(self.header["cfg_capture"])
        if any(int(c[flag]) for c in self._cfg) and not any(
                int(r.meta[CAP_OWNER]) for r in self.rings):
            self._lock.close()
            raise RuntimeError(f"{who} is capturing itself (Stack.capture)")
        self._flag = flag
        self.drops0 = []
        for ring, cfg in zip(self.rings, self._cfg, strict=True):
            ring.meta[CAP_OWNER] = os.getpid()
            ring.meta[CAP_HEAD] = ring.meta[CAP_TAIL]  # (what a killed capture left: not ours)
            self.drops0.append(int(ring.meta[CAP_DROPS]))
            cfg[flag] = 1
        # the ring's timestamps are the stack's clock: CLOCK_MONOTONIC µs, or virtual time
        self.ts_offset_us = (time.time_ns() - time.monotonic_ns()) // 1000 \
            if self.header.get("host_clock", True) else 0

    def alive(self) -> bool:
        from fsdp.driver.sim import _pid_alive

        return _pid_alive(int(self.header["pid"])) and os.path.exists(self.header["path"])

    def stop(self) -> None:
        from fsdp.driver.pcap import CAP_OWNER

        for ring, cfg in zip(self.rings, self._cfg, strict=True):
            cfg[self._flag] = 0
            ring.meta[CAP_OWNER] = 0

    def dropped(self) -> int:
        from fsdp.driver.pcap import CAP_DROPS

        return sum(int(r.meta[CAP_DROPS]) - d for r, d in zip(self.rings, self.drops0,
                                                               strict=True))

    def release(self) -> None:
        self._lock.close()


def run_capture(out: str, pids: list[int] | None = None, all_stacks: bool = False,
                count: int | None = None, seconds: float | None = None,
                poll_s: float = 0.002, match: CaptureFilter | None = None,
                snaplen: int | None = None) -> int:
    """``fsdp capture --out FILE.pcap``: the frames running stacks receive and send, from their
    shared capture rings, into a pcap file (like ``tcpdump -w``), until ``count`` frames,
    ``seconds``, SIGINT/SIGTERM or the stacks' exit.  Frames of several cores or stacks are
    merged in timestamp order batch by batch.  ``match`` keeps only the frames it matches
    (``count`` counts those); the cores still copy every frame into their rings, so a filter
    does not make a busy stack's ring drop less.  ``snaplen`` cuts each written frame to that
    many bytes (tcpdump's ``-s``; the record keeps the length on the wire); the rings hold
    up to SHARED_CAPTURE_SNAPLEN of each frame, so a larger one changes nothing."""
    import signal

    from fsdp.driver.pcap import SHARED_CAPTURE_SNAPLEN, PcapWriter, capture_take

    captures: list[_Capture] = []
    writer = None
    try:
        for header, _ in _capture_targets(pids, all_stacks):
            captures.append(_Capture(header))
        writer = PcapWriter(out, snaplen=min(snaplen or SHARED_CAPTURE_SNAPLEN,
                                             SHARED_CAPTURE_SNAPLEN))
    except BaseException:
        for c in captures:
            c.stop()
            c.release()
        raise
    written = filtered = 0

    def drain() -> bool:
        """Write what the rings hold; True once ``count`` frames are written."""
        nonlocal written, filtered
        batch = []
        for c in captures:
            for ring in c.rings:
                batch.extend((ts + c.ts_offset_us, frame, n) for ts, frame, n in capture_take(ring))
        batch.sort(key=lambda r: r[0])  # (stable: a core's own order stays)
        for ts, frame, n in batch:
            if count is not None and written >= count:
                break
            if match and not match.matches(frame):
                filtered += 1
                continue
            writer.write(frame, ts, n)
            written += 1
        if batch:
            writer.flush()
        return count is not None and written >= count

    stop = []
    handlers = {sig: signal.signal(sig, lambda *_: stop.append(1))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"fsdp capture: writing {out} from "
          + ", ".join(f"pid {c.header['pid']} ({c.header['ip']})" for c in captures)
          + "; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        deadline = None if seconds is None else time.monotonic() + seconds
        done = False
        while not stop and not done:
            done = drain()
            if deadline is not None and time.monotonic() >= deadline:
                break
            if not all(c.alive() for c in captures):
                break
            time.sleep(poll_s)
    finally:
        for c in captures:
            c.stop()
        if not done:
            drain()  # what the cores wrote before they saw the switch go off
        writer.close()
        for sig, h in handlers.items():
            signal.signal(sig, h)
        dropped = sum(c.dropped() for c in captures)
        for c in captures:
            c.release()
    print(f"fsdp capture: {written} frames written to {out}"
          + (f", {filtered} filtered out" if match else "")
          + f", {dropped} dropped (capture ring full)", file=sys.stderr)
    return 0
