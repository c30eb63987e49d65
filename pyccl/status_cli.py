"""``pyccl status --master HOST:PORT``: the master's view as a table.

HOST:PORT is the master's HTTP port (``pyccl master --http-port``), read
with a plain HTTP GET of ``/stats.json``.  On a terminal the table is
redrawn every ``--interval`` seconds until Ctrl-C; when the output is not
a terminal (a pipe, a file), or with ``--once``, it is printed once.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Sequence, TextIO

DESCRIPTION = ("Shows a running master's group as a table (members, ops, "
               "bytes, per-link rate and round trip, slow links), from the "
               "master's HTTP port (pyccl master --http-port).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", required=True, metavar="HOST:PORT",
                        help="the master's HTTP address (its --http-port)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between refreshes (default 1)")
    parser.add_argument("--once", action="store_true",
                        help="print once and exit (the default when the "
                             "output is not a terminal)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="HTTP timeout in seconds (default 5)")


def fetch(address: str, timeout: float = 5.0) -> Dict[str, Any]:
    """The master's ``/stats.json``, as a dict."""
    url = address if "://" in address else "http://%s" % address
    with urllib.request.urlopen(url.rstrip("/") + "/stats.json",
                                timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return ("%.0f %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1000.0
    return str(n)


def _table(rows: List[List[str]], heads: List[str]) -> List[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(heads)]
    fmt = "  ".join("%%-%ds" % w for w in widths)
    return [fmt % tuple(heads)] + [fmt % tuple(r) for r in rows]


def render(doc: Dict[str, Any]) -> str:
    """The table for one ``/stats.json`` document."""
    members = doc.get("members", [])
    links = doc.get("links", [])
    flagged = doc.get("flagged", [])
    lines = ["pyccl master: epoch %d, %d member(s) reporting, %.1f ops/s, "
             "%s/s sent, %d slow link(s)" % (
                 doc.get("epoch", 0), len(members), doc.get("ops_per_s", 0.0),
                 _bytes(doc.get("tx_bytes_per_s", 0.0)), len(flagged)), ""]
    lines += _table([[str(m["rank"]), str(m["epoch"]), m["addr"],
                      str(m["ops_ok"]), str(m["ops_failed"]),
                      _bytes(m["tx_bytes"]), _bytes(m["rx_bytes"]),
                      "%.1fs" % m["age"]] for m in members],
                    ["RANK", "EPOCH", "ADDRESS", "OPS", "FAILED", "SENT",
                     "RECEIVED", "REPORT AGE"])
    lines.append("")
    lines += _table([["%d -> %d" % (l["src"], l["dst"]),
                      _bytes(l["rx_rate"]) + "/s" if l["rx_rate"] else "-",
                      "%.0f us" % (l["rtt"] * 1e6) if l["rtt"] else "-",
                      str(l["samples"]), "%.1f" % l["z"],
                      "SLOW" if l["slow"] else ""] for l in links],
                    ["LINK", "RATE", "RTT", "SAMPLES", "Z", ""])
    return "\n".join(lines)


def run(address: str, interval: float = 1.0, once: bool = False,
        timeout: float = 5.0, out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    live = not once and out.isatty()
    try:
        while True:
            try:
                text = render(fetch(address, timeout))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                print("pyccl status: cannot read %s: %s" % (address, exc),
                      file=sys.stderr)
                return 1
            if live:
                out.write("\x1b[H\x1b[2J")  # home, clear screen
            out.write(text + "\n")
            out.flush()
            if not live:
                return 0
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


def run_args(args: argparse.Namespace) -> int:
    return run(args.master, args.interval, args.once, args.timeout)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pyccl status",
                                     description=DESCRIPTION)
    add_arguments(parser)
    return run_args(parser.parse_args(argv))


__all__ = ["fetch", "render", "run", "main"]
