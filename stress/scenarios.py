"""The run's options and the named presets (``--scenario``).

A preset sets defaults; every option given on the command line wins over
it.  The presets (documented in ``docs/stress.md``):

- ``steady``: no faults; the workload alone, every result verified;
- ``churn``: everything at once: kills, stops, leaves, joins and storms,
  master restarts (the 10-minute target run);
- ``stall``: SIGSTOPs of every length, around ``peer_timeout``;
- ``master-restart``: frequent master restarts, many while joiners wait;
- ``join-storm``: storms of joiners, with leaves bringing the group down;
- ``partition``: link faults in network namespaces: one member cut from
  the others (not from the master), links dropping every packet, delay
  spikes (root);
- ``wan``: namespaces with a rate limit, delay and loss on every link,
  mild churn (root).
"""
from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from stress.schedule import Rates


@dataclass
class Options:
    """Everything a run needs; the command line fills it."""
    scenario: str = "churn"
    peers: int = 8
    duration: Optional[float] = 60.0
    steps: Optional[int] = None
    seed: int = 1
    min_peers: int = 2
    max_peers: Optional[int] = None
    rates: Rates = field(default_factory=Rates)
    # workload
    max_bytes: int = 32 << 20
    large_rate: float = 0.01
    max_concurrent: int = 4
    safe_every: int = 8
    algorithms: List[str] = field(default_factory=lambda: ["ring", "star"])
    quant_rate: float = 0.2
    kinds: List[str] = field(default_factory=lambda: [
        "all_reduce", "broadcast", "all_gather", "reduce_scatter", "barrier"])
    state_elems: int = 1 << 16
    # pyccl settings
    peer_timeout: float = 2.0
    op_timeout: float = 10.0
    connect_timeout: float = 30.0
    conns_per_peer: int = 0  # automatic, the library's default
    rejoin: bool = True
    # orchestration
    replace: bool = True          # spawn a joiner when below --peers
    replace_delay: float = 0.5
    max_defer: float = 4.0        # wait for the group to settle, at most
    hang_timeout: Optional[float] = None  # None: from the timeouts
    settle_timeout: float = 60.0
    fail_fast: bool = False
    # network namespaces
    netns: bool = False
    rate: Optional[str] = None    # tbf rate per link, e.g. "1gbit"
    delay_ms: float = 0.0         # per direction, applied at ingress
    loss: float = 0.0             # random loss per packet, each direction
    # output
    json_path: Optional[str] = None
    png_path: Optional[str] = None
    log_dir: Optional[str] = None
    live: Optional[bool] = None   # None: when stdout is a terminal
    uvloop: bool = True

    def needs_netns(self) -> bool:
        return self.netns

    def effective_max_peers(self) -> int:
        if self.max_peers is not None:
            return self.max_peers
        return self.peers + max(2, self.rates.storm_size) + 2


