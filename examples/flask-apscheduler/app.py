"""A Flask app with Flask-APScheduler jobs, run under bellwether.

    bellwether -w 4 --bind 127.0.0.1:8000 -- gunicorn -w 1 app:app

Every bellwether worker imports this module; only the one whose WORKER_ROLE
is "scheduler" starts the scheduler, so each job runs once, not once per
worker. gunicorn takes the socket bellwether bound from LISTEN_FDS.

Each execution is appended to JOB_LOG (default: jobs.log) as one line:
    job=NAME pid=PID at=UNIX_TIME tz=ZONE
"""
import os
import time

from flask import Flask, jsonify
from flask_apscheduler import APScheduler

JOB_LOG = os.environ.get("JOB_LOG", "jobs.log")


class Config:
    SCHEDULER_API_ENABLED = False
    # Without a zone APScheduler asks tzlocal, which fails in a container
    # whose /etc/timezone and /etc/localtime disagree; bellwether --timezone
    # sets TZ for every worker.
    SCHEDULER_TIMEZONE = os.environ.get("TZ", "UTC")


app = Flask(__name__)
app.config.from_object(Config)
scheduler = APScheduler()
scheduler.init_app(app)


def record(job):
    line = f"job={job} pid={os.getpid()} at={time.time():.3f} tz={os.environ.get('TZ', '-')}\n"
    # One write with O_APPEND: lines from several processes never interleave.
    fd = os.open(JOB_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@scheduler.task("interval", id="report", seconds=int(os.environ.get("REPORT_SECONDS", "30")))
def report():
    record("report")


@scheduler.task("cron", id="tick", second=os.environ.get("TICK_CRON_SECOND", "*/10"))
def tick():
    record("tick")


@app.route("/")
def index():
    return jsonify(pid=os.getpid(), role=os.environ.get("WORKER_ROLE"),
                   worker=os.environ.get("WORKER_ID"), generation=os.environ.get("WORKER_GENERATION"),
                   scheduler_running=scheduler.running)


# The two lines an existing app needs: start the scheduler in one worker only.
if os.environ.get("WORKER_ROLE") == "scheduler":
    scheduler.start()
