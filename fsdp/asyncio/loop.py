"""An asyncio event loop whose IPv4 TCP runs on fsdp.

:class:`FsdpEventLoop` is the stdlib's selector event loop (``asyncio.SelectorEventLoop``:
transports, protocols, streams, ``sock_*`` methods, signals, subprocesses) driven by
:class:`fsdp.selectors.FsdpSelector`, which waits on fsdp sockets and kernel fds together.
fsdp sockets have the ``socket.socket`` surface asyncio uses (``fileno``, ``setblocking``,
``family``/``type``/``proto``, ``send``/``recv_into``, ``SO_ERROR`` after a non-blocking
connect), so the stdlib's transports drive them unchanged.

The loop makes fsdp sockets where asyncio would call ``socket.socket()`` for TCP:
``create_connection`` (and so ``open_connection``) to an IPv4 address that is not loopback,
``create_server`` (and so ``start_server``) on ``0.0.0.0`` / ``""`` / ``None`` or such an
address.  Loopback, IPv6 and AF_UNIX stay on the kernel (:mod:`fsdp.sockapi.route`); ``host=None``
in ``create_server`` means the fsdp stack's wildcard only, not also the kernel's ``::``.
"""

from __future__ import annotations

import asyncio
import collections.abc
import os
import socket
import sys
from asyncio import base_events, exceptions, tasks

from fsdp.selectors import FsdpSelector
from fsdp.sockapi.route import is_fsdp_family_type, is_fsdp_host
from fsdp.sockapi.socket import socket_from_fileno


class FsdpEventLoop(asyncio.SelectorEventLoop):
    """``asyncio.SelectorEventLoop`` on an :class:`fsdp.selectors.FsdpSelector`; IPv4 TCP to
    non-loopback addresses is served by ``stack`` (default: the process's default stack,
    made on first use: ``FSDP_NIC`` / ``FSDP_IP``, see :func:`fsdp.default_stack`)."""

    def __init__(self, selector=None, *, stack=None):
        if selector is None:
            selector = FsdpSelector()
        super().__init__(selector)
        self._fsdp_stack = stack

    @property
    def fsdp_stack(self):
        """The stack this loop's fsdp sockets live on."""
        if self._fsdp_stack is None:
            from fsdp.core.stack import default_stack

            self._fsdp_stack = default_stack()
        return self._fsdp_stack

    def _fsdp_socket(self, family, type_, proto):
        if is_fsdp_family_type(family, type_):
            return self.fsdp_stack.socket(family, type_, proto)
        return socket.socket(family, type_, proto)

    def _wants_fsdp(self, family, type_, address) -> bool:
        return is_fsdp_family_type(family, type_) and is_fsdp_host(address[0])

    # ---- active open: the stdlib's _connect_sock with the socket made by fsdp ----
    async def _connect_sock(self, exceptions, addr_info, local_addr_infos=None):
        family, type_, proto, _, address = addr_info
        if not self._wants_fsdp(family, type_, address):
            return await super()._connect_sock(exceptions, addr_info, local_addr_infos)
        my_exceptions = []
        exceptions.append(my_exceptions)
        sock = None
        try:
            sock = self.fsdp_stack.socket(family, type_, proto)
            sock.setblocking(False)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        msg = (f"error while attempting to bind on address {laddr!r}: "
                               f"{exc.strerror.lower()}")
                        my_exceptions.append(OSError(exc.errno, msg))
                else:
                    if my_exceptions:
                        raise my_exceptions.pop()
                    raise OSError(f"no matching local address with {family=} found")
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            my_exceptions.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            exceptions = my_exceptions = None

    # ---- passive open: the stdlib's create_server with the sockets made by fsdp ----
    async def create_server(
            self, protocol_factory, host=None, port=None, *, family=socket.AF_UNSPEC,
            flags=socket.AI_PASSIVE, sock=None, backlog=100, ssl=None, reuse_address=None,
            reuse_port=None, ssl_handshake_timeout=None, ssl_shutdown_timeout=None,
            start_serving=True):
        """As ``asyncio.loop.create_server``; IPv4 listeners (``0.0.0.0`` included) are
        fsdp's, loopback and IPv6 ones the kernel's."""
        if sock is not None or (host is None and port is None):
            return await super().create_server(
                protocol_factory, host, port, family=family, flags=flags, sock=sock,
                backlog=backlog, ssl=ssl, reuse_address=reuse_address, reuse_port=reuse_port,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout, start_serving=start_serving)
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if reuse_address is None:
            reuse_address = os.name == "posix" and sys.platform != "cygwin"
        if host is None or host == "":
            # The wildcard: fsdp's 0.0.0.0 only (the kernel's "::" would be a second,
            # unrelated listener on another stack).
            hosts = ["0.0.0.0"]
            if family not in (socket.AF_UNSPEC, socket.AF_INET):
                hosts = [host]
        elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
            hosts = [host]
        else:
            hosts = host
        fs = [self._create_server_getaddrinfo(h, port, family=family, flags=flags)
              for h in hosts]
        infos = set(item for sub in await tasks.gather(*fs) for item in sub)
        sockets = []
        completed = False
        try:
            for af, socktype, proto, _canonname, sa in infos:
                try:
                    if self._wants_fsdp(af, socktype, sa):
                        sock = self.fsdp_stack.socket(af, socktype, proto)
                    else:
                        sock = socket.socket(af, socktype, proto)
                except OSError:
                    continue  # a family/type/proto this host lacks, as the stdlib skips it
                sockets.append(sock)
                if reuse_address:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                if reuse_port:
                    base_events._set_reuseport(sock)
                if af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                try:
                    sock.bind(sa)
                except OSError as err:
                    msg = f"error while attempting to bind on address {sa!r}: "
                    raise OSError(err.errno, msg + err.strerror.lower()) from None
            completed = True
        finally:
            if not completed:
                for s in sockets:
                    s.close()
        for s in sockets:
            s.setblocking(False)
        server = base_events.Server(self, sockets, protocol_factory, ssl, backlog,
                                    ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)  # let every add_reader go through, as the stdlib does
        return server

    # ---- fsdp sockets have no kernel fd for os.sendfile: use the read/send fallback ----
    async def _sock_sendfile_native(self, sock, file, offset, count):
        if socket_from_fileno(sock.fileno()) is not None:
            raise exceptions.SendfileNotAvailableError("os.sendfile() needs a kernel socket")
        return await super()._sock_sendfile_native(sock, file, offset, count)


class FsdpEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose loops are :class:`FsdpEventLoop` on ``stack``:
    ``asyncio.set_event_loop_policy(fsdp.asyncio.EventLoopPolicy())``."""

    def __init__(self, stack=None):
        super().__init__()
        self._stack = stack

    def new_event_loop(self) -> FsdpEventLoop:
        return FsdpEventLoop(stack=self._stack)


def new_event_loop(stack=None) -> FsdpEventLoop:
    """A new :class:`FsdpEventLoop` (not set as the current loop)."""
    return FsdpEventLoop(stack=stack)


def run(main, *, debug=None, stack=None):
    """``asyncio.run(main)`` on an :class:`FsdpEventLoop`: runs the coroutine ``main``, then
    cancels what is left, shuts down async generators and the default executor, and closes
    the loop; returns ``main``'s result."""
    with asyncio.Runner(debug=debug, loop_factory=lambda: FsdpEventLoop(stack=stack)) as runner:
        return runner.run(main)
