"""packetdrill-style building blocks for the conformance scenarios.

A scenario plays the remote peer of the stack under test (``h``: ``fsdp.testing.Harness`` or
``fsdp.testing_linux.LinuxHarness``).  Sequence numbers are *relative*, as in packetdrill: the
stack's ISN and the peer's ISN are both 0, so a SYN-ACK reads ``seq=0 ack=1``.  The stack's ISN,
its TSval clock and its ephemeral ports are read from what it sent, never assumed (Linux's are
random).

    c = handshake_passive(h, 8080)          # listen, SYN ->, <- SYN-ACK, ACK ->, accept()
    c.send("PA", data=b"x" * 100)           # seq/ack default to what the peer has sent/received
    (s,) = c.recv()                         # segments of this connection, relative numbers
    assert (s.flags, s.ack) == ("A", 101)
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import pathlib
import socket
import sys

from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

_TESTING_LINUX = pathlib.Path(__file__).resolve().parents[2] / "fsdp" / "testing_linux.py"


@functools.cache
def linux_harness_class():
    """``fsdp.testing_linux.LinuxHarness``, loaded from its file.  The module needs nothing else
    from fsdp, and importing the ``fsdp`` package would run (and JIT-compile) the engine: the Linux
    half of the suite must not depend on the state of fsdp's own code."""
    module = sys.modules.get("fsdp.testing_linux")
    if module is None:
        spec = importlib.util.spec_from_file_location("_fsdp_testing_linux", _TESTING_LINUX)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module.LinuxHarness


LOCAL_IP = "192.0.2.1"  # the stack under test
PEER_IP = "192.0.2.2"  # the peer the scenario plays
MSS = 1460  # both sides, from the 1500-byte MTU
TS_MSS = MSS - 12  # payload per full segment when timestamps are on (10-byte option + 2 NOPs)
PEER_WIN = 65535
PEER_WSCALE = 7
PEER_ISN = 1_000_000
PEER_TS0 = 5_000  # the peer's first TSval; its clock ticks in ms of h.now

SEQ_MOD = 1 << 32


def seq_add(a: int, b: int) -> int:
    return (a + b) % SEQ_MOD


def seq_sub(a: int, b: int) -> int:
    """a - b as a signed 32-bit distance."""
    d = (a - b) % SEQ_MOD
    return d - SEQ_MOD if d >= 1 << 31 else d


def syn_options(ts: int | None = PEER_TS0, *, mss: int | None = MSS, sack: bool = True,
                wscale: int | None = PEER_WSCALE) -> list:
    """A SYN's options in Linux's own layout (mss, sackOK, TS, nop, wscale) minus those off."""
    opts: list = []
    if mss is not None:
        opts.append(("MSS", mss))
    if sack and ts is not None:
        opts += [("SAckOK", b""), ("Timestamp", (ts, 0))]
    elif ts is not None:
        opts += [("NOP", None), ("NOP", None), ("Timestamp", (ts, 0))]
    elif sack:
        opts += [("NOP", None), ("NOP", None), ("SAckOK", b"")]
    if wscale is not None:
        opts += [("NOP", None), ("WScale", wscale)]
    return opts


def tcp_options(pkt) -> dict:
    """A segment's options as a dict (name -> value), EOL/NOP dropped."""
    out = {}
    for name, value in pkt[TCP].options:
        if name in ("NOP", "EOL"):
            continue
        out[name] = value
    return out


def option_kinds(pkt) -> list[str]:
    """Option names in wire order, NOPs included, trailing EOL padding dropped."""
    names = [name for name, _ in pkt[TCP].options]
    while names and names[-1] == "EOL":
        names.pop()
    return names


