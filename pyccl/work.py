"""Work: the handle of one collective op in flight.

A Work owns its C op (``ccl_op``) and keeps every buffer the op reads or
writes alive until the op has completed, because the C core writes into
them from its progress thread.  The communicator keeps each pending Work
in a set, so dropping a Work early is safe: the buffers live until the
communicator sees the op finished (it sweeps its pending ops on each new op
and at close).  ``ccl_op_free`` runs exactly once, after completion, and
then the Work calls the ``forget`` function its communicator gave it (the
only thing it knows of the communicator, so neither module imports the
other back).

Futures.  :meth:`Work.get_future` hands back a ``torch.futures.Future``
(torch's name for the same thing).  Something must complete it when the op
ends, even if nobody calls ``wait()``: a :class:`Completer`, one thread per
communicator started on the first ``get_future()``, waits for such ops in
the order they were posted (collectives end in that order on every rank)
and completes their futures.  A failed op must fail its future so that
torch's C++ side sees an error too: ``Future.set_exception`` only marks
the Python wrapper (C++ consumers such as DDP then read the exception
object as a value and crash), so :func:`torch_future` completes a source
future and raises the stored error inside a ``.then()`` callback, which
makes the derived future a real error everywhere.
"""
from __future__ import annotations

import collections
import importlib
import math
import threading
import time
from typing import Any, Callable, Deque, Optional, Tuple

from pyccl._lib import ffi, lib
from pyccl.errors import StillRunning, error_class

# A wait with no timeout returns to Python this often, so Ctrl-C can
# interrupt it; the op keeps running and its Work stays valid.
_SLICE_MS = 100


def torch_future(outcome: Callable[[], Any]) -> Tuple[Any, Callable[[], None]]:
    """A ``torch.futures.Future`` and the function that completes it.

    After ``fire()``, the future's value is ``outcome()``, or its error is
    what ``outcome()`` raised -- an error that C++ consumers of the future
    see as one (see the module docstring for why ``set_exception`` is not
    enough).  Raises ImportError without torch.
    """
    torch = importlib.import_module("torch")
    source = torch.futures.Future()
    derived = source.then(lambda _: outcome())

    def fire() -> None:
        source.set_result(None)
    return derived, fire


class Completer:
    """Runs completion jobs in a thread of its own: ``submit(job)`` queues a
    blocking callable (one that waits for an op and completes its future).

    Jobs run one at a time in submission order, which suits collectives:
    they end in the order they were posted.  An ``ordered=False`` job (a
    point-to-point op, which may end out of order) gets a thread of its own
    so it never holds up the queue.  The thread is a daemon started on the
    first job and leaves when the queue has been empty for a while.
    """

    _IDLE_S = 5.0

    def __init__(self, name: str) -> None:
        self._name = name
        self._cv = threading.Condition()
        self._jobs: Deque[Callable[[], None]] = collections.deque()
        self._running = False

    def submit(self, job: Callable[[], None], ordered: bool = True) -> None:
        if not ordered:
            threading.Thread(target=job, daemon=True,
                             name=self._name + " p2p").start()
            return
        with self._cv:
            self._jobs.append(job)
            if self._running:
                self._cv.notify()
                return
            self._running = True
        threading.Thread(target=self._loop, daemon=True,
                         name=self._name).start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                if not self._jobs:
                    self._cv.wait(self._IDLE_S)
                if not self._jobs:
                    self._running = False
                    return
                job = self._jobs.popleft()
            job()  # jobs catch their own errors


