"""``pyccl bench``: all-reduce timings of pyccl against torch.distributed gloo.

    pyccl bench [--peers 2,4] [--sizes 4,4K,64K,1M,4M,16M,64M,256M]
                [--iters N] [--warmup N] [--no-gloo] [--conns C]
                [--algorithm auto|ring|star] [--spin-us US]
                [--no-restore-input] [--barrier-each-op]
                [--hang-timeout S] [--json PATH]

For each peer count N the benchmark runs two phases, one after the other,
never at the same time (the processes of one phase would steal CPU from
the other's):

1. pyccl: a :class:`~pyccl.Master` in this process and N worker processes
   (multiprocessing "spawn") on 127.0.0.1, each with a
   :class:`~pyccl.Communicator` (default settings unless ``--conns``,
   ``--algorithm``, ``--spin-us`` or ``--no-restore-input`` say
   otherwise);
2. gloo, when torch is importable: N worker processes that join
   ``torch.distributed`` with the "gloo" backend over a TCP store on
   127.0.0.1 that this process hosts.

Both phases run the same loop.  For each size, every worker allocates one
f32 numpy buffer (the gloo tensor is ``torch.from_numpy`` of it, so no
copy) and fills it with small integers; after a barrier of the library
under test it runs blocking in-place sum all-reduces, timing each call
alone with ``time.perf_counter``.  The first op is checked element by
element (the sums are exact); then the buffer is zeroed, and after another
barrier the remaining ops run back to back (zeros stay zeros, which is
checked at the end).  With ``--barrier-each-op`` every op instead gets a
fresh input and a barrier first, and every result is checked; the times
then include the skew with which ranks leave the barrier.  The first
``--warmup`` ops are not counted.  An op's time is its slowest rank's;
the reported time is the median over the timed ops, ``algbw = size /
time`` and ``busbw = algbw * 2 (N - 1) / N`` (the bytes each link carries
in a ring all-reduce), in GB/s (1e9 bytes/s).

Peak memory: for the largest size, each worker takes a baseline after
allocating and filling the buffer (VmRSS, and ru_maxrss), resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``), runs the first
all-reduce of that size and reads the peak again (VmHWM, ru_maxrss).  The
increase is reported as a multiple of the buffer size (max over peers).

A hang -- an op (or barrier) that runs longer than ``--hang-timeout``
seconds, 60 by default -- stops the benchmark with a report of the
library, peer count, size, iteration and rank, as does any error.  The
exit status is 0 on success, 1 on a failure or hang, 2 on bad arguments.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import json
import multiprocessing
import os
import platform
import queue as queue_mod
import resource
import secrets
import shlex
import statistics
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence, TextIO

import numpy as np

from pyccl.demo import format_size, parse_size

DEFAULT_PEERS = (2, 4)
DEFAULT_SIZES = (4, 4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20,
                 256 << 20)
#: Each size runs about this many bytes of all-reduce input (see iters_for).
ITER_BYTES = 2 << 30
MIN_ITERS, MAX_ITERS = 3, 200

# The fill pattern: element j of rank r holds j % 13 + r + 1, built from a
# block whose length is a multiple of 13 so chunks line up with it.
_BLOCK = 13 * (1 << 16)

# Slots of a worker's row in the shared state array the parent watches.
_S_START, _S_SIZE, _S_ITER, _S_WHAT = range(4)
_SLOTS = 4
_WHAT = {0.0: "all_reduce", 1.0: "barrier", 2.0: "group setup",
         3.0: "teardown"}


# -- sizes and iteration counts --------------------------------------------

def iters_for(size: int) -> int:
    """Timed iterations for one size: max(3, min(200, 2 GiB / size))."""
    return max(MIN_ITERS, min(MAX_ITERS, ITER_BYTES // max(1, size)))


def warmup_for(iters: int) -> int:
    """Untimed iterations before the timed ones: 1..5, a tenth of iters."""
    return max(1, min(5, iters // 10))


def bus_factor(peers: int) -> float:
    """busbw / algbw of an all-reduce over ``peers`` ranks."""
    return 2.0 * (peers - 1) / peers if peers > 1 else 0.0


def format_time(seconds: Optional[float]) -> str:
    """``"12.3 us"`` below a millisecond, else ``"4.56 ms"``."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return "%.1f us" % (seconds * 1e6)
    if seconds < 1.0:
        return "%.2f ms" % (seconds * 1e3)
    return "%.3f s" % seconds


