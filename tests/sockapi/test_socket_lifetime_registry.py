"""A socket's number is found again (selectors, asyncio pass bare numbers) while it is open, and
forgotten once it is released, even when its stack closed first."""

import os

import fsdp
from fsdp.sockapi import socket as sockmod
from fsdp.sockapi.socket import socket_from_fileno


def test_a_numbered_socket_is_found_until_released_then_forgotten():
    with fsdp.Stack(nic=f"sim:reg-{os.getpid()}", ip="10.8.0.1/24") as a:
        s = a.socket()
        fd = s.fileno()
        assert socket_from_fileno(fd) is s
        s.close()
        assert socket_from_fileno(fd) is None and fd not in sockmod._by_fileno
        t = a.socket()
        fd2 = t.fileno()
        del t  # dropped unclosed: __del__ closes it
        assert fd2 not in sockmod._by_fileno
        u = a.socket()
        fd3 = u.fileno()
    u.close()  # after its stack closed
    assert fd3 not in sockmod._by_fileno
