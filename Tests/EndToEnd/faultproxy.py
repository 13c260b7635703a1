#!/usr/bin/env python3
"""A fault-injecting TCP proxy, for end-to-end tests of a lease under network
partitions: one proxy per supervisor, between it and Redis or PostgreSQL.

It listens on 127.0.0.1 (a free port unless told one) and forwards each
connection to the target. Its mode applies at once to every connection, open
or new:

  pass           forward normally.
  blackhole      accept, connect on, then read both ways and drop what is
                 read: connections stay open and nothing comes through. A
                 peer's EOF is held back, not dropped, and delivered when the
                 mode changes (so no connection is left half-open for ever);
                 data is gone, so a stream that crossed a blackhole has a hole.
  delay SECONDS  each chunk is forwarded SECONDS after it was read (the delay
                 in force when it was read), in order, in each direction.
  reset          every connection is closed with RST (SO_LINGER 0) on both
                 sides; new ones are accepted and reset at once.

In a test, in-process (the proxy runs its own thread):

    proxy = FaultProxy(target=("127.0.0.1", 6379)).start()
    proxy.port                # where to point the supervisor
    proxy.set("blackhole")    # returns once the mode is in force
    proxy.set("delay", 1.5)
    proxy.set("pass")
    proxy.stop()

As a script, printing the port alone on the first line of stdout, and taking
commands on a unix socket, one per line, each answered "ok MODE" or
"error WHY" once in force ("status" also gives the connection count):

    faultproxy.py --listen 0 --target 127.0.0.1:6379 --control PATH
    faultproxy.py --control PATH --send "delay 1.5"

SIGTERM and SIGINT stop it (exit 0). Python 3.11 standard library only: one
thread, one selector, no busy loop (it sleeps until a socket is ready or the
next delayed chunk is due).
"""
import argparse
import collections
import errno
import os
import queue
import selectors
import signal
import socket
import struct
import sys
import threading
import time

MODES = ("pass", "blackhole", "delay", "reset")
# Bytes read but not yet written, per direction, past which the proxy stops
# reading that side (a slow reader slows the writer, as TCP would).
BACKLOG_LIMIT = 4 << 20
CHUNK = 65536


def parse_command(text):
    """("pass", 0.0), ("delay", 1.5)...; ValueError for anything else."""
    words = text.split()
    if not words or words[0] not in MODES:
        raise ValueError(f"unknown mode {text.strip()!r}, expected one of {', '.join(MODES)}")
    if words[0] == "delay":
        if len(words) != 2:
            raise ValueError("delay takes one argument, SECONDS")
        try:
            seconds = float(words[1])
        except ValueError:
            raise ValueError(f"delay: expected seconds, got {words[1]!r}") from None
        if not 0 <= seconds < 3600:
            raise ValueError(f"delay: expected 0 to 3600 seconds, got {words[1]}")
        return "delay", seconds
    if len(words) != 1:
        raise ValueError(f"{words[0]} takes no argument")
    return words[0], 0.0


def reset(sock):
    """Close with RST rather than FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Direction:
    """One way through a connection: chunks read from `src`, due at a time,
    then written to `dst`. None in the queue is the source's EOF."""

    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.queue = collections.deque()
        self.out = bytearray()
        self.backlog = 0
        self.eof_read = False
        self.eof_due = False
        self.shut = False

    def wants_read(self, mode):
        return not self.eof_read and (mode == "blackhole" or self.backlog < BACKLOG_LIMIT)

    def drop_data(self):
        """What a blackhole does to bytes in flight: gone, but for the EOF."""
        self.queue = collections.deque(item for item in self.queue if item[1] is None)
        self.out.clear()
        self.backlog = 0


class _Connection:
    """A client and the upstream connection opened for it."""

    def __init__(self, client, upstream):
        self.client, self.upstream = client, upstream
        self.connected = False
        self.up = _Direction(client, upstream)
        self.down = _Direction(upstream, client)
        self.registered = {}


