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

JSON lines: ``PYCCL_LOG_FORMAT=json`` (or :func:`use_json`) gives the
``pyccl`` logger a handler of its own that writes one JSON object per
line to stderr (``time``, ``level``, ``logger``, ``message``, plus
``rank``, ``epoch``, ``peer``, ``addr``, ``event`` where the line names
them; see :class:`JsonFormatter`), and stops its records from also
reaching the application's handlers (no line twice).

Besides the core's lines, :func:`log_membership` writes one line per
membership change seen by a member (``update_topology``: a new epoch, a
rejection, a failure), on the ``pyccl`` logger too.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import re
import sys
import threading
import time
from typing import IO, Any, Dict, Optional, Tuple

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
        if configured_format() == "json" and _json_handler is None:
            use_json()
        lib.ccl_log_capture(1)
        reader = _Reader()
        reader.start()
        _reader = reader


# ---- JSON lines ----

_FIELDS = [
    ("rank", re.compile(r"\brank (\d+)")),
    ("epoch", re.compile(r"\bepoch (\d+)")),
    ("peer", re.compile(r"\bpeer (\d+)\b")),
    ("addr", re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3}:\d+|\[[0-9a-fA-F:]+\]:\d+)")),
]
# What a line is about, for filtering in a log shipper (first match wins).
_EVENTS = [
    ("slow_link", re.compile(r"slow link|no longer slow")),
    ("op_failed", re.compile(r"\bop \d+ \(.*\) failed")),
    ("rejected", re.compile(r"refused|rejected|expelled|removed from")),
    ("peer_lost", re.compile(r"\blost\b|silent for|left the group")),
    ("op_failed", re.compile(r"\bfailed\b|\baborted\b")),
    ("membership", re.compile(r"joined|left epoch|epoch \d+ (formed|ended)|"
                              r"registered|came back|adopted|new epoch")),
]


def fields_of(message: str) -> Dict[str, Any]:
    """The structured fields found in a log line: ``rank``, ``epoch``,
    ``peer`` (ints) and ``addr`` (the first "host:port"), where the line
    names them, and ``event`` (slow_link, rejected, peer_lost, op_failed,
    membership) where one applies.  Best effort: the lines are written for
    people; the first match of each wins."""
    out: Dict[str, Any] = {}
    for name, rx in _FIELDS:
        m = rx.search(message)
        if m:
            out[name] = m.group(1) if name == "addr" else int(m.group(1))
    for name, rx in _EVENTS:
        if rx.search(message):
            out["event"] = name
            break
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (Unix seconds), ``level``,
    ``logger``, ``message``, the fields of :func:`fields_of`, any
    ``extra={"pyccl": {...}}`` given to the logging call, and ``exc``
    (the traceback text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc: Dict[str, Any] = {"time": round(record.created, 6),
                               "level": record.levelname.lower(),
                               "logger": record.name, "message": message}
        doc.update(fields_of(message))
        extra = getattr(record, "pyccl", None)
        if isinstance(extra, dict):
            doc.update(extra)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


_json_handler: Optional[logging.Handler] = None


def use_json(stream: Optional[IO[str]] = None) -> logging.Handler:
    """Makes the ``pyccl`` logger write JSON lines to ``stream``
    (default stderr) through a handler of its own, and stop propagating
    to the root logger (so no line appears twice).  Returns the handler;
    calling it again replaces the previous one."""
    global _json_handler
    if _json_handler is not None:
        logger.removeHandler(_json_handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    _json_handler = handler
    return handler


def configured_format() -> str:
    """``PYCCL_LOG_FORMAT``: "json" or "text" (the default; an unknown
    value is warned about and ignored)."""
    name = os.environ.get("PYCCL_LOG_FORMAT", "").strip().lower()
    if name in ("", "text"):
        return "text"
    if name != "json":
        warn_caller("PYCCL_LOG_FORMAT=%r is not json or text; ignored" % name,
                    RuntimeWarning)
        return "text"
    return name


# ---- membership as a member sees it ----

def log_membership(before: Tuple[int, int, int], after: Tuple[int, int, int],
                   rc: int, detail: str) -> None:
    """One line for the outcome of an ``update_topology``: (epoch, rank,
    world_size) before and after, the result code and its detail."""
    epoch, rank, size = before
    if rc == lib.CCL_OK:
        if after != before:
            logger.info("rank %d, epoch %d: new epoch %d: now rank %d of %d "
                        "(was %d of %d)", rank, epoch, after[0], after[1],
                        after[2], rank, size)
        return
    if rc == lib.CCL_ERR_REJECTED:
        logger.warning("rank %d, epoch %d: rejected by the master: %s", rank,
                       epoch, detail)
    elif rc != lib.CCL_ERR_INTERRUPTED:
        logger.warning("rank %d, epoch %d: update_topology failed: %s: %s",
                       rank, epoch, ffi.string(lib.ccl_strerror(rc)).decode(),
                       detail)


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

__all__ = ["start_reader", "logger", "LEVELS", "configured_level",
           "configured_format", "use_json", "JsonFormatter", "fields_of",
           "log_membership"]
