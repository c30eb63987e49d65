"""The master under a many-address flood at the size of issue 14's target
(256 source addresses x 100 connections = 25,600), larger than the test
suite's (tests/test_master_flood.py, 256 x 20 held plus a wave): how long
a legitimate peer takes to register while the flood is held and while a
second wave arrives, and the master's CPU meanwhile.

The flood is opened by helper processes (each holds its share of the
sockets: one process may not hold 25,600 files under a 20,000 limit),
from 127.0.i.9, i < --sources, to a master in its own process (its CPU
is read from /proc).  Loopback only.

    python benchmarks/master_flood.py [--sources 256] [--per-source 100]
                                      [--procs 4] [--tries 5]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.test_master_flood import (cpu_seconds, register_alone,  # noqa: E402
                                     silent_connections, start_master)


def _hold(port: int, sources: int, per_source: int, ready, release) -> None:
    """Opens sources x per_source silent connections and holds them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = silent_connections(port, sources, per_source)
    ready.put(len(socks))
    release.wait(600)
    for s in socks:
        s.close()


def flood(port: int, sources: int, per_source: int, procs: int):
    """Starts the helpers; returns (their handles, the release event,
    how many connections they opened)."""
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Queue(), ctx.Event()
    shares = [per_source // procs + (1 if i < per_source % procs else 0)
              for i in range(procs)]
    ps = [ctx.Process(target=_hold, args=(port, sources, k, ready, release),
                      daemon=True) for k in shares if k]
    for p in ps:
        p.start()
    opened = sum(ready.get(timeout=300) for _ in ps)
    return ps, release, opened


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, default=256)
    ap.add_argument("--per-source", type=int, default=100)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--tries", type=int, default=5)
    a = ap.parse_args()
    proc, port = start_master()
    helpers = []
    try:
        t0 = time.monotonic()
        ps, release, opened = flood(port, a.sources, a.per_source, a.procs)
        helpers.append((ps, release))
        print("flood: %d connections from %d addresses opened in %.1f s"
              % (opened, a.sources, time.monotonic() - t0))
        time.sleep(1.0)
        c0, w0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(2.0)
        held_cpu = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - w0)
        held = [register_alone(port) for _ in range(a.tries)]
        # A second wave of the same size while peers register.
        c0, w0 = cpu_seconds(proc.pid), time.monotonic()
        ctx_t0 = time.monotonic()
        wave: list = []
        t = threading.Thread(target=lambda: wave.append(
            flood(port, a.sources, a.per_source, a.procs)))
        t.start()
        during = []
        while t.is_alive() or len(during) < a.tries:
            during.append(register_alone(port))
            time.sleep(0.1)  # registrations themselves cost the master CPU
            if time.monotonic() - ctx_t0 > 300:
                break
        t.join()
        wave_cpu_s = cpu_seconds(proc.pid) - c0
        wave_cpu = wave_cpu_s / (time.monotonic() - w0)
        if wave:
            helpers.append((wave[0][0], wave[0][1]))
        n_wave = wave[0][2] if wave else 0
        print("| phase | registrations | median | max | master CPU | CPU per flood connection |")
        print("|---|---|---|---|---|---|")
        print("| %d held | %d | %.3f s | %.3f s | %.0f%% | - |" % (
            opened, len(held), statistics.median(held), max(held), held_cpu * 100))
        print("| second wave of %d arriving | %d | %.3f s | %.3f s | %.0f%% | %.0f us |" % (
            n_wave, len(during), statistics.median(during),
            max(during), wave_cpu * 100, wave_cpu_s / max(n_wave, 1) * 1e6))
        return 0
    finally:
        for ps, release in helpers:
            release.set()
            for p in ps:
                p.join(10)
                if p.is_alive():
                    p.kill()
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
