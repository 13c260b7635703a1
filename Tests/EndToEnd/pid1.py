#!/usr/bin/env python3
"""End-to-end test: bellwether as a container's PID 1.

Each case runs the real binary as PID 1 of a new PID namespace (namespaces.py:
`unshare --pid --fork --mount-proc`, a /run of its own), with small shell
apps, and looks at the namespace's processes from outside:

1. An app's exit status shows in the log, and a failed start's status 3 is
   the container's.
2. Stops: TERM and INT from outside (to the namespace's PID 1, as `docker
   stop` and `docker kill -s INT` send them) and from inside (`kill 1`, which
   the kernel drops for a PID 1 that leaves the signal at its default), QUIT
   from inside: status 0, and every app and its setsid daemon ran its TERM
   handler to the end before PID 1 exited (the kernel SIGKILLs whatever is left
   when it does, handlers and all). HUP from inside reloads.
3. Zombies: a double-forked daemon that exits later, a child its app never
   reaps (`sleep 0.3 & exec app`), a worker whose guard is SIGKILLed (its
   daemon comes to PID 1, which kills it as a stray), a process started by
   `docker exec` (nsenter here) that leaves orphans: no zombie stays in the
   namespace but the unreaped child of a live app, whose parent is that app.
4. An orphan of `docker exec` that is still running is not the workers'
   business: it must be left running when a worker exits, and must not hold
   back a new scheduler.

usage: pid1.py BELLWETHER
Prints "ok"/"FAIL" lines and exits non-zero on any failure.
"""
import os
import signal
import sys
import tempfile
import time

from apps import check, wait_for
import apps
from namespaces import Container, alive, command_line

# On TERM, the app works for 0.3 s and leaves MARKS/app.PID; its setsid
# daemon leaves MARKS/daemon.PID. A mark is written only if nothing SIGKILLed
# them first, as the kernel does to a namespace whose PID 1 has exited.
POLITE = """\
#!/bin/sh
setsid sh -c 'trap "echo > $MARKS/daemon.\\$\\$; exit 0" TERM; while :; do sleep 0.1; done' &
trap 'sleep 0.3; echo > "$MARKS/app.$$"; exit 0' TERM
while :; do sleep 0.1; done
"""

# What apps leave behind: a daemon that exits by itself 0.5 s later, a daemon
# that stays (sleep 999), and a child the app never reaps (sleep 0.3 before
# exec: the app, sleep 1000, is its parent).
FORKER = """\
#!/bin/sh
(setsid sh -c 'sleep 0.5; exit 5' &)
(setsid sleep 999 &)
sleep 0.3 &
exec sleep 1000
"""

# An orphan must not hold run_inside's output pipes open: run_inside waits for them.
QUIET = "</dev/null >/dev/null 2>&1"


def write_app(scratch, name, text):
    path = os.path.join(scratch, name)
    with open(path, "w") as script:
        script.write(text)
    os.chmod(path, 0o755)
    return path


def start(bellwether, scratch, name, options, command, env=None):
    log = os.path.join(scratch, name.lower().replace(" ", "-") + ".log")
    return Container([bellwether] + options + ["--"] + command, log,
                     env=dict(os.environ, **(env or {})), cwd=scratch)


def ready(container):
    return "generation 0 is ready" in container.text()


def apps_named(container, command):
    """Host pids of the namespace's live processes whose command line is `command`."""
    return [pid for pid, (state, _, line) in container.processes().items() if line == command and state != "Z"]


