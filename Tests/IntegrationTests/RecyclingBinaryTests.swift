import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Recycling with real processes: a worker replaced for its age, for its
/// tree's memory, or because its app asked, while a client sends requests
/// one after another. A replacement is ready before the worker it replaces
/// gets TERM, so no request fails, and the scheduler is handed over without
/// overlap (the flock oracle).
@Suite(.serialized) struct RecyclingBinaryTests {
    static let recycleLine = "recycling worker"

    func recyclings(_ log: String) -> [Substring] {
        log.split(separator: "\n").filter { $0.contains(Self.recycleLine) }
    }

    /// `bellwether status --json`'s slots, by slot, with their recycled counts.
    func recycled(_ control: String) -> [Int: [String: Int]] {
        let rows = ChaosOS.status(socket: control)?["slots"] as? [[String: Any]] ?? []
        var counts: [Int: [String: Int]] = [:]
        for row in rows {
            guard let slot = row["slot"] as? Int, let recycled = row["recycled"] as? [String: Int] else { continue }
            counts[slot] = recycled
        }
        return counts
    }

    @Test func ageRecyclesEverySlotUnderLoadWithoutAFailedRequestOrTwoSchedulers() throws {
        let directory = Harness.scratch("age")
        let control = directory + "/master.ctl"
        let supervisor = Supervisor(["-w", "3", "-b", "127.0.0.1:0", "--ready", "notify", "-s", control,
                                     "--max-worker-age", "1.5", "--max-worker-age-jitter", "1"],
                                    worker: ["--serve", "--notify", "--boot-ms", "200"], timings: .short,
                                    directory: directory, name: "age")
        #expect(Harness.wait { supervisor.logText().contains("generation 0 is ready") }, "\(supervisor.logText())")
        let target = try #require(supervisor.listening(0))
        let client = LoadClient(target)
        let first = Set(supervisor.live().map(\.pid))
        // Every slot recycled at least twice: the scheduler's included.
        #expect(Harness.wait(60) {
            let counts = recycled(control)
            return (0..<3).allSatisfy { (counts[$0]?["age"] ?? 0) >= 2 }
        }, "\(recycled(control)) \(supervisor.logText().suffix(2000))")
        let report = client.stop()
        let log = supervisor.logText()
        #expect(report.failures == 0, "failed or refused: \(report.failures) of \(report.requests)")
        #expect(report.requests > 100)
        #expect(supervisor.overlaps().isEmpty, "two schedulers: \(supervisor.overlaps())")
        #expect(recyclings(log).allSatisfy { $0.contains("(--max-worker-age)") }, "\(recyclings(log))")
        // A recycling is counted when it starts: the worker it replaces may still be retiring.
        #expect(Harness.wait(30) { first.isDisjoint(with: supervisor.live().map(\.pid)) },
                "every first worker was replaced: \(first) \(supervisor.live().map(\.pid))")
        #expect(!log.contains("reload started"), "recycling is no reload: \(log.suffix(1500))")
        // The schedulers' starts, in the oracle's log: one after another.
        let starts = ((try? String(contentsOfFile: supervisor.oracle + ".log", encoding: .utf8)) ?? "")
            .split(separator: "\n").filter { $0.hasPrefix("start ") }
        #expect(starts.count >= 3, "the scheduler was recycled: \(starts)")
        #expect(supervisor.stop() == 0)
    }

    @Test func aTreeOverTheMemoryLimitIsRecycledOnceItsReplacementIsReady() throws {
        let directory = Harness.scratch("memory")
        let control = directory + "/master.ctl"
        let supervisor = Supervisor(["-w", "2", "-b", "127.0.0.1:0", "--ready", "notify", "-s", control,
                                     "--max-worker-memory", "48M"],
                                    worker: ["--serve", "--notify", "--grow-mb", "96", "--grow-slot", "1"],
                                    environment: ["BELLWETHER_TEST_TIMINGS": "stable-uptime=0.2 boot-grace=0.2 "
                                        + "token-wait-grace=0.2 memory-interval=0.2"],
                                    directory: directory, name: "memory")
        #expect(Harness.wait { supervisor.logText().contains("generation 0 is ready") }, "\(supervisor.logText())")
        let target = try #require(supervisor.listening(0))
        let client = LoadClient(target)
        var grown: Int32 = 0
        #expect(Harness.wait {
            let text = (try? String(contentsOfFile: directory + "/grown", encoding: .utf8)) ?? ""
            grown = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
            return grown > 0
        })
        #expect(Harness.wait(30) { recycled(control)[1]?["memory"] == 1 && !Harness.isAlive(grown) },
                "\(recycled(control)) \(supervisor.logText().suffix(2000))")
        // The worker that grew, as the recycling named it: on a busy machine it
        // can be recycled before this test first looks at the slot.
        let named = recyclings(supervisor.logText()).first { $0.contains("worker 1 (pid ") }
        let bigPID = try #require(named.flatMap { line in
            line.split(separator: "(pid ").dropFirst().first.flatMap { Int32($0.prefix { $0.isNumber }) }
        }, "\(recyclings(supervisor.logText()))")
        // Slot 1 served by its replacement, ready, the old worker gone.
        func slotOne() -> [[String: Any]] {
            (ChaosOS.status(socket: control)?["slots"] as? [[String: Any]] ?? []).filter { $0["slot"] as? Int == 1 }
        }
        #expect(Harness.wait(30) {
            let rows = slotOne()
            return !Harness.isAlive(bigPID) && rows.count == 1 && rows[0]["state"] as? String == "ready"
                && rows[0]["pid"] as? Int != Int(bigPID)
        }, "slot 1: \(slotOne()), old worker alive: \(Harness.isAlive(bigPID))")
        // The replacement stays small: once is all.
        Thread.sleep(forTimeInterval: 1.5)
        let report = client.stop()
        let log = supervisor.logText()
        #expect(recyclings(log).count == 1, "\(recyclings(log))")
        #expect(recyclings(log).first?.contains("over --max-worker-memory 48 MiB") == true, "\(recyclings(log))")
        #expect(recycled(control)[0]?["memory"] == 0, "the small worker stays")
        #expect(report.failures == 0, "failed or refused: \(report.failures) of \(report.requests)")
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    @Test func anAppThatAsksIsReplacedInItsTurnAndServesMeanwhile() throws {
        let directory = Harness.scratch("asked")
        let control = directory + "/master.ctl"
        let supervisor = Supervisor(["-w", "2", "-b", "127.0.0.1:0", "--ready", "notify", "-s", control],
                                    worker: ["--serve", "--notify", "--recycle-after", "50"], timings: .short,
                                    directory: directory, name: "asked")
        #expect(Harness.wait { supervisor.logText().contains("generation 0 is ready") }, "\(supervisor.logText())")
        let target = try #require(supervisor.listening(0))
        let client = LoadClient(target)
        #expect(Harness.wait(60) {
            let counts = recycled(control)
            return (0..<2).allSatisfy { (counts[$0]?["asked"] ?? 0) >= 2 }
        }, "\(recycled(control)) \(supervisor.logText().suffix(2000))")
        let report = client.stop()
        let log = supervisor.logText()
        #expect(report.failures == 0, "failed or refused: \(report.failures) of \(report.requests)")
        #expect(recyclings(log).allSatisfy { $0.contains("X_BELLWETHER_RECYCLE=1") }, "\(recyclings(log))")
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }
}
