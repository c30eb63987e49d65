"""Shared state: named tensors kept bit-identical across peers.

Every peer holds a :class:`SharedState` with the same names, shapes and
element types.  :func:`sync_shared_state` (all peers call it at the same
point, like a collective) makes the bytes identical everywhere:

1. each peer hashes every tensor (``ccl_hash64``, the same on every
   platform) and the peers all-gather (revision, strategy, hash, size) per
   tensor: ``16 + 16 * len(state)`` bytes per peer;
2. every peer runs the same election on the same gathered table, so all
   agree without asking anyone: among the voting peers at the highest
   revision, the most common hash of each tensor wins (ties: the one the
   lowest rank holds);
3. only tensors that some receiving peer holds differently move, striped
   over the peers that hold the winning bytes (chunk j is broadcast by
   source j mod S);
4. receivers check the hash after the transfer.

Steady state (nothing changed) moves no tensor bytes.  The election runs
on the gathered table rather than at the master: every peer reaches the
same single answer without a master round trip, and it keeps working while
the master restarts.

Strategies: ``"enforce_popular"`` (vote, and adopt the winner),
``"receive_only"`` (never vote or send, adopt the winner; for newcomers),
``"send_only"`` (vote and send, never change local bytes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from pyccl._lib import ffi, lib
from pyccl.buffers import as_buffer, is_torch_tensor
from pyccl.errors import InvalidArgument, Mismatch, ProtocolError

STRATEGIES = {"enforce_popular": 0, "receive_only": 1, "send_only": 2}
_RECEIVE_ONLY = 1
_SEND_ONLY = 2

#: Bytes per broadcast chunk when striping a tensor over several sources.
CHUNK_BYTES = 8 << 20


def tensor_hash(t: Any) -> int:
    """ccl_hash64 of a tensor's bytes (C-contiguous numpy or CPU torch)."""
    buf = as_buffer(t, writable=False)
    return int(lib.ccl_hash64(buf.ptr, buf.nbytes, 0))


def _bytes_view(t: Any) -> Any:
    """A flat uint8 view of the tensor's memory (no copy)."""
    if is_torch_tensor(t):
        import torch
        return t.reshape(-1).view(torch.uint8)
    return t.reshape(-1).view(np.uint8)


class SharedState:
    """Named tensors with a revision, kept bit-identical by
    :func:`sync_shared_state`.

    Args:
        tensors: name -> numpy array or CPU torch tensor (contiguous).
            Updated in place by a sync.
        revision: bump it when the tensors change on purpose (after an
            optimizer step); peers at a lower revision adopt the others'.
    """

    def __init__(self, tensors: Dict[str, Any], revision: int = 0) -> None:
        if not isinstance(tensors, dict) or not tensors:
            raise InvalidArgument("tensors must be a non-empty dict")
        for name, t in tensors.items():
            as_buffer(t, writable=True, what="shared tensor %r" % name)
        self.tensors = tensors
        self.revision = int(revision)

    @property
    def names(self) -> List[str]:
        """Tensor names in the order every peer uses (sorted)."""
        return sorted(self.tensors)

    def hashes(self) -> Dict[str, int]:
        """name -> ccl_hash64 of the tensor's bytes."""
        return {n: tensor_hash(self.tensors[n]) for n in self.names}

    def nbytes(self) -> int:
        """Total bytes of all tensors."""
        return sum(as_buffer(t, writable=False).nbytes
                   for t in self.tensors.values())


@dataclass
class SyncResult:
    """What one sync did on this peer."""
    revision: int
    received: List[str] = field(default_factory=list)
    sent_bytes: int = 0      # tensor bytes this peer broadcast as a source
    received_bytes: int = 0  # tensor bytes this peer adopted
    tx_bytes: int = 0        # all traffic of the sync (hash table included)
    rx_bytes: int = 0


def _elect(table: np.ndarray, t: int) -> Optional[int]:
    """The winning hash of tensor t (None if nobody votes)."""
    revision = table[:, 0]
    voters = [r for r in range(table.shape[0])
              if table[r, 1] != _RECEIVE_ONLY]
    if not voters:
        return None
    top = max(revision[r] for r in voters)
    counts: Dict[int, int] = {}
    first: Dict[int, int] = {}
    for r in voters:
        if revision[r] != top:
            continue
        h = int(table[r, 2 + 2 * t])
        counts[h] = counts.get(h, 0) + 1
        first.setdefault(h, r)
    return max(counts, key=lambda h: (counts[h], -first[h]))


#: States smaller than this fetch without a progress bar.
PROGRESS_MIN_BYTES = 64 << 20


