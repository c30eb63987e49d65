"""Element types, reduction operators and algorithms: Python names to C codes.

Element types come from numpy dtypes, torch dtypes, or names
(``"f32"``, ``"float32"``, ``"bf16"``, ``"bfloat16"``, ...).  numpy has no
bfloat16, so a numpy ``uint16`` array passed with ``dtype="bfloat16"`` has
its bits read as bfloat16.  bool and complex types are refused.
"""
from __future__ import annotations

import enum
from typing import Dict, Any, Union

import numpy as np

from pyccl._lib import lib
from pyccl.errors import InvalidArgument


class ReduceOp(enum.IntEnum):
    """Reduction operators; their names in any case (``"sum"``, ``"avg"``,
    ``"min"``, ``"max"``, ``"prod"``, ``"product"``, ``"band"``, ``"bor"``,
    ``"bxor"``) are accepted wherever a ReduceOp is.  ``PRODUCT`` is
    torch's name for ``PROD``.  The bitwise ones take integer types only
    (InvalidArgument on floating-point types)."""
    SUM = lib.CCL_SUM
    AVG = lib.CCL_AVG
    MIN = lib.CCL_MIN
    MAX = lib.CCL_MAX
    PROD = lib.CCL_PROD
    PRODUCT = lib.CCL_PROD  # an alias: ReduceOp.PRODUCT is ReduceOp.PROD
    BAND = lib.CCL_BAND     # bitwise and, or, xor: integer types only
    BOR = lib.CCL_BOR
    BXOR = lib.CCL_BXOR


#: Canonical short name of each C element type.
DTYPE_NAMES: dict[int, str] = {
    lib.CCL_F32: "f32", lib.CCL_F64: "f64", lib.CCL_F16: "f16",
    lib.CCL_BF16: "bf16",
    lib.CCL_I8: "i8", lib.CCL_I16: "i16", lib.CCL_I32: "i32",
    lib.CCL_I64: "i64",
    lib.CCL_U8: "u8", lib.CCL_U16: "u16", lib.CCL_U32: "u32",
    lib.CCL_U64: "u64",
}

_ALIASES: dict[str, int] = {}
for _code, _short in DTYPE_NAMES.items():
    _ALIASES[_short] = _code
for _names, _code in (
    (("float32", "float", "single"), lib.CCL_F32),
    (("float64", "double"), lib.CCL_F64),
    (("float16", "half"), lib.CCL_F16),
    (("bfloat16",), lib.CCL_BF16),
    (("int8",), lib.CCL_I8), (("int16", "short"), lib.CCL_I16),
    (("int32", "int"), lib.CCL_I32), (("int64", "long"), lib.CCL_I64),
    (("uint8",), lib.CCL_U8), (("uint16",), lib.CCL_U16),
    (("uint32",), lib.CCL_U32), (("uint64",), lib.CCL_U64),
):
    for _name in _names:
        _ALIASES[_name] = _code

# numpy dtype.name -> code.  numpy has no bfloat16 (see module docstring).
_NUMPY: dict[str, int] = {
    "float32": lib.CCL_F32, "float64": lib.CCL_F64, "float16": lib.CCL_F16,
    "int8": lib.CCL_I8, "int16": lib.CCL_I16, "int32": lib.CCL_I32,
    "int64": lib.CCL_I64, "uint8": lib.CCL_U8, "uint16": lib.CCL_U16,
    "uint32": lib.CCL_U32, "uint64": lib.CCL_U64,
}

# str(torch dtype) without "torch." -> code.
_TORCH: dict[str, int] = dict(_NUMPY, bfloat16=lib.CCL_BF16)

_NUMPY_OF: dict[int, np.dtype] = {code: np.dtype(name)
                                  for name, code in _NUMPY.items()}
# A numpy array that holds bfloat16 bits is a uint16 array.
_NUMPY_OF[lib.CCL_BF16] = np.dtype("uint16")

DtypeLike = Union[str, np.dtype, type, Any]


def dtype_size(code: int) -> int:
    """Bytes per element of a C element type."""
    return int(lib.ccl_dtype_size(code))


def dtype_name(code: int) -> str:
    """Short name ("f32", "bf16", ...) of a C element type."""
    return DTYPE_NAMES.get(code, "dtype %d" % code)


def numpy_dtype(code: int) -> np.dtype:
    """The numpy dtype that holds elements of a C type (uint16 for bf16)."""
    return _NUMPY_OF[code]


