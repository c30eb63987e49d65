"""Error of the quantized all-reduce per algorithm: RMS, mean and largest
error of the result against the exact (float64) sum, the ring against the
direct algorithm, rounding to nearest and stochastically
(docs/quantization.md, "Algorithms").  The ring runs twice: as between
hosts (shm=False: every hop encoded) and as on one host (shared memory:
its partial sums go raw, only the result is encoded).

    PYTHONPATH=. python benchmarks/quant_error.py [--peers 4]
        [--count 200000] [--formats u8,u4,e3m0]

Every rank holds standard normal values of its own (fixed seeds), so the
numbers are the same from run to run; they do not depend on the machine.
"""
from __future__ import annotations

import argparse

from tests import quant_workers as qw
from tests.peers import run_group


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--count", type=int, default=200_000)
    ap.add_argument("--formats", default="u8,u4,e3m0")
    a = ap.parse_args()
    print("%d peers, %d standard normal float32 values each, block 256"
          % (a.peers, a.count))
    print("%-6s %-8s %-12s %12s %12s %12s" % ("quant", "rounding", "algorithm",
                                           "rms error", "mean error",
                                           "max error"))
    runs = (("ring", False, "ring, hosts"), ("ring", True, "ring, 1 host"),
            ("direct", False, "direct"))
    for fmt in a.formats.split(","):
        for seed, rounding in ((0, "nearest"), (99, "stoch.")):
            for alg, shm, label in runs:
                r = run_group(a.peers, qw.quant_results, fmt, a.count, 3, 256,
                              False, alg, seed, star_max_bytes=65536,
                              shm=shm)[0]
                print("%-6s %-8s %-12s %12.4g %12.3g %12.4g" % (
                    fmt, rounding, label, r["rms_err"], r["mean_err"],
                    r["max_err"]))


if __name__ == "__main__":
    main()
