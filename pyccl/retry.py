"""Automatic retry of collectives across membership changes.

Because a failed op ends the same way on every survivor and gives the
input back (``restore_input``), running it again after
``update_topology()`` yields the answer of the smaller group, on every
survivor alike.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

from pyccl.errors import Aborted, PeerLost, StillRunning, Timeout, TooFewPeers

T = TypeVar("T")

#: Failures that a membership change can cure.
RETRYABLE = (PeerLost, Aborted, Timeout)


def run_with_retry(comm: Any, fn: Callable[[], T], *, min_peers: int = 1,
                   max_attempts: int = 10, update_timeout: Optional[float] = None,
                   on_change: Optional[Callable[[], None]] = None) -> T:
    """Runs ``fn()`` (one or several collectives on ``comm``) until it
    succeeds.

    After a retryable failure (:class:`PeerLost`, :class:`Aborted`,
    :class:`Timeout`) every survivor calls ``comm.update_topology()`` and
    runs ``fn()`` again; ``on_change()`` runs after each change (e.g. to
    rescale by the new world size or sync shared state).  All survivors
    must call this at the same point, like a collective.

    ``update_timeout`` is passed to ``update_topology`` (None: its
    default).  A :class:`StillRunning` from ``fn`` (a ``wait(timeout)`` of
    its own that ran out) is not a failure and is raised as it is.

    Raises:
        TooFewPeers: the group shrank below ``min_peers``.
        The last error, once ``max_attempts`` runs failed.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except StillRunning:
            # A wait(timeout) of the caller's own ran out: the op is still
            # pending, nothing failed, and update_topology would refuse.
            raise
        except RETRYABLE:
            if attempt >= max_attempts:
                raise
        note = getattr(comm, "_note_retry", None)
        if note is not None:
            note()
        comm.update_topology(update_timeout)
        if comm.world_size < min_peers:
            raise TooFewPeers("%d peer(s) left, %d needed" % (
                comm.world_size, min_peers))
        if on_change is not None:
            on_change()
