"""Workers for the observability tests: real processes, each with its own
environment (the slow-peer test hook CCL_TEST_TX_BYTES_PER_S is read when
the communicator is created, so it must be set in that process only).

Each worker joins the group, runs ``plan`` (a function name below), puts
``(rank, ok, value)`` on the results queue, then waits for ``release``
before closing, so the master still holds every member's last report
while the test reads it.
"""
from __future__ import annotations

import os
import time
import traceback
from typing import Any, Dict

import numpy as np

import pyccl


def _entry(address: str, n: int, rank: int, env: Dict[str, str],
           kwargs: Dict[str, Any], plan: str, args: tuple, results: Any,
           release: Any) -> None:
    os.environ.update(env)
    try:
        comm = pyccl.Communicator(address, world_size=n, rank=rank, **kwargs)
    except BaseException:
        results.put((rank, False, traceback.format_exc()))
        return
    try:
        if ":" in plan:  # "module:function", e.g. tests.ring_workers:optimize
            import importlib
            module, name = plan.split(":")
            fn = getattr(importlib.import_module(module), name)
        else:
            fn = globals()[plan]
        value = fn(comm, *args)
    except BaseException:
        results.put((rank, False, traceback.format_exc()))
    else:
        results.put((rank, True, value))
    release.wait(60.0)
    comm.close()


def ring_ops(comm: pyccl.Communicator, n_ops: int, count: int,
             settle: float) -> Dict[str, Any]:
    """``n_ops`` ring all-reduces of ``count`` float32, checked; then a
    pause of ``settle`` seconds inside two barriers, so the last report
    reaches the master.  Returns this rank's stats as a dict."""
    x = np.empty(count, dtype=np.float32)
    n = comm.world_size
    for i in range(n_ops):
        x.fill(comm.rank + i)
        comm.all_reduce(x, algorithm="ring")
        want = float(sum(r + i for r in range(n)))
        if x[0] != want or x[-1] != want:
            raise AssertionError("op %d: %r != %r" % (i, x[0], want))
    comm.barrier()
    time.sleep(settle)
    comm.barrier()
    time.sleep(settle)
    return comm.stats().as_dict()


def mixed_ops(comm: pyccl.Communicator, count: int) -> Dict[str, Any]:
    """Three ring all-reduces of ``count`` float32, a broadcast and an
    all-gather of the same size; returns the stats."""
    x = np.ones(count, dtype=np.float32)
    for _ in range(3):
        comm.all_reduce(x, algorithm="ring")
    comm.broadcast(x, src=0)
    comm.all_gather(x)
    return comm.stats().as_dict()


def _log_json(comm: pyccl.Communicator, log_dir: str) -> None:
    """This process's pyccl log, from INFO up, as JSON lines in
    log_dir/rank<r>.jsonl."""
    import pyccl.log
    stream = open(os.path.join(log_dir, "rank%d.jsonl" % comm.rank), "w",
                  buffering=1)
    pyccl.log.use_json(stream)
    pyccl.log.logger.setLevel("INFO")


def lose_peer(comm: pyccl.Communicator, log_dir: str) -> Any:
    """Every rank logs JSON lines to log_dir/rank<r>.jsonl; rank 2 dies
    (os._exit: its sockets close, no BYE) after the first all-reduce; the
    others fail an op, call update_topology and run one more op."""
    _log_json(comm, log_dir)
    x = np.ones(1 << 16, dtype=np.float32)
    comm.all_reduce(x)
    if comm.rank == 2:
        os._exit(0)
    try:
        comm.all_reduce(x)
    except (pyccl.PeerLost, pyccl.Aborted):
        pass
    comm.update_topology(timeout=30)
    comm.all_reduce(x)
    time.sleep(0.3)  # the log reader polls every 100 ms
    return comm.epoch, comm.world_size


def star_ops(comm: pyccl.Communicator, n_ops: int, count: int) -> Dict[str, Any]:
    """``n_ops`` star all-reduces of ``count`` float32 (the hub, rank 0,
    receives every peer's buffer); returns the stats."""
    x = np.ones(count, dtype=np.float32)
    for _ in range(n_ops):
        comm.all_reduce(x, algorithm="star")
    comm.barrier()
    return comm.stats().as_dict()

