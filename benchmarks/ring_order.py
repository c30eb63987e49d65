"""Ring order: all-reduce time before and after optimize_topology with one
slow link, on loopback.

N peers; every peer's sends are paced at --rate (the core's test hook
CCL_TEST_TX_BYTES_PER_S), except that the --slow-from peer's sends to
--slow-to go at --rate / --factor and its sends to the others are not
paced (CCL_TEST_TX_SLOW_PEER limits its hook to that one link).  So the
ring 0 -> 1 -> ... starts with one link --factor times slower than the
rest.  Each peer times --reps ring all-reduces of --mib MiB (a barrier
before each), calls optimize_topology, and times as many again; the
table gives the median over the reps of the slowest rank's time.

Run: python benchmarks/ring_order.py [--peers 4] [--mib 64] [--reps 5]
     [--rate 200e6] [--factor 4] [--slow-from 2] [--slow-to 3]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import numpy as np


def peer(address, n, rank, env, count, reps, results, op_timeout=300.0):
    os.environ.update(env)
    import logging
    logging.basicConfig(level=logging.DEBUG if os.environ.get("PYCCL_LOG_LEVEL")
                        == "debug" else logging.WARNING,
                        format="%(relativeCreated)d %(message)s")
    import pyccl
    with pyccl.Communicator(address, world_size=n, rank=rank,
                            stats_report=0.5, op_timeout=op_timeout) as comm:
        x = np.ones(count, dtype=np.float32)

        def timed():
            out = []
            for _ in range(reps):
                comm.barrier()
                t0 = time.perf_counter()
                comm.all_reduce(x, algorithm="ring")
                out.append(time.perf_counter() - t0)
            return out

        before, ring0 = timed(), comm.ring_order()
        t0 = time.perf_counter()
        changed = comm.optimize_topology(timeout=120)
        took = time.perf_counter() - t0
        after, ring1 = timed(), comm.ring_order()
        results.put((rank, before, after, ring0, ring1, changed, took))
        comm.barrier()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--mib", type=float, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rate", type=float, default=200e6)
    ap.add_argument("--factor", type=float, default=4.0)
    ap.add_argument("--slow-from", type=int, default=2)
    ap.add_argument("--slow-to", type=int, default=3)
    ap.add_argument("--op-timeout", type=float, default=300.0)
    args = ap.parse_args()
    import pyccl
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    count = int(args.mib * (1 << 20)) // 4
    load0 = os.getloadavg()
    with pyccl.Master() as master:
        procs = []
        for r in range(args.peers):
            if r == args.slow_from:
                env = {"CCL_TEST_TX_BYTES_PER_S": str(int(args.rate / args.factor)),
                       "CCL_TEST_TX_SLOW_PEER": str(args.slow_to)}
            else:
                env = {"CCL_TEST_TX_BYTES_PER_S": str(int(args.rate))}
            procs.append(ctx.Process(target=peer, args=(
                master.address, args.peers, r, env, count, args.reps, results,
                args.op_timeout),
                daemon=True))
        for p in procs:
            p.start()
        got = [results.get(timeout=1800) for _ in procs]
        for p in procs:
            p.join(30)
    load1 = os.getloadavg()
    got.sort()
    before = [max(g[1][i] for g in got) for i in range(args.reps)]
    after = [max(g[2][i] for g in got) for i in range(args.reps)]
    mb = args.mib * (1 << 20)
    busf = 2 * (args.peers - 1) / args.peers
    print("%d peers, ring all-reduce of %g MiB; sends paced at %.0f MB/s, "
          "rank %d -> %d at %.0f MB/s (%gx slower)" % (
              args.peers, args.mib, args.rate / 1e6, args.slow_from,
              args.slow_to, args.rate / args.factor / 1e6, args.factor))
    print("load average %.1f / %.1f / %.1f before, %.1f / %.1f / %.1f after"
          % (load0 + load1))
    print()
    print("| ring order | median time (s) | min (s) | bus bandwidth (MB/s) |")
    print("|---|---|---|---|")
    for name, ring, t in (("before: " + " ".join(map(str, got[0][3])),
                           got[0][3], before),
                          ("after: " + " ".join(map(str, got[0][4])),
                           got[0][4], after)):
        med = statistics.median(t)
        print("| %s | %.3f | %.3f | %.0f |" % (name, med, min(t),
                                                mb * busf / med / 1e6))
    print()
    print("speed-up (median): %.2fx; optimize_topology took %.2f s (probe, "
          "report, new epoch); changed: %s" % (
              statistics.median(before) / statistics.median(after),
              max(g[6] for g in got), all(g[5] for g in got)))


if __name__ == "__main__":
    main()
