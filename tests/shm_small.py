"""Runs a 3-rank group of shm_workers.exact_ops and prints each rank's
link table as JSON: tests/test_shm.py runs it in a mount namespace whose
/dev/shm is too small for three pairs of the largest rings."""
from __future__ import annotations

import json
import multiprocessing

import pyccl
from tests import shm_workers


def main() -> None:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    with pyccl.Master() as master:
        procs = [ctx.Process(target=shm_workers.exact_ops,
                             args=(master.address, 3, r, None, q))
                 for r in range(3)]
        for p in procs:
            p.start()
        seen = {}
        for _ in procs:
            rank, links, _ = q.get(timeout=120)
            seen[rank] = links
        for p in procs:
            p.join(30)
    print(json.dumps({str(r): {str(p): v for p, v in l.items()}
                      for r, l in seen.items()}))


if __name__ == "__main__":
    main()
