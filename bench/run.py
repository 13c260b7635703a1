#!/usr/bin/env python3
"""bellwether against gunicorn, eight benchmarks in one run (see bench/run).

Every benchmark runs both systems in alternation, REPS times (5; --quick: 1,
with smaller sizes), on the same app (bench/app.py): `gunicorn -w N app:app`
against `bellwether -w N` running one `gunicorn -w 1 app:app` per worker on
the socket the master owns, so that only supervision differs. Writes
bench/RESULTS.md's generated part to bench/out/results.md and prints it.
"""
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
OUT = os.path.join(BENCH, "out")
BIN = os.path.join(ROOT, ".build", "release")
BW = os.path.join(BIN, "bellwether")
TESTWORKER = os.path.join(BIN, "bellwether-testworker")
GUNICORN = os.path.join(BENCH, ".venv", "bin", "gunicorn")
PYTHON = os.path.join(BENCH, ".venv", "bin", "python")
QUICK = "--quick" in sys.argv
REPS = 1 if QUICK else 5
rows = []  # the current benchmark's rows, formatted for the table


def log(text):
    print(text, file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(seconds, condition, step=0.02):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def live_children(pid):
    return [c for c in children(pid) if alive(c)]


def cpu_seconds(pid):
    """CPU time of the process's main thread, from schedstat (nanoseconds;
    /proc/PID/stat counts in 10 ms ticks, too coarse here)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return None


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def get(port, timeout=10.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=timeout) as response:
            return json.loads(response.read())
    except OSError:
        return None


class System:
    """One supervisor under test, started on a fresh port, stopped with TERM."""

    def __init__(self, kind, workers, extra=(), command=None, env=None):
        self.kind, self.port = kind, free_port()
        self.control = os.path.join(OUT, f"control-{os.getpid()}-{self.port}")
        environment = dict(os.environ, **(env or {}))
        if kind == "bellwether":
            app = command or [GUNICORN, "-w", "1", "-c", os.path.join(ROOT, "etc", "gunicorn.conf.py"),
                              "--no-control-socket", "--log-level", "warning", "app:app"]
            ready = [] if command else ["--ready", "notify", "-b", f"127.0.0.1:{self.port}"]
            argv = [BW, "-w", str(workers), *ready, "--control-socket", self.control,
                    "--lease", "file:" + os.path.join(OUT, f"token-{self.port}"), "--chdir", BENCH, *extra, "--", *app]
        else:
            argv = command or [GUNICORN, "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--chdir", BENCH,
                               "--no-control-socket", "--log-level", "warning", *extra, "app:app"]
        self.log = open(os.path.join(OUT, f"{kind}-{self.port}.log"), "w")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=environment, cwd=BENCH)
        self.pid = self.process.pid

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def median_range(values):
    if not values:
        return "n/a"
    values = sorted(values)
    m = statistics.median(values)
    return f"{fmt(m)} ({fmt(values[0])}–{fmt(values[-1])})" if len(values) > 1 else fmt(m)


def fmt(value):
    if isinstance(value, str):
        return value
    if value == float("inf"):
        return "never"
    if value == int(value) and abs(value) >= 100:
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"


def record(benchmark, measure, bw, gu, unit, goal, met):
    ratio = ""
    finite = bw and gu and all(v != float("inf") for v in bw + gu)
    if finite and statistics.median(gu) and unit not in ("", "%"):
        ratio = f"{statistics.median(bw) / statistics.median(gu):.2f}"
    unit_text = f" {unit}" if unit else ""
    rows.append({"benchmark": benchmark, "measure": measure, "bellwether": median_range(bw) + unit_text,
                 "gunicorn": median_range(gu) + unit_text if gu else "—", "ratio": ratio, "goal": goal,
                 "met": "yes" if met else "no" if met is not None else ""})
    ratio = f" ratio {ratio}" if ratio else ""
    log(f"  {benchmark} / {measure}: bellwether {median_range(bw)} gunicorn {median_range(gu)} {unit}{ratio}"
        f" — goal {goal}: {'met' if met else 'NOT met' if met is not None else '-'}")


# --- 1. failover ----------------------------------------------------------------
def failover():
    log("failover")
    kills = 5 if QUICK else 10
    execs, bares = [], []
    for _ in range(REPS):
        out = subprocess.run([os.path.join(OUT, "failover"), BW, os.path.join(BIN, "bellwether-exec"), TESTWORKER,
                              str(kills)], capture_output=True, text=True, check=True).stdout
        medians = {line.split()[0]: float(re.search(r"median_us=([\d.]+)", line).group(1))
                   for line in out.splitlines() if "median_us=" in line}
        execs.append(medians["fail"] - medians["bare"])
        bares.append(medians["bare"])
    record("failover", "SIGKILL → replacement execve'd, added to a bare posix_spawn+execve", execs, [], "µs",
           "≤ 1000 µs", statistics.median(execs) <= 1000)

    # Serving: the only worker (bellwether: the scheduler, on --scheduler-bind)
    # is SIGKILLed; a request sent at once waits in the listen queue of the
    # socket the master keeps, and is answered by the replacement.
    samples = {"bellwether": [], "gunicorn": []}
    for _ in range(REPS):
        for kind in ("bellwether", "gunicorn"):
            port = free_port()
            if kind == "bellwether":
                system = System(kind, 1, extra=["--scheduler-bind", f"127.0.0.1:{port}"],
                                command=[GUNICORN, "-w", "1", "--no-control-socket", "--log-level", "warning",
                                         "app:app"])
                system.port = port
            else:
                system = System(kind, 1)
            with system:
                values = []
                for _ in range(3 if QUICK else 5):
                    wait_for(30, lambda: get(system.port, 1) is not None)
                    time.sleep(1.2)  # past the 1 s stable uptime: no back-off
                    before = get(system.port)
                    start = time.monotonic()
                    if kind == "gunicorn":
                        os.kill(before["pid"], signal.SIGKILL)  # the worker that serves
                    else:
                        # The scheduler worker is `gunicorn -w 1` under its guard: an
                        # arbiter and the worker that serves. Kill both, not the guard.
                        arbiter = live_children(live_children(system.pid)[0])[0]
                        for pid in live_children(arbiter) + [arbiter]:
                            os.kill(pid, signal.SIGKILL)
                    answer = get(system.port, 30)
                    values.append((time.monotonic() - start) * 1000)
                    assert answer and answer["pid"] != before["pid"], (kind, answer, before)
                samples[kind].append(statistics.median(values))
    bw, gu = samples["bellwether"], samples["gunicorn"]
    record("failover", "SIGKILL → replacement serves its first request", bw, gu, "ms", "≤ gunicorn",
           statistics.median(bw) <= statistics.median(gu))
    boot = []
    for _ in range(5):
        start = time.monotonic()
        subprocess.run([PYTHON, "-c", "import gunicorn.app.wsgiapp, gunicorn.arbiter, gunicorn.workers.sync"],
                       check=True, cwd=BENCH)
        boot.append((time.monotonic() - start) * 1000)
    record("failover", "floor of an execve'd worker: python3 importing gunicorn", boot, [], "ms", "-", None)


# --- 2. reload under load ------------------------------------------------------------
def wrk(port, seconds, master=None, every=3.0):
    process = subprocess.Popen(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"],
                               stdout=subprocess.PIPE, text=True)
    hups = 0
    if master:
        end = time.monotonic() + seconds - 1
        while time.monotonic() + every < end:
            time.sleep(every)
            os.kill(master, signal.SIGHUP)
            hups += 1
    out = process.communicate()[0]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99ms = float(p99[1]) * {"us": 0.001, "ms": 1, "s": 1000}[p99[2]]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    return errors + non2xx, p99ms, rps, hups


def busy_ticks():
    """CPU time the whole machine spent outside idle, in USER_HZ ticks."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal


def process_cpu(pid):
    """CPU seconds of every thread of a live process (schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that ended meanwhile
    return total / 1e9


def reload_cpu(master, hups, window=2.5):
    """CPU (ms) that one HUP costs with nothing else running: the whole
    machine's (booting the new generation, ending the old, less an idle
    window), and the master's own."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = busy_ticks()
    time.sleep(window)
    idle = busy_ticks() - start
    machine, own = [], []
    for _ in range(hups):
        start, master_start = busy_ticks(), process_cpu(master)
        os.kill(master, signal.SIGHUP)
        time.sleep(window)
        machine.append((busy_ticks() - start - idle) * 1000 / ticks)
        own.append((process_cpu(master) - master_start) * 1000)
    return statistics.mean(machine), statistics.mean(own)


