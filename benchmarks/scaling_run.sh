#!/usr/bin/env bash
# The 16-core scaling run (issue 4), as one command: the machine's topology, a warm-up that
# compiles the engine (or loads a carried cache, below), which CPUs slow each other
# (benchmarks/cpu_siblings.py) and the memory latency (benchmarks/mem_latency.py), then
# benchmarks/scaling.py's steps, most important first: the Python server over 1, 2, 4, 8
# server cores (median of 2 runs) and with 128 connections in flight per server core, the same
# load on N independent one-core demos side by side (the machine's own ceiling), a py-spy
# profile of one Python worker, the packet client with the native server (median of 3 runs),
# the same with 256 per server core and side by side, the ablation (no listen spawn, no RFD),
# the stack client, and four client cores instead of eight.  Each step writes as it goes, and
# BUDGET_S (seconds for the whole script, default 580) skips the steps that no longer fit, so a
# run cut short still reports what it finished.  The results
# land in OUT (at most eight files: summary.txt, topology.txt, two plots, logs.tgz).
#   OUT=/tmp/out bash benchmarks/scaling_run.sh
# The warm-up first builds fsdp's C part in place where it can (the summary says whether it
# did: without it the Python server steps measure the Python methods alone).
# PHASE=warm only compiles, PHASE=measure only measures, STEPS picks steps (default: all, in
# the order below).  A cold Numba cache takes 6-9 minutes to compile on the 16-core device
# machine, so a compiled cache travels instead: the script runs with FSDP_JIT_PORTABLE=1
# (fsdp._jitcache: code for an x86-64-v3 baseline, keyed so that another CPython 3.x and
# machine load it).  The recipe (2026-11-27: warm-up 12 s on the device, the whole run 285 s):
#   here:   PHASE=pack PYTHON=.venv/bin/python bash benchmarks/scaling_run.sh   (~5 min; packs
#           the cache into CACHE_TGZ, default .devcache/jit-portable.tar.xz, ignored by git)
#           pip download py-spy's manylinux wheel into .devcache (for the pyprofile step)
#   device: carry [".devcache"]; python3 -m pip install -q --no-index --no-deps --target
#           /tmp/spy .devcache/py_spy-*.whl && export PATH=/tmp/spy/bin:$PATH;
#           OUT=$OUT BUDGET_S=575 PYTHON=python3 bash benchmarks/scaling_run.sh
# The run unpacks the cache before its warm-up (the summary says how long the warm-up took).
# Never edit this script while it runs (bash reads it as it goes).
set -u
PHASE=${PHASE:-all}
cd "$(dirname "$0")/.."
export FSDP_JIT_PORTABLE=${FSDP_JIT_PORTABLE:-1}
CACHE_TGZ=${CACHE_TGZ:-.devcache/jit-portable.tar.xz}
OUT=${OUT:-/tmp/fsdp-scaling}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
CORES=${CORES:-1,2,4,8}
CLIENTS=${CLIENTS:-8}
BUDGET_S=${BUDGET_S:-580}
STEPS=${STEPS:-siblings python pyperload pyside pyprofile packet perload nativeside ablation stack packet4}
export PYTHONUNBUFFERED=1
left() { echo $((BUDGET_S - SECONDS)); }
warm_limit() { local w=$(( $(left) - 30 )); echo $(( w < 1 ? 1 : w )); }  # never timeout 0 (none)
step() {  # step NAME LIMIT_S ARGS...: one benchmarks/scaling.py invocation, if it fits
    local name=$1 limit=$2; shift 2
    case " $STEPS " in *" $name "*) ;; *) return ;; esac
    if [ "$(left)" -lt $((limit / 2)) ]; then
        echo "== $name: skipped, $(left) s of the budget left (it needs up to $limit)" | tee -a "$OUT/summary.txt"
        return
    fi
    [ "$(left)" -lt "$limit" ] && limit=$(left)
    echo "== $name: scaling.py $*" | tee -a "$OUT/summary.txt"
    local t0=$SECONDS
    timeout -k 5 "$limit" "$PY" benchmarks/scaling.py "$@" >"$WORK/$name.txt" 2>"$WORK/$name.err"
    echo "   rc=$? in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    grep -v '^{' "$WORK/$name.txt" | tee -a "$OUT/summary.txt"
    tail -3 "$WORK/$name.err" | tr '\r' '\n' | grep -v '^\s*$' | tail -2 >>"$OUT/summary.txt"
}
{
    lscpu
    for c in /sys/devices/system/cpu/cpu[0-9]*; do
        echo "$(basename "$c") siblings=$(cat "$c/topology/thread_siblings_list") core=$(cat "$c/topology/core_id") pkg=$(cat "$c/topology/physical_package_id")"
    done
    "$PY" -c 'import numba, numpy, sys; print(sys.version, numba.__version__, numpy.__version__)'
    df -h /dev/shm
} >"$OUT/topology.txt" 2>&1
grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node|MHz" "$OUT/topology.txt" | head -12
# A cold Numba cache: one small run of the native server with the packet client compiles
# nearly all of it (the engine, the jitted servers and loaders); then the Python server and
# the stack client with two RFD client workers, beside each other, load that and compile their
# own few parts (seconds).  Run together from a cold cache, each would compile the whole
# engine itself.  Nothing can be measured before this is done, so it may use all but the last
# 30 s of the budget (a warm-up cut short keeps what it finished in the cache).
jit_dir() { "$PY" -c 'import fsdp, numba; print(numba.config.CACHE_DIR)'; }
if [ "$PHASE" != measure ] && [ "$PHASE" != pack ] && [ -f "$CACHE_TGZ" ]; then
    "$PY" - "$CACHE_TGZ" "$(dirname "$(jit_dir)")" <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    names = t.getnames()
    t.extractall(sys.argv[2], filter="data")
