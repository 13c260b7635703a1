#!/usr/bin/env bash
# Reload under load, gunicorn against bellwether, in one run on one machine,
# with the same app code (bench/app.py) and the same sync workers, so that only
# supervision differs:
#   gunicorn   -w 4 app:app
#   bellwether -w 4, each worker `gunicorn -w 1` on the socket the master
#              owns (gunicorn takes it from LISTEN_FDS by itself; adding
#              --bind fd://3 makes gunicorn 27 open fd 3 twice and exit)
# wrk loads each for DURATION seconds (default 30) while the master gets HUP
# every 3 s, and for 10 s without reloads. Reports failed requests, p99 latency
# and requests/s. A control run, N `gunicorn -w 1` on one shared socket with
# no supervisor (bench/shared_socket.py), shows what that layout costs alone.
# Set-up: installs wrk (Debian) and gunicorn (into bench/.venv) if missing.
# Writes bench/out/reload.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-30}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } >&2
[ -x bench/.venv/bin/gunicorn ] || { python3 -m venv bench/.venv && bench/.venv/bin/pip install -q gunicorn; } >&2
swift build -c release >&2
mkdir -p bench/out
out=bench/out/reload.txt
: >"$out"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_up() {  # wait_up PORT
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$1/" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench: nothing answers on port $1" >&2
    return 1
}

# run NAME PORT MASTER_PID [SECONDS]: wrk for $duration s with a HUP to
# MASTER every 3 s, or for SECONDS without any HUP.
run() {
    local name=$1 port=$2 master=$3 steady=${4:-}
    wait_up "$port"
    sleep 2
    wrk -t2 -c16 -d"${steady:-$duration}s" --latency "http://127.0.0.1:$port/" >"bench/out/wrk-$name.txt" &
    local load=$!
    local hups=0
    if [ -z "$steady" ]; then
        for _ in $(seq 3 3 $((duration - 1))); do
            sleep 3
            kill -HUP "$master"
            hups=$((hups + 1))
        done
    fi
    wait "$load"
    awk -v name="$name" -v hups="$hups" '
        /Socket errors/ { gsub(",", ""); errors = $4 + $6 + $8 + $10 }
        /Non-2xx/ { non2xx = $5 }
        /^ +99%/ { p99 = $2 }
        /requests in/ { requests = $1 }
        /Requests\/sec/ { rps = $2 }
        END { printf "%-18s requests=%d failed=%d p99=%s rps=%s hups=%d\n", name, requests, errors + non2xx, p99, rps, hups }
    ' "bench/out/wrk-$name.txt" | tee -a "$out"
}

app_dir=$(pwd)/bench
gunicorn=$(pwd)/bench/.venv/bin/gunicorn

# measure NAME COMMAND...: start a supervisor on $port, load it steady and
# under reloads, stop it.
measure() {
    local name=$1
    shift
    "$@" 2>"bench/out/$name.log" &
    local master=$!
    run "$name-steady" "$port" "$master" 10
    run "$name" "$port" "$master"
    kill -TERM "$master"; wait "$master" || true
}

port=$(free_port)
measure gunicorn "$gunicorn" -w 4 -b "127.0.0.1:$port" --chdir "$app_dir" --no-control-socket \
    --log-level warning app:app

# bellwether, one gunicorn sync worker per bellwether worker.
port=$(free_port)
measure bellwether .build/release/bellwether -w 4 -b "127.0.0.1:$port" --ready notify \
    --lease "file:bench/out/token" --chdir "$app_dir" -- "$gunicorn" -w 1 -c "$PWD/etc/gunicorn.conf.py" --no-control-socket \
    --log-level warning app:app

# Control: the same layout with no supervisor at all.
port=$(free_port)
(cd bench && exec python3 shared_socket.py "$port" 4 16 "$gunicorn") 2>bench/out/control.log &
control=$!
run 4x-gunicorn-w1 "$port" "$control" 10
wait "$control" || true