class Seg:
    """A segment the stack sent, with sequence numbers relative to the connection's ISNs."""

    def __init__(self, pkt, conn: Conn):
        self.pkt = pkt
        t = pkt[TCP]
        self.flags = str(t.flags)
        self.seq = seq_sub(t.seq, conn.isn)
        self.ack = seq_sub(t.ack, conn.peer_isn) if t.flags.A else None
        self.win = t.window
        self.urg = t.urgptr  # the urgent pointer field (meaningful when "U" is in flags)
        ip = pkt[IP]
        self.ecn = ip.tos & 3  # the IP ECN field (RFC 3168 §5): 0 Not-ECT, 2 ECT(0), 3 CE
        n = ip.len - 4 * ip.ihl - 4 * t.dataofs  # the TCP payload, Ethernet padding excluded
        self.data = bytes(t.payload)[:n]
        self.len = len(self.data)
        self.opts = tcp_options(pkt)
        ts = self.opts.get("Timestamp")
        self.tsval, self.tsecr = ts if ts else (None, None)
        self.sack = [
            (seq_sub(b[i], conn.peer_isn), seq_sub(b[i + 1], conn.peer_isn))
            for b in [self.opts.get("SAck", ())] for i in range(0, len(b), 2)
        ]
        self.end = self.seq + self.len + (1 if "S" in self.flags else 0) + (
            1 if "F" in self.flags else 0)

    def __repr__(self) -> str:
        extra = f" urg={self.urg}" if "U" in self.flags else ""
        extra += f" sack={self.sack}" if self.sack else ""
        return (f"<{self.flags} seq={self.seq} ack={self.ack} len={self.len} win={self.win}"
                f"{extra}>")


class Conn:
    """One TCP connection as the peer sees it (the scenario's side of packetdrill)."""

    def __init__(self, h, lport: int, pport: int, *, peer_isn: int = PEER_ISN, ts: bool = True,
                 sack: bool = True, wscale: int | None = PEER_WSCALE):
        self.h = h
        self.lport = lport  # the stack's port
        self.pport = pport  # the peer's port
        self.peer_isn = peer_isn
        self.isn = 0  # the stack's ISN, known from its SYN or SYN-ACK
        self.ts = ts  # timestamps negotiated
        self.sack = sack
        self.peer_wscale = wscale  # what the peer offered (None: no window scaling)
        self.wscale = None  # what the stack offered
        self.mss = None
        self.snd_nxt = 0  # relative: next sequence number the peer sends
        self.rcv_nxt = 0  # relative: next sequence number the peer expects
        self.last_tsval = 0  # the stack's latest TSval, echoed in TSecr
        self.ts_base = PEER_TS0
        self.sock = None  # the stack-side socket (accepted or connecting)
        self.listener = None

    # ---- peer clock ----
    def tsval(self) -> int:
        return (self.ts_base + int(self.h.now * 1000)) % SEQ_MOD

    # ---- building and sending segments ----
    def seg(self, flags: str = "A", seq: int | None = None, ack: int | None = None,
            data: bytes = b"", *, win: int | None = None, options: list | None = None,
            tsval: int | None = None, tsecr: int | None = None, sack: list | None = None,
            urg: int = 0, chksum: int | None = None, dataofs: int | None = None, tos: int = 0):
        """A segment from the peer, numbers relative; timestamps added when negotiated; IP TOS
        ``tos`` (its low two bits the ECN field)."""
        seq = self.snd_nxt if seq is None else seq
        ack = self.rcv_nxt if ack is None else ack
        if options is None:
            options = []
            if self.ts and "S" not in flags:
                options += [("NOP", None), ("NOP", None), ("Timestamp", (
                    self.tsval() if tsval is None else tsval,
                    self.last_tsval if tsecr is None else tsecr))]
            if sack:
                blocks = []
                for left, right in sack:
                    blocks += [seq_add(self.isn, left), seq_add(self.isn, right)]
                options += [("NOP", None), ("NOP", None), ("SAck", tuple(blocks))]
        if win is None:
            win = PEER_WIN
        kw = {}
        if chksum is not None:
            kw["chksum"] = chksum
        if dataofs is not None:
            kw["dataofs"] = dataofs
        t = TCP(sport=self.pport, dport=self.lport, flags=flags,
                seq=seq_add(self.peer_isn, seq),
                ack=seq_add(self.isn, ack) if "A" in flags else 0,
                window=win, options=options, urgptr=urg, **kw)
        pkt = IP(src=PEER_IP, dst=LOCAL_IP, tos=tos) / t
        if data:
            pkt = pkt / Raw(data)
        return pkt

    def send(self, flags: str = "A", seq: int | None = None, ack: int | None = None,
             data: bytes = b"", **kw) -> None:
        """Send a segment from the peer; snd_nxt moves past the data or FIN it carried (never for
        a RST, a SYN or a bare ACK, which probes use with out-of-window numbers)."""
        seq_ = self.snd_nxt if seq is None else seq
        self.h.send(self.seg(flags, seq_, ack, data, **kw))
        if "R" not in flags and (data or "F" in flags):
            end = seq_ + len(data) + ("F" in flags)
            if seq_sub(end, self.snd_nxt) > 0:
                self.snd_nxt = end

    # ---- what the stack sent ----
    def recv(self, strict: bool = True) -> list[Seg]:
        """Segments of this connection the stack sent since the last call.

        ``strict``: any other frame is an assertion error (scenarios expect a quiet wire).
        """
        out = []
        for p in self.h.recv():
            if TCP in p and p[IP].dst == PEER_IP and p[TCP].sport == self.lport and (
                    p[TCP].dport == self.pport):
                s = Seg(p, self)
                if s.tsval is not None:
                    self.last_tsval = s.tsval
                if s.ack is not None or "S" in s.flags or s.len or "F" in s.flags:
                    if seq_sub(s.end, self.rcv_nxt) > 0 and "R" not in s.flags:
                        self.rcv_nxt = s.end
                out.append(s)
            elif strict:
                raise AssertionError(f"unexpected frame on the wire: {p.summary()}")
        return out

    def recv_one(self) -> Seg:
        segs = self.recv()
        assert len(segs) == 1, f"expected one segment, got {segs}"
        return segs[0]

    def burst(self) -> list[Seg]:
        """What the stack sends now and within 20 ms (scenarios with a 100 ms RTT, so far below
        its loss probe): Linux's TCP small queues may hold the last segments of a burst until
        the TAP device has taken the ones before, more so on a loaded machine."""
        segs = self.recv()
        self.h.advance(0.02)
        return segs + self.recv()

    def expect_nothing(self) -> None:
        segs = self.recv()
        assert segs == [], f"expected silence, got {segs}"



