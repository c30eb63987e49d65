"""DiLoCo through the failures pyccl's own tests cover but
tests/test_diloco.py does not: a stalled worker (SIGSTOP) and what it
sees when it is woken (SIGCONT), a master killed (SIGKILL) and restarted
at the same address during a run (and a joiner that comes to the
restarted master: the workers are back there by then, by themselves), and
two workers lost in one round.  Real processes,
real sockets on 127.0.0.1, real signals; every worker records the hash
of the global state after every outer step, the contributor count of
every sync and every group change (docs/diloco.md, "Stalls, master
restarts, several failures")."""
from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import re
import signal
import time
from typing import Any, Callable, Dict, List, Optional

import pytest

pytest.importorskip("torch")

import pyccl  # noqa: E402
from pyccl.diloco import Schedule  # noqa: E402
from tests import diloco_workers as w  # noqa: E402
from tests.test_master_restart import MasterProcess  # noqa: E402

CTX = multiprocessing.get_context("spawn")


def _state(pid: int) -> str:
    """The process's state letter in /proc ("T": stopped; "" if gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _until(what: str, cond: Callable[[], bool], timeout: float,
           run: "Run") -> float:
    """Waits for ``cond`` (liveness only: generous deadlines); returns
    the seconds it took, fails with every worker's reports so far."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("%s: not within %g s; progress %r; reports "
                                 "%r" % (what, timeout, list(run.progress),
                                         run.drain()))
        run.check_errors()
        time.sleep(0.05)
    return time.monotonic() - t0


class Run:
    """Worker processes of one fault run, each with a queue of its own
    and a slot of the shared progress array (fault_worker)."""

    def __init__(self, address: str, world: int, slots: int) -> None:
        self.address = address
        self.world = world
        self.progress = CTX.RawArray("i", 2 * slots)
        self.flags = CTX.RawArray("i", 1)
        self.procs: List[Any] = []
        self.queues: List[Any] = []
        self.reports: List[List[dict]] = []
        self.may_fail: set = set()  # workers whose error the test expects

    def start(self, cfg: Dict[str, Any], address: Optional[str] = None) -> int:
        idx = len(self.procs)
        q = CTX.Queue()
        p = CTX.Process(target=w.fault_worker, daemon=True,
                        args=(address or self.address, self.world, idx, cfg,
                              q, self.progress, self.flags))
        p.start()
        self.procs.append(p)
        self.queues.append(q)
        self.reports.append([])
        return idx

    def step(self, idx: int) -> int:
        return self.progress[2 * idx]

    def size(self, idx: int) -> int:
        return self.progress[2 * idx + 1]

    def drain(self, only: Optional[List[int]] = None) -> List[List[dict]]:
        for i, q in enumerate(self.queues):
            if only is not None and i not in only:
                continue
            while True:
                try:
                    self.reports[i].append(q.get_nowait())
                except queue_mod.Empty:
                    break
        return self.reports

    def check_errors(self, only: Optional[List[int]] = None) -> None:
        """Fails on an error report of a worker in ``only`` (default:
        all), but those in ``self.may_fail``."""
        for i, got in enumerate(self.drain(only)):
            if (only is not None and i not in only) or i in self.may_fail:
                continue
            for r in got:
                assert "error" not in r, "worker %d: %s" % (i, r["error"])

    def done(self, idx: int, timeout: float = 120.0) -> dict:
        """Worker idx's final report (fails on an error report or an
        exit without one)."""
        t0 = time.monotonic()
        while True:
            self.check_errors([idx])
            for r in self.reports[idx]:
                if "done" in r:
                    return r
            if self.procs[idx].exitcode is not None and \
                    self.queues[idx].empty():
                time.sleep(0.5)
                self.check_errors([idx])
                if not any("done" in r for r in self.reports[idx]):
                    raise AssertionError("worker %d exited (%r) without a "
                                         "report: %r" % (
                                             idx, self.procs[idx].exitcode,
                                             self.reports[idx]))
            if time.monotonic() - t0 > timeout:
                raise AssertionError("worker %d: no final report within %g s;"
                                     " progress %r; reports %r" % (
                                         idx, timeout, list(self.progress),
                                         self.drain()))
            time.sleep(0.05)

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                try:
                    os.kill(p.pid, signal.SIGCONT)
                except OSError:
                    pass
                p.kill()
            p.join(10)


