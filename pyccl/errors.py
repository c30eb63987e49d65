"""pyccl's exceptions: one hierarchy, one error path.

Every failure, whether reported by the C core or found by Python's argument
checks before any C call, is raised as a subclass of :class:`CclError`.  Each
subclass also inherits the matching builtin, so code that only knows the
standard library still catches it (``except TimeoutError``, ``except
ValueError``, ``except ConnectionError``).

:func:`check` is the single place that turns a C result code into an
exception; the table below is built from the constants of the compiled
header, so the mapping can never drift from the C side.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from pyccl._lib import ffi, lib

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def strerror(code: int) -> str:
    """The C core's static, human-readable name of a result code."""
    return ffi.string(lib.ccl_strerror(int(code))).decode("ascii", "replace")


class CclError(Exception):
    """Base class of every pyccl error.

    Attributes:
        code: the ``ccl_result`` code (an ``int``; see ``docs/errors.md``).
        detail: what failed, in words ("" when nothing more is known).

    The message is ``"<name of the code>: <detail>"``.
    """

    #: The result code a class stands for; instances carry their own ``code``.
    default_code: int = lib.CCL_ERR_INTERNAL

    def __init__(self, detail: str = "", *, code: int | None = None) -> None:
        self.code = int(self.default_code if code is None else code)
        self.detail = str(detail)
        message = strerror(self.code)
        if self.detail:
            message += ": " + self.detail
        super().__init__(message)

    def __reduce__(self):
        # Exceptions pickle as cls(*args) by default, which would lose the
        # code; errors cross process boundaries (multiprocessing), so keep it.
        return (_rebuild, (type(self), self.detail, self.code))


def _rebuild(cls: type, detail: str, code: int) -> CclError:
    return cls(detail, code=code)


class InvalidArgument(CclError, ValueError):
    """A bad argument: wrong type, dtype, size, layout or value."""
    default_code = lib.CCL_ERR_INVALID_ARG


class OutOfMemory(CclError, MemoryError):
    """An allocation failed."""
    default_code = lib.CCL_ERR_NOMEM


class CommIOError(CclError, ConnectionError):
    """A socket call failed."""
    default_code = lib.CCL_ERR_IO


class Timeout(CclError, TimeoutError):
    """A deadline passed (for ``Work.wait(timeout)`` the op stays pending)."""
    default_code = lib.CCL_ERR_TIMEOUT


class PeerLost(CclError, ConnectionError):
    """A peer closed, crashed or stalled."""
    default_code = lib.CCL_ERR_PEER_LOST


class ProtocolError(CclError, ConnectionError):
    """A peer sent bytes that break the protocol."""
    default_code = lib.CCL_ERR_PROTOCOL


class VersionMismatch(CclError, ConnectionError):
    """The other end speaks another protocol version."""
    default_code = lib.CCL_ERR_VERSION


class Mismatch(CclError, ValueError):
    """Ranks disagree about an op (its size, dtype or kind)."""
    default_code = lib.CCL_ERR_MISMATCH


class Aborted(CclError, RuntimeError):
    """The op was aborted, by a peer or by close."""
    default_code = lib.CCL_ERR_ABORTED


class MasterUnreachable(CclError, ConnectionError):
    """The master could not be reached."""
    default_code = lib.CCL_ERR_MASTER_UNREACHABLE


class TooFewPeers(CclError, RuntimeError):
    """Not enough peers to run the op."""
    default_code = lib.CCL_ERR_TOO_FEW_PEERS


class Closed(CclError, RuntimeError):
    """The communicator (or master) was closed."""
    default_code = lib.CCL_ERR_CLOSED


class InvalidUsage(CclError, RuntimeError):
    """A call that is not allowed in the current state."""
    default_code = lib.CCL_ERR_INVALID_USAGE


class AuthError(CclError, PermissionError):
    """Authentication failed."""
    default_code = lib.CCL_ERR_AUTH


class Rejected(CclError, ConnectionError):
    """The master refused the request."""
    default_code = lib.CCL_ERR_REJECTED


class InternalError(CclError, RuntimeError):
    """A bug in pyccl; please report it."""
    default_code = lib.CCL_ERR_INTERNAL


class StillRunning(Timeout):
    """A wait ran out of time while the op is still running (it stays
    pending and may be waited for again).  A :class:`Timeout` too."""
    default_code = lib.CCL_ERR_PENDING


class Interrupted(CclError, InterruptedError):
    """A blocking call stopped because the caller asked it to (pyccl turns
    Ctrl-C during ``Communicator(...)`` or ``update_topology()`` into this,
    then raises the ``KeyboardInterrupt`` itself)."""
    default_code = lib.CCL_ERR_INTERRUPTED


_BY_CODE: dict[int, type[CclError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgument, OutOfMemory, CommIOError, Timeout, PeerLost,
        ProtocolError, VersionMismatch, Mismatch, Aborted, MasterUnreachable,
        TooFewPeers, Closed, InvalidUsage, AuthError, Rejected, InternalError,
        StillRunning, Interrupted,
    )
}


def error_class(code: int) -> type[CclError]:
    """The exception class for a result code (``CclError`` if unknown)."""
    return _BY_CODE.get(int(code), CclError)


def check(rc: int, detail: str = "") -> None:
    """Raises the exception mapped to ``rc``; does nothing for ``CCL_OK``."""
    if rc != lib.CCL_OK:
        raise error_class(rc)(detail, code=rc)


_ERRLEN = 1024


def create_checked(create: Any, cfg: Any, ctype: str, destroy: Any) -> Any:
    """Runs a ``ccl_*_create(cfg, &out, err, errlen)`` of the core
    (``ctype`` names ``out``'s type) and returns ``out``, with ``destroy``
    as its ``ffi.gc`` safety net; raises the mapped error, with the core's
    message, if it fails."""
    out = ffi.new(ctype + " **")
    err = ffi.new("char[]", _ERRLEN)
    check(create(cfg, out, err, _ERRLEN),
          ffi.string(err).decode("utf-8", "replace"))
    return ffi.gc(out[0], destroy)


def warn_caller(message: str, category: type) -> None:
    """Warns, naming the caller's line: the first frame outside pyccl, however
    deep inside the package the warning is found (``Master(key_file=...)``,
    ``resolve_key()`` and ``read_key_file()`` all name their caller)."""
    level, frame = 2, sys._getframe(1)  # 1 would name warn_caller itself
    while frame is not None and os.path.abspath(
            frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        level += 1
        frame = frame.f_back
    warnings.warn(message, category, stacklevel=level)


__all__ = [
    "CclError", "InvalidArgument", "OutOfMemory", "CommIOError", "Timeout",
    "PeerLost", "ProtocolError", "VersionMismatch", "Mismatch", "Aborted",
    "MasterUnreachable", "TooFewPeers", "Closed", "InvalidUsage", "AuthError",
    "Rejected", "InternalError", "StillRunning", "Interrupted", "check", "create_checked",
    "error_class", "strerror", "warn_caller",
]
