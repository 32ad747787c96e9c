import pytest


@pytest.fixture
def harness():
    from fsdp.testing import Harness

    h = Harness()
    yield h
    h.close()
