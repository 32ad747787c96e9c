"""``fsdp`` sockets: the ``socket.socket`` surface over the per-core TCP engine.

A socket is a Python object; its connection lives in one core's TCB table (a listener lives in
every core's listen table: Fastsocket's *listen spawn*).  Calls go straight to the jitted
usercalls of :mod:`fsdp.tcp.usercalls`, which return ``-errno`` on failure; this module turns
those into the exceptions the standard library raises (``OSError(errno, strerror)`` picks the
subclass: ConnectionRefusedError, ConnectionResetError, BrokenPipeError, TimeoutError ...).

Blocking calls keep every stack of the process polled while they wait (CONTRACT.md §1), with
an adaptive back-off so an idle wait does not spin a core at 100%.  On a stack driven by a
virtual clock (the test harness) nothing can happen while a call waits, so there a call that
would block raises BlockingIOError, as a non-blocking socket does.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import math
import operator
import os
import select as _select
import socket as _stdsocket
import struct
import sys
import time
import weakref

import numpy as np

from fsdp.sockapi import fastcall
from fsdp.tcp import usercalls as uc
from fsdp.tcp.tcb import TCPS_TIME_WAIT, TF_SND_SHUTDOWN
from fsdp.tcp.urgent import URG_RECV_EOF

_EV_READABLE = uc.EV_READABLE
_EV_WRITABLE = uc.EV_WRITABLE
_EV_ERROR = uc.EV_ERROR
_EV_CONNECTED = uc.EV_CONNECTED

_MSG_PEEK = int(_stdsocket.MSG_PEEK)  # plain ints: IntFlag's & costs a microsecond
_MSG_DONTWAIT = int(_stdsocket.MSG_DONTWAIT)
_MSG_WAITALL = int(_stdsocket.MSG_WAITALL)
_MSG_OOB = int(_stdsocket.MSG_OOB)
_AF_INET = _stdsocket.AddressFamily.AF_INET
_SOCK_STREAM = _stdsocket.SocketKind.SOCK_STREAM
_SOCK_TYPE_MASK = 0xF  # SOCK_NONBLOCK / SOCK_CLOEXEC may be or-ed into type, as on Linux
_DEFAULT_BACKLOG = min(_stdsocket.SOMAXCONN, 128)  # what socket.listen() uses
_RECV_CHUNK = 65536
# fsdp sockets get file numbers from 2**20 up: Linux never hands out a kernel fd that high
# (fs.nr_open defaults to 2**20), so a number says which world it is in.  Selectors and asyncio
# pass bare numbers around, hence the registry to find the socket again.  Transparent mode
# gives an fsdp socket the number of a kernel fd it holds open as a placeholder
# (:meth:`Socket._adopt_fileno`), so that number cannot name anything else meanwhile.
FILENO_BASE = 1 << 20
_fileno_counter = iter(range(FILENO_BASE, 1 << 30))
# fd -> weakref.ref of the socket: a plain dict of the socket's own weak reference
# (Socket._wref), dropped at close (Socket._release), costs ~0.1 µs a socket where a
# WeakValueDictionary's entry (a KeyedRef made in Python) costs ~1 µs.
_by_fileno: dict[int, weakref.ref] = {}

_TCP_CONGESTION = getattr(_stdsocket, "TCP_CONGESTION", 13)
_CC_NAMES = {int(uc.CC_NEWRENO): b"reno", int(uc.CC_CUBIC): b"cubic"}  # Linux's names
_CC_BY_NAME = {name: algo for algo, name in _CC_NAMES.items()}

POLL_READ = 1  # = selectors.EVENT_READ
POLL_WRITE = 2  # = selectors.EVENT_WRITE
POLL_PRI = 4  # urgent data (select()'s exceptional condition; no selectors event)

# poll()/epoll masks (Linux tcp_poll; select.POLL* = select.EPOLL* values)
_POLLNVAL = _select.POLLNVAL
_POLLIN_ALL = _select.POLLIN | _select.POLLRDNORM
_POLLOUT_ALL = _select.POLLOUT | _select.POLLWRNORM
_POLL_RCV_SHUTDOWN = _POLLIN_ALL | getattr(_select, "POLLRDHUP", 0x2000)
_POLL_UNCONNECTED = _POLLOUT_ALL | _select.POLLHUP  # TCP_CLOSE, sk_shutdown 0
_POLL_OVER = _POLL_UNCONNECTED | _POLL_RCV_SHUTDOWN  # tcp_done: SHUTDOWN_MASK too


def socket_from_fileno(fd) -> Socket | None:
    """The open fsdp socket whose ``fileno()`` is ``fd``, or None (a kernel fd, or closed)."""
    if isinstance(fd, Socket):
        return None if fd._closed else fd
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        return None
    r = _by_fileno.get(fd)
    s = None if r is None else r()
    return None if s is None or s._closed else s


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _raise_if_error(rc: int) -> int:
    if rc < 0:
        raise _oserror(-rc)
    return rc


def _parse_ipv4(host, *, allow_any: bool) -> int:
    if isinstance(host, (bytes, bytearray)):
        if b"\0" in host:
            raise TypeError("host name must not contain null character")
        host = host.decode("ascii", "replace")  # the stdlib takes bytes hosts too
    if not isinstance(host, str):
        raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
    if "\0" in host:
        raise TypeError("host name must not contain null character")
    if host == "" or (host == "0.0.0.0" and allow_any):
        return 0  # CPython: "" is INADDR_ANY
    if host == "<broadcast>":
        return 0xFFFFFFFF
    try:
        return int(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    # A name, or a numeric form only inet_aton takes ("10.1"): fsdp has no resolver of its
    # own, so the kernel's answers, as the stdlib (and transparent mode) ask it
    # (CPython hands an ASCII name to the resolver as it is; only others go through idna)
    name = host.encode("ascii") if host.isascii() else host
    infos = _stdsocket.getaddrinfo(name, None, _stdsocket.AF_INET, _stdsocket.SOCK_STREAM)
    return int(ipaddress.IPv4Address(infos[0][4][0]))


def _parse_address(address, *, allow_any: bool, who: str = "bind") -> tuple[int, int]:
    if not isinstance(address, tuple):
        raise TypeError(f"{who}(): AF_INET address must be tuple, not {type(address).__name__}")
    if len(address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port = address
    port = operator.index(port)  # (a bool is a port too, as in CPython)
    if not 0 <= port <= 0xFFFF:
        raise OverflowError(f"{who}(): port must be 0-65535.")
    return _parse_ipv4(host, allow_any=allow_any), port


def _index(value) -> int:
    """An int argument as the stdlib's C code takes it (TypeError: "'str' object cannot be
    interpreted as an integer")."""
    return operator.index(value)


_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_SSIZE_MAX = sys.maxsize
_NO_OPTLEN = object()  # setsockopt called with three arguments


def _c_range(value, lo: int, hi: int, ctype: str) -> int:
    """An index within a C type's range, else the OverflowError CPython raises for it."""
    v = operator.index(value)
    if not lo <= v <= hi:
        raise OverflowError(f"Python int too large to convert to C {ctype}")
    return v


def _c_long(value) -> int:
    """An argument as CPython's PyLong_AsLong takes it (setblocking's)."""
    return _c_range(value, _LONG_MIN, _LONG_MAX, "long")


def _as_int(value) -> int:
    """An argument as CPython's _PyLong_AsInt takes it (socket()'s, shutdown's how)."""
    return _c_range(value, _INT_MIN, _INT_MAX, "int")


def _c_ssize(value) -> int:
    """A size as CPython's "n" format takes it (recv's bufsize)."""
    return _c_range(value, -_SSIZE_MAX - 1, _SSIZE_MAX, "ssize_t")


