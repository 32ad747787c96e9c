"""``fsdp run``: unmodified stdlib programs (http.server + urllib, socketserver, asyncio) with
their IPv4 TCP on fsdp, a server and a client process sharing one sim wire."""

import itertools
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_wires = itertools.count()


def _env():
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def fsdp_run(wire, ip, *program, **kw):
    cmd = [sys.executable, "-m", "fsdp", "run", "--nic", wire, "--ip", ip, "--", *program]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), **kw)


def run_client(wire, *program, ip="10.8.0.2/24", timeout=120):
    """``fsdp run`` of a client program to the end (another process on ``wire``)."""
    return subprocess.run(
        [sys.executable, "-m", "fsdp", "run", "--nic", wire, "--ip", ip, "--", *program],
        capture_output=True, text=True, env=_env(), timeout=timeout)


def wait_for_line(proc, text, timeout=60):
    """Read the server's stdout until a line containing ``text`` (it is listening then); fail
    after ``timeout`` seconds even if no line comes at all (a reader thread does the reads)."""
    import queue
    import threading

    lines_q = getattr(proc, "_lines", None)
    if lines_q is None:
        lines_q = proc._lines = queue.Queue()

        def pump():
            try:
                for line in proc.stdout:
                    lines_q.put(line)
            except (ValueError, OSError):
                pass  # communicate() closed the pipe: the test is past its waits
            lines_q.put(None)

        threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    lines = []
    while True:
        try:
            line = lines_q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        lines.append(line)
        if text in line:
            return line
    proc.kill()
    raise AssertionError(f"server never said {text!r}: {lines!r}")


