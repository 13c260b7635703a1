"""The WSGI app both supervisors run in bench/reload.sh: a small JSON answer."""
import json
import os


def app(environ, start_response):
    body = json.dumps({"pid": os.getpid(), "role": os.environ.get("WORKER_ROLE", "-"),
                       "generation": os.environ.get("WORKER_GENERATION", "-")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
