"""``fsdp run``: start a program with transparent mode installed in it (see
:mod:`fsdp.transparent`)."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import sys

_BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot")
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)?)?$")


class RunError(Exception):
    """A bad ``fsdp run`` command line: one line for stderr."""


def program_argv(argv: list[str]) -> list[str]:
    """The command to exec: a bare ``python``/``python3`` is this interpreter (the one fsdp is
    installed in), a ``.py`` file runs under it, anything else runs as given (its own
    interpreter must be able to import fsdp)."""
    if not argv:
        raise RunError("no program given: fsdp run [--nic URI --ip CIDR] -- PROGRAM [ARGS]")
    prog = argv[0]
    if os.sep not in prog and _PYTHON_NAME.match(prog):
        return [sys.executable, *argv[1:]]
    if prog.endswith(".py"):
        if not os.path.isfile(prog):
            raise RunError(f"no such file: {prog}")
        return [sys.executable, *argv]
    found = shutil.which(prog)
    if found is None:
        raise RunError(f"program not found: {prog}")
    return [found, *argv[1:]]


def program_env(nic: str | None, ip: str | None, cores: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if nic is not None:
        from fsdp.driver import parse_nic_uri

        try:
            parse_nic_uri(nic)  # the same check the stack makes, but before the program runs
        except ValueError as e:
            raise RunError(f"--nic: {e}") from None
        env["FSDP_NIC"] = nic
    if ip is not None:
        try:
            iface = ipaddress.IPv4Interface(ip)
        except ValueError:
            raise RunError(f"--ip must be an IPv4 address/prefix like 10.0.0.2/24, not {ip!r}") \
                from None
        if iface.ip.is_loopback or iface.ip.is_unspecified or iface.ip.is_multicast:
            raise RunError(f"--ip {ip}: {iface.ip} cannot be a host address")
        env["FSDP_IP"] = ip
    if cores is not None:
        if not 1 <= cores <= 64:
            raise RunError(f"--cores must be between 1 and 64, not {cores}")
        env["FSDP_CORES"] = str(cores)
    env["FSDP_TRANSPARENT"] = "1"
    # The bootstrap first, then whatever the user had, then fsdp itself (a source checkout).
    fsdp_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parts = [_BOOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] + [fsdp_root]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def run(argv: list[str], *, nic: str | None = None, ip: str | None = None,
        cores: int | None = None) -> int:
    """Replace this process with ``argv`` under transparent mode (returns only on error)."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    cmd = program_argv(argv)
    env = program_env(nic, ip, cores)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(cmd[0], cmd, env)
    except OSError as e:
        raise RunError(f"cannot run {cmd[0]}: {e.strerror}") from None
    return 127  # not reached
