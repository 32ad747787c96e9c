"""fsdp.asyncio: the stdlib's asyncio APIs, unchanged, over fsdp sockets."""

import asyncio
import errno
import hashlib
import itertools
import os
import socket as stdsocket
import ssl
import time

import pytest

import fsdp
import fsdp.asyncio
from fsdp.selectors import FsdpSelector

if "tcb" not in __import__("fsdp.core.state", fromlist=["CoreState"]).CoreState._fields:
    pytest.skip("the TCP engine is not wired into the per-core loop yet", allow_module_level=True)

_wires = itertools.count()


@pytest.fixture
def stacks():
    """A server stack and a client stack on one sim wire, both polled by the loop's selector."""
    wire = f"sim:aiotest-{os.getpid()}-{next(_wires)}"
    server = fsdp.Stack(nic=wire, ip="10.9.0.1/24")
    client = fsdp.Stack(nic=wire, ip="10.9.0.2/24")
    yield server, client
    client.close()
    server.close()


def run(coro, stack):
    return fsdp.asyncio.run(asyncio.wait_for(coro, 30), stack=stack)


def test_loop_is_the_selector_loop_on_fsdp(stacks):
    server, _ = stacks

    async def main():
        loop = asyncio.get_running_loop()
        assert isinstance(loop, fsdp.asyncio.EventLoop)
        assert isinstance(loop._selector, FsdpSelector)
        assert loop.fsdp_stack is server
        return 42

    assert run(main(), server) == 42


def test_streams_echo_a_few_hundred_kb(stacks):
    server, client = stacks
    payload = os.urandom(300_000)

    async def handle(reader, writer):
        peer = writer.get_extra_info("peername")
        assert peer[0] == "10.9.0.2"
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        loop = asyncio.get_running_loop()
        srv = await asyncio.start_server(handle, "0.0.0.0", 7000)
        assert srv.sockets[0].getsockname() == ("0.0.0.0", 7000)
        # The client side on the other stack of the wire, through the same loop.
        loop._fsdp_stack = client
        reader, writer = await asyncio.open_connection("10.9.0.1", 7000)
        assert writer.get_extra_info("peername") == ("10.9.0.1", 7000)
        assert writer.get_extra_info("sockname")[0] == "10.9.0.2"

        async def send():
            for i in range(0, len(payload), 50_000):
                writer.write(payload[i:i + 50_000])
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        got = await reader.read(-1)  # until the server's close gives EOF
        await sender
        writer.close()
        await writer.wait_closed()
        srv.close()
        await srv.wait_closed()
        return got

    got = run(main(), server)
    assert len(got) == len(payload)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()


def tls_contexts():
    """(server context with the test certificate, client context trusting the test CA):
    tests/sockapi/certs."""
    from pathlib import Path

    certs = Path(__file__).resolve().parents[1] / "sockapi" / "certs"
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(certs / "server.pem")
    return sctx, ssl.create_default_context(cafile=certs / "ca.pem")


def test_tls_streams_echo_with_the_certificate_checked(stacks):
    """asyncio's TLS (its sslproto over memory BIOs) on fsdp transports: start_server(ssl=)
    and open_connection(ssl=, server_hostname=), the client checking the server's
    certificate against the test CA (tests/sockapi/certs)."""
    server, client = stacks
    sctx, cctx = tls_contexts()
    payload = os.urandom(400_000)

    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main():
        loop = asyncio.get_running_loop()
        srv = await asyncio.start_server(handle, "10.9.0.1", 7443, ssl=sctx)
        loop._fsdp_stack = client
        reader, writer = await asyncio.open_connection("10.9.0.1", 7443, ssl=cctx,
                                                       server_hostname="fsdp.test")
        tls = writer.get_extra_info("ssl_object")
        facts = (tls.version(), tls.getpeercert()["subject"][0][0][1])
        writer.write(payload)
        await writer.drain()
        got = b""
        while len(got) < len(payload):
            chunk = await reader.read(65536)
            if not chunk:
                break
            got += chunk
        writer.close()
        # a client without the CA: the handshake fails on its certificate check
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("10.9.0.1", 7443, ssl=ssl.create_default_context(),
                                          server_hostname="fsdp.test")
        srv.close()
        await srv.wait_closed()
        return facts, got

    facts, got = run(main(), server)
    assert facts == ("TLSv1.3", "fsdp.test")
    assert got == payload


