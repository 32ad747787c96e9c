"""The demo HTTP server and load generator written the way users write them: non-blocking
sockets and a readiness loop with the ``selectors`` API.  The same code runs on fsdp sockets
(with :class:`StackSelector`) and on the kernel's (``selectors.DefaultSelector``), which is what
``fsdp demo --compare-kernel`` compares.

:class:`StackSelector` is the smallest selector over one single-core fsdp stack: ``select()``
runs one pass of the core's loop and reads the status of every registered socket in one jitted
call (``bench_run`` OP_POLL_STATUS), so readiness costs one call, not one per socket.  It keeps
the ``selectors`` interface (register / unregister / modify / select -> [(key, events)]) so the
server switches to ``fsdp.selectors.DefaultSelector`` unchanged once that exists.

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


# --- readiness for fsdp sockets -----------------------------------------------------------------
class StackSelector(selectors.BaseSelector):
    """``selectors`` for the sockets of one single-core :class:`fsdp.Stack` (see module doc)."""

    def __init__(self, stack):
        from fsdp.apps.bench_kernels import OP_POLL_STATUS, P_SIZE
        from fsdp.tcp import usercalls as uc

        if stack.cores != 1:
            raise ValueError("StackSelector drives a one-core stack (a worker's)")
        self._stack = stack
        self._core = stack._refs[0]
        self._op = OP_POLL_STATUS
        self._prm = np.zeros(P_SIZE, np.int64)
        self._rows = np.full((64, 4), -1, np.int64)  # cid/lid, status, is-listener, events wanted
        self._free = list(range(63, -1, -1))
        self._keys: dict[object, selectors.SelectorKey] = {}
        self._row_of: dict[object, int] = {}
        self._key_at: list[selectors.SelectorKey | None] = [None] * 64
        self._used = 0  # rows 0 .. _used-1 may be in use: select() passes only those
        self._ev_read = uc.EV_READABLE | uc.EV_ERROR | uc.EV_EOF | uc.EV_CLOSED
        self._ev_write = uc.EV_WRITABLE | uc.EV_ERROR | uc.EV_CLOSED
        from fsdp.apps.bench_kernels import bench_run

        self._bench_run = bench_run
        self._u8 = np.zeros(1, np.uint8)
        self._st = np.zeros((1, 16), np.int64)
        self._i64 = np.zeros(1, np.int64)

    def _mask(self, events: int) -> int:
        m = 0
        if events & EVENT_READ:
            m |= self._ev_read
        if events & EVENT_WRITE:
            m |= self._ev_write
        return m

    def register(self, fileobj, events, data=None):
        if fileobj in self._keys:
            raise KeyError(f"{fileobj!r} is already registered")
        if not events or events & ~(EVENT_READ | EVENT_WRITE):
            raise ValueError(f"invalid events: {events!r}")
        if fileobj._stack is not self._stack:
            raise ValueError("socket of another stack")
        if not self._free:
            self._grow()
        row = self._free.pop()
        if fileobj._lids is not None:
            self._rows[row] = (fileobj._lids[0], 0, 1, self._mask(events))
        else:
            self._rows[row] = (fileobj._cid, 0, 0, self._mask(events))
        key = selectors.SelectorKey(fileobj, fileobj.fileno(), events, data)
        self._keys[fileobj] = key
        self._row_of[fileobj] = row
        self._key_at[row] = key
        self._used = max(self._used, row + 1)
        return key

    def _grow(self) -> None:
        n = self._rows.shape[0]
        rows = np.full((2 * n, 4), -1, np.int64)
        rows[:n] = self._rows
        self._rows = rows
        self._key_at.extend([None] * n)
        self._free.extend(range(2 * n - 1, n - 1, -1))

    def unregister(self, fileobj):
        key = self._keys.pop(fileobj)
        row = self._row_of.pop(fileobj)
        self._rows[row, 0] = -1
        self._key_at[row] = None
        self._free.append(row)
        return key

    def modify(self, fileobj, events, data=None):
        key = self._keys[fileobj]
        row = self._row_of[fileobj]
        self._rows[row, 3] = self._mask(events)
        key = key._replace(events=events, data=data)
        self._keys[fileobj] = key
        self._key_at[row] = key
        return key

    def get_map(self):
        return self._keys

    def close(self) -> None:
        self._keys.clear()
        self._row_of.clear()

    def poll(self) -> int:
        """One pass of the core and a status read of every row: the number of ready rows."""
        rows = self._rows[: self._used] if self._used < self._rows.shape[0] else self._rows
        r = int(
            self._bench_run(
                self._core, self._core, self._op, self._prm, self._u8, self._u8, self._u8,
                self._u8, self._st, rows, rows, self._i64,
            )
        )
        return r & 0xFFFFFFFF

    def select(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        idle = 0
        while True:
            if self.poll():
                break
            if deadline is not None and time.monotonic() >= deadline:
                return []
            idle += 1
            if idle > 64:  # adaptive back-off: busy-poll first, then yield the core
                time.sleep(min(0.001, 0.00002 * (idle - 64)))
        used = self._used
        rows = self._rows
        hit = np.nonzero(rows[:used, 1] & rows[:used, 3])[0]
        out = []
        key_at = self._key_at
        ev_read, ev_write = self._ev_read, self._ev_write
        for row in hit.tolist():
            key = key_at[row]
            st = int(rows[row, 1])
            ev = 0
            if key.events & EVENT_READ and st & ev_read:
                ev |= EVENT_READ
            if key.events & EVENT_WRITE and st & ev_write:
                ev |= EVENT_WRITE
            out.append((key, ev))
        return out


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
