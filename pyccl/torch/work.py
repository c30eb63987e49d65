"""The Work a pyccl process group returns, and its future.

A :class:`PycclWork` stands for one torch call: one or more pyccl ops
(:class:`pyccl.Work`; e.g. one per tensor of a coalesced call) and the
steps that finish the call once they have all succeeded (copying a
gathered buffer out into a list of tensors, writing a staged result back
to the device).  Those steps run exactly once, in whichever thread first
sees the ops end: the caller's ``wait()``, or the group's
:class:`~pyccl.work.Completer` thread once someone asked for the future.

Failures.  ``wait()`` raises the op's error as a pyccl error that is also
a ``torch.distributed.DistBackendError`` (:mod:`pyccl.torch.errors`), and
``exception()`` returns it.  The future fails as torch's C++ side expects
(see :func:`pyccl.work.torch_future`): DDP's reducer, waiting on it, raises
a clean RuntimeError instead of reading the exception as a value.

Deadlines.  Every pyccl op ends by its own deadline (the group's
op_timeout for an op that makes no progress, peer_timeout for a silent
peer, at once for a closed connection), so ``wait()`` without a timeout
never hangs for good.  ``wait(timeout)`` with a positive timedelta raises
a ``pyccl.StillRunning`` (a TimeoutError and a DistBackendError) when the
timeout passes first; the op stays pending and can be waited for again.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist

from pyccl.errors import StillRunning
from pyccl.torch.errors import as_torch_error
from pyccl.work import Completer, Work, torch_future


class _Done:
    """A threading.Event made only when a thread must wait for it (most
    Works are waited for by the thread that completes them)."""
    __slots__ = ("_flag", "_event")

    _guard = threading.Lock()

    def __init__(self) -> None:
        self._flag = False
        self._event: Optional[threading.Event] = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._guard:
            self._flag = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        with self._guard:
            if self._flag:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)


class PycclWork(dist.Work):
    """The result of one call on a :class:`ProcessGroupPyccl`.

    Args:
        name: the torch call, for messages.
        works: the pyccl ops it waits for.
        result: the tensors ``result()`` and the future's value give.
        finish: steps run once after every op succeeded, in order.
        completer: gives the group's Completer (for ``get_future``).
        ordered: the ops are collectives (they end in posting order).
    """

    def __init__(self, name: str, works: Sequence[Work],
                 result: List[torch.Tensor],
                 finish: Sequence[Callable[[], None]] = (),
                 completer: Optional[Callable[[], Completer]] = None,
                 ordered: bool = True) -> None:
        super().__init__()
        self._name = name
        self._works = list(works)
        self._result = result
        self._finish = [f for f in finish if f is not None]
        self._completer = completer
        self._ordered = ordered
        self._lock = threading.Lock()
        self._done = _Done()
        self._exc: Optional[BaseException] = None
        self._source = -1
        self._future: Any = None
        self._owned = False   # the Completer finishes it (future asked)
        # wait() without a timeout waits this long (barrier(timeout=...)).
        self._default_timeout: Optional[timedelta] = None

    # -- completion -------------------------------------------------------

    def _complete(self, deadline: Optional[float] = None) -> None:
        """Waits for every op (until ``deadline``, a monotonic time, if
        given), then runs the finishing steps; records the first error.
        Idempotent.  Raises StillRunning if the deadline passed first."""
        with self._lock:
            if self._done.is_set():
                return
            error: Optional[BaseException] = None
            for work in self._works:
                left = None if deadline is None else max(
                    0.0, deadline - time.monotonic())
                try:
                    work.wait(left)
                except StillRunning:
                    raise
                except BaseException as exc:  # noqa: BLE001 - kept for wait()
                    if error is None:
                        error = exc
            if error is None:
                try:
                    for step in self._finish:
                        step()
                except BaseException as exc:  # noqa: BLE001
                    error = exc
            if self._works:
                self._source = self._works[-1].source_rank()
            self._exc = None if error is None else as_torch_error(
                error, self._name)
            self._works = []
            self._finish = []
            self._done.set()

    def _complete_quietly(self) -> None:
        try:
            self._complete()
        except BaseException:  # noqa: BLE001 - recorded in self._exc
            pass

    def _raise(self) -> None:
        if self._exc is not None:
            raise self._exc

    # -- torch's Work API -------------------------------------------------

    def wait(self, timeout: timedelta = timedelta(0)) -> bool:
        """Blocks until the call has ended; returns True or raises its
        error.  A positive ``timeout`` bounds the wait (then
        ``pyccl.StillRunning`` if it passes; the call stays pending)."""
        if not timeout and self._default_timeout is not None:
            timeout = self._default_timeout
        seconds = timeout.total_seconds() if timeout else 0.0
        deadline = time.monotonic() + seconds if seconds > 0 else None
        if self._owned:
            if not self._done.wait(seconds if deadline else None):
                raise as_torch_error(StillRunning(
                    "%dms" % (seconds * 1000)), self._name)
        else:
            try:
                self._complete(deadline)
            except StillRunning:
                raise as_torch_error(StillRunning(
                    "%dms" % (seconds * 1000)), self._name) from None
        self._raise()
        return True

    def is_completed(self) -> bool:
        if self._done.is_set():
            return True
        if self._owned or not all(w.test() for w in list(self._works)):
            return False
        self._complete_quietly()
        return True

    def is_success(self) -> bool:
        return self.is_completed() and self._exc is None

    def exception(self) -> Optional[BaseException]:
        self.is_completed()
        return self._exc

    def source_rank(self) -> int:
        """For a recv: the rank the message came from (after wait)."""
        self.is_completed()
        return self._source

    _source_rank = source_rank

    def result(self) -> List[torch.Tensor]:
        """The output tensors (waits for the call first)."""
        self.wait()
        return self._result

    def synchronize(self) -> None:
        """Same as wait(): results reach the caller's tensors (device ones
        too) only when the call has ended."""
        self.wait()

    def block_current_stream(self) -> None:
        self.wait()

    def get_future(self) -> Any:
        """A ``torch.futures.Future`` whose value is the list of output
        tensors, completed when the call ends (without anyone calling
        wait); it fails with the call's error, as C++ consumers (DDP)
        expect."""
        with self._lock:
            if self._future is not None:
                return self._future

            def outcome() -> List[torch.Tensor]:
                self._raise()
                return self._result
            future, fire = torch_future(outcome)
            self._future = future
            self._owned = True

        def job() -> None:
            self._complete_quietly()
            fire()
        if self._completer is None:
            threading.Thread(target=job, daemon=True).start()
        else:
            self._completer().submit(job, self._ordered)
        return future

    def __repr__(self) -> str:
        if not self._done.is_set():
            state = "pending"
        else:
            state = "failed" if self._exc is not None else "done"
        return "<pyccl.torch.PycclWork %s %s>" % (self._name, state)


def done_work(name: str, result: List[torch.Tensor]) -> PycclWork:
    """A Work for a call that needed no op (e.g. a group of one)."""
    work = PycclWork(name, [], result)
    work._complete()
    return work


__all__ = ["PycclWork", "done_work"]
