"""Worker bodies for the fault-tolerance tests (module level: picklable).

Each worker joins the group, runs a loop of all-reduces whose results are
exactly known, and reports what happened through a queue: the index of the
first failed op and its exception class, whether the failed op gave the
input back, and what the group looked like after update_topology.

The test watches the members' progress instead of a clock: each member
counts its completed ops in its slot of a shared array (``progress``),
and the test acts (kills a peer, restarts the master) once the counts say
the run is where it wants it.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np

import pyccl

SIZES = [1, 7, 1000, 20000, 300001]


def data(i: int, n: int) -> np.ndarray:
    """Rank-independent input of op i (so the sum is world * data)."""
    return ((np.arange(n, dtype=np.int64) + i) % 7).astype(np.float32)


class Progress:
    """This member's slot of the test's shared op counters (or nothing)."""

    def __init__(self, counters: Any, rank: int) -> None:
        self.counters, self.rank = counters, rank

    def tick(self) -> None:
        if self.counters is not None:
            self.counters[self.rank] += 1


NO_PROGRESS = Progress(None, 0)


#: The all-reduce algorithms the runs rotate through (a peer lost in any
#: of them must leave the same agreement and the input given back).
ALGOS = ("star", "ring", "direct", "ring")


def run_until_failure(comm: pyccl.Communicator, max_ops: int,
                      stop_after: int = -1,
                      progress: Progress = NO_PROGRESS) -> dict:
    """All-reduces until one fails; checks results and input restore."""
    world = comm.world_size
    report: dict = {"first_fail": max_ops, "error": None, "wrong": 0,
                    "restored": True}
    for i in range(max_ops):
        if i == stop_after:
            os.kill(os.getpid(), signal.SIGSTOP)
        n = SIZES[i % len(SIZES)]
        x = data(i, n)
        try:
            comm.all_reduce(x, algorithm=ALGOS[i % len(ALGOS)])
        except pyccl.CclError as e:
            report.update(first_fail=i, error=type(e).__name__,
                          restored=bool(np.array_equal(x, data(i, n))))
            break
        if not np.array_equal(x, data(i, n) * world):
            report["wrong"] += 1
        progress.tick()
    return report


def async_until_failure(comm: pyccl.Communicator, batch: int = 8,
                        progress: Progress = NO_PROGRESS) -> dict:
    """Batches of concurrent async all-reduces until one fails; records
    every op's outcome so survivors can be compared op by op."""
    world = comm.world_size
    outcomes: list = []
    report: dict = {"first_fail": None, "wrong": 0, "restored": True}
    for it in range(100000):
        bufs, works = [], []
        for k in range(batch):
            i = it * batch + k
            x = data(i, SIZES[i % len(SIZES)])
            bufs.append(x)
            works.append(comm.all_reduce(x, algorithm=ALGOS[k % len(ALGOS)],
                                         async_op=True))
        failed = False
        for k, w in enumerate(works):
            i = it * batch + k
            n = SIZES[i % len(SIZES)]
            try:
                w.wait()
                outcomes.append("ok")
                if not np.array_equal(bufs[k], data(i, n) * world):
                    report["wrong"] += 1
            except pyccl.CclError:
                outcomes.append("fail")
                failed = True
                if not np.array_equal(bufs[k], data(i, n)):
                    report["restored"] = False
        if failed:
            break
        progress.tick()
    report["outcomes"] = outcomes
    report["first_fail"] = outcomes.index("fail")
    return report


def after_update(comm: pyccl.Communicator, timeout: float = 20.0) -> dict:
    """update_topology, then one exact all-reduce in the new group."""
    changed = comm.update_topology(timeout)
    x = np.ones(1001, dtype=np.float32)
    comm.all_reduce(x)
    return {"changed": changed, "size": comm.world_size, "rank": comm.rank,
            "epoch": comm.epoch, "ok": bool((x == comm.world_size).all())}