def finish(proc, sig=signal.SIGINT, timeout=20):
    """Stop ``proc`` with ``sig`` and collect its output.  If it does not exit in ``timeout``
    seconds it is killed; and if its output still does not close then (a child of it holds
    the pipes), that is a failure rather than a test that waits forever."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            msg = f"{proc.args!r}: killed, but a child still holds its output"
            raise AssertionError(msg) from None
    return out, err


@pytest.fixture
def wire():
    return f"sim:runtest-{os.getpid()}-{next(_wires)}"


def test_http_server_and_urllib_client(wire, tmp_path):
    body = os.urandom(100_000).hex()
    (tmp_path / "page.txt").write_text(body)
    server = fsdp_run(wire, "10.8.0.1/24", "python", "-m", "http.server", "-b", "0.0.0.0",
                      "8000", "-d", str(tmp_path))
    try:
        wait_for_line(server, "Serving HTTP on 0.0.0.0 port 8000")
        client = subprocess.run(
            [sys.executable, "-m", "fsdp", "run", "--nic", wire, "--ip", "10.8.0.2/24", "--",
             "python", "-c",
             "import socket, urllib.request\n"
             "from concurrent.futures import ThreadPoolExecutor\n"
             "r = urllib.request.urlopen('http://10.8.0.1:8000/page.txt', timeout=20)\n"
             "data = r.read().decode()\n"
             "print(r.status, len(data), data[:16])\n"
             "print(type(socket.socket).__name__, socket.socket.__module__)\n"
             "def get(i):\n"
             "    u = urllib.request.urlopen('http://10.8.0.1:8000/page.txt', timeout=20)\n"
             "    return u.read().decode() == data\n"
             "with ThreadPoolExecutor(4) as ex:\n"  # threads share the process's one stack
             "    print(sum(ex.map(get, range(8))))\n"],
            capture_output=True, text=True, env=_env(), timeout=120)
        assert client.returncode == 0, client.stderr
        status, n, head = client.stdout.splitlines()[0].split()
        assert (status, int(n), head) == ("200", len(body), body[:16])
        assert "fsdp.transparent.socket" in client.stdout
        assert client.stdout.split()[-1] == "8"
    finally:
        out, err = finish(server)
    assert err.count('"GET /page.txt HTTP/1.1" 200') == 9  # http.server's access log
    assert "10.8.0.2" in err


def _ports_per_queue(client_ip, server_ip, server_port, n_queues, per_queue, first=40000):
    """Client ports that the server port's RSS (the sim's default key and round-robin
    redirection table) spreads ``per_queue`` to each of its ``n_queues`` queues, with the queue
    each lands on.  Sequential ephemeral ports do not do this: Toeplitz is linear in the port's
    bits, so 16 consecutive even ports all land on one of two queues for ~2% of start points."""
    import ipaddress

    from fsdp.driver.toeplitz import (
        DEFAULT_RSS_KEY,
        RETA_SIZE,
        default_reta,
        rss_hash_ipv4_l4,
        toeplitz_table,
    )

    table, reta = toeplitz_table(DEFAULT_RSS_KEY), default_reta(n_queues)
    src, dst = int(ipaddress.ip_address(client_ip)), int(ipaddress.ip_address(server_ip))
    picked, count = [], [0] * n_queues
    for port in itertools.count(first):
        q = int(reta[rss_hash_ipv4_l4(table, src, dst, port, server_port) & (RETA_SIZE - 1)])
        if count[q] < per_queue:
            count[q] += 1
            picked.append((port, q))
            if sum(count) == n_queues * per_queue:
                return picked


def test_prefork_workers_each_serve_their_queue(wire, tmp_path):
    """fsdp run --cores 2: two copies of an unmodified http.server, one per queue of one port
    (like nginx workers); RSS steers each connection to one queue, and the worker on that
    queue's core serves it.  ``fsdp run`` is started with SIGINT ignored, as a shell's
    background job or a test runner may start it: the SIGINT it is sent still stops every
    worker (it forwards the signal, and its workers do not inherit the ignored disposition)."""
    import fsdp
    from fsdp.apps.observe import stack_counters
    from fsdp.core.statseg import live_segments

    (tmp_path / "a.txt").write_text("prefork\n")
    cmd = [sys.executable, "-m", "fsdp", "run", "--nic", wire, "--ip", "10.8.0.1/24", "--cores",
           "2", "--", "python", "-m", "http.server", "-b", "0.0.0.0", "8000", "-d", str(tmp_path)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(),
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    plan = _ports_per_queue("10.8.0.2", "10.8.0.1", 8000, n_queues=2, per_queue=8)
    try:
        wait_for_line(server, "Serving HTTP on 0.0.0.0 port 8000")
        wait_for_line(server, "Serving HTTP on 0.0.0.0 port 8000")  # the second worker
        with fsdp.Stack(nic=wire, ip="10.8.0.2/24") as client:
            for port, _ in plan:
                c = client.socket()
                c.settimeout(20)
                c.bind(("10.8.0.2", port))
                c.connect(("10.8.0.1", 8000))
                c.sendall(b"GET /a.txt HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := c.recv(4096):
                    data += chunk
                c.close()
                assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"prefork\n"), data
        # (this wire's: another test's server may run on 10.8.0.1 in another worker)
        segs = [(h, a) for h, a in live_segments()
                if h["ip"] == "10.8.0.1/24" and h["nic"] == wire]
        assert len({h["pid"] for h, _ in segs}) == 2  # one stack per worker process
        opens = {}
        for h, a in segs:  # each worker's stack runs one core: its queue's
            core = int(a["core0.cfg"][h["cfg_core_id"]])
            opens[core] = stack_counters(h, a)["counters"]["tcp_passive_opens"]
        assert opens == {0: 8, 1: 8}  # every connection served on the core RSS steered it to
    finally:
        out, err = finish(server)
    assert server.returncode == 0, err
    assert err.count('"GET /a.txt HTTP/1.0" 200') == 16


SOCKETSERVER_ECHO = """
import socketserver

class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line.upper())

with socketserver.TCPServer(("0.0.0.0", 7007), Echo) as srv:
    print("listening", srv.server_address, type(srv.socket).__module__, flush=True)
    srv.handle_request()
    srv.handle_request()
"""

SOCKET_CLIENT = """
import select, socket
for i in range(2):
    with socket.create_connection(("10.8.0.1", 7007), timeout=20) as c:
        f = c.makefile("rwb")
        for k in range(100):
            f.write(b"line %d of client %d\\n" % (k, i))
        f.flush()
        c.shutdown(socket.SHUT_WR)
        r, w, x = select.select([c], [], [], 20)   # select.select sees fsdp sockets
        assert r == [c], r
        print(len(f.read()))
