"""fsdp stat / fsdp ss: another process reads a running stack's counters and connection tables
from its shared-memory stats segment (fsdp.core.statseg)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import fsdp
from fsdp.core.statseg import live_segments

ROOT = Path(__file__).resolve().parents[2]


def _fsdp(*argv):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "fsdp", *argv], capture_output=True, text=True,
                          timeout=300, env=env, cwd=ROOT)


def test_stat_and_ss_read_a_running_stack_from_another_process():
    wire = f"sim:obs-{os.getpid()}"
    me = str(os.getpid())
    with fsdp.Stack(nic=wire, ip="10.4.0.1/24") as srv, \
            fsdp.Stack(nic=wire, ip="10.4.0.2/24", cores=2) as cli:
        ls = srv.socket()
        ls.bind(("0.0.0.0", 8080))
        ls.listen(16)
        ls.settimeout(5)
        c = cli.socket()
        c.settimeout(5)
        c.connect(("10.4.0.1", 8080))
        a, _ = ls.accept()
        c.sendall(b"hello")
        for _ in range(5):
            srv.poll()
            cli.poll()

        r = _fsdp("stat", "--pid", me, "--json")
        assert r.returncode == 0, r.stderr
        stacks = {s["ip"]: s for s in json.loads(r.stdout)}
        # (a stack an earlier test dropped without close() may still await collection)
        assert {"10.4.0.1/24", "10.4.0.2/24"} <= set(stacks)
        assert stacks["10.4.0.1/24"]["counters"] == {
            k: v for k, v in srv.stats().items() if k in stacks["10.4.0.1/24"]["counters"]}
        assert stacks["10.4.0.2/24"]["cores"] == 2
        assert len(stacks["10.4.0.2/24"]["per_core"]) == 2
        assert stacks["10.4.0.1/24"]["counters"]["tcp_passive_opens"] == 1

        r = _fsdp("ss", "--pid", me, "-a", "--json")
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        listen = [x for x in rows if x["state"] == "LISTEN"]
        assert listen == [{"state": "LISTEN", "recv_q": 0, "send_q": 16, "local": "0.0.0.0:8080",
                           "peer": "0.0.0.0:*", "core": 0, "pid": os.getpid()}]
        lport = c.getsockname()[1]
        est = {(x["local"], x["peer"]): x for x in rows if x["state"] == "ESTAB"}
        assert est[("10.4.0.1:8080", f"10.4.0.2:{lport}")]["recv_q"] == 5  # unread "hello"
        assert est[(f"10.4.0.2:{lport}", "10.4.0.1:8080")]["core"] == c._core

        r = _fsdp("ss", "--pid", me)  # the table: connections, not listeners
        assert r.returncode == 0 and "ESTAB" in r.stdout and "LISTEN" not in r.stdout
        a.close()
        c.close()
    r = _fsdp("stat", "--pid", me, "--json")  # both stacks closed: their segments are gone
    if r.returncode == 0:  # another test's stack still lives in this process
        assert not {"10.4.0.1/24", "10.4.0.2/24"} & {s["ip"] for s in json.loads(r.stdout)}
    else:
        assert r.returncode == 1 and r.stderr.count("\n") == 1
        assert "no running fsdp stack" in r.stderr


def test_a_dead_process_segment_is_removed_by_the_next_reader(fresh_wire):
    code = (f"import os, fsdp; s = fsdp.Stack(nic='sim:{fresh_wire}', ip='10.4.1.1/24'); "
            "print(os.getpid(), flush=True); os._exit(0)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, cwd=ROOT, check=True).stdout
    pid = int(out.split()[-1])
    assert live_segments(pid) == []  # its process is gone: found, removed, not listed
    from fsdp.driver.sim import shm_dirs

    assert not any(n.startswith(f"stat-{pid}-") for d in shm_dirs() if os.path.isdir(d)
                   for n in os.listdir(d))


def test_off_switch_publishes_nothing():
    with fsdp.Stack(nic=f"sim:obs-off-{os.getpid()}", ip="10.4.2.1/24", stats_segment=False):
        assert all(h["ip"] != "10.4.2.1/24" for h, _ in live_segments(os.getpid()))


def test_stat_shows_the_nics_counters_ring_full_included():
    """A receiver that does not poll while 16 frames come at its 4-slot ring: the sender's
    queue counts the 12 that found it full, and fsdp stat shows them (with the frames sent)
    beside the stack's own counters, read from the wire's file by another process."""
    from fsdp.driver.sim import SimWire

    name = f"obs-nic-{os.getpid()}"
    wire = SimWire.open(name, ring_slots=4)  # the stacks attach to it as it is
    try:
        with fsdp.Stack(nic=f"sim:{name}", ip="10.4.3.1/24") as a, \
                fsdp.Stack(nic=f"sim:{name}", ip="10.4.3.2/24") as b:
            sent_before = a._port.stats()["tx_frames"]
            frame = b.mac.to_bytes(6, "big") + a.mac.to_bytes(6, "big") + b"\x08\x00" + bytes(46)
            for _ in range(16):
                a._port.inject(frame)  # to b, which never polls meanwhile
            r = _fsdp("stat", "--pid", str(os.getpid()), "--json")
            assert r.returncode == 0, r.stderr
            stacks = {s["ip"]: s for s in json.loads(r.stdout)}
            nic = stacks["10.4.3.1/24"]["nic_counters"]
            assert nic == {k: v for k, v in a._port.stats().items() if k in nic}
            assert nic["tx_frames"] - sent_before == 16
            assert nic["ring_full"] == 12
            assert stacks["10.4.3.2/24"]["nic_counters"]["ring_full"] == 0
            r = _fsdp("stat", "--pid", str(os.getpid()))
            assert r.returncode == 0 and "nic ring_full" in r.stdout
    finally:
        wire.close()
