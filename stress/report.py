"""What a run leaves: the final table, the JSON report, the PNG timeline,
and, on a violation, the seed, the command that replays it and each
involved peer's log tail."""
from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Dict, List, Optional, TextIO

from stress.ledger import VIOLATION_KINDS
from stress.scenarios import repro_command
from stress.schedule import FAULT_KINDS
from stress.workload import KIND_NAMES


def _ms(x: Optional[float]) -> str:
    return "-" if x is None else "%.0f ms" % (x * 1000)


def _row(name: str, value: str) -> str:
    return "  %-26s %s" % (name, value)


def violation_counts(orch: Any) -> Counter:
    return Counter(v.kind for v in orch.ledger.violations)


def final_table(orch: Any) -> str:
    """The table printed at the end of every run."""
    o, led, s = orch.opts, orch.ledger, orch.summary
    inj = s["injected"]
    lines = ["", "pyccl stress: scenario %s, seed %d, %d peers, %.0f s (%s)"
             % (o.scenario, o.seed, o.peers, s["wall"], s.get("loop", "?"))]
    kinds = ", ".join("%s %d" % (KIND_NAMES[k], n) for k, n in
                      sorted(led.kinds_ok.items()))
    lines.append(_row("ops", "%d ok, %d failed, %d compared across members"
                      % (led.ops_ok, led.ops_failed, led.compared)))
    lines.append(_row("ops ok by kind", kinds or "-"))
    if led.errors:
        lines.append(_row("failed ops by error", ", ".join(
            "%s %d" % kv for kv in led.errors.most_common())))
    lines.append(_row("data verified", "%.1f GiB" % (led.bytes_ok / 2**30)))
    fk = []
    for k in FAULT_KINDS:
        if inj.get(k):
            extra = ""
            if k == "stop":
                extra = " (cont %d, kill %d)" % (inj.get("stop-cont", 0),
                                                 inj.get("stop-kill", 0))
            if k == "join":
                extra = " (replacements %d)" % s["replacements"]
            fk.append("%s %d%s" % (k, inj[k], extra))
    lines.append(_row("faults injected", ", ".join(fk) or "none"))
    if s["skipped"]:
        lines.append(_row("faults skipped", ", ".join(
            "%s %d" % kv for kv in sorted(s["skipped"].items()))))
    lines.append(_row("recoveries", "%d epochs formed, %d peers dropped by "
                      "the master (%d of them healthy)" % (
                          len(led.group_members), led.rejections,
                          s["healthy_drops"])))
    for kind, r in sorted(s["recovery"].items()):
        lines.append(_row("recovery after %s" % kind,
                          "n %d  p50 %s  p99 %s  max %s" % (
                              r["n"], _ms(r["p50"]), _ms(r["p99"]),
                              _ms(r["max"]))))
    if s.get("slowest"):
        lines.append(_row("slowest recoveries", ", ".join(
            "%s of peer %s at %.1fs: %.2f s" % (x["kind"], x["victim"],
                                                x["t"], x["recovery"])
            for x in s["slowest"][:3])))
    jl = s["join_latency"]
    if jl["n"]:
        lines.append(_row("join to first op", "n %d  p50 %s  p99 %s  max %s"
                          % (jl["n"], _ms(jl["p50"]), _ms(jl["p99"]),
                             _ms(jl["max"]))))
    mr = s["master_reconnect"]
    if mr["n"]:
        lines.append(_row("master restart reconnect",
                          "n %d  p50 %s  p99 %s  max %s" % (
                              mr["n"], _ms(mr["p50"]), _ms(mr["p99"]),
                              _ms(mr["max"]))))
    vc = violation_counts(orch)
    lines.append(_row("hangs", str(vc.get("hang", 0))))
    lines.append(_row("disagreements", str(vc.get("disagreement", 0)
                                           + vc.get("membership", 0)
                                           + vc.get("state_divergence", 0))))
    lines.append(_row("wrong results", str(vc.get("wrong_result", 0))))
    lines.append(_row("inputs not restored",
                      str(vc.get("input_not_restored", 0))))
    lines.append(_row("uninjected crashes/exits",
                      str(vc.get("uninjected_exit", 0))))
    others = {k: n for k, n in vc.items() if k not in (
        "hang", "disagreement", "membership", "state_divergence",
        "wrong_result", "input_not_restored", "uninjected_exit")}
    lines.append(_row("other violations", ", ".join(
        "%s %d" % kv for kv in sorted(others.items())) or "0"))
    cpu = s["cpu"] / max(s["wall"], 1e-9) * 100
    lines.append(_row("orchestrator CPU", "%.1f%% of one core (%.1f s CPU in "
                      "%.0f s)" % (cpu, s["cpu"], s["wall"])))
    for note in s["notes"]:
        lines.append(_row("note", note))
    lines.append(_row("logs", s["run_dir"]))
    verdict = "INTERRUPTED" if s["interrupted"] else (
        "FAIL: %d violation(s)" % len(led.violations) if led.violations
        else "PASS")
    lines.append(_row("verdict", verdict))
    return "\n".join(lines) + "\n"


