"""torch.distributed with backend "pyccl" against gloo, in the same run.

    python benchmarks/torch_bench.py [--peers 2,4] [--sizes 4,4K,64K,1M,4M,64M]
                                     [--iters N] [--ddp-steps 20] [--rounds R]
                                     [--no-ddp] [--json PATH]

For each peer count N, and each backend in turn (never both at once), N
processes (multiprocessing "spawn") join ``init_process_group`` over a
``tcp://127.0.0.1`` store and run:

1. ``dist.all_reduce`` (f32, SUM, in place, blocking) for each size: a
   barrier, warm-up ops, then timed ops back to back, each timed alone
   with ``time.perf_counter``.  An op's time is its slowest rank's; the
   table gives the median, ``busbw = size / time * 2 (N-1) / N``, and the
   ratio gloo time / pyccl time (above 1: pyccl is faster).
2. A DDP training step (forward, backward with DDP's bucketed
   all-reduces, SGD step) of an MLP of about 4.2 million parameters
   (4 x Linear(1024, 1024)), batch 32 per rank: the median step time
   over ``--ddp-steps`` steps after 3 warm-up steps (slowest rank), and
   pyccl's time as a fraction of gloo's.

3. CPU time.  Each rank measures the CPU seconds (user + system, all its
   threads: ``getrusage``) its timed ops took; the table's "cpu/op" is
   the sum over the N ranks per op (per step for DDP).  On a machine
   shared with other work, wall times move with the foreign load (and
   with how the scheduler shares the CPUs between the two libraries'
   threads and the foreign ones), CPU time per op much less: it says
   which library does less work, wall time which one finished first.
   Each phase also reports how many CPUs *other* processes kept busy
   meanwhile (busy time in /proc/stat minus this benchmark's own).

``--rounds R`` runs the two phases R times for each N, alternating which
goes first, and prints each round's ratios, then the tables of the
medians over rounds (per size, the median of the rounds' medians).

pyccl runs with the backend's defaults (``pyccl.torch.Options()``:
restore_input off).  Transport: TCP loopback.  Results and the reading
against the targets: docs/torch.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import socket
import statistics
import sys
import time
from datetime import timedelta
from typing import Any, Dict, List, Optional

# The machine's CPU snapshots that pyccl bench takes around each phase.
from pyccl.bench.orchestrate import _cpu_snapshot, _foreign_cpu

SIZES = [4, 4 << 10, 64 << 10, 1 << 20, 4 << 20, 64 << 20]


def parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text[:-1] if mult > 1 else text) * mult


def fmt_size(n: int) -> str:
    for unit, mult in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= mult and n % mult == 0:
            return "%d%s" % (n // mult, unit)
    return str(n)


def fmt_time(s: float) -> str:
    return "%.1f us" % (s * 1e6) if s < 1e-3 else "%.2f ms" % (s * 1e3)


def _cpu_self() -> float:
    """CPU seconds (user + system) of this process, all threads."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def iters_for(size: int, iters: int) -> int:
    return iters if iters else max(5, min(200, (1 << 30) // max(size, 1)))


def peer(rank: int, n: int, backend: str, port: int, sizes: List[int],
         iters: int, ddp_steps: int, results: Any) -> None:
    try:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        import torch
        import torch.distributed as dist
        import pyccl.torch  # noqa: F401
        torch.set_num_threads(1)
        dist.init_process_group(backend, init_method="tcp://127.0.0.1:%d"
                                % port, rank=rank, world_size=n,
                                timeout=timedelta(seconds=120))
        report: Dict[str, Any] = {"all_reduce": {}, "ddp": [], "cpu": {}}
        for size in sizes:
            t = torch.ones(max(1, size // 4))
            count = iters_for(size, iters)
            for _ in range(max(1, count // 10)):
                dist.all_reduce(t)
            dist.barrier()
            times = []
            cpu0 = _cpu_self()
            for _ in range(count):
                start = time.perf_counter()
                dist.all_reduce(t)
                times.append(time.perf_counter() - start)
            report["all_reduce"][size] = times
            report["cpu"][size] = (_cpu_self() - cpu0) / count
            del t
        if ddp_steps:
            from torch.nn.parallel import DistributedDataParallel as DDP
            torch.manual_seed(0)
            model = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024)
                                          for _ in range(4)])
            ddp = DDP(model)
            opt = torch.optim.SGD(ddp.parameters(), lr=1e-3)
            x, y = torch.randn(32, 1024), torch.randn(32, 1024)
            cpu = 0.0
            for step in range(ddp_steps + 3):
                dist.barrier()
                cpu0 = _cpu_self()
                start = time.perf_counter()
                opt.zero_grad()
                torch.nn.functional.mse_loss(ddp(x), y).backward()
                opt.step()
                if step >= 3:
                    report["ddp"].append(time.perf_counter() - start)
                    cpu += _cpu_self() - cpu0
            report["cpu"]["ddp"] = cpu / ddp_steps
            report["params"] = sum(p.numel() for p in model.parameters())
        dist.destroy_process_group()
        results.put((rank, report))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        import traceback
        results.put((rank, {"error": traceback.format_exc()}))


def run_phase(backend: str, n: int, sizes: List[int], iters: int,
              ddp_steps: int) -> Dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=peer, args=(r, n, backend, port, sizes,
                                            iters, ddp_steps, results))
             for r in range(n)]
    before, started = _cpu_snapshot(), time.monotonic()
    for p in procs:
        p.start()
    reports = dict(results.get(timeout=1800) for _ in range(n))
    for p in procs:
        p.join(30)
    foreign = _foreign_cpu(before, _cpu_snapshot(),
                           time.monotonic() - started)
    for rank, rep in reports.items():
        if "error" in rep:
            raise RuntimeError("%s N=%d rank %d failed:\n%s"
                               % (backend, n, rank, rep["error"]))
    out: Dict[str, Any] = {"all_reduce": {}, "ddp": None, "cpu": {},
                           "foreign_cpus": foreign}
    for size in sizes:
        per_op = [max(rep["all_reduce"][size][i] for rep in reports.values())
                  for i in range(len(reports[0]["all_reduce"][size]))]
        out["all_reduce"][size] = statistics.median(per_op)
        out["cpu"][size] = sum(rep["cpu"][size] for rep in reports.values())
    if ddp_steps:
        per_step = [max(rep["ddp"][i] for rep in reports.values())
                    for i in range(ddp_steps)]
        out["ddp"] = statistics.median(per_step)
        out["cpu"]["ddp"] = sum(rep["cpu"]["ddp"] for rep in reports.values())
        out["params"] = reports[0]["params"]
    return out


def _median_phase(rounds: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per size (and DDP), the median over rounds of each round's median
    time and CPU per op."""
    first = rounds[0]
    out: Dict[str, Any] = {"all_reduce": {}, "ddp": None, "cpu": {},
                           "params": first.get("params")}
    for size in first["all_reduce"]:
        out["all_reduce"][size] = statistics.median(
            r["all_reduce"][size] for r in rounds)
    for key in first["cpu"]:
        out["cpu"][key] = statistics.median(r["cpu"][key] for r in rounds)
    if first["ddp"] is not None:
        out["ddp"] = statistics.median(r["ddp"] for r in rounds)
    return out


def _fmt_foreign(value: Optional[float]) -> str:
    return "?" if value is None else "%.2f" % value


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="torch_bench.py")
    parser.add_argument("--peers", default="2,4")
    parser.add_argument("--sizes", default=",".join(fmt_size(s)
                                                    for s in SIZES))
    parser.add_argument("--iters", type=int, default=0)
    parser.add_argument("--ddp-steps", type=int, default=20)
    parser.add_argument("--no-ddp", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    peers = [int(x) for x in args.peers.split(",")]
    sizes = [parse_size(x) for x in args.sizes.split(",")]
    ddp_steps = 0 if args.no_ddp else args.ddp_steps
    rounds = max(1, args.rounds)
    import torch
    record: Dict[str, Any] = {
        "command": " ".join([os.path.basename(__file__)] + sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "torch": torch.__version__},
        "load_at_start": os.getloadavg(), "results": {}}
    print("torch %s, %d CPUs, load %.2f" % (torch.__version__,
                                             os.cpu_count(),
                                             os.getloadavg()[0]))
    for n in peers:
        runs: Dict[str, List[Dict[str, Any]]] = {"pyccl": [], "gloo": []}
        for rnd in range(rounds):
            order = ("pyccl", "gloo") if rnd % 2 == 0 else ("gloo", "pyccl")
            loads = {}
            for backend in order:
                print("  [N=%d %s round %d] running" % (n, backend, rnd + 1),
                      file=sys.stderr, flush=True)
                loads[backend] = os.getloadavg()[0]
                result = run_phase(backend, n, sizes, args.iters, ddp_steps)
                result["load_at_start"] = loads[backend]
                runs[backend].append(result)
            if rounds > 1:
                p, g = runs["pyccl"][-1], runs["gloo"][-1]
                parts = ["%s %.2f" % (fmt_size(size), g["all_reduce"][size]
                                      / p["all_reduce"][size])
                         for size in sizes]
                if ddp_steps:
                    parts.append("DDP p/g %.2f" % (p["ddp"] / g["ddp"]))
                print("N=%d round %d (g/p; load %.1f/%.1f, other processes "
                      "%s/%s CPUs): %s" % (
                          n, rnd + 1, loads["pyccl"], loads["gloo"],
                          _fmt_foreign(p["foreign_cpus"]),
                          _fmt_foreign(g["foreign_cpus"]), ", ".join(parts)),
                      flush=True)
        phases = {b: _median_phase(runs[b]) for b in runs}
        record["results"][n] = {"median": phases, "rounds": runs}
        bus = 2 * (n - 1) / n
        print("\nN = %d: dist.all_reduce (f32 sum, in place)%s" % (
            n, ", medians of %d rounds" % rounds if rounds > 1 else ""))
        print("%8s  %12s %10s %9s  %12s %10s %9s  %7s" % (
            "size", "pyccl", "busbw GB/s", "cpu/op", "gloo", "busbw GB/s",
            "cpu/op", "g/p"))
        for size in sizes:
            p, g = phases["pyccl"]["all_reduce"][size], \
                phases["gloo"]["all_reduce"][size]
            print("%8s  %12s %10.3g %9s  %12s %10.3g %9s  %7.2f" % (
                fmt_size(size), fmt_time(p), size / p * bus / 1e9,
                fmt_time(phases["pyccl"]["cpu"][size]),
                fmt_time(g), size / g * bus / 1e9,
                fmt_time(phases["gloo"]["cpu"][size]), g / p))
        if ddp_steps:
            p, g = phases["pyccl"]["ddp"], phases["gloo"]["ddp"]
            print("DDP step (%.1fM parameters, batch 32/rank): pyccl %s "
                  "(cpu %s), gloo %s (cpu %s), pyccl/gloo %.2f" % (
                      phases["pyccl"]["params"] / 1e6, fmt_time(p),
                      fmt_time(phases["pyccl"]["cpu"]["ddp"]), fmt_time(g),
                      fmt_time(phases["gloo"]["cpu"]["ddp"]), p / g))
        print("other processes kept busy (CPUs, per phase): pyccl %s, "
              "gloo %s" % (
                  " ".join(_fmt_foreign(r["foreign_cpus"])
                           for r in runs["pyccl"]),
                  " ".join(_fmt_foreign(r["foreign_cpus"])
                           for r in runs["gloo"])))
    record["load_at_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
