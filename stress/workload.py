"""The workload every peer runs: a deterministic plan of collectives, and
their exact expected results for any membership.

All members of an epoch run the same batches: batch ``b`` of epoch ``e``
is a pure function of ``(seed, e, b, world_size)`` (:func:`plan_batch`),
so no member needs to ask another what comes next.  Each op's input on a
peer is a pure function of ``(op key, peer id)``:

    x = pattern(n) * w + c        w, c = coefficients(op key, peer id)

``pattern`` is a fixed pseudo-random ramp of small integers (< 1021), so
misplaced chunks show, and ``w`` (1..7) and ``c`` (0..999) differ per op
and per peer, so a missing, doubled or stale contribution shows.  The
values stay below 2**24 even summed over 2000 peers, so float32 sums are
exact and every result can be compared bit for bit with the expected one,
computed from the member list in one or two passes over the buffer
(``pattern * sum(w) + sum(c)`` for a sum).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

import numpy as np

KINDS = ("all_reduce", "broadcast", "all_gather", "reduce_scatter",
         "barrier")
#: Kind codes in reports: the five collectives, then the control
#: all-reduce that ends every batch, the membership all-gather and the
#: shared-state sync that start every epoch.
CTL, MEMBERS, SYNC = 5, 6, 7
KIND_NAMES = KINDS + ("control", "members", "sync")

DTYPES = ("float32", "int32", "int64")
_MASK = (1 << 64) - 1

# Element counts per size class; odd counts and counts below the world
# size are there on purpose (uneven ring segments, empty blocks).
_SMALL = (1, 3, 17, 257, 1025)
_MEDIUM = (4099, 16411, 65537, 262147)


QUANTS = ("u8", "u4", "e3m0", "f16", "bf16")
QUANT_ALGORITHMS = ("auto", "ring", "direct", "star")
_WEIGHTS = {"all_reduce": 45, "broadcast": 15, "all_gather": 15,
            "reduce_scatter": 15, "barrier": 10}


def mix64(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit function of x."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def op_key(seed: int, epoch: int, seq: int) -> int:
    """The identity of one op of one epoch in one run."""
    return mix64(mix64(mix64(seed) ^ epoch) ^ seq)


def coefficients(key: int, peer: int) -> Tuple[int, int]:
    """``(w, c)`` of peer ``peer``'s input to the op ``key``."""
    h = mix64(key ^ mix64(peer + 1))
    return 1 + h % 7, (h >> 16) % 1000


def pattern(n: int, dtype: str) -> np.ndarray:
    """The shared ramp of n elements (read-only).  Ramps up to 1 MiB are
    cached per size; larger ones (rare) are cached two at a time, so a
    peer never holds more than a few large buffers."""
    if n * np.dtype(dtype).itemsize <= (1 << 20):
        return _small_pattern(n, dtype)
    return _large_pattern(n, dtype)


def _ramp(n: int, dtype: str) -> np.ndarray:
    i = np.arange(n, dtype=np.int64)
    i *= 2654435761
    i >>= 7
    i %= 1021
    out = i.astype(dtype)
    out.flags.writeable = False
    return out


_small_pattern = lru_cache(maxsize=64)(_ramp)
_large_pattern = lru_cache(maxsize=2)(_ramp)


@dataclass(frozen=True)
class OpSpec:
    """One collective of a batch.  ``count`` is the element count of the
    op's input on one peer (for reduce-scatter: of its output block)."""
    seq: int
    kind: str
    count: int = 0
    dtype: str = "float32"
    redop: str = "sum"
    algorithm: str = "auto"
    in_place: bool = True
    root: int = 0
    quant: str = ""  # all_reduce only: the wire format, "" for none

    @property
    def code(self) -> int:
        return CTL if self.kind == "control" else KINDS.index(self.kind)

    def describe(self) -> str:
        if self.kind == "barrier":
            return "op %d barrier" % self.seq
        extra = ""
        if self.kind == "all_reduce":
            extra = " %s %s %s" % (self.redop, self.algorithm,
                                   "in place" if self.in_place else
                                   "out of place")
            if self.quant:
                extra += " quantized %s" % self.quant
        elif self.kind == "broadcast":
            extra = " root %d" % self.root
        return "op %d %s of %d x %s%s" % (self.seq, self.kind, self.count,
                                           self.dtype, extra)


@dataclass
class WorkloadConfig:
    """What the batches are made of (the ``--max-bytes`` etc. options)."""
    max_bytes: int = 32 << 20     # largest buffer of one op on one peer
    large_rate: float = 0.01      # share of ops of 1 MiB .. max_bytes
    max_concurrent: int = 4       # async ops in flight per batch (1..)
    safe_every: int = 8           # update_topology every that many batches
    algorithms: Tuple[str, ...] = ("ring", "star")
    kinds: Tuple[str, ...] = KINDS  # the collectives batches draw from
    # Share of float32 sum all-reduces sent quantized, each in a format of
    # QUANTS over an algorithm of QUANT_ALGORITHMS.
    quant_rate: float = 0.2


