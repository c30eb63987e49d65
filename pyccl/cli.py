"""The ``pyccl`` command.

    pyccl --version
    pyccl master [--host 127.0.0.1] [--port 29400] [--key-file F] [--allow-insecure]
                 [--reorder-slow-links] [--expel-slow-after N]
                 [--http-port P [--http-host 127.0.0.1]]
    pyccl status --master HOST:HTTP_PORT [--interval 1] [--once]
    pyccl keygen [FILE]
    pyccl demo [--peers 4] [--sizes 4,4K,1M,16M] [--iters 5] [--algorithm auto]
    pyccl bench ...        (pyccl bench --help)
    pyccl stress ...       (pyccl stress --help; the churn tester in stress/)

Each subcommand lives in its own module (:mod:`pyccl.demo`,
:mod:`pyccl.bench`); this one only dispatches, and none of them imports
it back.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Optional, Sequence

import pyccl
from pyccl import demo, status_cli


def version_text() -> str:
    """``pyccl --version``: the package, the C core and the protocol."""
    return "pyccl %s (C core %s, protocol %d)" % (
        pyccl.__version__, pyccl.c_version(), pyccl.PROTOCOL_VERSION)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pyccl`` command."""
    parser = argparse.ArgumentParser(
        prog="pyccl",
        description="Fault-tolerant collective communication.")
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    master = sub.add_parser(
        "master", help="run a master until Ctrl-C or SIGTERM",
        description="Runs a master that peers register with; prints its "
                    "address and serves until interrupted.  Joins, "
                    "departures and new epochs are logged on stderr.")
    master.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1)")
    master.add_argument("--port", type=int, default=29400,
                        help="port to listen on, 0 for any (default 29400)")
    master.add_argument("--key-file", default=None,
                        help="file holding the run's pre-shared key (default: "
                             "$PYCCL_KEY_FILE, then $PYCCL_KEY; without a "
                             "key only loopback peers are accepted)")
    master.add_argument("--allow-insecure", action="store_true", default=None,
                        help="without a key, accept unauthenticated peers "
                             "from other hosts (trusted networks only)")
    master.add_argument("--http-port", type=int, default=None,
                        help="serve the group's stats as JSON (/stats.json) "
                             "and Prometheus text (/metrics) on this port "
                             "(0: any free one; default: no HTTP)")
    master.add_argument("--print-every", type=float, default=0.0,
                        metavar="SECONDS",
                        help="print the group's table (pyccl status's) on "
                             "stdout this often while members report "
                             "(default 0: never)")
    master.add_argument("--http-host", default="127.0.0.1",
                        help="address of the HTTP endpoint (default "
                             "127.0.0.1; it has no authentication)")
    master.add_argument("--reorder-slow-links", action="store_true",
                        help="when a link of the ring is flagged slow, "
                             "re-plan the ring order at the next "
                             "update_topology (default: off)")
    master.add_argument("--expel-slow-after", type=int, default=0,
                        metavar="N",
                        help="drop a member whose sending link was flagged "
                             "slow in N consecutive STATS reports of its "
                             "receivers, at the next update_topology "
                             "(default 0: never)")

    status_cli.add_arguments(sub.add_parser(
        "status", help="show a running master's group as a live table",
        description=status_cli.DESCRIPTION))

    keygen = sub.add_parser(
        "keygen", help="make a random pre-shared key",
        description="Prints a fresh random key (64 hex characters), or "
                    "writes it to FILE with mode 0600 (never overwriting).")
    keygen.add_argument("file", nargs="?", default=None,
                        help="file to create (default: print the key)")

    demo.add_arguments(sub.add_parser(
        "demo", help="all-reduce across local processes and check results",
        description=demo.DESCRIPTION))

    # Only listed here: everything after "bench" goes to its own parser.
    sub.add_parser(
        "bench", add_help=False,
        help="benchmark tables against torch gloo (pyccl bench --help)")
    sub.add_parser(
        "stress", add_help=False,
        help="churn tester: kills, stops, joins, master restarts while "
             "verifying every op (pyccl stress --help)")
    return parser


def _run_keygen(path: Optional[str]) -> int:
    from pyccl.keys import generate_key, write_key_file
    if path is None:
        print(generate_key())
        return 0
    try:
        write_key_file(path)
    except OSError as exc:
        print("pyccl keygen: cannot create %s: %s" % (path, exc.strerror),
              file=sys.stderr)
        return 1
    print("pyccl keygen: wrote a new key to %s (mode 0600); give every "
          "peer and the master the same file (--key-file or "
          "PYCCL_KEY_FILE)" % path)
    return 0


def _run_master(host: str, port: int, key_file: Optional[str] = None,
                allow_insecure: Optional[bool] = None,
                http_port: Optional[int] = None,
                http_host: str = "127.0.0.1",
                print_every: float = 0.0, reorder_slow_links: bool = False,
                expel_slow_after: int = 0) -> int:
    # The master's own log lines (joins, departures, epochs, refusals) are
    # what an operator watches: show them, unless the environment asked
    # for another level (PYCCL_LOG_LEVEL, applied by pyccl.log).
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: "
                               "%(message)s")
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    previous = {sig: signal.signal(sig, on_signal)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            master = pyccl.Master(host, port, key_file=key_file,
                                  allow_insecure=allow_insecure,
                                  reorder_slow_links=reorder_slow_links,
                                  expel_slow_after=expel_slow_after)
        except pyccl.CclError as exc:
            print("pyccl master: %s" % exc, file=sys.stderr)
            return 1
        with master:
            print("pyccl master listening on %s (%s)"
                  % (master.address, "peers must prove the key"
                     if master.authenticated else
                     "no key: unauthenticated"), flush=True)
            http = None
            if http_port is not None:
                from pyccl.metrics_http import MetricsServer
                try:
                    http = MetricsServer(master, http_host, http_port)
                except OSError as exc:
                    print("pyccl master: cannot serve HTTP on %s:%d: %s"
                          % (http_host, http_port, exc), file=sys.stderr)
                    return 1
                print("pyccl master: stats on %s/stats.json and %s/metrics "
                      "(pyccl status --master %s:%d)" % (
                          http.url, http.url, http_host, http.port),
                      flush=True)
            try:
                last_print, last_reports = time.monotonic(), 0
                while not stop.wait(0.5):
                    if print_every > 0 and \
                            time.monotonic() - last_print >= print_every:
                        last_print = time.monotonic()
                        last_reports = _print_group(master, last_reports)
            finally:
                if http is not None:
                    http.close()
            print("pyccl master: stopping after %d group(s)" % master.epoch,
                  flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _print_group(master: "pyccl.Master", last_reports: int) -> int:
    """Prints the group's table if reports came in since the last one;
    returns the report count."""
    from pyccl.metrics_http import view_json
    stats = master.stats()
    if stats.reports != last_reports:
        print(status_cli.render(view_json(stats)) + "\n", flush=True)
    return stats.reports


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``pyccl`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from pyccl.bench.command import main as bench_main
        return bench_main(argv[1:])
    if argv[:1] == ["stress"]:
        from stress.cli import main as stress_main
        return stress_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "master":
        return _run_master(args.host, args.port, args.key_file,
                           args.allow_insecure, args.http_port, args.http_host,
                           args.print_every, args.reorder_slow_links,
                           args.expel_slow_after)
    if args.command == "status":
        return status_cli.run_args(args)
    if args.command == "keygen":
        return _run_keygen(args.file)
    if args.command == "demo":
        return demo.run_args(args)
    raise AssertionError(args.command)  # argparse allows nothing else


if __name__ == "__main__":
    sys.exit(main())
