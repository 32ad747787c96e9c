"""``fsdp demo``, ``fsdp serve`` and ``fsdp bench`` end to end (CONTRACT.md §3).

They run as the user runs them: ``python -m fsdp ...`` in a subprocess (the commands fork
per-core worker processes), with tiny durations; CI proves they work, not how fast.  The pure
Python server and load generator are also checked on kernel sockets in this process.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 900  # a cold Numba cache compiles the engine first


def _fsdp(*argv, timeout=TIMEOUT):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "fsdp", *argv], capture_output=True, text=True, timeout=timeout,
        env=env, cwd=ROOT,
    )


def _serve(wire: str, ip: str, *args: str, **popen_kw) -> subprocess.Popen:
    """``fsdp serve --nic sim:WIRE --ip IP --port 8080 ARGS``, once it says it is serving."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    srv = subprocess.Popen(
        [sys.executable, "-m", "fsdp", "serve", "--nic", f"sim:{wire}", "--ip", ip, "--port",
         "8080", *args],
        stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, **popen_kw,
    )
    line = srv.stderr.readline()
    assert "Ctrl-C" in line, line
    return srv


def _stop(srv: subprocess.Popen) -> str:
    """Ctrl-C a ``fsdp serve`` (killed after 30 s); its stderr."""
    srv.send_signal(signal.SIGINT)
    try:
        _, err = srv.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        srv.kill()
        _, err = srv.communicate()
    return err


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _bench_ok(wire: str, server_ip: str, client_ip: str, *args: str) -> dict:
    """``fsdp bench --json`` against ``fsdp serve`` on ``wire`` (port 8080): its result, once
    it exited 0 and completed connections without an error."""
    r = _fsdp("bench", f"http://{server_ip}:8080/", "--nic", f"sim:{wire}", "--ip", client_ip,
              *args, "--json")
    assert r.returncode == 0, r.stderr
    res = _last_json(r.stdout)
    assert res["connections"] > 0 and res["errors"] == 0
    return res


CONTRACT_FIELDS = ("cores", "seconds", "connections", "connections_per_s", "errors",
                   "latency_us")


def _check_contract(res: dict) -> None:
    for k in CONTRACT_FIELDS:
        assert k in res, k
    assert res["connections"] > 0
    assert res["connections_per_s"] > 0
    assert res["errors"] == 0
    assert res["latency_us"]["p50"] is not None and res["latency_us"]["p99"] is not None
    assert res["latency_us"]["p50"] <= res["latency_us"]["p99"]


@pytest.mark.parametrize("app", ["native", "python"])
def test_demo_json(app):
    r = _fsdp("demo", "--app", app, "--seconds", "0.5", "--concurrency", "16", "--json")
    assert r.returncode == 0, r.stderr
    res = _last_json(r.stdout)
    _check_contract(res)
    assert res["cores"] == 1 and res["app"] == app
    assert "conn/s" in r.stdout  # the table


def test_demo_rings_hold_what_512_connections_have_in_flight():
    """512 connections in flight on one server core: the wire's rings are sized for them
    (fsdp.apps.demo.wire_ring_slots), so no frame is dropped on a full ring (each drop costs
    its connection a retransmission timeout: with 1,024 slots this ran at half the rate of
    64 connections)."""
    r = _fsdp("demo", "--seconds", "0.5", "--concurrency", "512", "--json")
    assert r.returncode == 0, r.stderr
    res = _last_json(r.stdout)
    _check_contract(res)
    assert res["runs"][0]["wire_drops"] == 0


def test_ring_sizing_takes_the_busiest_ring_of_any_configuration():
    from fsdp.apps.demo import wire_ring_slots

    assert wire_ring_slots(64, 1, 1) == 1024  # the floor
    assert wire_ring_slots(512, 1, 1) == 4096  # eight frames a connection, a power of two
    # two server and two client queues: without listen spawn, worker 0's ring to each client
    # carries all of that client's 256 connections, not a quarter of the 512
    assert wire_ring_slots(512, 2, 2) == 2048
    assert wire_ring_slots(2048, 8, 8) == 2048
    assert wire_ring_slots(16384, 1, 1) == 1 << 16  # the sim's largest ring


