"""ProcessGroupPyccl: pyccl as a torch.distributed process group.

torch 2.13 lets a Python class be a whole process group: a subclass of
``torch.distributed.ProcessGroup`` whose methods torch calls by name,
from Python (``dist.all_reduce`` -> ``allreduce``) and from C++ through
its trampoline (DDP's reducer, functional collectives).  Every method that
gloo implements on CPU is here, split by job:

- this module: creation, identity (``getBackendName``, ``group_name``),
  coalescing, shutdown, and the helpers the others use;
- :mod:`pyccl.torch.collectives`: reductions, broadcast, gathers,
  scatters, all-to-all, barrier;
- :mod:`pyccl.torch.p2p`: send, recv (from any source too) and
  monitored_barrier.

Each call stages its tensors (:mod:`pyccl.torch.staging`), posts pyccl
ops on the group's :class:`~pyccl.Communicator` at once, in the caller's
thread -- the core keeps them in posting order, which is the order
collectives need -- and returns a :class:`~pyccl.torch.work.PycclWork`.
A method torch knows but pyccl does not offer raises NotImplementedError
naming the call, never torch's "No backend type associated with device
type cpu".
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist

from pyccl.communicator import Communicator
from pyccl.dtypes import ReduceOp
from pyccl.master import Master
from pyccl.torch.collectives import CollectivesMixin
from pyccl.torch.errors import unsupported
from pyccl.torch.options import Options
from pyccl.torch.p2p import PointToPointMixin
from pyccl.torch.work import PycclWork
from pyccl.work import Completer, Work

logger = logging.getLogger("pyccl.torch")

BACKEND_NAME = "pyccl"

_REDOPS = {
    dist.ReduceOp.SUM: ReduceOp.SUM, dist.ReduceOp.AVG: ReduceOp.AVG,
    dist.ReduceOp.PRODUCT: ReduceOp.PROD, dist.ReduceOp.MIN: ReduceOp.MIN,
    dist.ReduceOp.MAX: ReduceOp.MAX, dist.ReduceOp.BAND: ReduceOp.BAND,
    dist.ReduceOp.BOR: ReduceOp.BOR, dist.ReduceOp.BXOR: ReduceOp.BXOR,
}


class ProcessGroupPyccl(CollectivesMixin, PointToPointMixin,
                        dist.ProcessGroup):
    """A torch process group backed by a pyccl Communicator.

    Made by the backend's creator (``init_process_group(backend="pyccl")``
    or ``new_group(...)``), not by hand.

    Args:
        comm: this rank's Communicator, already in the group.
        master: the Master this rank started for the group (rank 0), to
            close at shutdown, or None.
        options: the resolved :class:`~pyccl.torch.Options`.
    """

    def __init__(self, comm: Communicator, master: Optional[Master],
                 options: Options) -> None:
        super().__init__(comm.rank, comm.world_size)
        self._comm = comm
        self._master = master
        self._options = options
        self._rank = comm.rank
        self._size = comm.world_size
        self._group_name: Optional[str] = None
        self._group_desc = ""
        self._completer_obj: Optional[Completer] = None
        self._completer_lock = threading.Lock()
        self._coalescing: Optional[List[PycclWork]] = None
        self._monitored = 0  # monitored_barrier calls so far (their tag)

    # -- identity ---------------------------------------------------------

    def getBackendName(self) -> str:  # noqa: N802 - torch's name
        return BACKEND_NAME

    def name(self) -> str:
        return BACKEND_NAME

    def _get_backend_name(self) -> str:
        return BACKEND_NAME

    def _set_group_name(self, name: str) -> None:
        self._group_name = name
        try:
            super()._set_group_name(name)
        except Exception:  # noqa: BLE001 - the C++ side keeps it if it can
            pass

    @property
    def group_name(self) -> str:
        if self._group_name is None:
            raise RuntimeError("ProcessGroup name not set")
        return self._group_name

    def _set_group_desc(self, desc: str) -> None:
        self._group_desc = desc
        try:
            super()._set_group_desc(desc)
        except Exception:  # noqa: BLE001
            pass

    @property
    def group_desc(self) -> str:
        return self._group_desc

    @property
    def communicator(self) -> Communicator:
        """The pyccl Communicator under this group (for fault-tolerant
        averaging with pyccl's own API, see docs/torch.md)."""
        return self._comm

    @property
    def options(self) -> Options:
        """The resolved pyccl options of this group."""
        return self._options

    def __repr__(self) -> str:
        return "<ProcessGroupPyccl %s rank %d of %d>" % (
            self._group_name, self._rank, self._size)

    # -- helpers for the mixins -------------------------------------------

    def _completer(self) -> Completer:
        with self._completer_lock:
            if self._completer_obj is None:
                self._completer_obj = Completer(
                    "pyccl torch futures %s" % self._group_name)
            return self._completer_obj

    def _work(self, name: str, works: Sequence[Work],
              result: List[torch.Tensor],
              finish: Sequence[Optional[Callable[[], None]]] = (),
              ordered: bool = True) -> PycclWork:
        work = PycclWork(name, works, result,
                         [f for f in finish if f is not None],
                         self._completer, ordered)
        if self._coalescing is not None:
            self._coalescing.append(work)
        return work

    def _need(self, method: str) -> Callable[..., Any]:
        """The Communicator's ``method``; NotImplementedError naming it if
        this build of the C core lacks the op."""
        found = getattr(self._comm, method, None)
        if found is None:
            raise unsupported(method, "this build of pyccl's C core has no "
                              "%s yet" % method)
        return found

    @staticmethod
    def _reduce_op(opts: Any, call: str) -> ReduceOp:
        op = getattr(opts, "reduceOp", dist.ReduceOp.SUM)
        kind = getattr(op, "op", op)  # a ReduceOp object or a RedOpType
        found = _REDOPS.get(kind)
        if found is None:
            raise unsupported("%s with ReduceOp %s" % (call, kind),
                              "PREMUL_SUM: multiply first, then SUM")
        return found

    def _root(self, opts: Any, call: str) -> int:
        root = int(getattr(opts, "rootRank", 0))
        if getattr(opts, "rootTensor", 0) != 0:
            raise ValueError("%s: rootTensor must be 0 (one tensor per "
                             "process)" % call)
        if not 0 <= root < self._size:
            raise ValueError("%s: root rank %d is out of range for a group "
                             "of %d" % (call, root, self._size))
        return root

    # -- coalescing -------------------------------------------------------

    def _start_coalescing(self, device: Any = None) -> None:
        """Ops until :meth:`_end_coalescing` still start at once (the core
        queues them); their Works are collected into one."""
        self._coalescing = []

    def _end_coalescing(self, device: Any = None) -> PycclWork:
        works, self._coalescing = self._coalescing or [], None
        return _Combined(works)

    # -- lifetime ---------------------------------------------------------

    def shutdown(self) -> None:
        """Leaves the group: pending ops fail with ``pyccl.Closed``; the
        Master (rank 0) stops.  Idempotent."""
        self._comm.close()
        if self._master is not None:
            self._master.close()

    def abort(self) -> None:
        self.shutdown()

    def set_timeout(self, timeout: timedelta) -> None:
        raise unsupported("set_timeout", "the op timeout is fixed when the "
                          "group is made (timeout= of init_process_group/"
                          "new_group, or pyccl.torch.Options(op_timeout=))")

    def split_group(self, *args: Any, **kwargs: Any) -> Any:
        raise unsupported("split_group", "use torch.distributed.new_group")

    def merge_remote_group(self, *args: Any, **kwargs: Any) -> Any:
        raise unsupported("merge_remote_group")

    def _get_backend(self, device: Any) -> Any:
        raise unsupported("_get_backend(%s)" % (device,), "a pyccl group is "
                          "a Python ProcessGroup with no C++ backend")

    def _register_on_completion_hook(self, hook: Any) -> None:
        raise unsupported("_register_on_completion_hook")

    def _has_hooks(self) -> bool:
        return False

    def _wait_for_pending_works(self) -> None:
        pass  # on-completion hooks are not supported: none is pending

    def _backend_id(self, backend_type: Any) -> int:
        raise unsupported("_backend_id", "a pyccl group is a Python "
                          "ProcessGroup with no C++ backend")

    def _get_sequence_number_for_group(self) -> int:
        raise unsupported("_get_sequence_number_for_group")

    def _set_sequence_number_for_group(self) -> None:
        pass  # nothing to agree on: pyccl's ops carry their own numbers


class _Combined(PycclWork):
    """The Works of a coalesced block, as one."""

    def __init__(self, works: List[PycclWork]) -> None:
        super().__init__("coalesced ops", [], [t for w in works
                                                for t in w._result])
        self._parts = works
        self._finish = [self._wait_parts]

    def _wait_parts(self) -> None:
        for part in self._parts:
            part.wait()

    def is_completed(self) -> bool:
        if not self._done.is_set() and not self._owned and \
                all(part.is_completed() for part in self._parts):
            self._complete_quietly()
        return self._done.is_set()


__all__ = ["ProcessGroupPyccl", "BACKEND_NAME", "unsupported"]
