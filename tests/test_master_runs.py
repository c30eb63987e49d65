"""The master across runs: peers that waited through a run and disagree
(same wanted rank) are refused when the next run forms, the master keeps
serving, and a fresh group forms afterwards."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import pyccl


def _join(address, world, rank, out, key, **kw):
    try:
        out[key] = pyccl.Communicator(address, world_size=world, rank=rank, **kw)
    except pyccl.CclError as e:
        out[key] = e


def wait_pending(comm, n, limit_s=30.0):
    """Returns once the master has announced n waiting joiners to comm."""
    deadline = time.monotonic() + limit_s
    while comm.peers_pending() < n:
        assert time.monotonic() < deadline, comm.peers_pending()
        time.sleep(0.005)


@pytest.mark.timeout(120)
def test_conflicting_waiters_are_refused_and_master_survives():
    with pyccl.Master() as master:
        out: dict = {}
        ts = [threading.Thread(target=_join, args=(master.address, 2, r, out, r))
              for r in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert all(isinstance(out[r], pyccl.Communicator) for r in range(2)), out
        # Two joiners both want rank 0: they wait while the run is on.
        js = [threading.Thread(target=_join, args=(master.address, 2, 0, out,
                                                    "j%d" % k),
                               kwargs={"connect_timeout": 4.0})
              for k in range(2)]
        for k, j in enumerate(js):
            j.start()
            # Registered and waiting: the master announces it to the run.
            wait_pending(out[0], k + 1)
        for r in range(2):
            out[r].close()  # the run ends: the waiters form the next one
        for j in js:
            j.join(30)
        kinds = sorted(type(out[k]).__name__ for k in ("j0", "j1"))
        # The second rank-0 is refused; the first, alone, waits for a
        # partner until its connect_timeout.
        assert kinds == ["Rejected", "Timeout"], out
        refused = [out[k] for k in ("j0", "j1")
                   if isinstance(out[k], pyccl.Rejected)][0]
        assert "rank 0 is already wanted" in str(refused), refused
        for k in ("j0", "j1"):
            if isinstance(out[k], pyccl.Communicator):
                out[k].close()
        # The master still forms groups.
        ts = [threading.Thread(target=_join, args=(master.address, 2, None, out,
                                                    "n%d" % r))
              for r in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        comms = [out["n0"], out["n1"]]
        assert all(isinstance(c, pyccl.Communicator) for c in comms), out
        xs = [np.ones(3, dtype=np.float32) for _ in comms]
        ws = [c.all_reduce(x, async_op=True) for c, x in zip(comms, xs)]
        for w in ws:
            w.wait(10)
        assert all((x == 2).all() for x in xs)
        for c in comms:
            c.close()