"""


def test_socketserver_echo_and_select(wire):
    server = fsdp_run(wire, "10.8.0.1/24", "python", "-c", SOCKETSERVER_ECHO)
    try:
        line = wait_for_line(server, "listening")
        assert "('0.0.0.0', 7007) fsdp.transparent.socket" in line
        client = run_client(wire, "python", "-c", SOCKET_CLIENT)
        assert client.returncode == 0, client.stderr
        want = sum(len(b"LINE %d OF CLIENT 0\n" % k) for k in range(100))
        assert client.stdout.split() == [str(want), str(want)]
        out, err = server.communicate(timeout=30)  # it served its two requests and exited
        assert server.returncode == 0, err
    finally:
        finish(server)


ASYNCIO_ECHO = """
import asyncio

async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()

async def main():
    srv = await asyncio.start_server(echo, "0.0.0.0", 7008)
    loop = asyncio.get_running_loop()
    print("serving", type(loop._selector).__name__, srv.sockets[0].getsockname(), flush=True)
    async with srv:
        await srv.serve_forever()

asyncio.run(main())
"""

ASYNCIO_CLIENT = """
import asyncio, hashlib

async def main():
    payload = bytes(range(256)) * 800
    r, w = await asyncio.open_connection("10.8.0.1", 7008)
    w.write(payload)
    w.write_eof()
    got = await r.read()
    w.close()
    await w.wait_closed()
    print(len(got), hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest())

asyncio.run(main())
"""


def test_asyncio_echo_server_and_client(wire):
    server = fsdp_run(wire, "10.8.0.1/24", "python", "-c", ASYNCIO_ECHO)
    try:
        line = wait_for_line(server, "serving")
        assert "FsdpSelector ('0.0.0.0', 7008)" in line
        client = run_client(wire, "python", "-c", ASYNCIO_CLIENT)
        assert client.returncode == 0, client.stderr
        assert client.stdout.split() == [str(256 * 800), "True"]
    finally:
        finish(server)


CERTS = os.path.join(ROOT, "tests", "sockapi", "certs")

HTTPS_SERVER = """
import http.server, ssl, sys
httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), http.server.SimpleHTTPRequestHandler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "/server.pem")
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print("serving https", isinstance(httpd.socket, ssl.SSLSocket), flush=True)
httpd.serve_forever()
"""

HTTPS_CLIENT = """
import hashlib, http.client, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1] + "/ca.pem")
# urllib: HTTPS, the certificate checked against the test CA
ctx_ip = ssl.create_default_context(cafile=sys.argv[1] + "/ca.pem")
ctx_ip.check_hostname = False  # (the certificate names fsdp.test, not 10.8.0.1)
r = urllib.request.urlopen("https://10.8.0.1:8443/page.txt", context=ctx_ip, timeout=20)
body = r.read()
print(r.status, len(body), hashlib.sha256(body).hexdigest())
# http.client with the host name checked, over a socket wrapped before it connects
c = http.client.HTTPSConnection("10.8.0.1", 8443, context=ctx, timeout=20)
s = c.sock = ctx.wrap_socket(__import__("socket").socket(), server_hostname="fsdp.test")
s.settimeout(20)
s.connect(("10.8.0.1", 8443))
version = s.version()  # (http.client closes the socket once the response is read)
c.request("GET", "/page.txt")
resp = c.getresponse()
print(resp.status, len(resp.read()), version, type(s).__name__)
# a client that does not trust the CA is refused by its own check
try:
    urllib.request.urlopen("https://10.8.0.1:8443/page.txt", timeout=20)
except urllib.error.URLError as e:
    print("refused", type(e.reason).__name__)
