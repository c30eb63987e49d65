"""Observability: what a communicator (and a master) counted, as plain
dataclasses.

:meth:`pyccl.Communicator.stats` returns a :class:`CommStats`: totals, one
:class:`LinkStats` per peer of the current epoch, and the most recent
finished ops as :class:`OpStats` (at most 64 are kept).  Reading them takes
a small lock of the C core's own, never the lock that drives the network,
so it is cheap enough to call every step (``docs/observability.md`` has
the measured cost).  :meth:`pyccl.Master.stats` returns a
:class:`MasterStats`: what the members last reported, and the master's
verdict on slow links over the whole group.

Every value is a snapshot; ``as_dict()`` gives JSON-ready dicts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from pyccl._lib import ffi, lib

#: The collective kinds of docs/protocol.md: (operation, algorithm).
KINDS = {
    1: ("all_reduce", "ring"),
    2: ("all_reduce", "star"),
    3: ("broadcast", "direct/chain"),
    4: ("all_gather", "ring"),
    5: ("reduce_scatter", "ring"),
    6: ("barrier", "star"),
    7: ("send/recv", "p2p"),
    8: ("gather", "direct"),
    9: ("scatter", "direct"),
    10: ("all_to_all", "direct"),
    11: ("all_gatherv", "direct"),
    12: ("reduce_scatterv", "direct"),
    13: ("reduce", "direct"),
    14: ("all_reduce", "star-quantized"),
    15: ("all_reduce", "ring-quantized"),
    16: ("all_reduce", "direct"),
    17: ("all_reduce", "direct-quantized"),
}

_DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "int16",
           "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
_REDOPS = ["sum", "avg", "min", "max", "prod", "band", "bor", "bxor"]

#: How many links and ops one stats() call copies at most.
_MAX_OPS = 64


def bus_factor(operation: str, world_size: int) -> float:
    """The factor from algorithm bandwidth (bytes / time) to bus bandwidth,
    as nccl-tests defines it: all-reduce 2(n-1)/n, all-gather and
    reduce-scatter (n-1)/n (bytes = the whole gathered buffer), 1 for the
    rest."""
    n = max(world_size, 1)
    if operation == "all_reduce":
        return 2.0 * (n - 1) / n
    if operation in ("all_gather", "reduce_scatter"):
        return (n - 1) / n
    return 1.0


class _Dict:
    def as_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (nested dataclasses become dicts and lists)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class OpStats(_Dict):
    """One finished op, as this rank saw it."""
    seq: int             #: 1 for the communicator's first finished op
    epoch: int
    tag: int
    operation: str       #: "all_reduce", "broadcast", ...
    algorithm: str       #: "ring", "star", "direct", ...
    dtype: str
    redop: str
    world_size: int
    ok: bool
    error_code: int      #: 0, or the ccl_result it failed with
    bytes: int           #: the op's buffer size
    tx_bytes: int        #: DATA payload bytes it sent from here
    rx_bytes: int        #: DATA payload bytes it received here
    wall_time: float     #: seconds from posting to the end
    algbw: float         #: bytes / wall_time (bytes/s)
    busbw: float         #: algbw * bus_factor (bytes/s)


@dataclass(frozen=True)
class LinkStats(_Dict):
    """The link to one peer of the current epoch (reset at each epoch)."""
    rank: int
    host: str
    port: int
    tx_bytes: int        #: bytes sent to it (headers included)
    rx_bytes: int        #: bytes received from it
    rx_rate: float       #: bytes/s at which large frames from it arrive:
                         #: median of the last 3 samples (0: none yet)
    rx_rate_ewma: float  #: the same as a moving average
    rtt: float           #: seconds, the kernel's smoothed RTT averaged (0: none)
    samples: int         #: rate samples this epoch
    connections: int     #: connections open now
    connects: int        #: connections made this epoch
    errors: int          #: connection failures this epoch
    z: float             #: robust z-score among this rank's links
    slow: bool           #: flagged slow by this rank
    shared_memory: int = 0  #: of the connections, those through shared
                            #: memory (same host; ``Communicator(shm=)``)


@dataclass(frozen=True)
class CommStats(_Dict):
    """Everything a communicator counted (:meth:`Communicator.stats`).

    ``stats["tx_bytes"]`` works too (older code read a dict).
    """
    epoch: int
    rank: int
    world_size: int
    tx_bytes: int        #: all connections, headers included, since creation
    rx_bytes: int
    ops_ok: int
    ops_failed: int
    op_bytes: int        #: sum of the finished ops' sizes
    op_time: float       #: sum of their wall times, seconds
    retries: int         #: run_with_retry re-runs on this communicator
    reports_sent: int    #: STATS reports to the master
    slow_links: int      #: links this rank flags slow now
    slow_flags_raised: int
    links: Tuple[LinkStats, ...] = field(default_factory=tuple)
    ops: Tuple[OpStats, ...] = field(default_factory=tuple)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def link(self, rank: int) -> Optional[LinkStats]:
        """The link to ``rank``, or None."""
        for l in self.links:
            if l.rank == rank:
                return l
        return None


def _name(table: list, i: int) -> str:
    return table[i] if 0 <= i < len(table) else str(i)


def op_from_c(r: Any) -> OpStats:
    operation, algorithm = KINDS.get(int(r.coll), ("unknown", "unknown"))
    wall = int(r.wall_ns) / 1e9
    algbw = int(r.bytes) / wall if wall > 0 else 0.0
    return OpStats(
        seq=int(r.seq), epoch=int(r.epoch), tag=int(r.tag),
        operation=operation, algorithm=algorithm,
        dtype=_name(_DTYPES, int(r.dtype)), redop=_name(_REDOPS, int(r.redop)),
        world_size=int(r.size), ok=int(r.result) == 0,
        error_code=int(r.result), bytes=int(r.bytes),
        tx_bytes=int(r.tx_bytes), rx_bytes=int(r.rx_bytes), wall_time=wall,
        algbw=algbw, busbw=algbw * bus_factor(operation, int(r.size)))


def read_comm_stats(c: Any, retries: int = 0, max_ops: int = _MAX_OPS,
                    cache: Optional[Dict[int, OpStats]] = None) -> CommStats:
    """Reads a communicator's stats from the C core (``c``: its handle).
    ``cache`` (seq -> OpStats, kept by the caller between calls) saves
    converting the same finished op twice: a record never changes once
    the op ended, so a loop that reads stats every step converts only the
    ops of that step."""
    st = ffi.new("ccl_stats *")
    size = max(int(lib.ccl_comm_size(c)), 1)
    links = ffi.new("ccl_link_stats[]", size)
    nl = ffi.new("int *")
    max_ops = max(0, min(int(max_ops), _MAX_OPS))
    ops = ffi.new("ccl_op_record[]", max(max_ops, 1))
    no = ffi.new("int *")
    lib.ccl_comm_get_stats(c, st, links, size, nl, ops, max_ops, no)
    link_list = tuple(LinkStats(
        rank=int(l.rank), host=ffi.string(l.host).decode("ascii", "replace"),
        port=int(l.port), tx_bytes=int(l.tx_bytes), rx_bytes=int(l.rx_bytes),
        rx_rate=float(l.rx_rate), rx_rate_ewma=float(l.rx_rate_ewma),
        rtt=float(l.rtt_us) / 1e6, samples=int(l.samples),
        connections=int(l.conns_open), connects=int(l.connects),
        errors=int(l.errors), z=float(l.z), slow=bool(l.slow),
        shared_memory=int(l.shm_conns))
        for l in (links[i] for i in range(nl[0])))
    # The records are the last n finished ops, in order, read under the
    # same lock as the totals: their seqs are known without reading them.
    n = no[0]
    first = int(st.ops_ok) + int(st.ops_failed) - n + 1
    op_list = []
    for i in range(n):
        op = cache.get(first + i) if cache is not None else None
        if op is None:
            op = op_from_c(ops[i])
        op_list.append(op)
    if cache is not None:
        cache.clear()
        cache.update((o.seq, o) for o in op_list)
    return CommStats(
        epoch=int(st.epoch), rank=int(st.rank), world_size=int(st.size),
        tx_bytes=int(st.tx_bytes), rx_bytes=int(st.rx_bytes),
        ops_ok=int(st.ops_ok), ops_failed=int(st.ops_failed),
        op_bytes=int(st.op_bytes), op_time=int(st.op_time_ns) / 1e9,
        retries=retries, reports_sent=int(st.reports_sent),
        slow_links=int(st.slow_links),
        slow_flags_raised=int(st.slow_flags_raised),
        links=link_list, ops=tuple(op_list))


# ---- the master's view ----

@dataclass(frozen=True)
class MemberReport(_Dict):
    """A member's last STATS report to the master."""
    rank: int
    epoch: int
    world_size: int
    addr: str            #: the control link's remote address
    ops_ok: int
    ops_failed: int
    tx_bytes: int
    rx_bytes: int
    op_bytes: int
    op_time: float       #: seconds
    age: float           #: seconds since the report
    reports: int


