"""``pyccl demo``: a master and N worker processes on this machine.

Each worker joins the group and all-reduces (f32, sum) a buffer of each
size ``iters`` times.  The values are small integers, so the sum is exact
and every worker checks every element; workers also hash their result
(SHA-256) and the parent checks that every rank holds the same bytes.  The
parent prints one row per size: the median time of the slowest rank, the
algorithm bandwidth (bytes / time) and the bus bandwidth (algbw * 2(n-1)/n,
the traffic each link carries in a ring all-reduce).
"""
from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import queue as queue_mod
import statistics
import sys
import time
import traceback
from typing import Any, List, Optional, Sequence, TextIO

import numpy as np

from pyccl.argtypes import f32_sizes, format_size, positive_int
from pyccl.communicator import Communicator
from pyccl.keys import generate_key, resolve_key
from pyccl.master import Master

def pattern(count: int, rank: int) -> np.ndarray:
    """Rank ``rank``'s input: small integers, so f32 sums are exact."""
    return (np.arange(count, dtype=np.int64) % 13 + (rank + 1)).astype(
        np.float32)


def expected_sum(count: int, world_size: int) -> np.ndarray:
    """The exact sum of :func:`pattern` over ``world_size`` ranks."""
    ranks = world_size * (world_size + 1) // 2
    return (np.arange(count, dtype=np.int64) % 13 * world_size
            + ranks).astype(np.float32)


def _worker(address: str, world_size: int, rank: int, sizes: List[int],
            iters: int, algorithm: str, results: Any, key: bytes) -> None:
    """One demo process; reports ``(rank, rows, error)`` on ``results``."""
    try:
        rows = []
        with Communicator(address, world_size=world_size, rank=rank,
                          key=key) as comm:
            # Read while every link is up (a peer that finished first
            # closes its links).
            shm_links = sum(1 for l in comm.stats().links if l.shared_memory)
            for size in sizes:
                count = size // 4
                template = pattern(count, rank)
                want = expected_sum(count, world_size)
                buf = np.empty_like(template)
                times, ok = [], True
                for _ in range(iters):
                    np.copyto(buf, template)
                    comm.barrier()
                    start = time.perf_counter()
                    comm.all_reduce(buf, "sum", algorithm=algorithm)
                    times.append(time.perf_counter() - start)
                    ok = ok and bool(np.array_equal(buf, want))
                digest = hashlib.sha256(buf.tobytes()).hexdigest()
                rows.append((size, statistics.median(times), ok, digest))
        results.put((rank, (rows, shm_links), None))
    except BaseException:  # report everything, including KeyboardInterrupt
        results.put((rank, None, traceback.format_exc()))


def run(peers: int = 4, sizes: Sequence[int] = (4, 4 << 10, 1 << 20, 16 << 20),
        iters: int = 5, algorithm: str = "auto", timeout: float = 600.0,
        out: Optional[TextIO] = None) -> int:
    """Runs the demo and prints its table (to ``out``, default stdout);
    returns 0 if every check passed, 1 otherwise."""
    out = sys.stdout if out is None else out
    # The demo authenticates like a real run: with the configured key, or
    # a fresh one shared with its own workers.
    key = resolve_key()
    key_source = "configured key"
    if key is None:
        key, key_source = generate_key().encode(), "one-off random key"

    if peers < 1 or iters < 1:
        raise ValueError("peers and iters must be >= 1")
    for size in sizes:
        if size % 4:
            raise ValueError("size %d is not a whole number of f32 elements"
                             % size)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    with Master("127.0.0.1", 0, key=key) as master:
        print("master %s, %d peers, all_reduce f32 sum, %d iterations, "
              "algorithm %s, connections authenticated (%s)"
              % (master.address, peers, iters, algorithm, key_source),
              file=out, flush=True)
        procs = [ctx.Process(target=_worker, name="pyccl-demo-%d" % r,
                             args=(master.address, peers, r, list(sizes),
                                   iters, algorithm, results, key))
                 for r in range(peers)]
        for p in procs:
            p.start()
        reports, errors = _collect(procs, results, peers, timeout)
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
    for who, err in sorted(errors.items()):
        print("%s failed:\n%s" % (who, err), file=out)
    if errors:
        return 1
    status = _print_table({r: v[0] for r, v in reports.items()}, peers,
                          algorithm, out)
    pairs = peers * (peers - 1) // 2
    shm_pairs = sum(v[1] for v in reports.values()) // 2
    rest = "" if shm_pairs == pairs else ", the others over TCP"
    print("transport: %d of %d peer pairs through shared memory (same host; "
          "PYCCL_SHM=0 for TCP)%s" % (shm_pairs, pairs, rest), file=out)
    return status


