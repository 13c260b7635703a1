"""What the end-to-end scripts share (apps.py, gunicorn_ready.py, trees.py,
preload.py, servers.py): ok/FAIL lines and the exit status, free ports, waiting on a
condition, the master's status, a request loop, the processes of a tree,
and the job logs the example apps write (one `key=value ...` line per job
execution)."""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

def app_scratch(usage, prefix, app):
    """BELLWETHER and VENV from the command line (or exit with `usage`), and
    a scratch directory, removed afterwards, that holds `app` as app.py."""
    if len(sys.argv) != 3:
        sys.exit(usage)
    bellwether, venv = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    scratch = tempfile.TemporaryDirectory(prefix=prefix)
    with open(os.path.join(scratch.name, "app.py"), "w") as file:
        file.write(app)
    return bellwether, venv, scratch


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

failures = 0
passes = 0


def check(name, condition, detail=""):
    global failures, passes
    if condition:
        passes += 1
        print(f"ok   {name}", flush=True)
    else:
        failures += 1
        print(f"FAIL {name}" + (f"\n    | {detail}" if detail else ""), flush=True)


def finish(scratch):
    """Ends a script: the logs when a check failed, the count, the exit status."""
    if failures:
        print_logs(scratch)
    print(f"{failures} failed")
    sys.exit(1 if failures else 0)


def tally(name):
    """A self-contained script's last line, "NAME: N passed, M failed", and its exit status."""
    print(f"{name}: {passes} passed, {failures} failed")
    return 1 if failures else 0


def print_logs(scratch):
    """The end of every log in scratch, to see why a check failed."""
    for name in sorted(os.listdir(scratch)):
        if name.endswith(".log"):
            print(f"--- {name} (last 40 lines)")
            with open(os.path.join(scratch, name)) as log:
                print("".join(log.readlines()[-40:]), end="")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(seconds, condition):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def alive(pid):
    """Running, not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def tree(pid):
    """pid and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as children:
                queue += [int(child) for child in children.read().split()]
        except OSError:
            pass
    return found


def redis_server(scratch):
    """A redis-server of its own on a free loopback port, nothing saved: (process, port)."""
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", scratch],
                              stdout=open(os.path.join(scratch, "redis.log"), "w"), stderr=subprocess.STDOUT)
    ping = lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,  # noqa: E731
                                  text=True).stdout.strip() == "PONG"
    if not wait_for(20, ping):
        server.kill()
        raise RuntimeError("redis-server did not answer")
    return server, port


def get(port):
    """The JSON answer to GET /, or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def status(bellwether, control):
    out = subprocess.run([bellwether, "status", "--json", "--control-socket", control],
                         capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def settled(bellwether, control, workers, generation=None):
    """workers ready workers of one generation (that one, if given), one of them the scheduler."""
    report = status(bellwether, control)
    if not report or report["master"]["workers"] != workers or report["scheduler"] is None:
        return False
    slots = report["slots"]
    generations = {s["generation"] for s in slots}
    # A worker being recycled is ready and serves until its replacement is.
    return len(slots) == workers and all(s["state"] in ("ready", "recycling") for s in slots) \
        and len(generations) == 1 \
        and generation in (None, *generations)


def job_lines(path):
    """One dict per line of a job log (`job=NAME pid=PID at=TIME ...`), pid and at as numbers."""
    result = []
    if not os.path.exists(path):
        return result
    with open(path) as log:
        for line in log:
            fields = dict(part.split("=", 1) for part in line.split())
            fields["pid"], fields["at"] = int(fields["pid"]), float(fields["at"])
            result.append(fields)
    return result


def in_turn(pids):
    """The pids in the order they took over, each once if they followed one another."""
    order = []
    for pid in pids:
        if not order or order[-1] != pid:
            order.append(pid)
    return order


class RequestLoop(threading.Thread):
    """Sends GET / one request after another, each on a new connection, until
    stopped; keeps each request's latency, the errors, and the generations
    named by JSON answers."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.latencies = []
        self.errors = []
        self.generations = set()
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    self.errors.append(f"status {response.status}")
                elif body.startswith(b"{"):
                    self.generations.add(json.loads(body).get("generation"))
            except (OSError, http.client.HTTPException) as error:
                self.errors.append(repr(error))
            finally:
                connection.close()
            self.latencies.append(time.monotonic() - started)

    def stop(self):
        self.stopping.set()
        self.join(15)
