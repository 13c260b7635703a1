#!/usr/bin/env bash
# Failover latency: scheduler SIGKILLed -> its replacement runs the app, as a
# median over KILLS kills (default 120), beside a bare posix_spawn+execve of
# the same app measured in the same run. Writes bench/out/failover.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-120}
swift build -c release >&2
mkdir -p bench/out
cc -O2 -o bench/out/failover bench/failover.c
bin=.build/release
bench/out/failover "$bin/bellwether" "$bin/bellwether-exec" "$bin/bellwether-testworker" "$kills" \
    | tee bench/out/failover.txt
awk '/^bare/ { split($3, a, "="); bare = a[2] }
     /^fail/ { split($3, a, "="); fail = a[2] }
     END { printf "added by bellwether (median fail - median bare): %.1f us (goal <= 1000 us)\n", fail - bare }' \
    bench/out/failover.txt | tee -a bench/out/failover.txt