def format_bw(gbps: Optional[float]) -> str:
    """GB/s with three significant digits."""
    if gbps is None:
        return "-"
    return "%.3g" % gbps


# -- memory probes (Linux) --------------------------------------------------

def _proc_status() -> Dict[str, int]:
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


def _reset_peak_rss() -> bool:
    """Sets VmHWM back to the current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


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


def _maxrss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# -- the worker --------------------------------------------------------------

class _Pattern:
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


class _PycclBackend:
    name = "pyccl"

    @staticmethod
    def preload() -> None:
        import pyccl  # noqa: F401

    def __init__(self, rendezvous: Any, peers: int, rank: int,
                 opts: dict) -> None:
        from pyccl import Communicator
        kwargs = {}
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
        self.algorithm = opts.get("algorithm", "auto")
        self.comm = Communicator(rendezvous, world_size=peers, rank=rank,
                                 **kwargs)

    def prepare(self, buf: np.ndarray) -> Any:
        comm, algorithm = self.comm, self.algorithm
        return lambda: comm.all_reduce(buf, "sum", algorithm=algorithm)

    def barrier(self) -> None:
        self.comm.barrier()

    def close(self) -> None:
        self.comm.close()


class _GlooBackend:
    name = "gloo"

    @staticmethod
    def preload() -> None:
        import torch.distributed  # noqa: F401

    def __init__(self, rendezvous: Any, peers: int, rank: int,
                 opts: dict) -> None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        import torch
        import torch.distributed as dist
        self.torch, self.dist = torch, dist
        timeout = datetime.timedelta(seconds=opts["hang_timeout"])
        store = dist.TCPStore("127.0.0.1", rendezvous, peers, False,
                              timeout=timeout)
        dist.init_process_group("gloo", store=store, rank=rank,
                                world_size=peers, timeout=timeout)

    def prepare(self, buf: np.ndarray) -> Any:
        tensor = self.torch.from_numpy(buf)
        all_reduce = self.dist.all_reduce
        return lambda: all_reduce(tensor)

    def barrier(self) -> None:
        self.dist.barrier()

    def close(self) -> None:
        self.dist.destroy_process_group()


_BACKENDS = {"pyccl": _PycclBackend, "gloo": _GlooBackend}


class _Watched:
    """Marks this rank's current blocking call in the shared state array,
    so the parent can tell a hang (and where it is) from slow progress."""

    def __init__(self, state: Any, rank: int) -> None:
        self.state, self.base = state, rank * _SLOTS

    def begin(self, what: float, size: int = 0, it: int = -1) -> None:
        s, b = self.state, self.base
        s[b + _S_SIZE] = size
        s[b + _S_ITER] = it
        s[b + _S_WHAT] = what
        s[b + _S_START] = time.monotonic()

    def end(self) -> float:
        s, b = self.state, self.base
        elapsed = time.monotonic() - s[b + _S_START]
        s[b + _S_START] = 0.0
        return elapsed


def _worker(library: str, rendezvous: Any, peers: int, rank: int,
            plan: List[tuple], opts: dict, state: Any, results: Any) -> None:
    """One benchmark process.  Puts ``("size", rank, size, wall_s)`` after
    each size, then ``("done", rank, report)`` or ``("error", rank, text)``."""
    watch = _Watched(state, rank)
    hang = float(opts["hang_timeout"])
    sync_each = bool(opts.get("barrier_each_op"))
    where = "group setup"
    try:
        _BACKENDS[library].preload()
        gc.collect()
        rss_start = _proc_status().get("VmRSS")
        watch.begin(2.0)
        backend = _BACKENDS[library](rendezvous, peers, rank, opts)
        watch.end()
        gc.collect()
        rss_group = _proc_status().get("VmRSS")
        pattern = _Pattern(rank, peers)
        largest = max(size for size, _, _ in plan)
        report: Dict[str, Any] = {"sizes": [], "memory": None}

        def blocking(call: Any, what: float, size: int, it: int) -> float:
            watch.begin(what, size, it)
            call()
            elapsed = watch.end()
            if elapsed > hang:
                raise RuntimeError(
                    "%s of %s at iteration %d took %.3g s (> %g s: a hang)"
                    % (_WHAT[what], format_size(size), it, elapsed, hang))
            return elapsed

        for size, iters, warmup in plan:
            where = "%s all_reduce" % format_size(size)
            wall = time.perf_counter()
            gc.collect()
            buf = np.empty(size // 4, dtype=np.float32)
            pattern.fill(buf)
            run_op = backend.prepare(buf)
            blocking(backend.barrier, 1.0, size, -1)  # between sizes
            times = []
            for it in range(warmup + iters):
                if sync_each:
                    if it:
                        pattern.fill(buf)
                    blocking(backend.barrier, 1.0, size, it)
                probe = size == largest and it == 0
                if size == largest and it == warmup and it > 0:
                    # Second probe: the peak over all the timed ops.
                    loop_rss = _proc_status().get("VmRSS")
                    loop_reset = _reset_peak_rss()
                if probe:
                    before_rss = _proc_status().get("VmRSS")
                    before_max = _maxrss_kib()
                    reset = _reset_peak_rss()
                    reset_max = _maxrss_kib()
                watch.begin(0.0, size, it)
                start = time.perf_counter()
                run_op()
                elapsed = time.perf_counter() - start
                if watch.end() > hang:
                    raise RuntimeError(
                        "all_reduce of %s at iteration %d took %.3g s "
                        "(> %g s: a hang)" % (format_size(size), it,
                                              elapsed, hang))
                if probe:
                    after = _proc_status()
                    report["memory"] = {
                        "size": size, "hwm_reset": reset,
                        "rss_before_kib": before_rss,
                        "hwm_after_kib": after.get("VmHWM"),
                        "rss_after_kib": after.get("VmRSS"),
                        "maxrss_before_kib": before_max,
                        "maxrss_reset_kib": reset_max,
                        "rss_start_kib": rss_start,
                        "rss_group_kib": rss_group,
                        "maxrss_after_kib": _maxrss_kib()}
                if it == 0 or sync_each:
                    bad = pattern.check(buf)
                    if bad is not None:
                        raise RuntimeError(
                            "wrong all_reduce result at %s, iteration %d, "
                            "element %d: %r" % (format_size(size), it, bad,
                                                float(buf[bad])))
                if it == 0 and not sync_each:
                    # Back to back from here on: zeros stay zeros (a sum
                    # of the pattern would overflow), checked at the end.
                    buf.fill(0.0)
                    blocking(backend.barrier, 1.0, size, it)
                if it >= warmup:
                    times.append(elapsed)
            if size == largest and warmup > 0 and report["memory"]:
                report["memory"]["timed_rss_before_kib"] = loop_rss
                report["memory"]["timed_hwm_after_kib"] = (
                    _proc_status().get("VmHWM") if loop_reset else None)
            if not sync_each and buf.any():
                bad = int(np.flatnonzero(buf)[0])
                raise RuntimeError(
                    "wrong all_reduce result at %s: element %d of a sum of "
                    "zeros is %r" % (format_size(size), bad,
                                     float(buf[bad])))
            report["sizes"].append({"size": size, "iters": iters,
                                    "warmup": warmup, "times_s": times})
            del run_op, buf
            results.put(("size", rank, size, time.perf_counter() - wall))
        where = "teardown"
        watch.begin(3.0)
        backend.close()
        watch.end()
        results.put(("done", rank, report))
    except BaseException:  # report everything, KeyboardInterrupt included
        results.put(("error", rank, "during %s:\n%s"
                     % (where, traceback.format_exc())))


# -- the parent --------------------------------------------------------------

class BenchFailure(Exception):
    """A phase failed or hung; ``info`` says where."""

    def __init__(self, info: dict) -> None:
        super().__init__(info.get("message", "failed"))
        self.info = info


def _plan(sizes: Sequence[int], iters: Optional[int],
          warmup: Optional[int]) -> List[tuple]:
    plan = []
    for size in sizes:
        n = iters if iters is not None else iters_for(size)
        w = warmup if warmup is not None else warmup_for(n)
        plan.append((size, n, w))
    return plan


def run_phase(library: str, peers: int, plan: List[tuple], opts: dict,
              log: TextIO) -> dict:
    """Runs one library's phase with ``peers`` worker processes; returns
    its raw result or raises :class:`BenchFailure`."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    state = ctx.RawArray("d", peers * _SLOTS)
    hang = float(opts["hang_timeout"])
    load_before = os.getloadavg()
    owner: Any = None
    if library == "pyccl":
        from pyccl import Master
        owner = Master("127.0.0.1", 0, key=opts.get("key") or None)
        rendezvous: Any = owner.address
    else:
        import torch.distributed as dist
        owner = dist.TCPStore("127.0.0.1", 0, peers, True,
                              timeout=datetime.timedelta(seconds=hang),
                              wait_for_workers=False)
        rendezvous = owner.port
    procs = [ctx.Process(target=_worker, name="bench-%s-%d" % (library, r),
                         args=(library, rendezvous, peers, r, plan, opts,
                               state, results), daemon=True)
             for r in range(peers)]
    started = time.perf_counter()
    cpu_before = _cpu_snapshot()
    reports: Dict[int, dict] = {}
    failure: Optional[dict] = None
    sizes_done: Dict[int, int] = {}
    try:
        for p in procs:
            p.start()
        while len(reports) < peers and failure is None:
            try:
                msg = results.get(timeout=0.5)
            except queue_mod.Empty:
                failure = _check_workers(library, peers, procs, state, hang)
                continue
            kind, rank = msg[0], msg[1]
            if kind == "size":
                sizes_done[msg[2]] = sizes_done.get(msg[2], 0) + 1
                if sizes_done[msg[2]] == peers:
                    print("  [N=%d %s] %s done (%.1f s)"
                          % (peers, library, format_size(msg[2]), msg[3]),
                          file=log, flush=True)
            elif kind == "done":
                reports[rank] = msg[2]
            else:
                failure = {"library": library, "peers": peers, "rank": rank,
                           "kind": "error", "message": msg[2]}
    finally:
        if failure is not None:
            # Let the other ranks' errors arrive (they usually name the
            # same op), then stop everyone.
            time.sleep(0.5)
            extra = []
            while True:
                try:
                    msg = results.get_nowait()
                except queue_mod.Empty:
                    break
                if msg[0] == "error":
                    extra.append("rank %d %s" % (msg[1], msg[2]))
            failure["other_ranks"] = extra
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
    result = _summarise(library, peers, plan, reports, load_before, wall)
    result["foreign_cpus"] = _foreign_cpu(cpu_before, _cpu_snapshot(), wall)
    return result


