#!/usr/bin/env python3
"""Self-test of faultproxy.py against a small echo server: each mode on a
connection opened before the switch and on one opened after it, in-process
and as a script driven through its control socket.

usage: python3 Tests/EndToEnd/faultproxy_test.py
Prints "ok"/"FAIL" lines and "faultproxy: N passed, M failed"; exits non-zero
on any failure.
"""
import faulthandler
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from faultproxy import FaultProxy, send_command  # noqa: E402
import harness  # noqa: E402
from harness import check  # noqa: E402

# How long a blackholed read waits to show that nothing comes. Absence can
# only be shown by waiting; everything else waits on a condition.
SILENCE = 0.5
DELAY = 0.3

def wait_for(seconds, condition):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class EchoServer:
    """Echoes every connection on its own thread; counts the connections that
    ended in a reset (what the proxy's upstream side sees in reset mode)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.resets = 0
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn):
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except ConnectionResetError:
                with self.lock:
                    self.resets += 1
            except OSError:
                pass

    def stop(self):
        self.listener.shutdown(socket.SHUT_RDWR)  # Wakes the blocked accept.
        self.listener.close()


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def receive(sock, count, timeout=5.0):
    """Exactly `count` bytes, or fewer if the peer closed."""
    sock.settimeout(timeout)
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


def echoes(sock, payload):
    sock.sendall(payload)
    return receive(sock, len(payload)) == payload


def silent(sock):
    """Nothing arrives within SILENCE, and the connection is still open."""
    sock.settimeout(SILENCE)
    try:
        data = sock.recv(1)
        return False, f"received {data!r}" if data else "closed"
    except socket.timeout:
        pass
    except OSError as error:
        return False, repr(error)
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable, "readable after the silence"


def reset_seen(sock):
    sock.settimeout(5)
    try:
        data = sock.recv(1)
        return False, f"recv gave {data!r}"
    except ConnectionResetError:
        return True, ""
    except OSError as error:
        return False, repr(error)


def connection_reset(port):
    """A new connection is reset: at connect, if the reset came before the
    handshake's end was reported, else at the first read."""
    try:
        sock = connect(port)
    except ConnectionResetError:
        return True, ""
    with sock:
        return reset_seen(sock)


def test_in_process(echo):
    proxy = FaultProxy(target=("127.0.0.1", echo.port)).start()
    try:
        check("starts in pass mode on a free port", proxy.mode == "pass" and proxy.port > 0)
        old = connect(proxy.port)
        check("pass: echoes", echoes(old, b"hello"))

        # A megabyte each way at once: partial writes and back-pressure.
        big = os.urandom(1 << 20)
        sender = threading.Thread(target=old.sendall, args=(big,))
        sender.start()
        back = receive(old, len(big), timeout=30)
        sender.join()
        check("pass: a megabyte each way arrives whole and in order", back == big)

        proxy.set("blackhole")
        check("blackhole: mode reported", proxy.mode == "blackhole")
        old.sendall(b"lost")
        quiet, detail = silent(old)
        check("blackhole: an open connection gets nothing and stays open", quiet, detail)
        new = connect(proxy.port)
        new.sendall(b"x")
        quiet, detail = silent(new)
        check("blackhole: a new connection is accepted and gets nothing", quiet, detail)
        check("blackhole: both connections still counted", proxy.connection_count() == 2)

        proxy.set("pass")
        old.sendall(b"after")
        check("pass again: the open connection echoes, the blackholed bytes are gone",
              receive(old, 5) == b"after")
        check("pass again: the connection opened in blackhole echoes", echoes(new, b"y"))

        proxy.set("delay", DELAY)
        check("delay: mode reported", proxy.mode == f"delay {DELAY:g}")
        started = time.monotonic()
        same = echoes(old, b"slow")
        elapsed = time.monotonic() - started
        check("delay: an open connection's round trip takes both directions' delay",
              same and elapsed >= 2 * DELAY, f"echoed={same} in {elapsed:.3f} s")
        pieces = [bytes([65 + i]) * 1000 for i in range(5)]
        for piece in pieces:
            new.sendall(piece)
            time.sleep(DELAY / 5)
        check("delay: chunks keep their order", receive(new, 5000) == b"".join(pieces))
        late = connect(proxy.port)
        started = time.monotonic()
        same = echoes(late, b"late")
        check("delay: a new connection is delayed too",
              same and time.monotonic() - started >= 2 * DELAY)

        proxy.set("pass")
        check("pass: the delay is gone", echoes(old, b"quick"))
        resets_before = echo.resets
        proxy.set("reset")
        for name, sock in (("old", old), ("new", new), ("late", late)):
            ok, detail = reset_seen(sock)
            check(f"reset: open connection {name} gets ConnectionResetError", ok, detail)
        check("reset: the upstream side is reset too",
              wait_for(5, lambda: echo.resets >= resets_before + 3), f"resets {echo.resets - resets_before}")
        check("reset: no connection left", proxy.connection_count() == 0)
        ok, detail = connection_reset(proxy.port)
        check("reset: a new connection is reset at once", ok, detail)
        check("reset: it stays in reset mode", proxy.mode == "reset")

        proxy.set("pass")
        again = connect(proxy.port)
        check("pass after reset: a new connection echoes", echoes(again, b"back"))
        again.shutdown(socket.SHUT_WR)
        check("pass: an EOF goes through both ways and the pair is closed",
              receive(again, 1) == b"" and wait_for(5, lambda: proxy.connection_count() == 0))

        for bad in (("sideways",), ("delay", -1), ("delay", "soon"), ("pass", 3)):
            try:
                proxy.set(*bad)
                check(f"refuses {bad}", False, "no error")
            except ValueError:
                check(f"refuses {bad}", True)
        for sock in (old, new, late, again):
            sock.close()
    finally:
        proxy.stop()
    check("stop: the thread ends", not proxy._thread.is_alive())
    try:
        connect(proxy.port).close()
        check("stop: the port no longer accepts", False)
    except ConnectionRefusedError:
        check("stop: the port no longer accepts", True)


