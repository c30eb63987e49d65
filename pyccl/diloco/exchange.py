"""One outer all-reduce: a fragment's pseudo-gradient and the head count.

Two ops go out back to back: a tiny int64 sum of ``[contributes,
joiners_waiting]`` and the fragment's float32 pseudo-gradient (summed,
quantized on the wire when asked).  Dividing the sum by the number of
contributors (not by the world size) averages over the peers that
actually did the round: a joiner admitted in the middle of a round sends
zeros and counts 0.  ``joiners_waiting`` sums each peer's
``peers_pending()``; since the sum is the same on every peer, they all
agree on whether to stop and admit joiners.

Both inputs are all-reduced in place.  After a failure the engine puts
the pseudo-gradient back from its own copy (the head count is rebuilt),
so a retry after ``update_topology()`` sends the same contribution again,
whichever of the two ops failed.

The exchange also keeps the traffic accounts: bytes this peer sent for
each sync (the communicator's counters, headers included), the largest
sync, and the time the caller spent blocked in :meth:`Pending.wait`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass
class ExchangeStats:
    """What the outer syncs have cost this peer so far."""
    syncs: int = 0              # outer all-reduces that succeeded
    retries: int = 0            # outer all-reduces that failed and ran again
    bytes_sent: int = 0         # tx bytes of outer syncs (and resyncs)
    peak_sync_bytes: int = 0    # the largest tx bytes of one sync
    stall_s: float = 0.0        # time blocked waiting for a sync
    resyncs: int = 0            # shared-state syncs after a group change
    resync_bytes: int = 0       # their tx bytes
    rejoins: int = 0            # times this peer was dropped and came back


class Pending:
    """A posted outer all-reduce of one fragment."""

    def __init__(self, exchange: "Exchange", fragment: Any, contributes: bool,
                 works: tuple, tx_before: int) -> None:
        self.exchange = exchange
        self.fragment = fragment
        self.contributes = contributes
        self.works = works
        self.tx_before = tx_before

    def wait(self) -> "Result":
        """Waits for both ops; returns the averaged pseudo-gradient (in
        ``fragment.send``), the contributor count and the joiners count.
        Raises the first op's error if either failed (after both ended,
        so nothing is left pending)."""
        ex = self.exchange
        t0 = time.perf_counter()
        error: Optional[BaseException] = None
        for w in self.works:
            try:
                w.wait()
            except BaseException as exc:  # noqa: B902 - re-raised below
                error = error or exc
        ex.stats.stall_s += time.perf_counter() - t0
        tx = ex.comm.stats()["tx_bytes"] - self.tx_before
        ex.stats.bytes_sent += tx
        if error is not None:
            ex.stats.retries += 1
            raise error
        ex.stats.syncs += 1
        ex.stats.peak_sync_bytes = max(ex.stats.peak_sync_bytes, tx)
        count = int(ex.head[0])
        return Result(self.fragment, count, int(ex.head[1]), tx)


@dataclass
class Result:
    fragment: Any
    contributors: int
    joiners_waiting: int
    tx_bytes: int


class Exchange:
    """Posts the outer all-reduces of one DiLoCo engine.

    Args:
        comm: the pyccl Communicator of the outer group.
        quant: None (float32 on the wire) or a format of
            ``Communicator.all_reduce`` (``"u8"``, ``"u4"``, ``"e3m0"``,
            ``"f16"``, ``"bf16"``).
        quant_block: elements per scale block (u8, u4, e3m0).
        algorithm: ``"auto"``, ``"ring"``, ``"star"`` or ``"direct"``
            (star sums in rank order, which tests use to compare with a
            hand-made reference; quantized, direct encodes each input
            once).
    """

    def __init__(self, comm: Any, quant: Optional[str] = None,
                 quant_block: int = 256, algorithm: str = "auto") -> None:
        self.comm = comm
        self.quant = quant
        self.quant_block = quant_block
        self.algorithm = algorithm
        self.head = np.zeros(2, dtype=np.int64)
        self.stats = ExchangeStats()

    def post(self, fragment: Any, contributes: bool) -> Pending:
        """Starts the all-reduce of ``fragment.send`` (already filled with
        the pseudo-gradient, or zeros when not ``contributes``)."""
        comm = self.comm
        tx_before = comm.stats()["tx_bytes"]
        self.head[0] = 1 if contributes else 0
        self.head[1] = comm.peers_pending()
        w1 = comm.all_reduce(self.head, "sum", async_op=True)
        try:
            if self.quant is None:
                w2 = comm.all_reduce(fragment.send, "sum", async_op=True,
                                     algorithm=self.algorithm)
            else:
                w2 = comm.all_reduce(fragment.send, "sum", async_op=True,
                                     quant=self.quant,
                                     quant_block=self.quant_block,
                                     algorithm=self.algorithm)
        except BaseException:
            # The head count is in flight: let it end before raising, so
            # that update_topology finds nothing pending.
            try:
                w1.wait()
            except BaseException:  # noqa: B902 - the first error wins
                pass
            raise
        return Pending(self, fragment, contributes, (w1, w2), tx_before)
