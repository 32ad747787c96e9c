"""Random call sequences on kernel sockets and on fsdp sockets, compared step by step.

Each seed makes a sequence of socket calls on four sockets -- a listener ``L``, a client
``C``, the connection ``A`` that ``L`` accepted from ``C`` (once ``C`` connected), and a spare
``N`` -- with arguments drawn from odd values as well as good ones, and peer actions on
``A`` (send, close, shutdown).  test_stdlib_parity.py's worlds run it over the kernel's
loopback and over two fsdp stacks; every step's observable result (return value, exception
type, errno, message) must be the same.  Calls that could wait get a timeout first (the same
in both worlds), and the differences that test_stdlib_parity.py lists as kept on purpose are
not generated.  After each call, what select() says of every socket is compared too.  A
mismatch prints the seed, the step and the calls before it:

    python tests/sockapi/parity_fuzz.py [--seed 0] [--count 200] [--steps 14]
"""

from __future__ import annotations

import argparse
import os
import random
import socket as stdsocket
import struct
import sys

SOL, TCP = stdsocket.SOL_SOCKET, stdsocket.IPPROTO_TCP
# (SO_RCVBUF / SO_SNDBUF are left out: their defaults are fsdp's, a difference kept on purpose)
OPTIONS = [(SOL, stdsocket.SO_REUSEADDR), (SOL, stdsocket.SO_KEEPALIVE),
           (TCP, stdsocket.TCP_NODELAY), (TCP, stdsocket.TCP_KEEPIDLE),
           (TCP, stdsocket.TCP_KEEPINTVL), (TCP, stdsocket.TCP_KEEPCNT),
           (SOL, stdsocket.SO_ERROR), (SOL, stdsocket.SO_TYPE), (SOL, stdsocket.SO_ACCEPTCONN),
           (SOL, stdsocket.SO_REUSEPORT), (stdsocket.IPPROTO_IP, stdsocket.IP_TOS),
           (stdsocket.IPPROTO_IP, stdsocket.IP_TTL)]
VALUES = [0, 1, 2, -1, 7, 1 << 20, 2**31, "x", None, 1.5, b"\x01\x00\x00\x00"]
CALLS = ["connect", "connect_ex", "accept", "send", "sendall", "recv", "recv_into", "shutdown",
         "close", "setsockopt", "getsockopt", "setblocking", "settimeout", "getpeername",
         "getsockname", "bind", "listen", "settle", "gettimeout", "sendto", "recvfrom", "fileno",
         "makefile", "peer_send", "peer_close", "peer_shutdown", "linger0_close", "recv_peek",
         "sendmsg", "recvmsg"]
# CPython polls a socket with a timeout before the call: on a listener these wait it out
# where fsdp answers at once (a difference kept on purpose)
DATA_CALLS = {"send", "sendall", "recv", "recv_into", "sendto", "recvfrom", "sendmsg", "recvmsg",
              "recv_peek"}
MAY_WAIT = DATA_CALLS | {"connect", "connect_ex", "accept", "makefile"}


def sequence(seed: int, steps: int) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    return [(rng.choice("LCAN"), rng.choice(CALLS), rng.randrange(1 << 30))
            for _ in range(steps)]


def readiness(world, socks, rec, select) -> tuple:
    """What select() says of each socket now: (readable, writable), or its error."""
    world.settle(0.01)
    return tuple(None if s is None else rec(lambda s=s: tuple(
        bool(ready) for ready in select([s], [s], [], 0)[:2])) for s in socks.values())


