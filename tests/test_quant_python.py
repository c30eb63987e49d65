"""Quantized all-reduce through the Python API (Communicator.all_reduce
with quant=): identical bits on every rank, within the format's bound,
input intact, argument errors and NaN handling.  The C kernels and their
bounds on adversarial data are tested in csrc/tests/test_quant.c."""
import pytest

from tests import quant_workers as qw
from tests.peers import run_group

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("fmt", ["u8", "u4", "e3m0", "f16", "bf16"])
@pytest.mark.parametrize("n,count", [(2, 1000), (3, 70_001)])
def test_identical_and_bounded(fmt, n, count):
    # 70,001 f32 elements exceed star_max_bytes below, so the ring runs.
    res = run_group(n, qw.quant_results, fmt, count, 7,
                    256, n == 3, star_max_bytes=65536)
    assert len({r["hash"] for r in res}) == 1, "ranks disagree"
    assert len({r["hash_out"] for r in res}) == 1, "ranks disagree (out=)"
    assert res[0]["hash"] == res[0]["hash_out"]
    assert all(r["input_intact"] for r in res)
    err, top = res[0]["max_err"], res[0]["max_abs"]
    # Each contribution and every partial sum is encoded once at most
    # (n-1 hops and the result): a loose bound built from the per-format
    # one-encoding bound over a range of at most 2 * top * n.
    if fmt in qw._RANGE_BOUND:
        bound = (n + 1) * qw._RANGE_BOUND[fmt] * 2 * top * 2
    elif fmt == "e3m0":
        bound = (n + 1) * top  # a third of the value, per encoding
    else:
        bound = (n + 1) * top * (2 ** -8 if fmt == "bf16" else 2 ** -11) * 2
    assert err <= bound, (err, bound)
    assert err > 0 or fmt in ("f16", "bf16")


def test_bad_arguments():
    res = run_group(2, qw.quant_bad_args)
    for r in res:
        assert "u7" in r["format"]
        assert "float32" in r["dtype"]
        assert "power of two" in r["block"]
        assert r["after"] == 2.0


def test_nan_fails_everywhere_input_intact():
    res = run_group(3, qw.quant_nan)
    assert all(r["outcome"] != "ok" for r in res), res
    assert all(r["intact"] for r in res), res
