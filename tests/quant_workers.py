"""Worker functions for tests/test_quant_python.py (picklable, module
level): quantized all-reduce through the Python API."""
from __future__ import annotations

import hashlib
from typing import Any, Dict

import numpy as np

import pyccl

# Error of one encoding, as a fraction of a block's range (u8, u4) or of
# the value (e3m0, f16, bf16): docs/quantization.md.
_RANGE_BOUND = {"u8": 1 / 510, "u4": 1 / 30}


def _data(rank: int, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed * 100 + rank).standard_normal(
        count).astype(np.float32)


def quant_results(comm: pyccl.Communicator, fmt: str, count: int,
                  seed: int, block: int, async_op: bool,
                  algorithm: str = "auto", qseed: int = 0) -> Dict[str, Any]:
    """One quantized sum of random data; returns the result's hash and its
    largest error against the exact f64 sum, plus the data range."""
    size = comm.size
    mine = _data(comm.rank, count, seed)
    exact = sum(_data(r, count, seed).astype(np.float64) for r in range(size))
    x = mine.copy()
    if async_op:
        work = comm.all_reduce(x, "sum", quant=fmt, quant_block=block,
                               algorithm=algorithm, quant_seed=qseed,
                               async_op=True)
        work.wait()
    else:
        comm.all_reduce(x, "sum", quant=fmt, quant_block=block,
                        algorithm=algorithm, quant_seed=qseed)
    out = np.empty_like(mine)
    comm.all_reduce(mine, "sum", out=out, quant=fmt, quant_block=block,
                    algorithm=algorithm, quant_seed=qseed)
    return {"hash": hashlib.sha256(x.tobytes()).hexdigest(),
            "hash_out": hashlib.sha256(out.tobytes()).hexdigest(),
            "input_intact": bool(np.array_equal(mine, _data(comm.rank, count,
                                                            seed))),
            "max_err": float(np.max(np.abs(x - exact))) if count else 0.0,
            "rms_err": float(np.sqrt(np.mean((x - exact) ** 2)))
            if count else 0.0,
            "mean_err": float(np.mean(x - exact)) if count else 0.0,
            "max_abs": float(np.max(np.abs(exact))) if count else 0.0}


def quant_bad_args(comm: pyccl.Communicator) -> Dict[str, str]:
    """Argument errors are raised before anything is sent."""
    found = {}
    cases = {
        "format": lambda: comm.all_reduce(np.ones(4, np.float32),
                                          quant="u7"),
        "dtype": lambda: comm.all_reduce(np.ones(4, np.float64),
                                         quant="u8"),
        "block": lambda: comm.all_reduce(np.ones(4, np.float32),
                                         quant="u8", quant_block=100),
    }
    for name, call in cases.items():
        try:
            call()
        except pyccl.InvalidArgument as e:
            found[name] = str(e)
    # Then a good op still works on every rank.
    x = np.ones(8, np.float32)
    comm.all_reduce(x, quant="u8")
    found["after"] = float(x[0])
    return found


def quant_nan(comm: pyccl.Communicator) -> Dict[str, Any]:
    """A NaN in one rank's input fails u8 everywhere; inputs come back."""
    x = np.arange(64, dtype=np.float32)
    if comm.rank == 0:
        x[3] = np.nan
    before = x.copy()
    try:
        comm.all_reduce(x, quant="u8")
        outcome = "ok"
    except pyccl.CclError as e:
        outcome = type(e).__name__
    return {"outcome": outcome,
            "intact": bool(np.array_equal(x, before, equal_nan=True))}


def quant_nan_ring(comm: pyccl.Communicator, bad_rank: int, count: int,
                   fmt: str = "u8") -> Dict[str, Any]:
    """A NaN in one rank's input of a ring all-reduce, in a segment that
    rank sends on (raw where the ranks share memory): the op fails on
    every rank, InvalidArgument on the rank that holds the NaN, and every
    input comes back."""
    x = _data(comm.rank, count, 5)
    if comm.rank == bad_rank:
        x[1] = np.nan  # segment 0, owned by rank 0
    before = x.copy()
    try:
        comm.all_reduce(x, quant=fmt, algorithm="ring")
        outcome = "ok"
    except pyccl.CclError as e:
        outcome = type(e).__name__
    return {"outcome": outcome,
            "intact": bool(np.array_equal(x, before, equal_nan=True)),
            "nan_at_1": bool(np.isnan(x[1])),
            "finite_elsewhere": bool(np.all(np.isfinite(np.delete(x, 1))))}


__all__ = ["quant_results", "quant_bad_args", "quant_nan", "quant_nan_ring",
           "_RANGE_BOUND"]
