"""The live display: a few lines redrawn once a second on a terminal
(progress bar, peers alive, epoch, ops/s, faults by kind, the last
violation).  Quiet when stdout is not a terminal (CI): only the final
table is printed then."""
from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Dict, Optional, TextIO

from stress.schedule import FAULT_KINDS


class Display:
    """Live view of one run; every method is cheap when not live."""

    def __init__(self, stream: TextIO = sys.stdout,
                 live: Optional[bool] = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.faults: Counter = Counter()
        self.last_violation = ""
        self.violations = 0
        self.lines = 0
        self.duration: Optional[float] = None
        self.steps: Optional[int] = None
        self.scenario = ""

    def start(self, orch: Any) -> None:
        self.duration = orch.opts.duration
        self.steps = orch.opts.steps
        self.scenario = orch.opts.scenario
        if self.live:
            self.stream.write("pyccl stress: scenario %s, seed %d, %d peers,"
                              " logs in %s\n" % (
                                  orch.opts.scenario, orch.opts.seed,
                                  orch.opts.peers, orch.run_dir))
            self.stream.flush()

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def violation(self, v: Any) -> None:
        self.violations += 1
        self.last_violation = "%s at %.1fs: %s" % (v.kind, v.t, v.message)

    def note(self, text: str) -> None:
        if self.live:
            self._clear()
            self.stream.write(text + "\n")
            self.stream.flush()

    def _clear(self) -> None:
        if self.lines:
            self.stream.write("\x1b[%dA\x1b[J" % self.lines)
            self.lines = 0

    def sample(self, orch: Any, point: Dict[str, Any]) -> None:
        if not self.live:
            return
        t = point["t"]
        if self.duration:
            frac = min(1.0, t / self.duration)
            total = "%.0fs" % self.duration
        elif self.steps:
            frac = min(1.0, orch.steps_done / self.steps)
            total = "%d steps" % self.steps
        else:
            frac, total = 0.0, "?"
        width = 30
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        faults = " ".join("%s %d" % (k, self.faults[k]) for k in FAULT_KINDS
                          if self.faults[k]) or "none yet"
        lines = [
            "[%s] %3.0f%%  %.0fs of %s" % (bar, frac * 100, t, total),
            "peers alive %d (stopped %d)  group %d members  epoch %d  "
            "ops/s %d  ops ok %d failed %d" % (
                point["live"], point["stopped"], point["members"],
                point["epoch"], point["ops_s"], orch.ledger.ops_ok,
                orch.ledger.ops_failed),
            "faults: %s" % faults,
            "violations %d%s" % (self.violations,
                                 ("  last: " + self.last_violation)[:160]
                                 if self.last_violation else ""),
        ]
        self._clear()
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self.lines = len(lines)

    def close(self) -> None:
        if self.live:
            self._clear()
            self.stream.flush()


__all__ = ["Display"]
