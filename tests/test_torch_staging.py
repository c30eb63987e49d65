"""Staging (pyccl.torch.staging), the torch-side errors and options,
without a group where possible.  There is no GPU here: a stub stands in
for CUDA by marking CPU tensors as "on the device" and recording every
device copy, so the staging path (pinned host buffer, copy in before the
op, copy back before the Work completes) runs for real through a group of
one."""
import threading
from datetime import timedelta

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402

import pyccl  # noqa: E402
import pyccl.torch  # noqa: E402
from pyccl.torch import errors, staging  # noqa: E402
from pyccl.torch.options import Options, as_options  # noqa: E402
from pyccl.torch.process_group import ProcessGroupPyccl  # noqa: E402


@pytest.fixture
def fake_cuda(monkeypatch):
    """Tensors in ``device`` count as CUDA tensors; ``log`` records the
    staging steps in order."""
    device, log = set(), []

    def on_device(t):
        return t.data_ptr() in device and t.numel() > 0

    def pinned_empty(t):
        log.append(("pinned", tuple(t.shape)))
        return torch.empty(t.shape, dtype=t.dtype)

    def d2h(t, host):
        log.append(("d2h", t.tolist()))
        host.copy_(t)

    def h2d(host, t):
        log.append(("h2d", host.tolist()))
        t.copy_(host)

    monkeypatch.setattr(staging, "on_device", on_device)
    monkeypatch.setattr(staging, "pinned_empty", pinned_empty)
    monkeypatch.setattr(staging, "device_to_host", d2h)
    monkeypatch.setattr(staging, "host_to_device", h2d)
    return device, log


@pytest.fixture
def pg():
    """A ProcessGroupPyccl of one, made by hand (no torch store)."""
    master = pyccl.Master()
    comm = pyccl.Communicator(master, 1)
    group = ProcessGroupPyccl(comm, master, Options().resolved(60))
    group._set_group_name("test")
    yield group
    group.shutdown()


def test_device_tensor_is_staged_through_host_memory(fake_cuda, pg):
    device, log = fake_cuda
    t = torch.tensor([1.0, 2.0, 3.0])
    device.add(t.data_ptr())
    work = pg.allreduce([t], dist.AllreduceOptions())
    assert log[:2] == [("pinned", (3,)), ("d2h", [1.0, 2.0, 3.0])]
    work.wait()
    assert log[2:] == [("h2d", [1.0, 2.0, 3.0])]  # back before wait returns
    assert t.tolist() == [1.0, 2.0, 3.0]


def test_output_only_device_tensor_is_not_copied_in(fake_cuda, pg):
    device, log = fake_cuda
    out = torch.zeros(2)
    device.add(out.data_ptr())
    pg.all_gather_single(out, torch.tensor([4.0, 5.0])).wait()
    assert [step for step, _ in log] == ["pinned", "h2d"]
    assert out.tolist() == [4.0, 5.0]


def test_device_tensors_in_a_list_are_copied_out(fake_cuda, pg):
    device, log = fake_cuda
    outs = [torch.zeros(2)]
    device.add(outs[0].data_ptr())
    work = pg.allgather([outs], [torch.tensor([6.0, 7.0])])
    fut = work.get_future()
    assert [t.tolist() for t in fut.wait()] == [[6.0, 7.0]]
    assert ("h2d", [6.0, 7.0]) in log


def test_views_and_types():
    s = staging.stage(torch.tensor([True, False]), reduces=True)
    assert s.host.dtype == torch.uint8 and not s.copied
    s = staging.stage(torch.ones(2, dtype=torch.complex64))
    assert s.host.dtype == torch.uint8 and s.host.numel() == 16
    s = staging.stage(torch.ones(2, dtype=torch.complex64), reduces=True)
    assert s.host.dtype == torch.float32 and s.host.shape == (2, 2)
    t = torch.arange(6.0).reshape(2, 3).t()
    s = staging.stage(t)
    assert s.copied and s.host.is_contiguous()
    s.host.mul_(2)
    s.write_back()
    assert torch.equal(t, torch.arange(6.0).reshape(2, 3).t() * 2)
    with pytest.raises(pyccl.InvalidArgument, match="does not reduce"):
        staging.stage(torch.ones(2, dtype=torch.float8_e4m3fn), reduces=True)
    assert staging.reduce_op_for(pyccl.ReduceOp.SUM, torch.bool) == \
        pyccl.ReduceOp.MAX
    assert staging.reduce_op_for(pyccl.ReduceOp.PRODUCT, torch.bool) == \
        pyccl.ReduceOp.MIN


def test_contiguous_block():
    flat = torch.zeros(6)
    assert staging.contiguous_block(list(flat.chunk(3))) is not None
    assert staging.contiguous_block([torch.zeros(2), torch.zeros(2)]) is None


def test_errors_are_dist_backend_errors():
    exc = errors.as_torch_error(pyccl.PeerLost("peer 2 gone"), "allreduce")
    assert isinstance(exc, pyccl.PeerLost)
    assert isinstance(exc, dist.DistBackendError)
    assert isinstance(exc, ConnectionError)
    assert str(exc) == "pyccl allreduce failed: peer lost: peer 2 gone"
    exc = errors.as_torch_error(pyccl.Timeout("no progress"), "barrier")
    assert " Timed out " in str(exc)
    assert errors.as_torch_error(ValueError("x")).__class__ is ValueError


def test_unsupported_calls_name_themselves(pg):
    opts = dist.AllreduceOptions()
    opts.reduceOp = dist._make_nccl_premul_sum(2.0)
    with pytest.raises(NotImplementedError, match="allreduce with ReduceOp"):
        pg.allreduce([torch.ones(2)], opts)
    with pytest.raises(NotImplementedError, match="set_timeout"):
        pg.set_timeout(timedelta(seconds=1))
    with pytest.raises(NotImplementedError, match="_get_backend"):
        pg._get_backend(torch.device("cpu"))
    assert pg.getBackendName() == "pyccl" and pg.name() == "pyccl"
    assert pg.group_name == "test"


def test_wait_timeout_and_future_failure(pg):
    # A group of one completes at once; a failing op fails its future as
    # C++ expects (the error is raised inside a then() callback).
    work = pg.allreduce([torch.ones(3)])
    assert work.wait(timedelta(seconds=5)) is True
    assert work.is_completed() and work.is_success()
    bad = pg._work("allreduce", [], [])
    bad._finish = [lambda: (_ for _ in ()).throw(pyccl.PeerLost("gone"))]
    fut = bad.get_future()
    with pytest.raises(RuntimeError, match="peer lost"):
        fut.wait()
    assert isinstance(bad.exception(), dist.DistBackendError)


def test_options():
    assert as_options(None) == Options()
    assert as_options({"peer_timeout": 5}).peer_timeout == 5
    with pytest.raises(pyccl.InvalidArgument):
        as_options({"nope": 1})
    with pytest.raises(pyccl.InvalidArgument):
        as_options(3)
    resolved = Options().resolved(100.0)
    assert resolved.op_timeout == 100.0 and resolved.peer_timeout == 30.0
    assert resolved.communicator_kwargs()["restore_input"] is False


def test_registered():
    assert dist.Backend.PYCCL == "pyccl"
    assert "pyccl" in dist.Backend.backend_list
    assert threading.active_count() >= 1
