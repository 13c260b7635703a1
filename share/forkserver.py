"""bellwether's fork server: imports a generation's modules once, then forks
its workers, each of which becomes a guard (bellwether-exec) with the worker
below it, as if the master had spawned the guard.

usage: forkserver.py CONTROL_FD GUARD MASTER_PID CREDENTIALS PRELOAD APP [ARG...]

  CONTROL_FD   a SOCK_SEQPACKET unix socket shared with the master
  GUARD        the path of bellwether-exec; MASTER_PID and CREDENTIALS are
               its first two arguments. CREDENTIALS must be "-": the master
               starts this server through bellwether-exec's plain exec mode,
               with the workers' credentials already set
  PRELOAD      comma-separated module names to import once, "-" for none
  APP          a script's path, "-m MODULE", or a console script's name (its
               entry point, from the installed distributions' metadata, is
               imported with the preload); a path into this interpreter's
               bin/ that names a console script counts as that script.
               sys.path[0] is what `python APP` would have: the script's
               directory, the working directory for -m, bin/ for a console
               script (with the working directory after it during the
               preload only: gunicorn and the like add it when they start)

Stdlib only, Python 3.8 or later, Linux. Installed as
share/bellwether/forkserver.py beside bin/ (/usr/share/bellwether/ from the
.deb, VENV/share/bellwether/ from the wheel); the master runs one per
generation for --preload (Sources/Bellwether/System/ForkServers.swift).

The master must be a child subreaper and this server's parent: each worker is
forked twice (server -> I -> F, I exits), so that F is orphaned to the master
and is reaped by it like a guard it spawned. F becomes a subreaper, forks the
worker W, and executes the guard in its place in ADOPT mode,
`GUARD MASTER_PID CREDENTIALS LINK:GRACE_MS:TOKEN:W` (see
Sources/bellwether-exec/main.c). So every worker is still guard -> app.

Protocol, one JSON object per datagram:
  server -> master, once, when the preload is done:
    {"ready": PID, "failure": null or "one line", "gc_frozen": OBJECTS}
  master -> server, an order, with descriptors attached (SCM_RIGHTS):
    {"ref": N, "env": {NAME: VALUE...}, "fds": {"TARGET": INDEX...},
     "guard": "LINK:GRACE_MS:TOKEN"}
    "fds" places the INDEXth attached descriptor at TARGET (0..63) in the
    guard and the worker; "guard" is the guard's spec for that layout, as the
    master would pass it to a guard it spawns (LINK and TOKEN are among the
    targets). "env" is the whole environment of the guard and the worker;
    the worker's LISTEN_PID and WATCHDOG_PID, if set, become its own pid.
  server -> master, the answer: {"ref": N, "pid": F} (F is about to be the
    master's child: it goes on only after the answer is sent), or
    {"ref": N, "error": "text", "passes": BOOL} (nothing was started;
    "passes": for want of a process, memory or a descriptor, not for what
    the worker is).
End of file on CONTROL_FD ends the server (status 0).

What a worker has:
  - descriptors 0-2 as the server's unless the order placed others there,
    and the order's targets but the link and the token (the guard's). Every
    other descriptor is gone, but for the preload's: a regular file it opened
    for appending (a logging.FileHandler's) stays shared, as after gunicorn's
    preload; any other (a socket, a pipe, a file read or rewritten) is
    replaced with a descriptor that fails every read and write (EBADF), so
    that no two workers share a connection, and an object still holding its
    number never reaches a file the app opens later;
  - the order's environment (what the interpreter read from its own at
    start, PYTHON* and the locale, is the server's); the signal dispositions this interpreter had
    at its start (SIGINT raises KeyboardInterrupt, SIGPIPE ignored) and an
    empty signal mask; death signal SIGKILL when the guard exits;
  - `random` reseeded and every os.register_at_fork handler run: os.fork()
    does both. What the preload seeded otherwise (a random.Random of its
    own, str hashes) is the same in every worker;
  - the server's command line, in ps; its name (top, ps -o comm) is the
    app's: the script's, the console script's or the module's.

A failed preload does not stop the server: every worker raises the same
exception, so it exits 1 with the traceback on stderr, a failed boot for the
master. Threads running after the preload are refused the same way (each
worker prints them and exits 1): a forked worker has none of them, and a lock
that one of them held at the fork is never released in it. Start threads in
the worker, or drop the module that starts them from PRELOAD.

gc: the collector is off during the preload and what it imported is frozen
(gc.freeze()), so that no worker's collections write to the pages it shares
with the server. BELLWETHER_FORKSERVER_GC_FREEZE=0 turns both off.
"""
import array
import atexit
import ctypes
import fcntl
import gc
import json
import os
import runpy
import select
import signal
import socket
import stat
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
# Descriptors below this are kept free for the orders' layouts, so that none
# the preload opens can be overwritten by a socket or the link.
LAYOUT_LIMIT = 64
MAX_ORDER = 1 << 20
MAX_FDS = 64  # SCM_RIGHTS takes at most 253

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option, value):
    if _libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def say(text):
    """Straight to stderr: a worker forked beside threads must not take the
    buffer lock that one of them may hold."""
    os.write(2, ("bellwether forkserver: " + text + "\n").encode(errors="replace"))