def _fetch_progress(table: Any, sizes: list, mine: int, me: int) -> Any:
    """A Progress over the bytes this peer will receive, or None when it
    receives less than PROGRESS_MIN_BYTES (or the output is no terminal:
    the bar is then inactive and draws nothing)."""
    from pyccl.progress import Progress
    if mine == _SEND_ONLY:
        return None
    total = 0
    for i, size in enumerate(sizes):
        winner = _elect(table, i)
        if winner is not None and int(table[me, 2 + 2 * i]) != winner:
            total += size
    if total < PROGRESS_MIN_BYTES:
        return None
    bar = Progress(total, "pyccl: fetching shared state", unit="bytes")
    return bar if bar.active else None


def sync_shared_state(comm: Any, state: SharedState,
                      strategy: str = "enforce_popular") -> SyncResult:
    """Makes ``state`` bit-identical on every peer of ``comm``.

    A collective: every peer calls it at the same point, with the same
    tensor names, sizes and element types.

    Raises:
        InvalidArgument: unknown strategy.
        Mismatch: peers hold different names or sizes.
        ProtocolError: a received tensor does not hash to the winner.
        PeerLost, Aborted, Timeout: a peer failed during the sync; call
            ``update_topology()`` and sync again.  A receiver's tensor may
            then hold part of the new bytes; its hash differs from the
            winner's, so the next sync fetches it again (from a surviving
            holder; if no holder of the winning bytes survived, the
            survivors elect among what they hold).
    """
    if strategy not in STRATEGIES:
        raise InvalidArgument("strategy must be one of %s" % sorted(STRATEGIES))
    mine = STRATEGIES[strategy]
    before = comm.stats()
    names = state.names
    n_peers = comm.world_size
    rec = np.zeros(2 + 2 * len(names), dtype=np.uint64)
    rec[0] = state.revision
    rec[1] = mine
    sizes = []
    for i, name in enumerate(names):
        t = state.tensors[name]
        rec[2 + 2 * i] = tensor_hash(t)
        sizes.append(as_buffer(t, writable=False).nbytes)
        rec[3 + 2 * i] = sizes[-1]
    # The names must agree too: hash them into the size words' partner.
    name_key = np.array([lib.ccl_hash64(ffi.from_buffer(
        "|".join(names).encode()), len("|".join(names).encode()), 0)],
        dtype=np.uint64)
    keys = comm.all_gather(name_key)
    if len(set(int(k) for k in keys.reshape(-1))) != 1:
        raise Mismatch("peers hold shared states with different names")
    table = comm.all_gather(rec).reshape(n_peers, -1)
    if table.shape[1] != rec.size or not all(
            (table[:, 3 + 2 * i] == sizes[i]).all() for i in range(len(names))):
        raise Mismatch("peers hold shared tensors of different sizes")
    result = SyncResult(revision=int(table[:, 0].max()))
    me = comm.rank
    # A joiner fetching a large state sees a bar on a terminal (bytes it
    # receives); nothing otherwise.
    bar = _fetch_progress(table, sizes, mine, me)
    for i, name in enumerate(names):
        winner = _elect(table, i)
        if winner is None:
            raise InvalidArgument("every peer is receive_only: nobody holds "
                                  "the state to share")
        hashes = table[:, 2 + 2 * i]
        need = [r for r in range(n_peers)
                if int(hashes[r]) != winner and table[r, 1] != _SEND_ONLY]
        if not need:
            continue  # everyone who takes bytes already has them
        sources = [r for r in range(n_peers)
                   if int(hashes[r]) == winner and table[r, 1] != _RECEIVE_ONLY]
        t = state.tensors[name]
        view = _bytes_view(t)
        receiving = me in need
        # A peer that keeps its bytes (or has them) receives into scratch.
        sink = view if receiving else (view.clone() if is_torch_tensor(view)
                                       else view.copy())
        total = sizes[i]
        n_chunks = max(1, min(len(sources), -(-total // CHUNK_BYTES)))
        step = -(-total // n_chunks)
        for j in range(n_chunks):
            lo, hi = j * step, min(total, (j + 1) * step)
            if lo >= hi:
                continue
            root = sources[j % len(sources)]
            part = view[lo:hi] if me == root else sink[lo:hi]
            comm.broadcast(part, src=root)
            if me == root:
                result.sent_bytes += hi - lo
            elif receiving and bar is not None:
                bar.update(hi - lo)
        if receiving:
            got = tensor_hash(t)
            if got != winner:
                raise ProtocolError("shared tensor %r: received bytes hash to "
                                    "%#x, expected %#x" % (name, got, winner))
            result.received.append(name)
            result.received_bytes += total
    if bar is not None:
        bar.close()
    if strategy != "send_only":
        state.revision = result.revision
    after = comm.stats()
    result.tx_bytes = after["tx_bytes"] - before["tx_bytes"]
    result.rx_bytes = after["rx_bytes"] - before["rx_bytes"]
    return result
