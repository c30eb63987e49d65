"""Ring order with real processes and sockets: optimize_topology moves the
ring off a slow link, and the master's optional policies on slow links
(reorder at the next update_topology, expel a peer that stays slow).

The slow link is made with the C core's test hooks
(CCL_TEST_TX_BYTES_PER_S with CCL_TEST_TX_SLOW_PEER: rank 2's sends to
rank 3 only are paced), so exactly one directed link of the ring
0 -> 1 -> 2 -> 3 -> 0 is slow and every other link runs at loopback speed.
"""
from __future__ import annotations

from typing import Any

import pyccl

from tests.obs_group import Group

SLOW_RATE = 2_000_000  # bytes/s
SLOW_FROM, SLOW_TO = 2, 3


def slow_link_env(n):
    env = {r: {} for r in range(n)}
    env[SLOW_FROM] = {"CCL_TEST_TX_BYTES_PER_S": str(SLOW_RATE),
                      "CCL_TEST_TX_SLOW_PEER": str(SLOW_TO)}
    return env


def uses(order, a, b):
    n = len(order)
    return any(order[i] == a and order[(i + 1) % n] == b for i in range(n))


def same_everywhere(ranks, key):
    return len({repr(v[key]) for v in ranks}) == 1


def _run_slow_group(master: Any, worker: str, args: tuple) -> list:
    """4 members with the slow link, running tests.ring_workers:<worker>
    with args; every rank's result."""
    g = Group(master, 4, "tests.ring_workers:" + worker, args,
              env=slow_link_env(4), stats_report=0.1)
    try:
        return g.results(timeout=180)
    finally:
        g.close()


def test_optimize_topology_moves_the_ring_off_a_slow_link():
    # 4 peers; 512 KiB all-reduces: each ring link carries 768 KiB an op,
    # so the slow link alone takes about 0.4 s.
    with pyccl.Master() as master:
        g = Group(master, 4, "tests.ring_workers:optimize", (1 << 17, 3),
                  env=slow_link_env(4), stats_report=0.2)
        try:
            ranks = g.results(timeout=180)
        finally:
            g.close()
    for r, v in enumerate(ranks):
        assert v["ring0"] == [0, 1, 2, 3]
        assert v["changed"] is True
        # Ranks stay; the epoch moves on; the ring no longer uses 2 -> 3.
        assert v["rank0"] == v["rank1"] == r
        assert v["epoch1"] == v["epoch0"] + 1
        assert not uses(v["ring1"], SLOW_FROM, SLOW_TO), v["ring1"]
        assert v["ring2"] == v["ring1"]
        assert v["again"] is False or v["tune2"] != v["tune1"], v
    # Every member has the same ring, and bit-identical results.
    for key in ("ring1", "digests0", "digests1"):
        assert same_everywhere(ranks, key), [v[key] for v in ranks]
    before = max(v["before"] for v in ranks)
    after = max(v["after"] for v in ranks)
    assert after < before / 3, (before, after)


def test_reorder_policy_moves_the_ring_at_the_next_update_topology():
    with pyccl.Master(reorder_slow_links=True) as master:
        ranks = _run_slow_group(master, "ops_then_update", (6, 1 << 17, 0.5))
    for r, v in enumerate(ranks):
        assert "rejected" not in v, v
        assert v["ring0"] == [0, 1, 2, 3]
        assert v["changed"] is True and v["epoch1"] == v["epoch0"] + 1
        assert v["rank1"] == r and v["size1"] == 4
        assert not uses(v["ring1"], SLOW_FROM, SLOW_TO), v["ring1"]
    assert same_everywhere(ranks, "ring1")
    assert same_everywhere(ranks, "digests")


def test_no_reorder_without_the_policy():
    with pyccl.Master() as master:
        ranks = _run_slow_group(master, "ops_then_update", (6, 1 << 17, 0.5))
    for v in ranks:
        assert v["changed"] is False and v["ring1"] == [0, 1, 2, 3]


def test_expel_policy_drops_the_peer_that_stays_slow():
    # Rank 2's link to rank 3 is flagged in every report of rank 3 (one per
    # 0.1 s while ops run); after 3 in a row it goes at update_topology.
    with pyccl.Master(expel_slow_after=3) as master:
        ranks = _run_slow_group(master, "ops_then_update", (10, 1 << 17, 0.5))
    slow = ranks[SLOW_FROM]
    assert "slow peer" in slow.get("rejected", ""), slow
    assert "consecutive reports" in slow["rejected"]
    for r, v in enumerate(ranks):
        if r == SLOW_FROM:
            continue
        assert "rejected" not in v, v
        assert v["changed"] is True and v["size1"] == 3
    survivors = [v for r, v in enumerate(ranks) if r != SLOW_FROM]
    assert same_everywhere(survivors, "digests")


def test_expel_policy_expels_nobody_in_a_clean_run():
    with pyccl.Master(expel_slow_after=2, reorder_slow_links=True) as master:
        g = Group(master, 4, "tests.ring_workers:ops_then_update",
                  (400, 1 << 16, 0.5), stats_report=0.1)
        try:
            ranks = g.results(timeout=180)
            view = master.stats()
        finally:
            g.close()
    assert view.reports >= 8
    for r, v in enumerate(ranks):
        assert "rejected" not in v, v
        assert v["changed"] is False and v["rank1"] == r and v["size1"] == 4
        assert v["ring1"] == [0, 1, 2, 3]
