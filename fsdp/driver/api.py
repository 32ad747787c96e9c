"""Backend-neutral NIC queue calls for the per-core loop.

``nic_rx_burst(q, pool, out_ids, max_n, now)``, ``nic_tx_burst(q, pool, ids, n, now)`` and
``nic_next_event(q)`` work on any backend's queue NamedTuple.  In jitted code the backend is
chosen **at compile time** by the queue's type: each stub has a ``numba.extending.overload``
that looks the NamedTuple class up in a registry of backend kernels and returns a direct call to
them, so the per-core loop compiles to the backend's code with no runtime dispatch.  From plain
Python the stubs dispatch on ``type(q)``.

Caching: a ``cache=True`` caller of these stubs caches normally (verified in
tests/driver/test_api.py: a fresh process loads it from the cache and does not recompile).  The
cache stores the compiled caller with the backend kernel inlined, so it does not need the
registry on load; as always with Numba, clear the cache when a backend's code changes.

A backend registers with :func:`register_backend` when its module is imported; if a queue type is
seen before that, the overload imports the module that defines the queue class.
"""

import importlib

from numba import types
from numba.extending import overload


class _Backend:
    __slots__ = ("rx_burst", "tx_burst", "next_event")

    def __init__(self, rx_burst, tx_burst, next_event):
        self.rx_burst = rx_burst
        self.tx_burst = tx_burst
        self.next_event = next_event


_BACKENDS: dict[type, _Backend] = {}


def register_backend(queue_class: type, rx_burst, tx_burst, next_event) -> None:
    """Make ``queue_class`` (a NamedTuple) usable with the ``nic_*`` calls.

    The three arguments are jitted functions with the ``nic_*`` signatures.
    """
    _BACKENDS[queue_class] = _Backend(rx_burst, tx_burst, next_event)


def _backend_of_class(cls: type):
    backend = _BACKENDS.get(cls)
    if backend is None:
        importlib.import_module(cls.__module__)  # the backend registers itself on import
        backend = _BACKENDS.get(cls)
    return backend


def _backend_of_type(q):
    """The registered backend for a Numba type, or None (then the overload does not apply)."""
    if not isinstance(q, types.BaseNamedTuple):
        return None
    return _backend_of_class(q.instance_class)


def _python_backend(q):
    backend = _backend_of_class(type(q))
    if backend is None:
        raise TypeError(f"{type(q).__name__} is not a registered NIC queue type")
    return backend


def nic_rx_burst(q, pool, out_ids, max_n, now):
    """Receive up to ``max_n`` frames from queue ``q`` into ``pool``; ids to ``out_ids``; -> n."""
    return _python_backend(q).rx_burst(q, pool, out_ids, max_n, now)


def nic_tx_burst(q, pool, ids, n, now):
    """Transmit ``ids[:n]`` on queue ``q``; the NIC takes ownership of all n frames; -> n."""
    return _python_backend(q).tx_burst(q, pool, ids, n, now)


def nic_next_event(q):
    """Earliest time (µs) the queue needs a call to make progress (delayed frames), or -1."""
    return _python_backend(q).next_event(q)


@overload(nic_rx_burst, jit_options={"cache": True})
def _ol_nic_rx_burst(q, pool, out_ids, max_n, now):
    backend = _backend_of_type(q)
    if backend is None:
        return None
    rx_burst = backend.rx_burst

    def impl(q, pool, out_ids, max_n, now):
        return rx_burst(q, pool, out_ids, max_n, now)

    return impl


@overload(nic_tx_burst, jit_options={"cache": True})
def _ol_nic_tx_burst(q, pool, ids, n, now):
    backend = _backend_of_type(q)
    if backend is None:
        return None
    tx_burst = backend.tx_burst

    def impl(q, pool, ids, n, now):
        return tx_burst(q, pool, ids, n, now)

    return impl


@overload(nic_next_event, jit_options={"cache": True})
def _ol_nic_next_event(q):
    backend = _backend_of_type(q)
    if backend is None:
        return None
    next_event = backend.next_event

    def impl(q):
        return next_event(q)

    return impl
