#!/usr/bin/env python3
"""End-to-end test of etc/gunicorn.conf.py: with it, READY=1 comes from
gunicorn's worker once the app is loaded, so a reload never retires a serving
worker for one that is still importing the app.

The app sleeps IMPORT_SECONDS at import. `bellwether -w 2 --ready notify`
runs one `gunicorn -w 1` per worker; a client sends requests one after another
and times each; the master gets HUP twice (the second once the log says
"reload finished"). With the config file: no request fails and none waits
LATENCY_BOUND or more. Then the control, the same run without the config file
(gunicorn's arbiter sends READY=1 before its worker has imported the app):
some request must wait at least CONTROL_LATENCY, so that the test is shown to
measure something.

usage: gunicorn_ready.py BELLWETHER VENV   (VENV holds gunicorn)
Prints "ok"/"FAIL" lines and exits non-zero on any failure.
"""
import os
import signal
import subprocess
import sys
import time

from harness import ROOT, app_scratch, RequestLoop, check, finish, free_port, settled, wait_for

IMPORT_SECONDS = 3
LATENCY_BOUND = 0.5
# Without the config file the new workers are all importing the app for up to
# IMPORT_SECONDS while the old ones are gone.
CONTROL_LATENCY = 1.0

APP = f"""\
import os
import time

time.sleep({IMPORT_SECONDS})


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
"""


def reloads_finished(log_path):
    with open(log_path) as log:
        return log.read().count("reload finished")


def run(bellwether, venv, scratch, with_config):
    """Two HUPs under a request loop; returns the loop, or None if the
    workers never became ready."""
    name = "with etc/gunicorn.conf.py" if with_config else "without the config file"
    tag = "config" if with_config else "control"
    gunicorn = [os.path.join(venv, "bin", "gunicorn")]
    if with_config:
        gunicorn += ["-c", os.path.join(ROOT, "etc", "gunicorn.conf.py")]
    else:
        gunicorn += ["--no-control-socket"]
    port = free_port()
    control = os.path.join(scratch, f"{tag}.ctl")
    log_path = os.path.join(scratch, f"{tag}.log")
    # gunicorn 27 opens its control socket under XDG_RUNTIME_DIR unless told not to.
    runtime = os.path.join(scratch, f"{tag}-run")
    os.mkdir(runtime, 0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime)
    env.pop("NOTIFY_SOCKET", None)
    loop = RequestLoop(port)
    with open(log_path, "w") as log:
        master = subprocess.Popen(
            [bellwether, "-w", "2", "-b", f"127.0.0.1:{port}", "--ready", "notify", "--control-socket", control,
             "--chdir", scratch, "--", *gunicorn, "-w", "1", "app:app"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_for(30, lambda: settled(bellwether, control, 2)):
            check(f"{name}: 2 workers ready", False)
            return None
        loop.start()
        time.sleep(1)
        for n in range(1, 3):
            master.send_signal(signal.SIGHUP)
            check(f"{name}: reload {n} finished", wait_for(30, lambda: reloads_finished(log_path) >= n))
            time.sleep(1)
        if with_config:
            check(f"{name}: gunicorn opened no control socket",
                  not os.path.exists(os.path.join(runtime, "gunicorn.ctl")))
    finally:
        if loop.is_alive():
            loop.stop()
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(30)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
    return loop


def main():
    bellwether, venv, directory = app_scratch(__doc__, "bellwether-gunicorn-", APP)
    with directory as scratch:

        loop = run(bellwether, venv, scratch, with_config=True)
        if loop is not None:
            slowest = max(loop.latencies, default=0)
            check(f"with etc/gunicorn.conf.py: {len(loop.latencies)} requests across 2 HUPs, "
                  f"{len(loop.errors)} failed", not loop.errors and len(loop.latencies) >= 10,
                  "; ".join(loop.errors[:3]))
            check(f"with etc/gunicorn.conf.py: no request waited {LATENCY_BOUND} s (slowest {slowest:.3f} s)",
                  slowest < LATENCY_BOUND)

        control = run(bellwether, venv, scratch, with_config=False)
        if control is not None:
            slowest = max(control.latencies, default=0)
            check(f"without the config file: some request waited {CONTROL_LATENCY} s or more "
                  f"(slowest {slowest:.3f} s of {len(control.latencies)}, {len(control.errors)} failed)",
                  slowest >= CONTROL_LATENCY)

        finish(scratch)


if __name__ == "__main__":
    main()
