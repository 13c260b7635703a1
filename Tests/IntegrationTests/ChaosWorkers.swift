import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One test worker, as it recorded itself and as /proc saw it at first sight.
struct ChaosWorker: Hashable {
    var pid: Int32
    var role: String
    var slot: Int
    var generation: Int
    /// The pid of the master that spawned it (masters lead their sessions).
    var session: Int32
    var startTime: UInt64

    var isScheduler: Bool { role == "scheduler" }
}

/// The live workers of a run, from the test workers' `PID.rec` files. Each
/// file is parsed once; once its process is gone the file is deleted, so the
/// directory stays small through tens of thousands of spawns and a reused
/// pid is never mistaken for a worker (the start time must match as well).
final class WorkerTable {
    let directory: String
    private var known: [Int32: ChaosWorker] = [:]
    /// Workers that recorded themselves, over the whole run.
    private(set) var recorded = 0

    init(directory: String) { self.directory = directory }

    func refresh() {
        for name in ChaosOS.entries(directory) where name.hasSuffix(".rec") {
            guard let pid = Int32(name.dropLast(4)), known[pid] == nil else { continue }
            let path = directory + "/" + name
            guard let text = ChaosOS.readText(path), let stat = ProcStat(pid: pid), !stat.isDead,
                  let worker = Self.parse(text, pid: pid, stat: stat) else {
                unlink(path)
                continue
            }
            known[pid] = worker
            recorded += 1
        }
        for (pid, worker) in known where !isAlive(worker) {
            known.removeValue(forKey: pid)
            unlink(directory + "/\(pid).rec")
        }
    }

    func isAlive(_ worker: ChaosWorker) -> Bool {
        guard let stat = ProcStat(pid: worker.pid) else { return false }
        return !stat.isDead && stat.startTime == worker.startTime
    }

    /// Live workers, of one master's session if given.
    func live(session: Int32? = nil) -> [ChaosWorker] {
        known.values.filter { session == nil || $0.session == session }.sorted { $0.pid < $1.pid }
    }

    /// Sends `signal` if the process is still that worker.
    @discardableResult
    func send(_ signal: Int32, to worker: ChaosWorker) -> Bool {
        isAlive(worker) && kill(worker.pid, signal) == 0
    }

    private static func parse(_ text: String, pid: Int32, stat: ProcStat) -> ChaosWorker? {
        var role: String?
        var slot: Int?
        var generation: Int?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("role=") { role = String(line.dropFirst(5)) }
            if line.hasPrefix("env.WORKER_ID=") { slot = Int(line.dropFirst(14)) }
            if line.hasPrefix("env.WORKER_GENERATION=") { generation = Int(line.dropFirst(22)) }
        }
        guard let role, let slot, let generation else { return nil }
        return ChaosWorker(pid: pid, role: role, slot: slot, generation: generation, session: stat.session,
                           startTime: stat.startTime)
    }
}

/// One master of a run: started, sampled, and in the end SIGKILLed by the
/// chaos or stopped by TERM. A fresh master after a SIGKILL is a new instance
/// with its own resource series.
final class ChaosMaster {
    struct Sample {
        /// Seconds since this master started.
        var time: Double
        var descriptors: Int
        var residentKiB: Int
        /// Chaos events of the run so far.
        var events: Int
    }

    let number: Int
    let pid: Int32
    let log: String
    let startedAt: Double
    private(set) var samples: [Sample] = []
    private(set) var exitStatus: Int32?
    private(set) var endedAt: Double?
    /// When the chaos SIGKILLs it.
    var killAt: Double
    var eventsAtStart: Int
    var eventsAtEnd: Int?

    init(number: Int, arguments: [String], log: String, killAt: Double, events: Int) {
        self.number = number
        self.log = log
        self.killAt = killAt
        eventsAtStart = events
        startedAt = ChaosOS.monotonic()
        pid = ChaosOS.spawnSessionLeader(arguments, log: log)
    }

    var isRunning: Bool {
        guard exitStatus == nil else { return false }
        exitStatus = Harness.reap(pid)
        if exitStatus != nil { endedAt = ChaosOS.monotonic() }
        return exitStatus == nil
    }

    /// Waits (bounded) for the exit and returns the status.
    func waitForExit(_ timeout: Double) -> Int32? {
        Harness.wait(timeout) { !isRunning }
        return exitStatus
    }

    func sample(events: Int) {
        guard isRunning, let descriptors = ChaosOS.descriptorCount(pid), let resident = ChaosOS.residentKiB(pid) else {
            return
        }
        samples.append(Sample(time: ChaosOS.monotonic() - startedAt, descriptors: descriptors, residentKiB: resident,
                              events: events))
    }

    func logText() -> String { ChaosOS.readText(log) ?? "" }
}
