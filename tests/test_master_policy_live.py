"""The master's membership rules with real processes and sockets (the rules
themselves are unit-tested without sockets in
csrc/tests/test_master_policy.c): members that reach update_topology with
skew larger than peer_timeout stay one group; peers that disagree on
world_size are both told why, at once; joins, leaves and epochs are
logged, one line each, naming rank and address."""
from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Dict, List

import numpy as np
import pytest

import pyccl
from tests.test_master_restart import (CTX, after_op, agreement, collect,
                                       one_group, reap)


def skew_member(address: str, rank: int, q: Any, late_s: float,
                agree: tuple) -> None:
    """A member of 3 (peer_timeout 2 s); rank 0 reaches update_topology
    late_s after the others."""
    try:
        comm = pyccl.Communicator(address, world_size=3, rank=rank,
                                  peer_timeout=2.0, op_timeout=30.0)
        x = np.ones(4, dtype=np.float32)
        comm.all_reduce(x)  # the group stands and runs
        q.put({"rank": rank, "ready": True})
        if rank == 0:
            time.sleep(late_s)  # the scenario: a slow member
        changed = comm.update_topology(30.0)
        out = after_op(comm, changed, agree)
        comm.close()
        q.put(out)
    except BaseException as e:  # reported, never swallowed
        q.put({"rank": rank, "exception": repr(e)})


@pytest.mark.timeout(180)
def test_skew_longer_than_peer_timeout_keeps_the_group_whole():
    """B2: members 1 and 2 enter update_topology at once, member 0 2.5 s
    later with peer_timeout 2 s.  The master waits for member 0 (the
    members' wait bounds it, not peer_timeout), and whatever links broke
    meanwhile, all three end in one group: nobody is told the master
    closed the link, nobody is left in a group of 1."""
    with pyccl.Master() as master:
        q = CTX.Queue()
        agree = agreement(3)
        procs = [CTX.Process(target=skew_member,
                             args=(master.address, r, q, 2.5, agree))
                 for r in range(3)]
        try:
            for p in procs:
                p.start()
            ready = collect(q, 3)
            assert all(r.get("ready") for r in ready), ready
            reports = collect(q, 3)
        finally:
            reap(procs)
    one_group(reports, 3)


def _join(address: str, world: int, out: Dict[str, Any], key: str) -> None:
    t0 = time.monotonic()
    try:
        out[key] = pyccl.Communicator(address, world_size=world,
                                      connect_timeout=30.0)
    except pyccl.CclError as e:
        out[key] = e
    out[key + "_s"] = time.monotonic() - t0


@pytest.mark.timeout(120)
def test_world_size_mismatch_is_told_to_both_peers_at_once():
    """B3: whichever registers first, both peers learn the conflict with
    both sizes named, long before their connect_timeout (30 s)."""
    with pyccl.Master() as master:
        out: Dict[str, Any] = {}
        ts = [threading.Thread(target=_join,
                               args=(master.address, w, out, "w%d" % w))
              for w in (2, 3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
    for w in (2, 3):
        e = out["w%d" % w]
        assert isinstance(e, pyccl.Rejected), out
        assert "world_size 2" in str(e) and "world_size 3" in str(e), e
        assert out["w%d_s" % w] < 10.0, out


class _Lines(logging.Handler):
    """Collects the pyccl logger's lines; wait_for blocks until one
    matches (the core hands them over on its reader thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: List[str] = []
        self._cv = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cv:
            self.lines.append(record.getMessage())
            self._cv.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not any(re.search(pattern, s) for s in self.lines):
                left = deadline - time.monotonic()
                assert left > 0, "no line %r in %r" % (pattern, self.lines)
                self._cv.wait(left)


@pytest.mark.timeout(120)
def test_master_logs_joins_leaves_and_epochs():
    """B4: one INFO line per join, leave and epoch, with rank, host:port
    and the cause."""
    lines = _Lines()
    logger = logging.getLogger("pyccl")
    old_level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        with pyccl.Master() as master:
            out: Dict[str, Any] = {}
            ts = [threading.Thread(target=_join,
                                   args=(master.address, 2, out, "c%d" % k))
                  for k in range(2)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            comms = sorted((out["c0"], out["c1"]), key=lambda c: c.rank)
            assert all(isinstance(c, pyccl.Communicator) for c in comms), out
            for r in range(2):
                lines.wait_for(r"master: rank %d \(127\.0\.0\.1:\d+\) joined "
                               r"epoch 1$" % r)
            lines.wait_for(r"master: epoch 1 formed: a new group of 2")
            comms[1].close()
            lines.wait_for(r"master: rank 1 \(127\.0\.0\.1:\d+\) left epoch 1: "
                           r"its control link closed")
            assert comms[0].update_topology(20.0)
            lines.wait_for(r"master: epoch 2 formed: 1 members \(0 joined, "
                           r"1 left since epoch 1\)")
            comms[0].close()
            lines.wait_for(r"master: epoch 2 ended: no member is left")
    finally:
        logger.removeHandler(lines)
        logger.setLevel(old_level)


def parked_member(address: str, rank: int, q: Any) -> None:
    """A member of 3: runs one op, then (ranks 0 and 1) parks in
    update_topology; rank 2 never comes (the test kills it)."""
    try:
        comm = pyccl.Communicator(address, world_size=3, rank=rank,
                                  peer_timeout=30.0, op_timeout=30.0)
        comm.all_reduce(np.ones(4, dtype=np.float32))
        q.put({"rank": rank, "ready": True})
        if rank == 2:
            time.sleep(60)  # the victim: killed while the others are parked
            return
        q.put({"rank": rank, "parking": time.time()})
        comm.update_topology(60.0)
        q.put({"rank": rank, "back": time.time(), "size": comm.world_size,
               "sum": float(comm.all_reduce(np.ones(4, dtype=np.float32))[0])})
        comm.close()
    except BaseException as e:  # reported, never swallowed
        q.put({"rank": rank, "exception": repr(e)})


@pytest.mark.timeout(120)
def test_kill_while_parked_is_noticed_at_once():
    """A member killed while the others wait at the safe point (with
    peer_timeout and the update's timeout far away) is dropped as soon as
    its links close: the survivors come back within a second, as a group
    of 2 that computes correctly."""
    with pyccl.Master() as master:
        q = CTX.Queue()
        procs = [CTX.Process(target=parked_member, args=(master.address, r, q))
                 for r in range(3)]
        try:
            for p in procs:
                p.start()
            # 3 "ready" and 2 "parking" reports, in whatever order they come.
            first = collect(q, 5)
            assert sum(1 for r in first if r.get("ready")) == 3, first
            assert sum(1 for r in first if "parking" in r) == 2, first
            # Both are about to enter (or in) update_topology; where the kill
            # lands within that call does not matter.
            time.sleep(0.3)
            t_kill = time.time()
            procs[2].kill()
            back = collect(q, 2)
        finally:
            reap(procs)
    assert all("back" in r for r in back), back
    assert all(r["size"] == 2 and r["sum"] == 2.0 for r in back), back
    slowest = max(r["back"] for r in back) - t_kill
    print("survivors back from update_topology %.0f ms after the kill" % (slowest * 1e3))
    assert slowest < 1.0, back