def _check_workers(library: str, peers: int, procs: list, state: Any,
                   hang: float) -> Optional[dict]:
    """A failure record if a worker died or a blocking call hung."""
    now = time.monotonic()
    for r in range(peers):
        begun = state[r * _SLOTS + _S_START]
        what = _WHAT.get(state[r * _SLOTS + _S_WHAT], "?")
        # Group setup gets extra time: spawning and importing come first.
        limit = hang + (30.0 if what == "group setup" else 5.0)
        if begun and now - begun > limit:
            size = int(state[r * _SLOTS + _S_SIZE])
            it = int(state[r * _SLOTS + _S_ITER])
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
                                  _WHAT.get(state[r * _SLOTS + _S_WHAT], "?"),
                                  format_size(int(state[r * _SLOTS
                                                        + _S_SIZE])))}
    return None


def _summarise(library: str, peers: int, plan: List[tuple],
               reports: Dict[int, dict], load_before: tuple,
               wall: float) -> dict:
    rows = []
    for i, (size, iters, warmup) in enumerate(plan):
        per_rank = [reports[r]["sizes"][i]["times_s"] for r in range(peers)]
        # An iteration ends when its slowest rank is done.
        slowest = [max(ts) for ts in zip(*per_rank)]
        median = statistics.median(slowest)
        algbw = size / median / 1e9 if median > 0 else 0.0
        rows.append({"size": size, "iters": iters, "warmup": warmup,
                     "median_s": median, "min_s": min(slowest),
                     "max_s": max(slowest),
                     "algbw_GBps": algbw,
                     "busbw_GBps": algbw * bus_factor(peers),
                     "times_s": per_rank})
    memory = [reports[r]["memory"] for r in range(peers)]
    return {"library": library, "peers": peers, "rows": rows,
            "memory": memory, "memory_summary": _memory_summary(memory),
            "load_before": list(load_before),
            "load_after": list(os.getloadavg()), "wall_s": wall}


