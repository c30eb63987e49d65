"""Workers for tests/test_shm.py (module-level: spawned processes import
them).  Each joins a group on 127.0.0.1 with its own ``shm`` setting and
reports through a queue."""
from __future__ import annotations

import os
import time
from typing import Any, Optional

import numpy as np

import pyccl


def links(c: pyccl.Communicator) -> dict:
    """peer rank -> (connections open, of them through shared memory)."""
    return {l.rank: (l.connections, l.shared_memory) for l in c.stats().links}


def exact_ops(address: str, world: int, rank: int, shm: Optional[bool],
              q: Any) -> None:
    """A mix of collectives, each checked against numpy; reports the link
    table and the bytes of a quantized all-reduce (for a byte-for-byte
    comparison across ranks)."""
    with pyccl.Communicator(address, world, rank, shm=shm,
                            op_timeout=60) as c:
        for n in (1, 7, 1000, 65536, 1 << 20, (4 << 20) + 3):
            parts = [np.random.default_rng(r).standard_normal(n)
                     .astype(np.float32) for r in range(world)]
            x = parts[rank].copy()
            want = parts[0].copy()
            for p in parts[1:]:
                want += p
            c.all_reduce(x, algorithm="ring")
            assert np.allclose(x, want, rtol=1e-5, atol=1e-5), n
        y = np.arange(3 << 20, dtype=np.int64) * (rank + 1)
        c.all_reduce(y)
        assert np.array_equal(y, np.arange(3 << 20, dtype=np.int64)
                              * (world * (world + 1) // 2))
        b = np.full(1 << 20, rank, dtype=np.float64)
        c.broadcast(b, src=world - 1)
        assert np.all(b == world - 1)
        out = np.zeros((world, 1000), dtype=np.int32)
        c.all_gather(out, np.full(1000, rank * 3, dtype=np.int32))
        assert np.array_equal(out[:, 0], np.arange(world) * 3)
        qx = np.random.default_rng(7 + rank).standard_normal(1 << 20) \
            .astype(np.float32)
        c.all_reduce(qx, quant="u8")
        seen = links(c)
        c.barrier()  # nobody closes (BYE) before everyone read its links
        q.put((rank, seen, qx.tobytes()))


def _input(rank: int, quant: Optional[str]) -> np.ndarray:
    if quant is None:
        return np.full(2 << 20, float(rank + 1), dtype=np.float32)
    return np.random.default_rng(rank).standard_normal(2 << 20).astype(
        np.float32)


def kill_target(address: str, world: int, rank: int, peer_timeout: float,
                q: Any, quant: Optional[str] = None,
                algorithm: str = "auto") -> None:
    """Streams 8 MiB all-reduces (quantized: quant, algorithm) until one
    fails; the victim is killed by the test.  Reports (rank, links before,
    outcome, seconds from the first failure's op start, input intact, next
    op after update_topology, links after)."""
    c = pyccl.Communicator(address, world, rank, op_timeout=60,
                           peer_timeout=peer_timeout)
    before = links(c)
    orig = _input(rank, quant)
    kw = {} if quant is None else {"quant": quant, "algorithm": algorithm}
    x = orig.copy()
    c.all_reduce(x, **kw)
    q.put(("ready", rank, os.getpid(), before))
    ops = 0
    while True:
        x = orig.copy()
        t0 = time.monotonic()
        try:
            c.all_reduce(x, **kw)
            ops += 1
        except pyccl.CclError as e:
            took = time.monotonic() - t0
            intact = bool(np.array_equal(x, orig))
            c.update_topology(timeout=60)
            z = np.ones(1 << 20, dtype=np.float32)
            c.all_reduce(z)
            after = links(c)
            c.barrier()  # nobody closes (BYE) before everyone read its links
            q.put(("done", rank, type(e).__name__, took, intact, ops,
                   float(z[0]), c.size, after))
            c.close()
            return
        if ops > 200000:
            q.put(("done", rank, "never failed", 0.0, True, ops, 0.0, 0, {}))
            return


def sleeper(address: str, world: int, rank: int, peer_timeout: float,
            q: Any, quant: Optional[str] = None,
            algorithm: str = "auto") -> None:
    """The victim: streams the same ops as the others until the test kills
    or stops it."""
    c = pyccl.Communicator(address, world, rank, op_timeout=60,
                           peer_timeout=peer_timeout)
    kw = {} if quant is None else {"quant": quant, "algorithm": algorithm}
    x = _input(rank, quant)
    c.all_reduce(x, **kw)
    q.put(("ready", rank, os.getpid(), links(c)))
    while True:
        try:
            c.all_reduce(x, **kw)
        except pyccl.CclError:
            time.sleep(0.05)

