"""One process simulates examples/diloco_lm.py's runs, for sweeping the
learning rates: the same model, initial weights, data streams (worker r
reads the stream of seed r), validation batches and schedules, with the 4
workers stepped one after the other and the all-reduce replaced by a sum
(e3m0 quantization of Streaming imitated in float32: each worker's
pseudo-gradient and the sum rounded to the nearest of a block's 8
levels).  No sockets, no failures.  DDP matches the example's losses to
4 digits; see docs/diloco.md for how the settings were screened.

    python examples/diloco_sim.py --mode ddp --lr 2e-3 --warmup 25 --cos 0.1
    python examples/diloco_sim.py --mode diloco --lr 1e-3 --olr 0.7 --mom 0.9
    python examples/diloco_sim.py --mode stream --P 4 --tau 2 --alpha 0.5

Prints the validation loss of the (global) parameters every 50 steps and
a FINAL line.  One torch thread by default: run two at once on 2 cores.
"""
import argparse, copy, json, math, os, sys, time
import torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE); sys.path.insert(0, os.path.dirname(HERE))
import tiny_lm
from pyccl.diloco.fragments import make_fragments
from pyccl.diloco.schedule import Schedule

ap = argparse.ArgumentParser()
ap.add_argument("--mode", default="diloco")  # ddp|diloco|stream
ap.add_argument("--steps", type=int, default=500)
ap.add_argument("--H", type=int, default=50)
ap.add_argument("--P", type=int, default=4)
ap.add_argument("--tau", type=int, default=2)
ap.add_argument("--alpha", type=float, default=0.5)
ap.add_argument("--quant", default="e3m0")
ap.add_argument("--olr", type=float, default=0.7)
ap.add_argument("--mom", type=float, default=0.9)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--warmup", type=int, default=0)
ap.add_argument("--cos", type=float, default=-1, help="final lr ratio; <0: constant")
ap.add_argument("--width", type=int, default=96)
ap.add_argument("--flush", action="store_true", help="stream: sync every fragment once more after the last step (prints the loss before as step -steps)")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--tag", default="")
ap.add_argument("--batch", type=int, default=16, help="windows per worker per step")
ap.add_argument("--workers", type=int, default=4)
ap.add_argument("--mom-ramp", type=int, default=0, help="outer momentum rises linearly from 0 to --mom over this many outer steps")
ap.add_argument("--olr-end", type=float, default=1.0, help="outer lr decays (cosine over the outer steps) to this fraction")
a = ap.parse_args()
torch.set_num_threads(a.threads)
W = a.workers
train, val = tiny_lm.load_corpus(8 << 20)
torch.manual_seed(0)
m0 = tiny_lm.TinyLM(a.width, 4, 4, 64)

