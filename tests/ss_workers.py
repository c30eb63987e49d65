"""Worker bodies for the shared-state tests (module level: picklable)."""
from __future__ import annotations

import os
import signal
import time
from typing import Any

import numpy as np

import pyccl


def make_state(seed: int = 0, big: int = 1 << 20) -> pyccl.SharedState:
    rng = np.random.default_rng(seed)
    return pyccl.SharedState({
        "w": rng.standard_normal(big, dtype=np.float32),
        "b": rng.standard_normal(1001).astype(np.float64),
        "step": np.array([7], dtype=np.int64),
    }, revision=1)


def summary(comm: pyccl.Communicator, state: pyccl.SharedState,
            res: pyccl.SyncResult) -> dict:
    return {"rank": comm.rank, "hashes": state.hashes(),
            "revision": state.revision, "received": sorted(res.received),
            "sent": res.sent_bytes, "got": res.received_bytes,
            "tx": res.tx_bytes, "rx": res.rx_bytes}


def steady(comm: pyccl.Communicator) -> dict:
    state = make_state()
    pyccl.sync_shared_state(comm, state)  # warm-up
    return summary(comm, state, pyccl.sync_shared_state(comm, state))


def drifted(comm: pyccl.Communicator) -> dict:
    state = make_state()
    if comm.rank == comm.world_size - 1:
        state.tensors["b"][5] += 1.0  # this peer drifted
    return summary(comm, state, pyccl.sync_shared_state(comm, state))


def revision_wins(comm: pyccl.Communicator) -> dict:
    state = make_state()
    if comm.rank == 0:  # rank 0 stepped: its revision is ahead
        state.tensors["step"][0] = 8
        state.revision = 2
    return summary(comm, state, pyccl.sync_shared_state(comm, state))


def send_only_keeps(comm: pyccl.Communicator) -> dict:
    state = make_state()
    strategy = "enforce_popular"
    if comm.rank == 1:
        state.tensors["w"][0] = 42.0
        strategy = "send_only"
    return summary(comm, state, pyccl.sync_shared_state(comm, state, strategy))


def torch_state(comm: pyccl.Communicator) -> dict:
    import torch
    torch.manual_seed(0)
    t = {"w": torch.randn(4097), "h": torch.randn(33).to(torch.bfloat16)}
    if comm.rank == 1:
        t = {"w": torch.zeros(4097), "h": torch.zeros(33, dtype=torch.bfloat16)}
    state = pyccl.SharedState(t)
    res = pyccl.sync_shared_state(
        comm, state, "receive_only" if comm.rank == 1 else "enforce_popular")
    return summary(comm, state, res)


def member_then_joiner(address: str, world: int, rank: int, q: Any,
                       big: int) -> None:
    """A member that admits a joiner and shares the state with it."""
    try:
        comm = pyccl.Communicator(address, world_size=world, rank=rank)
        q.put({"rank": rank, "ready": True})  # the group stands
        state = make_state(big=big)
        seen = np.zeros(1, dtype=np.int32)
        for _ in range(1500):  # a count, not a clock: members agree when to stop
            if seen[0] > 0:
                break
            time.sleep(0.02)
            seen[0] = comm.peers_pending()
            comm.all_reduce(seen, op="min")
        comm.update_topology(30.0)
        res = pyccl.sync_shared_state(comm, state)
        q.put(summary(comm, state, res))
        comm.close()
    except BaseException as e:
        q.put({"rank": rank, "exception": repr(e)})


def joiner(address: str, q: Any, big: int) -> None:
    """Arrives after the group formed (the test starts it then)."""
    try:
        t0 = time.monotonic()
        comm = pyccl.Communicator(address, world_size=1, connect_timeout=60.0)
        state = pyccl.SharedState({
            "w": np.zeros(big, dtype=np.float32),
            "b": np.zeros(1001, dtype=np.float64),
            "step": np.zeros(1, dtype=np.int64)})
        res = pyccl.sync_shared_state(comm, state, "receive_only")
        out = summary(comm, state, res)
        out["joiner"] = True
        out["admit_and_sync_s"] = time.monotonic() - t0
        q.put(out)
        comm.close()
    except BaseException as e:
        q.put({"joiner": True, "exception": repr(e)})


def killed_during_transfer(address: str, world: int, rank: int, q: Any) -> None:
    """Ranks 0 and 1 hold the state, rank 2 needs all of it; rank 0 dies
    in the middle of sending.  Survivors fail the sync, re-form, and sync
    again from rank 1."""
    try:
        comm = pyccl.Communicator(address, world_size=world, rank=rank,
                                  peer_timeout=5.0)
        big = 16 << 20
        state = make_state(big=big)
        if rank == 2:
            state.tensors["w"][:] = 0
        if rank == 0:
            # Die in the middle of the transfer: after the first chunk of
            # the tensor went out, at the start of the second.
            real = comm.broadcast
            calls = [0]

            def dying_broadcast(*a: Any, **kw: Any) -> Any:
                calls[0] += 1
                if calls[0] == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*a, **kw)
            comm.broadcast = dying_broadcast  # type: ignore[method-assign]
        errors = []
        for attempt in range(3):
            try:
                res = pyccl.sync_shared_state(
                    comm, state, "receive_only" if rank == 2 else "enforce_popular")
                break
            except pyccl.CclError as e:
                errors.append(type(e).__name__)
                comm.update_topology(30.0)
        out = summary(comm, state, res)
        out["errors"] = errors
        out["size"] = comm.world_size
        q.put(out)
        comm.close()
    except BaseException as e:
        q.put({"rank": rank, "exception": repr(e)})
