"""Measurement: what one benchmark peer process does.

:func:`peer_main` is the target of every worker process of a phase (see
:mod:`pyccl.bench.orchestrate`).  It joins the group of the library under
test (a :class:`~pyccl.Communicator`, or torch.distributed with gloo),
then for each size of the plan fills a buffer, times each blocking
all-reduce alone with ``time.perf_counter``, checks the results and
reports the times.  Nothing here prints; everything goes back to the
parent on the results queue:

- ``("size", rank, size, wall_s)`` after each size;
- ``("done", rank, report)`` at the end, or ``("error", rank, text)``.

While a blocking call runs, the peer marks it in its row of a shared
array (:class:`Watched`), so the parent can tell a hang, and where it is,
from slow progress without hearing from the peer.
"""
from __future__ import annotations

import datetime
import functools
import gc
import os
import resource
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from pyccl.argtypes import format_size
from pyccl.communicator import Communicator

# The fill pattern: element j of rank r holds j % 13 + r + 1, built from a
# block whose length is a multiple of 13 so chunks line up with it.
_BLOCK = 13 * (1 << 16)

#: Slots of a peer's row in the shared state array the parent watches:
#: when the current blocking call began (0.0: none runs), its size, its
#: iteration and what it is (a key of WHAT).
S_START, S_SIZE, S_ITER, S_WHAT = range(4)
SLOTS = 4
ALL_REDUCE, BARRIER, GROUP_SETUP, TEARDOWN = 0.0, 1.0, 2.0, 3.0
WHAT = {ALL_REDUCE: "all_reduce", BARRIER: "barrier",
        GROUP_SETUP: "group setup", TEARDOWN: "teardown"}


# -- memory probes (Linux) --------------------------------------------------

def proc_status() -> Dict[str, int]:
    """VmRSS and VmHWM of this process in KiB ({} if /proc is missing)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def reset_peak_rss() -> bool:
    """Sets VmHWM back to the current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def maxrss_kib() -> int:
    """ru_maxrss of this process (KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# -- the data ----------------------------------------------------------------

class Pattern:
    """Fills a buffer with rank ``rank``'s input and checks the sum over
    ``peers`` ranks, chunk by chunk, without large temporaries."""

    def __init__(self, rank: int, peers: int) -> None:
        base = (np.arange(_BLOCK, dtype=np.int64) % 13).astype(np.float32)
        self.base = base
        self.add = np.float32(rank + 1)
        self.want = (base * peers
                     + np.float32(peers * (peers + 1) // 2)).astype(np.float32)

    def fill(self, buf: np.ndarray) -> None:
        for start in range(0, buf.size, _BLOCK):
            n = min(_BLOCK, buf.size - start)
            np.add(self.base[:n], self.add, out=buf[start:start + n])

    def check(self, buf: np.ndarray) -> Optional[int]:
        """None if every element is right, else the first wrong index."""
        for start in range(0, buf.size, _BLOCK):
            n = min(_BLOCK, buf.size - start)
            chunk = buf[start:start + n]
            if not np.array_equal(chunk, self.want[:n]):
                bad = np.flatnonzero(chunk != self.want[:n])
                return start + int(bad[0])
        return None


# -- the libraries under test ------------------------------------------------
#
# A backend joins the group in its constructor and offers three calls:
# ``prepare(buf)`` returns the blocking in-place all-reduce of buf as a
# function of no arguments (so the timed call does no lookups), and
# ``barrier()`` and ``close()``.

class PycclBackend:
    """pyccl's Communicator, with the options the command line set."""

    def __init__(self, rendezvous: Any, peers: int, rank: int,
                 opts: dict) -> None:
        kwargs: Dict[str, Any] = {}
        if opts.get("conns") is not None:
            kwargs["conns_per_peer"] = opts["conns"]
        if opts.get("spin_us") is not None:
            kwargs["spin_us"] = opts["spin_us"]
        if opts.get("no_restore_input"):
            kwargs["restore_input"] = False
        if opts.get("key"):
            kwargs["key"] = opts["key"]
        if opts.get("frame_mac"):
            kwargs["frame_mac"] = True
        if opts.get("encrypt"):
            kwargs["encrypt"] = True
        comm = Communicator(rendezvous, world_size=peers, rank=rank, **kwargs)
        self.barrier, self.close = comm.barrier, comm.close
        self._all_reduce = functools.partial(
            comm.all_reduce, op="sum", algorithm=opts.get("algorithm", "auto"))

    def prepare(self, buf: np.ndarray) -> Callable[[], Any]:
        return functools.partial(self._all_reduce, buf)


