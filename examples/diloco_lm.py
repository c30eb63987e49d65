"""DDP vs DiLoCo vs Streaming DiLoCo (4-bit) vs DiLoCo with a kill and a
join: a byte-level transformer trained on Python's standard library by 4
worker processes on this machine, over pyccl.

Every run trains the same model from the same initial weights for the
same number of inner steps, each worker on its own stream of random
windows.  Rank 0 saves the (global) parameters every H steps; after the
runs this process computes the validation loss of each saved copy, and
writes a table and two plots (loss vs inner steps, loss vs bytes sent per
worker).  Every DiLoCo worker records a hash of its global state after
every outer step; the runs fail unless all workers agree.

Run (12 minutes on an idle 2-core machine, more on a shared one;
docs/diloco.md has the numbers):
    python examples/diloco_lm.py --out docs
Smoke test (a tiny model, a few steps, results in a temporary folder):
    python examples/diloco_lm.py --smoke
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import queue as queue_mod
import signal
import sys
import tempfile
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pyccl  # noqa: E402

# Workers fork from a server that has imported torch once: starting 17
# processes that each import torch would take longer than the smoke run.
CTX = multiprocessing.get_context("forkserver")
CTX.set_forkserver_preload(["torch", "pyccl", "pyccl.diloco", "tiny_lm"])
WORLD = 4


def run_configs(a: Any) -> Dict[str, dict]:
    H = a.sync_every
    runs = {
        "ddp": dict(kind="ddp", label="DDP (all-reduce every step)"),
        "diloco": dict(kind="diloco", H=H, label="DiLoCo H=%d" % H),
        "streaming": dict(kind="diloco", H=a.stream_sync_every,
                          P=a.fragments, tau=a.overlap,
                          quant="e3m0", alpha=a.alpha,
                          label="Streaming DiLoCo H=%d P=%d tau=%d e3m0"
                          % (a.stream_sync_every, a.fragments, a.overlap)),
        "churn": dict(kind="diloco", H=H, victim=WORLD - 1,
                      kill_at=int(a.steps * 0.3),
                      join_at=int(a.steps * 0.5),
                      label="DiLoCo H=%d, kill at %d, join at %d"
                      % (H, int(a.steps * 0.3), int(a.steps * 0.5))),
        "delayed": dict(kind="diloco", H=H, delayed=True,
                        label="Delayed DiLoCo H=%d (one-step delay)" % H),
    }
    return {k: v for k, v in runs.items() if k in a.runs.split(",")}


# -- the worker ------------------------------------------------------------

def lr_at(sched: tuple, steps: int, step: int) -> float:
    """The inner learning rate of inner step ``step`` (0-based) for
    ``sched = (lr, warmup, final)``: linear warmup over ``warmup`` steps,
    then a cosine decay to ``lr * final`` at step ``steps`` (final = 1:
    constant)."""
    lr, warm, f = sched
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def worker(name: str, cfg: dict, hp: dict, address: str, rank: int,
           joining: bool, go: Any, q: Any, outdir: str) -> None:
    try:
        _worker(name, cfg, hp, address, rank, joining, go, q, outdir)
    except BaseException as exc:  # noqa: B902 - reported to the parent
        import traceback
        q.put(("error", rank, joining, traceback.format_exc()))
        raise SystemExit(1) from exc


def _worker(name: str, cfg: dict, hp: dict, address: str, rank: int,
            joining: bool, go: Any, q: Any, outdir: str) -> None:
    import torch
    import tiny_lm
    torch.set_num_threads(1)
    train, _ = tiny_lm.load_corpus(hp["corpus"])
    torch.manual_seed(0)
    model = tiny_lm.TinyLM(hp["d"], hp["layers"], hp["heads"], hp["ctx"])
    evalm = tiny_lm.TinyLM(hp["d"], hp["layers"], hp["heads"], hp["ctx"])
    sched = hp["ddp_lr"] if cfg["kind"] == "ddp" else hp["lr"]
    inner = torch.optim.AdamW(model.parameters(), lr=sched[0],
                              betas=(0.9, 0.95), weight_decay=0.1)
    data = tiny_lm.batches(train, hp["batch"], hp["ctx"],
                           seed=rank + (1000 if joining else 0))
    if joining:
        # Everything imported and built: join when the parent says so.
        if not go.wait(timeout=hp["timeout"]):
            raise RuntimeError("the joiner was never released")
    # Loopback TCP, as between machines: through shared memory the
    # quantized ring would send its partial sums raw (same-host hops,
    # docs/quantization.md), and neither the bytes counted nor the
    # rounding would be those of workers on different hosts.
    comm = pyccl.Communicator(address, world_size=1 if joining else WORLD,
                              peer_timeout=10.0, op_timeout=120.0,
                              connect_timeout=300.0, shm=False)
    dl = None
    if cfg["kind"] == "diloco":
        from pyccl.diloco import DiLoCo
        olr, omom = hp["outer_lr"], hp["outer_momentum"]

        def outer_opt(params: list) -> Any:
            return torch.optim.SGD(params, lr=olr, momentum=omom,
                                   nesterov=omom > 0)

        dl = DiLoCo(model, inner, comm, sync_every=cfg["H"],
                    outer_optimizer=outer_opt,
                    outer_warmup=hp["outer_warmup"], alpha=cfg.get("alpha"),
                    fragments=cfg.get("P", 1), overlap=cfg.get("tau"),
                    quant=cfg.get("quant"), delayed=cfg.get("delayed", False),
                    joining=joining, min_peers=2)
    params = [p for p in model.parameters()]
    flat = torch.zeros(sum(p.numel() for p in params))
    step = dl.step_count if dl else 0
    q.put(("started", rank, joining, step))
    seen: List[tuple] = []
    curve: List[tuple] = []
    stall = 0.0
    peak = 0
    t_start = time.perf_counter()
    eval_every = hp["eval_every"]
    hold_for_joiner = "join_at" in cfg and not joining
    held = 0.0

    def snapshot(s: int) -> None:
        if comm.rank != 0 or joining:
            return
        if dl is not None:
            dl.load_global(evalm)
            sd = evalm.state_dict()
        else:
            sd = model.state_dict()
        torch.save(sd, os.path.join(outdir, "%s_%06d.pt" % (name, s)))

    if step == 0:
        snapshot(0)
    while step < hp["steps"]:
        for g in inner.param_groups:
            g["lr"] = lr_at(sched, hp["steps"], step)
        x, y = next(data)
        loss = model.loss(x, y)
        loss.backward()
        if dl is None:  # DDP: average the gradients every step
            at = 0
            for p in params:
                flat[at:at + p.numel()].copy_(p.grad.reshape(-1))
                at += p.numel()
            before = comm.stats()["tx_bytes"]
            t0 = time.perf_counter()
            comm.all_reduce(flat, "avg")
            stall += time.perf_counter() - t0
            peak = max(peak, comm.stats()["tx_bytes"] - before)
            at = 0
            for p in params:
                p.grad.copy_(flat[at:at + p.numel()].view_as(p))
                at += p.numel()
            inner.step()
            step += 1
        else:
            if hold_for_joiner and step + 1 > cfg["join_at"] and \
                    dl.schedule.sends_at(step + 1):
                # The joiner was released: hold this sync until the
                # master announces it, so that it comes in here however
                # slowly it starts (the time held is not counted).
                hold_for_joiner = False
                t0 = time.perf_counter()
                while comm.world_size < WORLD and comm.peers_pending() == 0:
                    if time.perf_counter() - t0 > 300:
                        raise RuntimeError("the joiner never came")
                    time.sleep(0.01)
                held += time.perf_counter() - t0
            outer = dl.outer_steps
            dl.step()
            step = dl.step_count
            if dl.outer_steps != outer:
                seen.append((step, dl.outer_steps, dl.global_hash()))
        inner.zero_grad(set_to_none=True)
        if rank == cfg.get("victim") and not joining and \
                step >= cfg["kill_at"]:
            # The victim SIGKILLs itself, after flushing its queue: a
            # process killed while its queue's feeder thread holds the
            # queue's shared write lock (every put takes it) leaves the
            # lock held forever, and every other worker's messages, "done"
            # included, stuck behind it; the parent then waited for them
            # until its deadline (the smoke run that did not finish).
            q.put(("killed", rank, joining, step))
            q.close()
            q.join_thread()
            os.kill(os.getpid(), signal.SIGKILL)
        if step % eval_every == 0 or step == hp["steps"]:
            if dl is not None and step == hp["steps"]:
                dl.finish()
            curve.append((step, comm.stats()["tx_bytes"]))
            snapshot(step)
        q.put(("step", rank, joining, step))
    wall = time.perf_counter() - t_start - held
    if dl is not None:
        dl.finish()
        seen.append((step, dl.outer_steps, dl.global_hash()))
        stall, peak = dl.stats.stall_s, dl.stats.peak_sync_bytes
    q.put(("done", rank, joining, dict(
        curve=curve, wall=wall, stall=stall, peak=peak, seen=seen,
        tx=comm.stats()["tx_bytes"], world=comm.world_size,
        retries=dl.stats.retries if dl else 0,
        final=dl.global_hash() if dl else "")))
    comm.close()


# -- the parent ----------------------------------------------------------

class Bar:
    """A one-line progress bar, drawn only on a terminal."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.tty = sys.stdout.isatty()
        self.t0 = time.monotonic()

    def show(self, n: int) -> None:
        if not self.tty:
            return
        w = 30
        k = int(w * n / max(1, self.total))
        sys.stdout.write("\r%-12s [%s%s] %d/%d %.0fs" % (
            self.label, "#" * k, "." * (w - k), n, self.total,
            time.monotonic() - self.t0))
        sys.stdout.flush()

    def close(self) -> None:
        if self.tty:
            sys.stdout.write("\n")


