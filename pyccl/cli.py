"""The ``pyccl`` command.

    pyccl master [--host 127.0.0.1] [--port 29400] [--key-file F] [--allow-insecure]
    pyccl keygen [FILE]
    pyccl demo [--peers 4] [--sizes 4,4K,1M,16M] [--iters 5] [--algorithm auto]
    pyccl bench ...        (pyccl.bench.main(argv) -> int, when installed)
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from typing import List, Optional, Sequence


def _sizes(text: str) -> List[int]:
    from pyccl.demo import parse_size
    try:
        return [parse_size(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1, not %d" % value)
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pyccl`` command."""
    parser = argparse.ArgumentParser(
        prog="pyccl",
        description="Fault-tolerant collective communication.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    master = sub.add_parser(
        "master", help="run a master until Ctrl-C or SIGTERM",
        description="Runs a master that peers register with; prints its "
                    "address and serves until interrupted.")
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

    keygen = sub.add_parser(
        "keygen", help="make a random pre-shared key",
        description="Prints a fresh random key (64 hex characters), or "
                    "writes it to FILE with mode 0600 (never overwriting).")
    keygen.add_argument("file", nargs="?", default=None,
                        help="file to create (default: print the key)")

    demo = sub.add_parser(
        "demo", help="all-reduce across local processes and check results",
        description="Starts a master and N worker processes on 127.0.0.1; "
                    "each all-reduces f32 buffers of each size, checks the "
                    "exact result and that all ranks agree bit for bit.")
    demo.add_argument("--peers", type=_positive, default=4,
                      help="number of worker processes (default 4)")
    demo.add_argument("--sizes", type=_sizes, default=_sizes("4,4K,1M,16M"),
                      help="comma-separated buffer sizes in bytes, with "
                           "K/M/G suffixes (default 4,4K,1M,16M)")
    demo.add_argument("--iters", type=_positive, default=5,
                      help="all-reduces per size (default 5)")
    demo.add_argument("--algorithm", choices=("auto", "ring", "star"),
                      default="auto", help="all-reduce algorithm")

    sub.add_parser(
        "bench", add_help=False,
        help="benchmark tables against torch gloo (pyccl bench --help)")
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
                allow_insecure: Optional[bool] = None) -> int:
    from pyccl import CclError, Master
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    previous = {sig: signal.signal(sig, on_signal)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            master = Master(host, port, key_file=key_file,
                            allow_insecure=allow_insecure)
        except CclError as exc:
            print("pyccl master: %s" % exc, file=sys.stderr)
            return 1
        with master:
            print("pyccl master listening on %s (%s)"
                  % (master.address, "peers must prove the key"
                     if master.authenticated else
                     "no key: unauthenticated"), flush=True)
            while not stop.wait(0.5):
                pass
            print("pyccl master: stopping after %d group(s)" % master.epoch,
                  flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _run_bench(argv: List[str]) -> int:
    try:
        bench = importlib.import_module("pyccl.bench")
    except ModuleNotFoundError as exc:
        if exc.name != "pyccl.bench":
            raise
        print("pyccl bench: not available in this installation "
              "(the module pyccl.bench is missing)", file=sys.stderr)
        return 2
    main_fn = getattr(bench, "main", None)
    if main_fn is None:
        print("pyccl bench: pyccl.bench has no main(argv) entry point",
              file=sys.stderr)
        return 2
    return int(main_fn(argv) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``pyccl`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # Everything after "bench" belongs to pyccl.bench's own parser.
        return _run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "master":
        return _run_master(args.host, args.port, args.key_file,
                           args.allow_insecure)
    if args.command == "keygen":
        return _run_keygen(args.file)
    if args.command == "demo":
        from pyccl.demo import run
        try:
            return run(peers=args.peers, sizes=args.sizes, iters=args.iters,
                       algorithm=args.algorithm)
        except ValueError as exc:
            print("pyccl demo: %s" % exc, file=sys.stderr)
            return 2
    raise AssertionError(args.command)  # argparse allows nothing else


if __name__ == "__main__":
    sys.exit(main())