class GlooBackend:
    """torch.distributed with the gloo backend, over a TCPStore on
    127.0.0.1 whose port is the rendezvous."""

    def __init__(self, rendezvous: Any, peers: int, rank: int,
                 opts: dict) -> None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        import torch
        import torch.distributed as dist
        timeout = datetime.timedelta(seconds=opts["hang_timeout"])
        store = dist.TCPStore("127.0.0.1", rendezvous, peers, False,
                              timeout=timeout)
        dist.init_process_group("gloo", store=store, rank=rank,
                                world_size=peers, timeout=timeout)
        self.barrier, self.close = dist.barrier, dist.destroy_process_group
        self._from_numpy, self._all_reduce = torch.from_numpy, dist.all_reduce

    def prepare(self, buf: np.ndarray) -> Callable[[], Any]:
        # torch.from_numpy shares the buffer's memory: no copy.
        return functools.partial(self._all_reduce, self._from_numpy(buf))


BACKENDS = {"pyccl": PycclBackend, "gloo": GlooBackend}


def preload(library: str) -> None:
    """Imports the library before the baseline RSS is taken (pyccl is
    imported with this module)."""
    if library == "gloo":
        import torch.distributed  # noqa: F401


# -- the peer ----------------------------------------------------------------

class Watched:
    """Marks this rank's current blocking call in the shared state array,
    so the parent can tell a hang (and where it is) from slow progress."""

    def __init__(self, state: Any, rank: int, hang: float) -> None:
        self.state, self.base, self.hang = state, rank * SLOTS, hang

    def begin(self, what: float, size: int = 0, it: int = -1) -> None:
        s, b = self.state, self.base
        s[b + S_SIZE] = size
        s[b + S_ITER] = it
        s[b + S_WHAT] = what
        s[b + S_START] = time.monotonic()

    def end(self) -> float:
        s, b = self.state, self.base
        elapsed = time.monotonic() - s[b + S_START]
        s[b + S_START] = 0.0
        return elapsed

    def call(self, fn: Callable[[], Any], what: float, size: int,
             it: int) -> None:
        """Runs one blocking call; a call longer than the hang timeout
        fails the run (the parent may have noticed first)."""
        self.begin(what, size, it)
        fn()
        self.check(self.end(), what, size, it)

    def check(self, elapsed: float, what: float, size: int, it: int) -> None:
        if elapsed > self.hang:
            raise RuntimeError(
                "%s of %s at iteration %d took %.3g s (> %g s: a hang)"
                % (WHAT[what], format_size(size), it, elapsed, self.hang))


class MemoryProbe:
    """Peak RSS around the first all-reduce of the largest size, and over
    all its timed ops (see the ``Peak memory`` paragraph of
    ``docs/benchmarks.md``)."""

    def __init__(self) -> None:
        gc.collect()
        self.rss_start = proc_status().get("VmRSS")
        self.rss_group: Optional[int] = None
        self.record: Optional[dict] = None

    def joined(self) -> None:
        gc.collect()
        self.rss_group = proc_status().get("VmRSS")

    def before_first_op(self) -> None:
        self._before_rss = proc_status().get("VmRSS")
        self._before_max = maxrss_kib()
        self._reset = reset_peak_rss()
        self._reset_max = maxrss_kib()

    def after_first_op(self, size: int) -> None:
        after = proc_status()
        self.record = {
            "size": size, "hwm_reset": self._reset,
            "rss_before_kib": self._before_rss,
            "hwm_after_kib": after.get("VmHWM"),
            "rss_after_kib": after.get("VmRSS"),
            "maxrss_before_kib": self._before_max,
            "maxrss_reset_kib": self._reset_max,
            "rss_start_kib": self.rss_start,
            "rss_group_kib": self.rss_group,
            "maxrss_after_kib": maxrss_kib()}

    def before_timed_ops(self) -> None:
        self._loop_rss = proc_status().get("VmRSS")
        self._loop_reset = reset_peak_rss()

    def after_timed_ops(self) -> None:
        if self.record is not None:
            self.record["timed_rss_before_kib"] = self._loop_rss
            self.record["timed_hwm_after_kib"] = (
                proc_status().get("VmHWM") if self._loop_reset else None)


