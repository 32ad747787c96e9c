"""Which addresses fsdp serves when it stands in for the kernel's sockets (the fsdp asyncio
loop and transparent mode): one rule, in one place.

fsdp takes IPv4 TCP to any non-loopback address, and binds to the wildcard 0.0.0.0 (that is
the stack's own address).  Loopback (127.0.0.0/8), IPv6, AF_UNIX and UDP stay on the kernel:
fsdp's stack has no loopback interface, and the local plumbing of a program (asyncio's
self-pipe, a test's socketpair, a DNS query) must keep working unchanged.
"""

from __future__ import annotations

import ipaddress
import socket as _stdsocket


def is_fsdp_host(host) -> bool:
    """True if an AF_INET stream socket to/at numeric IPv4 ``host`` belongs on fsdp.

    ``None`` and ``""`` are the wildcard (as in ``bind(("", port))``); a name that is not a
    numeric IPv4 address is not decided here (resolve it first)."""
    if host is None or host == "":
        return True
    if not isinstance(host, str):
        return False
    try:
        addr = ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return not addr.is_loopback


def is_fsdp_family_type(family, type_) -> bool:
    """AF_INET and SOCK_STREAM (flags such as SOCK_NONBLOCK or-ed into type are allowed)."""
    return family == _stdsocket.AF_INET and (int(type_) & 0xF) == _stdsocket.SOCK_STREAM
