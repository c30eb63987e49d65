"""All-reduce of sparse COO tensors (SUM only, as in gloo).

Each rank's tensor is a list of (index, value) pairs; the sum is the
union of every rank's pairs with equal indices added up.  So the ranks
all-gather their pair counts, then all-gather (sizes per rank) their
index and value arrays, and every rank builds the same sparse tensor from
the concatenation (rank order) and coalesces it, which adds up duplicates
in that order: every rank gets the same bits.

The counts must be known before the other two gathers can be posted, so
the call waits for the first gather itself: a sparse all-reduce returns
only once its data is exchanged (its Work is then already complete).
"""
from __future__ import annotations

import math
from typing import Any, List

import torch

from pyccl.dtypes import ReduceOp
from pyccl.errors import CclError
from pyccl.torch.errors import as_torch_error, unsupported


def sparse_allreduce(pg: Any, tensors: List[torch.Tensor], opts: Any) -> Any:
    """The sum of the ranks' sparse tensors, written into ``tensors[0]``;
    returns a Work that has already ended."""
    try:
        return _sparse_allreduce(pg, tensors, opts)
    except CclError as exc:
        raise as_torch_error(exc, "allreduce (sparse)") from None


def _sparse_allreduce(pg: Any, tensors: List[torch.Tensor], opts: Any) -> Any:
    if len(tensors) != 1:
        raise ValueError("allreduce of sparse tensors: one tensor per call")
    if pg._reduce_op(opts, "allreduce") != ReduceOp.SUM:
        raise unsupported("allreduce of sparse tensors with %s"
                          % opts.reduceOp, "only SUM is defined (as in gloo)")
    t = tensors[0]
    local = t.detach().to("cpu")
    indices = local._indices().contiguous()
    values = local._values().contiguous()
    sparse_dim = indices.shape[0]
    row = math.prod(values.shape[1:])
    comm = pg._comm
    n = pg._size

    nnz = torch.tensor([indices.shape[1]], dtype=torch.int64)
    counts = comm.all_gather(torch.empty(n, dtype=torch.int64), nnz)
    counts = [int(k) for k in counts]

    all_indices = torch.empty(sparse_dim * sum(counts), dtype=torch.int64)
    comm.all_gatherv(all_indices, indices.reshape(-1),
                     [k * sparse_dim for k in counts])
    all_values = torch.empty((sum(counts),) + tuple(values.shape[1:]),
                             dtype=values.dtype)
    host_values = all_values.view(torch.uint8) if values.dtype == torch.bool \
        else all_values
    send_values = values.view(torch.uint8) if values.dtype == torch.bool \
        else values
    comm.all_gatherv(host_values.reshape(-1), send_values.reshape(-1),
                     [k * row for k in counts])

    parts, at = [], 0
    for k in counts:
        parts.append(all_indices[at:at + k * sparse_dim].view(sparse_dim, k))
        at += k * sparse_dim
    total = torch.sparse_coo_tensor(torch.cat(parts, dim=1), all_values,
                                    local.shape).coalesce()
    t.copy_(total.to(t.device))
    from pyccl.torch.work import done_work
    return done_work("allreduce", [t])


__all__ = ["sparse_allreduce"]
