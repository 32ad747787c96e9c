"""The ``fsdp`` command line.  Every error is one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage + message)
        sys.stderr.write(f"fsdp: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fsdp", description="fsdp: a userspace TCP/IP stack for Python")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    nd = sub.add_parser(
        "netdemo",
        help="two stacks on one sim wire: ARP resolution and ICMP echo, with counters",
    )
    nd.add_argument("--count", type=int, default=5, help="echo requests to send (default 5)")
    nd.add_argument("--size", type=int, default=56, help="echo data bytes (default 56)")
    nd.add_argument("--pcap", metavar="FILE", help="also write the exchange to a pcap file")
    nd.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    rn = sub.add_parser(
        "run",
        help="run an unmodified Python program on fsdp (transparent mode)",
        description="Run PROGRAM with the stdlib's IPv4 TCP sockets, selectors, select.select "
        "and asyncio served by fsdp (loopback, IPv6, AF_UNIX and UDP stay on the kernel).",
    )
    rn.add_argument("--nic", metavar="URI", help="NIC URI (default: $FSDP_NIC or sim:default)")
    rn.add_argument("--ip", metavar="CIDR", help="host address (default: $FSDP_IP or 10.0.0.2/24)")
    rn.add_argument("--cores", type=int, metavar="N", help="cores (queues) of the stack")
    rn.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.command == "netdemo":
            from fsdp.apps.netdemo import run_netdemo

            return run_netdemo(count=args.count, size=args.size, pcap=args.pcap, as_json=args.json)
        if args.command == "run":
            from fsdp.transparent.run import RunError, run

            try:
                return run(args.program, nic=args.nic, ip=args.ip, cores=args.cores)
            except RunError as e:
                sys.stderr.write(f"fsdp run: error: {e}\n")
                return 2
    except KeyboardInterrupt:
        sys.stderr.write("fsdp: interrupted\n")
        return 130
    except (OSError, ValueError, TypeError) as e:
        sys.stderr.write(f"fsdp: error: {e}\n")
        return 1
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
