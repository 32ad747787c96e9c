"""One connection between two fsdp stacks and a bulk stream over it: what the end-to-end tests
(ECN, receive-buffer autotuning, a bulk stream under faults) share."""

import socket
import time

import fsdp


def connected_pair(server, client, server_ip: str, port: int = 9000, *,
                   rcvbuf: int | None = None):
    """listen() on ``server`` (SO_RCVBUF ``rcvbuf`` set first, if given), connect from
    ``client``; returns (client socket, accepted socket), both non-blocking."""
    ls = server.socket()
    if rcvbuf is not None:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    ls.bind(("0.0.0.0", port))
    ls.listen()
    c = client.socket()
    c.settimeout(5)
    c.connect((server_ip, port))
    ls.settimeout(5)
    s, _ = ls.accept()
    c.setblocking(False)
    s.setblocking(False)
    return c, s


def stream(c, s, data: bytes, *, recv_size: int = 65536, timeout: float = 120.0) -> bytes:
    """Send ``data`` from ``c`` to ``s``, polling every stack of the process while neither can
    move; returns what ``s`` received (an assertion error if the transfer stalls)."""
    sent = 0
    got = bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < len(data):
        assert time.monotonic() < deadline, f"stalled at {len(got)} of {len(data)} bytes"
        if sent < len(data):
            try:
                sent += c.send(data[sent : sent + 65536])
            except BlockingIOError:
                pass
        try:
            got += s.recv(recv_size)
        except BlockingIOError:
            fsdp.poll_all_stacks()
    return bytes(got)