def reload_under_load():
    log("reload under load")
    seconds = 8 if QUICK else 30
    steady_seconds = 4 if QUICK else 10
    kinds = ("bellwether", "gunicorn", "control", "noaslr")
    result = {kind: {"failed": [], "p99": [], "rps": [], "steady p99": [], "steady rps": [], "cpu": [],
                     "master cpu": []}
              for kind in kinds}
    for _ in range(REPS):
        for kind in ("gunicorn", "bellwether", "noaslr"):
            # noaslr: bellwether --no-aslr, its workers sharing one address
            # layout as gunicorn's forked workers do.
            extra = ["--no-aslr"] if kind == "noaslr" else []
            with System("gunicorn" if kind == "gunicorn" else "bellwether", 4, extra=extra) as system:
                wait_for(60, lambda: get(system.port, 1) is not None)
                time.sleep(2)
                if kind != "noaslr":
                    machine, own = reload_cpu(system.pid, 2 if QUICK else 4)
                    result[kind]["cpu"].append(machine)
                    result[kind]["master cpu"].append(own)
                _, p99, rps, _ = wrk(system.port, steady_seconds)
                result[kind]["steady p99"].append(p99)
                result[kind]["steady rps"].append(rps)
                failed, p99, rps, _ = wrk(system.port, seconds, master=system.pid)
                for key, value in (("failed", failed), ("p99", p99), ("rps", rps)):
                    result[kind][key].append(value)
        # Control: the same four `gunicorn -w 1` on one shared socket with no
        # supervisor at all: what the one-arbiter-per-worker layout costs alone.
        port = free_port()
        control = subprocess.Popen([sys.executable, os.path.join(BENCH, "shared_socket.py"), str(port), "4",
                                    str(steady_seconds + 8), GUNICORN], cwd=BENCH, stderr=subprocess.DEVNULL)
        wait_for(60, lambda: get(port, 1) is not None)
        time.sleep(2)
        _, p99, rps, _ = wrk(port, steady_seconds)
        result["control"]["steady p99"].append(p99)
        result["control"]["steady rps"].append(rps)
        control.wait()
    bw, gu, co, na = result["bellwether"], result["gunicorn"], result["control"], result["noaslr"]
    record("reload under load", "p99 latency without reloads", bw["steady p99"], gu["steady p99"], "ms", "-", None)
    record("reload under load", "p99 without reloads, 4 × gunicorn -w 1 on one socket, no supervisor (as bellwether)",
           co["steady p99"], gu["steady p99"], "ms", "-", None)
    record("reload under load", "requests/s without reloads", bw["steady rps"], gu["steady rps"], "req/s", "-", None)
    record("reload under load", "requests/s without reloads, the same unsupervised layout (as bellwether)",
           co["steady rps"], gu["steady rps"], "req/s", "-", None)
    record("reload under load", f"failed requests, HUP every 3 s for {seconds} s", bw["failed"], gu["failed"], "", "0",
           max(bw["failed"]) == 0)
    record("reload under load", "p99 latency, HUP every 3 s", bw["p99"], gu["p99"], "ms", "≤ gunicorn",
           statistics.median(bw["p99"]) <= statistics.median(gu["p99"]))
    record("reload under load", "requests/s, HUP every 3 s", bw["rps"], gu["rps"], "req/s", "-", None)
    record("reload under load", "CPU per HUP without load, whole machine: 4 workers booted, 4 ended", bw["cpu"],
           gu["cpu"], "ms", "-", None)
    record("reload under load", "CPU per HUP without load, the master's own (gunicorn's arbiter forks)",
           bw["master cpu"], gu["master cpu"], "ms", "-", None)
    record("reload under load", "with --no-aslr: p99 latency without reloads", na["steady p99"], gu["steady p99"],
           "ms", "-", None)
    record("reload under load", "with --no-aslr: requests/s without reloads", na["steady rps"], gu["steady rps"],
           "req/s", "-", None)
    record("reload under load", f"with --no-aslr: failed requests, HUP every 3 s for {seconds} s", na["failed"],
           gu["failed"], "", "0", max(na["failed"]) == 0)
    record("reload under load", "with --no-aslr: p99 latency, HUP every 3 s", na["p99"], gu["p99"], "ms",
           "≤ gunicorn", statistics.median(na["p99"]) <= statistics.median(gu["p99"]))
    record("reload under load", "with --no-aslr: requests/s, HUP every 3 s", na["rps"], gu["rps"], "req/s", "-", None)