def test_demo_without_listen_spawn_drops_nothing_on_its_busiest_ring():
    """Listen spawn off, two server and two client workers, 512 connections in flight: worker
    0 serves them all, so its rings carry twice what an even spread would put on them (rings
    sized for the even spread dropped ~200-300 frames in half a second, each a retransmission
    timeout)."""
    r = _fsdp("demo", "--cores", "2", "--client-cores", "2", "--no-listen-spawn", "--seconds",
              "0.5", "--concurrency", "512", "--json")
    assert r.returncode == 0, r.stderr
    run = _last_json(r.stdout)["runs"][0]
    assert run["config"] == "no listen spawn" and run["connections"] > 0
    assert run["wire_drops"] == 0, run


def test_demo_per_core_clients_stay_on_their_queues():
    """Two server workers and two client workers, one sim queue each: every client connection's
    replies must come back to the worker that opened it (receive flow deliver); a reply on the
    other worker's queue finds no connection there and is answered with a RST (an error).  And
    no SYN waits on a retransmission: a client worker that took back a port the server still
    held in TIME-WAIT (its ephemeral search restarting just 2 ports on) had a quarter of its
    SYNs refused, each retransmitted 1 s later (so the window is longer than that)."""
    r = _fsdp("demo", "--cores", "2", "--client-cores", "2", "--seconds", "1.2",
              "--concurrency", "16", "--json")
    assert r.returncode == 0, r.stderr
    res = _last_json(r.stdout)
    _check_contract(res)
    run = res["runs"][0]
    assert run["cores"] == 2 and run["client_cores"] == 2
    assert all(n > 0 for n in run["served_per_core"])  # RSS spread the SYNs over both
    assert run["wire_drops"] == 0
    # a lossless wire needs no retransmission (a worker off its CPU past the 200 ms RTO
    # might, rarely, on a loaded machine: not one in a thousand connections)
    assert run["client_retransmits"] <= run["connections"] // 1000, run


def test_demo_ablation_switches_each_feature_off():
    """--ablation: all features, then no listen spawn (only worker 0 listens and serves; worker
    1 hands it everything RSS gives it), then no RFD (client workers' replies that land on the
    other worker's queue are handed over in software).  Every configuration must still work."""
    r = _fsdp("demo", "--cores", "2", "--client-cores", "2", "--ablation", "--seconds", "0.4",
              "--concurrency", "16", "--json")
    assert r.returncode == 0, r.stderr
    runs = _last_json(r.stdout)["runs"]
    assert [x["config"] for x in runs] == ["all features", "no listen spawn", "no RFD"]
    for x in runs:
        assert x["connections"] > 0 and x["errors"] == 0, x
    assert runs[1]["served_per_core"][0] > 0 and runs[1]["served_per_core"][1] == 0
    assert "no listen spawn" in r.stdout  # the table names the configuration


def test_demo_packet_client_every_configuration():
    """--client packet (TCP written on frames, fsdp.apps.packet_client): two server and two
    client workers, with all features, without listen spawn, and without RFD (the packet client
    then takes ports by number and hands a reply that RSS put on the other worker's queue over
    to it).  Every configuration serves with no error, and the client says how busy it was."""
    r = _fsdp("demo", "--client", "packet", "--cores", "2", "--client-cores", "2", "--ablation",
              "--seconds", "0.4", "--concurrency", "64", "--json")
    assert r.returncode == 0, r.stderr
    res = _last_json(r.stdout)
    _check_contract(res)
    runs = res["runs"]
    assert [x["config"] for x in runs] == ["all features", "no listen spawn", "no RFD"]
    for x in runs:
        assert x["connections"] > 0 and x["errors"] == 0, x
        assert x["client"].startswith("packet") and x["client_cores"] == 2
        assert 0 < x["client_busy"] <= 1.0
    assert all(n > 0 for n in runs[0]["served_per_core"])
    assert runs[1]["served_per_core"][1] == 0


def test_sched_sample_reads_cpu_time_and_switches_from_proc():
    """fsdp.apps.percore.sched_sample: a process's user and system CPU seconds and its
    voluntary and involuntary context switches, summed over pids; a pid that is gone adds
    nothing (a worker that died between two samples must not break a measurement)."""
    import os
    import time

    from fsdp.apps.percore import SCHED_FIELDS, sched_sample

    assert SCHED_FIELDS == ("user_s", "system_s", "voluntary_switches",
                            "involuntary_switches")
    before = sched_sample([os.getpid()])
    t_end = time.process_time() + 0.1
    while time.process_time() < t_end:  # 0.1 s of this process's CPU
        pass
    time.sleep(0.01)  # one voluntary switch at least
    after = sched_sample([os.getpid()])
    user, system, vol, invol = after - before
    assert 0.05 <= user + system <= 1.0, (user, system)
    assert vol >= 1 and invol >= 0
    assert (sched_sample([os.getpid(), 2**22 + 7]) >= after).all()  # no such pid: skipped
    assert not sched_sample([2**22 + 7]).any()
    assert not sched_sample([]).any()


