"""The orchestrator's books: what every peer reported, checked against
what the others reported, and the violations found.

No I/O and no clock of its own (times come with the calls), so it is
tested with made-up reports.

Groups.  A group is identified by its epoch and its member list (peer ids
in rank order), as each member reports it after the epoch's membership
all-gather; ``gid`` numbers them in order of appearance.

Agreement.  Every op of a group has a key ``(gid, seq)``; the first
report of it is kept, and every later one must match it: same outcome
(success or failure), same result hash, same number of bytes.  The
guarantee is for survivors: a peer that was the victim of an injected
fault while in the group (stopped, cut off) or that the master dropped
from it may legitimately end an op otherwise, so a difference is first a
*candidate* and becomes a violation only once neither party is excused
(:meth:`Ledger.resolve`, after the excuses had time to arrive).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from stress.workload import KIND_NAMES

#: Violation kinds, with the words the final table uses.
VIOLATION_KINDS = {
    "hang": "hang (no progress within the bound)",
    "disagreement": "members disagree on an op's outcome or bytes",
    "membership": "members disagree on who is in the epoch",
    "state_divergence": "shared state diverged",
    "wrong_result": "wrong result",
    "input_not_restored": "input not restored after a failed op",
    "mismatch": "ranks issued different ops (Mismatch)",
    "uninjected_exit": "crash or exit that was not injected",
    "stopped_not_recovered": "a woken peer neither rejoined nor exited",
    "join_stuck": "a joiner was never admitted",
    "never_reformed": "the group never re-formed",
    "left_behind": "process left behind",
    "bad_report": "malformed report frame",
    "master": "the master could not be restarted",
}


@dataclass
class Violation:
    kind: str
    t: float                 # seconds since the run's start
    message: str
    peers: List[int] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "t": round(self.t, 3),
                "message": self.message, "peers": self.peers}


@dataclass
class Fault:
    kind: str                # a schedule kind, or "stop-kill" etc.
    t: float                 # monotonic time of the injection
    victim: Optional[int] = None
    gid: Optional[int] = None  # the victim's group at that time
    detail: str = ""
    changes_membership: bool = True


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """The q-th percentile (nearest rank), None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


