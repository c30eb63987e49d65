"""Orchestration: the parent side of one benchmark phase.

:func:`run_phase` hosts the rendezvous (a :class:`~pyccl.Master` for
pyccl, a ``torch.distributed.TCPStore`` for gloo), spawns N peer
processes running :func:`pyccl.bench.measure.peer_main`, collects their
reports, and watches the shared state array they mark each blocking call
in: a call that runs past the hang timeout, or a peer that dies, stops
the phase with a :class:`BenchFailure` that says where.  It also records
the load of the machine, so a table can say whether other processes
competed for the CPUs.
"""
from __future__ import annotations

import datetime
import multiprocessing
import os
import queue as queue_mod
import resource
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO

from pyccl.progress import Progress
from pyccl.argtypes import format_size
from pyccl.bench.measure import (GROUP_SETUP, S_ITER, S_SIZE, S_START, S_WHAT,
                                 SLOTS, WHAT, peer_main)
from pyccl.bench.summary import summarise
from pyccl.master import Master

#: Each size runs about this many bytes of all-reduce input (see iters_for).
ITER_BYTES = 2 << 30
MIN_ITERS, MAX_ITERS = 3, 200

# After one peer failed, how long the others get to report their own
# errors (they usually name the same op) before everyone is stopped.
_GRACE_S = 0.5


# -- sizes and iteration counts --------------------------------------------

