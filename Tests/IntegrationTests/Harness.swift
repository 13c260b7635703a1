import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `bellwether` binary with real child processes and reads
/// what the test workers recorded. Every wait is bounded.
enum Harness {
    /// The directory holding the built products (beside the test bundle).
    static let productsDirectory: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let own = String(decoding: buffer[0..<max(length, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var directory = (own as NSString).deletingLastPathComponent
        // The XCTest bundle on Linux is a plain executable in the products directory.
        while !FileManager.default.fileExists(atPath: directory + "/bellwether") && directory.count > 1 {
            directory = (directory as NSString).deletingLastPathComponent
        }
        return directory
    }()

    static var bellwether: String { productsDirectory + "/bellwether" }
    static var testWorker: String { productsDirectory + "/bellwether-testworker" }
    static var shim: String { productsDirectory + "/bellwether-exec" }

    /// The package's own directory (README, man page, bench/).
    static let packageRoot: String = {
        var directory = productsDirectory
        while !FileManager.default.fileExists(atPath: directory + "/Package.swift") && directory.count > 1 {
            directory = (directory as NSString).deletingLastPathComponent
        }
        return directory
    }()

    /// A fresh scratch directory.
    static func scratch(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "bellwether-it-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Polls `condition` every 20 ms until it holds or `timeout` passes.
    @discardableResult
    static func wait(_ timeout: Double = 10, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    /// How long `pid` has been running, in seconds (to the clock tick).
    static func age(_ pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")"),
              let uptime = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
              let now = Double(uptime.prefix { $0 != " " }) else { return nil }
        // Field 22, the start time in clock ticks since boot; field 3 follows the ")".
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let started = Double(fields[19]) else { return nil }
        return now - started / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Alive and not a zombie (PID 1 here may never reap orphans).
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// Runs a command to completion and returns its status and output.
    static func run(_ arguments: [String], environment: [String: String] = [:], removing: [String] = [],
                    timeout: Double = 20) -> (status: Int32, stdout: String, stderr: String) {
        let directory = scratch("run")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = spawn(arguments, environment: environment, removing: removing,
                            stdout: directory + "/out", stderr: directory + "/err")
        let status = finish(process, timeout: timeout).status
        let out = (try? String(contentsOfFile: directory + "/out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: directory + "/err", encoding: .utf8)) ?? ""
        return (status, out, err)
    }

    /// Waits up to `timeout` for `pid` to exit, SIGKILLs it if it has not,
    /// and returns its decoded status.
    static func finish(_ pid: Int32, timeout: Double) -> (status: Int32, timedOut: Bool) {
        var status: Int32 = 0
        let finished = wait(timeout) { waitpid(pid, &status, WNOHANG) == pid }
        if !finished {
            kill(pid, SIGKILL)
            waitpid(pid, &status, 0)
        }
        return (decode(status), !finished)
    }

    static func decode(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// The test process's environment without its bellwether settings (the
    /// chaos and Redis switches among them), with `environment` on top.
    static func childEnvironment(_ environment: [String: String], removing: [String] = []) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        for name in removing { env.removeValue(forKey: name) }
        for name in env.keys where name.hasPrefix("BELLWETHER_") || name == "WORKERS_COUNT" {
            env.removeValue(forKey: name)
        }
        for (key, value) in environment { env[key] = value }
        return env
    }

    /// posix_spawn with stdout and stderr redirected to files.
    static func spawn(_ arguments: [String], environment: [String: String], removing: [String] = [],
                      stdout: String, stderr: String) -> Int32 {
        let env = childEnvironment(environment, removing: removing)
        let pid = spawnBytes(arguments.map { Array($0.utf8) }, environment: env.map { Array("\($0.key)=\($0.value)".utf8) },
                             stdout: stdout, stderr: stderr)
        precondition(pid > 0, "posix_spawn \(arguments[0]): \(-pid)")
        return pid
    }

    /// posix_spawn with argv and environ as bytes (which `[String]` cannot
    /// carry when they are not UTF-8): stdin from /dev/null, stdout and stderr
    /// to files — one open file when they name the same path, so that neither
    /// overwrites the other — an empty signal mask. `newSession`: the child
    /// leads a session of its own; `closeInherited`: it gets no descriptor
    /// of ours above 2. The pid, or -errno.
    static func spawnBytes(_ argv: [[UInt8]], environment: [[UInt8]], stdout: String, stderr: String,
                           appending: Bool = false, newSession: Bool = false, closeInherited: Bool = false) -> Int32 {
        let mode = O_WRONLY | O_CREAT | (appending ? O_APPEND : O_TRUNC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, mode, 0o644)
        if stderr == stdout {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 2, stderr, mode, 0o644)
        }
        if closeInherited, let closeFrom = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(closeFrom, to: CloseFrom.self)(&actions, 3)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        let setSession: Int32 = 0x80  // POSIX_SPAWN_SETSID (glibc ≥ 2.26), not imported into Swift
        posix_spawnattr_setflags(&attributes, Int16(Int32(POSIX_SPAWN_SETSIGMASK) | (newSession ? setSession : 0)))
        func cStrings(_ list: [[UInt8]]) -> [UnsafeMutablePointer<CChar>?] {
            list.map { bytes in
                let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
                bytes.withUnsafeBytes { UnsafeMutableRawPointer(pointer).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                pointer[bytes.count] = 0
                return pointer
            } + [nil]
        }
        let (cArgv, cEnviron) = (cStrings(argv), cStrings(environment))
        defer { (cArgv + cEnviron).forEach { $0?.deallocate() } }
        var pid: pid_t = 0
        let error = posix_spawn(&pid, cArgv[0]!, &actions, &attributes, cArgv, cEnviron)
        return error == 0 ? pid : -error
    }

    /// glibc ≥ 2.34; not imported into Swift.
    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, CInt) -> CInt
}

/// What one test worker recorded at start.
struct WorkerRecord {
    var pid: Int32
    var role: String
    var fds: [Int]
    var stdin: String
    var values: [String: String]
    var env: [String: String]

    init?(path: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        var values: [String: String] = [:]
        var env: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<equals])
            let value = String(line[line.index(after: equals)...])
            if key.hasPrefix("env.") { env[String(key.dropFirst(4))] = value } else { values[key] = value }
        }
        guard let pid = Int32(values["pid"] ?? "") else { return nil }
        self.pid = pid
        self.role = values["role"] ?? ""
        self.fds = (values["fds"] ?? "").split(separator: ",").compactMap { Int($0) }
        self.stdin = values["stdin"] ?? ""
        self.values = values
        self.env = env
    }

    var slot: Int { Int(env["WORKER_ID"] ?? "") ?? -1 }
    var generation: Int { Int(env["WORKER_GENERATION"] ?? "") ?? -1 }
    var isScheduler: Bool { role == "scheduler" }
}

/// The core timings a master under test runs with.
enum CoreTimings {
    /// The ones the manual documents.
    case documented
    /// Shorter ones, for a test that would otherwise spend its time waiting
    /// them out. The master reads them from BELLWETHER_TEST_TIMINGS, a hook
    /// for tests only (Sources/Bellwether/Config/TestTimings.swift).
    case short

    static let stableUptime = 0.2
    static let bootGrace = 0.2
    static let tokenWaitGrace = 0.2

    var environment: [String: String] {
        switch self {
        case .documented: [:]
        case .short: ["BELLWETHER_TEST_TIMINGS": "stable-uptime=\(Self.stableUptime) boot-grace=\(Self.bootGrace) "
            + "token-wait-grace=\(Self.tokenWaitGrace)"]
        }
    }
}

/// One running master under test, with its scratch directory, log and oracle.
final class Supervisor {
    let directory: String
    let pid: Int32
    let token: String
    var reaped: Int32?
    let log: String

    let oracle: String

    /// Starts `bellwether OPTIONS -- testworker WORKER_ARGS`.
    /// `lease`: a `--lease` value to use instead of `file:TOKEN`. `prefix`:
    /// commands that exec the master in turn (prlimit, setpriv), so that its
    /// pid is the one started.
    init(_ options: [String], worker: [String] = [], environment: [String: String] = [:],
         timings: CoreTimings = .documented, directory: String? = nil, token: String? = nil,
         oracle: String? = nil, lease: String? = nil, name: String = "sup", prefix: [String] = []) {
        let directory = directory ?? Harness.scratch(name)
        self.directory = directory
        self.oracle = oracle ?? directory + "/oracle"
        self.token = token ?? directory + "/scheduler.lock"
        self.log = directory + "/\(name).log"
        let arguments = prefix + [Harness.bellwether] + options + ["--lease", lease ?? "file:" + self.token, "--"]
            + [Harness.testWorker, "--record", directory, "--oracle", self.oracle] + worker
        pid = Harness.spawn(arguments, environment: environment.merging(timings.environment) { $1 },
                            stdout: log, stderr: log)
    }

    deinit {
        if reaped == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        for record in records() where Harness.isAlive(record.pid) { kill(record.pid, SIGKILL) }
    }

    func signal(_ signal: Int32) { kill(pid, signal) }

    /// TERM, then the master's exit status.
    func stop() -> Int32? {
        signal(SIGTERM)
        return waitForExit()
    }

    /// Waits for the master to exit and returns its exit status.
    func waitForExit(_ timeout: Double = 40) -> Int32? {
        if let reaped { return reaped }
        var status: Int32 = 0
        guard Harness.wait(timeout, { waitpid(pid, &status, WNOHANG) == pid }) else { return nil }
        reaped = Harness.decode(status)
        return reaped
    }

    func records() -> [WorkerRecord] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".rec") }.compactMap { WorkerRecord(path: directory + "/" + $0) }
    }

    /// Workers that recorded themselves and are still alive.
    func live() -> [WorkerRecord] { records().filter { Harness.isAlive($0.pid) } }

    func liveSchedulers() -> [WorkerRecord] { live().filter(\.isScheduler) }

    /// Oracle failures: lines written by schedulers that found the lock taken.
    func overlaps() -> String { (try? String(contentsOfFile: oracle + ".failures", encoding: .utf8)) ?? "" }

    /// The highest generation a reload has started, from the log.
    func lastGeneration() -> Int {
        logText().components(separatedBy: "reload started: generation ").dropFirst()
            .compactMap { Int($0.prefix { $0.isNumber }) }.max() ?? 0
    }

    /// The address of the n-th socket the master logged as listening.
    func listening(_ index: Int = 0, scheduler: Bool = false) -> String? {
        let lines = logText().split(separator: "\n").filter {
            $0.contains("listening on ") && $0.hasSuffix("(scheduler)") == scheduler
        }
        guard index < lines.count, let range = lines[index].range(of: "listening on ") else { return nil }
        return String(lines[index][range.upperBound...].split(separator: " ")[0])
    }

    func isRunning() -> Bool {
        var status: Int32 = 0
        if reaped != nil { return false }
        if waitpid(pid, &status, WNOHANG) == pid {
            reaped = Harness.decode(status)
            return false
        }
        return true
    }

    func logText() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// N live workers, one of them scheduler in slot 0, all of generation `generation` (if given).
    func settled(workers: Int, generation: Int? = nil, scheduler: Bool = true) -> Bool {
        let live = live()
        let schedulers = live.filter(\.isScheduler)
        return live.count == workers
            && Set(live.map(\.slot)) == Set(0..<workers)
            && schedulers.count == (scheduler ? 1 : 0)
            && (!scheduler || schedulers.first?.slot == 0)
            && (generation == nil || live.allSatisfy { $0.generation == generation })
    }
}

