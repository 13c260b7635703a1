"""hypercorn on the socket bellwether passes at descriptor 3, without
resetting the requests it accepted just before a TERM:

    bellwether -w 4 -b 127.0.0.1:8000 -- python3 hypercorn_fd3.py app:asgi

At TERM, hypercorn's worker_serve (hypercorn/asyncio/run.py) first sets its
`terminated` event, which closes every connection with no request parsed
yet — including one it accepted a moment before whose request is already
waiting unread: that client gets "connection reset by peer" (about one
request per retired worker under load) — and only then closes its listeners.
Here the TERM first stops this process's accept loop (its descriptor stays
open: the socket is the other workers' too), reads for 50 ms, and only then
lets hypercorn shut down. hypercorn's Python API serves in this process,
where `hypercorn --bind fd://3` serves from a child process.
"""
import asyncio
import importlib
import os
import signal
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

FD = 3


async def main(path):
    sys.path.insert(0, os.getcwd())
    module, _, name = path.partition(":")
    app = getattr(importlib.import_module(module), name or "app")
    config = Config()
    config.bind = [f"fd://{FD}"]
    loop = asyncio.get_running_loop()
    term = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, term.set)

    async def stop_accepting_then_shut_down():
        await term.wait()
        loop.remove_reader(FD)  # this process's accept loop only; hypercorn closes its copy after
        await asyncio.sleep(0.05)

    await serve(app, config, shutdown_trigger=stop_accepting_then_shut_down)


asyncio.run(main(sys.argv[1]))
