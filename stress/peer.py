"""The body of one peer process: join, then loop over batches of
collectives, verify every result, and report to the orchestrator.

The loop is the training loop of ``docs/fault-tolerance.md``, made
checkable:

- every epoch starts with a membership all-gather (peer ids in rank
  order: the expected results depend on who is in) and a shared-state
  sync (a newcomer receives, the others vote);
- then batches: 1..``max_concurrent`` async collectives of any kind, and
  a tiny control all-reduce of ``peers_pending()``; every result is
  compared with the exact expected one, every failed op's input with the
  original;
- members call ``update_topology()`` together after a failed batch, when
  joiners wait, and every ``safe_every`` batches (so that a restarted
  master is reached and nobody waits long at it).  All three are known to
  every member alike, so they all reach the safe point at the same batch;
- a peer the master dropped (it was stopped, cut off, too late) gets
  ``Rejected``: it closes and joins again as a newcomer (or, with
  ``rejoin`` off, exits with status 3 and says why).

Reports go up the channel as msgpack frames (:mod:`stress.wire`): one per
batch with a record per op, one per epoch, one per update, and local
violations (a wrong result, an input not given back) with the details.
Commands come down: ``leave`` (close at the next batch boundary and exit,
the graceful leave) and ``finish``.  EOF on the channel means the
orchestrator is gone: exit at once.
"""
from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

import pyccl
from pyccl.bench.wan_peer import error_bound
from pyccl.shared_state import tensor_hash
from stress import workload as wl
from stress.wire import Channel

log = logging.getLogger("stress.peer")

#: Exit statuses a peer uses (anything else is a crash).
EXIT_OK, EXIT_ERROR, EXIT_REJECTED, EXIT_ORPHAN = 0, 1, 3, 75


class _Rejected(Exception):
    """This peer was dropped from its group (pyccl.Rejected)."""