def violation_report(orch: Any, limit: int = 20) -> str:
    """Each violation, the replay command and the involved logs' tails."""
    led = orch.ledger
    if not led.violations:
        return ""
    out = ["", "Violations (%d):" % len(led.violations)]
    for v in led.violations[:limit]:
        out.append("  [%s] t=%.1fs %s" % (v.kind, v.t, v.message))
    if len(led.violations) > limit:
        out.append("  ... %d more in the JSON report"
                   % (len(led.violations) - limit))
    first = min(v.t for v in led.violations)
    d = orch.opts.duration
    cut = None if d is None else min(d, math.ceil(first + 10))
    out.append("")
    out.append("Seed %d.  To replay the schedule up to the first violation:"
               % orch.opts.seed)
    out.append("  " + repro_command(orch.opts, cut))
    shown = set()
    for v in led.violations[:limit]:
        for pid_, tail in getattr(v, "tails", {}).items():
            if pid_ in shown or not tail:
                continue
            shown.add(pid_)
            out.append("")
            out.append("Log tail of peer %d (%s/peer-%d.log):" % (
                pid_, orch.run_dir, pid_))
            out.extend("  | " + line for line in tail)
    out.append("")
    out.append("Logs of every process: %s" % orch.run_dir)
    return "\n".join(out) + "\n"


def json_report(orch: Any) -> Dict[str, Any]:
    o, led, s = orch.opts, orch.ledger, orch.summary
    return {
        "scenario": o.scenario, "seed": o.seed, "peers": o.peers,
        "duration": o.duration, "steps": o.steps,
        "command": repro_command(o),
        "passed": not led.violations and not s["interrupted"],
        "interrupted": s["interrupted"], "loop": s.get("loop"),
        "ops": {"ok": led.ops_ok, "failed": led.ops_failed,
                "compared": led.compared, "bytes_ok": led.bytes_ok,
                "errors": dict(led.errors),
                "ok_by_kind": {KIND_NAMES[k]: n
                               for k, n in led.kinds_ok.items()}},
        "faults": {"injected": s["injected"], "skipped": s["skipped"],
                   "list": [{"kind": f.kind, "t": round(f.t - orch.t0, 3),
                             "victim": f.victim, "detail": f.detail,
                             "recovery": getattr(f, "recovery", None)}
                            for f in led.faults]},
        "slowest_recoveries": s.get("slowest", []),
        "recovery": s["recovery"], "join_latency": s["join_latency"],
        "master_reconnect": s["master_reconnect"],
        "epochs": len(led.group_members), "rejections": led.rejections,
        "healthy_drops": s["healthy_drops"],
        "excused_differences": led.excused_differences,
        "excused_list": led.excused_list,
        "violations": [v.to_dict() for v in led.violations],
        "violation_counts": dict(violation_counts(orch)),
        "orchestrator_cpu": {"cpu_s": s["cpu"], "wall_s": s["wall"],
                             "share_of_one_core": s["cpu"] / max(
                                 s["wall"], 1e-9)},
        "timeline": orch.timeline, "marks": orch.marks,
        "notes": s["notes"], "run_dir": s["run_dir"],
        "peers_spawned": s["peers_spawned"],
        "master_starts": s["master_starts"],
    }


def write_json(orch: Any, path: str) -> None:
    with open(path, "w") as f:
        json.dump(json_report(orch), f, indent=1)


_COLORS = {"kill": "tab:red", "stop": "tab:orange", "leave": "tab:green",
           "join": "tab:blue", "storm": "tab:cyan", "master": "black",
           "drop": "tab:purple", "delay": "tab:olive",
           "partition": "tab:brown"}


def write_png(orch: Any, path: str) -> Optional[str]:
    """The timeline (membership, ops/s, fault marks); returns why not when
    matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no PNG timeline " \
               "(pip install matplotlib)"
    tl = orch.timeline
    t = [p["t"] for p in tl]
    fig, (ax1, ax2, ax3) = plt.subplots(
        3, 1, figsize=(12, 7), sharex=True,
        gridspec_kw={"height_ratios": [3, 2, 2]})
    ax1.step(t, [p["members"] for p in tl], where="post",
             label="members of the largest group")
    ax1.step(t, [p["live"] for p in tl], where="post", alpha=0.6,
             label="live peer processes")
    ax1.set_ylabel("peers")
    ax2.plot(t, [p["ops_s"] for p in tl], color="tab:gray", lw=0.8)
    ax2.set_ylabel("ops/s (all peers)")
    # One row of marks per fault kind, violations on the top row.
    rows = [k for k in _COLORS if any(m["kind"] == k for m in orch.marks)]
    rows.append("violation")
    for m in orch.marks:
        kind = m["kind"]
        row = "violation" if kind.startswith("violation:") else kind
        if row not in rows:
            continue
        ax3.plot([m["t"]], [rows.index(row)], "|" if row != "violation"
                 else "x", color=_COLORS.get(row, "red"), ms=10)
    ax3.set_yticks(range(len(rows)))
    ax3.set_yticklabels(rows, fontsize=8)
    ax3.set_ylim(-0.5, len(rows) - 0.5)
    ax3.set_xlabel("seconds")
    ax1.legend(loc="lower left", fontsize=7)
    ax1.set_title("pyccl stress: %s, seed %d" % (orch.opts.scenario,
                                                  orch.opts.seed))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


__all__ = ["final_table", "violation_report", "json_report", "write_json",
           "write_png"]