"""


def test_https_server_and_clients_over_tls(wire, tmp_path):
    """TLS on fsdp connections (fsdp/sockapi/tls.py): an unmodified http.server wrapped with
    ``SSLContext.wrap_socket``, and urllib / http.client over HTTPS."""
    import hashlib

    body = os.urandom(200_000)
    (tmp_path / "page.txt").write_bytes(body)
    server = fsdp_run(wire, "10.8.0.1/24", "python", "-c", HTTPS_SERVER, CERTS, cwd=tmp_path)
    try:
        wait_for_line(server, "serving https True")
        client = run_client(wire, "python", "-c", HTTPS_CLIENT, CERTS)
        assert client.returncode == 0, client.stderr
        lines = client.stdout.splitlines()
        assert lines[0].split() == ["200", str(len(body)), hashlib.sha256(body).hexdigest()]
        assert lines[1].split() == ["200", str(len(body)), "TLSv1.3", "TransparentTLSSocket"]
        assert lines[2] == "refused SSLCertVerificationError"
    finally:
        out, err = finish(server)
    assert err.count('"GET /page.txt HTTP/1.1" 200') == 2  # http.server's access log


EPOLL_ECHO = """
import select, socket
# the classic edge-triggered epoll server: non-blocking, read and write until EAGAIN
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", 7010))
ls.listen()
ls.setblocking(False)
ep = select.epoll()
ep.register(ls.fileno(), select.EPOLLIN | select.EPOLLET)
print("epoll echo", type(ep).__module__, flush=True)
conns, out, served = {}, {}, 0
while served < 2:
    for fd, ev in ep.poll():
        if fd == ls.fileno():
            while True:
                try:
                    c, _ = ls.accept()
                except BlockingIOError:
                    break
                c.setblocking(False)
                conns[c.fileno()], out[c.fileno()] = c, b""
                ep.register(c.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLET)
            continue
        c = conns[fd]
        closed = False
        if ev & select.EPOLLIN:
            while True:
                try:
                    d = c.recv(65536)
                except BlockingIOError:
                    break
                if not d:
                    closed = True
                    break
                out[fd] += d
        while out[fd]:
            try:
                out[fd] = out[fd][c.send(out[fd]):]
            except BlockingIOError:
                break
        if closed and not out[fd]:
            ep.unregister(fd)
            c.close()
            served += 1
"""

POLL_CLIENT = """
import select, socket, sys
# a client that waits with select.poll (as urllib3 checks its pooled connections)
payload = bytes(range(256)) * 1000
for _ in range(2):
    s = socket.create_connection(("10.8.0.1", 7010), timeout=20)
    p = select.poll()
    p.register(s, select.POLLIN)
    assert p.poll(0) == [], "nothing to read yet"
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        assert p.poll(20000), "timed out"
        d = s.recv(65536)
        if not d:
            break
        got += d
    print(len(got), got == payload, p.poll(0)[0][1] & select.POLLIN != 0)
    s.close()
