"""gunicorn settings for one `gunicorn -w 1` per bellwether worker with
`--ready notify`: readiness means the sync worker has loaded the app and is
accepting, not that the arbiter has started.

gunicorn's arbiter sends READY=1 as soon as it has its sockets, before it forks
its worker; bellwether would then retire an old worker while the new one cannot
serve yet. These hooks move NOTIFY_SOCKET out of the arbiter's sight and send
READY=1 from the worker once it is initialised."""
import os
import socket

_KEY = "BELLWETHER_WORKER_NOTIFY_SOCKET"


def on_starting(server):
    address = os.environ.pop("NOTIFY_SOCKET", None)
    if address:
        os.environ[_KEY] = address


def post_worker_init(worker):
    address = os.environ.get(_KEY)
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(b"READY=1", address)