#: name -> (what it is, option overrides; "rates" holds Rates fields).
PRESETS: Dict[str, Dict[str, Any]] = {
    "steady": {
        "about": "no faults: the workload alone, every result verified",
        "peers": 4, "duration": 60.0, "rates": {},
    },
    "churn": {
        "about": "kills, stops, leaves, joins and storms, master restarts",
        "peers": 8, "duration": 600.0,
        "rates": {"kill": 12.0, "stop": 12.0, "leave": 12.0, "join": 1.0,
                  "storm": 1.0, "master": 1.5, "storm_size": 3},
    },
    "stall": {
        "about": "SIGSTOPs of every length around peer_timeout",
        "peers": 6, "duration": 120.0,
        "rates": {"stop": 15.0, "stop_min": 0.2, "stop_max": 6.0,
                  "stop_kill_share": 0.2},
    },
    "master-restart": {
        "about": "master SIGKILLed and restarted, often while joiners wait",
        "peers": 6, "duration": 120.0,
        "rates": {"master": 6.0, "join": 4.0, "leave": 4.0,
                  "master_with_joiner": 0.5, "master_down_max": 1.5},
    },
    "join-storm": {
        "about": "storms of joiners, leaves bringing the group back down",
        "peers": 4, "duration": 120.0,
        "rates": {"storm": 4.0, "storm_size": 4, "leave": 14.0},
        "max_peers": 10,
    },
    "partition": {
        "about": "network namespaces: a member cut from the others, links "
                 "dropping every packet, delay spikes (root)",
        "peers": 5, "duration": 120.0, "netns": True,
        "rates": {"partition": 4.0, "drop": 4.0, "delay": 4.0, "kill": 2.0,
                  "link_fault_min": 1.0, "link_fault_max": 5.0},
    },
    "wan": {
        "about": "network namespaces: 1 Gbit/s links, 25 ms each way, 0.1% "
                 "loss, 4 connections per peer pair, mild churn (root)",
        "peers": 4, "duration": 120.0, "netns": True,
        "rate": "1gbit", "delay_ms": 25.0, "loss": 0.001,
        "conns_per_peer": 4, "peer_timeout": 5.0, "op_timeout": 30.0,
        "max_bytes": 8 << 20,
        "rates": {"kill": 2.0, "leave": 2.0, "stop": 2.0, "master": 1.0,
                  "stop_min": 1.0, "stop_max": 8.0},
    },
}


def apply_preset(name: str, given: Dict[str, Any],
                 given_rates: Dict[str, Any]) -> Options:
    """Options of preset ``name``, overridden by the options ``given`` on
    the command line (and ``given_rates`` for the Rates fields)."""
    if name not in PRESETS:
        raise ValueError("unknown scenario %r (known: %s)"
                         % (name, ", ".join(sorted(PRESETS))))
    preset = dict(PRESETS[name])
    preset.pop("about", None)
    rates = Rates(**dict(preset.pop("rates", {}), **given_rates))
    opts = Options(scenario=name, rates=rates)
    for k, v in preset.items():
        setattr(opts, k, v)
    for k, v in given.items():
        setattr(opts, k, v)
    return opts


#: Options that never change what is run (left out of a repro command).
_OUTPUT_ONLY = {"json_path", "png_path", "log_dir", "live", "scenario",
                "rates", "seed", "duration", "steps", "uvloop"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def repro_command(opts: Options, duration: Optional[float] = None) -> str:
    """The shortest command line that replays this run's schedule: the
    scenario, the seed, and only the options that differ from the
    preset's (``duration`` cuts the run short, e.g. just past the first
    violation)."""
    base = apply_preset(opts.scenario, {}, {})
    parts = ["pyccl", "stress", "--scenario", opts.scenario, "--seed",
             str(opts.seed)]
    for f in dataclasses.fields(Options):
        if f.name in _OUTPUT_ONLY:
            continue
        mine, theirs = getattr(opts, f.name), getattr(base, f.name)
        if mine == theirs:
            continue
        if isinstance(mine, bool):
            flag = _flag(f.name) if mine else "--no-" + f.name.replace(
                "_", "-")
            parts.append(flag)
        elif isinstance(mine, list):
            parts += [_flag(f.name), ",".join(str(x) for x in mine)]
        elif mine is not None:
            parts += [_flag(f.name), str(mine)]
    for f in dataclasses.fields(Rates):
        mine, theirs = getattr(opts.rates, f.name), getattr(base.rates,
                                                           f.name)
        if mine != theirs:
            name = f.name if f.name in ("storm_size",) or "_" in f.name \
                else f.name + "_rate"
            if f.name == "master":
                name = "master_restart_rate"
            parts += [_flag(name), str(mine)]
    if opts.steps is not None:
        parts += ["--steps", str(opts.steps)]
    d = duration if duration is not None else opts.duration
    if d is not None and d != base.duration:
        parts += ["--duration", "%g" % d]
    return " ".join(shlex.quote(p) for p in parts)


__all__ = ["Options", "PRESETS", "apply_preset", "repro_command"]
