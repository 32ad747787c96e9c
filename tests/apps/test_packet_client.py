"""The packet client (fsdp.apps.packet_client): TCP written on frames.  Scapy plays the server on
a port of a private sim wire; every frame the client sends is checked field by field."""

from __future__ import annotations

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from fsdp.apps.http_native import (
    HC_BAD_RESPONSES,
    HC_CLIENT_ERRORS,
    HC_COMPLETED,
    HC_CONNECT_ERRORS,
    HC_REQUESTS,
    HC_SIZE,
    HC_STARTED,
)
from fsdp.apps.packet_client import ISS_STEP, PacketClient, ports_for_queue
from fsdp.driver.sim import SimWire
from fsdp.driver.toeplitz import toeplitz_table

SRV_MAC, CLI_MAC = 0x020000000001, 0x020000000002
SRV_MAC_S, CLI_MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:02"
SRV, CLI = "10.0.0.1", "10.0.0.2"
SRV_I, CLI_I = 0x0A000001, 0x0A000002
REQ = b"GET / HTTP/1.0\r\nHost: 10.0.0.1\r\n\r\n"
RESP = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"


@pytest.fixture
def net():
    wire = SimWire.private(max_ports=2, max_queues=4, ring_slots=256, fdir_size=64)
    srv = wire.attach(1, SRV_MAC)
    cli = wire.attach(1, CLI_MAC)
    counters = np.zeros(HC_SIZE, np.int64)
    hist = np.zeros(1 << 16, np.int64)
    made = []

    def client(concurrency=1, **kw):
        c = PacketClient(cli, 0, CLI_I, CLI_MAC, SRV_I, SRV_MAC, 80, concurrency, REQ, counters,
                         hist, **kw)
        made.append(c)
        return c

    yield srv, cli, client, counters, hist
    srv.close()
    cli.close()
    wire.close()


def _got(srv) -> list:
    return [Ether(f) for f in srv.drain()]


def _from_srv(sport_cli, flags, seq, ack, payload=b"", **tcp_kw) -> bytes:
    return bytes(Ether(src=SRV_MAC_S, dst=CLI_MAC_S) / IP(src=SRV, dst=CLI)
                 / TCP(sport=80, dport=sport_cli, flags=flags, seq=seq, ack=ack, window=65535,
                       **tcp_kw) / payload)


def _checksums_ok(pkt) -> bool:
    again = Ether(bytes(pkt))
    del again[IP].chksum
    del again[TCP].chksum
    again = Ether(bytes(again))
    return again[IP].chksum == pkt[IP].chksum and again[TCP].chksum == pkt[TCP].chksum


def _syn(srv, client_obj):
    client_obj.run(0.01)
    (syn,) = _got(srv)
    return syn


def _requested(srv, client_obj, server_iss=100):
    """Open a connection as far as the request: the client's port and ISS."""
    syn = _syn(srv, client_obj)
    port, iss = syn[TCP].sport, syn[TCP].seq
    srv.inject(_from_srv(port, "SA", server_iss, iss + 1))
    client_obj.run(0.01)
    _got(srv)
    return port, iss


def test_one_connection_frame_by_frame(net):
    srv, cli, client, counters, hist = net
    c = client(concurrency=1)
    syn = _syn(srv, c)
    # <SYN>: MSS only (no window scaling, SACK or timestamps offered), DF, our addresses
    assert syn[Ether].src == CLI_MAC_S and syn[Ether].dst == SRV_MAC_S
    assert syn[IP].src == CLI and syn[IP].dst == SRV and syn[IP].flags == "DF"
    assert syn[TCP].flags == "S" and syn[TCP].dport == 80 and syn[TCP].window == 65535
    assert syn[TCP].options == [("MSS", 1460)]
    assert 32768 <= syn[TCP].sport <= 60999
    assert _checksums_ok(syn)
    assert counters[HC_STARTED] == 1
    port, iss = syn[TCP].sport, syn[TCP].seq

    # <SYN,ACK> -> the handshake's ACK carries the request
    srv.inject(_from_srv(port, "SA", 7000, iss + 1, options=[("MSS", 1460)]))
    c.run(0.01)
    (req,) = _got(srv)
    assert req[TCP].flags == "PA" and req[TCP].seq == iss + 1 and req[TCP].ack == 7001
    assert bytes(req[TCP].payload) == REQ and _checksums_ok(req)

    # the response with its FIN -> <FIN,ACK> acking both
    srv.inject(_from_srv(port, "FPA", 7001, iss + 1 + len(REQ), RESP))
    c.run(0.01)
    (fin,) = _got(srv)
    assert fin[TCP].flags == "FA"
    assert fin[TCP].seq == iss + 1 + len(REQ) and fin[TCP].ack == 7001 + len(RESP) + 1
    # done, as the stack client counts it (close() at EOF), but the slot waits for the ACK
    assert counters[HC_REQUESTS] == 1 and hist.sum() == 1 and counters[HC_COMPLETED] == 1
    assert c.stats["in_flight"] == 1

    # the ACK of our FIN ends it; the slot opens the next connection on another port
    srv.inject(_from_srv(port, "A", 7001 + len(RESP) + 1, iss + 2 + len(REQ)))
    c.run(0.01)
    assert counters[HC_COMPLETED] == 1
    (syn2,) = _got(srv)
    assert syn2[TCP].flags == "S" and syn2[TCP].sport != port  # least recently used port
    assert counters[HC_STARTED] == 2 and c.stats["in_flight"] == 1
    assert c.stats["stray"] == 0 and c.stats["retransmits"] == 0


