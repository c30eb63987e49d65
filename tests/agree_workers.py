"""Worker bodies for tests/test_agreement.py (module level: picklable).

Each member joins a group of three with its own ``peer_timeout``, runs
one all-reduce so every link is up, then one broadcast from ``src``, and
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


def _report_after(comm: pyccl.Communicator, rank: int, q: Any) -> None:
    """update_topology, one exact all-reduce in the group it gives, and
    the report of how that went; then close."""
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


def member(address: str, rank: int, peer_timeout: float, stop: bool,
           q: Any, src: int = 0) -> None:
    out: dict = {"rank": rank}
    try:
        comm = pyccl.Communicator(address, world_size=3, rank=rank,
                                  peer_timeout=peer_timeout, op_timeout=60.0)
        warm = np.ones(N, dtype=np.float32)
        comm.all_reduce(warm)
        q.put({"rank": rank, "ready": True})
        if stop:
            os.kill(os.getpid(), signal.SIGSTOP)
        x = (np.arange(N, dtype=np.float32) if rank == src
             else np.full(N, -1.0, dtype=np.float32))
        try:
            comm.broadcast(x, src=src)
            out["result"] = "ok"
            out["right"] = bool(np.array_equal(x, np.arange(N, dtype=np.float32)))
        except pyccl.CclError as e:
            out["result"] = type(e).__name__
            out["restored"] = bool(rank == src or (x == -1.0).all())
        q.put(out)
        _report_after(comm, rank, q)
    except BaseException as e:  # report, never hang the test
        q.put({"rank": rank, "exception": repr(e)})


SIZES = [1, 7, 1000, 20000, 300001]


def _data(i: int) -> np.ndarray:
    n = SIZES[i % len(SIZES)]
    return ((np.arange(n, dtype=np.int64) + i) % 7).astype(np.float32)


def partition_member(address: str, rank: int, q: Any, ops: Any) -> None:
    """Batches of 8 concurrent all-reduces until one fails; reports every
    op's outcome, which peers this member still has links to, and the
    group after update_topology."""
    out: dict = {"rank": rank}
    try:
        comm = pyccl.Communicator(address, world_size=3, rank=rank,
                                  peer_timeout=2.0, op_timeout=30.0,
                                  conns_per_peer=1)
        q.put({"rank": rank, "ready": True, "pid": os.getpid()})
        outcomes: list = []
        wrong = 0
        for it in range(100000):
            bufs, works = [], []
            for k in range(8):
                i = it * 8 + k
                bufs.append(_data(i))
                works.append(comm.all_reduce(
                    bufs[-1], algorithm="star" if k % 2 else "ring",
                    async_op=True))
            failed = False
            for k, w in enumerate(works):
                i = it * 8 + k
                try:
                    w.wait()
                    outcomes.append("ok")
                    wrong += not np.array_equal(bufs[k], _data(i) * 3)
                except pyccl.CclError as e:
                    outcomes.append(type(e).__name__)
                    failed = True
            if failed:
                break
            ops[rank] = len(outcomes)
        out["outcomes"] = outcomes
        out["wrong"] = wrong
        out["open"] = sorted(link.rank for link in comm.stats().links
                             if link.connections > 0)
        q.put(out)
        _report_after(comm, rank, q)
    except BaseException as e:
        q.put({"rank": rank, "exception": repr(e)})


def count_member(address: str, world: int, rank: int, ops: int,
                 q: Any) -> None:
    """``ops`` one-float star all-reduces; reports the bytes this member
    sent to each peer meanwhile (headers included: DONEs count)."""
    try:
        comm = pyccl.Communicator(address, world_size=world, rank=rank)
        x = np.ones(1, dtype=np.float32)
        comm.all_reduce(x, algorithm="star")  # every link up
        comm.barrier()
        before = {link.rank: link.tx_bytes for link in comm.stats().links}
        wrong = 0
        for _ in range(ops):
            x[0] = rank + 1
            comm.all_reduce(x, algorithm="star")
            wrong += int(x[0] != world * (world + 1) // 2)
        after = {link.rank: link.tx_bytes for link in comm.stats().links}
        q.put({"rank": rank, "wrong": wrong,
               "tx": {p: after[p] - before[p] for p in after}})
        comm.barrier()
        comm.close()
    except BaseException as e:
        q.put({"rank": rank, "exception": repr(e)})
