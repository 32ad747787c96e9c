import pytest


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
