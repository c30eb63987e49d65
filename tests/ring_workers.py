"""Workers for the ring-order tests (tests/test_ring_order.py), run by
tests/obs_group.Group: each joins, runs a plan below, and returns a value.

A slow link is made with the C core's test hooks, read when the
communicator is created: CCL_TEST_TX_BYTES_PER_S paces this process's
sends, and CCL_TEST_TX_SLOW_PEER limits that to its sends to one rank.
"""
from __future__ import annotations

import hashlib
import statistics
import time
from typing import Any, Dict, List

import numpy as np

import pyccl


def _digest(x: np.ndarray) -> str:
    return hashlib.sha256(x.tobytes()).hexdigest()


def _check_ops(comm: pyccl.Communicator, count: int, seed: int) -> Dict[str, Any]:
    """Ring all-reduce, reduce-scatter, all-gather and quantized ring
    all-reduce: exact where the values make sums exact (small integers),
    and the digest of a random-float all-reduce, which must be the same
    on every rank."""
    n, r = comm.world_size, comm.rank
    x = np.full(count, r + 1, dtype=np.float32)
    comm.all_reduce(x, algorithm="ring")
    assert (x == n * (n + 1) / 2).all(), x[:4]
    src = np.arange(n * 8, dtype=np.int64) + 100 * r
    block = comm.reduce_scatter(src)
    want = (np.arange(n * 8, dtype=np.int64) * n + 100 * sum(range(n)))
    assert (block == want[r * 8:(r + 1) * 8]).all(), (block, r)
    gathered = comm.all_gather(np.full(5, r, dtype=np.int32))
    assert (np.asarray(gathered).reshape(n, 5) ==
            np.arange(n, dtype=np.int32)[:, None]).all(), gathered
    q = np.full(4096, 1.0, dtype=np.float32)
    comm.all_reduce(q, algorithm="ring", quant="u8")
    rng = np.random.default_rng(seed * 100 + r)
    f = rng.standard_normal(count).astype(np.float32)
    comm.all_reduce(f, algorithm="ring")
    fq = rng.standard_normal(4096).astype(np.float32)
    comm.all_reduce(fq, algorithm="ring", quant="u8")
    return {"float": _digest(f), "quant": _digest(fq), "quant_ones": _digest(q)}


def _timed(comm: pyccl.Communicator, count: int, reps: int) -> List[float]:
    x = np.ones(count, dtype=np.float32)
    times = []
    for _ in range(reps):
        comm.barrier()
        t0 = time.perf_counter()
        comm.all_reduce(x, algorithm="ring")
        times.append(time.perf_counter() - t0)
    return times


def optimize(comm: pyccl.Communicator, count: int, reps: int) -> Dict[str, Any]:
    """Timed ring all-reduces, the checked ops, optimize_topology, then
    the same again in the new ring."""
    out: Dict[str, Any] = {"rank0": comm.rank, "epoch0": comm.epoch,
                           "ring0": comm.ring_order()}
    out["before"] = statistics.median(_timed(comm, count, reps))
    out["digests0"] = _check_ops(comm, count, 1)
    out["changed"] = comm.optimize_topology(timeout=30)
    out.update(rank1=comm.rank, epoch1=comm.epoch, ring1=comm.ring_order())
    out["after"] = statistics.median(_timed(comm, count, reps))
    out["digests1"] = _check_ops(comm, count, 1)
    # Once more: no better ring to find, so the ring stays (a new epoch
    # only if the cost model's thresholds moved by more than 4x, which
    # round trips measured on a loaded host can do).
    out["tune1"] = comm.tuning()
    out["again"] = comm.optimize_topology(timeout=30)
    out["ring2"] = comm.ring_order()
    out["tune2"] = comm.tuning()
    return out


def ops_then_update(comm: pyccl.Communicator, n_ops: int, count: int,
                    settle: float) -> Dict[str, Any]:
    """n_ops ring all-reduces, a pause for the reports to reach the
    master, then a plain update_topology (the master's policies act
    there); a Rejected is returned, not raised."""
    x = np.ones(count, dtype=np.float32)
    for _ in range(n_ops):
        comm.all_reduce(x, algorithm="ring")
    comm.barrier()
    time.sleep(settle)
    comm.barrier()
    out: Dict[str, Any] = {"rank0": comm.rank, "epoch0": comm.epoch,
                           "ring0": comm.ring_order()}
    try:
        out["changed"] = comm.update_topology(timeout=30)
    except pyccl.Rejected as exc:
        out["rejected"] = str(exc)
        return out
    out.update(rank1=comm.rank, epoch1=comm.epoch, size1=comm.world_size,
               ring1=comm.ring_order())
    out["digests"] = _check_ops(comm, count, 2)
    return out
