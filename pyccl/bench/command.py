"""``pyccl bench``: the command line, and the run as a whole.

For each peer count, :func:`main` runs the phases one after the other
(pyccl, gloo when torch is importable, pyccl with frame MACs and pyccl
with encryption when asked),
prints a table per peer count and keeps the raw record for ``--json``.
See :mod:`pyccl.bench` for what is measured and how.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import os
import platform
import secrets
import shlex
import sys
from typing import Any, Dict, Optional, Sequence

import pyccl
from pyccl.argtypes import f32_sizes, int_list, nonneg_int, positive_int
from pyccl.bench.orchestrate import BenchFailure, make_plan, run_phase
from pyccl.bench.tables import (print_failure, print_header, print_mac_cost,
                                print_table)

DEFAULT_PEERS = (2, 4)
DEFAULT_SIZES = (4, 4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20,
                 256 << 20)

# The on/off options of build_parser, with their help.
_SWITCHES = (
    ("--no-gloo", "skip the torch.distributed gloo phase"),
    ("--no-restore-input",
     "pyccl Communicator(restore_input=False): a failed in-place all-reduce "
     "need not give the input back, which saves a copy per op"),
    ("--barrier-each-op",
     "refill the input and enter a barrier before every op, and check every "
     "result (default: ops run back to back on zeros after a checked first "
     "op)"),
    ("--auth",
     "authenticate every connection with a one-off random key (the "
     "handshake only: no per-frame cost)"),
    ("--frame-mac",
     "also run pyccl with a MAC on every frame (implies --auth) and print "
     "its table and its cost against pyccl without MACs"),
    ("--encrypt",
     "also run pyccl with every frame encrypted (encrypt=True, AES-256-GCM; "
     "implies --auth; needs libcrypto) and print its table and its cost "
     "against pyccl without it"),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyccl bench``."""
    parser = argparse.ArgumentParser(
        prog="pyccl bench",
        description="All-reduce (f32 sum) timings of pyccl and, when torch "
                    "is installed, torch.distributed gloo, with N local "
                    "processes on 127.0.0.1.  The two libraries run in "
                    "separate phases.")
    parser.add_argument("--peers", type=int_list, default=list(DEFAULT_PEERS),
                        help="comma-separated peer counts (default 2,4)")
    parser.add_argument("--sizes", type=f32_sizes,
                        default=list(DEFAULT_SIZES),
                        help="comma-separated sizes in bytes with K/M/G "
                             "suffixes (default 4,4K,64K,1M,4M,16M,64M,256M)")
    parser.add_argument("--iters", type=positive_int, default=None,
                        help="timed iterations per size (default "
                             "max(3, min(200, 2 GiB / size)))")
    parser.add_argument("--warmup", type=nonneg_int, default=None,
                        help="untimed iterations first (default 1..5: a "
                             "tenth of the timed ones)")
    parser.add_argument("--conns", type=positive_int, default=None,
                        help="pyccl TCP connections per peer pair (default: "
                             "the Communicator's, automatic)")
    parser.add_argument("--algorithm", choices=("auto", "ring", "star"),
                        default="auto", help="pyccl all-reduce algorithm")
    parser.add_argument("--spin-us", type=int, default=None,
                        help="pyccl busy-poll microseconds (-1 auto, 0 "
                             "never; default: the Communicator's, -1)")
    parser.add_argument("--hang-timeout", type=float, default=60.0,
                        help="seconds after which one op counts as hung "
                             "(default 60)")
    parser.add_argument("--wan", action="store_true",
                        help="the wide-area benchmark instead (root only; "
                             "pyccl bench --wan --help)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="write the raw results (every iteration of "
                             "every rank) to PATH")
    for flag, text in _SWITCHES:
        parser.add_argument(flag, action="store_true", help=text)
    return parser


def _gloo_available() -> Optional[str]:
    """torch's version if torch.distributed with gloo is usable, else None."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_gloo_available()):
            return None
        return str(torch.__version__)
    except Exception:
        return None



def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``pyccl bench``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--wan" in argv:  # the wide-area benchmark has its own options
        from pyccl.bench.wan import main as wan_main
        return wan_main([a for a in argv if a != "--wan"])
    args = build_parser().parse_args(argv)
    out, log = sys.stdout, sys.stderr
    if args.spin_us is not None and args.spin_us < -1:
        print("pyccl bench: --spin-us must be >= -1", file=log)
        return 2
    if args.hang_timeout <= 0:
        print("pyccl bench: --hang-timeout must be positive", file=log)
        return 2
    torch_version = None if args.no_gloo else _gloo_available()
    plan = make_plan(args.sizes, args.iters, args.warmup)
    opts = {"conns": args.conns, "spin_us": args.spin_us,
            "algorithm": args.algorithm, "hang_timeout": args.hang_timeout,
            "barrier_each_op": args.barrier_each_op,
            "no_restore_input": args.no_restore_input,
            "key": (secrets.token_hex(32)
                    if args.auth or args.frame_mac or args.encrypt
                    else None)}
    command = "pyccl bench" + "".join(
        " " + shlex.quote(a) for a in (argv if argv is not None
                                       else sys.argv[1:]))
    record: Dict[str, Any] = {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "transport": "TCP loopback 127.0.0.1"},
        "pyccl": {"version": pyccl.__version__,
                  "c_version": pyccl.c_version()},
        "torch": torch_version,
        "options": dict(opts, peers=args.peers, sizes=args.sizes,
                        iters=args.iters, warmup=args.warmup,
                        no_gloo=args.no_gloo),
        "load_at_start": list(os.getloadavg()),
        "results": [], "failure": None}

    print_header(record, plan, out)

    status = 0
    try:
        for peers in args.peers:
            phases: Dict[str, Optional[dict]] = {"pyccl": None, "gloo": None,
                                                 "pyccl+mac": None,
                                                 "pyccl+enc": None}
            runs = [("pyccl", "pyccl", opts), ("gloo", "gloo", opts)]
            if args.frame_mac:
                runs.append(("pyccl+mac", "pyccl", dict(opts, frame_mac=True)))
            if args.encrypt:
                runs.append(("pyccl+enc", "pyccl", dict(opts, encrypt=True)))
            for name, library, run_opts in runs:
                if library == "gloo" and not torch_version:
                    continue
                print("  [N=%d %s] starting" % (peers, name), file=log,
                      flush=True)
                result = run_phase(library, peers, plan, run_opts, log)
                result["variant"] = name
                phases[name] = result
                record["results"].append(result)
                gc.collect()
            print_table(peers, phases["pyccl"], phases["gloo"], out)
            if phases["pyccl+mac"]:
                print("\nwith frame MACs (frame_mac=True):", file=out)
                print_table(peers, phases["pyccl+mac"], phases["gloo"], out)
                print_mac_cost(phases["pyccl"], phases["pyccl+mac"], out)
            if phases["pyccl+enc"]:
                print("\nwith encryption (encrypt=True):", file=out)
                print_table(peers, phases["pyccl+enc"], phases["gloo"], out)
                print_mac_cost(phases["pyccl"], phases["pyccl+enc"], out,
                               what="encryption")
    except BenchFailure as exc:
        info = exc.info
        record["failure"] = info
        print_failure(info, command, out)
        status = 1
    finally:
        if args.json:
            record["load_at_end"] = list(os.getloadavg())
            with open(args.json, "w") as f:
                json.dump(record, f, indent=1)
                f.write("\n")
    return status


__all__ = ["main", "build_parser", "DEFAULT_PEERS", "DEFAULT_SIZES"]


if __name__ == "__main__":
    sys.exit(main())
