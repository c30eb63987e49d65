"""Network namespaces for link faults and wide-area links (root only).

The lab: a hub namespace holding a bridge, one namespace for the master
(10.99.0.1) and one per peer (10.99.x.y, from its id), each joined to the
bridge by a veth pair; every address lives only inside these namespaces.
Shaping and faults are applied inside the peer's namespace, on its
``eth0``, following ``/work/shared/tools/README.md``:

- rate: ``tc tbf`` on egress;
- loss: ``iptables -m statistic --mode random -j DROP`` on INPUT;
- delay: this kernel has no netem, so a userspace delay line
  (``nfq_delay``, built from ``/work/shared/tools/nfq_delay.c`` when
  ``libnetfilter-queue-dev`` is installed) holds every packet at
  *ingress* (mangle PREROUTING): delaying at the sender's OUTPUT keeps
  packets charged to the socket and throttles TCP;
- ``drop``: every packet on the member's link dropped for a while;
- ``partition``: the member cut from the other peers, not from the
  master;
- ``delay`` (as a fault): a second delay line on the member's link for a
  while.

Every namespace is deleted at the end, also after a failure (the
orchestrator's cleanup calls :meth:`NetLab.teardown`); nfq_delay runs
under :mod:`stress.child` (parent-death signal) and exits by itself too.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

TOOLS = os.environ.get("PYCCL_STRESS_TOOLS", "/work/shared/tools")
MASTER_ADDR = "10.99.0.1"


def unavailable() -> Optional[str]:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (this is uid %d)" % os.geteuid()
    for tool in ("ip", "tc", "iptables"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    probe = "pstprobe%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if r.returncode != 0:
        return "ip netns add failed: %s" % r.stderr.decode().strip()
    try:
        r = subprocess.run(["ip", "netns", "exec", probe, "iptables", "-L",
                            "INPUT", "-n"], capture_output=True)
        if r.returncode != 0:
            return "iptables does not work in a namespace: %s" % (
                r.stderr.decode().strip())
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def build_nfq_delay(cache_dir: str) -> Tuple[Optional[str], str]:
    """The nfq_delay binary (built once per cache dir), or (None, why)."""
    src = os.path.join(TOOLS, "nfq_delay.c")
    out = os.path.join(cache_dir, "nfq_delay")
    if os.path.exists(out):
        return out, ""
    if not os.path.exists(src):
        return None, "%s is missing" % src
    if shutil.which("gcc") is None:
        return None, "gcc is not installed"
    os.makedirs(cache_dir, exist_ok=True)
    r = subprocess.run(["gcc", "-O2", "-std=c99", "-D_GNU_SOURCE", "-o", out,
                        src, "-lnetfilter_queue", "-lnfnetlink"],
                       capture_output=True)
    if r.returncode != 0:
        return None, ("cannot build nfq_delay (apt-get install "
                      "libnetfilter-queue-dev): %s"
                      % r.stderr.decode().strip().splitlines()[-1:])
    return out, ""


def peer_addr(peer_id: int) -> str:
    return "10.99.%d.%d" % (1 + peer_id // 250, 1 + peer_id % 250)


class NetLab:
    """The namespaces of one run."""

    def __init__(self, tag: str, env: Dict[str, str], cache_dir: str,
                 rate: Optional[str] = None, delay_ms: float = 0.0,
                 loss: float = 0.0, lifetime: float = 3600.0) -> None:
        self.tag = tag
        self.env = env
        self.rate = rate
        self.delay_ms = delay_ms
        self.loss = loss
        self.lifetime = int(lifetime)
        self.hub = "pst%sh" % tag
        self.master_ns = "pst%sm" % tag
        self.namespaces: List[str] = []
        self.helpers: List[asyncio.subprocess.Process] = []
        self._ns_helpers: Dict[str, List[asyncio.subprocess.Process]] = {}
        self.notes: List[str] = []
        self.nfq, why = build_nfq_delay(cache_dir)
        if self.nfq is None:
            self.notes.append("delay unavailable: %s" % why)
        self._faults: Dict[int, List[List[str]]] = {}

    @property
    def can_delay(self) -> bool:
        return self.nfq is not None

    def ns_of(self, peer_id: int) -> str:
        return "pst%sp%d" % (self.tag, peer_id)

    async def _run(self, *args: str, check: bool = True) -> int:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if check and proc.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(args),
                                           err.decode().strip()))
        return proc.returncode or 0

    async def _ns_exec(self, ns: str, *args: str, check: bool = True) -> int:
        return await self._run("ip", "netns", "exec", ns, *args, check=check)

    async def setup(self) -> None:
        await self._run("ip", "netns", "add", self.hub)
        self.namespaces.append(self.hub)
        await self._run("ip", "-n", self.hub, "link", "add", "br0", "type",
                        "bridge")
        await self._run("ip", "-n", self.hub, "link", "set", "br0", "up")
        await self._run("ip", "-n", self.hub, "link", "set", "lo", "up")
        await self._attach(self.master_ns, "vm", MASTER_ADDR, shape=False)

    async def _attach(self, ns: str, hub_if: str, addr: str,
                      shape: bool) -> None:
        await self._run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        await self._run("ip", "link", "add", "eth0", "netns", ns, "type",
                        "veth", "peer", "name", hub_if, "netns", self.hub)
        await self._run("ip", "-n", ns, "addr", "add", addr + "/16", "dev",
                        "eth0")
        await self._run("ip", "-n", ns, "link", "set", "lo", "up")
        await self._run("ip", "-n", ns, "link", "set", "eth0", "up")
        await self._run("ip", "-n", self.hub, "link", "set", hub_if,
                        "master", "br0")
        await self._run("ip", "-n", self.hub, "link", "set", hub_if, "up")
        if not shape:
            return
        if self.rate:
            await self._ns_exec(ns, "tc", "qdisc", "add", "dev", "eth0",
                                "root", "tbf", "rate", self.rate, "burst",
                                "256kb", "latency", "25ms")
        if self.loss > 0:
            await self._ns_exec(ns, "iptables", "-A", "INPUT", "-i", "eth0",
                                "-m", "statistic", "--mode", "random",
                                "--probability", "%g" % self.loss, "-j",
                                "DROP")
        if self.delay_ms > 0 and self.nfq:
            await self._delay_line(ns, 0, self.delay_ms, self.lifetime)

    async def _delay_line(self, ns: str, queue: int, delay_ms: float,
                          seconds: float) -> None:
        if queue == 0:
            await self._ns_exec(ns, "iptables", "-t", "mangle", "-I",
                                "PREROUTING", "-i", "eth0", "-j", "NFQUEUE",
                                "--queue-num", "0")
        else:  # a fault's rule goes first, before the permanent line's
            await self._ns_exec(ns, "iptables", "-t", "mangle", "-I",
                                "PREROUTING", "1", "-i", "eth0", "-j",
                                "NFQUEUE", "--queue-num", str(queue))
        assert self.nfq is not None
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, sys.executable, "-m", "stress.child",
            "exec", self.nfq, "-q", str(queue), "-d", "%g" % delay_ms,
            "-t", str(int(seconds) + 1), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, env=self.env,
            start_new_session=True)
        self.helpers.append(proc)
        self._ns_helpers.setdefault(ns, []).append(proc)

    async def add_master(self) -> Tuple[List[str], str]:
        """(command prefix, address) for the master's process."""
        return ["ip", "netns", "exec", self.master_ns], MASTER_ADDR

    async def add_peer(self, peer_id: int) -> Tuple[List[str], str]:
        """Makes the peer's namespace; (command prefix, its address)."""
        ns = self.ns_of(peer_id)
        await self._attach(ns, "v%d" % peer_id, peer_addr(peer_id),
                           shape=True)
        return ["ip", "netns", "exec", ns], peer_addr(peer_id)

    async def remove_peer(self, peer_id: int) -> None:
        ns = self.ns_of(peer_id)
        for proc in self._ns_helpers.pop(ns, []):
            if proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
        if ns in self.namespaces:
            self.namespaces.remove(ns)
            await self._run("ip", "netns", "del", ns, check=False)

    async def fault(self, kind: str, peer_id: int, duration: float) -> bool:
        """Applies a link fault to the peer (the caller heals it with
        :meth:`heal` after ``duration`` seconds); False when that kind
        cannot be done here."""
        ns = self.ns_of(peer_id)
        if kind == "drop":
            rules = [["filter", "INPUT", "-i", "eth0", "-j", "DROP"],
                     ["filter", "OUTPUT", "-o", "eth0", "-j", "DROP"]]
        elif kind == "partition":
            rules = [["filter", "INPUT", "-i", "eth0", "!", "-s",
                      MASTER_ADDR, "-j", "DROP"],
                     ["filter", "OUTPUT", "-o", "eth0", "!", "-d",
                      MASTER_ADDR, "-j", "DROP"]]
        elif kind == "delay":
            if not self.nfq:
                return False
            rules = [["mangle", "PREROUTING", "-i", "eth0", "-j", "NFQUEUE",
                      "--queue-num", "1"]]
            await self._delay_line(ns, 1, max(50.0, self.delay_ms * 4 + 100),
                                   duration + 5)
            self._faults[peer_id] = rules
            return True
        else:
            return False
        for r in rules:
            await self._ns_exec(ns, "iptables", "-t", r[0], "-I", *r[1:],
                                check=False)
        self._faults[peer_id] = rules
        return True

    async def heal(self, peer_id: int) -> None:
        """Removes the peer's link fault (returns once it is gone)."""
        rules = self._faults.pop(peer_id, [])
        ns = self.ns_of(peer_id)
        for r in rules:
            await self._ns_exec(ns, "iptables", "-t", r[0], "-D", *r[1:],
                                check=False)

    async def heal_all(self) -> None:
        for peer_id in list(self._faults):
            await self.heal(peer_id)

    async def teardown(self) -> None:
        for proc in self.helpers:
            if proc.returncode is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass
        for proc in self.helpers:
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                pass
        for ns in reversed(self.namespaces):
            await self._run("ip", "netns", "del", ns, check=False)
        self.namespaces = []

    def teardown_sync(self) -> None:
        """The same, without an event loop (last-resort cleanup)."""
        for proc in self.helpers:
            try:
                proc.kill()
            except (ProcessLookupError, OSError):
                pass
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces = []


__all__ = ["NetLab", "unavailable", "build_nfq_delay", "peer_addr",
           "MASTER_ADDR"]
