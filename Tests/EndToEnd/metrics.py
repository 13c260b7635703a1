#!/usr/bin/env python3
"""End-to-end test of --metrics-bind: the real binary serves GET /metrics,
and prometheus_client's own parser (text_string_to_metric_families) reads
every scrape. The counters must move as the supervisor sees things happen:
a worker killed with SIGKILL (restarts and exits of its slot), the
scheduler killed (a handover), a HUP (a reload that finishes). Other paths
get 404, other methods 405.

Then chaos: a master with a Redis lease and --max-worker-age recycling,
scraped by a real client every 20 ms while workers and the scheduler are
SIGKILLed, reloads and scale changes come at random: every scrape answers
and parses, no counter ever goes down, recyclings are counted, and the
lease's renewal age stays under its deadline.

usage: metrics.py BELLWETHER   (run with a python that has prometheus_client)
Prints "ok"/"FAIL" lines and exits non-zero on any failure.
"""
import http.client
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import check, finish, redis_server, settled, status, wait_for

FAMILIES = ["bellwether_workers", "bellwether_workers_configured", "bellwether_generation",
            "bellwether_worker_restarts", "bellwether_worker_exits", "bellwether_worker_recyclings",
            "bellwether_reloads",
            "bellwether_reload_outcomes", "bellwether_reload_last_duration_seconds", "bellwether_scheduler_pid",
            "bellwether_scheduler_uptime_seconds", "bellwether_scheduler_spawns",
            "bellwether_scheduler_missing_seconds", "bellwether_lease_info", "bellwether_lease_fence",
            "bellwether_master_uptime_seconds", "bellwether_master_cpu_seconds",
            "bellwether_master_resident_memory_bytes"]


