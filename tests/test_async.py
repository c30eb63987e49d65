"""Async ops: many in flight, waited in a random order per rank; dropped
Works keep their buffers alive; wait(timeout) leaves the op pending."""
import pytest

from tests import workers
from tests.peers import assert_no_failures, run_group

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("n", [2, 3])
def test_many_in_flight_random_wait_order(n):
    assert_no_failures(run_group(n, workers.async_many, 24))


def test_dropped_works_complete():
    assert_no_failures(run_group(2, workers.async_dropped))


def test_wait_timeout_keeps_op_pending():
    (timed_out, value0), (_, value1) = run_group(
        2, workers.wait_timeout_then_complete, op_timeout=20.0)
    assert timed_out is not None, "wait(timeout=0.3) returned early"
    took, is_timeout_error, done = timed_out
    assert 0.25 <= took < 2.0
    assert is_timeout_error
    assert not done
    assert value0 == value1 == 3.0


def test_blocking_op_releases_the_gil():
    ticks, _ = run_group(2, workers.gil_released)
    assert ticks >= 20, ticks  # about 100 in the second rank 1 sleeps
