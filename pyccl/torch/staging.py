"""Tensors as the C core needs them, and results back where torch wants.

The core reads and writes CPU memory, contiguous, of the element types of
:mod:`pyccl.dtypes`.  :func:`stage` gives, for any dense tensor, such a
host tensor and a :class:`Staged` record of how to bring a result back:

- a contiguous CPU tensor of a supported type is used as it is (no copy);
- ``torch.bool`` is viewed as ``uint8`` (no copy), and the reductions are
  mapped so that the bytes stay 0 or 1 (see :func:`reduce_op_for`);
- for an op that only moves bytes (broadcast, gathers, scatters,
  all-to-all, send/recv), any other element type (complex, float8, ...)
  is viewed as bytes;
- a non-contiguous CPU tensor is copied into a contiguous one, and the
  result copied back;
- a tensor on an accelerator (CUDA) is *staged through pinned host
  memory*: a page-locked host tensor of the same shape and type is
  filled with a synchronous device-to-host copy before the op is posted
  (when the op reads the tensor), and the result is copied back with a
  synchronous host-to-device copy before the op's Work completes (when
  the op writes it).  Both copies are blocking (``non_blocking=False``),
  so the core never sees memory the device is still writing, and a
  kernel launched after ``wait()`` (or the future's callback) sees the
  result; nothing depends on streams.  It costs two copies over PCIe and
  one host buffer per tensor, and is meant for correctness (a model on
  the GPU with pyccl as the one backend), not speed.

:func:`device_to_host` and :func:`host_to_device` are the only places
that touch device memory, so a test can stand in for a GPU.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional

import torch

from pyccl.dtypes import ReduceOp, from_torch
from pyccl.errors import InvalidArgument

_BYTE_VIEWABLE = {torch.bool, torch.complex32, torch.complex64,
                  torch.complex128}


def core_elements(dtype: torch.dtype) -> int:
    """Elements the core sees per element of ``dtype`` in an op that
    only moves data: 1, or the element size for types moved as bytes."""
    if dtype == torch.bool or supported(dtype):
        return 1
    return torch.empty(0, dtype=dtype).element_size()


def _reduced_by_core(dtype: torch.dtype) -> bool:
    try:
        from_torch(dtype)
    except InvalidArgument:
        return False
    return True


_SUPPORTED = frozenset(
    dt for dt in vars(torch).values()
    if isinstance(dt, torch.dtype) and _reduced_by_core(dt))


def supported(dtype: torch.dtype) -> bool:
    """True if the core reduces this element type itself."""
    return dtype in _SUPPORTED


def on_device(t: torch.Tensor) -> bool:
    """True for a tensor whose memory the CPU cannot address (CUDA...)."""
    return t.device.type != "cpu"


def pinned_empty(t: torch.Tensor) -> torch.Tensor:
    """A host tensor like ``t``, page-locked when CUDA is there to use it
    (pinned memory makes the copies direct DMA transfers)."""
    pin = t.device.type == "cuda" and torch.cuda.is_available()
    return torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=pin)


def device_to_host(t: torch.Tensor, host: torch.Tensor) -> None:
    """Blocking copy of a device tensor into host memory."""
    host.copy_(t, non_blocking=False)


def host_to_device(host: torch.Tensor, t: torch.Tensor) -> None:
    """Blocking copy of a host result into the device tensor."""
    t.copy_(host, non_blocking=False)


class Staged:
    """A tensor the caller passed, and the host tensor the core uses.

    Attributes:
        orig: the caller's tensor.
        host: contiguous CPU tensor of a type the core takes.
        copied: ``host`` is a copy (device or non-contiguous), so a result
            must be copied back by :meth:`write_back`.
        staged: the copy is device staging.
    """
    __slots__ = ("orig", "host", "copied", "staged", "_full")

    def __init__(self, orig: torch.Tensor, host: torch.Tensor, full: Any,
                 copied: bool, staged: bool) -> None:
        self.orig = orig
        self.host = host
        self._full = full  # the copy before any view for the core
        self.copied = copied
        self.staged = staged

    def write_back(self) -> None:
        """Copies the result into the caller's tensor if ``host`` is a
        copy; a no-op otherwise."""
        if not self.copied:
            return
        if self.staged:
            host_to_device(self._full, self.orig)
        else:
            self.orig.copy_(self._full)


def stage(t: Any, *, reads: bool = True, reduces: bool = False,
          what: str = "tensor") -> Staged:
    """The host tensor for ``t`` (see the module docstring).

    Args:
        reads: the op reads ``t`` (a device tensor is copied in).
        reduces: the op reduces elements (then only types the core
            reduces, and bool, are accepted).
    """
    if not isinstance(t, torch.Tensor):
        raise InvalidArgument("%s must be a torch.Tensor, not %s"
                              % (what, type(t).__name__))
    if (t.dtype in _SUPPORTED and t.is_contiguous() and not on_device(t)
            and t.layout == torch.strided and not t.is_neg()):
        return Staged(t, t, t, False, False)  # the common case: as it is
    if t.layout != torch.strided:
        raise InvalidArgument("%s has layout %s; this op takes dense tensors"
                              % (what, t.layout))
    staged = on_device(t)
    if staged:
        full = pinned_empty(t)
        if reads:
            device_to_host(t, full)
        copied = True
    elif t.is_contiguous() and not t.is_neg() and not t.is_conj():
        full, copied = t, False
    else:
        full = t.resolve_conj().resolve_neg().contiguous() \
            if reads else torch.empty(t.shape, dtype=t.dtype)
        copied = True
    host = _view_for_core(full, reduces, what)
    return Staged(t, host, full, copied, staged)


def _view_for_core(t: torch.Tensor, reduces: bool, what: str) -> torch.Tensor:
    dtype = t.dtype
    if supported(dtype):
        return t
    if dtype == torch.bool:
        return t.view(torch.uint8)
    if reduces:
        if dtype.is_complex:
            return torch.view_as_real(t)
        raise InvalidArgument(
            "%s has element type %s, which pyccl does not reduce "
            "(float16/32/64, bfloat16, int8..64, uint8..64 and bool are "
            "reduced)" % (what, dtype))
    return t.reshape(-1).view(torch.uint8)  # moved as bytes


# torch.bool as uint8 bytes: map each reduction to one that keeps 0/1.
_BOOL_OPS = {ReduceOp.SUM: ReduceOp.MAX, ReduceOp.MAX: ReduceOp.MAX,
             ReduceOp.PROD: ReduceOp.MIN, ReduceOp.MIN: ReduceOp.MIN,
             ReduceOp.BAND: ReduceOp.BAND, ReduceOp.BOR: ReduceOp.BOR,
             ReduceOp.BXOR: ReduceOp.BXOR}


def reduce_op_for(op: ReduceOp, dtype: torch.dtype) -> ReduceOp:
    """The core's reduction that computes ``op`` on tensors of ``dtype``
    (bool: SUM is logical or, PRODUCT logical and, as in gloo)."""
    if dtype == torch.bool:
        mapped = _BOOL_OPS.get(op)
        if mapped is None:
            raise InvalidArgument("reduce op %s is not defined on torch.bool"
                                  % op.name)
        return mapped
    if dtype.is_complex and op not in (ReduceOp.SUM, ReduceOp.AVG):
        raise InvalidArgument("reduce op %s is not defined on complex "
                              "tensors" % op.name)
    return op


def host_buffer(count: int, like: torch.Tensor) -> torch.Tensor:
    """A flat host tensor of ``count`` elements of ``like``'s type (pinned
    when ``like`` lives on a CUDA device), for gathering into lists."""
    pin = like.device.type == "cuda" and torch.cuda.is_available()
    return torch.empty(count, dtype=like.dtype, device="cpu", pin_memory=pin)


def copy_in(t: torch.Tensor, host: torch.Tensor) -> None:
    """Fills the host tensor ``host`` (same number of elements) from
    ``t``, wherever ``t`` lives."""
    host = host.view(t.shape)
    if on_device(t):
        device_to_host(t, host)
    else:
        host.copy_(t)


def copy_out(host: torch.Tensor, t: torch.Tensor) -> None:
    """Writes the host result ``host`` (same number of elements) into
    ``t``, wherever ``t`` lives."""
    host = host.view(t.shape)
    if on_device(t):
        host_to_device(host, t)
    else:
        t.copy_(host)


def contiguous_block(tensors: List[torch.Tensor]) -> Optional[torch.Tensor]:
    """A flat tensor over the memory of ``tensors`` when they are CPU,
    contiguous, of one type and lie back to back in one storage, in order
    (``list(flat.chunk(n))`` does that): a gather can then land in them
    directly.  None otherwise."""
    if not tensors:
        return None
    first = tensors[0]
    if on_device(first) or first.layout != torch.strided:
        return None
    k = first.numel()
    if k == 0:
        return None
    step = k * first.element_size()
    base = first.data_ptr()
    storage = first.untyped_storage().data_ptr()
    for i, t in enumerate(tensors):
        if (t.device.type != "cpu" or t.dtype != first.dtype
                or t.numel() != k or not t.is_contiguous()
                or t.data_ptr() != base + i * step or t.is_neg()
                or t.is_conj() or t.untyped_storage().data_ptr() != storage):
            return None
    flat = torch.empty(0, dtype=first.dtype)
    flat.set_(first.untyped_storage(), first.storage_offset(),
              (k * len(tensors),))
    return flat


def write_all_back(staged: List[Staged]) -> Optional[Callable[[], None]]:
    """A function that writes back every copied tensor of ``staged``, or
    None when nothing was copied."""
    copies = [s for s in staged if s.copied]
    if not copies:
        return None

    def finish() -> None:
        for s in copies:
            s.write_back()
    return finish


__all__ = ["Staged", "stage", "reduce_op_for", "supported", "on_device",
           "write_all_back", "device_to_host", "host_to_device",
           "pinned_empty", "host_buffer", "copy_in", "copy_out",
           "contiguous_block", "core_elements"]
