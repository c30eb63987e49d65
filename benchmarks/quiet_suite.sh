#!/usr/bin/env bash
# The benchmarks whose numbers the issues' closing notes quote, in one go,
# for a quiet machine (waits for the load to drop first, up to 10 min):
# recovery after kills, loopback all-reduce against gloo, the torch
# backend against gloo.  Output: one file per benchmark in $OUT (default
# /tmp/pyccl-quiet).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/pyccl-quiet}
mkdir -p "$OUT"
sh benchmarks/wait_quiet.sh -l 1.5 -t 600 -- true
uptime | tee "$OUT/uptime-start.txt"
python3 benchmarks/recovery.py --peers 4 --kills 30 --repeat 2 --state-mib 64 \
    | tee "$OUT/recovery.txt"
python3 -m pyccl bench --peers 2,4 --sizes 4,4M,64M | tee "$OUT/loopback.txt"
python3 benchmarks/torch_bench.py --peers 2,4 | tee "$OUT/torch.txt"
uptime | tee "$OUT/uptime-end.txt"
