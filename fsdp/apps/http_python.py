"""The demo HTTP server and load generator written the way users write them: non-blocking
sockets and a readiness loop with the ``selectors`` API.  The same code runs on fsdp sockets
with ``fsdp.selectors.DefaultSelector`` and on the kernel's with ``selectors.DefaultSelector``,
which is what ``fsdp demo --compare-kernel`` compares.

Pure Python: listed in fsdp._jitcache._PURE_PYTHON (editing it keeps the compiled engine).
"""

from __future__ import annotations

import errno
import selectors
import time

import numpy as np

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE

DEFAULT_BODY_SIZE = 64


def http_response(body: bytes, keepalive: bool = False) -> bytes:
    """The server's whole HTTP/1.0 response for ``body``."""
    conn = b"keep-alive" if keepalive else b"close"
    return (
        b"HTTP/1.0 200 OK\r\nServer: fsdp-demo\r\nContent-Type: text/plain\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: " + conn + b"\r\n\r\n"
        + body
    )


def http_request(host: str, port: int, path: str = "/", keepalive: bool = False) -> bytes:
    conn = b"keep-alive" if keepalive else b"close"
    return (
        b"GET " + path.encode() + b" HTTP/1.0\r\nHost: " + f"{host}:{port}".encode()
        + b"\r\nUser-Agent: fsdp-bench\r\nConnection: " + conn + b"\r\n\r\n"
    )