def test_response_in_two_segments_and_out_of_order(net):
    srv, cli, client, counters, hist = net
    c = client()
    port, iss = _requested(srv, c)
    a = iss + 1 + len(REQ)
    # a segment beyond RCV.NXT: RFC 9293 §3.10.7.4, an ACK of RCV.NXT and nothing taken
    srv.inject(_from_srv(port, "PA", 101 + 20, a, RESP[20:]))
    c.run(0.01)
    (dup,) = _got(srv)
    assert dup[TCP].flags == "A" and dup[TCP].ack == 101 and c.stats["out_of_order"] == 1
    srv.inject(_from_srv(port, "PA", 101, a, RESP[:20]))
    c.run(0.01)
    assert _got(srv) == []  # one segment: its ACK waits (for a second segment or the FIN)
    srv.inject(_from_srv(port, "FPA", 121, a, RESP[20:]))
    c.run(0.01)
    (fin,) = _got(srv)
    assert fin[TCP].flags == "FA" and fin[TCP].ack == 101 + len(RESP) + 1
    assert counters[HC_REQUESTS] == 1


def test_not_200_is_a_bad_response(net):
    srv, cli, client, counters, hist = net
    c = client()
    port, iss = _requested(srv, c)
    srv.inject(_from_srv(port, "FPA", 101, iss + 1 + len(REQ), b"HTTP/1.0 404 Not Found\r\n\r\n"))
    c.run(0.01)
    assert counters[HC_BAD_RESPONSES] == 1 and counters[HC_REQUESTS] == 0


def test_reset_refuses_and_frees_the_port(net):
    srv, cli, client, counters, hist = net
    c = client()
    syn = _syn(srv, c)
    port, iss = syn[TCP].sport, syn[TCP].seq
    srv.inject(_from_srv(port, "RA", 0, iss + 7))  # does not ack our SYN: ignored
    c.run(0.01)
    assert counters[HC_CONNECT_ERRORS] == 0 and _got(srv) == []
    srv.inject(_from_srv(port, "RA", 0, iss + 1))  # connection refused
    c.run(0.01)
    assert counters[HC_CONNECT_ERRORS] == 1 and c.stats["resets"] == 1
    (syn2,) = _got(srv)  # and the slot opened another connection
    assert syn2[TCP].flags == "S"


def test_reset_after_the_response_is_no_error(net):
    """The server may have forgotten the connection by the time our FIN (or its retransmission)
    arrives, and answer it with a RST: the response was complete, so that is no error."""
    srv, cli, client, counters, hist = net
    c = client()
    port, iss = _requested(srv, c)
    srv.inject(_from_srv(port, "FPA", 101, iss + 1 + len(REQ), RESP))
    c.run(0.01)
    _got(srv)
    srv.inject(_from_srv(port, "R", 101 + len(RESP) + 1, 0))
    c.run(0.01)
    assert counters[HC_COMPLETED] == 1 and counters[HC_CLIENT_ERRORS] == 0
    assert c.stats["resets"] == 1
    (syn2,) = _got(srv)
    assert syn2[TCP].flags == "S"


