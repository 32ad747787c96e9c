"""Receive flow deliver (Fastsocket §3.3, DESIGN.md §3): an active open on core k of a
multi-queue port picks a local port whose reply the NIC's RSS steers back to queue k, so the
connection never needs another core.  The expected queue is computed independently, in Python,
from the port's RSS key and redirection table (Stack._core_for_reply)."""

import errno
import itertools
import os

import pytest

import fsdp
from fsdp.tcp import usercalls as uc

_n = itertools.count()
RIP = 0x0A050063  # 10.5.0.99
RPORT = 80


def _wire():
    return f"sim:rfdtest-{os.getpid()}-{next(_n)}"


def _listener(server):
    ls = server.socket()
    ls.bind(("0.0.0.0", RPORT))
    ls.listen(64)
    ls.settimeout(5.0)
    return ls


def _connected_pair(client, ls):
    """A client socket connected to ``ls``'s port on 10.5.0.2, and the accepted end (both with
    a 5 s timeout)."""
    c = client.socket()
    c.settimeout(5.0)
    c.connect(("10.5.0.2", RPORT))
    a, _ = ls.accept()
    a.settimeout(5.0)
    return c, a


def test_each_core_picks_ports_whose_replies_come_back_to_it():
    with fsdp.Stack(nic=_wire(), ip="10.5.0.1/24", cores=4) as s:
        lip = int(s.interface.ip)
        for core in range(4):
            for _ in range(32):
                port = int(uc.tcp_ephemeral_port(s._refs[core], lip, RIP, RPORT))
                assert 32768 <= port <= 60999
                assert s._core_for_reply(lip, port, RIP, RPORT) == core


def test_steering_follows_a_new_redirection_table():
    with fsdp.Stack(nic=_wire(), ip="10.5.0.1/24", cores=2) as s:
        lip = int(s.interface.ip)
        s.port.set_rss(reta=[1] * 128)  # every flow to queue 1: core 0 has no port left
        assert int(uc.tcp_ephemeral_port(s._refs[0], lip, RIP, RPORT)) == -errno.EADDRNOTAVAIL
        port = int(uc.tcp_ephemeral_port(s._refs[1], lip, RIP, RPORT))
        assert port > 0 and s._core_for_reply(lip, port, RIP, RPORT) == 1
        # bind() to port 0 has no peer to steer by: any core gets a port
        assert int(uc.tcp_ephemeral_port(s._refs[0], lip, 0, 0)) > 0


def test_switched_off_the_port_ignores_the_queue():
    with fsdp.Stack(nic=_wire(), ip="10.5.0.1/24", cores=4, receive_flow_deliver=False) as s:
        lip = int(s.interface.ip)
        queues = set()
        for _ in range(64):
            port = int(uc.tcp_ephemeral_port(s._refs[0], lip, RIP, RPORT))
            queues.add(s._core_for_reply(lip, port, RIP, RPORT))
        assert queues != {0}  # ~3/4 of the ports' replies land on other queues


def test_connections_from_every_core_carry_data():
    wire = _wire()
    with fsdp.Stack(nic=wire, ip="10.5.0.2/24") as server, \
            fsdp.Stack(nic=wire, ip="10.5.0.1/24", cores=4) as client:
        ls = _listener(server)
        socks = []
        for i in range(8):
            c, a = _connected_pair(client, ls)
            c.sendall(b"ping %d" % i)
            assert a.recv(64) == b"ping %d" % i
            a.sendall(b"pong %d" % i)
            assert c.recv(64) == b"pong %d" % i
            socks += [c, a]
        assert {s._core for s in socks[0::2]} == {0, 1, 2, 3}  # opens spread over the cores
        for s in socks:
            s.close()
        ls.close()
        assert client.stats()["tcp_rst_out"] == 0 and server.stats()["tcp_rst_out"] == 0


