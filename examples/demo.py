#!/usr/bin/env python3
"""bellwether demo: an HTTP app on N workers; only the scheduler runs the job.

Run it with `scripts/demo` (or `bellwether -w 3 -b 127.0.0.1:8000 -- python3
examples/demo.py`) and try `curl localhost:8000`: every answer names the
worker's pid, role and generation. The scheduler worker also prints a tick
every second, the others only serve. Kill the scheduler, or send HUP to the
master, and watch exactly one new scheduler take over while requests keep
being answered. Python standard library only.

It serves on the sockets the master passes (LISTEN_FDS, from fd 3), tells the
master it is ready (READY=1 on NOTIFY_SOCKET), pings the watchdog when asked
(WATCHDOG_USEC), and on TERM finishes the request in hand before exiting.
"""
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

role = os.environ.get("WORKER_ROLE", "worker")
worker_id = os.environ.get("WORKER_ID", "?")
count = os.environ.get("WORKERS_COUNT", "?")
generation = os.environ.get("WORKER_GENERATION", "?")
pid = os.getpid()


def say(text):
    # One write per line, so that lines of several workers never interleave.
    sys.stdout.write(f"[worker {worker_id}/{count} pid {pid} gen {generation}] {text}\n")
    sys.stdout.flush()


def notify(message):
    """sd_notify: one datagram to NOTIFY_SOCKET ("@name" is abstract)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def inherited_sockets():
    """The sockets passed the systemd way, if they are meant for this process."""
    if os.environ.get("LISTEN_PID") != str(pid):
        return []
    return [socket.socket(fileno=3 + i) for i in range(int(os.environ.get("LISTEN_FDS", "0")))]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"pid": pid, "role": role, "worker": worker_id, "generation": generation}) + "\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format, *args):
        pass


def serve(sock):
    server = HTTPServer(("", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


servers = [serve(sock) for sock in inherited_sockets()]
stop = threading.Event()


def on_term(signum, frame):
    stop.set()


signal.signal(signal.SIGTERM, on_term)
say(f"started as {role}" + (f", serving {len(servers)} socket(s)" if servers else "")
    + (f" (TZ={os.environ['TZ']})" if "TZ" in os.environ else ""))
notify("READY=1")

watchdog = int(os.environ.get("WATCHDOG_USEC", "0")) / 1e6
interval = min(1.0, watchdog / 2) if watchdog else 1.0
tick = 0
next_tick = time.monotonic()


def timeout():
    if role != "scheduler":
        return interval if watchdog else None  # the others just wait for TERM
    return max(0.0, min(interval, next_tick - time.monotonic()))


while not stop.wait(timeout()):
    if watchdog:
        notify("WATCHDOG=1")
    if role == "scheduler" and time.monotonic() >= next_tick:
        tick += 1
        say(f"tick {tick} at {time.strftime('%H:%M:%S %Z')}")
        next_tick += 1.0

say("got TERM, exiting")
notify("STOPPING=1")
for server in servers:
    server.shutdown()  # waits for the request in hand
sys.exit(0)
