"""A program that stops and starts again on the same host: its new connections reuse ports the
server still holds in TIME-WAIT, and get through at once, as they do between Linux hosts.

Linux keys ISNs (RFC 6528) and timestamp offsets (RFC 7323 §5.4) with per-boot secrets, so the
restarted program's SYN carries a newer timestamp and a higher ISN than the connection the
server remembers, and RFC 6191 lets it reopen the 4-tuple.  fsdp stacks of one machine's user
share such a secret (fsdp.tcp.isn.host_secret_create); with a secret per stack, every address
pair had one chance in two of all its SYNs to TIME-WAIT ports being refused (ACK, RST, then a
retransmitted SYN)."""

import itertools
import os
import time

import fsdp

_wires = itertools.count()


def _exchange(server, client, ls, port):
    """One connection from ``client`` port ``port``; the server closes first (its TIME-WAIT)."""
    c = client.socket()
    c.setsockopt(fsdp.SOL_SOCKET, fsdp.SO_REUSEADDR, 1)
    c.bind(("0.0.0.0", port))
    c.settimeout(5)
    c.connect(("10.9.8.1", 8080))
    s, _ = ls.accept()
    s.sendall(b"bye")
    s.close()
    assert c.recv(10) == b"bye" and c.recv(10) == b""
    c.close()
    for _ in range(20):
        client.poll()
        server.poll()


def test_a_client_stack_started_again_reopens_the_servers_time_wait():
    wire = f"sim:restart-tw-{os.getpid()}-{next(_wires)}"
    with fsdp.Stack(nic=wire, ip="10.9.8.1/24") as server:
        ls = server.socket()
        ls.bind(("0.0.0.0", 8080))
        ls.listen()
        ls.settimeout(5)
        pairs = 8  # address pairs: each its own timestamp offset
        for k in range(pairs):
            ip = f"10.9.8.{10 + k}/24"
            with fsdp.Stack(nic=wire, ip=ip) as first:
                _exchange(server, first, ls, 40000 + k)
            time.sleep(0.002)  # (a timestamp tick later)
            with fsdp.Stack(nic=wire, ip=ip) as again:
                _exchange(server, again, ls, 40000 + k)
                st = again.stats()
                assert st["tcp_syn_retrans"] == 0 and st["tcp_rst_out"] == 0, (k, st)
        assert server.stats()["tcp_tw_reopened"] == pairs
        ls.close()
