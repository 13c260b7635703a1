import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A worker is its whole process tree: a forked child (as multiprocessing
/// starts) and a double-forked setsid daemon go with it when it exits, when
/// it is retired and when the master dies, SIGKILL included; the scheduler's
/// descendants hold the oracle lock, so a second scheduler while any of them
/// lives would show as an overlap.
@Suite("Process trees", .serialized, .ownThread, .timeLimit(.minutes(3)))
struct TreeTests {
    @Test func everyProcessOfEveryTreeDiesWithTheMasterAndANewMasterStartsCleanly() throws {
        let first = Supervisor(["-w", "3", "-b", "127.0.0.1:0", "--graceful-timeout", "1"],
                               worker: ["--tree", "--ignore-term"], name: "tree-first")
        #expect(Harness.wait { first.settledWithTrees(workers: 3) }, "\(first.logText())")
        let address = try #require(first.listening())
        let everything = first.live().flatMap { [$0.pid, $0.guardPID] } + first.trees().flatMap(\.value)
        #expect(everything.count == 12)
        #expect(everything.allSatisfy(Harness.isAlive))
        // The daemons left the workers' sessions: a process group could not reach them.
        for (app, tree) in first.trees() {
            #expect(ProcStat(pid: tree[1])?.session != ProcStat(pid: app)?.session)
        }

        first.signal(SIGKILL)
        _ = first.waitForExit()
        let killedAt = Date()
        // --graceful-timeout 1: TERM (ignored), SIGKILL a second later; a
        // second more for a loaded machine. Gone before the grace would mean
        // no TERM; the property is that nothing outlives the grace for long.
        #expect(Harness.wait(3) { everything.allSatisfy { !Harness.isAlive($0) } },
                "left: \(everything.filter(Harness.isAlive))")
        #expect(Date().timeIntervalSince(killedAt) < 3)

        let second = Supervisor(["-w", "3", "-b", address], worker: ["--tree"], token: first.token,
                                oracle: first.oracle, name: "tree-second")
        #expect(Harness.wait { second.settled(workers: 3) }, "\(second.logText())")
        #expect(!second.logText().contains("scheduler token is held"), "\(second.logText())")
        #expect(first.overlaps().isEmpty)
        #expect(second.stop() == 0)
    }

    @Test func aWorkersTreeGoesWithItAndItsSlotIsFilledAgain() throws {
        let supervisor = Supervisor(["-w", "2"], worker: ["--tree"], name: "tree-worker")
        #expect(Harness.wait { supervisor.settledWithTrees(workers: 2) })
        let worker = try #require(supervisor.live().first { !$0.isScheduler })
        let tree = try #require(supervisor.trees()[worker.pid])
        kill(worker.pid, SIGKILL)
        #expect(Harness.wait(2) { !tree.contains(where: Harness.isAlive) && !Harness.isAlive(worker.guardPID) },
                "left: \(tree.filter(Harness.isAlive))")
        #expect(Harness.wait { supervisor.settled(workers: 2) && !supervisor.live().contains { $0.pid == worker.pid } })
        #expect(supervisor.stop() == 0)
    }

    @Test func theSchedulersDescendantsNeverKeepTheTokenAndNoSchedulerOverlapsThem() throws {
        let (supervisor, scheduler, tree) = try Self.schedulerWithTree(["--graceful-timeout", "1.5"], ignoringTerm: true,
                                                                       name: "tree-scheduler")
        // The token stays with the guard: no process of the app's tree has it.
        for pid in [scheduler.pid] + tree {
            #expect(!Harness.openFiles(pid).contains(supervisor.token), "pid \(pid) holds the token")
        }
        #expect(Harness.openFiles(scheduler.guardPID).contains(supervisor.token))

        kill(scheduler.pid, SIGKILL)
        // Its child and daemon ignore TERM and hold the oracle: no scheduler
        // may start before the guard's SIGKILL, 1.5 s later, has taken them.
        #expect(Harness.wait(5) { !tree.contains(where: Harness.isAlive) })
        #expect(Harness.wait { supervisor.liveSchedulers().contains { $0.pid != scheduler.pid } }, "\(supervisor.logText())")
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    @Test func aStandInServesTheSchedulersSlotWhileItsTreeIsEnded() throws {
        let (supervisor, scheduler, tree) = try Self.schedulerWithTree(["--graceful-timeout", "3"], ignoringTerm: true,
                                                                       name: "tree-drain")
        kill(scheduler.pid, SIGKILL)
        // Its child and daemon ignore TERM: its guard keeps the slot and the
        // token for 3 s. Meanwhile slot 0 is served by a stand-in.
        #expect(Harness.wait(2) { supervisor.live().contains { $0.slot == 0 && !$0.isScheduler } },
                "\(supervisor.logText())")
        #expect(tree.allSatisfy(Harness.isAlive), "the stand-in came while the old tree was still there")
        #expect(supervisor.liveSchedulers().isEmpty)
        // The tree is SIGKILLed at 3 s, the new scheduler is ready 1 s later,
        // and the stand-in (which ignores TERM too) goes 3 s after that.
        #expect(Harness.wait(20) { supervisor.settled(workers: 2) && supervisor.liveSchedulers().first?.pid != scheduler.pid },
                "\(supervisor.logText())")
        #expect(!tree.contains(where: Harness.isAlive))
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    @Test func aReloadRetiresTheOldGenerationsTrees() throws {
        let supervisor = Supervisor(["-w", "2", "--graceful-timeout", "1"], worker: ["--tree"], name: "tree-reload")
        #expect(Harness.wait { supervisor.settledWithTrees(workers: 2) })
        let old = supervisor.trees().flatMap(\.value)
        supervisor.signal(SIGHUP)
        #expect(Harness.wait { supervisor.settled(workers: 2, generation: 1) }, "\(supervisor.logText())")
        #expect(Harness.wait(3) { !old.contains(where: Harness.isAlive) }, "left: \(old.filter(Harness.isAlive))")
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    @Test func aZeroGracefulTimeoutKillsTreesThatIgnoreTerm() throws {
        // TERM and the SIGKILL order reach the guard back to back: the order
        // must not be lost behind the pending TERM.
        let supervisor = Supervisor(["-w", "6", "--graceful-timeout", "0"], worker: ["--tree", "--ignore-term"],
                                    name: "tree-zero-grace")
        #expect(Harness.wait { supervisor.settledWithTrees(workers: 6) })
        let everything = supervisor.live().flatMap { [$0.pid, $0.guardPID] } + supervisor.trees().flatMap(\.value)
        supervisor.signal(SIGTERM)
        #expect(supervisor.waitForExit(5) == 0, "\(supervisor.logText())")
        #expect(Harness.wait(2) { !everything.contains(where: Harness.isAlive) })
    }

    @Test func aGuardKilledOutrightLeavesNothingBehind() throws {
        let (supervisor, scheduler, tree) = try Self.schedulerWithTree([], name: "tree-guard")
        kill(scheduler.guardPID, SIGKILL)
        // The app dies of its death signal; what it started comes to the
        // master, which kills it; the next scheduler waits for all of it.
        #expect(Harness.wait(3) { !([scheduler.pid] + tree).contains(where: Harness.isAlive) },
                "left: \(([scheduler.pid] + tree).filter(Harness.isAlive))")
        #expect(Harness.wait { supervisor.settled(workers: 2) && supervisor.liveSchedulers().first?.pid != scheduler.pid },
                "\(supervisor.logText())")
        #expect(supervisor.logText().contains("was left behind by a worker whose guard died"))
        #expect(supervisor.overlaps().isEmpty)
        #expect(supervisor.stop() == 0)
    }

    /// A settled master of two `--tree` workers, its scheduler, and the
    /// scheduler's child and daemon.
    static func schedulerWithTree(_ options: [String], ignoringTerm: Bool = false, name: String,
                                  sourceLocation: SourceLocation = #_sourceLocation) throws
        -> (Supervisor, WorkerRecord, [Int32]) {
        let supervisor = Supervisor(["-w", "2"] + options, worker: ["--tree"] + (ignoringTerm ? ["--ignore-term"] : []),
                                    name: name)
        #expect(Harness.wait { supervisor.settledWithTrees(workers: 2) }, sourceLocation: sourceLocation)
        let scheduler = try #require(supervisor.liveSchedulers().first, sourceLocation: sourceLocation)
        return (supervisor, scheduler, try #require(supervisor.trees()[scheduler.pid], sourceLocation: sourceLocation))
    }
}

extension Supervisor {
    /// `settled(workers:)`, and every worker has started its tree.
    func settledWithTrees(workers: Int) -> Bool { settled(workers: workers) && trees().count == workers }

    /// The descendants each `--tree` worker started: app pid -> [child, daemon].
    func trees() -> [Int32: [Int32]] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var result: [Int32: [Int32]] = [:]
        for name in names where name.hasSuffix(".tree") {
            guard let app = Int32(name.dropLast(5)),
                  let text = try? String(contentsOfFile: directory + "/" + name, encoding: .utf8) else { continue }
            let pids = text.split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { Int32($0) } }
            if pids.count == 2 { result[app] = pids }
        }
        return result
    }
}
