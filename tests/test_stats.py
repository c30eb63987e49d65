"""Communicator.stats(): the numbers match what was sent (real processes
on 127.0.0.1), the dataclasses, and the retry count."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import pyccl
from pyccl.stats import CommStats, LinkStats, OpStats, bus_factor

from tests import obs_workers
from tests.peers import run_group

N = 3
COUNT = 3 << 16          # float32: 768 KiB, segments of 256 KiB
NBYTES = COUNT * 4


def test_stats_match_what_was_sent():
    ranks = run_group(N, obs_workers.mixed_ops, COUNT, timeout=120,
                      conns_per_peer=1)
    for r, st in enumerate(ranks):
        assert st["rank"] == r and st["world_size"] == N
        assert st["ops_ok"] == 5 and st["ops_failed"] == 0
        ops = st["ops"]
        assert [o["operation"] for o in ops] == (
            ["all_reduce"] * 3 + ["broadcast", "all_gather"])
        assert [o["seq"] for o in ops] == [1, 2, 3, 4, 5]
        for o in ops[:3]:
            # Ring all-reduce: 2 (N-1) segments out and in, exactly.
            assert o["algorithm"] == "ring" and o["dtype"] == "float32"
            assert o["bytes"] == NBYTES
            assert o["tx_bytes"] == o["rx_bytes"] == 2 * (N - 1) * NBYTES // N
            assert o["ok"] and o["wall_time"] > 0
            assert o["busbw"] == pytest.approx(o["algbw"] * 2 * (N - 1) / N)
        gather = ops[4]
        # All-gather: the op is the whole gathered buffer; each rank
        # forwards N-1 blocks and receives N-1.
        assert gather["bytes"] == N * NBYTES
        assert gather["tx_bytes"] == gather["rx_bytes"] == (N - 1) * NBYTES
        assert st["op_bytes"] == sum(o["bytes"] for o in ops)
        assert st["op_time"] == pytest.approx(sum(o["wall_time"] for o in ops))
        links = st["links"]
        assert sorted(l["rank"] for l in links) == [p for p in range(N) if p != r]
        # Per-link bytes add up to the totals (headers included in both).
        assert sum(l["tx_bytes"] for l in links) == st["tx_bytes"]
        assert sum(l["rx_bytes"] for l in links) == st["rx_bytes"]
        for l in links:
            # A peer that finished first may have closed its end already.
            assert l["connects"] == 1 and l["connections"] in (0, 1)
            assert l["errors"] == 0 and not l["slow"]
            assert l["host"] == "127.0.0.1" and l["port"] > 0
        # The ring's left neighbour sent 256 KiB frames: a rate sample.
        left = [l for l in links if l["rank"] == (r - 1) % N][0]
        assert left["samples"] >= 1 and left["rx_rate"] > 0
        # Payload counted per op is within the link totals.
        assert sum(o["rx_bytes"] for o in ops) <= st["rx_bytes"]


def test_stats_types_and_dict_access():
    with pyccl.Master() as master, \
            pyccl.Communicator(master.address, world_size=1) as comm:
        x = np.ones(16, dtype=np.float32)
        comm.all_reduce(x)
        st = comm.stats()
        assert isinstance(st, CommStats)
        assert st["tx_bytes"] == st.tx_bytes  # older code read a dict
        assert st.ops_ok == 1 and st.links == ()
        [op] = st.ops
        assert isinstance(op, OpStats) and op.operation == "all_reduce"
        assert op.bytes == 64 and op.world_size == 1
        assert dataclasses.asdict(st) == st.as_dict()
        assert comm.stats(max_ops=0).ops == ()
        with pytest.raises(dataclasses.FrozenInstanceError):
            st.ops_ok = 2  # type: ignore[misc]


def test_retries_are_counted():
    calls = []

    def block():
        calls.append(1)
        if len(calls) == 1:
            raise pyccl.Aborted("injected")
        return "done"

    with pyccl.Master() as master, \
            pyccl.Communicator(master.address, world_size=1) as comm:
        assert pyccl.run_with_retry(comm, block) == "done"
        assert comm.stats().retries == 1


def test_bus_factor():
    assert bus_factor("all_reduce", 4) == 1.5
    assert bus_factor("all_gather", 4) == 0.75
    assert bus_factor("broadcast", 4) == 1.0
    assert bus_factor("all_reduce", 1) == 0.0
    assert LinkStats.__dataclass_fields__["rx_rate"]


def test_link_rate_is_the_links_with_several_connections():
    """A link paced at 8 MB/s (CCL_TEST_TX_BYTES_PER_S on the sender, a
    token bucket over all its connections) with 4 TCP connections a pair
    (shared memory off: it would take one): an op's frames arrive side by
    side, each at a share of the link, or one after another.  The link's
    rx_rate counts the bytes of all of them, so it reads the link's pace,
    not a share of it, nor a multiple (a frame that started early and
    finished after another one's bytes)."""
    from tests.obs_group import Group
    rate = 8_000_000
    env = {r: {"CCL_TEST_TX_BYTES_PER_S": str(rate)} for r in range(2)}
    with pyccl.Master() as master:
        # 4 MiB all-reduces: 2 MiB per link and op, in frames of 256 KiB
        # striped over the 4 connections.
        g = Group(master, 2, "ring_ops", (3, 1 << 20, 0.0), env=env,
                  conns_per_peer=4, shm=False)
        try:
            ranks = g.results(timeout=120)
        finally:
            g.close()
    for r, st in enumerate(ranks):
        link = [l for l in st["links"] if l["rank"] == 1 - r][0]
        assert link["samples"] >= 1
        assert 0.6 * rate <= link["rx_rate"] <= 1.6 * rate, link

