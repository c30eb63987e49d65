"""DiLoCo: local inner steps, a rare outer step on averaged pseudo-gradients.

One engine covers the three variants (docs/diloco.md):

- **DiLoCo** (``fragments=1, overlap=0``): every H inner steps each peer
  sends its pseudo-gradient ``global - local``; the peers average them
  (sum / number of contributors), step the outer optimizer on the global
  copy, and set ``local = global``.
- **Streaming DiLoCo** (``fragments=P, overlap=tau, alpha``): fragment p
  goes out at steps s = p*H/P (mod H), its all-reduce runs while tau more
  inner steps compute, and it is merged as
  ``local = alpha * local + (1 - alpha) * global``.
- **Delayed (async) DiLoCo** (``delayed=True``): the all-reduce overlaps a
  whole window (tau = H/P: one round with P = 1) and the merge keeps what
  the peer learnt meanwhile: ``local = global + (local - sent)``.

Invariants.  The global copy, the outer optimizer state and the step
counters are bit-identical on every peer: they change only through outer
steps, which every peer runs on the same bits (the all-reduce result is
the same on every rank, the optimizer is elementwise and deterministic).
At most one fragment is in flight (``Schedule``: P * tau <= H), so a
failure has one op to redo.

Failures.  When an outer all-reduce fails (a peer died, stalled or left),
every survivor sees it fail and gets its input back; each calls
``update_topology()`` (joiners waiting at the master are admitted there),
shares its state with newcomers (``SharedState``: global copy, outer
optimizer state, a header saying which step it is and what is still to
do), and runs the same all-reduce again in the new group.  The round is
not lost and no partial sum is applied.  A joiner runs the same code path
from its constructor: it receives the state, then takes part in whatever
the header says is still to do, contributing nothing and counting 0.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, List, Optional

import numpy as np

from pyccl.diloco.exchange import Exchange, ExchangeStats, Pending
from pyccl.diloco.fragments import Fragment, make_fragments
from pyccl.diloco.group import GroupLink
from pyccl.diloco.outer import (default_outer_optimizer, make_outer,
                                momentum_targets, ramp_momentum, state_tensors)
from pyccl.diloco.schedule import Schedule
from pyccl.errors import (Aborted, CclError, InvalidArgument, MasterUnreachable,
                          PeerLost, Rejected, Timeout, TooFewPeers)
from pyccl.shared_state import SharedState, sync_shared_state, tensor_hash

#: Failures that a membership change can cure.
RETRYABLE = (PeerLost, Aborted, Timeout)
# A recovery also waits out a master that is away (being restarted): the
# group cannot re-form without it, and the peers keep their links alive
# meanwhile; each attempt lasts update_timeout, max_retries bound them.
RECOVERY_RETRYABLE = RETRYABLE + (MasterUnreachable,)

# Header words (int64), shared with joiners.
_STEP, _OUTER, _PENDING, _SENDS_DUE = range(4)


class DiLoCo:
    """Wraps a model and its inner optimizer; call :meth:`step` in place
    of ``inner_optimizer.step()``.

    Args:
        model: a torch module whose trainable parameters are float32 CPU
            tensors, the same architecture on every peer.
        inner_optimizer: the peer's own optimizer over ``model``'s
            parameters (e.g. AdamW); it stays local.
        comm: the pyccl Communicator of the outer group (one member per
            worker or per worker group); None on the members of a worker
            group other than its leader.
        sync_every: H, inner steps per round.
        outer_optimizer: a factory ``params -> torch.optim.Optimizer``
            (elementwise: SGD, Adam, AdamW, NAdam, RAdam).  Default: SGD,
            lr 0.7, Nesterov momentum 0.9.
        outer_warmup: rounds over which the outer momentum rises linearly
            from 0 to the outer optimizer's own (0: from the first round).
            The k-th outer step of a fragment (k = 0, 1, ...) uses
            ``momentum * min(1, k / outer_warmup)``.  Early pseudo-
            gradients are large and point where the fast-changing early
            loss surface no longer does a few rounds later; momentum that
            keeps them overshoots (docs/diloco.md, "Outer momentum
            warmup").  Needs an outer optimizer with a ``momentum``
            setting (SGD).
        fragments: P, fragments of the parameters (Streaming DiLoCo).
        overlap: tau, inner steps that run while a fragment's all-reduce
            is in flight (0: the inner loop waits).  P * tau <= H.
        alpha: weight of the local parameters in the merge (default 0.5
            when ``overlap > 0``, else 0: local = global).
        delayed: one-step-delay DiLoCo: ``overlap`` defaults to H / P and
            the merge keeps the progress made meanwhile (``alpha`` unused).
        quant: outer gradients on the wire as ``"u8"``, ``"u4"``,
            ``"e3m0"``, ``"f16"`` or ``"bf16"`` (sums in float32; None:
            float32).
        quant_block: elements per scale block of u8/u4/e3m0.
        algorithm: the all-reduce algorithm of the syncs (``"auto"``,
            ``"ring"``, ``"star"``, ``"direct"``); quantized, ``"direct"``
            encodes each worker's pseudo-gradient once instead of a
            partial sum per hop: about half the error stochastically
            (docs/quantization.md, "Algorithms").
        min_peers: raise :class:`pyccl.TooFewPeers` when the group shrinks
            below this.
        joining: this peer joins a running group: its constructor receives
            the state and catches up (its model's values are replaced).
        update_timeout: passed to ``comm.update_topology``.
        max_retries: consecutive failed attempts of one sync before the
            last error is raised.  A recovery that finds the master
            unreachable (``update_topology`` raised
            :class:`pyccl.MasterUnreachable` after ``update_timeout``) is
            tried again too, so a master restarted within about
            max_retries x update_timeout does not end the run.
        group: the torch process group of this worker group when the
            model trains with DDP inside it (``pyccl.diloco.group``): its
            rank 0 is the leader and passes ``comm``; the others pass
            ``comm=None`` and receive each merged fragment from it.
        rejoin: a function that makes a new communicator as a joiner's is
            made (``world_size=1``, the same master).  With it, a peer that
            the group dropped (it stalled past ``peer_timeout`` and the
            master's grace, so its ``step()`` would raise
            :class:`pyccl.Rejected`) comes back by itself: it closes the
            old communicator, joins with the new one at the group's next
            announcement, receives the global state and step counter, and
            sets its model to the global parameters (what it learnt since
            its last completed sync is lost); ``step()`` then returns.
            ``stats.rejoins`` counts it.  With ``group``, pass it on the
            leader: its worker group receives the new state from it.
    """

    def __init__(self, model: Any, inner_optimizer: Any, comm: Any, *,
                 sync_every: int = 500,
                 outer_optimizer: Optional[Callable[[List[Any]], Any]] = None,
                 outer_warmup: int = 0,
                 fragments: int = 1, overlap: Optional[int] = None,
                 alpha: Optional[float] = None, delayed: bool = False,
                 quant: Optional[str] = None, quant_block: int = 256,
                 algorithm: str = "auto", min_peers: int = 1,
                 joining: bool = False,
                 update_timeout: Optional[float] = None,
                 max_retries: int = 50, group: Any = None,
                 rejoin: Optional[Callable[[], Any]] = None) -> None:
        import torch
        if overlap is None:
            overlap = sync_every // fragments if delayed else 0
        self.schedule = Schedule(sync_every, fragments, overlap)
        if alpha is None:
            alpha = 0.5 if overlap > 0 else 0.0
        if not 0.0 <= alpha <= 1.0:
            raise InvalidArgument("alpha must be in [0, 1]")
        for name, p in model.named_parameters():
            if p.requires_grad and (p.dtype != torch.float32 or p.is_cuda):
                raise InvalidArgument("parameter %r: DiLoCo takes float32 CPU "
                                      "parameters, not %s on %s"
                                      % (name, p.dtype, p.device))
        self.model = model
        self.inner_optimizer = inner_optimizer
        self.comm = comm
        self.alpha = float(alpha)
        self.delayed = bool(delayed)
        self.min_peers = min_peers
        self.update_timeout = update_timeout
        self.max_retries = max_retries
        self.fragments: List[Fragment] = make_fragments(
            list(model.named_parameters()), fragments)
        for f in self.fragments:
            f.gather(f.global_)
            if self.delayed:
                f.snap = torch.zeros_like(f.global_)
        params = [f.global_ for f in self.fragments]
        # The pseudo-gradient in flight, kept to send again after a
        # failure whichever of the sync's two ops failed (pyccl gives back
        # the input of a failed op, but not of one that succeeded next to
        # it).  One fragment is in flight at a time: one buffer does.
        self._backup = torch.zeros(max(f.numel for f in self.fragments))
        self.outer_optimizer = make_outer(
            outer_optimizer or default_outer_optimizer, params)
        self._momentum = momentum_targets(self.outer_optimizer, outer_warmup)
        self.outer_warmup = int(outer_warmup)
        self.header = np.zeros(4, dtype=np.int64)
        self.header[_PENDING] = -1
        tensors = {"global.%d" % f.index: f.global_ for f in self.fragments}
        tensors.update(state_tensors(self.outer_optimizer, params))
        tensors["header"] = self.header
        self.state = SharedState(tensors)
        self._rejoin = rejoin
        self.link = GroupLink(group) if group is not None else None
        self.follower = self.link is not None and not self.link.leader
        if self.follower and rejoin is not None:
            raise InvalidArgument("rejoin is the leader's (the peer with comm) "
                                  "in a worker group")
        #: A leader's fragments merged during this step, for its group.
        self._merged: List[int] = []
        self._reset = False  # the leader came back: its group takes all
        if (comm is None) != self.follower:
            raise InvalidArgument("comm must be given on every peer but the "
                                  "members of a worker group other than its "
                                  "leader")
        self.exchange = Exchange(comm, quant, quant_block, algorithm)
        self._inflight: Optional[tuple] = None  # (p, Pending or None, contributes)
        self._admit = False
        self._fresh = bool(joining)
        #: For a joiner: (fragment it redid or -1, whether it ran the
        #: current step's sends) -- what its constructor caught up on.
        self.caught_up: Optional[tuple] = None
        if self.follower:
            self._follow_start()
        else:
            self._start(joining)
            self._share_all()

    # -- public -----------------------------------------------------------

    @property
    def step_count(self) -> int:
        """Inner steps done by the group (the same on every peer)."""
        return int(self.header[_STEP])

    @property
    def outer_steps(self) -> int:
        """Outer steps applied (over all fragments)."""
        return int(self.header[_OUTER])

    @property
    def stats(self) -> ExchangeStats:
        """Bytes sent, peak bytes per sync, time stalled, retries."""
        return self.exchange.stats

    def step(self) -> None:
        """One inner step (``inner_optimizer.step()``), then whatever the
        schedule says: merge a fragment that came back, admit joiners,
        send a fragment."""
        self.inner_optimizer.step()
        self._fresh = False
        self.header[_STEP] += 1
        if self.follower:
            self._follow()
            return
        try:
            self._boundary(int(self.header[_STEP]))
        except Rejected:
            if self._rejoin is None:
                raise
            self._come_back()
        self._lead()

    def finish(self) -> None:
        """Waits for and merges the fragment in flight, if any (call it
        on every peer at the same point, e.g. after the last step)."""
        if self.follower:
            self._follow()
            return
        if self._inflight is not None:
            try:
                self._finish(sends_due=False)
            except Rejected:
                if self._rejoin is None:
                    raise
                self._come_back()
        self._lead()

    def global_hash(self) -> str:
        """A digest of the global copy, the outer optimizer state and the
        counters: equal on every peer (tests compare it)."""
        h = hashlib.sha256()
        for name in self.state.names:
            h.update(tensor_hash(self.state.tensors[name]).to_bytes(8, "little"))
        return h.hexdigest()[:16]

    def load_global(self, model: Any) -> None:
        """Copies the global parameters into ``model`` (same architecture;
        e.g. a copy kept for evaluation)."""
        named = dict(model.named_parameters())
        for f in self.fragments:
            at = 0
            for name, p in zip(f.names, f.params):
                named[name].data.copy_(f.global_[at:at + p.numel()].view_as(p))
                at += p.numel()

    # -- the step boundary ----------------------------------------------

    def _boundary(self, s: int) -> None:
        sched = self.schedule
        if sched.overlap:
            for p in sched.merges_at(s):
                assert self._inflight is not None and self._inflight[0] == p
                self._finish(sends_due=True)
        self._admit_then_send(s)

    def _admit_then_send(self, s: int) -> None:
        if self._admit and self._inflight is None:
            self._admit = False
            self._recover(pending=-1, sends_due=True)
        self._sends(s)

    def _sends(self, s: int) -> None:
        for p in self.schedule.sends_at(s):
            self._send(p)
            if not self.schedule.overlap:
                self._finish(sends_due=False)

    def _send(self, p: int) -> None:
        import torch
        f = self.fragments[p]
        contributes = not self._fresh
        f.gather(f.send)
        if self.delayed:
            f.snap.copy_(f.send)
        torch.sub(f.global_, f.send, out=f.send)  # pseudo-gradient
        if not contributes:
            f.send.zero_()
        self._backup[:f.numel].copy_(f.send)
        try:
            pend: Optional[Pending] = self.exchange.post(f, contributes)
        except RETRYABLE:
            pend = None  # _finish recovers and posts again
        self._inflight = (p, pend, contributes)

    def _finish(self, sends_due: bool, catch_up: bool = False) -> None:
        """Waits for the fragment in flight (redoing it on the survivors
        after a failure), steps the outer optimizer, merges."""
        p, pend, contributes = self._inflight
        f = self.fragments[p]
        failures = 0
        while True:
            try:
                if pend is None:
                    pend = self.exchange.post(f, contributes)
                res = pend.wait()
                break
            except RETRYABLE:
                pend = None
                failures += 1
                if failures > self.max_retries:
                    raise
                f.send.copy_(self._backup[:f.numel])
                self._recover(pending=p, sends_due=sends_due)
        self._inflight = None
        self.header[_PENDING] = -1
        self._apply(f, res.contributors, contributes, catch_up)
        if self.link is not None:
            self._merged.append(p)
        if res.joiners_waiting > 0:
            self._admit = True

    def _apply(self, f: Fragment, contributors: int, contributes: bool,
               catch_up: bool) -> None:
        if contributors > 0:
            f.send.div_(contributors)
            f.global_.grad = f.send
            if self.outer_warmup:
                # The k-th outer step of this fragment: fragments take
                # their outer steps in turn, P per round.
                k = int(self.header[_OUTER]) // len(self.fragments)
                ramp_momentum(self.outer_optimizer, self._momentum,
                              k / self.outer_warmup)
            self.outer_optimizer.step()
            f.global_.grad = None
            self.header[_OUTER] += 1
        self.state.revision = int(self.header[_OUTER])
        # f.send is free now: it holds the merged local parameters.
        if catch_up or (self.alpha == 0.0 and not self.delayed):
            f.scatter(f.global_)
            return
        f.gather(f.send)
        if self.delayed:
            f.send.sub_(f.snap).add_(f.global_)
        else:
            f.send.mul_(self.alpha).add_(f.global_, alpha=1.0 - self.alpha)
        f.scatter(f.send)

    # -- worker groups (DDP inside) ------------------------------------
    #
    # After every step (and in finish()) the leader broadcasts a control
    # record to its worker group: whether it came back into the outer
    # group (then the header and every fragment follow) or which
    # fragments it merged (then each of them follows).  One small
    # broadcast per step buys a protocol that does not depend on the
    # followers predicting the leader's schedule: a leader that rejoins
    # jumps to the outer group's step, at any step.

    def _share_all(self) -> None:
        """The leader hands its step counter and parameters to its worker
        group once it has started."""
        if self.link is None:
            return
        import torch
        self._merged = []
        self.link.broadcast(torch.from_numpy(self.header))
        for f in self.fragments:
            f.gather(f.send)
            self.link.broadcast(f.send)

    def _follow_start(self) -> None:
        import torch
        self.link.broadcast(torch.from_numpy(self.header))
        for f in self.fragments:
            self._receive(f)

    def _receive(self, f: Fragment) -> None:
        self.link.broadcast(f.send)
        f.scatter(f.send)

    def _lead(self) -> None:
        """The leader's control record, then what it announces."""
        if self.link is None:
            return
        import torch
        ctl = torch.full((2 + len(self.fragments),), -1, dtype=torch.int64)
        reset, merged = self._reset, self._merged
        self._reset, self._merged = False, []
        ctl[0] = 1 if reset else 0
        ctl[1] = len(merged)
        for i, p in enumerate(merged):
            ctl[2 + i] = p
        self.link.broadcast(ctl)
        if reset:
            self.link.broadcast(torch.from_numpy(self.header))
        for p in range(len(self.fragments)) if reset else merged:
            f = self.fragments[p]
            # The model holds the merged local parameters now (f.send may
            # carry a pseudo-gradient sent since).
            f.gather(f.send)
            self.link.broadcast(f.send)

    def _follow(self) -> None:
        """A follower's step boundary: receive what the leader says."""
        import torch
        ctl = torch.empty((2 + len(self.fragments),), dtype=torch.int64)
        self.link.broadcast(ctl)
        if int(ctl[0]):
            self.link.broadcast(torch.from_numpy(self.header))
            todo = range(len(self.fragments))
        else:
            todo = [int(ctl[2 + i]) for i in range(int(ctl[1]))]
        for p in todo:
            self._receive(self.fragments[p])

    # -- membership ------------------------------------------------------

    def _come_back(self) -> None:
        """The group dropped this peer: join it again as a newcomer, with
        a communicator from ``rejoin`` (see the constructor)."""
        try:
            self.comm.close()
        except CclError:
            pass  # it is being left behind; what it says does not matter
        comm = self._rejoin()
        self.comm = comm
        self.exchange.comm = comm
        self._inflight = None
        self._admit = False
        self.header[_PENDING] = -1
        self.header[_SENDS_DUE] = 0
        self._fresh = True
        self.stats.rejoins += 1
        self._start(joining=True)
        self._reset = True
        self._merged = []

    def _start(self, joining: bool) -> None:
        """Members agree on the initial state; a joiner receives the
        state and does what the header says is left of the current step."""
        self._resync_until_done("receive_only" if joining else
                                "enforce_popular")
        for f in self.fragments:
            f.scatter(f.global_)
        if not joining:
            return
        pending = int(self.header[_PENDING])
        sends_due = bool(self.header[_SENDS_DUE])
        self.header[_SENDS_DUE] = 0  # as the members, once shared
        self.caught_up = (pending, sends_due)
        if pending >= 0:
            f = self.fragments[pending]
            f.send.zero_()
            self._backup.zero_()
            self._inflight = (pending, None, False)
            self._finish(sends_due=sends_due, catch_up=True)
        if sends_due:
            self._admit_then_send(int(self.header[_STEP]))

    def _resync_until_done(self, strategy: str) -> None:
        failures = 0
        while True:
            try:
                self._resync(strategy)
                return
            except RETRYABLE:
                failures += 1
                if failures > self.max_retries:
                    raise
                self._update()

    def _resync(self, strategy: str) -> None:
        before = self.comm.stats()["tx_bytes"]
        sync_shared_state(self.comm, self.state, strategy)
        sent = self.comm.stats()["tx_bytes"] - before
        self.stats.resyncs += 1
        self.stats.resync_bytes += sent
        self.stats.bytes_sent += sent

    def _update(self) -> bool:
        changed = self.comm.update_topology(self.update_timeout)
        if self.comm.world_size < self.min_peers:
            raise TooFewPeers("%d peer(s) left, %d needed"
                              % (self.comm.world_size, self.min_peers))
        return changed

    def _recover(self, pending: int, sends_due: bool) -> None:
        """update_topology, then share the state with any newcomer,
        telling it which fragment to redo and whether this step's sends
        are still to come."""
        failures = 0
        while True:
            try:
                if not self._update():
                    return
                self.header[_PENDING] = pending
                self.header[_SENDS_DUE] = 1 if sends_due else 0
                self._resync("enforce_popular")
                self.header[_SENDS_DUE] = 0
                return
            except RECOVERY_RETRYABLE:
                failures += 1
                if failures > self.max_retries:
                    raise
