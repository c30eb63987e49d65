"""Communicator: one process's membership in a group, and its collectives.

Every op checks its arguments in Python first (types, layouts, sizes), so a
bad call raises :class:`~pyccl.InvalidArgument` before anything reaches the
C core and the ranks' op sequences stay aligned.  Then it posts the op to
the core, whose progress thread runs it; a blocking call waits on the
resulting :class:`~pyccl.Work`.  The GIL is released during every C call.

Collectives must be issued in the same order on every rank.

Threads.  A Communicator may be used from several threads.  Its lock
guards the Python state (the C handle, the set of pending ops, whether an
update_topology runs) and is held only for work that returns at once:
posting an op (the core's ``*_async`` calls only queue it), reading a
counter.  No thread ever holds it while it waits.  The calls that may wait
-- :meth:`Communicator.update_topology` for up to its timeout, and
:meth:`Communicator.stats` while the core's own state is busy -- hold a
*use* of the C handle instead of the lock.  So, during an update_topology
in one thread, other threads can read ``rank``, ``world_size``, ``epoch``
and ``peers_pending()`` at once, and ``close()`` returns at once: it
marks the communicator closed (new calls raise Closed), and the last use
to end -- here, the update_topology, which then raises Closed -- destroys
the core's communicator.  Starting an op or a second update_topology
while one runs is an InvalidUsage error: the safe point needs every op
finished, and ops must be posted in the same order on every rank.
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
from typing import Any, Iterator, List, Optional, Tuple, Union

from pyccl._lib import ffi, lib
from pyccl.buffers import as_buffer, empty_like_shape
from pyccl.dtypes import (DtypeLike, ReduceOp, dtype_name, parse_algorithm,
                           parse_op, parse_quant)
from pyccl.interrupt import call_interruptibly
from pyccl.log import log_membership, start_reader
from pyccl.errors import (Closed, InvalidArgument, InvalidUsage, check,
                          create_checked)
from pyccl.keys import KeyLike, configure as configure_key
from pyccl.master import Master
from pyccl.direct_ops import DirectOps  # send/recv, reduce, gather, ...
from pyccl.op_args import (INT_MAX as _INT_MAX, check_sizes as _check_sizes,
                           deprecated as _deprecated, int_arg as _int_arg,
                           no_overlap as _no_overlap)
from pyccl.stats import CommStats, read_comm_stats
from pyccl.work import Completer, Work

# "Not passed" for arguments where None has a meaning of its own.
_UNSET: Any = object()
# star_max_bytes=None: the epoch's thresholds (CCL_STAR_MAX_AUTO in ccl.h).
_STAR_MAX_AUTO = 2**64 - 1

MasterLike = Union[str, Tuple[str, int], Master]


def parse_master(master: MasterLike) -> Tuple[str, int]:
    """``(host, port)`` of a master given as ``"host:port"``,
    ``"[v6addr]:port"``, a ``(host, port)`` tuple or a :class:`Master`."""
    if isinstance(master, Master):
        host = master.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return host, master.port
    if isinstance(master, str):
        host, sep, port = master.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit():
            raise InvalidArgument("master address %r is not 'host:port'"
                                  % (master,))
        master = (host, int(port))
    if (isinstance(master, tuple) and len(master) == 2
            and isinstance(master[0], str) and master[0]
            and isinstance(master[1], int) and 0 < master[1] <= 65535):
        return master[0], master[1]
    raise InvalidArgument("master must be 'host:port', (host, port) or a "
                          "pyccl.Master, not %r" % (master,))


def _ms(seconds: float, name: str) -> int:
    """Seconds (Python) to whole milliseconds (C), at least 1."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not seconds > 0 or seconds * 1000 > _INT_MAX:
        raise InvalidArgument("%s must be a positive number of seconds, "
                              "not %r" % (name, seconds))
    return max(1, math.ceil(seconds * 1000))


def _shm_wanted(shm: Optional[bool]) -> bool:
    """The shm argument, or PYCCL_SHM when it is None (default on)."""
    if shm is not None:
        return bool(shm)
    env = os.environ.get("PYCCL_SHM", "").strip().lower()
    return env not in ("0", "false", "no", "off")


