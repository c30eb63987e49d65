"""Run a function on every rank of a torch.distributed group.

:func:`run_torch_group` spawns ``n`` processes (multiprocessing "spawn"),
each of which imports ``pyccl.torch``, calls ``init_process_group`` with
the backend given (over ``tcp://127.0.0.1:PORT``, or ``env://`` with
``init="env"``), returns ``fn(rank, n, *args)`` and destroys the group.
Results come back in rank order; a worker that raises, crashes or
overruns ``timeout`` makes the call raise AssertionError with every
worker's report.  ``fn`` must be a module-level function.
"""
from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import socket
import time
import traceback
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, n: int, backend: str, init: str, port: int,
           pg_timeout: float, env: Dict[str, str], fn: Callable, args: tuple,
           results: Any) -> None:
    os.environ.update(env)
    try:
        import torch.distributed as dist
        import pyccl.torch  # noqa: F401 - registers "pyccl"
        kwargs: Dict[str, Any] = {}
        if init == "env":
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                              RANK=str(rank), WORLD_SIZE=str(n))
            kwargs["init_method"] = "env://"
        else:
            kwargs.update(init_method="tcp://127.0.0.1:%d" % port,
                          rank=rank, world_size=n)
        dist.init_process_group(backend, timeout=timedelta(
            seconds=pg_timeout), **kwargs)
        value = fn(rank, n, *args)
        if dist.is_initialized():
            dist.destroy_process_group()
    except BaseException:
        results.put((rank, False, traceback.format_exc()))
    else:
        results.put((rank, True, value))


def run_torch_group(n: int, fn: Callable, *args: Any, backend: str = "pyccl",
                    init: str = "tcp", timeout: float = 120.0,
                    pg_timeout: float = 60.0,
                    env: Optional[Dict[str, str]] = None,
                    allow_missing: bool = False,
                    reporting: Optional[List[int]] = None) -> List[Any]:
    """``fn(rank, n, *args)`` on every rank; the results by rank.  With
    ``allow_missing``, ranks that die without reporting (killed on
    purpose) give None instead of failing the call; ``reporting`` names
    the ranks to wait for (the others, e.g. stopped ones, are killed
    once those have reported)."""
    __tracebackhide__ = True
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, daemon=True, name="rank%d" % r,
                         args=(r, n, backend, init, port, pg_timeout,
                               dict(env or {}), fn, args, results))
             for r in range(n)]
    for p in procs:
        p.start()
    got: Dict[int, Any] = {}
    errors: List[str] = []
    deadline = time.monotonic() + timeout
    want = n if reporting is None else len(reporting)
    while len(got) + len(errors) < want:
        try:
            rank, ok, value = results.get(timeout=0.5)
        except queue_mod.Empty:
            if time.monotonic() > deadline:
                errors.append("timed out after %gs" % timeout)
                break
            alive = [p for p in procs if p.is_alive()]
            if not alive and results.empty():
                if not allow_missing:
                    errors.append("ranks died: exit codes %s"
                                  % [p.exitcode for p in procs])
                break
            continue
        if ok:
            got[rank] = value
        else:
            errors.append("rank %d:\n%s" % (rank, value))
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join()
    if errors:
        raise AssertionError("\n".join(errors))
    return [got.get(r) for r in range(n)]