def iters_for(size: int) -> int:
    """Timed iterations for one size: max(3, min(200, 2 GiB / size))."""
    return max(MIN_ITERS, min(MAX_ITERS, ITER_BYTES // max(1, size)))


def warmup_for(iters: int) -> int:
    """Untimed iterations before the timed ones: 1..5, a tenth of iters."""
    return max(1, min(5, iters // 10))


def make_plan(sizes: Sequence[int], iters: Optional[int],
              warmup: Optional[int]) -> List[tuple]:
    """``(size, timed iterations, warmup iterations)`` per size; None
    picks the defaults of :func:`iters_for` and :func:`warmup_for`."""
    plan = []
    for size in sizes:
        n = iters if iters is not None else iters_for(size)
        w = warmup if warmup is not None else warmup_for(n)
        plan.append((size, n, w))
    return plan


# -- the machine's load -------------------------------------------------------

def _cpu_snapshot() -> Optional[tuple]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process
    and its waited-for children), or None without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal ...
    ticks = [int(v) for v in fields[1:]]
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]
    mine = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        mine += ru.ru_utime + ru.ru_stime
    return busy / os.sysconf("SC_CLK_TCK"), mine


def _foreign_cpu(before: Optional[tuple], after: Optional[tuple],
                 wall: float) -> Optional[float]:
    """Average number of CPUs kept busy by processes other than this
    benchmark between two snapshots (clamped at 0)."""
    if before is None or after is None or wall <= 0:
        return None
    other = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, other / wall)


# -- one phase ----------------------------------------------------------------

class BenchFailure(Exception):
    """A phase failed or hung; ``info`` says where."""

    def __init__(self, info: dict) -> None:
        super().__init__(info.get("message", "failed"))
        self.info = info


def _rendezvous(library: str, peers: int, hang: float,
                opts: dict) -> tuple:
    """(the object that hosts the rendezvous, what peers are given)."""
    if library == "pyccl":
        master = Master("127.0.0.1", 0, key=opts.get("key") or None)
        return master, master.address
    import torch.distributed as dist
    store = dist.TCPStore("127.0.0.1", 0, peers, True,
                          timeout=datetime.timedelta(seconds=hang),
                          wait_for_workers=False)
    return store, store.port


def run_phase(library: str, peers: int, plan: List[tuple], opts: dict,
              log: TextIO) -> dict:
    """Runs one library's phase with ``peers`` worker processes; returns
    its raw result or raises :class:`BenchFailure`."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    state = ctx.RawArray("d", peers * SLOTS)
    hang = float(opts["hang_timeout"])
    load_before = os.getloadavg()
    owner, rendezvous = _rendezvous(library, peers, hang, opts)
    procs = [ctx.Process(target=peer_main, name="bench-%s-%d" % (library, r),
                         args=(library, rendezvous, peers, r, plan, opts,
                               state, results), daemon=True)
             for r in range(peers)]
    started = time.perf_counter()
    cpu_before = _cpu_snapshot()
    reports: Dict[int, dict] = {}
    failure: Optional[dict] = None
    try:
        for p in procs:
            p.start()
        failure = _collect(library, peers, procs, state, hang, results,
                           reports, log, len(plan))
    finally:
        if failure is not None:
            failure["other_ranks"] = _other_errors(results)
            for p in procs:
                if p.is_alive():
                    p.kill()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
        if library == "pyccl":
            owner.close()
        del owner
    if failure is not None:
        raise BenchFailure(failure)
    wall = time.perf_counter() - started
    result = summarise(library, peers, plan, reports, load_before, wall)
    result["foreign_cpus"] = _foreign_cpu(cpu_before, _cpu_snapshot(), wall)
    return result


def _collect(library: str, peers: int, procs: list, state: Any, hang: float,
             results: Any, reports: Dict[int, dict],
             log: TextIO, n_sizes: int = 0) -> Optional[dict]:
    """Reads the peers' reports into ``reports`` until every peer is done;
    returns a failure record instead if one fails, dies or hangs.  On a
    terminal a progress bar over the sizes replaces the "done" lines."""
    sizes_done: Dict[int, int] = {}
    with Progress(n_sizes, "  [N=%d %s]" % (peers, library),
                  stream=log) as bar:
        return _collect_into(library, peers, procs, state, hang, results,
                             reports, log, sizes_done, bar)


def _collect_into(library: str, peers: int, procs: list, state: Any,
                  hang: float, results: Any, reports: Dict[int, dict],
                  log: TextIO, sizes_done: Dict[int, int],
                  bar: Progress) -> Optional[dict]:
    while len(reports) < peers:
        try:
            msg = results.get(timeout=0.5)
        except queue_mod.Empty:
            failure = _check_workers(library, peers, procs, state, hang)
            if failure is not None:
                return failure
            continue
        kind, rank = msg[0], msg[1]
        if kind == "size":
            sizes_done[msg[2]] = sizes_done.get(msg[2], 0) + 1
            if sizes_done[msg[2]] == peers:
                if bar.active:
                    bar.update(1, "%s done" % format_size(msg[2]))
                else:
                    print("  [N=%d %s] %s done (%.1f s)"
                          % (peers, library, format_size(msg[2]), msg[3]),
                          file=log, flush=True)
        elif kind == "done":
            reports[rank] = msg[2]
        else:
            return {"library": library, "peers": peers, "rank": rank,
                    "kind": "error", "message": msg[2]}
    return None


def _other_errors(results: Any) -> List[str]:
    """The errors the other peers report within the grace period."""
    extra = []
    deadline = time.monotonic() + _GRACE_S
    while True:
        try:
            msg = results.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue_mod.Empty:
            return extra
        if msg[0] == "error":
            extra.append("rank %d %s" % (msg[1], msg[2]))


def _check_workers(library: str, peers: int, procs: list, state: Any,
                   hang: float) -> Optional[dict]:
    """A failure record if a worker died or a blocking call hung."""
    now = time.monotonic()
    for r in range(peers):
        begun = state[r * SLOTS + S_START]
        what_key = state[r * SLOTS + S_WHAT]
        what = WHAT.get(what_key, "?")
        # Group setup gets extra time: spawning and importing come first.
        limit = hang + (30.0 if what_key == GROUP_SETUP else 5.0)
        if begun and now - begun > limit:
            size = int(state[r * SLOTS + S_SIZE])
            it = int(state[r * SLOTS + S_ITER])
            return {"library": library, "peers": peers, "rank": r,
                    "kind": "hang", "op": what, "size": size,
                    "iteration": it,
                    "message": "HANG: %s %s (size %s, iteration %d) on rank "
                               "%d still running after %.0f s"
                               % (library, what, format_size(size), it, r,
                                  now - begun)}
    for r, p in enumerate(procs):
        if p.exitcode not in (None, 0):
            return {"library": library, "peers": peers, "rank": r,
                    "kind": "crash",
                    "message": "rank %d exited with code %s (op %s, size %s)"
                               % (r, p.exitcode,
                                  WHAT.get(state[r * SLOTS + S_WHAT], "?"),
                                  format_size(int(state[r * SLOTS
                                                        + S_SIZE])))}
    return None


__all__ = ["run_phase", "BenchFailure", "make_plan", "iters_for",
           "warmup_for", "ITER_BYTES", "MIN_ITERS", "MAX_ITERS"]
