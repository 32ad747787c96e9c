"""``fsdp.testing_linux.LinuxHarness``: the ``fsdp.testing.Harness`` API with the Linux kernel as
the stack under test (CONTRACT.md §2), so that a conformance scenario can be proven against Linux's
own TCP before fsdp is held to it.

Each harness owns a fresh network namespace (``fsdp-lx-<pid>-<n>``) holding one TAP device
(``IFF_TAP | IFF_NO_PI``).  The harness keeps the TAP's file descriptor: that side is the *peer*
the test plays.  ``send()`` writes a frame to it (the kernel processes it synchronously in the
``write()``), ``recv()`` reads what the kernel transmitted, ``socket()`` makes a real
``socket.socket`` inside the namespace.

Differences from the fsdp harness that a scenario must allow for:

* Time is real.  ``advance(s)`` sleeps ``s`` seconds, ``now`` is wall-clock seconds since the
  harness was built, and Linux timers (delayed ACK >= 40 ms, RTO, TLP, TIME_WAIT) run on their
  own.  Assert "within [a, b]" windows, never exact instants.
* ``send()`` returns after the TAP has been quiet for ``settle`` seconds (default 5 ms, at most
  ``max_settle``); frames seen meanwhile are kept for the next ``recv()``, which itself settles
  for 2 ms.  A TAP ``write()`` runs the kernel's receive path to completion (answers included)
  before it returns, so a short window suffices and keeps the 40 ms delayed-ACK timer from being
  mistaken for an immediate reaction; anything timer-driven, even a 2-jiffy (8 ms) timer, needs
  ``advance()`` -- as it does on fsdp's virtual clock.
* ``socket()`` sockets are non-blocking, but ``accept()`` returns a *blocking* socket as in the
  stdlib: set it non-blocking in the test (the conformance helpers do).
* A frame shorter than an Ethernet header cannot be written to a TAP (the kernel answers
  EINVAL); ``send()`` treats it as dropped on the wire.
* ISNs, timestamp clocks and ephemeral ports are random: read them from what the kernel sent.

The namespace is configured as fsdp's documented defaults say (MTU 1500, window scaling, SACK,
timestamps, initial RTO 1 s, minimum RTO 200 ms) and otherwise as a stock Linux 6.x host; the
exact profile is :data:`SYSCTL_DEFAULTS` (see tests/conformance/LINUX_NOTES.md).  No noise is
expected on the TAP: IPv6 is disabled before the device exists (no router solicitations, MLD or
DAD), the peer is a permanent neighbour (no ARP), and nothing joins a multicast group (no IGMP).
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import fcntl
import ipaddress
import itertools
import os
import select
import socket as _socket
import struct
import subprocess
import sys
import time
import weakref

__all__ = ["LinuxHarness", "LinuxHarnessUnavailable", "SYSCTL_DEFAULTS", "SYSCTL_OPTIONS"]

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

TAP_NAME = "fsdp0"  # one device per private namespace, so the name never collides
NETNS_PREFIX = "fsdp-lx-"
NETNS_DIR = "/run/netns"
_MAX_FRAME = 65536

# The namespace's TCP profile (written explicitly so results never depend on the host's
# settings).  Stock Linux 6.x values, except where fsdp's documented defaults differ:
# NewReno congestion control (DESIGN.md §4; a host default of bbr would pace).
SYSCTL_DEFAULTS: dict[str, str] = {
    "net/ipv4/tcp_timestamps": "1",
    "net/ipv4/tcp_sack": "1",
    "net/ipv4/tcp_dsack": "1",
    "net/ipv4/tcp_window_scaling": "1",
    "net/ipv4/tcp_ecn": "2",
    "net/ipv4/tcp_congestion_control": "reno",
    "net/ipv4/tcp_rmem": "4096 131072 33554432",
    "net/ipv4/tcp_wmem": "4096 16384 4194304",
    "net/ipv4/tcp_syncookies": "1",
    "net/ipv4/tcp_early_retrans": "3",
    "net/ipv4/tcp_recovery": "1",
    "net/ipv4/tcp_frto": "2",
    "net/ipv4/tcp_reordering": "3",
    "net/ipv4/tcp_syn_retries": "6",
    "net/ipv4/tcp_synack_retries": "5",
    "net/ipv4/tcp_fin_timeout": "60",
    "net/ipv4/tcp_slow_start_after_idle": "1",
    "net/ipv4/tcp_fastopen": "0",
    "net/ipv4/tcp_autocorking": "1",
    "net/ipv4/tcp_mtu_probing": "0",
    "net/ipv4/tcp_rfc1337": "0",
    "net/ipv4/tcp_no_metrics_save": "1",
    "net/ipv4/tcp_challenge_ack_limit": "2147483647",
    "net/ipv4/tcp_invalid_ratelimit": "500",
    "net/ipv4/ip_default_ttl": "64",
    "net/ipv4/ip_no_pmtu_disc": "0",
    "net/ipv4/icmp_echo_ignore_broadcasts": "1",
    # Linux 6.x retransmits the first 4 SYNs 1 s apart (linear, the default 4); fsdp documents
    # the classic RFC 6298 (5.5) doubling (1, 2, 4 ... s), which is this sysctl at 0.
    "net/ipv4/tcp_syn_linear_timeouts": "0",
}
# Sysctls an older kernel may not have (skipped there unless asked for by an option).
SYSCTL_OPTIONAL = {"net/ipv4/tcp_syn_linear_timeouts", "net/ipv4/tcp_rto_min_us",
                   "net/ipv4/tcp_rto_max_ms", "net/ipv4/tcp_pingpong_thresh"}

# Harness options -> sysctl paths (relative to /proc/sys).  Linux names as in ip-sysctl.rst, plus
# the fsdp option names that have a Linux equivalent.  Anything else is a TypeError.
SYSCTL_OPTIONS: dict[str, str] = {
    name: f"net/ipv4/{name}"
    for name in (
        "tcp_timestamps", "tcp_sack", "tcp_dsack", "tcp_window_scaling", "tcp_ecn",
        "tcp_congestion_control", "tcp_rmem", "tcp_wmem", "tcp_syncookies", "tcp_early_retrans",
        "tcp_recovery", "tcp_frto", "tcp_reordering", "tcp_syn_retries", "tcp_synack_retries",
        "tcp_fin_timeout", "tcp_slow_start_after_idle", "tcp_fastopen", "tcp_autocorking",
        "tcp_mtu_probing", "tcp_rfc1337", "tcp_no_metrics_save", "tcp_challenge_ack_limit",
        "tcp_invalid_ratelimit", "tcp_max_syn_backlog", "tcp_abort_on_overflow", "tcp_retries1",
        "tcp_retries2", "tcp_orphan_retries", "tcp_keepalive_time", "tcp_keepalive_intvl",
        "tcp_keepalive_probes", "tcp_tw_reuse", "tcp_max_tw_buckets", "tcp_moderate_rcvbuf",
        "tcp_adv_win_scale", "tcp_base_mss", "tcp_min_snd_mss", "tcp_rto_min_us",
        "tcp_comp_sack_nr", "tcp_comp_sack_delay_ns", "tcp_thin_linear_timeouts",
        "tcp_notsent_lowat", "tcp_tso_win_divisor", "tcp_syn_linear_timeouts", "ip_default_ttl",
        "ip_no_pmtu_disc", "ipfrag_time",
        "icmp_echo_ignore_broadcasts", "icmp_ratelimit", "icmp_msgs_per_sec", "icmp_msgs_burst",
    )
}
SYSCTL_OPTIONS.update({
    "ttl": "net/ipv4/ip_default_ttl",
    "icmp_burst": "net/ipv4/icmp_msgs_burst",
    "somaxconn": "net/core/somaxconn",
    "tcp_rto_max_ms": "net/ipv4/tcp_rto_max_ms",
    "tcp_pingpong_thresh": "net/ipv4/tcp_pingpong_thresh",
})
# fsdp options (fsdp/core/config.py) that Linux has as link or route attributes, not sysctls.
LINK_OPTIONS = ("mtu", "tcp_init_cwnd", "tcp_delayed_ack", "tcp_rto_max")

_libc = ctypes.CDLL(None, use_errno=True)
_ids = itertools.count()
_live: weakref.WeakSet[LinuxHarness] = weakref.WeakSet()


class LinuxHarnessUnavailable(OSError):
    """This host cannot run a LinuxHarness (not root, no /dev/net/tun, no network namespaces)."""


def _unavailable(reason: str):
    """Skip the running test (under pytest) or raise LinuxHarnessUnavailable."""
    if "pytest" in sys.modules:
        import pytest

        print(f"LinuxHarness unavailable: {reason}")
        pytest.skip(f"LinuxHarness unavailable: {reason}")
    raise LinuxHarnessUnavailable(reason)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def _ip(*args: str, stdin: str | None = None) -> None:
    r = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> list[str]:
    """Delete ``fsdp-lx-<pid>-*`` namespaces whose process is gone (a killed test run)."""
    removed = []
    try:
        names = os.listdir(NETNS_DIR)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(NETNS_PREFIX):
            continue
        try:
            pid = int(name[len(NETNS_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            removed.append(name)
    return removed


def _check_available() -> None:
    if os.geteuid() != 0:
        _unavailable("needs root (network namespaces and TAP devices)")
    if sys.platform != "linux":
        _unavailable("needs Linux")
    if not os.path.exists("/dev/net/tun"):
        _unavailable("/dev/net/tun is missing (no TUN/TAP driver)")
    if not os.path.exists("/proc/thread-self/ns/net"):
        _unavailable("the kernel has no network namespaces")
    try:
        subprocess.run(["ip", "-V"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        _unavailable("iproute2 (`ip`) is not installed")


class LinuxHarness:
    """The Linux kernel under test in a private network namespace, the test playing the peer."""

    def __init__(
        self,
        ip: str = "192.0.2.1",
        mac: str = "02:00:00:00:00:01",
        peer_ip: str = "192.0.2.2",
        peer_mac: str = "02:00:00:00:00:02",
        *,
        settle: float = 0.005,
        max_settle: float = 0.25,
        **options,
    ):
        sysctls = dict(SYSCTL_DEFAULTS)
        self.mtu = int(options.pop("mtu", 1500))
        self._route_attrs: list[str] = []
        if "tcp_init_cwnd" in options:  # RFC 6928 initial window: the route's initcwnd
            self._route_attrs += ["initcwnd", str(int(options.pop("tcp_init_cwnd")))]
        if "tcp_delayed_ack" in options:  # 0: the route's quickack (ACK every segment at once)
            if not options.pop("tcp_delayed_ack"):
                self._route_attrs += ["quickack", "1"]
        if "tcp_rto_max" in options:  # fsdp takes seconds, Linux milliseconds
            options["tcp_rto_max_ms"] = int(round(float(options.pop("tcp_rto_max")) * 1000))
        self._asked = {SYSCTL_OPTIONS.get(name) for name in options}
        for name, value in options.items():
            if name not in SYSCTL_OPTIONS:
                raise TypeError(f"unexpected LinuxHarness option {name!r}")
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, (tuple, list)):
                value = " ".join(str(v) for v in value)
            sysctls[SYSCTL_OPTIONS[name]] = str(value)
        self.ip = str(ipaddress.IPv4Address(ip))
        self.peer_ip = str(ipaddress.IPv4Address(peer_ip))
        if mac.lower() == peer_mac.lower():
            raise ValueError("the stack and the peer need different MAC addresses")
        self.mac = mac.lower()
        self.peer_mac = peer_mac.lower()
        self.settle = settle
        self.max_settle = max_settle
        self.ifname = TAP_NAME
        self.netns = f"{NETNS_PREFIX}{os.getpid()}-{next(_ids)}"
        self._closed = False
        self._ns_fd = -1
        self._tap_fd = -1
        self._sockets: list[_socket.socket] = []
        self._inbox: list[bytes] = []
        _check_available()
        remove_stale_namespaces()
        self._created = False
        try:
            self._build(sysctls)
        except BaseException:
            self.close()
            raise
        _live.add(self)
        self._t0 = time.monotonic()

    # ---- construction ----
    def _build(self, sysctls: dict[str, str]) -> None:
        try:
            _ip("netns", "add", self.netns)
        except OSError as e:
            _unavailable(f"cannot create a network namespace: {e}")
        self._created = True
        self._ns_fd = os.open(os.path.join(NETNS_DIR, self.netns), os.O_RDONLY | os.O_CLOEXEC)
        with self._inside():
            # Before the device exists, so it never gets an IPv6 address (no RS/MLD/DAD noise).
            for path in ("net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"):
                self._write_sysctl(path, "1", missing_ok=True)
            for path, value in sysctls.items():
                self._write_sysctl(path, value, missing_ok=path in SYSCTL_OPTIONAL
                                   and path not in self._asked)
            try:
                fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                _unavailable(f"cannot open /dev/net/tun: {e}")
            self._tap_fd = fd
            ifr = struct.pack("16sH22x", self.ifname.encode(), IFF_TAP | IFF_NO_PI)
            try:
                fcntl.ioctl(fd, TUNSETIFF, ifr)
            except OSError as e:
                _unavailable(f"cannot create a TAP device: {e}")
            # No offloads: every frame carries its full checksum and fits the MTU.
            fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        os.set_blocking(self._tap_fd, False)
        a, b = int(ipaddress.IPv4Address(self.ip)), int(ipaddress.IPv4Address(self.peer_ip))
        prefix = min(24, 32 - (a ^ b).bit_length())
        dev = self.ifname
        net = ipaddress.IPv4Interface(f"{self.ip}/{prefix}").network
        cmds = [
            "link set dev lo up",
            f"link set dev {dev} address {self.mac} mtu {self.mtu}",
            f"addr add {self.ip}/{prefix} dev {dev}",
            f"link set dev {dev} up",
            f"neigh replace {self.peer_ip} lladdr {self.peer_mac} dev {dev} nud permanent",
        ]
        if self._route_attrs:
            cmds.append(f"route replace {net} dev {dev} proto kernel scope link src {self.ip} "
                        + " ".join(self._route_attrs))
        _ip("-n", self.netns, "-batch", "-", stdin="\n".join(cmds) + "\n")
        # A plain FIFO: a host default of fq would pace TCP and shift timings.
        subprocess.run(["tc", "-n", self.netns, "qdisc", "replace", "dev", dev, "root", "pfifo"],
                       capture_output=True)

    def _write_sysctl(self, path: str, value: str, missing_ok: bool = False) -> None:
        """Write /proc/sys/<path> as seen from the namespace (the calling thread must be in it)."""
        try:
            with open(f"/proc/sys/{path}", "w") as f:
                f.write(value)
        except FileNotFoundError:
            if not missing_ok:
                raise
        except OSError as e:
            raise OSError(e.errno, f"sysctl {path}={value!r}: {e.strerror}") from None

    def sysctl(self, path: str) -> str:
        """Read a sysctl as seen inside the namespace, e.g. ``h.sysctl("net/ipv4/tcp_rmem")``."""
        with self._inside(), open(f"/proc/sys/{path}") as f:
            return f.read().strip()

    class _Inside:
        def __init__(self, h: LinuxHarness):
            self.h = h
            self.orig = -1

        def __enter__(self):
            self.orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(self.h._ns_fd)
            except BaseException:
                os.close(self.orig)
                raise

        def __exit__(self, *exc):
            try:
                _setns(self.orig)
            finally:
                os.close(self.orig)

    def _inside(self) -> LinuxHarness._Inside:
        """Context manager: run the calling thread inside the harness's namespace."""
        return LinuxHarness._Inside(self)

    # ---- the contract ----
    @property
    def now(self) -> float:
        """Real time in seconds since the harness was built."""
        return time.monotonic() - self._t0

    def socket(self, family=None, type=None, proto=0) -> _socket.socket:
        """A NON-BLOCKING ``socket.socket`` of the kernel inside the namespace."""
        self._check_open()
        family = _socket.AF_INET if family is None else family
        type = _socket.SOCK_STREAM if type is None else type
        with self._inside():
            sock = _socket.socket(family, type, proto)
        sock.setblocking(False)
        self._sockets.append(sock)
        return sock

    def send(self, pkt) -> None:
        """Write ``pkt`` to the TAP as the peer, then wait until Linux has been quiet a moment."""
        self._check_open()
        frame = self._frame_bytes(pkt)
        try:
            os.write(self._tap_fd, frame)
        except OSError as e:
            # A TAP refuses frames shorter than an Ethernet header: on a real wire no NIC would
            # deliver them either, so they are dropped here.
            if e.errno != errno.EINVAL:
                raise
        self._drain(self.settle, self.max_settle)

    def recv(self) -> list:
        """The Ethernet frames (Scapy ``Ether``) Linux sent since the last call, in order."""
        from scapy.layers.l2 import Ether

        return [Ether(b) for b in self.recv_bytes()]

    def recv_bytes(self) -> list[bytes]:
        self._check_open()
        self._drain(min(self.settle, 0.002), self.max_settle)
        out, self._inbox = self._inbox, []
        return out

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of real time pass (Linux timers fire on their own meanwhile)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._check_open()
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._drain(left, left)  # keep the TAP queue short while waiting

    def audit(self) -> None:
        """Nothing to audit in the kernel (API parity with fsdp's Harness)."""

    def close(self) -> None:
        """Close the sockets and the TAP, delete the namespace.  Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass
        self._sockets.clear()
        if self._tap_fd >= 0:
            os.close(self._tap_fd)
            self._tap_fd = -1
        if self._ns_fd >= 0:
            os.close(self._ns_fd)
            self._ns_fd = -1
        if self._created:
            self._created = False
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        _live.discard(self)

    def __enter__(self) -> LinuxHarness:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LinuxHarness {self.netns} {self.ip}>"

    # ---- helpers ----
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the harness is closed")

    def _drain(self, quiet: float, cap: float) -> None:
        """Read frames until none arrived for ``quiet`` seconds (or ``cap`` seconds passed)."""
        start = time.monotonic()
        poller = select.poll()
        poller.register(self._tap_fd, select.POLLIN)
        while True:
            self._read_pending()
            left = min(quiet, cap - (time.monotonic() - start))
            if left <= 0:
                return
            if not poller.poll(max(1, int(left * 1000 + 0.999))):
                return  # quiet for ``quiet`` seconds (or out of time)

    def _read_pending(self) -> None:
        while True:
            try:
                frame = os.read(self._tap_fd, _MAX_FRAME)
            except BlockingIOError:
                return
            if not frame:
                return
            self._inbox.append(frame)

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


@atexit.register
def _close_all() -> None:
    for h in list(_live):
        try:
            h.close()
        except Exception:
            pass