def _memory_summary(memory: List[Optional[dict]]) -> Optional[dict]:
    """Peak RSS increase above the baseline, max over peers."""
    if not memory or any(m is None for m in memory):
        return None
    size = memory[0]["size"]
    hwm = [(m["hwm_after_kib"] - m["rss_before_kib"]) * 1024
           for m in memory
           if m["hwm_reset"] and m["hwm_after_kib"] is not None
           and m["rss_before_kib"] is not None]
    # Resetting VmHWM resets ru_maxrss too, so after a reset ru_maxrss is
    # compared with its value just after the reset.
    maxrss = [(m["maxrss_after_kib"]
               - (m["maxrss_reset_kib"] if m["hwm_reset"]
                  else m["maxrss_before_kib"])) * 1024
              for m in memory]
    kib = [(m["rss_before_kib"] or 0, m["rss_start_kib"] or 0,
            m["rss_group_kib"] or 0) for m in memory]
    out = {"size": size,
           # RSS at the baseline (tensor included), and what joining the
           # group added to the process (after imports, before any buffer).
           "baseline_rss_bytes": max(k[0] for k in kib) * 1024,
           "group_rss_bytes": max(k[2] - k[1] for k in kib) * 1024,
           # Baseline minus the tensor minus the RSS right after joining:
           # what the earlier sizes left behind (library caches, malloc
           # arenas, the benchmark's own 6.5 MiB of pattern blocks).
           "retained_rss_bytes": max(k[0] - k[2] for k in kib) * 1024 - size,
           "maxrss_delta_bytes": max(maxrss),
           "maxrss_delta_x": max(maxrss) / size}
    if len(hwm) == len(memory):
        out["hwm_delta_bytes"] = max(hwm)
        out["hwm_delta_x"] = max(hwm) / size
    # VmHWM is exact when it could be reset; ru_maxrss cannot be reset and
    # misses peaks below an earlier high-water mark.
    out["delta_bytes"] = out.get("hwm_delta_bytes", out["maxrss_delta_bytes"])
    out["delta_x"] = out["delta_bytes"] / size
    # The same over all the timed ops (back to back, unless
    # --barrier-each-op), above the RSS before the first of them.
    timed = [(m.get("timed_hwm_after_kib") - m["timed_rss_before_kib"]) * 1024
             for m in memory if m.get("timed_hwm_after_kib") is not None
             and m.get("timed_rss_before_kib") is not None]
    if len(timed) == len(memory):
        out["timed_delta_bytes"] = max(timed)
        out["timed_delta_x"] = max(timed) / size
    return out


