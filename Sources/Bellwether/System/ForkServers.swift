#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A worker ordered from a fork server and not answered yet: what the
/// master finishes once the answer comes (`Master.finish(_:with:)`).
struct PendingSpawn {
    var order: SpawnOrder
    var handsToken: Bool
    var pipes: WorkerOutputs.Pipes?
    var reloadNice: Int32
    /// A fork server's failure to fork it is a failed boot of its generation;
    /// a shortage of processes, memory or descriptors, or `posix_spawn`'s, is not.
    var failureIsFailedBoot: Bool
    /// `--worker-output` when its pipes were opened.
    var output: WorkerOutput
    /// When the order went out: its answer is due `patience` later.
    var sentAt: Instant? = nil
}

/// `--preload`: one fork server (`share/bellwether/forkserver.py`) per
/// generation, spawned at the generation's first order with its launch
/// (environment, directory, credentials), and closed once the generation is
/// no longer in use. Orders go out at once; the answers come back on the
/// server's socket and are collected in the master's loop, so that a slow
/// preload never blocks the master.
///
/// The server answers an order before the process it forked is orphaned to
/// the master (see forkserver.py), so a pid the master reaps or hears from
/// that no guard has is looked up again after `collect()`.
///
/// A server that dies, or that neither finishes its preload nor answers an
/// order within `patience`, fails what it has not answered: failed boots of
/// its generation, as a worker that could not import would be.
final class ForkServers {
    enum Answer {
        case spawned(PendingSpawn, pid: Int32)
        case failed(PendingSpawn, reason: String)
    }

    private final class Server {
        let generation: Int
        let pid: Int32
        var fd: Int32
        var pending: [UInt64: PendingSpawn] = [:]
        /// How long an order may wait for its answer, the preload included.
        var patience: Duration = .seconds(60)
        var ready = false
        /// Killed for being late: its reaping fails what it had.
        var expired = false
        /// An order's answer is overdue from then on.
        var due: Instant? { pending.values.compactMap(\.sentAt).min().map { $0 + patience } }

        init(generation: Int, pid: Int32, fd: Int32) {
            self.generation = generation
            self.pid = pid
            self.fd = fd
        }
    }

    /// The fork server's path, if this installation has one: looked for at
    /// the first `--preload`, not at every start.
    private(set) lazy var script: String? = Self.locate(nextTo: shim)
    private let shim: String
    private let masterPID: Int32
    /// Passed to every server beyond its launch's environment (BELLWETHER_FORKSERVER_GC_FREEZE).
    private let environment: [String]
    private let logger: Logger
    private var servers: [Int: Server] = [:]
    /// Servers closed and not yet reaped, by pid: their generation.
    private var closing: [Int32: Int] = [:]

    /// `--worker-output prefix|json`: the fork servers' own output is labelled too.
    private let outputs: WorkerOutputs

    init(shim: String, masterPID: Int32, masterEnvironment: [String: String], logger: Logger,
         outputs: WorkerOutputs) {
        self.outputs = outputs
        self.shim = shim
        self.masterPID = masterPID
        self.logger = logger
        environment = ["BELLWETHER_FORKSERVER_GC_FREEZE", "BELLWETHER_FORKSERVER_APP"].compactMap { name in
            masterEnvironment[name].map { "\(name)=\($0)" }
        }
    }

    /// Installed: BINDIR/../share/bellwether/forkserver.py (a package, a
    /// tarball, a wheel's virtualenv). In a source checkout's .build: share/forkserver.py.
    static func locate(nextTo shim: String) -> String? {
        let bin = shim.lastIndex(of: "/").map { String(shim[..<$0]) } ?? "."
        let candidates = [installedPath(nextTo: shim), bin + "/../../../share/forkserver.py",
                          bin + "/../../share/forkserver.py"]
        return candidates.first { Sys.calls.isAccessible($0, R_OK) }.map(withoutDotDot)
    }

    /// Where an installation puts it, beside `shim`'s bin/.
    static func installedPath(nextTo shim: String) -> String {
        let bin = shim.lastIndex(of: "/").map { String(shim[..<$0]) } ?? "."
        return withoutDotDot(bin + "/../share/bellwether/forkserver.py")
    }

