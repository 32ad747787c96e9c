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
    rn.add_argument("--cores", type=int, metavar="N",
                    help="N > 1: N copies of the program (prefork workers), each pinned to a "
                         "core with its own queue of one sim port, like nginx workers")
    rn.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]")
    st = sub.add_parser("stat", help="counters of running fsdp stacks (like netstat -s)")
    st.add_argument("--pid", type=int, help="only the stacks of this process")
    st.add_argument("--zero", action="store_true", help="also counters that are 0")
    st.add_argument("--json", action="store_true", help="one JSON list")
    ss = sub.add_parser("ss", help="connections of running fsdp stacks (like ss -tan)")
    ss.add_argument("--pid", type=int, help="only the stacks of this process")
    ss.add_argument("-l", "--listening", action="store_true", help="listeners only")
    ss.add_argument("-a", "--all", action="store_true", help="listeners and connections")
    ss.add_argument("--json", action="store_true", help="one JSON list")
    cp = sub.add_parser("capture", help="a pcap of what running fsdp stacks receive and send "
                                        "(like tcpdump -w)")
    cp.add_argument("--out", "-w", required=True, metavar="FILE.pcap", help="the pcap file")
    cp.add_argument("--pid", type=int, action="append",
                    help="the stacks of this process (repeat for several); default: the only "
                         "running stack")
    cp.add_argument("--all", action="store_true", help="every running stack")
    cp.add_argument("-c", "--count", type=int, help="stop after this many frames")
    cp.add_argument("--seconds", type=float, help="stop after this long")
    cp.add_argument("-s", "--snaplen", type=int, metavar="BYTES",
                    help="write at most this many bytes of each frame (default and most: 2048, "
                         "what the capture rings hold)")
    cp.add_argument("--host", action="append", default=[], metavar="ADDR",
                    help="only frames to or from this IPv4 address (repeat: any of them)")
    cp.add_argument("--port", type=int, action="append", default=[],
                    help="only TCP/UDP frames to or from this port (repeat: any of them)")
    cp.add_argument("--proto", action="append", default=[], choices=("tcp", "udp", "icmp", "arp"),
                    help="only frames of this protocol (repeat: any of them)")
    _add_demo_parsers(sub)
    return p


def _cores_list(text: str) -> list[int]:
    try:
        cores = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or a list like 1,2,4, not {text!r}") from None
    if not cores or any(c < 1 for c in cores):
        raise argparse.ArgumentTypeError(f"core counts must be >= 1, not {text!r}")
    return cores