def merges_upto(sched: Schedule, step: int) -> int:
    """Outer steps a fault-free run has applied after inner step
    ``step`` (one per merge; finish() merges the last one in flight)."""
    return sum(1 for s, what, _ in sched.table(step) if what == "merge")


def check_seen_agree(reports: List[dict]) -> None:
    """Whatever two workers both recorded after an outer step (step,
    outer steps) carries one hash."""
    by_key: Dict[tuple, set] = {}
    for r in reports:
        for step, outer, h in r["seen"]:
            by_key.setdefault((step, outer), set()).add(h)
    assert by_key and all(len(v) == 1 for v in by_key.values()), by_key


def check_identical(done: List[dict]) -> None:
    """check_seen_agree, and the final hashes are equal."""
    check_seen_agree(done)
    assert len({r["final"] for r in done}) == 1, [r["final"] for r in done]


def check_no_round_lost(r: dict, sched: Schedule) -> None:
    """A member's outer step count after each outer step is that of a
    fault-free run at the same inner step: no round was lost."""
    seen = r["seen"][:-1] if r["merged_at_finish"] else r["seen"]
    for step, outer, _ in seen:
        assert outer == merges_upto(sched, step), (step, outer, r["seen"])


STALL = {
    # Plain DiLoCo: stopped just before the step whose dl.step() syncs.
    "before_sync": dict(H=6, P=1, tau=0, quant=None, act="stop_before",
                        act_at=18, steps=30),
    # Streaming, 4-bit: stopped right after posting fragment 1's
    # all-reduce, which is in flight for tau = 2 more steps.
    "during_sync": dict(H=8, P=2, tau=2, quant="e3m0", act="stop_after",
                        act_at=20, steps=40),
}


def _stall_and_wake(c: dict, victim_flag: str):
    """4 workers of STALL case c (peer_timeout 2 s); worker 3 stops itself
    as c says and gets ``victim_flag`` set in its config.  Once the other
    three went on among themselves for two rounds, it is woken (SIGCONT);
    returns (run, every worker's final report, survivors, victim)."""
    H, act_at = c["H"], c["act_at"]
    base = dict(c, peer_timeout=2.0, op_timeout=30.0, final_world=4,
                tail=H)
    victim = 3
    survivors = [i for i in range(4) if i != victim]
    with pyccl.Master() as master:
        run = Run(master.address, 4, 4)
        try:
            for i in range(4):
                cfg = dict(base)
                if i != victim:
                    cfg.pop("act")
                else:
                    cfg[victim_flag] = True
                run.start(cfg)
            pid = run.procs[victim].pid
            _until("the victim stops", lambda: _state(pid) == "T", 90, run)
            # The survivors redo the sync without it and go on among 3
            # for two more rounds.
            _until("the survivors go on without the stopped worker",
                   lambda: all(run.step(i) >= act_at + 2 * H
                               and run.size(i) == 3 for i in survivors),
                   60, run)
            assert _state(pid) == "T"
            os.kill(pid, signal.SIGCONT)
            done = [run.done(i) for i in range(4)]
        finally:
            run.close()
    return run, done, survivors, victim