def open_descriptors():
    return sorted(int(name) for name in os.listdir("/proc/self/fd"))


# --- the app ----------------------------------------------------------------

class App:
    """What a worker runs: a script, a module, or a console script's entry point."""

    def __init__(self, argv):
        self.argv = argv
        self.entry_point = None
        self.gunicorn = None  # GunicornPreload, for gunicorn's console script
        self.path0 = sys.path[0]

    @property
    def name(self):
        """What a worker calls itself: the script's or console script's name, or the module's."""
        return self.argv[1] if self.argv[0] == "-m" and len(self.argv) > 1 else os.path.basename(self.argv[0])

    def resolve(self):
        """Sets what to run and where its modules are found (sys.path[0], as
        `python APP` would); raises SystemExit with the reason if it cannot."""
        argv = self.argv
        if argv[0] == "-m":
            if len(argv) < 2:
                raise SystemExit("bellwether forkserver: -m: expected a module name")
            self.kind, self.target, self.args = "module", argv[1], argv[2:]
            self.path0 = os.getcwd()
            return
        bindir = os.path.dirname(sys.executable)
        name = argv[0]
        if "/" in name:
            script = name if os.path.dirname(os.path.abspath(name)) == os.path.abspath(bindir) else None
            entry = console_script(os.path.basename(name)) if script else None
        else:
            entry = console_script(name)
            script = os.path.join(bindir, name)
            if entry is None:
                raise SystemExit(f"bellwether forkserver: {name}: no console script of that name in {sys.prefix}")
        if entry is not None:
            self.kind, self.target, self.args = "console", entry, argv[1:]
            self.argv0 = script
            self.path0 = os.path.dirname(os.path.realpath(script)) if os.path.exists(script) else bindir
        else:
            self.kind, self.target, self.args = "script", name, argv[1:]
            self.path0 = os.path.dirname(os.path.realpath(name))
            if not os.path.exists(name):  # in Python's words, without a traceback from runpy
                raise SystemExit(f"{sys.executable}: can't open file {name!r}: [Errno 2] No such file or directory")

    def load(self):
        """Imports the console script's entry point (part of the preload)."""
        if self.kind == "console":
            self.entry_point = self.target.load()
            if self.target.value.replace(" ", "") == GUNICORN_ENTRY_POINT:
                self.gunicorn = GunicornPreload([self.argv0] + self.args)

    def run(self):
        """In the worker: the app's exit status, or its exception."""
        if self.kind == "module":
            sys.argv = [self.target] + self.args
            runpy.run_module(self.target, run_name="__main__", alter_sys=True)
            return 0
        if self.kind == "script":
            sys.argv = [self.target] + self.args
            runpy.run_path(self.target, run_name="__main__")
            return 0
        sys.argv = [self.argv0] + self.args
        if self.gunicorn is not None and self.gunicorn.application is not None:
            return self.gunicorn.run()
        return self.entry_point()


GUNICORN_ENTRY_POINT = "gunicorn.app.wsgiapp:run"


class GunicornStandIn:
    """What gunicorn's server hooks (pre_fork, post_fork, worker_exit) are
    given for the arbiter: its settings, log and sockets, no other worker."""

    def __init__(self, application, log, listeners):
        self.app, self.cfg, self.log = application, application.cfg, log
        self.LISTENERS, self.WORKERS = listeners, {}
        self.pid = os.getpid()
        self.proc_name = application.cfg.proc_name
        self.num_workers = 1
        self.timeout = application.cfg.timeout


