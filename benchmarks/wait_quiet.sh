#!/bin/sh
# Waits until the 1-minute load average drops below a threshold (default
# 1.0), polling every 15 s for at most a given time (default 600 s), then
# runs the given command.  Prints the load it started under either way.
# Usage: benchmarks/wait_quiet.sh [-l 1.0] [-t 600] -- pyccl bench ...
limit=1.0 max=600
while [ $# -gt 0 ]; do
  case "$1" in
    -l) limit=$2; shift 2 ;;
    -t) max=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
waited=0
while :; do
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v a="$load" -v b="$limit" 'BEGIN { exit !(a < b) }'; then
    echo "wait_quiet: load $load < $limit after ${waited}s" >&2
    break
  fi
  if [ "$waited" -ge "$max" ]; then
    echo "wait_quiet: load still $load after ${waited}s; running anyway" >&2
    break
  fi
  sleep 15; waited=$((waited + 15))
done
echo "wait_quiet: $(uptime)" >&2
[ $# -gt 0 ] && exec "$@"
