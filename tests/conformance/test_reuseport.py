"""SO_REUSEPORT listener groups as Linux runs them (net/core/sock_reuseport.c): listeners that
all set SO_REUSEPORT share a port, each SYN goes to one member chosen by a hash of its 4-tuple
(reuseport_select_sock), and closing one member with net.ipv4.tcp_migrate_req=0 (the default)
resets what its accept queue held and forgets its SYN-RECEIVED children
(inet_csk_listen_stop), while the other members keep serving.

Which member a flow lands on depends on a secret hash key (Linux: inet_ehashfn's, fsdp: the
flow table's), so the scenarios use many flows and check how the flows split, never where one
flow goes; enough flows that a member is left without any less than once in 2^18 runs.
"""

import socket

from helpers import LOCAL_IP, PEER_IP, accept, seq_add, syn_ack_of
from scapy.layers.inet import IP, TCP

PORT = 8080


def rp_listen(h, backlog: int = 64, port: int = PORT):
    s = h.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((LOCAL_IP, port))
    s.listen(backlog)
    return s


def accept_all(listener) -> dict:
    """Every connection waiting in ``listener``'s accept queue: {peer port: socket}."""
    out = {}
    while True:
        try:
            sock = accept(listener)
        except BlockingIOError:
            return out
        out[sock.getpeername()[1]] = sock


def tcp_frames(h) -> list:
    return [p for p in h.recv() if TCP in p and p[IP].dst == PEER_IP]


def established(h, pports) -> dict:
    """SYN ->, <- SYN-ACK, ACK -> for each peer port: {peer port: Conn}."""
    conns = {}
    for p in pports:
        c, _ = syn_ack_of(h, PORT, pport=p)
        c.send("A", 1, 1)
        assert c.recv() == []
        conns[p] = c
    return conns


def test_closing_a_member_resets_its_queue_and_the_others_keep_serving(h):
    """A member's close resets the connections its accept queue held (RFC 9293 §3.10.4 ABORT
    of never-accepted connections, as Linux's inet_child_forget) and drops its SYN-RECEIVED
    children silently, so their final ACK meets the remaining member and is answered by RST;
    the connections of the other member, and one already accepted from the closed member, go
    on; new SYNs all go to the member that is left.  The last member's close frees the port."""
    a, b = rp_listen(h), rp_listen(h)
    est = established(h, range(41000, 41024))
    half_open = {p: syn_ack_of(h, PORT, pport=p)[0] for p in range(42000, 42024)}
    kept = accept(a)  # one accepted from a; a's queue holds the rest of a's
    kept_port = kept.getpeername()[1]
    a.close()

    resets = {}
    for p in tcp_frames(h):
        if "S" in p[TCP].flags:
            continue  # (Linux, real time: a SYN-ACK retransmitted to a half-open one)
        assert "R" in p[TCP].flags, p.summary()
        resets[p[TCP].dport] = p[TCP].seq
    assert resets and set(resets) <= set(est) - {kept_port}
    for pport, seq in resets.items():
        assert seq == seq_add(est[pport].isn, 1)  # at the child's snd_nxt
    in_b = accept_all(b)
    assert set(in_b) == set(est) - set(resets) - {kept_port}  # b's own: untouched

    for c in half_open.values():
        c.send("A", 1, 1)
    refused = {p[TCP].dport for p in tcp_frames(h) if "R" in p[TCP].flags}
    now_in_b = accept_all(b)
    assert refused and now_in_b, "the 24 SYNs should have gone to both members"
    assert refused | set(now_in_b) == set(half_open) and not refused & set(now_in_b)

    later = established(h, range(43000, 43008))
    assert set(accept_all(b)) == set(later)

    est[kept_port].send("PA", data=b"still connected")
    assert kept.recv(100) == b"still connected"

    b.close()
    assert not [p for p in tcp_frames(h) if "R" in p[TCP].flags]  # b's queue was empty
    h.send(IP(src=PEER_IP, dst=LOCAL_IP) / TCP(sport=44000, dport=PORT, flags="S", seq=1))
    assert [p[TCP].flags for p in tcp_frames(h) if p[TCP].dport == 44000] == ["RA"]


def test_a_cookie_ack_is_taken_by_the_member_it_reaches(harness_factory):
    """RFC 4987 §3.6 cookies with a group whose membership changes between SYN and ACK: the
    ACKs of flows that now hash to the new member are checked against the group's SYN-flood
    time (Linux tcp_synq_overflow keeps it in the group, reuse->synq_overflow_ts), so every
    cookie handshake completes, none on two members and none reset."""
    h = harness_factory(tcp_syncookies=2)
    members = [rp_listen(h), rp_listen(h)]
    conns = {p: syn_ack_of(h, PORT, pport=p)[0] for p in range(45000, 45032)}
    members.append(rp_listen(h))
    for c in conns.values():
        c.send("A", 1, 1)
    assert [p.summary() for p in tcp_frames(h) if "R" in p[TCP].flags] == []
    got = [accept_all(m) for m in members]
    assert sorted(p for g in got for p in g) == sorted(conns)
    assert got[2], "the third member should have taken some of the 32 flows"


def test_a_cookie_ack_is_taken_after_its_member_closed(harness_factory):
    """The same, with a member closing between SYN and ACK: on each of 8 ports (groups of two)
    one cookie SYN-ACK goes out from one member, the first member closes, and the ACK, now
    for the member left, completes the handshake there even when that member sent no cookie
    (the group's SYN-flood time again)."""
    h = harness_factory(tcp_syncookies=2)
    accepted = []  # (kept open: a dropped socket would close and send its FIN)
    for port in range(8081, 8089):
        first, second = rp_listen(h, port=port), rp_listen(h, port=port)
        c, _ = syn_ack_of(h, port, pport=46000 + port)
        first.close()
        assert tcp_frames(h) == []  # (a cookie leaves nothing queued to reset)
        c.send("A", 1, 1)
        assert [p.summary() for p in tcp_frames(h)] == [], f"port {port}: the ACK was refused"
        accepted += accept_all(second).values()
        assert len(accepted) == port - 8080