class GunicornPreload:
    """`gunicorn -w 1 ...` under the fork server. The preload reads its
    settings (and its -c file) and sets up its log, once, as gunicorn's
    arbiter does before it forks; each worker then runs gunicorn's worker
    class in its own process, as the arbiter would in the one worker it
    forks. The slot is bellwether's, so an arbiter would only add an
    interpreter (its memory, a second fork on every failover) and a control
    socket of its own. What only the arbiter does is not done: its hooks
    (on_starting, when_ready, child_exit, on_exit …), its --timeout
    (bellwether's --timeout watches the worker), restarting the worker
    (bellwether restarts the slot). With -w 2 or more, --check-config,
    --print-config, --daemon or --reuse-port, the arbiter runs as usual."""

    def __init__(self, argv):
        self.application = self.log = None
        import gunicorn.workers.sync  # noqa: F401  the default worker class, shared
        from gunicorn.app.wsgiapp import WSGIApplication
        saved = sys.argv
        sys.argv = argv
        try:
            application = WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]")
        finally:
            sys.argv = saved
        cfg = application.cfg
        if cfg.workers != 1 or any(getattr(cfg, name, False) for name in
                                   ("print_config", "check_config", "daemon", "reuse_port")):
            return  # the worker runs gunicorn's own entry point: the arbiter
        cfg.worker_class  # noqa: B018  imports it
        self.application, self.log = application, cfg.logger_class(cfg)

    def set_paths(self):
        """sys.path as gunicorn leaves it for the app: its chdir and --pythonpath first."""
        cfg = self.application.cfg
        if cfg.chdir not in sys.path:  # the preload's working directory is gone from it
            sys.path.insert(0, cfg.chdir)
        for path in (cfg.pythonpath or "").split(","):
            if path and os.path.abspath(path) not in sys.path:
                sys.path.insert(0, os.path.abspath(path))

    def run(self):
        from gunicorn import SERVER_SOFTWARE, sock, systemd, util
        from gunicorn.errors import AppImportError

        application, log = self.application, self.log
        cfg = application.cfg
        self.set_paths()
        os.environ["SERVER_SOFTWARE"] = SERVER_SOFTWARE
        inherited = systemd.listen_fds()
        fds = list(range(systemd.SD_LISTEN_FDS_START, systemd.SD_LISTEN_FDS_START + inherited)) if inherited else None
        listeners = sock.create_sockets(cfg, log, fds)
        server = GunicornStandIn(application, log, listeners)
        worker = cfg.worker_class(1, os.getppid(), listeners, application, cfg.timeout / 2.0, cfg, log)
        worker.pid = os.getpid()
        log.info("Booting worker with pid: %s (no arbiter: its slot is bellwether's)", worker.pid)
        util._setproctitle("worker [%s]" % cfg.proc_name)
        try:
            cfg.pre_fork(server, worker)
            cfg.post_fork(server, worker)
            worker.init_process()
            return 0
        except SystemExit:
            raise
        except AppImportError as error:
            log.debug("Exception while loading the application", exc_info=True)
            print(error, file=sys.stderr, flush=True)
            return 4  # gunicorn's APP_LOAD_ERROR
        except Exception as error:
            log.exception("Exception in worker process")
            print(error, file=sys.stderr, flush=True)
            return 3 if not worker.booted else 255  # WORKER_BOOT_ERROR, or gunicorn's -1
        finally:
            log.info("Worker exiting (pid: %s)", worker.pid)
            try:
                worker.tmp.close()
                cfg.worker_exit(server, worker)
            except Exception:
                log.warning("Exception during worker exit", exc_info=True)


def console_script(name):
    from importlib import metadata
    found = metadata.entry_points()
    if hasattr(found, "select"):
        found = found.select(group="console_scripts", name=name)
    else:  # Python 3.8, 3.9
        found = [entry for entry in found.get("console_scripts", ()) if entry.name == name]
    return next(iter(found), None)


# --- the preload ------------------------------------------------------------

