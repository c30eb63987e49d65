"""Worker bodies for the DiLoCo tests (module level: picklable).

Every worker trains the same tiny model (seeded) on data of its own
(seeded by its id), one thread, so a run in another process repeats it
bit for bit.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Dict, List, Optional

import numpy as np

import pyccl


def make_model(seed: int = 0, width: int = 16) -> Any:
    """Four linear layers (four fragments at most)."""
    import torch
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Linear(8, width), nn.Tanh(),
                         nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, 4))


def batch(worker: int, step: int) -> tuple:
    import torch
    g = torch.Generator().manual_seed(1000 * worker + step)
    x = torch.randn(32, 8, generator=g)
    y = torch.sin(x[:, :4] * (1 + worker % 3))
    return x, y


def inner_step(model: Any, opt: Any, worker: int, step: int) -> float:
    import torch
    x, y = batch(worker, step)
    loss = torch.nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    return float(loss.detach())


def flat(tensors: List[Any]) -> np.ndarray:
    import torch
    return torch.cat([t.detach().reshape(-1) for t in tensors]).numpy().copy()


def reference_rounds(n: int, H: int, rounds: int,
                     warmup: int = 0) -> Dict[str, Any]:
    """DiLoCo by hand in one process: n simulated workers, pseudo-
    gradients summed in rank order (as the star all-reduce does), divided
    by n, SGD-Nesterov outer step (its momentum rising from 0 to 0.9 over
    ``warmup`` rounds).  Returns the global parameters after each
    round."""
    import torch
    torch.set_num_threads(1)
    models = [make_model() for _ in range(n)]
    inners = [torch.optim.SGD(m.parameters(), lr=0.05) for m in models]
    glob = [p.detach().clone() for p in models[0].parameters()]
    outer = torch.optim.SGD(glob, lr=0.7, momentum=0.9, nesterov=True)
    # The engine primes the momentum with zeros before the first step.
    for g in glob:
        outer.state[g]["momentum_buffer"] = torch.zeros_like(g)
    out = []
    step = 0
    for k in range(rounds):
        if warmup:
            outer.param_groups[0]["momentum"] = 0.9 * min(1.0, k / warmup)
        for _ in range(H):
            step += 1
            for w in range(n):
                inner_step(models[w], inners[w], w, step)
                inners[w].step()
        for i, g in enumerate(glob):
            total = None
            for w in range(n):
                d = g - list(models[w].parameters())[i].detach()
                total = d if total is None else total + d
            g.grad = total / n
        outer.step()
        for m in models:
            for p, g in zip(m.parameters(), glob):
                p.data.copy_(g)
        out.append(flat(glob))
    return {"globals": out}


def diloco_rounds(comm: pyccl.Communicator, H: int, rounds: int,
                  warmup: int = 0) -> dict:
    """The same as reference_rounds, on a real group (star all-reduce)."""
    import torch
    from pyccl.diloco import DiLoCo
    torch.set_num_threads(1)
    model = make_model()
    inner = torch.optim.SGD(model.parameters(), lr=0.05)
    dl = DiLoCo(model, inner, comm, sync_every=H, algorithm="star",
                outer_warmup=warmup)
    out = []
    w = comm.rank
    for step in range(1, H * rounds + 1):
        inner_step(model, inner, w, step)
        dl.step()
        if step % H == 0:
            out.append(flat([f.global_ for f in dl.fragments]))
            # local = global after the outer step
            assert np.array_equal(flat(list(model.parameters())),
                                  flat([p for f in dl.fragments
                                        for p in f.params]))
    names = [n for f in dl.fragments for n in f.names]
    return {"globals": out, "names": names, "hash": dl.global_hash()}


def streaming_trace(comm: pyccl.Communicator, H: int, P: int, tau: int,
                    steps: int, quant: Optional[str], width: int = 64,
                    algorithm: str = "auto") -> dict:
    """Records when each fragment is posted and waited for, the hash of
    the global state after every outer step and the bytes per sync."""
    import torch
    from pyccl.diloco import DiLoCo
    from pyccl.diloco import exchange as ex
    torch.set_num_threads(1)
    model = make_model(width=width)
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    dl = DiLoCo(model, inner, comm, sync_every=H, fragments=P, overlap=tau,
                quant=quant, algorithm=algorithm)
    events: List[tuple] = []
    post, wait = dl.exchange.post, ex.Pending.wait

    def traced_post(f: Any, contributes: bool) -> Any:
        events.append((dl.step_count, "send", f.index))
        return post(f, contributes)

    def traced_wait(self: Any) -> Any:
        events.append((dl.step_count, "merge", self.fragment.index))
        return wait(self)

    dl.exchange.post = traced_post
    ex.Pending.wait = traced_wait
    hashes = []
    last = 0
    sync_bytes = []
    for step in range(1, steps + 1):
        inner_step(model, inner, comm.rank, step)
        dl.step()
        if dl.outer_steps != last:
            last = dl.outer_steps
            hashes.append((step, last, dl.global_hash()))
    dl.finish()
    ex.Pending.wait = wait
    st = dl.stats
    return {"events": events, "hashes": hashes, "syncs": st.syncs,
            "bytes": st.bytes_sent, "peak": st.peak_sync_bytes,
            "sizes": [f.numel for f in dl.fragments],
            "final": dl.global_hash(), "sync_bytes": sync_bytes}


def streaming_traces(comm: pyccl.Communicator, H: int, P: int, tau: int,
                     steps: int, quants: List[Optional[str]]) -> dict:
    """streaming_trace for each format in turn, on the same group; a
    format "<q>/direct" syncs with the direct algorithm."""
    out = {}
    for q in quants:
        fmt, _, alg = (q or "").partition("/")
        out[q] = streaming_trace(comm, H, P, tau, steps, fmt or None,
                                 algorithm=alg or "auto")
    return out


def churn_worker(address: str, world: int, joining: bool, steps: int, H: int,
                 P: int, tau: int, quant: Optional[str], delayed: bool,
                 die_at: int, q: Any) -> None:
    """A member (or joiner) of a churn run; reports (step, outer steps,
    hash) after every outer step and a final summary.  ``die_at`` > 0:
    SIGKILL itself right after that inner step (a fragment may be in
    flight); ``die_at`` < 0: SIGKILL itself as soon as a joiner waits at
    the master, just before a step that sends a fragment (so the
    survivors' sync fails and the joiner comes in at the recovery);
    ``die_at`` == -2: a member of such a run that does not die.  In both
    the member's syncs never announce the joiner."""
    import torch
    from pyccl.diloco import DiLoCo
    torch.set_num_threads(1)
    try:
        comm = pyccl.Communicator(address, world_size=1 if joining else world,
                                  # A SIGKILL is seen at once (EOF); long
                                  # deadlines keep a loaded machine's
                                  # scheduling hiccups from looking like
                                  # failures.
                                  peer_timeout=30.0, op_timeout=60.0,
                                  connect_timeout=120.0)
        model = make_model(seed=0 if not joining else 99)
        inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
        dl = DiLoCo(model, inner, comm, sync_every=H, fragments=P,
                    overlap=tau, quant=quant, delayed=delayed,
                    joining=joining, min_peers=2)
        me = os.getpid()
        q.put({"pid": me, "started": dl.step_count})
        waiting = comm.peers_pending
        if die_at < 0 and not joining:
            # The members' syncs never announce the joiner, so it can only
            # come in at the recovery from the victim's death.
            comm.peers_pending = lambda: 0
        seen = []
        last = dl.outer_steps
        # Members go on past ``steps`` until the group has changed and
        # is whole again (they all see each change at the same step, so
        # they stop together).
        epoch0 = comm.epoch
        # A joiner may take many seconds to start on a loaded machine.
        give_up = time.monotonic() + 120.0

        def going() -> bool:
            if dl.step_count < steps:
                return True
            if time.monotonic() > give_up:
                return False
            return comm.world_size < world or (not joining
                                               and comm.epoch == epoch0)

        while going():
            step = dl.step_count + 1
            if die_at == -1 and waiting() > 0 and \
                    dl.schedule.sends_at(step):
                os.kill(me, signal.SIGKILL)
            inner_step(model, inner, me % 7, step)
            dl.step()
            if dl.outer_steps != last:
                last = dl.outer_steps
                seen.append((dl.step_count, last, dl.global_hash()))
            if die_at and dl.step_count == die_at:
                os.kill(me, signal.SIGKILL)
            time.sleep(0.005)
        dl.finish()
        seen.append((dl.step_count, dl.outer_steps, dl.global_hash()))
        q.put({"pid": me, "done": True, "seen": seen,
               "final": dl.global_hash(), "world": comm.world_size,
               "retries": dl.stats.retries, "resyncs": dl.stats.resyncs,
               "caught_up": dl.caught_up})
        comm.close()
    except BaseException as exc:  # noqa: B902 - reported to the test
        import traceback
        q.put({"pid": os.getpid(), "error": traceback.format_exc(),
               "exc": repr(exc)})


def ddp_group_worker(address: str, init_method: str, group: int, local: int,
                     steps: int, q: Any, groups: int = 2, die_at: int = 0) -> None:
    """One of 2 processes of worker group ``group`` (of ``groups``): DDP
    (gloo) inside the group, the group's leader (local 0) in the outer
    pyccl group.  ``die_at`` > 0: SIGKILL itself just before that step
    (both processes of the group do: the whole group is lost)."""
    try:
        import torch
        import torch.distributed as dist
        from pyccl.diloco import DiLoCo
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=init_method,
                                world_size=2, rank=local)
        model = make_model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
        comm = None
        if local == 0:
            comm = pyccl.Communicator(address, world_size=groups,
                                      peer_timeout=10.0)
        dl = DiLoCo(model, inner, comm, sync_every=6, fragments=2, overlap=1,
                    group=dist.group.WORLD)
        hashes = []
        for step in range(1, steps + 1):
            if step == die_at:
                os.kill(os.getpid(), signal.SIGKILL)
            x, y = batch(10 * group + local, step)
            loss = torch.nn.functional.mse_loss(ddp(x), y)
            inner.zero_grad()
            loss.backward()
            dl.step()
            hashes.append(pyccl.shared_state.tensor_hash(
                torch.from_numpy(flat(list(model.parameters())))))
        dl.finish()
        q.put({"group": group, "local": local, "local_hashes": hashes,
               "final_local": pyccl.shared_state.tensor_hash(
                   torch.from_numpy(flat(list(model.parameters())))),
               "global": dl.global_hash() if local == 0 else None,
               "outer": dl.outer_steps, "step": dl.step_count,
               "world": comm.world_size if comm is not None else None,
               "retries": dl.stats.retries if local == 0 else None})
        if comm is not None:
            comm.close()
        dist.destroy_process_group()
    except BaseException:  # noqa: B902 - reported to the test
        import traceback
        q.put({"group": group, "local": local, "error": traceback.format_exc()})


