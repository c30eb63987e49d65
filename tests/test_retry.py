"""run_with_retry's edges with a real (one-member) group: a wait of the
caller's own that ran out (StillRunning) is not a failure and is raised
without a safe point; a real failure goes through update_topology and the
retry succeeds; the default update timeout follows op_timeout."""
from __future__ import annotations

import numpy as np
import pytest

import pyccl


@pytest.mark.timeout(60)
def test_still_running_is_not_retried():
    with pyccl.Master() as master, \
            pyccl.Communicator(master.address, world_size=1) as comm:
        calls = []

        def fn():
            calls.append(1)
            raise pyccl.StillRunning("all_reduce still running after wait(timeout=0.1)")

        with pytest.raises(pyccl.StillRunning):
            pyccl.run_with_retry(comm, fn)
        assert len(calls) == 1  # no update_topology, no second run


@pytest.mark.timeout(60)
def test_failure_is_retried_after_the_safe_point():
    with pyccl.Master() as master, \
            pyccl.Communicator(master.address, world_size=1,
                               op_timeout=3.0) as comm:
        x = np.arange(4, dtype=np.float32)
        calls = []

        def fn():
            calls.append(1)
            if len(calls) == 1:
                raise pyccl.PeerLost("simulated loss")
            return comm.all_reduce(x)

        out = pyccl.run_with_retry(comm, fn)
        assert len(calls) == 2
        np.testing.assert_array_equal(out, np.arange(4, dtype=np.float32))
        # update_topology() with the default timeout (op_timeout + 5 s)
        # answers at once when nothing changed.
        assert comm.update_topology() is False