def _collect(procs: list, results: Any, peers: int, timeout: float):
    reports, errors = {}, {}
    deadline = time.monotonic() + timeout
    while len(reports) + len(errors) < peers:
        try:
            rank, rows, err = results.get(timeout=0.5)
        except queue_mod.Empty:
            if time.monotonic() > deadline:
                errors["parent"] = "timed out after %gs" % timeout
                break
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                # A crashed worker reports nothing; the others would wait
                # for their op deadline, so stop now.
                for p in dead:
                    errors[p.name] = "exited with code %s" % p.exitcode
                break
            continue
        if err is None:
            reports[rank] = rows  # (rows, links through shared memory)
        else:
            errors["rank %d" % rank] = err
    if errors:
        for p in procs:
            if p.is_alive():
                p.kill()
    return reports, errors


def _print_table(reports: dict, peers: int, algorithm: str,
                 out: TextIO) -> int:
    header = ("size", "algorithm", "time_ms", "algbw_GB/s", "busbw_GB/s",
              "check")
    print("%10s %10s %12s %12s %12s %6s" % header, file=out)
    failed = False
    for i, row in enumerate(reports[0]):
        size = row[0]
        slowest = max(reports[r][i][1] for r in range(peers))
        ok = all(reports[r][i][2] for r in range(peers))
        same = len({reports[r][i][3] for r in range(peers)}) == 1
        algbw = size / slowest / 1e9 if slowest > 0 else 0.0
        busbw = algbw * 2 * (peers - 1) / peers
        check = "ok" if ok and same else "FAIL"
        failed = failed or check != "ok"
        print("%10s %10s %12.3f %12.3f %12.3f %6s"
              % (format_size(size), algorithm, slowest * 1e3, algbw, busbw,
                 check), file=out)
    return 1 if failed else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, for ``pyccl demo`` and :func:`main`."""
    parser.add_argument("--peers", type=positive_int, default=4,
                        help="number of worker processes (default 4)")
    parser.add_argument("--sizes", type=f32_sizes,
                        default=f32_sizes("4,4K,1M,16M"),
                        help="comma-separated buffer sizes in bytes, with "
                             "K/M/G suffixes (default 4,4K,1M,16M)")
    parser.add_argument("--iters", type=positive_int, default=5,
                        help="all-reduces per size (default 5)")
    parser.add_argument("--algorithm", choices=("auto", "ring", "star"),
                        default="auto", help="all-reduce algorithm")


DESCRIPTION = ("Starts a master and N worker processes on 127.0.0.1; each "
               "all-reduces f32 buffers of each size, checks the exact "
               "result and that all ranks agree bit for bit.")


def run_args(args: argparse.Namespace) -> int:
    """Runs the demo with parsed :func:`add_arguments` options; returns
    the exit status (2 for options that :func:`run` refuses)."""
    try:
        return run(peers=args.peers, sizes=args.sizes, iters=args.iters,
                   algorithm=args.algorithm)
    except ValueError as exc:
        print("pyccl demo: %s" % exc, file=sys.stderr)
        return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pyccl.demo``: the same as ``pyccl demo``."""
    parser = argparse.ArgumentParser(prog="pyccl demo",
                                     description=DESCRIPTION)
    add_arguments(parser)
    return run_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
