"""The Communicator's point-to-point ops and its collectives with a root
or a size per rank (reduce, gather, scatter, all_to_all, all_gatherv,
reduce_scatterv): the core's direct collectives, where every block goes
straight from its source to its destination.  A mixin of
:class:`~pyccl.Communicator` (which provides ``_rank``, ``_size`` and
``_post``); kept apart so communicator.py stays one job: the handle and
the ring/star collectives.
"""
from __future__ import annotations

from typing import Any, List, Optional, Union

from pyccl._lib import ffi, lib
from pyccl.buffers import Buffer, as_buffer, empty_like_shape
from pyccl.dtypes import DtypeLike, ReduceOp, parse_op
from pyccl.errors import InvalidArgument
from pyccl.op_args import (check_sizes as _check_sizes,
                           int_arg as _int_arg, no_overlap as _no_overlap,
                           same_type as _same_type)


class DirectOps:
    """send/recv and the direct collectives; see the module docstring."""

    _rank: int
    _size: int
    _post: Any

    # -- point-to-point ---------------------------------------------------

    def send(self, tensor: Any, dst: int, tag: int = 0, *,
             dtype: Optional[DtypeLike] = None,
             async_op: bool = False) -> Any:
        """Sends ``tensor`` to rank ``dst``, where a :meth:`recv` with the
        same tag takes it (the k-th send from a to b with a tag meets the
        k-th recv at b from a with that tag; counts and types must agree,
        else both fail with :class:`~pyccl.Mismatch`).  Unlike collectives,
        sends and recvs need not be posted in the same order on every rank.

        Returns None, or a :class:`Work` when ``async_op``."""
        dst = self._peer_arg(dst, "dst")
        tag = _int_arg(tag, "tag", 0, 2**32 - 1)
        buf = as_buffer(tensor, writable=False, dtype=dtype)
        return self._post(
            "send",
            lambda c, o: lib.ccl_send_async(c, buf.ptr, buf.count, buf.dtype,
                                            dst, tag, o),
            None, (buf,), async_op, ordered=False)

    def recv(self, tensor: Any, src: Optional[int] = None, tag: int = 0, *,
             dtype: Optional[DtypeLike] = None,
             async_op: bool = False) -> Any:
        """Receives into ``tensor`` the next message from rank ``src`` with
        this tag (``src=None``: from any rank; recvs from any source are
        matched in the order they were posted).

        Returns the sender's rank, as torch's ``recv`` does; with
        ``async_op`` a :class:`Work` whose ``wait()`` returns ``tensor``
        and whose ``source_rank()`` names the sender."""
        peer = (lib.CCL_ANY_SOURCE if src is None
                else self._peer_arg(src, "src"))
        tag = _int_arg(tag, "tag", 0, 2**32 - 1)
        buf = as_buffer(tensor, writable=True, dtype=dtype)
        work = self._post(
            "recv",
            lambda c, o: lib.ccl_recv_async(c, buf.ptr, buf.count, buf.dtype,
                                            peer, tag, o),
            buf.obj, (buf,), True, ordered=False)
        if async_op:
            return work
        work.wait()
        return work.source_rank()

    def _peer_arg(self, peer: Any, name: str) -> int:
        peer = _int_arg(peer, name, 0, self._size - 1)
        if peer == self._rank:
            raise InvalidArgument("%s is this rank (%d): a rank cannot send "
                                  "to itself" % (name, peer))
        return peer

    # -- rooted collectives and sizes per rank ---------------------------

    def reduce(self, tensor: Any, dst: int = 0,
               op: Union[ReduceOp, str] = "sum", *, out: Any = None,
               dtype: Optional[DtypeLike] = None,
               async_op: bool = False) -> Any:
        """Reduces ``tensor`` over all ranks into rank ``dst``: in place
        there (or into ``out``, on ``dst`` only); other ranks' tensors are
        only read.  Contributions are combined in rank order, so a retry
        gives the same bits.

        Returns the result on ``dst`` (None elsewhere), or a
        :class:`Work` when ``async_op``."""
        redop = parse_op(op)
        dst = _int_arg(dst, "dst", 0, self._size - 1)
        root = self._rank == dst
        send = as_buffer(tensor, writable=root and out is None, dtype=dtype)
        recv = None
        if root:
            recv = send
            if out is not None:
                recv = as_buffer(out, writable=True, dtype=dtype, what="out")
                _check_sizes(recv, send, 1, "out", "tensor's count")
                _no_overlap(send, recv)
        recv_ptr = ffi.NULL if recv is None else recv.ptr
        return self._post(
            "reduce",
            lambda c, o: lib.ccl_reduce_async(
                c, send.ptr, recv_ptr, send.count, send.dtype, int(redop),
                dst, o),
            None if recv is None else recv.obj,
            (send,) if recv is None else (send, recv), async_op)

    def gather(self, tensor: Any, output: Any = None, dst: int = 0, *,
               dtype: Optional[DtypeLike] = None,
               async_op: bool = False) -> Any:
        """Gathers every rank's ``tensor`` (n elements) on rank ``dst``
        into ``output`` (world_size * n elements, in rank order; None
        allocates one of shape ``(world_size,) + tensor.shape``).  Other
        ranks pass no output.

        Returns the output on ``dst`` (None elsewhere), or a :class:`Work`
        when ``async_op``."""
        dst = _int_arg(dst, "dst", 0, self._size - 1)
        send = as_buffer(tensor, writable=False, dtype=dtype)
        recv = None
        if self._rank == dst:
            if output is None:
                output = empty_like_shape(tensor, (self._size,)
                                          + tuple(tensor.shape))
            recv = as_buffer(output, writable=True, dtype=dtype,
                             what="output")
            _check_sizes(recv, send, self._size, "output",
                         "world_size * tensor")
            _no_overlap(send, recv)
        elif output is not None:
            raise InvalidArgument("gather: output given on rank %d, which "
                                  "is not dst %d" % (self._rank, dst))
        recv_ptr = ffi.NULL if recv is None else recv.ptr
        return self._post(
            "gather",
            lambda c, o: lib.ccl_gather_async(c, send.ptr, recv_ptr,
                                              send.count, send.dtype, dst, o),
            None if recv is None else recv.obj,
            (send,) if recv is None else (send, recv), async_op)

    def scatter(self, tensor: Any, input: Any = None, src: int = 0, *,
                dtype: Optional[DtypeLike] = None,
                async_op: bool = False) -> Any:
        """Rank ``src`` splits ``input`` (world_size * n elements) into
        world_size blocks; rank r receives block r into ``tensor`` (n
        elements).  Other ranks pass no input.

        Returns ``tensor``, or a :class:`Work` when ``async_op``."""
        src = _int_arg(src, "src", 0, self._size - 1)
        recv = as_buffer(tensor, writable=True, dtype=dtype)
        send = None
        if self._rank == src:
            if input is None:
                raise InvalidArgument("scatter: rank %d is src and needs an "
                                      "input" % src)
            send = as_buffer(input, writable=False, dtype=dtype,
                             what="input")
            _check_sizes(send, recv, self._size, "input",
                         "world_size * tensor")
            _no_overlap(send, recv)
        elif input is not None:
            raise InvalidArgument("scatter: input given on rank %d, which "
                                  "is not src %d" % (self._rank, src))
        send_ptr = ffi.NULL if send is None else send.ptr
        return self._post(
            "scatter",
            lambda c, o: lib.ccl_scatter_async(c, send_ptr, recv.ptr,
                                               recv.count, recv.dtype, src, o),
            recv.obj, (recv,) if send is None else (recv, send), async_op)

    def all_to_all(self, output: Any, input: Any,
                   output_counts: Optional[List[int]] = None,
                   input_counts: Optional[List[int]] = None, *,
                   dtype: Optional[DtypeLike] = None,
                   async_op: bool = False) -> Any:
        """Every rank sends ``input_counts[j]`` elements of ``input`` (blocks
        in rank order) to rank j and receives ``output_counts[i]`` elements
        from rank i into ``output``.  Counts left out mean equal blocks
        (the buffer's size divided by world_size).  What two ranks say
        about the block between them must agree (else
        :class:`~pyccl.Mismatch`).

        Returns ``output``, or a :class:`Work` when ``async_op``."""
        send = as_buffer(input, writable=False, dtype=dtype, what="input")
        recv = as_buffer(output, writable=True, dtype=dtype, what="output")
        _same_type(recv, send, "output")
        _no_overlap(send, recv)
        send_counts = self._counts(input_counts, send, "input")
        recv_counts = self._counts(output_counts, recv, "output")
        if send_counts[self._rank] != recv_counts[self._rank]:
            raise InvalidArgument(
                "all_to_all: this rank sends itself %d elements but expects "
                "%d" % (send_counts[self._rank], recv_counts[self._rank]))
        sc = ffi.new("uint64_t[]", send_counts)
        rc = ffi.new("uint64_t[]", recv_counts)
        return self._post(
            "all_to_all",
            lambda c, o: lib.ccl_alltoallv_async(c, send.ptr, sc, recv.ptr,
                                                 rc, send.dtype, o),
            recv.obj, (send, recv, sc, rc), async_op)

    def all_gatherv(self, output: Any, input: Any, counts: List[int], *,
                    dtype: Optional[DtypeLike] = None,
                    async_op: bool = False) -> Any:
        """all_gather with a size per rank: ``output`` receives
        ``counts[r]`` elements from rank r, in rank order;
        ``counts[rank]`` must be ``input``'s size.

        Returns ``output``, or a :class:`Work` when ``async_op``."""
        send = as_buffer(input, writable=False, dtype=dtype, what="input")
        recv = as_buffer(output, writable=True, dtype=dtype, what="output")
        _same_type(recv, send, "output")
        _no_overlap(send, recv)
        counts = self._counts(counts, recv, "output")
        if counts[self._rank] != send.count:
            raise InvalidArgument(
                "all_gatherv: counts[%d] is %d but input has %d elements"
                % (self._rank, counts[self._rank], send.count))
        cc = ffi.new("uint64_t[]", counts)
        return self._post(
            "all_gatherv",
            lambda c, o: lib.ccl_allgatherv_async(c, send.ptr, send.count,
                                                  recv.ptr, cc, send.dtype, o),
            recv.obj, (send, recv, cc), async_op)

    def reduce_scatterv(self, output: Any, input: Any, counts: List[int],
                        op: Union[ReduceOp, str] = "sum", *,
                        dtype: Optional[DtypeLike] = None,
                        async_op: bool = False) -> Any:
        """reduce_scatter with a size per rank: ``input`` holds
        ``sum(counts)`` elements; rank r receives block r (``counts[r]``
        elements) of the reduction into ``output``.  Contributions are
        combined in rank order.

        Returns ``output``, or a :class:`Work` when ``async_op``."""
        redop = parse_op(op)
        send = as_buffer(input, writable=False, dtype=dtype, what="input")
        recv = as_buffer(output, writable=True, dtype=dtype, what="output")
        _same_type(recv, send, "output")
        _no_overlap(send, recv)
        counts = self._counts(counts, send, "input")
        if counts[self._rank] != recv.count:
            raise InvalidArgument(
                "reduce_scatterv: counts[%d] is %d but output has %d "
                "elements" % (self._rank, counts[self._rank], recv.count))
        cc = ffi.new("uint64_t[]", counts)
        return self._post(
            "reduce_scatterv",
            lambda c, o: lib.ccl_reduce_scatterv_async(
                c, send.ptr, recv.ptr, cc, send.dtype, int(redop), o),
            recv.obj, (send, recv, cc), async_op)

    def _counts(self, counts: Optional[List[int]], buf: Buffer,
                what: str) -> List[int]:
        """Checked element counts per rank that add up to ``buf``'s size
        (None: equal blocks)."""
        n = self._size
        if counts is None:
            if buf.count % n:
                raise InvalidArgument(
                    "%s has %d elements, not a multiple of world_size %d"
                    % (what, buf.count, n))
            return [buf.count // n] * n
        try:
            counts = [int(k) for k in counts]
        except (TypeError, ValueError):
            raise InvalidArgument("%s counts must be integers, not %r"
                                  % (what, counts)) from None
        if len(counts) != n or min(counts) < 0:
            raise InvalidArgument("%s counts must be %d non-negative "
                                  "integers, not %r" % (what, n, counts))
        if sum(counts) != buf.count:
            raise InvalidArgument("%s has %d elements but its counts add up "
                                  "to %d" % (what, buf.count, sum(counts)))
        return counts


__all__ = ["DirectOps"]