def _refuse(what: str) -> InvalidArgument:
    return InvalidArgument(
        "unsupported element type %s (supported: float16/32/64, bfloat16, "
        "int8..64, uint8..64)" % what)


# Native dtypes already seen -> C code: the per-op lookup must be cheap
# (dtype.name builds a string every time).
_SEEN: Dict[Any, int] = {}


def from_numpy(dt: np.dtype) -> int:
    """C element type of a numpy dtype; InvalidArgument for bool, complex,
    structured, object or non-native byte order types."""
    code = _SEEN.get(dt)
    if code is not None:
        return code
    code = _from_numpy_slow(dt)
    _SEEN[np.dtype(dt)] = code
    return code


def _from_numpy_slow(dt: Any) -> int:
    dt = np.dtype(dt)
    code = _NUMPY.get(dt.name)
    if code is None:
        raise _refuse("numpy %s" % dt)
    if not dt.isnative:
        raise InvalidArgument(
            "numpy dtype %s has non-native byte order; convert with "
            ".astype(%r)" % (dt.str, dt.newbyteorder("=").str))
    return code


def from_torch(dt: Any) -> int:
    """C element type of a torch dtype; InvalidArgument for bool, complex
    and the other types the C core does not reduce."""
    name = str(dt)
    code = _TORCH.get(name[6:] if name.startswith("torch.") else name)
    if code is None:
        raise _refuse(name)
    return code


def parse_dtype(value: DtypeLike) -> int:
    """C element type of a name ("f32", "bfloat16", ...), a numpy dtype or
    scalar type, or a torch dtype."""
    if isinstance(value, str):
        code = _ALIASES.get(value.strip().lower())
        if code is None:
            raise InvalidArgument(
                "unknown dtype name %r (known: %s)"
                % (value, ", ".join(sorted(_ALIASES))))
        return code
    if type(value).__module__ == "torch":
        return from_torch(value)
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError):
        raise InvalidArgument("cannot interpret %r as an element type"
                              % (value,)) from None
    return from_numpy(dt)


# Every name, aliases included ("product" -> PROD).
_OPS = {name.lower(): op for name, op in ReduceOp.__members__.items()}


def parse_op(op: Union[ReduceOp, str]) -> ReduceOp:
    """A ReduceOp from a ReduceOp or its case-insensitive name."""
    if isinstance(op, ReduceOp):
        return op
    if isinstance(op, str):
        found = _OPS.get(op.strip().lower())
        if found is not None:
            return found
    raise InvalidArgument("unknown reduce op %r (expected one of %s)"
                          % (op, ", ".join(_OPS)))


_ALGOS = {"auto": lib.CCL_ALGO_AUTO, "ring": lib.CCL_ALGO_RING,
          "star": lib.CCL_ALGO_STAR, "direct": lib.CCL_ALGO_DIRECT}


def parse_algorithm(algorithm: str) -> int:
    """C code of an all-reduce algorithm name: "auto", "ring", "star" or
    "direct"."""
    if isinstance(algorithm, str):
        code = _ALGOS.get(algorithm.strip().lower())
        if code is not None:
            return code
    raise InvalidArgument("unknown algorithm %r (expected auto, ring, star or direct)"
                          % (algorithm,))


_QUANTS = {"u8": lib.CCL_QUANT_U8, "u4": lib.CCL_QUANT_U4,
           "e3m0": lib.CCL_QUANT_E3M0, "f16": lib.CCL_QUANT_F16,
           "bf16": lib.CCL_QUANT_BF16}

#: Quantized wire formats by name (docs/quantization.md).
QUANT_FORMATS = tuple(_QUANTS)


def parse_quant(quant: str) -> int:
    """C code of a quantized wire format: "u8", "u4", "e3m0", "f16" or
    "bf16"."""
    if isinstance(quant, str):
        code = _QUANTS.get(quant.strip().lower())
        if code is not None:
            return code
    raise InvalidArgument("unknown quantized format %r (expected one of %s)"
                          % (quant, ", ".join(_QUANTS)))


__all__ = ["ReduceOp", "QUANT_FORMATS", "parse_quant", "DTYPE_NAMES", "dtype_size", "dtype_name",
           "numpy_dtype", "from_numpy", "from_torch", "parse_dtype",
           "parse_op", "parse_algorithm"]