def run_one(name: str, cfg: dict, hp: dict, outdir: str) -> dict:
    q = CTX.Queue()
    go = CTX.Event()
    with pyccl.Master() as master:
        procs = [CTX.Process(target=worker, daemon=True, args=(
            name, cfg, hp, master.address, r, False, go, q, outdir))
            for r in range(WORLD)]
        joiner = None
        if "join_at" in cfg:
            joiner = CTX.Process(target=worker, daemon=True, args=(
                name, cfg, hp, master.address, WORLD, True, go, q, outdir))
            procs.append(joiner)
        for p in procs:
            p.start()
        bar = Bar(name, hp["steps"])
        done: Dict[tuple, dict] = {}
        events: List[str] = []
        joined = False
        need = WORLD + (1 if joiner else 0) - (1 if "kill_at" in cfg else 0)
        deadline = time.monotonic() + hp["timeout"]
        try:
            while len(done) < need:
                if time.monotonic() > deadline:
                    raise RuntimeError("run %s timed out" % name)
                try:
                    kind, rank, joining, val = q.get(timeout=1.0)
                except queue_mod.Empty:
                    kind = None  # still check for a worker that died
                if kind == "error":
                    raise RuntimeError("run %s, worker %d:\n%s"
                                       % (name, rank, val))
                if kind == "started" and joining:
                    events.append("joiner started at step %d" % val)
                if kind == "killed":
                    events.append("worker %d SIGKILLed itself after its "
                                  "step %d" % (rank, val))
                if kind == "step":
                    if rank == 0 and not joining:
                        bar.show(val)
                    if not joined and rank == 0 and \
                            val >= cfg.get("join_at", 1 << 60):
                        go.set()
                        joined = True
                        events.append("joiner released at step %d" % val)
                if kind == "done":
                    done[(rank, joining)] = val
                for r, p in enumerate(procs):
                    # A worker that died without a word (not the victim):
                    # fail now rather than at the deadline.
                    j = p is joiner
                    if p.exitcode is not None and (r, j) not in done and \
                            not (r == cfg.get("victim") and not j) and \
                            q.empty():
                        raise RuntimeError("run %s: worker %d%s exited with "
                                           "%s before it was done" % (
                                               name, r, " (joiner)" if j
                                               else "", p.exitcode))
        finally:
            bar.close()
            end = time.monotonic() + 30  # one deadline for all the joins
            for p in procs:
                if p.is_alive() and (p is not joiner or joined):
                    p.join(timeout=max(0.1, end - time.monotonic()))
                if p.is_alive():
                    p.kill()
    reports = list(done.values())
    starters = [v for (r, j), v in done.items() if not j]
    n = len(starters)
    res = dict(name=name, label=cfg["label"], events=events,
               tx=sum(v["tx"] for v in starters) / n,
               peak=max(v["peak"] for v in reports),
               wall=max(v["wall"] for v in reports),
               stall=max(v["stall"] / v["wall"] for v in reports),
               retries=max(v["retries"] for v in reports),
               world=[v["world"] for v in reports],
               curve=[(s, sum(dict(v["curve"]).get(s, 0) for v in starters) / n)
                      for s, _ in starters[0]["curve"]])
    if cfg["kind"] == "diloco":
        finals = {v["final"] for v in reports}
        by_key: Dict[tuple, set] = {}
        for v in reports:
            for s, o, h in v["seen"]:
                by_key.setdefault((s, o), set()).add(h)
        res["identical"] = len(finals) == 1 and all(
            len(h) == 1 for h in by_key.values())
        res["compared"] = sum(len(v["seen"]) for v in reports)
        res["outer_steps"] = max(o for v in reports for _, o, _ in v["seen"])
    return res


