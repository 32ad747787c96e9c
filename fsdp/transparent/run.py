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
    """Replace this process with ``argv`` under transparent mode (returns only on error); with
    ``cores`` > 1, run it once per core instead (:func:`prefork`)."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    cmd = program_argv(argv)
    env = program_env(nic, ip, cores)
    if cores is not None and cores > 1:
        return prefork(cmd, env, cores)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(cmd[0], cmd, env)
    except OSError as e:
        raise RunError(f"cannot run {cmd[0]}: {e.strerror}") from None
    return 127  # not reached


_PR_SET_PDEATHSIG = 1  # prctl(2)


def _worker_signals() -> None:
    """In a forked worker, before exec: SIGINT and SIGTERM back to their defaults, since the
    parent forwards them and a worker must act on them (an ignored SIGINT, which a parent
    started in the background or by a test runner passes on through exec, would leave the
    worker deaf to Ctrl-C); and SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG, kept
    across exec), so a killed ``fsdp run`` takes its workers with it."""
    import ctypes
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def prefork(cmd: list[str], env: dict[str, str], cores: int) -> int:
    """``fsdp run --cores N``: N copies of the program, like nginx workers.  This process attaches
    one N-queue port of the sim wire and starts worker k pinned to CPU k with ``FSDP_PORT_ID`` /
    ``FSDP_QUEUE``: its default stack then owns queue k alone (fsdp.apps.percore.worker_stack),
    with its own listen table (listen spawn: every worker's listen() gets the connections RSS
    gives its queue; a worker that has not listened yet hands its SYNs to one that has, through
    the port's global listen table) and receive flow deliver for its connects.  SIGINT/SIGTERM
    go to every worker.  A worker that exits while others run is reported (when its status is
    not 0) and its queue retired: RSS stops sending it flows, and no core hands it a segment.
    The exit status is the first non-zero one of the workers (0 if none)."""
    import signal

    from fsdp.driver import parse_nic_uri

    scheme, name = parse_nic_uri(env.get("FSDP_NIC", "sim:default"))
    if scheme != "sim":
        raise RunError(f"--cores {cores} (one worker process per core) needs a sim NIC, "
                       f"not {scheme}")
    ip = ipaddress.IPv4Interface(env.get("FSDP_IP", "10.0.0.2/24"))
    from fsdp.apps.percore import retire_queues
    from fsdp.driver.sim import attach_named

    try:
        port = attach_named(name, cores, 0x020000000000 | int(ip.ip))
    except (OSError, ValueError) as e:
        raise RunError(f"cannot attach a {cores}-queue port to sim:{name}: {e}") from None
    ncpu = os.cpu_count() or 1
    sys.stdout.flush()
    sys.stderr.flush()
    pids: list[int] = []

    def forward(signum, frame):
        for p in pids:
            try:
                os.kill(p, signum)
            except ProcessLookupError:
                pass

    # Installed before the first fork, so that a signal during start-up reaches the workers
    # already started (and is not lost to a disposition the workers inherit).
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        for k in range(cores):
            child_env = dict(env, FSDP_PORT_ID=str(port.port_id), FSDP_QUEUE=str(k))
            pid = os.fork()
            if pid == 0:  # the worker: pin, then become the program
                try:
                    _worker_signals()
                    os.sched_setaffinity(0, {k % ncpu})
                except (AttributeError, OSError):
                    pass
                try:
                    os.execve(cmd[0], cmd, child_env)
                finally:
                    os._exit(127)
            pids.append(pid)
        status = 0
        running = dict(zip(pids, range(cores), strict=True))  # pid -> its queue
        while running:
            try:
                pid, st = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            queue = running.pop(pid, None)
            if queue is None:
                continue
            code = os.waitstatus_to_exitcode(st)
            if code < 0:
                code = 128 - code  # killed by a signal, as a shell reports it
            if status == 0 and code != 0:
                status = code
            if running:
                # The others keep serving: new flows avoid the dead worker's queue, and no
                # core hands it a SYN.
                if code != 0:
                    sys.stderr.write(f"fsdp run: worker {queue} (pid {pid}) exited with status "
                                     f"{code}; {len(running)} still serving\n")
                    sys.stderr.flush()
                retire_queues(port, cores, [queue])
        return status
    finally:
        port.close()