def test_starttls_upgrades_a_clear_connection(stacks):
    """StreamWriter.start_tls (loop.start_tls) on fsdp transports: a line in clear, then TLS on
    the same connection, both ways (the STARTTLS pattern of SMTP, IMAP, LDAP)."""
    server, client = stacks
    sctx, cctx = tls_contexts()

    async def handle(reader, writer):
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(sctx)
        writer.write(b"secure:" + await reader.readline())
        await writer.drain()
        writer.close()

    async def main():
        loop = asyncio.get_running_loop()
        srv = await asyncio.start_server(handle, "10.9.0.1", 7444)
        loop._fsdp_stack = client
        reader, writer = await asyncio.open_connection("10.9.0.1", 7444)
        writer.write(b"STARTTLS\n")
        await writer.drain()
        go = await reader.readline()
        await writer.start_tls(cctx, server_hostname="fsdp.test")
        writer.write(b"hello\n")
        await writer.drain()
        answer = await reader.readline()
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        srv.close()
        await srv.wait_closed()
        return go, answer, version

    assert run(main(), server) == (b"GO\n", b"secure:hello\n", "TLSv1.3")


def test_create_server_with_protocol_and_transport_close_gives_eof(stacks):
    server, client = stacks

    class Upper(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data.upper())
            if data.endswith(b"\n"):
                self.transport.close()  # the peer must see EOF

    class Client(asyncio.Protocol):
        def __init__(self, done):
            self.done = done
            self.got = b""
            self.eof = False

        def data_received(self, data):
            self.got += data

        def eof_received(self):
            self.eof = True

        def connection_lost(self, exc):
            self.done.set_result(exc)

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Upper, port=7001)  # host None: fsdp's 0.0.0.0
        assert len(srv.sockets) == 1
        loop._fsdp_stack = client
        done = loop.create_future()
        tr, proto = await loop.create_connection(lambda: Client(done), "10.9.0.1", 7001)
        tr.write(b"hello ")
        tr.write(b"fsdp\n")
        exc = await done
        srv.close()
        await srv.wait_closed()
        return exc, proto

    exc, proto = run(main(), server)
    assert exc is None
    assert proto.eof
    assert proto.got == b"HELLO FSDP\n"


def test_create_server_with_reuse_port_twice_on_one_port(stacks):
    """create_server(reuse_port=True) twice on one port in one loop: the two listeners are an
    SO_REUSEPORT group (fsdp.tcp.listen), both servers get connections; a third server
    without reuse_port gets EADDRINUSE, as on Linux."""
    server, client = stacks
    served = [0, 0]

    def echo_once(i):
        async def handle(reader, writer):
            served[i] += 1
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        return handle

    async def main():
        loop = asyncio.get_running_loop()
        srvs = [await asyncio.start_server(echo_once(i), "0.0.0.0", 7010, reuse_port=True)
                for i in range(2)]
        with pytest.raises(OSError) as e:
            await asyncio.start_server(echo_once(0), "0.0.0.0", 7010)
        assert e.value.errno == errno.EADDRINUSE
        loop._fsdp_stack = client
        for i in range(24):
            reader, writer = await asyncio.open_connection("10.9.0.1", 7010)
            writer.write(b"hello %d" % i)
            assert await reader.read(100) == b"hello %d" % i
            writer.close()
            await writer.wait_closed()
        for srv in srvs:
            srv.close()
            await srv.wait_closed()

    run(main(), server)
    assert sum(served) == 24 and min(served) > 0