def test_unacceptable_ack_in_syn_sent_gets_a_reset(net):
    """RFC 9293 §3.10.7.3: SEG.ACK =< ISS or > SND.NXT in SYN-SENT -> <SEQ=SEG.ACK><CTL=RST>
    (what clears a server's TIME-WAIT that answered our SYN with its old ACK)."""
    srv, cli, client, counters, hist = net
    c = client()
    syn = _syn(srv, c)
    srv.inject(_from_srv(syn[TCP].sport, "A", 500, 123456))
    c.run(0.01)
    (rst,) = _got(srv)
    assert rst[TCP].flags == "R" and rst[TCP].seq == 123456 and rst[TCP].sport == syn[TCP].sport
    assert counters[HC_CONNECT_ERRORS] == 0 and c.stats["in_flight"] == 1


def test_syn_is_retransmitted_after_one_second(net):
    srv, cli, client, counters, hist = net
    c = client()
    syn = _syn(srv, c)
    c.run(0.5)
    assert _got(srv) == []
    c.run(0.6)
    (again,) = _got(srv)
    assert again[TCP].flags == "S" and again[TCP].seq == syn[TCP].seq
    assert again[TCP].sport == syn[TCP].sport and c.stats["retransmits"] == 1


def test_arp_bad_checksum_and_strays(net):
    srv, cli, client, counters, hist = net
    c = client()
    syn = _syn(srv, c)
    srv.inject(bytes(Ether(src=SRV_MAC_S, dst="ff:ff:ff:ff:ff:ff")
                     / ARP(op=1, hwsrc=SRV_MAC_S, psrc=SRV, pdst=CLI)))
    c.run(0.01)
    (reply,) = _got(srv)
    assert reply[ARP].op == 2 and reply[ARP].hwsrc == CLI_MAC_S and reply[ARP].psrc == CLI
    assert reply[ARP].pdst == SRV and reply[Ether].dst == SRV_MAC_S
    bad = bytearray(_from_srv(syn[TCP].sport, "SA", 5, syn[TCP].seq + 1))
    bad[-1] ^= 0xFF  # the TCP checksum field's last byte (no options, no payload)
    srv.inject(bytes(bad))
    srv.inject(_from_srv(40000 if syn[TCP].sport != 40000 else 40001, "SA", 5, 1))
    c.run(0.01)
    assert _got(srv) == []
    assert c.stats["bad_csum"] == 1 and c.stats["stray"] == 1


def test_ports_for_queue_match_the_nics_steering():
    wire = SimWire.private(max_ports=2, max_queues=4, ring_slots=256, fdir_size=64)
    srv = wire.attach(1, SRV_MAC)
    cli = wire.attach(4, CLI_MAC)
    try:
        table = toeplitz_table(cli.rss_key)
        per_q = [ports_for_queue(table, cli.reta, CLI_I, SRV_I, 80, q) for q in range(4)]
        every = np.sort(np.concatenate(per_q))
        assert np.array_equal(every, np.arange(32768, 61000))  # a partition of the range
        assert all(len(p) > 5000 for p in per_q)
        for q in range(4):
            for port in per_q[q][:: max(1, len(per_q[q]) // 25)]:
                srv.inject(_from_srv(int(port), "A", 1, 1))
                assert len(cli.drain(queue=q)) == 1, (q, port)
                assert cli.drain() == []
    finally:
        srv.close()
        cli.close()
        wire.close()


def test_iss_advances_when_a_port_is_reused(net):
    srv, cli, client, counters, hist = net
    c = client()
    c.ports = c.ports[:1].copy()  # one port: every connection reuses it
    c.v[1] = 1  # V_FIFO_COUNT
    syn = _syn(srv, c)
    port, iss = syn[TCP].sport, syn[TCP].seq
    srv.inject(_from_srv(port, "RA", 0, iss + 1))
    c.run(0.01)
    (syn2,) = _got(srv)
    # RFC 6191 / RFC 1122 §4.2.2.13: a new SYN on the 4-tuple starts "after" the old one
    assert syn2[TCP].sport == port and syn2[TCP].seq == (iss + ISS_STEP) & 0xFFFFFFFF


def test_concurrency_beyond_the_queues_ports_is_refused():
    wire = SimWire.private(max_ports=2, max_queues=4, ring_slots=256, fdir_size=64)
    cli = wire.attach(4, CLI_MAC)
    try:
        with pytest.raises(ValueError, match="concurrency"):
            PacketClient(cli, 0, CLI_I, CLI_MAC, SRV_I, SRV_MAC, 80, 20000, REQ,
                         np.zeros(HC_SIZE, np.int64), np.zeros(16, np.int64))
    finally:
        cli.close()
        wire.close()