print(f"== carried cache: {len(names)} entries of {names[0].split('/')[0]} unpacked")
PY
    carried=1
fi
if [ "$PHASE" != measure ]; then
    # fsdp's C part (native/, the Python server's per-connection calls): built in place where
    # this Python has a C compiler, its headers and setuptools; else the Python methods serve
    # (~40% slower Python servers), and the summary says which ran.
    if timeout 120 "$PY" setup.py -q build_ext --inplace >"$WORK/native.txt" 2>&1 \
            && "$PY" -c 'import fsdp._native' 2>>"$WORK/native.txt"; then
        echo "== fsdp._native: built" | tee -a "$OUT/summary.txt"
    else
        echo "== fsdp._native: not built: $(grep -iE 'error|no module' "$WORK/native.txt" | head -n 1)" | tee -a "$OUT/summary.txt"
    fi
    t0=$SECONDS
    timeout "$(warm_limit)" "$PY" -m fsdp demo --client packet --seconds 0.3 --concurrency 8 >"$WORK/warm1.txt" 2>&1
    rc=$?
    echo "   rc=$rc in $((SECONDS - t0)) s" >>"$WORK/warm1.txt"
    if [ $rc -ne 0 ] && [ -n "${carried:-}" ]; then  # the carried code would not run here: compile
        echo "== carried cache: the first warm-up failed with it (rc=$rc), removed; compiling" | tee -a "$OUT/summary.txt"
        tail -n 3 "$WORK/warm1.txt" >>"$OUT/summary.txt"
        rm -rf "$(jit_dir)"
        timeout "$(warm_limit)" "$PY" -m fsdp demo --client packet --seconds 0.3 --concurrency 8 >"$WORK/warm1.txt" 2>&1
        echo "   rc=$? in $((SECONDS - t0)) s" >>"$WORK/warm1.txt"
    fi
    timeout "$(warm_limit)" "$PY" -m fsdp demo --client packet --app python --seconds 0.3 --concurrency 8 >"$WORK/warm2.txt" 2>&1 &
    timeout "$(warm_limit)" "$PY" -m fsdp demo --client stack --client-cores 2 --seconds 0.3 --concurrency 8 >"$WORK/warm3.txt" 2>&1 &
    timeout "$(warm_limit)" "$PY" -m fsdp demo --client packet --cores 2 --client-cores 2 --ablation --seconds 0.3 --concurrency 8 >"$WORK/warm4.txt" 2>&1 &
    wait
    echo "== warm-up (compile) in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    for f in "$WORK"/warm[1234].txt; do tail -n 2 "$f"; done | tee -a "$OUT/summary.txt"
fi
if [ "$PHASE" = pack ]; then
    mkdir -p "$(dirname "$CACHE_TGZ")"
    "$PY" - "$(jit_dir)" "$CACHE_TGZ" <<'PY'
import os, sys, tarfile
src, dst = sys.argv[1], sys.argv[2]
with tarfile.open(dst, "w:xz", preset=6) as t:
    t.add(src, arcname=os.path.basename(src))
print(f"packed {src} into {dst}: {os.path.getsize(dst) / 2**20:.1f} MiB")
PY
    exit 0
fi
if [ "$PHASE" = warm ]; then
    exit 0
fi
# Which CPUs slow each other (host hyper-threads and clocks a VM does not show): ~15 s.
# If CPU 0's sibling stands out and the usual numbering holds, the steps after it place the
# workers by that (FSDP_CPU_TOPOLOGY, fsdp.apps.percore.cpu_topology), and the summary says so.
# Then the memory latency by working-set size (benchmarks/mem_latency.py, ~10 s).
case " $STEPS " in *" siblings "*)
    echo "== siblings: cpu_siblings.py --runs 2 --layout" | tee -a "$OUT/summary.txt"
    timeout -k 5 60 "$PY" benchmarks/cpu_siblings.py --runs 2 --layout 2>&1 | grep -v '^{' | tee -a "$OUT/summary.txt" | tee "$WORK/siblings.txt"
    layout=$(sed -n 's/^FSDP_CPU_TOPOLOGY=//p' "$WORK/siblings.txt")
    if [ -n "$layout" ] && [ -z "${FSDP_CPU_TOPOLOGY:-}" ]; then
        export FSDP_CPU_TOPOLOGY=$layout
        echo "== the steps below place workers by FSDP_CPU_TOPOLOGY=$layout" | tee -a "$OUT/summary.txt"
    fi
    echo "== memory latency: mem_latency.py" | tee -a "$OUT/summary.txt"
    timeout -k 5 40 "$PY" benchmarks/mem_latency.py 2>&1 | grep -v '^{' | tee -a "$OUT/summary.txt"
