"""Views of numpy arrays and CPU torch tensors as raw C buffers, no copies.

:func:`as_buffer` turns an array or tensor into a :class:`Buffer`: a pointer
the C core may read (and, for outputs, write), the element count and the C
element type.  It never copies: a numpy array is exposed through
``ffi.from_buffer`` and a torch tensor through ``tensor.data_ptr()``, so both
must be C-contiguous, and outputs must be writeable.

torch is optional: it is never imported here.  A tensor can only exist once
the caller has imported torch, so finding ``torch`` in ``sys.modules`` is
enough to recognise one.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from pyccl._lib import ffi
from pyccl.dtypes import (DtypeLike, dtype_name, dtype_size, from_numpy,
                          from_torch, parse_dtype)
from pyccl.errors import InvalidArgument

# Handed to C for empty buffers, so the core never sees a NULL pointer (a
# zero-size torch tensor reports data_ptr() == 0).
_EMPTY = ffi.new("char[16]")


@dataclass(frozen=True)
class Buffer:
    """A borrowed C view of an array or tensor.

    Attributes:
        obj: the array or tensor itself; holding the Buffer keeps it alive.
        ptr: cdata pointer to its first element (valid while ``obj`` lives;
            for numpy it also holds the buffer export).
        count: number of elements.
        dtype: C element type (``ccl_dtype``).
        kind: ``"numpy"`` or ``"torch"``.
    """
    obj: Any
    ptr: Any
    count: int
    dtype: int
    kind: str

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return dtype_size(self.dtype)

    @property
    def nbytes(self) -> int:
        """Size of the buffer in bytes."""
        return self.count * self.itemsize

    @property
    def address(self) -> int:
        """The buffer's start address, as an integer."""
        return int(ffi.cast("uintptr_t", self.ptr))

    def overlaps(self, other: "Buffer") -> bool:
        """True if the two buffers share any byte."""
        if self.nbytes == 0 or other.nbytes == 0:
            return False
        a, b = self.address, other.address
        return a < b + other.nbytes and b < a + self.nbytes


def torch_tensor_type() -> Optional[type]:
    """``torch.Tensor`` if torch has been imported, else None."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None) if torch is not None else None


def is_torch_tensor(obj: Any) -> bool:
    """True for a torch tensor (without importing torch)."""
    tensor_type = torch_tensor_type()
    return tensor_type is not None and isinstance(obj, tensor_type)


def _override(code: int, override: Optional[DtypeLike], natural: Any,
              what: str) -> int:
    """Applies a ``dtype=`` override: the bytes are reread as another type
    of the same width (e.g. numpy uint16 as bfloat16)."""
    if override is None:
        return code
    wanted = parse_dtype(override)
    if dtype_size(wanted) != dtype_size(code):
        raise InvalidArgument(
            "dtype=%s does not fit %s: its elements are %s (%d bytes), "
            "%s needs %d-byte elements"
            % (dtype_name(wanted), what, natural, dtype_size(code),
               dtype_name(wanted), dtype_size(wanted)))
    return wanted


def _numpy_buffer(arr: np.ndarray, writable: bool,
                  override: Optional[DtypeLike], what: str) -> Buffer:
    code = from_numpy(arr.dtype)
    if override is not None:  # (str() of a dtype is slow: only when needed)
        code = _override(code, override, str(arr.dtype), what)
    if not arr.flags.c_contiguous:
        raise InvalidArgument(
            "%s is not C-contiguous (shape %s, strides %s); pass "
            "np.ascontiguousarray(...) and copy the result back"
            % (what, arr.shape, arr.strides))
    if writable and not arr.flags.writeable:
        raise InvalidArgument("%s is read-only but is written by this op"
                              % what)
    if arr.size == 0:
        return Buffer(arr, _EMPTY, 0, code, "numpy")
    ptr = ffi.from_buffer("char[]", arr, require_writable=writable)
    return Buffer(arr, ptr, int(arr.size), code, "numpy")


def _torch_buffer(t: Any, override: Optional[DtypeLike], what: str) -> Buffer:
    device = t.device.type
    if device == "cuda":
        raise InvalidArgument(
            "%s is a CUDA tensor; this version of pyccl works on CPU "
            "tensors only (staging CUDA tensors through host memory comes "
            "in a later version): pass tensor.cpu() and copy back" % what)
    if device != "cpu":
        raise InvalidArgument("%s is on device %r; only CPU tensors are "
                              "supported" % (what, str(t.device)))
    if str(t.layout) != "torch.strided":
        raise InvalidArgument("%s has layout %s; only dense (strided) "
                              "tensors are supported" % (what, t.layout))
    code = _override(from_torch(t.dtype), override, str(t.dtype), what)
    if not t.is_contiguous():
        raise InvalidArgument(
            "%s is not contiguous (shape %s, stride %s); pass "
            "tensor.contiguous() and copy the result back"
            % (what, tuple(t.shape), t.stride()))
    if t.is_neg() or t.is_conj():
        raise InvalidArgument("%s has a lazy negation or conjugation bit; "
                              "call .resolve_neg() first" % what)
    count = int(t.numel())
    if count == 0:
        return Buffer(t, _EMPTY, 0, code, "torch")
    return Buffer(t, ffi.cast("void *", t.data_ptr()), count, code, "torch")


def as_buffer(obj: Any, *, writable: bool, dtype: Optional[DtypeLike] = None,
              what: str = "tensor") -> Buffer:
    """A zero-copy :class:`Buffer` over a numpy array or CPU torch tensor.

    Args:
        obj: a C-contiguous numpy array, or a contiguous CPU torch tensor.
        writable: the op writes into the buffer, so it must be writeable.
        dtype: override of the element type: the bytes are read as this
            type, which must have the same width (``"bfloat16"`` on a numpy
            uint16 array is the usual case).
        what: the argument's name, used in error messages.

    Raises:
        InvalidArgument: for any other object, an unsupported element type,
            a non-contiguous layout, a read-only output or a CUDA tensor.
    """
    if isinstance(obj, np.ndarray):
        return _numpy_buffer(obj, writable, dtype, what)
    if is_torch_tensor(obj):
        return _torch_buffer(obj, dtype, what)
    raise InvalidArgument("%s must be a numpy.ndarray or a torch.Tensor, "
                          "not %s" % (what, type(obj).__name__))


def empty_like_shape(template: Any, shape: tuple) -> Any:
    """A new uninitialised array or tensor of the given shape, with the
    same library and element type as ``template``."""
    if isinstance(template, np.ndarray):
        return np.empty(shape, dtype=template.dtype)
    torch = sys.modules["torch"]
    return torch.empty(shape, dtype=template.dtype, device="cpu")


__all__ = ["Buffer", "as_buffer", "is_torch_tensor", "empty_like_shape"]
