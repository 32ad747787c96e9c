"""A stack talking to its own address (Linux: over ``lo``): the frames never reach the NIC;
each is copied, its checksums filled in, and received by the core RSS would have given it
(fsdp/core/output.py).  On a multi-core stack that is often a sibling core (nic_redirect)."""

import itertools
import os

import pytest

import fsdp

_n = itertools.count()


def _wire():
    return f"sim:lotest-{os.getpid()}-{next(_n)}"


@pytest.mark.parametrize("cores", [1, 4])
def test_connect_to_own_address_carries_data_both_ways(cores):
    with fsdp.Stack(nic=_wire(), ip="10.66.0.1/24", cores=cores) as s:
        ls = s.socket()
        ls.bind(("0.0.0.0", 80))
        ls.listen()
        ls.settimeout(5)
        served_on = set()
        for i in range(12):
            c = s.socket()
            c.settimeout(5)
            c.connect(("10.66.0.1", 80))
            a, addr = ls.accept()
            a.settimeout(5)
            served_on.add(a._core)
            assert addr == c.getsockname() and a.getpeername() == c.getsockname()
            c.sendall(b"ping %d" % i)
            assert a.recv(16) == b"ping %d" % i
            a.sendall(b"pong" * 5000)  # more than one segment, more than one pass
            got = b""
            while len(got) < 20000:
                got += c.recv(65536)
            assert got == b"pong" * 5000
            c.close()
            assert a.recv(16) == b""  # the FIN came back too
            a.close()
        for _ in range(20):
            s.poll()
        st = s.stats()
        assert st["tx_frames"] == 0  # nothing went on the wire
        assert st["ip_loopback"] > 12 * 6 and st["ip_loopback_dropped"] == 0
        assert st["ip_bad_src"] == 0 and st["tcp_rst_out"] == 0
        if cores > 1:
            assert len(served_on) > 1  # RSS spread the passive ends over the cores
        assert s.connections() == [] or all(
            c["state"] == "TIME-WAIT" for c in s.connections())
        s.audit()


def test_ping_own_address():
    with fsdp.Stack(nic=_wire(), ip="10.66.0.1/24") as s:
        rtts = s.ping("10.66.0.1", count=3, timeout=1.0)
        assert all(r is not None for r in rtts)
        assert s.stats()["tx_frames"] == 0
        s.audit()


def test_a_frame_from_our_own_address_on_the_wire_is_still_dropped():
    """Only the loopback path may carry our own source address (RFC 1122 §3.2.1.3)."""
    wire = _wire()
    with fsdp.Stack(nic=wire, ip="10.66.0.1/24") as victim, \
            fsdp.Stack(nic=wire, ip="10.66.0.2/24") as other:
        ls = victim.socket()
        ls.bind(("0.0.0.0", 80))
        ls.listen()
        # the other stack pretends to be 10.66.0.1 talking to 10.66.0.1: the victim's MAC
        from fsdp.tcp import usercalls as uc

        other.add_neighbor("10.66.0.1", victim.mac)
        before = victim.stats()["ip_bad_src"]
        cid = int(uc.tcp_connect(other._refs[0], int(victim.interface.ip), 40000,
                                 int(victim.interface.ip), 80, other.now_us()))
        assert cid >= 0
        for _ in range(10):
            other.poll()
            victim.poll()
        assert victim.stats()["ip_bad_src"] > before
        assert victim.stats()["tcp_passive_opens"] == 0
