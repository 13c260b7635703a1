import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The lease timings of the partition scenarios, RedisLeaseTests' short ones:
/// L = 3 s, R = 0.4 s, D = 2 s, G = 0.5 s, H = 2.6 s (H ≥ D + G by 0.1 s).
enum ShortLease {
    static let (ttl, renew, deadline, grace, takeover) = (3.0, 0.4, 2.0, 0.5, 2.6)
    static let options = ["--lease-ttl", "3", "--lease-renew-interval", "0.4", "--lease-renew-deadline", "2",
                          "--lease-grace", "0.5", "--lease-takeover-delay", "2.6"]

    /// The README's takeover bound for a holder that vanished ("within about
    /// L + H plus a boot"): its key outlives the last renewal that reached
    /// the store by L, a newcomer tries every R and waits out H, and its
    /// scheduler then boots; 2 s for the boot on a loaded machine.
    static var takeoverBound: Double { ttl + renew + takeover + 2 }

    /// A holder cut off at t has sent its last renewal that counted before t:
    /// it TERMs its scheduler by t + D and SIGKILLs it G later. The second of
    /// slack is for a loaded machine; what safety needs is that this comes
    /// before any other scheduler starts, which the oracle checks exactly.
    static var stepDownBound: Double { deadline + grace + 1 }
}

/// Three supervisors of two workers each on one lease store, each reaching
/// it through a fault proxy of its own, so that one supervisor can be cut off
/// while the others still reach the store. They share one overlap oracle:
/// every scheduler takes a flock on it and logs start, tick and exit with
/// its fence in ORACLE.log, and one that finds the flock taken writes
/// ORACLE.failures.
final class PartitionCluster {
    let store: any LeaseStore
    let proxies: [FaultProxy]
    let supervisors: [Supervisor]

    /// `options`: the master's beyond the workers, the lease's timings and
    /// the control socket; `worker`: the test worker's beyond `--tick-ms 100`.
    init(store: any LeaseStore, name: String, count: Int = 3, options: [String] = [], worker: [String] = []) {
        self.store = store
        proxies = (0..<count).map { FaultProxy(target: store.port, name: "\(name)-\($0)") }
        var oracle: String?
        var supervisors: [Supervisor] = []
        for (index, proxy) in proxies.enumerated() {
            let directory = Harness.scratch("\(name)-\(index)")
            let supervisor = Supervisor(["-w", "2"] + ShortLease.options + ["--control-socket", directory + "/control"] + options,
                                        worker: ["--tick-ms", "100"] + worker, directory: directory, oracle: oracle,
                                        lease: store.leaseURL(port: proxy.port, key: "partition"),
                                        name: "\(name)-\(index)")
            oracle = supervisor.oracle
            supervisors.append(supervisor)
        }
        self.supervisors = supervisors
    }

    var oracle: String { supervisors[0].oracle }
    var oracleLog: OracleLog { OracleLog(oracle) }
    var overlaps: String { supervisors[0].overlaps() }

    func schedulers(_ indices: [Int]? = nil) -> [WorkerRecord] {
        (indices ?? Array(supervisors.indices)).flatMap { supervisors[$0].liveSchedulers() }
    }

    /// One scheduler in all, and every supervisor with its two workers.
    var settled: Bool { schedulers().count == 1 && supervisors.allSatisfy { $0.live().count == 2 } }

    /// The index of the supervisor whose worker is the scheduler.
    var holder: Int? { supervisors.indices.first { !supervisors[$0].liveSchedulers().isEmpty } }

    /// The supervisor that started the worker `pid`.
    func owner(of pid: Int32) -> Int? { supervisors.indices.first { supervisors[$0].records().contains { $0.pid == pid } } }

    /// The number of live schedulers every 100 ms for `seconds`, for what only
    /// waiting can show: that none starts.
    func watch(for seconds: Double) -> [(at: Double, counts: [Int])] {
        var samples: [(at: Double, counts: [Int])] = []
        let end = ChaosOS.monotonic() + seconds
        repeat {
            samples.append((ChaosOS.monotonic(), supervisors.map { $0.liveSchedulers().count }))
            usleep(100_000)
        } while ChaosOS.monotonic() < end
        return samples
    }

    /// Waits until the monotonic instant `instant` (now if it has passed).
    static func sleep(until instant: Double) {
        let left = instant - ChaosOS.monotonic()
        if left > 0 { usleep(useconds_t(left * 1e6)) }
    }

    /// What went wrong, for a failed expectation: each supervisor's log.
    var logs: String {
        supervisors.enumerated().map { "--- supervisor \($0.offset):\n\($0.element.logText())" }.joined(separator: "\n")
            + "\n--- oracle:\n" + ((try? String(contentsOfFile: oracle + ".log", encoding: .utf8))?
                .split(separator: "\n").filter { !$0.hasPrefix("tick ") }.joined(separator: "\n") ?? "")
    }

    /// The checks every scenario ends with: no two schedulers ever held the
    /// oracle, fences never went down, every scheduler started after the
    /// previous one logged its exit, and each later holder's fence is higher.
    func checkOracle(minimumStarts: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        let log = oracleLog
        #expect(overlaps.isEmpty, "two schedulers at once: \(overlaps)\n\(logs)", sourceLocation: sourceLocation)
        #expect(log.fenceProblem == nil, "\(log.fenceProblem ?? "")", sourceLocation: sourceLocation)
        #expect(log.handoverProblem == nil, "\(log.handoverProblem ?? "")\n\(logs)", sourceLocation: sourceLocation)
        #expect(log.starts.count >= minimumStarts, "\(log.starts.count) scheduler starts", sourceLocation: sourceLocation)
    }

    /// TERM to every supervisor: each exits 0.
    func stop(sourceLocation: SourceLocation = #_sourceLocation) {
        for supervisor in supervisors { #expect(supervisor.stop() == 0, sourceLocation: sourceLocation) }
    }
}

extension OracleLog.Entry {
    /// `time` as `ChaosOS.monotonic()` counts it (the same clock).
    var seconds: Double { Double(time) / 1e9 }
}

extension OracleLog {
    /// The exit `pid` logged (a scheduler that got TERM), if any.
    func exit(of pid: Int32) -> Entry? { entries.first { $0.event == "exit" && $0.pid == pid } }

    /// The first scheduler start after the monotonic instant `instant`.
    func firstStart(after instant: Double) -> Entry? { starts.first { $0.seconds > instant } }

    /// A scheduler that started before the one before it logged its exit,
    /// or nil. (A SIGKILLed scheduler logs no exit; the flock covers it.)
    var handoverProblem: String? {
        for (previous, next) in zip(starts, starts.dropFirst()) {
            guard let exit = exit(of: previous.pid) else { continue }
            if exit.time > next.time {
                return "scheduler \(next.pid) (fence \(next.fence)) started at \(next.seconds) before "
                    + "\(previous.pid) (fence \(previous.fence)) exited at \(exit.seconds)"
            }
        }
        return nil
    }
}
