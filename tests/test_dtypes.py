"""Names, numpy and torch dtypes, ops and algorithms to C codes."""
import numpy as np
import pytest

import pyccl
from pyccl import dtypes
from pyccl._lib import lib

NUMPY = [(np.float32, "CCL_F32"), (np.float64, "CCL_F64"),
         (np.float16, "CCL_F16"), (np.int8, "CCL_I8"), (np.int16, "CCL_I16"),
         (np.int32, "CCL_I32"), (np.int64, "CCL_I64"), (np.uint8, "CCL_U8"),
         (np.uint16, "CCL_U16"), (np.uint32, "CCL_U32"),
         (np.uint64, "CCL_U64")]


@pytest.mark.parametrize("dt,const", NUMPY)
def test_numpy_dtypes(dt, const):
    assert dtypes.from_numpy(np.dtype(dt)) == getattr(lib, const)
    assert dtypes.parse_dtype(dt) == getattr(lib, const)
    assert dtypes.dtype_size(getattr(lib, const)) == np.dtype(dt).itemsize


@pytest.mark.parametrize("name,const", [
    ("f32", "CCL_F32"), ("float32", "CCL_F32"), ("float", "CCL_F32"),
    ("F64", "CCL_F64"), ("double", "CCL_F64"), ("f16", "CCL_F16"),
    ("half", "CCL_F16"), ("bf16", "CCL_BF16"), ("bfloat16", "CCL_BF16"),
    ("i8", "CCL_I8"), ("int64", "CCL_I64"), ("u16", "CCL_U16"),
    ("uint64", "CCL_U64"), (" u32 ", "CCL_U32")])
def test_names(name, const):
    assert dtypes.parse_dtype(name) == getattr(lib, const)


@pytest.mark.parametrize("bad", [np.bool_, np.complex64, np.complex128,
                                 np.dtype("O"), np.dtype("U3"),
                                 np.dtype([("a", "i4")]), np.longdouble])
def test_refused_numpy_dtypes(bad):
    with pytest.raises(pyccl.InvalidArgument):
        dtypes.from_numpy(np.dtype(bad))


def test_refused_names_and_objects():
    for bad in ("f128", "bool", "complex64", "", "float8"):
        with pytest.raises(pyccl.InvalidArgument):
            dtypes.parse_dtype(bad)
    with pytest.raises(pyccl.InvalidArgument):
        dtypes.parse_dtype(object())


def test_non_native_byte_order():
    with pytest.raises(pyccl.InvalidArgument, match="byte order"):
        dtypes.from_numpy(np.dtype(">f4" if np.little_endian else "<f4"))


def test_torch_dtypes(torch):
    assert dtypes.from_torch(torch.bfloat16) == lib.CCL_BF16
    assert dtypes.from_torch(torch.float16) == lib.CCL_F16
    assert dtypes.from_torch(torch.uint64) == lib.CCL_U64
    assert dtypes.parse_dtype(torch.int8) == lib.CCL_I8
    for bad in (torch.bool, torch.complex64, torch.qint8):
        with pytest.raises(pyccl.InvalidArgument):
            dtypes.from_torch(bad)


def test_reduce_ops():
    assert [op.name for op in pyccl.ReduceOp] == ["SUM", "AVG", "MIN", "MAX",
                                                  "PROD", "BAND", "BOR", "BXOR"]
    assert pyccl.ReduceOp.PRODUCT is pyccl.ReduceOp.PROD  # torch's name
    for op in pyccl.ReduceOp:
        assert int(op) == getattr(lib, "CCL_" + op.name)
        assert dtypes.parse_op(op) is op
        assert dtypes.parse_op(op.name.lower()) is op
        assert dtypes.parse_op(op.name) is op
    for bad in ("median", "", None, 3):
        with pytest.raises(pyccl.InvalidArgument):
            dtypes.parse_op(bad)


def test_algorithms():
    assert dtypes.parse_algorithm("auto") == lib.CCL_ALGO_AUTO
    assert dtypes.parse_algorithm("Ring") == lib.CCL_ALGO_RING
    assert dtypes.parse_algorithm("star") == lib.CCL_ALGO_STAR
    for bad in ("tree", None, 1):
        with pytest.raises(pyccl.InvalidArgument):
            dtypes.parse_algorithm(bad)
