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

__version__ = "0.1.0"

# The socket module's constants, re-exported so fsdp programs need not import both.
AF_INET = _socket.AF_INET
SOCK_STREAM = _socket.SOCK_STREAM
SOL_SOCKET = _socket.SOL_SOCKET
IPPROTO_TCP = _socket.IPPROTO_TCP
TCP_NODELAY = _socket.TCP_NODELAY
SO_REUSEADDR = _socket.SO_REUSEADDR
SO_KEEPALIVE = _socket.SO_KEEPALIVE
SO_LINGER = _socket.SO_LINGER
SO_RCVBUF = _socket.SO_RCVBUF
SO_SNDBUF = _socket.SO_SNDBUF
SO_ERROR = _socket.SO_ERROR
SHUT_RD = _socket.SHUT_RD
SHUT_WR = _socket.SHUT_WR
SHUT_RDWR = _socket.SHUT_RDWR



def socket(family=_socket.AF_INET, type=_socket.SOCK_STREAM, proto=0):
    """A TCP socket on the process's default stack (see :func:`default_stack`)."""
    return default_stack().socket(family, type, proto)


__all__ = [
    "Stack",
    "socket",
    "default_stack",
    "poll_all_stacks",
    "AF_INET",
    "SOCK_STREAM",
    "SOL_SOCKET",
    "IPPROTO_TCP",
    "TCP_NODELAY",
    "SO_REUSEADDR",
    "SO_KEEPALIVE",
    "SO_LINGER",
    "SO_RCVBUF",
    "SO_SNDBUF",
    "SO_ERROR",
    "SHUT_RD",
    "SHUT_WR",
    "SHUT_RDWR",
]
