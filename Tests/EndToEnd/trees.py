#!/usr/bin/env python3
"""End-to-end test: a worker is its whole process tree, with a real server.

Each bellwether worker runs `gunicorn -w 1` (an arbiter that forks the worker
where the app runs). The scheduler's app takes a flock oracle and starts a
setsid daemon that inherits it and writes a job line every 0.2 s, as a job
runner started by an app would: a second scheduler while any process of an
old scheduler's tree lives finds the oracle taken and writes ORACLE.failures.

1. The master is SIGKILLed: within --graceful-timeout + 1 s no process of its
   tree is left, the port refuses connections and the job stops.
2. A new master on the same port and token starts at once.
3. The scheduler's app is SIGKILLed; then gunicorn's worker in the scheduler's
   slot (where the app runs, below the arbiter); then two HUPs: each old
   scheduler's daemon goes with it, and the oracle never finds two schedulers.

With PRELOAD, the same with `--preload PRELOAD`: the workers are forks of
a fork server (one per generation), which dies with the master too, and
gunicorn runs its worker without an arbiter (step 3 kills the app only).

usage: trees.py BELLWETHER VENV [PRELOAD]   (VENV holds gunicorn)
Prints "ok"/"FAIL" lines and exits non-zero on any failure.
"""
import os
import signal
import socket
import subprocess
import sys
import time

from harness import ROOT, alive, app_scratch, check, finish, free_port, settled, status, tree, wait_for

GRACE = 2

APP = """\
import fcntl
import os
import subprocess
import sys

DAEMON = '''
import os, sys, time
while True:
    with open(sys.argv[1], "a") as jobs:
        jobs.write(f"{os.getpid()} {time.time()}\\\\n")
    time.sleep(0.2)
'''


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


if os.environ.get("WORKER_ROLE") == "scheduler":
    oracle = os.open(os.environ["TREE_ORACLE"], os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(oracle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        with open(os.environ["TREE_ORACLE"] + ".failures", "a") as failures:
            failures.write(f"OVERLAP pid {os.getpid()}\\n")
        raise SystemExit(3)
    daemon = subprocess.Popen(["setsid", sys.executable, "-c", DAEMON, os.environ["TREE_JOBS"]],
                              pass_fds=(oracle,), stdin=subprocess.DEVNULL)
    with open(os.environ["TREE_DAEMONS"], "a") as daemons:
        daemons.write(f"{daemon.pid}\\n")
"""


