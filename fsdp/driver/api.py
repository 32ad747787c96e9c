"""Backend-neutral NIC queue calls for the per-core loop.

``nic_rx_burst(q, pool, out_ids, max_n, now)``, ``nic_tx_burst(q, pool, ids, n, now)``,
``nic_next_event(q)`` and ``nic_borrow(q)`` work on any backend's queue NamedTuple.  In jitted
code the backend is chosen **at compile time** by the queue's type: each stub has a
``numba.extending.overload`` that looks the NamedTuple class up in a registry of backend kernels
and returns a direct call to them, so the per-core loop compiles to the backend's code with no
runtime dispatch.  From plain Python the stubs dispatch on ``type(q)``.

A poll pass should borrow its handles once (see ``fsdp.driver.jitmem``)::

    nic = nic_borrow(core.nic)
    pool = borrow_pool(core.pool)
    n = nic_rx_burst(nic, pool, rx_ids, 32, now)
    ...
    nic_tx_burst(nic, pool, tx_ids, k, now)

which saves each call the atomic reference-count updates of every array in the queue and pool
(measured: an idle rx+tx poll pair ~380 ns -> ~150 ns; forwarding 64-byte frames 12 -> 15 Mpps).

Caching: a ``cache=True`` caller of these stubs caches normally (verified in
tests/driver/test_api.py: a fresh process loads it from the cache and does not recompile).  The
cache stores the compiled caller with the backend kernel linked in, so it does not need the
registry on load; as always with Numba, clear the cache when a backend's code changes.

A backend registers with :func:`register_backend` when its module is imported; if a queue type is
seen before that, the overload imports the module that defines the queue class.
"""

import importlib

from numba import types
from numba.extending import overload


class _Backend:
    __slots__ = ("rx_burst", "tx_burst", "next_event", "borrow", "redirect")

    def __init__(self, rx_burst, tx_burst, next_event, borrow, redirect=None):
        self.rx_burst = rx_burst
        self.tx_burst = tx_burst
        self.next_event = next_event
        self.borrow = borrow
        self.redirect = redirect


_BACKENDS: dict[type, _Backend] = {}


def register_backend(queue_class: type, rx_burst, tx_burst, next_event, borrow=None,
                     redirect=None) -> None:
    """Make ``queue_class`` (a NamedTuple) usable with the ``nic_*`` calls.

    The arguments are jitted functions with the ``nic_*`` signatures; ``borrow`` (optional)
    returns the queue with borrowed arrays (``nic_borrow``); ``redirect`` (optional) hands a
    frame to a sibling queue of the same port (``nic_redirect``).
    """
    _BACKENDS[queue_class] = _Backend(rx_burst, tx_burst, next_event, borrow, redirect)


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


def nic_redirect(q, pool, fid, queue):
    """Copy frame ``fid`` to queue ``queue`` of the same port (another core's), where it arrives
    flagged FRAME_F_REDIRECTED; the caller keeps the frame.  -> 1, or 0 where the backend cannot
    (no such queue, ring full, or no sibling path: then the caller handles the frame itself)."""
    backend = _python_backend(q)
    return 0 if backend.redirect is None else backend.redirect(q, pool, fid, queue)


def nic_rx_ring_slots(q) -> int:
    """The frames queue ``q``'s receive ring holds from one sender (0 where the backend does not
    say): the burst it absorbs before dropping.  Python only (read once, when a core is made)."""
    geo = getattr(q, "geo", None)
    return int(getattr(geo, "ring_slots", 0) or 0)


def nic_borrow(q):
    """The queue with its arrays borrowed (``fsdp.driver.jitmem.borrow``): take it once at the
    top of a jitted poll pass (with ``borrow_pool(pool)``) and pass it to every ``nic_*`` call
    of that pass, so each call skips the atomic reference-count updates of the queue's arrays.
    Valid only within the jitted call that made it: never store or return it.  From Python
    (where nothing is reference-counted per call) it returns ``q`` itself."""
    _python_backend(q)
    return q


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


@overload(nic_borrow, jit_options={"cache": True})
def _ol_nic_borrow(q):
    backend = _backend_of_type(q)
    if backend is None:
        return None
    if backend.borrow is None:
        return lambda q: q
    borrow = backend.borrow

    def impl(q):
        return borrow(q)

    return impl


@overload(nic_redirect, jit_options={"cache": True})
def _ol_nic_redirect(q, pool, fid, queue):
    backend = _backend_of_type(q)
    if backend is None:
        return None
    if backend.redirect is None:
        return lambda q, pool, fid, queue: 0
    redirect = backend.redirect

    def impl(q, pool, fid, queue):
        return redirect(q, pool, fid, queue)

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