def print_table(peers: int, ours: dict, gloo: Optional[dict],
                out: TextIO) -> None:
    """The per-N table: pyccl and gloo side by side."""
    print("", file=out)
    print("N=%d peers (busbw = algbw * %.3g)" % (peers, bus_factor(peers)),
          file=out)
    header = ("size", "iters", "pyccl median", "pyccl busbw",
              "gloo median", "gloo busbw", "ratio")
    fmt = "%8s %6s %13s %12s %13s %12s %7s"
    print(fmt % header, file=out)
    print(fmt % ("", "", "", "GB/s", "", "GB/s", "g/p"), file=out)
    for i, row in enumerate(ours["rows"]):
        grow = gloo["rows"][i] if gloo else None
        ratio = ("%.2f" % (grow["median_s"] / row["median_s"])
                 if grow and row["median_s"] > 0 else "-")
        print(fmt % (format_size(row["size"]), row["iters"],
                     format_time(row["median_s"]),
                     format_bw(row["busbw_GBps"]),
                     format_time(grow["median_s"] if grow else None),
                     format_bw(grow["busbw_GBps"] if grow else None),
                     ratio), file=out)
    for result in (ours, gloo):
        if result is None:
            continue
        mem = result["memory_summary"]
        if mem is None:
            continue
        how = ("VmHWM" if "hwm_delta_bytes" in mem
               else "ru_maxrss")
        print("%-5s peak RSS increase during the first %s all-reduce "
              "(%s, max over peers): %.3fx the tensor = %.1f MiB "
              "(ru_maxrss %.3fx), over all timed ops %s; baseline RSS %.0f MiB "
              "(joining the group added %.1f MiB, earlier sizes left "
              "%.1f MiB)"
              % (result["library"], format_size(mem["size"]), how,
                 mem["delta_x"], mem["delta_bytes"] / 2**20,
                 mem["maxrss_delta_x"],
                 "%.3fx" % mem["timed_delta_x"] if "timed_delta_x" in mem
                 else "-",
                 mem["baseline_rss_bytes"] / 2**20,
                 mem["group_rss_bytes"] / 2**20,
                 mem["retained_rss_bytes"] / 2**20), file=out)
    phases = []
    for result in (ours, gloo):
        if result is None:
            continue
        foreign = result.get("foreign_cpus")
        phases.append("%s %.1f s, load %.2f at start, other processes used "
                      "%s CPUs" % (result["library"], result["wall_s"],
                                   result["load_before"][0],
                                   "?" if foreign is None
                                   else "%.2f" % foreign))
    print("phases: %s" % "; ".join(phases), file=out)
    print("ratio g/p = gloo median / pyccl median (> 1: pyccl faster)",
          file=out, flush=True)


