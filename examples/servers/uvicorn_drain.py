"""uvicorn, without resetting the requests it accepted just before a TERM.

    gunicorn -c gunicorn.conf.py -w 1 -k uvicorn_drain.UvicornWorker app:asgi
    import uvicorn_drain   # before uvicorn.Server(...).run(), as uvicorn_fd3.py does

At TERM, uvicorn stops listening and, in the same turn of its event loop,
closes every connection with no request parsed yet — including one it
accepted a moment before whose request is already waiting unread: that client
gets "connection reset by peer" (about one request per retired worker under
load; a known uvicorn race). Here uvicorn stops listening first and reads
for 50 ms before it shuts the connections down, so such a request is served.
Importing this module patches uvicorn's Server; UvicornWorker is
uvicorn-worker's, imported after the patch.
"""
import asyncio

import uvicorn.server

_shutdown = uvicorn.server.Server.shutdown


async def _shutdown_after_reading(self, sockets=None):
    for server in self.servers:
        server.close()
    await asyncio.sleep(0.05)
    await _shutdown(self, sockets)


uvicorn.server.Server.shutdown = _shutdown_after_reading

try:
    from uvicorn_worker import UvicornWorker  # noqa: E402,F401  (gunicorn -k uvicorn_drain.UvicornWorker)
except ImportError:  # uvicorn without gunicorn
    pass
