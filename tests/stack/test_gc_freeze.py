"""A stack takes the objects that exist once it has loaded its engine out of the cyclic
collector's scans (fsdp.core.stack.freeze_long_lived_objects): Numba's ~100,000 objects would
otherwise make every full collection a stall of tens of milliseconds."""

import subprocess
import sys
import textwrap

_PROBE = textwrap.dedent("""
    import gc, os, time
    import fsdp
    before = gc.get_freeze_count()
    s = fsdp.Stack(nic=f"sim:gcfreeze-{os.getpid()}", ip="10.9.7.1/24")
    s.socket().close()
    frozen = gc.get_freeze_count() - before
    t = time.perf_counter()
    gc.collect()
    print(frozen, len(gc.get_objects()), time.perf_counter() - t)
    s.close()
""")


def _probe(env_value):
    import os

    env = dict(os.environ)
    env.pop("FSDP_GC_FREEZE", None)
    if env_value is not None:
        env["FSDP_GC_FREEZE"] = env_value
    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    frozen, tracked, _ = r.stdout.split()
    return int(frozen), int(tracked)


def test_a_stack_freezes_what_loading_its_engine_made():
    frozen, tracked = _probe(None)
    # (the engine's objects: far more than a bare interpreter's ~17,000 in all)
    assert frozen > 50_000, frozen
    assert tracked < frozen / 4, (frozen, tracked)  # what a full collection still walks


def test_fsdp_gc_freeze_0_leaves_the_collector_alone():
    frozen, tracked = _probe("0")
    assert frozen == 0
    assert tracked > 50_000


def test_a_closed_harness_is_freed_although_objects_were_frozen():
    """The freeze makes any reference cycle alive at that moment immortal.  A Harness and its
    stack must not form one (the stack's clock is its own object, not a closure over the
    harness): a test suite makes thousands of harnesses in one process, and each kept alive
    would hold its pool, tables and wire (~40 MB; 2-worker CI runs were OOM-killed)."""
    import gc
    import weakref

    from fsdp.testing import Harness

    h = Harness()
    s = h.socket()
    s.bind((h.ip, 80))
    s.listen(8)
    gc.freeze()  # what loading the engine does (done already if this process loaded it first)
    stack = weakref.ref(h.stack)
    h.close()
    del h, s
    gc.collect()
    assert stack() is None


def test_only_the_first_stack_of_a_process_freezes():
    """Later stacks load nothing of note: they leave the collector as it is, so a cycle the
    program holds then (here: a closed stack in one) can still be collected."""
    probe = textwrap.dedent("""
        import gc, os, weakref
        import fsdp
        first = fsdp.Stack(nic=f"sim:gcfreeze1-{os.getpid()}", ip="10.9.7.1/24")
        first.socket().close()
        frozen = gc.get_freeze_count()
        class Owner:
            pass
        o = Owner()
        o.now = 0
        o.stack = fsdp.Stack(nic=f"sim:gcfreeze2-{os.getpid()}", ip="10.9.7.2/24",
                             clock=lambda: o.now)  # a cycle: o -> stack -> clock -> o
        o.stack.socket().close()
        gone = weakref.ref(o.stack)
        o.stack.close()
        del o
        gc.collect()
        print(gc.get_freeze_count() - frozen, gone() is None)
        first.close()
    """)
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["0", "True"]
