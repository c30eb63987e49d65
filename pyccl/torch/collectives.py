"""The collectives of :class:`~pyccl.torch.ProcessGroupPyccl`.

Each method takes torch's arguments (as ``torch.distributed`` and the C++
trampoline pass them), stages the tensors, posts pyccl ops and returns a
:class:`~pyccl.torch.work.PycclWork`.  Where torch hands a *list* of
tensors that one pyccl op fills (``all_gather`` into a list, ``gather``,
``scatter``, ``reduce_scatter`` from a list, ``all_to_all`` of lists) the
list goes through one flat host buffer, unless its tensors already lie
back to back in memory (``list(flat.chunk(n))``), which the op then uses
directly.  A call on several tensors (the ``*_coalesced`` ones) posts one
op per tensor; the core runs them in order, pipelined.
"""
from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, Callable, List, Optional, Sequence

import torch
import torch.distributed as dist

from pyccl.torch.errors import unsupported
from pyccl.torch.staging import (Staged, contiguous_block, copy_in, copy_out,
                                 core_elements, host_buffer, reduce_op_for,
                                 stage, write_all_back)


def _tensor_list(value: Any) -> List[torch.Tensor]:
    return [value] if isinstance(value, torch.Tensor) else list(value)


def _opts(opts: Any, cls: Any, field: str) -> Any:
    """torch's options object; pybind's overloads also pass a bare
    ReduceOp or root rank, which end up here as ``opts``."""
    if opts is None:
        return cls()
    if isinstance(opts, (dist.ReduceOp, dist.ReduceOp.RedOpType, int)):
        made = cls()
        setattr(made, field, opts)
        return made
    return opts


class _ListOut:
    """Where a gather into a list of tensors lands: straight in them when
    they form one block of memory, else in a flat host buffer whose parts
    are copied out afterwards."""

    def __init__(self, outs: Sequence[torch.Tensor], like: torch.Tensor,
                 count: int) -> None:
        block = contiguous_block(list(outs))
        self.outs = list(outs)
        self.flat = block if block is not None else host_buffer(count, like)
        self.direct = block is not None
        self.staged = stage(self.flat, reads=False, what="output")

    def finish(self) -> Optional[Callable[[], None]]:
        if self.direct:
            return None
        flat, outs = self.flat, self.outs

        def copy_parts() -> None:
            at = 0
            for t in outs:
                k = t.numel()
                copy_out(flat[at:at + k], t)
                at += k
        return copy_parts


def _packed(tensors: Sequence[torch.Tensor], like: torch.Tensor) -> Staged:
    """The tensors back to back in one host buffer (no copy when they
    already are), staged for the core to read."""
    block = contiguous_block(list(tensors))
    if block is None:
        block = host_buffer(sum(t.numel() for t in tensors), like)
        at = 0
        for t in tensors:
            k = t.numel()
            copy_in(t, block[at:at + k])
            at += k
    return stage(block, what="input")


def _same_shape(call: str, tensors: Sequence[torch.Tensor],
                like: torch.Tensor) -> None:
    for t in tensors:
        if t.dtype != like.dtype:
            raise TypeError("%s: tensors of type %s and %s mixed (every "
                            "tensor of the call must have one type)"
                            % (call, t.dtype, like.dtype))
        if t.numel() != like.numel():
            raise ValueError("%s: a tensor of %d elements where %d are "
                             "expected" % (call, t.numel(), like.numel()))


