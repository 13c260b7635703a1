import Foundation
#if canImport(Glibc)
import Glibc
#endif

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
    /// pid is the one started. `stdout`: a file of its own for the master's
    /// stdout, which otherwise shares `log` with its stderr.
    init(_ options: [String], worker: [String] = [], environment: [String: String] = [:],
         timings: CoreTimings = .documented, directory: String? = nil, token: String? = nil,
         oracle: String? = nil, lease: String? = nil, name: String = "sup", prefix: [String] = [],
         stdout: String? = nil) {
        let directory = directory ?? Harness.scratch(name)
        self.directory = directory
        self.oracle = oracle ?? directory + "/oracle"
        self.token = token ?? directory + "/scheduler.lock"
        self.log = directory + "/\(name).log"
        let arguments = prefix + [Harness.bellwether] + options + ["--lease", lease ?? "file:" + self.token, "--"]
            + [Harness.testWorker, "--record", directory, "--oracle", self.oracle] + worker
        pid = Harness.spawn(arguments, environment: environment.merging(timings.environment) { $1 },
                            stdout: stdout ?? log, stderr: log)
    }

    deinit {
        if reaped == nil { Harness.signalAndReap(pid, SIGKILL) }
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
        if reaped == nil { Harness.wait(timeout) { reaped = Harness.reap(pid); return reaped != nil } }
        return reaped
    }

    func records() -> [WorkerRecord] { WorkerRecord.all(in: directory) }

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
        if reaped == nil { reaped = Harness.reap(pid) }
        return reaped == nil
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