/// What the test worker's HTTP client mode counted.
struct ClientReport {
    var requests = 0
    var failures = 0
    var refused = 0
    /// The longest wait for an answer, in milliseconds.
    var slowest = 0
    var generations: Set<Int> = []
    var pids: Set<Int32> = []

    init(output: String) {
        for part in output.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let pair = part.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            let values = pair[1].split(separator: ",")
            switch pair[0] {
            case "requests": requests = Int(pair[1]) ?? 0
            case "failures": failures = Int(pair[1]) ?? 0
            case "refused": refused = Int(pair[1]) ?? 0
            case "slowest_ms": slowest = Int(pair[1]) ?? 0
            case "generations": generations = Set(values.compactMap { Int($0) })
            case "pids": pids = Set(values.compactMap { Int32($0) })
            default: break
            }
        }
    }
}

/// A client loop running in the background: requests one after another,
/// for `seconds` or until `stop()`, `gap` microseconds apart. A request
/// every millisecond or so keeps every handover under a steady stream of
/// requests; unpaced, the client and the workers it kept busy took a third
/// of the integration tests' CPU time.
final class LoadClient {
    let pid: Int32
    let output: String
    let seconds: Double
    private var report: ClientReport?

    init(_ target: String, seconds: Double = 120, gap: Int = 1_000) {
        let directory = Harness.scratch("client")
        output = directory + "/out"
        self.seconds = seconds
        pid = Harness.spawn([Harness.testWorker, "--client", target, "--seconds", String(seconds),
                             "--gap-us", String(gap)],
                            environment: [:], stdout: output, stderr: directory + "/err")
    }

    deinit { if report == nil { _ = stop() } }

    /// The workers that have answered so far, with their generations.
    func servedBy() -> [(pid: Int32, generation: Int)] {
        let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.hasPrefix("served-by ") }.compactMap { line in
            let words = line.split(separator: " ")
            guard words.count == 3, let pid = Int32(words[1].dropFirst(4)), let generation = Int(words[2].dropFirst(11))
            else { return nil }
            return (pid, generation)
        }
    }

    func hasServed(generation: Int) -> Bool { servedBy().contains { $0.generation == generation } }

    /// Waits for the run to end by itself.
    func finish() -> ClientReport {
        if let report { return report }
        var status: Int32 = 0
        Harness.wait(seconds + 20) { waitpid(pid, &status, WNOHANG) == pid }
        let report = ClientReport(output: (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
        self.report = report
        return report
    }

    /// Ends the run after the request in hand.
    func stop() -> ClientReport {
        if report == nil { kill(pid, SIGTERM) }
        return finish()
    }

    static func run(_ target: String, seconds: Double) -> ClientReport {
        LoadClient(target, seconds: seconds).finish()
    }
}
