"""Test harness: run a function on every rank of a real group.

:func:`run_group` starts a Master in the test process and ``n`` worker
processes (multiprocessing "spawn"), each of which joins the group on
127.0.0.1 with a real :class:`pyccl.Communicator` and returns
``fn(comm, *args)``.  Results come back in rank order.  If a worker raises,
crashes or the group overruns ``timeout``, every worker is killed
(SIGKILL) and :class:`GroupError` carries each worker's traceback.

Worker functions must be picklable: module-level functions in
``tests/workers.py``.
"""
from __future__ import annotations

import faulthandler
import multiprocessing
import os
import queue as queue_mod
import signal
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

import pyccl

# Grace period for the other ranks to report after one rank failed: their
# own errors are usually the interesting part.
_GRACE_S = 5.0


class GroupError(AssertionError):
    """A group run failed; the message holds every worker's report."""


def _entry(address: str, n: int, rank: int, comm_kwargs: dict,
           fn: Callable, args: tuple, results: Any, stack_file: str) -> None:
    dump = open(stack_file, "w")
    faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True)
    try:
        comm = pyccl.Communicator(address, world_size=n, rank=rank,
                                  **comm_kwargs)
    except BaseException:
        results.put((rank, False, "Communicator() failed:\n"
                     + traceback.format_exc()))
        return
    try:
        value = fn(comm, *args)
    except BaseException:
        results.put((rank, False, traceback.format_exc()))
    else:
        results.put((rank, True, value))
    finally:
        comm.close()


def run_group(n: int, fn: Callable, *args: Any, timeout: float = 120.0,
              master: Optional[pyccl.Master] = None,
              **comm_kwargs: Any) -> List[Any]:
    """Runs ``fn(comm, *args)`` on ``n`` ranks; returns the results by rank.

    ``comm_kwargs`` go to every Communicator (``op_timeout`` defaults to
    30 s here).  ``master`` reuses an existing Master instead of starting
    one.
    """
    __tracebackhide__ = True  # pytest shows the workers' reports instead
    comm_kwargs.setdefault("op_timeout", 30.0)
    comm_kwargs.setdefault("connect_timeout", 60.0)
    own_master = master is None
    if own_master:
        master = pyccl.Master()
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    stacks = tempfile.TemporaryDirectory(prefix="pyccl-group-")
    stack_files = [os.path.join(stacks.name, "rank%d" % r) for r in range(n)]
    procs = [ctx.Process(target=_entry, name="rank%d" % r, daemon=True,
                         args=(master.address, n, r, comm_kwargs, fn, args,
                               results, stack_files[r]))
             for r in range(n)]
    values: Dict[int, Any] = {}
    errors: Dict[int, str] = {}
    problem = ""
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        grace_end: Optional[float] = None
        while len(values) + len(errors) < n:
            now = time.monotonic()
            if grace_end is not None and now > grace_end:
                break
            if now > deadline:
                problem = "timed out after %gs" % timeout
                break
            try:
                rank, ok, payload = results.get(timeout=0.2)
            except queue_mod.Empty:
                crashed = [r for r, p in enumerate(procs)
                           if p.exitcode is not None
                           and r not in values and r not in errors]
                if crashed:
                    # Its report may still be in the pipe; look once more.
                    _drain(results, values, errors, 1.0)
                    for r in crashed:
                        if r not in values and r not in errors:
                            errors[r] = "crashed with exit code %s" % (
                                procs[r].exitcode,)
                    if grace_end is None and errors:
                        grace_end = time.monotonic() + _GRACE_S
                continue
            (values if ok else errors)[rank] = payload
            if errors and grace_end is None:
                grace_end = time.monotonic() + _GRACE_S
    finally:
        stuck = [r for r, p in enumerate(procs) if p.is_alive()
                 and r not in values and r not in errors]
        if stuck and (problem or errors):
            for r in stuck:
                _signal(procs[r], signal.SIGUSR1)
            time.sleep(0.5)
            for r in stuck:
                errors[r] = "no report; its stacks at SIGUSR1:\n" + _read(
                    stack_files[r])
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(10)
        results.close()
        results.join_thread()
        stacks.cleanup()
        if own_master:
            master.close()
    if problem or errors:
        lines = ["group of %d running %s failed%s" % (
            n, getattr(fn, "__name__", fn), ": " + problem if problem else "")]
        for r in range(n):
            if r in errors:
                lines.append("--- rank %d:\n%s" % (r, errors[r]))
            elif r not in values:
                lines.append("--- rank %d: no report (killed)" % r)
        raise GroupError("\n".join(lines))
    return [values[r] for r in range(n)]


def _signal(proc: Any, signum: int) -> None:
    try:
        os.kill(proc.pid, signum)
    except OSError:
        pass


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read() or "(nothing)"
    except OSError as exc:
        return "(unreadable: %s)" % exc


def _drain(results: Any, values: dict, errors: dict, wait_s: float) -> None:
    end = time.monotonic() + wait_s
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        try:
            rank, ok, payload = results.get(timeout=left)
        except queue_mod.Empty:
            return
        (values if ok else errors)[rank] = payload


def assert_no_failures(results: List[List[str]]) -> None:
    """Fails the test with every rank's failure list, if any is non-empty
    (for workers that return lists of failures)."""
    __tracebackhide__ = True
    bad = ["rank %d:\n  %s" % (rank, "\n  ".join(failures))
           for rank, failures in enumerate(results) if failures]
    assert not bad, "\n".join(bad)


__all__ = ["run_group", "GroupError", "assert_no_failures"]
