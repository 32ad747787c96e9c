"""The ``socket.socket`` that transparent mode installs: a kernel socket until its first
``bind()`` or ``connect()`` names an address fsdp serves, an fsdp socket from then on.

Why a subclass of the stdlib's class and not a factory: programs and libraries check
``isinstance(s, socket.socket)``, ``socket.create_connection``/``create_server``,
``socket.socketpair`` and ``socket.fromfd`` make ``socket(...)`` objects of whatever the module
name holds, and ``makefile()``'s ``SocketIO`` needs the stdlib's bookkeeping (``_io_refs``).

Why decide late: ``socket(AF_INET, SOCK_STREAM)`` says nothing about where it will go; only the
address of ``bind``/``connect`` does (:mod:`fsdp.sockapi.route`: IPv4 that is not loopback,
and the wildcard).  Options and the timeout set before that are replayed onto the fsdp socket.

Why keep the kernel fd: asyncio and selectors remember ``fileno()`` before ``connect()``.  The
kernel socket stays open, unused, as a placeholder, and the fsdp socket answers to its number
(:meth:`fsdp.sockapi.socket.Socket._adopt_fileno`), so the number is stable and cannot be
reused by another file while the fsdp socket lives.
"""

from __future__ import annotations

import errno
import os
import socket as _stdsocket

from fsdp.sockapi.route import is_fsdp_family_type, is_fsdp_host

_KernelSocket = _stdsocket.socket  # the stdlib class, taken before transparent mode patches it

