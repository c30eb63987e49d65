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

from typing import Dict

import torch.distributed as dist

import pyccl.errors as _base

_TORCH_CLASS: Dict[type, type] = {}


def _make(cls: type) -> type:
    torch_cls = type(cls.__name__, (cls, dist.DistBackendError), {
        "__module__": __name__,
        "__doc__": "%s, raised through torch (also a DistBackendError)."
                   % cls.__name__})
    _TORCH_CLASS[cls] = torch_cls
    globals()[cls.__name__] = torch_cls
    return torch_cls


for _cls in [_base.CclError] + [getattr(_base, name) for name in _base.__all__
                                if isinstance(getattr(_base, name), type)]:
    _make(_cls)


def as_torch_error(exc: BaseException) -> BaseException:
    """``exc`` as the matching dual class (a pyccl error that is also a
    DistBackendError); anything else unchanged."""
    if isinstance(exc, dist.DistBackendError) or \
            not isinstance(exc, _base.CclError):
        return exc
    torch_cls = _TORCH_CLASS.get(type(exc))
    if torch_cls is None:
        return exc
    new = torch_cls(exc.detail, code=exc.code)
    new.__traceback__ = exc.__traceback__
    return new


__all__ = ["as_torch_error"]
