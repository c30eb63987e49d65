"""The wide-area benchmark's numbers: rounds reduced to medians, the
table, the targets of issue 11.  Pure functions over the records that
:mod:`pyccl.bench.wan` collects; nothing here talks to a process.

A record of one op is ``{"variant", "round", "time_s", "ranks": [...]}``,
``time_s`` running from the moment the *last* rank entered the op to the
moment the last rank left it (every namespace reads the same monotonic
clock), so the skew with which ranks leave the barrier before it is not
counted.
"""
from __future__ import annotations

import statistics
from typing import Dict, List, Optional, TextIO

from pyccl.bench.wan_peer import VARIANTS

LABELS = {
    "auto": "pyccl K auto", "k1": "pyccl K=1", "k2": "pyccl K=2",
    "k4": "pyccl K=4", "k8": "pyccl K=8", "u8": "pyccl u8, K auto",
    "u4": "pyccl u4, K auto", "e3m0": "pyccl e3m0, K auto",
    "f16": "pyccl f16, K auto", "bf16": "pyccl bf16, K auto",
    "gloo": "torch gloo",
    "ring": "pyccl ring (forced)", "star": "pyccl star (forced)",
    "direct": "pyccl direct (forced)",
    "tuned": "pyccl auto, tuned",
    "u8-ring": "pyccl u8 ring (forced)", "u4-ring": "pyccl u4 ring (forced)",
    "e3m0-ring": "pyccl e3m0 ring (forced)",
}


def op_time(ranks: List[dict]) -> float:
    """Last rank in to last rank out."""
    return max(r["t1"] for r in ranks) - max(r["t0"] for r in ranks)


def check_op(variant: str, ranks: List[dict]) -> Optional[str]:
    """Why an op's results are wrong, or None: every rank must hold the
    same bytes, each within the format's bound of the exact sum."""
    digests = {r["digest"] for r in ranks}
    if len(digests) != 1:
        return "%s: ranks disagree (%d different results)" % (
            variant, len(digests))
    for i, r in enumerate(ranks):
        if not r["err"] <= r["bound"]:
            return "%s: rank %d is off by %g (bound %g)" % (
                variant, i, r["err"], r["bound"])
    return None


def summarise(records: List[dict], size: int, peers: int,
              rate_bps: float) -> Dict[str, dict]:
    """Per variant: median time, busbw, fraction of the link, speedups."""
    factor = 2.0 * (peers - 1) / peers
    rows: Dict[str, dict] = {}
    for variant in VARIANTS:
        times = [r["time_s"] for r in records if r["variant"] == variant]
        if not times:
            continue
        med = statistics.median(times)
        busbw = factor * size * 8 / med
        rows[variant] = {"times_s": times, "median_s": med,
                         "busbw_bps": busbw, "link_frac": busbw / rate_bps,
                         "max_err": max(r["max_err"] for r in records
                                        if r["variant"] == variant)}
    gloo = rows.get("gloo")
    plain = rows.get("auto")
    for variant, row in rows.items():
        row["vs_gloo"] = (gloo["median_s"] / row["median_s"]
                          if gloo else None)
        row["vs_plain"] = (plain["median_s"] / row["median_s"]
                           if plain and VARIANTS[variant][2] else None)
    return rows


def _fmt(x: Optional[float], spec: str) -> str:
    return "-" if x is None else spec % x


def print_table(rows: Dict[str, dict], out: TextIO) -> None:
    fmt = "%-24s %-22s %9s %10s %6s %8s %10s"
    print(fmt % ("variant", "seconds (rounds)", "median s", "busbw",
                 "link", "vs gloo", "vs f32"), file=out)
    print(fmt % ("", "", "", "Gbit/s", "", "x", "auto x"), file=out)
    for variant, row in rows.items():
        print(fmt % (LABELS[variant],
                     " ".join("%.2f" % t for t in row["times_s"]),
                     "%.3f" % row["median_s"],
                     "%.3f" % (row["busbw_bps"] / 1e9),
                     "%.0f%%" % (100 * row["link_frac"]),
                     _fmt(row["vs_gloo"], "%.2f"),
                     _fmt(row["vs_plain"], "%.2f")), file=out)
    print("busbw = 2(N-1)/N x f32 bytes x 8 / median (for quantized rows: "
          "the effective f32 bandwidth); link = busbw / the tbf rate; "
          "vs f32 = time of the unquantized default / this time",
          file=out, flush=True)


def targets(rows: Dict[str, dict], loss: float) -> List[tuple]:
    """(target, measured, met) for the issue's WAN targets that this run
    can judge (the loss targets only with loss, the others without)."""
    out = []
    auto = rows.get("auto")
    if auto is None:
        return out
    if loss > 0:
        if auto["vs_gloo"] is not None:
            out.append(("default >= 5x gloo with loss",
                        "%.2fx" % auto["vs_gloo"], auto["vs_gloo"] >= 5))
        return out
    out.append(("default >= 90% of link rate",
                "%.1f%%" % (100 * auto["link_frac"]),
                auto["link_frac"] >= 0.9))
    if auto["vs_gloo"] is not None:
        out.append(("default >= 3x gloo", "%.2fx" % auto["vs_gloo"],
                    auto["vs_gloo"] >= 3))
    for variant, need in (("u8", 3.5), ("u4", 6.0), ("e3m0", 6.0)):
        row = rows.get(variant)
        if row is not None and row["vs_plain"] is not None:
            out.append(("%s >= %gx unquantized effective bandwidth"
                        % (variant, need), "%.2fx" % row["vs_plain"],
                        row["vs_plain"] >= need))
    return out


def print_targets(results: List[tuple], out: TextIO) -> None:
    for name, got, met in results:
        print("target %-44s %8s  %s" % (name, got, "met" if met else
                                        "NOT met"), file=out)
    out.flush()


__all__ = ["LABELS", "op_time", "check_op", "summarise", "print_table",
           "targets", "print_targets"]