    /// `/usr/bin/../share` as `/usr/share`, for ps and the logs; BINDIR is
    /// /proc/self/exe's, with no symbolic link to step back out of.
    static func withoutDotDot(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/") where part != "." {
            if part == "..", let last = parts.last, last != ".." { parts.removeLast() } else { parts.append(part) }
        }
        return (path.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
    }

    /// Every server's pid, closed ones not yet reaped included.
    var pids: Set<Int32> { Set(servers.values.map(\.pid)).union(closing.keys) }

    var hasPending: Bool { servers.values.contains { !$0.pending.isEmpty } }

    var pollEntries: [(fd: Int32, events: Int16)] {
        servers.values.sorted { $0.generation < $1.generation }.map { ($0.fd, Int16(POLLIN)) }
    }

    /// The earliest moment a server with orders must have answered.
    var deadline: Instant? { servers.values.filter { !$0.expired }.compactMap(\.due).min() }

    /// Sends `pending`'s order to its generation's server, spawning the
    /// server first if there is none. `descriptors`: (target, fd) as the
    /// guard expects them; `guardSpec`: LINK:GRACE_MS:TOKEN for that layout.
    /// nil once sent; else why nothing was started, and whether that is a
    /// failed boot of the generation (the fork server cannot be started) or
    /// passes (no descriptor or process left, the socket's buffer full).
    func order(_ pending: PendingSpawn, launch: Launch, preload: PythonPreload, environment: [String],
               descriptors: [(target: Int32, fd: Int32)], guardSpec: String, patience: Duration,
               at now: Instant) -> (reason: String, failedBoot: Bool)? {
        let generation = pending.order.generation
        let server: Server
        if let running = servers[generation] {
            server = running
        } else {
            let started = start(generation: generation, launch: launch, preload: preload, output: pending.output)
            guard let running = started.server else { return started.failure }
            server = running
        }
        var env: [(String, JSON)] = []
        for entry in environment {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            env.append((String(entry[..<equals]), .string(String(entry[entry.index(after: equals)...]))))
        }
        let fds = descriptors.enumerated().map { (String($0.element.target), JSON.int($0.offset)) }
        let message = JSON.object([("ref", .int(Int(pending.order.ref.serial))), ("env", .object(env)),
                                   ("fds", .object(fds)), ("guard", .string(guardSpec))]).text
        let sent = Array(message.utf8).withUnsafeBytes { bytes in
            Sys.calls.sendWithDescriptors(server.fd, bytes, descriptors.map(\.fd))
        }
        if sent < 0 { return ("cannot send the order to the fork server: \(describe(Int32(-sent)))", false) }
        var waiting = pending
        waiting.sentAt = now
        server.pending[pending.order.ref.serial] = waiting
        server.patience = patience
        return nil
    }

