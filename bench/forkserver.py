#!/usr/bin/env python3
"""Memory and start time of workers forked by share/forkserver.py, against
the same app started as N plain interpreters, in the same run.

usage: python3 bench/forkserver.py GUARD PYTHON [--workers N] [--repeat R]
  GUARD   bellwether-exec (.build/release/bellwether-exec)
  PYTHON  an interpreter with flask installed (.venv/bin/python)

Each worker imports flask, builds an app and runs a full collection (as any
worker that allocates soon does), then sleeps. Reported, median of R runs:
the PSS of the N workers together (the server's own PSS added for the fork
server: it holds the pages they share), their private memory, and the time
from the order (or the spawn) to the worker's first line after its setup.
This process plays the master: a child subreaper, as the fork server needs.
"""
import argparse
import array
import ctypes
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "share", "forkserver.py")
APP = """
import gc, os, sys, time
import flask
app = flask.Flask("bench")


@app.route("/")
def index():
    return "ok"


gc.collect()
open(os.path.join(os.environ["BENCH_READY"], str(os.getpid())), "w").close()
time.sleep(600)
"""


def memory(pid):
    """(PSS, private) in KiB, from /proc/PID/smaps_rollup."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                values[parts[0][:-1]] = int(parts[1])
    return values["Pss"], values["Private_Clean"] + values["Private_Dirty"]


def wait_ready(directory, pid, started):
    while not os.path.exists(os.path.join(directory, str(pid))):
        time.sleep(0.001)
        if time.monotonic() - started > 60:
            raise SystemExit(f"worker {pid} never got ready")
    return time.monotonic() - started


def plain(python, app, ready, workers):
    processes, times = [], []
    for _ in range(workers):
        started = time.monotonic()
        process = subprocess.Popen([python, app], env=dict(os.environ, BENCH_READY=ready))
        times.append(wait_ready(ready, process.pid, started))
        processes.append(process)
    sizes = [memory(p.pid) for p in processes]
    for process in processes:
        process.kill()
        process.wait()
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes), times, None


def forked(python, guard, app, ready, workers, freeze):
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = dict(os.environ, BELLWETHER_FORKSERVER_GC_FREEZE="1" if freeze else "0")
    started = time.monotonic()
    server = subprocess.Popen([guard, str(os.getpid()), "-", "-", python, python, SERVER, str(theirs.fileno()),
                               guard, str(os.getpid()), "-", "flask", app], pass_fds=[theirs.fileno()], env=env)
    theirs.close()
    mine.settimeout(60)
    ready_message = json.loads(mine.recv(65536))
    server_start = time.monotonic() - started
    if ready_message.get("failure"):
        raise SystemExit(f"the fork server failed: {ready_message['failure']}")
    guards, links, times, apps = [], [], [], []
    for ref in range(workers):
        link_read, link_write = os.pipe()
        order = {"ref": ref, "env": {"PATH": os.environ["PATH"], "BENCH_READY": ready}, "fds": {"3": 0},
                 "guard": "3:1000:-"}
        started = time.monotonic()
        mine.sendmsg([json.dumps(order).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [link_read]))])
        os.close(link_read)
        reply = json.loads(mine.recv(65536))
        guards.append(reply["pid"])
        links.append(link_write)
        # The worker is the guard's only child.
        while True:
            children = open(f"/proc/{reply['pid']}/task/{reply['pid']}/children").read().split()
            if children and os.readlink(f"/proc/{reply['pid']}/exe") == guard:
                break
            time.sleep(0.001)
        apps.append(int(children[0]))
        times.append(wait_ready(ready, apps[-1], started))
    sizes = [memory(pid) for pid in apps]
    server_pss = memory(server.pid)[0]
    for link in links:
        os.close(link)  # each guard TERMs its worker
    for pid in guards:
        os.waitpid(pid, 0)
    mine.close()
    server.wait()
    return sum(s[0] for s in sizes) + server_pss, sum(s[1] for s in sizes), times, server_start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("guard")
    parser.add_argument("python")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    guard = os.path.realpath(args.guard)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    scratch = tempfile.mkdtemp(prefix="bench-forkserver-")
    app = os.path.join(scratch, "app.py")
    with open(app, "w") as f:
        f.write(APP)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    runs = {"plain": [], "forked, gc.freeze": [], "forked, no freeze": []}
    try:
        for _ in range(args.repeat):
            for name in runs:
                ready = tempfile.mkdtemp(dir=scratch)
                if name == "plain":
                    runs[name].append(plain(args.python, app, ready, args.workers))
                else:
                    freeze = name == "forked, gc.freeze"
                    runs[name].append(forked(args.python, guard, app, ready, args.workers, freeze))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    version = subprocess.run([args.python, "-c", "import sys, flask; print(sys.version.split()[0], flask.__version__)"],
                             capture_output=True, text=True).stdout.split()
    print(f"{args.workers} workers, Python {version[0]}, flask {version[1]}, median of {args.repeat}; "
          f"{os.cpu_count()} cores")
    print(f"| workers started | PSS of the {args.workers} (+ server) | private, sum | start, each "
          f"| server's start |")
    print("|---|---|---|---|---|")
    base = statistics.median(r[0] for r in runs["plain"])
    for name, results in runs.items():
        pss = statistics.median(r[0] for r in results)
        private = statistics.median(r[1] for r in results)
        start = statistics.median(t for r in results for t in r[2])
        server = "—" if results[0][3] is None else f"{statistics.median(r[3] for r in results) * 1000:.0f} ms"
        print(f"| {name} | {pss / 1024:.1f} MiB ({pss / base:.2f}) | {private / 1024:.1f} MiB "
              f"| {start * 1000:.1f} ms | {server} |")


if __name__ == "__main__":
    sys.exit(main())
