"""Workers for tests/test_tuning.py (the automatic algorithm choice from
the master's cost model), run by tests/obs_group.Group."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

import pyccl

from tests.ring_workers import _digest


def _exact(comm: pyccl.Communicator, count: int, **kw: Any) -> str:
    """An automatic all-reduce of `count` float32 whose sums are exact;
    checked here, digest returned."""
    n, r = comm.world_size, comm.rank
    x = (np.arange(count, dtype=np.float32) % 7) + r
    comm.all_reduce(x, **kw)
    want = (np.arange(count, dtype=np.float32) % 7) * n + n * (n - 1) / 2
    assert np.array_equal(x, want), (count, x[:4], want[:4])
    return _digest(x)


def _last_algorithms(comm: pyccl.Communicator, k: int) -> list:
    ops = comm.stats().ops
    return [(o.operation, o.algorithm, o.bytes) for o in ops[-k:]]


def tuned(comm: pyccl.Communicator, count: int, reps: int) -> Dict[str, Any]:
    """Ring all-reduces that give the master rates and round trips, then
    optimize_topology; the automatic choice on both sides of the new
    threshold, plain and quantized, and broadcasts around the broadcast
    threshold."""
    out: Dict[str, Any] = {"t0": comm.tuning(), "epoch0": comm.epoch}
    x = np.ones(count, dtype=np.float32)
    for _ in range(reps):
        comm.all_reduce(x, algorithm="ring")
    out["changed"] = comm.optimize_topology(timeout=60)
    t = comm.tuning()
    out.update(t1=t, epoch1=comm.epoch)
    at = t["allreduce_star_max"] // 4  # float32 elements at the threshold
    out["digests"] = [_exact(comm, at), _exact(comm, at + 1)]
    out["plain_algos"] = _last_algorithms(comm, 2)
    d = t["allreduce_direct_max"] // 4
    if d:
        out["digests"] += [_exact(comm, d), _exact(comm, d + 1)]
        out["direct_algos"] = _last_algorithms(comm, 2)
    rng = np.random.default_rng(7 + comm.rank)
    q0 = rng.standard_normal(at).astype(np.float32)
    q1 = rng.standard_normal(at + 1).astype(np.float32)
    comm.all_reduce(q0, quant="u8")
    comm.all_reduce(q1, quant="u8")
    out["digests"] += [_digest(q0), _digest(q1)]
    out["algos"] = _last_algorithms(comm, 2)
    b = t["bcast_direct_max"]
    for size in (b, b + 1):
        y = np.full(size, comm.rank == 1, dtype=np.uint8)
        comm.broadcast(y, src=1)
        assert y.all(), size
    return out


def fixed(comm: pyccl.Communicator, count: int) -> Dict[str, Any]:
    """star_max_bytes given: the caller's threshold, model or not."""
    x = np.ones(count, dtype=np.float32)
    comm.all_reduce(x, algorithm="ring")
    comm.optimize_topology(timeout=60)
    out = {"t": comm.tuning(), "digests": [_exact(comm, 250), _exact(comm, 251)]}
    out["algos"] = _last_algorithms(comm, 2)
    return out
