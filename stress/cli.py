"""The command line: ``pyccl stress ...``, ``pyccl-stress ...`` and
``python -m stress ...`` are the same command.

Exit status: 0 when the run found no violation (or a namespace scenario
was skipped, which it says), 1 on any violation, 2 for bad options, 130
when interrupted (Ctrl-C, SIGTERM; every process of the run is ended
first).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
from typing import Any, Dict, List, Optional, Sequence

from stress.scenarios import PRESETS, Options, apply_preset
from stress.schedule import Rates

EXIT_PASS, EXIT_VIOLATION, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = (
    "Multi-process churn tester: starts a master and N peers on this "
    "machine (or, as root with --netns, in network namespaces), kills, "
    "stops, removes and adds peers and restarts the master on a "
    "reproducible schedule while every peer runs verified collectives, and "
    "reports hangs, disagreements, wrong results, inputs not restored, "
    "uninjected crashes and leftover processes.  See docs/stress.md.")


def _size(text: str) -> int:
    from pyccl.argtypes import parse_size
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1, not %d" % v)
    return v


def _conns(text: str) -> int:
    v = int(text)
    if not 0 <= v <= 64:
        raise argparse.ArgumentTypeError("must be 0 (automatic) to 64, not %d" % v)
    return v


def _nonneg_float(text: str) -> float:
    v = float(text)
    if not v >= 0:
        raise argparse.ArgumentTypeError("must be >= 0, not %s" % text)
    return v


def _share(text: str) -> float:
    v = float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError("must be in 0..1, not %s" % text)
    return v


def _kinds(text: str) -> List[str]:
    from stress.workload import KINDS
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    for k in kinds:
        if k not in KINDS:
            raise argparse.ArgumentTypeError(
                "unknown collective %r (known: %s)" % (k, ",".join(KINDS)))
    if not kinds:
        raise argparse.ArgumentTypeError("no collective given")
    return kinds


def _algorithms(text: str) -> List[str]:
    algos = [a.strip() for a in text.split(",") if a.strip()]
    for a in algos:
        if a not in ("ring", "star", "auto"):
            raise argparse.ArgumentTypeError("unknown algorithm %r" % a)
    if not algos:
        raise argparse.ArgumentTypeError("no algorithm given")
    return algos


# (flag, Options or Rates field, type, help); defaults come from presets.
_RATE_FLAGS = [
    ("--kill-rate", "kill", "SIGKILLs of a random member per minute"),
    ("--stop-rate", "stop", "SIGSTOPs per minute (then SIGCONT or SIGKILL)"),
    ("--leave-rate", "leave", "graceful leaves per minute"),
    ("--join-rate", "join", "extra single joins per minute (replacements "
                            "for lost peers come on top)"),
    ("--storm-rate", "storm", "join storms per minute"),
    ("--master-restart-rate", "master", "master SIGKILL + restart at the "
                                        "same address, per minute"),
    ("--drop-rate", "drop", "link drops per minute (namespaces)"),
    ("--delay-rate", "delay", "delay spikes per minute (namespaces)"),
    ("--partition-rate", "partition", "partitions of one member per minute "
                                      "(namespaces)"),
]
_SHAPE_FLAGS = [
    ("--storm-size", "storm_size", _positive, "joiners per storm"),
    ("--stop-min", "stop_min", _nonneg_float, "shortest stop, seconds"),
    ("--stop-max", "stop_max", _nonneg_float, "longest stop, seconds"),
    ("--stop-kill-share", "stop_kill_share", _share,
     "share of stops that end with SIGKILL instead of SIGCONT"),
    ("--master-down-max", "master_down_max", _nonneg_float,
     "longest time the master stays dead, seconds"),
    ("--master-with-joiner", "master_with_joiner", _share,
     "share of master restarts done while a joiner waits"),
    ("--link-fault-min", "link_fault_min", _nonneg_float,
     "shortest link fault, seconds"),
    ("--link-fault-max", "link_fault_max", _nonneg_float,
     "longest link fault, seconds"),
]


def build_parser(prog: str = "pyccl stress") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    S = argparse.SUPPRESS
    p.add_argument("--scenario", default="churn", choices=sorted(PRESETS),
                   help="named preset (default churn); the options below "
                        "override it")
    p.add_argument("--list-scenarios", action="store_true",
                   help="print the presets and exit")
    g = p.add_argument_group("run")
    g.add_argument("--peers", type=_positive, default=S,
                   help="peers kept in the group (joiners replace the lost)")
    g.add_argument("--duration", type=_nonneg_float, default=S,
                   help="seconds of churn after the first group formed")
    g.add_argument("--steps", type=_positive, default=S,
                   help="stop after this many schedule events instead")
    g.add_argument("--seed", type=int, default=None,
                   help="seed of the schedule and the workload (default: "
                        "random, printed)")
    g.add_argument("--min-peers", type=_positive, default=S,
                   help="never take the group below this (default 2)")
    g.add_argument("--max-peers", type=_positive, default=S,
                   help="never grow above this (default peers + storm "
                        "size + 2)")
    f = p.add_argument_group("faults (per minute unless said)")
    for flag, field, text in _RATE_FLAGS:
        f.add_argument(flag, dest="rate_" + field, type=_nonneg_float,
                       default=S, metavar="PER_MIN", help=text)
    f.add_argument("--master-restarts", type=int, default=S,
                   help="number of master restarts over --duration "
                        "(instead of --master-restart-rate)")
    for flag, field, typ, text in _SHAPE_FLAGS:
        f.add_argument(flag, dest="rate_" + field, type=typ, default=S,
                       metavar="N" if typ is _positive else (
                           "SHARE" if typ is _share else "SECONDS"),
                       help=text)
    w = p.add_argument_group("workload")
    w.add_argument("--max-bytes", type=_size, default=S,
                   help="largest buffer of one op on one peer (default 32M)")
    w.add_argument("--large-rate", type=_share, default=S,
                   help="share of ops from 1 MiB to --max-bytes")
    w.add_argument("--max-concurrent", type=_positive, default=S,
                   help="async ops in flight per batch (default 4)")
    w.add_argument("--safe-every", type=_positive, default=S,
                   help="update_topology every this many batches")
    w.add_argument("--algorithms", type=_algorithms, default=S,
                   help="all-reduce algorithms to use (default ring,star)")
    w.add_argument("--quant-rate", type=_share, default=S,
                   help="share of float32 sum all-reduces sent quantized "
                        "(u8, u4, e3m0, f16 or bf16, over the star, ring "
                        "or direct algorithm; default 0.2)")
    w.add_argument("--kinds", type=_kinds, default=S,
                   help="collectives to draw from (default all_reduce,"
                        "broadcast,all_gather,reduce_scatter,barrier)")
    c = p.add_argument_group("pyccl")
    c.add_argument("--peer-timeout", type=float, default=S,
                   help="seconds (default 2)")
    c.add_argument("--op-timeout", type=float, default=S,
                   help="seconds (default 10)")
    c.add_argument("--connect-timeout", type=float, default=S,
                   help="seconds (default 30)")
    c.add_argument("--conns-per-peer", type=_conns, default=S,
                   help="TCP connections per peer pair, 0: automatic")
    c.add_argument("--rejoin", action=argparse.BooleanOptionalAction,
                   default=S, help="a peer dropped by the master joins "
                                   "again (default) or exits with status 3")
    o = p.add_argument_group("orchestration")
    o.add_argument("--replace", action=argparse.BooleanOptionalAction,
                   default=S, help="spawn joiners to keep --peers (default)")
    o.add_argument("--max-defer", type=_nonneg_float, default=S,
                   help="seconds a fault waits for the group to settle")
    o.add_argument("--hang-timeout", type=_nonneg_float, default=S,
                   help="seconds without progress that make a hang "
                        "(default: from the timeouts)")
    o.add_argument("--settle-timeout", type=_nonneg_float, default=S,
                   help="seconds for the group to re-form at the end")
    o.add_argument("--fail-fast", action="store_true", default=S,
                   help="end the run at the first violation")
    n = p.add_argument_group("network namespaces (root)")
    n.add_argument("--netns", action=argparse.BooleanOptionalAction,
                   default=S, help="run every process in its own namespace")
    n.add_argument("--rate", default=S, help="tbf rate per link, e.g. 1gbit")
    n.add_argument("--delay-ms", type=_nonneg_float, default=S,
                   help="delay per direction, ms")
    n.add_argument("--loss", type=_share, default=S,
                   help="random loss per packet")
    r = p.add_argument_group("output")
    r.add_argument("--json", dest="json_path", default=S,
                   help="write the JSON report here")
    r.add_argument("--png", dest="png_path", default=S,
                   help="write the PNG timeline here (needs matplotlib)")
    r.add_argument("--log-dir", default=S,
                   help="directory for every process's log (default: a "
                        "new temporary directory, printed)")
    r.add_argument("--live", action=argparse.BooleanOptionalAction,
                   default=S, help="live display (default: when stdout is "
                                   "a terminal)")
    r.add_argument("--no-uvloop", dest="uvloop", action="store_false",
                   default=S, help="use asyncio's default loop")
    return p


def options_from_args(args: argparse.Namespace) -> Options:
    given: Dict[str, Any] = {}
    rates: Dict[str, Any] = {}
    for k, v in vars(args).items():
        if k in ("scenario", "list_scenarios", "master_restarts"):
            continue
        if k.startswith("rate_"):
            rates[k[5:]] = v
        else:
            given[k] = v
    if given.get("seed") is None:
        given["seed"] = random.SystemRandom().randrange(1, 2**31)
    if "steps" in given and "duration" not in given:
        given["duration"] = None
    opts = apply_preset(args.scenario, given, rates)
    if getattr(args, "master_restarts", None) is not None:
        if not opts.duration:
            raise ValueError("--master-restarts needs --duration "
                             "(or use --master-restart-rate)")
        opts.rates.master = args.master_restarts * 60.0 / opts.duration
    if opts.min_peers > opts.peers:
        raise ValueError("--min-peers %d is more than --peers %d"
                         % (opts.min_peers, opts.peers))
    if opts.rates.stop_min > opts.rates.stop_max:
        raise ValueError("--stop-min is above --stop-max")
    return opts


def list_scenarios() -> str:
    lines = ["Scenarios (docs/stress.md):"]
    for name, p in sorted(PRESETS.items()):
        lines.append("  %-15s %s (%d peers, %.0f s)" % (
            name, p["about"], p.get("peers", 8), p.get("duration", 60)))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None,
         prog: str = "pyccl stress") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.list_scenarios:
        print(list_scenarios())
        return EXIT_PASS
    try:
        opts = options_from_args(args)
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print("%s: error: %s" % (prog, exc), file=sys.stderr)
        return EXIT_USAGE
    if opts.netns:
        from stress.netns import unavailable
        why = unavailable()
        if why is not None:
            link = sum(getattr(opts.rates, k) for k in
                       ("drop", "delay", "partition"))
            if opts.scenario in ("partition", "wan"):
                print("pyccl stress: SKIPPED scenario %s: it needs root and "
                      "network namespaces, and %s." % (opts.scenario, why))
                return EXIT_PASS
            print("pyccl stress: running without network namespaces (%s)%s"
                  % (why, ": link faults skipped" if link else ""),
                  file=sys.stderr)
            opts.netns = False
    return run(opts)


def run(opts: Options) -> int:
    """Runs and reports; returns the exit status."""
    from stress import orchestrator, report
    from stress.display import Display
    display = Display(sys.stdout, opts.live)
    if not display.live:
        print("pyccl stress: scenario %s, seed %d, %d peers, %s" % (
            opts.scenario, opts.seed, opts.peers,
            "%g s" % opts.duration if opts.duration is not None
            else "%d steps" % (opts.steps or 0)), flush=True)
    orch = orchestrator.run(opts, display)
    display.close()
    sys.stdout.write(report.final_table(orch))
    sys.stdout.write(report.violation_report(orch))
    if opts.json_path:
        report.write_json(orch, opts.json_path)
        print("JSON report: %s" % opts.json_path)
    if opts.png_path:
        why = report.write_png(orch, opts.png_path)
        print(why or "PNG timeline: %s" % opts.png_path)
    sys.stdout.flush()
    if orch.summary.get("interrupted"):
        return EXIT_INTERRUPTED
    return EXIT_VIOLATION if orch.ledger.violations else EXIT_PASS


def entry_point() -> int:
    """``pyccl-stress``."""
    return main(prog="pyccl-stress")


__all__ = ["main", "entry_point", "build_parser", "options_from_args", "run"]
