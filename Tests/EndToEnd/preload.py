#!/usr/bin/env python3
"""End-to-end test of --preload with real gunicorn and Flask: one fork
server per generation, new code on every HUP.

1. `bellwether -w 2 --preload flask,constmod -- gunicorn -w 1 app:app`
   serves constmod.VALUE from every worker; one fork server runs, and the
   workers' trees are its forks, not interpreters of their own.
2. constmod.py is changed on disk and the master gets HUP: under a request
   loop with no failed request, every worker serves the new value, and the
   old generation's fork server is gone.
   `gunicorn --preload -w 2 app:app`, the same change and HUP: its workers
   still serve the old value (the reason --preload exists here).
3. A reload whose preload raises is abandoned: the old generation serves
   on, and the next good reload goes through.
4. The fork server SIGKILLed, then the scheduler's app SIGKILLed: a new
   fork server forks its replacement; one scheduler throughout (flock oracle).
5. Start-time refusals: a command that is not Python (64), a preload that
   starts a thread or reads WORKER_ROLE (a failed start, 3, with the reason).
6. The master SIGKILLed: the fork server and every tree go with it.
7. gunicorn's app is imported once for the web workers (by the fork
   server's zygote) and by the scheduler itself; an app that reads
   WORKER_ID at import is imported by each worker, and says so.
8. With --user nobody, the fork server's interpreter runs as nobody from its
   first line (a sitecustomize on PYTHONPATH records its uid).

usage: preload.py BELLWETHER VENV   (VENV holds gunicorn and flask)
"""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from harness import ROOT, RequestLoop, alive, app_scratch, check, finish, free_port, settled, status, tree, wait_for

APP = """\
import fcntl
import os

import constmod
from flask import Flask

with open(os.environ["PRELOAD_IMPORTS"], "a") as imports:
    imports.write(f"{os.getpid()}\\n")
app = Flask(__name__)
if os.environ.get("WORKER_ROLE") == "scheduler":
    ORACLE = os.open(os.environ["PRELOAD_ORACLE"], os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(ORACLE, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        with open(os.environ["PRELOAD_ORACLE"] + ".failures", "a") as failures:
            failures.write(f"OVERLAP pid {os.getpid()}\\n")
        raise SystemExit(3)


@app.get("/")
def index():
    return f"{constmod.VALUE} {os.environ.get('WORKER_ROLE', '-')} {os.getpid()}\\n"
"""

IDAPP = """\
import os
from flask import Flask

ID_AT_IMPORT = os.environ.get("WORKER_ID")
app = Flask(__name__)


@app.get("/")
def index():
    return f"{ID_AT_IMPORT} {os.environ['WORKER_ID']}\\n"
"""

GRACE = 2


def write_module(scratch, body):
    path = os.path.join(scratch, "constmod.py")
    with open(path + ".tmp", "w") as module:
        module.write(body)
    os.replace(path + ".tmp", path)
    # A new mtime for Python's bytecode cache, even within the same second.
    stamp = time.time() + 2
    os.utime(path, (stamp, stamp))


def values(port, count=12):
    """The values count requests got (None for a failed one)."""
    seen = []
    for _ in range(count):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                seen.append(response.read().decode().split()[0])
        except OSError:
            seen.append(None)
    return seen


def fork_servers(master):
    """The live fork servers among the master's children."""
    found = []
    for pid in tree(master)[1:]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                words = cmdline.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == master and any(word.endswith(b"forkserver.py") for word in words) and alive(pid):
            found.append(pid)
    return found


def log_of(scratch, name):
    with open(os.path.join(scratch, f"{name}.log")) as log:
        return log.read()


