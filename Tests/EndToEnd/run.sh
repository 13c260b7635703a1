#!/usr/bin/env bash
# End-to-end tests of the README demo: the real binary running the Python demo
# app. Prints "N passed, M failed" and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
bin=${BELLWETHER_BIN:-.build/debug/bellwether}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0
failed=0

check() {  # check NAME CONDITION...
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/    | /' "$out/log" 2>/dev/null | tail -n 30
    fi
}

wait_for() {  # wait_for SECONDS CONDITION...
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.1
    done
}

ticking_pids() { grep -E '] tick [0-9]+' "$out/log" | sed -E 's/.*pid ([0-9]+).*/\1/' | sort -u; }
ticks_of_gen() { grep -E "gen $1\] tick" "$out/log" | wc -l; }
has() { grep -q -- "$1" "$out/log"; }
at_least() { [ "$(ticks_of_gen "$1")" -ge "$2" ]; }

# The demo: three workers, one scheduler that ticks, the others idle.
"$bin" -w 3 --timezone Asia/Shanghai --lease "file:$out/token" -- python3 examples/demo.py >"$out/log" 2>&1 &
master=$!
wait_for 15 at_least 0 3
check "three workers start" [ "$(grep -o 'started as' "$out/log" | wc -l)" -eq 3 ]
check "exactly one of them is the scheduler" [ "$(grep -o 'started as scheduler' "$out/log" | wc -l)" -eq 1 ]
check "the scheduler sees TZ" has "TZ=Asia/Shanghai"
check "only one process ticks" [ "$(ticking_pids | wc -l)" -eq 1 ]

# SIGKILL the scheduler: one new scheduler ticks in its place.
old=$(ticking_pids)
kill -KILL "$old"
wait_for 10 has "scheduler 0 (pid $old) exited with signal KILL"
sleep 2.5
check "a killed scheduler is replaced" [ "$(ticking_pids | wc -l)" -eq 2 ]
last_two=$(grep -E '] tick' "$out/log" | tail -n 2 | sed -E 's/.*pid ([0-9]+).*/\1/' | sort -u | wc -l)
check "and only the new one ticks" [ "$last_two" -eq 1 ]

# HUP: a new generation, whose scheduler ticks; the old one stopped first.
kill -HUP "$master"
wait_for 15 at_least 1 2
check "reload starts generation 1" has "reload finished: generation 1"
check "generation 1 ticks" at_least 1 2
last_gen0=$(grep -nE 'gen 0\] got TERM' "$out/log" | grep -E 'worker 0/' | head -n 1 | cut -d: -f1)
first_gen1=$(grep -nE 'gen 1\] tick' "$out/log" | head -n 1 | cut -d: -f1)
check "the old scheduler exits before the new one ticks" [ -n "$last_gen0" ] && [ "$last_gen0" -lt "$first_gen1" ]

# TERM: graceful stop, exit status 0.
kill -TERM "$master"
wait "$master"
status=$?
check "TERM stops the master with status 0" [ "$status" -eq 0 ]
# (Counted after the stop began: the reload's stand-in for slot 0 got TERM earlier.)
check "every worker got TERM" [ "$(sed -n '/graceful stop/,$p' "$out/log" | grep -c 'gen 1\] got TERM')" -eq 3 ]

# The HTTP demo: served on the inherited socket by several workers, and a
# reload under a client loop refuses or fails no request.
"$bin" -w 3 -b 127.0.0.1:0 --ready notify --lease "file:$out/token2" -- python3 examples/demo.py >"$out/log" 2>&1 &
master=$!
wait_for 15 has "generation 0 is ready"
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$out/log" | head -n 1 | cut -d: -f2)
cat >"$out/client.py" <<'PY'
import json, sys, time, urllib.request
# client.py PORT SECONDS [PIDS]: requests for SECONDS, or with PIDS until that
# many workers have answered (at most 10 s more), so that a loaded machine
# makes it wait rather than fail.
port, seconds = sys.argv[1], float(sys.argv[2])
want = int(sys.argv[3]) if len(sys.argv) > 3 else 0
start = time.monotonic()
ok, failed, pids, generations, errors = 0, 0, set(), set(), []
while time.monotonic() < start + seconds or (len(pids) < want and time.monotonic() < start + seconds + 10):
    try:
        answer = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5))
        ok += 1
        pids.add(answer["pid"])
        generations.add(answer["generation"])
    except Exception as error:
        failed += 1
        errors.append(f"{time.monotonic() - start:.2f}s {error!r}")
print(f"ok={ok} failed={failed} pids={len(pids)} generations={','.join(sorted(generations))}")
for error in errors[:5]:
    print("  " + error)
PY
python3 "$out/client.py" "$port" 1 2 >"$out/client1"
check "the HTTP demo answers from several workers" grep -qE 'failed=0 pids=[23] ' "$out/client1" \
    || cat "$out/client1"
python3 "$out/client.py" "$port" 5 >"$out/client2" &
client=$!
sleep 1
kill -HUP "$master"
wait "$client"
check "a reload under load fails no request and serves generation 1" \
    grep -qE 'failed=0 .*generations=0,1$' "$out/client2" || cat "$out/client2"
kill -TERM "$master"
wait "$master"
check "the HTTP demo stops with status 0" [ $? -eq 0 ]

# --check-config validates without starting anything.
"$bin" --check-config -w 2 -- python3 examples/demo.py >"$out/log" 2>&1
check "--check-config accepts the demo" has "configuration OK"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
