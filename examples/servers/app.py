"""One trivial app for every Python server, as WSGI (`app:wsgi`) and as ASGI
(`app:asgi`), with an APScheduler job that only the scheduler worker runs.

    bellwether -w 4 -b 127.0.0.1:8000 -- python3 hypercorn_fd3.py app:asgi

Every answer is a small JSON object naming the worker's pid, role and
generation. The worker whose WORKER_ROLE is "scheduler" starts a
BackgroundScheduler at import, whatever the server (gunicorn's worker,
uvicorn, hypercorn's child, waitress), whose every-second job appends one line
to JOB_LOG (default: jobs.log, see joblog.py):

    job=tick pid=PID at=UNIX_TIME tz=ZONE
"""
import json
import os

from joblog import record


def answer():
    return json.dumps({"pid": os.getpid(), "role": os.environ.get("WORKER_ROLE"),
                       "worker": os.environ.get("WORKER_ID"),
                       "generation": os.environ.get("WORKER_GENERATION")}).encode()


def wsgi(environ, start_response):
    body = answer()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = answer()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def tick():
    record("tick", tz=os.environ.get("TZ", "-"))


if os.environ.get("WORKER_ROLE") == "scheduler":
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(timezone=os.environ.get("TZ", "UTC"))
    scheduler.add_job(tick, "cron", second=os.environ.get("TICK_CRON_SECOND", "*"), id="tick", max_instances=1)
    scheduler.start()
