#!/usr/bin/env python3
"""End-to-end test of examples/container without Docker: the same scripts the
Dockerfile runs, in PID namespaces that stand in for the containers.

scripts/test has run the image's install step (examples/container/install.sh)
to make VENV. Then, as compose.yaml describes: one real redis-server and two
"containers", each `examples/container/entrypoint` as PID 1 of its own PID
namespace (namespaces.py) with the compose file's settings — its worker count
and lease key, on a local Redis — and short lease timings. Each serves the
Flask-APScheduler example under gunicorn, its every-second job logging to a
file of its own.

1. Both answer the image's HEALTHCHECK (examples/container/healthcheck), run
   inside the namespace as Docker runs it, and `bellwether status` run there
   (as `docker compose exec`) finds its master by itself.
2. Exactly one of the two has a scheduler; only its job log grows.
3. The holder's PID 1 is SIGKILLed (`docker kill`): every process of its
   namespace is gone at once, its port refuses connections, and the other
   takes the lease over, not before the takeover delay; its scheduler's jobs
   run, and no second's job ever ran in both.
4. TERM to the survivor (`docker stop`): status 0, and the key is released.

What this does not run: `docker build` and `docker compose up` themselves, and
the build stage's `scripts/release` and the wheel's install (unless VENV was
made with the wheel: then `bellwether` comes from it).

usage: container.py BELLWETHER_DIR VENV
  BELLWETHER_DIR holds bellwether and bellwether-exec (VENV/bin when they came
  from the wheel); VENV holds gunicorn and the Flask example's requirements.
Prints "ok"/"FAIL" lines and exits non-zero on any failure.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import apps
from apps import ROOT, check, free_port, get, wait_for
from namespaces import Container, alive
from trees import refused

EXAMPLE = os.path.join(ROOT, "examples", "container")
APP = os.path.join(ROOT, "examples", "flask-apscheduler")
# Short lease timings within the rules: D >= 3R, D + R < L, H >= D + G.
LEASE = {"TTL": "3", "RENEW_INTERVAL": "0.5", "RENEW_DEADLINE": "1.5", "GRACE": "1", "TAKEOVER_DELAY": "2.5"}
TAKEOVER_DELAY = float(LEASE["TAKEOVER_DELAY"])


def dockerfile_scripts():
    """The scripts the Dockerfile copies from examples/container to
    /opt/bellwether and runs there; the test runs the same ones."""
    with open(os.path.join(EXAMPLE, "Dockerfile")) as dockerfile:
        text = dockerfile.read()
    copied = set()
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and words[-1] == "/opt/bellwether/":
            copied |= {os.path.basename(word) for word in words[1:-1] if word.startswith("examples/container/")}
    run = set(re.findall(r"/opt/bellwether/([\w.-]+)", text))
    return copied, run, text


def compose_settings():
    """The apps' worker count and lease key, from compose.yaml."""
    with open(os.path.join(EXAMPLE, "compose.yaml")) as compose:
        text = compose.read()
    workers = re.search(r'BELLWETHER_WORKERS:\s*"(\d+)"', text)
    lease = re.search(r'BELLWETHER_LEASE:\s*"redis://redis:6379/0\?key=([^"]+)"', text)
    services = re.findall(r"^  (app\d+):", text, re.MULTILINE)
    return (int(workers.group(1)) if workers else None), (lease.group(1) if lease else None), services


def redis_cli(port, *arguments):
    return subprocess.run(["redis-cli", "-p", str(port)] + list(arguments), capture_output=True, text=True,
                          timeout=5).stdout.strip()


def start_redis(scratch):
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", scratch],
                              stdout=open(os.path.join(scratch, "redis.log"), "w"), stderr=subprocess.STDOUT)
    if not wait_for(10, lambda: server.poll() is None and redis_cli(port, "PING") == "PONG"):
        raise RuntimeError(f"redis-server did not come up on port {port}")
    return server, port