# ---- handshakes ----
def listen(h, port: int, backlog: int = 16):
    s = h.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LOCAL_IP, port))
    s.listen(backlog)
    return s


def syn_ack_of(h, port: int, *, pport: int = 40000, options: list | None = None,
               win: int = PEER_WIN, peer_isn: int = PEER_ISN, listener=None,
               flags: str = "S", tos: int = 0) -> tuple[Conn, Seg]:
    """Send a SYN (control bits ``flags``, IP TOS ``tos``) to a listening ``port`` and return
    (conn, the stack's SYN-ACK, which may carry ECE: RFC 3168 §6.1.1)."""
    opts = syn_options() if options is None else options
    names = [n for n, _ in opts]
    c = Conn(h, port, pport, peer_isn=peer_isn, ts="Timestamp" in names,
             sack="SAckOK" in names,
             wscale=dict((n, v) for n, v in opts if n == "WScale").get("WScale"))
    c.listener = listener
    h.send(IP(src=PEER_IP, dst=LOCAL_IP, tos=tos) / TCP(
        sport=pport, dport=port, flags=flags, seq=peer_isn, window=win, options=opts))
    c.snd_nxt = 1
    segs = [p for p in h.recv()]
    synacks = [p for p in segs if TCP in p and p[TCP].flags in ("SA", "SAE")]
    assert len(synacks) == 1 and len(segs) == 1, f"expected one SYN-ACK, got {segs}"
    p = synacks[0]
    c.isn = p[TCP].seq
    sa = Seg(p, c)
    c.rcv_nxt = 1
    if sa.tsval is not None:
        c.last_tsval = sa.tsval
    c.ts = c.ts and sa.tsval is not None
    c.wscale = sa.opts.get("WScale")
    c.mss = sa.opts.get("MSS")
    return c, sa


def accept(listener):
    """accept() -> the new socket, made non-blocking too (the stdlib's accept() returns a
    blocking socket whatever the listener's mode; a blocking call would hang a virtual clock)."""
    sock = listener.accept()[0]
    sock.setblocking(False)
    return sock


def handshake_passive(h, port: int = 8080, *, pport: int = 40000, options: list | None = None,
                      win: int = PEER_WIN, ack_win: int | None = None,
                      listener=None, rtt: float = 0.0, syn_flags: str = "S") -> Conn:
    """listen(port); SYN ->; <- SYN-ACK; ACK ->; accept().  ``c.sock`` is the accepted socket.

    ``rtt``: seconds the peer waits before its ACK, i.e. the first RTT sample the stack takes
    (with no wait, Linux measures a few ms of real time and fsdp 0).
    """
    if listener is None:
        listener = listen(h, port)
    c, sa = syn_ack_of(h, port, pport=pport, options=options, win=win, listener=listener,
                       flags=syn_flags)
    c.synack = sa
    if rtt:
        h.advance(rtt)
    c.send("A", 1, 1, win=ack_win)
    c.sock = accept(listener)
    c.listener = listener
    assert c.recv() == []
    return c


