#!/usr/bin/env python3
"""Black-box test of share/forkserver.py and the guard's ADOPT mode, with this
process playing the master: a child subreaper that starts the fork server
through bellwether-exec's exec-shim mode, sends it orders on a SEQPACKET
socket and reaps the guards it answers with.

usage: python3 Tests/EndToEnd/forkserver_test.py .build/debug/bellwether-exec
Prints "ok"/"FAIL" lines and "forkserver: N passed, M failed"; exits non-zero
on any failure. Linux only; stdlib only.
"""
import array
import ctypes
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import harness
from harness import check

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = os.path.join(ROOT, "share", "forkserver.py")
GRACE_MS = 1000
# Generous: a loaded 2-core CI machine. Every wait ends as soon as its
# condition holds.
PATIENCE = 20

def wait_for(condition, seconds=PATIENCE):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


libc = ctypes.CDLL(None, use_errno=True)


def prctl(option, value):
    if libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        raise OSError(ctypes.get_errno(), "prctl")


def stat_of(pid):
    """(state, ppid, pgid) from /proc/PID/stat, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def alive(pid):
    state = stat_of(pid)
    return state is not None and state[0] != "Z"


def exe_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def descriptors_of(pid):
    found = {}
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                found[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                pass
    except OSError:
        pass
    return found


def target_of(fd):
    return os.readlink(f"/proc/self/fd/{fd}")


def reap(pid, seconds=PATIENCE):
    """The wait status of our child `pid`, or None if it has not exited in
    time. A guard the fork server just answered may not be our child yet."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            got, status = 0, 0
        if got == pid:
            return status
        time.sleep(0.02)
    return None


def describe(status):
    if status is None:
        return "still running"
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.WEXITSTATUS(status)}"


# --- the scratch app ---------------------------------------------------------

FSAPP = '''
"""Preloaded by the fork server. Its import is counted in FS_COUNTER."""
import json, os, random, sys, threading, time

CONSTANT = "preloaded-42"
with open(os.environ["FS_COUNTER"], "a") as counter:
    counter.write(f"{os.getpid()}\\n")
HELD = open(os.environ["FS_HELD"], "w")  # a descriptor opened at import
import logging, socket
LOG = logging.getLogger("fsapp")
LOG.addHandler(logging.FileHandler(os.environ["FS_HELD"] + ".log"))  # appended: shared, as after gunicorn's preload
CONNECTION = socket.socketpair()[0]  # a connection opened at import: never shared
AFTER_FORK = []
os.register_at_fork(after_in_child=lambda: AFTER_FORK.append(os.getpid()))
if os.environ.get("FS_THREAD"):
    threading.Thread(target=time.sleep, args=(3600,), name="fsapp-ticker", daemon=True).start()
if os.environ.get("FS_READS_ROLE"):
    from os import environ  # a kept reference is watched too
    SCHEDULER = environ.get("WORKER_ROLE") == "scheduler"
if os.environ.get("FS_BREAK"):
    raise RuntimeError("fsapp is broken on purpose")


def run(kind):
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    try:
        os.read(HELD.fileno(), 1)
        held_error = 0
    except OSError as error:
        held_error = error.errno
    LOG.warning("logged by %d", os.getpid())
    try:
        CONNECTION.send(b"x")
        connection_error = 0
    except OSError as error:
        connection_error = error.errno
    report = {
        "environ_class": type(os.environ).__name__,
        "connection_error": connection_error,
        "kind": kind, "pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgid(0),
        "env": dict(os.environ), "argv": sys.argv, "path0": sys.path[0], "sys_path": sys.path,
        "random": random.random(),
        "constant": CONSTANT, "after_fork": AFTER_FORK, "fds": fds, "held_fd": HELD.fileno(),
        "held_error": held_error, "utc_offset": time.strftime("%z"), "gc_enabled": __import__("gc").isenabled(),
        "main": sys.modules["__main__"].__dict__.get("__file__"),
        "sigmask": sorted(int(s) for s in __import__("signal").pthread_sigmask(0, [])),
        "sigint": repr(__import__("signal").getsignal(2)),
    }
    mode = os.environ.get("FS_MODE", "sleep")
    if mode == "orphan":
        import subprocess
        report["orphan"] = subprocess.Popen(["sleep", "600"], start_new_session=True).pid
    path = os.path.join(os.environ["FS_REPORTS"], str(os.getpid()))
    with open(path + ".tmp", "w") as f:
        json.dump(report, f)
    os.rename(path + ".tmp", path + ".json")
    if mode.startswith("exit:"):
        sys.exit(int(mode[5:]))
    if mode == "ending":  # what the interpreter's end does, the fork server's quick one too
        import atexit
        atexit.register(lambda: print("atexit ran", flush=True))
        threading.Thread(target=lambda: (time.sleep(0.3), print("thread joined", flush=True))).start()
        print("buffered, not flushed", end="")
        sys.exit("a message for stderr")
    if mode == "sleep":
        while True:
            time.sleep(3600)


def console_main():
    run("console")
    return 0
'''