def test_steal_sample_reads_the_hypervisors_share(tmp_path):
    """fsdp.apps.percore.steal_sample: (steal, total) ticks from /proc/stat's first line
    (user nice system idle iowait irq softirq steal); a file it cannot read or parse gives
    (0, 0), which the measurement then leaves out."""
    from fsdp.apps.percore import steal_sample

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 2 30 800 5 0 3 60 0 0\ncpu0 50 1 15 400 2 0 1 30 0 0\n")
    assert steal_sample(str(stat)) == (60, 1000)
    stat.write_text("cpu  100 2 30\n")
    assert steal_sample(str(stat)) == (0, 0)
    assert steal_sample(str(tmp_path / "missing")) == (0, 0)
    steal, total = steal_sample()
    assert total > 0 and 0 <= steal <= total


def test_placement_keeps_servers_on_distinct_physical_cores():
    from fsdp.apps.percore import _cpu_list, placement

    assert _cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    split = [[i, i + 8] for i in range(8)]  # hyper-threads numbered i and i + 8
    adjacent = [[2 * i, 2 * i + 1] for i in range(8)]  # ... numbered 2i and 2i + 1
    assert placement(8, 8, split) == (list(range(8)), list(range(8, 16)), False)
    assert placement(8, 8, adjacent) == ([0, 2, 4, 6, 8, 10, 12, 14],
                                         [1, 3, 5, 7, 9, 11, 13, 15], False)
    # clients take whole free cores before a server core's sibling
    assert placement(1, 8, split) == ([0], [1, 2, 3, 4, 5, 6, 7, 9], False)
    assert placement(4, 4, adjacent) == ([0, 2, 4, 6], [8, 10, 12, 14], False)
    assert placement(1, 1, [[0], [1]]) == ([0], [1], False)
    server, client, shared = placement(3, 1, [[0], [1]])
    assert shared and client == [1] and server == [0, 0, 0]


def test_cpu_topology_override_names_the_host_siblings(monkeypatch):
    """FSDP_CPU_TOPOLOGY groups CPUs that sysfs shows as separate cores (a VM's hidden
    hyper-threads); CPUs it leaves out stay cores of their own, CPUs not allowed are dropped."""
    from fsdp.apps.percore import cpu_topology

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    monkeypatch.setenv("FSDP_CPU_TOPOLOGY", "0,2;1,3;5,6")
    assert cpu_topology() == [[0, 2], [1, 3], [4]]
    monkeypatch.setenv("FSDP_CPU_TOPOLOGY", "")
    assert sorted(c for g in cpu_topology() for c in g) == [0, 1, 2, 3, 4]


def test_demo_compare_kernel():
    r = _fsdp("demo", "--app", "python", "--seconds", "0.5", "--concurrency", "8",
              "--compare-kernel", "--json")
    assert r.returncode == 0, r.stderr
    res = _last_json(r.stdout)
    _check_contract(res)
    k = res["kernel"]
    _check_contract(k)
    assert k["ratio"] == pytest.approx(res["connections_per_s"] / k["connections_per_s"], abs=0.002)
    assert res["ratio"] == k["ratio"]


@pytest.mark.parametrize(
    "argv",
    [
        ("demo", "--cores", "0"),
        ("demo", "--cores", "x"),
        ("demo", "--seconds", "-1"),
        ("demo", "--app", "perl"),
        ("demo", "--concurrency", "0"),
        ("demo", "--client", "tcp"),
        ("bench", "ftp://10.0.0.1/"),
        ("bench", "http://10.0.0.1/"),  # neither --nic/--ip nor --kernel
        ("bench", "http://example.com/", "--kernel"),
        ("serve", "--nic", "tap:x", "--ip", "10.0.0.1/24"),
        ("serve", "--nic", "sim:x", "--ip", "10.0.0.1/24", "--port", "0"),
        ("serve", "--nic", "sim:x"),
        ("serve", "--nic", "sim:x", "--ip", "10.0.0.1/24", "--ring-slots", "1000"),
    ],
)
def test_bad_arguments_one_line(argv):
    r = _fsdp(*argv, timeout=60)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("fsdp")


