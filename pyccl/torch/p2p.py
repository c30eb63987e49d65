"""Point-to-point calls of :class:`~pyccl.torch.ProcessGroupPyccl`, and
monitored_barrier.

``send``/``recv`` map to pyccl's send and recv (matched per source,
destination and tag in posting order; a recv from any source takes the
oldest message next in line).  torch's tags are ints; pyccl's are 32-bit
unsigned, so a tag is taken modulo 2**32, and tags from
:data:`RESERVED_TAGS` up are pyccl's own (monitored_barrier).

``monitored_barrier`` works as gloo's does: every rank but 0 sends rank 0
a token and waits for its answer; rank 0 waits for the tokens, each within
the timeout, and names the rank(s) that did not arrive (all of them with
``wait_all_ranks``), then answers the others.  ``dist.monitored_barrier``
itself refuses any backend but gloo before reaching the group, so call
``pyccl.torch.monitored_barrier(group, timeout, wait_all_ranks)`` (or the
group's method).  A token that never came leaves its recv pending in the
core until the group's op timeout; every call uses a tag of its own, so a
late token never satisfies a later barrier.
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, List, Optional

import torch

from pyccl.errors import CclError, StillRunning
from pyccl.torch.staging import stage, write_all_back

#: Tags from here up are pyccl's own; torch tags are taken modulo 2**32.
RESERVED_TAGS = 0xFFFF0000


def _tag(tag: int) -> int:
    tag = int(tag) % 2**32
    if tag >= RESERVED_TAGS:
        raise ValueError("tag %d is reserved by pyccl (tags modulo 2**32 "
                         "must stay below %#x)" % (tag, RESERVED_TAGS))
    return tag


def _one(tensors: Any, call: str) -> torch.Tensor:
    tensors = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
    if len(tensors) != 1:
        raise ValueError("%s: one tensor per call, not %d"
                         % (call, len(tensors)))
    return tensors[0]


class PointToPointMixin:
    """send/recv; mixed into ProcessGroupPyccl."""

    _comm: Any
    _rank: int
    _size: int

    def send(self, tensors: Any, dstRank: int, tag: int = 0) -> Any:  # noqa: N803
        t = _one(tensors, "send")
        src = stage(t)
        work = self._comm.send(src.host, int(dstRank), _tag(tag),
                               async_op=True)
        return self._work("send", [work], [t], ordered=False)

    def recv(self, tensors: Any, srcRank: int, tag: int = 0) -> Any:  # noqa: N803
        return self._recv(tensors, int(srcRank), tag)

    def recv_anysource(self, tensors: Any, tag: int = 0) -> Any:
        return self._recv(tensors, None, tag)

    def _recv(self, tensors: Any, src: Optional[int], tag: int) -> Any:
        t = _one(tensors, "recv")
        dst = stage(t, reads=False, what="output")
        work = self._comm.recv(dst.host, src, _tag(tag), async_op=True)
        return self._work("recv", [work], [t], [write_all_back([dst])],
                          ordered=False)

    def monitored_barrier(self, timeout: Optional[timedelta] = None,
                          wait_all_ranks: bool = False) -> None:
        """gloo's monitored_barrier (see the module docstring): raises
        RuntimeError naming the rank(s) that did not arrive in time, with
        gloo's messages."""
        if timeout is None:
            timeout = timedelta(seconds=self._options.op_timeout)
        elif not isinstance(timeout, timedelta):
            timeout = timedelta(seconds=float(timeout))
        ms = int(timeout.total_seconds() * 1000)
        if ms <= 0:
            raise RuntimeError("Rank %d timed out in monitoredBarrier after "
                               "%d ms" % (self._rank, ms))
        seconds = ms / 1000.0
        self._monitored += 1
        tag = RESERVED_TAGS + self._monitored % (2**32 - RESERVED_TAGS)
        if self._rank != 0:
            self._comm.send(torch.zeros(1, dtype=torch.uint8), 0, tag,
                            async_op=True)
            answer = torch.zeros(1, dtype=torch.uint8)
            try:
                self._comm.recv(answer, 0, tag, async_op=True).wait(seconds)
            except (StillRunning, CclError) as exc:
                raise RuntimeError(
                    "Rank %d timed out in monitoredBarrier after %d ms (rank "
                    "0 did not answer: %s)" % (self._rank, ms, exc)) from None
            if answer.item():
                raise RuntimeError(
                    "Rank %d successfully reached monitoredBarrier, but "
                    "received errors while waiting for send/recv from rank "
                    "0 (it found other ranks missing)" % self._rank)
            return
        pending = [(r, self._comm.recv(torch.zeros(1, dtype=torch.uint8), r,
                                       tag, async_op=True))
                   for r in range(1, self._size)]
        arrived: List[int] = []
        missing: List[int] = []
        deadline = time.monotonic() + seconds
        for r, work in pending:
            try:
                work.wait(max(0.001, deadline - time.monotonic()))
                arrived.append(r)
            except (StillRunning, CclError):
                missing.append(r)
        verdict = torch.full((1,), 1 if missing else 0, dtype=torch.uint8)
        for r in arrived:
            self._comm.send(verdict, r, tag, async_op=True)
        if missing:
            if wait_all_ranks:
                raise RuntimeError(
                    "Ranks %s failed to pass monitoredBarrier in %d ms"
                    % (", ".join(map(str, missing)), ms))
            raise RuntimeError("Rank %d failed to pass monitoredBarrier in "
                               "%d ms" % (missing[0], ms))


__all__ = ["PointToPointMixin", "RESERVED_TAGS"]
