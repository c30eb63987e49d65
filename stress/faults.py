"""Fault injection for the orchestrator: the schedule's events applied
to the master and the peers (kill, stop, leave, join, storm, master
restart, link faults), each recorded in the ledger.  A mixin of
:class:`stress.orchestrator.Orchestrator`, whose state it uses."""
from __future__ import annotations

import asyncio
import signal
from typing import List, Optional

from stress.children import PeerProc
from stress.ledger import Fault
from stress.schedule import LINK_KINDS, Event

_DISRUPTIVE = ("kill", "stop", "leave", "master", "drop", "delay",
               "partition")


class FaultInjector:
    """Applies the churn schedule (methods of the Orchestrator)."""

    # -- the schedule -----------------------------------------------------

    async def run_schedule(self) -> None:
        o = self.opts
        for ev in self.schedule:
            delay = self.t0 + ev.t - self.now()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop_event.wait(), delay)
                    return
                except asyncio.TimeoutError:
                    pass
            if self.stop_event.is_set():
                return
            if ev.kind in _DISRUPTIVE:
                deadline = self.now() + o.max_defer
                while not self.settled() and self.now() < deadline \
                        and not self.stop_event.is_set():
                    await asyncio.sleep(0.05)
            await self.apply(ev)
            self.steps_done += 1
            if o.steps is not None and self.steps_done >= o.steps:
                break
        if o.steps is not None:
            self.stop_event.set()

    def _record(self, kind: str, victim: Optional[PeerProc], detail: str = "",
                changes: bool = True, t: Optional[float] = None) -> None:
        t = self.now() if t is None else t
        f = Fault(kind, t, victim.id if victim else None,
                  victim.gid if victim else None, detail, changes)
        self.ledger.fault(f)
        self.injected[kind] += 1
        self.last_fault_t = t
        self.marks.append({"t": self.rel(t), "kind": kind,
                           "peer": victim.id if victim else None})
        if self.display is not None:
            self.display.fault(kind)

    async def apply(self, ev: Event) -> None:
        kind = ev.kind
        if kind == "join":
            if len(self.live_peers()) >= self.opts.effective_max_peers():
                self.skipped[kind] += 1
                return
            await self.spawn(joiner=True)
            self._record("join", None, changes=False)
            return
        if kind == "storm":
            room = self.opts.effective_max_peers() - len(self.live_peers())
            n = min(int(ev.arg["size"]), room)
            if n < 2:
                self.skipped[kind] += 1
                return
            await asyncio.gather(*(self.spawn(joiner=True)
                                   for _ in range(n)))
            self._record("storm", None, "%d joiners" % n, changes=False)
            return
        if kind == "master":
            await self.restart_master(ev)
            return
        if kind in LINK_KINDS and self.netlab is None:
            self.skipped[kind] += 1
            return
        # Nobody eligible right now (the group is between epochs): give
        # it the same grace as the settling, then skip.
        targets = self._eligible()
        deadline = self.now() + self.opts.max_defer
        while not targets and self.now() < deadline \
                and not self.stop_event.is_set():
            await asyncio.sleep(0.05)
            targets = self._eligible()
        if not targets or self._members_left() - 1 < self.opts.min_peers:
            self.skipped[kind] += 1
            return
        victim = targets[min(len(targets) - 1, int(ev.pick * len(targets)))]
        if kind == "kill":
            victim.injected = "kill"
            self._record("kill", victim)
            victim.signal(signal.SIGKILL)
        elif kind == "leave":
            victim.injected = "leave"
            self._record("leave", victim)
            victim.send({"t": "leave"})
        elif kind == "stop":
            dur, then_kill = ev.arg["duration"], bool(ev.arg["kill"])
            short = dur < self.opts.peer_timeout
            victim.stopped = True
            victim.stop_gid = victim.gid
            self._record("stop", victim, "%.1f s then %s" % (
                dur, "kill" if then_kill else "cont"), changes=not short)
            victim.signal(signal.SIGSTOP)
            asyncio.get_running_loop().create_task(
                self._end_stop(victim, dur, then_kill))
        elif kind in LINK_KINDS:
            if not await self.netlab.fault(kind, victim.id,
                                           ev.arg["duration"]):
                self.skipped[kind] += 1
                return
            victim.link_fault = True
            self._record(kind, victim, "%.1f s" % ev.arg["duration"])
            asyncio.get_running_loop().create_task(
                self._end_link_fault(victim, ev.arg["duration"]))

    async def _end_link_fault(self, p: PeerProc, dur: float) -> None:
        try:
            await asyncio.wait_for(self.stop_event.wait(), dur)
        except asyncio.TimeoutError:
            pass
        await self.netlab.heal(p.id)
        p.link_fault = False  # only once the rules are gone

    async def _end_stop(self, p: PeerProc, dur: float, then_kill: bool) -> None:
        try:
            await asyncio.wait_for(self.stop_event.wait(), dur)
        except asyncio.TimeoutError:
            pass
        if not p.alive:
            return
        if then_kill:
            # It never runs again: all it reported came before the others
            # cut it, and is held to agreement (no excuse at its exit).
            p.stop_gid = None
            p.injected = "stop-kill"
            self.injected["stop-kill"] += 1
            p.signal(signal.SIGKILL)
        else:
            self.injected["stop-cont"] += 1
            p.woken_t = self.now()
            p.last_msg = self.now()
            p.signal(signal.SIGCONT)
        p.stopped = False

    async def restart_master(self, ev: Event) -> None:
        assert self.master is not None
        joiner = None
        if ev.arg.get("with_joiner") and \
                len(self.live_peers()) < self.opts.effective_max_peers():
            joiner = await self.spawn(joiner=True)
            self._record("join", None, "waits across a master restart",
                         changes=False)
            deadline = self.now() + 5.0
            while joiner.phase != "join" and self.now() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # registered at the master by now
        self.master_up.clear()
        members = [p.id for p in self.live_peers()
                   if p.injected is None and not p.stopped and p.gid is not
                   None and p is not joiner]
        t = self.now()
        self._record("master", None, "down %.2f s%s" % (
            ev.arg["down"], ", a joiner waiting" if joiner else ""),
            changes=False)
        await self.master.kill()
        await asyncio.sleep(ev.arg["down"])
        try:
            await self.master.start()
            self._note_pid(self.master.proc.pid, "master")
        except RuntimeError as exc:
            self.violation("master", str(exc))
            self.stop_event.set()
            return
        self.master_up.set()
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._reconnect_time(t, members)))

    async def _reconnect_time(self, t: float, members: List[int]) -> None:
        await asyncio.sleep(30.0)
        alive = [m for m in members if self.peers[m].alive]
        r = self.ledger.reconnect_time(t, alive)
        if r is not None:
            self.master_reconnects.append(r)
