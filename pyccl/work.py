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
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Optional

from pyccl._lib import ffi, lib
from pyccl.errors import StillRunning, error_class

# A wait with no timeout returns to Python this often, so Ctrl-C can
# interrupt it; the op keeps running and its Work stays valid.
_SLICE_MS = 100


class Work:
    """One collective op, possibly still running.

    Returned by every op called with ``async_op=True``.  ``wait()`` blocks
    until the op ends and returns its result buffer or raises its error.
    """

    def __init__(self, forget: Callable[["Work"], None], op: Any,
                 result: Any, keep: tuple, name: str) -> None:
        self._forget = forget  # tells the communicator the op has ended
        self._op = op          # raw ccl_op *, None once freed
        self._result = result  # what wait() returns
        self._keep = keep      # every Buffer the op touches
        self._name = name
        self._lock = threading.Lock()
        self._rc: Optional[int] = None
        self._detail = ""

    # -- completion; each runs with self._lock held -----------------------

    def _finish(self, rc: int) -> None:
        op = self._op
        if rc != lib.CCL_OK:
            self._detail = ffi.string(lib.ccl_op_error(op)).decode(
                "utf-8", "replace")
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