def test_serve_and_bench_two_processes():
    wire = f"t-serve-{os.getpid()}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    srv = subprocess.Popen(
        [sys.executable, "-m", "fsdp", "serve", "--nic", f"sim:{wire}", "--ip", "10.66.0.1/24",
         "--port", "8080"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    try:
        line = srv.stderr.readline()  # "fsdp serve: http on ... Ctrl-C stops" once listening
        assert "fsdp serve" in line and "Ctrl-C" in line, line
        r = _fsdp("bench", "http://10.66.0.1:8080/", "--nic", f"sim:{wire}", "--ip",
                  "10.66.0.2/24", "--seconds", "0.5", "--concurrency", "8", "--json")
        assert r.returncode == 0, r.stderr
        res = _last_json(r.stdout)
        assert res["backend"] == "fsdp"
        assert res["connections"] > 0 and res["errors"] == 0
        r = _fsdp("bench", "http://10.66.0.1:8080/", "--nic", f"sim:{wire}", "--ip",
                  "10.66.0.2/24", "--seconds", "0.3", "--concurrency", "4", "--keepalive",
                  "--json")
        assert r.returncode == 0, r.stderr
        res = _last_json(r.stdout)
        assert res["requests"] > res["connections"] and res["errors"] == 0
    finally:
        err = _stop(srv)
    assert srv.returncode == 0, err
    assert "served" in err


def test_serve_rings_sized_for_bench_and_drops_reported():
    """``fsdp serve --ring-slots 2048`` and ``fsdp bench --concurrency 512``: the wire's rings
    hold what 512 connections keep in flight, so bench reports no frame dropped on a full
    ring (``wire_drops``, counted on the wire's queues during the run), and fsdp stat, run
    meanwhile, shows the server's NIC counters."""
    wire = f"t-rings-{os.getpid()}"
    srv = _serve(wire, "10.66.5.1/24", "--ring-slots", "2048")
    try:
        res = _bench_ok(wire, "10.66.5.1", "10.66.5.2/24", "--seconds", "0.5",
                        "--concurrency", "512")
        assert res["wire_drops"] == 0
        r = _fsdp("stat", "--json")  # (the server's stack lives in its worker process)
        assert r.returncode == 0, r.stderr
        mine = [x for x in json.loads(r.stdout) if x["ip"] == "10.66.5.1/24"]
        assert mine and mine[0]["nic_counters"]["rx_frames"] >= 4 * res["connections"]
        assert mine[0]["nic_counters"]["ring_full"] == 0
    finally:
        err = _stop(srv)
    assert srv.returncode == 0, err


def test_bench_counts_the_retransmissions_that_dropped_frames_cost():
    """Rings too small for the load (``--ring-slots 64``, 128 connections in flight): frames
    are dropped on full rings, and the SYNs among them come back 1 s later, which bench
    reports as the clients' retransmitted segments (text and ``client_retransmits``)."""
    wire = f"t-rexmit-{os.getpid()}"
    srv = _serve(wire, "10.66.7.1/24", "--ring-slots", "64")
    try:
        res = _bench_ok(wire, "10.66.7.1", "10.66.7.2/24", "--seconds", "1.5",
                        "--concurrency", "128")
        assert res["wire_drops"] > 0 and res["client_retransmits"] > 0, res
        r = _fsdp("bench", "http://10.66.7.1:8080/", "--nic", f"sim:{wire}", "--ip",
                  "10.66.7.2/24", "--seconds", "1.5", "--concurrency", "128")
        assert r.returncode == 0, r.stderr
        assert "segments retransmitted" in r.stdout and "dropped on full sim rings" in r.stdout
    finally:
        err = _stop(srv)
    assert srv.returncode == 0, err


def test_serve_joins_a_wire_that_exists_with_another_geometry():
    """A wire in use with another geometry (the sim's default: 8 ports, 256-slot rings; a port
    of this process attached) is used as it is: fsdp serve's own geometry is for a wire it
    creates.  (An idle wire with another geometry is made anew.)"""
    from fsdp.driver.sim import attach_named

    wire = f"t-geo-{os.getpid()}"
    port = attach_named(wire, 1, 0x020000000099)
    w = port.wire
    try:
        srv = _serve(wire, "10.66.6.1/24")
        try:
            _bench_ok(wire, "10.66.6.1", "10.66.6.2/24", "--seconds", "0.3",
                      "--concurrency", "8")
            assert w.ring_slots == 256 and w.max_ports == 8
            assert w.views["stats"][:, :, 0].sum() > 0  # (tx_frames: this very wire carried it)
        finally:
            err = _stop(srv)
        assert srv.returncode == 0, err
    finally:
        port.close()


def _cpu_seconds(pids) -> float:
    """User + system CPU time of processes ``pids`` so far (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("app", ["native", "python"])
def test_an_idle_server_sleeps_and_wakes_for_the_next_request(app):
    """Idle, ``fsdp serve``'s workers sleep (on their queue's doorbell) instead of polling: a
    busy-polling worker would burn ~2 CPU-seconds in 2 s (and the native one, before it slept
    on the doorbell, ~0.35); then a client is served at once."""
    wire = f"t-idle-{app}-{os.getpid()}"
    srv = _serve(wire, "10.66.1.1/24", "--app", app)
    try:
        time.sleep(1.0)  # past the busy-poll after start-up
        with open(f"/proc/{srv.pid}/task/{srv.pid}/children") as f:
            pids = [srv.pid, *(int(p) for p in f.read().split())]
        c0, t0 = _cpu_seconds(pids), time.monotonic()
        time.sleep(2.0)
        used = _cpu_seconds(pids) - c0
        assert used < 0.1 * (time.monotonic() - t0), used  # measured: 1-4% of a CPU
        r = _fsdp("bench", "http://10.66.1.1:8080/", "--nic", f"sim:{wire}", "--ip",
                  "10.66.1.2/24", "--seconds", "0.3", "--concurrency", "2", "--json")
        assert r.returncode == 0, r.stderr
        res = _last_json(r.stdout)
        assert res["connections"] > 0 and res["errors"] == 0
    finally:
        _stop(srv)


# --- the pure-Python server and load generator on kernel sockets (no engine) -------------------
@pytest.mark.parametrize("keepalive", [False, True])
def test_python_server_and_load_on_kernel_sockets(keepalive):
    from fsdp.apps.http_python import HttpLoad, HttpServer

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    server = HttpServer(ls, selectors.DefaultSelector(), b"y" * 64)
    stop = threading.Event()
    t = threading.Thread(target=server.run, args=(stop.is_set,), daemon=True)
    t.start()
    try:
        load = HttpLoad(socket.socket, selectors.DefaultSelector(), ls.getsockname(), 4,
                        keepalive=keepalive)
        load.run(0.3)
        load.run(1.0, start_new=False)
    finally:
        stop.set()
        t.join(5)
        ls.close()
    assert load.errors == 0 and server.errors == 0
    assert load.requests > 0 and int(load.hist.sum()) == load.requests
    if keepalive:
        assert load.requests > load.completed
    else:
        assert load.completed == load.requests


def test_python_server_rejects_non_get():
    from fsdp.apps.http_python import HttpServer

    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    server = HttpServer(ls, selectors.DefaultSelector())
    stop = threading.Event()
    t = threading.Thread(target=server.run, args=(stop.is_set,), daemon=True)
    t.start()
    try:
        c = socket.create_connection(ls.getsockname(), timeout=5)
        c.sendall(b"POST / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := c.recv(4096):
            data += chunk
        c.close()
    finally:
        stop.set()
        t.join(5)
        ls.close()
    assert data.startswith(b"HTTP/1.0 400")
    time.sleep(0)


def test_serve_reports_a_dead_worker_and_keeps_serving():
    wire = f"t-dead-{os.getpid()}"
    srv = _serve(wire, "10.67.0.1/24", "--cores", "2")
    try:
        children = subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 2, children
        os.kill(int(children[-1]), signal.SIGKILL)  # a worker this test started
        line = srv.stderr.readline()
        assert "died" in line and "keep serving" in line, line
        r = _fsdp("bench", "http://10.67.0.1:8080/", "--nic", f"sim:{wire}", "--ip",
                  "10.67.0.2/24", "--seconds", "0.5", "--concurrency", "8", "--json")
        assert r.returncode == 0, r.stderr
        res = _last_json(r.stdout)
        assert res["connections"] > 0 and res["errors"] == 0
    finally:
        _stop(srv)


def test_bench_kernel_against_a_kernel_server():
    from fsdp.apps.http_python import HttpServer

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    server = HttpServer(ls, selectors.DefaultSelector())
    stop = threading.Event()
    t = threading.Thread(target=server.run, args=(stop.is_set,), daemon=True)
    t.start()
    try:
        host, port = ls.getsockname()
        r = _fsdp("bench", f"http://{host}:{port}/", "--kernel", "--seconds", "0.3",
                  "--concurrency", "4", "--json", timeout=120)
    finally:
        stop.set()
        t.join(5)
        ls.close()
    assert r.returncode == 0, r.stderr
    res = _last_json(r.stdout)
    assert res["backend"] == "kernel" and res["connections"] > 0 and res["errors"] == 0


def test_native_server_serves_a_request_in_pieces_and_keeps_alive_beside_idle_connections():
    """The native server's step visits only connections whose state changed (the core's
    touched log): a request whose second half comes 50 ms after the first, and a second request
    on a kept-alive connection, must each be noticed when they arrive, while 40 other
    connections sit idle."""
    import time

    import fsdp

    wire = f"t-pieces-{os.getpid()}"
    srv = _serve(wire, "10.69.0.1/24")
    try:
        with fsdp.Stack(nic=f"sim:{wire}", ip="10.69.0.2/24") as st:
            idle = []
            for _ in range(40):
                c = st.socket()
                c.settimeout(10)
                c.connect(("10.69.0.1", 8080))
                idle.append(c)
            s = st.socket()
            s.settimeout(10)
            s.connect(("10.69.0.1", 8080))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.05)
            s.sendall(b"Connection: keep-alive\r\n\r\n")
            first = s.recv(4096)
            assert first.startswith(b"HTTP/1.0 200") or first.startswith(b"HTTP/1.1 200")
            assert b"keep-alive" in first.lower()
            time.sleep(0.05)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")  # the same connection, then closed
            rest = b""
            while chunk := s.recv(4096):
                rest += chunk
            assert rest.startswith(first.split(b" ", 1)[0]) and b" 200 " in rest.split(b"\r\n")[0]
            for c in idle:
                c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            for c in idle:
                got = b""
                while chunk := c.recv(4096):
                    got += chunk
                assert b" 200 " in got.split(b"\r\n")[0]
                c.close()
            s.close()
    finally:
        _stop(srv)


def test_serve_echo_with_an_fsdp_socket():
    import fsdp

    wire = f"t-echo-{os.getpid()}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    srv = subprocess.Popen(
        [sys.executable, "-m", "fsdp", "serve", "--nic", f"sim:{wire}", "--ip", "10.68.0.1/24",
         "--port", "7", "--mode", "echo"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    try:
        assert "Ctrl-C" in srv.stderr.readline()
        with fsdp.Stack(nic=f"sim:{wire}", ip="10.68.0.2/24") as st:
            s = st.socket()
            s.settimeout(10)
            s.connect(("10.68.0.1", 7))
            payload = bytes(range(256)) * 40  # several segments
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = s.recv(65536)
                assert chunk
                got += chunk
            s.shutdown(socket.SHUT_WR)
            assert s.recv(10) == b""
            s.close()
        assert got == payload
    finally:
        err = _stop(srv)
    assert "served 1" in err, err


def test_serve_stops_cleanly_on_sigterm_to_its_process_group():
    """timeout(1) and systemd signal the whole group: the workers leave the stop to the parent
    (no "died" report), which stops them and prints its counters."""
    srv = _serve(f"t-term-{os.getpid()}", "10.66.3.1/24", "--cores", "2",
                 start_new_session=True)
    try:
        os.killpg(srv.pid, signal.SIGTERM)
        _, err = srv.communicate(timeout=60)
    finally:
        if srv.poll() is None:
            os.killpg(srv.pid, signal.SIGKILL)
            srv.wait()
    assert srv.returncode == 0, err
    assert "died" not in err and "served" in err


def test_workers_die_with_a_killed_parent(fresh_wire):
    srv = _serve(fresh_wire, "10.66.4.1/24", "--cores", "2")
    children = subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True,
                              text=True).stdout.split()
    assert len(children) >= 2
    srv.kill()
    srv.wait()
    deadline = time.monotonic() + 10
    alive = children
    while alive and time.monotonic() < deadline:
        alive = [c for c in children if os.path.exists(f"/proc/{c}")
                 and open(f"/proc/{c}/stat").read().split()[2] != "Z"]
        time.sleep(0.05)
    assert alive == [], alive
