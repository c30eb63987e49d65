"""Argument checks shared by the Communicator's ops (Python checks every
argument before anything reaches the C core, so a bad call raises
:class:`~pyccl.InvalidArgument` and the ranks' op sequences stay
aligned)."""
from __future__ import annotations

from typing import Any

from pyccl.buffers import Buffer
from pyccl.dtypes import dtype_name
from pyccl.errors import InvalidArgument, warn_caller

INT_MAX = 2**31 - 1


def int_arg(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) \
            or not low <= value <= high:
        raise InvalidArgument("%s must be an int in %d..%d, not %r"
                              % (name, low, high, value))
    return value


def check_sizes(big: Buffer, small: Buffer, n: int, big_name: str,
                 want: str) -> None:
    """``big`` must hold n times ``small``'s elements, of the same type."""
    if big.dtype != small.dtype:
        raise InvalidArgument("%s has element type %s, expected %s"
                              % (big_name, dtype_name(big.dtype),
                                 dtype_name(small.dtype)))
    if big.count != small.count * n:
        raise InvalidArgument("%s has %d elements, expected %s = %d"
                              % (big_name, big.count, want,
                                 small.count * n))


def same_type(a: Buffer, b: Buffer, a_name: str) -> None:
    if a.dtype != b.dtype:
        raise InvalidArgument("%s has element type %s, expected %s"
                              % (a_name, dtype_name(a.dtype),
                                 dtype_name(b.dtype)))


def deprecated(old: str, new: str) -> None:
    warn_caller("pyccl: %s is deprecated; use %s (torch's spelling)"
                % (old, new), DeprecationWarning)


def no_overlap(a: Buffer, b: Buffer) -> None:
    if a.address == b.address and a.nbytes == b.nbytes:
        return  # exactly in place, which the core supports
    if a.overlaps(b):
        raise InvalidArgument("tensor and out overlap in memory")


__all__ = ["INT_MAX", "int_arg", "check_sizes", "same_type", "deprecated",
           "no_overlap"]
