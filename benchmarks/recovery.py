"""Recovery benchmark: how fast the group gets going again after churn.

Measures, on loopback with real processes and real signals:

1. SIGKILL: time from the kill until every survivor has completed a small
   all-reduce in the new, smaller group (error, update_topology, op);
2. SIGSTOP: time from the stop until the survivors' pending op fails, with
   peer_timeout = 2 s (the bound is peer_timeout + 1 s);
3. a joiner with a 256 MiB shared state: time from its Communicator() call
   until it holds the verified state (admission at the members' next safe
   point, then the transfer);
4. steady-state sync of a 256 MiB shared state: time and tensor bytes moved;
5. SIGKILL under load, repeated (--kills): every member keeps a 4 MiB
   all-reduce in flight while it runs small ones (or only small ones); a
   random member is killed at a random moment; for each survivor, the time
   from the kill to its first error (detection) and to its next small
   all-reduce done in the smaller group (recovery): p50, p99 and max.

Run: python benchmarks/recovery.py [--peers 4] [--state-mib 256] [--kills 30]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import time
from typing import Any

import numpy as np

import pyccl

CTX = multiprocessing.get_context("spawn")


def _loop_member(address: str, world: int, rank: int, q: Any,
                 peer_timeout: float) -> None:
    comm = pyccl.Communicator(address, world_size=world, rank=rank,
                              peer_timeout=peer_timeout)
    x = np.ones(1, dtype=np.float32)
    q.put(("ready", rank, time.time()))
    while True:
        try:
            comm.all_reduce(x)
        except pyccl.CclError:
            failed = time.time()
            comm.update_topology(30.0)
            comm.all_reduce(x)
            q.put(("recovered", rank, failed, time.time(), comm.world_size))
            comm.close()
            return
        time.sleep(0.001)


def churn(world: int, sig: int, peer_timeout: float) -> dict:
    with pyccl.Master() as master:
        q = CTX.Queue()
        procs = [CTX.Process(target=_loop_member,
                             args=(master.address, world, r, q, peer_timeout))
                 for r in range(world)]
        for p in procs:
            p.start()
        for _ in range(world):
            q.get(timeout=60)
        time.sleep(0.5)
        victim = procs[world - 1]
        t_sig = time.time()
        os.kill(victim.pid, sig)
        rows = [q.get(timeout=60) for _ in range(world - 1)]
        os.kill(victim.pid, signal.SIGKILL)
        for p in procs:
            p.join(timeout=10)
    fail = [r[2] - t_sig for r in rows]
    done = [r[3] - t_sig for r in rows]
    return {"fail_max": max(fail), "done_max": max(done),
            "done_median": statistics.median(done),
            "sizes": sorted({r[4] for r in rows})}


def _load_member(address: str, world: int, rank: int, q: Any,
                 big_bytes: int) -> None:
    """Small blocking all-reduces back to back, with (big_bytes > 0) a big
    async all-reduce in flight under every four of them (posted in the same
    order on every member, as collectives must be); on the first error: the
    safe point, then one small op in the smaller group."""
    comm = pyccl.Communicator(address, world_size=world, rank=rank,
                              peer_timeout=30.0)
    x = np.ones(1, dtype=np.float32)
    big = np.ones(max(1, big_bytes // 4), dtype=np.float32)
    q.put(("ready", rank, time.time()))
    pending = None
    try:
        while True:
            if big_bytes:
                pending = comm.all_reduce(big, async_op=True)
            for _ in range(4):
                comm.all_reduce(x)
            if pending is not None:
                pending.wait()
                pending = None
    except pyccl.CclError:
        failed = time.time()
    if pending is not None:
        try:
            pending.wait()
        except pyccl.CclError:
            pass
    comm.update_topology(30.0)
    comm.all_reduce(x)
    q.put(("recovered", rank, failed, time.time(), comm.world_size))
    comm.close()


def kill_under_load(world: int, rounds: int, big_bytes: int, seed: int = 1) -> dict:
    """Kills one random member per round at a random moment; returns the
    survivors' detection and recovery times in seconds."""
    rng = np.random.default_rng(seed)
    detect, recover = [], []
    for _ in range(rounds):
        with pyccl.Master() as master:
            q = CTX.Queue()
            procs = [CTX.Process(target=_load_member,
                                 args=(master.address, world, r, q, big_bytes))
                     for r in range(world)]
            for p in procs:
                p.start()
            for _ in range(world):
                q.get(timeout=60)
            time.sleep(0.2 + 0.3 * rng.random())  # a random moment of the load
            victim = procs[int(rng.integers(world))]
            t_kill = time.time()
            os.kill(victim.pid, signal.SIGKILL)
            rows = [q.get(timeout=60) for _ in range(world - 1)]
            for p in procs:
                p.join(timeout=10)
        detect += [r[2] - t_kill for r in rows]
        recover += [r[3] - t_kill for r in rows]
    return {"detect": detect, "recover": recover}


