import Foundation
import Testing

/// How long and how hard a chaos run goes. The default is the CI run: 24 s
/// of chaos with a fixed seed. The long run (`bench/chaos --minutes N`) sets
/// BELLWETHER_CHAOS_MINUTES. Every run prints its seed, and
/// BELLWETHER_CHAOS_SEED replays a run's choices (as far as timing allows).
/// BELLWETHER_CHAOS_SUMMARY names a file for the summary.
struct ChaosPlan {
    /// The CI run's seed.
    static let defaultSeed: UInt64 = 0x6265_6c6c_6368_616f

    var seed: UInt64
    /// Wall-clock time of the chaos, checkpoints included.
    var chaosSeconds: Double
    var checkpointEvery: Double
    var sampleEvery: Double
    /// The first master lives long, so that its descriptors and RSS are
    /// watched through thousands of events; the later ones are SIGKILLed
    /// after `masterLife`.
    var firstMasterLife: Double
    var masterLife: ClosedRange<Double>
    /// Pause between two events.
    var pause: ClosedRange<Double>
    var workers = 4
    var workerBounds = 1...8
    /// Samples before this age of a master are left out of "flat".
    var warmUp: Double
    /// A master is judged flat or not only if it was sampled this long after warm-up.
    var flatSpan: Double
    /// How long a checkpoint waits for the master to settle: restart
    /// back-off alone may hold a slot empty for 10 s.
    var settleTimeout: Double
    var progressEvery: Double?
    var summaryPath: String?

    static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> ChaosPlan {
        let seed = environment["BELLWETHER_CHAOS_SEED"].flatMap { UInt64($0) } ?? defaultSeed
        let summary = environment["BELLWETHER_CHAOS_SUMMARY"].flatMap { $0.isEmpty ? nil : $0 }
        guard let minutes = environment["BELLWETHER_CHAOS_MINUTES"].flatMap({ Double($0) }), minutes > 0 else {
            // About 290 events; the first master lives long enough to be judged
            // flat (10 s of samples after its warm-up), two or three others are SIGKILLed.
            return ChaosPlan(seed: seed, chaosSeconds: 24, checkpointEvery: 12, sampleEvery: 0.5, firstMasterLife: 15,
                             masterLife: 4...8, pause: 0.04...0.12, warmUp: 3, flatSpan: 10, settleTimeout: 30,
                             summaryPath: summary)
        }
        let seconds = minutes * 60
        // A short "long" run samples faster, so that its first master is still judged.
        return ChaosPlan(seed: seed, chaosSeconds: seconds, checkpointEvery: 60, sampleEvery: min(1, seconds / 200),
                         firstMasterLife: seconds * 0.4, masterLife: 10...30, pause: 0.04...0.12,
                         warmUp: min(10, seconds * 0.05), flatSpan: min(60, seconds * 0.2), settleTimeout: 60,
                         progressEvery: 60, summaryPath: summary)
    }

    /// The test's time limit: the chaos, generous room for the checkpoints
    /// and the end, rounded up to whole minutes.
    static var timeLimitMinutes: Int { Int((fromEnvironment().chaosSeconds * 1.5 / 60).rounded(.up)) + 3 }
}

/// The chaos test: half a minute of random SIGKILLs, SIGSTOP/SIGCONT,
/// HUP, TTIN, TTOU, config edits and master SIGKILLs against a real master
/// and real workers; `bench/chaos --minutes N` runs the same engine longer.
@Suite("Chaos", .serialized, .ownThread)
struct ChaosTests {
    @Test(.timeLimit(.minutes(ChaosPlan.timeLimitMinutes)))
    func randomEventsKeepEveryInvariant() {
        let plan = ChaosPlan.fromEnvironment()
        let report = ChaosEngine(plan: plan).run()
        let summary = report.text
        ChaosOS.writeAll(1, summary)
        if let path = plan.summaryPath { #expect(ChaosOS.writeAtomically(summary, to: path), "cannot write \(path)") }

        #expect(report.aborted == nil, "seed \(report.seed)")
        #expect(report.failures.isEmpty, "seed \(report.seed): \(report.failures.joined(separator: "\n"))")
        #expect(report.oracleFailures == 0, "seed \(report.seed): two schedulers at once")
        #expect(report.orphans == 0 && report.leftAtEnd == 0, "seed \(report.seed): processes outlived their master")
        #expect(report.leftStopped == 0)
        #expect(report.finalWorkers == plan.workers && report.finalSchedulers == 1,
                "seed \(report.seed): the worker count and one scheduler came back")
        #expect(report.finalExitStatus == 0)
        #expect(report.masters.allSatisfy { $0.flat != false } && report.masters.contains { $0.flat == true },
                "seed \(report.seed): master resources grew, or no master lived long enough to tell")
        // The run did what it claims: every kind of event, hundreds in all
        // (about 12 a second; the floor leaves room for a loaded machine).
        for event in ChaosEvent.allCases {
            #expect(report.counts[event, default: 0] > 0, "no \(event.rawValue) in the run (seed \(report.seed))")
        }
        #expect(report.events >= 100, "seed \(report.seed): only \(report.events) events")
    }
}
