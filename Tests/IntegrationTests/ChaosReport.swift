import Foundation

/// What the chaos engine does to a running master and its workers.
enum ChaosEvent: String, CaseIterable, Sendable {
    case killWorker = "SIGKILL worker"
    case killScheduler = "SIGKILL scheduler"
    case stop = "SIGSTOP worker"
    /// Scheduled by each SIGSTOP, 0.05–2.5 s later.
    case resume = "SIGCONT worker"
    case hangup = "HUP"
    case ttin = "TTIN"
    case ttou = "TTOU"
    case configEdit = "config edit (workers) + HUP"
    case configBad = "bad config line + HUP"
    /// Scheduled by master lifetimes; a fresh master follows at once, or
    /// half the time starts just before.
    case killMaster = "SIGKILL master + fresh master"
}

/// The figures of one run and every invariant it broke.
struct ChaosReport {
    /// "Flat": the median of the last samples of a master against the median
    /// of its first samples after warm-up. The master's descriptors are fixed
    /// but for the scheduler token (held between taking it and passing it on)
    /// and a control connection being served; RSS moves with malloc's arenas
    /// and the size of the worker table, which TTIN and config edits change.
    /// Any descriptor leak shows; an RSS leak shows once it passes 1 MiB:
    /// 4 KiB per event over the ~270 events of the CI run's first master,
    /// under 200 bytes per event over the ~6,000 of a 20-minute run's.
    static let descriptorSlack = 2
    static let residentSlackKiB = 1024
    static let window = 5

    struct MasterFigures {
        var number: Int
        var pid: Int32
        var seconds: Double
        var events: Int
        var ending: String
        /// Medians of the first window after warm-up, the middle and the last.
        var descriptors: [Int]
        var residentKiB: [Int]
        /// nil: too short a life to judge.
        var flat: Bool?
        var samples: Int
    }

    var seed: UInt64
    var plannedSeconds: Double
    var chaosSeconds = 0.0
    var runSeconds = 0.0
    var counts: [ChaosEvent: Int] = [:]
    /// Drawn events with nothing to act on (no live worker at that moment).
    var skipped = 0
    /// Master SIGKILLs where the fresh master was started first.
    var freshMasterFirst = 0
    var failures: [String] = []
    var aborted: String?
    var oracleFailures = 0
    var schedulersStarted = 0
    var workersRecorded = 0
    /// After each master SIGKILL: seconds until none of its processes was left.
    var orphanCleanSeconds: [Double] = []
    var orphans = 0
    var leftStopped = 0
    var zombiesReaped = 0
    var checkpoints: [(name: String, seconds: Double, workers: Int, generation: Int)] = []
    var finalWorkers: Int?
    var finalSchedulers: Int?
    var finalExitStatus: Int32?
    var leftAtEnd: Int?
    var masters: [MasterFigures] = []
    var logFacts: [(String, Int)] = []
    /// The scratch directory (records, master logs, oracle), kept after a failure.
    var keptScratch: String?

    var events: Int { counts.values.reduce(0, +) }

    static func median(_ values: [Int]) -> Int {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }

    /// Start, middle and end of a master's samples, and whether they stay flat.
    static func figures(of master: ChaosMaster, lived: Double, ending: String, warmUp: Double,
                        span: Double) -> MasterFigures {
        let samples = master.samples.filter { $0.time >= warmUp }
        let events = (master.eventsAtEnd ?? master.eventsAtStart) - master.eventsAtStart
        var figures = MasterFigures(number: master.number, pid: master.pid, seconds: lived, events: events, ending: ending,
                                    descriptors: [], residentKiB: [], flat: nil, samples: samples.count)
        guard samples.count >= 3 * window, let first = samples.first, let last = samples.last else { return figures }
        let middle = samples.count / 2
        let windows = [Array(samples.prefix(window)), Array(samples[(middle - window / 2)...].prefix(window)),
                       Array(samples.suffix(window))]
        figures.descriptors = windows.map { median($0.map(\.descriptors)) }
        figures.residentKiB = windows.map { median($0.map(\.residentKiB)) }
        if last.time - first.time >= span {
            figures.flat = figures.descriptors[2] <= figures.descriptors[0] + descriptorSlack
                && figures.residentKiB[2] <= figures.residentKiB[0] + residentSlackKiB
        }
        return figures
    }

