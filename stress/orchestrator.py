"""The orchestrator: one asyncio loop (uvloop when installed) that runs
the master and the peers, applies the churn schedule, reads every
report, and names every violation.

Run phases:

1. start the master, then ``--peers`` peers; wait for their first group
   (this is t = 0 of the schedule);
2. apply the schedule until ``--duration`` or ``--steps``; meanwhile a
   watchdog (every 0.5 s) looks for hangs, stopped peers that do not come
   back, joiners never admitted, and keeps the group at ``--peers`` by
   spawning joiners (replacements) when kills and leaves thinned it;
3. settle: wake stopped peers, heal links, wait until every live peer is
   in one group with every other (else "the group never re-formed");
4. finish: peers leave, the master stops, namespaces go; then ``/proc``
   is scanned for any process of the run left behind.

A disruptive fault waits (at most ``--max-defer`` seconds) until the
group has settled from the previous one, so each recovery is measured on
its own; a fault whose target does not exist then (nobody eligible, or
the group at ``--min-peers``) is skipped and counted.
"""
from __future__ import annotations

import asyncio
import os
import resource
import secrets
import signal
import tempfile
import time
from collections import Counter
from typing import Any, Dict, List, Optional

from stress import procs
from stress.children import (MasterProc, PeerProc, child_env,
                             describe_status, log_tail)
from stress.ledger import Ledger, Violation
from stress.scenarios import Options
from stress.faults import FaultInjector
from stress.schedule import LINK_KINDS, Event, make_schedule
from stress.watch import Watchdog

