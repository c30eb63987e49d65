"""Summaries of a phase: the peers' raw times and memory probes reduced
to one row per size (median of the slowest rank per op, algbw, busbw) and
one memory figure per library.  Nothing here prints or talks to peers.
"""
from __future__ import annotations

import os
import statistics
from typing import Dict, List, Optional


def bus_factor(peers: int) -> float:
    """busbw / algbw of an all-reduce over ``peers`` ranks."""
    return 2.0 * (peers - 1) / peers if peers > 1 else 0.0


def summarise(library: str, peers: int, plan: List[tuple],
              reports: Dict[int, dict], load_before: tuple,
              wall: float) -> dict:
    """A phase's result: one row per size of the plan, every rank's raw
    times, the memory probes and their summary, the load around it."""
    rows = []
    for i, (size, iters, warmup) in enumerate(plan):
        per_rank = [reports[r]["sizes"][i]["times_s"] for r in range(peers)]
        # An iteration ends when its slowest rank is done.
        slowest = [max(ts) for ts in zip(*per_rank)]
        median = statistics.median(slowest)
        algbw = size / median / 1e9 if median > 0 else 0.0
        rows.append({"size": size, "iters": iters, "warmup": warmup,
                     "median_s": median, "min_s": min(slowest),
                     "max_s": max(slowest),
                     "algbw_GBps": algbw,
                     "busbw_GBps": algbw * bus_factor(peers),
                     "times_s": per_rank})
    memory = [reports[r]["memory"] for r in range(peers)]
    return {"library": library, "peers": peers, "rows": rows,
            "memory": memory, "memory_summary": memory_summary(memory),
            "load_before": list(load_before),
            "load_after": list(os.getloadavg()), "wall_s": wall}


def memory_summary(memory: List[Optional[dict]]) -> Optional[dict]:
    """Peak RSS increase above the baseline, max over peers."""
    if not memory or any(m is None for m in memory):
        return None
    size = memory[0]["size"]
    hwm = [(m["hwm_after_kib"] - m["rss_before_kib"]) * 1024
           for m in memory
           if m["hwm_reset"] and m["hwm_after_kib"] is not None
           and m["rss_before_kib"] is not None]
    # Resetting VmHWM resets ru_maxrss too, so after a reset ru_maxrss is
    # compared with its value just after the reset.
    maxrss = [(m["maxrss_after_kib"]
               - (m["maxrss_reset_kib"] if m["hwm_reset"]
                  else m["maxrss_before_kib"])) * 1024
              for m in memory]
    kib = [(m["rss_before_kib"] or 0, m["rss_start_kib"] or 0,
            m["rss_group_kib"] or 0) for m in memory]
    out = {"size": size,
           # RSS at the baseline (tensor included), and what joining the
           # group added to the process (after imports, before any buffer).
           "baseline_rss_bytes": max(k[0] for k in kib) * 1024,
           "group_rss_bytes": max(k[2] - k[1] for k in kib) * 1024,
           # Baseline minus the tensor minus the RSS right after joining:
           # what the earlier sizes left behind (library caches, malloc
           # arenas, the benchmark's own 6.5 MiB of pattern blocks).
           "retained_rss_bytes": max(k[0] - k[2] for k in kib) * 1024 - size,
           "maxrss_delta_bytes": max(maxrss),
           "maxrss_delta_x": max(maxrss) / size}
    if len(hwm) == len(memory):
        out["hwm_delta_bytes"] = max(hwm)
        out["hwm_delta_x"] = max(hwm) / size
    # VmHWM is exact when it could be reset; ru_maxrss cannot be reset and
    # misses peaks below an earlier high-water mark.
    out["delta_bytes"] = out.get("hwm_delta_bytes", out["maxrss_delta_bytes"])
    out["delta_x"] = out["delta_bytes"] / size
    # The same over all the timed ops (back to back, unless
    # --barrier-each-op), above the RSS before the first of them.
    timed = [(m.get("timed_hwm_after_kib") - m["timed_rss_before_kib"]) * 1024
             for m in memory if m.get("timed_hwm_after_kib") is not None
             and m.get("timed_rss_before_kib") is not None]
    if len(timed) == len(memory):
        out["timed_delta_bytes"] = max(timed)
        out["timed_delta_x"] = max(timed) / size
    return out




__all__ = ["summarise", "memory_summary", "bus_factor"]
