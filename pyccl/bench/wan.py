"""``pyccl bench --wan``: all-reduce over emulated wide-area links (root).

    pyccl bench --wan [--peers 4] [--rate 1gbit] [--rtt-ms 50] [--loss-pct 0]
                      [--size 256M] [--rounds 3]
                      [--variants auto,k1,k4,u8,u4,e3m0,gloo] [--json PATH]

Each peer runs in its own network namespace, joined to the others through
a bridge (:class:`stress.netns.NetLab`, the namespace lab of the churn
tester): ``tc tbf`` at RATE on every peer's egress, a userspace delay line
(``nfq_delay``) holding every packet for RTT/2 at every peer's ingress,
and ``iptables -m statistic`` dropping LOSS of the packets a peer
receives.  This kernel has no netem; see ``/work/shared/tools/README.md``.
The pyccl masters run in a namespace of their own, unshaped.

Every peer process joins all the groups of the run once -- one pyccl
Communicator per connection setting (automatic, K=1, K=4, ...; the
quantized variants use the automatic one) and torch gloo -- then the
variants run one op each, interleaved, for ROUNDS rounds (the order
rotates each round).  Per op: fill, a barrier of the library, one
blocking in-place f32 sum all-reduce, then the checks (every rank holds
the same bytes, each element within the format's bound of the exact
sum).  The table gives the median over the rounds.  Around the ops of the
automatic setting the parent reads ``ss -tni`` in every namespace, so the
report says how many TCP streams per pair actually carried data.

Without root, or without ip/tc/iptables or the delay line, it prints why
and exits 0 ("skipped").  Every namespace and helper is removed at the
end, also after a failure or Ctrl-C.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import secrets
import shlex
import signal
import sys
from typing import Any, Dict, List, Optional, Sequence, TextIO

import pyccl
from pyccl.argtypes import format_size, parse_size, positive_int
from pyccl.bench import wan_report
from pyccl.bench.wan_peer import VARIANTS, comm_key
from pyccl.progress import Progress

DEFAULT_VARIANTS = ("auto", "k1", "k4", "u8", "u4", "e3m0", "gloo")
GLOO_PORT = 29511
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def parse_rate(text: str) -> float:
    """tc's rate syntax (``1gbit``, ``500mbit``, ``100kbit``) in bit/s."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kmg]?)bit\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(
            "rate like 1gbit, 500mbit or 100kbit, not %r" % text)
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6,
                                "g": 1e9}[m.group(2)]


def variant_list(text: str) -> List[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            "variants are %s" % ", ".join(VARIANTS))
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyccl bench --wan",
        description="All-reduce over emulated wide-area links: peers in "
                    "network namespaces, tbf rate, delay line, loss; pyccl "
                    "(connections automatic and fixed, quantized) against "
                    "torch gloo in the same run.  Root only.")
    p.add_argument("--peers", type=positive_int, default=4,
                   help="peers, each in its own namespace (default 4)")
    p.add_argument("--rate", default="1gbit",
                   help="tbf rate of every peer's link, each way (default "
                        "1gbit)")
    p.add_argument("--rtt-ms", type=float, default=50.0,
                   help="round trip between two peers (default 50; half "
                        "of it delays every packet at each ingress)")
    p.add_argument("--loss-pct", type=float, default=0.0,
                   help="percent of packets each peer drops on arrival "
                        "(default 0)")
    p.add_argument("--size", type=parse_size, default=256 << 20,
                   help="all-reduce size in bytes, K/M/G suffixes (default "
                        "256M, f32)")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="interleaved rounds; the table shows medians "
                        "(default 3)")
    p.add_argument("--variants", type=variant_list,
                   default=list(DEFAULT_VARIANTS),
                   help="comma-separated, from %s (default %s)"
                        % (",".join(VARIANTS), ",".join(DEFAULT_VARIANTS)))
    p.add_argument("--no-full-warmup", action="store_true",
                   help="warm up with a 4 MiB op per variant instead of a "
                        "full-size one per pyccl variant")
    p.add_argument("--no-idle-restart", action="store_true",
                   help="set net.ipv4.tcp_slow_start_after_idle=0 in the "
                        "peers' namespaces (a stream idle for an RTO "
                        "otherwise restarts from its initial window)")
    p.add_argument("--trace-ss", type=float, default=0.0, metavar="S",
                   help="while a pyccl f32 op runs, sample rank 0's TCP "
                        "streams every S seconds into the --json record "
                        "(default off)")
    p.add_argument("--op-timeout", type=float, default=300.0,
                   help="seconds one op may take before the run fails "
                        "(default 300)")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="write every op of every rank to PATH")
    return p


