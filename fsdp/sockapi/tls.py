"""TLS on fsdp sockets: ``ssl.SSLContext.wrap_socket`` for connections the kernel does not hold.

Why this exists: CPython's ``SSLSocket`` hands its file descriptor to OpenSSL, which reads and
writes it with read(2)/write(2).  An fsdp connection has no kernel fd (transparent mode's
sockets keep one only as a placeholder for their number), so for them ``wrap_socket`` returns a
socket that runs OpenSSL over memory BIOs (``ssl.SSLObject``, as asyncio's sslproto does) and
carries the records over the fsdp socket itself.  Everything a program sees of ``SSLSocket``
stays as it is with the kernel: blocking calls, timeouts, ``SSLWantReadError`` /
``SSLWantWriteError`` on non-blocking sockets, ragged EOFs, ``unwrap()``, ``accept()`` on a
wrapped listener, ``makefile()``; tests/sockapi/test_tls.py compares the two side by side.

Two classes, one behaviour (:class:`_TLSOverStream`):

* :class:`TLSSocket` wraps an :class:`fsdp.sockapi.socket.Socket` (``fsdp.socket()``);
* :class:`TransparentTLSSocket` is transparent mode's: an ``ssl.SSLSocket`` (programs check
  ``isinstance(s, ssl.SSLSocket)``) that is a :class:`TransparentSocket` underneath, so a
  socket wrapped before ``connect()`` goes to fsdp or the kernel as its address says.

:func:`install` puts the dispatch into ``ssl.SSLContext.wrap_socket`` (``import fsdp`` does
it): kernel sockets still get the stdlib's ``SSLSocket``, untouched.

Records are moved from the socket into OpenSSL one at a time, header first, never past the
record's end -- what OpenSSL does on a fd without read-ahead.  So bytes of the next record stay
in the socket, where ``select()`` sees them, and data decrypted but not yet read is what
``pending()`` says, as with the kernel; and after ``unwrap()`` (a STARTTLS-style downgrade)
the clear text that follows the peer's close_notify is still in the socket.
"""

from __future__ import annotations

import errno
import os
import socket as _stdsocket
import ssl as _ssl

from fsdp.sockapi.route import is_fsdp_family_type
from fsdp.sockapi.socket import Socket

_RECORD_HEADER = 5  # content type, version, length (RFC 8446 §5.1, RFC 5246 §6.2)

_stdlib_wrap_socket = _ssl.SSLContext.wrap_socket  # the stdlib's, for kernel sockets


def _timed_out(what: str) -> TimeoutError:
    # _ssl.c's words (it prefixes its file and line, which differ between builds)
    return TimeoutError(f"The {what} operation timed out")


def _want_write() -> _ssl.SSLWantWriteError:
    return _ssl.SSLWantWriteError(_ssl.SSL_ERROR_WANT_WRITE,
                                  "The operation did not complete (write)")