def test_sock_methods(stacks):
    server, client = stacks

    async def main():
        loop = asyncio.get_running_loop()
        ls = server.socket()
        ls.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", 7002))
        ls.listen()
        ls.setblocking(False)
        c = client.socket()
        c.setblocking(False)
        accept = asyncio.create_task(loop.sock_accept(ls))
        await loop.sock_connect(c, ("10.9.0.1", 7002))
        s, addr = await accept
        assert addr == c.getsockname()
        assert not s.getblocking()
        data = os.urandom(150_000)
        send = asyncio.create_task(loop.sock_sendall(c, data))
        got = bytearray()
        while len(got) < len(data):
            got += await loop.sock_recv(s, 65536)
        await send
        await loop.sock_sendall(s, b"reply")
        buf = bytearray(16)
        n = await loop.sock_recv_into(c, buf)
        c.shutdown(stdsocket.SHUT_WR)
        eof = await loop.sock_recv(s, 10)
        for x in (s, c, ls):
            x.close()
        return bytes(got) == data, bytes(buf[:n]), eof

    ok, reply, eof = run(main(), server)
    assert ok
    assert reply == b"reply"
    assert eof == b""


def test_connection_refused_is_connectionrefusederror(stacks):
    server, client = stacks

    async def main():
        loop = asyncio.get_running_loop()
        loop._fsdp_stack = client
        with pytest.raises(ConnectionRefusedError) as ei:
            await asyncio.open_connection("10.9.0.1", 7999)
        assert ei.value.errno == errno.ECONNREFUSED
        c = client.socket()
        c.setblocking(False)
        with pytest.raises(ConnectionRefusedError):
            await loop.sock_connect(c, ("10.9.0.1", 7999))
        c.close()

    run(main(), server)


def test_loopback_and_unix_stay_on_the_kernel(stacks, tmp_path):
    server, _ = stacks

    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    async def main():
        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        sock = srv.sockets[0]
        assert sock.fileno() < (1 << 20)  # a kernel socket
        port = sock.getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"kernel")
        got = await r.read()
        w.close()
        usrv = await asyncio.start_unix_server(echo, str(tmp_path / "s"))
        ur, uw = await asyncio.open_unix_connection(str(tmp_path / "s"))
        uw.write(b"unix")
        ugot = await ur.read()
        uw.close()
        srv.close()
        usrv.close()
        await srv.wait_closed()
        await usrv.wait_closed()
        return got, ugot

    assert run(main(), server) == (b"kernel", b"unix")


def test_policy_and_timers(stacks):
    server, _ = stacks
    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(fsdp.asyncio.EventLoopPolicy(stack=server))
    try:
        async def main():
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await asyncio.sleep(0.05)
            fut = loop.create_future()
            loop.call_soon_threadsafe(fut.set_result, "woken")
            return type(loop), loop.time() - t0, await fut

        kind, dt, woken = asyncio.run(main())
        assert kind is fsdp.asyncio.EventLoop
        assert 0.05 <= dt < 0.5
        assert woken == "woken"
    finally:
        asyncio.set_event_loop_policy(old)


def test_reset_surfaces_as_connectionreseterror(stacks):
    server, client = stacks
    import struct

    async def abort(reader, writer):
        await reader.readexactly(5)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # close with linger 0: an RST, as on Linux

    async def main():
        loop = asyncio.get_running_loop()
        srv = await asyncio.start_server(abort, "0.0.0.0", 7003)
        loop._fsdp_stack = client
        r, w = await asyncio.open_connection("10.9.0.1", 7003)
        w.write(b"hello")
        with pytest.raises(ConnectionResetError):
            await r.read(100)  # recv() gets ECONNRESET, as on Linux
        w.close()
        srv.close()
        await srv.wait_closed()

    run(main(), server)


def test_idle_loop_does_not_spin(stacks):
    server, _ = stacks

    async def main():
        srv = await asyncio.start_server(lambda r, w: None, "0.0.0.0", 7004)
        c0 = time.process_time()
        t0 = time.monotonic()
        await asyncio.sleep(0.5)
        wall = time.monotonic() - t0
        cpu = time.process_time() - c0
        srv.close()
        await srv.wait_closed()
        return wall, cpu

    wall, cpu = run(main(), server)
    assert wall >= 0.5
    assert cpu < 0.5 * wall  # mostly asleep (about 6% of a core on the 2-core VM)