def why_skipped(need_delay: bool) -> Optional[str]:
    """Why this machine cannot run the benchmark, or None."""
    if os.geteuid() != 0:
        return ("needs root for network namespaces, tc and iptables "
                "(this is uid %d)" % os.geteuid())
    try:
        from stress import netns
    except ImportError:
        return "the namespace lab (stress/netns.py) needs a pyccl checkout"
    why = netns.unavailable()
    if why:
        return why
    if need_delay:
        nfq, why = netns.build_nfq_delay(_cache_dir())
        if nfq is None:
            return "no delay line: %s" % why
    return None


def importlib_find(name: str) -> Any:
    import importlib.util
    return importlib.util.find_spec(name)


def _cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "pyccl-wan")


# -- ss -tni: which streams carried data ------------------------------------

# Local and remote address of a socket line; an IPv4 address may show
# as [::ffff:a.b.c.d] on a dual-stack socket (torch's store).
_IP = r"\[?(?:::ffff:)?(\d+\.\d+\.\d+\.\d+)\]?"
_SS_ADDR = re.compile(_IP + r":(\d+)\s+" + _IP + r":(\d+)")


def parse_ss(text: str) -> Dict[str, dict]:
    """``ss -tni`` → {"local remote": {"acked": bytes, "rtt_ms": x}}."""
    out: Dict[str, dict] = {}
    key = None
    for line in text.splitlines():
        if not line.startswith(("\t", " ")):
            # A socket's line (its details follow, indented); any other
            # line (the header, an address we do not parse) ends the last.
            m = _SS_ADDR.search(line)
            key = "%s:%s %s:%s" % m.groups() if m else None
            if key:
                out[key] = {"remote": m.group(3), "acked": 0,
                            "rtt_ms": None}
            continue
        if key is None:
            continue
        a = re.search(r"bytes_acked:(\d+)", line)
        if a:
            out[key]["acked"] = int(a.group(1))
        r = re.search(r"\brtt:([0-9.]+)/", line)
        if r:
            out[key]["rtt_ms"] = float(r.group(1))
    return out


def streams_used(before: Dict[str, dict], after: Dict[str, dict],
                 min_bytes: int) -> Dict[str, List[tuple]]:
    """Per remote address: (bytes sent, rtt ms) of every connection that
    sent at least ``min_bytes`` between the two snapshots."""
    used: Dict[str, List[tuple]] = {}
    for key, s in after.items():
        sent = s["acked"] - before.get(key, {}).get("acked", 0)
        if sent >= min_bytes:
            used.setdefault(s["remote"], []).append((sent, s["rtt_ms"]))
    return used


# -- the run ------------------------------------------------------------------

class WanFailure(Exception):
    pass


