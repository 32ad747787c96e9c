"""Compile the TCP engine before tests that run under a timeout, and, with a cold cache, in the
background while the tests that need no engine run.

A cold Numba cache takes minutes to compile ``run_once`` and the usercall dispatcher; a test
whose asyncio loop or child process waits with a timeout would count that against it.  One
connection between two stacks, with no timeout, compiles (and caches on disk for child
processes) everything such tests use: :func:`warm_engine`.

That compile is most of a cold run of the suite, and it uses one CPU.  With a cold cache,
``tests/conftest.py`` therefore starts this file as a process of its own
(:func:`start_background`): it compiles the engine, then runs the demo's native server and its
two load generators once, so their jitted loops (``bench_run``, ``packet_client_run``) are
compiled too.  Meanwhile the test run takes the tests that never start the engine first
(``tests/wire``, ``tests/driver``, ``tests/tcp``), and each later test waits only for the phase
it needs (:func:`wait`): the stacks' tests for the engine, ``tests/apps`` and ``tests/bench``
for the demo's loops.  Numba's cache is shared by processes through files, and fsdp serializes
its writes (``fsdp._jitcache``), so whatever each process compiles first, the other loads.
``FSDP_TEST_PREWARM=0`` turns the background compile off.

Under pytest-xdist (``scripts/test`` runs two workers) the controller starts the one background
compile (``conftest.pytest_configure``) and names its directory in ``FSDP_PREWARM_DIR``; each
worker follows it (:func:`follow`) instead of starting its own, which would compile everything
once per worker on the same CPUs.
"""

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("engine", "apps")
# the demo's jitted loops, compiled by running each once: the native server with the stack
# load generator, then with the packet client (both loops of ``--app native``: bench_run
# serves and loads; packet_client_run is the frame-level client)
APP_RUNS = (
    ("demo", "--app", "native", "--seconds", "0.05", "--concurrency", "4"),
    ("demo", "--app", "native", "--client", "packet", "--seconds", "0.05", "--concurrency", "4"),
)

SHARED_DIR_ENV = "FSDP_PREWARM_DIR"

_done = False
_ids = itertools.count()
_background: "subprocess.Popen | None" = None
_dir: "str | None" = None
_following = False  # an xdist worker waiting on the controller's background compile
_owned = False  # this process made _dir (and removes it at the end)


def warm_engine() -> None:
    global _done
    if _done:
        return
    wait("engine")  # (a background compile of it: load what it cached instead of racing it)
    import fsdp

    wire = f"sim:warmup-{os.getpid()}-{next(_ids)}"
    with fsdp.Stack(nic=wire, ip="10.250.0.1/24") as server, fsdp.Stack(
        nic=wire, ip="10.250.0.2/24"
    ) as client:
        ls = server.socket()
        ls.bind(("0.0.0.0", 9))
        ls.listen()
        c = client.socket()
        c.connect(("10.250.0.1", 9))
        s, _ = ls.accept()
        c.sendall(b"warm")
        assert s.recv(4) == b"warm"
        from fsdp.selectors import DefaultSelector

        with DefaultSelector() as sel:  # the selectors' poll_status
            sel.register(s, 1)
            sel.select(0)
        c.close()
        s.close()
        ls.close()
    _done = True


def engine_is_cached() -> bool:
    """The current source's cache holds the compiled poll loop (``poll_status``)."""
    import numba

    import fsdp  # noqa: F401  (sets Numba's cache directory for this source)

    return any(Path(numba.config.CACHE_DIR).glob("**/loop.poll_status-*.nbi"))


def start_background(apps: bool) -> bool:
    """Start the background compile (the apps' loops too, if ``apps``), unless the engine is
    cached or ``FSDP_TEST_PREWARM=0``; True if it started."""
    global _background, _dir, _owned
    if _background is not None or os.environ.get("FSDP_TEST_PREWARM", "1") == "0":
        return _background is not None
    if engine_is_cached():
        return False
    _dir = tempfile.mkdtemp(prefix="fsdp-prewarm-")
    _owned = True
    log = open(os.path.join(_dir, "log"), "wb")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    _background = subprocess.Popen(
        [sys.executable, __file__, _dir, *(["--apps"] if apps else [])],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
    log.close()
    return True


def follow(directory: str) -> None:
    """Wait, in :func:`wait`, on the background compile another process (xdist's controller)
    started in ``directory``, rather than starting one."""
    global _dir, _following
    if _background is None:
        _dir, _following = directory, True


WAIT_LIMIT_S = 1500  # a background compile that has not finished a phase by then is stuck


def _ended() -> bool:
    if _background is not None:
        return _background.poll() is not None
    return os.path.exists(os.path.join(_dir, "end"))  # (written by _main however it ends)


def wait(phase: str) -> None:
    """Return once the background compile has finished ``phase`` (at once if there is none, or
    it ended without it, or after WAIT_LIMIT_S, when it is stopped: the caller then compiles
    what it needs)."""
    global _following
    if _background is None and not _following:
        return
    marker = os.path.join(_dir, phase + ".done")
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not os.path.exists(marker) and not _ended():
        if time.monotonic() > deadline:
            print(f"engine_warmup: no '{phase}' after {WAIT_LIMIT_S} s; "
                  + ("no longer waiting for" if _following else "stopping")
                  + " the background compile", file=sys.stderr)
            _following = False
            stop_background()  # (so no later test waits for it again)
            return
        time.sleep(0.05)


def background_report() -> list[str]:
    """The lines the background compile printed (what it compiled, in how long)."""
    if _dir is None:
        return []
    try:
        with open(os.path.join(_dir, "log"), errors="replace") as f:
            return [line.rstrip() for line in f if line.startswith(("engine", "fsdp "))]
    except OSError:
        return []


def stop_background() -> str:
    """Stop the background compile if it still runs; its log if it failed, else ''."""
    global _background
    if _background is None:
        return ""
    if _background.poll() is None:
        _background.terminate()
        try:
            _background.wait(10)
        except subprocess.TimeoutExpired:
            _background.kill()
            _background.wait()
        rc = 0  # (stopped by us: not a failure)
    else:
        rc = _background.returncode
    _background = None
    with open(os.path.join(_dir, "log"), errors="replace") as f:
        log = f.read()
    return log[-4000:] if rc else ""


def remove_dir() -> None:
    """Remove the background compile's directory (its markers and log), once it is stopped and
    its report read; a process that only followed it leaves it to its owner."""
    global _dir, _owned
    if _owned and _background is None:
        shutil.rmtree(_dir, ignore_errors=True)
        _dir, _owned = None, False


def _main(argv: list[str]) -> int:
    try:
        return _compile(argv[0], "--apps" in argv[1:])
    finally:
        Path(argv[0], "end").touch()  # (for the processes that follow it: it is over)


def _compile(out: str, apps: bool) -> int:
    t0 = time.monotonic()
    warm_engine()
    print(f"engine compiled in {time.monotonic() - t0:.0f} s", flush=True)
    Path(out, "engine.done").touch()
    if apps:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for run in APP_RUNS:
            t = time.monotonic()
            r = subprocess.run([sys.executable, "-m", "fsdp", *run], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                               timeout=900)
            print(f"fsdp {' '.join(run)}: exit {r.returncode} in {time.monotonic() - t:.0f} s",
                  flush=True)
            if r.returncode:
                print(r.stderr[-2000:], flush=True)
                return 1
    Path(out, "apps.done").touch()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
