"""Transparent mode: unmodified Python programs on fsdp (the ``LD_PRELOAD`` of this project).

``fsdp run [--nic URI --ip CIDR --cores N] -- PROGRAM [ARGS]`` runs PROGRAM with this module's
:func:`install` done first (by a ``sitecustomize`` bootstrap on ``PYTHONPATH``).  It swaps, in
the program's process:

* ``socket.socket`` for :class:`fsdp.transparent.socket.TransparentSocket` — so
  ``socket.create_connection``/``create_server``, ``socketserver``, ``http.server``,
  ``http.client``/``urllib`` and asyncio's sockets are fsdp's where the address says so;
* ``selectors.DefaultSelector`` (and ``SelectSelector``/``PollSelector``/``EpollSelector``) for
  :class:`fsdp.selectors.FsdpSelector`, which asyncio's default loop and ``socketserver`` use;
* ``select.select``, ``select.poll`` and ``select.epoll`` for versions that understand fsdp
  sockets (:mod:`fsdp.transparent.select`).

What goes to fsdp: AF_INET SOCK_STREAM sockets whose first ``bind()``/``connect()`` names a
non-loopback IPv4 address or the wildcard (``""``/``0.0.0.0``).  What stays on the kernel:
loopback (127.0.0.0/8), IPv6, AF_UNIX, UDP and raw sockets, sockets made from an fd
(``fromfd``, ``socketpair``), DNS.  TLS works: ``ssl.SSLContext.wrap_socket`` of an fsdp socket
runs OpenSSL over memory BIOs (:mod:`fsdp.sockapi.tls`).  Not covered: ``os.sendfile``
(``socket.sendfile`` falls back to send),
``dup``/``detach`` of an fsdp socket (EOPNOTSUPP), child processes (they run on the kernel).
Running the program without ``fsdp run`` is the rollback.
"""

from __future__ import annotations

import select as _select
import selectors as _selectors
import socket as _socket
import threading

from fsdp.transparent.socket import TransparentSocket

_saved: dict | None = None
_stack = None
_atexit_registered = False
# Connection states in which this host still owes the peer something (data, a FIN, an ACK).
_OWING_STATES = frozenset({"SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "CLOSING", "LAST-ACK"})


def _finish_at_exit() -> None:
    """What the kernel does for an exiting process: close its sockets and keep sending until
    the peers have the data and the FINs.  A userspace stack dies with its process, so the
    exit waits for that, up to ``FSDP_EXIT_LINGER`` seconds (default 2)."""
    import os
    import time

    from fsdp.core.stack import _live_stacks, poll_all_stacks

    try:
        linger = float(os.environ.get("FSDP_EXIT_LINGER", "2"))
    except ValueError:
        linger = 2.0
    stacks = [s for s in list(_live_stacks) if not s._closed]
    for stack in stacks:
        for sock in stack._open_sockets():
            try:
                sock.close()
            except Exception:
                pass
    start = time.monotonic()
    deadline = start + linger
    # FIN-WAIT-2 owes nothing, but the peer's FIN usually follows at once: acknowledging it
    # spares the peer retransmitting into a dead port (the kernel would stay in TIME-WAIT).
    fin_wait_2_until = start + min(linger, 0.5)
    while time.monotonic() < deadline:
        poll_all_stacks()
        owing_states = _OWING_STATES
        if time.monotonic() < fin_wait_2_until:
            owing_states = _OWING_STATES | {"FIN-WAIT-2"}
        owing = any(row["snd_q"] > 0 or row["state"] in owing_states
                    for stack in stacks for row in stack.connections())
        if not owing:
            break
        time.sleep(0.0002)
    for _ in range(3):  # the last ACK of the peer's FIN
        poll_all_stacks()


_stack_lock = threading.Lock()


def _get_stack():
    global _stack, _atexit_registered
    if _stack is not None and not _stack._closed and _atexit_registered:
        return _stack
    # Threads (a ThreadPoolExecutor of urllib clients) may open their first sockets at once:
    # one stack per process, so one of them makes it.
    with _stack_lock:
        return _get_stack_locked()


def _get_stack_locked():
    global _stack, _atexit_registered
    if _stack is None or _stack._closed:
        from fsdp.core.stack import default_stack

        _stack = default_stack()
    if not _atexit_registered:
        # Registered after the stack (and its NIC driver, which detaches its ports at exit)
        # exists: atexit runs handlers last-in first-out, so this one runs while the NIC works.
        import atexit

        atexit.register(_finish_at_exit)
        _atexit_registered = True
    return _stack


def install(stack=None) -> None:
    """Serve the stdlib's IPv4 TCP sockets from fsdp in this process (idempotent).

    ``stack``: an :class:`fsdp.Stack`; default: the process's default stack, made on the first
    fsdp socket from ``FSDP_NIC`` / ``FSDP_IP`` / ``FSDP_CORES``."""
    global _saved, _stack
    from fsdp import selectors as fsdp_selectors
    from fsdp.transparent import select as fsdp_select
    from fsdp.transparent import socket as tsocket

    _stack = stack
    tsocket._stack_getter = _get_stack
    if _saved is not None:
        return
    _saved = {
        (_socket, "socket"): _socket.socket,
        (_select, "select"): _select.select,
        (_select, "poll"): _select.poll,
    }
    if hasattr(_select, "epoll"):
        _saved[(_select, "epoll")] = _select.epoll
    for name in ("DefaultSelector", "SelectSelector", "PollSelector", "EpollSelector"):
        if hasattr(_selectors, name):
            _saved[(_selectors, name)] = getattr(_selectors, name)
            setattr(_selectors, name, fsdp_selectors.FsdpSelector)
    _socket.socket = TransparentSocket
    _select.select = fsdp_select.select
    _select.poll = fsdp_select.poll
    if hasattr(_select, "epoll"):
        _select.epoll = fsdp_select.epoll


def uninstall() -> None:
    """Undo :func:`install` (sockets already made keep working where they are)."""
    global _saved
    if _saved is None:
        return
    for (module, name), value in _saved.items():
        setattr(module, name, value)
    _saved = None


def installed() -> bool:
    return _saved is not None


__all__ = ["TransparentSocket", "install", "installed", "uninstall"]
