"""Bad arguments (refused in Python, before any C call), ranks that
disagree about an op, closing with ops in flight, and ranks that leave
early: every error is a CclError, raised within a bounded time, and the
communicator stays usable where the design says so."""
import pytest

import pyccl
from tests import workers
from tests.peers import run_group

pytestmark = pytest.mark.timeout(300)

OP_TIMEOUT = 5.0
# An error must surface within the op deadline plus this much.
SLACK = 5.0
ACCEPTED = ("Mismatch", "Aborted", "Timeout")


def test_bad_arguments_raise_before_c():
    (raised, x0), (_, x1) = run_group(2, workers.bad_arguments_then_ok)
    assert raised == [], raised
    # The valid op after the bad ones lines up on both ranks: nothing of
    # the bad calls reached the C core.
    assert x0 == x1 == [3.0] * 10


@pytest.mark.parametrize("algorithm", ["ring", "star"])
def test_mismatched_counts_fail_everywhere_then_recover(algorithm):
    results = run_group(2, workers.mismatched_counts, algorithm,
                        op_timeout=OP_TIMEOUT, timeout=120)
    for rank, (bad, good, x) in enumerate(results):
        assert bad[0] in ACCEPTED, "rank %d: %r" % (rank, bad)
        assert bad[1] < OP_TIMEOUT + SLACK, "rank %d slow: %r" % (rank, bad)
        assert good[0] == "ok", "rank %d: next op failed: %r" % (rank, good)
        assert x == [3.0] * 10


def test_mismatched_dtypes_fail_everywhere_then_recover():
    results = run_group(2, workers.mismatched_dtypes, op_timeout=OP_TIMEOUT,
                        timeout=120)
    for rank, (bad, good, x) in enumerate(results):
        assert bad[0] in ACCEPTED, "rank %d: %r" % (rank, bad)
        assert bad[1] < OP_TIMEOUT + SLACK
        assert good[0] == "ok", "rank %d: next op failed: %r" % (rank, good)
        assert x == [3.0] * 10


def test_close_fails_pending_ops_and_peers_notice():
    (mine, after), (theirs, _) = run_group(
        2, workers.close_with_pending, op_timeout=OP_TIMEOUT, timeout=120)
    assert mine[0] == "Closed", mine
    assert after[0] == "Closed", after
    assert theirs[0] != "ok", theirs
    assert theirs[1] < OP_TIMEOUT + SLACK, theirs


def test_rank_leaving_after_its_last_op_does_not_fail_slower_ranks():
    """Ranks 1 and 2 finish a run of broadcasts and close at once; rank 0
    posts the same broadcasts a second later.  Everything rank 0 needs was
    sent before the others said goodbye, so its ops must succeed."""
    results = run_group(3, workers.late_receiver, op_timeout=OP_TIMEOUT,
                        timeout=120)
    assert results[0] == "ok", results[0]


def test_errors_cross_processes_with_their_class():
    assert issubclass(pyccl.Mismatch, ValueError)
    assert issubclass(pyccl.Aborted, RuntimeError)
    assert issubclass(pyccl.Timeout, TimeoutError)
    assert issubclass(pyccl.PeerLost, ConnectionError)


def test_stopped_peer_detected_by_peer_timeout():
    """op_timeout is long; only the heartbeat deadline (peer_timeout) can
    fail rank 0's op in time."""
    results = run_group(2, workers.stopped_peer, op_timeout=60.0,
                        peer_timeout=2.0, timeout=120)
    outcome = results[0]
    assert outcome[0] in ("PeerLost", "Timeout", "Aborted"), outcome
    assert outcome[1] < 2.0 + SLACK, outcome


def test_close_from_another_thread_wakes_a_blocked_op():
    outcome, _ = run_group(2, workers.close_from_other_thread,
                           op_timeout=30.0, timeout=60)
    assert outcome[0] == "Closed", outcome
    assert outcome[1] < 3.0, outcome