@pytest.mark.parametrize("bad", [0, 65])
def test_demo_client_cores_bounds(bad):
    from fsdp.apps.demo import run_demo

    with pytest.raises(ValueError):
        run_demo(client_cores=bad)


def _pump(*stacks, rounds=50):
    for _ in range(rounds):
        for s in stacks:
            s.poll()


def test_rfd_off_a_reply_on_the_wrong_core_is_handed_to_the_owner():
    """With receive flow deliver off, core k picks ports that name it (port % cores == k); a
    SYN-ACK that RSS puts on another core finds no connection there and is passed to core k
    (nic_redirect) instead of being answered with a RST."""
    wire = _wire()
    with fsdp.Stack(nic=wire, ip="10.5.0.2/24") as server, \
            fsdp.Stack(nic=wire, ip="10.5.0.1/24", cores=4, receive_flow_deliver=False) as client:
        ls = server.socket()
        ls.bind(("0.0.0.0", RPORT))
        ls.listen(64)
        lip, rip = int(client.interface.ip), int(server.interface.ip)
        opened = []
        for k in (0, 1, 2, 3, 0, 1, 2, 3):
            port = int(uc.tcp_ephemeral_port(client._refs[k], lip, rip, RPORT))
            assert port % 4 == k
            cid = int(uc.tcp_connect(client._refs[k], lip, port, rip, RPORT, client.now_us()))
            assert cid >= 0
            opened.append((k, cid, client._core_for_reply(lip, port, rip, RPORT)))
        _pump(client, server)
        for k, cid, _ in opened:
            assert uc.tcp_status(client._refs[k], cid) & uc.EV_CONNECTED
        misdelivered = sum(1 for k, _, landed in opened if landed != k)
        assert misdelivered > 0  # (RSS puts ~3/4 of them elsewhere)
        st = client.stats()
        assert st["tcp_redirected"] >= misdelivered and st["tcp_rst_out"] == 0
        assert server.stats()["tcp_rst_out"] == 0
        client.audit()


def test_listen_spawn_off_only_core_0_listens_and_gets_every_flow():
    wire = _wire()
    with fsdp.Stack(nic=wire, ip="10.5.0.2/24", cores=4, listen_spawn=False) as server, \
            fsdp.Stack(nic=wire, ip="10.5.0.1/24") as client:
        ls = _listener(server)
        assert len(ls._lids) == 1
        for i in range(8):
            c, a = _connected_pair(client, ls)
            assert a._core == 0
            c.sendall(b"x%d" % i)
            assert a.recv(16) == b"x%d" % i
            a.close()
            c.close()
        _pump(server, client)  # the last FIN exchanges complete (no frame left in a queue)
        st = server.stats()
        per_core = [d["tcp_redirected"] for d in st["per_core"]]
        assert per_core[0] == 0 and sum(per_core) > 0  # cores 1..3 passed SYNs and more on
        assert st["tcp_rst_out"] == 0 and st["tcp_no_listener"] == 0
        server.audit()


def test_global_listen_table_names_the_cores_that_listen():
    """listen() sets the core's bit for the port in the port's global listen table, shared by
    every process on the port; closing the core's last listener on the port clears it."""
    with fsdp.Stack(nic=_wire(), ip="10.5.0.2/24", cores=4) as s:
        lmap = s.port.listen_map
        a = s.socket()
        a.bind(("0.0.0.0", 8080))
        a.listen()
        assert lmap[8080] == 0b1111 and lmap[8081] == 0
        b = s.socket()
        b.bind(("10.5.0.2", 8081))
        b.listen()
        assert lmap[8081] == 0b1111
        a.close()
        assert lmap[8080] == 0 and lmap[8081] == 0b1111
        b.close()
        assert not lmap.any()


