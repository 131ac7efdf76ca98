#!/usr/bin/env bash
# Holds PODS idle pods (`stubborn`, asleep in a host call) at once on this machine, split over
# PROCESSES processes of the lifecycle benchmark, and reports the machine's memory in use
# before and while they are held, with each process's own figures.
#
# One process's pods are bounded by its open files (one per pod: its /tmp; RLIMIT_NOFILE's
# hard limit) and its memory mappings (about 4 per pod; vm.max_map_count, 65530 by default),
# so a machine whose limits are the defaults holds 100,000 pods in several processes.
#
#   host/benches/many-idle-pods.sh [PODS [PROCESSES]]     (default 100000 over 7)
set -euo pipefail
pods=${1:-100000}
processes=${2:-7}
per_process=$(((pods + processes - 1) / processes))
cd "$(dirname "$0")/../.."

bench=$(cargo bench -p wasmlet --bench lifecycle --no-run 2>&1 |
    grep -o 'target/release/deps/lifecycle-[0-9a-f]*' | tail -1)
work=$(mktemp -d)
trap 'touch "$work/release"; wait; rm -rf "$work"' EXIT

used() { free -b | awk '/^Mem:/ {print $3}'; }
before=$(used)
for process in $(seq "$processes"); do
    "$bench" --density-only --idle-pods "$per_process" --hold-until "$work/release" \
        > "$work/$process.log" 2>&1 &
done
# Every process has measured and holds its pods.
until [ "$(grep -l '^holding' "$work"/*.log 2>/dev/null | wc -l)" -eq "$processes" ]; do
    if [ "$(jobs -r | wc -l)" -lt "$processes" ]; then
        echo "a benchmark process ended early:" >&2
        cat "$work"/*.log >&2
        exit 1
    fi
    sleep 0.2
done
held=$(used)
touch "$work/release"
wait
trap 'rm -rf "$work"' EXIT

total=$((per_process * processes))
echo "$total idle pods held at once in $processes processes of $per_process:"
echo "  machine memory in use: $((before / 1048576)) MiB before, $((held / 1048576)) MiB while held:" \
    "$(((held - before) / total / 1024)) KiB per pod"
for process in $(seq "$processes"); do
    echo "  process $process: $(grep -h '^Density' "$work/$process.log" | cut -d: -f2- | cut -d';' -f1)"
done
