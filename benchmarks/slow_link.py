"""Slow-link detection, shown end to end: a master with its HTTP view and
N peers on loopback, one of them slowed with the core's test hook
CCL_TEST_TX_BYTES_PER_S (every peer's sends paced at --rate, the slow
one's at --rate / --factor), running ring all-reduces.  Prints, after
each op, whether the master flags a link, then the master's log line, the
`pyccl status` table and the Prometheus lines of the links.

Run: python benchmarks/slow_link.py [--peers 4] [--slow-rank 2]
     [--rate 8e6] [--factor 4] [--ops 8] [--count 131072]
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import time
import urllib.request

import numpy as np


def peer(address, n, rank, env, ops, count, go, step):
    os.environ.update(env)
    import pyccl
    with pyccl.Communicator(address, world_size=n, rank=rank,
                            stats_report=0.1) as comm:
        x = np.ones(count, dtype=np.float32)
        for i in range(ops):
            go.wait()           # the driver reads the view between ops
            comm.all_reduce(x, algorithm="ring")
            step.put((rank, i))
        time.sleep(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--slow-rank", type=int, default=2)
    ap.add_argument("--rate", type=float, default=8e6)
    ap.add_argument("--factor", type=float, default=4.0)
    ap.add_argument("--ops", type=int, default=8)
    ap.add_argument("--count", type=int, default=1 << 17)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="LOG %(message)s")
    import pyccl
    from pyccl import status_cli
    from pyccl.metrics_http import MetricsServer
    ctx = multiprocessing.get_context("spawn")
    go, step = ctx.Event(), ctx.Queue()
    with pyccl.Master() as master, MetricsServer(master) as http:
        procs = []
        for r in range(args.peers):
            rate = args.rate / (args.factor if r == args.slow_rank else 1)
            env = {"CCL_TEST_TX_BYTES_PER_S": str(int(rate))}
            procs.append(ctx.Process(target=peer, args=(
                master.address, args.peers, r, env, args.ops, args.count,
                go, step), daemon=True))
        for p in procs:
            p.start()
        print("%d peers, ring all-reduce of %d float32; sends paced at "
              "%.1f MB/s, rank %d's at %.1f MB/s (%gx slower)" % (
                  args.peers, args.count, args.rate / 1e6, args.slow_rank,
                  args.rate / args.factor / 1e6, args.factor))
        go.set()
        done = {}
        while len(done) < args.peers or min(done.values()) < args.ops - 1:
            rank, i = step.get(timeout=120)
            done[rank] = i
            if rank == (args.slow_rank + 1) % args.peers:
                time.sleep(0.15)  # a report (every 0.1 s) lands
                slow = [(l.src, l.dst) for l in master.stats().slow_links]
                print("after op %d (at the receiver of the slow link): "
                      "flagged %s" % (i + 1, slow or "none"))
        time.sleep(0.3)
        print()
        print(status_cli.render(status_cli.fetch("127.0.0.1:%d" % http.port)))
        print()
        with urllib.request.urlopen(http.url + "/metrics") as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(("pyccl_link_rx_rate", "pyccl_link_slow")):
                    print(line)
        for p in procs:
            p.join(30)


if __name__ == "__main__":
    main()