class Ledger:
    """Reports in, violations and statistics out."""

    def __init__(self, t0: float = 0.0, keep_groups: int = 256) -> None:
        self.t0 = t0
        self.keep_groups = keep_groups
        self._gids: Dict[Tuple[int, Tuple[int, ...]], int] = {}
        self.group_members: List[Tuple[int, ...]] = []
        self.group_epoch: List[int] = []
        self._epoch_groups: Dict[int, Set[int]] = defaultdict(set)
        self._ops: Dict[Tuple[int, int], list] = {}
        self._ops_by_gid: Dict[int, List[int]] = defaultdict(list)
        self._state: Dict[int, Tuple[int, int]] = {}  # gid -> (hash, peer)
        self.candidates: List[Dict[str, Any]] = []
        self.excused: Dict[int, Set[int]] = defaultdict(set)
        self.first_ok: Dict[int, List[Tuple[int, float]]] = defaultdict(list)
        self._has_ok: Set[Tuple[int, int]] = set()
        self.updates: Dict[int, List[Tuple[float, bool]]] = defaultdict(list)
        self.faults: List[Fault] = []
        self.violations: List[Violation] = []
        self.ops_ok = 0
        self.ops_failed = 0
        self.bytes_ok = 0
        self.compared = 0
        self.errors: Counter = Counter()
        self.kinds_ok: Counter = Counter()
        self.excused_differences = 0
        self.excused_list: List[str] = []
        self.rejections = 0
        self.latencies: List[float] = []   # a sample, for the table

    # -- groups -----------------------------------------------------------

    def group(self, epoch: int, members: Sequence[int]) -> int:
        key = (int(epoch), tuple(int(m) for m in members))
        gid = self._gids.get(key)
        if gid is None:
            gid = len(self.group_members)
            self._gids[key] = gid
            self.group_members.append(key[1])
            self.group_epoch.append(key[0])
            self._epoch_groups[key[0]].add(gid)
            self._prune(gid)
        return gid

    def _prune(self, newest: int) -> None:
        old = newest - self.keep_groups
        if old >= 0:
            for seq in self._ops_by_gid.pop(old, ()):
                self._ops.pop((old, seq), None)

    def describe_group(self, gid: int) -> str:
        return "epoch %d %s" % (self.group_epoch[gid],
                                list(self.group_members[gid]))

    # -- reports ----------------------------------------------------------

    def violation(self, kind: str, now: float, message: str,
                  peers: Sequence[int] = ()) -> Violation:
        v = Violation(kind, now - self.t0, message, list(peers))
        self.violations.append(v)
        return v

    def on_epoch(self, peer: int, msg: Dict[str, Any],
                 now: float) -> Tuple[int, List[Violation]]:
        """A peer's report of a new epoch; returns its gid and any
        violation found."""
        found: List[Violation] = []
        members = [int(m) for m in msg["members"]]
        epoch = int(msg["e"])
        gid = self.group(epoch, members)
        rank = int(msg["rank"])
        if not 0 <= rank < len(members) or members[rank] != peer:
            found.append(self.violation(
                "membership", now, "peer %d says it is rank %d of %s"
                % (peer, rank, members), [peer]))
        others = self._epoch_groups[epoch] - {gid}
        if others:
            other = min(others)
            found.append(self.violation(
                "membership", now, "epoch %d has two member lists: peer %d "
                "reports %s, another member reported %s" % (
                    epoch, peer, members, list(self.group_members[other])),
                [peer]))
        state = int(msg["state"])
        prev = self._state.get(gid)
        if prev is None:
            self._state[gid] = (state, peer)
        elif prev[0] != state:
            found.append(self.violation(
                "state_divergence", now, "after the sync of %s, peer %d "
                "holds state %#x, peer %d holds %#x" % (
                    self.describe_group(gid), peer, state, prev[1],
                    prev[0]), [peer, prev[1]]))
        if not msg.get("newcomer") and int(msg.get("received", 0)) > 0:
            found.append(self.violation(
                "state_divergence", now, "peer %d, a member before %s, had "
                "to receive %d bytes of shared state: its copy had diverged"
                % (peer, self.describe_group(gid), int(msg["received"])),
                [peer]))
        return gid, found

    def on_ops(self, peer: int, gid: int, records: List[list],
               now: float) -> None:
        """One batch of op records from ``peer`` in group ``gid``."""
        first_t = None
        for rec in records:
            seq, code, ok, err, digest, nbytes, t_end, lat = rec
            if ok:
                self.ops_ok += 1
                self.bytes_ok += nbytes
                self.kinds_ok[code] += 1
                if first_t is None or t_end < first_t:
                    first_t = t_end
                if len(self.latencies) < 200000:
                    self.latencies.append(lat)
            else:
                self.ops_failed += 1
                self.errors[err] += 1
            key = (gid, seq)
            seen = self._ops.get(key)
            if seen is None:
                self._ops[key] = [ok, digest, nbytes, peer, code]
                self._ops_by_gid[gid].append(seq)
                continue
            self.compared += 1
            if seen[0] != ok or seen[1] != digest or seen[2] != nbytes:
                self.candidates.append({
                    "gid": gid, "seq": seq, "kind": KIND_NAMES[code],
                    "a": seen[3], "a_ok": seen[0], "a_hash": seen[1],
                    "a_bytes": seen[2], "b": peer, "b_ok": ok,
                    "b_err": err, "b_hash": digest, "b_bytes": nbytes,
                    "t": now})
        if first_t is not None and (peer, gid) not in self._has_ok:
            self._has_ok.add((peer, gid))
            self.first_ok[peer].append((gid, first_t))

    def has_ok(self, peer: int, gid: int) -> bool:
        return (peer, gid) in self._has_ok

    def excuse(self, peer: int, gid: Optional[int]) -> None:
        """``peer`` was a fault's victim in ``gid``, or dropped from it."""
        if gid is not None:
            self.excused[gid].add(peer)

    def on_update(self, peer: int, t: float, ok: bool) -> None:
        self.updates[peer].append((t, ok))

    def fault(self, fault: Fault) -> None:
        self.faults.append(fault)
        # A stopped or cut-off member that the master keeps is a survivor
        # and must agree; one it drops is excused when its Rejected comes
        # (excuse()).  Only a partition between live members is excused
        # at once: its known gap (docs/fault-tolerance.md) allows ops
        # that ended just before it to differ on the two sides.
        if fault.victim is not None and fault.kind == "partition":
            self.excuse(fault.victim, fault.gid)

    # -- agreement --------------------------------------------------------

    def resolve(self, now: float, older_than: float = 0.0) -> List[Violation]:
        """Turns the disagreement candidates older than ``older_than``
        seconds into violations, unless a party is excused."""
        found, keep = [], []
        for c in self.candidates:
            if now - c["t"] < older_than:
                keep.append(c)
                continue
            ex = self.excused.get(c["gid"], ())
            if c["a"] in ex or c["b"] in ex:
                self.excused_differences += 1
                if len(self.excused_list) < 50:
                    self.excused_list.append(self._describe(c))
                continue
            found.append(self.violation("disagreement", c["t"],
                                        self._describe(c), [c["a"], c["b"]]))
        self.candidates = keep
        return found

    def _describe(self, c: Dict[str, Any]) -> str:
        if c["a_ok"] != c["b_ok"]:
            what = "peer %d %s, peer %d %s" % (
                c["a"], "succeeded" if c["a_ok"] else "failed",
                c["b"], "succeeded" if c["b_ok"] else
                "failed (%s)" % c["b_err"])
        else:
            what = "hash %s vs %s, bytes %d vs %d" % (
                _hex(c["a_hash"]), _hex(c["b_hash"]), c["a_bytes"],
                c["b_bytes"])
        return "%s, op %d (%s): %s" % (self.describe_group(c["gid"]),
                                       c["seq"], c["kind"], what)

    # -- recovery ---------------------------------------------------------

    def recovery(self, fault: Fault, window: float = 60.0) -> Optional[float]:
        """Seconds from the fault to the next successful op on every
        survivor, in a group without the victim; None when no survivor
        got there within ``window`` (or the fault has no group)."""
        if fault.victim is None or fault.gid is None:
            return None
        members = self.group_members[fault.gid]
        worst = None
        for s in members:
            if s == fault.victim:
                continue
            for gid, t in self.first_ok.get(s, ()):
                if t > fault.t and fault.victim not in \
                        self.group_members[gid]:
                    if t - fault.t <= window:
                        worst = max(worst or 0.0, t - fault.t)
                    break
        return worst

    def reconnect_time(self, t_fault: float, peers: Sequence[int],
                       window: float = 60.0) -> Optional[float]:
        """After a master restart at ``t_fault``: seconds until each of
        ``peers`` had a successful update_topology (max over them)."""
        worst = None
        for p in peers:
            for t, ok in self.updates.get(p, ()):
                if t > t_fault and ok:
                    if t - t_fault <= window:
                        worst = max(worst or 0.0, t - t_fault)
                    break
        return worst


def _hex(h: Optional[int]) -> str:
    return "none" if h is None else "%#x" % h


__all__ = ["Ledger", "Violation", "Fault", "VIOLATION_KINDS", "percentile"]