class Preload:
    """Imports once; remembers what every worker must fail with instead."""

    def __init__(self, modules, app):
        self.error = None  # the preload's exception, raised again in each worker
        self.refusal = None  # why no worker may run: threads
        freeze = os.environ.get("BELLWETHER_FORKSERVER_GC_FREEZE", "1") != "0"
        if freeze:
            gc.disable()  # no holes in the pages the workers will share
        # A console script (gunicorn, uvicorn, celery) puts the working
        # directory on sys.path itself when it starts: the preload needs it
        # there first, and the worker finds the path as the script leaves it.
        working = None
        watch = WorkerVariablesWatch(os.environ.get("BELLWETHER_FORKSERVER_WORKER_VARIABLES", ""))
        try:
            app.resolve()
            sys.path[0] = app.path0
            if app.kind == "console":
                working = os.getcwd()
                sys.path.insert(1, working)
            with watch:
                for module in modules:
                    __import__(module)
                app.load()
        except (Exception, SystemExit) as error:
            self.error = error
        if working is not None and working in sys.path[1:]:
            del sys.path[sys.path.index(working, 1)]
        self.refusal = threads_refusal() or watch.refusal()
        if freeze:
            gc.freeze()
            gc.enable()
        self.frozen = gc.get_freeze_count()  # objects

    def failure(self):
        if self.refusal:
            return self.refusal
        if self.error is not None:
            return f"the preload failed: {type(self.error).__name__}: {self.error}"
        return None


class WorkerVariablesWatch:
    """Notes which of a worker's own variables (its role, id, count …) the
    preload reads: a module imported by the server sees none of them, and
    an `if WORKER_ROLE == "scheduler"` it ran would never run again in a
    worker, so no worker would ever schedule."""

    def __init__(self, names):
        self.names = {name for name in names.split(",") if name}
        self.read = []  # (name, module)
        self.saved = None

    def __enter__(self):
        if not self.names:
            return self
        watch, environ = self, os.environ

        class Watched(type(environ)):
            def __getitem__(self, key):
                watch.note(key)
                return super().__getitem__(key)

            def __contains__(self, key):
                watch.note(key)
                return super().__contains__(key)

        # The same object, watched: a module that keeps `from os import
        # environ` has it too, and it needs no constructor of os._Environ's
        # (whose arguments differ between Pythons).
        self.saved = type(environ)
        environ.__class__ = Watched
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.environ.__class__ = self.saved
        return False

    def note(self, key):
        if key in self.names and len(self.read) < 8:
            frame = sys._getframe(2)
            while frame and frame.f_globals.get("__name__", "") in ("os", "collections.abc", "_collections_abc"):
                frame = frame.f_back
            self.read.append((key, frame.f_globals.get("__name__", "?") if frame else "?"))

    def refusal(self):
        if not self.read:
            return None
        seen = ", ".join(sorted({f"{name} (in {module})" for name, module in self.read}))
        return (f"refusing to fork workers: the preload read {seen}, which each worker has its own value of, "
                "and no preloaded module sees it. Drop that module from --preload (import it in the app), "
                "or read the variable when the worker runs, not at import")


def threads_refusal():
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    try:
        native = len(os.listdir("/proc/self/task")) - 1 - len(others)
    except OSError:
        native = 0
    if native > 0:
        others.append(f"{native} not started by threading")
    if not others:
        return None
    return (f"refusing to fork workers: {len(others)} thread(s) besides the main thread run after the preload "
            f"({', '.join(others)}); a worker would have none of them, and a lock one of them held at the "
            "fork would stay locked in it. Start them after the fork, or drop the module that starts them "
            "from the preload")


# --- one order --------------------------------------------------------------

class OrderError(Exception):
    """An order not carried out. `passes`: for want of a process, memory or a
    descriptor, which may pass, rather than for what the worker is."""

    def __init__(self, text, passes=False):
        super().__init__(text)
        self.passes = passes


class Order:
    def __init__(self, data, received):
        try:
            order = json.loads(data)
            self.ref = order["ref"]
            self.env = {str(k): str(v) for k, v in order["env"].items()}
            self.layout = {int(target): received[index] for target, index in order["fds"].items()}
            spec = order["guard"]
            link, grace, token = spec.split(":")
            self.guard_fds = {int(link)} | ({int(token)} if token != "-" else set())
            int(grace)
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
            raise OrderError(f"malformed order: {error!r}") from None
        if any(not 0 <= target < LAYOUT_LIMIT for target in self.layout):
            raise OrderError(f"descriptors must be placed below {LAYOUT_LIMIT}")
        if not self.guard_fds <= set(self.layout):
            raise OrderError("the guard's link or token is not among the order's descriptors")
        self.spec = spec


