"""ICMP errors about TCP connections on a multi-core stack (fsdp.tcp.tcp_icmp).

The NIC hashes an ICMP message by its addresses only, so the errors about every connection of a
peer land on one queue, whichever core owns the connection; that core hands each to the owner
(the core RSS gives the quoted 4-tuple: receive flow deliver chose the port for it).  What TCP
does with the error is held to Linux in tests/conformance/test_icmp_errors.py."""

import errno
import itertools
import os

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Ether

import fsdp

_n = itertools.count()
PEER = "10.6.0.9"  # the host the connections go to: a static neighbour that never answers
ROUTER = "10.6.0.1"  # the stack that sends the ICMP errors


def _icmp_error(stack, router, sock, icmp_type=3, code=1, seq_delta=0):
    """An ICMP error from ``router`` to ``stack`` quoting the SYN of ``sock``'s connection."""
    lip, lport = sock.getsockname()
    rip, rport = PEER, 80
    core = stack._refs[sock._core]
    iss = int(core.tcb.cold.iss[sock._cid])
    quote = bytes(IP(src=lip, dst=rip, flags="DF") / TCP(sport=lport, dport=rport,
                                                        seq=(iss + seq_delta) % 2**32,
                                                        flags="S"))[:28]
    return bytes(Ether(src=router.mac.to_bytes(6, "big"), dst=stack.mac.to_bytes(6, "big"))
                 / IP(src=ROUTER, dst="10.6.0.2") / ICMP(type=icmp_type, code=code) / quote)


def _opened(stack, n):
    socks = []
    for _ in range(n):
        s = stack.socket()
        s.setblocking(False)
        assert s.connect_ex((PEER, 80)) == errno.EINPROGRESS
        socks.append(s)
    stack.poll()  # the SYNs go out
    return socks


def _poll(*stacks, rounds=20):
    for _ in range(rounds):
        for s in stacks:
            s.poll()


def test_an_icmp_error_reaches_the_core_that_owns_the_connection():
    """One connection per core; host unreachable about each, all sent to the queue the NIC
    picks for the router's address pair: every opening fails with EHOSTUNREACH, the errors for
    the other cores' connections were handed over (tcp_redirected on the landing core), none
    was lost or answered, and no frame leaked."""
    wire = f"sim:icmperr-{os.getpid()}-{next(_n)}"
    with fsdp.Stack(nic=wire, ip="10.6.0.2/24", cores=4) as stack, \
            fsdp.Stack(nic=wire, ip=f"{ROUTER}/24") as router:
        stack.add_neighbor(PEER, "02:00:00:00:00:09")
        socks = _opened(stack, 4)
        assert sorted(s._core for s in socks) == [0, 1, 2, 3]
        for s in socks:
            router._port.inject(_icmp_error(stack, router, s))
        _poll(stack)
        for s in socks:
            assert s.connect_ex((PEER, 80)) == errno.EHOSTUNREACH
        st = stack.stats()
        per_core = st["per_core"]
        landed = [i for i, c in enumerate(per_core) if c["icmp_in"] > 0 and c["tcp_redirected"]]
        assert len(landed) == 1  # one queue got all four messages ...
        assert per_core[landed[0]]["tcp_redirected"] == 3  # ... and passed on three
        assert [c["tcp_icmp_aborts"] for c in per_core] == [1, 1, 1, 1]
        assert st["tcp_icmp_unreach"] == 4
        assert st["icmp_err_no_conn"] == 0 and st["tcp_rst_out"] == 0
        for s in socks:
            s.close()
        _poll(stack, router)
        stack.audit()


def test_an_icmp_error_about_no_connection_is_counted_once():
    """An error quoting a 4-tuple no core has goes to the core RSS names at most once (never
    around the cores) and is counted there as an error about no connection; one quoting a
    sequence number the connection never sent is counted as out of window, and the
    connection is untouched."""
    wire = f"sim:icmperr-{os.getpid()}-{next(_n)}"
    with fsdp.Stack(nic=wire, ip="10.6.0.2/24", cores=4) as stack, \
            fsdp.Stack(nic=wire, ip=f"{ROUTER}/24") as router:
        stack.add_neighbor(PEER, "02:00:00:00:00:09")
        (s,) = _opened(stack, 1)
        frame = bytearray(_icmp_error(stack, router, s))
        frame[-28 + 20:-28 + 22] = (1234).to_bytes(2, "big")  # another local port (no csum:
        router._port.inject(bytes(_recompute(frame)))  # the ICMP checksum covers the quote)
        router._port.inject(_icmp_error(stack, router, s, seq_delta=5))
        _poll(stack)
        st = stack.stats()
        assert st["icmp_err_no_conn"] == 1
        assert st["tcp_icmp_out_of_window"] == 1
        assert st["tcp_icmp_aborts"] == 0
        assert s.connect_ex((PEER, 80)) == errno.EALREADY  # still connecting
        s.close()
        _poll(stack, router)
        stack.audit()


def _recompute(frame: bytearray) -> bytes:
    """``frame`` with its ICMP checksum computed again."""
    pkt = Ether(bytes(frame))
    del pkt[ICMP].chksum
    return bytes(pkt)