def ddp_group_stall_worker(address: str, init_method: str, group: int,
                           local: int, cfg: Dict[str, Any], q: Any,
                           progress: Any) -> None:
    """One of 2 processes of worker group ``group`` of ``cfg["groups"]``:
    DDP (gloo) inside the group, the group's leader (local 0) in the outer
    pyccl group with ``rejoin=`` (peer_timeout ``cfg["peer_timeout"]``).
    The test stops and wakes whole groups from outside.  Members go on
    past ``cfg["steps"]`` until the outer group is whole again and
    unchanged for ``cfg["tail"]`` steps (the leader decides and tells its
    follower every step).  ``progress[2 * (2 * group + local)]``: its
    step count; ``[... + 1]``: the leader's outer group size.

    Reports ``{"done"}`` with ``local`` ((step, hash of the replica's
    parameters) after every step), the leader's ``seen`` ((step, outer
    steps, global hash) after every outer step, restarted when it came
    back), ``changes`` ((step, epoch, size) at every group change),
    ``rejoins`` and the final global hash; ``{"error"}``."""
    try:
        import datetime
        import torch
        import torch.distributed as dist
        from pyccl.diloco import DiLoCo
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=init_method, world_size=2,
                                rank=local,
                                timeout=datetime.timedelta(seconds=150))
        model = make_model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
        groups, steps, tail = cfg["groups"], cfg["steps"], cfg["tail"]
        comm = rejoin = None
        if local == 0:
            def make(world: int) -> pyccl.Communicator:
                return pyccl.Communicator(
                    address, world_size=world, peer_timeout=cfg["peer_timeout"],
                    op_timeout=30.0, connect_timeout=120.0)
            comm = make(groups)
            rejoin = lambda: make(1)  # noqa: E731
        dl = DiLoCo(model, inner, comm, sync_every=cfg["H"], fragments=cfg["P"],
                    overlap=cfg["tau"], group=dist.group.WORLD, rejoin=rejoin)
        me = 2 * (2 * group + local)
        local_hashes: List[tuple] = []
        seen: List[tuple] = []
        changes: List[tuple] = []
        rejoins = 0
        last = dl.outer_steps
        if comm is not None:
            changes.append((dl.step_count, comm.epoch, comm.world_size))
        give_up = time.monotonic() + cfg.get("give_up_s", 150.0)
        go = torch.ones(1, dtype=torch.int64)
        while True:
            if comm is not None:
                s, c = dl.step_count, dl.comm
                go[0] = int(s < steps or (time.monotonic() < give_up and (
                    c.world_size != groups or s < changes[-1][0] + tail)))
            dist.broadcast(go, src=0)
            if not go[0]:
                break
            x, y = batch(10 * group + local, dl.step_count + 1)
            loss = torch.nn.functional.mse_loss(ddp(x), y)
            inner.zero_grad()
            loss.backward()
            dl.step()
            local_hashes.append((dl.step_count, pyccl.shared_state.tensor_hash(
                torch.from_numpy(flat(list(model.parameters()))))))
            progress[me] = dl.step_count
            if comm is not None:
                c = dl.comm
                progress[me + 1] = c.world_size
                if c.epoch != changes[-1][1]:
                    changes.append((dl.step_count, c.epoch, c.world_size))
                if dl.stats.rejoins != rejoins:
                    # Back in the group: its records start again there.
                    rejoins = dl.stats.rejoins
                    seen = []
                    last = dl.outer_steps
                    seen.append((dl.step_count, last, dl.global_hash()))
                if dl.outer_steps != last:
                    last = dl.outer_steps
                    seen.append((dl.step_count, last, dl.global_hash()))
        dl.finish()
        if comm is not None and dl.outer_steps != last:
            seen.append((dl.step_count, dl.outer_steps, dl.global_hash()))
        q.put({"done": True, "group": group, "local": local,
               "local_hashes": local_hashes, "step": dl.step_count,
               "final_local": pyccl.shared_state.tensor_hash(
                   torch.from_numpy(flat(list(model.parameters())))),
               "seen": seen, "changes": changes, "rejoins": dl.stats.rejoins,
               "final": dl.global_hash() if comm is not None else None,
               "world": dl.comm.world_size if comm is not None else None})
        if comm is not None:
            dl.comm.close()
        dist.destroy_process_group()
    except BaseException:  # noqa: B902 - reported to the test
        import traceback
        q.put({"group": group, "local": local, "error": traceback.format_exc()})