# --- 3. idle master ------------------------------------------------------------------------
def idle_master():
    log("idle master")
    seconds = 3 if QUICK else 10
    # bellwether as the README runs it; then with --watch on the app's tree and
    # --metrics-bind (both must arm no timer); then with --max-worker-memory,
    # whose sampling is the one timer it arms (every 5 s).
    layouts = {"bellwether": [], "watching": ["--watch", BENCH, "--metrics-bind", "127.0.0.1:0"],
               "memory": ["--max-worker-memory", "4G"], "gunicorn": []}
    result = {kind: {"wakeups": [], "cpu": []} for kind in layouts}
    for _ in range(REPS):
        for kind, extra in layouts.items():
            with System("gunicorn" if kind == "gunicorn" else "bellwether", 2, extra=extra) as system:
                wait_for(60, lambda: get(system.port, 1) is not None)
                time.sleep(3)  # past the boot grace: no timer armed
                switches, cpu = status_field(system.pid, "voluntary_ctxt_switches"), cpu_seconds(system.pid)
                time.sleep(seconds)
                result[kind]["wakeups"].append((status_field(system.pid, "voluntary_ctxt_switches") - switches) / seconds)
                result[kind]["cpu"].append((cpu_seconds(system.pid) - cpu) * 1000 / seconds)
    bw, gu = result["bellwether"], result["gunicorn"]
    record("idle master", "voluntary context switches of the master", bw["wakeups"], gu["wakeups"], "per s",
           "0", max(bw["wakeups"]) == 0)
    record("idle master", "CPU time of the master", bw["cpu"], gu["cpu"], "ms per s", "-", None)
    watching = result["watching"]
    record("idle master", "the same with --watch (the bench app's tree) and --metrics-bind, nobody scraping",
           watching["wakeups"], gu["wakeups"], "per s", "0", max(watching["wakeups"]) == 0)
    memory = result["memory"]
    record("idle master", "the same with --max-worker-memory: one tree measurement every 5 s",
           memory["wakeups"], gu["wakeups"], "per s", "≤ 0.25", max(memory["wakeups"]) <= 0.25)
    record("idle master", "CPU time of the master with --max-worker-memory", memory["cpu"], gu["cpu"], "ms per s",
           "-", None)


