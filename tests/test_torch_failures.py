"""Failures under torch: a rank killed (SIGKILL) or stopped (SIGSTOP)
turns every pending Work on the survivors into a clean exception within
pyccl's deadlines (peer_timeout + 1 s at most; a kill is seen at once),
DDP raises instead of hanging or crashing, destroy_process_group() then
works, and the survivors can form a smaller group and go on."""
import os
import signal
import time

import pytest

pytest.importorskip("torch")

from tests.torch_suite.harness import run_torch_group  # noqa: E402

pytestmark = pytest.mark.timeout(300)

PEER_TIMEOUT = 2.0
ENV = {"PYCCL_PEER_TIMEOUT": str(PEER_TIMEOUT)}


def pending_works_fail(rank, n, how, stamp_file):
    """Ranks 0..n-2 post 8 all-reduces that rank n-1 never joins; rank
    n-1 kills or stops itself.  Returns (seconds from the kill to each
    Work's exception, exception class names, destroy ok)."""
    import torch
    import torch.distributed as dist
    import pyccl
    dist.barrier()
    if rank == n - 1:
        time.sleep(0.3)
        with open(stamp_file, "w") as f:
            f.write(repr(time.time()))
        os.kill(os.getpid(), signal.SIGKILL if how == "kill" else
                signal.SIGSTOP)
        time.sleep(60)
    works = [dist.all_reduce(torch.ones(1 << k), async_op=True)
             for k in range(8)]
    futures = [w.get_future() for w in works[:4]]
    failed_at, kinds = [], []
    for work in works:
        try:
            work.wait()
            kinds.append("no error")
        except Exception as exc:  # noqa: BLE001
            failed_at.append(time.time())
            kinds.append("%s %s %s" % (
                type(exc).__name__, isinstance(exc, dist.DistBackendError),
                isinstance(exc, pyccl.CclError)))
    for fut in futures:
        try:
            fut.wait()
            kinds.append("future: no error")
        except Exception as exc:  # noqa: BLE001
            kinds.append("future: %s" % type(exc).__name__)
    dist.destroy_process_group()
    return failed_at, kinds


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_pending_works_fail_within_deadline(how, tmp_path):
    stamp = str(tmp_path / "killed_at")
    results = run_torch_group(3, pending_works_fail, how, stamp, env=ENV,
                              allow_missing=True, reporting=[0, 1],
                              timeout=120)
    killed_at = float(open(stamp).read())
    for rank in (0, 1):
        failed_at, kinds = results[rank]
        assert len(failed_at) == 8, kinds
        assert all(k.endswith("True True") for k in kinds[:8]), kinds
        assert all(k.startswith("future: ") and "no error" not in k
                   for k in kinds[8:]), kinds
        late = max(failed_at) - killed_at
        # A kill closes the connections: seen at once.  A stop is seen
        # when the peer has been silent for peer_timeout.
        assert late <= PEER_TIMEOUT + 1.0, (how, late)
        if how == "kill":
            assert late <= 1.0, late


def ddp_survives(rank, n, init_file):
    """3 ranks train with DDP; rank 2 is killed at step 3.  The survivors'
    step raises; they destroy the group, form a group of 2 through a new
    store and train on.  Returns (error text, steps after, params)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    error = None
    for step in range(10):
        if step == 3 and rank == n - 1:
            os.kill(os.getpid(), signal.SIGKILL)
        start = time.time()
        try:
            opt.zero_grad()
            ddp(torch.randn(4, 8)).sum().backward()
            opt.step()
        except RuntimeError as exc:
            error = (str(exc)[:300], time.time() - start)
            break
    dist.destroy_process_group()
    # Way 1: a smaller group through a fresh store.
    dist.init_process_group("pyccl", init_method="file://" + init_file,
                            rank=rank, world_size=n - 1)
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        ddp(torch.randn(4, 8)).sum().backward()
        opt.step()
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return error, params.numpy().copy()


def test_ddp_raises_then_survivors_regroup(tmp_path):
    results = run_torch_group(3, ddp_survives, str(tmp_path / "regroup"),
                              env=ENV, allow_missing=True, reporting=[0, 1],
                              timeout=120)
    for rank in (0, 1):
        error, _ = results[rank]
        assert error is not None, "DDP did not notice the lost rank"
        text, took = error
        assert "pyccl" in text and "peer lost" in text, text
        assert took <= PEER_TIMEOUT + 1.0
    assert (results[0][1] == results[1][1]).all()