# -- command line ------------------------------------------------------------

def print_mac_cost(plain: dict, mac: dict, out: TextIO) -> None:
    """Bandwidth lost to frame MACs, size by size."""
    print("frame MAC cost: size, busbw without / with MACs, bandwidth lost",
          file=out)
    for row, mrow in zip(plain["rows"], mac["rows"]):
        lost = 1.0 - row["median_s"] / mrow["median_s"]
        print("%8s %10s %10s %6.1f%%" % (format_size(row["size"]),
                                         format_bw(row["busbw_GBps"]),
                                         format_bw(mrow["busbw_GBps"]),
                                         100.0 * lost), file=out)


def _int_list(text: str) -> List[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected integers like 2,4") \
            from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("peer counts must be >= 1")
    return values


def _size_list(text: str) -> List[int]:
    try:
        values = [parse_size(part) for part in text.split(",")
                  if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not values:
        raise argparse.ArgumentTypeError("no sizes")
    for v in values:
        if v < 4 or v % 4:
            raise argparse.ArgumentTypeError(
                "size %d is not a positive whole number of f32 elements" % v)
    return values


def _nonneg(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyccl bench",
        description="All-reduce (f32 sum) timings of pyccl and, when torch "
                    "is installed, torch.distributed gloo, with N local "
                    "processes on 127.0.0.1.  The two libraries run in "
                    "separate phases.")
    parser.add_argument("--peers", type=_int_list, default=list(DEFAULT_PEERS),
                        help="comma-separated peer counts (default 2,4)")
    parser.add_argument("--sizes", type=_size_list,
                        default=list(DEFAULT_SIZES),
                        help="comma-separated sizes in bytes with K/M/G "
                             "suffixes (default 4,4K,64K,1M,4M,16M,64M,256M)")
    parser.add_argument("--iters", type=_positive, default=None,
                        help="timed iterations per size (default "
                             "max(3, min(200, 2 GiB / size)))")
    parser.add_argument("--warmup", type=_nonneg, default=None,
                        help="untimed iterations first (default 1..5: a "
                             "tenth of the timed ones)")
    parser.add_argument("--no-gloo", action="store_true",
                        help="skip the torch.distributed gloo phase")
    parser.add_argument("--conns", type=_positive, default=None,
                        help="pyccl TCP connections per peer pair (default: "
                             "the Communicator's, 1)")
    parser.add_argument("--algorithm", choices=("auto", "ring", "star"),
                        default="auto", help="pyccl all-reduce algorithm")
    parser.add_argument("--spin-us", type=int, default=None,
                        help="pyccl busy-poll microseconds (-1 auto, 0 "
                             "never; default: the Communicator's, -1)")
    parser.add_argument("--no-restore-input", action="store_true",
                        help="pyccl Communicator(restore_input=False): a "
                             "failed in-place all-reduce need not give the "
                             "input back, which saves a copy per op")
    parser.add_argument("--barrier-each-op", action="store_true",
                        help="refill the input and enter a barrier before "
                             "every op, and check every result (default: "
                             "ops run back to back on zeros after a checked "
                             "first op)")
    parser.add_argument("--hang-timeout", type=float, default=60.0,
                        help="seconds after which one op counts as hung "
                             "(default 60)")
    parser.add_argument("--auth", action="store_true",
                        help="authenticate every connection with a one-off "
                             "random key (the handshake only: no per-frame "
                             "cost)")
    parser.add_argument("--frame-mac", action="store_true",
                        help="also run pyccl with a MAC on every frame "
                             "(implies --auth) and print its table and its "
                             "cost against pyccl without MACs")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="write the raw results (every iteration of "
                             "every rank) to PATH")
    return parser


def _gloo_available() -> Optional[str]:
    """torch's version if torch.distributed with gloo is usable, else None."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_gloo_available()):
            return None
        return str(torch.__version__)
    except Exception:
        return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``pyccl bench``; returns the exit status."""
    import pyccl
    args = build_parser().parse_args(
        list(sys.argv[1:] if argv is None else argv))
    out, log = sys.stdout, sys.stderr
    if args.spin_us is not None and args.spin_us < -1:
        print("pyccl bench: --spin-us must be >= -1", file=log)
        return 2
    if args.hang_timeout <= 0:
        print("pyccl bench: --hang-timeout must be positive", file=log)
        return 2
    torch_version = None if args.no_gloo else _gloo_available()
    plan = _plan(args.sizes, args.iters, args.warmup)
    opts = {"conns": args.conns, "spin_us": args.spin_us,
            "algorithm": args.algorithm, "hang_timeout": args.hang_timeout,
            "barrier_each_op": args.barrier_each_op,
            "no_restore_input": args.no_restore_input,
            "key": (secrets.token_hex(32) if args.auth or args.frame_mac
                    else None)}
    command = "pyccl bench" + "".join(
        " " + shlex.quote(a) for a in (argv if argv is not None
                                       else sys.argv[1:]))
    record: Dict[str, Any] = {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "transport": "TCP loopback 127.0.0.1"},
        "pyccl": {"version": pyccl.__version__,
                  "c_version": pyccl.c_version()},
        "torch": torch_version,
        "options": dict(opts, peers=args.peers, sizes=args.sizes,
                        iters=args.iters, warmup=args.warmup),
        "load_at_start": list(os.getloadavg()),
        "results": [], "failure": None}

    print("pyccl bench: all_reduce f32 sum in place, 127.0.0.1 loopback, "
          "%s CPUs, 1-min load %.2f" % (os.cpu_count(),
                                        record["load_at_start"][0]),
          file=out)
    print("pyccl %s (core %s), algorithm %s, conns_per_peer %s, spin_us %s%s; "
          "gloo: %s" % (pyccl.__version__, pyccl.c_version(), args.algorithm,
                        args.conns or "default (1)",
                        "default (auto)" if args.spin_us is None
                        else args.spin_us,
                        ", restore_input off" if args.no_restore_input
                        else "",
                        "torch %s" % torch_version if torch_version
                        else "skipped (--no-gloo)" if args.no_gloo
                        else "torch not importable, skipped"),
          file=out)
    print("ops %s; iterations per size (timed+warmup): %s" % (
        "each after a refill and a barrier" if args.barrier_each_op
        else "back to back", ", ".join(
        "%s:%d+%dw" % (format_size(s), n, w) for s, n, w in plan)),
        file=out, flush=True)

    status = 0
    try:
        for peers in args.peers:
            phases: Dict[str, Optional[dict]] = {"pyccl": None, "gloo": None,
                                                 "pyccl+mac": None}
            runs = [("pyccl", "pyccl", opts), ("gloo", "gloo", opts)]
            if args.frame_mac:
                runs.append(("pyccl+mac", "pyccl", dict(opts, frame_mac=True)))
            for name, library, run_opts in runs:
                if library == "gloo" and not torch_version:
                    continue
                print("  [N=%d %s] starting" % (peers, name), file=log,
                      flush=True)
                result = run_phase(library, peers, plan, run_opts, log)
                result["variant"] = name
                phases[name] = result
                record["results"].append(result)
                gc.collect()
            print_table(peers, phases["pyccl"], phases["gloo"], out)
            if phases["pyccl+mac"]:
                print("\nwith frame MACs (frame_mac=True):", file=out)
                print_table(peers, phases["pyccl+mac"], phases["gloo"], out)
                print_mac_cost(phases["pyccl"], phases["pyccl+mac"], out)
    except BenchFailure as exc:
        info = exc.info
        record["failure"] = info
        print("\npyccl bench: FAILED (%s, N=%d peers, rank %d): %s"
              % (info["library"], info["peers"], info["rank"],
                 info["message"]), file=out)
        for text in info.get("other_ranks", ()):
            print("also %s" % text, file=out)
        print("command: %s" % command, file=out, flush=True)
        status = 1
    finally:
        if args.json:
            record["load_at_end"] = list(os.getloadavg())
            with open(args.json, "w") as f:
                json.dump(record, f, indent=1)
                f.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