def member(address: str, world: int, rank: int, q: Any, mode: str,
           kw: dict, counters: Any = None, flags: Any = None) -> None:
    """One member; `mode` picks the scenario.  ``counters``: the shared
    progress counters (one per rank); ``flags``: for "restart", a shared
    array whose slot 0 the test sets once the new master is up."""
    progress = Progress(counters, rank)
    kw = dict(kw)
    # The member that stops ("stop") or closes ("close"); rank 0 is the
    # coordinator of the group's agreement (docs/fault-tolerance.md).
    victim = kw.pop("victim", world - 1)
    try:
        comm = pyccl.Communicator(address, world_size=world, rank=rank,
                                  op_timeout=30.0, **kw)
        q.put({"rank": rank, "ready": True})  # the group stands
        out: dict = {"rank": rank}
        if mode == "loop":
            out["run"] = run_until_failure(comm, 100000, progress=progress)
            out["after"] = after_update(comm)
        elif mode == "async":
            out["run"] = async_until_failure(comm, progress=progress)
            out["after"] = after_update(comm)
        elif mode == "retry":
            # Sum of ones: world size, whatever the group is by then.
            results = []
            for i in range(2000):
                x = np.ones(10000, dtype=np.float32)
                pyccl.run_with_retry(comm, lambda: comm.all_reduce(x),
                                     min_peers=2)
                results.append(int(x[0]))
                progress.tick()
                time.sleep(0.002)
            out["sums"] = results
            out["after"] = {"size": comm.world_size}
        elif mode == "too_few":
            out["error"] = None
            try:
                for i in range(100000):
                    x = np.ones(1000, dtype=np.float32)
                    pyccl.run_with_retry(comm, lambda: comm.all_reduce(x),
                                         min_peers=2)
                    progress.tick()
                    time.sleep(0.002)
            except pyccl.CclError as e:
                out["error"] = type(e).__name__
                out["is_runtime_error"] = isinstance(e, RuntimeError)
        elif mode == "stop":
            out["run"] = run_until_failure(comm, 100000,
                                           stop_after=50 if rank == victim else -1)
            t0 = time.monotonic()
            out["after"] = after_update(comm)
            out["update_s"] = time.monotonic() - t0
        elif mode == "close":
            if rank == victim:
                run_until_failure(comm, 30)
                comm.close()
                q.put(out)
                return
            out["run"] = run_until_failure(comm, 100000)
            out["after"] = after_update(comm)
        elif mode.startswith("join"):
            want = int(mode[4:] or 1)  # "join", "join2": joiners to wait for
            out["before"] = comm.world_size
            seen = np.zeros(1, dtype=np.int32)
            # Bounded by a count, not a clock: members must leave the loop
            # in the same iteration (the all-reduce decides together).
            for _ in range(1500):
                if seen[0] >= want:
                    break
                time.sleep(0.02)
                seen[0] = comm.peers_pending()
                comm.all_reduce(seen, op="min")
            out["after"] = after_update(comm)
        elif mode == "restart":
            # Compute while the test closes the master and starts another.
            # The loop ends on the test's word, "the new master is up"
            # (flags[0]), but every member must leave it in the same
            # iteration: each op also sums who has seen the word, and
            # all leave once everyone has.
            x = np.ones(2, dtype=np.float32)
            out["ops"] = out["wrong"] = 0
            for _ in range(100000):
                x[:] = (1, flags[0])
                comm.all_reduce(x)
                out["ops"] += 1
                out["wrong"] += int(x[0] != world)
                progress.tick()
                if x[1] == world:
                    break
                time.sleep(0.005)
            out["after"] = after_update(comm)
        comm.close()
        q.put(out)
    except BaseException as e:  # reported, never swallowed
        q.put({"rank": rank, "exception": repr(e)})


def joiner(address: str, q: Any) -> None:
    """Arrives after the group formed (the test starts it then) and waits
    to be admitted."""
    try:
        comm = pyccl.Communicator(address, world_size=1, connect_timeout=60.0)
        x = np.ones(1001, dtype=np.float32)
        comm.all_reduce(x)
        q.put({"rank": comm.rank, "joiner": True, "size": comm.world_size,
               "epoch": comm.epoch,
               "after": {"ok": bool((x == comm.world_size).all()),
                         "size": comm.world_size}})
        comm.close()
    except BaseException as e:
        q.put({"joiner": True, "exception": repr(e)})


def cut_member(address: str, world: int, rank: int, q: Any, victim: int,
               uid: int, counters: Any = None) -> None:
    """Loops small all-reduces; the victim runs as another user so that the
    test can silence its packets with an iptables owner match."""
    progress = Progress(counters, rank)
    try:
        if rank == victim:
            os.setuid(uid)
        comm = pyccl.Communicator(address, world_size=world, rank=rank,
                                  peer_timeout=1.0, op_timeout=30.0)
        q.put({"rank": rank, "ready": True})
        x = np.ones(16, dtype=np.float32)
        n_ok = 0
        while True:
            try:
                x[:] = 1
                comm.all_reduce(x)
                n_ok += 1
                progress.tick()
                time.sleep(0.005)
            except pyccl.CclError as e:
                failed_at = time.time()
                err = type(e).__name__
                break
        if rank == victim:
            q.put({"rank": rank, "victim": True, "error": err})
            time.sleep(60)  # the test kills it
            return
        comm.update_topology(20.0)
        x[:] = 1
        comm.all_reduce(x)
        q.put({"rank": rank, "failed_at": failed_at, "error": err,
               "ops": n_ok, "size": comm.world_size,
               "ok": bool((x == comm.world_size).all())})
        comm.close()
    except BaseException as e:
        q.put({"rank": rank, "exception": repr(e)})