@pytest.mark.timeout(240)
@pytest.mark.parametrize("when", sorted(STALL))
def test_stalled_worker_is_dropped_then_rejected_and_rejoins(when):
    """4 workers, peer_timeout 2 s; one SIGSTOPs itself just before a
    sync (DiLoCo) or with its fragment's all-reduce in flight (Streaming,
    e3m0).  The survivors' sync fails after peer_timeout, the master
    drops the silent one (1 s of grace), and the survivors redo the sync
    among 3 and go on.  Woken (SIGCONT) two rounds later, the stopped
    worker gets Rejected from dl.step() and does not disturb the
    survivors; it comes back as a joiner (a new Communicator,
    DiLoCo(joining=True)) and receives the global state.  Globals
    identical after every outer step, no round lost."""
    c = STALL[when]
    H, act_at = c["H"], c["act_at"]
    sched = Schedule(H, c["P"], c["tau"])
    run, done, survivors, victim = _stall_and_wake(c, "rejoin")
    surv = [done[i] for i in survivors]
    back = done[victim]
    woke = [r for r in run.reports[victim] if "woke" in r]
    # Woken, the stopped worker's next op fails (the survivors closed
    # their links to it), its recovery's update_topology gets the
    # master's REJECT, and dl.step() raises Rejected at once.
    assert len(woke) == 1 and woke[0]["exc"] == "Rejected", woke
    # The reason: the master's REJECT (dropped: lost by the others and
    # silent for the master's grace) when the woken worker reads it, or
    # the refusal of its REJOIN when its link to the master was found
    # closed first (the master closes a dropped member's link).
    assert re.search(r"this peer was (dropped from|removed from) the group",
                     woke[0]["detail"]), woke
    assert woke[0]["woke_to_error_s"] < 10.0, woke
    # Before it stopped it saw what the survivors saw.
    check_seen_agree(surv + woke)
    assert woke[0]["seen"], woke
    # It came back as a joiner (a new Communicator, DiLoCo(joining=True))
    # and was admitted mid-run with the global state.
    assert back.get("rejoined") and back["joining"], back
    assert back["changes"][0][0] > act_at + 2 * H, back["changes"]
    check_identical(surv + [back])
    for r in surv + [back]:
        check_no_round_lost(r, sched)
        assert r["world"] == 4 and r["step"] >= c["steps"], r
    first = surv[0]
    for r in surv:
        assert r["syncs"] == first["syncs"], (r["syncs"], first["syncs"])
        assert r["changes"] == first["changes"]
        assert r["retries"] == 1, r  # one failed sync, redone once
    # Contributors of each sync: 4 until the stall broke one, 3 (the
    # survivors) from the redone sync on, 4 again once the woken worker
    # had rejoined (its first sync counts it only if it did inner steps).
    (_, e0, _), (fail_at, e1, n1), (join_at, e2, n2) = first["changes"]
    assert (n1, n2) == (3, 4) and e0 < e1 < e2, first["changes"]
    merges = [s for s, what, _ in sched.table(4 * H) if what == "merge"]
    nxt = [s for s in merges if s >= act_at]
    if when == "before_sync":
        # Stopped before it posted: the sync of that very step fails
        # (after peer_timeout) and is redone among the survivors.
        assert fail_at == act_at == nxt[0], first["changes"]
    else:
        # Stopped with its fragment in flight: that all-reduce either
        # failed and was redone at its merge (tau steps later), or had
        # all of the victim's bytes and completed on every survivor
        # (pyccl's confirmation stage: the victim's DONE was missing);
        # then the next sync found the group broken and was redone.
        assert fail_at in nxt[:2], (fail_at, nxt)
    # The survivors waited peer_timeout (2 s) for the stopped worker, at
    # the merge that needed it; that step was their longest.
    for r in surv:
        at, took = max(r["slow"], key=lambda x: x[1])
        assert at in nxt[:2] and at <= fail_at and took >= 1.8, r["slow"]
    counts = [(s, n) for s, _, n, _, _ in first["syncs"]]
    for s, n in counts:
        # A sync merged at s was sent at s - tau; a joiner sends zeros
        # and counts 0 in the sends of the step it was admitted at.
        want = 4 if s < fail_at or s - sched.overlap > join_at else 3
        assert n == want, (s, n, counts, first["changes"])
    assert sum(1 for s, n in counts if n == 3) >= 2
    assert counts[-1][1] == 4


