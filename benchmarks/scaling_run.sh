#!/usr/bin/env bash
# The 16-core scaling run (issue 4), as one command: the machine's topology, then
# benchmarks/scaling.py with the packet client (all features, no listen spawn, no RFD), the
# stack client, and the Python server.  Each step has its own time limit and writes as it
# goes, so a run cut short still reports what it finished; the results land in OUT (at most
# eight files: summary.txt, topology.txt, two plots, logs.tgz).
#   OUT=/tmp/out bash benchmarks/scaling_run.sh
# PHASE=warm only compiles (a cold Numba cache took over 5.5 minutes on the 16-core device
# machine), PHASE=measure only measures: two device calls on one warm machine, each well
# inside a call's 10 minutes.  Default: both.
set -u
PHASE=${PHASE:-all}
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fsdp-scaling}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
CORES=${CORES:-1,2,4,8}
CLIENTS=${CLIENTS:-8}
export PYTHONUNBUFFERED=1
step() {  # step NAME LIMIT_S ARGS...: one benchmarks/scaling.py invocation
    local name=$1 limit=$2; shift 2
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
# A cold Numba cache: compile the native server + packet client, the Python server and the
# stack client in parallel, one small run each, before anything is measured.
if [ "$PHASE" != measure ]; then
    t0=$SECONDS
    timeout 540 "$PY" -m fsdp demo --client packet --seconds 0.3 --concurrency 8 >"$WORK/warm1.txt" 2>&1 &
    timeout 540 "$PY" -m fsdp demo --client packet --app python --seconds 0.3 --concurrency 8 >"$WORK/warm2.txt" 2>&1 &
    # the stack client (its own jitted loop) and two client workers (receive flow deliver)
    timeout 540 "$PY" -m fsdp demo --client stack --client-cores 2 --seconds 0.3 --concurrency 8 >"$WORK/warm3.txt" 2>&1 &
    wait
    echo "== warm-up (compile) in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
    for f in "$WORK"/warm[123].txt; do tail -n 2 "$f"; done | tee -a "$OUT/summary.txt"
fi
if [ "$PHASE" = warm ]; then
    exit 0
fi
step packet 100 --cores "$CORES" --client-cores "$CLIENTS" --client packet --concurrency 2048 --seconds 3 --plot "$OUT/packet.png"
step ablation 150 --cores "$CORES" --client-cores "$CLIENTS" --client packet --concurrency 2048 --seconds 2 --ablation --plot "$OUT/ablation.png"
step stack 80 --cores "$CORES" --client-cores "$CLIENTS" --client stack --concurrency 512 --seconds 2
step python 90 --cores "$CORES" --client-cores "$CLIENTS" --client packet --app python --concurrency 1024 --seconds 2
step packet4 60 --cores "$CORES" --client-cores 4 --client packet --concurrency 1024 --seconds 2
tar czf "$OUT/logs.tgz" -C "$WORK" .