def metrics_scrape():
    """What one GET /metrics costs the master, and how long it takes to
    answer, scraped back to back by one client (a Prometheus scrapes every
    15 s or so); gunicorn has no Prometheus endpoint to compare with."""
    log("metrics scrape")
    scrapes = 200 if QUICK else 2000
    cpu, latency = [], []
    for _ in range(REPS):
        port = free_port()
        with System("bellwether", 4, extra=["--metrics-bind", f"127.0.0.1:{port}"]) as system:
            wait_for(60, lambda: get(system.port, 1) is not None)
            time.sleep(3)
            times = []
            before = cpu_seconds(system.pid)
            for _ in range(scrapes):
                began = time.perf_counter()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                    response.read()
                times.append(time.perf_counter() - began)
            cpu.append((cpu_seconds(system.pid) - before) * 1e6 / scrapes)
            latency.append(statistics.median(times) * 1000)
    record("metrics scrape", f"the master's CPU time per GET /metrics ({scrapes} back to back, 4 workers)", cpu, [],
           "µs", "≤ 1000 µs", statistics.median(cpu) <= 1000)
    record("metrics scrape", "median time to answer a scrape, connect included", latency, [], "ms", "-", None)


# --- 4. master memory --------------------------------------------------------------------------
def master_memory():
    log("master memory")
    respawns = 500 if QUICK else 10_000
    idle = {"bellwether": [], "gunicorn": []}
    growth = {"bellwether": [], "gunicorn": []}
    guards = []
    for _ in range(REPS):
        for kind in ("bellwether", "gunicorn"):
            with System(kind, 2) as system:
                wait_for(60, lambda: get(system.port, 1) is not None)
                time.sleep(2)
                idle[kind].append(status_field(system.pid, "VmRSS") / 1024)
                if kind == "bellwether":  # each worker's guard: the master's children
                    guards += [status_field(pid, "VmRSS") for pid in live_children(system.pid)]
        # Respawns. bellwether: 400 workers that each exit after 1.05 s (past
        # the stable uptime, so no back-off delays them), until RESPAWNS
        # replacements were spawned. gunicorn: --max-requests 1, one request
        # per respawn (it forks rather than executes, so each costs less).
        with System("bellwether", 400, command=["sleep", "1.05"]) as system:
            wait_for(30, lambda: len(live_children(system.pid)) == 400)
            time.sleep(2)
            before = status_field(system.pid, "VmRSS")
            log_path = system.log.name
            wait_for(600, lambda: open(log_path).read().count("spawned worker") >= respawns + 400, step=0.5)
            growth["bellwether"].append((status_field(system.pid, "VmRSS") - before) * 100 / before)
        gunicorn_respawns = respawns // 20
        with System("gunicorn", 2, extra=["--max-requests", "1"]) as system:
            wait_for(60, lambda: get(system.port, 1) is not None)
            for _ in range(50):
                get(system.port)
            before = status_field(system.pid, "VmRSS")
            for _ in range(gunicorn_respawns):
                get(system.port)
            growth["gunicorn"].append((status_field(system.pid, "VmRSS") - before) * 100 / before)
    bw, gu = idle["bellwether"], idle["gunicorn"]
    record("master memory", "RSS of the idle master", bw, gu, "MiB", "≤ ⅓ of gunicorn's",
           statistics.median(bw) * 3 <= statistics.median(gu))
    record("master memory", "RSS of a worker's guard (bellwether-exec)", guards, [], "KiB", "≤ 512 KiB",
           statistics.median(guards) <= 512)
    record("master memory", f"RSS growth after {respawns:,} respawns (gunicorn: {respawns // 20:,})",
           growth["bellwether"], growth["gunicorn"], "%", "≤ 5 %", max(growth["bellwether"]) <= 5)


