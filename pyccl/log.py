"""The C core's log lines, delivered through Python's :mod:`logging`.

The core logs membership changes, refused connections and warnings
(``docs/security.md`` says what is logged).  Its lines are produced on its
own threads, which must never call into Python; so on the first use of
a :class:`~pyccl.Master` or :class:`~pyccl.Communicator` in a process,
:func:`start_reader` turns on the core's capture queue and starts one
daemon *Python* thread ("pyccl-log") that takes lines from it
(``ccl_log_read``, 100 ms at a time, the GIL released while it waits) and
hands each to ``logging.getLogger("pyccl")`` at the matching level.

Levels: ``PYCCL_LOG_LEVEL`` (``error``, ``warning``, ``info`` or
``debug``) sets both what the core produces and the level of the
``pyccl`` logger.  Without it the core produces lines up to ``info`` and
the logger's level is left to the application.

pyccl adds no handler: where the application configured no logging,
Python's last-resort handler prints warnings and errors on stderr, and
the rest is dropped.  To see the ``info`` lines (joins, departures, new
epochs), configure logging, e.g. ``logging.basicConfig(level="INFO")``;
``pyccl master`` does so.

Lines still queued when the interpreter exits are delivered by an
:mod:`atexit` hook.  After ``os.fork()`` the child starts its own reader
on its next use of pyccl.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Optional

from pyccl._lib import ffi, lib
from pyccl.errors import warn_caller

#: The logger that carries the core's lines.
logger = logging.getLogger("pyccl")

#: ``PYCCL_LOG_LEVEL`` values, with the core's and Python's levels.
LEVELS = {
    "error": (lib.CCL_LOG_ERROR, logging.ERROR),
    "warning": (lib.CCL_LOG_WARNING, logging.WARNING),
    "info": (lib.CCL_LOG_INFO, logging.INFO),
    "debug": (lib.CCL_LOG_DEBUG, logging.DEBUG),
}
_PY_LEVEL = {core: py for core, py in LEVELS.values()}

# How long one ccl_log_read waits for a line: the reader's only latency
# (and how long it takes to notice that it should stop).
_POLL_MS = 100
_LINE_CAP = 1024

_lock = threading.Lock()
_reader: Optional["_Reader"] = None


class _Reader(threading.Thread):
    """Takes the captured lines from the core and logs them."""

    def __init__(self) -> None:
        super().__init__(name="pyccl-log", daemon=True)
        self.stop = threading.Event()
        self._level = ffi.new("int *")
        self._buf = ffi.new("char[]", _LINE_CAP)

    def run(self) -> None:
        while not self.stop.is_set():
            self.forward(_POLL_MS)

    def forward(self, timeout_ms: int) -> bool:
        """Logs one line if one arrives within ``timeout_ms``."""
        if not lib.ccl_log_read(self._level, self._buf, _LINE_CAP,
                                timeout_ms):
            return False
        text = ffi.string(self._buf).decode("utf-8", "replace")
        logger.log(_PY_LEVEL.get(self._level[0], logging.WARNING), "%s", text)
        return True


def configured_level() -> Optional[str]:
    """The ``PYCCL_LOG_LEVEL`` name in force, or None when unset (an
    unknown value is warned about and ignored)."""
    name = os.environ.get("PYCCL_LOG_LEVEL", "").strip().lower()
    if not name:
        return None
    if name not in LEVELS:
        warn_caller("PYCCL_LOG_LEVEL=%r is not one of %s; ignored"
                    % (name, ", ".join(LEVELS)), RuntimeWarning)
        return None
    return name


def start_reader() -> None:
    """Applies ``PYCCL_LOG_LEVEL`` and starts the reader, once per process
    (later calls return at once)."""
    global _reader
    if _reader is not None:
        return
    with _lock:
        if _reader is not None:
            return
        name = configured_level()
        if name is not None:
            core_level, py_level = LEVELS[name]
            lib.ccl_log_set_level(core_level)
            logger.setLevel(py_level)
        lib.ccl_log_capture(1)
        reader = _Reader()
        reader.start()
        _reader = reader


def _stop_at_exit() -> None:
    """Stops the reader, delivers what is still queued, and hands later
    lines (from objects torn down after this) back to stderr."""
    global _reader
    reader = _reader
    if reader is None:
        return
    reader.stop.set()
    reader.join(2.0)
    while reader.forward(0):
        pass
    lib.ccl_log_capture(0)
    _reader = None


def _after_fork_in_child() -> None:
    # The parent's reader thread does not exist in the child; the queue
    # (inherited, capture still on) is read again once the child uses
    # pyccl.
    global _reader, _lock
    _reader = None
    _lock = threading.Lock()


atexit.register(_stop_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["start_reader", "logger", "LEVELS", "configured_level"]