def test_a_core_without_a_listener_hands_the_syn_to_one_that_listens():
    """The listen-spawn fallback (Fastsocket's global listen table): a listener on core 2 only
    (as in a prefork worker whose siblings have not listened yet) serves every SYN, wherever
    RSS puts it; a port nobody listens on is answered with a RST by the core that got it,
    with no hand-over."""
    wire = _wire()
    with fsdp.Stack(nic=wire, ip="10.5.0.2/24", cores=4) as server, \
            fsdp.Stack(nic=wire, ip="10.5.0.1/24") as client:
        lip = int(server.interface.ip)
        lid = int(uc.tcp_listen(server._refs[2], lip, RPORT, 64, 0))
        assert lid >= 0 and server.port.listen_map[RPORT] == 1 << 2
        conns = []
        for _ in range(12):
            c = client.socket()
            c.setblocking(False)
            assert c.connect_ex(("10.5.0.2", RPORT)) == errno.EINPROGRESS
            conns.append(c)
        _pump(server, client)
        accepted = []
        while (cid := int(uc.tcp_accept(server._refs[2], lid))) >= 0:
            accepted.append(cid)
        assert len(accepted) == 12
        for c in conns:
            assert c.getsockopt(1, 4) == 0  # SO_ERROR: connected
            c.close()
        for cid in accepted:
            uc.tcp_close(server._refs[2], cid, server.now_us())
        _pump(server, client)  # the FINs, wherever they land, reach core 2 too
        st = server.stats()
        per_core = [d["tcp_redirected"] for d in st["per_core"]]
        assert per_core[2] == 0 and sum(per_core) > 0
        assert st["tcp_no_listener"] == 0
        redirected = sum(per_core)
        # nobody listens on RPORT + 1: the receiving core answers at once
        c = client.socket()
        c.setblocking(False)
        c.connect_ex(("10.5.0.2", RPORT + 1))
        _pump(server, client)
        assert c.getsockopt(1, 4) == errno.ECONNREFUSED
        st = server.stats()
        assert sum(d["tcp_redirected"] for d in st["per_core"]) == redirected
        assert st["tcp_no_listener"] == 1
        uc.tcp_unlisten(server._refs[2], lid, server.now_us())
        assert server.port.listen_map[RPORT] == 0
        _pump(server, client)
        server.audit()


def test_a_syn_for_a_full_listening_core_is_dropped_not_refused():
    """The hand-over fails when the listening core's queue is full: the SYN is dropped and
    counted (tcp_redirect_dropped), as a full NIC queue drops it, and the client's SYN
    retransmission connects.  Answering it with a RST would refuse a connection a sibling
    core would have taken."""
    import time

    import numpy as np

    from fsdp.driver.sim import sim_redirect
    from fsdp.pool.pool import HEADROOM, frame_alloc_burst, frame_free_burst

    wire = _wire()
    with fsdp.Stack(nic=wire, ip="10.5.0.2/24", cores=4) as server, \
            fsdp.Stack(nic=wire, ip="10.5.0.1/24") as client:
        sip, cip = int(server.interface.ip), int(client.interface.ip)
        lid = int(uc.tcp_listen(server._refs[2], sip, RPORT, 64, 0))
        assert lid >= 0
        lport = next(p for p in range(40000, 41000)
                     if server._core_for_reply(sip, RPORT, cip, p) == 0)
        c = client.socket()
        c.setblocking(False)
        c.bind(("10.5.0.1", lport))
        assert c.connect_ex(("10.5.0.2", RPORT)) == errno.EINPROGRESS
        client.poll()  # the SYN is on its way to core 0
        # fill the ring core 0 -> core 2 with frames core 2 will drop (runts)
        pool, ids = server.port.pool, np.zeros(1, np.int32)
        q0 = server.port.queue(0)
        filled = 0
        while True:
            assert frame_alloc_burst(pool, ids, 1) == 1
            pool.length[ids[0]] = 10
            pool.off[ids[0]] = HEADROOM
            went = int(sim_redirect(q0, pool, int(ids[0]), 2))
            frame_free_burst(pool, ids, 1)
            if not went:
                break
            filled += 1
        assert filled > 0
        assert server.stats()["per_core"][0]["tcp_in"] == 0
        server.poll()  # core 0 gets the SYN and cannot hand it over; core 2 drains its queue
        st = server.stats()
        assert st["per_core"][0]["tcp_redirect_dropped"] == 1
        assert st["tcp_no_listener"] == 0 and st["tcp_rst_out"] == 0
        assert c.getsockopt(1, 4) == 0  # SO_ERROR: not refused, still connecting
        # core 2 drains its queue; the SYN's retransmission (1 s) then gets through
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and int(uc.tcp_accept_pending(server._refs[2], lid)) == 0:
            _pump(server, client, rounds=1)
            time.sleep(0.01)
        assert int(uc.tcp_accept_pending(server._refs[2], lid)) == 1
        c.close()
        uc.tcp_unlisten(server._refs[2], lid, server.now_us())
        _pump(server, client)