class CollectivesMixin:
    """Collectives; mixed into ProcessGroupPyccl (which provides
    ``_comm``, ``_rank``, ``_size``, ``_work``, ``_reduce_op``, ``_root``
    and ``_need``)."""

    _comm: Any
    _rank: int
    _size: int

    # -- reductions -------------------------------------------------------

    def allreduce(self, tensors: Any, opts: Any = None) -> Any:
        opts = _opts(opts, dist.AllreduceOptions, "reduceOp")
        tensors = _tensor_list(tensors)
        if tensors and tensors[0].layout == torch.sparse_coo:
            from pyccl.torch.sparse import sparse_allreduce
            return sparse_allreduce(self, tensors, opts)
        op = self._reduce_op(opts, "allreduce")
        all_reduce = self._comm.all_reduce
        staged = [stage(t, reduces=True) for t in tensors]
        works = [all_reduce(s.host, reduce_op_for(op, s.orig.dtype),
                            async_op=True) for s in staged]
        return self._work("allreduce", works, tensors,
                          [write_all_back(staged)])

    def allreduce_coalesced(self, tensors: Any, opts: Any = None) -> Any:
        opts = _opts(opts, dist.AllreduceCoalescedOptions, "reduceOp")
        tensors = _tensor_list(tensors)
        if any(t.layout != torch.strided for t in tensors):
            raise unsupported("allreduce_coalesced of sparse tensors")
        op = self._reduce_op(opts, "allreduce_coalesced")
        staged = [stage(t, reduces=True) for t in tensors]
        works = [self._comm.all_reduce(s.host, reduce_op_for(op, s.orig.dtype),
                                       async_op=True) for s in staged]
        return self._work("allreduce_coalesced", works, tensors,
                          [write_all_back(staged)])

    def reduce(self, tensors: Any, opts: Any = None) -> Any:
        opts = _opts(opts, dist.ReduceOptions, "reduceOp")
        tensors = _tensor_list(tensors)
        op = self._reduce_op(opts, "reduce")
        root = self._root(opts, "reduce")
        comm_reduce = self._need("reduce")
        staged = [stage(t, reduces=True) for t in tensors]
        works = [comm_reduce(s.host, root, reduce_op_for(op, s.orig.dtype),
                             async_op=True) for s in staged]
        finish = write_all_back(staged) if self._rank == root else None
        return self._work("reduce", works, tensors, [finish])

    def reduce_scatter(self, outputs: Any, input_lists: Any,
                       opts: Any = None) -> Any:
        opts = _opts(opts, dist.ReduceScatterOptions, "reduceOp")
        outputs = _tensor_list(outputs)
        op = self._reduce_op(opts, "reduce_scatter")
        works, finish = [], []
        for out, ins in zip(outputs, input_lists):
            ins = list(ins)
            if len(ins) != self._size:
                raise ValueError("reduce_scatter: %d input tensors for a "
                                 "group of %d" % (len(ins), self._size))
            dst = stage(out, reads=False, reduces=True, what="output")
            src = _packed(ins, out)
            redop = reduce_op_for(op, out.dtype)
            counts = [t.numel() for t in ins]
            if all(k == out.numel() for k in counts):
                works.append(self._comm.reduce_scatter(
                    dst.host, src.host, redop, async_op=True))
            else:
                if counts[self._rank] != out.numel():
                    raise ValueError(
                        "reduce_scatter: output has %d elements, input %d "
                        "of this rank %d" % (out.numel(),
                                             counts[self._rank], self._rank))
                works.append(self._need("reduce_scatterv")(
                    dst.host, src.host, counts, redop, async_op=True))
            finish.append(write_all_back([dst]))
        return self._work("reduce_scatter", works, outputs, finish)

    def reduce_scatter_single(self, output: torch.Tensor,
                              input: torch.Tensor, opts: Any = None) -> Any:
        return self._reduce_scatter_pairs("reduce_scatter_tensor", [output],
                                          [input], opts)

    _reduce_scatter_base = reduce_scatter_single

    def reduce_scatter_tensor_coalesced(self, outputs: Any, inputs: Any,
                                        opts: Any = None) -> Any:
        return self._reduce_scatter_pairs(
            "reduce_scatter_tensor_coalesced", outputs, inputs, opts)

    reduce_scatter_single_coalesced = reduce_scatter_tensor_coalesced

    def _reduce_scatter_pairs(self, call: str, outputs: Any, inputs: Any,
                              opts: Any) -> Any:
        opts = _opts(opts, dist.ReduceScatterOptions, "reduceOp")
        op = self._reduce_op(opts, call)
        outputs, inputs = _tensor_list(outputs), _tensor_list(inputs)
        works, staged = [], []
        for out, inp in zip(outputs, inputs):
            dst = stage(out, reads=False, reduces=True, what="output")
            src = stage(inp, reduces=True, what="input")
            works.append(self._comm.reduce_scatter(
                dst.host, src.host, reduce_op_for(op, out.dtype),
                async_op=True))
            staged.append(dst)
        return self._work(call, works, outputs, [write_all_back(staged)])

    # -- broadcast --------------------------------------------------------

    def broadcast(self, tensors: Any, opts: Any = None) -> Any:
        opts = _opts(opts, dist.BroadcastOptions, "rootRank")
        tensors = _tensor_list(tensors)
        root = self._root(opts, "broadcast")
        reads = self._rank == root
        staged = [stage(t, reads=reads) for t in tensors]
        works = [self._comm.broadcast(s.host, root, async_op=True)
                 for s in staged]
        finish = None if reads else write_all_back(staged)
        return self._work("broadcast", works, tensors, [finish])

    # -- gathers ----------------------------------------------------------

    def allgather(self, output_lists: Any, inputs: Any,
                  opts: Any = None) -> Any:
        inputs = _tensor_list(inputs)
        works, finish, result = [], [], []
        for outs, inp in zip(output_lists, inputs):
            outs = list(outs)
            if len(outs) != self._size:
                raise ValueError("allgather: %d output tensors for a group "
                                 "of %d" % (len(outs), self._size))
            _same_shape("allgather", outs, inp)
            src = stage(inp)
            dst = _ListOut(outs, inp, self._size * inp.numel())
            works.append(self._comm.all_gather(dst.staged.host, src.host,
                                               async_op=True))
            finish += [dst.finish(), write_all_back([dst.staged])]
            result.extend(outs)
        return self._work("allgather", works, result, finish)

    def all_gather_single(self, output: torch.Tensor, input: torch.Tensor,
                          opts: Any = None) -> Any:
        return self._gather_pairs("all_gather_into_tensor", [output],
                                  [input])

    _allgather_base = all_gather_single

    def allgather_into_tensor_coalesced(self, outputs: Any, inputs: Any,
                                        opts: Any = None) -> Any:
        return self._gather_pairs("allgather_into_tensor_coalesced",
                                  _tensor_list(outputs), _tensor_list(inputs))

    all_gather_single_coalesced = allgather_into_tensor_coalesced

    def _gather_pairs(self, call: str, outputs: List[torch.Tensor],
                      inputs: List[torch.Tensor]) -> Any:
        works, staged = [], []
        for out, inp in zip(outputs, inputs):
            if out.dtype != inp.dtype:
                raise TypeError("%s: output is %s, input %s"
                                % (call, out.dtype, inp.dtype))
            dst = stage(out, reads=False, what="output")
            src = stage(inp, what="input")
            works.append(self._comm.all_gather(dst.host, src.host,
                                               async_op=True))
            staged.append(dst)
        return self._work(call, works, outputs, [write_all_back(staged)])

    def allgather_coalesced(self, output_lists: Any, inputs: Any,
                            opts: Any = None) -> Any:
        inputs = _tensor_list(inputs)
        output_lists = [list(outs) for outs in output_lists]
        if len(output_lists) != self._size:
            raise ValueError("allgather_coalesced: %d output lists for a "
                             "group of %d" % (len(output_lists), self._size))
        works, finish = [], []
        for j, inp in enumerate(inputs):
            outs = [output_lists[r][j] for r in range(self._size)]
            _same_shape("allgather_coalesced", outs, inp)
            src = stage(inp)
            dst = _ListOut(outs, inp, self._size * inp.numel())
            works.append(self._comm.all_gather(dst.staged.host, src.host,
                                               async_op=True))
            finish += [dst.finish(), write_all_back([dst.staged])]
        return self._work("allgather_coalesced", works,
                          [t for outs in output_lists for t in outs], finish)

    def gather(self, output_lists: Any, inputs: Any, opts: Any = None) -> Any:
        opts = _opts(opts, dist.GatherOptions, "rootRank")
        inputs = _tensor_list(inputs)
        root = self._root(opts, "gather")
        comm_gather = self._need("gather")
        if len(inputs) != 1:
            raise ValueError("gather: one input tensor per process")
        inp = inputs[0]
        src = stage(inp)
        if self._rank == root:
            if len(output_lists) != 1 or len(output_lists[0]) != self._size:
                raise ValueError("gather: the root needs one list of %d "
                                 "output tensors" % self._size)
            outs = list(output_lists[0])
            _same_shape("gather", outs, inp)
            dst = _ListOut(outs, inp, self._size * inp.numel())
            work = comm_gather(src.host, dst.staged.host, root, async_op=True)
            return self._work("gather", [work], outs,
                              [dst.finish(), write_all_back([dst.staged])])
        if output_lists and any(len(outs) for outs in output_lists):
            raise ValueError("gather: output tensors given on rank %d, not "
                             "the root %d" % (self._rank, root))
        return self._work("gather", [comm_gather(src.host, None, root,
                                                 async_op=True)], [])

    # -- scatters ---------------------------------------------------------

    def scatter(self, outputs: Any, input_lists: Any,
                opts: Any = None) -> Any:
        opts = _opts(opts, dist.ScatterOptions, "rootRank")
        outputs = _tensor_list(outputs)
        root = self._root(opts, "scatter")
        comm_scatter = self._need("scatter")
        if len(outputs) != 1:
            raise ValueError("scatter: one output tensor per process")
        out = outputs[0]
        dst = stage(out, reads=False, what="output")
        src_host = None
        if self._rank == root:
            if len(input_lists) != 1 or len(input_lists[0]) != self._size:
                raise ValueError("scatter: the root needs one list of %d "
                                 "input tensors" % self._size)
            ins = list(input_lists[0])
            _same_shape("scatter", ins, out)
            src_host = _packed(ins, out).host
        elif input_lists and any(len(ins) for ins in input_lists):
            raise ValueError("scatter: input tensors given on rank %d, not "
                             "the root %d" % (self._rank, root))
        work = comm_scatter(dst.host, src_host, root, async_op=True)
        return self._work("scatter", [work], outputs, [write_all_back([dst])])

    # -- all-to-all -------------------------------------------------------

    def alltoall_base(self, output: torch.Tensor, input: torch.Tensor,
                      output_split_sizes: Sequence[int],
                      input_split_sizes: Sequence[int],
                      opts: Any = None) -> Any:
        if output.dtype != input.dtype:
            raise TypeError("all_to_all_single: output is %s, input %s"
                            % (output.dtype, input.dtype))
        send_counts = self._split_counts(input, input_split_sizes, "input")
        recv_counts = self._split_counts(output, output_split_sizes, "output")
        dst = stage(output, reads=False, what="output")
        src = stage(input, what="input")
        scale = core_elements(input.dtype)
        work = self._need("all_to_all")(
            dst.host, src.host, [k * scale for k in recv_counts],
            [k * scale for k in send_counts], async_op=True)
        return self._work("all_to_all_single", [work], [output],
                          [write_all_back([dst])])

    all_to_all_single = alltoall_base

    def _split_counts(self, t: torch.Tensor, splits: Sequence[int],
                      what: str) -> List[int]:
        """Elements per rank of an all_to_all_single tensor split along
        dimension 0 (equal parts when ``splits`` is empty)."""
        n = self._size
        splits = list(splits or [])
        rows = t.shape[0] if t.dim() else 1
        row = math.prod(t.shape[1:])
        if not splits:
            if rows % n:
                raise ValueError("all_to_all_single: %s has %d rows, not a "
                                 "multiple of the group size %d"
                                 % (what, rows, n))
            return [rows // n * row] * n
        if len(splits) != n or sum(splits) != rows or min(splits) < 0:
            raise ValueError("all_to_all_single: %s split sizes %s do not "
                             "split its %d rows into %d parts"
                             % (what, splits, rows, n))
        return [int(k) * row for k in splits]

    def alltoall(self, outputs: Any, inputs: Any, opts: Any = None) -> Any:
        outputs, inputs = list(outputs), list(inputs)
        n = self._size
        if len(outputs) != n or len(inputs) != n:
            raise ValueError("all_to_all: %d outputs and %d inputs for a "
                             "group of %d" % (len(outputs), len(inputs), n))
        like = inputs[0]
        for t in outputs + inputs:
            if t.dtype != like.dtype:
                raise TypeError("all_to_all: tensors of type %s and %s mixed"
                                % (t.dtype, like.dtype))
        src = _packed(inputs, like)
        dst = _ListOut(outputs, like, sum(t.numel() for t in outputs))
        scale = core_elements(like.dtype)
        work = self._need("all_to_all")(
            dst.staged.host, src.host,
            [t.numel() * scale for t in outputs],
            [t.numel() * scale for t in inputs], async_op=True)
        return self._work("all_to_all", [work], outputs,
                          [dst.finish(), write_all_back([dst.staged])])

    # -- barrier ----------------------------------------------------------

    def barrier(self, opts: Any = None) -> Any:
        work = self._work("barrier", [self._comm.barrier(async_op=True)], [])
        timeout = getattr(opts, "timeout", None)
        if isinstance(timeout, timedelta) and timeout > timedelta(0):
            work._default_timeout = timeout  # barrier(timeout=...) of torch
        return work


__all__ = ["CollectivesMixin"]