def environment(bellwether_dir, venv, scratch, name, port, lease_url, workers):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("BELLWETHER_", "WORKER")) and key not in ("NOTIFY_SOCKET", "LISTEN_FDS")}
    env.update({
        "PATH": os.pathsep.join([bellwether_dir, os.path.join(venv, "bin"), env.get("PATH", "/usr/bin:/bin")]),
        "BELLWETHER_WORKERS": str(workers),
        "BELLWETHER_LEASE": lease_url,
        "BELLWETHER_BIND": f"127.0.0.1:{port}",
        "GUNICORN_CONFIG": os.path.join(ROOT, "etc", "gunicorn.conf.py"),
        "HEALTHCHECK_URL": f"http://127.0.0.1:{port}/",
        "JOB_LOG": os.path.join(scratch, f"{name}.jobs"),
        "TICK_CRON_SECOND": "*",
        "REPORT_SECONDS": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({f"BELLWETHER_LEASE_{key}": value for key, value in LEASE.items()})
    return env


class App:
    """One app container: the entrypoint as PID 1."""

    def __init__(self, name, scratch, env, port):
        self.name, self.env, self.port = name, env, port
        self.jobs = env["JOB_LOG"]
        self.container = Container([os.path.join(EXAMPLE, "entrypoint")], os.path.join(scratch, name + ".log"),
                                   env=env, cwd=APP)

    def healthy(self):
        return self.container.run_inside([os.path.join(EXAMPLE, "healthcheck")], env=self.env).returncode == 0

    def status(self):
        result = self.container.run_inside(["bellwether", "status", "--json"], env=self.env)
        try:
            return json.loads(result.stdout) if result.returncode == 0 else None
        except ValueError:
            return None

    def scheduler(self):
        return (self.status() or {}).get("scheduler")

    def ticks(self):
        """The seconds in which this container's every-second job ran."""
        return [int(at) for job, _, at, _ in apps.executions(self.jobs, 0, float("inf")) if job == "tick"]


def run(bellwether_dir, venv, scratch):
    copied, used, _ = dockerfile_scripts()
    check("Dockerfile: runs the scripts this test runs, copied from examples/container",
          used == {"install.sh", "entrypoint", "healthcheck"} and copied == used, f"copied {copied}, runs {used}")
    workers, key, services = compose_settings()
    check("compose.yaml: two apps sharing one Redis lease", workers is not None and key and len(services) == 2,
          f"workers {workers}, key {key}, services {services}")
    workers = workers or 2

    server, redis_port = start_redis(scratch)
    lease_url = f"redis://127.0.0.1:{redis_port}/0?key={key}"
    containers = []
    try:
        for name in services or ["app1", "app2"]:
            port = free_port()
            containers.append(App(name, scratch, environment(bellwether_dir, venv, scratch, name, port, lease_url,
                                                             workers), port))
        for app in containers:
            check(f"{app.name}: healthy by the image's HEALTHCHECK, PID 1 being bellwether",
                  wait_for(90, app.healthy) and os.path.basename(os.readlink(f"/proc/{app.container.pid}/exe"))
                  == "bellwether", app.container.text()[-2000:])
            report = app.status()
            check(f"{app.name}: `bellwether status` inside finds its master ({workers} workers)",
                  report is not None and report["master"]["workers"] == workers and report["master"]["pid"] == 1,
                  str(report))

        def holders():
            return [app for app in containers if app.scheduler() is not None]
        check("exactly one scheduler across both containers",
              wait_for(30, lambda: len(holders()) == 1), str([app.status() for app in containers]))
        holder = (holders() or containers)[0]
        other = next(app for app in containers if app is not holder)
        time.sleep(1 + TAKEOVER_DELAY)
        check("one scheduler still, the same one", [app.name for app in holders()] == [holder.name])
        check(f"only {holder.name}'s jobs run", wait_for(10, lambda: len(holder.ticks()) >= 3) and not other.ticks(),
              f"{holder.name}: {holder.ticks()}, {other.name}: {other.ticks()}")

        # docker kill: SIGKILL to the holder's PID 1.
        everything = list(holder.container.processes())
        # An arbiter and its worker in each slot, below the slot's guard.
        gunicorns = [pid for pid, (_, _, line) in holder.container.processes().items()
                     if "gunicorn" in line and not os.path.basename(line.split()[0]).startswith("bellwether")]
        holder.container.signal(signal.SIGKILL)
        killed_at = time.time()
        # (unshare itself exits 1 when its child was SIGKILLed; Docker would say 137.)
        holder.container.wait(10)
        check(f"{holder.name}: every process of it is gone at once ({len(everything)}, "
              f"{len(gunicorns)} of them gunicorn)",
              wait_for(2, lambda: not any(alive(pid) for pid in everything)) and len(gunicorns) == 2 * workers,
              str([pid for pid in everything if alive(pid)]))
        check(f"{holder.name}: its port refuses connections", refused(holder.port))
        ticks_before = set(holder.ticks())

        check(f"{other.name} takes the lease over and starts a scheduler",
              wait_for(40, lambda: other.scheduler() is not None), other.container.text()[-2000:])
        check(f"{other.name}: its jobs run", wait_for(20, lambda: len(other.ticks()) >= 3), str(other.ticks()))
        first = min(other.ticks(), default=0)
        check(f"{other.name}: its first job ran after the takeover delay "
              f"({first - killed_at:.1f} s after the kill, H = {TAKEOVER_DELAY} s)",
              first >= int(killed_at + TAKEOVER_DELAY), f"first tick at {first}, killed at {killed_at:.1f}")
        both = ticks_before & set(other.ticks())
        check("no second's job ran in both containers", not both and len(set(other.ticks())) == len(other.ticks()),
              f"in both: {sorted(both)}")
        check(f"{other.name}: still serving", get(other.port) is not None and other.healthy())

        # docker stop: TERM to the survivor's PID 1.
        other.container.signal(signal.SIGTERM)
        code = other.container.wait(30)
        check(f"{other.name}: TERM stops it with status 0", code == 0, f"status {code}\n{other.container.text()[-2000:]}")
        value = redis_cli(redis_port, "GET", key)
        check(f"{other.name}: the lease key is released at the stop", value == "released", f"key holds {value!r}")
    finally:
        for app in containers:
            app.container.destroy()
        server.kill()
        server.wait()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    bellwether_dir, venv = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    with tempfile.TemporaryDirectory(prefix="bw-containers-compose-") as scratch:
        run(bellwether_dir, venv, scratch)
        apps.finish(scratch)


if __name__ == "__main__":
    main()
