"""A container without a container runtime, for the end-to-end tests.

`Container` runs a command as PID 1 of a new PID namespace, as a runtime runs
an image's entrypoint: `unshare --pid --fork --mount-proc` (so /proc is the
namespace's), with a tmpfs of its own on /run (so a bellwether's default
runtime directory, control socket and token are the container's alone). The
rest of the file system is shared: scratch files under /tmp are seen from
both sides. `run_inside` is `docker exec`: nsenter into the PID and mount
namespaces, from a parent outside them. Root is needed (unshare, mount).
"""
import os
import signal
import subprocess
import time

# The wrapper mounts /run and then execs the command: PID 1 is the command.
PRIVATE_RUN = 'mount -t tmpfs -o mode=0755 tmpfs /run && exec "$@"'


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(word) for word in listing.read().split()]
    except OSError:
        return []


def stat(pid):
    """(state, parent pid) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as text:
            fields = text.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, IndexError):
        return None


def alive(pid):
    """Running, not a zombie."""
    state = stat(pid)
    return state is not None and state[0] not in ("Z", "X")


def command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as text:
            return text.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Container:
    def __init__(self, command, log, env=None, cwd=None):
        self.log = log
        self.output = open(log, "w")
        self.unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--", "sh", "-c", PRIVATE_RUN, "sh"] + command,
            stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.pid = None  # PID 1 of the namespace, as the host numbers it
        for _ in range(500):
            found = children(self.unshare.pid)
            if found:
                self.pid = found[0]
                break
            if self.unshare.poll() is not None:
                break
            time.sleep(0.01)
        if self.pid is None:
            raise RuntimeError(f"no PID 1 under unshare {self.unshare.pid}: {self.text()}")
        self.namespace = os.readlink(f"/proc/{self.pid}/ns/pid")

    def text(self):
        with open(self.log, errors="replace") as log:
            return log.read()

    def processes(self):
        """{host pid: (state, host parent pid, command line)} of every process in the namespace."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != self.namespace:
                    continue
            except OSError:
                continue
            state = stat(int(entry))
            if state:
                found[int(entry)] = (state[0], state[1], command_line(int(entry)))
        return found

    def zombies(self):
        return {pid: info for pid, info in self.processes().items() if info[0] == "Z"}

    def inner_pid(self, pid):
        """The namespace's number for a host pid (NSpid's last field)."""
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("NSpid:"):
                        return int(line.split()[-1])
        except OSError:
            pass
        return None

    def run_inside(self, command, timeout=20, **kwargs):
        """`docker exec`: the command runs in the namespace, its parent outside."""
        return subprocess.run(["nsenter", "-t", str(self.pid), "--pid", "--mount", "--"] + command,
                              capture_output=True, text=True, timeout=timeout, **kwargs)

    def signal(self, number):
        """As `docker kill -s`: from outside the namespace, to its PID 1."""
        os.kill(self.pid, number)

    def wait(self, timeout):
        """The exit status `docker run` would give: PID 1's (128 + N for signal N), or None."""
        try:
            code = self.unshare.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.output.close()
        return 128 - code if code < 0 else code

    def destroy(self):
        """SIGKILL to PID 1: the kernel kills the whole namespace."""
        if self.unshare.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.unshare.wait(30)
        if not self.output.closed:
            self.output.close()
