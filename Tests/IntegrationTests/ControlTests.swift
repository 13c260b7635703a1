import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `bellwether status|reload|stop|scale` against a running master, over its
/// control socket.
@Suite("Control socket", .serialized, .ownThread, .timeLimit(.minutes(3)))
struct ControlTests {
    static func status(_ options: [String]) -> [String: Any]? {
        let result = Harness.run([Harness.bellwether, "status", "--json"] + options)
        guard result.status == 0, let data = result.stdout.data(using: .utf8) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }

    static func slots(_ report: [String: Any]?) -> [[String: Any]] { report?["slots"] as? [[String: Any]] ?? [] }

    @Test func statusShowsEverySlotAndTheNewSchedulerAfterAKill() throws {
        let directory = Harness.scratch("status")
        let socket = directory + "/control"
        let supervisor = Supervisor(["-w", "4", "--control-socket", socket], directory: directory, name: "status")
        #expect(Harness.wait { supervisor.settled(workers: 4) }, "\(supervisor.logText())")
        var info = stat()
        #expect(lstat(socket, &info) == 0 && info.st_mode & 0o777 == 0o600, "the socket is created 0600")

        let text = Harness.run([Harness.bellwether, "status", "--control-socket", socket])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("SLOT  PID"), "\(text.stdout)")
        #expect(text.stdout.components(separatedBy: " scheduler ").count == 2, "one scheduler row: \(text.stdout)")

        var report: [String: Any]?
        let ready = Harness.wait {
            report = Self.status(["--control-socket", socket])
            return Self.slots(report).allSatisfy { $0["state"] as? String == "ready" }
        }
        #expect(ready, "every slot becomes ready: \(String(describing: report))")
        let first = Self.slots(report)
        #expect(first.count == 4)
        #expect(first.filter { $0["role"] as? String == "scheduler" }.count == 1)
        let old = try #require(supervisor.liveSchedulers().first)
        #expect(report?["scheduler"] as? Int == Int(old.pid))
        #expect(Set(first.compactMap { $0["pid"] as? Int }) == Set(supervisor.live().map { Int($0.pid) }))