def _wrong(size: int, it: int, bad: int, value: float) -> RuntimeError:
    return RuntimeError("wrong all_reduce result at %s, iteration %d, "
                        "element %d: %r" % (format_size(size), it, bad, value))


def measure_size(backend: Any, watch: Watched, pattern: Pattern, size: int,
                 iters: int, warmup: int, sync_each: bool,
                 probe: Optional[MemoryProbe]) -> List[float]:
    """Times ``warmup + iters`` all-reduces of ``size`` bytes; returns the
    times of the timed ones.  ``probe``: measure memory on this size."""
    gc.collect()
    buf = np.empty(size // 4, dtype=np.float32)
    pattern.fill(buf)
    run_op = backend.prepare(buf)
    watch.call(backend.barrier, BARRIER, size, -1)  # between sizes
    times = []
    for it in range(warmup + iters):
        if sync_each:
            if it:
                pattern.fill(buf)
            watch.call(backend.barrier, BARRIER, size, it)
        if probe is not None and it == warmup and it > 0:
            probe.before_timed_ops()  # the peak over all the timed ops
        if probe is not None and it == 0:
            probe.before_first_op()
        watch.begin(ALL_REDUCE, size, it)
        start = time.perf_counter()
        run_op()
        elapsed = time.perf_counter() - start
        watch.check(watch.end(), ALL_REDUCE, size, it)
        if probe is not None and it == 0:
            probe.after_first_op(size)
        if it == 0 or sync_each:
            bad = pattern.check(buf)
            if bad is not None:
                raise _wrong(size, it, bad, float(buf[bad]))
        if it == 0 and not sync_each:
            # Back to back from here on: zeros stay zeros (a sum of the
            # pattern would overflow), checked at the end.
            buf.fill(0.0)
            watch.call(backend.barrier, BARRIER, size, it)
        if it >= warmup:
            times.append(elapsed)
    if probe is not None and warmup > 0:
        probe.after_timed_ops()
    if not sync_each and buf.any():
        bad = int(np.flatnonzero(buf)[0])
        raise RuntimeError(
            "wrong all_reduce result at %s: element %d of a sum of zeros "
            "is %r" % (format_size(size), bad, float(buf[bad])))
    return times


def peer_main(library: str, rendezvous: Any, peers: int, rank: int,
              plan: List[tuple], opts: dict, state: Any,
              results: Any) -> None:
    """One benchmark process (see the module's docstring for what it
    reports on ``results``)."""
    watch = Watched(state, rank, float(opts["hang_timeout"]))
    where = "group setup"
    try:
        preload(library)
        probe = MemoryProbe()
        watch.begin(GROUP_SETUP)
        backend = BACKENDS[library](rendezvous, peers, rank, opts)
        watch.end()
        probe.joined()
        pattern = Pattern(rank, peers)
        largest = max(size for size, _, _ in plan)
        sizes = []
        for size, iters, warmup in plan:
            where = "%s all_reduce" % format_size(size)
            wall = time.perf_counter()
            times = measure_size(backend, watch, pattern, size, iters, warmup,
                                 bool(opts.get("barrier_each_op")),
                                 probe if size == largest else None)
            sizes.append({"size": size, "iters": iters, "warmup": warmup,
                          "times_s": times})
            results.put(("size", rank, size, time.perf_counter() - wall))
        where = "teardown"
        watch.begin(TEARDOWN)
        backend.close()
        watch.end()
        results.put(("done", rank, {"sizes": sizes, "memory": probe.record}))
    except BaseException:  # report everything, KeyboardInterrupt included
        results.put(("error", rank, "during %s:\n%s"
                     % (where, traceback.format_exc())))


__all__ = ["peer_main", "measure_size", "Pattern", "PycclBackend",
           "GlooBackend", "BACKENDS", "Watched", "MemoryProbe", "WHAT",
           "SLOTS", "S_START", "S_SIZE", "S_ITER", "S_WHAT"]
