"""The conformance suite runs every scenario against two stacks: fsdp (``fsdp.testing.Harness``,
virtual time) and the Linux kernel (``fsdp.testing_linux.LinuxHarness``, real time, in a private
network namespace).  A scenario proven on Linux is what fsdp is held to.

The fsdp variant is skipped, with the reason printed, only while fsdp's harness has no working
socket layer (no ``Harness().stack.socket``, or ``Harness().socket()`` raising); it switches on
by itself when sockets work.

``FSDP_CONFORMANCE_STACKS=linux`` (or ``fsdp``) runs one variant only.  The Linux variant skips
when the host cannot make namespaces and TAP devices (not root).
"""

from __future__ import annotations

import functools
import os

import pytest
from helpers import linux_harness_class


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a Linux scenario that waits several seconds")


@functools.cache
def _fsdp_socket_layer_missing() -> str | None:
    """Why fsdp's harness cannot make a TCP socket yet, or None once it can."""
    from fsdp.testing import Harness

    h = Harness()
    try:
        if not callable(getattr(h.stack, "socket", None)):
            return "fsdp.testing.Harness has no socket layer yet (no Harness().stack.socket)"
        try:
            h.socket().close()
        except Exception as e:  # the socket layer exists but the engine under it does not yet
            return f"fsdp.testing.Harness().socket() does not work yet: {type(e).__name__}: {e}"
        return None
    finally:
        h.close()


def make_harness(kind: str, **options):
    """A harness of ``kind`` ("fsdp" or "linux"), skipping the test when it cannot run."""
    if kind == "fsdp":
        reason = _fsdp_socket_layer_missing()
        if reason:
            print(reason)
            pytest.skip(reason)
        from fsdp.testing import Harness

        return Harness(**options)
    return linux_harness_class()(**options)


STACKS = [k for k in os.environ.get("FSDP_CONFORMANCE_STACKS", "fsdp,linux").split(",") if k]


@pytest.fixture(params=STACKS)
def stack_kind(request) -> str:
    return request.param


@pytest.fixture
def h(stack_kind):
    harness = make_harness(stack_kind)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def harness_factory(stack_kind):
    """For scenarios that need options: ``harness_factory(tcp_syncookies=2)``."""
    made = []

    def factory(**options):
        hh = make_harness(stack_kind, **options)
        made.append(hh)
        return hh

    yield factory
    for hh in made:
        hh.close()