def lr_at(s):  # s: 0-based step index
    if a.warmup and s < a.warmup:
        return a.lr * (s + 1) / a.warmup
    if a.cos < 0:
        return a.lr
    t = (s - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (a.cos + (1 - a.cos) * 0.5 * (1 + math.cos(math.pi * t)))

def e3m0(x, block=256):
    n = x.numel(); pad = (-n) % block
    v = torch.cat([x, x.new_zeros(pad)]).view(-1, block)
    s = v.abs().amax(1, keepdim=True).clamp_min(1e-30)
    r = v.abs() / s
    lv = torch.tensor([0.0] + [2.0 ** (e - 7) for e in range(1, 8)])
    idx = (r.unsqueeze(-1) - lv).abs().argmin(-1)
    q = lv[idx] * s * v.sign()
    return q.view(-1)[:n]

def quant(x):
    # Only Streaming quantizes (as in the example); the DiLoCo sweep in
    # docs/diloco.md ran before this test and quantized DiLoCo too.
    return e3m0(x) if a.quant == "e3m0" and a.mode == "stream" else x

evalm = copy.deepcopy(m0)
curve = []
def ev(s, src):
    evalm.load_state_dict(src); l = tiny_lm.val_loss(evalm, val, 16, 64, 32)
    curve.append((s, l)); print(a.tag, s, "%.4f" % l, flush=True)

t0 = time.time()
if a.mode == "ddp":
    m = copy.deepcopy(m0)
    opt = torch.optim.AdamW(m.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    data = [tiny_lm.batches(train, a.batch, 64, seed=r) for r in range(W)]
    for s in range(a.steps):
        xs, ys = zip(*[next(d) for d in data])
        m.loss(torch.cat(xs), torch.cat(ys)).backward()
        for g in opt.param_groups: g["lr"] = lr_at(s)
        opt.step(); opt.zero_grad(set_to_none=True)
        if (s + 1) % 50 == 0: ev(s + 1, m.state_dict())
else:
    ms = [copy.deepcopy(m0) for _ in range(W)]
    opts = [torch.optim.AdamW(m.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1) for m in ms]
    data = [tiny_lm.batches(train, a.batch, 64, seed=r) for r in range(W)]
    P = a.P if a.mode == "stream" else 1
    tau = a.tau if a.mode == "stream" else 0
    alpha = a.alpha if a.mode == "stream" else 0.0
    fr = [make_fragments(list(m.named_parameters()), P) for m in ms]
    glob = [f.gather(f.global_.clone()) for f in fr[0]]
    for g in glob: g.requires_grad_(False)
    gp = [torch.nn.Parameter(g) for g in glob]
    outer = [torch.optim.SGD([g], lr=a.olr, momentum=a.mom, nesterov=a.mom > 0) for g in gp]
    sched = Schedule(a.H, P, tau)
    inflight = {}
    def send(p):
        ds = [quant(gp[p].data - fr[w][p].gather(torch.empty_like(gp[p].data))) for w in range(W)]
        avg = torch.stack(ds).sum(0)
        if a.quant == "e3m0" and a.mode == "stream": avg = quant(avg)
        inflight[p] = avg / W
    rounds = max(1, a.steps // a.H)
    def merge(p):
        k = outer[p].state[gp[p]].get("k", 0) if gp[p] in outer[p].state else 0
        for g in outer[p].param_groups:
            if a.mom_ramp: g["momentum"] = a.mom * min(1.0, k / a.mom_ramp); g["nesterov"] = g["momentum"] > 0
            t = min(1.0, k / max(1, rounds - 1))
            g["lr"] = a.olr * (a.olr_end + (1 - a.olr_end) * 0.5 * (1 + math.cos(math.pi * t)))
        gp[p].grad = inflight.pop(p); outer[p].step(); gp[p].grad = None
        outer[p].state[gp[p]]["k"] = k + 1
        for w in range(W):
            f = fr[w][p]
            if alpha == 0: f.scatter(gp[p].data)
            else: f.scatter(alpha * f.gather(torch.empty_like(gp[p].data)) + (1 - alpha) * gp[p].data)
    def gstate():
        ev_m = evalm
        for f_e, g in zip(make_fragments(list(ev_m.named_parameters()), P), gp): f_e.scatter(g.data)
        return {k: v.clone() for k, v in ev_m.state_dict().items()}
    for s in range(a.steps):
        for w in range(W):
            x, y = next(data[w]); ms[w].loss(x, y).backward()
            for g in opts[w].param_groups: g["lr"] = lr_at(s)
            opts[w].step(); opts[w].zero_grad(set_to_none=True)
        st = s + 1
        sh = st
        if tau:
            for p in sched.merges_at(sh): merge(p)
        if sh >= 1:
            for p in sched.sends_at(sh):
                send(p)
                if not tau: merge(p)
        if st == a.steps:
            for p in list(inflight): merge(p)
            if a.flush:
                ev(-st, gstate())
                for p in range(P): send(p); merge(p)
        if st % 50 == 0 or st == a.steps: ev(st, gstate())
print("FINAL", a.tag, json.dumps(vars(a)), "%.4f" % curve[-1][1], "%.0fs" % (time.time() - t0), flush=True)