def _c_int(value) -> int:
    """An argument as CPython's "i" format takes it (flags, backlog, option levels): a C
    long first, then within a C int."""
    v = _c_long(value)
    if v > _INT_MAX:
        raise OverflowError("signed integer is greater than maximum")
    if v < _INT_MIN:
        raise OverflowError("signed integer is less than minimum")
    return v


# IP-level options of a TCP socket (the IP header of its segments, RFC 9293 MUST-48/49)
_IP_OPTS = {_stdsocket.IP_TOS: uc.OPT_TOS, _stdsocket.IP_TTL: uc.OPT_TTL}


def _setsockopt_args(level, optname, value, optlen):
    """setsockopt's arguments as CPython's socket module parses them, trying its three forms
    in turn: (level, optname, int), (level, optname, None, optlen) and (level, optname,
    bytes-like).  Returns (level, optname, the option's bytes or None, their length as
    Linux's int optlen); raises what CPython raises for arguments none of them takes."""
    if optlen is _NO_OPTLEN:
        try:
            return _c_int(level), _c_int(optname), struct.pack("i", _c_int(value)), 4
        except (TypeError, OverflowError):
            pass  # an int out of range, or not an int: the bytes-like form
    elif value is None:
        try:
            n = operator.index(optlen) & 0xFFFFFFFF  # "I": unsigned, masked, not checked
            level, optname = _c_int(level), _c_int(optname)
        except (TypeError, OverflowError):
            pass
        else:
            return level, optname, None, n - (1 << 32) if n > _INT_MAX else n  # as an int
    if optlen is not _NO_OPTLEN:  # (CPython checks the count before converting any)
        raise TypeError("setsockopt() takes exactly 3 arguments (4 given)")
    level, optname = _c_int(level), _c_int(optname)
    payload = _readable_view(value).tobytes()
    return level, optname, payload, len(payload)


def _readable_view(data) -> memoryview:
    """Data as CPython's "y*" takes it (send's, setsockopt's), as unsigned bytes."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"a bytes-like object is required, not '{type(data).__name__}'") from None
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    return view.cast("B")


def _writable_view(buffer, who: str) -> memoryview:
    """A recv_into-style buffer argument as CPython's "w*" takes it, as unsigned bytes."""
    try:
        view = memoryview(buffer)
    except TypeError:
        view = None
    if view is None or view.readonly or not view.c_contiguous:
        raise TypeError(f"{who}() argument 1 must be read-write bytes-like object, "
                        f"not {type(buffer).__name__}")
    return view.cast("B")