# --- 5. spawn scaling -------------------------------------------------------------------------------
def spawn_scaling():
    log("spawn scaling")
    sizes = [1, 16, 64] if QUICK else [1, 16, 64, 256]
    per_worker, total = {}, {}
    for n in sizes:
        times = {"bellwether": [], "gunicorn": []}
        cpu = {"bellwether": [], "gunicorn": []}
        for _ in range(REPS):
            for kind in ("bellwether", "gunicorn"):
                start = time.monotonic()
                command = ["sleep", "1000"] if kind == "bellwether" else None
                with System(kind, n, command=command) as system:
                    # Running: the N children exist (forked by gunicorn, spawned by bellwether).
                    wait_for(120, lambda: len(live_children(system.pid)) >= n, step=0.002)
                    times[kind].append((time.monotonic() - start) * 1000)
                    cpu[kind].append(cpu_seconds(system.pid) * 1000 / n)
        total[n] = {kind: [value * n for value in values] for kind, values in cpu.items()}
        per_worker[n] = statistics.median(times["bellwether"]) / n
        linear = per_worker[n] <= 2 * per_worker[16] if n > 16 else None
        record("spawn scaling", f"N = {n}: start → N workers running", times["bellwether"], times["gunicorn"],
               "ms", "linear (per worker ≤ 2 × at N = 16)" if n > 16 else "linear", linear)
        record("spawn scaling", f"N = {n}: master CPU per spawn (incl. its own start)", cpu["bellwether"],
               cpu["gunicorn"], "ms", "≤ 1 ms", statistics.median(cpu["bellwether"]) <= 1 if n >= 16 else None)
    # What one more worker costs the master, its own start taken out: the
    # CPU at the largest N less the CPU at N = 1, per added worker, rep by rep.
    top = sizes[-1]
    added = {kind: [(big - one) / (top - 1) for big, one in zip(total[top][kind], total[1][kind])]
             for kind in ("bellwether", "gunicorn")}
    record("spawn scaling", f"master CPU per spawn added, N = 1 → {top} (its own start taken out)",
           added["bellwether"], added["gunicorn"], "ms", "≤ 1 ms", statistics.median(added["bellwether"]) <= 1)


