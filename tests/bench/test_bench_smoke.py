"""The TCP benchmarks run end to end with tiny parameters (CI proves they work, not how fast).

Each script's ``main`` runs in this process (the jitted kernels load once), prints its table and
a JSON line last; a failing transfer must exit non-zero with one line on stderr.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(capsys, name, *argv):
    rc = _load(name).main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _last_json(out):
    return json.loads(out.strip().splitlines()[-1])


def test_tcp_bulk_tiny(capsys):
    rc, out, err = _run(capsys, "tcp_bulk", "--seconds", "0.4", "--runs", "2", "--no-iperf")
    assert rc == 0, err
    res = _last_json(out)
    assert res["benchmark"] == "tcp_bulk" and res["cpu_count"] >= 1
    assert res["gbit_s"] > 0 and len(res["runs_gbit_s"]) == 2
    assert res["iperf3_gbit_s"] is None and "skipped" in res["iperf3_note"]
    assert "Gbit/s" in out


def test_tcp_bulk_json_only(capsys):
    rc, out, err = _run(
        capsys, "tcp_bulk", "--seconds", "0.2", "--runs", "1", "--no-iperf", "--json-only"
    )
    assert rc == 0, err
    assert len(out.strip().splitlines()) == 1
    assert _last_json(out)["gbit_s"] > 0


def test_tcp_short_tiny(capsys):
    rc, out, err = _run(
        capsys, "tcp_short", "--seconds", "0.4", "--runs", "2", "--concurrency", "8"
    )
    assert rc == 0, err
    res = _last_json(out)
    assert res["benchmark"] == "tcp_short"
    assert res["completed"] > 0 and res["conn_per_s"] > 0
    assert res["errors"] == 0, res
    assert res["latency_p50_us"] is not None and res["latency_p99_us"] >= res["latency_p50_us"]
    # the server closes first: it holds the TIME-WAITs
    assert res["time_wait_entered"]["server"] > 0


def test_tcp_faults_tiny(capsys):
    rc, out, err = _run(capsys, "tcp_faults", "--megabytes", "1", "--stall-seconds", "20")
    assert rc == 0, err
    res = _last_json(out)
    assert res["sha256_match"] and res["audit"] == "ok" and not res["problems"]
    assert res["bytes_each_way"] == 1_000_000
    assert res["wire"]["client"]["fault_drop"] + res["wire"]["server"]["fault_drop"] > 0
    assert (
        res["counters"]["client"]["tcp_retrans_segs"]
        + res["counters"]["server"]["tcp_retrans_segs"]
        > 0
    )


def test_tcp_faults_ecn_marks_instead_of_drops(capsys):
    """``--ce-mark`` with ``--tcp-ecn 1``: congestion signalled by CE marks, answered by window
    reductions, nothing lost and nothing resent."""
    rc, out, err = _run(capsys, "tcp_faults", "--megabytes", "1", "--drop", "0", "--reorder", "0",
                        "--duplicate", "0", "--ce-mark", "0.05", "--tcp-ecn", "1",
                        "--stall-seconds", "20")
    assert rc == 0, err
    res = _last_json(out)
    assert res["sha256_match"] and res["audit"] == "ok" and not res["problems"]
    c, s = res["counters"]["client"], res["counters"]["server"]
    assert res["wire"]["client"]["fault_ce"] + res["wire"]["server"]["fault_ce"] > 0
    assert c["tcp_ecn_cwr_episodes"] > 0 and s["tcp_ecn_cwr_episodes"] > 0
    assert c["tcp_retrans_segs"] == 0 and s["tcp_retrans_segs"] == 0


def test_tcp_faults_stall_fails_clearly(capsys):
    # a wire that drops everything: no handshake, no progress -> exit 1, one line on stderr
    rc, out, err = _run(
        capsys, "tcp_faults", "--megabytes", "1", "--drop", "1.0", "--stall-seconds", "1"
    )
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcp_faults:") and "stall" in lines[0]


@pytest.mark.parametrize("name", ["tcp_bulk", "tcp_short", "tcp_faults", "kernel_ceiling",
                                  "asyncio_short"])
def test_bad_arguments_exit_2(capsys, name):
    rc, _, err = _run(capsys, name, "--seconds" if name != "tcp_faults" else "--megabytes", "0")
    assert rc == 2 and err.startswith(name)


def test_tcp_concurrent_small(capsys):
    """The 100,000-connection benchmark's machinery on 3,000 connections (four server ports
    are used in turn): every connection established on both sides after the hold."""
    rc, out, err = _run(capsys, "tcp_concurrent", "--connections", "3000", "--hold", "0.2")
    assert rc == 0, err
    res = _last_json(out)
    assert res["established_client"] == res["established_server"] == 3000
    assert res["resets"] == 0 and res["table_bytes_per_connection"] > 300
    assert res["meets_target"] is False  # 3,000 is not the 100,000 the target asks for


def test_tcp_concurrent_bad_arguments(capsys):
    rc, _, err = _run(capsys, "tcp_concurrent", "--connections", "0")
    assert rc == 2 and err.startswith("tcp_concurrent")


def test_kernel_ceiling_tiny():
    """The Python server on fsdp, then on the kernel with the Python and with the C load
    generator (built here): each serves, with no error, and the JSON gives both ratios."""
    import shutil
    import subprocess
    import sys

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build benchmarks/c/http_short_client.c")
    r = subprocess.run([sys.executable, str(BENCH / "kernel_ceiling.py"), "--seconds", "0.5",
                        "--runs", "1", "--json-only"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    res = _last_json(r.stdout)
    assert res["benchmark"] == "kernel_ceiling"
    for k in ("fsdp", "kernel/py", "kernel/c"):
        assert res["median_conn_per_s"][k] > 0 and res["errors"][k] == 0, res
    assert res["ratio_to_kernel_c"] == res["median_conn_per_s"]["fsdp"] / \
        res["median_conn_per_s"]["kernel/c"]


def test_asyncio_short_tiny():
    """The asyncio streams server on fsdp (loaded by fsdp bench) and on the kernel (by the C
    client): each serves with no error, and the JSON gives the ratio of the medians."""
    import shutil
    import subprocess
    import sys

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build benchmarks/c/http_short_client.c")
    r = subprocess.run([sys.executable, str(BENCH / "asyncio_short.py"), "--seconds", "0.5",
                        "--runs", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = _last_json(r.stdout)
    assert res["benchmark"] == "asyncio_short"
    for k in ("fsdp", "kernel"):
        assert res["median_conn_per_s"][k] > 0 and res["errors"][k] == 0, res
    assert res["ratio"] == res["median_conn_per_s"]["fsdp"] / res["median_conn_per_s"]["kernel"]


def test_kernel_ceiling_without_a_compiler_says_so(tmp_path):
    import subprocess
    import sys

    env = {"PATH": str(tmp_path), "CC": str(tmp_path / "no-such-cc")}
    r = subprocess.run([sys.executable, str(BENCH / "kernel_ceiling.py"), "--seconds", "0.5",
                        "--runs", "1"], capture_output=True, text=True, env=env, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("kernel_ceiling:"), r


def test_scaling_same_load_per_core_median_of_runs():
    """benchmarks/scaling.py with --per-core (C connections per server core at every point)
    and --runs (the table's row is the median run): one and two server cores, one packet
    client, each point's runs and where the server workers' time went are in the JSON."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(BENCH / "scaling.py"), "--cores", "1,2",
                        "--client-cores", "1", "--per-core", "16", "--seconds", "0.3",
                        "--runs", "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "16 in flight per server core, 0.3 s per run, median of 3 runs" in r.stdout
    res = _last_json(r.stdout)
    assert res["runs_per_point"] == 3
    assert [(x["cores"], x["concurrency"]) for x in res["runs"]] == [(1, 16), (2, 32)]
    for x in res["runs"]:
        assert x["errors"] == 0 and x["connections_per_s"] > 0, x
        each = x["runs_connections_per_s"]
        assert len(each) == 3 and each == sorted(each)
        assert x["connections_per_s"] == each[1]  # the median run
        sched = x["server_sched"]
        assert 0.0 <= sched["system_share"] <= 1.0
        assert sched["voluntary_switches_per_s"] >= 0
        assert sched["involuntary_switches_per_s"] >= 0
        assert 0.0 <= x["cpu_steal_share"] <= 1.0
    assert res["runs"][0]["efficiency"] == 1.0


def test_cpu_siblings_tiny(capsys):
    """benchmarks/cpu_siblings.py: a Python loop's rate on one CPU beside each other CPU and
    with all of them busy, relative to its rate alone (the host topology a VM hides)."""
    import os

    cpus = sorted(os.sched_getaffinity(0))
    rc, out, err = _run(capsys, "cpu_siblings", "--cpu", str(cpus[0]), "--seconds", "0.05",
                        "--runs", "1")
    assert rc == 0, err
    res = _last_json(out)
    assert res["cpu"] == cpus[0] and res["alone_per_s"] > 0 and res["cpus"] == cpus
    assert sorted(int(c) for c in res["beside"]) == cpus[1:]
    assert all(0 < r < 2 for r in res["beside"].values()) and 0 < res["all_busy"] < 2
    assert os.sched_getaffinity(0) == set(cpus)  # it pinned itself while measuring, only


def test_scaling_side_by_side_tiny():
    """benchmarks/scaling.py --side-by-side: N independent one-core demos at once (the
    machine's own ceiling); one copy here, and a count the machine's CPUs cannot hold is one
    clear line and a non-zero exit."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(BENCH / "scaling.py"), "--side-by-side", "--cores",
                        "1", "--per-core", "16", "--seconds", "0.3"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "N independent one-core demos at once, 16 in flight each" in r.stdout
    res = _last_json(r.stdout)
    assert res["side_by_side"] and res["concurrency_each"] == 16
    (row,) = res["runs"]
    assert row["copies"] == 1 and len(row["each"]) == 1
    assert row["connections_per_s"] == row["each"][0] > 0 and row["efficiency"] == 1.0
    r = subprocess.run([sys.executable, str(BENCH / "scaling.py"), "--side-by-side", "--cores",
                        "1,100000"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and r.stderr.strip() == "scaling.py: --side-by-side needs 200000 CPUs"


def test_cpu_siblings_layout_is_inferred_and_checked(monkeypatch, capsys):
    """cpu_siblings.py --layout: CPU 0's sibling at n/2 (or 1) names the whole numbering, kept
    only if one more pair measures as siblings too; the line it prints is FSDP_CPU_TOPOLOGY's."""
    cpu_siblings = _load("cpu_siblings")

    def fake(split):
        def measure(cpu, partners, seconds, runs):
            sib = (cpu + 4) % 8 if split else cpu ^ 1
            return 60.0 if sib in partners else 100.0
        return measure

    monkeypatch.setattr(cpu_siblings.os, "sched_setaffinity", lambda pid, cpus: None)
    cpus = list(range(8))
    monkeypatch.setattr(cpu_siblings, "_measure", fake(True))
    assert cpu_siblings._check_layout(cpus, 0, 4, 0.01, 1) == "0,4;1,5;2,6;3,7"
    assert "FSDP_CPU_TOPOLOGY=0,4;1,5;2,6;3,7" in capsys.readouterr().out
    monkeypatch.setattr(cpu_siblings, "_measure", fake(False))
    assert cpu_siblings._check_layout(cpus, 0, 1, 0.01, 1) == "0,1;2,3;4,5;6,7"
    # CPU 0 slow beside 4, but CPU 1 not beside 5: the numbering does not hold
    assert cpu_siblings._check_layout(cpus, 0, 4, 0.01, 1) is None
    assert "not confirmed" in capsys.readouterr().out
    assert cpu_siblings._check_layout(cpus, 0, 3, 0.01, 1) is None  # no usual numbering


def test_mem_latency_tiny(capsys):
    """benchmarks/mem_latency.py: ns per dependent load by working-set size, bounded by
    --max-kib; a bad argument is one line and exit 2."""
    rc, out, err = _run(capsys, "mem_latency", "--steps", "1000", "--max-kib", "256")
    assert rc == 0, err
    res = _last_json(out)["ns_per_load_by_kib"]
    assert list(res) == ["16", "256"] and all(v > 0 for v in res.values())
    rc, out, err = _run(capsys, "mem_latency", "--steps", "10")
    assert rc == 2 and len(err.strip().splitlines()) == 1


def test_cpu_siblings_bad_cpu_one_line(capsys):
    rc, out, err = _run(capsys, "cpu_siblings", "--cpu", "100000")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "CPU 100000" in err



def test_compile_time_both_ways_on_a_tiny_module(capsys, tmp_path):
    mod = tmp_path / "tiny_kernels.py"
    shutil.copy(Path(__file__).resolve().parents[1] / "tcp" / "tiny_kernels.py", mod)
    rc, out, err = _run(capsys, "compile_time", "--warmup", f"{mod}:warm")
    assert rc == 0, err
    res = _last_json(out)
    assert res["benchmark"] == "compile_time" and res["ratio"] > 0
    lo, usual = res["link-only"], res["usual"]
    # link-only: the root's library alone is finalized; the usual way also the two kernels'
    assert lo["libraries_finalized"] < usual["libraries_finalized"]
    assert lo["compile_s"] > 0 and usual["optimize_s"] > 0
    assert "link-only / usual" in out


@pytest.mark.parametrize("argv", [["--runs", "0"], ["--warmup", "no-such-file.py:warm"],
                                  ["--warmup", "nofunction"]])
def test_compile_time_bad_arguments_one_line(capsys, argv):
    rc, _, err = _run(capsys, "compile_time", *argv)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("compile_time:")


def test_tls_tiny(capsys):
    """benchmarks/tls.py: both worlds, both workloads, the table and the JSON (the pinning and
    the server processes included); a bad argument is one line and exit 2."""
    rc, out, err = _run(capsys, "tls", "--seconds", "0.2", "--megabytes", "2", "--runs", "1")
    assert rc == 0, err
    res = _last_json(out)
    for world in ("fsdp", "kernel"):
        assert res[f"{world}_short_conn_per_s"] > 0
        assert res[f"{world}_bulk_mb_per_s"] > 0 and res[f"{world}_plain_bulk_mb_per_s"] > 0
    assert "short connections/s" in out
    rc, out, err = _run(capsys, "tls", "--runs", "0")
    assert rc == 2 and len(err.strip().splitlines()) == 1