def connect_start(h, pport: int = 9000, *, lport: int | None = None) -> tuple[Conn, Seg]:
    """An active open toward the peer: connect() -> EINPROGRESS; return (conn, the stack's SYN)."""
    s = h.socket()
    if lport is not None:
        s.bind((LOCAL_IP, lport))
    err = s.connect_ex((PEER_IP, pport))
    assert err == errno.EINPROGRESS, errno.errorcode.get(err, err)
    frames = h.recv()
    assert len(frames) == 1 and TCP in frames[0] and frames[0][TCP].flags in ("S", "SEC"), frames
    p = frames[0]
    c = Conn(h, p[TCP].sport, pport)
    c.sock = s
    c.isn = p[TCP].seq
    syn = Seg(p, c)
    c.rcv_nxt = 1  # the peer's SYN-ACK acknowledges the stack's SYN
    c.wscale = syn.opts.get("WScale")
    c.mss = syn.opts.get("MSS")
    if syn.tsval is not None:
        c.last_tsval = syn.tsval
    c.syn = syn
    return c, syn


def complete_connect(c: Conn, flags: str = "SA") -> Seg:
    """The peer's SYN-ACK (control bits ``flags``) to a pending connect() (``connect_start``);
    the stack answers with the ACK that completes the open, which is returned."""
    opts = [(n, (v[0], c.syn.tsval) if n == "Timestamp" else v)
            for n, v in syn_options(c.tsval())]
    c.send(flags, 0, 1, options=opts)
    c.snd_nxt = 1  # (the SYN-ACK's SYN takes sequence number 0)
    (ack,) = c.recv()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 1, 1)
    assert connected(c.sock)
    return ack


def handshake_active(h, pport: int = 9000, *, options: list | None = None,
                     win: int = PEER_WIN, rtt: float = 0.0) -> Conn:
    """connect(); <- SYN; SYN-ACK ->; <- ACK.  ``c.sock`` is the connected socket."""
    c, syn = connect_start(h, pport)
    if rtt:
        h.advance(rtt)
    opts = syn_options(c.tsval() if syn.tsval is not None else None) if options is None else [
        (n, (v[0], syn.tsval) if n == "Timestamp" else v) for n, v in options]
    if options is None and syn.tsval is not None:
        opts = [(n, (v[0], syn.tsval) if n == "Timestamp" else v) for n, v in opts]
    names = [n for n, _ in opts]
    c.ts = "Timestamp" in names and syn.tsval is not None
    c.sack = "SAckOK" in names
    c.peer_wscale = dict(opts).get("WScale") if "WScale" in names else None
    c.synack_tsval = dict(opts).get("Timestamp", (None,))[0]
    c.send("SA", 0, 1, win=win, options=opts)
    c.snd_nxt = 1  # (the SYN-ACK's SYN takes sequence number 0)
    ack = c.recv_one()
    assert (ack.flags, ack.seq, ack.ack) == ("A", 1, 1), ack
    assert connected(c.sock)
    c.handshake_ack = ack
    return c


def connected(sock) -> bool:
    """A non-blocking connect() has completed successfully."""
    return sock.connect_ex((PEER_IP, sock.getpeername()[1])) in (0, errno.EISCONN)


def read_all(sock, limit: int = 1 << 20) -> bytes:
    """Everything readable now from a non-blocking socket (b'' also at EOF)."""
    out = b""
    while len(out) < limit:
        try:
            chunk = sock.recv(limit - len(out))
        except BlockingIOError:
            break
        if not chunk:
            break
        out += chunk
    return out


def watch(c: Conn, duration: float, step: float = 0.01) -> list[tuple[float, Seg]]:
    """Let ``duration`` seconds pass in ``step``s; return (time since the call, segment) for
    every segment of ``c`` the stack sent meanwhile (times are upper bounds, +step)."""
    t0 = c.h.now
    out = []
    while True:
        # read the clock once per step: on the Linux harness it is real time and moves on
        # between two reads, so a second read could make the step negative
        left = duration - (c.h.now - t0)
        if left <= 1e-9:
            break
        c.h.advance(min(step, left))
        out += [(c.h.now - t0, s) for s in c.recv()]
    return out
