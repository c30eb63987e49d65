"""DDP inside a worker group: the group's leader syncs, the others follow.

A worker group is several processes that train one replica with DDP over
a torch process group of their own (gloo, nccl or pyccl).  Only the
group's leader (its rank 0) is a member of the outer pyccl group and runs
the outer syncs; after each merge it broadcasts the merged fragment to the
other members of its worker group, which follow the same schedule (it is
a function of the step count alone) and receive it.  DDP keeps the local
parameters identical inside the group (same gradients, same optimizer), so
the leader's pseudo-gradient stands for the whole group.

The torch process group cannot shrink: a failure inside a worker group is
not tolerated (torch raises); the outer group survives the loss of a whole
worker group (its leader) like any peer.
"""
from __future__ import annotations

from typing import Any


class GroupLink:
    """Broadcasts from a worker group's leader to its other members."""

    def __init__(self, group: Any) -> None:
        import torch.distributed as dist
        self.group = group
        self.src = dist.get_global_rank(group, 0)
        self.leader = dist.get_rank(group) == 0

    def broadcast(self, tensor: Any) -> None:
        import torch.distributed as dist
        dist.broadcast(tensor, src=self.src, group=self.group)
