"""Fault tolerance with real processes and real signals: SIGKILL and
SIGSTOP of a peer, a graceful close, a joiner, a master restart.  Every
survivor must end every op the same way (same first failed op, input given
back), the next ops work on the new group, and nothing hangs.

No test acts on a clock: each waits for the members' own op counts
(ft_workers.Progress) before it kills, stops or restarts anything."""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from typing import Any, List

import pytest

import pyccl
from tests import ft_workers

CTX = multiprocessing.get_context("spawn")


def _collect(q: Any, n: int, timeout: float) -> List[dict]:
    """The next n reports (readiness notes are skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, "workers did not report in time: %r" % out
        r = q.get(timeout=left)
        if not r.get("ready"):
            out.append(r)
    for r in out:
        assert "exception" not in r, r
    return out


def _reap(procs: List[Any]) -> None:
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join()


class Group:
    """The member processes of one test, and their shared op counters."""

    def __init__(self, master: pyccl.Master, world: int, mode: str, q: Any,
                 flags: Any = None, **kw: Any) -> None:
        self.counters = CTX.RawArray("l", world)
        self.procs = [CTX.Process(target=ft_workers.member,
                                  args=(master.address, world, r, q, mode, kw,
                                        self.counters, flags))
                      for r in range(world)]

    def ops(self, rank: int) -> int:
        return int(self.counters[rank])

    def wait_ops(self, ranks: Any, at_least: int,
                 timeout: float = 60.0) -> None:
        """Returns once each rank in ``ranks`` has completed ``at_least``
        ops (polled every few milliseconds; fails past ``timeout``)."""
        deadline = time.monotonic() + timeout
        while any(self.ops(r) < at_least for r in ranks):
            dead = [p.exitcode for p in self.procs if p.exitcode is not None]
            assert not dead and time.monotonic() < deadline, (
                "ops %r, exit codes %r" % (list(self.counters), dead))
            time.sleep(0.002)

    def kill(self, rank: int) -> None:
        os.kill(self.procs[rank].pid, signal.SIGKILL)


def _start(master: pyccl.Master, world: int, mode: str, q: Any,
           **kw: Any) -> Group:
    """Starts the members and returns once their group stands."""
    group = Group(master, world, mode, q, **kw)
    for p in group.procs:
        p.start()
    for _ in range(world):
        r = q.get(timeout=90)
        assert r.get("ready"), r
    return group


def _agree(reports: List[dict], world_after: int) -> None:
    firsts = {r["run"]["first_fail"] for r in reports}
    assert len(firsts) == 1, "survivors disagree on the failed op: %r" % reports
    for r in reports:
        assert r["run"]["wrong"] == 0, r
        assert r["run"]["restored"], r
        assert r["after"]["size"] == world_after, r
        assert r["after"]["ok"], r
    ranks = sorted(r["after"]["rank"] for r in reports)
    assert ranks == list(range(world_after))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_mid_run_survivors_agree_and_continue(seed: int) -> None:
    rnd = random.Random(seed)
    world = 4
    with pyccl.Master() as master:
        q = CTX.Queue()
        group = _start(master, world, "loop", q, peer_timeout=5.0)
        victim = rnd.randrange(world)
        # Some ops, then a random point (in ops, not seconds).
        group.wait_ops([victim], rnd.randrange(5, 200))
        group.kill(victim)
        reports = _collect(q, world - 1, 120)
        _reap(group.procs)
    _agree(reports, world - 1)
    assert {r["run"]["error"] for r in reports} <= {"PeerLost", "Aborted"}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("victim", [2, 0])
def test_sigstop_fails_within_deadline_then_group_continues(victim: int) -> None:
    """Rank 0 is the coordinator of the agreement: when it stops, the
    others are left waiting for its COMMIT and must settle among
    themselves."""
    world = 3
    with pyccl.Master() as master:
        q = CTX.Queue()
        group = _start(master, world, "stop", q, peer_timeout=1.0,
                       victim=victim)
        reports = _collect(q, world - 1, 120)
        for p in group.procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
        _reap(group.procs)
    _agree(reports, world - 1)
    for r in reports:
        assert r["run"]["first_fail"] >= 50
        assert r["update_s"] < 20


@pytest.mark.timeout(240)
@pytest.mark.parametrize("victim", [2, 0])
def test_graceful_close_then_smaller_group(victim: int) -> None:
    world = 3
    with pyccl.Master() as master:
        q = CTX.Queue()
        group = _start(master, world, "close", q, victim=victim)
        reports = [r for r in _collect(q, world, 120) if "run" in r]
        _reap(group.procs)
    _agree(reports, world - 1)
    for r in reports:
        assert r["run"]["first_fail"] == 30
        assert r["run"]["error"] == "PeerLost"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("n_join", [1, 2])
def test_join_mid_run_is_admitted_at_the_safe_point(n_join: int) -> None:
    world = 2
    with pyccl.Master() as master:
        q = CTX.Queue()
        group = _start(master, world, "join%d" % n_join, q)
        # The group stands: joiners arrive after it formed, and wait.
        js = [CTX.Process(target=ft_workers.joiner, args=(master.address, q))
              for _ in range(n_join)]
        for j in js:
            j.start()
        reports = _collect(q, world + n_join, 120)
        _reap(group.procs + js)
    members = [r for r in reports if not r.get("joiner")]
    joiners = [r for r in reports if r.get("joiner")]
    size = world + n_join
    assert sorted(j["rank"] for j in joiners) == list(range(world, size))
    for j in joiners:
        assert j["after"]["ok"] and j["size"] == size
    for r in members:
        assert r["before"] == 2
        assert r["after"]["changed"] and r["after"]["size"] == size
        assert r["after"]["ok"]
        assert r["after"]["epoch"] == joiners[0]["epoch"]


@pytest.mark.timeout(240)
def test_master_restart_run_continues() -> None:
    world = 3
    master = pyccl.Master()
    port = master.port
    q = CTX.Queue()
    up = CTX.RawArray("f", 1)  # 1.0 once the new master is up
    group = _start(master, world, "restart", q, flags=up)
    try:
        group.wait_ops(range(world), 10)  # ops running
        master.close()
        # While no master exists, every member completes more ops.
        down_at = [group.ops(r) for r in range(world)]
        group.wait_ops(range(world), max(down_at) + 20)
        without_master = [group.ops(r) - down_at[r] for r in range(world)]
        master = pyccl.Master(port=port)  # restarted at the same address
        up[0] = 1.0
        reports = _collect(q, world, 120)
    finally:
        _reap(group.procs)
        master.close()
    assert min(without_master) >= 20, without_master
    for r in reports:
        assert r["wrong"] == 0 and r["ops"] > max(down_at) + 20, r
        assert not r["after"]["changed"], r  # same group, same epoch
        assert r["after"]["size"] == world and r["after"]["ok"], r


@pytest.mark.timeout(240)
@pytest.mark.parametrize("victim,batches", [(2, 5), (0, 5), (0, 23)])
def test_sigkill_with_concurrent_async_ops_every_op_agrees(
        victim: int, batches: int) -> None:
    """Rank 0 is the coordinator of the agreement: killed, it leaves ops
    complete at the others waiting for its COMMIT."""
    world = 4
    with pyccl.Master() as master:
        q = CTX.Queue()
        group = _start(master, world, "async", q, peer_timeout=5.0)
        group.wait_ops([victim], batches)  # batches of async ops completed
        group.kill(victim)
        reports = _collect(q, world - 1, 120)
        _reap(group.procs)
    _agree(reports, world - 1)
    outcomes = {tuple(r["run"]["outcomes"]) for r in reports}
    assert len(outcomes) == 1, "survivors disagree op by op: %r" % reports


@pytest.mark.timeout(240)
def test_run_with_retry_rides_through_a_kill() -> None:
    world = 3
    with pyccl.Master() as master:
        q = CTX.Queue()
        group = _start(master, world, "retry", q, peer_timeout=5.0)
        group.wait_ops([1], 100)  # of 2000
        group.kill(1)
        reports = _collect(q, world - 1, 120)
        _reap(group.procs)
    sums = {tuple(r["sums"]) for r in reports}
    assert len(sums) == 1, "survivors disagree: %r" % reports
    seq = list(sums.pop())
    assert len(seq) == 2000
    # Every op succeeded with the world size of its group: 3s, then 2s.
    assert set(seq) == {2, 3} and seq == sorted(seq, reverse=True)
    assert seq.count(3) >= 100
    for r in reports:
        assert r["after"]["size"] == 2


@pytest.mark.timeout(240)
def test_run_with_retry_raises_too_few_peers() -> None:
    with pyccl.Master() as master:
        q = CTX.Queue()
        group = _start(master, 2, "too_few", q, peer_timeout=5.0)
        group.wait_ops([1], 10)
        group.kill(1)
        reports = _collect(q, 1, 120)
        _reap(group.procs)
    assert reports[0]["error"] == "TooFewPeers", reports
    assert reports[0]["is_runtime_error"]