    /// The server, or why there is none.
    private func start(generation: Int, launch: Launch, preload: PythonPreload,
                       output: WorkerOutput) -> (server: Server?, failure: (reason: String, failedBoot: Bool)?) {
        guard let script else {
            return (nil, ("--preload: the fork server (share/bellwether/forkserver.py) is not installed beside \(shim)",
                          true))
        }
        let ends: (Int32, Int32)
        switch Sys.calls.seqpacketPair() {
        case .success(let pair): ends = pair
        case .failure(let error): return (nil, ("cannot create the fork server's socket: \(describe(error.errno))", false))
        }
        var pipes: WorkerOutputs.Pipes?
        if output != .inherit {
            switch outputs.openPipes() {
            case .success(let opened): pipes = opened
            case .failure(let error):
                Sys.closeFile(ends.0)
                Sys.closeFile(ends.1)
                return (nil, ("cannot create the fork server's output pipes: \(describe(error.errno))", false))
            }
        }
        // Through the guard's plain exec mode: the interpreter starts with the
        // workers' credentials already (no line of Python, no .pth file, runs
        // as the master's user) and dies with the master.
        let arguments = [shim, String(masterPID), launch.credentials.shimArgument, "-", preload.interpreter,
                         preload.interpreter, script, "3", shim, String(masterPID), "-",
                         preload.modules.isEmpty ? "-" : preload.modules.joined(separator: ",")] + preload.app
        let spawned = Sys.calls.spawn(SpawnRequest(path: shim, arguments: arguments,
                                                   environment: launch.environment + environment
                                                       + ["BELLWETHER_FORKSERVER_WORKER_VARIABLES="
                                                           + (WorkerEnvironment.perWorker + [launch.roleVariable])
                                                           .joined(separator: ","),
                                                          "BELLWETHER_FORKSERVER_ROLE_VARIABLE=\(launch.roleVariable)"],
                                                   descriptors: [ends.1], directory: launch.directory,
                                                   stdout: pipes?.stdout.write, stderr: pipes?.stderr.write))
        Sys.closeFile(ends.1)
        if let pipes {
            outputs.adopt(pipes, label: (try? spawned.get()).map { WorkerOutputs.Label(forkServer: $0) }, mode: output)
        }
        switch spawned {
        case .success(let pid):
            Sys.calls.setNonBlocking(ends.0)
            let server = Server(generation: generation, pid: pid, fd: ends.0)
            servers[generation] = server
            logger.write(.forkServerStarted(generation: generation, pid: pid, modules: preload.modules))
            return (server, nil)
        case .failure(let error):
            Sys.closeFile(ends.0)
            // Out of processes or memory passes; an interpreter that cannot run does not.
            let passing = [EAGAIN, ENOMEM, EMFILE, ENFILE].contains(error.errno)
            return (nil, ("cannot start the fork server: \(error.description)", !passing))
        }
    }

    /// Every answer waiting on the servers' sockets, without waiting.
    func collect(at now: Instant) -> [Answer] {
        var answers: [Answer] = []
        for server in servers.values.sorted(by: { $0.generation < $1.generation }) {
            answers += read(server, at: now)
        }
        return answers
    }

    private func read(_ server: Server, at now: Instant) -> [Answer] {
        var answers: [Answer] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while server.fd >= 0 {
            let count = buffer.withUnsafeMutableBytes { Sys.calls.read(server.fd, into: $0) }
            if count == -Int(EINTR) { continue }
            guard count > 0, let message = FlatJSON.parse(String(decoding: buffer[..<count], as: UTF8.self))
            else { break }
            if message["ready"] != nil {
                server.ready = true
            } else if case .int(let serial)? = message["ref"],
                      let pending = server.pending.removeValue(forKey: UInt64(serial)) {
                if case .int(let pid)? = message["pid"], pid > 0 {
                    answers.append(.spawned(pending, pid: Int32(pid)))
                } else {
                    let error = message["error"].flatMap { if case .string(let text) = $0 { text } else { nil } }
                    var failed = pending
                    if message["passes"] == .bool(true) { failed.failureIsFailedBoot = false }  // a shortage, not the app
                    answers.append(.failed(failed, reason: "the fork server: \(error ?? "no pid in its answer")"))
                }
            }
        }
        return answers
    }

    /// A reaped child: nil if it is no fork server; else the answers it
    /// left, and failures for every order it had not answered.
    func reaped(_ pid: Int32, _ status: ExitStatus, at now: Instant) -> [Answer]? {
        if closing.removeValue(forKey: pid) != nil { return [] }
        guard let server = servers.values.first(where: { $0.pid == pid }) else { return nil }
        var answers = read(server, at: now)
        servers[server.generation] = nil
        Sys.closeFile(server.fd)
        server.fd = -1
        let reason = "its generation's fork server (pid \(pid)) \(status) before it forked the worker"
        for serial in server.pending.keys.sorted() {
            answers.append(.failed(server.pending[serial]!, reason: reason))
        }
        logger.write(.forkServerExited(generation: server.generation, pid: pid, status: "\(status)",
                                       failedOrders: server.pending.count))
        server.pending = [:]
        return answers
    }