_stack_getter = None  # set by fsdp.transparent.install: () -> fsdp.Stack


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _delegating(name: str):
    kernel_method = getattr(_KernelSocket, name)

    def method(self, *args, **kwargs):
        f = self._fsdp
        if f is not None:
            return getattr(f, name)(*args, **kwargs)
        return kernel_method(self, *args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"TransparentSocket.{name}"
    method.__doc__ = kernel_method.__doc__
    return method


class TransparentSocket(_KernelSocket):
    """``socket.socket`` under ``fsdp run``: the kernel's, or fsdp's for IPv4 TCP to
    non-loopback addresses (see the module doc)."""

    __slots__ = ("_fsdp", "_tm_opts", "_tm_kernel_used", "_tm_rcv_shutdown")

    def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
        super().__init__(family, type, proto, fileno)
        self._fsdp = None
        self._tm_opts: list[tuple[int, int, object]] = []
        self._tm_rcv_shutdown = False  # shutdown(SHUT_RD) while still the kernel's
        # A socket made from an existing fd (accept, fromfd, socketpair) is the kernel's.
        self._tm_kernel_used = fileno is not None

    @classmethod
    def _wrap(cls, conn) -> TransparentSocket:
        """A TransparentSocket standing for the fsdp connection ``conn`` (from accept)."""
        s = cls(_stdsocket.AF_INET, _stdsocket.SOCK_STREAM, 0)
        s._tm_kernel_used = True
        s._fsdp = conn
        conn._adopt_fileno(_KernelSocket.fileno(s))
        return s

    # ---- the switch ----
    def _goes_to_fsdp(self, host) -> bool:
        if isinstance(host, (bytes, bytearray)):
            host = host.decode("ascii", "replace")  # the stdlib takes bytes hosts too
        return (self._fsdp is None and not self._tm_kernel_used and not self._closed
                and is_fsdp_family_type(self.family, self.type)
                and is_fsdp_host(host))

    def _switch(self) -> None:
        stack = _stack_getter()
        f = stack.socket(_stdsocket.AF_INET, _stdsocket.SOCK_STREAM, 0)
        try:
            f.settimeout(_KernelSocket.gettimeout(self))
            for level, opt, value in self._tm_opts:
                try:
                    f.setsockopt(level, opt, value)
                except OSError as e:
                    # What fsdp lacks (IP_TOS, IP_TTL ...) is skipped, as an option
                    # the kernel ignores for TCP would be.
                    if e.errno not in (errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
            if self._tm_rcv_shutdown:
                try:  # (Linux keeps it through a connect: fsdp's Socket.shutdown)
                    f.shutdown(_stdsocket.SHUT_RD)
                except OSError:
                    pass  # ENOTCONN, as the kernel said
            f._adopt_fileno(_KernelSocket.fileno(self))
        except BaseException:
            f.close()
            raise
        self._fsdp = f

    def _resolve(self, address):
        """``address`` with a host name resolved to a numeric IPv4 address (fsdp has no
        resolver; the kernel's getaddrinfo answers), or as given when it is not a pair."""
        if not isinstance(address, tuple) or len(address) != 2:
            return address
        host, port = address
        if not isinstance(host, str) or is_fsdp_host(host) or host in ("<broadcast>",):
            return address
        try:
            import ipaddress

            ipaddress.ip_address(host)
            return address  # numeric (loopback or IPv6): nothing to resolve
        except ValueError:
            pass
        infos = _stdsocket.getaddrinfo(host, port, _stdsocket.AF_INET, _stdsocket.SOCK_STREAM)
        return infos[0][4] if infos else address

    # ---- addresses ----
    def bind(self, address):
        if self._fsdp is None and isinstance(address, tuple) and len(address) == 2:
            if self._goes_to_fsdp(address[0]):
                self._switch()
        if self._fsdp is not None:
            return self._fsdp.bind(address)
        self._tm_kernel_used = True
        return _KernelSocket.bind(self, address)

    def connect(self, address):
        if self._fsdp is None and not self._tm_kernel_used:
            resolved = self._resolve(address)
            if isinstance(resolved, tuple) and len(resolved) == 2 \
                    and self._goes_to_fsdp(resolved[0]):
                self._switch()
                return self._fsdp.connect(resolved)
        if self._fsdp is not None:
            return self._fsdp.connect(self._resolve(address))
        self._tm_kernel_used = True
        return _KernelSocket.connect(self, address)

    def connect_ex(self, address):
        if self._fsdp is None and not self._tm_kernel_used:
            resolved = self._resolve(address)
            if isinstance(resolved, tuple) and len(resolved) == 2 \
                    and self._goes_to_fsdp(resolved[0]):
                self._switch()
                return self._fsdp.connect_ex(resolved)
        if self._fsdp is not None:
            return self._fsdp.connect_ex(self._resolve(address))
        self._tm_kernel_used = True
        return _KernelSocket.connect_ex(self, address)

    def listen(self, *backlog):
        if self._fsdp is not None:
            return self._fsdp.listen(*backlog)
        self._tm_kernel_used = True
        return _KernelSocket.listen(self, *backlog)

    def accept(self):
        if self._fsdp is None:
            return _KernelSocket.accept(self)
        conn, addr = self._fsdp.accept()
        try:
            wrapped = TransparentSocket._wrap(conn)
        except BaseException:
            conn.close()
            raise
        return wrapped, addr

    # ---- options and modes (recorded until the switch) ----
    def setsockopt(self, level, optname, value, *optlen):
        # (*optlen: the stdlib's four-argument form, setsockopt(level, optname, None, optlen),
        # is told from the three-argument one by the count, as CPython tells it)
        if self._fsdp is not None:
            return self._fsdp.setsockopt(level, optname, value, *optlen)
        _KernelSocket.setsockopt(self, level, optname, value, *optlen)
        if not optlen:
            self._tm_opts.append((level, optname, value))

    def getsockopt(self, level, optname, *buflen):
        if self._fsdp is not None:
            return self._fsdp.getsockopt(level, optname, *buflen)
        return _KernelSocket.getsockopt(self, level, optname, *buflen)

    def settimeout(self, value):
        _KernelSocket.settimeout(self, value)  # validates as the stdlib does
        if self._fsdp is not None:
            self._fsdp.settimeout(value)

    def setblocking(self, flag):
        _KernelSocket.setblocking(self, flag)
        if self._fsdp is not None:
            self._fsdp.setblocking(flag)

    @property
    def timeout(self):
        return self.gettimeout()

    gettimeout = _delegating("gettimeout")
    getblocking = _delegating("getblocking")
    getsockname = _delegating("getsockname")
    getpeername = _delegating("getpeername")
    send = _delegating("send")
    sendall = _delegating("sendall")
    recv = _delegating("recv")
    recv_into = _delegating("recv_into")
    recvfrom = _delegating("recvfrom")
    recvfrom_into = _delegating("recvfrom_into")

    def shutdown(self, how):
        if self._fsdp is not None:
            return self._fsdp.shutdown(how)
        try:
            return _KernelSocket.shutdown(self, how)
        finally:
            if how in (_stdsocket.SHUT_RD, _stdsocket.SHUT_RDWR):
                self._tm_rcv_shutdown = True

    sendto = _delegating("sendto")
    sendmsg = _delegating("sendmsg")
    recvmsg = _delegating("recvmsg")
    recvmsg_into = _delegating("recvmsg_into")

    def sendfile(self, file, offset=0, count=None):
        if self._fsdp is not None:
            return self._sendfile_use_send(file, offset, count)  # no kernel fd for sendfile(2)
        return _KernelSocket.sendfile(self, file, offset, count)

    # ---- lifetime ----
    def _real_close(self, _ss=_KernelSocket):
        f = self._fsdp
        if f is not None:
            f.close()
        _ss._real_close(self)

    def detach(self):
        if self._fsdp is not None:
            raise _oserror(errno.EOPNOTSUPP)  # an fsdp connection has no fd to hand over
        return _KernelSocket.detach(self)

    def dup(self):
        if self._fsdp is not None:
            raise _oserror(errno.EOPNOTSUPP)
        return _KernelSocket.dup(self)

    def __repr__(self):
        f = self._fsdp
        if f is None:
            r = _KernelSocket.__repr__(self)  # "<module.Class fd=...>": name the world instead
            return "<socket.socket[kernel]" + r[r.find(" "):]
        return repr(f).replace("<fsdp.socket", "<socket.socket[fsdp]")