def fault_worker(address: str, world: int, idx: int, cfg: Dict[str, Any],
                 q: Any, progress: Any, flags: Any) -> None:
    """A member (or joiner) of a fault run (tests/test_diloco_faults.py).

    Each worker has a queue of its own (``q``: a stopped or killed worker
    cannot hold a lock the others need to report) and a slot in the shared
    array ``progress`` (``[2*idx]``: its step count, ``[2*idx+1]``: its
    world size), which the test watches to time its actions.

    ``cfg``: ``steps``, ``H``, ``P``, ``tau``, ``quant``; ``peer_timeout``,
    ``op_timeout``; ``joining``; ``final_world`` and ``tail``: members go
    on past ``steps`` until the group has changed ``min_changes`` times,
    has ``final_world`` members and has not changed for ``tail`` steps
    (a function of the shared state: every member stops at the same
    step); ``act`` and ``act_at``:

    - ``"stop_before"``: SIGSTOP itself just before the inner step
      ``act_at`` (whose ``dl.step()`` sends);
    - ``"stop_after"``: SIGSTOP itself right after ``dl.step()`` of step
      ``act_at`` (its fragment is in flight when tau > 0);
    - ``"kill_before"``: SIGKILL itself just before step ``act_at``;
    - ``"kill_on_flag"``: once ``flags[0]`` is set, SIGKILL itself just
      before the next step that sends;
    - ``"kill_after_update"``: SIGKILL itself as soon as its first
      ``update_topology`` (a recovery) has returned, before the state
      sharing and the redone sync.

    A stopped worker that is woken (SIGCONT) reports the error its run
    ended with; with ``rejoin`` it then comes back as a joiner (a new
    Communicator with world_size 1, ``DiLoCo(joining=True)``, a model
    with other initial weights).  ``linger_s``: after an error, the
    worker keeps its communicator open that long before it exits.

    Reports: ``{"started"}``, ``{"woke"}`` (a woken stopped worker),
    ``{"done"}`` with ``seen`` ((step, outer steps, hash) after every
    outer step), ``syncs`` ((step, fragment, contributors, world size,
    epoch) of every completed sync, step None for a joiner's catch-up in
    its constructor), ``changes`` ((step, epoch, world size) at every
    group change), ``slow`` ((step, seconds) of every ``dl.step()`` that
    took over 0.5 s), stats and the final hash; ``{"error"}``.
    """
    import torch
    from pyccl.diloco import DiLoCo
    from pyccl.diloco import exchange as ex
    torch.set_num_threads(1)
    me = os.getpid()
    act = cfg.get("act")
    act_at = cfg.get("act_at", 0)
    cur: Dict[str, Any] = {"step": None, "comm": None}
    syncs: List[tuple] = []
    wait = ex.Pending.wait

    def traced_wait(self: Any) -> Any:
        res = wait(self)
        comm_ = cur["dl"].comm if cur.get("dl") is not None else cur["comm"]
        syncs.append((cur["step"], self.fragment.index, res.contributors,
                      comm_.world_size, comm_.epoch))
        return res

    ex.Pending.wait = traced_wait

    def open_comm(joining: bool) -> pyccl.Communicator:
        return pyccl.Communicator(
            address, world_size=1 if joining else world,
            peer_timeout=cfg.get("peer_timeout", 30.0),
            op_timeout=cfg.get("op_timeout", 60.0), connect_timeout=120.0)

    def run(joining: bool, acting: bool) -> dict:
        comm = open_comm(joining)
        cur["comm"] = comm
        cur["step"] = None
        cur["dl"] = None
        model = make_model(seed=99 if joining else 0)
        inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
        dl = DiLoCo(model, inner, comm, sync_every=cfg["H"],
                    fragments=cfg.get("P", 1), overlap=cfg.get("tau", 0),
                    quant=cfg.get("quant"), joining=joining,
                    min_peers=cfg.get("min_peers", 2),
                    update_timeout=cfg.get("update_timeout"),
                    rejoin=(lambda: open_comm(True))
                    if cfg.get("auto_rejoin") else None)
        cur["dl"] = dl
        q.put({"started": dl.step_count, "world": dl.comm.world_size,
               "epoch": dl.comm.epoch, "joining": joining})
        if acting and act == "kill_after_update":
            update = dl._update

            def update_then_die() -> bool:
                changed = update()
                os.kill(me, signal.SIGKILL)
                return changed

            dl._update = update_then_die
        seen: List[tuple] = []
        changes: List[tuple] = [(dl.step_count, dl.comm.epoch, dl.comm.world_size)]
        last = dl.outer_steps
        steps, tail = cfg["steps"], cfg.get("tail", 0)
        final_world = cfg.get("final_world", world)
        # Group changes a member waits for (a joiner: none).
        min_changes = 0 if joining else cfg.get("min_changes", 0)
        give_up = time.monotonic() + cfg.get("give_up_s", 120.0)
        stopped_s = None
        seen_at_stop = None  # len(seen) when this worker stopped itself
        woke = 0.0
        rejoins = 0
        dropped_seen: List[tuple] = []
        slow: List[tuple] = []  # (step, seconds) of dl.step() over 0.5 s

        def going() -> bool:
            s = dl.step_count
            if s < steps:
                return True
            if time.monotonic() > give_up:
                return False
            return (dl.comm.world_size != final_world
                    or len(changes) - 1 < min_changes
                    or s < changes[-1][0] + tail)

        try:
            while going():
                step = dl.step_count + 1
                if acting and act == "stop_before" and step == act_at:
                    seen_at_stop = len(seen)
                    t0 = time.monotonic()
                    os.kill(me, signal.SIGSTOP)
                    woke = time.monotonic()
                    stopped_s = woke - t0
                if acting and act == "kill_before" and step == act_at:
                    os.kill(me, signal.SIGKILL)
                if acting and act == "kill_on_flag" and flags[0] and \
                        dl.schedule.sends_at(step):
                    os.kill(me, signal.SIGKILL)
                inner_step(model, inner, idx + 10 * int(joining), step)
                cur["step"] = step
                t0 = time.monotonic()
                dl.step()
                took = time.monotonic() - t0
                if took > 0.5:
                    slow.append((step, took))
                progress[2 * idx] = dl.step_count
                progress[2 * idx + 1] = dl.comm.world_size
                if dl.comm.epoch != changes[-1][1]:
                    changes.append((dl.step_count, dl.comm.epoch,
                                    dl.comm.world_size))
                if dl.stats.rejoins != rejoins:
                    # Came back by itself (auto_rejoin): what it merged
                    # between waking and being Rejected was its own.
                    rejoins = dl.stats.rejoins
                    dropped_seen = seen[seen_at_stop:]
                    del seen[seen_at_stop:]
                    last = dl.outer_steps
                    seen.append((dl.step_count, last, dl.global_hash()))
                if dl.outer_steps != last:
                    last = dl.outer_steps
                    seen.append((dl.step_count, last, dl.global_hash()))
                if acting and act == "stop_after" and step == act_at:
                    seen_at_stop = len(seen)
                    t0 = time.monotonic()
                    os.kill(me, signal.SIGSTOP)
                    woke = time.monotonic()
                    stopped_s = woke - t0
                time.sleep(0.005)
            cur["step"] = dl.step_count
            dl.finish()
        except pyccl.CclError as exc:
            if stopped_s is None:
                raise
            # What it recorded after waking is its own: a sync in flight
            # when it stopped may complete on it alone from the bytes
            # already delivered (docs/fault-tolerance.md, "Known gaps": a
            # peer declared silent that then resumes may end an op
            # differently), and it is Rejected right after.
            q.put({"woke": True, "exc": type(exc).__name__,
                   "detail": str(exc), "step": dl.step_count,
                   "stopped_s": stopped_s, "seen": seen[:seen_at_stop],
                   "seen_after_wake": seen[seen_at_stop:],
                   "syncs": list(syncs),
                   "woke_to_error_s": time.monotonic() - woke})
            dl.comm.close()
            return {}
        merged_at_finish = dl.outer_steps != last
        if merged_at_finish:
            seen.append((dl.step_count, dl.outer_steps, dl.global_hash()))
        out = {"done": True, "merged_at_finish": merged_at_finish, "seen": seen, "syncs": list(syncs),
               "changes": changes, "final": dl.global_hash(),
               "step": dl.step_count, "outer": dl.outer_steps,
               "world": dl.comm.world_size, "epoch": dl.comm.epoch,
               "retries": dl.stats.retries, "resyncs": dl.stats.resyncs,
               "rejoins": dl.stats.rejoins, "dropped_seen": dropped_seen,
               "caught_up": dl.caught_up, "joining": joining,
               "stopped_s": stopped_s, "slow": slow}
        dl.comm.close()
        return out

    try:
        out = run(cfg.get("joining", False), True)
        if not out and cfg.get("rejoin"):
            del syncs[:]
            out = run(True, False)
            out["rejoined"] = True
        if out:
            q.put(out)
    except BaseException as exc:  # noqa: B902 - reported to the test
        import traceback
        q.put({"pid": me, "error": traceback.format_exc(), "exc": repr(exc)})
        # ``linger_s``: keep the communicator open that long after the
        # error (as a process that caught the error and went on would).
        time.sleep(cfg.get("linger_s", 0))