APP = '''
import fsapp
fsapp.run("script")
'''

MAIN = '''
import fsapp
fsapp.run("module")
'''


class Scratch:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="forkserver-test-")
        self.reports = os.path.join(self.dir, "reports")
        os.mkdir(self.reports)
        self.counter = os.path.join(self.dir, "imports")
        self.held = os.path.join(self.dir, "held-at-import")
        for name, text in (("fsapp.py", FSAPP), ("app.py", APP), ("fsmain.py", MAIN)):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(textwrap.dedent(text))
        # A distribution with a console script, for importlib.metadata, in a
        # directory of its own: fsapp is found only in the working directory.
        self.site = os.path.join(self.dir, "site")
        info = os.path.join(self.site, "fsdemo-0.1.dist-info")
        os.makedirs(info)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\nName: fsdemo\nVersion: 0.1\n")
        with open(os.path.join(info, "entry_points.txt"), "w") as f:
            f.write("[console_scripts]\nfsdemo = fsapp:console_main\n")

    def imports(self):
        try:
            with open(self.counter) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def report(self, pid):
        try:
            with open(os.path.join(self.reports, f"{pid}.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def report_below(self, guard):
        for name in os.listdir(self.reports):
            if name.endswith(".json"):
                report = self.report(name[:-5])
                if report and report["ppid"] == guard:
                    return report
        return None


# --- the master's part -------------------------------------------------------

class Worker:
    """One answered order: F (the guard, our child) and its link's write end."""

    def __init__(self, guard, link_write, link_inode, stderr_path):
        self.guard, self.link_write, self.link_inode, self.stderr_path = guard, link_write, link_inode, stderr_path
        self.status = None

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def wait(self, seconds=PATIENCE):
        if self.status is None:
            self.status = reap(self.guard, seconds)
        return self.status

    def close_link(self):
        if self.link_write is not None:
            os.close(self.link_write)
            self.link_write = None


class Master:
    def __init__(self, scratch, guard, preload, app, env=None):
        self.scratch, self.guard = scratch, guard
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_path = os.path.join(scratch.dir, f"notify-{time.monotonic_ns()}")
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        self.messages = []
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = mine
        self.control_inode = os.fstat(theirs.fileno()).st_ino
        self.stderr_path = os.path.join(scratch.dir, f"server-{time.monotonic_ns()}.err")
        server_env = dict(os.environ, FS_COUNTER=scratch.counter, FS_HELD=scratch.held, **(env or {}))
        argv = [guard, str(os.getpid()), "-", "-", sys.executable, sys.executable, SERVER,
                str(theirs.fileno()), guard, str(os.getpid()), "-", preload] + app
        with open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(argv, pass_fds=[theirs.fileno()], env=server_env,
                                            cwd=scratch.dir, stdin=subprocess.DEVNULL, stderr=err)
        theirs.close()
        self.control.settimeout(PATIENCE)
        self.ready = json.loads(self.control.recv(65536))
        self.ref = 0
        self.workers = []

    def order(self, mode="sleep", scheduler=False, env=None, extra=None):
        """Sends one order (listening socket at 3; for the scheduler the token
        at 4 and the link at 5, else the link at 4; stdout and stderr to a
        file) and answers (reply, Worker or None)."""
        self.ref += 1
        link_read, link_write = os.pipe()
        stderr_path = os.path.join(self.scratch.dir, f"worker-{self.ref}-{time.monotonic_ns()}.err")
        output = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        passed_fds = [output, output, self.listener.fileno()]
        layout = {"1": 0, "2": 1, "3": 2}
        if scheduler:
            self.token = os.open(os.path.join(self.scratch.dir, "token"), os.O_RDWR | os.O_CREAT, 0o600)
            passed_fds.append(self.token)
            layout["4"] = 3
            spec = f"5:{GRACE_MS}:4"
        else:
            spec = f"4:{GRACE_MS}:-"
        layout[spec.split(":")[0]] = len(passed_fds)
        passed_fds.append(link_read)
        worker_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "WORKER_ROLE": "scheduler" if scheduler else "web",
            "WORKER_ID": str(self.ref), "LISTEN_FDS": "1", "LISTEN_PID": "0", "NOTIFY_SOCKET": self.notify_path,
            "FS_REPORTS": self.scratch.reports, "FS_MODE": mode, "TZ": "Asia/Shanghai",
        }
        worker_env.update(env or {})
        order = {"ref": self.ref, "env": worker_env, "fds": layout, "guard": spec}
        order.update(extra or {})
        self.control.sendmsg([json.dumps(order).encode()],
                             [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", passed_fds))])
        link_inode = os.fstat(link_read).st_ino
        os.close(link_read)
        os.close(output)
        reply = json.loads(self.control.recv(65536))
        if "pid" not in reply:
            os.close(link_write)
            return reply, None
        worker = Worker(reply["pid"], link_write, link_inode, stderr_path)
        self.workers.append(worker)
        return reply, worker

    def drain_notify(self):
        while True:
            try:
                self.messages.append(self.notify.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def stop(self):
        """Ends every guard still running (SIGKILL to its group) and the server."""
        for worker in self.workers:
            if worker.status is None:
                try:
                    os.killpg(worker.guard, signal.SIGKILL)
                except OSError:
                    pass
                worker.wait()
            worker.close_link()
        self.control.close()
        try:
            status = self.process.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self.listener.close()
        self.notify.close()
        return status

    def server_stderr(self):
        with open(self.stderr_path) as f:
            return f.read()


def guard_of(worker, guard_binary):
    """Waits until F runs the guard; answers W's report."""
    wait_for(lambda: exe_of(worker.guard) == guard_binary or not alive(worker.guard))
    return wait_for(lambda: scratch.report_below(worker.guard))


# --- the tests ---------------------------------------------------------------

def test_preloaded_workers(guard):
    before = len(scratch.imports())
    master = Master(scratch, guard, "fsapp", [os.path.join(scratch.dir, "app.py"), "one", "two"])
    check("the server says it is ready, with no failure and a frozen heap",
          master.ready.get("ready") == master.process.pid and master.ready.get("failure") is None
          and master.ready.get("gc_frozen", 0) > 0, repr(master.ready))
    replies, workers = [], []
    for _ in range(3):
        reply, worker = master.order()
        replies.append(reply)
        workers.append(worker)
    check("each order is answered with its ref and a pid",
          [r.get("ref") for r in replies] == [1, 2, 3] and all(workers), repr(replies))
    if not all(workers):
        master.stop()
        return
    # The answer comes before the pid is orphaned to the master (so that the
    # master knows it before it can reap it or hear from it): give it a moment.
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline and not all(
            (stat_of(w.guard) or (0, 0, 0))[1] == os.getpid() for w in workers):
        time.sleep(0.01)
    check("each answered pid is the master's own child",
          all((stat_of(w.guard) or (0, 0, 0))[1] == os.getpid() for w in workers),
          repr([(w.guard, stat_of(w.guard)) for w in workers]))
    reports = [guard_of(w, guard) for w in workers]
    check("each answered pid runs bellwether-exec", all(exe_of(w.guard) == guard for w in workers),
          repr([exe_of(w.guard) for w in workers]))
    check("each worker reports, as the guard's child", all(r and r["ppid"] == w.guard for r, w in zip(reports, workers)),
          repr([(w.guard, r and r["ppid"]) for r, w in zip(reports, workers)]))
    if not all(reports):
        print("    | server stderr:", master.server_stderr(), "worker stderr:", workers[0].stderr())
        master.stop()
        return
    first = reports[0]
    check("the worker runs the script with its arguments, as __main__",
          first["kind"] == "script" and first["argv"] == [os.path.join(scratch.dir, "app.py"), "one", "two"]
          and first["main"] == os.path.join(scratch.dir, "app.py") and first["path0"] == scratch.dir,
          repr((first["argv"], first["main"], first["path0"])))
    check("the worker has the order's environment, LISTEN_PID its own pid",
          all(r["env"].get("WORKER_ID") == str(i + 1) and r["env"].get("WORKER_ROLE") == "web"
              and r["env"].get("LISTEN_PID") == str(r["pid"]) and "FS_COUNTER" not in r["env"]
              for i, r in enumerate(reports)), repr([r["env"] for r in reports]))
    check("the order's TZ is in effect (tzset)", first["utc_offset"] == "+0800", first["utc_offset"])
    check("the worker leads no group of its own: it is in its guard's, which leads one",
          all(r["pgid"] == w.guard and stat_of(w.guard)[2] == w.guard for r, w in zip(reports, workers)))
    check("the preloaded module was imported once, by the server, not again by any worker",
          scratch.imports()[before:] == [str(master.process.pid)], repr(scratch.imports()[before:]))
    check("the worker sees the preloaded module's constant", all(r["constant"] == "preloaded-42" for r in reports))
    check("os.register_at_fork handlers ran in the worker",
          all(r["after_fork"] and r["after_fork"][-1] == r["pid"] for r in reports),
          repr([r["after_fork"] for r in reports]))
    randoms = [r["random"] for r in reports]
    check("random is seeded anew in every worker", len(set(randoms)) == len(randoms), repr(randoms))
    check("gc runs in the worker", all(r["gc_enabled"] for r in reports))
    check("the worker starts with an empty signal mask and Python's SIGINT handler",
          all(r["sigmask"] == [] and "default_int_handler" in r["sigint"] for r in reports),
          repr([(r["sigmask"], r["sigint"]) for r in reports]))
    listener_target = target_of(master.listener.fileno())
    check("the worker has the listening socket at fd 3",
          all(r["fds"].get("3") == listener_target for r in reports), repr(first["fds"]))
    check("the descriptor opened at import is not open in the worker",
          all(scratch.held not in r["fds"].values() for r in reports), repr(first["fds"]))
    with open(scratch.held + ".log") as logged:
        logged = logged.read()
    check("a logging.FileHandler opened at import (appending) is shared: every worker's line is in its file",
          all(f"logged by {r['pid']}" in logged for r in reports), logged)
    check("a socket opened at import fails with EBADF in the worker, never shared",
          all(r["connection_error"] == errno.EBADF for r in reports), repr([r["connection_error"] for r in reports]))
    check("its number fails with EBADF rather than reaching another file",
          all(r["held_error"] == errno.EBADF and r["fds"].get(str(r["held_fd"])) == "/dev/null" for r in reports),
          repr([(r["held_fd"], r["held_error"], r["fds"].get(str(r["held_fd"]))) for r in reports]))
    link_targets = [f"pipe:[{w.link_inode}]" for w in workers]
    control_target = f"socket:[{master.control_inode}]"
    check("the worker holds neither the link nor the control socket",
          all(link not in r["fds"].values() and control_target not in r["fds"].values()
              for r, link in zip(reports, link_targets)), repr(first["fds"]))
    guard_fds = [descriptors_of(w.guard) for w in workers]
    check("the guard holds its link, and neither the control socket nor the listening socket",
          all(link in fds.values() and control_target not in fds.values() and listener_target not in fds.values()
              for fds, link in zip(guard_fds, link_targets)), repr(guard_fds[0]))
    check("the guard told the master the worker's pid (MAINPID=)",
          wait_for(lambda: all(f"MAINPID={r['pid']}" in master.drain_notify() for r in reports)),
          repr(master.messages))

    # The master link's end: the guard TERMs the tree, and exits as the worker did.
    doomed, doomed_report = workers[0], reports[0]
    started = time.monotonic()
    doomed.close_link()
    status = doomed.wait()
    took = time.monotonic() - started
    check("when the master link closes, the guard TERMs the worker and exits as it did",
          status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
          and not alive(doomed_report["pid"]), f"{describe(status)} after {took:.2f} s")
    check("... within the grace", took < GRACE_MS / 1000 + 2, f"{took:.2f} s")

    # SIGKILL of the worker: the guard exits with its status.
    os.kill(reports[1]["pid"], signal.SIGKILL)
    status = workers[1].wait()
    check("SIGKILL of the worker: the guard exits with its status",
          status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, describe(status))

    # A signal to the guard is forwarded to the worker.
    os.kill(workers[2].guard, signal.SIGUSR1)
    status = workers[2].wait()
    check("a signal to the guard reaches the worker (SIGUSR1 ends it, and the guard likewise)",
          status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGUSR1, describe(status))

    # The worker's own exit status.
    _, worker = master.order(mode="exit:3")
    check("a worker that exits 3: its guard exits 3", worker and describe(worker.wait()) == "exit 3",
          describe(worker and worker.status))

    # The end of a worker: as the interpreter's, without its teardown.
    _, worker = master.order(mode="ending")
    status = describe(worker and worker.wait())
    said = worker.stderr() if worker else ""
    check("a worker's end: non-daemon threads joined, atexit handlers run, output flushed, "
          "sys.exit(TEXT) is TEXT on stderr and status 1",
          status == "exit 1" and all(part in said for part in
                                     ("thread joined", "atexit ran", "buffered, not flushed", "a message for stderr"))
          and said.index("thread joined") < said.index("atexit ran"), f"{status}: {said!r}")

    # An orphan left behind is TERMed and waited for.
    _, worker = master.order(mode="orphan")
    report = worker and guard_of(worker, guard)
    status = worker and worker.wait()
    orphan = report and report.get("orphan")
    check("a worker that leaves a setsid orphan behind: the guard ends it and exits 0",
          describe(status) == "exit 0" and orphan and not alive(orphan), f"{describe(status)}, orphan {orphan}")

    # The scheduler: the token stays with the guard.
    _, worker = master.order(scheduler=True, env={"LISTEN_FDS": "1"})
    report = worker and guard_of(worker, guard)
    token_target = os.path.join(scratch.dir, "token")
    check("the scheduler's guard holds the token; its worker does not",
          report and token_target in descriptors_of(worker.guard).values()
          and token_target not in report["fds"].values() and report["fds"].get("3") == listener_target,
          repr(report and report["fds"]))

    reply, worker = master.order(extra={"fds": {"3": 7}})
    check("a malformed order is answered with an error, and the server goes on",
          worker is None and reply.get("ref") == master.ref and "error" in reply, repr(reply))
    _, worker = master.order(mode="exit:0")
    check("... and answers the next one", worker is not None and describe(worker.wait()) == "exit 0")

    status = master.stop()
    check("end of file on the control socket ends the server, status 0", status == 0,
          f"{status}: {master.server_stderr()}")


def test_modules_and_console_scripts(guard):
    master = Master(scratch, guard, "fsapp", ["-m", "fsmain", "x"])
    _, worker = master.order(mode="exit:0")
    report = worker and guard_of(worker, guard)
    check("-m MODULE: the worker runs it as __main__ with its arguments, the cwd on sys.path",
          report and report["kind"] == "module" and report["argv"] == [os.path.join(scratch.dir, "fsmain.py"), "x"]
          and report["path0"] == scratch.dir and describe(worker.wait()) == "exit 0",
          repr(report and (report["argv"], report["path0"])))
    master.stop()

    master = Master(scratch, guard, "fsapp", ["fsdemo", "--flag"], env={"PYTHONPATH": scratch.site})
    _, worker = master.order(mode="exit:0")
    report = worker and guard_of(worker, guard)
    bindir = os.path.dirname(sys.executable)
    check("a console script: its entry point (from the metadata) runs with sys.argv set",
          report and report["kind"] == "console" and report["argv"] == [os.path.join(bindir, "fsdemo"), "--flag"]
          and describe(worker.wait()) == "exit 0", repr(report and report["argv"]) + master.server_stderr())
    check("... its preload found in the working directory, which the worker's sys.path does not have",
          report and report["path0"] == bindir and scratch.dir not in report["sys_path"],
          repr(report and report["sys_path"]))
    before = len(scratch.imports())
    _, worker = master.order(mode="exit:0")
    guard_of(worker, guard)
    worker.wait()
    check("... whose module the server imported (no import in the worker)", len(scratch.imports()) == before)
    master.stop()

    master = Master(scratch, guard, "-", ["no-such-console-script"])
    _, worker = master.order()
    status = worker and worker.wait()
    check("an unknown console script: the server goes on, each worker exits 1 saying why",
          describe(status) == "exit 1" and "no console script of that name" in worker.stderr()
          and master.ready.get("failure"), f"{describe(status)}: {worker and worker.stderr()!r}")
    master.stop()


def test_import_error(guard):
    master = Master(scratch, guard, "fsapp", [os.path.join(scratch.dir, "app.py")], env={"FS_BREAK": "1"})
    check("a failed preload is reported, not fatal", "RuntimeError" in (master.ready.get("failure") or ""),
          repr(master.ready))
    for n in range(2):
        _, worker = master.order()
        status = worker and worker.wait()
        text = worker.stderr() if worker else ""
        check(f"worker {n + 1} of a failed preload exits 1 with the traceback",
              describe(status) == "exit 1" and "Traceback" in text and "fsapp is broken on purpose" in text
              and "fsapp.py" in text, f"{describe(status)}: {text!r}")
    check("the server is still running", master.process.poll() is None)
    master.stop()


def expect_refusal(master, name, *words):
    """Orders one worker, which must exit 1 with every one of `words` on its stderr; answers it."""
    _, worker = master.order()
    status = worker and worker.wait()
    text = worker.stderr() if worker else ""
    check(name, describe(status) == "exit 1" and all(word in text for word in words), f"{describe(status)}: {text!r}")
    return worker


def test_threads_refused(guard):
    master = Master(scratch, guard, "fsapp", [os.path.join(scratch.dir, "app.py")], env={"FS_THREAD": "1"})
    check("a thread running after the preload is named in the server's failure",
          "fsapp-ticker" in (master.ready.get("failure") or ""), repr(master.ready))
    worker = expect_refusal(master, "and every worker refuses to run: exit 1, naming the thread",
                            "refusing to fork", "fsapp-ticker")
    check("no report: the app never ran", worker is not None and scratch.report_below(worker.guard) is None)
    master.stop()


def test_role_read_refused(guard):
    watched = {"BELLWETHER_FORKSERVER_WORKER_VARIABLES": "WORKERS_COUNT,WORKER_ID,WORKER_ROLE"}
    master = Master(scratch, guard, "fsapp", [os.path.join(scratch.dir, "app.py")],
                    env=dict(watched, FS_READS_ROLE="1"))
    check("a preload reading WORKER_ROLE is named, with its module, in the server's failure",
          "read WORKER_ROLE (in fsapp)" in (master.ready.get("failure") or ""), repr(master.ready))
    expect_refusal(master, "and every worker refuses to run: exit 1, saying so", "read WORKER_ROLE")
    master.stop()
    master = Master(scratch, guard, "fsapp", [os.path.join(scratch.dir, "app.py")], env=watched)
    check("the same preload without the read is not refused",
          master.ready.get("failure") is None, repr(master.ready))
    _, worker = master.order()
    report = worker and harness.wait_for(PATIENCE, lambda: scratch.report_below(worker.guard) is not None) \
        and scratch.report_below(worker.guard)
    check("... and its worker runs, with os.environ an ordinary mapping again (the watch undone)",
          bool(report) and report["environ_class"] == "_Environ", repr(report and report.get("environ_class")))
    master.stop()


def adopt(guard, grace_ms, arrange, spec_tail=None, credentials="-", extra=()):
    """Forks F, which forks W (`arrange` runs in W), waits until W is a
    zombie when `arrange` returns, then executes the guard in ADOPT mode.
    Answers (F's status, seconds, F's stderr)."""
    link_read, link_write = os.pipe()
    err_path = os.path.join(scratch.dir, f"adopt-{time.monotonic_ns()}.err")
    ready_read, ready_write = os.pipe()
    started = time.monotonic()
    guard_pid = os.fork()
    if guard_pid == 0:
        try:
            os.close(link_write)
            os.close(ready_read)
            os.set_inheritable(link_read, True)
            err = os.open(err_path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.dup2(err, 2)
            prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
            worker = os.fork()
            if worker == 0:
                os._exit(arrange())
            # Until W is a zombie, and what it left behind is ours.
            while stat_of(worker)[0] != "Z":
                time.sleep(0.005)
            time.sleep(0.05)
            os.write(ready_write, str(worker).encode())
            tail = spec_tail if spec_tail is not None else str(worker)
            argv = [guard, str(os.getppid()), credentials, f"{link_read}:{grace_ms}:-:{tail}", *extra]
            os.execv(guard, argv)
        finally:
            os._exit(99)
    os.close(link_read)
    os.close(ready_write)
    os.read(ready_read, 32)
    os.close(ready_read)
    status = reap(guard_pid)
    took = time.monotonic() - started
    if status is None:
        os.kill(guard_pid, signal.SIGKILL)  # its tree goes with it: W's death signal
        reap(guard_pid)
    os.close(link_write)
    with open(err_path) as f:
        return status, took, f.read()


def test_adopt_mode(guard):
    status, took, _ = adopt(guard, 5000, lambda: 7)
    check("ADOPT: an app that exited before the guard started is reaped; the guard exits 7",
          describe(status) == "exit 7" and took < 3, f"{describe(status)} after {took:.2f} s")

    orphan_file = os.path.join(scratch.dir, "adopt-orphan")

    def leave_orphan():
        pid = os.fork()
        if pid == 0:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(600)
            os._exit(0)
        with open(orphan_file, "w") as f:
            f.write(str(pid))
        return 5

    status, took, _ = adopt(guard, 5000, leave_orphan)
    with open(orphan_file) as f:
        orphan = int(f.read())
    check("ADOPT: an app that exited early leaving an orphan: the orphan is TERMed, the guard exits 5",
          describe(status) == "exit 5" and not alive(orphan) and took < 3,
          f"{describe(status)} after {took:.2f} s, orphan alive: {alive(orphan)}")

    status, _, text = adopt(guard, 5000, lambda: 0, spec_tail=str(os.getpid()))
    check("ADOPT: a pid that is not the guard's child is refused (125)",
          describe(status) == "exit 125" and "not a child" in text, f"{describe(status)}: {text!r}")
    status, _, text = adopt(guard, 5000, lambda: 0, credentials="1000:1000:-:-")
    check("ADOPT: credentials other than '-' are refused (125)",
          describe(status) == "exit 125" and "credentials" in text, f"{describe(status)}: {text!r}")
    status, _, text = adopt(guard, 5000, lambda: 0, extra=("/bin/true", "true"))
    check("ADOPT: an app's path after an adopting GUARD is refused (125)",
          describe(status) == "exit 125" and "malformed guard" in text, f"{describe(status)}: {text!r}")


def main():
    global scratch
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    guard = os.path.realpath(sys.argv[1])
    prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: the master's part
    scratch = Scratch()
    try:
        test_adopt_mode(guard)
        test_preloaded_workers(guard)
        test_modules_and_console_scripts(guard)
        test_import_error(guard)
        test_threads_refused(guard)
        test_role_read_refused(guard)
    finally:
        shutil.rmtree(scratch.dir, ignore_errors=True)
    return harness.tally("forkserver")


if __name__ == "__main__":
    sys.exit(main())