def demo_body(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


BAD_REQUEST = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


# --- the server ---------------------------------------------------------------------------------
class HttpServer:
    """HTTP/1.0 static server (or, ``mode="echo"``, an echo server) over a listening socket and a
    selector; every method works the same on fsdp and kernel sockets."""

    def __init__(self, listener, selector, body: bytes = b"x" * DEFAULT_BODY_SIZE,
                 mode: str = "http"):
        self.listener = listener
        self.sel = selector
        self.response = http_response(body)
        self.response_keepalive = http_response(body, keepalive=True)
        self.mode = mode
        self.accepted = 0
        self.served = 0
        self.errors = 0
        listener.setblocking(False)
        selector.register(listener, EVENT_READ, None)

    def run(self, should_stop, on_tick=None, tick_s: float = 0.05) -> None:
        """Serve until ``should_stop()`` (checked every ``tick_s``)."""
        sel = self.sel
        next_tick = time.monotonic() + tick_s
        while True:
            for key, _ in sel.select(tick_s):
                if key.data is None:
                    self._accept()
                else:
                    self._readable(key)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick_s
                if on_tick is not None:
                    on_tick(self)
                if should_stop():
                    return

    def _accept(self) -> None:
        for _ in range(64):  # a burst per readiness report, like a busy nginx worker
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError:
                self.errors += 1
                return
            conn.setblocking(False)
            self.accepted += 1
            self.sel.register(conn, EVENT_READ, bytearray())

    def _finish(self, conn) -> None:
        self.sel.unregister(conn)
        conn.close()

    def _readable(self, key) -> None:
        conn = key.fileobj
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self.errors += 1
            self._finish(conn)
            return
        if not data:  # the client closed (between keep-alive requests, or after its echo)
            if key.data:
                self.errors += 1
            self._finish(conn)
            return
        if self.mode == "echo":
            try:
                conn.sendall(data)
            except OSError:
                self.errors += 1
                self._finish(conn)
            return
        buf = key.data
        buf += data
        if b"\r\n\r\n" not in buf:
            if len(buf) > 8192:
                self._reply(conn, BAD_REQUEST, close=True)
            return
        keep = b"keep-alive" in buf.lower()
        ok = buf.startswith(b"GET ")
        del buf[:]
        if not ok:
            self._reply(conn, BAD_REQUEST, close=True)
        elif keep:
            self._reply(conn, self.response_keepalive, close=False)
        else:
            self._reply(conn, self.response, close=True)  # HTTP/1.0: the server closes first

    def _reply(self, conn, data: bytes, close: bool) -> None:
        try:
            conn.sendall(data)  # a few hundred bytes: an empty send buffer always takes them
            self.served += 1
        except OSError:
            self.errors += 1
            close = True
        if close:
            self._finish(conn)


# --- the load generator (kernel sockets, or any socket module) ----------------------------------
class HttpLoad:
    """``concurrency`` connections, each looping connect -> GET -> read the response -> close
    (or, ``keepalive``, the next GET on the same connection), on any ``socket_factory``."""

    def __init__(self, socket_factory, selector, address, concurrency: int,
                 keepalive: bool = False, hist=None, path: str = "/"):
        self.new_socket = socket_factory
        self.sel = selector
        self.address = address
        self.concurrency = concurrency
        self.keepalive = keepalive
        self.request = http_request(address[0], address[1], path, keepalive=keepalive)
        self.hist = np.zeros(1 << 20, np.int64) if hist is None else hist  # 1 µs bins
        self.completed = 0  # connections closed cleanly after their response(s)
        self.requests = 0
        self.errors = 0
        self.started = 0
        self._open = 0

    def _start(self) -> None:
        s = self.new_socket()
        s.setblocking(False)
        t0 = time.perf_counter_ns()
        rc = s.connect_ex(self.address)
        if rc not in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            s.close()
            self.errors += 1
            return
        self.started += 1
        self._open += 1
        # state: [t0, bytearray response, phase] ; phase 0 = connecting, 1 = reading
        self.sel.register(s, EVENT_WRITE, [t0, bytearray(), 0])

    def _fail(self, s) -> None:
        self.errors += 1
        self._close(s)

    def _close(self, s) -> None:
        self.sel.unregister(s)
        s.close()
        self._open -= 1

    def _record(self, t0: int) -> None:
        lat = (time.perf_counter_ns() - t0) // 1000
        self.hist[min(lat, self.hist.shape[0] - 1)] += 1
        self.requests += 1

    def run(self, seconds: float, on_tick=None, tick_s: float = 0.05, start_new=True) -> None:
        end = time.monotonic() + seconds
        next_tick = time.monotonic() + tick_s
        sel = self.sel
        while True:
            if start_new:
                while self._open < self.concurrency:
                    self._start()
            elif self._open == 0:
                return
            for key, ev in sel.select(tick_s):
                self._event(key, ev)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick_s
                if on_tick is not None:
                    on_tick(self)
            if now >= end:
                return

    def _event(self, key, ev) -> None:
        s, st = key.fileobj, key.data
        if st[2] == 0:
            err = s.getsockopt(1, 4)  # SOL_SOCKET, SO_ERROR
            if err:
                self._fail(s)
                return
            try:
                s.sendall(self.request)
            except OSError:
                self._fail(s)
                return
            st[2] = 1
            self.sel.modify(s, EVENT_READ, st)
            return
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._fail(s)
            return
        buf = st[1]
        if data:
            buf += data
            if not self.keepalive:
                return
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            i = buf.lower().find(b"content-length:", 0, end)
            if i < 0:
                return  # ends at EOF
            clen = int(buf[i + 15 : buf.index(b"\r\n", i)])
            if len(buf) < end + 4 + clen:
                return
            if not buf.startswith(b"HTTP/1.") or buf[9:12] != b"200":
                self._fail(s)
                return
            self._record(st[0])
            del buf[:]
            st[0] = time.perf_counter_ns()
            try:
                s.sendall(self.request)
            except OSError:
                self._fail(s)
            return
        # EOF: the server closed after the response (HTTP/1.0)
        if buf.startswith(b"HTTP/1.") and buf[9:12] == b"200" and b"\r\n\r\n" in buf:
            self._record(st[0])
            self.completed += 1
            self._close(s)
        elif not buf and self.keepalive:
            self.completed += 1  # closed between keep-alive requests
            self._close(s)
        else:
            self._fail(s)