@pytest.mark.timeout(240)
def test_stalled_worker_comes_back_by_itself_with_rejoin():
    """As above (Streaming, e3m0, stopped with a fragment in flight), but
    the worker's DiLoCo has ``rejoin=`` (a factory of a joiner's
    communicator): woken, its dl.step() does not raise; it closes the old
    communicator, joins again, receives the global state and goes on in
    the same loop.  Globals identical after every outer step once it is
    back, and at the end."""
    c = STALL["during_sync"]
    run, done, survivors, victim = _stall_and_wake(c, "auto_rejoin")
    surv = [done[i] for i in survivors]
    back = done[victim]
    assert not [r for r in run.reports[victim] if "woke" in r], \
        run.reports[victim]
    assert back["rejoins"] == 1 and not back["joining"], back
    assert back["stopped_s"] > 2.0, back
    # Back in the group: the survivors saw it join (3, then 4 again), and
    # its records before the stop and after its return agree with
    # theirs (what it merged alone between waking and being dropped is
    # its own: dropped_seen).
    first = surv[0]
    assert [n for _, _, n in first["changes"]][-2:] == [3, 4], first["changes"]
    check_identical(surv + [back])
    for r in surv + [back]:
        assert r["world"] == 4 and r["step"] >= c["steps"], r


#: How long the worker stays stopped, and the peer_timeout of the run:
#: "short" wakes it well within peer_timeout (nobody gives up on it);
#: "in_grace" wakes it 0.5 s after peer_timeout, when the survivors have
#: failed their sync and are in update_topology, inside the master's 1 s
#: of grace for an accused member (or just past it on a busy machine).
WOKEN = {"short": (1.0, 5.0), "in_grace": (2.5, 2.0)}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", sorted(WOKEN))
def test_worker_woken_before_it_is_dropped(how):
    """4 workers (DiLoCo, H = 6, ``rejoin=`` on every worker); one is
    SIGSTOPped just before a sync and woken (SIGCONT) after ``stop_s``.
    Short: its peers wait for it, the sync completes with all 4, nothing
    is retried and the group never changes.  In the grace window: the
    survivors' sync has failed (the worker was silent longer than
    peer_timeout) and they are redoing it; whether the master keeps the
    woken worker in the next epoch or drops it (it then comes back by
    itself, ``rejoin=``), the run ends with all 4 in one group, globals
    identical after every outer step, and no round lost."""
    stop_s, peer_timeout = WOKEN[how]
    H, act_at = 6, 18
    sched = Schedule(H, 1, 0)
    base = dict(H=H, P=1, tau=0, quant=None, steps=30, peer_timeout=peer_timeout,
                op_timeout=30.0, final_world=4, tail=H, auto_rejoin=True)
    victim = 3
    survivors = [i for i in range(4) if i != victim]
    with pyccl.Master() as master:
        run = Run(master.address, 4, 4)
        try:
            for i in range(4):
                cfg = dict(base)
                if i == victim:
                    cfg.update(act="stop_before", act_at=act_at)
                run.start(cfg)
            pid = run.procs[victim].pid
            _until("the victim stops", lambda: _state(pid) == "T", 90, run)
            time.sleep(stop_s)
            assert _state(pid) == "T"
            os.kill(pid, signal.SIGCONT)
            done = [run.done(i) for i in range(4)]
        finally:
            run.close()
    surv = [done[i] for i in survivors]
    back = done[victim]
    assert stop_s - 0.1 < back["stopped_s"] < stop_s + 5.0, back
    for r in done:
        assert r["world"] == 4 and r["step"] >= base["steps"], r
    first = surv[0]
    for r in surv:
        check_no_round_lost(r, sched)
        assert r["changes"] == first["changes"], (r["changes"], first["changes"])
        # The survivors waited for the stopped worker at its sync.
        at, took = max(r["slow"], key=lambda x: x[1])
        assert at == act_at and took >= min(stop_s, peer_timeout) - 0.3, r["slow"]
    if how == "short":
        check_identical(done)
        check_no_round_lost(back, sched)
        for r in done:
            assert r["retries"] == 0 and r["rejoins"] == 0, r
            assert len(r["changes"]) == 1, r["changes"]
            assert all(n == 4 for _, _, n, _, _ in r["syncs"]), r["syncs"]
        return
    # Silent for longer than peer_timeout: the survivors' sync failed and
    # was redone, once.
    for r in surv:
        assert r["retries"] == 1, r
    if back["rejoins"]:
        # Dropped, then back by itself as a joiner: what it merged alone
        # between waking and being told is its own (dropped_seen); the
        # group went 4 -> 3 -> 4.
        assert [n for _, _, n in first["changes"]][-2:] == [3, 4], first["changes"]
    else:
        # Kept: the redone sync ran in a new epoch of all 4, and the
        # woken worker redid it with them.
        assert all(n == 4 for _, _, n in first["changes"]), first["changes"]
        assert back["retries"] >= 1, back
        check_no_round_lost(back, sched)
    check_identical(surv + [back])
    print("woken in the grace window: %s; survivors' group changes %r"
          % ("dropped and back by itself" if back["rejoins"] else "kept",
             first["changes"]))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("away", ["short", "past_update_timeout"])
