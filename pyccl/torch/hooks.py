"""DDP communication hooks that send gradients quantized: every bucket is
averaged with pyccl's quantized all-reduce (docs/quantization.md), so the
reduced gradient is the same bits on every rank and each contribution
crosses the wire in 8 or 4 bits (u8, u4, e3m0) or 16 (f16, bf16) instead
of 32.

    ddp.register_comm_hook(None, pyccl.torch.hooks.quantized_hook("u8"))

The state argument is the process group (None: the default one), which
must be a pyccl group.  Buckets that are not float32 CPU tensors (CUDA
tensors, other dtypes) are averaged unquantized through the group, as
torch's allreduce_hook does.
"""
# No "from __future__ import annotations": DDP checks the hook's
# annotations as objects (dist.GradBucket, torch.futures.Future[Tensor]).
import hashlib
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from pyccl.dtypes import parse_quant
from pyccl.torch.process_group import ProcessGroupPyccl

Hook = Callable[[Any, dist.GradBucket], torch.futures.Future[torch.Tensor]]


def _group(state: Any) -> ProcessGroupPyccl:
    pg = state if state is not None else dist.distributed_c10d._get_default_group()
    if not isinstance(pg, ProcessGroupPyccl):
        raise TypeError("pyccl's quantized hook needs a pyccl process group "
                        "(backend='pyccl'), not %s" % type(pg).__name__)
    return pg


def _seed(base: int, call: int) -> int:
    """A fresh nonzero seed per call, the same on every rank (they call
    the hook for the same buckets in the same order)."""
    digest = hashlib.blake2b(b"%d/%d" % (base, call), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def quantized_hook(quant: str = "u8", block: int = 256,
                   seed: int = 0) -> Hook:
    """A DDP comm hook that averages each bucket with a quantized
    all-reduce in format ``quant`` (``"u8"``, ``"u4"``, ``"e3m0"``,
    ``"f16"``, ``"bf16"``), scale blocks of ``block`` elements.  ``seed``
    0 rounds to nearest; any other value rounds stochastically (unbiased),
    with a different draw for every call, identical on every rank."""
    parse_quant(quant)  # a bad name fails here, not in the first step
    calls = [0]

    def hook(state: Any,
             bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        pg = _group(state)
        buf = bucket.buffer()
        if buf.dtype != torch.float32 or buf.device.type != "cpu" \
                or not buf.is_contiguous():
            buf.div_(pg.size())
            fut = dist.all_reduce(buf, group=pg, async_op=True).get_future()
            return fut.then(lambda f: f.value()[0])
        calls[0] += 1
        s = _seed(seed, calls[0]) if seed else 0
        work = pg.communicator.all_reduce(buf, "avg", quant=quant,
                                          quant_block=block, quant_seed=s,
                                          async_op=True)
        return work.get_future()

    hook.__name__ = "pyccl_quantized_hook_%s" % quant
    hook.__qualname__ = hook.__name__
    return hook


__all__ = ["quantized_hook"]