def _count(rng: random.Random, cfg: WorkloadConfig, itemsize: int,
           per_rank_div: int) -> int:
    """An element count: 4 B, small, medium or (rarely) large; bounded so
    the op's largest buffer stays within max_bytes."""
    limit = max(1, cfg.max_bytes // itemsize // per_rank_div)
    r = rng.random()
    if r < cfg.large_rate:
        lo = max(1, min(limit, (1 << 20) // itemsize))
        n = rng.choice((lo, max(lo, limit // 4), limit))
    elif r < 0.25:
        n = 1
    elif r < 0.65:
        n = rng.choice(_SMALL)
    else:
        n = rng.choice(_MEDIUM)
    return max(1, min(n, limit))


def plan_batch(seed: int, epoch: int, batch: int, world: int,
               cfg: WorkloadConfig) -> List[OpSpec]:
    """The ops of batch ``batch`` of epoch ``epoch``: 1..max_concurrent
    collectives of any kind, then the control all-reduce.  Seq numbers are
    ``batch * 64 + i``, unique within the epoch."""
    rng = random.Random("%d:%d:%d:%d" % (seed, epoch, batch, world))
    ops: List[OpSpec] = []
    k = rng.randint(1, max(1, cfg.max_concurrent))
    for i in range(k):
        seq = batch * 64 + i
        kinds = [k for k in KINDS if k in cfg.kinds] or ["barrier"]
        kind = rng.choices(kinds, weights=[_WEIGHTS[k] for k in kinds])[0]
        dtype = rng.choice(DTYPES)
        item = np.dtype(dtype).itemsize
        if kind == "barrier":
            ops.append(OpSpec(seq, "barrier"))
        elif kind == "all_reduce":
            n = _count(rng, cfg, item, 1)
            small = n * item <= (1 << 20)
            redop = rng.choice(("sum", "sum", "max", "min")) if small \
                and dtype != "int64" else "sum"
            algo = rng.choice(cfg.algorithms)
            in_place = rng.random() < 0.75
            quant = ""
            if dtype == "float32" and redop == "sum" and cfg.quant_rate > 0 \
                    and rng.random() < cfg.quant_rate:
                # f16 tops out at 65504: a sum of world inputs of up to
                # 8139 each must stay below it.
                fmts = QUANTS if world * 8139 < 65504 else \
                    tuple(q for q in QUANTS if q != "f16")
                quant = rng.choice(fmts)
                algo = rng.choice(QUANT_ALGORITHMS)
            ops.append(OpSpec(seq, kind, n, dtype, redop, algo,
                              in_place=in_place, quant=quant))
        elif kind == "broadcast":
            ops.append(OpSpec(seq, kind, _count(rng, cfg, item, 1), dtype,
                              root=rng.randrange(world)))
        elif kind == "all_gather":
            ops.append(OpSpec(seq, kind, _count(rng, cfg, item, world),
                              dtype))
        else:
            ops.append(OpSpec(seq, kind, _count(rng, cfg, item, world),
                              dtype))
    ops.append(OpSpec(batch * 64 + 63, "control", 2, "int32", "max"))
    return ops


def make_input(spec: OpSpec, key: int, peer: int, world: int) -> np.ndarray:
    """Peer ``peer``'s input to the op (a fresh, writable array)."""
    n = spec.count * (world if spec.kind == "reduce_scatter" else 1)
    w, c = coefficients(key, peer)
    x = np.empty(n, dtype=spec.dtype)
    np.multiply(pattern(n, spec.dtype), w, out=x)
    x += c
    return x


def expected(spec: OpSpec, key: int, members: Sequence[int],
             rank: int) -> Optional[np.ndarray]:
    """The exact result of the op on rank ``rank`` of a group whose
    members (peer ids in rank order) are ``members``; None for a barrier
    and the control op (checked elsewhere)."""
    world = len(members)
    coef = [coefficients(key, p) for p in members]
    if spec.kind == "all_reduce":
        pat = pattern(spec.count, spec.dtype)
        if spec.redop == "sum":
            out = np.empty(spec.count, dtype=spec.dtype)
            np.multiply(pat, sum(w for w, _ in coef), out=out)
            out += sum(c for _, c in coef)
            return out
        parts = [pat * w + c for w, c in coef]
        f = np.maximum if spec.redop == "max" else np.minimum
        return f.reduce(parts)
    if spec.kind == "broadcast":
        w, c = coef[spec.root]
        return pattern(spec.count, spec.dtype) * w + c
    if spec.kind == "all_gather":
        pat = pattern(spec.count, spec.dtype)
        return np.concatenate([pat * w + c for w, c in coef])
    if spec.kind == "reduce_scatter":
        n = spec.count
        pat = pattern(n * world, spec.dtype)[rank * n:(rank + 1) * n]
        return pat * sum(w for w, _ in coef) + sum(c for _, c in coef)
    return None


def first_difference(got: np.ndarray, want: np.ndarray) -> str:
    """Where two arrays first differ, in words (for violation reports)."""
    got = got.reshape(-1)
    want = want.reshape(-1)
    if got.size != want.size:
        return "%d elements, expected %d" % (got.size, want.size)
    bad = np.flatnonzero(got != want)
    if bad.size == 0:
        return "equal"
    i = int(bad[0])
    return "%d of %d elements differ; first at [%d]: %r, expected %r" % (
        bad.size, got.size, i, got[i].item(), want[i].item())


__all__ = ["KINDS", "KIND_NAMES", "QUANTS", "QUANT_ALGORITHMS", "CTL", "MEMBERS", "SYNC", "OpSpec",
           "WorkloadConfig", "plan_batch", "make_input", "expected",
           "op_key", "coefficients", "pattern", "first_difference"]