def test_master_killed_and_restarted_mid_run(away):
    """3 workers (Streaming, P = 2, tau = 1) under a `pyccl master`
    process that is SIGKILLed after two rounds: the workers go on syncing
    without it (ops need only the peers).  Then one worker SIGKILLs
    itself: the survivors' sync fails and their recovery's
    update_topology knocks at the master's address until the master is
    restarted there (1 s or more later); the fresh master adopts epoch 1
    from their REJOINs, gives up the dead one, and the survivors redo
    the sync among 2.  A joiner then comes in through the new master.
    Globals identical throughout, no round lost.  ``past_update_timeout``:
    the master stays away 4 s with an update_timeout of 1.5 s, so the
    survivors' update_topology raises MasterUnreachable twice or more;
    the recovery tries again and the run goes on the same way."""
    H, P, tau = 6, 2, 1
    sched = Schedule(H, P, tau)
    base = dict(H=H, P=P, tau=tau, quant=None, steps=12, peer_timeout=5.0,
                op_timeout=30.0, final_world=3, min_changes=2, tail=H)
    if away == "past_update_timeout":
        base["update_timeout"] = 1.5
    victim, joiner = 2, 3
    master = MasterProcess()
    restarted = None
    run = Run(master.address, 3, 4)
    try:
        for i in range(3):
            run.start(dict(base, act="kill_on_flag") if i == victim else base)
        members = range(3)
        _until("two rounds", lambda: all(run.step(i) >= 2 * H
                                         for i in members), 90, run)
        master.kill()
        killed_at = max(run.step(i) for i in members)
        # No master: every sync still runs (they need only the peers).
        _until("three rounds without a master",
               lambda: all(run.step(i) >= killed_at + 3 * H
                           for i in members), 60, run)
        without = min(run.step(i) for i in members) - killed_at
        # Now a worker dies while the master is away: the survivors'
        # sync fails and their update_topology keeps knocking at the
        # master's address.
        run.flags[0] = 1
        _until("the victim dies",
               lambda: run.procs[victim].exitcode is not None, 60, run)
        assert run.procs[victim].exitcode == -signal.SIGKILL
        time.sleep(1.0 if away == "short" else 4.0)
        stuck = [run.step(i) for i in (0, 1)]
        restarted = MasterProcess(master.port)
        _until("the survivors go on in a group of 2",
               lambda: all(run.size(i) == 2 and run.step(i) >= stuck[i] + H
                           for i in (0, 1)), 60, run)
        # A joiner comes in through the new master.
        run.start(dict(base, joining=True))
        done = [run.done(i) for i in (0, 1, joiner)]
    finally:
        run.close()
        master.stop()
        if restarted:
            restarted.stop()
    surv = done[:2]
    first = surv[0]
    assert surv[1]["syncs"] == first["syncs"]
    assert surv[1]["changes"] == first["changes"]
    check_identical(done)
    for r in done:
        check_no_round_lost(r, sched)
        assert r["world"] == 3, r
    # The group: epoch 1 (3 workers) through the master's death and
    # restart (the fresh master adopted it), epoch 2 (2 survivors) from
    # the sync that failed while the master was away, epoch 3 with the
    # joiner that came in through the new master.
    (_, e0, n0), (fail_at, e1, n1), (join_at, e2, n2) = first["changes"]
    assert (e0, n0, e1, n1, e2, n2) == (1, 3, 2, 2, 3, 3), first["changes"]
    assert done[2]["changes"] == [(join_at, 3, 3)] and \
        done[2]["caught_up"] is not None, done[2]
    # The survivors were held in that sync's recovery until the master
    # was back (their update_topology kept knocking), and no longer.
    assert stuck == [fail_at - 1] * 2, (stuck, fail_at)
    for r in surv:
        # (Other steps may be slow too on a loaded machine: a joiner's
        # admission, a busy CPU.)
        assert any(at == fail_at and took >= 1.0 for at, took in r["slow"]), \
            (fail_at, r["slow"])
    assert first["retries"] == surv[1]["retries"] == 1
    # Every sync while the master was dead ran in epoch 1 among all 3.
    counts = [(s, n, e) for s, _, n, _, e in first["syncs"]]
    assert without >= 3 * H
    assert sum(1 for s, n, e in counts
               if killed_at < s < fail_at and (n, e) == (3, 1)) >= 3 * P
    for s, n, e in counts:
        # A sync merged at s was sent at s - tau; the joiner counts from
        # the sends after its first inner step.
        want = 3 if s < fail_at or s - tau > join_at else 2
        assert n == want, (s, n, counts, first["changes"])
    # wait_for, not said: the master's last lines may still be on their
    # way through its output pipe and reader thread.
    restarted.wait_for(r"master: adopted epoch 1 \(a group of 3\)", 10)
    restarted.wait_for(r"master: rank \d left epoch 1: it did not come "
                       r"back after the master restart", 10)
    # With the short update_timeout a survivor's update_topology may give
    # up on the master's answer (its reform waits for the dead member)
    # and come back once more: the master counts that as a leave too.
    restarted.wait_for(r"master: epoch 2 formed: 2 members \(0 joined, "
                       + (r"1 left" if away == "short" else r"\d+ left"), 10)
    restarted.wait_for(r"master: epoch 3 formed: 3 members \(1 joined", 10)



