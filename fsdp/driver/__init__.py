"""NIC queue backends (DESIGN.md §3).

``open_nic(uri, n_queues, mac, **opts)`` attaches a port with ``n_queues`` rx/tx queue pairs:

* ``sim:NAME`` — the embedded default: a simulated multi-queue NIC on a shared-memory switch
  (:mod:`fsdp.driver.sim`).
* ``tap:IF``, ``xdp:IF``, ``afpacket:IF``, ``verbs:DEV`` — not implemented yet (OSError ENOTSUP).

The per-core loop uses ``port.queue(i)`` with :mod:`fsdp.driver.api`'s ``nic_rx_burst``,
``nic_tx_burst`` and ``nic_next_event``.  Software Toeplitz RSS lives in
:mod:`fsdp.driver.toeplitz`, pcap capture in :mod:`fsdp.driver.pcap`.
"""

from __future__ import annotations

import errno
import re

_URI_RE = re.compile(r"^([a-z]+):(.+)$")
_KNOWN_SCHEMES = ("sim", "tap", "xdp", "afpacket", "verbs")
_SIM_OPTIONS = frozenset(
    {
        "max_ports",
        "max_queues",
        "ring_slots",
        "fdir_size",
        "promisc",
        "rx_csum",
        "tx_csum",
        "rss_key",
        "reta",
        "delay_slots",
        "pool_frames",
    }
)


def parse_nic_uri(uri: str) -> tuple[str, str]:
    """``"sim:lab"`` -> ``("sim", "lab")``; ValueError with one clear line for anything else."""
    if not isinstance(uri, str):
        raise ValueError(f"NIC URI must be a string like 'sim:NAME', not {uri!r}")
    m = _URI_RE.match(uri.strip())
    if m is None:
        raise ValueError(
            f"bad NIC URI {uri!r}: expected SCHEME:NAME, SCHEME one of {', '.join(_KNOWN_SCHEMES)}"
        )
    scheme, rest = m.group(1), m.group(2)
    if scheme not in _KNOWN_SCHEMES:
        raise ValueError(
            f"unknown NIC scheme {scheme!r} in {uri!r}: expected one of {', '.join(_KNOWN_SCHEMES)}"
        )
    return scheme, rest


def open_nic(uri: str, n_queues: int, mac, **opts):
    """Attach a port to the NIC named by ``uri`` with ``n_queues`` queue pairs and unicast
    ``mac`` (48-bit int or 'xx:xx:xx:xx:xx:xx').  Returns the backend's port object."""
    scheme, rest = parse_nic_uri(uri)
    if scheme == "sim":
        from fsdp.driver.sim import _check_name, attach_named

        _check_name(rest)
        unknown = sorted(set(opts) - _SIM_OPTIONS)
        if unknown:
            raise TypeError(f"open_nic({uri!r}) got unexpected option(s): {', '.join(unknown)}")
        port = attach_named(rest, n_queues, mac, **opts)
        port.uri = f"sim:{rest}"
        return port
    raise OSError(
        errno.ENOTSUP, f"NIC backend {scheme!r} ({uri}) is not implemented yet; use sim:NAME"
    )
