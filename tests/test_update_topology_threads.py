"""update_topology in one thread does not lock the communicator for the
others (the rule in pyccl/communicator.py's docstring).  A group of two
in this process: rank 0 enters update_topology while rank 1 never does,
so the call waits for its whole timeout; meanwhile other threads read
rank 0's state at once, cannot start ops or a second update (InvalidUsage),
and close() returns at once, after which the update raises Closed."""
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
    once the update is in progress."""
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
    while not comm._updating:  # set under the lock as the update begins
        assert thread.is_alive() and time.monotonic() < deadline, outcome
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
    # For a while, as long as the update is surely inside the core.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        assert quick(comm.peers_pending) == 0
        assert quick(lambda: comm.epoch) >= 1
        assert quick(lambda: (comm.rank, comm.world_size)) == (0, 2)
        assert not quick(lambda: comm.closed)
        time.sleep(0.01)
    assert thread.is_alive(), outcome  # the update still waits for rank 1
    thread.join(UPDATE_TIMEOUT + 10)
    # Rank 1 never came: the update runs out, as the core says.
    assert isinstance(outcome.get("error"), pyccl.Timeout), outcome


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
    # The update ended (at its deadline: rank 1 never came) and then the
    # communicator was destroyed; the caller learns that it was closed.
    assert isinstance(outcome.get("error"), pyccl.Closed), outcome
    comm.close()  # idempotent