@pytest.mark.timeout(240)
def test_joiner_at_a_restarted_master_is_admitted():
    """The master is SIGKILLed and restarted while 3 workers train.  The
    workers come back to it by themselves, without an update_topology
    (their loops REJOIN in the background, csrc/src/master_revive.c), so
    the fresh master adopts their epoch instead of handing it to a
    newcomer.  A joiner that registers then is announced to them
    (PENDING); DiLoCo calls update_topology at its next sync and the
    joiner comes in with the global state: 4 workers, identical globals,
    no failed sync, no round lost.  (Before the background return the
    workers came back only after a failure, and the joiner formed a
    group of its own.)"""
    H = 6
    sched = Schedule(H, 1, 0)
    base = dict(H=H, P=1, tau=0, quant=None, steps=12, peer_timeout=5.0,
                op_timeout=30.0, final_world=4, min_changes=1, tail=H)
    joiner = 3
    master = MasterProcess()
    restarted = None
    run = Run(master.address, 3, 4)
    members = range(3)
    try:
        for i in members:
            run.start(base)
        _until("two rounds", lambda: all(run.step(i) >= 2 * H
                                         for i in members), 90, run)
        master.kill()
        restarted = MasterProcess(master.port)
        restarted.wait_for(r"master: adopted epoch 1 \(a group of 3\)", 30)
        restarted.wait_for(r"master: rank 2 \(\S+\) came back to epoch 1", 30)
        run.start(dict(base, joining=True))
        done = [run.done(i) for i in (0, 1, 2, joiner)]
    finally:
        run.close()
        master.stop()
        if restarted:
            restarted.stop()
    check_identical(done)
    for r in done:
        check_no_round_lost(r, sched)
        assert r["world"] == 4, r
    first = done[0]
    for r in done[1:3]:
        assert r["syncs"] == first["syncs"] and r["changes"] == first["changes"]
    (_, e0, n0), (join_at, e1, n1) = first["changes"]
    assert (e0, n0, e1, n1) == (1, 3, 2, 4), first["changes"]
    assert done[3]["changes"] == [(join_at, 2, 4)] and \
        done[3]["caught_up"] is not None, done[3]
    assert restarted.said(r"master: epoch 2 formed: 4 members \(1 joined, 0 left")
    assert not restarted.said(r"a new group of 1"), restarted.lines
    assert not restarted.said(r"refused peer"), restarted.lines

