import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("Master killed with SIGKILL", .serialized, .ownThread, .timeLimit(.minutes(2)))
struct MasterCrashTests {
    @Test func workersAndTheirChildrenDieWithTheMasterAndANewMasterDoesNotWait() throws {
        let directory = Harness.scratch("crash")
        let first = Supervisor(["-w", "3"], worker: ["--straggler"], directory: directory, name: "first")
        #expect(Harness.wait { first.settled(workers: 3) })
        let workers = first.live().map(\.pid)
        let scheduler = try #require(first.liveSchedulers().first)
        let stragglerText = try String(contentsOfFile: directory + "/\(scheduler.pid).straggler", encoding: .utf8)
        let straggler = try #require(Int32(stragglerText.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(Harness.isAlive(straggler))

        first.signal(SIGKILL)
        _ = first.waitForExit()
        let killedAt = Date()
        #expect(Harness.wait(1) { workers.allSatisfy { !Harness.isAlive($0) } },
                "every worker is dead (or a zombie) within 1 s")
        #expect(Date().timeIntervalSince(killedAt) < 1.0)
        // The scheduler's forked child has no death signal of its own, and
        // holds the oracle lock: its guard takes it too.
        #expect(Harness.wait(1) { !Harness.isAlive(straggler) })

        let second = Supervisor(["-w", "3"], directory: directory, token: first.token, name: "second")
        #expect(Harness.wait { second.settled(workers: 3) }, "\(second.logText())")
        #expect(!second.logText().contains("scheduler token is held"), "\(second.logText())")
        #expect(second.overlaps().isEmpty)
        #expect(second.stop() == 0)
    }

    @Test func twoSupervisorsSharingATokenRunOneScheduler() {
        let a = Supervisor(["-w", "2"], name: "a")
        #expect(Harness.wait { a.settled(workers: 2) })
        let b = Supervisor(["-w", "2"], token: a.token, oracle: a.oracle, name: "b")
        #expect(Harness.wait { b.logText().contains("scheduler token is held") })
        #expect(Harness.wait { a.live().count + b.live().count == 4 })
        #expect(a.liveSchedulers().count + b.liveSchedulers().count == 1)
        #expect(a.stop() == 0)
        // B takes over once A's scheduler is gone.
        #expect(Harness.wait { b.liveSchedulers().count == 1 }, "\(b.logText())")
        #expect(a.overlaps().isEmpty)
        #expect(Harness.wait { b.settled(workers: 2) })
        #expect(b.stop() == 0)
    }

    @Test func threeSupervisorsOnOneFileLeaseAndTheHoldersMasterKilled() throws {
        let a = Supervisor(["-w", "2"], name: "lease-a")
        let b = Supervisor(["-w", "2"], token: a.token, oracle: a.oracle, name: "lease-b")
        let c = Supervisor(["-w", "2"], token: a.token, oracle: a.oracle, name: "lease-c")
        let all = [a, b, c]
        func schedulers() -> [WorkerRecord] { all.flatMap { $0.liveSchedulers() } }
        #expect(Harness.wait { all.allSatisfy { $0.live().count == 2 } && schedulers().count == 1 })
        usleep(1_500_000)
        #expect(schedulers().count == 1, "exactly one scheduler among three supervisors")
        let holder = try #require(all.first { !$0.liveSchedulers().isEmpty })
        let old = try #require(holder.liveSchedulers().first)
        holder.signal(SIGKILL)
        _ = holder.waitForExit()
        let killedAt = Date()
        #expect(Harness.wait(3) { !Harness.isAlive(old.pid) && schedulers().count == 1 },
                "another supervisor designates once the old scheduler is gone")
        #expect(Date().timeIntervalSince(killedAt) < 3)
        #expect(schedulers().first?.pid != old.pid)
        usleep(1_000_000)
        #expect(schedulers().count == 1)
        #expect(a.overlaps().isEmpty)
        for supervisor in all where supervisor !== holder {
            #expect(supervisor.stop() == 0)
        }
    }
}
