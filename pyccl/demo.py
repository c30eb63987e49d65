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

import hashlib
import multiprocessing
import queue as queue_mod
import statistics
import sys
import time
import traceback
from typing import Any, List, Optional, Sequence, TextIO

import numpy as np

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
          "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes in ``"4"``, ``"4K"``, ``"1M"``, ``"16MiB"`` (powers of 1024)."""
    text = text.strip()
    digits = text.rstrip("KMGBIkmgbi")
    unit = text[len(digits):].upper()
    if not digits.isdigit() or unit not in _UNITS:
        raise ValueError("bad size %r (examples: 4, 4K, 1M, 16M)" % text)
    return int(digits) * _UNITS[unit]


def format_size(nbytes: int) -> str:
    """``4096`` -> ``"4K"``; the inverse of :func:`parse_size` where exact."""
    for unit in ("G", "M", "K"):
        if nbytes >= _UNITS[unit] and nbytes % _UNITS[unit] == 0:
            return "%d%s" % (nbytes // _UNITS[unit], unit)
    return str(nbytes)


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
        from pyccl import Communicator
        rows = []
        with Communicator(address, world_size=world_size, rank=rank,
                          key=key) as comm:
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
        results.put((rank, rows, None))
    except BaseException:  # report everything, including KeyboardInterrupt
        results.put((rank, None, traceback.format_exc()))


def run(peers: int = 4, sizes: Sequence[int] = (4, 4 << 10, 1 << 20, 16 << 20),
        iters: int = 5, algorithm: str = "auto", timeout: float = 600.0,
        out: Optional[TextIO] = None) -> int:
    """Runs the demo and prints its table (to ``out``, default stdout);
    returns 0 if every check passed, 1 otherwise."""
    from pyccl import Master
    from pyccl.keys import generate_key, resolve_key
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
    return _print_table(reports, peers, algorithm, out)


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
            reports[rank] = rows
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pyccl.demo``: the same as ``pyccl demo``."""
    from pyccl.cli import main as cli_main
    return cli_main(["demo"] + list(argv if argv is not None
                                    else sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