class Peer:
    """One peer; ``cfg`` is the JSON config the orchestrator passed."""

    def __init__(self, cfg: Dict[str, Any], chan: Channel) -> None:
        self.cfg = cfg
        self.chan = chan
        self.id = int(cfg["id"])
        self.seed = int(cfg["seed"])
        self.work = wl.WorkloadConfig(**cfg.get("workload", {}))
        self.newcomer = bool(cfg.get("joiner", False))
        self.leave = threading.Event()
        self.finish = threading.Event()
        n = int(cfg.get("state_elems", 1 << 16))
        self.params = np.zeros(n, dtype=np.int32)
        self.state = pyccl.SharedState({"params": self.params})
        self.members: List[int] = []
        self.epoch = -1
        self.batch = 0
        self._held: List[list] = []
        self._flushed = 0.0
        self._send_lock = threading.RLock()

    # -- reporting --------------------------------------------------------

    def send(self, msg: Dict[str, Any]) -> None:
        """Sends one report, after the op records held back."""
        with self._send_lock:
            if self._held and msg["t"] != "ops":
                self._flush()
            try:
                self.chan.send(msg)
            except OSError:
                os._exit(EXIT_ORPHAN)  # the orchestrator is gone

    def report_ops(self, records: List[list]) -> None:
        """Op records go up in bunches (at most every 0.1 s, and before
        any other report), which keeps the orchestrator's share of a CPU
        small; their times are taken when the ops end, so holding them
        back delays nothing that is measured."""
        with self._send_lock:
            self._held.extend(records)
            if time.monotonic() - self._flushed > 0.1:
                self._flush()

    def _flush(self) -> None:
        records, self._held = self._held, []
        self._flushed = time.monotonic()
        if records:
            self.send({"t": "ops", "e": self.epoch, "ops": records})

    def phase(self, name: str) -> None:
        self.send({"t": "phase", "p": name, "tt": time.monotonic()})

    def violation(self, kind: str, spec: wl.OpSpec, detail: str) -> None:
        log.error("%s: %s: %s", kind, spec.describe(), detail)
        self.send({"t": "bad", "kind": kind, "op": spec.describe(),
                   "e": self.epoch, "members": self.members,
                   "detail": detail, "tt": time.monotonic()})

    def commands(self) -> None:
        """The reader thread: commands from the orchestrator."""
        while True:
            try:
                msgs = self.chan.receive()
            except (EOFError, OSError):
                os._exit(EXIT_ORPHAN)
            for msg in msgs:
                if msg["t"] == "leave":
                    self.leave.set()
                elif msg["t"] == "finish":
                    self.finish.set()
                    threading.Thread(target=self._finish_deadline,
                                     daemon=True).start()

    def _finish_deadline(self) -> None:
        # A peer parked in a blocking call (an update_topology whose
        # partners are gone) is not worth waiting for at the end of a run.
        time.sleep(float(self.cfg.get("finish_grace", 5.0)))
        self.send({"t": "bye", "why": "finish", "tt": time.monotonic()})
        os._exit(EXIT_OK)

    # -- membership -------------------------------------------------------

    def join(self) -> pyccl.Communicator:
        """A communicator: the first group (initial peers) or admission at
        the group's next safe point (joiners, rejoiners).  A master that
        is away or slow is retried."""
        world = 1 if self.newcomer else int(self.cfg["world_size"])
        attempts = 0
        while True:
            self.phase("join")
            t0 = time.monotonic()
            try:
                comm = pyccl.Communicator(
                    self.cfg["master"], world_size=world,
                    listen_host=self.cfg.get("listen_host", "127.0.0.1"),
                    connect_timeout=float(self.cfg["connect_timeout"]),
                    op_timeout=float(self.cfg["op_timeout"]),
                    peer_timeout=float(self.cfg["peer_timeout"]),
                    conns_per_peer=int(self.cfg.get("conns_per_peer", 0)))
                self.send({"t": "joined", "e": comm.epoch,
                           "dur": time.monotonic() - t0,
                           "tt": time.monotonic()})
                return comm
            except (pyccl.MasterUnreachable, pyccl.Timeout,
                    pyccl.PeerLost) as exc:
                attempts += 1
                self.send({"t": "join_failed", "err": type(exc).__name__,
                           "detail": str(exc), "tt": time.monotonic()})
                log.warning("join attempt %d: %s", attempts, exc)
                if attempts >= int(self.cfg.get("join_attempts", 5)):
                    raise
                time.sleep(0.2)

    def update(self, comm: pyccl.Communicator) -> bool:
        """update_topology until it answers; True when the group changed
        (or may have: a failure while building the new mesh)."""
        t0 = time.monotonic()
        deadline = t0 + float(self.cfg.get("update_bound", 120.0))
        self.phase("update")
        while True:
            before = comm.epoch
            try:
                changed = comm.update_topology()
                self.send({"t": "update", "ok": True, "changed": changed,
                           "e": comm.epoch, "dur": time.monotonic() - t0,
                           "tt": time.monotonic()})
                return changed
            except pyccl.Rejected as exc:
                self.send({"t": "rejected", "e": before,
                           "detail": str(exc), "tt": time.monotonic()})
                log.warning("dropped from epoch %d: %s", before, exc)
                raise _Rejected(str(exc)) from None
            except (pyccl.MasterUnreachable, pyccl.Timeout) as exc:
                self.send({"t": "update", "ok": False,
                           "err": type(exc).__name__, "detail": str(exc),
                           "tt": time.monotonic()})
                log.warning("update_topology: %s", exc)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            except pyccl.CclError as exc:
                # Building the new mesh failed: in the new epoch, broken;
                # the next op fails at once and brings us back here.
                self.send({"t": "update", "ok": False,
                           "err": type(exc).__name__, "detail": str(exc),
                           "tt": time.monotonic()})
                log.warning("update_topology: %s", exc)
                if time.monotonic() > deadline:
                    raise
                return True

    def setup(self, comm: pyccl.Communicator) -> bool:
        """The start of an epoch: who is in (all-gather of peer ids, in
        rank order), then the shared-state sync.  False if it failed."""
        self.phase("setup")
        self.epoch = comm.epoch
        me = np.array([self.id, int(self.newcomer), self.state.revision],
                      dtype=np.int64)
        try:
            table = comm.all_gather(me).reshape(comm.world_size, 3)
            members = [int(p) for p in table[:, 0]]
            strategy = "receive_only" if self.newcomer else "enforce_popular"
            result = pyccl.sync_shared_state(comm, self.state, strategy)
        except pyccl.CclError as exc:
            self.send({"t": "setup_failed", "e": self.epoch,
                       "err": type(exc).__name__, "detail": str(exc),
                       "tt": time.monotonic()})
            return False
        self.members = members
        self.send({"t": "epoch", "e": self.epoch, "rank": comm.rank,
                   "members": members, "newcomer": self.newcomer,
                   "received": result.received_bytes,
                   "state": tensor_hash(self.params),
                   "rev": self.state.revision, "tt": time.monotonic()})
        log.info("epoch %d: rank %d of %s%s", self.epoch, comm.rank,
                 members, " (newcomer)" if self.newcomer else "")
        self.newcomer = False
        return True

    # -- one batch --------------------------------------------------------

    def _post(self, comm: pyccl.Communicator, spec: wl.OpSpec, key: int,
              world: int) -> Tuple[Any, np.ndarray, Optional[np.ndarray]]:
        """Posts one op; returns (work, input, out or None)."""
        if spec.kind == "control":
            x = np.array([comm.peers_pending(), 0], dtype=np.int32)
            return comm.all_reduce(x, "max", async_op=True), x, None
        if spec.kind == "barrier":
            return comm.barrier(async_op=True), np.empty(0), None
        x = wl.make_input(spec, key, self.id, world)
        out = None
        if spec.kind == "all_reduce":
            if not spec.in_place:
                out = np.empty_like(x)
            quant = {"quant": spec.quant} if spec.quant else {}
            w = comm.all_reduce(x, spec.redop, out=out,
                                algorithm=spec.algorithm, async_op=True,
                                **quant)
        elif spec.kind == "broadcast":
            w = comm.broadcast(x, src=spec.root, async_op=True)
        elif spec.kind == "all_gather":
            # Keywords: the positional order is torch's (output, input).
            out = np.empty(x.size * world, dtype=x.dtype)
            w = comm.all_gather(output=out, input=x, async_op=True)
        else:
            out = np.empty(spec.count, dtype=x.dtype)
            w = comm.reduce_scatter(output=out, input=x, op=spec.redop,
                                    async_op=True)
        return w, x, out

    def _input_intact(self, spec: wl.OpSpec, key: int, world: int,
                      x: np.ndarray, rank: int) -> Optional[str]:
        """After a failure: a difference between the input as it is now
        and as it was, where pyccl promises it back; None when intact or
        not promised (a non-root broadcast buffer, the control op)."""
        if spec.kind in ("barrier", "control"):
            return None
        if spec.kind == "broadcast" and rank != spec.root:
            return None
        want = wl.make_input(spec, key, self.id, world)
        if np.array_equal(x, want):
            return None
        return wl.first_difference(x, want)

    def run_batch(self, comm: pyccl.Communicator) -> Tuple[bool, int]:
        """Runs batch ``self.batch``; returns (some op failed, the
        joiners pending as the group agreed)."""
        world, rank = comm.world_size, comm.rank
        specs = wl.plan_batch(self.seed, self.epoch, self.batch, world,
                              self.work)
        posted = []
        for spec in specs:
            key = wl.op_key(self.seed, self.epoch, spec.seq)
            t0 = time.monotonic()
            w, x, out = self._post(comm, spec, key, world)
            posted.append((spec, key, t0, w, x, out))
        records: List[list] = []
        failed = False
        pending = 0
        for spec, key, t0, w, x, out in posted:
            err = ""
            try:
                w.wait()
                ok = True
            except pyccl.CclError as exc:
                ok, err = False, type(exc).__name__
                if not failed:  # the first failure of the batch, for the log
                    log.warning("epoch %d %s failed after %.3f s: %s",
                                self.epoch, spec.describe(),
                                time.monotonic() - t0, exc)
                if isinstance(exc, pyccl.Mismatch):
                    self.violation("mismatch", spec, str(exc))
            t1 = time.monotonic()
            result = x if out is None else out
            digest = None
            if ok:
                failed_check = self._check(spec, key, result, x, world, rank)
                if failed_check:
                    self.violation("wrong_result", spec, failed_check)
                if spec.kind == "control":
                    pending = int(result[0])
                if spec.kind not in ("reduce_scatter", "barrier"):
                    digest = tensor_hash(result)
            else:
                failed = True
                diff = self._input_intact(spec, key, world, x, rank)
                if diff is not None:
                    self.violation("input_not_restored", spec,
                                   "after %s: %s" % (err, diff))
            records.append([spec.seq, spec.code, ok, err, digest,
                            int(result.nbytes), t1, t1 - t0])
        self.report_ops(records)
        if not failed:
            # The shared state moves in step with successful batches, the
            # same on every member, so a sync moves bytes to newcomers
            # only; bytes received by an old member mean it diverged.
            i = (self.batch * 7919 + self.epoch) % self.params.size
            self.params[i] += 1
            self.state.revision += 1
        self.batch += 1
        return failed, pending

    def _check(self, spec: wl.OpSpec, key: int, result: np.ndarray,
               x: np.ndarray, world: int, rank: int) -> Optional[str]:
        """A difference between the result and the exact expected one."""
        if spec.kind == "control":
            if result[1] != 0 or result[0] < 0:
                return "control all-reduce gave %r" % (result.tolist(),)
            return None
        want = wl.expected(spec, key, self.members, rank)
        if want is None:
            return None
        if spec.quant:
            # Not exact: within the format's bound of the exact sum (the
            # WAN benchmark's, for the ring's partial sums; every peer's
            # input spans at most 7 * 1020 + 999).  That the bytes are the
            # same on every peer, the ledger checks through the digests.
            bound = error_bound(spec.quant, len(self.members), 7 * 1020 + 999,
                                float(np.max(np.abs(want))) if want.size else 0.0)
            err = float(np.max(np.abs(result.astype(np.float64) - want))) \
                if want.size else 0.0
            if result.shape != want.shape or not err <= bound:
                return "members %s, rank %d: %s quantized: error %g over the " \
                       "bound %g" % (self.members, rank, spec.quant, err, bound)
        elif result.shape != want.shape or not np.array_equal(result, want):
            return "members %s, rank %d: %s" % (
                self.members, rank, wl.first_difference(result, want))
        if spec.kind in ("all_gather", "reduce_scatter") or (
                spec.kind == "all_reduce" and not spec.in_place):
            if not np.array_equal(x, wl.make_input(spec, key, self.id,
                                                   world)):
                return "the op changed its (read-only) input"
        return None

    # -- the loop ---------------------------------------------------------

    def member_loop(self, comm: pyccl.Communicator) -> str:
        """Runs the group's loop until this peer leaves ("leave"), the run
        ends ("finish") or the master drops it ("rejected")."""
        need_setup = True
        last_epoch = None
        while True:
            if self.leave.is_set():
                return "leave"
            if self.finish.is_set():
                return "finish"
            try:
                if need_setup:
                    if comm.epoch != last_epoch:
                        self.batch = 0
                        last_epoch = comm.epoch
                    self.batch += 1  # the setup's own batch number
                    if not self.setup(comm):
                        self.update(comm)
                        continue
                    need_setup = False
                    self.phase("ops")
                failed, pending = self.run_batch(comm)
                if failed or pending > 0 \
                        or self.batch % self.work.safe_every == 0:
                    changed = self.update(comm)
                    if changed or failed:
                        need_setup = True
                    else:
                        self.phase("ops")
            except _Rejected:
                return "rejected"

    def run(self) -> int:
        threading.Thread(target=self.commands, daemon=True).start()
        while True:
            try:
                comm = self.join()
            except pyccl.CclError as exc:
                self.send({"t": "error", "where": "join",
                           "err": type(exc).__name__, "detail": str(exc),
                           "tt": time.monotonic()})
                log.error("cannot join: %s", exc)
                return EXIT_ERROR
            try:
                why = self.member_loop(comm)
            finally:
                t_close = time.monotonic()
                comm.close()
            if why == "rejected" and (self.leave.is_set()
                                      or self.finish.is_set()):
                # Dropped on its way out: it leaves all the same.
                why = "leave" if self.leave.is_set() else "finish"
            if why == "rejected":
                if self.cfg.get("rejoin", True):
                    self.newcomer = True
                    continue
                self.send({"t": "bye", "why": "rejected", "tt": t_close})
                print("stress peer %d: dropped from the group and told not "
                      "to rejoin: exiting" % self.id, file=sys.stderr)
                return EXIT_REJECTED
            self.send({"t": "bye", "why": why, "tt": t_close})
            return EXIT_OK


def main(argv: List[str]) -> int:
    """``python -m stress.child peer CONFIG_JSON``."""
    cfg = json.loads(argv[0])
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%%(asctime)s peer %d %%(name)s %%(levelname)s: %%(message)s"
        % int(cfg["id"]))
    logging.getLogger("pyccl").setLevel(logging.WARNING)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides
    sock = socket.socket(fileno=int(cfg["report_fd"]))
    peer = Peer(cfg, Channel(sock))
    try:
        return peer.run()
    except Exception as exc:  # reported, then a crash status
        import traceback
        traceback.print_exc()
        try:
            peer.send({"t": "error", "where": "loop",
                       "err": type(exc).__name__, "detail": str(exc),
                       "tt": time.monotonic()})
        except Exception:
            pass
        return EXIT_ERROR