    /// SIGKILL to every server past its due time: its reaping fails its orders.
    func expire(at now: Instant) {
        for server in servers.values {
            guard !server.expired, let due = server.due, now >= due else { continue }
            logger.write(.forkServerExited(generation: server.generation, pid: server.pid,
                                           status: server.ready ? "did not answer an order in time, killed"
                                               : "did not finish its preload in time, killed",
                                           failedOrders: server.pending.count))
            Sys.send(.kill, to: server.pid)
            server.expired = true
        }
    }

    /// While the master stops: a server still owing answers (a preload
    /// that has not ended) is not waited for. Its reaping fails its orders.
    func abandonPending() {
        for server in servers.values where !server.pending.isEmpty && !server.expired {
            Sys.send(.kill, to: server.pid)
            server.expired = true
        }
    }

    /// Closes the servers of generations not in `generations`: end of file
    /// on their socket ends them, TERM ends one still preloading.
    func retain(_ generations: @autoclosure () -> Set<Int>) {
        guard !servers.isEmpty else { return }
        let inUse = generations()
        for (generation, server) in servers where !inUse.contains(generation) {
            close(server)
        }
    }

    private func close(_ server: Server) {
        servers[server.generation] = nil
        Sys.closeFile(server.fd)
        server.fd = -1
        Sys.send(.terminate, to: server.pid)
        closing[server.pid] = server.generation
    }

    /// At the master's exit: every server closed, and reaped if it goes within a second.
    func finish() {
        for server in Array(servers.values) { close(server) }
        let deadline = Sys.monotonicNow() + .seconds(1)
        while !closing.isEmpty && Sys.monotonicNow() < deadline {
            while let (pid, _) = Sys.reapOne() { closing[pid] = nil }
            if !closing.isEmpty { _ = Sys.wait([], timeout: .milliseconds(10)) }
        }
    }
}

/// The fork server's answers: one JSON object of numbers, strings, booleans
/// and nulls. Nested values and anything malformed give nil.
enum FlatJSON {
    static func parse(_ text: String) -> [String: JSON]? {
        var scalars = Array(text.unicodeScalars)[...]
        func skipSpace() { while let first = scalars.first, first == " " || first == "\n" || first == "\t" || first == "\r" { scalars.removeFirst() } }
        func expect(_ character: Unicode.Scalar) -> Bool {
            skipSpace()
            guard scalars.first == character else { return false }
            scalars.removeFirst()
            return true
        }
        func string() -> String? {
            guard expect("\"") else { return nil }
            var result = ""
            while let scalar = scalars.popFirst() {
                switch scalar {
                case "\"": return result
                case "\\":
                    guard let escaped = scalars.popFirst() else { return nil }
                    switch escaped {
                    case "n": result.append("\n")
                    case "t": result.append("\t")
                    case "r": result.append("\r")
                    case "b": result.append("\u{8}")
                    case "f": result.append("\u{c}")
                    case "u":
                        let hex = String(String.UnicodeScalarView(scalars.prefix(4)))
                        guard hex.count == 4, let value = UInt32(hex, radix: 16) else { return nil }
                        scalars.removeFirst(4)
                        result.unicodeScalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
                    default: result.unicodeScalars.append(escaped)
                    }
                default: result.unicodeScalars.append(scalar)
                }
            }
            return nil
        }
        func value() -> JSON? {
            skipSpace()
            guard let first = scalars.first else { return nil }
            if first == "\"" { return string().map { .string($0) } }
            var word = ""
            while let next = scalars.first, next != ",", next != "}", next != " " {
                word.unicodeScalars.append(next)
                scalars.removeFirst()
            }
            switch word {
            case "null": return .null
            case "true": return .bool(true)
            case "false": return .bool(false)
            default: return Int(word).map { .int($0) } ?? Double(word).map { .double($0) }
            }
        }
        guard expect("{") else { return nil }
        var members: [String: JSON] = [:]
        if expect("}") { return members }
        repeat {
            guard let key = string(), expect(":"), let item = value() else { return nil }
            members[key] = item
        } while expect(",")
        return expect("}") ? members : nil
    }
}