class _TLSOverStream:
    """``ssl.SSLSocket``'s methods over a stream socket reached through ``_plain(name)``
    (the socket's own, unencrypted method of that name).  Mirrors CPython's ssl.py method by
    method, with ``_sslobj`` an ``ssl.SSLObject`` whose BIOs this class fills and drains."""

    __slots__ = ()

    # ---- set-up (SSLSocket._create's checks and order) ----
    @staticmethod
    def _tls_check(context, server_side, server_hostname, session) -> None:
        """wrap_socket's argument checks, made before the socket is taken over."""
        if server_side:
            if server_hostname:
                raise ValueError("server_hostname can only be specified in client mode")
            if session is not None:
                raise ValueError("session can only be specified in client mode")
        if context.check_hostname and not server_hostname:
            raise ValueError("check_hostname requires server_hostname")

    def _tls_init(self, context, server_side, do_handshake_on_connect, suppress_ragged_eofs,
                  server_hostname, session) -> None:
        self._context = context
        self._session = session
        self._sslobj = None
        self._incoming = self._outgoing = None
        self._tx = bytearray()  # records made, not yet taken by the socket
        self._tx_owed = 0  # plaintext of a write() that said WANT_WRITE or timed out: see write()
        self._hdr = bytearray()  # a record header still arriving
        self._rec_left = 0  # bytes of the current record not yet given to OpenSSL
        self._connected = False
        self.server_side = server_side
        self._server_hostname_arg = server_hostname
        self.server_hostname = context._encode_hostname(server_hostname)
        self.do_handshake_on_connect = do_handshake_on_connect
        self.suppress_ragged_eofs = suppress_ragged_eofs

    def _tls_start(self) -> None:
        """Wrap the connected socket (SSLSocket._create's end): the SSL object, then the
        handshake when asked for."""
        try:
            self._plain("getpeername")()
        except OSError as e:
            if e.errno != errno.ENOTCONN:
                raise
            return  # connect() will wrap it
        self._connected = True
        try:
            self._new_sslobj()
            if self.do_handshake_on_connect:
                if self.gettimeout() == 0.0:
                    raise ValueError("do_handshake_on_connect should not be specified for "
                                     "non-blocking sockets")
                self.do_handshake()
        except (OSError, ValueError):
            self.close()
            raise

    def _new_sslobj(self) -> None:
        self._incoming, self._outgoing = _ssl.MemoryBIO(), _ssl.MemoryBIO()
        self._sslobj = self._context.wrap_bio(
            self._incoming, self._outgoing, server_side=self.server_side,
            server_hostname=self._server_hostname_arg, session=self._session)

    def _tls_drop(self) -> None:
        self._sslobj = None
        self._tx.clear()

    # ---- moving records ----
    def _pull(self, want_read: _ssl.SSLWantReadError, what: str) -> None:
        """Give OpenSSL the next bytes of the current record (at most to its end), waiting
        as the socket's timeout says; on a non-blocking socket with nothing there, raise
        ``want_read`` (OpenSSL's own SSLWantReadError, as the kernel path raises it)."""
        if self._incoming.eof:  # (OpenSSL asked again after the EOF: unwrap() does)
            raise _ssl.SSLEOFError(_ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
        if self._rec_left:
            n = self._rec_left
        else:
            n = _RECORD_HEADER - len(self._hdr)
        try:
            chunk = self._plain("recv")(n)
        except BlockingIOError:
            raise want_read from None
        except TimeoutError:
            raise _timed_out(what) from None
        if not chunk:
            self._incoming.write_eof()  # OpenSSL then says EOF (or close_notify came first)
            return
        if self._rec_left:
            self._rec_left -= len(chunk)
            self._incoming.write(chunk)
            return
        self._hdr += chunk
        if len(self._hdr) == _RECORD_HEADER:
            self._rec_left = int.from_bytes(self._hdr[3:5], "big")
            self._incoming.write(bytes(self._hdr))
            self._hdr.clear()

    def _flush(self, what: str) -> None:
        """Send every record OpenSSL has made; a non-blocking socket that takes no more
        raises SSLWantWriteError (the rest goes out on the next call)."""
        if self._outgoing is not None and self._outgoing.pending:
            self._tx += self._outgoing.read()
        send = self._plain("send")
        while self._tx:
            try:
                sent = send(self._tx)
            except BlockingIOError:
                raise _want_write() from None
            except TimeoutError:
                raise _timed_out(what) from None
            del self._tx[:sent]

    def _flush_what_can_go(self) -> None:
        try:
            self._flush("write")
        except OSError:
            pass  # (kept: the next call sends it)

    def _run(self, op, what: str, reading: bool = False):
        """``op()`` (an SSLObject call) until it completes, moving records both ways."""
        while True:
            try:
                result = op()
            except _ssl.SSLWantReadError as want:
                self._flush(what)  # a handshake flight, a key update, a close_notify
                self._pull(want, what)
                continue
            except _ssl.SSLError:
                # OpenSSL wrote an alert (a certificate refused, a bad record) to say why:
                # on a kernel fd it went out at once, so here it goes out too
                self._flush_what_can_go()
                raise
            if reading:
                # Records a read made (a key update's answer) must not cost the data read:
                # what the socket does not take now goes out with the next call.
                self._flush_what_can_go()
            else:
                self._flush(what)
            return result

    # ---- SSLSocket's API ----
    @property
    def context(self):
        return self._context

    @context.setter
    def context(self, ctx):
        self._context = ctx
        self._sslobj.context = ctx

    @property
    def session(self):
        if self._sslobj is not None:
            return self._sslobj.session

    @session.setter
    def session(self, session):
        self._session = session
        if self._sslobj is not None:
            self._sslobj.session = session

    @property
    def session_reused(self):
        if self._sslobj is not None:
            return self._sslobj.session_reused

    def dup(self):
        raise NotImplementedError(f"Can't dup() {self.__class__.__name__} instances")

    def _checkClosed(self, msg=None):
        pass  # (ssl.py's hook for spurious closes: none)

    def _check_connected(self):
        if not self._connected:
            self.getpeername()  # ENOTCONN if it really is not connected

    def read(self, len=1024, buffer=None):
        """Read up to LEN bytes and return them.  Return zero-length string on EOF."""
        if self._sslobj is None:
            raise ValueError("Read on closed or unwrapped SSL socket.")
        sslobj = self._sslobj
        try:
            if buffer is not None:
                return self._run(lambda: sslobj.read(len, buffer), "read", True)
            return self._run(lambda: sslobj.read(len), "read", True)
        except _ssl.SSLError as x:
            if x.args[0] == _ssl.SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return 0 if buffer is not None else b""
            raise

    def write(self, data):
        """Write DATA to the underlying SSL channel.  Returns number of bytes of DATA actually
        transmitted."""
        if self._sslobj is None:
            raise ValueError("Write on closed or unwrapped SSL socket.")
        if self._tx:
            # Records of an earlier write are still going out.  OpenSSL (Python sets
            # SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) expects that write to be retried with the
            # same data, and the retry completing it returns that write's length.
            self._flush("write")
            if self._tx_owed:
                n, self._tx_owed = self._tx_owed, 0
                return n
        sslobj = self._sslobj
        while True:
            try:
                n = sslobj.write(data)
                break
            except _ssl.SSLWantReadError as want:  # the handshake is not done yet
                self._flush("write")
                self._pull(want, "write")
        try:
            self._flush("write")
        except OSError:
            self._tx_owed = n
            raise
        return n

    def getpeercert(self, binary_form=False):
        self._check_connected()
        return self._sslobj.getpeercert(binary_form)

    def selected_npn_protocol(self):
        import warnings

        warnings.warn("ssl NPN is deprecated, use ALPN instead", DeprecationWarning,
                      stacklevel=2)
        return None

    def selected_alpn_protocol(self):
        if self._sslobj is None or not _ssl.HAS_ALPN:
            return None
        return self._sslobj.selected_alpn_protocol()

    def cipher(self):
        return None if self._sslobj is None else self._sslobj.cipher()

    def shared_ciphers(self):
        return None if self._sslobj is None else self._sslobj.shared_ciphers()

    def compression(self):
        return None if self._sslobj is None else self._sslobj.compression()

    def version(self):
        return None if self._sslobj is None else self._sslobj.version()

    def pending(self):
        return 0 if self._sslobj is None else self._sslobj.pending()

    def get_channel_binding(self, cb_type="tls-unique"):
        if self._sslobj is not None:
            return self._sslobj.get_channel_binding(cb_type)
        if cb_type not in _ssl.CHANNEL_BINDING_TYPES:
            raise ValueError(f"{cb_type} channel binding type not implemented")
        return None

    def verify_client_post_handshake(self):
        if not self._sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        return self._run(self._sslobj.verify_client_post_handshake, "write")

    def send(self, data, flags=0):
        if self._sslobj is None:
            return self._plain("send")(data, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to send() on {self.__class__}")
        return self.write(data)

    def sendall(self, data, flags=0):
        if self._sslobj is None:
            return self._plain("sendall")(data, flags)
        if flags != 0:
            raise ValueError(
                f"non-zero flags not allowed in calls to sendall() on {self.__class__}")
        count = 0
        with memoryview(data) as view, view.cast("B") as byte_view:
            amount = len(byte_view)
            while count < amount:
                count += self.send(byte_view[count:])

    def sendto(self, data, flags_or_addr, addr=None):
        if self._sslobj is not None:
            raise ValueError(f"sendto not allowed on instances of {self.__class__}")
        if addr is None:
            return self._plain("sendto")(data, flags_or_addr)
        return self._plain("sendto")(data, flags_or_addr, addr)

    def sendmsg(self, *args, **kwargs):
        # (never clear text past the encryption)
        raise NotImplementedError(f"sendmsg not allowed on instances of {self.__class__}")

    def recv(self, buflen=1024, flags=0):
        if self._sslobj is None:
            return self._plain("recv")(buflen, flags)
        if flags != 0:
            raise ValueError(f"non-zero flags not allowed in calls to recv() on {self.__class__}")
        return self.read(buflen)

    def recv_into(self, buffer, nbytes=None, flags=0):
        if buffer and nbytes is None:
            nbytes = len(buffer)
        elif nbytes is None:
            nbytes = 1024
        if self._sslobj is None:
            return self._plain("recv_into")(buffer, nbytes, flags)
        if flags != 0:
            raise ValueError(
                f"non-zero flags not allowed in calls to recv_into() on {self.__class__}")
        return self.read(nbytes, buffer)

    def recvfrom(self, buflen=1024, flags=0):
        if self._sslobj is not None:
            raise ValueError(f"recvfrom not allowed on instances of {self.__class__}")
        return self._plain("recvfrom")(buflen, flags)

    def recvfrom_into(self, buffer, nbytes=None, flags=0):
        if self._sslobj is not None:
            raise ValueError(f"recvfrom_into not allowed on instances of {self.__class__}")
        return self._plain("recvfrom_into")(buffer, nbytes or 0, flags)

    def recvmsg(self, *args, **kwargs):
        raise NotImplementedError(f"recvmsg not allowed on instances of {self.__class__}")

    def recvmsg_into(self, *args, **kwargs):
        raise NotImplementedError(f"recvmsg_into not allowed on instances of {self.__class__}")

    def shutdown(self, how):
        self._sslobj = None  # (no close_notify: ssl.py's shutdown() sends none either)
        self._plain("shutdown")(how)

    def unwrap(self):
        """Send close_notify, wait for the peer's, and return this socket, clear from now on
        (what follows the peer's close_notify is still in the socket: see the module doc)."""
        if not self._sslobj:
            raise ValueError("No SSL wrapper around " + str(self))
        self._run(self._sslobj.unwrap, "read")
        self._sslobj = None
        return self

    def do_handshake(self, block=False):
        self._check_connected()
        timeout = self.gettimeout()
        try:
            if timeout == 0.0 and block:
                self.settimeout(None)
            self._run(self._sslobj.do_handshake, "handshake")
        finally:
            self.settimeout(timeout)

    def _real_connect(self, addr, connect_ex):
        if self.server_side:
            raise ValueError("can't connect in server-side mode")
        if self._connected or self._sslobj is not None:
            raise ValueError("attempt to connect already-connected SSLSocket!")
        self._new_sslobj()
        try:
            if connect_ex:
                rc = self._plain("connect_ex")(addr)
            else:
                rc = None
                self._plain("connect")(addr)
            if not rc:
                self._connected = True
                if self.do_handshake_on_connect:
                    self.do_handshake()
            return rc
        except (OSError, ValueError):
            self._sslobj = None
            raise

    def connect(self, addr):
        """Connects to remote ADDR, and then wraps the connection in an SSL channel."""
        self._real_connect(addr, False)

    def connect_ex(self, addr):
        """Connects to remote ADDR, and then wraps the connection in an SSL channel."""
        return self._real_connect(addr, True)

    def accept(self):
        """Accepts a new connection from a remote client, and returns a tuple containing that
        new connection wrapped with a server-side SSL channel, and the address of the remote
        client."""
        newsock, addr = self._plain("accept")()
        newsock = self.context.wrap_socket(
            newsock, do_handshake_on_connect=self.do_handshake_on_connect,
            suppress_ragged_eofs=self.suppress_ragged_eofs, server_side=True)
        return newsock, addr


class TLSSocket(_TLSOverStream):
    """``SSLContext.wrap_socket(s)`` of an fsdp socket ``s`` (``fsdp.socket()``,
    ``Stack.socket()``): SSLSocket's methods, and ``s``'s for the rest (options, addresses,
    timeouts, ``fileno()`` for fsdp's selectors)."""

    def __init__(self, sock: Socket, context, server_side=False, do_handshake_on_connect=True,
                 suppress_ragged_eofs=True, server_hostname=None, session=None):
        self._raw = sock
        self._closed = False
        self._io_refs = 0
        self._tls_init(context, server_side, do_handshake_on_connect, suppress_ragged_eofs,
                       server_hostname, session)
        self._tls_start()

    def _plain(self, name):
        return getattr(self._raw, name)

    def __getattr__(self, name):
        # Only what this class lacks: family, type, proto, fileno, bind, listen, addresses,
        # options, timeouts (the socket's own; TLS adds nothing to them).
        return getattr(self.__dict__["_raw"], name)

    # socket.socket's close rules: makefile() objects keep the connection open
    def close(self):
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def _real_close(self):
        self._tls_drop()
        self._raw.close()

    def _decref_socketios(self):
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs == 0:
            self._real_close()

    makefile = Socket.makefile  # (the stdlib's SocketIO over this object's recv_into/send)

    def sendfile(self, file, offset=0, count=None):
        return _stdsocket.socket._sendfile_use_send(self, file, offset, count)

    def detach(self):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return repr(self._raw).replace("<fsdp.socket", "<fsdp.TLSSocket", 1)


def _transparent_class():
    """TransparentTLSSocket, made on first use (ssl and transparent mode are both imported
    by then; a module-level class would import transparent mode into every fsdp program)."""
    global TransparentTLSSocket
    if TransparentTLSSocket is not None:
        return TransparentTLSSocket
    from fsdp.transparent.socket import TransparentSocket, _KernelSocket

    class _TransparentTLSSocket(_TLSOverStream, TransparentSocket, _ssl.SSLSocket):
        """Transparent mode's ``SSLSocket``: the wrapped TransparentSocket's connection (fsdp
        or kernel) and its fd number, moved here as ``SSLSocket._create`` moves them (the
        socket given to ``wrap_socket`` is detached)."""

        @classmethod
        def _take_over(cls, sock, **tls):
            timeout = sock.gettimeout()
            conn, sock._fsdp = sock._fsdp, None  # (before detach: its close would end it)
            fd = _KernelSocket.detach(sock)
            self = cls.__new__(cls, sock.family, sock.type, sock.proto, fd)
            _KernelSocket.__init__(self, sock.family, sock.type, sock.proto, fd)
            self._fsdp = conn
            self._tm_opts = sock._tm_opts
            self._tm_kernel_used = sock._tm_kernel_used
            self._tm_rcv_shutdown = sock._tm_rcv_shutdown
            self.settimeout(timeout)
            self._tls_init(**tls)
            self._tls_start()
            return self

        def _plain(self, name):
            return getattr(TransparentSocket, name).__get__(self)

        def _real_close(self):
            self._tls_drop()
            TransparentSocket._real_close(self)

        def sendfile(self, file, offset=0, count=None):
            return self._sendfile_use_send(file, offset, count)

        def __repr__(self):
            return TransparentSocket.__repr__(self).replace("<socket.socket", "<ssl.SSLSocket")

    _TransparentTLSSocket.__name__ = _TransparentTLSSocket.__qualname__ = "TransparentTLSSocket"
    TransparentTLSSocket = _TransparentTLSSocket
    return TransparentTLSSocket


TransparentTLSSocket = None  # the class, once _transparent_class() made it


def _served_here(sock) -> bool:
    """A transparent-mode socket on fsdp, or still free to go there (wrapped before its
    connect: its address decides later, and this module's TLS works over either)."""
    from fsdp.transparent.socket import TransparentSocket

    return (isinstance(sock, TransparentSocket) and not sock._closed
            and (sock._fsdp is not None or not sock._tm_kernel_used)
            and is_fsdp_family_type(sock.family, sock.type))


def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True,
                suppress_ragged_eofs=True, server_hostname=None, session=None):
    """``ssl.SSLContext.wrap_socket``: fsdp's TLS for an fsdp socket, the stdlib's for the
    rest."""
    tls = dict(context=self, server_side=server_side,
               do_handshake_on_connect=do_handshake_on_connect,
               suppress_ragged_eofs=suppress_ragged_eofs, server_hostname=server_hostname,
               session=session)
    if isinstance(sock, Socket):
        _TLSOverStream._tls_check(self, server_side, server_hostname, session)
        return TLSSocket(sock, **tls)
    if "fsdp.transparent.socket" in _sys_modules and _served_here(sock):
        _TLSOverStream._tls_check(self, server_side, server_hostname, session)
        return _transparent_class()._take_over(sock, **tls)
    return _stdlib_wrap_socket(self, sock, server_side, do_handshake_on_connect,
                               suppress_ragged_eofs, server_hostname, session)


wrap_socket.__wrapped__ = _stdlib_wrap_socket
_sys_modules = __import__("sys").modules


def install() -> None:
    """Route ``ssl.SSLContext.wrap_socket`` through :func:`wrap_socket` (idempotent)."""
    _ssl.SSLContext.wrap_socket = wrap_socket
