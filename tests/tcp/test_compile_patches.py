"""fsdp's patches to Numba's compiler and cache (fsdp/_numba_patches.py, fsdp/_jitcache.py): a
cold compile translates each inline helper once, cache writes are safe across processes, and
neither changes what is compiled.  Each check runs in a fresh interpreter, so the patches meet
a Numba nothing else has touched."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# One inline helper inlined at four sites of one caller, with three argument types (uint8,
# int64, float64: the sites must stay apart, or typing would merge their variables), a helper
# that inlines another (the memo applies inside a memoized run too), and a callee compiled with
# a kernel's wrapper flags (which do not change the untyped pipeline's result).
INLINE_PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from numba import njit
    import fsdp._numba_patches as p
    from numba.core import untyped_passes as up

    runs = []  # each translation of a function's bytecode into Numba IR
    translate = up.TranslateByteCode.run_pass
    def counted(self, state):
        runs.append(state.func_id.func_name)
        return translate(self, state)
    up.TranslateByteCode.run_pass = counted

    @njit(inline="always")
    def bump(x):
        y = x + 1
        z = y * 2
        return z

    @njit(inline="always")
    def twice(x):
        return bump(x) + bump(x)

    @njit(no_cpython_wrapper=True, no_cfunc_wrapper=True)  # (a kernel's flags)
    def inner(b):
        return bump(b)

    @njit
    def caller(a, b, c):
        u = bump(a)
        v = bump(b)
        w = bump(c)
        return u, v, w, twice(b), bump(np.uint8(200)), inner(b)

    out = caller(np.uint8(3), 10, 2.5)
    print(json.dumps({"result": [float(x) for x in out], "types": [type(x).__name__ for x in out],
                      "runs": runs, "memo": len(p._memo)}))
    """
)


def _run(code: str, **env) -> dict:
    e = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    r = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_an_inline_helper_is_translated_once_and_each_site_stays_apart():
    on = _run(INLINE_PROBE)
    off = _run(INLINE_PROBE, FSDP_NUMBA_PATCHES="0")
    # the same values and types either way (bump(2.5) = 7.0; twice(10) = 44)
    assert on["result"] == off["result"] == [8.0, 22.0, 7.0, 44.0, 402.0, 22.0]
    assert on["types"] == off["types"]
    # without the memo each site translates its helper again: bump's 4 sites in caller, 2 in
    # twice and 1 in inner; with it, each helper is translated once
    assert (off["runs"].count("bump"), off["runs"].count("twice")) == (7, 1), off["runs"]
    assert (on["runs"].count("bump"), on["runs"].count("twice")) == (1, 1), on["runs"]
    assert on["memo"] == 2 and off["memo"] == 0


def test_patches_switched_off_leave_numba_alone():
    got = _run(textwrap.dedent(
        """
        import json
        import fsdp
        from numba.core import inline_closurecall as icc
        print(json.dumps(getattr(icc.InlineWorker, "_fsdp_memo_installed", False)))
        """), FSDP_NUMBA_PATCHES="0")
    assert got is False


SAVE_PROBE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import fsdp
    import twosig
    x = np.int64(5) if sys.argv[1] == "int" else 2.5
    print(json.dumps({"value": float(twosig.f(x))}))
    """
)


def _waits_on_flock(pid: int) -> bool:
    with open("/proc/locks") as f:
        # e.g. "1: -> FLOCK  ADVISORY  WRITE 4242 00:2a:1234 0 EOF" (a waiter; the holder has no ->)
        return any(w[1:3] == ["->", "FLOCK"] and w[5] == str(pid)
                   for w in (line.split() for line in f) if len(w) > 5)


def test_cache_writes_wait_for_each_other(tmp_path):
    """A process that holds the cache directory's save lock keeps another process's Numba cache
    write waiting (so two processes never pick the same data file for two signatures); once it
    lets go, the write lands, and both signatures then load from the cache with their own
    code."""
    import fcntl

    (tmp_path / "twosig.py").write_text(
        "from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x * 2 + 1\n")
    cache = tmp_path / "cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache),
               PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    # the lock file of the directory Numba will write twosig's cache into
    first = subprocess.run([sys.executable, "-c", SAVE_PROBE, "int"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    (index,) = list(cache.rglob("twosig.f-*.nbi"))
    lock = os.open(index.parent / ".save.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = index.read_bytes()
        second = subprocess.Popen([sys.executable, "-c", SAVE_PROBE, "float"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # it compiles, then blocks in its save: /proc/locks lists it waiting ("->") on a flock
        deadline = time.monotonic() + 240
        while not _waits_on_flock(second.pid) and second.poll() is None:
            assert time.monotonic() < deadline, "the second process never reached its save"
            time.sleep(0.05)
        assert second.poll() is None, second.communicate()
        assert index.read_bytes() == before
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"value": 6.0}
    assert len(list(index.parent.glob("twosig.f-*.nbc"))) == 2
    for arg, want in (("int", 11.0), ("float", 6.0)):
        r = subprocess.run([sys.executable, "-c", SAVE_PROBE, arg], env=env,
                           capture_output=True, text=True, timeout=300)
        assert json.loads(r.stdout.strip().splitlines()[-1]) == {"value": want}


PORTABLE_PROBE = textwrap.dedent(
    """
    import json
    import numpy as np
    from fsdp.wire import checksum as c
    value = int(c.checksum(np.frombuffer(bytes([0x45, 0, 0, 0x1c]), np.uint8).copy(), 0, 4))
    print(json.dumps({"value": value, "hits": sum(c.checksum.stats.cache_hits.values()),
                      "cpu": c.checksum.targetctx.codegen().magic_tuple()[1]}))
    """
)


def test_a_portable_cache_loads_in_another_checkout(tmp_path):
    """FSDP_JIT_PORTABLE=1 (fsdp._jitcache; what benchmarks/scaling_run.sh carries to the
    device machine): a cache compiled from one checkout loads in a copy at another path,
    compiled for the portable CPU baseline, with no Python version in its file names."""
    import shutil

    for name in ("a", "b"):
        shutil.copytree(ROOT / "fsdp", tmp_path / name / "fsdp",
                        ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "cache"
    runs = []
    for name in ("a", "b"):
        env = dict(os.environ, FSDP_JIT_PORTABLE="1", NUMBA_CACHE_DIR=str(cache),
                   PYTHONPATH=str(tmp_path / name))
        r = subprocess.run([sys.executable, "-c", PORTABLE_PROBE], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    want = 0x4500 + 0x001C
    assert runs[0] == {"value": (~want) & 0xFFFF, "hits": 0, "cpu": "x86-64-v3"}
    assert runs[1] == {"value": runs[0]["value"], "hits": 1, "cpu": "x86-64-v3"}
    names = [p.name for p in cache.rglob("checksum.checksum-*")]
    assert names and all(".portable" in n and ".py3" not in n for n in names), names