@dataclass(frozen=True)
class LinkReport(_Dict):
    """A link as its receiver reported it, with the master's verdict."""
    epoch: int
    src: int             #: data flows src -> dst (ranks)
    dst: int
    rx_rate: float       #: bytes/s (0: no sample yet)
    rtt: float           #: seconds
    rx_bytes: int
    samples: int
    z: float             #: robust z-score among the epoch's links
    slow: bool           #: flagged by the master
    slow_local: bool     #: flagged by the receiver itself
    flagged_at_ops: int  #: receiver's finished ops when first flagged (0: never)


@dataclass(frozen=True)
class MasterStats(_Dict):
    """:meth:`pyccl.Master.stats`: the group as its members reported it."""
    epoch: int           #: the master's current epoch
    reports: int
    reports_dropped: int     #: over the rate limit
    reports_unknown_version: int
    slow_flags_raised: int
    members: Tuple[MemberReport, ...] = field(default_factory=tuple)
    links: Tuple[LinkReport, ...] = field(default_factory=tuple)

    @property
    def slow_links(self) -> Tuple[LinkReport, ...]:
        return tuple(l for l in self.links if l.slow)


def read_master_stats(m: Any) -> MasterStats:
    """Reads a master's view from the C core (``m``: its handle)."""
    tot = ffi.new("ccl_master_stats_totals *")
    nm = ffi.new("int *")
    nl = ffi.new("int *")
    max_members, max_links = 64, 256
    while True:  # grow until everything fits
        mem = ffi.new("ccl_master_member_stats[]", max_members)
        lk = ffi.new("ccl_master_link_stats[]", max_links)
        lib.ccl_master_get_stats(m, tot, mem, max_members, nm, lk, max_links,
                                 nl)
        if (nm[0] < max_members and nl[0] < max_links) or max_members >= 8192:
            break
        max_members *= 4
        max_links *= 4
    members = tuple(sorted((MemberReport(
        rank=int(x.rank), epoch=int(x.epoch), world_size=int(x.size),
        addr=ffi.string(x.addr).decode("ascii", "replace"),
        ops_ok=int(x.ops_ok), ops_failed=int(x.ops_failed),
        tx_bytes=int(x.tx_bytes), rx_bytes=int(x.rx_bytes),
        op_bytes=int(x.op_bytes), op_time=int(x.op_time_us) / 1e6,
        age=int(x.age_ms) / 1e3, reports=int(x.reports))
        for x in (mem[i] for i in range(nm[0]))),
        key=lambda r: (-r.epoch, r.rank)))
    links = tuple(sorted((LinkReport(
        epoch=int(x.epoch), src=int(getattr(x, "from")), dst=int(x.to),
        rx_rate=float(x.rx_rate), rtt=float(x.rtt_us) / 1e6,
        rx_bytes=int(x.rx_bytes), samples=int(x.samples), z=float(x.z),
        slow=bool(x.slow), slow_local=bool(x.slow_local),
        flagged_at_ops=int(x.flagged_at_ops))
        for x in (lk[i] for i in range(nl[0]))),
        key=lambda l: (-l.epoch, l.dst, l.src)))
    return MasterStats(
        epoch=int(lib.ccl_master_epoch(m)), reports=int(tot.reports),
        reports_dropped=int(tot.reports_dropped),
        reports_unknown_version=int(tot.reports_unknown_version),
        slow_flags_raised=int(tot.slow_flags_raised),
        members=members, links=links)


__all__ = ["CommStats", "LinkStats", "OpStats", "MasterStats", "MemberReport",
           "LinkReport", "bus_factor", "KINDS"]
