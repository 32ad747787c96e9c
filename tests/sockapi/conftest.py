"""Fixtures shared by the parity tests (test_stdlib_parity.py, test_tls.py)."""

import itertools
import os
import sys
from pathlib import Path

import pytest

import fsdp

_wires = itertools.count()


@pytest.fixture(scope="module")
def stacks():
    # compile the engine first: scenarios wait under short timeouts (see engine_warmup)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from engine_warmup import warm_engine

    warm_engine()
    wire = f"sim:parity-{os.getpid()}-{next(_wires)}"
    server = fsdp.Stack(nic=wire, ip="10.9.0.1/24")
    client = fsdp.Stack(nic=wire, ip="10.9.0.2/24")
    yield server, client
    client.close()
    server.close()


@pytest.fixture(scope="module")
def py_engine_stacks(stacks):
    """``stacks``' wire with two more stacks whose sockets call the engine through Numba's
    entries (fsdp.sockapi.fastcall.PyEngine): what runs where fsdp._native was not built."""
    from fsdp.sockapi.fastcall import PyEngine

    wire = f"sim:parity-py-{os.getpid()}-{next(_wires)}"
    server = fsdp.Stack(nic=wire, ip="10.9.0.1/24")
    client = fsdp.Stack(nic=wire, ip="10.9.0.2/24")
    for s in (server, client):
        s._engine = PyEngine(s._refs, s._clock, s._virtual_clock)
    yield server, client
    client.close()
    server.close()