TWO = {
    # Both SIGKILL themselves just before the step that syncs: the
    # survivors lose two peers in one all-reduce.
    "same_sync": {2: dict(act="kill_before"), 3: dict(act="kill_before")},
    # One dies just before the sync; the other dies right after the
    # recovery's update_topology has put it in the group of 3, so the
    # state sharing of the recovery fails too and goes round again.
    "during_recovery": {2: dict(act="kill_after_update"),
                        3: dict(act="kill_before")},
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", sorted(TWO))
def test_two_workers_lost_in_one_round(how):
    """4 workers, two SIGKILLed in the same round: both just before the
    same sync, or one just before it and the other right after the
    recovery's update_topology (a second failure inside the recovery).
    The 2 survivors redo the sync among 2 (counted 2) and go on with
    identical globals; no round lost."""
    H, act_at = 6, 18
    sched = Schedule(H, 1, 0)
    base = dict(H=H, P=1, tau=0, quant=None, steps=30, peer_timeout=5.0,
                op_timeout=30.0, final_world=2, min_changes=1, tail=H,
                act_at=act_at)
    with pyccl.Master() as master:
        run = Run(master.address, 4, 4)
        try:
            for i in range(4):
                run.start(dict(base, **TWO[how].get(i, {})))
            done = [run.done(i) for i in (0, 1)]
            for i in (2, 3):
                run.procs[i].join(30)
                assert run.procs[i].exitcode == -signal.SIGKILL
        finally:
            run.close()
    first = done[0]
    assert done[1]["syncs"] == first["syncs"]
    assert done[1]["changes"] == first["changes"]
    check_identical(done)
    # One recovery, at the sync both victims missed; in it the group
    # went straight to the 2 survivors, or (a second failure during the
    # recovery) through a group of 3 that broke at once.
    (_, e0, n0), (at, e1, n1) = first["changes"]
    assert (n0, at, n1) == (4, act_at, 2), first["changes"]
    assert e1 - e0 == (1 if how == "same_sync" else 2), first["changes"]
    counts = [(s, n) for s, _, n, _, _ in first["syncs"]]
    assert counts == [(s, 4 if s < act_at else 2)
                      for s in range(H, first["step"] + 1, H)], counts
    for r in done:
        assert r["retries"] == 1, r  # the one sync redone, once
        check_no_round_lost(r, sched)
        assert r["world"] == 2 and r["step"] >= base["steps"], r


@pytest.mark.timeout(300)
def test_stalled_worker_group_comes_back_with_rejoin(tmp_path):
    """3 worker groups of 2 processes (DDP over gloo inside each,
    Streaming DiLoCo among the leaders, ``rejoin=`` on every leader,
    peer_timeout 2 s).  Both processes of group 2 are SIGSTOPped at step
    14 or later; the other leaders' sync fails, the master drops group 2's
    leader, and the 2 groups left go on for two rounds.  Woken, group 2's
    leader is Rejected inside dl.step(), joins again, receives the global
    state and step counter, and hands them to its follower in the same
    step: every replica of a group identical after every step, the three
    leaders' globals identical after every outer step once group 2 is
    back, all of them past the last step together."""
    cfg = dict(groups=3, steps=36, tail=6, H=6, P=2, tau=1, peer_timeout=2.0)
    stop_at, stalled = 14, 2
    q = CTX.Queue()
    progress = CTX.RawArray("i", 2 * 6)
    procs = []
    with pyccl.Master() as master:
        try:
            for g in range(3):
                store = "file://%s" % (tmp_path / ("store%d" % g))
                for local in range(2):
                    p = CTX.Process(target=w.ddp_group_stall_worker, daemon=True,
                                    args=(master.address, store, g, local, cfg,
                                          q, progress))
                    p.start()
                    procs.append(p)
            victims = [procs[2 * stalled].pid, procs[2 * stalled + 1].pid]
            reports: List[dict] = []

            def wait_for(what: str, cond: Callable[[], bool], timeout: float) -> None:
                t0 = time.monotonic()
                while not cond():
                    while True:
                        try:
                            reports.append(q.get_nowait())
                        except queue_mod.Empty:
                            break
                    errors = [r["error"] for r in reports if "error" in r]
                    assert not errors, errors
                    assert time.monotonic() - t0 < timeout, (
                        "%s: not within %g s; progress %r" % (
                            what, timeout, list(progress)))
                    time.sleep(0.02)

            wait_for("group 2 reaches step %d" % stop_at,
                     lambda: progress[4 * stalled] >= stop_at, 120)
            for pid in victims:
                os.kill(pid, signal.SIGSTOP)
            at = progress[4 * stalled]
            others = [0, 1]
            wait_for("the 2 groups left go on for two rounds",
                     lambda: all(progress[4 * g] >= at + 2 * cfg["H"] and
                                 progress[4 * g + 1] == 2 for g in others), 90)
            assert all(_state(pid) == "T" for pid in victims)
            for pid in victims:
                os.kill(pid, signal.SIGCONT)
            wait_for("every process reports",
                     lambda: len([r for r in reports if "done" in r]) == 6, 150)
        finally:
            for p in procs:
                if p.is_alive():
                    try:
                        os.kill(p.pid, signal.SIGCONT)
                    except OSError:
                        pass
                p.join(10)
                if p.is_alive():
                    p.kill()
    by = {(r["group"], r["local"]): r for r in reports}
    assert sorted(by) == [(g, l) for g in range(3) for l in range(2)]
    for g in range(3):
        lead, follow = by[(g, 0)], by[(g, 1)]
        # Inside a group the replicas stay identical after every step,
        # across the leader's return too (the follower jumped with it).
        assert lead["local_hashes"] == follow["local_hashes"], g
        assert lead["step"] == follow["step"] >= cfg["steps"]
        assert lead["world"] == 3, lead
    back = by[(stalled, 0)]
    assert back["rejoins"] == 1, back
    # Its step counter jumped to the group's when it came back.
    steps_seen = [s for s, _ in back["local_hashes"]]
    assert any(b - a > 1 for a, b in zip(steps_seen, steps_seen[1:])), steps_seen
    first = by[(0, 0)]
    assert [n for _, _, n in first["changes"]][-2:] == [2, 3], first["changes"]
    assert by[(1, 0)]["changes"] == first["changes"]
    leaders = [by[(g, 0)] for g in range(3)]
    check_identical(leaders)
    # Different data in each group: the replicas differ between groups.
    assert len({by[(g, 0)]["final_local"] for g in range(3)}) > 1