esac
step python 60 --cores "$CORES" --client-cores "$CLIENTS" --client packet --app python --concurrency 1024 --seconds 2 --runs 2
step pyperload 45 --cores "$CORES" --client-cores "$CLIENTS" --client packet --app python --per-core 128 --seconds 2
# The machine's ceiling: N independent one-core demos (own wire, own two CPUs) side by side.
step pyside 45 --cores "$CORES" --client packet --app python --per-core 128 --seconds 2 --side-by-side
# Where one Python server worker's time goes at 1 and at 8 server cores (py-spy, where the
# command put it on PATH: the device has none; carry its wheel): 3 s of samples from the worker
# on the first server CPU, collapsed stacks in logs.tgz (pyspy-N.txt), the top lines here.
pyprofile() {
    case " $STEPS " in *" pyprofile "*) ;; *) return ;; esac
    if ! command -v py-spy >/dev/null; then
        echo "== pyprofile: skipped, no py-spy on PATH" | tee -a "$OUT/summary.txt"; return
    fi
    for n in 1 8; do
        if [ "$(left)" -lt 30 ]; then
            echo "== pyprofile $n: skipped, $(left) s left" | tee -a "$OUT/summary.txt"; return
        fi
        timeout -k 5 50 "$PY" -m fsdp demo --app python --client packet --cores $n --client-cores "$CLIENTS" \
            --concurrency 1024 --seconds 12 >"$WORK/pyprofile-$n.txt" 2>&1 &
        local demo=$! pid="" cpu0
        cpu0=$("$PY" -c "from fsdp.apps.percore import placement; print(placement($n, $CLIENTS)[0][0])")
        for _ in $(seq 60); do  # the worker pinned to the first server CPU, once the run measures
            sleep 0.5
            for c in $(pgrep -f "fsdp demo --app python --client packet --cores $n "); do
                [ "$(sed -n 's/^Cpus_allowed_list:\s*//p' /proc/$c/status 2>/dev/null)" = "$cpu0" ] && pid=$c
            done
            [ -n "$pid" ] && break
        done
        sleep 6  # its run is under way (the demo measures 12 s; its workers load the code first)
        if [ -n "$pid" ]; then
            py-spy record --nonblocking -r 200 -d 3 -f raw -o "$WORK/pyspy-$n.txt" --pid "$pid" >/dev/null 2>&1
        fi
        wait $demo
        echo "== pyprofile $n server cores (worker $pid on CPU $cpu0): $(grep -E '^fsdp python' "$WORK/pyprofile-$n.txt" | head -1)" | tee -a "$OUT/summary.txt"
        [ -f "$WORK/pyspy-$n.txt" ] && "$PY" - "$WORK/pyspy-$n.txt" <<'PY' | tee -a "$OUT/summary.txt"
import collections, sys
own, incl, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n)
    total += n
    frames = stack.split(";")
    own[frames[-1]] += n
    names = {f.split(" (")[0] for f in frames}  # each function once per sample, any line
    for name in names:
        incl[name] += n
print("   own samples (function and line):")
for frame, n in own.most_common(10):
    print(f"   {100 * n / total:5.1f}%  {frame}")
print("   with callees, below the server loop:")
top = incl.get("HttpServer.run", total)
for name, n in incl.most_common():
    if n < top:
        print(f"   {100 * n / total:5.1f}%  {name}")
        if n < 0.04 * total:
            break
PY
    done
}
pyprofile
step packet 90 --cores "$CORES" --client-cores "$CLIENTS" --client packet --concurrency 2048 --seconds 2 --runs 3 --plot "$OUT/packet.png"
step perload 60 --cores "$CORES" --client-cores "$CLIENTS" --client packet --per-core 256 --seconds 2 --runs 3
step nativeside 45 --cores "$CORES" --client packet --per-core 256 --seconds 2 --side-by-side
step ablation 90 --cores "$CORES" --client-cores "$CLIENTS" --client packet --concurrency 2048 --seconds 2 --ablation --plot "$OUT/ablation.png"
step stack 45 --cores "$CORES" --client-cores "$CLIENTS" --client stack --concurrency 512 --seconds 2
step packet4 40 --cores "$CORES" --client-cores 4 --client packet --concurrency 1024 --seconds 2
tar czf "$OUT/logs.tgz" -C "$WORK" .