class Server:
    def __init__(self, control, guard_prefix, preload, app, placeholder, signals, role_variable):
        self.control = control  # the master's: orders come in, answers go out
        self.orders = control  # where this process reads orders (a zygote: from the server)
        self.guard_prefix = guard_prefix
        self.preload = preload
        self.app = app
        self.placeholder = placeholder  # O_PATH: any read or write on a copy fails
        self.signals = signals  # the dispositions this interpreter had at its start
        self.role_variable = role_variable
        self.zygote = None  # the socket to the web workers' zygote, once it runs
        self.forwarded = set()  # refs handed to the zygote and not yet answered by it
        self.zygote_off = os.environ.get("BELLWETHER_FORKSERVER_APP", "1") == "0" or not role_variable
        self.is_zygote = False

    def serve(self):
        """0 once the master is gone; in a worker, the worker to run."""
        failure = self.preload.failure()
        if failure:
            say(failure)
        self.reply({"ready": os.getpid(), "failure": failure, "gc_frozen": self.preload.frozen})
        if failure:
            self.zygote_off = True
        return self.loop()

    def loop(self):
        while True:
            if self.zygote is not None:
                readable, _, _ = select.select([self.orders, self.zygote], [], [])
                if self.zygote in readable:
                    self.hear_zygote()
                if self.orders not in readable:
                    continue
            try:
                data, ancillary, flags, _ = self.orders.recvmsg(
                    MAX_ORDER, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC)
            except ConnectionResetError:
                return 0
            received = []
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    usable = len(payload) - len(payload) % 4
                    received += list(memoryview(payload)[:usable].cast("i"))
            if not data and not received:
                return 0
            try:
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                    # MSG_CTRUNC: descriptors dropped, this server is out of them
                    raise OrderError("order truncated", passes=bool(flags & socket.MSG_CTRUNC))
                order = Order(data, received)
                if self.wants_zygote(order):
                    if self.zygote is None:
                        zygote = self.start_zygote(received)
                        if zygote is not None:  # this process is the zygote now
                            return self.serve_as_zygote(zygote)
                    if self.zygote is not None and self.forward(data, received):
                        continue
                outcome = self.fork(order, received)
            except OrderError as error:
                outcome = {"ref": reference(data), "error": str(error), "passes": error.passes}
                if not self.reply(outcome):
                    outcome = None
            if callable(outcome):
                return outcome  # the worker's: its guard closed what was received
            for fd in received:
                os.close(fd)
            if outcome is None:
                return 0
            if self.is_zygote:
                try:
                    self.orders.send(f"done {outcome.get('ref')}".encode())
                except OSError:
                    return 0  # the server is gone: so is this zygote, at its death signal

    # --- the web workers' zygote: gunicorn's app imported once per role ----

    def wants_zygote(self, order):
        return (not self.is_zygote and not self.zygote_off and self.app.gunicorn is not None
                and self.app.gunicorn.application is not None
                and order.env.get(self.role_variable) == "worker")

    def start_zygote(self, received):
        """Forks the zygote, which imports the app as a web worker would
        (WORKER_ROLE=worker), then forks every web worker in its stead. In
        the zygote, answers its socket to the server; in the server, None
        (self.zygote is set once the zygote says it is ready, or
        self.zygote_off with the reason said)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError as error:
            ours.close()
            theirs.close()
            self.zygote_off = True
            say(f"cannot fork the web workers' zygote ({error.strerror}): each imports the app itself")
            return None
        if pid == 0:
            ours.close()
            for fd in received:
                os.close(fd)  # the server forwards the order, with copies of them
            return theirs
        theirs.close()
        word = ours.recv(4096).decode(errors="replace")
        if word == "ok":
            self.zygote = ours
            return None
        ours.close()
        os.waitpid(pid, 0)
        self.zygote_off = True
        say("web workers import the app themselves: " + (word[len("no "):] if word.startswith("no ")
                                                          else "the zygote is gone"))
        return None

    def serve_as_zygote(self, server):
        """In the zygote: the app imported, then the loop of orders the
        server forwards; answers go to the master straight."""
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the server's death is the zygote's
        self.is_zygote = True
        self.orders = server
        reason = self.import_app()
        try:
            server.send(b"ok" if reason is None else ("no " + reason).encode())
        except OSError:
            os._exit(0)
        if reason is not None:
            os._exit(0)
        return self.loop()

    def import_app(self):
        """Imports gunicorn's app with the role of a web worker; None if that
        is safe to share, else why not: the import reads a worker's own
        variable (its id, count …), starts a thread, or opens a descriptor
        a worker may not share (a connection)."""
        names = os.environ.get("BELLWETHER_FORKSERVER_WORKER_VARIABLES", "").split(",")
        watch = WorkerVariablesWatch(",".join(name for name in names if name != self.role_variable))
        before = set(open_descriptors())
        os.environ[self.role_variable] = "worker"
        gc.disable()
        try:
            self.app.gunicorn.set_paths()
            with watch:
                self.app.gunicorn.application.wsgi()
        except BaseException as error:  # noqa: B036  SystemExit included: each worker will say it
            return f"importing the app as a web worker raised {type(error).__name__}: {error}"
        finally:
            del os.environ[self.role_variable]
            gc.freeze()
            gc.enable()
        if watch.read:
            return "the app reads " + ", ".join(sorted({name for name, _ in watch.read})) + " at import"
        if threads_refusal():
            return "the app starts a thread at import"
        opened = [fd for fd in set(open_descriptors()) - before if not appended_file(fd)]
        opened = [fd for fd in opened if os.path.exists(f"/proc/self/fd/{fd}")]
        if opened:
            return "the app opens descriptors at import (" + ", ".join(
                describe_descriptor(fd) for fd in sorted(opened)[:3]) + ")"
        return None

    def hear_zygote(self):
        """The zygote says which forwarded orders it answered; at its end of
        file (it died), the ones it did not answer are answered here, as
        failures that pass: the master orders them again."""
        try:
            word = self.zygote.recv(256)
        except OSError:
            word = b""
        if word.startswith(b"done "):
            self.forwarded.discard(reference(b'{"ref": ' + word[5:] + b"}"))
            return
        if word:
            return
        self.zygote.close()
        self.zygote, self.zygote_off = None, True
        say("the web workers' zygote is gone: each imports the app itself from now on")
        for ref in sorted(self.forwarded, key=str):
            self.reply({"ref": ref, "error": "the web workers' zygote died before it forked this worker",
                        "passes": True})
        self.forwarded.clear()
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass

    def forward(self, data, received):
        """Hands an order to the zygote; False if it is gone (the server forks
        this worker itself, and every one after it)."""
        try:
            self.zygote.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", received))])
            self.forwarded.add(reference(data))
        except OSError as error:
            say(f"the web workers' zygote is gone ({error.strerror}): each imports the app itself from now on")
            self.zygote.close()
            self.zygote, self.zygote_off = None, True
            return False
        for fd in received:
            os.close(fd)
        return True

    def reply(self, message):
        try:
            self.control.send(json.dumps(message).encode())
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def fork(self, order, received):
        """Server -> I -> F. Sends the master F's pid and answers it (None if
        the master is gone); in F and W it does not return to the loop: F
        executes the guard, W returns the worker to run."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # or every worker writes it out again
            except (OSError, ValueError, AttributeError):
                pass
        made = []
        try:
            reader, writer = os.pipe()
            made += [reader, writer]
            go_reader, go_writer = os.pipe()
            made += [go_reader, go_writer]
            intermediate = os.fork()
        except OSError as error:  # out of descriptors or processes: it may pass
            for fd in made:
                os.close(fd)
            raise OrderError(f"cannot fork: {error.strerror}", passes=True)
        if intermediate == 0:
            # No collection in I or F: each page one dirtied before W is
            # forked would be a private copy in W. W turns it back on.
            gc.disable()
            try:
                os.close(reader)
                os.close(go_writer)
                # F is born with every signal blocked, until the guard reads
                # them from its signalfd: one the master sends to F before F
                # executes the guard stays pending across execve and is
                # forwarded to W, rather than being F's death (and W's).
                signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
                # F goes on only when I passes on the server's "g", sent once
                # the master has F's pid in its socket: whatever F or its
                # worker does, the master heard of F first. Without the "g"
                # (the server or I died on the way) F ends before it is anything.
                held_reader, held_writer = os.pipe()
                forked = os.fork()
                if forked == 0:
                    os.close(writer)
                    os.close(go_reader)
                    os.close(held_writer)
                    heard = os.read(held_reader, 1) == b"g"
                    os.close(held_reader)
                    if not heard:
                        os._exit(0)
                    return self.become_guard(order, received)
                os.close(held_reader)
                try:
                    os.setpgid(forked, forked)  # its group exists for the master's renice at once
                except OSError:
                    pass
                os.write(writer, f"{forked}\n".encode())
                if os.read(go_reader, 1) == b"g":
                    os.write(held_writer, b"g")
                else:  # the master did not hear of F
                    os.kill(forked, signal.SIGKILL)
                os._exit(0)
            except BaseException as error:
                try:
                    os.write(writer, f"error {error}\n".encode())
                finally:
                    os._exit(1)
        os.close(writer)
        os.close(go_reader)
        answer = b""
        try:
            while not answer.endswith(b"\n"):
                chunk = os.read(reader, 256)
                if not chunk:
                    break
                answer += chunk
            text = answer.decode(errors="replace").strip()
            if not text.isdigit():
                raise OrderError(text[len("error "):] if text.startswith("error ") else "the fork failed",
                                 passes=True)
            outcome = {"ref": order.ref, "pid": int(text)}
            if not self.reply(outcome):
                return None
            os.write(go_writer, b"g")
            return outcome
        finally:
            os.close(reader)
            os.close(go_writer)  # I exits
            os.waitpid(intermediate, 0)

    def become_guard(self, order, received):
        """In F: lay out the descriptors, fork W, execute the guard."""
        try:
            os.close(self.control.detach())
            for other in (self.orders, self.zygote):
                if other is not None and other is not self.control:
                    other.close()
            os.setpgid(0, 0)  # the master signals and renices a guard's group
            prctl(PR_SET_CHILD_SUBREAPER, 1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # SIG_IGN would reap W behind the guard's back
            for target, fd in order.layout.items():
                os.dup2(fd, target)  # received ones are above LAYOUT_LIMIT: no clash
            for fd in received:
                os.close(fd)
            guard = os.getpid()
            # W starts its app only once this process is the guard (its end of
            # `execed` closes at the execve), and the master has F's MAINPID=
            # by then: W's READY=1 never comes first.
            execed, execing = os.pipe()
            worker = os.fork()
            if worker == 0:
                try:
                    os.close(execing)
                    return self.become_worker(order, guard, execed)
                except BaseException as error:
                    say(f"cannot start the worker: {error}")
                    os._exit(1)
            os.close(execed)
            tell_master(order.env.get("NOTIFY_SOCKET"), f"MAINPID={worker}")
            for fd in open_descriptors():
                if fd > 2 and fd not in order.layout:
                    try:
                        os.set_inheritable(fd, False)
                    except OSError:
                        pass
            argv = self.guard_prefix + [f"{order.spec}:{worker}"]
            os.execve(argv[0], argv, order.env)
        except BaseException as error:
            say(f"cannot become the guard: {error}")
        os._exit(125)  # W, if forked, gets SIGKILL from its death signal

    def become_worker(self, order, guard, execed):
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # top and `ps -o comm` name the app (ps's command line stays the server's).
        _libc.prctl(PR_SET_NAME, ctypes.c_char_p(self.app.name.encode()[:15]), 0, 0, 0)
        if os.getppid() != guard:
            os._exit(1)  # the guard is gone already
        keep = {0, 1, 2, execed} | set(order.layout) - order.guard_fds
        for fd in open_descriptors():
            if fd in keep or fd == self.placeholder:
                continue
            try:
                if fd < LAYOUT_LIMIT:  # the reservation, the link, the token: no object holds these
                    os.close(fd)
                elif not appended_file(fd):  # the preload's: a socket, a pipe, a file read or rewritten
                    os.dup2(self.placeholder, fd, inheritable=False)
            except OSError:
                pass  # the listing's own descriptor
        os.close(self.placeholder)
        os.environ.clear()
        os.environ.update(order.env)
        for name in ("LISTEN_PID", "WATCHDOG_PID"):
            if name in os.environ:
                os.environ[name] = str(os.getpid())
        time.tzset()  # the order's TZ
        for number, handler in self.signals.items():
            try:
                signal.signal(number, handler)
            except (OSError, ValueError, TypeError):
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        gc.enable()  # off since I was forked
        try:
            while os.read(execed, 1):
                pass
        finally:
            os.close(execed)
        return self.worker

    def worker(self):
        """Runs at the top of the interpreter's stack, so that the app's
        exit is an ordinary one: SystemExit, tracebacks, atexit, threads."""
        if self.preload.refusal:
            say(self.preload.refusal)
            os._exit(1)
        if self.preload.error is not None:
            raise self.preload.error
        return self.app.run()


def tell_master(address, message):
    """One datagram to the master's notify socket (an abstract name: @NAME)."""
    if not address:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.sendto(message.encode(), "\0" + address[1:] if address.startswith("@") else address)
    except OSError:
        pass  # the guard says it again once it runs


def describe_descriptor(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return str(fd)


def appended_file(fd):
    """A regular file opened for appending, such as a logging.FileHandler's:
    every worker may go on writing to it, as after gunicorn's preload; each
    write lands whole at the end."""
    try:
        return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND) and stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def reference(data):
    try:
        return json.loads(data)["ref"]
    except Exception:
        return None


def reserve_layout_descriptors(control_fd):
    """Moves the control socket above LAYOUT_LIMIT and fills 3..LAYOUT_LIMIT-1
    with placeholders, before anything is imported. Answers the control
    socket's descriptor and the placeholder to copy."""
    low = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC)
    placeholder = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, LAYOUT_LIMIT)
    control = fcntl.fcntl(control_fd, fcntl.F_DUPFD_CLOEXEC, LAYOUT_LIMIT)
    for fd in range(3, LAYOUT_LIMIT):
        os.dup2(placeholder, fd, inheritable=False)
    for fd in {control_fd, low}:
        if fd >= LAYOUT_LIMIT:
            os.close(fd)  # the others were replaced above
    return control, placeholder


