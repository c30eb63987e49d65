"""Slow-link detection with real processes and sockets.

The slowed peer is made slow with a test hook of the C core
(CCL_TEST_TX_BYTES_PER_S: a token bucket over every send of that process,
like a slow uplink), not with a mock: the detector sees real frames
arriving slowly on a real socket.
"""
from __future__ import annotations

import pyccl

from tests.obs_group import Group

BASE_RATE = 8_000_000    # bytes/s: every peer's uplink
SLOW_RANK = 2


def test_peer_with_4x_slower_link_is_flagged_within_5_ops(core_log):
    # Every peer sends at BASE_RATE, rank 2 at a quarter of it: its link
    # to rank 3 (the ring's next hop) is 4x slower than the others.
    env = {r: {"CCL_TEST_TX_BYTES_PER_S": str(BASE_RATE)} for r in range(4)}
    env[SLOW_RANK] = {"CCL_TEST_TX_BYTES_PER_S": str(BASE_RATE // 4)}
    with pyccl.Master() as master:
        # 512 KiB all-reduces: frames of 128 KiB, 6 per link and op.
        g = Group(master, 4, "ring_ops", (8, 1 << 17, 0.3), env=env,
                  stats_report=0.1)
        try:
            ranks = g.results(timeout=90)
            view = master.stats()
        finally:
            g.close()
    slow = [l for l in view.links if l.slow]
    assert [(l.src, l.dst) for l in slow] == [(SLOW_RANK, SLOW_RANK + 1)], \
        view.links
    link = slow[0]
    # Flagged when its receiver had finished at most 5 ops.
    assert 1 <= link.flagged_at_ops <= 5, link
    # No other link was ever flagged (the slow one may have been cleared
    # and flagged again as the others' rates moved).
    flags = [r.getMessage() for r in core_log.seen + list(core_log.records.queue)
             if "slow link from" in r.getMessage()]
    assert flags and all(("from rank %d to rank %d" % (SLOW_RANK, SLOW_RANK + 1))
                         in f for f in flags), flags
    others = [l for l in view.links if not l.slow]
    assert len(others) == 3 and all(l.rx_rate > link.rx_rate
                                    for l in others), view.links
    # The receiver's own stats carry the measured rate of that link.
    mine = ranks[SLOW_RANK + 1]["links"]
    [seen] = [l for l in mine if l["rank"] == SLOW_RANK]
    assert 0 < seen["rx_rate"] < BASE_RATE / 2


def test_clean_run_of_1000_ops_flags_nothing():
    # 4 peers, 1000 ring all-reduces of 256 KiB (frames of 64 KiB: every
    # op gives every link a rate sample), no throttle.
    with pyccl.Master() as master:
        g = Group(master, 4, "ring_ops", (1000, 1 << 16, 0.3),
                  stats_report=0.1)
        try:
            ranks = g.results(timeout=240)
            view = master.stats()
        finally:
            g.close()
    assert view.slow_flags_raised == 0, view.links
    assert view.reports >= 4
    # The detector had data: every link measured, over many samples.
    assert len(view.links) == 4
    assert all(l.samples >= 300 and l.rx_rate > 0 for l in view.links), \
        view.links
    for st in ranks:
        assert st["ops_ok"] == 1002 and st["ops_failed"] == 0
        assert st["slow_flags_raised"] == 0


def test_star_hub_flags_the_slow_peer_itself():
    # The hub of a star receives from every peer: it judges on its own,
    # without the master (reports off).  5 peers: the hub's verdict on
    # each of its 4 links compares it with 3 others (with 2 it is weak).
    env = {r: {"CCL_TEST_TX_BYTES_PER_S": str(BASE_RATE)} for r in range(5)}
    env[SLOW_RANK] = {"CCL_TEST_TX_BYTES_PER_S": str(BASE_RATE // 4)}
    with pyccl.Master() as master:
        g = Group(master, 5, "star_ops", (6, 1 << 17), env=env,
                  stats_report=0, chunk_bytes=128 << 10, conns_per_peer=1)
        try:
            ranks = g.results(timeout=90)
        finally:
            g.close()
        assert master.stats().reports == 0
    hub = ranks[0]
    slow = [l["rank"] for l in hub["links"] if l["slow"]]
    assert slow == [SLOW_RANK], [(l["rank"], l["rx_rate"], l["samples"], l["z"]) for l in hub["links"]]
    assert hub["slow_links"] == 1 and hub["slow_flags_raised"] >= 1
    [link] = [l for l in hub["links"] if l["rank"] == SLOW_RANK]
    assert link["z"] < -3.5 and link["samples"] >= 1
    for st in ranks[1:]:  # the others receive from the hub only
        assert st["slow_links"] == 0