class Work:
    """One collective op, possibly still running.

    Returned by every op called with ``async_op=True``.  ``wait()`` blocks
    until the op ends and returns its result buffer or raises its error.
    """

    def __init__(self, forget: Callable[["Work"], None], op: Any,
                 result: Any, keep: tuple, name: str,
                 completer: Optional[Callable[[], Completer]] = None,
                 ordered: bool = True) -> None:
        self._forget = forget  # tells the communicator the op has ended
        self._op = op          # raw ccl_op *, None once freed
        self._result = result  # what wait() returns
        self._keep = keep      # every Buffer the op touches
        self._name = name
        self._lock = threading.Lock()
        self._rc: Optional[int] = None
        self._detail = ""
        self._completer = completer  # gives the communicator's Completer
        self._ordered = ordered      # a collective (ends in posting order)
        self._future: Any = None
        self._source = -1            # a finished recv: the sender's rank

    # -- completion; each runs with self._lock held -----------------------

    def _finish(self, rc: int) -> None:
        op = self._op
        if rc != lib.CCL_OK:
            self._detail = ffi.string(lib.ccl_op_error(op)).decode(
                "utf-8", "replace")
        else:
            self._source = int(lib.ccl_op_source(op))
        lib.ccl_op_free(op)
        self._op = None
        self._keep = ()
        self._rc = rc
        self._forget(self)

    def _poll(self) -> bool:
        if self._op is None:
            return True
        done = ffi.new("int *")
        rc = lib.ccl_op_test(self._op, done)
        if done[0]:
            self._finish(rc)
            return True
        return False

    def _sweep(self) -> None:
        """Frees the op if it has finished; never blocks (called by the
        communicator for every pending op before each new op)."""
        if self._lock.acquire(blocking=False):
            try:
                self._poll()
            finally:
                self._lock.release()

    def _finish_after_close(self) -> None:
        """After ``ccl_comm_destroy`` every op has ended (pending ones with
        CCL_ERR_CLOSED); collect the outcome and free the op."""
        with self._lock:
            if self._op is not None:
                self._finish(lib.ccl_op_wait(self._op, -1))

    def _outcome(self) -> Any:
        if self._rc != lib.CCL_OK:
            detail = self._detail or "%s failed" % self._name
            raise error_class(self._rc)(detail, code=self._rc)
        return self._result

    # -- public -----------------------------------------------------------

    def wait(self, timeout: Optional[float] = None) -> Any:
        """Blocks until the op ends; returns its result buffer.

        Args:
            timeout: seconds to wait, or None to wait until the op ends
                (its own deadline, the communicator's ``op_timeout``,
                bounds that).

        Raises:
            StillRunning: ``timeout`` passed first (a ``Timeout``); the op stays pending and
                ``wait`` may be called again.
            CclError: the op failed (the subclass names why).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._op is not None:
                if deadline is None:
                    slice_ms = _SLICE_MS
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        if self._poll():
                            break
                        raise StillRunning("%s still running after wait(timeout=%g)"
                                           % (self._name, timeout))
                    slice_ms = min(_SLICE_MS, max(1, math.ceil(left * 1000)))
                rc = lib.ccl_op_wait(self._op, slice_ms)
                if rc != lib.CCL_ERR_PENDING:
                    self._finish(rc)
        return self._outcome()

    def test(self) -> bool:
        """True once the op has ended (successfully or not); never blocks."""
        with self._lock:
            return self._poll()

    def source_rank(self) -> int:
        """The rank a finished recv got its message from (useful after a
        recv from any source); -1 while it runs, and for other ops."""
        with self._lock:
            self._poll()
            return self._source

    def exception(self) -> Optional[BaseException]:
        """The op's error once it has failed; None while it runs or after
        it succeeded.  Never blocks."""
        with self._lock:
            if not self._poll() or self._rc == lib.CCL_OK:
                return None
        try:
            self._outcome()
        except BaseException as exc:  # the same error wait() raises
            return exc
        return None  # pragma: no cover - _outcome raises for rc != OK

    def get_future(self) -> Any:
        """A ``torch.futures.Future`` completed when the op ends: its value
        is what :meth:`wait` returns, or it fails with the op's error (as
        a real error for torch's C++ side too).  Needs torch.  The same
        future is returned on every call."""
        with self._lock:
            if self._future is not None:
                return self._future
            future, fire = torch_future(self.wait)
            self._future = future

        def complete() -> None:
            try:
                self.wait()
            except BaseException:
                pass  # the future's callback raises it again
            fire()
        if self._completer is None:
            threading.Thread(target=complete, daemon=True).start()
        else:
            self._completer().submit(complete, self._ordered)
        return future

    def is_completed(self) -> bool:
        """Same as :meth:`test`."""
        return self.test()

    def result(self, timeout: Optional[float] = None) -> Any:
        """The op's result buffer, waiting for it like :meth:`wait`."""
        return self.wait(timeout)

    def __repr__(self) -> str:
        if self._op is not None:
            state = "pending"
        elif self._rc == lib.CCL_OK:
            state = "done"
        else:
            state = "failed"
        return "<pyccl.Work %s %s>" % (self._name, state)


__all__ = ["Work"]