    var text: String {
        func seconds(_ value: Double) -> String { String(format: "%.2f s", value) }
        func mib(_ kib: Int) -> String { String(format: "%.2f", Double(kib) / 1024) }
        var lines: [String] = []
        lines.append("chaos: seed \(seed) (BELLWETHER_CHAOS_SEED=\(seed) replays the same choices, "
            + "as far as timing allows)")
        lines.append(String(format: "chaos: %d events in %.1f s of chaos (%.1f/s), %.1f s in all; %d drawn with no target",
                            events, chaosSeconds, Double(events) / max(chaosSeconds, 1), runSeconds, skipped))
        for event in ChaosEvent.allCases {
            let first = event == .killMaster ? " (the fresh master started first: \(freshMasterFirst))" : ""
            lines.append("  \(event.rawValue): \(counts[event, default: 0])" + first)
        }
        lines.append("workers recorded: \(workersRecorded); schedulers started (oracle): \(schedulersStarted)")
        for (fact, count) in logFacts { lines.append("  master logs, \(fact): \(count)") }
        lines.append("oracle failures (two schedulers at once): \(oracleFailures)")
        let slowest = orphanCleanSeconds.max().map { ", the slowest gone after \(seconds($0))" } ?? ""
        lines.append("orphans: \(orphans) (after \(orphanCleanSeconds.count) master SIGKILLs\(slowest); "
            + "at the end \(leftAtEnd.map(String.init) ?? "?") processes left); left stopped: \(leftStopped); "
            + "zombies reaped: \(zombiesReaped)")
        let longest = checkpoints.max { $0.seconds < $1.seconds }
        lines.append("convergence: \(checkpoints.count) checkpoints, the slowest \(longest.map { seconds($0.seconds) + " (" + $0.name + ")" } ?? "-")")
        for checkpoint in checkpoints {
            lines.append("  \(checkpoint.name): \(checkpoint.workers) workers, generation \(checkpoint.generation), "
                + "one scheduler, in \(seconds(checkpoint.seconds))")
        }
        lines.append("end: \(finalWorkers.map(String.init) ?? "?") workers, \(finalSchedulers.map(String.init) ?? "?") "
            + "scheduler; master exit status on TERM \(finalExitStatus.map(String.init) ?? "?")")
        lines.append("masters (descriptors and RSS in MiB: first/middle/last window of \(Self.window) samples after warm-up; "
            + "flat = fds +\(Self.descriptorSlack), RSS +\(Self.residentSlackKiB / 1024) MiB at most):")
        for master in masters {
            var line = "  master \(master.number) (pid \(master.pid)): " + String(format: "%.0f s", master.seconds)
                + ", \(master.events) events, \(master.ending)"
            if master.descriptors.count == 3 {
                line += "; fds " + master.descriptors.map(String.init).joined(separator: "/")
                    + ", RSS " + master.residentKiB.map(mib).joined(separator: "/")
                line += master.flat.map { $0 ? " — flat" : " — GROWING" } ?? " — too short to judge"
            } else {
                line += "; \(master.samples) samples after warm-up, too few to judge"
            }
            lines.append(line)
        }
        if let aborted { lines.append("ABORTED: \(aborted)") }
        lines.append(failures.isEmpty ? "invariants: all held" : "invariants: \(failures.count) FAILED")
        for failure in failures { lines.append("  - " + failure) }
        if let keptScratch { lines.append("scratch kept for a look: \(keptScratch)") }
        return lines.joined(separator: "\n") + "\n"
    }
}
