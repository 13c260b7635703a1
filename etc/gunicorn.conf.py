# gunicorn configuration for running gunicorn as bellwether's app:
#
#     bellwether -w 4 -b 127.0.0.1:8000 --ready notify -- \
#         gunicorn -c /usr/local/share/bellwether/gunicorn.conf.py -w 1 app:app
#
# With --ready notify, bellwether retires an old worker on HUP once its
# replacement sends READY=1. gunicorn's arbiter sends READY=1 as soon as it has
# its sockets, before its forked worker has imported the app, so an app that
# takes seconds to import would leave requests waiting that long. With this
# file, READY=1 comes from gunicorn's worker once the app is loaded; the
# arbiter's is held back. No --preload needed: the app is still imported in the
# worker, fresh at every reload.
#
# The hooks, in gunicorn's order (the same from gunicorn 23 to 27):
#   on_starting       arbiter, before it sends READY=1: NOTIFY_SOCKET leaves
#                     its environment, so that sd_notify finds nothing to send to
#   when_ready        arbiter, after it has (not) sent READY=1: NOTIFY_SOCKET
#                     comes back, so the workers it forks inherit it and the app
#                     can still send WATCHDOG=1 or STATUS= itself
#   post_worker_init  worker, after the app is loaded: READY=1
#   child_exit        arbiter, when its worker has exited while it serves
#                     (killed, crashed, --max-requests, gunicorn's --timeout):
#                     the arbiter stops too, with status 1, rather than fork a
#                     new worker itself. bellwether then restarts the whole
#                     slot, and its guard first ends what the old worker
#                     started (a setsid helper, a job runner), so nothing of
#                     it runs beside the new one; restarts and back-off show
#                     in `bellwether status`.
# Only NOTIFY_SOCKET is relied on, not which process is bellwether's child: a
# gunicorn worker belongs to its arbiter's process group, which bellwether
# accepts readiness from. When gunicorn replaces a worker of its own (a crash,
# --max-requests), the new one sends READY=1 again, which bellwether ignores.
# Without NOTIFY_SOCKET (gunicorn run by hand) the hooks do nothing.
#
# It also turns gunicorn's control socket off (gunicorn 27; older versions
# ignore the setting): every gunicorn -w 1 would otherwise open one at the same
# path, each replacing the last. `bellwether status` is the control socket here.
#
# With an app's own gunicorn config: gunicorn reads one config file (one -c, or
# ./gunicorn.conf.py when -c is absent), so the app's file takes these hooks in.
# Copy this file next to it as bellwether_gunicorn.py (gunicorn puts its
# --chdir directory, the current one by default, on sys.path before it reads
# the config), and begin the app's file with
#
#     from bellwether_gunicorn import *
#
# or, to use this file where it is installed,
#
#     exec(open("/usr/local/share/bellwether/gunicorn.conf.py").read())
#
# (/usr/share/bellwether/ from the Debian package, VENV/share/bellwether/ from
# the wheel, /usr/local/share/bellwether/ by the README's steps).
#
# If the app's file defines one of these four hooks itself, its own replaces
# this one; call this one from it:
#
#     def post_worker_init(worker):
#         bellwether_post_worker_init(worker)
#         ...  # the app's own
#
# Only the standard library is used.

import os
import socket

__all__ = [
    "control_socket_disable",
    "on_starting", "when_ready", "post_worker_init", "child_exit",
    "bellwether_on_starting", "bellwether_when_ready", "bellwether_post_worker_init", "bellwether_child_exit",
]

control_socket_disable = True

# The arbiter's NOTIFY_SOCKET while it is held back (between on_starting and
# when_ready, in the arbiter only).
_held_notify_socket = None


def bellwether_on_starting(server):
    global _held_notify_socket
    _held_notify_socket = os.environ.pop("NOTIFY_SOCKET", None)


def bellwether_when_ready(server):
    global _held_notify_socket
    if _held_notify_socket is not None:
        os.environ["NOTIFY_SOCKET"] = _held_notify_socket
        _held_notify_socket = None


def bellwether_post_worker_init(worker):
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket, as bellwether's is
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as notify:
            notify.connect(address)
            notify.sendall(b"READY=1")
    except OSError as error:
        worker.log.warning("READY=1 not sent to %s: %s", os.environ["NOTIFY_SOCKET"], error)


def bellwether_child_exit(server, worker):
    # The arbiter empties LISTENERS when it stops: its workers then exit as asked.
    if server.LISTENERS:
        from gunicorn.errors import HaltServer
        raise HaltServer(f"worker {worker.pid} exited; bellwether restarts this slot", 1)


on_starting = bellwether_on_starting
when_ready = bellwether_when_ready
post_worker_init = bellwether_post_worker_init
child_exit = bellwether_child_exit
