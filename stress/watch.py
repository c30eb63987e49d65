"""The orchestrator's watchdog and timeline: hangs (with every thread's
Python and C stacks in the peer's log), stopped peers that never come
back, joiners never admitted, replacements for lost peers, and the
once-a-second samples of the timeline.  A mixin of
:class:`stress.orchestrator.Orchestrator`, whose state it uses."""
from __future__ import annotations

import asyncio
import shutil
import signal
from collections import Counter

from stress.children import PeerProc


async def native_stacks(pid: int, log_path: str, limit_s: float = 20.0) -> None:
    """Appends every thread's C stack (gdb, where installed) to a hung
    peer's log: Python's faulthandler shows only the Python frames, and a
    hang inside the core needs the C ones."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return
    try:
        with open(log_path, "ab") as log:
            log.write(b"\n--- native stacks (gdb) ---\n")
            log.flush()
            proc = await asyncio.create_subprocess_exec(
                gdb, "-batch", "-nx", "-p", str(pid),
                "-ex", "thread apply all bt", stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log)
            try:
                await asyncio.wait_for(proc.wait(), limit_s)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
    except OSError:
        pass


class Watchdog:
    """Watches the peers (methods of the Orchestrator)."""

    # -- the watchdog -----------------------------------------------------

    def _bound(self, phase: str) -> float:
        o = self.opts
        if o.hang_timeout is not None:
            return o.hang_timeout
        if phase == "join":
            return o.connect_timeout + 15.0
        if phase == "update":
            return o.op_timeout + 5.0 + 15.0
        return 2 * o.op_timeout + 15.0

    async def watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = self.now()
            for p in self.live_peers():
                if p.stopped or p.hung or (p.injected is not None and
                                           p.injected != "leave"):
                    continue
                if not self.master_up.is_set() and p.phase in ("update",
                                                               "join"):
                    p.last_msg = max(p.last_msg, now - 1.0)
                bound = self._bound(p.phase)
                if now - p.last_msg > bound:
                    await self._hang(p, now)
                elif p.phase == "join" and now - p.join_t > 3 * bound:
                    p.hung = True
                    self.violation("join_stuck", "peer %d has been waiting "
                                   "to join for %.0f s (group: %s)" % (
                                       p.id, now - p.join_t,
                                       self._groups_text()), [p.id])
                if p.woken_t is not None and p.last_ok_t < p.woken_t \
                        and now - p.woken_t > 2 * self._bound("update") \
                        + self._bound("join"):
                    self.violation("stopped_not_recovered", "peer %d, "
                                   "woken %.0f s ago, has neither rejoined "
                                   "nor exited (phase %s)" % (
                                       p.id, now - p.woken_t, p.phase),
                                   [p.id])
                    p.woken_t = None
                elif p.woken_t is not None and p.last_ok_t > p.woken_t:
                    p.woken_t = None
            for v in self.ledger.resolve(now, older_than=20.0):
                self._after_violation(v)
            if self.opts.replace and not self.finishing and self.started:
                want = self.opts.peers - self._members_left() \
                    - self.pending_spawns
                if want > 0:
                    self.pending_spawns += want
                    asyncio.get_running_loop().create_task(
                        self._replace(want))

    async def _replace(self, n: int) -> None:
        try:
            await asyncio.sleep(self.opts.replace_delay)
            if self.finishing:
                return
            for _ in range(n):
                await self.spawn(joiner=True)
                self.replacements += 1
                self._record("join", None, "replacement", changes=False)
        finally:
            self.pending_spawns -= n

    async def _hang(self, p: PeerProc, now: float) -> None:
        p.hung = True
        p.signal(signal.SIGUSR1)   # faulthandler: every thread's stack
        await asyncio.sleep(0.5)
        await native_stacks(p.pid, p.log_path)
        self.violation("hang", "peer %d made no progress for %.0f s in "
                       "phase %s (epoch %d); its stacks are in %s" % (
                           p.id, now - p.last_msg, p.phase, p.epoch,
                           p.log_path), [p.id])
        p.injected = "hang"
        p.signal(signal.SIGKILL)

    def _groups_text(self) -> str:
        out = []
        for p in sorted(self.live_peers(), key=lambda p: p.id):
            g = "-" if p.gid is None else str(self.ledger.group_epoch[p.gid])
            out.append("%d:%s/%s%s" % (p.id, p.phase, g,
                                       " stopped" if p.stopped else ""))
        return " ".join(out)

    # -- timeline ---------------------------------------------------------

    async def sampler(self) -> None:
        last_ops = self.ledger.ops_ok
        while True:
            await asyncio.sleep(1.0)
            live = self.live_peers()
            sizes = Counter(p.gid for p in live if p.gid is not None)
            gid = max(sizes, key=lambda g: (sizes[g], g)) if sizes else None
            ops = self.ledger.ops_ok
            point = {"t": round(self.rel(), 2), "live": len(live),
                     "stopped": sum(1 for p in live if p.stopped),
                     "members": len(self.ledger.group_members[gid])
                     if gid is not None else 0,
                     "epoch": self.ledger.group_epoch[gid]
                     if gid is not None else -1,
                     "ops_s": ops - last_ops}
            last_ops = ops
            self.timeline.append(point)
            if self.display is not None:
                self.display.sample(self, point)
