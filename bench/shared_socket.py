"""Control for bench/reload.sh: N `gunicorn -w 1` arbiters on one socket, no
supervisor. It shows what the one-arbiter-per-worker layout costs by itself.

    python3 shared_socket.py PORT N SECONDS GUNICORN
"""
import os
import socket
import subprocess
import sys
import time

port, count, seconds, gunicorn = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(2048)
if listener.fileno() != 3:
    os.dup2(listener.fileno(), 3)  # the arbiters find it at fd 3 (LISTEN_FDS=1)
os.set_inheritable(3, True)

command = f"LISTEN_FDS=1 LISTEN_PID=$$ exec {gunicorn} -w 1 --no-control-socket --log-level warning app:app"
arbiters = [subprocess.Popen(["sh", "-c", command], pass_fds=(3,)) for _ in range(count)]
time.sleep(seconds)
for arbiter in arbiters:
    arbiter.terminate()
for arbiter in arbiters:
    arbiter.wait()
