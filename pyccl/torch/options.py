"""pyccl's own settings for a torch process group.

torch hands a backend whatever the caller passed as ``pg_options`` to
``init_process_group`` or ``new_group``; for "pyccl" that is an
:class:`Options` (or None).  Fields left at None fall back to the
environment, then to the defaults below, so a torchrun script can tune
pyccl without touching its code:

========================  =====================  =========================
field                     environment            default
========================  =====================  =========================
``peer_timeout``          ``PYCCL_PEER_TIMEOUT``  30 s (a stopped or cut-off
                                                  peer is declared lost)
``op_timeout``            ``PYCCL_OP_TIMEOUT``    torch's timeout for the
                                                  group (30 min by default)
``conns_per_peer``        ``PYCCL_CONNS``         0 (automatic)
``listen_host``           ``PYCCL_LISTEN_HOST``   found from the store's
                                                  host (see rendezvous)
``master``                ``PYCCL_MASTER``        rank 0 starts one
``restore_input``         --                      False
``star_max_bytes``,       --                      the Communicator's
``chunk_bytes``,
``spin_us``
========================  =====================  =========================

``restore_input`` is off because torch promises nothing about a tensor
whose collective failed, and the copy costs bandwidth; turn it on when a
comm hook retries a failed all-reduce with pyccl's fault-tolerant API.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional

from pyccl.errors import InvalidArgument


@dataclasses.dataclass
class Options:
    """``pg_options`` for backend "pyccl" (every field optional)."""
    peer_timeout: Optional[float] = None
    op_timeout: Optional[float] = None
    conns_per_peer: Optional[int] = None
    listen_host: Optional[str] = None
    master: Optional[str] = None
    restore_input: bool = False
    star_max_bytes: Optional[int] = None
    chunk_bytes: Optional[int] = None
    spin_us: Optional[int] = None

    def resolved(self, torch_timeout_s: float) -> "Options":
        """A copy with the environment and defaults filled in."""
        out = dataclasses.replace(self)
        if out.peer_timeout is None:
            out.peer_timeout = _env_float("PYCCL_PEER_TIMEOUT", 30.0)
        if out.op_timeout is None:
            out.op_timeout = _env_float("PYCCL_OP_TIMEOUT", torch_timeout_s)
        if out.conns_per_peer is None:
            out.conns_per_peer = _env_conns()
        if out.listen_host is None:
            out.listen_host = os.environ.get("PYCCL_LISTEN_HOST") or None
        if out.master is None:
            out.master = os.environ.get("PYCCL_MASTER") or None
        return out

    def communicator_kwargs(self) -> Dict[str, Any]:
        """The Communicator arguments these options set (resolved first)."""
        kwargs: Dict[str, Any] = {
            "peer_timeout": self.peer_timeout,
            "op_timeout": self.op_timeout,
            "conns_per_peer": self.conns_per_peer,
            "restore_input": self.restore_input,
        }
        for name in ("star_max_bytes", "chunk_bytes", "spin_us"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs


def as_options(value: Any) -> Options:
    """The :class:`Options` of a ``pg_options`` value (None or a dict of
    the same fields work too)."""
    if value is None:
        return Options()
    if isinstance(value, Options):
        return value
    if isinstance(value, dict):
        try:
            return Options(**value)
        except TypeError as exc:
            raise InvalidArgument("pg_options for pyccl: %s" % exc) from None
    raise InvalidArgument("pg_options for backend 'pyccl' must be a "
                          "pyccl.torch.Options, a dict or None, not %s"
                          % type(value).__name__)


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument("%s=%r is not a number" % (name, text)) from None
    if not value > 0:
        raise InvalidArgument("%s must be positive, not %r" % (name, text))
    return value


def _env_conns() -> int:
    """``PYCCL_CONNS``: 0 (automatic, also when unset) or 1..64."""
    text = os.environ.get("PYCCL_CONNS", "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 64:
        raise InvalidArgument("PYCCL_CONNS must be 0 (automatic) or 1..64, "
                              "not %r" % text)
    return value


__all__ = ["Options", "as_options"]