class Proc:
    """A child process speaking ``WAN {json}`` lines on stdout."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name, self.proc = name, proc

    async def read(self, timeout: float) -> dict:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(),
                                          timeout)
            if not line:
                raise WanFailure("%s exited (code %s)" % (
                    self.name, await self.proc.wait()))
            text = line.decode(errors="replace")
            if text.startswith("WAN "):
                msg = json.loads(text[4:])
                if "error" in msg:
                    raise WanFailure("%s: %s" % (self.name, msg["error"]))
                return msg

    def send(self, obj: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())

    def kill(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass


class WanRun:
    def __init__(self, args: argparse.Namespace, out: TextIO,
                 log: TextIO) -> None:
        self.args, self.out, self.log = args, out, log
        self.rate_bps = parse_rate(args.rate)
        self.procs: List[Proc] = []
        self.lab: Any = None
        self.records: List[dict] = []
        self.streams: List[dict] = []
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [_REPO] + [p for p in self.env.get("PYTHONPATH", "").split(
                os.pathsep) if p])
        self.env["PYCCL_KEY"] = secrets.token_hex(32)
        self.env["PYCCL_STRESS_PARENT"] = str(os.getpid())
        self.env.pop("PYCCL_KEY_FILE", None)
        self.bar: Optional[Progress] = None  # over the timed ops, on a tty

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write("  [wan] %s" % text)
        else:
            print("  [wan] %s" % text, file=self.log, flush=True)

    async def _spawn(self, name: str, prefix: List[str],
                     argv: List[str], errlog: str) -> Proc:
        cmd = prefix + [sys.executable, "-m", "stress.child", "exec",
                        sys.executable, "-m", "pyccl.bench.wan_peer"] + argv
        err = open(errlog, "wb")
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=err, env=self.env,
            start_new_session=True)
        err.close()
        p = Proc(name, proc)
        self.procs.append(p)
        return p

    async def setup(self, comm_keys: List[str], gloo: bool) -> List[Proc]:
        from stress import netns
        a = self.args
        tag = "w%d" % (os.getpid() % 100000)
        self.lab = netns.NetLab(tag, self.env, _cache_dir(), rate=a.rate,
                                delay_ms=a.rtt_ms / 2.0,
                                loss=a.loss_pct / 100.0, lifetime=3600)
        self.note("namespaces pst%s*: %d peers, tbf %s, %g ms delay at "
                  "each ingress, %g%% loss" % (tag, a.peers, a.rate,
                                               a.rtt_ms / 2, a.loss_pct))
        await self.lab.setup()
        self.logdir = os.path.join(_cache_dir(), "logs-%s" % tag)
        os.makedirs(self.logdir, exist_ok=True)
        prefixes, addrs = [], []
        for r in range(a.peers):
            prefix, addr = await self.lab.add_peer(r)
            prefixes.append(prefix)
            addrs.append(addr)
            if a.no_idle_restart:
                await self.lab._ns_exec(
                    self.lab.ns_of(r), "sysctl", "-q", "-w",
                    "net.ipv4.tcp_slow_start_after_idle=0")
        self.addrs = addrs
        masters: Dict[str, str] = {}
        if comm_keys:
            prefix, maddr = await self.lab.add_master()
            mp = await self._spawn("master", prefix,
                                   ["master", str(len(comm_keys)), maddr],
                                   os.path.join(self.logdir, "master.err"))
            got = await mp.read(60)
            masters = dict(zip(comm_keys, got["masters"]))
        peers = []
        for r in range(a.peers):
            cfg = {"rank": r, "peers": a.peers, "addr": addrs[r],
                   "comms": comm_keys, "masters": masters,
                   "timeout": a.op_timeout, "ifname": "eth0",
                   "gloo": ("%s:%d" % (addrs[0], GLOO_PORT)) if gloo
                   else None}
            peers.append(await self._spawn(
                "rank %d" % r, prefixes[r], ["peer", json.dumps(cfg)],
                os.path.join(self.logdir, "rank%d.err" % r)))
        ready = await asyncio.gather(*(p.read(a.op_timeout + 120) for p in peers))
        if ready and ready[0].get("tuned"):
            t = ready[0]["tuned"]
            self.note("tuned (cost model, after optimize_topology): star "
                      "all-reduce up to %d bytes, direct up to %d (0: none), "
                      "latency %d us, rate %.1f MB/s"
                      % (t["allreduce_star_max"], t.get("allreduce_direct_max", 0),
                         t["latency_us"], t["rate"] / 1e6))
        return peers

    async def ss_all(self) -> List[Dict[str, dict]]:
        snaps = []
        for r in range(self.args.peers):
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.lab.ns_of(r), "ss", "-tni",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
            text, _ = await proc.communicate()
            snaps.append(parse_ss(text.decode(errors="replace")))
        return snaps

    async def _trace(self, out: List[tuple]) -> None:
        """Samples rank 0's streams (bytes acked per connection) every
        ``--trace-ss`` seconds while an op runs (see --json)."""
        loop = asyncio.get_running_loop()
        while True:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.lab.ns_of(0), "ss", "-tni",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
            text, _ = await proc.communicate()
            snap = parse_ss(text.decode(errors="replace"))
            out.append((loop.time(), {k: v["acked"] for k, v in snap.items()
                                      if v["acked"] > (1 << 20)}))
            await asyncio.sleep(self.args.trace_ss)

    async def one_op(self, peers: List[Proc], variant: str, rnd: int,
                     size: int) -> dict:
        watch = VARIANTS[variant][0] == "pyccl" and VARIANTS[variant][2] is None
        before = await self.ss_all() if watch else None
        for p in peers:
            p.send({"cmd": "run", "variant": variant, "size": size})
        trace: List[tuple] = []
        sampler = (asyncio.ensure_future(self._trace(trace))
                   if watch and self.args.trace_ss else None)
        try:
            ranks = await asyncio.gather(*(p.read(self.args.op_timeout)
                                           for p in peers))
        except asyncio.TimeoutError:
            raise WanFailure("%s, %s: not every rank answered within %g s "
                             "(--op-timeout)" % (
                                 variant, "warm-up" if rnd < 0
                                 else "round %d" % (rnd + 1),
                                 self.args.op_timeout)) from None
        finally:
            if sampler is not None:
                sampler.cancel()
        why = wan_report.check_op(variant, ranks)
        if why:
            raise WanFailure(why)
        rec = {"variant": variant, "round": rnd, "size": size,
               "time_s": wan_report.op_time(ranks),
               "max_err": max(r["err"] for r in ranks), "ranks": ranks}
        if trace:
            rec["trace"] = trace
        if before is not None:
            after = await self.ss_all()
            # A stream that sent a twentieth of its share carried data.
            floor = max(1 << 20, size // (20 * self.args.peers))
            used = [streams_used(b, a, floor) for b, a in zip(before, after)]
            rec["streams"] = [{addr: [len(v), [round(x[0] / 2**20, 1)
                                                for x in v],
                                      [x[1] for x in v]]
                               for addr, v in u.items()} for u in used]
        return rec

    async def run(self) -> int:
        a = self.args
        gloo = "gloo" in a.variants
        if gloo and importlib_find("torch") is None:
            self.note("torch is not importable: gloo left out")
            a.variants = [v for v in a.variants if v != "gloo"]
            gloo = False
        keys: List[str] = []
        for v in a.variants:
            k = comm_key(v)
            if k and k not in keys:
                keys.append(k)
        peers = await self.setup(keys, gloo)
        # One untimed op per variant first: at full size for pyccl (its
        # first op of a size allocates the working buffers it keeps), a
        # small one for gloo (which keeps none: the time would be lost).
        self.note("groups ready; one untimed warm-up op per variant")
        for v in a.variants:
            small = a.no_full_warmup or VARIANTS[v][0] == "gloo"
            await self.one_op(peers, v, -1,
                              min(a.size, 4 << 20) if small else a.size)
        # A bar over the timed ops on a terminal (nothing otherwise).
        self.bar = Progress(a.rounds * len(a.variants), "  [wan] ops",
                            stream=self.log)
        try:
            for rnd in range(a.rounds):
                order = a.variants[rnd % len(a.variants):] + \
                    a.variants[:rnd % len(a.variants)]
                for v in order:
                    rec = await self.one_op(peers, v, rnd, a.size)
                    self.records.append(rec)
                    self.note("round %d %-5s %.3f s%s" % (
                        rnd + 1, v, rec["time_s"],
                        "  streams with data: %s" % streams_text(
                            rec["streams"]) if "streams" in rec else ""))
                    self.bar.update(1)
        finally:
            self.bar.close()
            self.bar = None
        for p in peers:
            p.send({"cmd": "quit"})
        await asyncio.gather(*(asyncio.wait_for(p.proc.wait(), 30)
                               for p in peers), return_exceptions=True)
        return 0

    async def cleanup(self) -> None:
        for p in self.procs:
            if p.proc.stdin is not None and not p.proc.stdin.is_closing():
                p.proc.stdin.close()
        for p in self.procs:
            try:
                await asyncio.wait_for(p.proc.wait(), 5)
            except asyncio.TimeoutError:
                p.kill()
                await p.proc.wait()
        if self.lab is not None:
            await self.lab.teardown()
            self.lab = None


def streams_text(streams: List[dict]) -> str:
    """"r0→.2: 4 (52 ms)" per sending rank and remote."""
    parts = []
    for r, used in enumerate(streams):
        for addr, (n, _, rtts) in sorted(used.items()):
            rtt = [x for x in rtts if x is not None]
            parts.append("r%d>%s:%d%s" % (r, addr.rsplit(".", 1)[1], n,
                                         " (rtt %.0f ms)" % max(rtt)
                                         if rtt else ""))
    return " ".join(parts) or "none"


def main(argv: Optional[Sequence[str]] = None, out: TextIO = sys.stdout,
         log: TextIO = sys.stderr) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        parse_rate(args.rate)
    except argparse.ArgumentTypeError as exc:
        print("pyccl bench --wan: %s" % exc, file=log)
        return 2
    why = why_skipped(args.rtt_ms > 0)
    if why:
        print("pyccl bench --wan: skipped: %s" % why, file=out, flush=True)
        return 0
    command = "pyccl bench --wan" + "".join(" " + shlex.quote(x)
                                            for x in argv)
    load_start = os.getloadavg()
    print("pyccl bench --wan: %d peers, tbf %s each way, RTT %g ms (delay "
          "line at ingress), loss %g%%, %s f32 sum, %d rounds; pyccl %s "
          "(core %s); %d CPUs, load %.2f %.2f %.2f"
          % (args.peers, args.rate, args.rtt_ms, args.loss_pct,
             format_size(args.size), args.rounds, pyccl.__version__,
             pyccl.c_version(), os.cpu_count() or 0, *load_start),
          file=out, flush=True)
    run = WanRun(args, out, log)
    status = 0
    failure = None

    async def go() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await run.run()
        finally:
            await asyncio.shield(run.cleanup())

    try:
        status = asyncio.run(go())
    except (WanFailure, asyncio.TimeoutError, OSError,
            RuntimeError) as exc:
        failure = str(exc) or type(exc).__name__
        status = 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        failure = "interrupted"
        status = 1
    finally:
        if run.lab is not None:  # the loop died before cleaning up
            run.lab.teardown_sync()
    load_end = os.getloadavg()
    rows = wan_report.summarise(run.records, args.size, args.peers,
                                run.rate_bps)
    if rows:
        print("", file=out)
        wan_report.print_table(rows, out)
        auto = [r for r in run.records if "streams" in r
                and r["variant"] == "auto"]
        for r in auto:
            print("auto round %d, TCP streams that carried data (sender>"
                  "receiver: count): %s" % (r["round"] + 1,
                                            streams_text(r["streams"])),
                  file=out)
        wan_report.print_targets(wan_report.targets(rows, args.loss_pct),
                                 out)
    print("load (1/5/15 min) at start %.2f %.2f %.2f, at end %.2f %.2f "
          "%.2f" % (*load_start, *load_end), file=out)
    if failure:
        print("pyccl bench --wan: FAILED: %s\ncommand: %s%s"
              % (failure, command,
                 "\nthe processes' stderr: %s" % run.logdir
                 if getattr(run, "logdir", None) else ""),
              file=out, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command,
                       "date": datetime.datetime.now(
                           datetime.timezone.utc).isoformat(
                               timespec="seconds"),
                       "options": {k: v for k, v in vars(args).items()},
                       "load_start": load_start, "load_end": load_end,
                       "records": run.records, "failure": failure,
                       "summary": rows}, f, indent=1)
            f.write("\n")
    return status


__all__ = ["main", "build_parser", "parse_rate", "parse_ss", "streams_used",
           "why_skipped", "DEFAULT_VARIANTS"]

if __name__ == "__main__":
    sys.exit(main())
