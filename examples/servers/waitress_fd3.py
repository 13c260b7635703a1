"""waitress on the socket bellwether passes at descriptor 3:

    bellwether -w 4 -b 127.0.0.1:8000 -- python3 waitress_fd3.py app:wsgi

waitress serves an existing socket (`sockets=`), but has no graceful stop: at
TERM it would drop the requests in flight. So TERM stops accepting — what
waits in the backlog goes to the other workers — and the process exits once
its open connections are done (or after DRAIN_SECONDS).
"""
import importlib
import signal
import socket
import sys
import time

import waitress.server

DRAIN_SECONDS = 10

module, _, name = sys.argv[1].partition(":")
app = getattr(importlib.import_module(module), name or "app")
server = waitress.server.create_server(app, sockets=[socket.socket(fileno=3)])
stopping_since = None


def stop(signum, frame):
    global stopping_since
    stopping_since = time.monotonic()
    server.accepting = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
# The listener and waitress's trigger stay in the map; anything more is a connection.
while stopping_since is None or (len(server._map) > 2 and time.monotonic() - stopping_since < DRAIN_SECONDS):
    server.asyncore.loop(timeout=0.2, map=server._map, count=1)
server.task_dispatcher.shutdown()
