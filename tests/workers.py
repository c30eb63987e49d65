"""Functions that run on every rank of a test group (see peers.run_group).

Each takes the rank's Communicator first and returns something small and
picklable: usually a list of failure descriptions (empty when all is well)
so one group run can check many cases and the test reports all of them.

Test data are small integers chosen so every reduction is exact in every
element type, including f16 and bf16, whatever order the ranks combine in:

* sum/avg/min/max: ``x_r[i] = m_i + c[(i + r) % n]`` with
  ``c[k] = 2k - (n - 1)``.  The c's cancel over the ranks, so
  ``sum = n * m_i``, ``avg = m_i``, ``min = m_i - (n - 1)``,
  ``max = m_i + (n - 1)``; every partial sum stays within +-8*28, exact in
  bf16 and inside int8/uint8.
* prod: one rank contributes 2 (and for signed types one rank may flip the
  sign), the rest 1, so every partial product is +-1 or +-2.
"""
from __future__ import annotations

import gc
import hashlib
import random
import time
from typing import Any, List

import numpy as np

import pyccl

DTYPES = ["f32", "f64", "f16", "bf16", "i8", "i16", "i32", "i64",
          "u8", "u16", "u32", "u64"]
OPS = ["sum", "avg", "min", "max", "prod"]
_STORAGE = {"f32": np.float32, "f64": np.float64, "f16": np.float16,
            "bf16": np.uint16, "i8": np.int8, "i16": np.int16,
            "i32": np.int32, "i64": np.int64, "u8": np.uint8,
            "u16": np.uint16, "u32": np.uint32, "u64": np.uint64}
_MAX_FAILURES = 25


# ---------------------------------------------------------------- data