def run(world, calls, rec, select) -> list:
    """The observable result of each call of ``calls`` in ``world``, with every socket's
    readiness after it (``rec``: the parity suite's recorder; ``select``: the world's)."""
    out = []
    listener = world.listener()
    port = listener.getsockname()[1]
    socks = {"L": listener, "C": world.csock(), "A": None, "N": world.csock()}
    for who, call, arg_seed in calls:
        s = socks[who]
        peer = socks["A"]
        if s is None:
            out.append("no such socket")
            continue
        rng = random.Random(arg_seed)

        def timeout(value, s=s):
            try:
                s.settimeout(value)
            except OSError:
                pass

        if call in DATA_CALLS and rec(s.getsockopt, SOL, stdsocket.SO_ACCEPTCONN) == 1:
            out.append("skipped: a listener")
            continue
        if call in MAY_WAIT:
            try:
                if s.gettimeout() is None:
                    s.settimeout(0.2)  # never wait for ever
            except OSError:
                pass
        if call == "connect":
            timeout(0.3)
            target = rng.choice([(world.srv_ip, port), (world.srv_ip, world.dead_port())])
            r = rec(s.connect, target)
        elif call == "connect_ex":
            r = rec(s.connect_ex, (world.srv_ip, port))
        elif call == "accept":
            timeout(0.2 if who == "L" else 0.0)  # (on a connection CPython waits it out too)
            r = rec(s.accept)
        elif call == "send":
            r = rec(s.send, b"y" * rng.choice([0, 1, 100]))
        elif call == "sendall":
            r = rec(s.sendall, b"z" * rng.choice([0, 5, 3000]))
        elif call == "recv":
            timeout(rng.choice([0.0, 0.1]))
            r = rec(s.recv, rng.choice([0, 1, 10, 4096, -1]))
        elif call == "recv_into":
            timeout(0.1)
            r = rec(s.recv_into, bytearray(rng.choice([0, 4, 50])), rng.choice([0, 2, 100, -1]))
        elif call == "recv_peek":
            timeout(0.0)
            r = (rec(s.recv, 5, stdsocket.MSG_PEEK), rec(s.recv, 5, stdsocket.MSG_DONTWAIT))
        elif call == "recvfrom":
            timeout(0.05)
            r = rec(s.recvfrom, 10)
        elif call == "recvmsg":
            timeout(0.0)
            r = rec(lambda s=s: s.recvmsg(10)[:2])
        elif call == "sendto":
            r = rec(s.sendto, b"q", (world.srv_ip, port))
        elif call == "sendmsg":
            r = rec(s.sendmsg, [b"ab", b"cd"])
        elif call == "shutdown":
            how = rng.choice([0, 1, 2, 3, -1])
            if how in (1, 2) and rec(s.getpeername)[0] == "OSError":
                how = 0  # (SHUT_WR before a connection: a difference kept on purpose)
            r = rec(s.shutdown, how)
        elif call == "close":
            r = rec(s.close)
        elif call == "linger0_close":
            r = (rec(s.setsockopt, SOL, stdsocket.SO_LINGER, struct.pack("ii", 1, 0)),
                 rec(s.close))
        elif call == "setsockopt":
            level, opt = rng.choice(OPTIONS)
            r = (opt, rec(s.setsockopt, level, opt, rng.choice(VALUES)))
        elif call == "getsockopt":
            level, opt = rng.choice(OPTIONS)
            r = (opt, rec(s.getsockopt, level, opt))
        elif call == "setblocking":
            r = rec(s.setblocking, rng.choice([True, False, 0, 2]))
        elif call == "settimeout":
            r = rec(s.settimeout, rng.choice([None, 0, 0.05, -1, "x", 1e-9]))
        elif call == "gettimeout":
            r = rec(s.gettimeout)
        elif call == "getpeername":
            r = rec(s.getpeername)
        elif call == "getsockname":
            r = rec(s.getsockname)
        elif call == "bind":
            own = world.srv_ip if who in "LA" else world.cli_ip
            r = rec(s.bind, rng.choice([("0.0.0.0", 0), (own, 0), (world.foreign_ip, 0)]
                                       + ([(own, port)] if who in "LA" else [])))
        elif call == "listen":
            r = rec(s.listen, rng.choice([0, 5, -1]))
        elif call == "fileno":
            r = rec(s.fileno)
            r = r >= 0 if isinstance(r, int) else r
        elif call == "makefile":
            r = rec(lambda s=s: type(s.makefile("rb")).__name__)
        elif call == "peer_send":
            r = rec(peer.send, b"data" * rng.choice([1, 100])) if peer else "no peer"
        elif call == "peer_close":
            r = rec(peer.close) if peer else "no peer"
        elif call == "peer_shutdown":
            r = rec(peer.shutdown, rng.choice([0, 1, 2])) if peer else "no peer"
        else:  # settle
            r = None
        out.append((who, call, r, readiness(world, socks, rec, select)))
        if who == "C" and call in ("connect", "connect_ex") and socks["A"] is None:
            world.settle(0.02)
            try:
                listener.settimeout(0.2)
                socks["A"], _ = listener.accept()
                world._socks.append(socks["A"])
            except OSError:
                pass
        world.settle(0.01)
    return out


def compare(seed: int, steps: int, stacks, parity) -> str | None:
    """None when the seed's calls did the same in both worlds, else what differed."""
    calls = sequence(seed, steps)
    def in_world(w):
        return run(w, calls, parity.rec, parity._select(w))

    want = parity.run_in(parity.KernelWorld(), in_world)
    got = parity.run_in(parity.FsdpWorld(*stacks), in_world)
    for i, (a, b) in enumerate(zip(want, got, strict=True)):
        if a != b:
            return (f"seed {seed} step {i} {calls[i][:2]}: kernel {a!r}, fsdp {b!r}\n"
                    f"  after {[c[:2] for c in calls[:i]]}\n  kernel said {want[:i]}")
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--steps", type=int, default=14)
    args = ap.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, os.path.dirname(here), os.path.dirname(os.path.dirname(here))]
    import test_stdlib_parity as parity

    import fsdp

    wire = f"sim:parity-fuzz-{os.getpid()}"
    stacks = (fsdp.Stack(nic=wire, ip="10.9.0.1/24"), fsdp.Stack(nic=wire, ip="10.9.0.2/24"))
    bad = 0
    for seed in range(args.seed, args.seed + args.count):
        diff = compare(seed, args.steps, stacks, parity)
        if diff:
            bad += 1
            print(diff, flush=True)
    print(f"{bad} of {args.count} seeds differed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
