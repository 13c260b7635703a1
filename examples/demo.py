#!/usr/bin/env python3
"""bellwether demo: N workers, and only the scheduler runs the job.

Run it with `scripts/demo` (or `bellwether -w 3 -- python3 examples/demo.py`).
Every worker prints its role once; the scheduler worker prints a tick every
second, the others idle. Kill the scheduler, or send HUP to the master, and
watch exactly one new scheduler take over. Python standard library only.
"""
import os
import signal
import sys
import time

role = os.environ.get("WORKER_ROLE", "worker")
worker_id = os.environ.get("WORKER_ID", "?")
count = os.environ.get("WORKERS_COUNT", "?")
generation = os.environ.get("WORKER_GENERATION", "?")
pid = os.getpid()


def say(text):
    # One write per line, so that lines of several workers never interleave.
    sys.stdout.write(f"[worker {worker_id}/{count} pid {pid} gen {generation}] {text}\n")
    sys.stdout.flush()


def stop(signum, frame):
    say("got TERM, exiting")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
say(f"started as {role}" + (f" (TZ={os.environ['TZ']})" if "TZ" in os.environ else ""))

if role == "scheduler":
    tick = 0
    while True:
        tick += 1
        say(f"tick {tick} at {time.strftime('%H:%M:%S %Z')}")
        time.sleep(1)
else:
    while True:
        signal.pause()
