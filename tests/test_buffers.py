"""Zero-copy views of numpy arrays and torch tensors (no group needed)."""
import numpy as np
import pytest

import pyccl
from pyccl._lib import lib
from pyccl.buffers import as_buffer


def test_numpy_no_copy():
    a = np.arange(10, dtype=np.float32)
    buf = as_buffer(a, writable=True)
    assert buf.address == a.ctypes.data
    assert (buf.count, buf.dtype, buf.nbytes, buf.kind) == (
        10, lib.CCL_F32, 40, "numpy")
    assert buf.obj is a


def test_numpy_multidim_and_view():
    a = np.zeros((3, 4), dtype=np.int16)
    assert as_buffer(a, writable=True).count == 12
    row = a[1]
    assert as_buffer(row, writable=True).address == a.ctypes.data + 8


def test_numpy_empty_gets_a_pointer():
    buf = as_buffer(np.empty(0, dtype=np.float64), writable=True)
    assert buf.count == 0 and buf.address != 0


def test_numpy_non_contiguous():
    with pytest.raises(pyccl.InvalidArgument, match="contiguous"):
        as_buffer(np.ones((4, 4))[:, 1], writable=False)
    with pytest.raises(pyccl.InvalidArgument, match="contiguous"):
        as_buffer(np.ones((4, 4)).T, writable=False)


def test_numpy_readonly():
    a = np.ones(4)
    a.flags.writeable = False
    assert as_buffer(a, writable=False).count == 4
    with pytest.raises(pyccl.InvalidArgument, match="read-only"):
        as_buffer(a, writable=True, what="out")


def test_bf16_override_on_uint16():
    a = np.zeros(5, dtype=np.uint16)
    assert as_buffer(a, writable=True, dtype="bfloat16").dtype == lib.CCL_BF16
    assert as_buffer(a, writable=True, dtype="bf16").dtype == lib.CCL_BF16
    assert as_buffer(a, writable=True, dtype="f16").dtype == lib.CCL_F16


def test_override_must_keep_width():
    with pytest.raises(pyccl.InvalidArgument, match="bytes"):
        as_buffer(np.zeros(4, dtype=np.float32), writable=True, dtype="bf16")


def test_refused_objects():
    for bad in ([1.0, 2.0], b"abcd", bytearray(4), 3.0, np.float32(1),
                memoryview(bytearray(8))):
        with pytest.raises(pyccl.InvalidArgument, match="numpy"):
            as_buffer(bad, writable=False)
    for dt in (bool, np.complex128):
        with pytest.raises(pyccl.InvalidArgument):
            as_buffer(np.zeros(3, dtype=dt), writable=False)


def test_overlap():
    a = np.zeros(10, dtype=np.float32)
    x, y, z = (as_buffer(v, writable=True) for v in (a[:6], a[4:], a[6:]))
    assert x.overlaps(y) and y.overlaps(x)
    assert not x.overlaps(z)


def test_torch_no_copy(torch):
    t = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4)
    buf = as_buffer(t, writable=True)
    assert buf.address == t.data_ptr()
    assert (buf.count, buf.dtype, buf.kind) == (12, lib.CCL_BF16, "torch")
    assert as_buffer(t[1], writable=True).address == t.data_ptr() + 8
    assert as_buffer(torch.empty(0), writable=True).address != 0


def test_torch_refusals(torch):
    with pytest.raises(pyccl.InvalidArgument, match="contiguous"):
        as_buffer(torch.ones(4, 4).t(), writable=True)
    with pytest.raises(pyccl.InvalidArgument, match="device"):
        as_buffer(torch.ones(4, device="meta"), writable=True)
    with pytest.raises(pyccl.InvalidArgument):
        as_buffer(torch.ones(4, dtype=torch.bool), writable=True)
    with pytest.raises(pyccl.InvalidArgument):
        as_buffer(torch.ones(4, dtype=torch.complex64), writable=True)
    with pytest.raises(pyccl.InvalidArgument, match="layout"):
        as_buffer(torch.ones(4).to_sparse(), writable=True)


def test_torch_cuda_refused(torch):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    with pytest.raises(pyccl.InvalidArgument, match="CUDA"):
        as_buffer(torch.ones(4, device="cuda"), writable=True)