class Orchestrator(FaultInjector, Watchdog):
    """One run; :meth:`run` returns when it is over (results in
    :attr:`summary`)."""

    def __init__(self, opts: Options, display: Any = None) -> None:
        self.opts = opts
        self.display = display
        self.token = secrets.token_hex(8)
        self.run_dir = opts.log_dir or tempfile.mkdtemp(prefix="pyccl-stress-")
        os.makedirs(self.run_dir, exist_ok=True)
        # The run's marker, for whoever wants to check that nothing of
        # it survives (the tests do).
        with open(os.path.join(self.run_dir, "token"), "w") as f:
            f.write(self.token + "\n")
        self.ledger = Ledger(time.monotonic())
        self.peers: Dict[int, PeerProc] = {}
        self.next_id = 0
        self.master: Optional[MasterProc] = None
        self.master_up = asyncio.Event()
        self.netlab: Any = None
        self.notes: List[str] = []
        self.injected: Counter = Counter()
        self.skipped: Counter = Counter()
        self.joins = 0
        self.replacements = 0
        self.join_latencies: List[float] = []
        self.master_reconnects: List[float] = []
        self.healthy_drops = 0
        self.timeline: List[Dict[str, Any]] = []
        self.marks: List[Dict[str, Any]] = []
        self.schedule: List[Event] = []
        self.steps_done = 0
        self.finishing = False
        self.interrupted = False
        self.stop_event = asyncio.Event()
        self.t0 = time.monotonic()
        self.started = False
        self.last_fault_t = 0.0
        self.pending_spawns = 0
        self.summary: Dict[str, Any] = {}
        self.env: Dict[str, str] = {}
        self._tasks: List[asyncio.Task] = []
        self._cpu0 = 0.0
        self._wall0 = 0.0

    # -- helpers ----------------------------------------------------------

    def now(self) -> float:
        return time.monotonic()

    def rel(self, t: Optional[float] = None) -> float:
        return (self.now() if t is None else t) - self.t0

    def live_peers(self) -> List[PeerProc]:
        return [p for p in self.peers.values() if p.alive]

    def violation(self, kind: str, message: str, peers: List[int] = (),
                  t: Optional[float] = None) -> Violation:
        v = self.ledger.violation(kind, self.now() if t is None else t,
                                  message, list(peers))
        self._after_violation(v)
        return v

    def _after_violation(self, v: Violation) -> None:
        tails = {}
        for pid_ in v.peers:
            p = self.peers.get(pid_)
            if p is not None:
                tails[pid_] = log_tail(p.log_path)
        v.tails = tails  # type: ignore[attr-defined]
        self.marks.append({"t": v.t, "kind": "violation:" + v.kind})
        if self.display is not None:
            self.display.violation(v)
        if self.opts.fail_fast:
            self.stop_event.set()

    def _cfg(self) -> Dict[str, Any]:
        o = self.opts
        return {
            "seed": o.seed, "world_size": o.peers,
            "master": self.master.address if self.master else "",
            "peer_timeout": o.peer_timeout, "op_timeout": o.op_timeout,
            "connect_timeout": o.connect_timeout,
            "conns_per_peer": o.conns_per_peer, "rejoin": o.rejoin,
            "state_elems": o.state_elems,
            "update_bound": max(120.0, 4 * (o.op_timeout + 5)),
            "workload": {"max_bytes": o.max_bytes,
                         "large_rate": o.large_rate,
                         "max_concurrent": o.max_concurrent,
                         "safe_every": o.safe_every,
                         "algorithms": tuple(o.algorithms),
                         "quant_rate": o.quant_rate,
                         "kinds": tuple(o.kinds)},
        }

    # -- children ---------------------------------------------------------

    async def start_master(self) -> None:
        if self.master is None:
            prefix, host = [], "127.0.0.1"
            if self.netlab is not None:
                prefix, host = await self.netlab.add_master()
            self.master = MasterProc(os.path.join(self.run_dir, "master.log"),
                                     host, 0, prefix, self.env)
        await self.master.start()
        self._note_pid(self.master.proc.pid, "master")
        self.master_up.set()

    def _note_pid(self, pid: int, what: str) -> None:
        with open(os.path.join(self.run_dir, "pids"), "a") as f:
            f.write("%d %s\n" % (pid, what))

    async def spawn(self, joiner: bool) -> PeerProc:
        pid_ = self.next_id
        self.next_id += 1
        p = PeerProc(pid_, joiner, os.path.join(self.run_dir,
                                                "peer-%d.log" % pid_))
        p.on_message = self.on_message
        p.on_bad_frame = lambda peer, err: self.violation(
            "bad_report", "peer %d sent a malformed report: %s"
            % (peer.id, err), [peer.id])
        self.peers[pid_] = p
        prefix: List[str] = []
        cfg = self._cfg()
        if self.netlab is not None:
            prefix, host = await self.netlab.add_peer(pid_)
            cfg["listen_host"] = host
            p.host = host
        await p.start(prefix, cfg, self.env)
        self._note_pid(p.pid, "peer %d" % pid_)
        if joiner:
            self.joins += 1
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._watch_exit(p)))
        return p

    async def _watch_exit(self, p: PeerProc) -> None:
        rc = await p.wait()
        # A stopped member, woken, that ended (killed) before the master
        # decided about it, still in the group it was stopped in, was never
        # kept: not a survivor of that group, so excused as if its Rejected
        # had come (ledger.fault).  Seen in a run: woken, it ended the ops the
        # others had cut it from whole (no peer left to confirm them,
        # docs/fault-tolerance.md), and a kill came before its Rejected.
        if p.stop_gid is not None and p.gid == p.stop_gid:
            self.ledger.excuse(p.id, p.gid)
        if self.netlab is not None:
            await self.netlab.remove_peer(p.id)
        expected = (p.injected in ("kill", "stop-kill", "cleanup", "hang",
                                   "finish")
                    or (rc == 0 and p.bye in ("leave", "finish"))
                    or (rc == 3 and p.bye == "rejected"
                        and not self.opts.rejoin)
                    or self.finishing or self.interrupted)
        if not expected:
            why = describe_status(rc)
            if p.error:
                why += " (%s)" % p.error
            self.violation("uninjected_exit", "peer %d (pid %d) ended by "
                           "itself: %s, in phase %s" % (p.id, p.pid, why,
                                                        p.phase), [p.id])

    # -- reports ----------------------------------------------------------

    def on_message(self, p: PeerProc, msg: Dict[str, Any]) -> None:
        now = self.now()
        p.last_msg = now
        t = msg["t"]
        if t == "ops":
            if p.gid is None:
                return
            self.ledger.on_ops(p.id, p.gid, msg["ops"], now)
            for rec in msg["ops"]:
                if rec[2]:
                    p.last_ok_t = rec[6]
                    if p.admitted_t is None:
                        p.admitted_t = rec[6]
                        if p.joiner:
                            self.join_latencies.append(rec[6] - p.spawned_t)
                    break
        elif t == "phase":
            if msg["p"] == "join" and p.phase != "join":
                p.join_t = now
            p.phase, p.phase_t = msg["p"], now
        elif t == "epoch":
            gid, found = self.ledger.on_epoch(p.id, msg, now)
            for v in found:
                self._after_violation(v)
            p.gid, p.epoch, p.members = gid, int(msg["e"]), msg["members"]
        elif t == "update":
            self.ledger.on_update(p.id, msg["tt"], bool(msg["ok"]))
        elif t == "rejected":
            self.ledger.rejections += 1
            self.ledger.excuse(p.id, p.gid)
            if p.woken_t is None and not p.link_fault and \
                    p.injected is None:
                self.healthy_drops += 1
            p.gid = None
        elif t == "bad":
            kind = msg["kind"]
            self.violation(kind, "peer %d, epoch %d %s: %s: %s" % (
                p.id, msg["e"], msg["members"], msg["op"], msg["detail"]),
                [p.id])
        elif t == "error":
            p.error = "%s in %s: %s" % (msg["err"], msg["where"],
                                        msg["detail"])
        elif t == "bye":
            p.bye, p.bye_t = msg["why"], msg["tt"]

    # -- choosing targets -------------------------------------------------

    def _eligible(self) -> List[PeerProc]:
        """Members in good standing: in a group, with a successful op in
        it, not stopped, cut off or already on their way out."""
        return sorted((p for p in self.live_peers()
                       if p.gid is not None and not p.stopped
                       and not p.link_fault and p.injected is None
                       and p.phase in ("ops", "update", "setup")
                       and self.ledger.has_ok(p.id, p.gid)),
                      key=lambda p: p.id)

    def _members_left(self) -> int:
        return len([p for p in self.live_peers() if p.injected is None])

    def settled(self) -> bool:
        """Every live peer is in one group, each with a successful op in
        it; nobody stopped, cut off, joining or leaving; the master up."""
        if not self.master_up.is_set():
            return False
        gids = set()
        for p in self.live_peers():
            if p.stopped or p.link_fault or p.injected is not None \
                    or p.gid is None or not self.ledger.has_ok(p.id, p.gid):
                return False
            gids.add(p.gid)
        if len(gids) != 1:
            return False
        members = set(self.ledger.group_members[next(iter(gids))])
        return members == {p.id for p in self.live_peers()}

    # -- the run ----------------------------------------------------------

    async def run(self) -> Dict[str, Any]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._interrupt)
        extra = {}
        if self.opts.netns:
            from stress import netns
            why = netns.unavailable()
            if why is None:
                extra["PYCCL_KEY"] = secrets.token_hex(32)
            else:
                self.notes.append("network namespaces skipped: %s" % why)
        self.env = child_env(self.token, extra)
        try:
            if self.opts.netns and "PYCCL_KEY" in extra:
                from stress import netns
                self.netlab = netns.NetLab(
                    self.token[:4], self.env,
                    os.path.join(os.path.expanduser("~"), ".cache",
                                 "pyccl-stress"),
                    self.opts.rate, self.opts.delay_ms, self.opts.loss,
                    lifetime=(self.opts.duration or 3600) + 600)
                self.notes.extend(self.netlab.notes)
                await self.netlab.setup()
            await self._run_phases()
        except asyncio.CancelledError:
            self.interrupted = True
        finally:
            await self.cleanup()
        return self.summary

    def _interrupt(self) -> None:
        self.interrupted = True
        self.stop_event.set()
        if self.display is not None:
            self.display.note("interrupted: ending every process")

    async def _run_phases(self) -> None:
        o = self.opts
        self.schedule = make_schedule(
            o.seed, o.rates, o.duration, o.steps,
            kinds_allowed=None if self.netlab is not None else
            [k for k in o.rates.per_kind() if k not in LINK_KINDS],
            ensure_each=o.duration is not None and o.duration <= 180)
        await self.start_master()
        await asyncio.gather(*(self.spawn(joiner=False)
                               for _ in range(o.peers)))
        self._tasks.append(asyncio.get_running_loop().create_task(
            self.watchdog()))
        deadline = self.now() + o.connect_timeout + 30
        while not self.settled():
            if self.now() > deadline or self.stop_event.is_set() \
                    or not self.live_peers():
                if not self.stop_event.is_set():
                    self.violation("never_reformed", "the first group of "
                                   "%d peers did not form: %s" % (
                                       o.peers, self._groups_text()))
                return
            await asyncio.sleep(0.05)
        self.t0 = self.now()
        self.ledger.t0 = self.t0
        self.started = True
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu0, self._wall0 = ru.ru_utime + ru.ru_stime, self.now()
        if self.display is not None:
            self.display.start(self)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.sampler()))
        sched = loop.create_task(self.run_schedule())
        self._tasks.append(sched)
        try:
            if o.duration is not None:
                await asyncio.wait_for(self.stop_event.wait(), o.duration)
            else:
                await self.stop_event.wait()
        except asyncio.TimeoutError:
            pass
        self.stop_event.set()
        sched.cancel()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.summary["cpu"] = ru.ru_utime + ru.ru_stime - self._cpu0
        self.summary["wall"] = self.now() - self._wall0
        if not self.interrupted:
            await self.settle()

    async def settle(self) -> None:
        """Wakes and heals everything, then waits for one whole group."""
        self.finishing = True
        for p in self.live_peers():
            if p.stopped:
                p.stopped = False
                p.woken_t = self.now()
                p.last_msg = self.now()
                p.signal(signal.SIGCONT)
        if self.netlab is not None:
            await self.netlab.heal_all()
        for p in self.live_peers():
            p.link_fault = False
        if not self.master_up.is_set():
            # The end of the churn cancelled a master restart while the
            # master was down: bring it back, as the restart would have.
            try:
                if self.master.alive:  # cancelled while it started
                    await self.master.kill()
                await self.master.start()
                self._note_pid(self.master.proc.pid, "master")
                self.master_up.set()
            except RuntimeError as exc:
                self.violation("master", str(exc))
        deadline = self.now() + self.opts.settle_timeout
        while not self.settled():
            if self.now() > deadline:
                self.violation("never_reformed", "%.0f s after the churn "
                               "ended the live peers are not one group: %s"
                               % (self.opts.settle_timeout,
                                  self._groups_text()),
                               [p.id for p in self.live_peers()])
                break
            if self.interrupted:
                return
            await asyncio.sleep(0.1)
        # One more successful op everywhere after the last excuse: and
        # every disagreement candidate resolved.
        await asyncio.sleep(0.5)

    async def cleanup(self) -> None:
        self.finishing = True
        self.stop_event.set()
        for t in self._tasks:
            t.cancel()
        live = self.live_peers()
        if not self.interrupted:
            for p in live:
                if p.injected is None:
                    p.injected = "finish"
                p.send({"t": "finish"})
            deadline = self.now() + 10.0
            while self.live_peers() and self.now() < deadline:
                await asyncio.sleep(0.05)
        for p in self.live_peers():
            p.injected = p.injected or "cleanup"
            p.signal(signal.SIGKILL)
            p.signal(signal.SIGCONT)
        for p in list(self.peers.values()):
            if p.proc is not None and p.rc is None:
                try:
                    p.rc = await asyncio.wait_for(p.proc.wait(), 10.0)
                except asyncio.TimeoutError:
                    pass
        if self.master is not None:
            if self.interrupted:
                await self.master.kill()
            else:
                await self.master.stop()
        if self.netlab is not None:
            await self.netlab.teardown()
        left = procs.marked_processes(self.token)
        if left:
            for pid in left:
                procs.kill_quietly(pid)
            self.violation("left_behind", "%d process(es) of this run were "
                           "still running after cleanup: pids %s" % (
                               len(left), left))
        for v in self.ledger.resolve(self.now() + 3600):
            self._after_violation(v)
        self._summarize()

    def _summarize(self) -> None:
        from stress.ledger import percentile
        s = self.summary
        s.setdefault("cpu", 0.0)
        s.setdefault("wall", max(1e-9, self.rel()))
        rec: Dict[str, List[float]] = {}
        slow = []
        for f in self.ledger.faults:
            if f.kind == "leave" and f.victim is not None:
                bye_t = self.peers[f.victim].bye_t
                if bye_t is not None and bye_t > f.t:
                    f.t = bye_t  # it left at its next batch boundary
            if not f.changes_membership:
                continue
            r = self.ledger.recovery(f)
            f.recovery = r  # type: ignore[attr-defined]
            if r is not None:
                rec.setdefault(f.kind, []).append(r)
                slow.append((r, f))
        slow.sort(key=lambda x: -x[0])
        s["slowest"] = [{"kind": f.kind, "victim": f.victim,
                         "t": round(f.t - self.t0, 3), "recovery": round(r, 3)}
                        for r, f in slow[:5]]
        s["recovery"] = {k: {"n": len(v), "p50": percentile(v, 50),
                             "p99": percentile(v, 99), "max": max(v)}
                         for k, v in rec.items()}
        s["recovery_samples"] = rec
        jl = self.join_latencies
        s["join_latency"] = {"n": len(jl), "p50": percentile(jl, 50),
                             "p99": percentile(jl, 99),
                             "max": max(jl) if jl else None}
        mr = self.master_reconnects
        s["master_reconnect"] = {"n": len(mr), "p50": percentile(mr, 50),
                                 "p99": percentile(mr, 99),
                                 "max": max(mr) if mr else None}
        s["injected"] = dict(self.injected)
        s["skipped"] = dict(self.skipped)
        s["joins"] = self.joins
        s["replacements"] = self.replacements
        s["healthy_drops"] = self.healthy_drops
        s["interrupted"] = self.interrupted
        s["run_dir"] = self.run_dir
        s["notes"] = self.notes
        s["peers_spawned"] = self.next_id
        s["master_starts"] = self.master.starts if self.master else 0


def run(opts: Options, display: Any = None) -> Orchestrator:
    """Runs one orchestration on uvloop when installed and asked for
    (else asyncio's default loop); returns the finished Orchestrator."""
    holder: Dict[str, Orchestrator] = {}

    async def main() -> None:
        orch = Orchestrator(opts, display)
        holder["o"] = orch
        await orch.run()

    loop_name = "asyncio"
    if opts.uvloop:
        try:
            import uvloop
        except ImportError:
            uvloop = None
        if uvloop is not None:
            loop_name = "uvloop"
            uvloop.run(main())
    if loop_name == "asyncio":
        asyncio.run(main())
    orch = holder["o"]
    orch.summary["loop"] = loop_name
    return orch


__all__ = ["Orchestrator", "run"]
