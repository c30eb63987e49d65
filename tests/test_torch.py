"""CPU torch tensors, bf16 and f16 included (skipped without torch)."""
import pytest

from tests import workers
from tests.peers import assert_no_failures, run_group

pytestmark = pytest.mark.timeout(300)


def test_torch_tensors(torch):
    assert_no_failures(run_group(2, workers.torch_cases))


def test_torch_argument_errors_in_process(torch):
    import pyccl
    with pyccl.Master() as m, pyccl.Communicator(m, 1) as comm:
        with pytest.raises(pyccl.InvalidArgument, match="contiguous"):
            comm.all_reduce(torch.ones(4, 4).t())
        with pytest.raises(pyccl.InvalidArgument):
            comm.all_reduce(torch.ones(4, dtype=torch.bool))
        with pytest.raises(pyccl.InvalidArgument):
            comm.all_reduce(torch.ones(4), out=torch.ones(4, dtype=torch.half))
        with pytest.raises(pyccl.InvalidArgument, match="device"):
            comm.all_reduce(torch.ones(4, device="meta"))
        t = torch.arange(4, dtype=torch.bfloat16)
        assert comm.all_reduce(t) is t
        got = comm.all_gather(t)
        assert isinstance(got, torch.Tensor) and got.shape == (1, 4)
