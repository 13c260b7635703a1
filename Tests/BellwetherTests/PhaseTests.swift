import Testing
@testable import Bellwether

/// The lifecycles the core keeps as enums — a worker's `Phase`, its
/// watchdog, the supervisor's own `Lifecycle` — step by step, and the words
/// the log gives a lifecycle event.
@Suite("Phases")
struct PhaseTests {
    typealias Script = SupervisorCoreTests.Script

    /// One worker without a scheduler, spawned as pid 100.
    func running(_ plan: Plan) throws -> (Script, WorkerRef) {
        var script = Script(plan)
        let order = try #require(Script.spawns(script.send(.start)).first)
        #expect(script.core.workers.map(\.phase) == [.ordered(at: script.now)], "no process before the spawn is confirmed")
        _ = script.send(.spawned(order.ref, pid: 100), after: .milliseconds(5))
        return (script, order.ref)
    }

    func phase(_ script: Script) -> SupervisorCore.Worker.Phase? { script.core.workers.first?.phase }

    @Test func aWorkerGoesFromOrderedToRunningToRetiringToKilled() throws {
        var (script, ref) = try running(Plan(workers: 1, scheduler: false, gracefulTimeout: .seconds(5),
                                             notifyReadiness: true))
        let spawnedAt = script.now
        #expect(phase(script) == .running(.init(pid: 100, since: spawnedAt)))
        _ = script.send(.ready(ref), after: .seconds(1))
        #expect(phase(script) == .running(.init(pid: 100, since: spawnedAt, ready: true)))

        #expect(script.send(.stop(quick: false)) == [.announce(.stopping), .signal(pid: 100, .terminate)])
        let deadline = script.now + .seconds(5)
        #expect(phase(script) == .retiring(.init(pid: 100, since: spawnedAt, ready: true), deadline: deadline))
        _ = script.send(.stop(quick: true))
        let sooner = script.now + script.core.timings.quickStopGrace
        #expect(phase(script) == .retiring(.init(pid: 100, since: spawnedAt, ready: true), deadline: sooner),
                "a quick stop brings SIGKILL closer")

        #expect(script.send(.tick, after: script.core.timings.quickStopGrace) == [.killGroup(pid: 100)])
        #expect(phase(script) == .killed(.init(pid: 100, since: spawnedAt, ready: true), failing: false),
                "still ready: killed for overstaying, not for failing")
        #expect(script.core.nextDeadline(after: script.now) == nil, "only the reap is left")
        #expect(script.send(.exited(ref, .signaled(.kill, coreDumped: false))) == [.exit(0)])
        #expect(script.core.workers.isEmpty && script.core.lifecycle == .finished)
    }

    @Test func aWorkerNeverReadyIsKilledForFailingAndItsDeathCountsForBackOff() throws {
        var (script, ref) = try running(Plan(workers: 1, scheduler: false, notifyReadiness: true,
                                             readyTimeout: .seconds(2), bootAttempts: 0))
        let spawnedAt = script.now
        let timeout = script.send(.tick, after: .seconds(2))
        #expect(timeout.first == .killGroup(pid: 100))
        #expect(Script.spawns(timeout).count == 1, "a killed worker serves nothing: replaced at once")
        #expect(phase(script) == .killed(.init(pid: 100, since: spawnedAt), failing: true))
        _ = script.send(.exited(ref, .signaled(.kill, coreDumped: false)))
        #expect(script.core.slots[0]?.failedBoots == 1, "a failed boot of its slot")
        #expect(script.core.history[0]?.restarts == 1, "a death nobody asked for")
    }

    @Test func theWatchdogGoesFromSilentToPingedToAbortedToKilled() throws {
        var (script, ref) = try running(Plan(workers: 1, scheduler: false, watchdog: .seconds(2)))
        #expect(script.core.workers[0].process?.watchdog == .silent)
        _ = script.send(.watchdog(ref), after: .seconds(1))
        let pingedAt = script.now
        #expect(script.core.workers[0].process?.watchdog == .pinged(pingedAt))
        #expect(script.send(.tick, after: .seconds(2)) == [.signal(pid: 100, .abort)])
        let abortedAt = script.now
        #expect(script.core.workers[0].process?.watchdog == .aborted(at: abortedAt))
        _ = script.send(.watchdog(ref), after: .milliseconds(100))
        #expect(script.core.workers[0].process?.watchdog == .aborted(at: abortedAt), "too late to count")
        #expect(script.send(.tick, after: .milliseconds(400)).first == .killGroup(pid: 100))
        #expect(script.core.workers[0].isKilled && script.core.workers[0].failed)
    }

    @Test func aWatchdogPingWithoutAWatchdogIsIgnored() throws {
        var (script, ref) = try running(Plan(workers: 1, scheduler: false))
        #expect(script.send(.watchdog(ref)).isEmpty)
        #expect(script.core.workers[0].process?.watchdog == .silent)
    }

    @Test func theSupervisorStartsRunsStopsAndFinishesOnce() throws {
        var (script, ref) = try running(Plan(workers: 1, scheduler: false, gracefulTimeout: .seconds(5)))
        #expect(script.core.lifecycle == .running)
        _ = script.send(.stop(quick: false))
        let deadline = script.now + .seconds(5)
        #expect(script.core.lifecycle == .stopping(deadline: deadline) && script.core.isStopping)
        _ = script.send(.stop(quick: false), after: .seconds(1))
        #expect(script.core.lifecycle == .stopping(deadline: deadline), "a later stop does not put SIGKILL off")
        #expect(script.send(.reload(Plan(workers: 2))).isEmpty, "a reload while stopping is ignored")
        _ = script.send(.exited(ref, .exited(0)))
        #expect(script.core.lifecycle == .finished && script.core.isStopping && script.core.isFinished)
        #expect(script.send(.stop(quick: true)).isEmpty && script.send(.tick).isEmpty, "nothing left to decide")
    }

    /// The words of a few lifecycle events, exactly as the log writes them.
    @Test func lifecycleEventsAreWordedInOnePlace() {
        var worker = SupervisorCore.Worker(ref: WorkerRef(7), slot: 1, generation: 2, role: .worker,
                                           orderedAt: .zero, background: false)
        worker.spawned(pid: 100, at: .zero)
        worker.process?.appPID = 101
        let retiring = SupervisorCore.Happening.retiring(worker, .replaced(byGeneration: 3)).record
        #expect(retiring == LogRecord(.info, "retiring", "retiring worker 1 (pid 101): replaced by generation 3",
                                      [.init("pid", .int(101)), .init("slot", .int(1)), .init("role", .string("worker")),
                                       .init("generation", .int(2)), .init("guard", .int(100)),
                                       .init("reason", .string("replaced by generation 3"))]))
        let failed = SupervisorCore.Happening.reloadFailed(generation: 3, serving: 2,
                                                           because: .notReady(worker, after: .seconds(60))).record
        #expect(failed.message == "reload to generation 3 failed: worker 1 (pid 101) not ready after 60s; "
            + "generation 2 keeps serving")
        let stepDown = LeaseCore.Happening.stepDown(.lost(current: nil), fence: 4, stopping: false).record
        #expect(stepDown == LogRecord(.error, "lease_step_down",
                                      "lease lost: the key is gone: stepping down, no scheduler here (fence 4)",
                                      [.init("fence", .int(4)), .init("reason", .string("lease lost: the key is gone"))]))
    }
}