def request(port, method="GET", path="/metrics"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    finally:
        connection.close()


def scrape(port):
    """{family name: family}, each sample as (name, labels, value), from a real parse."""
    code, content_type, body = request(port)
    assert code == 200, f"status {code}"
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    return {family.name: family for family in text_string_to_metric_families(body)}


def value(families, family, sample=None, **labels):
    """The value of the sample of `family` named `sample` (default: the
    family's own or its _total) with `labels`, 0 if there is none."""
    for s in families[family].samples:
        if (sample is None or s.name == sample) and not s.name.endswith("_created") \
                and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0


def main():
    bellwether = os.path.abspath(sys.argv[1])
    scratch = tempfile.mkdtemp(prefix="bellwether-metrics-")
    control = os.path.join(scratch, "control.sock")
    log_path = os.path.join(scratch, "bellwether.log")
    with open(log_path, "w") as log:
        master = subprocess.Popen([bellwether, "-w", "2", "--metrics-bind", "127.0.0.1:0",
                                   "--control-socket", control, "--graceful-timeout", "5", "--", "sleep", "1000"],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        run(bellwether, control, log_path, master)
    finally:
        stop(master, "the master exits 0 after TERM")
    chaos(bellwether, scratch)
    finish(scratch)


def stop(master, name):
    """TERM to a master still running (SIGKILL after 30 s), and its exit status checked."""
    if master.poll() is None:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(30)
        except subprocess.TimeoutExpired:
            master.kill()
    check(name, master.wait() == 0, f"exit {master.returncode}")


def run(bellwether, control, log_path, master):
    def port():
        with open(log_path) as log:
            found = re.search(r"metrics on 127\.0\.0\.1:(\d+)", log.read())
        return int(found.group(1)) if found else None

    check("the log says \"metrics on 127.0.0.1:PORT\" with the real port", wait_for(10, lambda: port()))
    metrics = port()
    if not metrics:
        return
    check("two workers become ready", wait_for(20, lambda: settled(bellwether, control, 2)))

    families = scrape(metrics)
    missing = [name for name in FAMILIES if name not in families]
    check("every family is there, with HELP and TYPE", not missing
          and all(families[name].documentation and families[name].type != "unknown" for name in FAMILIES),
          f"missing {missing}")
    check("2 ready workers: one scheduler, one worker",
          value(families, "bellwether_workers", state="ready", role="scheduler") == 1
          and value(families, "bellwether_workers", state="ready", role="worker") == 1)
    check("configured 2, generation 0", value(families, "bellwether_workers_configured") == 2
          and value(families, "bellwether_generation") == 0)
    report = status(bellwether, control)
    check("the scheduler's pid is the one status shows",
          value(families, "bellwether_scheduler_pid") == report["scheduler"],
          f"{value(families, 'bellwether_scheduler_pid')} != {report['scheduler']}")
    check("one scheduler spawned so far", value(families, "bellwether_scheduler_spawns") == 1)
    check("the master's resident memory is counted", value(families, "bellwether_master_resident_memory_bytes") > 0)
    check("the lease is the scheduler token, passed to the scheduler",
          value(families, "bellwether_lease_info", kind="file", state="passed") == 1)

    # SIGKILL to the worker of slot 1: its slot's restarts and exits move.
    worker = next(s for s in report["slots"] if s["slot"] == 1)
    os.kill(worker["pid"], signal.SIGKILL)
    check("SIGKILL to worker 1: restarts{slot=1} becomes 1",
          wait_for(20, lambda: value(scrape(metrics), "bellwether_worker_restarts", slot="1") == 1))
    families = scrape(metrics)
    exits = [s for s in families["bellwether_worker_exits"].samples
             if s.labels.get("slot") == "1" and s.name.endswith("_total")]
    check("exits{slot=1} counts one exit, with its reason", sum(s.value for s in exits) == 1
          and exits[0].labels.get("reason") in ("signaled", "exited"), f"{exits}")
    check("the workers settle again", wait_for(20, lambda: settled(bellwether, control, 2)))

    # SIGKILL to the scheduler: a handover, and time without one.
    old = value(scrape(metrics), "bellwether_scheduler_pid")
    missing_before = value(scrape(metrics), "bellwether_scheduler_missing_seconds")
    os.kill(int(old), signal.SIGKILL)
    check("SIGKILL to the scheduler: a second scheduler is spawned", wait_for(20, lambda: (lambda f: value(
        f, "bellwether_scheduler_spawns") == 2 and value(f, "bellwether_scheduler_pid") not in (0, old))(
        scrape(metrics))))
    check("the time without a scheduler grew",
          value(scrape(metrics), "bellwether_scheduler_missing_seconds") > missing_before)
    check("restarts{slot=0} becomes 1", value(scrape(metrics), "bellwether_worker_restarts", slot="0") == 1)
    check("the workers settle again", wait_for(20, lambda: settled(bellwether, control, 2)))

    # HUP: a reload, counted, and finished.
    master.send_signal(signal.SIGHUP)
    check("HUP: reloads becomes 1", wait_for(5, lambda: value(scrape(metrics), "bellwether_reloads") == 1))
    check("the reload finishes", wait_for(30, lambda: value(
        scrape(metrics), "bellwether_reload_outcomes", outcome="finished") == 1))
    families = scrape(metrics)
    check("generation 1, no failed reload, the last reload's duration",
          value(families, "bellwether_generation") == 1
          and value(families, "bellwether_reload_outcomes", outcome="failed") == 0
          and value(families, "bellwether_reload_last_duration_seconds") > 0)
    check("a retired worker's exit is no restart",
          value(families, "bellwether_worker_restarts", slot="1") == 1)

    # A client that comes straight back: its finished connections must not
    # count against the connection limit (they once did, giving 503s).
    codes = [request(metrics)[0] for _ in range(1500)]
    check("1500 scrapes back to back: every one 200", codes.count(200) == len(codes),
          f"{len(codes) - codes.count(200)} were not: {sorted(set(codes))}")

    code, _, _ = request(metrics, path="/")
    check("GET / is 404", code == 404, f"status {code}")
    code, _, _ = request(metrics, method="POST")
    check("POST /metrics is 405", code == 405, f"status {code}")


# Counters whose every sample must never go down between two scrapes.
COUNTERS = ["bellwether_worker_restarts", "bellwether_worker_exits", "bellwether_worker_recyclings",
            "bellwether_reloads", "bellwether_reload_outcomes", "bellwether_scheduler_spawns",
            "bellwether_scheduler_missing_seconds", "bellwether_master_cpu_seconds"]


class Scraper(threading.Thread):
    """A Prometheus-like client: GET /metrics every `every` seconds, each
    body through the real parser; counts answers, failures and decreases."""

    def __init__(self, port, every=0.02):
        super().__init__(daemon=True)
        self.port, self.every = port, every
        self.stopping = threading.Event()
        self.scrapes, self.failures, self.decreases = 0, [], []
        self.slowest = 0.0
        self.last = None

    def run(self):
        seen = {}
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                families = scrape(self.port)
            except Exception as error:  # noqa: BLE001 - any failure is what we count
                self.failures.append(repr(error))
                time.sleep(self.every)
                continue
            self.slowest = max(self.slowest, time.monotonic() - began)
            self.scrapes += 1
            self.last = families
            for name in COUNTERS:
                for sample in families[name].samples if name in families else []:
                    if not sample.name.endswith("_total"):
                        continue
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if sample.value < seen.get(key, 0):
                        self.decreases.append(f"{key}: {seen[key]} -> {sample.value}")
                    seen[key] = sample.value
            time.sleep(self.every)


def chaos(bellwether, scratch):
    redis, redis_port = redis_server(scratch)
    control = os.path.join(scratch, "chaos.sock")
    log_path = os.path.join(scratch, "chaos.log")
    with open(log_path, "w") as log:
        master = subprocess.Popen(
            [bellwether, "-w", "3", "--metrics-bind", "127.0.0.1:0", "--control-socket", control,
             "--graceful-timeout", "2", "--max-worker-age", "2", "--max-worker-age-jitter", "1",
             "--lease", f"redis://127.0.0.1:{redis_port}?key=metrics-chaos", "--lease-ttl", "4",
             "--lease-renew-interval", "0.5", "--lease-renew-deadline", "2", "--lease-grace", "0.5",
             "--lease-takeover-delay", "3", "--", "sleep", "1000"],
            stdout=log, stderr=subprocess.STDOUT)
    scraper = None
    try:
        def port():
            with open(log_path) as log:
                found = re.search(r"metrics on 127\.0\.0\.1:(\d+)", log.read())
            return int(found.group(1)) if found else None
        check("chaos: the master serves metrics", wait_for(10, lambda: port()))
        if not port():
            return
        def served():
            """Every slot served by a ready worker (one may be being recycled), and a scheduler."""
            report = status(bellwether, control)
            return bool(report and report["scheduler"]) and {
                s["slot"] for s in report["slots"] if s["state"] in ("ready", "recycling")} == {0, 1, 2}
        check("chaos: three slots served, one of them by the scheduler under the lease", wait_for(30, served))
        scraper = Scraper(port())
        scraper.start()
        rng = random.Random(1729)
        actions = {"kill": 0, "kill-scheduler": 0, "hup": 0, "ttin": 0, "ttou": 0}
        ends = time.monotonic() + 12
        while time.monotonic() < ends:
            time.sleep(rng.uniform(0.2, 0.6))
            action = rng.choice(list(actions))
            report = status(bellwether, control) or {"slots": [], "scheduler": None}
            pids = [s["pid"] for s in report["slots"] if s.get("pid")]
            try:
                if action == "kill" and pids:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                elif action == "kill-scheduler" and report["scheduler"]:
                    os.kill(report["scheduler"], signal.SIGKILL)
                elif action == "hup":
                    master.send_signal(signal.SIGHUP)
                elif action == "ttin" and report["master"]["workers"] < 5:
                    master.send_signal(signal.SIGTTIN)
                elif action == "ttou" and report["master"]["workers"] > 2:
                    master.send_signal(signal.SIGTTOU)
                else:
                    continue
            except ProcessLookupError:
                continue
            actions[action] += 1
        # Quiet: the recycling goes on by itself.
        check("chaos: the workers settle after the storm", wait_for(60, lambda: status(bellwether, control)
              and len(status(bellwether, control)["slots"]) >= 2 and status(bellwether, control)["scheduler"]))
        time.sleep(3)
        scraper.stopping.set()
        scraper.join(10)
        print(f"     chaos: {actions}, {scraper.scrapes} scrapes, slowest {scraper.slowest * 1000:.0f} ms")
        check("chaos: hundreds of scrapes answered and parsed, none failed",
              scraper.scrapes >= 200 and not scraper.failures,
              f"{scraper.scrapes} scrapes, failures {scraper.failures[:5]}")
        check("chaos: no counter ever went down", not scraper.decreases, f"{scraper.decreases[:5]}")
        families = scraper.last
        recycled = sum(s.value for s in families["bellwether_worker_recyclings"].samples
                       if s.name.endswith("_total") and s.labels.get("reason") == "age")
        check("chaos: workers were recycled for their age, and counted", recycled >= 1, f"{recycled}")
        check("chaos: the lease is redis, held, with a fence",
              value(families, "bellwether_lease_info", kind="redis", state="holding") == 1
              and value(families, "bellwether_lease_fence") >= 1)
        age = value(families, "bellwether_lease_renewal_age_seconds")
        check("chaos: the last renewal is younger than the renew deadline (2 s)", 0 <= age < 2, f"{age}")
    finally:
        if scraper:
            scraper.stopping.set()
        stop(master, "chaos: the master exits 0 after TERM")
        redis.kill()
        redis.wait()


main()
