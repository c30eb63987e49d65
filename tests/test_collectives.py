"""broadcast, all_gather, reduce_scatter and barrier across real
processes, and one pass over every collective for each world size 1..8."""
import pytest

from tests import workers
from tests.peers import assert_no_failures, run_group

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_broadcast_from_every_root(n):
    assert_no_failures(run_group(n, workers.broadcast_all_roots))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_all_gather(n):
    assert_no_failures(run_group(n, workers.all_gather_cases))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_reduce_scatter(n):
    assert_no_failures(run_group(n, workers.reduce_scatter_cases))


@pytest.mark.parametrize("n", [2, 4])
def test_barrier_waits_for_everyone(n):
    results = run_group(n, workers.barrier_times)
    latest_entry = max(entered for entered, _ in results)
    assert all(left >= latest_entry for _, left in results), results


@pytest.mark.parametrize("n", [6, 7, 8])
def test_every_collective_at_world_size(n):
    """Sizes 1-5 are covered above; this adds 6, 7, 8 for every op."""
    assert_no_failures(run_group(n, workers.everything_small))



def test_group_identity():
    results = run_group(3, workers.ident)
    assert [r for r, _, _ in results] == [0, 1, 2]
    assert {(size, epoch) for _, size, epoch in results} == {
        (3, results[0][2])}