class FaultProxy:
    """One listener, its connections and their mode. Every socket is touched
    by the proxy's own thread only; `set`, `connection_count` and `stop`
    hand their work to it through a queue and a wake-up socket."""

    def __init__(self, target, listen=("127.0.0.1", 0), control_path=None, mode="pass"):
        self.target = target
        self._mode, self._delay = parse_command(mode)
        self._listen_address = listen
        self._control_path = control_path
        self._selector = selectors.DefaultSelector()
        self._connections = set()
        self._commands = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False
        self._thread = None
        self._loop_thread = None
        self._listener = None
        self._control = None
        self._control_buffers = {}
        self._target_address = None
        self.port = None

    # --- the caller's side ---

    def start(self):
        """Binds (so that `port` is known when this returns) and runs the
        proxy in a thread of its own."""
        self._bind()
        self._thread = threading.Thread(target=self._loop, name="faultproxy", daemon=True)
        self._loop_thread = self._thread
        self._thread.start()
        return self

    def serve_forever(self):
        """Binds and runs the proxy in this thread, until `stop` from another
        thread or a "stop" command on the control socket."""
        self._bind()
        self._loop()

    def set(self, mode, seconds=None, timeout=5.0):
        """Switches the mode; returns once it is in force on every connection."""
        command = mode if seconds is None else f"{mode} {seconds}"
        return self._call(parse_command(command), timeout)

    @property
    def mode(self):
        return f"delay {self._delay:g}" if self._mode == "delay" else self._mode

    def connection_count(self, timeout=5.0):
        return self._call(("status",), timeout)

    def stop(self, timeout=5.0):
        """Closes every connection and the listener, and ends the thread."""
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError("faultproxy: the proxy thread did not stop")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _call(self, command, timeout):
        loop = self._loop_thread
        if loop is None or not loop.is_alive() or loop is threading.current_thread():
            return self._apply(command)
        done = threading.Event()
        result = []
        self._commands.put((command, done, result))
        self._wake()
        if not done.wait(timeout):
            raise TimeoutError(f"faultproxy: {command[0]} not applied within {timeout} s")
        if isinstance(result[0], Exception):
            raise result[0]
        return result[0]

    def _wake(self):
        """Also what a signal handler may call: it only writes one byte."""
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # Full: a wake-up is already pending. Closed: stopped.

    # --- the proxy's thread ---

    def _bind(self):
        host, port = self.target
        self._target_address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        host, port = self._listen_address
        self._listener = socket.create_server((host, port), backlog=128)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._selector.register(self._listener, selectors.EVENT_READ, self._accept)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._woken)
        if self._control_path:
            if os.path.exists(self._control_path):
                os.unlink(self._control_path)
            self._control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._control.bind(self._control_path)
            self._control.listen(8)
            self._control.setblocking(False)
            self._selector.register(self._control, selectors.EVENT_READ, self._control_accept)

    def _loop(self):
        self._loop_thread = threading.current_thread()
        try:
            while not self._stopping:
                for key, mask in self._selector.select(self._timeout()):
                    key.data(key.fileobj, mask)
                now = time.monotonic()
                for connection in list(self._connections):
                    self._pump(connection, now)
        finally:
            self._shut_down()

    def _timeout(self):
        """Until the earliest delayed chunk is due; None: until a socket is ready."""
        if self._mode == "blackhole":
            return None
        dues = [direction.queue[0][0]
                for connection in self._connections if connection.connected
                for direction in (connection.up, connection.down) if direction.queue and not direction.out]
        return max(0.0, min(dues) - time.monotonic()) if dues else None

    def _woken(self, sock, mask):
        try:
            while sock.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                command, done, result = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                result.append(self._apply(command))
            except Exception as error:  # noqa: BLE001 - handed back to the caller
                result.append(error)
            done.set()

    def _apply(self, command):
        if command[0] == "status":
            return len(self._connections)
        if command[0] == "stop":
            self._stopping = True
            return self.mode
        self._mode, self._delay = command
        if self._mode == "reset":
            for connection in list(self._connections):
                self._close(connection, rst=True)
        elif self._mode == "blackhole":
            for connection in self._connections:
                for direction in (connection.up, connection.down):
                    direction.drop_data()
        return self.mode

    def _accept(self, listener, mask):
        while True:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return  # Retried when the listener is next readable.
                raise
            if self._mode == "reset":
                reset(client)
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                reset(client)
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = _Connection(client, upstream)
            self._connections.add(connection)
            self._update(connection)

    def _connect_upstream(self):
        family, kind, proto, _, address = self._target_address
        upstream = socket.socket(family, kind, proto)
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = upstream.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            upstream.close()
            raise OSError(code, os.strerror(code))
        return upstream

    def _ready(self, connection, sock, mask):
        if connection not in self._connections:
            return  # Closed earlier in this round of events.
        if sock is connection.upstream and not connection.connected:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._close(connection, rst=True)
                return
            connection.connected = True
        if mask & selectors.EVENT_READ:
            direction = connection.up if sock is connection.client else connection.down
            try:
                data = sock.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close(connection, rst=True)
                return
            if data is not None:
                due = time.monotonic() + (self._delay if self._mode == "delay" else 0.0)
                if not data:
                    direction.eof_read = True
                    direction.queue.append((due, None))
                elif self._mode != "blackhole":
                    direction.queue.append((due, data))
                    direction.backlog += len(data)
        self._pump(connection, time.monotonic())

    def _pump(self, connection, now):
        """Moves due chunks out, writes what the sockets take, sends FIN after
        an EOF, and closes the pair once both ways are done."""
        if connection not in self._connections:
            return
        if self._mode != "blackhole" and connection.connected:
            for direction in (connection.up, connection.down):
                while direction.queue and direction.queue[0][0] <= now and not direction.eof_due:
                    _, chunk = direction.queue.popleft()
                    if chunk is None:
                        direction.eof_due = True
                    else:
                        direction.out += chunk
                if direction.out:
                    try:
                        sent = direction.dst.send(direction.out)
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    except OSError:
                        self._close(connection, rst=True)
                        return
                    del direction.out[:sent]
                    direction.backlog -= sent
                if direction.eof_due and not direction.out and not direction.shut:
                    try:
                        direction.dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        self._close(connection, rst=True)
                        return
                    direction.shut = True
            if connection.up.shut and connection.down.shut:
                self._close(connection, rst=False)
                return
        self._update(connection)

    def _update(self, connection):
        """Registers each socket for what it is waiting for."""
        for sock, reading, writing in ((connection.client, connection.up, connection.down),
                                       (connection.upstream, connection.down, connection.up)):
            if sock is connection.upstream and not connection.connected:
                events = selectors.EVENT_WRITE
            else:
                events = selectors.EVENT_READ if reading.wants_read(self._mode) else 0
                if writing.out and self._mode != "blackhole":
                    events |= selectors.EVENT_WRITE
            current = connection.registered.get(sock, 0)
            if events == current:
                continue
            if not events:
                self._selector.unregister(sock)
            elif not current:
                self._selector.register(sock, events, lambda s, m, c=connection: self._ready(c, s, m))
            else:
                self._selector.modify(sock, events, lambda s, m, c=connection: self._ready(c, s, m))
            connection.registered[sock] = events

    def _close(self, connection, rst):
        self._connections.discard(connection)
        for sock in (connection.client, connection.upstream):
            if connection.registered.get(sock):
                self._selector.unregister(sock)
            if rst:
                reset(sock)
            else:
                sock.close()
        connection.registered.clear()

    def _control_accept(self, listener, mask):
        try:
            client, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        client.setblocking(False)
        self._selector.register(client, selectors.EVENT_READ, self._control_read)
        self._control_buffers[client] = b""

    def _control_read(self, client, mask):
        """Commands, one a line, each answered once in force. The answers are
        a line each, which a unix socket's buffer takes whole; a client that
        never reads them is dropped after a second."""
        try:
            data = client.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        *lines, rest = (self._control_buffers[client] + data).split(b"\n")
        if not data:
            lines.append(rest)  # A last command without its newline.
        keep = bool(data) and len(rest) <= 4096
        for line in lines:
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            try:
                if text == "status":
                    reply = f"ok {self.mode} connections={len(self._connections)}"
                elif text == "stop":
                    reply = f"ok {self._apply(('stop',))}"
                else:
                    reply = f"ok {self._apply(parse_command(text))}"
            except ValueError as error:
                reply = f"error {error}"
            try:
                client.settimeout(1.0)
                client.sendall(reply.encode() + b"\n")
                client.setblocking(False)
            except OSError:
                keep = False
                break
        if keep:
            self._control_buffers[client] = rest
        else:
            self._selector.unregister(client)
            del self._control_buffers[client]
            client.close()

    def _shut_down(self):
        for connection in list(self._connections):
            self._close(connection, rst=False)
        for client in list(self._control_buffers):
            self._selector.unregister(client)
            client.close()
        for sock in (self._listener, self._control):
            if sock is not None:
                self._selector.unregister(sock)
                sock.close()
        if self._control_path and os.path.exists(self._control_path):
            os.unlink(self._control_path)
        self._selector.unregister(self._wake_r)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        # A caller still waiting on a command gets an answer, not a timeout.
        while True:
            try:
                _, done, result = self._commands.get_nowait()
            except queue.Empty:
                break
            result.append(RuntimeError("faultproxy: stopped"))
            done.set()