def evaluate(name: str, hp: dict, outdir: str) -> List[tuple]:
    import torch
    import tiny_lm
    _, val = tiny_lm.load_corpus(hp["corpus"])
    model = tiny_lm.TinyLM(hp["d"], hp["layers"], hp["heads"], hp["ctx"])
    out = []
    for f in sorted(os.listdir(outdir)):
        if f.startswith(name + "_") and f.endswith(".pt"):
            step = int(f[len(name) + 1:-3])
            model.load_state_dict(torch.load(os.path.join(outdir, f)))
            out.append((step, tiny_lm.val_loss(model, val, hp["val_batch"],
                                               hp["ctx"], hp["val_batches"])))
    return out


def mb(x: float) -> str:
    return "%.2f MB" % (x / 1e6) if x >= 1e5 else "%.1f kB" % (x / 1e3)


def table(results: Dict[str, dict]) -> str:
    base = results.get("ddp")
    rows = ["| run | final val loss | vs DDP | bytes sent / worker | "
            "fewer than DDP | peak bytes / sync | wall | stall | "
            "globals identical |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        loss = r["loss"][-1][1]
        rows.append("| %s | %.4f | %s | %s | %s | %s | %.0f s | %.1f%% | %s |"
                    % (r["label"], loss,
                       "%+.1f%%" % (100 * (loss / base["loss"][-1][1] - 1))
                       if base else "-",
                       mb(r["tx"]),
                       "%.0fx" % (base["tx"] / r["tx"]) if base else "-",
                       mb(r["peak"]), r["wall"], 100 * r["stall"],
                       ("yes (%d hashes)" % r["compared"]) if r.get("identical")
                       else ("-" if "identical" not in r else "NO")))
    return "\n".join(rows)


def plots(results: Dict[str, dict], imgdir: str) -> List[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots")
        return []
    paths = []
    for key, xlabel in (("steps", "inner steps"),
                        ("bytes", "bytes sent per worker")):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for r in results.values():
            tx = dict(r["curve"])
            pts = [(s if key == "steps" else max(tx.get(s, 0), 1), v)
                   for s, v in r["loss"] if key == "steps" or s in tx]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".",
                    label=r["label"])
        if key == "bytes":
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation loss (nats/byte)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(imgdir, "diloco_loss_vs_%s.png" % key)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def write_results(results: Dict[str, dict], out: str, t0: float,
                  hp: Any = None) -> str:
    """Writes the table, the plots and the raw numbers; returns the table."""
    tab = table(results)
    os.makedirs(os.path.join(out, "img"), exist_ok=True)
    pngs = plots(results, os.path.join(out, "img"))
    cmd = "python examples/diloco_lm.py " + " ".join(sys.argv[1:])
    with open(os.path.join(out, "diloco_results.md"), "w") as f:
        f.write("Measured by `%s` (%.0f s in all), %s.\n\n%s\n"
                % (cmd.strip(), time.monotonic() - t0,
                   time.strftime("%Y-%m-%d", time.gmtime()), tab))
        if hp is not None:
            f.write("\nInner AdamW lr (peak, warmup steps, final fraction "
                    "of a cosine decay): DDP %s, DiLoCo runs %s; outer "
                    "SGD lr %g, Nesterov momentum %g reached over %d "
                    "rounds.\n"
                    % (hp["ddp_lr"], hp["lr"], hp["outer_lr"],
                       hp["outer_momentum"], hp["outer_warmup"]))
    with open(os.path.join(out, "diloco_results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    print("results in %s%s" % (out, "; plots: " + ", ".join(pngs)
                                if pngs else ""))
    return tab


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model, few steps (CI)")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--sync-every", type=int, default=50, help="H")
    ap.add_argument("--stream-sync-every", type=int, default=25,
                    help="H of the Streaming run (its 4-bit outer gradients "
                    "leave room for syncing twice as often as DiLoCo at "
                    "150x fewer bytes than DDP)")
    ap.add_argument("--fragments", type=int, default=4, help="P (streaming)")
    ap.add_argument("--overlap", type=int, default=2, help="tau (streaming)")
    ap.add_argument("--runs", default=None, help="comma-separated, of "
                    "ddp,diloco,streaming,churn,delayed (default: all; "
                    "--smoke: streaming,churn)")
    ap.add_argument("--lr", type=float, nargs=3, default=[7e-4, 0, 1.0],
                    metavar=("LR", "WARMUP", "FINAL"),
                    help="inner AdamW learning rate of the DiLoCo runs: "
                    "peak, warmup steps, cosine decay to FINAL * LR at the "
                    "last step (1: constant); default 7e-4 0 1, the best "
                    "of those tried (docs/diloco.md)")
    ap.add_argument("--ddp-lr", type=float, nargs=3,
                    default=[2e-3, 25, 0.1], metavar=("LR", "WARMUP", "FINAL"),
                    help="the same for DDP; default 2e-3 25 0.1, the best "
                    "of those tried")
    ap.add_argument("--outer-lr", type=float, default=1.0,
                    help="outer SGD learning rate (the library's default "
                    "is DiLoCo's 0.7; 1.0 with --outer-warmup 5 was the "
                    "best here, docs/diloco.md)")
    ap.add_argument("--outer-momentum", type=float, default=0.9,
                    help="outer Nesterov momentum (0: plain SGD)")
    ap.add_argument("--outer-warmup", type=int, default=5,
                    help="rounds over which the outer momentum rises from "
                    "0 (DiLoCo's outer_warmup; 0: none)")
    ap.add_argument("--alpha", type=float, default=None,
                    help="Streaming merge weight of the local parameters "
                    "(default: the library's, 0.5)")
    ap.add_argument("--width", type=int, default=144,
                    help="model width (144: 1.09 M parameters, 96: 0.50 M, "
                    "192: 1.89 M)")
    ap.add_argument("--batch", type=int, default=16,
                    help="windows of 64 bytes per worker per inner step "
                    "(DDP's step takes the 4 workers' batches together)")
    ap.add_argument("--out", default=None,
                    help="write diloco_results.md here and plots into "
                    "<out>/img (default: a temporary folder)")
    a = ap.parse_args()
    if a.runs is None:
        a.runs = ("streaming,churn" if a.smoke
                  else "ddp,diloco,streaming,churn,delayed")
    hp = dict(d=a.width, layers=4, heads=4, ctx=64, batch=a.batch,
              val_batch=16,
              lr=(a.lr[0], int(a.lr[1]), a.lr[2]),
              ddp_lr=(a.ddp_lr[0], int(a.ddp_lr[1]), a.ddp_lr[2]),
              outer_lr=a.outer_lr,
              outer_momentum=a.outer_momentum,
              outer_warmup=a.outer_warmup,
              corpus=8 << 20, val_batches=32, timeout=3600)
    if a.smoke:
        a.steps, a.sync_every, a.fragments, a.overlap = 30, 5, 2, 1
        a.stream_sync_every = 5
        hp.update(d=32, layers=2, heads=2, ctx=32, batch=4, val_batch=4,
                  corpus=1 << 20,
                  val_batches=4, timeout=120)
    hp["steps"] = a.steps
    hp["eval_every"] = a.sync_every
    out = a.out or tempfile.mkdtemp(prefix="diloco-lm-")
    snapdir = tempfile.TemporaryDirectory(prefix="diloco-lm-snap-")
    snaps = snapdir.name
    results: Dict[str, dict] = {}
    t0 = time.monotonic()
    for name, cfg in run_configs(a).items():
        r = run_one(name, cfg, hp, snaps)
        r["loss"] = evaluate(name, hp, snaps)
        results[name] = r
        print("%-10s loss %.4f  bytes/worker %s  wall %.0fs  stall %.1f%%%s"
              % (name, r["loss"][-1][1], mb(r["tx"]), r["wall"],
                 100 * r["stall"],
                 "  globals identical: %s" % ("yes" if r["identical"]
                                              else "NO")
                 if "identical" in r else ""))
        for e in r["events"]:
            print("           " + e)
        write_results(results, out, t0, hp)  # after each run: partial results
    snapdir.cleanup()
    tab = write_results(results, out, t0, hp)
    print(tab)
    ok = all(r.get("identical", True) for r in results.values())
    print("every worker's global parameters identical after every outer "
          "step: %s" % ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
