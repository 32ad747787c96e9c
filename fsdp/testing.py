"""``fsdp.testing.Harness``: packetdrill's model in pytest (CONTRACT.md §2).

One stack under test on a private ``sim`` wire with a virtual clock at t=0.  The test plays the
peer: ``send()`` puts a Scapy packet on the wire as if the peer sent it (processed before it
returns), ``recv()`` returns what the stack transmitted, ``advance()`` moves virtual time and
fires due timers in time order.  The peer is a static neighbour of the stack.
"""

from __future__ import annotations

import ipaddress
import itertools

from fsdp.core.stack import Stack, _parse_mac
from fsdp.driver.sim import SimWire

_MAX_PASSES_PER_STEP = 100_000
_harness_ids = itertools.count()


class _VirtualClock:
    """The harness's clock, in µs, as the stack calls it.  Its own object, so the stack does
    not hold the harness: a harness that refers to its stack and a stack whose clock refers
    back to the harness would be a reference cycle, which ``gc.freeze`` (done when a stack
    loads its loop, ``fsdp.core.stack.freeze_long_lived_objects``) makes immortal -- every
    closed harness would keep its stack, pool and wire (tens of MB) for the process's life."""

    __slots__ = ("us",)

    def __init__(self) -> None:
        self.us = 0

    def __call__(self) -> int:
        return self.us


class Harness:
    """A stack under test and a scripted peer on one private simulated wire."""

    def __init__(
        self,
        ip: str = "192.0.2.1",
        mac: str = "02:00:00:00:00:01",
        peer_ip: str = "192.0.2.2",
        peer_mac: str = "02:00:00:00:00:02",
        *,
        cores: int = 1,
        **options,
    ):
        self.ip = str(ipaddress.IPv4Address(ip))
        self.peer_ip = str(ipaddress.IPv4Address(peer_ip))
        self.mac = mac
        self.peer_mac = peer_mac
        mac_int = _parse_mac(mac)
        peer_mac_int = _parse_mac(peer_mac)
        if mac_int == peer_mac_int:
            raise ValueError("the stack and the peer need different MAC addresses")
        self._clock = _VirtualClock()
        self._outbox: list[bytes] = []
        self._sockets: list = []
        # 2048 ring slots (a sim wire's default is 256): the stack's receive ring bounds the
        # buffer autotuning grows to (fsdp.core.config.rcvbuf_autotune_max), and scenarios that
        # read Linux's autotuned values need it at 2 MiB or more; the peer only ever sends what a
        # scenario scripts, so the ring never fills
        self._wire = SimWire.private(name=f"harness-{next(_harness_ids)}", max_ports=2,
                                     max_queues=max(cores, 1), ring_slots=2048)
        self._peer = self._wire.attach(n_queues=1, mac=peer_mac_int, promisc=True)
        stack_port = self._wire.attach(n_queues=cores, mac=mac_int)
        # A prefix that puts the peer on-link: /24 when they share one, else their common prefix.
        a, b = int(ipaddress.IPv4Address(ip)), int(ipaddress.IPv4Address(peer_ip))
        prefix = min(24, 32 - (a ^ b).bit_length())
        try:
            self.stack = Stack(
                nic=stack_port, ip=f"{self.ip}/{prefix}", mac=mac_int, cores=cores,
                clock=self._clock, **options,
            )
        except BaseException:
            stack_port.close()
            self._peer.close()
            self._wire.close()
            raise
        self.stack.add_neighbor(self.peer_ip, peer_mac_int)

    @property
    def _now_us(self) -> int:
        return self._clock.us

    @_now_us.setter
    def _now_us(self, us: int) -> None:
        self._clock.us = us

    # ---- the contract ----
    @property
    def now(self) -> float:
        """Virtual time in seconds."""
        return self._now_us / 1e6

    def socket(self, family=None, type=None, proto=0):
        """A NON-BLOCKING socket on the stack under test."""
        sock = self.stack.socket(family, type, proto)  # provided by the socket layer
        sock.setblocking(False)
        # the harness owns what it made (as LinuxHarness does): a scenario that drops its
        # reference to a listener must not see it closed by the garbage collector
        self._sockets.append(sock)
        return sock

    def send(self, pkt) -> None:
        """Put ``pkt`` on the wire from the peer and let the stack process it now."""
        self._peer.inject(self._frame_bytes(pkt), now=self._now_us)  # runts included
        self._settle()

    def recv(self) -> list:
        """The Ethernet frames (Scapy ``Ether``) the stack sent since the last call, in order."""
        from scapy.layers.l2 import Ether

        self._settle()
        out, self._outbox = self._outbox, []
        return [Ether(b) for b in out]

    def recv_bytes(self) -> list[bytes]:
        self._settle()
        out, self._outbox = self._outbox, []
        return out

    def advance(self, seconds: float) -> None:
        """Move virtual time forward, firing every due timer at its own time, in order."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        target = self._now_us + int(round(seconds * 1e6))
        for _ in range(_MAX_PASSES_PER_STEP):
            d = self.stack.next_deadline()
            if d < 0 or d > target:
                break
            self._now_us = max(self._now_us, d)
            before = self.stack.next_deadline()
            self._settle()
            if self.stack.next_deadline() == before and before <= self._now_us:
                raise RuntimeError(f"timer at {before} us did not fire")  # a stack bug
        self._now_us = target
        self._settle()

    # ---- helpers ----
    def audit(self) -> None:
        """Assert no packet buffer leaked (see Stack.audit)."""
        self._settle()
        self.stack.audit()

    def stats(self) -> dict:
        return self.stack.stats()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        self.stack.close()
        self.stack.port.close()
        self._peer.close()
        self._wire.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _frame_bytes(self, pkt) -> bytes:
        if isinstance(pkt, (bytes, bytearray, memoryview)):
            return bytes(pkt)
        from scapy.layers.inet import IP
        from scapy.layers.l2 import Ether
        from scapy.packet import Raw

        if isinstance(pkt, Raw) and pkt.underlayer is None and not pkt.payload:
            return bytes(pkt.load)
        if isinstance(pkt, IP):
            return bytes(Ether(src=self.peer_mac, dst=self.mac) / pkt)
        return bytes(pkt)

    def _settle(self) -> None:
        """Poll the stack until it has nothing left to process at the current time."""
        for _ in range(_MAX_PASSES_PER_STEP):
            n = self.stack.poll(self._now_us)
            self._outbox.extend(self._peer.drain(now=self._now_us))
            if n == 0:
                return
        raise RuntimeError("the stack did not settle")