def _add_demo_parsers(sub) -> None:
    """``fsdp demo``, ``fsdp serve``, ``fsdp bench`` (CONTRACT.md §3; fsdp/apps/)."""
    d = sub.add_parser("demo", help="HTTP server + load generator on one sim wire (the main job)")
    d.add_argument("--cores", type=_cores_list, default=[1], metavar="N[,N...]",
                   help="server cores (worker processes), or a list of counts (default 1)")
    d.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    d.add_argument("--concurrency", type=int, default=64, help="connections in flight")
    d.add_argument("--client-cores", type=int, default=None, metavar="N",
                   help="load-generator worker processes, one sim queue each, kept apart by "
                        "receive flow deliver (default: 1, or the CPUs the server leaves, "
                        "up to the server's cores)")
    d.add_argument("--no-listen-spawn", action="store_true",
                   help="only server worker 0 listens; the others hand it their SYNs and flows")
    d.add_argument("--no-rfd", action="store_true",
                   help="client workers pick ports without regard to RSS; a reply on another "
                        "worker's queue is handed over in software")
    d.add_argument("--ablation", action="store_true",
                   help="run each core count with all features, without listen spawn and "
                        "without RFD (one plot line each)")
    d.add_argument("--app", choices=("native", "python"), default="native",
                   help="jitted handler in the loop, or a Python server on fsdp sockets")
    d.add_argument("--client", choices=("stack", "packet"), default="stack",
                   help="load generator: a one-core fsdp stack per client worker (default), or "
                        "TCP written directly on frames (no stack: a fraction of the cost per "
                        "connection, for scaling runs where clients must outrun the server)")
    d.add_argument("--compare-kernel", action="store_true",
                   help="also run the Python server on the kernel's loopback; print the ratio")
    d.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    d.add_argument("--plot", metavar="FILE.png", help="draw connections/s against cores")
    s = sub.add_parser("serve", help="the demo HTTP (or echo) server alone")
    s.add_argument("--nic", required=True, metavar="URI", help="sim:NAME")
    s.add_argument("--ip", required=True, metavar="CIDR", help="e.g. 10.0.0.1/24")
    s.add_argument("--port", type=int, default=80)
    s.add_argument("--cores", type=int, default=1, help="worker processes, one NIC queue each")
    s.add_argument("--mode", choices=("http", "echo"), default="http")
    s.add_argument("--body-size", type=int, default=64, metavar="B")
    s.add_argument("--app", choices=("native", "python"), default="native")
    s.add_argument("--ring-slots", type=int, default=1024, metavar="N",
                   help="slots of each ring of the sim wire it creates (a power of two; "
                        "about 4 per connection a client queue keeps in flight to it)")
    b = sub.add_parser("bench", help="http_load-like load generator, on fsdp or kernel sockets")
    b.add_argument("url", metavar="URL", help="http://IP[:PORT]/PATH")
    b.add_argument("--nic", metavar="URI")
    b.add_argument("--ip", metavar="CIDR")
    b.add_argument("--kernel", action="store_true", help="use the kernel's sockets")
    b.add_argument("--concurrency", type=int, default=64)
    b.add_argument("--seconds", type=float, default=5.0)
    b.add_argument("--cores", type=int, default=1)
    b.add_argument("--keepalive", action="store_true", help="reuse connections (keep-alive)")
    b.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def _run_demo_command(args) -> int:
    if args.command == "demo":
        from fsdp.apps.demo import run_demo

        return run_demo(app=args.app, cores=args.cores, seconds=args.seconds,
                        concurrency=args.concurrency, compare_kernel=args.compare_kernel,
                        as_json=args.json, plot=args.plot, client_cores=args.client_cores,
                        listen_spawn=not args.no_listen_spawn, rfd=not args.no_rfd,
                        ablation=args.ablation, client=args.client)
    if args.command == "serve":
        from fsdp.apps.serve import run_serve

        if not 1 <= args.port <= 65535 or not 0 <= args.body_size <= 1 << 20:
            raise ValueError("--port must be 1-65535 and --body-size 0-1048576")
        return run_serve(nic=args.nic, ip=args.ip, port=args.port, cores=args.cores,
                         mode=args.mode, body_size=args.body_size, app=args.app,
                         ring_slots=args.ring_slots)
    from fsdp.apps.loadgen import run_bench

    return run_bench(args.url, args.nic, args.ip, args.kernel, args.concurrency, args.seconds,
                     args.cores, args.keepalive, args.json)


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
        if args.command == "stat":
            from fsdp.apps.observe import run_stat

            return run_stat(pid=args.pid, as_json=args.json, show_zero=args.zero)
        if args.command == "ss":
            from fsdp.apps.observe import run_ss

            return run_ss(pid=args.pid, listening=args.listening, all_states=args.all,
                          as_json=args.json)
        if args.command == "capture":
            from fsdp.apps.observe import run_capture
            from fsdp.driver.pcap import CaptureFilter

            if args.count is not None and args.count < 1:
                raise ValueError("--count must be at least 1")
            if args.seconds is not None and not args.seconds > 0:
                raise ValueError("--seconds must be > 0")
            if args.snaplen is not None and args.snaplen < 1:
                raise ValueError("--snaplen must be at least 1")
            match = CaptureFilter(args.host, args.port, args.proto)
            return run_capture(args.out, pids=args.pid, all_stacks=args.all, count=args.count,
                               seconds=args.seconds, match=match, snaplen=args.snaplen)
        if args.command in ("demo", "serve", "bench"):
            return _run_demo_command(args)
    except KeyboardInterrupt:
        sys.stderr.write("fsdp: interrupted\n")
        return 130
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        sys.stderr.write(f"fsdp: error: {e}\n")
        return 1
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