"""


def test_epoll_edge_triggered_server_and_poll_client(wire):
    """Unmodified programs that use select.epoll and select.poll themselves."""
    server = fsdp_run(wire, "10.8.0.1/24", "python", "-c", EPOLL_ECHO)
    try:
        line = wait_for_line(server, "epoll echo")
        assert "fsdp.transparent.select" in line
        client = run_client(wire, "python", "-c", POLL_CLIENT)
        assert client.returncode == 0, client.stderr
        assert client.stdout.split() == [str(256 * 1000), "True", "True"] * 2
        out, err = server.communicate(timeout=30)  # it served its two clients and exited
        assert server.returncode == 0, err
    finally:
        finish(server)


def test_loopback_unix_and_udp_stay_on_the_kernel(wire):
    code = (
        "import socket\n"
        "s = socket.create_server(('127.0.0.1', 0))\n"
        "c = socket.create_connection(s.getsockname())\n"
        "a, _ = s.accept(); c.sendall(b'k')\n"
        "print(a.recv(1), repr(c).startswith('<socket.socket[kernel]'))\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n"
        "print(type(u).__name__)\n"
        "p, q = socket.socketpair(); p.send(b'u'); print(q.recv(1))\n"
    )
    p = run_client(wire, "python", "-c", code, ip="10.8.0.3/24")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["b'k'", "True", "TransparentSocket", "b'u'"]


@pytest.mark.parametrize("args, message", [
    ([], "no program given"),
    (["--", "no-such-program-xyz"], "program not found: no-such-program-xyz"),
    (["--ip", "10.0.0.300/24", "--", "python", "-c", "pass"], "--ip must be an IPv4"),
    (["--ip", "127.0.0.5/8", "--", "python", "-c", "pass"], "cannot be a host address"),
    (["--nic", "nonsense", "--", "python", "-c", "pass"], "--nic: bad NIC URI"),
    (["--nic", "warp:x", "--", "python", "-c", "pass"], "--nic: unknown NIC scheme"),
    (["--cores", "0", "--", "python", "-c", "pass"], "--cores must be between"),
    (["--", "missing-file.py"], "no such file: missing-file.py"),
])
def test_cli_errors_are_one_line(args, message):
    p = subprocess.run([sys.executable, "-m", "fsdp", "run", *args], capture_output=True,
                       text=True, env=_env(), timeout=60)
    assert p.returncode != 0
    assert p.stderr.count("\n") == 1 and message in p.stderr, p.stderr
    assert p.stdout == ""


def test_exit_status_and_arguments_pass_through(wire):
    p = subprocess.run(
        [sys.executable, "-m", "fsdp", "run", "--nic", wire, "--ip", "10.8.0.4/24", "--",
         "python", "-c", "import sys, os; print(sys.argv[1:], os.environ.get('FSDP_IP')); "
         "sys.exit(7)", "a", "b c"], capture_output=True, text=True, env=_env(), timeout=60)
    assert p.returncode == 7
    assert p.stdout.strip() == "['a', 'b c'] 10.8.0.4/24"


def test_prefork_a_dead_worker_is_reported_and_the_others_take_its_flows(wire, tmp_path):
    """fsdp run --cores 2 where worker 1 exits at once with status 3: it is reported, its
    queue is retired (RSS and the global listen table), worker 0 serves every connection, and
    the exit status is the dead worker's."""
    import fsdp

    prog = tmp_path / "srv.py"
    prog.write_text(
        "import os, socket, sys, time\n"
        "if os.environ['FSDP_QUEUE'] == '1':\n"
        "    sys.exit(3)\n"
        "ls = socket.create_server(('0.0.0.0', 7000))\n"
        "print('listening', flush=True)\n"
        "for _ in range(12):\n"
        "    c, _ = ls.accept()\n"
        "    c.sendall(c.recv(64).upper())\n"
        "    c.close()\n"
        # Stay until the other worker has been reaped (a zombie still shows in /proc), so that
        # the report comes while this one serves: if RSS put all 12 flows here, these could be
        # done before worker 1 even finished starting up.
        "def siblings():\n"
        "    n = 0\n"
        "    for p in os.listdir('/proc'):\n"
        "        if p.isdigit() and int(p) != os.getpid():\n"
        "            try:\n"
        "                with open(f'/proc/{p}/stat') as f:\n"
        "                    n += int(f.read().rsplit(')', 1)[1].split()[1]) == os.getppid()\n"
        "            except (OSError, ValueError, IndexError):\n"
        "                pass\n"
        "    return n\n"
        "deadline = time.monotonic() + 30\n"
        "while siblings() and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n")
    cmd = [sys.executable, "-m", "fsdp", "run", "--nic", wire, "--ip", "10.8.0.1/24", "--cores",
           "2", "--", sys.executable, str(prog)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env())
    try:
        wait_for_line(server, "listening")
        # (a SYN that RSS gave queue 1 before its worker was retired is sent again after the
        # 1 s RTO, and then goes to queue 0)
        with fsdp.Stack(nic=wire, ip="10.8.0.2/24") as client:
            for i in range(12):
                c = client.socket()
                c.settimeout(20)
                c.connect(("10.8.0.1", 7000))
                c.sendall(b"ping%d" % i)
                assert c.recv(64) == b"PING%d" % i
                c.close()
        server.wait(timeout=30)
    finally:
        out, err = finish(server)
    assert server.returncode == 3, err
    assert "fsdp run: worker 1 (pid" in err and "exited with status 3; 1 still serving" in err