def refused(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def daemons(scratch):
    with open(os.path.join(scratch, "daemons")) as listed:
        return [int(line) for line in listed.read().split()]


PRELOAD = sys.argv.pop(3) if len(sys.argv) == 4 else None


def start(bellwether, venv, scratch, name, port, env):
    control = os.path.join(scratch, f"{name}.ctl")
    preload = ["--preload", PRELOAD] if PRELOAD else []
    with open(os.path.join(scratch, f"{name}.log"), "w") as log:
        master = subprocess.Popen(
            [bellwether, "-w", "2", "-b", f"127.0.0.1:{port}", "--ready", "notify",
             "--graceful-timeout", str(GRACE), "--lease", "file:" + os.path.join(scratch, "token"),
             "--control-socket", control, "--chdir", scratch, *preload, "--",
             os.path.join(venv, "bin", "gunicorn"), "-c", os.path.join(ROOT, "etc", "gunicorn.conf.py"),
             "-w", "1", "app:app"], env=env, stdout=log, stderr=subprocess.STDOUT)
    return master, control


def main():
    bellwether, venv, directory = app_scratch(__doc__, "bellwether-trees-", APP)
    with directory as scratch:
        oracle, jobs = os.path.join(scratch, "oracle"), os.path.join(scratch, "jobs")
        env = dict(os.environ, TREE_ORACLE=oracle, TREE_JOBS=jobs, TREE_DAEMONS=os.path.join(scratch, "daemons"),
                   XDG_RUNTIME_DIR=scratch)
        env.pop("NOTIFY_SOCKET", None)
        port = free_port()
        first, control = start(bellwether, venv, scratch, "first", port, env)
        second = None
        try:
            check("first master: 2 workers ready, the scheduler's daemon running",
                  wait_for(60, lambda: settled(bellwether, control, 2) and os.path.exists(jobs)))
            everything = tree(first.pid)[1:]
            check(f"first master: {len(everything)} processes below it (guards, arbiters, workers, a daemon)",
                  len(everything) >= 7 and any(pid in everything for pid in daemons(scratch)))

            first.kill()
            first.wait()
            killed = time.monotonic()
            gone = wait_for(GRACE + 1, lambda: not any(alive(pid) for pid in everything))
            check(f"master SIGKILLed: its whole tree is gone in {time.monotonic() - killed:.2f} s "
                  f"(bound {GRACE + 1} s)", gone, f"left: {[pid for pid in everything if alive(pid)]}")
            check("master SIGKILLed: the port refuses connections", refused(port))
            size = os.path.getsize(jobs)
            time.sleep(0.6)
            check("master SIGKILLed: the job stopped", os.path.getsize(jobs) == size)

            second, control = start(bellwether, venv, scratch, "second", port, env)
            check("second master on the same port and token: 2 workers ready",
                  wait_for(60, lambda: settled(bellwether, control, 2)))
            with open(os.path.join(scratch, "second.log")) as log:
                check("second master: the token was free at once", "token is held" not in log.read())

            scheduler = status(bellwether, control)["scheduler"]
            daemon = daemons(scratch)[-1]
            os.kill(scheduler, signal.SIGKILL)
            check("the scheduler's app SIGKILLed: its daemon is gone", wait_for(GRACE + 1, lambda: not alive(daemon)))
            check("the scheduler's app SIGKILLed: a new scheduler",
                  wait_for(60, lambda: settled(bellwether, control, 2)
                           and status(bellwether, control)["scheduler"] != scheduler))
            scheduler = status(bellwether, control)["scheduler"]
            daemon = daemons(scratch)[-1]
            if PRELOAD:
                # Under --preload, gunicorn -w 1 runs its worker without an
                # arbiter: the scheduler's app is gunicorn's worker, its only
                # child the daemon.
                check("--preload: no arbiter, the scheduler's app is gunicorn's worker (its only child the daemon)",
                      [pid for pid in tree(scheduler)[1:] if alive(pid)] == [daemon],
                      repr(tree(scheduler)))
            else:
                # gunicorn's own worker, where the app and its daemon's parent run:
                # with etc/gunicorn.conf.py the arbiter stops too, and the slot is
                # restarted whole, instead of a new gunicorn worker beside the daemon.
                gunicorn_worker = next(pid for pid in tree(scheduler)[1:] if pid != daemon)
                os.kill(gunicorn_worker, signal.SIGKILL)
                check("gunicorn's worker SIGKILLed: the daemon it started is gone",
                      wait_for(GRACE + 1, lambda: not alive(daemon)))
                check("gunicorn's worker SIGKILLed: a new scheduler", wait_for(60, lambda: (
                    settled(bellwether, control, 2) and status(bellwether, control)["scheduler"] != scheduler)))
            for n in (1, 2):
                daemon = daemons(scratch)[-1]
                second.send_signal(signal.SIGHUP)
                check(f"HUP {n}: the old scheduler's daemon is gone", wait_for(30, lambda: not alive(daemon)))
                check(f"HUP {n}: a new generation with one scheduler", wait_for(60, lambda: (
                    settled(bellwether, control, 2) and status(bellwether, control)["master"]["generation"] == n
                    and all(s["generation"] == n for s in status(bellwether, control)["slots"]))))
            overlaps = oracle + ".failures"
            check("the oracle never found two schedulers", not os.path.exists(overlaps),
                  open(overlaps).read() if os.path.exists(overlaps) else "")
            below = tree(second.pid)[1:]
            second.send_signal(signal.SIGTERM)
            check("TERM: the master exits 0", second.wait(GRACE + 30) == 0)
            check("TERM: nothing of its tree is left", wait_for(2, lambda: not any(alive(pid) for pid in below)))
        finally:
            for master in (first, second):
                if master and master.poll() is None:
                    master.kill()
                    master.wait()
        finish(scratch)


if __name__ == "__main__":
    main()
