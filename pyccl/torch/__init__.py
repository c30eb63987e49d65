"""pyccl as a ``torch.distributed`` backend.

``import pyccl.torch`` registers the backend "pyccl"; a script then
changes two lines to train with it::

    import pyccl.torch                                  # 1. register
    torch.distributed.init_process_group("pyccl")      # 2. was "gloo"

Under torchrun (``env://``) or with ``init_method="tcp://..."`` or
``"file://..."``, rank 0 of every group starts a pyccl master and
publishes its address and a one-off key in torch's store
(:mod:`pyccl.torch.rendezvous`).  pyccl's own settings go in
``pg_options=pyccl.torch.Options(...)`` or the environment
(:mod:`pyccl.torch.options`).  What works, CUDA staging, failure
behaviour and limits: docs/torch.md.

The package, by job:

- :mod:`pyccl.torch.options`: ``Options`` (pg_options) and defaults;
- :mod:`pyccl.torch.rendezvous`: the master and the group via the store;
- :mod:`pyccl.torch.process_group`: ``ProcessGroupPyccl``, with the
  calls in :mod:`pyccl.torch.collectives` and :mod:`pyccl.torch.p2p`
  (and sparse all-reduce in :mod:`pyccl.torch.sparse`);
- :mod:`pyccl.torch.work`: ``PycclWork`` and its future;
- :mod:`pyccl.torch.staging`: tensors to host buffers (CUDA through
  pinned memory) and back;
- :mod:`pyccl.torch.errors`: pyccl errors that are DistBackendErrors too.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Optional

import torch.distributed as dist

from pyccl.torch.options import Options, as_options
from pyccl.torch.process_group import BACKEND_NAME, ProcessGroupPyccl
from pyccl.torch.rendezvous import connect, unpublish
from pyccl.torch.work import PycclWork


def _create(dist_opts: Any, backend_options: Any) -> ProcessGroupPyccl:
    """The backend's creator (torch's extended API): joins the group."""
    timeout = dist_opts.timeout
    if not isinstance(timeout, timedelta) or timeout <= timedelta(0):
        timeout = timedelta(minutes=30)
    options = as_options(backend_options).resolved(timeout.total_seconds())
    store = dist_opts.store
    comm, master = connect(store, dist_opts.group_rank, dist_opts.group_size,
                           timeout, options)
    if dist_opts.group_rank == 0:
        # Every rank has read the entry: it joined, and Communicator()
        # returns only once the whole group is connected.
        unpublish(store)
    return ProcessGroupPyccl(comm, master, options)


def register() -> None:
    """Registers backend "pyccl" with torch.distributed (done on import;
    calling it again does nothing)."""
    if BACKEND_NAME.upper() in getattr(dist.Backend, "_plugins", {}):
        return
    dist.Backend.register_backend(BACKEND_NAME, _create, extended_api=True,
                                  devices=["cpu", "cuda"])


def monitored_barrier(group: Optional[Any] = None,
                      timeout: Optional[timedelta] = None,
                      wait_all_ranks: bool = False) -> None:
    """``torch.distributed.monitored_barrier`` for a pyccl group (torch's
    own refuses every backend but gloo before asking the group)."""
    pg = group if group is not None else dist.distributed_c10d._get_default_group()
    if not isinstance(pg, ProcessGroupPyccl):
        return dist.monitored_barrier(group, timeout, wait_all_ranks)
    pg.monitored_barrier(timeout, wait_all_ranks=wait_all_ranks)


def patch_monitored_barrier() -> None:
    """Opt-in: makes ``torch.distributed.monitored_barrier`` serve pyccl
    groups too (torch's own raises "monitored_barrier is only implemented
    for GLOO backend" before it asks the group).  Other groups go to
    torch's function unchanged.  Idempotent."""
    original = dist.monitored_barrier
    if getattr(original, "_pyccl_patch", False):
        return

    def monitored_barrier(group: Optional[Any] = None,
                          timeout: Optional[Any] = None,
                          wait_all_ranks: bool = False) -> None:
        pg = group
        if pg is None and dist.is_initialized():
            pg = dist.distributed_c10d._get_default_group()
        if isinstance(pg, ProcessGroupPyccl):
            if timeout is not None and not isinstance(timeout, timedelta):
                timeout = timedelta(seconds=float(timeout))
            return pg.monitored_barrier(timeout, wait_all_ranks=wait_all_ranks)
        return original(group, timeout, wait_all_ranks)

    monitored_barrier._pyccl_patch = True  # type: ignore[attr-defined]
    monitored_barrier.__doc__ = original.__doc__
    dist.monitored_barrier = monitored_barrier
    dist.distributed_c10d.monitored_barrier = monitored_barrier


register()

__all__ = ["Options", "ProcessGroupPyccl", "PycclWork", "register",
           "monitored_barrier", "patch_monitored_barrier", "BACKEND_NAME"]