def _pct(v: list, q: float) -> float:
    return float(np.percentile(np.asarray(v), q))


def _state_member(address: str, world: int, rank: int, q: Any,
                  nbytes: int) -> None:
    comm = pyccl.Communicator(address, world_size=world, rank=rank)
    w = np.full(nbytes // 4, 0.5, dtype=np.float32)
    state = pyccl.SharedState({"w": w})
    pyccl.sync_shared_state(comm, state)
    t0 = time.perf_counter()
    res = pyccl.sync_shared_state(comm, state)
    q.put(("steady", rank, time.perf_counter() - t0, res.sent_bytes,
           res.received_bytes, res.tx_bytes))
    seen = np.zeros(1, dtype=np.int32)
    for _ in range(6000):  # bounded (60 s); members decide together
        if seen[0] > 0:
            break
        time.sleep(0.01)
        seen[0] = comm.peers_pending()
        comm.all_reduce(seen, op="min")
    comm.update_topology(60.0)
    pyccl.sync_shared_state(comm, state)
    comm.close()


def _state_joiner(address: str, q: Any, nbytes: int) -> None:
    t0 = time.perf_counter()
    comm = pyccl.Communicator(address, world_size=1, connect_timeout=120.0)
    t_admitted = time.perf_counter() - t0
    state = pyccl.SharedState({"w": np.zeros(nbytes // 4, dtype=np.float32)})
    res = pyccl.sync_shared_state(comm, state, "receive_only")
    q.put(("joined", t_admitted, time.perf_counter() - t0, res.received_bytes,
           bool((state.tensors["w"] == 0.5).all())))
    comm.close()


def shared_state(world: int, nbytes: int) -> dict:
    with pyccl.Master() as master:
        q = CTX.Queue()
        procs = [CTX.Process(target=_state_member,
                             args=(master.address, world, r, q, nbytes))
                 for r in range(world)]
        for p in procs:
            p.start()
        steady = [q.get(timeout=300) for _ in range(world)]
        j = CTX.Process(target=_state_joiner, args=(master.address, q, nbytes))
        j.start()
        joined = q.get(timeout=300)
        for p in procs + [j]:
            p.join(timeout=60)
    return {"steady_s": max(r[2] for r in steady),
            "steady_tensor_bytes": sum(r[3] + r[4] for r in steady),
            "steady_tx_bytes": max(r[5] for r in steady),
            "join_admitted_s": joined[1], "join_total_s": joined[2],
            "join_bytes": joined[3], "join_ok": joined[4]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--state-mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kills", type=int, default=30,
                    help="kills per load kind in the under-load part (0: skip)")
    a = ap.parse_args()
    print("recovery benchmark: %d peers, loopback, %s" % (
        a.peers, time.strftime("%Y-%m-%d %H:%M")))
    print("%-44s %10s %10s %10s" % ("event", "fail (s)", "next op", "median"))
    for _ in range(a.repeat):
        r = churn(a.peers, signal.SIGKILL, 30.0)
        print("%-44s %10.4f %10.4f %10.4f" % (
            "SIGKILL -> survivors' next all-reduce done", r["fail_max"],
            r["done_max"], r["done_median"]))
    for _ in range(a.repeat):
        r = churn(a.peers, signal.SIGSTOP, 2.0)
        print("%-44s %10.4f %10.4f %10.4f" % (
            "SIGSTOP (peer_timeout 2 s) -> op fails", r["fail_max"],
            r["done_max"], r["done_median"]))
    if a.kills:
        print()
        print("SIGKILL under load, %d peers, %d kills each (ms after the kill, "
              "over every survivor):" % (a.peers, a.kills))
        print("%-30s %8s %8s %8s %8s %8s %8s" % (
            "load", "det p50", "det p99", "det max", "rec p50", "rec p99",
            "rec max"))
        for name, big in (("small ops only", 0), ("4 MiB all-reduce in flight",
                                                  4 << 20)):
            r = kill_under_load(a.peers, a.kills, big)
            d, rc = r["detect"], r["recover"]
            print("%-30s %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f" % (
                name, _pct(d, 50) * 1e3, _pct(d, 99) * 1e3, max(d) * 1e3,
                _pct(rc, 50) * 1e3, _pct(rc, 99) * 1e3, max(rc) * 1e3))
    s = shared_state(max(2, a.peers - 1), a.state_mib << 20)
    print()
    print("shared state of %d MiB, %d members:" % (a.state_mib, max(2, a.peers - 1)))
    print("  steady-state sync: %.3f s, tensor bytes moved %d, all traffic %d B"
          % (s["steady_s"], s["steady_tensor_bytes"], s["steady_tx_bytes"]))
    print("  joiner: admitted after %.3f s, state verified after %.3f s "
          "(%d bytes received, correct: %s)" % (
              s["join_admitted_s"], s["join_total_s"], s["join_bytes"],
              s["join_ok"]))


if __name__ == "__main__":
    main()
