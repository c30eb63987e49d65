"""The quick start of docs/torch.md under torchrun: a DDP script whose only
changes from gloo are ``import pyccl.torch`` and the backend name, and
init_method="env://" through the harness."""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

from tests.torch_suite.harness import free_port, run_torch_group  # noqa: E402

pytestmark = pytest.mark.timeout(300)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import torch
    import torch.distributed as dist
    import pyccl.torch                       # 1. registers backend "pyccl"

    dist.init_process_group("pyccl")         # 2. was "gloo"
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 8) + rank).sum().backward()
        opt.step()
    w = model.module.weight.detach().clone()
    gathered = [torch.zeros_like(w) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, w)
    assert all(torch.equal(g, w) for g in gathered)
    print("rank %d ok %s" % (rank, dist.get_backend()))
    dist.destroy_process_group()
""")


def test_torchrun_ddp_script(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep +
               os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
         "2", "--master_addr", "127.0.0.1", "--master_port",
         str(free_port()), str(script)],
        env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 ok pyccl" in proc.stdout
    assert "rank 1 ok pyccl" in proc.stdout


def env_all_reduce(rank, n):
    import torch
    import torch.distributed as dist
    t = torch.ones(3) * (rank + 1)
    dist.all_reduce(t)
    return t.tolist()


def test_env_init_method():
    assert run_torch_group(3, env_all_reduce, init="env") == [[6.0] * 3] * 3
