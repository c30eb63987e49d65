"""Elastic data-parallel training that survives churn, on one machine.

Four workers fit a linear model by averaging gradients with pyccl.  While
they train, one worker is killed (SIGKILL) and later a new one joins: the
survivors retry the failed step in the smaller group, the newcomer is
admitted at the next safe point and fetches the weights and the step
counter from its peers (SharedState).  At the end every worker holds
bit-identical weights.

Run:  python examples/elastic_training.py [--steps 120]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import time
from typing import Any

import numpy as np

import pyccl

DIM = 1 << 16
CTX = multiprocessing.get_context("spawn")


def target() -> np.ndarray:
    return np.linspace(-1.0, 1.0, DIM, dtype=np.float32)


def worker(address: str, world: int, joiner: bool, steps: int, q: Any) -> None:
    comm = pyccl.Communicator(address, world_size=1 if joiner else world,
                              peer_timeout=5.0, connect_timeout=120.0)
    state = pyccl.SharedState({"w": np.zeros(DIM, dtype=np.float32),
                               "step": np.zeros(1, dtype=np.int64)})
    # Everyone starts from the same bytes; a newcomer only receives.
    pyccl.sync_shared_state(comm, state,
                            "receive_only" if joiner else "enforce_popular")
    w, step = state.tensors["w"], state.tensors["step"]
    rng = np.random.default_rng(os.getpid())
    q.put(("started", os.getpid(), int(step[0])))

    def admit() -> None:
        pyccl.sync_shared_state(comm, state)  # newcomers fetch w and step

    while step[0] < steps:
        # A noisy local gradient of 0.5 * |w - target|^2.
        grad = (w - target()) + rng.normal(0, 0.1, DIM).astype(np.float32)
        pyccl.run_with_retry(comm, lambda: comm.all_reduce(grad, op="avg"),
                             min_peers=2, on_change=admit)
        w -= 0.1 * grad
        step += 1
        if step[0] % 10 == 0:  # a safe point for joiners, decided together
            want = np.array([comm.peers_pending()], dtype=np.int32)
            comm.all_reduce(want, op="min")
            if want[0] > 0:
                comm.update_topology(60.0)
                admit()
        time.sleep(0.01)
    loss = float(np.mean((w - target()) ** 2))
    q.put(("done", os.getpid(), comm.rank, comm.world_size, int(step[0]), loss,
           format(state.hashes()["w"], "016x")))
    comm.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120)
    a = ap.parse_args()
    world = 4
    with pyccl.Master() as master:
        q = CTX.Queue()
        procs = [CTX.Process(target=worker,
                             args=(master.address, world, False, a.steps, q))
                 for _ in range(world)]
        for p in procs:
            p.start()
        for _ in range(world):
            q.get(timeout=60)
        time.sleep(0.3)
        os.kill(procs[-1].pid, signal.SIGKILL)
        print("killed one worker (pid %d)" % procs[-1].pid)
        time.sleep(0.3)
        newcomer = CTX.Process(target=worker,
                               args=(master.address, world, True, a.steps, q))
        newcomer.start()
        msg = q.get(timeout=120)
        print("a new worker joined at step %d" % msg[2])
        rows = [q.get(timeout=300) for _ in range(world)]
        for p in procs + [newcomer]:
            p.join(timeout=30)
    print("%6s %5s %6s %6s %10s  %s" % ("pid", "rank", "world", "steps", "loss",
                                         "hash of w"))
    for r in sorted(rows, key=lambda r: r[2]):
        print("%6d %5d %6d %6d %10.6f  %s" % r[1:])
    same = len({r[6] for r in rows}) == 1
    print("all workers hold identical weights:", "yes" if same else "NO")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
