"""Quantized all-reduce on loopback: milliseconds per op, f32 against each
quantized format, in the same run (docs/quantization.md, "Speed").

    PYTHONPATH=. python benchmarks/quant_loopback.py [--peers 4]
        [--mib 64] [--rounds 5] [--algorithms auto,direct]

Every rank runs the variants in turn, round after round (interleaved, so
a change in the machine's load hits them all alike), each op preceded by
a small all-reduce that lines the ranks up; a variant's time is the
slowest rank's, and the table gives the median over the rounds and the
ratio to f32.  --algorithms runs every quantized format with each
algorithm given ("auto": the star or the ring; "ring", "direct").  The
machine is shared: print `uptime` next to it.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import numpy as np

import pyccl

VARIANTS = [None, "u8", "u4", "e3m0", "f16", "bf16"]


def _variants(algorithms):
    return [(None, "auto")] + [(v, a) for v in VARIANTS[1:] for a in algorithms]


def _peer(address, n, rank, count, rounds, algorithms, results):
    comm = pyccl.Communicator(address, world_size=n, rank=rank,
                              op_timeout=120.0, connect_timeout=60.0)
    try:
        x = np.random.default_rng(rank).standard_normal(count).astype(
            np.float32)
        sync = np.zeros(1, np.float32)
        variants = _variants(algorithms)
        times = {str(v): [] for v in variants}
        for _ in range(rounds):
            for v, alg in variants:
                comm.all_reduce(sync, "sum")
                t0 = time.perf_counter()
                if v is None:
                    comm.all_reduce(x, "avg")
                else:
                    comm.all_reduce(x, "avg", quant=v, algorithm=alg)
                times[str((v, alg))].append(time.perf_counter() - t0)
        results.put((rank, times))
    finally:
        comm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--algorithms", default="auto",
                    help="comma-separated: auto, ring, direct, star")
    a = ap.parse_args()
    algorithms = [x.strip() for x in a.algorithms.split(",") if x.strip()]
    count = a.mib * 1024 * 1024 // 4
    master = pyccl.Master()
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_peer, args=(master.address, a.peers, r,
                                             count, a.rounds, algorithms,
                                             results))
             for r in range(a.peers)]
    for p in procs:
        p.start()
    per_rank = dict(results.get(timeout=1800) for _ in procs)
    for p in procs:
        p.join(30)
    master.close()
    print("%d peers, %d MiB f32, median of %d rounds (slowest rank)"
          % (a.peers, a.mib, a.rounds))
    print("%-6s %-9s %9s %9s" % ("quant", "algorithm", "ms", "vs f32"))
    base = None
    for v, alg in _variants(algorithms):
        worst = [max(per_rank[r][str((v, alg))][i] for r in per_rank)
                 for i in range(a.rounds)]
        med = statistics.median(worst)
        base = base or med
        print("%-6s %-9s %9.2f %8.2fx" % (v or "f32", alg, med * 1e3,
                                           med / base))


if __name__ == "__main__":
    main()