def _timeout_value(value):
    """``settimeout``'s argument checked as the stdlib checks it."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:
            raise ValueError("Invalid value NaN (not a number)")
        if abs(value) >= 2.0 ** 63 / 1e9:
            raise OverflowError("timestamp out of range for platform time_t")
    else:
        value = operator.index(value)
        if abs(value) > (2 ** 63 - 1) // 10 ** 9:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
    if value < 0:
        raise ValueError("Timeout value out of range")
    return float(value)


_tcp_send_array = uc.tcp_send_array
_tcp_recv_array = uc.tcp_recv_array


def _tcp_send_oob_array(core, cid, arr, n, now) -> int:
    return uc.tcp_send_oob(core, cid, arr, 0, n, now)
# (The per-connection hot paths, accept, recv, send, sendall and close, call the engine
# through Stack._engine: fsdp.sockapi.fastcall.)
_SCRATCH_BYTES = fastcall.SCRATCH_BYTES
_OP_STATUS, _OP_TAKE_ERROR = uc.OP_STATUS, uc.OP_TAKE_ERROR


@functools.lru_cache(maxsize=4096)  # accept() formats the same few peer addresses over and over
def _ip_str(v: int) -> str:
    return _stdsocket.inet_ntoa(v.to_bytes(4, "big"))  # ~10x faster than ipaddress


def _check_socket_args(family, type, proto) -> tuple[int, float | None]:
    """socket()'s arguments checked as Linux's socket(2) checks them: (proto, the new
    socket's timeout: 0.0 with SOCK_NONBLOCK, else the stdlib's default)."""
    if family is None:
        family = _stdsocket.AF_INET
    if type is None:
        type = _stdsocket.SOCK_STREAM
    family, type, proto = _as_int(family), _as_int(type), _as_int(proto)
    # CPython: -1 is "not given" for each of them
    family = _stdsocket.AF_INET if family == -1 else family
    type = _stdsocket.SOCK_STREAM if type == -1 else type
    proto = 0 if proto == -1 else proto
    if family != _stdsocket.AF_INET:
        raise _oserror(errno.EAFNOSUPPORT)
    if (type & _SOCK_TYPE_MASK) != _stdsocket.SOCK_STREAM:
        raise _oserror(errno.ESOCKTNOSUPPORT if type in (2, 3) else errno.EINVAL)
    if proto not in (0, _stdsocket.IPPROTO_TCP):
        # Linux inet_create: EINVAL outside 0..IPPROTO_MAX-1 (262)
        raise _oserror(errno.EPROTONOSUPPORT if 0 <= proto < 263 else errno.EINVAL)
    if type & getattr(_stdsocket, "SOCK_NONBLOCK", 0):
        return proto, 0.0
    return proto, _stdsocket.getdefaulttimeout()


class Socket:
    """A TCP socket on an :class:`fsdp.Stack`, with ``socket.socket``'s methods and errors.

    Its state is in slots (as socket.socket's): fsdp._native's accept, recv, send, sendall and
    close read and write them at their offsets (see the end of this module)."""

    __slots__ = (
        "__weakref__", "_stack", "family", "type", "proto", "_fileno", "_numbered", "_wref",
        "_timeout", "_closed", "_released", "_io_refs", "_bound", "_peer", "_core", "_cid",
        "_lids", "_connecting", "_explicit_bind", "_bind_ip", "_stale_port", "_reuseaddr",
        "_reuseport", "_bound_reuseport", "_pending_opts", "_linger", "_selectors",
        "_disconnecting", "_rcv_shutdown", "_rebound",
    )

    def __init__(self, stack, family=_AF_INET, type=_SOCK_STREAM, proto=0):
        if family is _AF_INET and type is _SOCK_STREAM and proto.__class__ is int and not proto:
            timeout = _stdsocket.getdefaulttimeout()  # the usual case (and every accept())
        else:
            proto, timeout = _check_socket_args(family, type, proto)
        self._init_fields(stack, proto, timeout)
        self._fileno = next(_fileno_counter)
        self._wref = weakref.ref(self)  # the registries' entry (_by_fileno, Stack._sockets)
        if stack._engine is None:
            stack._make_engine()  # the stack's first socket
        stack._sockets[id(self)] = self._wref  # (dropped by _release)

    def _init_fields(self, stack, proto: int, timeout) -> None:
        """Every slot as a new socket has it (fsdp._native's accept copies them from a socket
        this made, then sets what accept() sets)."""
        self._stack = stack
        self.family = _AF_INET  # AddressFamily(...) costs a microsecond per socket
        self.type = _SOCK_STREAM
        self.proto = proto
        self._fileno = -1
        self._numbered = False  # in _by_fileno: once fileno() has given the number out
        self._wref = None
        self._timeout: float | None = timeout
        self._closed = False
        self._released = False
        self._io_refs = 0
        self._bound: tuple[int, int] | None = None  # (ip, port) as ints
        self._peer: tuple[int, int] | None = None
        self._core = -1  # the core owning the connection
        self._cid = -1  # TCB id on that core
        self._lids: list[int] | None = None  # listener id on every core (listen spawn)
        self._connecting = False  # Linux SS_CONNECTING: a connect() begun, its end unseen
        self._explicit_bind = False  # bind() named a port (Linux SOCK_BINDPORT_LOCK)
        self._bind_ip = 0  # the address bind() named (SOCK_BINDADDR_LOCK when not 0)
        self._stale_port = 0  # getsockname()'s port after a failed connect gave it back
        self._reuseaddr = False
        self._reuseport = 0
        # SO_REUSEPORT as of this socket's bind() or listen(): Linux's bind bucket remembers it
        # (tb->fastreuseport, sk_reuseport_match), so clearing it later does not stop a
        # socket with SO_REUSEPORT from sharing the port (Stack._check_bind)
        self._bound_reuseport = 0
        self._pending_opts: dict[int, int] = {}  # engine options set before the TCB exists
        self._linger: tuple[int, int] = (0, 0)
        self._selectors: list | None = None  # fsdp selectors this socket is registered with
        self._disconnecting = False  # Linux SS_DISCONNECTING (see shutdown)
        self._rcv_shutdown = False  # shutdown(SHUT_RD) before any connection (see shutdown)
        self._rebound = False  # bound again after its connection ended (see _port_given_back)

    # ---- helpers ----
    def _changed(self) -> None:
        """The engine object behind this socket changed (connected, listening, closed): the
        selectors watching it read its readiness from the new one."""
        if self._selectors:
            for sel in list(self._selectors):
                sel._socket_changed(self)

    def _check_open(self) -> None:
        if self._closed and (not self._io_refs or self._released):
            raise _oserror(errno.EBADF)  # (makefile() objects keep an unreleased one usable)

    def _core_state(self):
        return self._stack._refs[self._core]

    def _status(self) -> int:
        """The connection's EV_* bits (fsdp.tcp.usercalls.tcp_status)."""
        return self._stack._engine.call(self._core, _OP_STATUS, self._cid, 0, 0, 0, 0)

    def _take_error(self, soft: int = 0) -> int:
        """The connection's pending error, cleared (tcp_take_error); with ``soft`` (SO_ERROR),
        else its last ICMP error (Linux sk_err_soft), cleared."""
        return self._stack._engine.call(self._core, _OP_TAKE_ERROR, self._cid, soft, 0, 0, 0)

    def _now(self) -> int:
        return self._stack.now_us()

    def _wait(self, ready, what: str, tried: bool = False):
        """Call ``ready()`` until it returns non-None, polling every stack of the process;
        honours the socket's timeout.  ``ready`` may raise.  ``tried``: the caller has just
        called it once (and got None)."""
        r = None if tried else ready()
        if r is not None:
            return r
        from fsdp.core.stack import idle_backoff, poll_all_stacks

        if self._timeout == 0.0 or self._stack._virtual_clock:
            if not self._stack._virtual_clock:
                # A non-blocking call polls once before it says "would block": in a program
                # that drives the stack itself, what the peer already sent is then seen.
                poll_all_stacks()
                if what == "connect":
                    # but Linux never ends a non-blocking TCP connect at once (not even
                    # over loopback): EINPROGRESS, the outcome comes from SO_ERROR/connect
                    raise _oserror(errno.EINPROGRESS)
                r = ready()
                if r is not None:
                    return r
            raise _oserror(errno.EINPROGRESS if what == "connect" else errno.EAGAIN)
        # (CPython waits in poll(), its timeout rounded up to whole milliseconds)
        deadline = None if self._timeout is None else (
            time.monotonic() + math.ceil(self._timeout * 1000) / 1000)
        idle = 0

        while True:
            moved = poll_all_stacks()
            r = ready()
            if r is not None:
                return r
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("timed out")
            if moved:
                idle = 0
            else:
                idle += 1
                # busy-poll first, then sleep (a frame for this stack's queue wakes it)
                idle_backoff(idle, 20e-6, 0.001, deadline)

    def _adopt_fileno(self, fd: int) -> None:
        """Answer to ``fd`` (a kernel fd the caller keeps open and unused) from now on."""
        self._unnumber()
        self._fileno = fd
        _by_fileno[fd] = self._wref
        self._numbered = True

    def _unnumber(self) -> None:
        """Take this socket's number out of the registry (it names nothing any more)."""
        if self._numbered and _by_fileno.get(self._fileno) is self._wref:
            del _by_fileno[self._fileno]
        self._numbered = False

    def _poll_events(self) -> int:
        """POLL_READ | POLL_WRITE | POLL_PRI this socket is ready for now, as ``select()`` on a
        Linux TCP socket would say (tcp_poll): a listener is readable with a connection to
        accept; a connection is readable with data, EOF or an error, writable with send space
        or an error, "exceptional" with urgent data; a socket neither connected nor listening
        is both readable and writable (POLLOUT | POLLHUP); a closed socket is never ready.
        Does not poll the stack."""
        if self._closed or self._stack._closed:
            return 0
        if self._lids is not None:
            for core, lid in zip(self._stack._refs, self._lids, strict=False):  # unspawned: core 0
                if uc.tcp_listen_status(core, lid) & (_EV_READABLE | _EV_ERROR):
                    return POLL_READ
            return 0
        if self._cid < 0:
            return POLL_READ | POLL_WRITE
        st = self._status()
        ev = 0
        if st & _EV_READABLE:
            ev |= POLL_READ
        if st & _EV_WRITABLE:
            ev |= POLL_WRITE
        if st & uc.EV_URGENT:
            ev |= POLL_PRI
        return ev

    def _linux_poll_mask(self) -> int:
        """What poll()/epoll say of this socket on Linux (tcp_poll's mask, in select's POLL*
        values, before the caller's event mask): a listener POLLIN with a connection to
        accept; a socket neither connected nor connecting POLLOUT | POLLHUP (Linux's
        TCP_CLOSE), plus POLLIN | POLLRDHUP once reading is shut down; a connection POLLIN
        with data or the peer's FIN (POLLRDHUP then too), POLLOUT with send space or sending
        shut down, POLLPRI with urgent data, POLLHUP once both directions are shut down;
        POLLERR while an error is pending; a connecting one nothing but that.  A connection
        that is over (RST, timeout, TIME-WAIT: Linux's tcp_done) is all of IN, OUT, RDHUP,
        HUP.  Does not poll the stack."""
        if self._closed or self._stack._closed:
            return _POLLNVAL  # (its fd is closed)
        if self._lids is not None:
            return _POLLIN_ALL if self._poll_events() & POLL_READ else 0
        if self._cid < 0:
            return _POLL_UNCONNECTED | (_POLL_RCV_SHUTDOWN if self._rcv_shutdown else 0)
        st = self._status()
        err = _select.POLLERR if st & _EV_ERROR else 0
        if st & _EV_CONNECTED:
            mask = err
            if st & uc.EV_EOF:
                mask |= _POLL_RCV_SHUTDOWN
            if st & _EV_ERROR:  # (EV_READABLE / EV_WRITABLE also say "an error" then)
                info = self._stack._conn_info(self._core, self._cid)
                if info["rcv_q"] > 0:
                    mask |= _POLLIN_ALL
                if st & _EV_WRITABLE and info["snd_q"] < self.getsockopt(
                        _stdsocket.SOL_SOCKET, _stdsocket.SO_SNDBUF):
                    mask |= _POLLOUT_ALL
            else:
                if st & _EV_READABLE:
                    mask |= _POLLIN_ALL
                if st & _EV_WRITABLE:
                    mask |= _POLLOUT_ALL
            if st & uc.EV_URGENT:
                mask |= _select.POLLPRI
            if st & uc.EV_EOF and self._send_shut_down():
                mask |= _select.POLLHUP  # sk_shutdown == SHUTDOWN_MASK
            return mask
        if not st & uc.EV_CLOSED and self._stack._conn_info(
                self._core, self._cid)["state"] != TCPS_TIME_WAIT:
            # SYN-SENT: not connected, nothing but an error or a read side shut down
            return err | (_POLL_RCV_SHUTDOWN if st & uc.EV_EOF else 0)
        return _POLL_OVER | err | (_select.POLLPRI if st & uc.EV_URGENT else 0)

    def _send_shut_down(self) -> bool:
        out = np.zeros(uc.CI_SIZE, np.int64)
        uc.tcp_conn_info(self._core_state(), self._cid, out)
        return bool(int(out[uc.CI_FLAGS]) & TF_SND_SHUTDOWN)

    # ---- addresses ----
    def bind(self, address) -> None:
        self._check_open()
        ip, port = _parse_address(address, allow_any=True)
        # Linux __inet_bind: the address is checked before the socket's state
        if ip not in (0, self._stack._ip_int):
            raise _oserror(errno.EADDRNOTAVAIL)
        if self._bound is not None or self._lids is not None or self._cid >= 0:
            if not self._port_given_back():
                raise _oserror(errno.EINVAL)
            self._rebound = True  # (bound anew: the port is held again)
        # Linux locks what bind() named: the address if not 0.0.0.0, the port if not 0
        self._explicit_bind = port != 0
        if port == 0:
            port = self._autobind_port(ip)
        else:
            self._stack._check_bind(ip, port, self._reuseaddr, self._reuseport, self)
        self._bound = (ip, port)
        self._bind_ip = ip
        self._bound_reuseport = self._reuseport

    def _port_given_back(self) -> bool:
        """A connection that ended (RST, timeout) on a port bind() did not name: Linux's
        tcp_set_state(TCP_CLOSE) gave the port back (inet_put_port), so bind() may name one
        again (the socket stays connected: connect() is EISCONN, reads see its end)."""
        return (self._cid >= 0 and not self._explicit_bind and not self._rebound
                and self._lids is None
                and bool(self._status() & uc.EV_CLOSED))

    def _autobind_port(self, ip: int) -> int:
        """A free port for bind(port 0) or listen() without bind: with the ephemeral range
        used up Linux says EADDRINUSE there (connect() says EADDRNOTAVAIL)."""
        try:
            return self._stack._ephemeral_port(ip, 0, 0)
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise _oserror(errno.EADDRINUSE) from None
            raise

    def getsockname(self):
        self._check_open()
        if self._bound is None:
            return (_ip_str(self._bind_ip), self._stale_port)
        ip, port = self._bound
        if ip == 0 and self._cid >= 0:
            ip = self._stack._ip_int
        return (_ip_str(ip), port)

    def getpeername(self):
        self._check_open()
        if self._peer is None or self._cid < 0:
            raise _oserror(errno.ENOTCONN)
        state = self._status()
        if not state & _EV_CONNECTED:  # Linux: ENOTCONN in SYN_SENT and CLOSE
            raise _oserror(errno.ENOTCONN)
        return (_ip_str(self._peer[0]), self._peer[1])

    # ---- passive open ----
    def listen(self, backlog: int = _DEFAULT_BACKLOG) -> None:
        backlog = _c_int(backlog)
        self._check_open()
        if self._cid >= 0:
            raise _oserror(errno.EINVAL)
        backlog = max(0, min(backlog, 65535))  # (CPython makes a negative one 0)
        if self._lids is not None:
            # Linux: listen() again only changes the backlog (sk_max_ack_backlog)
            for core, lid in zip(self._stack._refs, self._lids, strict=False):
                _raise_if_error(uc.tcp_listen_setopt(core, lid, uc.OPT_BACKLOG, backlog))
            return
        if self._bound is None:
            self._bound = (0, self._autobind_port(0))
        else:
            # Linux inet_csk_listen_start checks the port again (inet_csk_get_port): the
            # options may have changed since bind(), and other sockets bound it meanwhile
            self._stack._check_bind(*self._bound, self._reuseaddr, self._reuseport, self,
                                    engine=False)
        self._lids = self._stack._listen(self._bound[0], self._bound[1], backlog,
                                         self._reuseaddr, self._reuseport)
        self._bound_reuseport = self._reuseport
        for opt, value in self._pending_opts.items():
            self._apply_to_listeners(opt, value)
        self._changed()

    def accept(self):
        if self._closed:
            self._check_open()
        if self._lids is None:
            raise _oserror(errno.EINVAL)

        stack = self._stack
        lids = self._lids
        got = stack._accept(lids)  # the usual case in a readiness loop: one is ready
        if got is None:
            got = self._wait(lambda: stack._accept(lids), "accept", tried=True)
        core, cid, lip, lport, rip, rport = got
        conn = Socket(stack)
        conn._core = core
        conn._cid = cid
        conn._bound = (lip, lport)
        conn._peer = (rip, rport)
        # Blocking mode: like the stdlib, unless the clock is virtual (then nothing could wake
        # a blocking call, so the accepted socket keeps the listener's mode).
        if stack._virtual_clock:
            conn._timeout = self._timeout
        conn._reuseaddr = self._reuseaddr
        conn._reuseport = self._reuseport  # Linux sk_clone_lock copies sk_reuseport too
        conn._bound_reuseport = self._bound_reuseport  # and the child joins its bind bucket
        conn._linger = self._linger
        if self._pending_opts:
            for opt, value in self._pending_opts.items():
                if opt not in (uc.OPT_TOS, uc.OPT_TTL):  # (the engine's child has the
                    uc.tcp_setopt(stack._refs[core], cid, opt, value)  # listener's at its ACK)
        return conn, (_ip_str(rip), rport)  # established: getpeername()'s

    # ---- active open ----
    def connect(self, address) -> None:
        rc = self._connect(address, "connect")
        if rc:
            raise _oserror(rc)

    def connect_ex(self, address) -> int:
        if self._closed and (not self._io_refs or self._released):
            return errno.EBADF  # the stdlib's connect_ex returns connect(2)'s errno
        try:
            return self._connect(address, "connect_ex")
        except _stdsocket.gaierror:
            raise  # the address, not connect(2): raised, as the stdlib does
        except TimeoutError as e:
            return e.errno or errno.EWOULDBLOCK  # CPython's connect_ex after its timeout
        except OSError as e:
            if e.errno is None:
                raise
            return e.errno  # connect(2)'s errno, returned

    def _drop_failed_connection(self) -> None:
        """After a failed connect Linux's socket is unconnected again (a new connect() may
        be tried), keeping what bind() named (a port bind() chose is given back)."""
        uc.tcp_close(self._core_state(), self._cid, self._now())
        self._cid = -1
        self._core = -1
        self._peer = None
        if not self._explicit_bind and self._bound is not None:
            # the port is free again, though getsockname() still names it
            self._stale_port = self._bound[1]
            self._bound = None
        self._changed()  # selectors: an unconnected socket again

    def _connect(self, address, who="connect") -> int:
        self._check_open()
        rip, rport = _parse_address(address, allow_any=False, who=who)
        if self._lids is not None:
            return errno.EISCONN
        if self._cid >= 0:
            if self._disconnecting:
                return errno.EINVAL
            if not self._connecting:
                return errno.EISCONN
            # Linux SS_CONNECTING: this call reports how the connect begun before ended
            status = self._status()
            if status & _EV_CONNECTED:
                self._connecting = False
                return 0
            if status & (_EV_ERROR | uc.EV_CLOSED):
                self._connecting = False
                # its error, or ECONNABORTED when SO_ERROR (or a timed connect) took it
                rc = self._take_error() or errno.ECONNABORTED
                self._drop_failed_connection()
                return rc
            if self._timeout is not None or self._stack._virtual_clock:
                return errno.EALREADY
        else:
            if rport == 0 or rip == 0:
                return errno.ECONNREFUSED
            lip = self._bound[0] if self._bound and self._bound[0] else (
                self._bind_ip or self._stack._ip_int)
            lport = self._bound[1] if self._bound else 0
            core, cid = self._stack._connect(lip, lport, rip, rport,
                                             self._pending_opts.get(uc.OPT_TOS, 0),
                                             self._pending_opts.get(uc.OPT_TTL, 0))
            self._core, self._cid = core, cid
            info = self._stack._conn_info(core, cid)
            self._bound = (info["lip"], info["lport"])
            self._peer = (rip, rport)
            for opt, value in self._pending_opts.items():
                uc.tcp_setopt(self._core_state(), cid, opt, value)
            if self._reuseaddr:
                uc.tcp_setopt(self._core_state(), cid, uc.OPT_REUSEADDR, 1)
            if self._reuseport:
                uc.tcp_setopt(self._core_state(), cid, uc.OPT_REUSEPORT, 1)
            if self._rcv_shutdown:  # (Linux's sk_shutdown outlives the connect)
                uc.tcp_shutdown(self._core_state(), cid, _stdsocket.SHUT_RD, self._now())
            self._connecting = True
            self._changed()

        def ready():
            st = self._status()
            if st & _EV_CONNECTED:
                return 0
            if st & _EV_ERROR:
                return self._take_error() or errno.ECONNREFUSED
            return None

        rc = self._wait(ready, "connect")
        if self._timeout is None:
            # A blocking connect(2) ends in SS_CONNECTED or SS_UNCONNECTED.  CPython runs a
            # connect with a timeout as a non-blocking one, so the socket stays
            # SS_CONNECTING: the next connect() says 0 or ECONNABORTED (its error was taken).
            self._connecting = False
            if rc:
                self._drop_failed_connection()
        return rc

    # ---- data ----
    def _conn_check(self, code: int = errno.ENOTCONN) -> None:
        self._check_open()
        if self._cid < 0:
            raise _oserror(code)  # Linux: send() on an unconnected socket is EPIPE

    def send(self, data, flags: int = 0) -> int:
        view = _readable_view(data)
        if flags.__class__ is not int or flags:
            flags = _c_int(flags)
        self._conn_check(errno.EPIPE)
        n = view.nbytes  # (0 too: Linux looks at the connection's state first, then the size)
        arr = fastcall.send_array(view, n)
        stack = self._stack
        # MSG_OOB: the write's last byte is urgent (fsdp.tcp.urgent)
        send = _tcp_send_array if not flags & _MSG_OOB else _tcp_send_oob_array

        def ready():
            rc = send(stack._refs[self._core], self._cid, arr, n, stack._clock())
            if rc == -errno.EAGAIN:
                return None
            return _raise_if_error(rc)

        rc = ready()  # the usual case, space in the send buffer, without _wait's set-up
        if flags & _MSG_DONTWAIT:
            if rc is None:
                raise _oserror(errno.EAGAIN)
            return rc
        if self._timeout is None and (rc is None or rc < n):
            return self._send_rest(view, flags, rc or 0)
        if rc is not None:
            return rc
        # CPython polls a timed socket for POLLOUT first, then sends what fits
        return self._send_when_writable(view, flags)

    def _send_rest(self, data, flags, sent: int) -> int:
        """A blocking send() once its first ``sent`` bytes were taken: Linux's tcp_sendmsg
        queues the rest too, waiting for room (woken once half the send buffer is free:
        sk_stream_write_space), and returns the whole count; an error once some bytes were
        taken ends it with those (Linux: ``if (copied) goto out``).  fsdp._native's send calls
        this when the send buffer took only part of a blocking send."""
        view = _readable_view(data)
        total = view.nbytes
        try:
            while sent < total:
                sent += self._send_when_writable(view[sent:], flags)
        except OSError:
            if sent:
                return sent
            raise
        return sent

    def _send_when_writable(self, view, flags) -> int:
        """One send once the socket is writable as Linux's poll says it (half the send buffer
        free: sk_stream_is_writeable), waiting as the timeout says: what fits then."""
        n = view.nbytes
        arr = fastcall.send_array(view, n)
        stack = self._stack
        send = _tcp_send_array if not flags & _MSG_OOB else _tcp_send_oob_array

        def ready():
            if not self._status() & (_EV_WRITABLE | _EV_ERROR):
                return None
            rc = send(stack._refs[self._core], self._cid, arr, n, stack._clock())
            if rc == -errno.EAGAIN:
                return None
            return _raise_if_error(rc)

        return self._wait(ready, "send")

    def sendall(self, data, flags: int = 0) -> None:
        sent = 0
        if (type(data) is bytes and flags.__class__ is int and not flags and not self._timeout
                and self._cid >= 0 and not self._closed and data):
            # The usual case, a reply in bytes that the send buffer takes whole.
            rc = self._stack._engine.send(self._core, self._cid, data)
            if rc == len(data):
                return
            if rc >= 0:
                sent = rc  # the rest below, as send() would take it
            elif rc != -errno.EAGAIN:
                raise _oserror(-rc)
        self._sendall_rest(data, flags, sent)

    def _sendall_rest(self, data, flags, sent: int) -> None:
        """sendall() once its first ``sent`` bytes were taken (fsdp._native's sendall calls
        this after its own first try too)."""
        view = _readable_view(data)
        if flags.__class__ is not int or flags:
            flags = _c_int(flags)
        self._conn_check(errno.EPIPE)
        total = view.nbytes
        if not total:
            self.send(view, flags)  # CPython's sendall makes one send(2) even of nothing
            return
        deadline = None if not self._timeout else time.monotonic() + self._timeout
        if deadline is None and not sent:
            sent = self.send(view, flags)  # the usual case: the send buffer takes it all
        while sent < total:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
            sent += self.send(view[sent:], flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if bufsize.__class__ is not int or bufsize < 0 or bufsize > 0x7FFF_FFFF_FFFF_FFFF:
            bufsize = _c_ssize(bufsize)  # (CPython's "n|i": the size first, then the flags)
        if flags.__class__ is not int or flags:
            flags = _c_int(flags)
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        if (not flags and 0 < bufsize <= _SCRATCH_BYTES and self._cid >= 0 and not self._closed
                and not self._timeout):
            # The usual case, data queued: the bytes made and filled in one call.
            got = self._stack._engine.recv(self._core, self._cid, bufsize)
            if got.__class__ is bytes:
                return got
            if got != -errno.EAGAIN:
                raise _oserror(-got)
        if not bufsize:
            return b""  # CPython's sock_recv_guts: "If 0 bytes were requested, do nothing"
        buf = bytearray(bufsize)
        n = self.recv_into(buf, bufsize, flags)
        return bytes(buf[:n])

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        view = _writable_view(buffer, "recv_into")
        if nbytes.__class__ is not int or nbytes < 0 or nbytes > 0x7FFF_FFFF_FFFF_FFFF:
            nbytes = _c_ssize(nbytes)  # ("w*|ni": the size before the flags)
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes > view.nbytes:
            raise ValueError("buffer too small for requested bytes")
        if flags.__class__ is not int or flags:
            flags = _c_int(flags)
            if (flags & _MSG_WAITALL and self._timeout is None and not flags & _MSG_PEEK
                    and (nbytes or view.nbytes)):
                return self._recv_waitall(view, nbytes or view.nbytes, flags & ~_MSG_WAITALL)
        if nbytes == 0:
            nbytes = view.nbytes
        if nbytes == 0:
            return 0  # CPython does nothing (no recv(2): not even a closed socket's EBADF)
        return self._recv_copy(np.frombuffer(view, np.uint8), nbytes, flags & _MSG_PEEK, flags)

    def _recv_zero(self, flags: int) -> int:
        """recvfrom() of zero bytes, which CPython does pass to the kernel: Linux tcp_recvmsg
        then waits as for one byte (sock_rcvlowat is at least 1) and copies none.  So:
        ENOTCONN unless connected; 0 once data or EOF is there (the data stays queued); a
        pending error is raised; with nothing there yet, EAGAIN, a wait, or a timeout, as a
        recv() of one byte would do."""
        self._recv_copy(np.zeros(1, np.uint8), 1, 1, flags)  # a peek at one byte
        return 0

    def _recv_copy(self, out, nbytes: int, peek: int, flags: int) -> int:
        """The read of recv_into and recvfrom: up to ``nbytes`` into ``out`` (left queued
        with ``peek``), waiting as the socket's timeout and MSG_DONTWAIT say."""
        if flags & _MSG_OOB:
            return self._recv_oob(out, nbytes, flags)
        if self._cid < 0 and self._rcv_shutdown and self._lids is None and not self._closed:
            return 0
        self._conn_check()
        # (with a timeout, a read as CPython makes it: after POLLIN, fsdp.tcp.usercalls)
        peek = 1 if peek else (uc.RECV_AS_POLLED if self._timeout else 0)

        def ready():
            rc = _tcp_recv_array(self._core_state(), self._cid, out, nbytes, peek, self._now())
            if rc == -errno.EAGAIN:
                return None
            return _raise_if_error(rc)

        rc = ready()  # data already queued: the usual case for a readiness-driven server
        if rc is not None:
            return rc
        if flags & _MSG_DONTWAIT:
            saved, self._timeout = self._timeout, 0.0
        else:
            saved = self._timeout
        try:
            return self._wait(ready, "recv", tried=True)
        finally:
            self._timeout = saved

    def _recv_oob(self, out, nbytes: int, flags: int) -> int:
        """recv(MSG_OOB): the urgent byte (fsdp.tcp.urgent; MSG_PEEK leaves it).  The call
        itself never waits (Linux tcp_recv_urg: EAGAIN while the byte has not arrived, on a
        blocking socket too).  Under a timeout CPython waits for POLLIN before each try and
        tries again after EAGAIN until the time is up (sock_call_ex), and Linux does not count
        the urgent byte at the mark as readable: so with only that byte left, a socket with a
        timeout times out.  A listener: ENOTCONN; a socket that never connected: EINVAL."""
        self._check_open()
        if self._lids is not None:
            raise _oserror(errno.ENOTCONN)
        if self._cid < 0:
            raise _oserror(errno.EINVAL)
        peek = 1 if flags & _MSG_PEEK else 0

        def call():
            rc = uc.tcp_recv_oob(self._core_state(), self._cid, peek)
            if rc == -errno.EAGAIN:
                return None
            if rc < 0:
                raise _oserror(-rc)
            if rc == URG_RECV_EOF or nbytes <= 0:
                return 0
            out[0] = rc
            return 1

        if self._timeout and not flags & _MSG_DONTWAIT:
            return self._wait(lambda: call() if self._poll_events() & POLL_READ else None,
                              "recv")
        rc = call()
        if rc is not None:
            return rc
        if self._timeout is None or flags & _MSG_DONTWAIT:
            raise _oserror(errno.EAGAIN)  # a blocking socket too: the call never waits
        return self._wait(call, "recv", tried=True)  # non-blocking: after one more poll

    def _recv_waitall(self, view, nbytes: int, flags: int) -> int:
        """MSG_WAITALL on a blocking socket: read until ``nbytes``, EOF or an error (which
        only a first read raises; after data Linux returns the short count).  CPython runs a
        socket with a timeout non-blocking, where MSG_WAITALL cannot wait: not here."""
        got = 0
        while got < nbytes:
            try:
                n = self.recv_into(view[got:], nbytes - got, flags)
            except OSError:
                if got:
                    return got
                raise
            if n == 0:
                break
            got += n
        return got

    def recvfrom(self, bufsize: int, flags: int = 0):
        bufsize = _c_ssize(bufsize)
        if flags.__class__ is not int or flags:
            flags = _c_int(flags)
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        if not bufsize:
            self._recv_zero(flags)
            return b"", None
        return self.recv(bufsize, flags), None

    # socket.socket.sendfile(file, offset=0, count=None): there is no kernel fd for
    # sendfile(2), so the stdlib's own send()-based path, which socket.socket takes where
    # os.sendfile cannot serve (its checks, errors and file position included)
    _check_sendfile_params = _stdsocket.socket._check_sendfile_params
    sendfile = _stdsocket.socket._sendfile_use_send

    def recvfrom_into(self, buffer, nbytes: int = 0, flags: int = 0):
        view = _writable_view(buffer, "recvfrom_into")
        nbytes = _c_ssize(nbytes)
        if flags.__class__ is not int or flags:
            flags = _c_int(flags)
        if nbytes < 0:
            raise ValueError("negative buffersize in recvfrom_into")
        if nbytes > view.nbytes:
            raise ValueError("nbytes is greater than the length of the buffer")
        if not (nbytes or view.nbytes):
            return self._recv_zero(flags), None
        return self.recv_into(view, nbytes, flags), None

    # ---- the message calls: TCP has no ancillary data or addresses to give ----
    def sendto(self, data, flags_or_address, address=None) -> int:
        """Linux TCP ignores the address of ``sendto`` (EPIPE when unconnected)."""
        if address is None:
            flags, address = 0, flags_or_address
        else:
            flags = _index(flags_or_address)
        _parse_address(address, allow_any=True, who="sendto")
        return self.send(data, flags)

    def sendmsg(self, buffers, ancdata=(), flags: int = 0, address=None) -> int:
        views = []
        for b in buffers:
            try:
                views.append(memoryview(b).cast("B"))
            except TypeError:
                raise TypeError(
                    f"a bytes-like object is required, not '{type(b).__name__}'") from None
        list(ancdata)  # SOL_SOCKET control messages mean nothing to TCP: Linux ignores them
        flags = _index(flags)
        if address is not None:
            _parse_address(address, allow_any=True, who="sendmsg")
        return self.send(b"".join(views), flags)  # (nothing too: the state decides first)

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0):
        bufsize, ancbufsize = _index(bufsize), _index(ancbufsize)
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        if ancbufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        return self.recv(bufsize, flags), [], 0, None

    def recvmsg_into(self, buffers, ancbufsize: int = 0, flags: int = 0):
        views = []
        for b in buffers:
            try:
                v = memoryview(b)
            except TypeError:
                v = None
            if v is None or v.readonly:
                raise TypeError("recvmsg_into() argument 1 must be an iterable of "
                                "single-segment read-write buffers")
            views.append(v.cast("B"))
        if _index(ancbufsize) < 0:
            raise ValueError("negative buffer size in recvmsg_into()")
        tmp = bytearray(sum(v.nbytes for v in views))
        n = self.recv_into(tmp, len(tmp), flags) if tmp else self.recv_into(tmp, 0, flags)
        pos = 0
        for v in views:
            k = min(v.nbytes, n - pos)
            if k <= 0:
                break
            v[:k] = tmp[pos:pos + k]
            pos += k
        return n, [], 0, None

    # ---- teardown ----
    def shutdown(self, how: int) -> None:
        how = _as_int(how)
        self._check_open()
        if how not in (_stdsocket.SHUT_RD, _stdsocket.SHUT_WR, _stdsocket.SHUT_RDWR):
            raise _oserror(errno.EINVAL)
        if self._lids is not None:
            if how in (_stdsocket.SHUT_RD, _stdsocket.SHUT_RDWR):
                self._stack._unlisten(self._lids)  # Linux: shutdown(SHUT_RD) stops a listener
                self._lids = None
                if not self._explicit_bind and self._bound is not None:
                    # and closing gives back a port bind() did not name (tcp_set_state:
                    # inet_put_port): bind() works again, getsockname() still names it
                    self._stale_port = self._bound[1]
                    self._bound = None
            return
        if self._cid < 0:
            if how != _stdsocket.SHUT_WR:
                # Linux inet_shutdown sets RCV_SHUTDOWN even here (then says ENOTCONN): a
                # read is end-of-file from now on, also after a connect
                self._rcv_shutdown = True
            raise _oserror(errno.ENOTCONN)
        if self._connecting:
            # Linux inet_shutdown ends SS_CONNECTING: a connect that failed unseen (TCP_CLOSE)
            # becomes SS_DISCONNECTING, where every later connect() is EINVAL; one that
            # succeeded SS_CONNECTED (a later connect() is EISCONN)
            status = self._status()
            if status & uc.EV_CLOSED:
                self._disconnecting = True
            elif status & _EV_CONNECTED:
                self._connecting = False
        _raise_if_error(uc.tcp_shutdown(self._core_state(), self._cid, how, self._now()))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._io_refs > 0:
            self._changed()  # a closed socket is never ready, connection or not
            return  # makefile() objects still use it; the last one closes the connection
        self._release()

    def _release(self) -> None:
        self._released = True
        if self._numbered:
            self._unnumber()  # (also when the stack closed first: the number names nothing)
        stack = self._stack
        if stack._closed:
            return
        if self._lids is not None:
            stack._unlisten(self._lids)
            self._lids = None
        cid = self._cid
        if cid >= 0:
            if self._linger[0] and self._linger[1] == 0:
                uc.tcp_abort(stack._refs[self._core], cid, stack._clock())
            else:
                stack._engine.close(self._core, cid)
            self._cid = -1
        if stack._sockets.get(id(self)) is self._wref:  # out of Stack._sockets
            del stack._sockets[id(self)]
        if self._selectors:
            self._changed()

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs == 0:
            self._release()

    def detach(self) -> int:
        raise _oserror(errno.EOPNOTSUPP)  # an fsdp connection has no fd to hand over

    def dup(self):
        raise _oserror(errno.EOPNOTSUPP)  # nor one to duplicate (as transparent mode's)

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- modes ----
    def fileno(self) -> int:
        if self._closed and (not self._io_refs or self._released):
            return -1
        if not self._numbered:
            # Only a number given out can come back (selectors, asyncio): register it now,
            # not for every socket made (a weak mapping entry costs a microsecond).
            _by_fileno[self._fileno] = self._wref
            self._numbered = True
        return self._fileno

    def settimeout(self, value) -> None:
        self._timeout = _timeout_value(value)
        self._check_open()  # CPython sets the timeout, then fails on the closed fd

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        if flag is False:
            self._timeout = 0.0
        else:
            self._timeout = None if flag is True or _c_long(flag) else 0.0
        if self._closed:
            self._check_open()

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    @property
    def timeout(self):
        return self._timeout

    # ---- options ----
    _SOL = {
        _stdsocket.SO_KEEPALIVE: uc.OPT_KEEPALIVE,
        _stdsocket.SO_RCVBUF: uc.OPT_RCVBUF,
        _stdsocket.SO_SNDBUF: uc.OPT_SNDBUF,
        _stdsocket.SO_OOBINLINE: uc.OPT_OOBINLINE,
    }
    _TCP = {
        _stdsocket.TCP_NODELAY: uc.OPT_NODELAY,
        _stdsocket.TCP_KEEPIDLE: uc.OPT_KEEPIDLE,
        _stdsocket.TCP_KEEPINTVL: uc.OPT_KEEPINTVL,
        _stdsocket.TCP_KEEPCNT: uc.OPT_KEEPCNT,
        _stdsocket.TCP_MAXSEG: uc.OPT_MAXSEG,
        _stdsocket.TCP_CORK: uc.OPT_CORK,
        _stdsocket.TCP_SYNCNT: uc.OPT_SYNCNT,
        _stdsocket.TCP_USER_TIMEOUT: uc.OPT_USER_TIMEOUT,
    }
    _BOOL_OPTS = (uc.OPT_NODELAY, uc.OPT_KEEPALIVE, uc.OPT_CORK, uc.OPT_OOBINLINE)
    # Linux's limits: MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT
    # and TCP_MAXSEG's TCP_MIN_MSS..MAX_TCP_WINDOW (0 too: "no user MSS")
    _OPT_RANGE = {uc.OPT_KEEPIDLE: (1, 32767), uc.OPT_KEEPINTVL: (1, 32767),
                  uc.OPT_KEEPCNT: (1, 127), uc.OPT_MAXSEG: (88, 32767),
                  uc.OPT_SYNCNT: (1, 127), uc.OPT_USER_TIMEOUT: (0, 0x7FFFFFFF)}

    def setsockopt(self, level, optname, value, optlen=_NO_OPTLEN) -> None:
        level, optname, payload, optlen = _setsockopt_args(level, optname, value, optlen)
        self._check_open()
        if optlen < 0:
            raise _oserror(errno.EINVAL)
        # Then Linux's checks, in its order (sk_setsockopt, do_tcp_setsockopt): the level, a
        # string option, the length (an int's four bytes), then the option itself.
        if level == _stdsocket.IPPROTO_TCP and optname == _TCP_CONGESTION:
            if optlen < 1:
                raise _oserror(errno.EINVAL)
            if payload is None:
                raise _oserror(errno.EFAULT)  # (setsockopt(level, opt, None, optlen))
            # a name, as Linux takes it (an int is its bytes: no such algorithm)
            algo = _CC_BY_NAME.get(payload[:15].split(b"\0", 1)[0])
            if algo is None:
                raise _oserror(errno.ENOENT)
            self._apply(uc.OPT_CONGESTION, algo)
            return
        if level == _stdsocket.IPPROTO_IP and optname in _IP_OPTS:
            self._set_ip_option(_IP_OPTS[optname], payload, optlen)
            return
        if level not in (_stdsocket.SOL_SOCKET, _stdsocket.IPPROTO_TCP):
            raise _oserror(errno.ENOPROTOOPT)  # (IP_TOS and IP_TTL only: RFC_COMPLIANCE.md)
        if optlen < 4:
            raise _oserror(errno.EINVAL)
        if payload is None:
            raise _oserror(errno.EFAULT)
        if level == _stdsocket.SOL_SOCKET and optname == _stdsocket.SO_LINGER:
            if optlen < 8:
                raise _oserror(errno.EINVAL)
            onoff, secs = struct.unpack("ii", payload[:8])
            # Linux reports l_onoff as 0/1, and turning lingering off keeps the old time
            self._linger = (1, secs) if onoff else (0, self._linger[1])
            self._apply(uc.OPT_LINGER, self._linger[1] if self._linger[0] else -1)
            return
        value = struct.unpack("i", payload[:4])[0]
        if level == _stdsocket.SOL_SOCKET:
            if optname == _stdsocket.SO_REUSEADDR:
                self._reuseaddr = bool(value)
                if self._cid >= 0:  # a later bind of the port looks at it, TIME-WAIT included
                    uc.tcp_setopt(self._core_state(), self._cid, uc.OPT_REUSEADDR,
                                  int(self._reuseaddr))
                return
            if optname == getattr(_stdsocket, "SO_REUSEPORT", -1):
                # listeners that all set it share a port (an SO_REUSEPORT group: the engine
                # spreads new connections over them by the flow's hash, fsdp.tcp.listen)
                self._reuseport = int(bool(value))
                if self._cid >= 0:  # a later bind of the port looks at it, TIME-WAIT included
                    uc.tcp_setopt(self._core_state(), self._cid, uc.OPT_REUSEPORT,
                                  self._reuseport)
                return
            opt = self._SOL.get(optname)
        elif level == _stdsocket.IPPROTO_TCP:
            opt = self._TCP.get(optname)
        else:
            opt = None
        if opt is None:
            raise _oserror(errno.ENOPROTOOPT)
        if opt in self._BOOL_OPTS:
            value = int(value != 0)  # read back as 0/1, as Linux does
        elif opt in (uc.OPT_RCVBUF, uc.OPT_SNDBUF) and value < 0:
            # Linux reads the int as u32: a negative size is a huge one, capped at the max
            value = uc.SYSCTL_RMEM_MAX if opt == uc.OPT_RCVBUF else uc.SYSCTL_WMEM_MAX
        elif opt in self._OPT_RANGE:
            lo, hi = self._OPT_RANGE[opt]
            if opt == uc.OPT_MAXSEG and value == 0:
                self._pending_opts.pop(opt, None)  # Linux: forget the user's MSS
                return
            if not lo <= value <= hi:  # checked before the socket has a connection too
                raise _oserror(errno.EINVAL)
        self._apply(opt, value)

    def _set_ip_option(self, opt: int, payload, optlen: int) -> None:
        """IP_TOS / IP_TTL as Linux's do_ip_setsockopt takes them: an int from four bytes or
        more, an unsigned char from one to three (none: 0).  IP_TTL is 1..255, or -1 for the
        stack's; IP_TOS keeps its byte without the ECN bits, which TCP owns (__ip_sock_set_tos:
        RFC 3168 §6.1.1)."""
        value = 0
        if optlen >= 1:
            if payload is None:
                raise _oserror(errno.EFAULT)
            value = struct.unpack("i", payload[:4])[0] if optlen >= 4 else payload[0]
        if opt == uc.OPT_TTL:
            if optlen < 1 or not (value == -1 or 1 <= value <= 255):
                raise _oserror(errno.EINVAL)
            value = 0 if value == -1 else value
        else:
            value &= 0xFC
        self._apply(opt, value)

    def _apply(self, opt: int, value: int) -> None:
        self._pending_opts[opt] = value
        if self._cid >= 0:
            _raise_if_error(uc.tcp_setopt(self._core_state(), self._cid, opt, value))
        elif self._lids is not None:
            self._apply_to_listeners(opt, value)

    def _apply_to_listeners(self, opt: int, value: int) -> None:
        """Buffer sizes and the IP header fields shape the SYN-ACK, so every core's listener
        carries them."""
        if opt in (uc.OPT_RCVBUF, uc.OPT_SNDBUF, uc.OPT_TOS, uc.OPT_TTL):
            for core, lid in zip(self._stack._refs, self._lids, strict=False):
                _raise_if_error(uc.tcp_listen_setopt(core, lid, opt, value))

    def getsockopt(self, level, optname, buflen=0):
        # CPython's "ii|i": C ints; buflen 0 asks for an int, 1..1024 for that many bytes at
        # most (Linux gives min(buflen, the option's size): a truncated one too)
        level, optname, buflen = _c_int(level), _c_int(optname), _c_int(buflen)
        if not 0 <= buflen <= 1024:
            raise OSError("getsockopt buflen out of range")
        self._check_open()
        if level == _stdsocket.SOL_SOCKET:
            if optname == _stdsocket.SO_ERROR:
                v = 0
                if self._cid >= 0:
                    v = int(self._take_error(1))
            elif optname == _stdsocket.SO_REUSEADDR:
                v = int(self._reuseaddr)
            elif optname == getattr(_stdsocket, "SO_REUSEPORT", -1):
                v = self._reuseport
            elif optname == _stdsocket.SO_ACCEPTCONN:
                v = int(self._lids is not None)
            elif optname == getattr(_stdsocket, "SO_DOMAIN", -1):
                v = int(_stdsocket.AF_INET)
            elif optname == getattr(_stdsocket, "SO_PROTOCOL", -1):
                v = int(_stdsocket.IPPROTO_TCP)
            elif optname == _stdsocket.SO_TYPE:
                v = int(_stdsocket.SOCK_STREAM)
            elif optname == _stdsocket.SO_LINGER:
                packed = struct.pack("ii", *self._linger)
                return packed[:buflen] if buflen else struct.unpack("i", packed[:4])[0]
            elif optname in self._SOL:
                v = self._get(self._SOL[optname])
            else:
                raise _oserror(errno.ENOPROTOOPT)
        elif level == _stdsocket.IPPROTO_TCP and optname in self._TCP:
            v = self._get(self._TCP[optname])
        elif level == _stdsocket.IPPROTO_IP and optname in _IP_OPTS:
            v = self._get(_IP_OPTS[optname])
            if 0 < buflen < 4:
                return bytes([v])  # Linux: a byte, for a short buffer and a value that fits
        elif level == _stdsocket.IPPROTO_TCP and optname == _TCP_CONGESTION:
            name = _CC_NAMES.get(self._get(uc.OPT_CONGESTION), b"cubic")
            packed = name.ljust(16, b"\0")  # TCP_CA_NAME_MAX
            return packed[:buflen] if buflen else struct.unpack("i", packed[:4])[0]
        elif level in (_stdsocket.IPPROTO_TCP, _stdsocket.IPPROTO_IP):
            raise _oserror(errno.ENOPROTOOPT)
        else:
            raise _oserror(errno.EOPNOTSUPP)  # Linux, for a level TCP sockets do not know
        if buflen:
            return struct.pack("i", v)[:buflen]
        return v

    def _get(self, opt: int) -> int:
        if self._cid >= 0:
            return int(uc.tcp_getopt(self._core_state(), self._cid, opt))
        if opt in (uc.OPT_RCVBUF, uc.OPT_SNDBUF) and opt in self._pending_opts:
            # what the engine will hold, reported now as Linux does: capped at
            # net.core.[rw]mem_max (a negative int is a huge u32 there), doubled, floored
            v = self._pending_opts[opt]
            cap = uc.SYSCTL_RMEM_MAX if opt == uc.OPT_RCVBUF else uc.SYSCTL_WMEM_MAX
            v = cap if v < 0 or v > cap else v
            return max(2 * v, uc.SOCK_MIN_RCVBUF if opt == uc.OPT_RCVBUF else uc.SOCK_MIN_SNDBUF)
        if opt == uc.OPT_TTL and not self._pending_opts.get(opt):
            return self._stack._default_sockopt(opt)  # (0: IP_TTL -1, the stack's)
        return int(self._pending_opts.get(opt, self._stack._default_sockopt(opt)))

    # ---- files ----
    def makefile(self, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
        """Like ``socket.socket.makefile`` (the stdlib's SocketIO over this socket)."""
        import io

        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing = "w" in mode
        reading = "r" in mode or not writing
        rawmode = ("r" if reading else "") + ("w" if writing else "")
        raw = _stdsocket.SocketIO(self, rawmode)
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if "b" not in mode:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buffer = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = io.BufferedReader(raw, buffering)
        else:
            buffer = io.BufferedWriter(raw, buffering)
        if "b" in mode:
            return buffer
        text = io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode
        return text

    def __repr__(self) -> str:
        if self._closed:
            return "<fsdp.socket [closed]>"
        parts = [f"fd={self._fileno}", f"family={self.family!s}", f"type={self.type!s}"]
        if self._bound:
            parts.append(f"laddr={self.getsockname()}")
        if self._peer and self._cid >= 0:
            parts.append(f"raddr=({_ip_str(self._peer[0])!r}, {self._peer[1]})")
        return f"<fsdp.socket {', '.join(parts)}>"


SocketType = Socket


def _bind_native_methods() -> None:
    """Socket's accept, recv, send, sendall and close: fsdp._native's (C) where it was built, each
    doing the usual case itself and calling the Python method above (kept as ``_py_<name>``)
    for everything else.  With ``FSDP_NATIVE=0``, or not built, the Python methods serve."""
    _native = fastcall._native
    if _native is None or os.environ.get("FSDP_NATIVE", "1") == "0":
        return
    references = {name: getattr(Socket, name)
                  for name in ("accept", "recv", "send", "sendall", "_sendall_rest", "close")}
    template = Socket.__new__(Socket)
    template._init_fields(None, 0, None)
    methods = _native.bind_socket_class(Socket, template, references, _by_fileno,
                                        _fileno_counter, _ip_str, _stdsocket.getdefaulttimeout)
    for name, method in methods.items():
        setattr(Socket, "_py_" + name, references[name])
        setattr(Socket, name, method)


_bind_native_methods()
