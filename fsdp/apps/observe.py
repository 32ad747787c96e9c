"""``fsdp stat`` and ``fsdp ss``: the counters and connection tables of running stacks, read
from their shared-memory stats segments (fsdp.core.statseg) by another process, like
``netstat -s`` and ``ss -tan`` read the kernel's.

Pure Python (listed in fsdp._jitcache._PURE_PYTHON).
"""

from __future__ import annotations

import ipaddress
import json
import sys

import numpy as np

from fsdp.core.statseg import live_segments


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
