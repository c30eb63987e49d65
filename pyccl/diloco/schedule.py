"""When each fragment is sent and when its result is merged.

Steps are counted from 1 (step s: the s-th inner step is done).  With H
inner steps per round and P fragments, fragment p is *sent* after every
step s with ``s % H == (p * H // P) % H`` (s >= 1), and *merged* tau steps
later (tau = 0: at once, the inner loop waits for the all-reduce).

P * tau <= H keeps at most one fragment in flight: fragment p's merge
comes no later than fragment p+1's send (when both fall on the same step,
the merge goes first).  The whole failure handling relies on that
(docs/diloco.md, "Fault model").
"""
from __future__ import annotations

from typing import List


class Schedule:
    """The send/merge timetable of ``fragments`` fragments over rounds of
    ``sync_every`` inner steps with ``overlap`` steps of overlap."""

    def __init__(self, sync_every: int, fragments: int = 1,
                 overlap: int = 0) -> None:
        if sync_every < 1:
            raise ValueError("sync_every (H) must be >= 1")
        if fragments < 1 or fragments > sync_every:
            raise ValueError("fragments (P) must be in 1..H")
        if overlap < 0 or fragments * overlap > sync_every:
            raise ValueError("overlap (tau) must be in 0..H/P (P * tau <= H "
                             "keeps at most one fragment in flight)")
        self.sync_every = sync_every
        self.fragments = fragments
        self.overlap = overlap
        self.offsets = [(p * sync_every // fragments) % sync_every
                        for p in range(fragments)]

    def sends_at(self, step: int) -> List[int]:
        """Fragments sent after inner step ``step``."""
        if step < 1:
            return []
        r = step % self.sync_every
        return [p for p, o in enumerate(self.offsets) if o == r]

    def merges_at(self, step: int) -> List[int]:
        """Fragments whose all-reduce is waited for and merged after inner
        step ``step`` (before the sends of that step)."""
        return self.sends_at(step - self.overlap)

    def table(self, steps: int) -> List[tuple]:
        """(step, "send"|"merge", fragment) for steps 1..steps, in the
        order the engine runs them (tests and docs)."""
        out = []
        for s in range(1, steps + 1):
            if self.overlap:
                out += [(s, "merge", p) for p in self.merges_at(s)]
            for p in self.sends_at(s):
                out.append((s, "send", p))
                if not self.overlap:
                    out.append((s, "merge", p))
        return out
