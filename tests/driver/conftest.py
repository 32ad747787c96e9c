"""Every sim port a driver test makes is leak-checked when the test ends."""

import pytest

from fsdp.driver.sim import SimPort


@pytest.fixture(autouse=True)
def _audit_every_sim_port(monkeypatch):
    made = []
    original = SimPort.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(SimPort, "__init__", recording_init)
    yield
    for port in made:
        port.audit()