# --- 6. signal storm ------------------------------------------------------------------------------------
def signal_storm():
    log("signal storm")
    count = 200 if QUICK else 1000
    seconds = 2 if QUICK else 10
    result = {kind: {"settle": [], "leaked": [], "fds": [], "probe": []} for kind in ("bellwether", "gunicorn")}
    failures = []
    for rep in range(REPS):
        for kind in ("bellwether", "gunicorn"):
            oracle = os.path.join(OUT, f"storm-oracle-{rep}")
            command = [TESTWORKER, "--oracle", oracle] if kind == "bellwether" else None
            with System(kind, 4, command=command) as system:
                wait_for(60, lambda: len(live_children(system.pid)) == 4)
                time.sleep(2)
                fds = fd_count(system.pid)
                rng = random.Random(rep)
                probes = []
                start = time.monotonic()
                for i in range(count):
                    os.kill(system.pid, rng.choice([signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU]))
                    if i % 50 == 0 and kind == "bellwether":
                        t = time.monotonic()
                        subprocess.run([BW, "status", "-s", system.control], capture_output=True, check=True)
                        probes.append((time.monotonic() - t) * 1000)
                    time.sleep(max(0.0, start + (i + 1) * seconds / count - time.monotonic()))
                os.kill(system.pid, signal.SIGHUP)  # the configured 4 again
                end = time.monotonic()
                # Settled: 4 workers, and still 4 a second later.
                since = None
                while time.monotonic() - end < 60:
                    if len(live_children(system.pid)) == 4:
                        since = since or time.monotonic()
                        if time.monotonic() - since >= 1:
                            break
                    else:
                        since = None
                    time.sleep(0.01)
                result[kind]["settle"].append((since - end) * 1000 if since else float("inf"))
                time.sleep(2)
                result[kind]["leaked"].append(len(live_children(system.pid)) - 4)
                result[kind]["fds"].append(fd_count(system.pid) - fds)
                if probes:
                    result[kind]["probe"].append(max(probes))
                if os.path.exists(oracle + ".failures"):
                    failures.append(open(oracle + ".failures").read())
    bw, gu = result["bellwether"], result["gunicorn"]
    record("signal storm", f"{count} HUP/TTIN/TTOU in {seconds} s: time to 4 workers after the last",
           bw["settle"], gu["settle"], "ms", "-", None)
    record("signal storm", "slowest `bellwether status` answer during the storm", bw["probe"], [], "ms",
           "responsive", max(bw["probe"]) < 1000)
    record("signal storm", "processes left over / master fds gained", [max(bw["leaked"]), max(bw["fds"])],
           [max(gu["leaked"]), max(gu["fds"])], "", "0 / 0", max(bw["leaked"]) == 0 and max(bw["fds"]) == 0)
    record("signal storm", "two schedulers at once (flock oracle)", [len(failures)], [], "", "0", not failures)


# --- 8. --preload: one fork server per generation ---------------------------------------------
# The recommended recipes: the example's libraries preloaded, gunicorn -w 1 in each slot.
PRELOAD_EXAMPLES = {
    "Flask": {"directory": os.path.join(ROOT, "examples", "flask-apscheduler"), "app": "app:app",
              "preload": "flask,flask_apscheduler,apscheduler.schedulers.background"},
    "Django": {"directory": os.path.join(ROOT, "examples", "django-apscheduler"), "app": "mysite.wsgi:application",
               "preload": "django.core.handlers.wsgi,django.db.models,django.db.backends.sqlite3.base,django.urls,"
                          "django.template.defaulttags,django.forms,django.contrib.admin,django.contrib.auth,"
                          "django.contrib.sessions.middleware,django.views.generic,"
                          "apscheduler.schedulers.background,apscheduler.triggers.cron,"
                          "apscheduler.triggers.interval"},
}


