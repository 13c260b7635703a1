#!/usr/bin/env python3
"""Requests/s and p99 latency of each Python server recipe under bellwether
(see bench/servers), on the same trivial app (examples/servers/app.py), with
the same number of workers, under wrk.

usage: servers.py BELLWETHER VENV [RUNS]
Runs every recipe RUNS times (default 5), in rotation so that a noisy moment
of the machine spreads over all of them, and prints a Markdown table of the
medians (min–max) on stdout.
"""
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_DIR = os.path.join(ROOT, "examples", "servers")
CONFIG = os.path.join(ROOT, "etc", "gunicorn.conf.py")
WORKERS = 2
THREADS, CONNECTIONS, SECONDS = 2, 16, 10


def recipes(venv):
    """name → (command under the master or alone, under bellwether?, --ready)."""
    bin_ = os.path.join(venv, "bin")
    python = os.path.join(bin_, "python")
    return {
        "gunicorn (sync)": ([f"{bin_}/gunicorn", "-c", CONFIG, "-w", "1", "app:wsgi"], True, "notify"),
        "gunicorn + UvicornWorker (uvicorn_drain)": ([f"{bin_}/gunicorn", "-c", CONFIG, "-w", "1", "-k",
                                                      "uvicorn_drain.UvicornWorker", "app:asgi"], True, "notify"),
        "hypercorn --bind fd://3": ([f"{bin_}/hypercorn", "--bind", "fd://3", "app:asgi"], True, "exec"),
        "hypercorn_fd3.py (hypercorn's Python API)": ([python, "hypercorn_fd3.py", "app:asgi"], True, "exec"),
        "uvicorn --fd 3 --no-access-log": ([f"{bin_}/uvicorn", "--fd", "3", "--no-access-log", "app:asgi"], True,
                                            "exec"),
        "uvicorn_fd3.py (uvicorn, socket as TCP)": ([python, "uvicorn_fd3.py", "app:asgi"], True, "exec"),
        "waitress_fd3.py": ([python, "waitress_fd3.py", "app:wsgi"], True, "exec"),
        # The peer: uvicorn binding the port itself, its own process manager.
        # uvicorn's access log is off throughout, as gunicorn's and hypercorn's are by default.
        "uvicorn --workers 2 --no-access-log, binding the port itself (no bellwether)": (
            [f"{bin_}/uvicorn", "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", "{port}",
             "--no-access-log", "app:asgi"], False, None),
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answering_pids(port, tries=40):
    """The pids that answered tries requests (each on a new connection)."""
    pids = set()
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                pids.add(json.loads(response.read())["pid"])
        except OSError:
            pass
    return pids


def wait_for(seconds, condition):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def seconds_of(value, unit):
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def measure(bellwether, command, supervised, ready, scratch):
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    if supervised:
        command = [bellwether, "-w", str(WORKERS), "-b", f"127.0.0.1:{port}", "--ready", ready, "--no-scheduler",
                   "--control-socket", os.path.join(scratch, "bench.ctl"), "--", *command]
    env = dict(os.environ, JOB_LOG=os.path.join(scratch, "jobs"), XDG_RUNTIME_DIR=scratch)
    env.pop("NOTIFY_SOCKET", None)
    with open(os.path.join(scratch, "server.log"), "a") as log:
        server = subprocess.Popen(command, cwd=APP_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        # Every worker serves, not only the first booted (as far as 40
        # requests show: the kernel may hand an idle pair's connections to one).
        if not wait_for(60, lambda: answering_pids(port)):
            raise RuntimeError(f"{command}: never answered")
        if not wait_for(20, lambda: len(answering_pids(port)) == WORKERS):
            print(f"{command[-1]}: fewer than {WORKERS} pids answered", file=sys.stderr)
        time.sleep(1)
        out = subprocess.run(["wrk", "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{SECONDS}s", "--latency",
                              f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = seconds_of(*re.search(r"\s99%\s+([\d.]+)(us|ms|s|m)\b", out).groups())
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, p99, (errors.group(1) if errors else "") + (f" non-2xx {non2xx.group(1)}" if non2xx else "")


def versions(venv):
    out = subprocess.run([os.path.join(venv, "bin", "pip"), "list", "--format=freeze"], capture_output=True,
                         text=True).stdout
    wanted = ("gunicorn", "uvicorn", "uvicorn-worker", "hypercorn", "waitress", "uvloop", "httptools")
    return ", ".join(line.replace("==", " ") for line in out.split() if line.split("==")[0].lower() in wanted)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    bellwether, venv = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) == 4 else 5
    table = recipes(venv)
    results = {name: [] for name in table}
    scratch = subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip()
    load_before = os.getloadavg()[0]
    for run in range(runs):
        for name, (command, supervised, ready) in table.items():
            results[name].append(measure(bellwether, command, supervised, ready, scratch))
            rate, p99, errors = results[name][-1]
            print(f"run {run + 1}: {name}: {rate:,.0f} req/s, p99 {p99 * 1000:.1f} ms {errors}", file=sys.stderr,
                  flush=True)
    load_after = os.getloadavg()[0]
    uname = platform.uname()
    print(f"Machine: {os.cpu_count()} cores, {uname.machine}, Linux {uname.release}; Python "
          f"{platform.python_version()}; {versions(venv)}. `wrk -t {THREADS} -c {CONNECTIONS} -d {SECONDS}s "
          f"--latency` against `bellwether -w {WORKERS}` (release build), {runs} runs of each in rotation, median "
          f"(min–max); load average {load_before:.1f} before, {load_after:.1f} after (other builds ran on the "
          f"same 2 cores).\n")
    print("| recipe | requests/s | p99 latency | socket errors |")
    print("|---|---|---|---|")
    for name, measured in results.items():
        rates = [rate for rate, _, _ in measured]
        p99s = [p99 * 1000 for _, p99, _ in measured]
        errors = "; ".join(sorted({e.strip() for _, _, e in measured if e.strip()})) or "none"
        print(f"| {name} | {statistics.median(rates):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) "
              f"| {statistics.median(p99s):.1f} ({min(p99s):.1f}–{max(p99s):.1f}) ms | {errors} |")


if __name__ == "__main__":
    main()
