"""torch.distributed with backend "pyccl" against gloo, in the same run.

    python benchmarks/torch_bench.py [--peers 2,4] [--sizes 4,4K,64K,1M,4M,64M]
                                     [--iters N] [--ddp-steps 20]
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
import socket
import statistics
import sys
import time
from datetime import timedelta
from typing import Any, Dict, List

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
        report: Dict[str, Any] = {"all_reduce": {}, "ddp": []}
        for size in sizes:
            t = torch.ones(max(1, size // 4))
            count = iters_for(size, iters)
            for _ in range(max(1, count // 10)):
                dist.all_reduce(t)
            dist.barrier()
            times = []
            for _ in range(count):
                start = time.perf_counter()
                dist.all_reduce(t)
                times.append(time.perf_counter() - start)
            report["all_reduce"][size] = times
            del t
        if ddp_steps:
            from torch.nn.parallel import DistributedDataParallel as DDP
            torch.manual_seed(0)
            model = torch.nn.Sequential(*[torch.nn.Linear(1024, 1024)
                                          for _ in range(4)])
            ddp = DDP(model)
            opt = torch.optim.SGD(ddp.parameters(), lr=1e-3)
            x, y = torch.randn(32, 1024), torch.randn(32, 1024)
            for step in range(ddp_steps + 3):
                dist.barrier()
                start = time.perf_counter()
                opt.zero_grad()
                torch.nn.functional.mse_loss(ddp(x), y).backward()
                opt.step()
                if step >= 3:
                    report["ddp"].append(time.perf_counter() - start)
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
    for p in procs:
        p.start()
    reports = dict(results.get(timeout=1800) for _ in range(n))
    for p in procs:
        p.join(30)
    for rank, rep in reports.items():
        if "error" in rep:
            raise RuntimeError("%s N=%d rank %d failed:\n%s"
                               % (backend, n, rank, rep["error"]))
    out: Dict[str, Any] = {"all_reduce": {}, "ddp": None}
    for size in sizes:
        per_op = [max(rep["all_reduce"][size][i] for rep in reports.values())
                  for i in range(len(reports[0]["all_reduce"][size]))]
        out["all_reduce"][size] = statistics.median(per_op)
    if ddp_steps:
        per_step = [max(rep["ddp"][i] for rep in reports.values())
                    for i in range(ddp_steps)]
        out["ddp"] = statistics.median(per_step)
        out["params"] = reports[0]["params"]
    return out


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="torch_bench.py")
    parser.add_argument("--peers", default="2,4")
    parser.add_argument("--sizes", default=",".join(fmt_size(s)
                                                    for s in SIZES))
    parser.add_argument("--iters", type=int, default=0)
    parser.add_argument("--ddp-steps", type=int, default=20)
    parser.add_argument("--no-ddp", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    peers = [int(x) for x in args.peers.split(",")]
    sizes = [parse_size(x) for x in args.sizes.split(",")]
    ddp_steps = 0 if args.no_ddp else args.ddp_steps
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
        phases = {}
        for backend in ("pyccl", "gloo"):
            print("  [N=%d %s] running" % (n, backend), file=sys.stderr,
                  flush=True)
            phases[backend] = run_phase(backend, n, sizes, args.iters,
                                        ddp_steps)
        record["results"][n] = phases
        bus = 2 * (n - 1) / n
        print("\nN = %d: dist.all_reduce (f32 sum, in place)" % n)
        print("%8s  %12s %10s  %12s %10s  %7s" % (
            "size", "pyccl", "busbw GB/s", "gloo", "busbw GB/s", "g/p"))
        for size in sizes:
            p, g = phases["pyccl"]["all_reduce"][size], \
                phases["gloo"]["all_reduce"][size]
            print("%8s  %12s %10.3g  %12s %10.3g  %7.2f" % (
                fmt_size(size), fmt_time(p), size / p * bus / 1e9,
                fmt_time(g), size / g * bus / 1e9, g / p))
        if ddp_steps:
            p, g = phases["pyccl"]["ddp"], phases["gloo"]["ddp"]
            print("DDP step (%.1fM parameters, batch 32/rank): pyccl %s, "
                  "gloo %s, pyccl/gloo %.2f" % (
                      phases["pyccl"]["params"] / 1e6, fmt_time(p),
                      fmt_time(g), p / g))
    record["load_at_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
