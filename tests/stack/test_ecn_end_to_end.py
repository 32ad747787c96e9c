"""ECN end to end (RFC 3168): two fsdp stacks on a sim wire that marks ECN-capable frames CE, as
an AQM router does, instead of dropping them.  The congestion is signalled and answered without a
single retransmission; without ECN nothing is ECN-capable and nothing is marked."""

import hashlib
import itertools
import os

from bulk_pair import connected_pair, stream

import fsdp

_wires = itertools.count()


def transfer(client_ecn: int, ce_mark: float, size: int = 3_000_000):
    wire = f"sim:ecn-{os.getpid()}-{next(_wires)}"
    server = fsdp.Stack(nic=wire, ip="10.9.0.1/24")
    client = fsdp.Stack(nic=wire, ip="10.9.0.2/24", tcp_ecn=client_ecn)
    try:
        client.port.set_faults(ce_mark=ce_mark, seed=11)  # the client's data, both ways' frames
        server.port.set_faults(ce_mark=ce_mark, seed=12)
        c, s = connected_pair(server, client, "10.9.0.1")
        data = os.urandom(size)
        got = stream(c, s, data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        return server.stats(), client.stats(), client.port.stats(), server.port.stats()
    finally:
        client.close()
        server.close()


def test_marks_are_answered_without_retransmissions():
    """The client asks for ECN (``tcp_ecn`` 1); 2% of what each side sends is marked if it can
    be: the client's data segments, ECT(0), get marked; the server echoes each mark (ECE) until
    the client's CWR; the client halves its window each time, and never retransmits."""
    srv, cli, cli_port, srv_port = transfer(1, ce_mark=0.02)
    assert srv["tcp_ecn_negotiated"] == 1 and cli["tcp_ecn_negotiated"] == 1
    assert cli_port["fault_ce"] > 0  # the client's data is ECT and the wire marked some
    assert srv_port["fault_ce"] == 0  # the server sends ACKs only: never ECT
    assert srv["tcp_ecn_ce_recv"] == cli_port["fault_ce"]
    assert cli["tcp_ecn_cwr_episodes"] > 0
    assert cli["tcp_retrans_segs"] == 0 and cli["tcp_timeouts"] == 0


def test_without_ecn_nothing_is_marked():
    """``tcp_ecn`` 2 on both sides: neither asks, so no frame is ECN-capable to mark."""
    srv, cli, cli_port, srv_port = transfer(2, ce_mark=0.02, size=500_000)
    assert srv["tcp_ecn_negotiated"] == 0 and cli["tcp_ecn_negotiated"] == 0
    assert cli_port["fault_ce"] == 0 and srv_port["fault_ce"] == 0
    assert cli["tcp_ecn_cwr_episodes"] == 0