def role(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            for entry in environ.read().split(b"\0"):
                if entry.startswith(b"WORKER_ROLE="):
                    return entry.split(b"=", 1)[1].decode()
    except OSError:
        pass
    return None


def exit_status_case(bellwether, scratch):
    container = start(bellwether, scratch, "exit-status", ["-w", "2", "--boot-attempts", "2"],
                      ["sh", "-c", "sleep 0.2; exit 7"])
    code = container.wait(30)
    check("exit status: a failed start as PID 1 is the container's status 3", code == 3, f"status {code}")
    check("exit status: the log gives the app's exit status 7", "exited with exit status 7" in container.text(),
          container.text()[-2000:])


def stop_case(bellwether, scratch, name, how, number, quick):
    marks = tempfile.mkdtemp(prefix="marks-", dir=scratch)
    app = write_app(scratch, "polite", POLITE)
    container = start(bellwether, scratch, name, ["-w", "2", "--graceful-timeout", "5"], [app],
                      env={"MARKS": marks})
    try:
        check(f"{name}: 2 workers ready under PID 1", wait_for(20, lambda: ready(container)), container.text())
        time.sleep(0.3)  # the daemons start with the apps
        if how == "outside":
            container.signal(number)
        else:
            result = container.run_inside(["sh", "-c", f"kill -{signal.Signals(number).name[3:]} 1"])
            check(f"{name}: kill 1 from inside was accepted", result.returncode == 0, result.stderr)
        code = container.wait(20)
        check(f"{name}: PID 1 exits with status 0", code == 0, f"status {code}\n{container.text()[-2000:]}")
        stopping = "quick stop" if quick else "graceful stop"
        check(f"{name}: the log says {stopping} and that every worker is gone",
              stopping in container.text() and "all workers are gone; exiting" in container.text(),
              container.text()[-2000:])
        marked = sorted(os.listdir(marks))
        check(f"{name}: both apps and both daemons finished their TERM handlers before PID 1 exited",
              len([m for m in marked if m.startswith("app.")]) == 2
              and len([m for m in marked if m.startswith("daemon.")]) == 2, f"marks: {marked}")
    finally:
        container.destroy()


def reload_case(bellwether, scratch):
    marks = tempfile.mkdtemp(prefix="marks-", dir=scratch)
    app = write_app(scratch, "polite", POLITE)
    container = start(bellwether, scratch, "reload-inside", ["-w", "2", "--graceful-timeout", "5"], [app],
                      env={"MARKS": marks})
    try:
        check("HUP inside: 2 workers ready", wait_for(20, lambda: ready(container)), container.text())
        result = container.run_inside(["sh", "-c", "kill -HUP 1"])
        check("HUP inside: the reload to generation 1 finishes after kill -HUP 1",
              result.returncode == 0 and wait_for(20, lambda: "reload finished: generation 1" in container.text()),
              container.text()[-2000:])
        # The two old apps, and the stand-in that served slot 0 meanwhile.
        check("HUP inside: the old generation's apps and the stand-in got TERM",
              wait_for(10, lambda: len([m for m in os.listdir(marks) if m.startswith("app.")]) == 3),
              str(os.listdir(marks)))
        container.signal(signal.SIGTERM)
        check("HUP inside: then TERM stops with status 0", container.wait(20) == 0)
    finally:
        container.destroy()


def forkers(bellwether, scratch, name):
    """PID 1 with two FORKER workers, once they are ready."""
    container = start(bellwether, scratch, name, ["-w", "2", "--graceful-timeout", "1"],
                      [write_app(scratch, "forker", FORKER)])
    check(f"{name}: 2 workers ready", wait_for(20, lambda: ready(container)), container.text())
    return container


def zombie_case(bellwether, scratch):
    container = forkers(bellwether, scratch, "zombies")
    try:
        workers = apps_named(container, "sleep 1000")
        check("zombies: two apps", len(workers) == 2, str(container.processes()))
        # The daemons that exit by themselves are gone, reaped by the guards;
        # what stays a zombie is only the child each live app never reaps.
        def only_unreaped_children():
            zombies = container.zombies()
            return not apps_named(container, "sh -c sleep 0.5; exit 5") and len(zombies) == 2 \
                and all(parent in workers for _, parent, _ in zombies.values())
        check("zombies: none but the child each live app leaves unreaped (its parent is the app)",
              wait_for(5, only_unreaped_children), str(container.processes()))
        daemons = apps_named(container, "sleep 999")
        check("zombies: each app left a daemon that stays", len(daemons) == 2, str(container.processes()))

        # A guard SIGKILLed: its app dies (its death signal), the app's zombie
        # and its daemon come to PID 1, which reaps the one and kills the other.
        victim = workers[0]
        guard = container.processes()[victim][1]
        result = container.run_inside(["kill", "-KILL", str(container.inner_pid(guard))])
        check("zombies: a guard SIGKILLed from inside", result.returncode == 0, result.stderr)
        check("zombies: its app, its daemon and its app's zombie are gone, and nothing is left a zombie but "
              "the other app's child",
              wait_for(5, lambda: not alive(victim) and len([d for d in daemons if alive(d)]) == 1
                       and len(container.zombies()) <= 2
                       and all(parent != container.pid for _, parent, _ in container.zombies().values())),
              str(container.processes()))
        check("zombies: PID 1 logged the daemon it killed as left behind",
              "was left behind by a worker whose guard died" in container.text(), container.text()[-2000:])
        check("zombies: the slot is served again", wait_for(10, lambda: len(apps_named(container, "sleep 1000")) == 2))

        # docker exec: a shell whose parent is outside the namespace leaves an
        # orphan that exits 0.5 s later; it comes to PID 1, which must reap it.
        result = container.run_inside(["sh", "-c", f"sleep 0.5 {QUIET} &"])
        check("zombies: an orphan of docker exec, exited, is reaped by PID 1",
              result.returncode == 0 and wait_for(3, lambda: not apps_named(container, "sleep 0.5"))
              and wait_for(3, lambda: all(parent != container.pid for _, parent, _ in container.zombies().values())),
              str(container.processes()))
        container.signal(signal.SIGTERM)
        code = container.wait(20)
        check("zombies: TERM stops with status 0", code == 0, f"status {code}")
    finally:
        container.destroy()


def exec_orphan_case(bellwether, scratch):
    container = forkers(bellwether, scratch, "exec orphan")
    try:
        # `docker exec app sh -c 'long-job & sleep 0.5 &'`: both orphans come to
        # PID 1. The short one exits: PID 1 reaps it (a reap, as when a worker exits).
        result = container.run_inside(["sh", "-c", f"sleep 60 {QUIET} & sleep 0.5 {QUIET} &"])
        orphan = None
        if wait_for(3, lambda: apps_named(container, "sleep 60")):
            orphan = apps_named(container, "sleep 60")[0]
        check("exec orphan: the long-running orphan belongs to PID 1",
              result.returncode == 0 and orphan is not None and container.processes()[orphan][1] == container.pid,
              str(container.processes()))
        check("exec orphan: the short one is reaped", wait_for(3, lambda: not apps_named(container, "sleep 0.5")))
        time.sleep(0.5)
        # A process started with docker exec is not a worker's: PID 1 must not
        # take it for what is left of a worker whose guard died.
        check("exec orphan: still running after PID 1 reaped another child, "
              "and not logged as left behind by a worker",
              orphan is not None and alive(orphan) and "left behind" not in container.text(),
              container.text()[-1500:])
        # Whatever PID 1 makes of it, it must not hold back the scheduler.
        scheduler = [pid for pid in apps_named(container, "sleep 1000") if role(pid) == "scheduler"]
        check("exec orphan: one scheduler", len(scheduler) == 1)
        if scheduler:
            os.kill(scheduler[0], signal.SIGKILL)
        check("exec orphan: a new scheduler starts while the exec'd process is there (or was)",
              wait_for(10, lambda: [pid for pid in apps_named(container, "sleep 1000")
                                    if role(pid) == "scheduler" and pid not in scheduler]), container.text()[-1500:])
        container.signal(signal.SIGINT)
        code = container.wait(20)
        check("exec orphan: INT stops with status 0", code == 0, f"status {code}")
    finally:
        container.destroy()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    bellwether = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="bw-containers-pid1-") as scratch:
        exit_status_case(bellwether, scratch)
        stop_case(bellwether, scratch, "TERM from outside", "outside", signal.SIGTERM, quick=False)
        stop_case(bellwether, scratch, "INT from outside", "outside", signal.SIGINT, quick=True)
        stop_case(bellwether, scratch, "TERM from inside", "inside", signal.SIGTERM, quick=False)
        stop_case(bellwether, scratch, "INT from inside", "inside", signal.SIGINT, quick=True)
        stop_case(bellwether, scratch, "QUIT from inside", "inside", signal.SIGQUIT, quick=True)
        reload_case(bellwether, scratch)
        zombie_case(bellwether, scratch)
        exec_orphan_case(bellwether, scratch)
        apps.finish(scratch)


if __name__ == "__main__":
    main()
