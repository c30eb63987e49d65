"""The churn schedule: which fault happens when, a pure function of the
seed and the rates, so ``--seed`` replays the same schedule.

An event carries its time (seconds after the group first formed), its
kind, and the random numbers it will need when it is applied (``pick``
chooses the target among the eligible peers, sorted by peer id; the
``arg`` values fix a stop's length and ending, a master restart's
downtime, a storm's size).  The processes' timing is not reproducible,
so a replay applies the same faults at the same moments, not to the same
op.

Kinds: ``kill`` (SIGKILL), ``stop`` (SIGSTOP, then SIGCONT or SIGKILL),
``leave`` (graceful), ``join`` (one newcomer), ``storm`` (several at
once), ``master`` (SIGKILL the master, restart it at the same address,
sometimes while a joiner waits), and in network namespaces ``drop`` (the
member's link drops every packet for a while), ``delay`` (extra delay on
its link) and ``partition`` (cut from the other peers, not the master).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional

#: Every kind, in the order tables print them.
FAULT_KINDS = ("kill", "stop", "leave", "join", "storm", "master", "drop",
               "delay", "partition")
#: Kinds that need network namespaces.
LINK_KINDS = ("drop", "delay", "partition")


@dataclass
class Rates:
    """Events per minute of each kind, and their shapes."""
    kill: float = 0.0
    stop: float = 0.0
    leave: float = 0.0
    join: float = 0.0
    storm: float = 0.0
    master: float = 0.0
    drop: float = 0.0
    delay: float = 0.0
    partition: float = 0.0
    storm_size: int = 3
    stop_min: float = 0.3        # seconds stopped, drawn in [min, max]
    stop_max: float = 4.0
    stop_kill_share: float = 0.3  # share of stops that end with SIGKILL
    master_down_max: float = 1.0  # seconds between the kill and the restart
    master_with_joiner: float = 0.3  # share of restarts while a joiner waits
    link_fault_min: float = 1.0
    link_fault_max: float = 4.0

    def per_kind(self) -> Dict[str, float]:
        return {k: getattr(self, k) for k in FAULT_KINDS}


@dataclass(order=True)
class Event:
    t: float
    kind: str = field(compare=False)
    pick: float = field(compare=False, default=0.0)
    arg: Dict[str, float] = field(compare=False, default_factory=dict)

    def describe(self) -> str:
        extra = ""
        if self.kind == "stop":
            extra = " for %.1f s then %s" % (
                self.arg["duration"], "kill" if self.arg["kill"] else "cont")
        elif self.kind == "storm":
            extra = " of %d" % self.arg["size"]
        elif self.kind == "master":
            extra = " (down %.2f s%s)" % (
                self.arg["down"], ", a joiner waiting"
                if self.arg["with_joiner"] else "")
        elif self.kind in LINK_KINDS:
            extra = " for %.1f s" % self.arg["duration"]
        return "t=%.2f %s%s" % (self.t, self.kind, extra)


def _arg(kind: str, rates: Rates, rng: random.Random) -> Dict[str, float]:
    if kind == "stop":
        return {"duration": rng.uniform(rates.stop_min, rates.stop_max),
                "kill": rng.random() < rates.stop_kill_share}
    if kind == "storm":
        return {"size": max(2, rates.storm_size)}
    if kind == "master":
        return {"down": rng.uniform(0.0, rates.master_down_max),
                "with_joiner": rng.random() < rates.master_with_joiner}
    if kind in LINK_KINDS:
        return {"duration": rng.uniform(rates.link_fault_min,
                                        rates.link_fault_max)}
    return {}


def make_schedule(seed: int, rates: Rates, duration: Optional[float],
                  steps: Optional[int] = None, warmup: float = 1.0,
                  kinds_allowed: Optional[List[str]] = None,
                  ensure_each: bool = False) -> List[Event]:
    """The events of a run, in time order.

    Each kind is a Poisson process of its rate (per minute), from
    ``warmup`` to ``duration`` seconds.  With ``steps`` the schedule ends
    after that many events (and ``duration`` may be None: the horizon is
    then as long as the steps need).  ``ensure_each``: a kind with a
    positive rate that drew no event gets one at a random time, so short
    runs still see every kind."""
    rng = random.Random("pyccl-stress:%d" % seed)
    horizon = duration
    if horizon is None:
        total = sum(r for k, r in rates.per_kind().items()
                    if kinds_allowed is None or k in kinds_allowed)
        horizon = warmup + 60.0 * (steps or 100) / max(total, 1e-6) * 1.5
    events: List[Event] = []
    for kind in FAULT_KINDS:
        rate = getattr(rates, kind)
        if rate <= 0 or (kinds_allowed is not None
                         and kind not in kinds_allowed):
            continue
        krng = random.Random("pyccl-stress:%d:%s" % (seed, kind))
        t = warmup
        drew = 0
        while True:
            t += krng.expovariate(rate / 60.0)
            if t >= horizon:
                break
            events.append(Event(t, kind, krng.random(), _arg(kind, rates,
                                                             krng)))
            drew += 1
        if ensure_each and not drew and horizon > warmup + 2:
            t = krng.uniform(warmup, horizon - 1.0)
            events.append(Event(t, kind, krng.random(), _arg(kind, rates,
                                                             krng)))
    events.sort()
    if steps is not None:
        events = events[:steps]
    del rng
    return events


__all__ = ["FAULT_KINDS", "LINK_KINDS", "Rates", "Event", "make_schedule"]