def test_upstream_down(echo):
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed_port = placeholder.getsockname()[1]
    with FaultProxy(target=("127.0.0.1", closed_port)) as proxy:
        ok, detail = connection_reset(proxy.port)
        check("a refused upstream connection resets the client", ok, detail)


def test_script(echo):
    scratch = tempfile.TemporaryDirectory(prefix="faultproxy-")
    control = os.path.join(scratch.name, "control")
    script = os.path.join(HERE, "faultproxy.py")
    process = subprocess.Popen(
        [sys.executable, script, "--listen", "0", "--target", f"127.0.0.1:{echo.port}", "--control", control],
        stdout=subprocess.PIPE, text=True)
    try:
        readable, _, _ = select.select([process.stdout], [], [], 10)
        line = process.stdout.readline() if readable else ""
        check("script: prints its port", line.strip().isdigit(), repr(line))
        if not line.strip().isdigit():
            return
        port = int(line)
        sock = connect(port)
        check("script: pass echoes", echoes(sock, b"hi"))
        sent = subprocess.run([sys.executable, script, "--control", control, "--send", "blackhole"],
                              capture_output=True, text=True, timeout=10)
        check("script: --send blackhole answers ok", sent.returncode == 0 and sent.stdout.strip() == "ok blackhole",
              f"{sent.returncode} {sent.stdout!r} {sent.stderr!r}")
        sock.sendall(b"gone")
        quiet, detail = silent(sock)
        check("script: blackhole holds the connection silent", quiet, detail)
        status = send_command(control, "status")
        check("script: status", status == "ok blackhole connections=1", status)
        bad = subprocess.run([sys.executable, script, "--control", control, "--send", "sideways"],
                             capture_output=True, text=True, timeout=10)
        check("script: an unknown command is an error", bad.returncode == 1 and bad.stdout.startswith("error"),
              bad.stdout)
        check("script: delay through the socket", send_command(control, "delay 0.05") == "ok delay 0.05")
        check("script: pass through the socket", send_command(control, "pass") == "ok pass")
        sock.sendall(b"back")
        check("script: pass again echoes", receive(sock, 4) == b"back")
        sock.close()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
        check("script: SIGTERM stops it with status 0", code == 0, f"status {code}")
        check("script: the control socket is removed", not os.path.exists(control))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        scratch.cleanup()


def main():
    faulthandler.dump_traceback_later(120, exit=True)
    echo = EchoServer()
    try:
        for test in (test_in_process, test_upstream_down, test_script):
            try:
                test(echo)
            except Exception as error:  # noqa: BLE001 - a failed check, not a crash
                check(f"{test.__name__} ran to its end", False, repr(error))
    finally:
        echo.stop()
    return harness.tally("faultproxy")


if __name__ == "__main__":
    sys.exit(main())
