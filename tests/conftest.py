import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import engine_warmup  # noqa: E402

# Test directories by what their tests need compiled.  With a cold Numba cache the engine is
# compiled in the background (engine_warmup.start_background) while the tests that never start
# it run: they go first, then the stacks' tests, then the demo's (its native loops come last).
_ENGINE_FREE = frozenset({"wire", "driver", "tcp"})
_APPS = frozenset({"apps", "bench"})


def _needs(item) -> int:
    """0: nothing of the engine; 1: the engine; 2: the engine and the demo's jitted loops.
    The conformance scenarios' Linux variants and the Linux harness's own tests need no engine
    (they run against the kernel): they go with the first group, into the compile's time."""
    try:
        parts = Path(str(item.fspath)).resolve().relative_to(TESTS).parts
    except ValueError:
        return 1
    top = parts[0]
    if top == "conformance":
        callspec = getattr(item, "callspec", None)
        kind = callspec.params.get("stack_kind") if callspec is not None else None
        if kind == "linux" or parts[-1] == "test_linux_harness.py":
            return 0
    return 0 if top in _ENGINE_FREE else 2 if top in _APPS else 1


def pytest_configure(config):
    # pytest-xdist's controller collects nothing, so it cannot tell what its workers will need:
    # it starts the whole background compile (the engine and the demo's loops) for all of them.
    if (getattr(config, "workerinput", None) is None
            and getattr(config.option, "numprocesses", None)
            and not config.option.collectonly
            and engine_warmup.start_background(apps=True)):
        os.environ[engine_warmup.SHARED_DIR_ENV] = engine_warmup._dir


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_needs)  # (stable: each file keeps its order; the same in every xdist worker)
    needs = {_needs(i) for i in items}
    shared = os.environ.get(engine_warmup.SHARED_DIR_ENV)
    if getattr(config, "workerinput", None) is not None and shared:
        engine_warmup.follow(shared)
    elif not config.option.collectonly and needs - {0}:
        engine_warmup.start_background(apps=2 in needs)


def pytest_runtest_setup(item):
    n = _needs(item)
    if n:
        engine_warmup.wait(engine_warmup.PHASES[n - 1])


def pytest_terminal_summary(terminalreporter):
    failed_log = engine_warmup.stop_background()
    for line in engine_warmup.background_report():
        terminalreporter.write_line(f"background compile: {line}")
    if failed_log:
        terminalreporter.write_line("background compile failed (its tests compiled what they "
                                    "needed themselves):\n" + failed_log)


def pytest_unconfigure(config):
    engine_warmup.stop_background()
    engine_warmup.remove_dir()


@pytest.fixture
def harness():
    from fsdp.testing import Harness

    h = Harness()
    yield h
    h.close()


@pytest.fixture
def fresh_wire():
    """A sim wire name no earlier run has used (the pid and a random part: a killed process
    leaves its wire's file behind, and pids come round again), whose file is removed after the
    test, for tests that kill the processes using it."""
    import os
    import secrets

    from fsdp.driver.sim import shm_dirs

    name = f"w{os.getpid()}-{secrets.token_hex(4)}"
    yield name
    for d in shm_dirs():
        try:
            os.unlink(os.path.join(d, name))
        except FileNotFoundError:
            pass
