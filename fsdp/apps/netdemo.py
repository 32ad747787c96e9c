"""The end-to-end demonstration available today: two fsdp hosts on one ``sim`` wire.

Host A pings host B: A's first echo request waits on an ARP resolution (broadcast request,
B learns A and replies), then echo requests and replies flow.  Prints the RTTs, both neighbour
tables and the counters that moved; ``--pcap`` writes what A saw and sent.
"""

from __future__ import annotations

import json
import os
import statistics

from fsdp.core.stack import Stack


def run_netdemo(count: int = 5, size: int = 56, pcap: str | None = None,
                as_json: bool = False) -> int:
    if count < 1 or count > 100_000:
        raise ValueError(f"--count must be between 1 and 100000, not {count}")
    if size < 0 or size > 1472:
        raise ValueError(f"--size must be between 0 and 1472, not {size}")
    wire = f"sim:netdemo-{os.getpid()}"
    with Stack(nic=wire, ip="10.0.0.1/24") as a, Stack(nic=wire, ip="10.0.0.2/24") as b:
        if pcap:
            a.capture(pcap)
        print(f"host A {a.ip} ({_mac(a.mac)})  <-- sim wire {wire[4:]} -->  "
              f"host B {b.ip} ({_mac(b.mac)})")
        print(f"PING {b.ip} from {a.ip}: {size} data bytes")
        rtts = a.ping(b.ip, count, size=size, timeout=1.0)
        for seq, rtt in enumerate(rtts):
            if rtt is None:
                print(f"  seq={seq}: no reply")
            else:
                print(f"  {size + 8} bytes from {b.ip}: icmp_seq={seq} time={rtt * 1e6:.1f} us")
        got = [r for r in rtts if r is not None]
        loss = 100.0 * (count - len(got)) / count
        print(f"--- {count} transmitted, {len(got)} received, {loss:.0f}% loss", end="")
        if got:
            us = [r * 1e6 for r in got]
            print(f", rtt min/median/max = {min(us):.1f}/{statistics.median(us):.1f}/"
                  f"{max(us):.1f} us (first includes ARP resolution)")
        else:
            print()
        print("\nneighbour tables:")
        for name, s in (("A", a), ("B", b)):
            for n in s.neighbors():
                print(f"  {name} core {n['core']}: {n['ip']:<12} {n['mac']}  {n['state']}")
        print("\ncounters (A / B):")
        sa, sb = a.stats(), b.stats()
        keys = [k for k in sa if k != "per_core" and (sa[k] or sb[k]) and not k.startswith("pool")]
        for k in keys:
            print(f"  {k:<28} {sa[k]:>8} {sb[k]:>8}")
        a.audit()
        b.audit()
        if pcap:
            a.stop_capture()
            print(f"\ncapture of host A written to {pcap}")
        result = {
            "transmitted": count, "received": len(got), "loss_pct": loss,
            "rtt_us": [None if r is None else round(r * 1e6, 1) for r in rtts],
            "arp_requests": sa["arp_requests_out"], "arp_replies": sb["arp_replies_out"],
        }
        if as_json:
            print(json.dumps(result))
        return 0 if got else 1


def _mac(v: int) -> str:
    from fsdp.wire.ethernet import mac_to_str

    return mac_to_str(v)
