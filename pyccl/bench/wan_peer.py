"""One process of the wide-area benchmark, inside a network namespace.

``python -m pyccl.bench.wan_peer master COUNT`` hosts COUNT
:class:`~pyccl.Master` objects on 10.99.0.1 (one per pyccl variant, each
its own group) and prints their addresses; it runs until its stdin closes.

``python -m pyccl.bench.wan_peer peer CONFIG_JSON`` is one rank: it joins
every group the run needs (one :class:`~pyccl.Communicator` per
connection setting, and torch gloo when asked), prints ``ready``, then
obeys one JSON command per line on stdin and answers one JSON line on
stdout, prefixed ``WAN``:

- ``{"cmd": "run", "variant": V, "size": BYTES}``: fill the buffer with
  this rank's pattern, a barrier of V's library, then one blocking
  in-place sum all-reduce timed with ``time.monotonic`` (one clock for
  every namespace of the machine, so the parent can line ranks up), then
  the check: the largest error against the exact sum, and a digest of the
  result's bytes (the parent compares digests across ranks);
- ``{"cmd": "quit"}``.

The key comes from ``PYCCL_KEY`` (the parent makes a one-off random
one): pyccl refuses non-loopback peers without a key.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import time
import traceback
from typing import Any, Dict, Optional

import numpy as np

from pyccl.bench.measure import _BLOCK, Pattern

#: A variant: (library, conns_per_peer for pyccl (None: automatic),
#: quantized format or None).
VARIANTS: Dict[str, tuple] = {
    "auto": ("pyccl", None, None),
    "k1": ("pyccl", 1, None),
    "k2": ("pyccl", 2, None),
    "k4": ("pyccl", 4, None),
    "k8": ("pyccl", 8, None),
    "u8": ("pyccl", None, "u8"),
    "u4": ("pyccl", None, "u4"),
    "e3m0": ("pyccl", None, "e3m0"),
    "f16": ("pyccl", None, "f16"),
    "bf16": ("pyccl", None, "bf16"),
    "gloo": ("gloo", None, None),
    # The algorithm choice (all with automatic connections): the star or
    # the ring forced, and the cost model's choice after optimize_topology.
    "ring": ("pyccl", None, None),
    "star": ("pyccl", None, None),
    "direct": ("pyccl", None, None),
    "tuned": ("pyccl", None, None),
    # Quantized with the ring forced (the automatic choice is the ring
    # too, algo_pick.c: these name it).
    "u8-ring": ("pyccl", None, "u8"),
    "u4-ring": ("pyccl", None, "u4"),
    "e3m0-ring": ("pyccl", None, "e3m0"),
}

#: The all-reduce algorithm of a variant ("auto" where not listed).
ALGORITHM: Dict[str, str] = {"ring": "ring", "star": "star", "direct": "direct",
                             "u8-ring": "ring", "u4-ring": "ring",
                             "e3m0-ring": "ring"}
#: The variant whose communicator asks the master for the cost model's
#: thresholds (optimize_topology) once it is made.
TUNED = "tuned"


def comm_key(variant: str) -> Optional[str]:
    """The communicator a pyccl variant runs on ("conns=auto", ...), or
    None for gloo.  Quantized variants share the automatic one."""
    library, conns, _ = VARIANTS[variant]
    if library != "pyccl":
        return None
    return "conns=%s%s" % ("auto" if conns is None else conns,
                           ",tuned" if variant == TUNED else "")


def error_bound(quant: Optional[str], peers: int, spread: float,
                largest: float) -> float:
    """The largest error allowed in an element of the result.

    Unquantized: 0 (the pattern's sums are exact in f32).  The quantized
    ring encodes each element at most ``peers`` times (a partial sum per
    hop, then the result); the star twice.  min-max formats (u8, u4): one
    encoding errs by at most the block's range / (2 levels), and a block
    of a partial sum of j inputs spans at most j times one input's
    ``spread``, so ``peers * peers * spread / (2 levels)``.  Relative
    formats (e3m0 a third, f16 2^-11, bf16 2^-8): with positive data each
    encoding multiplies the error so far by at most (1 + u) and adds u of
    the value, so ``((1 + u)^peers - 1) * largest``.  A small margin
    covers the f32 arithmetic of decoding."""
    if quant is None:
        return 0.0
    if quant in ("u8", "u4"):
        levels = 255 if quant == "u8" else 15
        return peers * peers * spread / (2 * levels) * 1.001 + 1e-5
    u = {"e3m0": 1.0 / 3.0, "f16": 2.0 ** -11, "bf16": 2.0 ** -8}[quant]
    return ((1 + u) ** peers - 1) * largest * 1.001 + 1e-5


def max_error(buf: np.ndarray, pattern: Pattern) -> float:
    """Largest |result - exact sum| over the buffer, chunk by chunk."""
    worst = 0.0
    for start in range(0, buf.size, _BLOCK):
        n = min(_BLOCK, buf.size - start)
        diff = np.abs(buf[start:start + n] - pattern.want[:n])
        worst = max(worst, float(diff.max()) if n else 0.0)
        if not np.isfinite(worst):
            return float("inf")
    return worst


def say(obj: Any) -> None:
    sys.stdout.write("WAN " + json.dumps(obj) + "\n")
    sys.stdout.flush()


class Peer:
    """One rank: its groups, its buffer, its pattern."""

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.rank, self.peers = cfg["rank"], cfg["peers"]
        self.pattern = Pattern(self.rank, self.peers)
        self.comms: Dict[str, Any] = {}
        self.gloo = None
        self.buf: Optional[np.ndarray] = None
        self.tuned: Optional[dict] = None  # the tuned variant's thresholds
        from pyccl.communicator import Communicator
        # Every rank joins the groups in the same order: each constructor
        # blocks until its group is complete.
        for key in cfg["comms"]:
            conns = key.split("=", 1)[1].split(",")[0]
            self.comms[key] = Communicator(
                cfg["masters"][key], world_size=self.peers, rank=self.rank,
                conns_per_peer=None if conns == "auto" else int(conns),
                listen_host=cfg["addr"],
                connect_timeout=max(60.0, cfg["timeout"]),
                op_timeout=cfg["timeout"])
            if key.endswith(",tuned"):
                self.tuned = self._tune(self.comms[key])
        if cfg.get("gloo"):
            os.environ["GLOO_SOCKET_IFNAME"] = cfg["ifname"]
            import torch
            import torch.distributed as dist
            timeout = datetime.timedelta(seconds=cfg["timeout"])
            host, port = cfg["gloo"].rsplit(":", 1)
            store = dist.TCPStore(host, int(port), self.peers,
                                  self.rank == 0, timeout=timeout)
            dist.init_process_group("gloo", store=store, rank=self.rank,
                                    world_size=self.peers, timeout=timeout)
            self.gloo = (torch, dist)

    @staticmethod
    def _tune(comm: Any) -> dict:
        """A few large ring all-reduces (16 MiB: the model takes its rate
        from the ring links' bulk traffic), then optimize_topology: the
        master's cost model sets the thresholds of the next epoch
        (docs/design.md, "AUTO: choosing the algorithm")."""
        x = np.ones(4 << 20, dtype=np.float32)
        for _ in range(3):
            comm.all_reduce(x, "sum", algorithm="ring")
        comm.optimize_topology(timeout=120)
        return comm.tuning()

    def _buffer(self, size: int) -> np.ndarray:
        if self.buf is None or self.buf.nbytes != size:
            self.buf = None
            self.buf = np.empty(size // 4, dtype=np.float32)
        return self.buf

    def _op(self, variant: str, buf: np.ndarray) -> tuple:
        """(barrier, the timed op) of a variant, as functions."""
        library, _, quant = VARIANTS[variant]
        if library == "gloo":
            assert self.gloo is not None
            torch, dist = self.gloo
            tensor = torch.from_numpy(buf)  # shares the buffer
            return dist.barrier, lambda: dist.all_reduce(tensor)
        comm = self.comms[comm_key(variant)]
        alg = ALGORITHM.get(variant, "auto")
        if quant is None:
            return comm.barrier, lambda: comm.all_reduce(buf, "sum", algorithm=alg)
        return comm.barrier, lambda: comm.all_reduce(buf, "sum", quant=quant,
                                                     algorithm=alg)

    def run(self, variant: str, size: int) -> dict:
        buf = self._buffer(size)
        self.pattern.fill(buf)
        barrier, op = self._op(variant, buf)
        barrier()
        t0 = time.monotonic()
        op()
        t1 = time.monotonic()
        # The checks below hash and scan the whole buffer: CPU work that,
        # on a small machine, would slow the ranks (and the delay line)
        # still finishing the op.  Nobody starts them before everyone is
        # out of the timed op.
        barrier()
        quant = VARIANTS[variant][2]
        err = max_error(buf, self.pattern)
        want = self.pattern.want
        bound = error_bound(quant, self.peers,
                            spread=12.0,  # j % 13 spans 0..12 in a block
                            largest=float(want.max()))
        digest = hashlib.blake2b(memoryview(buf).cast("B"),
                                 digest_size=16).hexdigest()
        return {"t0": t0, "t1": t1, "err": err, "bound": bound,
                "digest": digest}

    def close(self) -> None:
        for comm in self.comms.values():
            comm.close()
        if self.gloo is not None:
            self.gloo[1].destroy_process_group()


def peer_main(cfg: dict) -> int:
    try:
        peer = Peer(cfg)
    except BaseException:
        say({"error": "joining: %s" % traceback.format_exc()})
        return 1
    say({"ready": True, "tuned": peer.tuned})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "quit":
            break
        try:
            say(peer.run(msg["variant"], int(msg["size"])))
        except BaseException:
            say({"error": "%s: %s" % (msg["variant"],
                                      traceback.format_exc())})
    try:
        peer.close()
    except BaseException:
        pass
    return 0


def master_main(count: int, host: str) -> int:
    from pyccl.master import Master
    masters = [Master(host, 0) for _ in range(count)]
    say({"masters": [m.address for m in masters]})
    sys.stdin.read()  # until the parent closes it (or dies)
    for m in masters:
        m.close()
    return 0


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["master"] and len(argv) == 3:
        return master_main(int(argv[1]), argv[2])
    if argv[:1] == ["peer"] and len(argv) == 2:
        return peer_main(json.loads(argv[1]))
    print("usage: python -m pyccl.bench.wan_peer master COUNT HOST | "
          "peer CONFIG_JSON", file=sys.stderr)
    return 2


__all__ = ["VARIANTS", "comm_key", "error_bound", "max_error", "main"]

if __name__ == "__main__":
    sys.exit(main())
