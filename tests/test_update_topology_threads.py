"""update_topology in one thread does not lock the communicator for the
others (the rule in pyccl/communicator.py's docstring).  A group of two
in this process: rank 0 enters update_topology while rank 1 never does,
so the call waits for its whole timeout; meanwhile other threads read
rank 0's state at once, cannot start ops or a second update (InvalidUsage),
and close() returns at once, after which the update raises Closed.  How
the update itself ends (the master gives up on rank 1, or the timeout)
is the master's policy, not checked here."""
import threading
import time

import numpy as np
import pytest

import pyccl

pytestmark = pytest.mark.timeout(120)

UPDATE_TIMEOUT = 5.0
QUICK = 1.0  # seconds: far below UPDATE_TIMEOUT, far above a lock wait


@pytest.fixture
def pair():
    with pyccl.Master() as master:
        comms = {}

        def join(rank):
            comms[rank] = pyccl.Communicator(master, world_size=2, rank=rank)

        threads = [threading.Thread(target=join, args=(r,)) for r in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(comms) == [0, 1]
        try:
            yield comms[0], comms[1]
        finally:
            for comm in comms.values():
                comm.close()


def start_update(comm):
    """Runs comm.update_topology in a thread; returns (thread, outcome)
    once the update is in progress (or over)."""
    outcome = {}

    def run():
        start = time.monotonic()
        try:
            outcome["value"] = comm.update_topology(UPDATE_TIMEOUT)
        except pyccl.CclError as exc:
            outcome["error"] = exc
        outcome["took"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not comm._updating and not outcome:  # set as the update begins
        assert time.monotonic() < deadline, outcome
        time.sleep(0.001)
    return thread, outcome


def quick(call):
    start = time.monotonic()
    value = call()
    took = time.monotonic() - start
    assert took < QUICK, "%r took %.2fs during update_topology" % (call, took)
    return value


def test_state_reads_do_not_wait_for_update_topology(pair):
    comm, _ = pair
    thread, outcome = start_update(comm)
    # Read again and again while the update is still running (rank 1 never
    # joins it, so it lasts until the master gives up on rank 1 or until
    # its timeout, whichever the master's policy makes first).
    reads = 0
    end = time.monotonic() + 1.0
    while time.monotonic() < end and thread.is_alive():
        assert quick(comm.peers_pending) == 0
        assert quick(lambda: comm.epoch) >= 1
        assert quick(lambda: (comm.rank, comm.world_size)) == (0, 2)
        assert not quick(lambda: comm.closed)
        if thread.is_alive():
            reads += 1
        time.sleep(0.01)
    assert reads >= 10, (reads, outcome)
    thread.join(UPDATE_TIMEOUT + 10)
    assert not thread.is_alive()
    assert outcome["took"] > 0.1, outcome


def test_ops_and_a_second_update_are_refused_meanwhile(pair):
    comm, _ = pair
    thread, outcome = start_update(comm)
    with pytest.raises(pyccl.InvalidUsage, match="update_topology"):
        quick(comm.barrier)
    with pytest.raises(pyccl.InvalidUsage, match="update_topology"):
        quick(lambda: comm.all_reduce(np.ones(4, dtype=np.float32)))
    with pytest.raises(pyccl.InvalidUsage, match="already running"):
        quick(lambda: comm.update_topology(1.0))
    assert thread.is_alive(), outcome
    quick(comm.close)  # ends the test without waiting for the timeout
    thread.join(UPDATE_TIMEOUT + 10)


def test_close_during_update_topology_returns_at_once(pair):
    comm, _ = pair
    thread, outcome = start_update(comm)
    quick(comm.close)
    assert comm.closed
    with pytest.raises(pyccl.Closed):
        quick(comm.peers_pending)
    with pytest.raises(pyccl.Closed):
        quick(comm.barrier)
    thread.join(UPDATE_TIMEOUT + 10)
    assert not thread.is_alive()
    # The update ended, then the communicator was destroyed; the caller
    # learns that it was closed, whatever the update's own outcome.
    assert isinstance(outcome.get("error"), pyccl.Closed), outcome
    comm.close()  # idempotent
