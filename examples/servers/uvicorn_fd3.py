"""uvicorn on the socket bellwether passes at descriptor 3, as a TCP socket:

    bellwether -w 4 -b 127.0.0.1:8000 -- python3 uvicorn_fd3.py app:asgi

`uvicorn --fd 3` wraps the descriptor as a Unix socket (socket.fromfd with
AF_UNIX), so asyncio never sets TCP_NODELAY on the connections it accepts and
every response written in two parts waits for a delayed ACK (about 40 ms).
socket.socket(fileno=3) asks the kernel what the socket is instead.
The access log is off, as gunicorn's and hypercorn's are by default (uvicorn
writes a line per request to the master's stderr otherwise). uvicorn_drain
keeps a TERM from resetting the requests accepted just before it.
"""
import socket
import sys

import uvicorn

import uvicorn_drain  # noqa: F401

uvicorn.Server(uvicorn.Config(sys.argv[1], access_log=False)).run(sockets=[socket.socket(fileno=3)])
