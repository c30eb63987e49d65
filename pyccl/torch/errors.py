"""pyccl's errors as torch sees them.

Every error a pyccl process group raises is an instance of two classes at
once: the pyccl class (``pyccl.PeerLost``, ``pyccl.Timeout``, ...: see
docs/errors.md), and ``torch.distributed.DistBackendError``, which torch's
own backends raise for failed collectives.  So ``except
torch.distributed.DistBackendError`` (or ``RuntimeError``) and ``except
pyccl.PeerLost`` (or ``ConnectionError``) both catch a lost peer.  The
classes live in this module under the pyccl names
(``pyccl.torch.errors.PeerLost``), so they pickle.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch.distributed as dist

import pyccl.errors as _base

_TORCH_CLASS: Dict[type, type] = {}


def _init(self: Any, detail: str = "", *, code: Optional[int] = None,
          call: Optional[str] = None) -> None:
    _base.CclError.__init__(self, detail, code=code)
    if call:
        # The torch call first; gloo's words for a deadline ("Timed out"),
        # so logs and tests that look for them find ours too.
        what = _base.strerror(self.code)
        detail = ": " + self.detail if self.detail else ""
        if isinstance(self, _base.StillRunning):
            # detail: how long the caller waited ("100ms")
            what = "Timed out waiting %s (the op is still running)" \
                % self.detail
            detail = ""
        elif isinstance(self, _base.Timeout):
            what = "Timed out (no progress within the group's timeout)"
        self.args = ("pyccl %s failed: %s%s" % (call, what, detail),)


def _make(cls: type) -> type:
    torch_cls = type(cls.__name__, (cls, dist.DistBackendError), {
        "__module__": __name__, "__init__": _init,
        "__doc__": "%s, raised through torch (also a DistBackendError)."
                   % cls.__name__})
    _TORCH_CLASS[cls] = torch_cls
    globals()[cls.__name__] = torch_cls
    return torch_cls


for _cls in [_base.CclError] + [getattr(_base, name) for name in _base.__all__
                                if isinstance(getattr(_base, name), type)]:
    _make(_cls)


def as_torch_error(exc: BaseException,
                   call: Optional[str] = None) -> BaseException:
    """``exc`` as the matching dual class (a pyccl error that is also a
    DistBackendError), its message naming the torch ``call``; anything
    else unchanged."""
    if isinstance(exc, dist.DistBackendError) or \
            not isinstance(exc, _base.CclError):
        return exc
    torch_cls = _TORCH_CLASS.get(type(exc))
    if torch_cls is None:
        return exc
    new = torch_cls(exc.detail, code=exc.code, call=call)
    new.__traceback__ = exc.__traceback__
    return new


def unsupported(call: str, why: str = "") -> NotImplementedError:
    """The error for a torch call that pyccl does not offer (never
    torch's misleading "No backend type associated with device type")."""
    return NotImplementedError(
        "torch.distributed backend 'pyccl' does not support %s%s"
        % (call, ": " + why if why else ""))


__all__ = ["as_torch_error", "unsupported"]
