"""A group of real worker processes with per-rank environments, for the
observability tests (see tests/obs_workers.py)."""
from __future__ import annotations

import multiprocessing
import queue as queue_mod
import time
from typing import Any, Dict, List, Optional

import pyccl

from tests import obs_workers


class Group:
    """Starts ``n`` workers that join ``master``; ``env[rank]`` is added to
    that rank's environment.  ``results(timeout)`` waits for every rank's
    value; ``close()`` lets the workers leave and reaps them."""

    def __init__(self, master: pyccl.Master, n: int, plan: str, args: tuple,
                 env: Optional[Dict[int, Dict[str, str]]] = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("op_timeout", 30.0)
        ctx = multiprocessing.get_context("spawn")
        self._results = ctx.Queue()
        self._release = ctx.Event()
        self._procs = [ctx.Process(
            target=obs_workers._entry, daemon=True, name="rank%d" % r,
            args=(master.address, n, r, (env or {}).get(r, {}), kwargs, plan,
                  args, self._results, self._release))
            for r in range(n)]
        for p in self._procs:
            p.start()

    def results(self, timeout: float,
                ranks: Optional[List[int]] = None) -> List[Any]:
        """The values of ``ranks`` (default: all), in that order."""
        want = list(range(len(self._procs))) if ranks is None else ranks
        values: Dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(values) < len(want):
            try:
                rank, ok, value = self._results.get(
                    timeout=max(0.1, deadline - time.monotonic()))
            except queue_mod.Empty:
                raise AssertionError("ranks %s did not finish within %gs" % (
                    sorted(set(want) - set(values)), timeout))
            if not ok:
                raise AssertionError("rank %d failed:\n%s" % (rank, value))
            values[rank] = value
        return [values[r] for r in want]

    def close(self) -> None:
        self._release.set()
        for p in self._procs:
            p.join(10.0)
            if p.is_alive():
                p.kill()
                p.join()