        kill(old.pid, SIGKILL)
        var after: [String: Any]?
        // Until the guard has passed on its app's pid, status shows the guard's.
        let replaced = Harness.wait {
            after = Self.status(["--control-socket", socket])
            let pid = after?["scheduler"] as? Int
            return pid != nil && pid != Int(old.pid) && Self.slots(after).count == 4
                && pid == supervisor.liveSchedulers().first.map { Int($0.pid) }
        }
        #expect(replaced, "\(supervisor.logText().suffix(800))")
        let newScheduler = supervisor.liveSchedulers().first?.pid
        #expect(after?["scheduler"] as? Int == newScheduler.map { Int($0) })
        let slot0 = Self.slots(after).first { $0["slot"] as? Int == 0 }
        #expect(slot0?["restarts"] as? Int == 1)
        #expect((slot0?["last_exit"] as? String)?.contains("KILL") == true, "\(String(describing: slot0))")
        #expect((after?["lease"] as? [String: Any])?["state"] as? String == "held by the scheduler")
        #expect(supervisor.stop() == 0)
        #expect(access(socket, F_OK) != 0, "the socket is removed at exit")
    }

    @Test func aPidfileFindsTheMastersDefaultSocket() {
        let directory = Harness.scratch("pidctl")
        let runtime = directory + "/run"
        mkdir(runtime, 0o700)
        let environment = ["XDG_RUNTIME_DIR": runtime]
        let supervisor = Supervisor(["-w", "2", "--pidfile", directory + "/pid"], environment: environment,
                                    directory: directory, name: "pidctl")
        #expect(Harness.wait { supervisor.settled(workers: 2) }, "\(supervisor.logText())")
        #expect(access(runtime + "/bellwether/master-\(supervisor.pid).ctl", F_OK) == 0)
        let byPidfile = Harness.run([Harness.bellwether, "status", "--json", "-p", directory + "/pid"],
                                    environment: environment)
        #expect(byPidfile.status == 0 && byPidfile.stdout.contains("\"pid\":\(supervisor.pid)"), "\(byPidfile)")
        // The only master in the runtime directory is found without naming it.
        let alone = Harness.run([Harness.bellwether, "status"], environment: environment)
        #expect(alone.status == 0 && alone.stdout.contains("master \(supervisor.pid)"), "\(alone)")
        #expect(supervisor.stop() == 0)
        // Gone: the pidfile went with it. (Discovery would now look further,
        // in the default runtime directory, where other tests' masters run.)
        let gone = Harness.run([Harness.bellwether, "status", "-p", directory + "/pid"], environment: environment)
        #expect(gone.status == 69)
        #expect(gone.stderr.contains("pidfile \(directory)/pid is missing or names no pid"), "\(gone.stderr)")
    }

    @Test func reloadScaleAndStopDoWhatTheSignalsDo() {
        let directory = Harness.scratch("verbs")
        let socket = directory + "/control"
        let supervisor = Supervisor(["-w", "2", "--control-socket", socket], directory: directory, name: "verbs")
        #expect(Harness.wait { supervisor.settled(workers: 2) })
        let scale = Harness.run([Harness.bellwether, "scale", "5", "-s", socket])
        #expect(scale.status == 0 && scale.stdout == "ok: scaling to 5 workers\n", "\(scale)")
        #expect(Harness.wait { supervisor.settled(workers: 5) }, "\(supervisor.logText().suffix(600))")
        #expect(Harness.run([Harness.bellwether, "scale", "3", "-s", socket]).status == 0)
        #expect(Harness.wait { supervisor.settled(workers: 3) })
        let reload = Harness.run([Harness.bellwether, "reload", "-s", socket])
        #expect(reload.status == 0, "\(reload)")
        // A reload re-reads the configuration, as HUP does: back to -w 2.
        #expect(Harness.wait(20) { supervisor.settled(workers: 2, generation: 1) }, "\(supervisor.logText().suffix(800))")
        let stop = Harness.run([Harness.bellwether, "stop", "-s", socket])
        #expect(stop.status == 0 && stop.stdout == "ok: stopping\n")
        #expect(supervisor.waitForExit() == 0)
        #expect(supervisor.overlaps().isEmpty)
    }

    @Test func aSocketOfTheWrongModeOrOwnerIsRefused() {
        let directory = Harness.scratch("ctlmode")
        let socket = directory + "/control"
        let supervisor = Supervisor(["-w", "1", "--control-socket", socket], directory: directory, name: "ctlmode")
        #expect(Harness.wait { supervisor.settled(workers: 1) })
        chmod(socket, 0o666)
        let loose = Harness.run([Harness.bellwether, "status", "-s", socket])
        #expect(loose.status == 77)
        #expect(loose.stderr == "bellwether status: control socket \(socket) has mode 666, which lets other users in; "
            + "refusing (it must be 600)\n", "\(loose.stderr)")
        chmod(socket, 0o600)
        #expect(Harness.run([Harness.bellwether, "status", "-s", socket]).status == 0)
        // A regular file where the socket should be is not asked at all.
        let file = directory + "/not-a-socket"
        _ = FileManager.default.createFile(atPath: file, contents: Data("status\n".utf8))
        chmod(file, 0o600)
        let regular = Harness.run([Harness.bellwether, "status", "-s", file])
        #expect(regular.status == 77)
        #expect(regular.stderr == "bellwether status: \(file) is not a socket; refusing\n", "\(regular.stderr)")
        if getuid() == 0 {
            chown(socket, 65534, 65534)
            let foreign = Harness.run([Harness.bellwether, "status", "-s", socket])
            // Root may ask another user's master, but the answer must come
            // from the file's owner: here it comes from root's master.
            #expect(foreign.status == 77)
            #expect(foreign.stderr.contains("is served by uid 0, not by its owner (uid 65534)"), "\(foreign.stderr)")
            chown(socket, 0, 0)
        }
        #expect(supervisor.stop() == 0)
    }

    /// Even if the file's mode let another user connect, the master answers
    /// only its own user (and root).
    @Test(.enabled(if: getuid() == 0, "needs root to act as a second user"))
    func aSecondUserIsRefusedByTheMaster() {
        let directory = Harness.scratch("ctluser")
        chmod(directory, 0o755)
        let socket = directory + "/control"
        let supervisor = Supervisor(["-w", "1", "--control-socket", socket], directory: directory, name: "ctluser")
        #expect(Harness.wait { supervisor.settled(workers: 1) })
        chmod(socket, 0o666)
        var parent = directory
        while parent != "/" && !parent.isEmpty {  // let uid 65534 reach the socket
            var info = stat()
            if stat(parent, &info) == 0 { chmod(parent, info.st_mode & 0o7777 | 0o755) }
            parent = (parent as NSString).deletingLastPathComponent
        }
        // The master may refuse (answer and close) before the request is
        // sent; its answer is still there to read.
        let script = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            + "try: s.sendall(b'stop\\n')\nexcept BrokenPipeError: pass\nprint(s.recv(4096).decode())"
        let stranger = Harness.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                    "/usr/bin/python3", "-c", script, socket])
        #expect(stranger.status == 0, "\(stranger)")
        #expect(stranger.stdout.hasPrefix("error: permission denied"), "\(stranger)")
        // bellwether's own client, as that user, refuses root's socket before connecting.
        let client = Harness.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                  Harness.bellwether, "stop", "-s", socket])
        #expect(client.status == 77, "\(client)")
        #expect(client.stderr == "bellwether stop: control socket \(socket) belongs to uid 0, not to you (uid 65534); "
            + "refusing\n", "\(client.stderr)")
        #expect(supervisor.isRunning(), "the stranger's stop was not obeyed")
        #expect(supervisor.stop() == 0)
    }

    /// Out of descriptors, the master pauses accepting (logged once) instead
    /// of spinning on a listener that stays readable, and serves again after.
    @Test func runningOutOfDescriptorsIsSurvivedWithoutSpinning() throws {
        let directory = Harness.scratch("emfile")
        let socket = directory + "/control"
        let supervisor = Supervisor(["-w", "1", "--control-socket", socket], directory: directory, name: "emfile")
        #expect(Harness.wait { supervisor.settled(workers: 1) })
        #expect(Harness.run(["/usr/bin/prlimit", "--pid", "\(supervisor.pid)", "--nofile=12:1024"]).status == 0)
        var clients: [Int32] = []
        for _ in 0..<12 {
            let fd = { (path: String) -> Int32 in
                var address = sockaddr_un()
                address.sun_family = sa_family_t(AF_UNIX)
                withUnsafeMutableBytes(of: &address.sun_path) { buffer in
                    for (index, byte) in path.utf8CString.enumerated() where index < buffer.count {
                        buffer[index] = UInt8(bitPattern: byte)
                    }
                }
                let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                let connected = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                    }
                }
                return connected == 0 ? fd : -1
            }(socket)
            if fd >= 0 { clients.append(fd) }
        }
        #expect(clients.count >= 10, "the backlog holds the connections the master cannot accept")
        let cpuBefore = Self.cpuTicks(supervisor.pid)
        usleep(1_500_000)
        let spent = Self.cpuTicks(supervisor.pid) - cpuBefore
        #expect(spent < 30, "the master spent \(spent) ticks of CPU in 1.5 s while out of descriptors")
        #expect(supervisor.logText().components(separatedBy: "control socket: cannot accept").count == 2,
                "logged once: \(supervisor.logText().suffix(600))")
        for fd in clients { close(fd) }
        #expect(Harness.run(["/usr/bin/prlimit", "--pid", "\(supervisor.pid)", "--nofile=1024:1024"]).status == 0)
        #expect(Harness.wait(10) { Harness.run([Harness.bellwether, "status", "-s", socket]).status == 0 })
        #expect(supervisor.isRunning())
        #expect(supervisor.stop() == 0)
    }

    static func cpuTicks(_ pid: Int32) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }

    @Test func badControlRequestsAreOneLineWithAnExitStatus() {
        let directory = Harness.scratch("ctlbad")
        let missing = Harness.run([Harness.bellwether, "status", "-s", directory + "/nothing"])
        #expect(missing.status == 69)
        #expect(missing.stderr.hasPrefix("bellwether status: no master listens on \(directory)/nothing"))
        for (arguments, expected) in [
            (["scale"], "unexpected end of arguments"),
            (["scale", "x"], "expected a whole number from 1 to"),
            (["scale", "0"], "expected a whole number from 1 to"),
            (["status", "-w", "3"], "-w does not apply here"),
            (["reload", "extra"], "unexpected \"extra\""),
            (["scale", "3", "4"], "unexpected \"4\""),
            (["scale", "-3"], "expected a whole number from 1 to"),
            (["status", "--bogus"], "unknown option --bogus"),
        ] {
            let result = Harness.run([Harness.bellwether] + arguments + ["-s", directory + "/nothing"])
            #expect(result.status == 64, "\(arguments)")
            #expect(result.stderr.contains(expected), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        let noPid = Harness.run([Harness.bellwether, "status", "-p", directory + "/none.pid"])
        #expect(noPid.status == 69 && noPid.stderr.contains("is missing or names no pid"), "\(noPid.stderr)")
    }

    /// A control socket left by a SIGKILLed master whose pid now belongs to
    /// another process does not count as a running master.
    @Test func aStaleSocketUnderALiveProcesssPidIsNotAMaster() {
        let runtime = Harness.scratch("ctlstale")
        let directory = runtime + "/bellwether"
        mkdir(directory, 0o700)
        let stale = directory + "/master-\(getpid()).ctl"  // our pid: running, and no master
        let bind = Harness.run(["/usr/bin/python3", "-c",
                                "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", stale])
        #expect(bind.status == 0 && access(stale, F_OK) == 0, "\(bind)")
        chmod(stale, 0o600)
        let environment = ["XDG_RUNTIME_DIR": runtime]
        let supervisor = Supervisor(["-w", "1"], environment: environment, name: "ctlstale")
        #expect(Harness.wait { supervisor.settled(workers: 1) }, "\(supervisor.logText())")
        let found = Harness.run([Harness.bellwether, "status", "--json"], environment: environment)
        #expect(found.status == 0, "\(found)")
        #expect(found.stdout.contains("\"pid\": \(supervisor.pid)") || found.stdout.contains("\"pid\":\(supervisor.pid)"),
                "\(found.stdout.prefix(300))")
        #expect(supervisor.stop() == 0)
    }

    @Test func aMasterWhoseBacklogIsFullIsNeverWaitedForLong() {
        let runtime = Harness.scratch("ctlfull")
        let directory = runtime + "/bellwether"
        mkdir(directory, 0o700)
        // A listener that never accepts, named after its own (running) pid,
        // its backlog filled: it counts as a master, and asking must not hang.
        let listener = Harness.spawn(["/usr/bin/python3", "-c", """
            import os, socket, sys, time
            path = os.path.join(sys.argv[1], f"master-{os.getpid()}.ctl")
            server = socket.socket(socket.AF_UNIX); server.bind(path); os.chmod(path, 0o600); server.listen(0)
            clients = []
            while True:
                client = socket.socket(socket.AF_UNIX); client.setblocking(False)
                try: client.connect(path)
                except BlockingIOError: break
                clients.append(client)
            open(sys.argv[1] + "/full", "w").close()
            time.sleep(60)
            """, directory], environment: [:], stdout: "/dev/null", stderr: "/dev/null")
        defer { Harness.signalAndReap(listener, SIGKILL) }
        #expect(Harness.wait { access(directory + "/full", F_OK) == 0 })
        let environment = ["XDG_RUNTIME_DIR": runtime]
        let supervisor = Supervisor(["-w", "1"], environment: environment, name: "ctlfull")
        #expect(Harness.wait { supervisor.settled(workers: 1) }, "\(supervisor.logText())")
        let found = Harness.run([Harness.bellwether, "status"], environment: environment, timeout: 10)
        #expect(found.status == 64, "\(found)")
        #expect(found.stderr.contains("2 masters are running"), "\(found.stderr)")
        // Named, it is asked, and the wait for it to accept is bounded.
        let asked = Harness.run([Harness.bellwether, "status", "--control-socket", directory + "/master-\(listener).ctl"],
                                timeout: 15)
        #expect(asked.status == 69, "\(asked)")
        #expect(asked.stderr.contains("did not accept within 5 s"), "\(asked.stderr)")
        #expect(supervisor.stop() == 0)
    }

    @Test func aSecondMasterOnTheSameControlSocketIsRefused() {
        let directory = Harness.scratch("ctlbusy")
        let socket = directory + "/control"
        let first = Supervisor(["-w", "1", "--control-socket", socket], directory: directory, name: "first")
        #expect(Harness.wait { first.settled(workers: 1) })
        let second = Harness.run([Harness.bellwether, "-w", "1", "--control-socket", socket, "--lease",
                                  "file:\(directory)/other.lock", "--", "sleep", "100"])
        #expect(second.status == 73)
        #expect(second.stderr == "bellwether: control socket \(socket) is in use by a running master; "
            + "choose another --control-socket\n", "\(second.stderr)")
        #expect(first.stop() == 0)
    }
}
