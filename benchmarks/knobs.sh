#!/bin/sh
# Quick look at pyccl's knobs on loopback: --conns 2, --spin-us and
# --no-restore-input against the defaults, pyccl only, interleaved and
# repeated to see through noise.
# Usage: benchmarks/knobs.sh [rounds]   (writes /tmp/pyccl-knobs-*.json)
# Runs "python -m pyccl", so the pyccl found first on sys.path (the current
# directory, then PYTHONPATH) is the one measured.
set -e
rounds=${1:-2}
sizes=4,4K,64K,1M,4M,64M
for r in $(seq 1 "$rounds"); do
  for peers in 2 4; do
    for knob in "" "--conns 2" "--spin-us 0" "--spin-us 50" "--no-restore-input"; do
      tag=$(echo "n$peers $knob r$r" | tr -d ' -')
      echo "== round $r, N=$peers, ${knob:-defaults} (load $(cut -d' ' -f1 /proc/loadavg))"
      python -m pyccl bench --no-gloo --peers "$peers" --sizes "$sizes" $knob \
        --json "/tmp/pyccl-knobs-$tag.json" 2>/dev/null \
        | awk '$1 ~ /^[0-9]+[KMG]?$/ {print "  " $1, $3, $4, $5}
               /^phases:/ {print "  " $0}'
    done
  done
done