def tree_of(pid):
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                queue += [int(child) for child in f.read().split()]
        except OSError:
            pass
    return found


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss(argv, cwd, env, port, settle=8):
    """The whole tree's PSS (MiB) and process count, `settle` seconds after its first answer."""
    with open(os.path.join(OUT, f"pss-{port}.log"), "w") as log:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_for(60, lambda: probe(port)):
            raise RuntimeError(f"{argv} did not answer on port {port}")
        time.sleep(settle)
        pids = tree_of(process.pid)
        return sum(pss_kib(pid) for pid in pids) / 1024, len(pids)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def probe(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500  # Django's 404 for / is an answer
    except OSError:
        return False


def preload():
    log("preload")
    conf = os.path.join(ROOT, "etc", "gunicorn.conf.py")
    database = os.path.join(OUT, "preload-django.sqlite3")
    env = dict(os.environ, DJANGO_DB=database, XDG_RUNTIME_DIR=OUT)
    env.pop("NOTIFY_SOCKET", None)
    if os.path.exists(database):
        os.unlink(database)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=PRELOAD_EXAMPLES["Django"]["directory"], env=env,
                   check=True)
    for name, example in PRELOAD_EXAMPLES.items():
        layouts = {
            "gunicorn -w 4": lambda port: [GUNICORN, "-w", "4", "-b", f"127.0.0.1:{port}", example["app"]],
            "gunicorn -w 4 --preload": lambda port: [GUNICORN, "-w", "4", "--preload", "-b", f"127.0.0.1:{port}",
                                                     example["app"]],
            "recipe": lambda port: [BW, "-w", "4", "-b", f"127.0.0.1:{port}", "--", GUNICORN, "-c", conf, "-w", "1",
                                    example["app"]],
            "recipe, inner --preload": lambda port: [BW, "-w", "4", "-b", f"127.0.0.1:{port}", "--", GUNICORN, "-c",
                                                     conf, "-w", "1", "--preload", example["app"]],
            "--preload": lambda port: [BW, "-w", "4", "-b", f"127.0.0.1:{port}", "--preload", example["preload"],
                                       "--", GUNICORN, "-c", conf, "-w", "1", example["app"]],
        }
        pss = {layout: [] for layout in layouts}
        counts = {}
        for _ in range(REPS):
            for layout, argv in layouts.items():
                port = free_port()
                mib, count = tree_pss(argv(port), example["directory"], env, port, settle=3 if QUICK else 8)
                pss[layout].append(mib)
                counts[layout] = count
        plain, preloaded = pss["gunicorn -w 4"], pss["gunicorn -w 4 --preload"]
        record("preload", f"{name} example, whole-tree PSS, 4 workers: gunicorn -w 4 --preload "
               f"({counts['gunicorn -w 4 --preload']} processes) / gunicorn -w 4 ({counts['gunicorn -w 4']})",
               preloaded, plain, "MiB", "-", None)
        record("preload", f"{name}: the README's recipe, bellwether -w 4 -- gunicorn -w 1 ({counts['recipe']} "
               "processes) / gunicorn -w 4", pss["recipe"], plain, "MiB", "-", None)
        record("preload", f"{name}: the same with the inner gunicorn --preload ({counts['recipe, inner --preload']})"
               " / gunicorn -w 4", pss["recipe, inner --preload"], plain, "MiB", "-", None)
        ratio = statistics.median(pss["--preload"]) / statistics.median(plain)
        record("preload", f"{name}: bellwether -w 4 --preload LIBRARIES -- gunicorn -w 1 ({counts['--preload']} "
               "processes) / gunicorn -w 4", pss["--preload"], plain, "MiB", "≤ 0.7×", ratio <= 0.7)
        ratio = statistics.median(pss["--preload"]) / statistics.median(preloaded)
        record("preload", f"{name}: the same / gunicorn -w 4 --preload", pss["--preload"], preloaded, "MiB",
               "≤ 1.25×", ratio <= 1.25)

    # Failover: the only worker SIGKILLed, a request sent at once (it waits in
    # the listen queue of the socket the master keeps). bellwether: the
    # scheduler's app on --scheduler-bind (forked by the fork server, imports
    # bench/app.py itself), and a web worker (forked by the zygote, the app
    # already imported); gunicorn: its worker.
    samples = {"scheduler": [], "web": [], "gunicorn": [], "master": []}
    kills = 3 if QUICK else 5
    for _ in range(REPS):
        for kind in ("scheduler", "web", "gunicorn"):
            port = free_port()
            if kind == "gunicorn":
                system = System("gunicorn", 1)
            else:
                bind = ["--scheduler-bind", f"127.0.0.1:{port}"] if kind == "scheduler" else \
                    ["--no-scheduler", "-b", f"127.0.0.1:{port}"]
                system = System("bellwether", 1, extra=bind + ["--preload", "-"],
                                command=[GUNICORN, "-w", "1", "--no-control-socket", "--log-level", "warning",
                                         "app:app"])
                system.port = port
            with system:
                values, master = [], []
                for _ in range(kills):
                    wait_for(30, lambda: get(system.port, 1) is not None)
                    time.sleep(1.2)  # past the 1 s stable uptime: no back-off
                    before = get(system.port)
                    own = process_cpu(system.pid)
                    start = time.monotonic()
                    os.kill(before["pid"], signal.SIGKILL)  # bellwether's: the app, below its guard
                    answer = get(system.port, 30)
                    values.append((time.monotonic() - start) * 1000)
                    assert answer and answer["pid"] != before["pid"], (kind, answer, before)
                    time.sleep(0.3)
                    master.append((process_cpu(system.pid) - own) * 1000)
                samples[kind].append(statistics.median(values))
                if kind == "web":
                    samples["master"].append(statistics.median(master))
    gu = samples["gunicorn"]
    record("preload", "failover: a web worker SIGKILLed → its replacement (forked by the zygote) serves its first "
           "request", samples["web"], gu, "ms", "≤ gunicorn", statistics.median(samples["web"]) <= statistics.median(gu))
    record("preload", "failover: the scheduler SIGKILLed → its replacement (forked, imports the app) serves",
           samples["scheduler"], gu, "ms", "≤ gunicorn", statistics.median(samples["scheduler"]) <= statistics.median(gu))
    record("preload", "failover: the master's own CPU per replacement (the order, the answer, the reap)",
           samples["master"], [], "ms", "≤ 1 ms", statistics.median(samples["master"]) <= 1)

    # CPU per HUP, whole machine, no load: 4 workers of bench/app.py.
    cpu = {"bellwether": [], "gunicorn": []}
    wakeups = []
    for _ in range(REPS):
        for kind in ("bellwether", "gunicorn"):
            extra = ["--preload", "-"] if kind == "bellwether" else []
            with System(kind, 4, extra=extra) as system:
                wait_for(60, lambda: get(system.port, 1) is not None)
                time.sleep(3)
                if kind == "bellwether":
                    switches = status_field(system.pid, "voluntary_ctxt_switches")
                    time.sleep(3 if QUICK else 10)
                    wakeups.append((status_field(system.pid, "voluntary_ctxt_switches") - switches)
                                   / (3 if QUICK else 10))
                machine, _ = reload_cpu(system.pid, 2 if QUICK else 4)
                cpu[kind].append(machine)
    ratio = statistics.median(cpu["bellwether"]) / statistics.median(cpu["gunicorn"])
    record("preload", "CPU per HUP without load, whole machine, 4 workers: bellwether --preload / gunicorn",
           cpu["bellwether"], cpu["gunicorn"], "ms", "≤ 1.5×", ratio <= 1.5)
    record("preload", "idle master with --preload: voluntary context switches", wakeups, [], "per s", "0",
           max(wakeups) == 0)


