import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine_warmup import warm_engine  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _engine_compiled():
    """These tests wait under timeouts: compile the engine first (see engine_warmup)."""
    warm_engine()
