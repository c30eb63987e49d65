"""Worker bodies for tests/test_agreement.py (module level: picklable).

Each member joins a group of three with its own ``peer_timeout``, runs
one all-reduce so every link is up, then one broadcast from rank 0, and
reports how the broadcast ended.  The member told to stop itself does so
before it posts the broadcast, so that when it is woken it cannot
complete the op any more.
"""
from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np

import pyccl

N = 1000


def member(address: str, rank: int, peer_timeout: float, stop: bool,
           q: Any) -> None:
    out: dict = {"rank": rank}
    try:
        comm = pyccl.Communicator(address, world_size=3, rank=rank,
                                  peer_timeout=peer_timeout, op_timeout=60.0)
        warm = np.ones(N, dtype=np.float32)
        comm.all_reduce(warm)
        q.put({"rank": rank, "ready": True})
        if stop:
            os.kill(os.getpid(), signal.SIGSTOP)
        x = (np.arange(N, dtype=np.float32) if rank == 0
             else np.full(N, -1.0, dtype=np.float32))
        try:
            comm.broadcast(x, src=0)
            out["result"] = "ok"
            out["right"] = bool(np.array_equal(x, np.arange(N, dtype=np.float32)))
        except pyccl.CclError as e:
            out["result"] = type(e).__name__
            out["restored"] = bool(rank == 0 or (x == -1.0).all())
        q.put(out)
        try:
            comm.update_topology(30.0)
            y = np.ones(N, dtype=np.float32)
            comm.all_reduce(y)
            after = {"size": comm.world_size,
                     "ok": bool((y == comm.world_size).all())}
        except pyccl.CclError as e:
            after = {"error": type(e).__name__}
        q.put({"rank": rank, "after": after})
        comm.close()
    except BaseException as e:  # report, never hang the test
        q.put({"rank": rank, "exception": repr(e)})
