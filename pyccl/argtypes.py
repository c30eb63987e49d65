"""Sizes and counts as people type them on pyccl's command lines.

:func:`parse_size` and :func:`format_size` are the size notation of
``pyccl demo`` and ``pyccl bench`` ("4", "4K", "1M", "16MiB": powers of
1024).  The other functions are ``argparse`` types: each turns one
argument into a value or raises ``argparse.ArgumentTypeError`` with a
message that says what was expected.
"""
from __future__ import annotations

import argparse
from typing import List

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10,
          "M": 1 << 20, "MB": 1 << 20, "MIB": 1 << 20,
          "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes in ``"4"``, ``"4K"``, ``"1M"``, ``"16MiB"`` (powers of 1024)."""
    text = text.strip()
    digits = text.rstrip("KMGBIkmgbi")
    unit = text[len(digits):].upper()
    if not digits.isdigit() or unit not in _UNITS:
        raise ValueError("bad size %r (examples: 4, 4K, 1M, 16M)" % text)
    return int(digits) * _UNITS[unit]


def format_size(nbytes: int) -> str:
    """``4096`` -> ``"4K"``; the inverse of :func:`parse_size` where exact."""
    for unit in ("G", "M", "K"):
        if nbytes >= _UNITS[unit] and nbytes % _UNITS[unit] == 0:
            return "%d%s" % (nbytes // _UNITS[unit], unit)
    return str(nbytes)


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_at_least(text, 1)


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer, not %r"
                                         % text) from None
    if value < low:
        raise argparse.ArgumentTypeError("must be >= %d, not %d"
                                         % (low, value))
    return value


def int_list(text: str) -> List[int]:
    """Comma-separated integers >= 1, like ``"2,4"`` (peer counts)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected integers like 2,4") \
            from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("peer counts must be >= 1")
    return values


def f32_sizes(text: str) -> List[int]:
    """Comma-separated sizes (``"4,4K,1M"``), each a positive whole number
    of f32 elements (a multiple of 4 bytes)."""
    try:
        values = [parse_size(part) for part in text.split(",")
                  if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not values:
        raise argparse.ArgumentTypeError("no sizes")
    for v in values:
        if v < 4 or v % 4:
            raise argparse.ArgumentTypeError(
                "size %d is not a positive whole number of f32 elements" % v)
    return values


__all__ = ["parse_size", "format_size", "positive_int", "nonneg_int",
           "int_list", "f32_sizes"]