def values(dt: str, op: str, count: int, rank: int, n: int) -> np.ndarray:
    """Rank ``rank``'s exact input values (int64), see the module doc."""
    i = np.arange(count, dtype=np.int64)
    unsigned = dt.startswith("u")
    if op == "prod":
        x = np.where(i % (n + 1) == rank, 2, 1)
        if not unsigned:
            x = np.where((i % 3 == 0) & ((i // 3) % n == rank), -x, x)
        return x.astype(np.int64)
    m = i * 7 % 15 + (7 if unsigned else -7)
    c = 2 * ((i + rank) % n) - (n - 1)
    return m + c


def expected(dt: str, op: str, count: int, n: int) -> np.ndarray:
    """The exact reduction of every rank's :func:`values` (int64)."""
    stack = np.stack([values(dt, op, count, r, n) for r in range(n)]) \
        if count else np.zeros((n, 0), dtype=np.int64)
    if op == "sum":
        return stack.sum(axis=0)
    if op == "avg":
        return stack.sum(axis=0) // n  # exact: the sum is n * m
    if op == "min":
        return stack.min(axis=0)
    if op == "max":
        return stack.max(axis=0)
    return stack.prod(axis=0)


def encode(vals: np.ndarray, dt: str) -> np.ndarray:
    """Exact int64 values as a numpy array of ``dt`` (bf16: uint16 bits)."""
    if dt == "bf16":
        f32 = vals.astype(np.float32)
        return (f32.view(np.uint32) >> 16).astype(np.uint16)
    return vals.astype(_STORAGE[dt])


def override(dt: str):
    """The ``dtype=`` argument numpy arrays of ``dt`` need."""
    return "bfloat16" if dt == "bf16" else None


def same_bits(a: Any, b: np.ndarray) -> bool:
    """Byte-for-byte equality of a result with its expected array."""
    a = np.ascontiguousarray(a)
    return a.nbytes == b.nbytes and a.tobytes() == b.tobytes()


def digest(a: Any) -> str:
    """SHA-256 of an array's bytes."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _fail(failures: List[str], text: str) -> None:
    if len(failures) < _MAX_FAILURES:
        failures.append(text)
    elif len(failures) == _MAX_FAILURES:
        failures.append("... more failures left out")


def counts_for(n: int) -> List[int]:
    """Element counts every collective is tried with: 0, 1, fewer than the
    world size, odd ones and a few thousand."""
    return sorted({0, 1, max(1, n - 1), 7, 2 * n + 1, 1000, 4099})


# ----------------------------------------------------------- all-reduce

def allreduce_matrix(comm: pyccl.Communicator, algorithms: List[str],
                     counts: List[int]) -> List[str]:
    """Every dtype x op x algorithm x count; alternately in place and out
    of place.  Returns the failures."""
    n, r = comm.world_size, comm.rank
    failures: List[str] = []
    case = 0
    for algo in algorithms:
        for dt in DTYPES:
            for op in OPS:
                for count in counts:
                    case += 1
                    x = encode(values(dt, op, count, r, n), dt)
                    want = encode(expected(dt, op, count, n), dt)
                    where = "%s %s %s count=%d" % (algo, dt, op, count)
                    if case % 2:
                        got = comm.all_reduce(x, op, algorithm=algo,
                                              dtype=override(dt))
                        if got is not x:
                            _fail(failures, where + ": in place returned "
                                  "another object")
                        where += " in place"
                    else:
                        keep = x.copy()
                        out = np.full_like(x, 0x55)
                        got = comm.all_reduce(x, op, out=out, algorithm=algo,
                                              dtype=override(dt))
                        if got is not out:
                            _fail(failures, where + ": returned not out")
                        if not same_bits(x, keep):
                            _fail(failures, where + ": input was modified")
                        where += " out of place"
                    if not same_bits(got, want):
                        _fail(failures, "%s: got %s want %s" % (
                            where, got[:8].tolist(), want[:8].tolist()))
    return failures


def allreduce_pipelined(comm: pyccl.Communicator, count: int) -> List[str]:
    """Ring and star on a count larger than the (small) chunk size."""
    n, r = comm.world_size, comm.rank
    failures: List[str] = []
    for algo in ("ring", "star", "auto", "direct"):
        for dt in ("f32", "bf16", "i64"):
            x = encode(values(dt, "sum", count, r, n), dt)
            want = encode(expected(dt, "sum", count, n), dt)
            comm.all_reduce(x, "sum", algorithm=algo, dtype=override(dt))
            if not same_bits(x, want):
                bad = np.flatnonzero(x != want)
                _fail(failures, "%s %s: %d wrong elements, first at %d"
                      % (algo, dt, bad.size, bad[0]))
    return failures


def random_hashes(comm: pyccl.Communicator, count: int) -> List[Any]:
    """All-reduces random floats (different on every rank); returns each
    result's SHA-256 and whether it is close to the true sum, so the test
    can check that every rank holds the same bits."""
    n, r = comm.world_size, comm.rank
    out = []
    for algo in ("ring", "star", "direct"):
        for dt in ("f32", "f64", "f16", "bf16"):
            for op in ("sum", "avg", "prod", "max"):
                inputs = []
                for rank in range(n):
                    rng = np.random.default_rng(1000 * rank + count)
                    inputs.append(rng.standard_normal(count).astype(
                        np.float32))
                ref = _reference(inputs, op, n)
                mine = inputs[r]
                if dt == "bf16":
                    buf = (mine.view(np.uint32) >> 16).astype(np.uint16)
                else:
                    buf = mine.astype(_STORAGE[dt])
                comm.all_reduce(buf, op, algorithm=algo, dtype=override(dt))
                if dt == "bf16":
                    as_f = (buf.astype(np.uint32) << 16).view(np.float32)
                else:
                    as_f = buf.astype(np.float64)
                close = bool(np.allclose(as_f, ref, rtol=0.1, atol=0.2 * n))
                out.append(("%s %s %s" % (algo, dt, op), digest(buf), close))
    return out


def _reference(inputs, op, n):
    stack = np.stack(inputs).astype(np.float64)
    return {"sum": stack.sum(0), "avg": stack.sum(0) / n,
            "prod": stack.prod(0), "max": stack.max(0)}[op]


def big_allreduce(comm: pyccl.Communicator, nbytes: int) -> Any:
    """One f32 sum of ``nbytes``; returns (correct, sha256, seconds)."""
    n, r = comm.world_size, comm.rank
    count = nbytes // 4
    i = np.arange(count, dtype=np.int64) % 13
    x = (i + r + 1).astype(np.float32)
    want = (i * n + n * (n + 1) // 2).astype(np.float32)
    del i
    comm.barrier()
    start = time.perf_counter()
    comm.all_reduce(x)
    took = time.perf_counter() - start
    return bool(np.array_equal(x, want)), digest(x), took


# ------------------------------------------------- other collectives

def broadcast_all_roots(comm: pyccl.Communicator) -> List[str]:
    """Broadcast from every root, several types and counts."""
    n, r = comm.world_size, comm.rank
    failures: List[str] = []
    for root in range(n):
        for dt in ("f32", "u8", "i64", "bf16", "f16"):
            for count in counts_for(n):
                mine = encode(values(dt, "sum", count, r, n) + 100 * r, dt)
                want = encode(values(dt, "sum", count, root, n) + 100 * root,
                              dt)
                got = comm.broadcast(mine, root, dtype=override(dt))
                if got is not mine or not same_bits(mine, want):
                    _fail(failures, "root %d %s count %d: got %s want %s"
                          % (root, dt, count, mine[:6].tolist(),
                             want[:6].tolist()))
    return failures


def all_gather_cases(comm: pyccl.Communicator) -> List[str]:
    """all_gather with allocated and given outputs, 1-D and 2-D."""
    n, r = comm.world_size, comm.rank
    failures: List[str] = []
    for dt in ("f32", "i16", "u64", "bf16"):
        for count in counts_for(n):
            mine = encode(values(dt, "sum", count, r, n), dt)
            want = np.stack([encode(values(dt, "sum", count, k, n), dt)
                             for k in range(n)])
            got = comm.all_gather(mine, dtype=override(dt))
            if got.shape != (n, count) or not same_bits(got, want):
                _fail(failures, "%s count %d (allocated): shape %s"
                      % (dt, count, got.shape))
            out = np.zeros(n * count, dtype=mine.dtype)
            got = comm.all_gather(out, mine, dtype=override(dt))
            if got is not out or not same_bits(out, want):
                _fail(failures, "%s count %d (given out)" % (dt, count))
    grid = np.arange(6, dtype=np.float64).reshape(2, 3) + 10 * r
    got = comm.all_gather(grid)
    want = np.stack([np.arange(6, dtype=np.float64).reshape(2, 3) + 10 * k
                     for k in range(n)])
    if got.shape != (n, 2, 3) or not np.array_equal(got, want):
        _fail(failures, "2-D all_gather: shape %s" % (got.shape,))
    return failures


def reduce_scatter_cases(comm: pyccl.Communicator) -> List[str]:
    """reduce_scatter for several ops, types and block sizes."""
    n, r = comm.world_size, comm.rank
    failures: List[str] = []
    for dt in ("f32", "i32", "u8", "bf16", "f64"):
        for op in OPS:
            for block in (0, 1, 3, 257):
                full = values(dt, op, n * block, r, n)
                mine = encode(full, dt)
                want = encode(expected(dt, op, n * block, n)
                              [r * block:(r + 1) * block], dt)
                got = comm.reduce_scatter(mine, op=op, dtype=override(dt))
                if got.shape != (block,) or not same_bits(got, want):
                    _fail(failures, "%s %s block %d: got %s want %s" % (
                        dt, op, block, got[:6].tolist(), want[:6].tolist()))
    two_d = np.ones((n, 4), dtype=np.float32) * (r + 1)
    got = comm.reduce_scatter(two_d)
    if got.shape != (4,) or not np.all(got == n * (n + 1) // 2):
        _fail(failures, "2-D reduce_scatter: shape %s" % (got.shape,))
    out = np.empty(4, dtype=np.float32)
    got = comm.reduce_scatter(out, two_d, op="max")
    if got is not out or not np.all(out == n):
        _fail(failures, "reduce_scatter into out: %s" % out.tolist())
    return failures


def barrier_times(comm: pyccl.Communicator) -> Any:
    """Ranks enter a barrier at staggered times; returns (entered, left)
    wall-clock times."""
    time.sleep(0.05 * comm.rank)
    entered = time.time()
    comm.barrier()
    left = time.time()
    w = comm.barrier(async_op=True)
    w.wait()
    return entered, left


def everything_small(comm: pyccl.Communicator) -> List[str]:
    """One pass over every collective with a few counts (for the world
    size sweep)."""
    failures = allreduce_matrix(comm, ["ring", "star"], [0, 1, 5])
    failures += broadcast_all_roots(comm)[:5]
    failures += all_gather_cases(comm)[:5]
    failures += reduce_scatter_cases(comm)[:5]
    comm.barrier()
    return failures


def ident(comm: pyccl.Communicator) -> Any:
    """(rank, world_size, epoch)."""
    return comm.rank, comm.world_size, comm.epoch


def stats_after_allreduce(comm: pyccl.Communicator) -> Any:
    """Traffic counters before and after a 1 MiB all-reduce."""
    before = comm.stats()
    comm.all_reduce(np.ones(1 << 18, dtype=np.float32))
    return before, comm.stats()


# -------------------------------------------------------------- async

def async_many(comm: pyccl.Communicator, n_ops: int) -> List[str]:
    """``n_ops`` ops in flight at once, waited in a random order that
    differs per rank."""
    n, r = comm.world_size, comm.rank
    failures: List[str] = []
    pending = []
    for k in range(n_ops):
        kind = k % 4
        count = (k * 37) % 5000 + k
        if kind == 0 or kind == 3:
            algo = ("ring", "star", "auto")[k % 3]
            x = encode(values("f32", "sum", count, r, n), "f32")
            want = encode(expected("f32", "sum", count, n), "f32")
            work = comm.all_reduce(x, algorithm=algo, async_op=True)
            pending.append((k, work, x, want))
        elif kind == 1:
            root = k % n
            x = np.full(count, r, dtype=np.int32)
            want = np.full(count, root, dtype=np.int32)
            pending.append((k, comm.broadcast(x, root, async_op=True), x,
                            want))
        else:
            x = np.full(count, r, dtype=np.int64)
            want = np.repeat(np.arange(n, dtype=np.int64), count).reshape(
                n, count)
            work = comm.all_gather(x, async_op=True)
            pending.append((k, work, None, want))
    random.Random(1000 + r).shuffle(pending)
    for k, work, buf, want in pending:
        got = work.wait()
        if buf is not None and got is not buf:
            _fail(failures, "op %d: wait() returned another object" % k)
        if not same_bits(got, want):
            _fail(failures, "op %d: wrong result" % k)
        if not work.test() or not work.is_completed():
            _fail(failures, "op %d: not completed after wait" % k)
        if work.result() is not got:
            _fail(failures, "op %d: result() differs from wait()" % k)
    return failures


def async_dropped(comm: pyccl.Communicator) -> List[str]:
    """Works dropped by the caller still complete and keep their buffers
    alive (the communicator holds them)."""
    n, r = comm.world_size, comm.rank
    failures: List[str] = []
    kept = []
    for k in range(8):
        x = np.full(1 << 16, r + 1, dtype=np.float32)
        comm.all_reduce(x, algorithm=("ring", "star")[k % 2], async_op=True)
        kept.append(x)  # the Work itself is dropped at once
        # This one's buffer is referenced only by the dropped Work.
        comm.all_reduce(np.full(1 << 16, 1.0, dtype=np.float32),
                        async_op=True)
        gc.collect()
    comm.barrier()
    deadline = time.monotonic() + 30
    while comm._pending and time.monotonic() < deadline:
        comm._sweep()
        time.sleep(0.01)
    if comm._pending:
        _fail(failures, "%d ops still pending" % len(comm._pending))
    for k, x in enumerate(kept):
        if not np.all(x == n * (n + 1) / 2):
            _fail(failures, "dropped op %d: wrong result %s" % (k, x[:4]))
    return failures


def wait_timeout_then_complete(comm: pyccl.Communicator) -> Any:
    """Rank 0 waits with a short timeout while rank 1 is late: Timeout,
    op still pending; then the op completes normally."""
    x = np.full(1000, comm.rank + 1, dtype=np.float32)
    if comm.rank == 0:
        work = comm.all_reduce(x, async_op=True)
        start = time.monotonic()
        try:
            work.wait(timeout=0.3)
            timed_out = None
        except pyccl.Timeout as exc:
            timed_out = (time.monotonic() - start,
                         isinstance(exc, TimeoutError), work.test())
        got = work.wait()
        return timed_out, float(got[0])
    time.sleep(2.0)
    comm.all_reduce(x)
    return None, float(x[0])


# ------------------------------------------------------------- errors

def _outcome(fn) -> Any:
    start = time.monotonic()
    try:
        fn()
        return ("ok", time.monotonic() - start)
    except pyccl.CclError as exc:
        return (type(exc).__name__, time.monotonic() - start, str(exc))


def mismatched_counts(comm: pyccl.Communicator, algorithm: str) -> Any:
    """Rank 0 all-reduces 100 elements, the others 200; then everyone runs
    a correct op.  Returns (outcome of the bad op, result of the good one)."""
    count = 100 if comm.rank == 0 else 200
    bad = _outcome(lambda: comm.all_reduce(
        np.ones(count, dtype=np.float32), algorithm=algorithm))
    x = np.full(10, comm.rank + 1, dtype=np.float32)
    good = _outcome(lambda: comm.all_reduce(x, algorithm=algorithm))
    return bad, good, x.tolist()


def mismatched_dtypes(comm: pyccl.Communicator) -> Any:
    """Rank 0 all-reduces f32, the others i32 (same byte size)."""
    dt = np.float32 if comm.rank == 0 else np.int32
    bad = _outcome(lambda: comm.all_reduce(np.ones(64, dtype=dt)))
    x = np.full(10, comm.rank + 1, dtype=np.float32)
    good = _outcome(lambda: comm.all_reduce(x))
    return bad, good, x.tolist()


def bad_arguments_then_ok(comm: pyccl.Communicator) -> Any:
    """Rank 0 makes invalid calls, which must raise InvalidArgument before
    reaching C (so the ranks' op sequences stay aligned); then all ranks
    run a correct all-reduce."""
    raised = []
    if comm.rank == 0:
        f32 = np.ones(8, dtype=np.float32)
        readonly = np.ones(8, dtype=np.float32)
        readonly.flags.writeable = False
        shared = np.ones(8, dtype=np.float32)
        cases = {
            "bool": lambda: comm.all_reduce(np.ones(4, dtype=bool)),
            "complex": lambda: comm.all_reduce(np.ones(4, dtype=np.complex64)),
            "non-contiguous": lambda: comm.all_reduce(np.ones(16)[::2]),
            "readonly in place": lambda: comm.all_reduce(readonly),
            "readonly out": lambda: comm.all_reduce(f32, out=readonly),
            "out size": lambda: comm.all_reduce(
                f32, out=np.ones(9, dtype=np.float32)),
            "out dtype": lambda: comm.all_reduce(
                f32, out=np.ones(8, dtype=np.float64)),
            "bad op": lambda: comm.all_reduce(f32, "median"),
            "bad algorithm": lambda: comm.all_reduce(f32, algorithm="tree"),
            "bad dtype name": lambda: comm.all_reduce(f32, dtype="f128"),
            "dtype width": lambda: comm.all_reduce(f32, dtype="f64"),
            "list": lambda: comm.all_reduce([1.0, 2.0]),
            "root": lambda: comm.broadcast(f32, root=comm.world_size),
            "gather out": lambda: comm.all_gather(
                f32, np.ones(8 * comm.world_size + 1, dtype=np.float32)),
            "scatter count": lambda: comm.reduce_scatter(
                np.ones(comm.world_size * 4 + 1, dtype=np.float32)),
            "scatter out": lambda: comm.reduce_scatter(
                np.ones(comm.world_size * 4, dtype=np.float32),
                np.ones(5, dtype=np.float32)),
            "overlap": lambda: comm.all_reduce(shared[:6], out=shared[2:]),
        }
        for name, call in cases.items():
            try:
                call()
                raised.append((name, "no error"))
            except pyccl.InvalidArgument as exc:
                if not isinstance(exc, ValueError):
                    raised.append((name, "not a ValueError"))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                raised.append((name, repr(exc)))
    x = np.full(10, comm.rank + 1, dtype=np.float32)
    comm.all_reduce(x)
    return raised, x.tolist()


def close_with_pending(comm: pyccl.Communicator) -> Any:
    """Rank 0 posts an all-reduce the others never join and closes: its
    Work fails with Closed.  The others then post one: it must fail with
    a CclError within a bounded time."""
    x = np.ones(100, dtype=np.float32)
    if comm.rank == 0:
        work = comm.all_reduce(x, async_op=True)
        time.sleep(0.2)
        comm.close()
        comm.close()  # idempotent
        outcome = _outcome(lambda: work.wait(timeout=10))
        after = _outcome(lambda: comm.all_reduce(x))
        return outcome, after
    time.sleep(1.0)
    return _outcome(lambda: comm.all_reduce(x)), None


# -------------------------------------------------------------- torch

def torch_cases(comm: pyccl.Communicator) -> List[str]:
    """all_reduce over every torch dtype and op (f16 and bf16 native),
    plus broadcast, all_gather and reduce_scatter on tensors."""
    import torch
    n, r = comm.world_size, comm.rank
    failures: List[str] = []
    tdt = {"f32": torch.float32, "f64": torch.float64,
           "f16": torch.float16, "bf16": torch.bfloat16,
           "i8": torch.int8, "i16": torch.int16, "i32": torch.int32,
           "i64": torch.int64, "u8": torch.uint8, "u16": torch.uint16,
           "u32": torch.uint32, "u64": torch.uint64}

    def tensor(vals, dt):
        if dt == "bf16":
            return torch.from_numpy(vals.astype(np.float32)).to(
                torch.bfloat16)
        return torch.from_numpy(encode(vals, dt)).to(tdt[dt])

    def bits(t):
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.numpy()

    for algo in ("ring", "star"):
        for dt in DTYPES:
            for op in OPS:
                for count in (0, 1, 7, 300):
                    t = tensor(values(dt, op, count, r, n), dt)
                    want = encode(expected(dt, op, count, n), dt)
                    got = comm.all_reduce(t, op, algorithm=algo)
                    if got is not t or not same_bits(bits(got), want):
                        _fail(failures, "%s %s %s count %d: got %s want %s"
                              % (algo, dt, op, count, bits(got)[:6].tolist(),
                                 want[:6].tolist()))
    t = torch.full((5,), float(r), dtype=torch.bfloat16)
    comm.broadcast(t, root=n - 1)
    if not torch.equal(t, torch.full((5,), float(n - 1),
                                     dtype=torch.bfloat16)):
        _fail(failures, "broadcast bf16: %s" % t.tolist())
    t = torch.arange(6, dtype=torch.float16).reshape(2, 3) + r
    got = comm.all_gather(t)
    want = torch.stack([torch.arange(6, dtype=torch.float16).reshape(2, 3)
                        + k for k in range(n)])
    if not isinstance(got, torch.Tensor) or not torch.equal(got, want):
        _fail(failures, "all_gather f16 tensor: %s" % (got,))
    t = torch.ones((n, 3), dtype=torch.int32) * (r + 1)
    got = comm.reduce_scatter(t, op="sum")
    if tuple(got.shape) != (3,) or not torch.all(got == n * (n + 1) // 2):
        _fail(failures, "reduce_scatter i32 tensor: %s" % (got,))
    t = torch.ones(10, dtype=torch.float32)
    out = torch.empty(10, dtype=torch.float32)
    work = comm.all_reduce(t, out=out, async_op=True)
    if work.wait() is not out or not torch.all(out == n):
        _fail(failures, "async out-of-place tensor: %s" % (out,))
    return failures


def late_receiver(comm: pyccl.Communicator) -> Any:
    """Rank 0 lags a second behind ranks that broadcast and leave."""
    if comm.rank == 0:
        time.sleep(1.0)
    x = np.full(1000, comm.rank, dtype=np.int32)
    for k in range(20):
        root = 1 + k % (comm.world_size - 1)
        x[:] = comm.rank  # the root sends its own rank
        try:
            comm.broadcast(x, root)
        except pyccl.CclError as exc:
            return "op %d (root %d): %s: %s" % (k, root, type(exc).__name__,
                                                exc)
        if not np.all(x == root):
            return "op %d: wrong data" % k
    return "ok"


def stopped_peer(comm: pyccl.Communicator) -> Any:
    """Rank 0 freezes rank 1 (SIGSTOP: its sockets stay open, only
    deadlines can notice) before rank 1 posts its all-reduce, then
    all-reduces; returns rank 0's outcome, then lets rank 1 go on (its own
    outcome does not matter)."""
    import os
    import signal
    pids = comm.all_gather(np.array([os.getpid()], dtype=np.int64))
    x = np.ones(1000, dtype=np.float32)
    if comm.rank == 0:
        os.kill(int(pids[1][0]), signal.SIGSTOP)
        try:
            return _outcome(lambda: comm.all_reduce(x))
        finally:
            os.kill(int(pids[1][0]), signal.SIGCONT)
    time.sleep(1.0)  # stopped in here
    return _outcome(lambda: comm.all_reduce(x))


def gil_released(comm: pyccl.Communicator) -> Any:
    """While rank 0 blocks in an all-reduce that rank 1 joins a second
    late, another Python thread of rank 0 keeps running."""
    import threading
    x = np.ones(100, dtype=np.float32)
    if comm.rank == 1:
        time.sleep(1.0)
        comm.all_reduce(x)
        return None
    ticks = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.01)

    thread = threading.Thread(target=count)
    thread.start()
    try:
        comm.all_reduce(x)
    finally:
        stop.set()
        thread.join()
    return ticks[0]


def close_from_other_thread(comm: pyccl.Communicator) -> Any:
    """Rank 0 blocks in an all-reduce the others never join; another
    thread closes the communicator: the blocked call raises Closed soon."""
    import threading
    if comm.rank != 0:
        time.sleep(1.5)
        return None
    timer = threading.Timer(0.3, comm.close)
    timer.start()
    try:
        return _outcome(lambda: comm.all_reduce(np.ones(10, np.float32)))
    finally:
        timer.join()


def spin_late_peer(comm: pyccl.Communicator, ops: int) -> Any:
    """Rank 1 posts every small all-reduce 3 ms late, so a spin on rank 0
    never sees its op end.  Rank 0 returns the CPU seconds of its calling
    thread (which drives the loop, and spins) per op over the last
    ``ops`` ops, after 16 to settle; and the sums, which must be right."""
    x = np.ones(1, np.float32)
    total = 16 + ops
    cpu0 = 0.0
    for i in range(total):
        if i == 16:
            cpu0 = time.thread_time()
        if comm.rank == 1:
            time.sleep(0.003)
        x[0] = 1.0
        comm.all_reduce(x)
        assert x[0] == comm.world_size, x
    return (time.thread_time() - cpu0) / ops if comm.rank == 0 else None