def send_command(path, command, timeout=5.0):
    """Sends one command to a proxy's control socket; its answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.strip().encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.decode().strip()


def parse_address(text, default_host="127.0.0.1"):
    """PORT, HOST:PORT or [V6]:PORT."""
    host, colon, port = text.rpartition(":")
    if not colon:
        host = default_host
    host = host.strip("[]") or default_host
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PORT or HOST:PORT, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return host, number


def main(argv=None):
    parser = argparse.ArgumentParser(description="A fault-injecting TCP proxy for end-to-end tests.")
    parser.add_argument("--listen", type=parse_address, default=("127.0.0.1", 0), metavar="[HOST:]PORT",
                        help="where to listen (default 127.0.0.1:0, a free port)")
    parser.add_argument("--target", type=parse_address, metavar="HOST:PORT", help="where to forward")
    parser.add_argument("--control", metavar="PATH", help="unix socket taking commands")
    parser.add_argument("--mode", default="pass", help="the mode at start (default pass)")
    parser.add_argument("--send", metavar="COMMAND", help="send COMMAND to the proxy at --control, print its answer")
    args = parser.parse_args(argv)
    if args.send is not None:
        if not args.control:
            parser.error("--send needs --control")
        reply = send_command(args.control, args.send)
        print(reply)
        return 0 if reply.startswith("ok") else 1
    if args.target is None:
        parser.error("--target is required")
    try:
        proxy = FaultProxy(args.target, listen=args.listen, control_path=args.control, mode=args.mode)
    except ValueError as error:
        parser.error(f"--mode: {error}")

    def stop(signum, frame):
        proxy._stopping = True
        proxy._wake()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        proxy._bind()
    except OSError as error:
        print(f"faultproxy: cannot listen on {args.listen[0]}:{args.listen[1]} "
              f"or resolve {args.target[0]}: {error}", file=sys.stderr)
        return 1
    print(proxy.port, flush=True)
    proxy._loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
