"""The automatic algorithm choice from the master's cost model, with real
processes on loopback: the epoch's thresholds come in the GROUP, every
member has the same, and every member's automatic all-reduce picks the
star up to the threshold and the ring above it (docs/design.md,
"Choosing the algorithm").  That the model's thresholds are right for a
wide-area link is checked by csrc/tests/test_tune.c (the formulas) and
measured by ``pyccl bench --wan --size 1M`` (docs/benchmarks.md)."""
from __future__ import annotations

import pyccl

from tests.obs_group import Group


def _results(master, n, plan, args, **kw):
    g = Group(master, n, "tests.tune_workers:" + plan, args, **kw)
    try:
        return g.results(timeout=180)
    finally:
        g.close()


def test_model_thresholds_reach_every_member_and_decide_the_algorithm():
    with pyccl.Master() as master:
        ranks = _results(master, 3, "tuned", (1 << 18, 4), stats_report=0.1)
    for v in ranks:
        # The first epoch has no measurements: the loopback-tuned default.
        assert v["t0"]["source"] == "default", v["t0"]
        assert v["t0"]["allreduce_star_max"] == 65536
        # optimize_topology: the model's first answer makes a new epoch.
        assert v["changed"] is True and v["epoch1"] == v["epoch0"] + 1
        t = v["t1"]
        assert t["source"] == "model", t
        assert t["latency_us"] > 0 and t["rate"] > 0, t
        assert 65536 <= t["allreduce_star_max"] <= 16 << 20, t
        assert 65536 <= t["bcast_direct_max"] <= 16 << 20, t
        at = t["allreduce_star_max"] // 4 * 4
        # The quantized all-reduce: the star up to the threshold, the ring
        # above.  The plain one: the same, but where the model gives the
        # direct all-reduce a range (round trips long enough; on loopback
        # only under load), the direct one in it, above 64 KiB.
        assert v["algos"] == [("all_reduce", "star-quantized", at),
                              ("all_reduce", "ring-quantized", at + 4)], v["algos"]
        d = t["allreduce_direct_max"] // 4 * 4

        def pick(nbytes):
            if d and 65536 < nbytes <= d:
                return "direct"
            return "star" if nbytes <= t["allreduce_star_max"] else "ring"
        assert [a for _, a, _ in v["plain_algos"]] == [pick(at), pick(at + 4)], v
        if d:
            assert v["direct_algos"] == [("all_reduce", "direct", d),
                                         ("all_reduce", pick(d + 4), d + 4)], v
    # One tuning for the whole epoch, and bit-identical results.
    assert len({repr(v["t1"]) for v in ranks}) == 1, [v["t1"] for v in ranks]
    assert len({repr(v["digests"]) for v in ranks}) == 1


def test_star_max_bytes_given_overrides_the_model():
    with pyccl.Master() as master:
        ranks = _results(master, 3, "fixed", (1 << 18,), stats_report=0.1,
                         star_max_bytes=1000)
    for v in ranks:
        assert v["t"]["source"] == "fixed"
        assert v["t"]["allreduce_star_max"] == v["t"]["bcast_direct_max"] == 1000
        assert v["algos"] == [("all_reduce", "star", 1000), ("all_reduce", "ring", 1004)]
    assert len({repr(v["digests"]) for v in ranks}) == 1