def test_a_dead_workers_listeners_are_forgotten():
    from fsdp.tcp.listen import listen_map_forget

    with fsdp.Stack(nic=_wire(), ip="10.5.0.2/24", cores=4) as s:
        lmap = s.port.listen_map
        lmap[80] = 0b1010
        lmap[443] = 0b0010
        lmap[8080] = 0b0100
        listen_map_forget(lmap, 1)
        assert (lmap[80], lmap[443], lmap[8080]) == (0b1000, 0, 0b0100)


def test_a_freed_port_is_not_taken_again_before_the_others():
    """The ports that steer to one core come in runs (Toeplitz is linear in the port's bits).
    The ephemeral search must resume past the port it took (Linux __inet_hash_connect), or a
    port freed at once is taken back by the next connect: its peer still holds the 4-tuple in
    TIME-WAIT, and a SYN whose ISN has barely moved is refused there (a 1 s retransmission)."""
    with fsdp.Stack(nic=_wire(), ip="10.5.0.1/24", cores=2) as s:
        lip = int(s.interface.ip)
        for core in range(2):
            # each port taken is free again at once (never connected): only the cursor moves
            ports = [int(uc.tcp_ephemeral_port(s._refs[core], lip, RIP, RPORT))
                     for _ in range(2000)]
            assert len(set(ports)) == len(ports)  # ~7,000 ports steer here: no repeat yet
            assert {s._core_for_reply(lip, p, RIP, RPORT) for p in ports} == {core}


REQUEST = b"x" * 4096


def test_short_connections_through_steered_ports_never_wait_on_time_wait():
    """Connections one after another from core 1 of a two-queue client (receive flow deliver),
    each closed by the server first (it keeps TIME-WAIT), as an HTTP/1.0 load generator does:
    no SYN is refused by a TIME-WAIT of a port taken back too soon, so none is retransmitted."""
    wire = _wire()
    with fsdp.Stack(nic=wire, ip="10.5.0.2/24") as server, \
            fsdp.Stack(nic=wire, ip="10.5.0.1/24", cores=2) as client:
        ls = _listener(server)
        lip = int(client.interface.ip)
        for _ in range(300):
            port = int(uc.tcp_ephemeral_port(client._refs[1], lip, 0x0A050002, RPORT))
            c = client.socket()
            c.settimeout(5.0)
            c.bind(("10.5.0.1", port))  # the port core 1 would take for its own connect()
            c.connect(("10.5.0.2", RPORT))
            a, _ = ls.accept()
            c.sendall(REQUEST)  # the old connection's RCV.NXT ends 4 KB past its ISN
            got = 0
            while got < len(REQUEST):
                got += len(a.recv(65536))
            a.close()  # the server closes first: TIME-WAIT on its side
            assert c.recv(1) == b""
            c.close()
        _pump(server, client)
        assert client.stats()["tcp_syn_retrans"] == 0
        assert server.stats()["tcp_time_wait_entered"] == 300
        ls.close()
