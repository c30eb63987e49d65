"""Tables: everything ``pyccl bench`` prints on stdout.

The header says what runs and on what machine; one table per peer count
puts pyccl and gloo side by side (median time, bus bandwidth, the ratio),
followed by the memory and load lines; a failure is one paragraph that
names the library, peer count, rank and command.  The functions take the
records built by :mod:`pyccl.bench.summary` and only format them.
"""
from __future__ import annotations

from typing import List, Optional, TextIO

from pyccl.argtypes import format_size
from pyccl.bench.summary import bus_factor


def format_time(seconds: Optional[float]) -> str:
    """``"12.3 us"`` below a millisecond, else ``"4.56 ms"``."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return "%.1f us" % (seconds * 1e6)
    if seconds < 1.0:
        return "%.2f ms" % (seconds * 1e3)
    return "%.3f s" % seconds


def format_bw(gbps: Optional[float]) -> str:
    """GB/s with three significant digits."""
    if gbps is None:
        return "-"
    return "%.3g" % gbps


def print_table(peers: int, ours: dict, gloo: Optional[dict],
                out: TextIO) -> None:
    """The per-N table: pyccl and gloo side by side."""
    print("", file=out)
    print("N=%d peers (busbw = algbw * %.3g)" % (peers, bus_factor(peers)),
          file=out)
    header = ("size", "iters", "pyccl median", "pyccl busbw",
              "gloo median", "gloo busbw", "ratio")
    fmt = "%8s %6s %13s %12s %13s %12s %7s"
    print(fmt % header, file=out)
    print(fmt % ("", "", "", "GB/s", "", "GB/s", "g/p"), file=out)
    for i, row in enumerate(ours["rows"]):
        grow = gloo["rows"][i] if gloo else None
        ratio = ("%.2f" % (grow["median_s"] / row["median_s"])
                 if grow and row["median_s"] > 0 else "-")
        print(fmt % (format_size(row["size"]), row["iters"],
                     format_time(row["median_s"]),
                     format_bw(row["busbw_GBps"]),
                     format_time(grow["median_s"] if grow else None),
                     format_bw(grow["busbw_GBps"] if grow else None),
                     ratio), file=out)
    for result in (ours, gloo):
        if result is None:
            continue
        mem = result["memory_summary"]
        if mem is None:
            continue
        how = ("VmHWM" if "hwm_delta_bytes" in mem
               else "ru_maxrss")
        print("%-5s peak RSS increase during the first %s all-reduce "
              "(%s, max over peers): %.3fx the tensor = %.1f MiB "
              "(ru_maxrss %.3fx), over all timed ops %s; baseline RSS %.0f MiB "
              "(joining the group added %.1f MiB, earlier sizes left "
              "%.1f MiB)"
              % (result["library"], format_size(mem["size"]), how,
                 mem["delta_x"], mem["delta_bytes"] / 2**20,
                 mem["maxrss_delta_x"],
                 "%.3fx" % mem["timed_delta_x"] if "timed_delta_x" in mem
                 else "-",
                 mem["baseline_rss_bytes"] / 2**20,
                 mem["group_rss_bytes"] / 2**20,
                 mem["retained_rss_bytes"] / 2**20), file=out)
    phases = []
    for result in (ours, gloo):
        if result is None:
            continue
        foreign = result.get("foreign_cpus")
        phases.append("%s %.1f s, load %.2f at start, other processes used "
                      "%s CPUs" % (result["library"], result["wall_s"],
                                   result["load_before"][0],
                                   "?" if foreign is None
                                   else "%.2f" % foreign))
    print("phases: %s" % "; ".join(phases), file=out)
    print("ratio g/p = gloo median / pyccl median (> 1: pyccl faster)",
          file=out, flush=True)


def print_mac_cost(plain: dict, mac: dict, out: TextIO,
                   what: str = "frame MAC") -> None:
    """Bandwidth lost to frame MACs (or to encryption, ``what``), size by
    size."""
    print("%s cost: size, busbw without / with, bandwidth lost" % what,
          file=out)
    for row, mrow in zip(plain["rows"], mac["rows"]):
        lost = 1.0 - row["median_s"] / mrow["median_s"]
        print("%8s %10s %10s %6.1f%%" % (format_size(row["size"]),
                                         format_bw(row["busbw_GBps"]),
                                         format_bw(mrow["busbw_GBps"]),
                                         100.0 * lost), file=out)


def print_header(record: dict, plan: List[tuple], out: TextIO) -> None:
    """What runs, where, with which options and iteration counts."""
    opts = record["options"]
    versions = record["pyccl"]
    torch_version = record["torch"]
    print("pyccl bench: all_reduce f32 sum in place, 127.0.0.1 loopback, "
          "%s CPUs, 1-min load %.2f" % (record["machine"]["cpus"],
                                        record["load_at_start"][0]),
          file=out)
    print("pyccl %s (core %s), algorithm %s, conns_per_peer %s, spin_us %s%s; "
          "gloo: %s" % (versions["version"], versions["c_version"],
                        opts["algorithm"], opts["conns"] or "default (automatic)",
                        "default (auto)" if opts["spin_us"] is None
                        else opts["spin_us"],
                        ", restore_input off" if opts["no_restore_input"]
                        else "",
                        "torch %s" % torch_version if torch_version
                        else "skipped (--no-gloo)" if opts["no_gloo"]
                        else "torch not importable, skipped"),
          file=out)
    print("ops %s; iterations per size (timed+warmup): %s" % (
        "each after a refill and a barrier" if opts["barrier_each_op"]
        else "back to back", ", ".join(
            "%s:%d+%dw" % (format_size(s), n, w) for s, n, w in plan)),
        file=out, flush=True)


def print_failure(info: dict, command: str, out: TextIO) -> None:
    """Where a run failed or hung, and the command to run it again."""
    print("\npyccl bench: FAILED (%s, N=%d peers, rank %d): %s"
          % (info["library"], info["peers"], info["rank"], info["message"]),
          file=out)
    for text in info.get("other_ranks", ()):
        print("also %s" % text, file=out)
    print("command: %s" % command, file=out, flush=True)


__all__ = ["format_time", "format_bw", "print_table", "print_mac_cost",
           "print_header", "print_failure"]
