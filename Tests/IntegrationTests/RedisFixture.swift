import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A real `redis-server` on a free loopback port, in a scratch directory,
/// without persistence unless asked (an append-only file, which outlives a
/// SIGKILL). The Redis lease tests need one: `scripts/test` installs the
/// Debian package and sets BELLWETHER_REQUIRE_REDIS=1, so that in CI a
/// missing server fails (`redisIsInstalledWhereRequired`) instead of skipping.
/// With `tls`, the port is a TLS one (and there is no plain one).
final class RedisServer {
    static let executable: String? = ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"]
        .first { access($0, X_OK) == 0 }
    static var available: Bool { executable != nil }
    static var required: Bool { ProcessInfo.processInfo.environment["BELLWETHER_REQUIRE_REDIS"] == "1" }

    private(set) var port: Int
    let directory: String
    let password: String?
    /// Every write goes to an append-only file before its reply, so that a
    /// restart after SIGKILL finds the keys, their expiries and the fence counter.
    let persistent: Bool
    let tls: ServerCertificate?
    private(set) var pid: Int32 = 0

    /// On `port`, or on a free one.
    init(password: String? = nil, port: Int? = nil, persistent: Bool = false, tls: ServerCertificate? = nil) {
        directory = Harness.scratch("redis")
        self.password = password
        self.persistent = persistent
        self.tls = tls
        self.port = port ?? ReservedPort().released()
        comeUp(choosingPorts: port == nil)
    }

    deinit { stop() }

    var url: String { tls == nil ? "redis://127.0.0.1:\(port)" : "rediss://localhost:\(port)" }

    /// Starts the server again on its port (after `stop()`).
    func start() { comeUp(choosingPorts: false) }

    /// Tests run side by side, and a port can be in use for a moment by
    /// another test's socket when the server binds it: the server exits, and
    /// comes up on another free port or, on a port the test named, on the
    /// same one a moment later.
    private func comeUp(choosingPorts: Bool) {
        for _ in 0..<5 {
            if launch() { return }
            if choosingPorts { port = ReservedPort().released() } else { usleep(200_000) }
        }
        preconditionFailure("redis-server did not start on port \(port): \(directory)/redis.log")
    }

    /// Whether this server came up: it answers on its port with its own pid
    /// (not another test's server that holds the port).
    private func launch() -> Bool {
        var arguments = [Self.executable!, "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", persistent ? "yes" : "no", "--appendfsync", "always",
                         "--dir", directory, "--daemonize", "no"]
        if let tls {
            arguments += ["--port", "0", "--tls-port", String(port), "--tls-cert-file", tls.certificate,
                          "--tls-key-file", tls.key, "--tls-ca-cert-file", tls.authority, "--tls-auth-clients", "no"]
        } else {
            arguments += ["--port", String(port)]
        }
        if let password { arguments += ["--requirepass", password] }
        pid = Harness.spawn(arguments, environment: [:], stdout: directory + "/redis.log", stderr: directory + "/redis.log")
        var exited = false
        let up = Harness.wait(10) {
            exited = Harness.reap(self.pid) != nil
            return exited || self.command(["INFO", "server"]).split(whereSeparator: \.isNewline)
                .contains { $0 == "process_id:\(self.pid)" }
        }
        guard up && !exited else {
            if !exited { stop() }
            pid = 0
            return false
        }
        return true
    }

    /// SIGKILL: an outage, and (no persistence) an empty store when restarted.
    func stop() {
        guard pid > 0 else { return }
        Harness.signalAndReap(pid, SIGKILL)
        pid = 0
    }

    /// SIGSTOP: connections are accepted by the kernel and requests wait,
    /// unanswered, until `stop()` loses them.
    func freeze() {
        if pid > 0 { kill(pid, SIGSTOP) }
    }

    /// redis-cli's output for one command.
    @discardableResult
    func command(_ arguments: [String]) -> String {
        var cli = ["/usr/bin/redis-cli", "-p", String(port)]
        // The fixture's own client trusts any certificate: the tests are about bellwether's.
        if tls != nil { cli += ["--tls", "--insecure"] }
        if let password { cli += ["-a", password, "--no-auth-warning"] }
        return Harness.run(cli + arguments, timeout: 5).stdout
    }
}

/// A loopback TCP port bound but not listening: a connection to it is
/// refused, as by a server that is down, and no other socket can take it
/// until it is released.
final class ReservedPort {
    let port: Int
    private var fd: Int32

    init() {
        // Close-on-exec: a process another test starts meanwhile must not keep the port.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                _ = bind(fd, pointer, length)
                return getsockname(fd, pointer, &length)
            }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { _ = released() }

    /// Frees the port for whatever is to listen on it, and returns it.
    func released() -> Int {
        if fd >= 0 { close(fd) }
        fd = -1
        return port
    }
}

/// The overlap oracle's log across every scheduler of a test: each "start"
/// line carries the scheduler's fence and lease holder.
struct OracleLog {
    struct Entry {
        var event: String
        var pid: Int32
        var fence: Int
        var holder: String
        var time: Int64
    }

    var entries: [Entry]

    init(_ oracle: String) {
        let text = (try? String(contentsOfFile: oracle + ".log", encoding: .utf8)) ?? ""
        entries = text.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard words.count == 5 else { return nil }
            func value(_ index: Int) -> String { String(words[index].split(separator: "=", maxSplits: 1).last ?? "") }
            return Entry(event: String(words[0]), pid: Int32(value(1)) ?? 0, fence: Int(value(2)) ?? -1,
                         holder: value(3), time: Int64(value(4)) ?? 0)
        }.sorted { $0.time < $1.time }
    }

    var starts: [Entry] { entries.filter { $0.event == "start" } }

    /// Why the fences are wrong, or nil: a scheduler without a fence, a fence
    /// that went down, or a new holder without a higher fence.
    var fenceProblem: String? {
        var previous: Entry?
        for entry in starts {
            if entry.fence < 1 { return "scheduler \(entry.pid) has no fence" }
            if let previous {
                if entry.fence < previous.fence { return "fence went down: \(previous.fence) then \(entry.fence)" }
                if entry.holder != previous.holder && entry.fence == previous.fence {
                    return "holders \(previous.holder) and \(entry.holder) share fence \(entry.fence)"
                }
            }
            previous = entry
        }
        return nil
    }
}
