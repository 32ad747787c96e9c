"""open_nic(), named sim wires in one process, and every way to call them wrong."""

import errno
import os

import numpy as np
import pytest

from fsdp.driver import open_nic, parse_nic_uri
from fsdp.driver.sim import SimWire

from ._sim import MAC_A, MAC_B, MAC_C, small_wire, udp_frame

SMALL = {"max_ports": 4, "max_queues": 2, "ring_slots": 16, "fdir_size": 16}


@pytest.fixture(autouse=True)
def sim_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FSDP_SIM_DIR", str(tmp_path))
    return tmp_path


def test_open_named_wire_and_exchange(sim_dir):
    with open_nic("sim:lab", 2, MAC_A, **SMALL) as a, open_nic("sim:lab", 1, MAC_B) as b:
        assert a.wire is b.wire  # one mapping per name per process
        assert (a.port_id, b.port_id) == (0, 1)
        assert a.uri == "sim:lab" and a.n_queues == 2 and a.mac == MAC_A
        assert os.path.exists(sim_dir / "lab")
        f = udp_frame(MAC_A, MAC_B, "10.0.0.1", "10.0.0.2", 1, 2)
        a.inject(f)
        assert b.drain() == [f]
        caps = a.capabilities
        assert caps["rss"] and caps["flow_director"] and caps["arp_to_all_queues"]
        assert caps["multi_process"] and caps["reta_size"] == 128
        assert a.held_frames(0) == 0
    assert not os.path.exists(sim_dir / "lab")  # the last port left: the file is gone
    a.close()  # idempotent


def test_later_attach_reads_geometry_and_mismatch_raises():
    a = open_nic("sim:geo", 1, MAC_A, **SMALL)
    try:
        assert a.wire.geometry["max_queues"] == 2
        with pytest.raises(ValueError, match="max_ports=4"):
            open_nic("sim:geo", 1, MAC_B, max_ports=8)
        with pytest.raises(ValueError, match="n_queues"):
            open_nic("sim:geo", 3, MAC_B)
        b = open_nic("sim:geo", 2, "02:00:00:00:00:02")
        assert b.mac == MAC_B
        b.close()
    finally:
        a.close()
    # nobody uses it any more: a new geometry is fine
    c = open_nic("sim:geo", 1, MAC_A, max_ports=2, max_queues=1, ring_slots=8)
    assert c.wire.geometry["max_ports"] == 2
    c.close()


def test_duplicate_mac_and_full_wire():
    ports = [open_nic("sim:full", 1, MAC_A, **SMALL)]
    try:
        with pytest.raises(OSError) as e:
            open_nic("sim:full", 1, MAC_A)
        assert e.value.errno == errno.EADDRINUSE
        ports += [open_nic("sim:full", 1, MAC_A + i) for i in range(1, 4)]
        with pytest.raises(OSError) as e:
            open_nic("sim:full", 1, MAC_A + 9)
        assert e.value.errno == errno.ENOSPC
    finally:
        for p in ports:
            p.close()


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "sim",
        "sim:",
        ":lab",
        "SIM:lab",
        "foo:bar",
        "sim:bad/name",
        "sim:.hidden",
        "sim:" + "x" * 65,
        "sim:-x",
        None,
        42,
        b"sim:lab",
    ],
)
def test_bad_uris_raise_value_error(uri):
    with pytest.raises(ValueError):
        open_nic(uri, 1, MAC_A)


@pytest.mark.parametrize("uri", ["tap:tap0", "xdp:eth0", "afpacket:eth0", "verbs:mlx5_0"])
def test_backends_not_implemented_yet(uri):
    with pytest.raises(OSError, match="not implemented yet") as e:
        open_nic(uri, 1, MAC_A)
    assert e.value.errno == errno.ENOTSUP


def test_parse_nic_uri():
    assert parse_nic_uri("sim:lab") == ("sim", "lab")
    assert parse_nic_uri("xdp:eth0") == ("xdp", "eth0")


@pytest.mark.parametrize(
    "args,kw",
    [
        ((0, MAC_A), {}),
        ((1.5, MAC_A), {}),
        ((True, MAC_A), {}),
        ((1, 0), {}),
        ((1, 1 << 48), {}),
        ((1, 0x010000000001), {}),  # group address
        ((1, "ff:ff:ff:ff:ff:ff"), {}),
        ((1, "not a mac"), {}),
        ((1, None), {}),
        ((1, MAC_A), {"max_ports": 1}),
        ((1, MAC_A), {"ring_slots": 100}),
        ((1, MAC_A), {"rss_key": b"short"}),
        ((1, MAC_A), {"reta": [0] * 5}),
        ((1, MAC_A), {"delay_slots": 0}),
    ],
)
def test_bad_attach_arguments(args, kw):
    with pytest.raises(ValueError):
        open_nic("sim:args", *args, **{**SMALL, **kw})
    assert os.listdir(os.environ["FSDP_SIM_DIR"]) == []  # no wire file left behind


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="colour"):
        open_nic("sim:opts", 1, MAC_A, colour="blue")


def test_port_method_arguments_are_checked():
    w = small_wire()
    a = w.attach(2, MAC_A)
    with pytest.raises(ValueError):
        a.queue(2)
    with pytest.raises(ValueError):
        a.set_rss(key=b"x" * 39)
    with pytest.raises(ValueError):
        a.set_rss(reta=np.full(128, 2))
    with pytest.raises(ValueError):
        a.set_rss(reta=np.zeros(64, int))
    with pytest.raises(ValueError):
        a.add_flow_rule("10.0.0.1", "10.0.0.2", 1, 2, 6, 2)
    with pytest.raises(ValueError):
        a.add_flow_rule("10.0.0.300", "10.0.0.2", 1, 2, 6, 0)
    with pytest.raises(ValueError):
        a.add_flow_rule("10.0.0.1", "10.0.0.2", 70000, 2, 6, 0)
    with pytest.raises(ValueError):
        a.add_flow_rule("10.0.0.1", "10.0.0.2", 1, 2, 256, 0)
    with pytest.raises(ValueError):
        a.inject(bytes(2000))
    assert a.add_flow_rule(0x0A000001, "10.0.0.2", 1, 2, 6, 1)
    a.close()
    with pytest.raises(ValueError, match="closed"):
        a.queue(0)
    with pytest.raises(ValueError, match="closed"):
        a.set_faults(drop=0.5)
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.attach(1, MAC_B)


def test_private_wire_close_closes_its_ports():
    w = SimWire.private(max_ports=2, max_queues=1, ring_slots=4, name="h")
    a = w.attach(1, MAC_A)
    b = w.attach(1, MAC_C)
    assert a.uri == "sim:h"
    w.close()
    assert a.closed and b.closed
    w.close()
