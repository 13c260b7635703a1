#!/usr/bin/env python3
"""End-to-end test of the README's recipe table: each common Python server,
the real one, serving on the socket bellwether binds, with exactly one
scheduler.

HTTP servers (examples/servers/app.py, or examples/django-apscheduler for
Django), each under `bellwether -w 2`: the scheduler worker's every-second job
logs its pid and time. Each goes through steady running, a SIGKILL of the
other worker (the scheduler stays), a SIGKILL of the scheduler (a new one
takes over), and two HUPs under a request loop (a new connection per request),
each new scheduler seen running the job before the next step. Asserted: no
second's job runs twice, schedulers follow one another (a pid that stopped
never runs the job again), the job pauses at most GAP_BOUND, and no request
fails across the HUPs — but for stock uvicorn and stock hypercorn, which may
reset a request accepted just before a worker's TERM (at most one per retired
worker).
uvicorn told only --host/--port must be a failed start.

Celery (examples/servers/celery_app.py, a redis-server of its own on a free
port), under `bellwether -w 3` with the README's `sh -c` line: the scheduler
runs `celery beat`, the others Celery workers. Through a worker's SIGKILL, the
beat's SIGKILL and two HUPs: one beat sends at a time, each tick is sent once
(no two sends within half the interval, but the first of the beat that
replaced the SIGKILLed one), no task runs twice.

Baselines, so that the checks are shown to bite: gunicorn and Celery again
with bellwether's role moved to another variable (`--role-env`) and
WORKER_ROLE=scheduler in every worker's environment, as if the app had no
guard: the same checks must then find ticks run twice and beats alternating.

usage: servers.py BELLWETHER VENV   (VENV holds examples/servers/requirements.txt)
SERVERS="uvicorn celery ..." runs only those. Needs redis-server for Celery.
Prints "ok"/"FAIL" lines and exits non-zero on any failure.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from harness import (ROOT, RequestLoop, check, finish, free_port, get, in_turn, job_lines, redis_server, settled,
                     status, wait_for)

SERVERS_DIR = os.path.join(ROOT, "examples", "servers")
DJANGO_DIR = os.path.join(ROOT, "examples", "django-apscheduler")
CONFIG = os.path.join(ROOT, "etc", "gunicorn.conf.py")
# Longest allowed pause of the every-second job: the old scheduler's exit, a
# Python interpreter importing the server, the app and APScheduler, and the
# next second, on a loaded 2-core machine.
GAP_BOUND = 20.0
# Workers the two HUPs retire (slot 1's, the scheduler, the stand-in, twice),
# and how a connection closed unread looks to the client.
RETIRED_WORKERS = 6
RESET_ERRORS = ("ConnectionResetError", "RemoteDisconnected")
# The beat's interval, and the Celery test's size: the beat, and two Celery
# workers so that one still executes while the other is killed.
TICK_SECONDS = 1.0
CELERY_WORKERS = 3
CELERY_LINE = ('if [ "$WORKER_ROLE" = scheduler ]; then exec celery -A celery_app beat -s "$BEAT_SCHEDULE"; '
               'else exec celery -A celery_app worker --concurrency 1; fi')


def http_servers(venv):
    """name → (command, --ready, directory, resets): the README's recipes.
    resets: uvicorn without uvicorn_drain, and hypercorn without
    hypercorn_fd3.py, may reset a request they accepted just before their
    TERM, at most one per retired worker (see examples/servers/uvicorn_drain.py
    and hypercorn_fd3.py)."""
    bin_ = os.path.join(venv, "bin")
    python = os.path.join(bin_, "python")
    gunicorn = [os.path.join(bin_, "gunicorn"), "-c", CONFIG, "-w", "1"]
    return {
        "gunicorn": (gunicorn + ["app:wsgi"], "notify", SERVERS_DIR, False),
        "gunicorn-uvicorn": (gunicorn + ["-k", "uvicorn_drain.UvicornWorker", "app:asgi"], "notify", SERVERS_DIR,
                             False),
        "gunicorn-uvicorn-stock": (gunicorn + ["-k", "uvicorn_worker.UvicornWorker", "app:asgi"], "notify",
                                   SERVERS_DIR, True),
        "hypercorn": ([python, "hypercorn_fd3.py", "app:asgi"], "exec", SERVERS_DIR, False),
        "hypercorn-stock": ([os.path.join(bin_, "hypercorn"), "--bind", "fd://3", "app:asgi"], "exec", SERVERS_DIR,
                            True),
        "uvicorn": ([os.path.join(bin_, "uvicorn"), "--fd", "3", "--no-access-log", "app:asgi"], "exec", SERVERS_DIR,
                    True),
        "uvicorn-tcp": ([python, "uvicorn_fd3.py", "app:asgi"], "exec", SERVERS_DIR, False),
        "waitress": ([python, "waitress_fd3.py", "app:wsgi"], "exec", SERVERS_DIR, False),
        "django-wsgi": (gunicorn + ["mysite.wsgi:application"], "notify", DJANGO_DIR, False),
        # uvicorn_drain.py "copied beside the app": on the path.
        "django-asgi": (gunicorn + ["--pythonpath", SERVERS_DIR, "-k", "uvicorn_drain.UvicornWorker",
                                    "mysite.asgi:application"], "notify", DJANGO_DIR, False),
    }


class Master:
    """bellwether running one recipe, its log, its control socket; {port} in
    the command is the port it binds (none with bind=False)."""

    def __init__(self, bellwether, scratch, name, workers, command, ready, directory, env, extra=(), bind=True):
        self.bellwether, self.workers = bellwether, workers
        self.control = os.path.join(scratch, f"{name}.ctl")
        self.port = free_port() if bind else None
        command = [part.replace("{port}", str(self.port)) for part in command]
        with open(os.path.join(scratch, f"{name}.log"), "w") as log:
            self.process = subprocess.Popen(
                [bellwether, "-w", str(workers), *(["-b", f"127.0.0.1:{self.port}"] if bind else []),
                 "--ready", ready, "--control-socket", self.control,
                 "--lease", "file:" + os.path.join(scratch, f"{name}.lock"), "--chdir", directory, *extra, "--",
                 *command],
                env=env, stdout=log, stderr=subprocess.STDOUT)

    def status(self):
        return status(self.bellwether, self.control) or {}

    def settled(self, generation=None):
        return settled(self.bellwether, self.control, self.workers, generation)

    def slot_pid(self, slot):
        return next((s["pid"] for s in self.status().get("slots", []) if s["slot"] == slot), None)

    def stop(self):
        """TERM, and the exit status (None if it had to be killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


def kills_and_reloads(name, master, ran_since, loop=None):
    """A SIGKILL of slot 1's worker, of the scheduler, then two HUPs (under the
    request loop, if given). Each scheduler in turn is seen to run its job
    (ran_since(t): a job logged at t or later) before it is replaced. Returns
    whether every step happened."""
    def ran():
        since = time.time()
        return wait_for(30, lambda: ran_since(since))

    scheduler, worker = master.status().get("scheduler"), master.slot_pid(1)
    check(f"{name}: bellwether status names the scheduler and worker 1", scheduler and worker)
    if not (scheduler and worker):
        return False
    os.kill(worker, signal.SIGKILL)
    check(f"{name}: worker 1 SIGKILLed: replaced, the scheduler kept",
          wait_for(60, lambda: master.settled() and master.slot_pid(1) not in (None, worker)
                   and master.status().get("scheduler") == scheduler))
    check(f"{name}: the scheduler runs its job", ran())
    os.kill(scheduler, signal.SIGKILL)
    check(f"{name}: the scheduler SIGKILLed: a new scheduler runs the job",
          wait_for(60, lambda: master.settled() and master.status().get("scheduler") not in (None, scheduler))
          and ran())
    if loop:
        loop.start()
    for generation in (1, 2):
        master.process.send_signal(signal.SIGHUP)
        check(f"{name}: HUP {generation}: generation {generation} ready, its scheduler runs the job",
              wait_for(90, lambda: master.settled(generation)) and ran())
    if loop:
        loop.stop()
    return True


def one_at_a_time(name, ticks, start, end, schedulers):
    """The checks of one scheduler on (pid, at) ticks of an every-second job."""
    seconds = [int(at) for _, at in ticks]
    twice = sorted({s for s in seconds if seconds.count(s) > 1})
    check(f"{name}: {len(ticks)} ticks, no second's job ran twice", ticks and not twice,
          f"seconds run more than once: {twice[:10]}")
    order = in_turn(pid for pid, _ in ticks)
    check(f"{name}: one scheduler at a time ({len(order)} in turn, {schedulers} expected)",
          len(order) == len(set(order)) == schedulers, f"pids in order: {order}")
    edges = [start] + [at for _, at in ticks] + [end]
    longest = max(b - a for a, b in zip(edges, edges[1:]))
    check(f"{name}: the job paused at most {GAP_BOUND:.0f} s (longest {longest:.2f} s)", longest <= GAP_BOUND)


def run_http(bellwether, venv, scratch, name, command, ready, directory, resets):
    started = time.monotonic()
    job_log = os.path.join(scratch, f"{name}.jobs")
    env = dict(os.environ, JOB_LOG=job_log, TICK_CRON_SECOND="*", REPORT_SECONDS="3600", XDG_RUNTIME_DIR=scratch,
               DJANGO_DB=os.path.join(scratch, f"{name}.sqlite3"))
    for variable in ("WORKER_ROLE", "NOTIFY_SOCKET"):
        env.pop(variable, None)
    if directory == DJANGO_DIR:
        subprocess.run([os.path.join(venv, "bin", "python"), "manage.py", "migrate", "-v0"], cwd=directory, env=env,
                       check=True)
    master = Master(bellwether, scratch, name, 2, command, ready, directory, env)
    try:
        check(f"{name}: 2 workers ready", wait_for(60, master.settled))
        answer = wait_for(30, lambda: get(master.port) is not None) and get(master.port)
        check(f"{name}: serves on the port bellwether bound", answer, str(answer))
        start = time.time()
        loop = RequestLoop(master.port)
        done = kills_and_reloads(name, master, lambda t: any(line["at"] >= t for line in job_lines(job_log)), loop)
        end = time.time()
        if done:
            allowed = RETIRED_WORKERS if resets else 0
            unexpected = [error for error in loop.errors if not resets or not error.startswith(RESET_ERRORS)]
            check(f"{name}: {len(loop.latencies)} requests across 2 HUPs, {len(loop.errors)} failed "
                  f"(at most {allowed}{', resets only' if resets else ''}), "
                  f"slowest {max(loop.latencies, default=0):.2f} s",
                  len(loop.errors) <= allowed and not unexpected and len(loop.latencies) >= 20
                  and "2" in loop.generations,
                  "; ".join(loop.errors[:3]) + f" generations served: {sorted(loop.generations)}")
    finally:
        code = master.stop()
    check(f"{name}: the master stops with status 0", code == 0, f"status {code}")
    ticks = [(line["pid"], line["at"]) for line in job_lines(job_log) if line["job"] == "tick"]
    one_at_a_time(f"{name}", [(pid, at) for pid, at in ticks if start <= at <= end], start, end, 4)
    print(f"     {name}: {time.monotonic() - started:.0f} s", flush=True)


def baseline_http(bellwether, venv, scratch, name, command, ready, directory, _resets):
    """The same recipe with every worker a scheduler: the checks must fail."""
    job_log = os.path.join(scratch, f"{name}-baseline.jobs")
    env = dict(os.environ, JOB_LOG=job_log, TICK_CRON_SECOND="*", XDG_RUNTIME_DIR=scratch, WORKER_ROLE="scheduler")
    env.pop("NOTIFY_SOCKET", None)
    master = Master(bellwether, scratch, f"{name}-baseline", 2, command, ready, directory, env,
                    ("--role-env", "BASELINE_ROLE"))
    try:
        wait_for(60, lambda: get(master.port) is not None)
        time.sleep(2)
        start = time.time()
        time.sleep(4)
        end = time.time()
    finally:
        master.stop()
    ticks = [(line["pid"], line["at"]) for line in job_lines(job_log) if start <= line["at"] <= end]
    seconds = [int(at) for _, at in ticks]
    order = in_turn(pid for pid, _ in ticks)
    check(f"{name} baseline, every worker a scheduler: the checks find seconds run twice and schedulers "
          f"alternating ({len(ticks)} ticks in {len(set(seconds))} seconds, {len(set(order))} pids, "
          f"{len(order)} turns)", len(ticks) > len(set(seconds)) and len(order) > len(set(order)))


def uvicorn_binding_itself(bellwether, venv, scratch):
    """uvicorn told only --host and --port binds the port bellwether holds: a failed start."""
    name = "uvicorn-without-fd"
    env = dict(os.environ, XDG_RUNTIME_DIR=scratch)
    env.pop("NOTIFY_SOCKET", None)
    master = Master(bellwether, scratch, name, 2, [os.path.join(venv, "bin", "uvicorn"), "--host", "127.0.0.1",
                                                   "--port", "{port}", "app:asgi"], "exec", SERVERS_DIR, env)
    try:
        code = master.process.wait(90)
    except subprocess.TimeoutExpired:
        code = master.stop()
    with open(os.path.join(scratch, f"{name}.log")) as log:
        in_use = "address already in use" in log.read()
    check(f"uvicorn without --fd: every worker binds the port itself, finds it in use, a failed start "
          f"(status {code})", code == 3 and in_use)


def celery_env(venv, scratch, name, broker_port):
    env = dict(os.environ, JOB_LOG=os.path.join(scratch, f"{name}.jobs"), TICK_SECONDS=str(TICK_SECONDS),
               CELERY_BROKER_URL=f"redis://127.0.0.1:{broker_port}/0", XDG_RUNTIME_DIR=scratch,
               BEAT_SCHEDULE=os.path.join(scratch, f"{name}.beat-schedule"),
               PATH=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"])
    for variable in ("WORKER_ROLE", "NOTIFY_SOCKET"):
        env.pop(variable, None)
    return env


def sends_once(name, sends, beats):
    """Checks that one beat sends at a time, each tick once. The second beat
    is the one that replaced the SIGKILLed first: Celery's beat saves when it
    last sent each task every 3 minutes and when it exits, so a killed beat's
    successor finds the tick due and may send it at once; a HUP's TERM lets
    the old beat save first."""
    order = in_turn(pid for pid, _ in sends)
    check(f"{name}: one beat at a time ({len(order)} in turn, {beats} expected)",
          len(order) == len(set(order)) == beats, f"beat pids in order: {order}")
    after_kill = order[1] if len(order) > 1 else None
    close = [(round(a, 3), round(b, 3)) for (before, a), (pid, b) in zip(sends, sends[1:])
             if b - a < TICK_SECONDS / 2 and not (pid != before and pid == after_kill)]
    check(f"{name}: each tick sent once ({len(sends)} sends, none within {TICK_SECONDS / 2} s of another "
          f"but the first of the beat after the SIGKILL)", sends and not close, f"sends too close: {close[:5]}")


def run_celery(bellwether, venv, scratch, broker_port):
    name = "celery"
    started = time.monotonic()
    env = celery_env(venv, scratch, name, broker_port)
    master = Master(bellwether, scratch, name, CELERY_WORKERS, ["sh", "-c", CELERY_LINE], "exec", SERVERS_DIR, env,
                    bind=False)
    jobs = lambda: job_lines(env["JOB_LOG"])  # noqa: E731
    try:
        check(f"{name}: {CELERY_WORKERS} workers ready, the beat sending, the workers executing",
              wait_for(90, lambda: master.settled() and {"sent", "run"} <= {line["job"] for line in jobs()}))
        start = time.time()
        kills_and_reloads(name, master, lambda t: any(line["job"] == "sent" and line["at"] >= t for line in jobs()))
        end = time.time()
    finally:
        code = master.stop()
    check(f"{name}: the master stops with status 0", code == 0, f"status {code}")
    lines = jobs()
    sends = [(line["pid"], line["at"]) for line in lines if line["job"] == "sent" and start <= line["at"] <= end]
    sends_once(name, sends, 4)
    sent_ids = {line["id"] for line in lines if line["job"] == "sent"}
    runs = [line["id"] for line in lines if line["job"] == "run"]
    twice = sorted({task for task in runs if runs.count(task) > 1})
    # A Celery worker that is SIGKILLed loses what it had fetched (with a
    # prefetch of 1 and one process, one or two tasks): not run, not run twice.
    lost = sent_ids - set(runs)
    check(f"{name}: no task ran twice, {len(sent_ids) - len(lost)} of {len(sent_ids)} sent ran",
          not twice and len(lost) <= 3 and set(runs) <= sent_ids, f"twice: {twice[:5]}, not run: {len(lost)}")
    print(f"     {name}: {time.monotonic() - started:.0f} s", flush=True)


def baseline_celery(bellwether, venv, scratch, broker_port):
    name = "celery-baseline"
    env = celery_env(venv, scratch, name, broker_port)
    env["WORKER_ROLE"] = "scheduler"
    # Each beat its own schedule file, as on separate machines (two beats
    # sharing one shelve file would be a failure of another kind).
    line = CELERY_LINE.replace('"$BEAT_SCHEDULE"', '"$BEAT_SCHEDULE.$WORKER_ID"')
    master = Master(bellwether, scratch, name, 2, ["sh", "-c", line], "exec", SERVERS_DIR, env,
                    ("--role-env", "BASELINE_ROLE"), bind=False)
    try:
        wait_for(90, lambda: len({l["pid"] for l in job_lines(env["JOB_LOG"]) if l["job"] == "sent"}) >= 2)
        start = time.time()
        time.sleep(4)
        end = time.time()
    finally:
        master.stop()
    sends = [(l["pid"], l["at"]) for l in job_lines(env["JOB_LOG"]) if l["job"] == "sent" and start <= l["at"] <= end]
    order = in_turn(pid for pid, _ in sends)
    close = [b - a for (_, a), (_, b) in zip(sends, sends[1:]) if b - a < TICK_SECONDS / 2]
    check(f"{name}, every worker a beat: the checks find beats alternating and ticks sent twice "
          f"({len(sends)} sends, {len(set(order))} beats, {len(order)} turns, {len(close)} too close)",
          len(order) > len(set(order)) and close)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bellwether, venv = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    servers = http_servers(venv)
    only = os.environ.get("SERVERS", "").split() or [*servers, "celery"]
    with tempfile.TemporaryDirectory(prefix="bellwether-servers-") as scratch:
        for name in only:
            if name in servers:
                run_http(bellwether, venv, scratch, name, *servers[name])
        if "gunicorn" in only:
            baseline_http(bellwether, venv, scratch, "gunicorn", *servers["gunicorn"])
        if "uvicorn" in only:
            uvicorn_binding_itself(bellwether, venv, scratch)
        if "celery" in only:
            if not shutil.which("redis-server"):
                check("celery: redis-server is installed", False)
            else:
                broker, port = redis_server(scratch)
                try:
                    run_celery(bellwether, venv, scratch, port)
                    baseline_celery(bellwether, venv, scratch, port)
                finally:
                    broker.terminate()
                    broker.wait()
        finish(scratch)


if __name__ == "__main__":
    main()