class Communicator(DirectOps):
    """A member of a group formed by a :class:`Master`.

    The constructor registers with the master and blocks until all
    ``world_size`` members have arrived and connected to each other (at most
    ``connect_timeout`` seconds).

    Args:
        master: the master, as ``"host:port"``, ``(host, port)`` or a
            :class:`Master` object.
        world_size: number of members of the group (>= 1).
        rank: this member's rank (0..world_size-1), or None to get one in
            the order of arrival.
        conns_per_peer: TCP connections to each peer (1..64), or 0 /
            None (the default): automatic -- 4 are opened and each pair's
            data uses as many as its round trip needs (1 on a LAN, up to
            4 on long links; docs/quantization.md, "Connections").
        listen_host: address the other members connect to.
        connect_timeout: seconds allowed to reach the master and form the
            group.
        op_timeout: an op that makes no progress for this many seconds
            fails on every rank.
        spin_us: busy-poll microseconds before blocking: -1 lets the core
            decide (50 when every member on this host can have a core of
            its own, else 0), 0 never spins.  Only waits for ops of up to
            256 KiB spin, and only while spinning pays: once most spins
            end before their op (cores busy with other work), waits stop
            spinning but for one in 32, which notices when it pays again.
        star_max_bytes: ``algorithm="auto"`` uses the star all-reduce up to
            this size, and a broadcast sends directly up to it; every peer
            must pass the same.  ``None`` (the default): the thresholds of
            the master's cost model, from measured round trips and rates
            (:meth:`tuning`).
        chunk_bytes: pipelining unit of the ring all-reduce.
        peer_timeout: a peer silent for this many seconds (stopped, hung
            or cut off) is lost: every op that needs it fails.  Heartbeats
            go out every quarter of it.
        restore_input: an in-place all-reduce that fails gives the input
            back (costs one copy of the buffer); False trades that
            guarantee for speed.
        key: the run's pre-shared key (bytes or str, 16..1024 bytes), the
            same on the master and every peer.  Default: ``PYCCL_KEY_FILE``
            or ``PYCCL_KEY`` from the environment (:mod:`pyccl.keys`).
            Without a key, pyccl talks over loopback only.
        key_file: read the key from this file instead.
        allow_insecure: without a key, talk to other hosts anyway (trusted
            networks only; a warning is printed).  Default:
            ``PYCCL_ALLOW_INSECURE``, else False.
        frame_mac: put a MAC on every frame between peers, so a
            tampered or corrupted byte fails the op instead of landing in
            the result (needs a key; every peer must agree; costs
            bandwidth, see ``docs/benchmarks.md``).
        encrypt: encrypt and authenticate every frame between peers
            (AES-256-GCM, keys from each connection's handshake): nobody
            on the path reads or changes tensors unnoticed.  Needs a key
            and OpenSSL's libcrypto (``libcrypto.so.3`` or ``.so.1.1``,
            loaded at run time: :class:`InvalidArgument` names it when it
            is missing); every peer must agree.  Supersedes ``frame_mac``
            (docs/security.md).
        stats_report: send a compact stats report to the master at most
            this often (seconds, at least 0.1), only after ops finished;
            0 or None: never (docs/observability.md).
        shm: a peer on the same host, in the same network namespace and
            reached directly (no relay, proxy or NAT) gets its frames
            through shared memory; the TCP connection then carries only
            wake-ups and still tells of the peer's death.  ``None`` (the
            default): on, unless ``PYCCL_SHM=0``.  Either end's False keeps
            the pair on TCP (docs/design.md, "Same-host connections").

    Raises:
        MasterUnreachable, Timeout, Rejected, ...: the group could not be
            formed (see :mod:`pyccl.errors`).
    """

    def __init__(self, master: MasterLike, world_size: int,
                 rank: Optional[int] = None, *, conns_per_peer: Optional[int] = None,
                 listen_host: str = "127.0.0.1",
                 connect_timeout: float = 60.0, op_timeout: float = 60.0,
                 spin_us: int = -1, star_max_bytes: Optional[int] = None,
                 chunk_bytes: int = 1 << 20,
                 peer_timeout: float = 30.0,
                 restore_input: bool = True,
                 key: Optional[KeyLike] = None,
                 key_file: Optional[str] = None,
                 allow_insecure: Optional[bool] = None,
                 frame_mac: bool = False,
                 encrypt: bool = False,
                 stats_report: float = 1.0,
                 shm: Optional[bool] = None) -> None:
        host, port = parse_master(master)
        world_size = _int_arg(world_size, "world_size", 1, _INT_MAX)
        rank = -1 if rank is None else _int_arg(rank, "rank", 0,
                                                world_size - 1)
        if not isinstance(listen_host, str) or not listen_host:
            raise InvalidArgument("listen_host must be a non-empty string")
        self._lock = threading.Lock()
        self._pending: set[Work] = set()
        self._c = None
        self._users = 0           # threads inside a call that may block
        self._doomed = None       # the handle close() left to the last user
        self._updating = False    # an update_topology runs
        self._completer: Optional[Completer] = None  # for get_future()
        self._retries = 0         # run_with_retry re-runs (stats)
        self._op_cache: dict = {}  # seq -> OpStats already converted

        cfg = ffi.new("ccl_comm_config *")
        lib.ccl_comm_config_init(cfg)
        # The strings must outlive ccl_comm_create; these locals do.
        host_c = ffi.new("char[]", host.encode())
        listen_c = ffi.new("char[]", listen_host.encode())
        cfg.master_host = host_c
        cfg.master_port = port
        cfg.world_size = world_size
        cfg.rank = rank
        cfg.conns_per_peer = 0 if conns_per_peer is None else _int_arg(
            conns_per_peer, "conns_per_peer", 0, 64)
        cfg.listen_host = listen_c
        cfg.connect_timeout_ms = _ms(connect_timeout, "connect_timeout")
        cfg.op_timeout_ms = _ms(op_timeout, "op_timeout")
        self._op_timeout = cfg.op_timeout_ms / 1000.0
        cfg.spin_us = _int_arg(spin_us, "spin_us", -1, _INT_MAX)
        cfg.star_max_bytes = (_STAR_MAX_AUTO if star_max_bytes is None else
                              _int_arg(star_max_bytes, "star_max_bytes", 0,
                                       _STAR_MAX_AUTO - 1))
        cfg.chunk_bytes = _int_arg(chunk_bytes, "chunk_bytes", 1, 2**32 - 1)
        cfg.peer_timeout_ms = _ms(peer_timeout, "peer_timeout")
        cfg.restore_input = 1 if restore_input else 0
        # key_c holds the key until ccl_comm_create has copied it.
        key_c = configure_key(cfg, key, key_file, allow_insecure)  # noqa: F841
        cfg.frame_mac = 1 if frame_mac else 0
        cfg.encrypt = 1 if encrypt else 0
        cfg.shm = 1 if _shm_wanted(shm) else 0
        cfg.stats_report_ms = 0 if not stats_report else max(
            100, _ms(stats_report, "stats_report"))

        # Ctrl-C while the group forms stops the join within 50 ms.
        cancel = ffi.new("int *")
        cfg.cancel = cancel

        def stop() -> None:
            cancel[0] = 1

        start_reader()  # before the core's first line
        self._c = call_interruptibly(
            lambda: create_checked(lib.ccl_comm_create, cfg, "ccl_comm",
                                   lib.ccl_comm_destroy), stop, "join")
        self._identify(self._c)

    def _identify(self, c: Any) -> None:
        """Reads rank, size and epoch, which change only at creation and
        in update_topology (so reading them costs no C call later)."""
        self._rank = int(lib.ccl_comm_rank(c))
        self._size = int(lib.ccl_comm_size(c))
        self._epoch = int(lib.ccl_comm_epoch(c))

    # -- state ------------------------------------------------------------

    @property
    def rank(self) -> int:
        """This member's rank, 0..world_size-1."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Number of members of the group."""
        return self._size

    size = world_size

    @property
    def epoch(self) -> int:
        """The epoch of the group this communicator belongs to."""
        with self._lock:
            self._handle()
            return self._epoch

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._c is None

    def stats(self, max_ops: int = 64) -> CommStats:
        """What this communicator counted: totals (``tx_bytes`` and
        ``rx_bytes`` over every connection, headers included; finished
        ops; retries), one :class:`~pyccl.stats.LinkStats` per peer of the
        epoch (bytes, receive rate, RTT, connections, errors, slow-link
        verdict) and the last ``max_ops`` finished ops (at most 64) as
        :class:`~pyccl.stats.OpStats` (bytes, wall time, bus bandwidth,
        algorithm).  Never waits for the network or for a running op;
        see docs/observability.md.  ``stats()["tx_bytes"]`` still works."""
        with self._use() as c:
            return read_comm_stats(c, self._retries, max_ops, self._op_cache)

    def _note_retry(self) -> None:
        """run_with_retry is about to run its block again."""
        with self._lock:
            self._retries += 1

    # -- membership -------------------------------------------------------

    def peers_pending(self) -> int:
        """Joiners waiting at the master for the next :meth:`update_topology`
        (as the master last announced; no network round trip)."""
        with self._lock:
            return int(lib.ccl_comm_peers_pending(self._handle()))

    def update_topology(self, timeout: Optional[float] = None,
                        _optimize: bool = False) -> bool:
        """The safe point for membership changes.

        Every member calls it at the same point of its loop, with no op
        pending.  The master drops the peers that were lost and admits the
        joiners that wait; every member continues in the next epoch, with
        new ranks (survivors keep their order).  Cheap when nothing changed.
        If the master was restarted, this reconnects to it.

        It does not hold the communicator's lock while it waits (see the
        module's docstring): other threads may read the communicator's
        state or close it meanwhile.

        Args:
            timeout: seconds to wait for the master's answer and the new
                mesh.  None (the default): ``op_timeout + 5`` seconds, so
                that members may reach the safe point up to ``op_timeout``
                apart (the master waits for the last of them until the
                first one's deadline, less a reserve of at most 2 s for
                building the next mesh).

        Returns:
            True when the group changed (new epoch, maybe new rank and
            world size), False when it stayed as it was.

        Raises:
            InvalidUsage: ops are still pending, or another thread is in
                update_topology.
            Closed: the communicator was closed (before or during it).
            MasterUnreachable, Timeout, Rejected: see :mod:`pyccl.errors`.
            KeyboardInterrupt: Ctrl-C in the main thread stops the wait
                within 0.2 s (the update then failed: call it again).
        """
        if self._pending:
            self._sweep()
        if timeout is None:
            timeout = self._op_timeout + 5.0
        ms = _ms(timeout, "timeout")
        with self._use(updating=True) as c:
            before = (self._epoch, self._rank, self._size)
            call = (lib.ccl_comm_optimize_topology if _optimize
                    else lib.ccl_comm_update_topology)
            rc = call_interruptibly(
                lambda: call(c, ms),
                lambda: lib.ccl_comm_interrupt(c), "update_topology")
            detail = self._detail(c) if rc != lib.CCL_OK else ""
            if rc == lib.CCL_OK:
                self._identify(c)
        if self.closed:
            raise Closed("the communicator was closed during update_topology")
        log_membership(before, (self._epoch, self._rank, self._size), rc,
                       detail)
        check(rc, detail)
        return self._epoch != before[0]

    def optimize_topology(self, timeout: Optional[float] = None) -> bool:
        """:meth:`update_topology` that also asks the master for a better
        ring order.

        Every member calls it at the same safe point, with no op pending,
        instead of ``update_topology``.  A short probe first measures the
        links nobody has measured yet (about 128 KiB per link; none when
        ring traffic, star traffic or an earlier probe measured every
        link).  The master then picks the order of the ranks around the
        ring whose slowest link is fastest; when that beats the current
        order by at least 1.25x, every member continues in a new epoch
        with the new order and the **same ranks**.  Membership changes are
        handled as in ``update_topology``.  See docs/observability.md,
        "Ring order".

        Results of ring ops stay bit-identical on every rank; with a new
        order partial sums are added in another order, so the bits of a
        floating-point sum may differ from the old order's.

        Returns:
            True when a new epoch began (a new ring order or new members),
            False when nothing changed.

        Raises: as :meth:`update_topology`.
        """
        return self.update_topology(timeout, _optimize=True)

    def tuning(self) -> dict:
        """The thresholds of the automatic algorithm choice in the current
        epoch: ``allreduce_star_max`` (the star all-reduce up to this many
        bytes, the ring above), ``allreduce_direct_max`` (0, or: the direct
        all-reduce from 64 KiB up to this many bytes), ``bcast_direct_max`` (a broadcast's direct
        sends up to this size, a chain above), the model's inputs
        ``latency_us`` (one-way, median of the links) and ``rate`` (bytes/s,
        median), and ``source``: ``"default"`` (no measurements yet),
        ``"model"`` (the master's cost model, from the links the members
        measured; it changes at a new epoch: a reform, or
        :meth:`optimize_topology` when a threshold moves by more than 4x) or ``"fixed"`` (``star_max_bytes`` was
        given).  See docs/design.md, "AUTO: choosing the algorithm"."""
        with self._use() as c:
            t = ffi.new("ccl_tuning *")
            check(lib.ccl_comm_get_tuning(c, t))
            source = {0: "default", 1: "model", 2: "fixed"}.get(int(t.source), "?")
            return {"allreduce_star_max": int(t.allreduce_star_max),
                    "allreduce_direct_max": int(t.allreduce_direct_max),
                    "bcast_direct_max": int(t.bcast_direct_max),
                    "latency_us": int(t.latency_us),
                    "rate": int(t.rate_kbs) * 1000,
                    "source": source}

    def ring_order(self) -> list:
        """The ranks in the order the ring visits them (ring all-reduce,
        reduce-scatter, all-gather): ``[0, 1, ..., n-1]`` unless the
        master chose another order (:meth:`optimize_topology`)."""
        with self._use() as c:
            n = int(lib.ccl_comm_ring_order(c, ffi.NULL, 0))
            buf = ffi.new("int[]", max(n, 1))
            n = int(lib.ccl_comm_ring_order(c, buf, n))
            return [int(buf[i]) for i in range(n)]

    # -- the handle -------------------------------------------------------

    def _handle(self) -> Any:
        """The C handle; call with the lock held."""
        c = self._c
        if c is None:
            raise Closed("the communicator is closed")
        return c

    @contextlib.contextmanager
    def _use(self, updating: bool = False) -> Iterator[Any]:
        """Holds a use of the C handle, without the lock, for a call that
        may block; ``updating``: that call is update_topology."""
        with self._lock:
            c = self._handle()
            if updating:
                if self._updating:
                    raise InvalidUsage("update_topology is already running "
                                       "in another thread")
                self._updating = True
            self._users += 1
        try:
            yield c
        finally:
            with self._lock:
                self._users -= 1
                if updating:
                    self._updating = False
                doomed = self._doomed if self._users == 0 else None
                if doomed is not None:
                    self._doomed = None
                    pending = list(self._pending)
            if doomed is not None:
                _destroy(doomed, pending)

    @staticmethod
    def _detail(c: Any) -> str:
        return ffi.string(lib.ccl_comm_error(c)).decode("utf-8", "replace")

    # -- pending ops ------------------------------------------------------

    def _forget(self, work: Work) -> None:
        with self._lock:
            self._pending.discard(work)

    def _sweep(self) -> None:
        with self._lock:
            pending = list(self._pending)
        for work in pending:
            work._sweep()

    def _get_completer(self) -> Completer:
        """The thread that completes the futures of this communicator's
        ops (see :meth:`Work.get_future`), made on first use."""
        with self._lock:
            if self._completer is None:
                self._completer = Completer("pyccl futures")
            return self._completer

    def _post(self, name: str, start: Any, result: Any, keep: tuple,
              async_op: bool, ordered: bool = True) -> Any:
        """Posts one op (``start(c, out)`` calls the ``ccl_*_async``
        function), then waits for it unless ``async_op``.  ``ordered``:
        a collective, which ends in posting order (point-to-point ops
        are not)."""
        if self._pending:
            self._sweep()
        out = ffi.new("ccl_op **")
        # Under the lock (posting returns at once), so a close() in another
        # thread cannot destroy the communicator mid-call, and finds the new
        # op among the pending.
        with self._lock:
            c = self._handle()
            if self._updating:
                raise InvalidUsage("%s while update_topology runs in another "
                                   "thread" % name)
            rc = start(c, out)
            if rc != lib.CCL_OK:
                check(rc, self._detail(c) or "%s could not start" % name)
            work = Work(self._forget, out[0], result, keep, name,
                        self._get_completer, ordered)
            self._pending.add(work)
        return work if async_op else work.wait()

    # -- collectives ------------------------------------------------------

    def all_reduce(self, tensor: Any, op: Union[ReduceOp, str] = "sum", *,
                   out: Any = None, algorithm: str = "auto",
                   dtype: Optional[DtypeLike] = None,
                   async_op: bool = False, quant: Optional[str] = None,
                   quant_block: int = 256, quant_seed: int = 0) -> Any:
        """Reduces ``tensor`` element-wise over all ranks.

        Args:
            tensor: numpy array or CPU torch tensor, contiguous.
            op: ``"sum"``, ``"avg"``, ``"min"``, ``"max"``, ``"prod"`` or a
                :class:`ReduceOp`.
            out: where the result goes (same size and element type); None
                reduces in place.
            algorithm: ``"auto"``, ``"ring"``, ``"star"`` or ``"direct"``
                (reduce-scatter and all-gather straight between every pair:
                2 hops; see docs/design.md).
            dtype: read the elements as this type instead (same width).
            async_op: return a :class:`Work` instead of waiting.
            quant: send every contribution in a smaller format: ``"u8"``,
                ``"u4"``, ``"e3m0"``, ``"f16"`` or ``"bf16"`` (float32 data
                only; docs/quantization.md gives the error bounds).  The
                sum is taken in float32 and every rank ends with the same
                bits.  ``algorithm`` applies too: ``"auto"`` takes the star
                for small ops and the ring above; ``"direct"`` encodes each
                input once (less error, 2 hops; docs/quantization.md).
            quant_block: elements per scale block of u8/u4/e3m0 (a power
                of two up to 65536); ranks must agree.
            quant_seed: 0 rounds to nearest; any other value rounds
                stochastically (unbiased), the same draws on every rank.

        Returns:
            ``out`` (or ``tensor`` when in place), or a Work.
        """
        redop = parse_op(op)
        algo = parse_algorithm(algorithm)
        if quant is not None:
            return self._all_reduce_quant(tensor, redop, out, dtype, async_op,
                                          parse_quant(quant), quant_block,
                                          quant_seed, algo)
        send = as_buffer(tensor, writable=out is None, dtype=dtype)
        recv = send
        if out is not None:
            recv = as_buffer(out, writable=True, dtype=dtype, what="out")
            _check_sizes(recv, send, 1, "out", "tensor's count")
            _no_overlap(send, recv)
        return self._post(
            "all_reduce",
            lambda c, o: lib.ccl_allreduce_async(
                c, send.ptr, recv.ptr, send.count, send.dtype, int(redop),
                algo, o),
            recv.obj, (send, recv), async_op)

    def _all_reduce_quant(self, tensor: Any, redop: ReduceOp, out: Any,
                          dtype: Optional[DtypeLike], async_op: bool,
                          fmt: int, block: int, seed: int,
                          algo: int = 0) -> Any:
        send = as_buffer(tensor, writable=out is None, dtype=dtype)
        recv = send
        if out is not None:
            recv = as_buffer(out, writable=True, dtype=dtype, what="out")
            _check_sizes(recv, send, 1, "out", "tensor's count")
            _no_overlap(send, recv)
        if send.dtype != lib.CCL_F32:
            raise InvalidArgument("a quantized all-reduce takes float32 data, "
                                  "not %s" % dtype_name(send.dtype))
        if not isinstance(block, int) or block <= 0 or block > 65536 or \
                block & (block - 1):
            raise InvalidArgument("quant_block must be a power of two up to "
                                  "65536, not %r" % (block,))
        if not isinstance(seed, int) or not 0 <= seed < 1 << 64:
            raise InvalidArgument("quant_seed must be an integer in [0, 2**64)")
        return self._post(
            "all_reduce",
            lambda c, o: lib.ccl_allreduce_quant_algo_async(
                c, send.ptr, recv.ptr, send.count, int(redop), algo, fmt,
                block, seed, o),
            recv.obj, (send, recv), async_op)

    def broadcast(self, tensor: Any, src: Optional[int] = None, *,
                  root: Optional[int] = None,
                  dtype: Optional[DtypeLike] = None,
                  async_op: bool = False) -> Any:
        """Copies rank ``src``'s ``tensor`` into ``tensor`` on every rank
        (``src`` defaults to 0; ``root=`` is its old, deprecated name).

        Returns ``tensor``, or a :class:`Work` when ``async_op``."""
        if root is not None:
            if src is not None:
                raise InvalidArgument("pass src, not both src and root")
            _deprecated("broadcast(tensor, root=r)",
                        "broadcast(tensor, src=r)")
            src = root
        src = _int_arg(0 if src is None else src, "src", 0, self._size - 1)
        buf = as_buffer(tensor, writable=True, dtype=dtype)
        return self._post(
            "broadcast",
            lambda c, o: lib.ccl_broadcast_async(c, buf.ptr, buf.count,
                                                 buf.dtype, src, o),
            buf.obj, (buf,), async_op)

    def all_gather(self, output: Any = _UNSET, input: Any = _UNSET, *,
                   out: Any = None, tensor: Any = None,
                   dtype: Optional[DtypeLike] = None,
                   async_op: bool = False) -> Any:
        """Gathers every rank's ``input`` into ``output``, in rank order
        (torch's argument order).

        Args:
            output: world_size * n elements of the input's type.
            input: this rank's contribution (n elements).

        ``all_gather(input)`` (one argument) allocates the output, of
        shape ``(world_size,) + input.shape``.  The old spelling
        ``all_gather(tensor, out)`` / ``all_gather(tensor, out=out)``
        still works with a DeprecationWarning when the sizes tell it
        apart; with world_size 1 two positional arguments of equal size
        are read in the new order (output first).

        Returns ``output``, or a :class:`Work` when ``async_op``."""
        output, input = self._sort_args(
            "all_gather", output, input, out, tensor, dtype, gather=True)
        send = as_buffer(input, writable=False, dtype=dtype, what="input")
        if output is None:
            output = empty_like_shape(input,
                                      (self._size,) + tuple(input.shape))
        recv = as_buffer(output, writable=True, dtype=dtype, what="output")
        _check_sizes(recv, send, self._size, "output", "world_size * input")
        _no_overlap(send, recv)
        return self._post(
            "all_gather",
            lambda c, o: lib.ccl_allgather_async(c, send.ptr, recv.ptr,
                                                 send.count, send.dtype, o),
            recv.obj, (send, recv), async_op)

    def reduce_scatter(self, output: Any = _UNSET, input: Any = _UNSET,
                       op: Union[ReduceOp, str] = "sum", *,
                       out: Any = None, tensor: Any = None,
                       dtype: Optional[DtypeLike] = None,
                       async_op: bool = False) -> Any:
        """Reduces ``input`` over all ranks; rank r receives block r in
        ``output`` (torch's argument order).

        Args:
            output: n elements.
            input: world_size * n elements of the same type.
            op: the reduction (see :meth:`all_reduce`).

        ``reduce_scatter(input)`` (one argument) allocates the output, of
        shape ``input.shape[1:]`` when ``input`` has two or more dimensions
        and ``input.shape[0] == world_size``, else ``(n,)``.  The old
        spelling ``reduce_scatter(tensor, out)`` / ``(tensor, out=out)``
        still works with a DeprecationWarning when the sizes tell it
        apart (world_size 1: the new order).

        Returns ``output``, or a :class:`Work` when ``async_op``."""
        redop = parse_op(op)
        output, input = self._sort_args(
            "reduce_scatter", output, input, out, tensor, dtype, gather=False)
        send = as_buffer(input, writable=False, dtype=dtype, what="input")
        if send.count % self._size:
            raise InvalidArgument(
                "input has %d elements, not a multiple of world_size %d"
                % (send.count, self._size))
        n = send.count // self._size
        if output is None:
            shape = tuple(input.shape)
            blocks = len(shape) >= 2 and shape[0] == self._size
            output = empty_like_shape(input, shape[1:] if blocks else (n,))
        recv = as_buffer(output, writable=True, dtype=dtype, what="output")
        _check_sizes(send, recv, self._size, "input", "world_size * output")
        _no_overlap(send, recv)
        return self._post(
            "reduce_scatter",
            lambda c, o: lib.ccl_reduce_scatter_async(
                c, send.ptr, recv.ptr, n, send.dtype, int(redop), o),
            recv.obj, (send, recv), async_op)

    def _sort_args(self, name: str, first: Any, second: Any, out: Any,
                   tensor: Any, dtype: Optional[DtypeLike],
                   gather: bool) -> Tuple[Any, Any]:
        """``(output or None, input)`` of an all_gather (``gather``) or a
        reduce_scatter called in any of the accepted spellings."""
        old = "%s(tensor, out)" % name
        new = "%s(output, input)" % name
        if out is not None or tensor is not None:  # the old keywords
            if tensor is not None and first is not _UNSET:
                raise InvalidArgument("%s: pass the input once" % name)
            if second is not _UNSET:
                raise InvalidArgument("%s: pass the output once" % name)
            _deprecated("%s(tensor=..., out=...)" % name, new)
            return out, tensor if tensor is not None else first
        if first is _UNSET:
            if second is _UNSET:
                raise InvalidArgument("%s needs an input" % name)
            return None, second          # all_gather(input=x)
        if second is _UNSET:
            return None, first           # all_gather(x): allocate
        # Two tensors: the output holds world_size times the input's
        # elements for all_gather, a world_size-th for reduce_scatter.
        a = as_buffer(first, writable=False, dtype=dtype, what="output")
        b = as_buffer(second, writable=False, dtype=dtype, what="input")
        n = self._size
        big, small = (a, b) if gather else (b, a)
        if big.count == small.count * n:
            return first, second
        big, small = (b, a) if gather else (a, b)
        if big.count == small.count * n:
            _deprecated(old, new)
            return second, first
        return first, second             # the size check explains

    # -- synchronisation --------------------------------------------------

    def barrier(self, *, async_op: bool = False) -> Optional[Work]:
        """Returns once every rank has entered the barrier (or a
        :class:`Work` when ``async_op``)."""
        return self._post("barrier", lambda c, o: lib.ccl_barrier_async(c, o),
                          None, (), async_op)

    # -- lifetime ---------------------------------------------------------

    def close(self) -> None:
        """Leaves the group.  Idempotent and does not wait: ops still
        running fail with :class:`~pyccl.Closed`; an update_topology
        running in another thread raises Closed when it returns."""
        with self._lock:
            c, self._c = self._c, None
            if c is not None and self._users:
                self._doomed, c = c, None  # the last user destroys it
            pending = list(self._pending)
        if c is not None:
            _destroy(c, pending)

    def __enter__(self) -> "Communicator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Runs before the attributes are torn down, so pending ops' buffers
        # are still alive while the core is stopped.
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return "<pyccl.Communicator rank %d of %d, %s>" % (
            getattr(self, "_rank", -1), getattr(self, "_size", 0), state)


def _destroy(c: Any, pending: List[Work]) -> None:
    """Destroys the core's communicator, then collects its ops."""
    ffi.gc(c, None)  # detach the safety net: destroy exactly once
    lib.ccl_comm_destroy(c)
    # Every op has ended now; free them and release their buffers.
    for work in pending:
        work._finish_after_close()


__all__ = ["Communicator", "parse_master"]