ORDER = ["failover", "reload_under_load", "idle_master", "metrics_scrape", "master_memory", "spawn_scaling",
         "signal_storm", "preload"]


def table(directory):
    """The table of the latest rows of every benchmark saved in `directory`."""
    uname = platform.uname()
    versions = subprocess.run([GUNICORN, "--version"], capture_output=True, text=True).stdout.strip()
    bw_version = subprocess.run([BW, "--version"], capture_output=True, text=True).stdout.strip()
    lines = [f"Machine: {os.cpu_count()} cores, {uname.machine}, Linux {uname.release}; {bw_version} "
             f"(release, static Swift runtime); {versions}; Python {platform.python_version()}; "
             f"{REPS} repetition{'s' if REPS > 1 else ''} of each, median (min–max){' — QUICK MODE' if QUICK else ''}.",
             "", "| benchmark | measure | bellwether | gunicorn | ratio | goal | met |", "|---|---|---|---|---|---|---|"]
    for name in ORDER:
        path = os.path.join(directory, f"rows-{name}.json")
        if not os.path.exists(path):
            lines.append(f"| {name.replace('_', ' ')} | (not run) | | | | | |")
            continue
        for row in json.load(open(path)):
            lines.append("| " + " | ".join(row[key] for key in ("benchmark", "measure", "bellwether", "gunicorn",
                                                                 "ratio", "goal", "met")) + " |")
    return "\n".join(lines) + "\n"


def main():
    os.makedirs(OUT, exist_ok=True)
    selected = [a for a in sys.argv[1:] if not a.startswith("--")]
    # Each benchmark's rows are saved as soon as it ends: a later one that
    # fails loses nothing, and `bench/run NAME` re-measures one benchmark.
    directory = os.path.join(OUT, "quick" if QUICK else "full")
    os.makedirs(directory, exist_ok=True)
    for name in ORDER:
        if not selected or name in selected:
            rows.clear()
            globals()[name]()
            with open(os.path.join(directory, f"rows-{name}.json"), "w") as f:
                json.dump(rows, f, ensure_ascii=False, indent=1)
    text = table(directory)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
