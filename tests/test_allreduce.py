"""all_reduce across real processes: every dtype x op x algorithm, exact
values, world sizes 1..8, in place and out of place, pipelining, bit-
identical results on random data, and large buffers."""
import pytest

from tests import workers
from tests.peers import assert_no_failures, run_group

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("n", range(1, 9))
def test_dtype_op_matrix(n):
    """Every dtype x op for ring, star and direct, with counts 0, 1, < n,
    odd and a few thousand."""
    assert_no_failures(run_group(n, workers.allreduce_matrix,
                                 ["ring", "star", "direct"], workers.counts_for(n)))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_pipelined_small_chunks(n):
    """A count much larger than chunk_bytes exercises the ring pipeline."""
    assert_no_failures(run_group(n, workers.allreduce_pipelined, 100_003,
                                 chunk_bytes=4096, star_max_bytes=1 << 16))


def test_conns_per_peer():
    assert_no_failures(run_group(3, workers.allreduce_pipelined, 50_001,
                                 conns_per_peer=3, chunk_bytes=8192))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_identical_bits_on_random_data(n):
    """Every rank holds the same bytes after reducing random floats (the
    order of float additions must not differ between ranks)."""
    results = run_group(n, workers.random_hashes, 10_007)
    for case in range(len(results[0])):
        name = results[0][case][0]
        hashes = {r[case][1] for r in results}
        assert len(hashes) == 1, "%s: ranks disagree" % name
        assert all(r[case][2] for r in results), "%s: far from the sum" % name


@pytest.mark.parametrize("n", [2, 4])
def test_large_64mib(n):
    """One f32 sum of 64 MiB: exact, identical everywhere."""
    results = run_group(n, workers.big_allreduce, 64 << 20, timeout=240,
                        op_timeout=60.0)
    assert all(ok for ok, _, _ in results), results
    assert len({h for _, h, _ in results}) == 1


def test_stats_count_traffic():
    (before0, after0), (before1, after1) = run_group(
        2, workers.stats_after_allreduce)
    for before, after in ((before0, after0), (before1, after1)):
        assert after["tx_bytes"] - before["tx_bytes"] >= 512 << 10
        assert after["rx_bytes"] - before["rx_bytes"] >= 512 << 10
