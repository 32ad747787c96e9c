"""Compile the TCP engine before tests that run under a timeout.

A cold Numba cache takes minutes to compile ``run_once`` and the usercall dispatcher; a test
whose asyncio loop or child process waits with a timeout would count that against it.  One
connection between two stacks, with no timeout, compiles (and caches on disk for child
processes) everything such tests use.
"""

import itertools
import os

_done = False
_ids = itertools.count()


def warm_engine() -> None:
    global _done
    if _done:
        return
    import fsdp

    wire = f"sim:warmup-{os.getpid()}-{next(_ids)}"
    with fsdp.Stack(nic=wire, ip="10.250.0.1/24") as server, fsdp.Stack(
        nic=wire, ip="10.250.0.2/24"
    ) as client:
        ls = server.socket()
        ls.bind(("0.0.0.0", 9))
        ls.listen()
        c = client.socket()
        c.connect(("10.250.0.1", 9))
        s, _ = ls.accept()
        c.sendall(b"warm")
        assert s.recv(4) == b"warm"
        from fsdp.selectors import DefaultSelector

        with DefaultSelector() as sel:  # the selectors' poll_status
            sel.register(s, 1)
            sel.select(0)
        c.close()
        s.close()
        ls.close()
    _done = True