def main():
    bellwether, venv, directory = app_scratch(__doc__, "bellwether-preload-", APP)
    gunicorn = os.path.join(venv, "bin", "gunicorn")
    with directory as scratch:
        oracle = os.path.join(scratch, "oracle")
        imports = os.path.join(scratch, "imports")
        env = dict(os.environ, XDG_RUNTIME_DIR=scratch, PRELOAD_ORACLE=oracle, PRELOAD_IMPORTS=imports)
        env.pop("NOTIFY_SOCKET", None)
        write_module(scratch, 'VALUE = "one"\n')
        port = free_port()
        control = os.path.join(scratch, "master.ctl")

        def bellwether_command(*extra, preload="flask,constmod", command=None):
            return [bellwether, "-w", "2", "-b", f"127.0.0.1:{port}", "--ready", "notify",
                    "--graceful-timeout", str(GRACE), "--lease", "file:" + os.path.join(scratch, "token"),
                    "--control-socket", control, "--chdir", scratch, "--preload", preload, *extra, "--"] \
                + (command or [gunicorn, "-c", os.path.join(ROOT, "etc", "gunicorn.conf.py"), "-w", "1", "app:app"])

        # --- 5. refusals at start ------------------------------------------
        refused = subprocess.run(bellwether_command(command=["/bin/sleep", "60"]), env=env, capture_output=True,
                                 text=True, timeout=30)
        check("a command that is not Python: exit 64 with one line",
              refused.returncode == 64 and len(refused.stderr.splitlines()) == 1
              and "is not a Python command" in refused.stderr, refused.stderr)
        with open(os.path.join(scratch, "threaded.py"), "w") as module:
            module.write("import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n")
        with open(os.path.join(scratch, "rolereader.py"), "w") as module:
            module.write("import os\nSCHEDULER = os.environ.get('WORKER_ROLE') == 'scheduler'\n")
        for module, words in (("threaded", "thread(s) besides the main thread"), ("rolereader", "read WORKER_ROLE")):
            run = subprocess.run(bellwether_command("--boot-attempts", "2", preload=f"flask,{module}"), env=env,
                                 capture_output=True, text=True, timeout=60)
            check(f"a preload that {'starts a thread' if module == 'threaded' else 'reads WORKER_ROLE'}: "
                  "a failed start (3), the reason said", run.returncode == 3 and words in run.stderr,
                  run.stderr[-2000:])

        # --- 1. the fork server's workers ----------------------------------
        with open(os.path.join(scratch, "master.log"), "w") as log:
            master = subprocess.Popen(bellwether_command(), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            check("2 workers ready under --preload", wait_for(60, lambda: settled(bellwether, control, 2)))
            check("every worker serves the preloaded module's value", values(port) == ["one"] * 12)
            servers = fork_servers(master.pid)
            check("one fork server, the master's child", len(servers) == 1, repr(servers))
            report = status(bellwether, control)
            guards = [slot["guard"] for slot in report["slots"]]
            arbiters = [slot["pid"] for slot in report["slots"]]
            def command_line(pid):
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    return cmdline.read()
            check("each slot's app is the fork server's fork (its command line), not an interpreter of its own",
                  all(b"forkserver.py" in command_line(pid) for pid in arbiters), repr(arbiters))
            with open(imports) as imported:
                importers = [int(line) for line in imported.read().split()]
            web = [slot["pid"] for slot in report["slots"] if slot["role"] == "worker"]
            check("the app was imported twice: by the scheduler, and once for the web workers (not by them)",
                  len(importers) == 2 and report["scheduler"] in importers and not set(web) & set(importers),
                  f"imported by {importers}; scheduler {report['scheduler']}, web workers {web}")
            check("each guard is the master's child, each app its guard's", all(
                open(f"/proc/{g}/stat").read().rsplit(")", 1)[1].split()[1] == str(master.pid) for g in guards))

            # --- 2. HUP: new code everywhere --------------------------------
            loop = RequestLoop(port)
            loop.start()
            write_module(scratch, 'VALUE = "two"\n')
            master.send_signal(signal.SIGHUP)
            reloaded = wait_for(60, lambda: settled(bellwether, control, 2, generation=1))
            time.sleep(0.5)
            loop.stop()
            check("HUP: generation 1 ready", reloaded)
            check(f"HUP under load: 0 failed requests of {len(loop.latencies)}", not loop.errors,
                  repr(loop.errors[:5]))
            check("HUP: every worker serves the module's new value", values(port) == ["two"] * 12)
            check("HUP: the old generation's fork server is gone, one runs",
                  wait_for(10, lambda: len(fork_servers(master.pid)) == 1 and servers[0] not in fork_servers(master.pid)),
                  repr((servers, fork_servers(master.pid))))

            # --- 3. a reload whose preload raises ---------------------------
            write_module(scratch, 'raise RuntimeError("constmod is broken on purpose")\n')
            loop = RequestLoop(port)
            loop.start()
            master.send_signal(signal.SIGHUP)
            abandoned = wait_for(60, lambda: "reload to generation 2 failed" in log_of(scratch, "master"))
            time.sleep(1)
            loop.stop()
            check("a reload whose preload raises is abandoned", abandoned, log_of(scratch, "master")[-3000:])
            check(f"... and the old generation served on: 0 failed requests of {len(loop.latencies)}",
                  not loop.errors and values(port) == ["two"] * 12, repr(loop.errors[:5]))
            write_module(scratch, 'VALUE = "three"\n')
            master.send_signal(signal.SIGHUP)
            check("the next good reload goes through", wait_for(60, lambda: values(port, 6) == ["three"] * 6
                                                                and settled(bellwether, control, 2)))

            # --- 4. the fork server killed, then the scheduler --------------
            server = fork_servers(master.pid)
            if server:
                os.kill(server[0], signal.SIGKILL)
            scheduler = status(bellwether, control)["scheduler"]
            os.kill(scheduler, signal.SIGKILL)
            check("fork server and scheduler SIGKILLed: a new scheduler, forked by a new fork server",
                  wait_for(60, lambda: settled(bellwether, control, 2)
                           and status(bellwether, control)["scheduler"] not in (None, scheduler)
                           and len(fork_servers(master.pid)) == 1 and fork_servers(master.pid) != server))
            check("... serving the current value", values(port) == ["three"] * 12)
            overlaps = oracle + ".failures"
            check("the oracle never found two schedulers", not os.path.exists(overlaps),
                  open(overlaps).read() if os.path.exists(overlaps) else "")

            text = log_of(scratch, "master")
            guards = set(re.findall(r"\(guard pid (\d+),", text))
            readies = re.findall(r"\(pid (\d+)\) is ready", text)
            check(f"every 'is ready' line ({len(readies)}) names the app, never its guard (the fork server's F "
                  "tells the master its worker's pid before the worker can be ready)",
                  readies and not guards & set(readies), f"guards {sorted(guards)}, ready {readies}")

            # --- 6. the master SIGKILLed ------------------------------------
            everything = tree(master.pid)[1:]
            master.kill()
            master.wait()
            check(f"master SIGKILLed: its {len(everything)} processes, the fork server's included, are gone",
                  wait_for(GRACE + 1, lambda: not any(alive(pid) for pid in everything)),
                  repr([pid for pid in everything if alive(pid)]))
        finally:
            if master.poll() is None:
                master.kill()
                master.wait()

        # --- 7. an app that reads WORKER_ID at import: each worker imports it -
        with open(os.path.join(scratch, "idapp.py"), "w") as module:
            module.write(IDAPP)
        with open(os.path.join(scratch, "idapp.log"), "w") as log:
            master = subprocess.Popen(bellwether_command("-w", "3", preload="flask", command=[
                gunicorn, "-c", os.path.join(ROOT, "etc", "gunicorn.conf.py"), "-w", "1", "idapp:app"]),
                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            check("an app reading WORKER_ID at import: 3 workers ready",
                  wait_for(60, lambda: settled(bellwether, control, 3)))
            answers = set()
            for _ in range(30):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                        answers.add(tuple(response.read().decode().split()))
                except OSError:
                    answers.add(("failed",))
            check("... every worker saw its own WORKER_ID at import (it imported the app itself)",
                  answers and all(len(a) == 2 and a[0] == a[1] for a in answers), repr(sorted(answers)))
            check("... and the fork server said why", "web workers import the app themselves: the app reads "
                  "WORKER_ID at import" in log_of(scratch, "idapp"))
        finally:
            master.terminate()
            master.wait(60)

        # --- 8. --user: no line of Python runs as root ----------------------
        # The fork server starts through bellwether-exec with the workers'
        # credentials: even what Python runs at its own start (sitecustomize,
        # from a PYTHONPATH the app's user may write) runs as that user.
        os.chmod(scratch, 0o755)
        shared = os.path.join(scratch, "as-nobody")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        with open(os.path.join(shared, "sitecustomize.py"), "w") as module:
            module.write("import os\nwith open(os.path.join(os.path.dirname(__file__), 'uids'), 'a') as f:\n"
                         "    f.write(f'{os.getpid()} {os.getuid()} {os.geteuid()}\\n')\n")
        with open(os.path.join(shared, "plain.py"), "w") as module:
            module.write("import os, time\nopen(os.path.join(os.path.dirname(__file__), 'ran'), 'w')"
                         ".write(str(os.getuid()))\ntime.sleep(60)\n")
        nobody = 65534
        with open(os.path.join(scratch, "nobody.log"), "w") as log:
            master = subprocess.Popen([bellwether, "-w", "1", "--user", "nobody", "--preload", "colorsys",
                                       "--control-socket", control, "-e", f"PYTHONPATH={shared}", "--",
                                       "/usr/bin/python3", os.path.join(shared, "plain.py")],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, cwd=shared)
        try:
            ran = wait_for(30, lambda: os.path.exists(os.path.join(shared, "ran")))
            uids = open(os.path.join(shared, "uids")).read().split("\n") if ran else []
            servers = fork_servers(master.pid)
            check("--user nobody: the worker runs as nobody", ran and open(os.path.join(shared, "ran")).read()
                  == str(nobody), log_of(scratch, "nobody")[-2000:])
            check("--user nobody: the fork server's interpreter ran its start-up (sitecustomize) as nobody, "
                  "never as root", uids and all(line.split()[1:] == [str(nobody)] * 2 for line in uids if line),
                  repr(uids))
            check("--user nobody: the fork server runs as nobody", len(servers) == 1 and all(
                os.stat(f"/proc/{pid}").st_uid == nobody for pid in servers), repr(servers))
        finally:
            master.terminate()
            master.wait(60)

        # --- 2'. gunicorn --preload keeps the old code ----------------------
        write_module(scratch, 'VALUE = "one"\n')
        port = free_port()
        with open(os.path.join(scratch, "gunicorn.log"), "w") as log:
            peer = subprocess.Popen([gunicorn, "--preload", "-w", "2", "-b", f"127.0.0.1:{port}", "app:app"],
                                    cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            check("gunicorn --preload serves", wait_for(30, lambda: values(port, 1) == ["one"]))
            before = {int(line.split()[2]) for line in
                      (urllib.request.urlopen(f"http://127.0.0.1:{port}/").read().decode() for _ in range(8))}
            write_module(scratch, 'VALUE = "two"\n')
            peer.send_signal(signal.SIGHUP)
            new_workers = wait_for(30, lambda: "Booting worker" in log_of(scratch, "gunicorn").split("Handling signal: hup")[-1])
            time.sleep(1)
            seen = values(port)
            check("gunicorn --preload after HUP: new workers, every one still serving the old value",
                  new_workers and seen == ["one"] * 12, f"{seen} (workers before: {sorted(before)})")
        finally:
            peer.terminate()
            peer.wait(30)
        finish(scratch)


if __name__ == "__main__":
    main()