def main(argv):
    if len(argv) < 6:
        say("usage: forkserver.py CONTROL_FD GUARD MASTER_PID CREDENTIALS PRELOAD APP [ARG...]")
        return 2
    try:
        control_fd = int(argv[0])
        control_fd, placeholder = reserve_layout_descriptors(control_fd)
        control = socket.socket(fileno=control_fd)
    except (ValueError, OSError) as error:
        say(f"CONTROL_FD: expected a unix socket's descriptor, got {argv[0]!r} ({error})")
        return 2
    if control.family != socket.AF_UNIX or control.type != socket.SOCK_SEQPACKET:
        say(f"CONTROL_FD: expected a SOCK_SEQPACKET unix socket, got {argv[0]!r}")
        return 2
    if argv[3] != "-":
        say("CREDENTIALS must be \"-\": start this server with the workers' credentials (the master runs it "
            "through bellwether-exec's plain exec mode, which sets them)")
        return 2
    # The master's death is this server's (its end of CONTROL_FD would do,
    # but not while the preload runs).
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    guard_prefix = argv[1:4]
    modules = [name for name in argv[4].split(",") if name and name != "-"]
    signals = {}
    for number in signal.valid_signals():
        handler = signal.getsignal(number)
        if handler is not None:
            signals[number] = handler
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # ignored, I would be reaped before our waitpid
    app = App(argv[5:])
    preload = Preload(modules, app)
    role_variable = os.environ.get("BELLWETHER_FORKSERVER_ROLE_VARIABLE", "")
    return Server(control, guard_prefix, preload, app, placeholder, signals, role_variable).serve()


def run_worker(worker):
    """Runs the worker, then ends the process as the interpreter would —
    non-daemon threads joined, atexit handlers run, output flushed, the
    same status (a message for a SystemExit that is not a number, the
    traceback of an uncaught exception, SIGINT's death for
    KeyboardInterrupt) — but without tearing the interpreter down: that
    would touch every object the fork shares, about 12 ms of CPU per worker
    and its pages copied for nothing. (__del__ methods are not run at exit,
    which Python does not promise either.)"""
    interrupted = False
    try:
        code = worker()
    except SystemExit as error:
        code = error.code
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        code, interrupted = 130, True
    except BaseException:  # noqa: B036  what the interpreter would print and exit 1 for
        sys.excepthook(*sys.exc_info())
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        threading._shutdown()  # joins the non-daemon threads, as Py_FinalizeEx does first
    except Exception:  # noqa: BLE001
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)


if __name__ == "__main__":
    outcome = main(sys.argv[1:])
    if callable(outcome):  # this process is a worker now
        run_worker(outcome)
    # The server or the zygote, done: nothing of its own to finish.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(outcome if isinstance(outcome, int) else 1)
