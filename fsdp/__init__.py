"""fsdp: a userspace, per-core, share-nothing TCP/IP stack for Python.

    import fsdp
    with fsdp.Stack(nic="sim:lab", ip="10.0.0.2/24") as stack:
        stack.ping("10.0.0.1")

See README.md and docs/ARCHITECTURE.md.
"""

import socket as _socket

from fsdp import _jitcache, _numba_patches

_jitcache.configure()  # before any jitted module is imported
_numba_patches.install()  # (compile-time only: see the module)

from fsdp.core.stack import Stack, default_stack, poll_all_stacks  # noqa: E402
from fsdp.sockapi import tls as _tls  # noqa: E402

_tls.install()  # ssl.SSLContext.wrap_socket takes fsdp sockets too (fsdp/sockapi/tls.py)

__version__ = "0.1.0"

# The socket module's constants (CONTRACT.md §1: ``fsdp.AF_INET ... = socket module values``),
# re-exported so fsdp programs need not import both: the families and types, levels, options
# (SO_*, IPPROTO_*, IP_*, TCP_*), MSG_* flags, SHUT_*, INADDR_* and SOMAXCONN; and the socket
# module's exception names, which fsdp raises as the stdlib does.
_CONSTANT_PREFIXES = ("AF_", "SOCK_", "SOL_", "SO_", "IPPROTO_", "IP_", "TCP_", "MSG_", "SHUT_",
                      "INADDR_")
_CONSTANTS = sorted(
    name for name in dir(_socket)
    if (name.startswith(_CONSTANT_PREFIXES) or name == "SOMAXCONN")
    and isinstance(getattr(_socket, name), int)
)
globals().update({name: getattr(_socket, name) for name in _CONSTANTS})
error = _socket.error  # OSError
timeout = _socket.timeout  # TimeoutError
gaierror = _socket.gaierror
herror = _socket.herror


def socket(family=_socket.AF_INET, type=_socket.SOCK_STREAM, proto=0):
    """A TCP socket on the process's default stack (see :func:`default_stack`)."""
    return default_stack().socket(family, type, proto)


__all__ = [
    "Stack",
    "socket",
    "default_stack",
    "poll_all_stacks",
    "error",
    "timeout",
    "gaierror",
    "herror",
    *_CONSTANTS,
]
