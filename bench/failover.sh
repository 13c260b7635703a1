#!/usr/bin/env bash
# Failover latency: scheduler SIGKILLed -> its replacement runs the app, as a
# median over KILLS kills (default 100), beside a bare posix_spawn+execve of
# the same app measured in the same run at the same cadence (each after 1.1 s
# of idling). Takes about 4 minutes. Writes bench/out/failover.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-100}
swift build -c release >&2
mkdir -p bench/out
cc -O2 -o bench/out/failover bench/failover.c
bin=.build/release
bench/out/failover "$bin/bellwether" "$bin/bellwether-exec" "$bin/bellwether-testworker" "$kills" \
    | tee bench/out/failover.txt
awk '/^bare/ { split($3, a, "="); bare = a[2] }
     /^death/ { split($3, a, "="); death = a[2] }
     /^fail/ { split($3, a, "="); fail = a[2] }
     END { printf "added by bellwether (median fail - median bare): %.1f us (goal <= 1000 us)\n", fail - bare
           printf "of which the kernel exit + reap floor (median death): %.1f us\n", death }' \
    bench/out/failover.txt | tee -a bench/out/failover.txt
