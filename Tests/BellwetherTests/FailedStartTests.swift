import Testing
@testable import Bellwether

/// A first generation that cannot become ready ends the master with status 3;
/// a generation that was ready once, or a reload, never does.
@Suite("Failed start")
struct FailedStartTests {
    @Test func aSlotThatFailsToBootNTimesInARowIsAFailedStart() {
        var world = SimulatedWorld.booting(Plan(workers: 3, bootAttempts: 4))  // slots 0 and 1 come up (--ready exec)
        world.failBoots(slot: 2, times: 3)
        #expect(!world.core.isStopping, "three failed boots of four allowed")
        #expect(world.logged("failed_start").isEmpty)
        world.failBoots(slot: 2, times: 1)
        #expect(world.core.isStopping && world.core.hasFailedToStart)
        let lines = world.logged("failed_start")
        #expect(lines.count == 1)
        #expect(lines.first?.level == .error)
        #expect(lines.first?.message == "failed start: worker 2 failed to boot 4 times in a row (last: exit status 1); "
            + "stopping, exit status 3", "\(lines)")
        #expect(world.logged("spawned").count == 3 + 3, "no fifth start of slot 2, nothing else started again")
        world.quiesce()
        #expect(world.alive.isEmpty, "what ran was stopped")
        #expect(world.exitStatus == 3)
        #expect(world.announcements.contains(.stopping))
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func theDefaultIsFiveFailedBoots() {
        var world = SimulatedWorld.booting(Plan(workers: 1, scheduler: false))
        world.failBoots(slot: 0, times: 4)
        #expect(!world.core.isStopping)
        world.failBoots(slot: 0, times: 1)
        world.quiesce()
        #expect(world.exitStatus == 3)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func zeroBootAttemptsNeverGiveUp() {
        var world = SimulatedWorld.booting(Plan(workers: 1, notifyReadiness: true, readyTimeout: .seconds(2),
                                                bootAttempts: 0))
        world.failBoots(slot: 0, times: 30)
        let spawned = world.logged("spawned").count
        world.advance(to: world.now + .seconds(60))  // and ready timeouts, again and again
        #expect(!world.core.isStopping)
        #expect(world.logged("failed_start").isEmpty)
        #expect(world.logged("spawned").count > spawned + 2, "still trying")
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func aWorkerThatWasReadyResetsItsSlotsCount() {
        var world = SimulatedWorld.booting(Plan(workers: 2, notifyReadiness: true, bootAttempts: 3))
        world.failBoots(slot: 1, times: 2)
        guard let pid = world.running(slot: 1) else {
            Issue.record("\(world.violations)")
            return
        }
        world.send(.ready(world.alive[pid]!.ref))  // slot 0 never is: the generation is not ready yet
        world.failBoots(slot: 1, times: 1)  // died after it was ready: not a failed boot
        world.failBoots(slot: 1, times: 2)
        #expect(!world.core.isStopping, "two failed boots since the ready one")
        world.failBoots(slot: 1, times: 1)
        #expect(world.core.hasFailedToStart)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func aGenerationThatWasReadyOnceNeverFailsTheStart() {
        var world = SimulatedWorld.started(Plan(workers: 2, bootAttempts: 2), seed: 5)
        world.neverReadyRate = 1
        #expect(world.core.stableGeneration == 0)
        world.failBoots(slot: 1, times: 20)
        #expect(!world.core.isStopping)
        #expect(world.logged("failed_start").isEmpty)
        world.quiesce()
        #expect(world.alive.count == 2, "still restarting with back-off")
        #expect(world.exitStatus == nil)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func aReloadThatCannotBootFallsBackAndNeverFailsTheStart() {
        var world = SimulatedWorld.started(Plan(workers: 2, bootAttempts: 1), seed: 5)
        let serving = Set(world.alive.filter { $0.value.role == .worker }.keys)  // the scheduler is handed over
        for round in 1...5 {
            world.send(.reload(Plan(workers: 2, bootAttempts: 1)))
            let booting = world.core.workers.first { $0.generation == world.core.generation && $0.pid != nil }
            guard let pid = booting?.pid else {
                Issue.record("round \(round): nothing booting")
                return
            }
            world.die(pid, status: .exited(1))
            #expect(world.core.generation == 0, "round \(round): abandoned")
        }
        world.quiesce()
        #expect(!world.core.isStopping && world.exitStatus == nil)
        #expect(world.logged("reload_failed").count == 5)
        #expect(serving.isSubset(of: Set(world.alive.keys)), "the first generation kept serving")
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func noWorkerReadyWithinTheReadyTimeoutIsAFailedStartWithTheHint() {
        var world = SimulatedWorld.booting(Plan(workers: 2, notifyReadiness: true, readyTimeout: .seconds(2)))
        let startedAt = world.now
        world.advance(to: startedAt + .milliseconds(1900))
        #expect(!world.core.isStopping)
        world.advance(to: startedAt + .milliseconds(2100))
        #expect(world.core.hasFailedToStart)
        let lines = world.logged("failed_start")
        #expect(lines.count == 1)
        let message = lines.first?.message ?? ""
        #expect(message.hasPrefix("failed start: no worker was ready within 2s (--ready-timeout): pid "), "\(message)")
        #expect(message.contains(" never sent READY=1; does the app support sd_notify? use --ready exec"), "\(message)")
        #expect(world.logged("never_notified").isEmpty, "the hint is said once, in the failed start's line")
        world.quiesce()
        #expect(world.exitStatus == 3 && world.alive.isEmpty)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func aReadyTimeoutAfterSomeWorkerWasReadyCountsAsAFailedBoot() {
        var world = SimulatedWorld.booting(Plan(workers: 2, scheduler: false, notifyReadiness: true,
                                                readyTimeout: .seconds(2), bootAttempts: 3))
        let zero = world.core.workers.first { $0.slot == 0 }!
        world.send(.ready(zero.ref))  // the app speaks sd_notify; slot 1 hangs at boot
        world.advance(to: world.now + .seconds(2) + .milliseconds(100))
        #expect(!world.core.isStopping, "one hanging boot is not a failed start")
        #expect(world.logged("never_notified").isEmpty, "no hint: a worker did send READY=1")
        world.advance(to: world.now + .seconds(10))
        #expect(world.core.hasFailedToStart, "three ready timeouts of slot 1 in a row")
        #expect(world.logged("failed_start").first?.message.contains("worker 1 failed to boot 3 times") == true)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func aReloadThatNeverNotifiesIsAbandonedAndTheHintIsLoggedOnce() {
        var world = SimulatedWorld.started(Plan(workers: 2), seed: 5)  // --ready exec
        for pid in world.alive.keys { world.alive[pid]!.readyAt = nil }  // an app that never sends READY=1
        world.neverReadyRate = 1
        for round in 1...3 {
            world.send(.reload(Plan(workers: 2, notifyReadiness: true, readyTimeout: .seconds(2))))
            world.advance(to: world.now + .seconds(3))
            #expect(world.core.generation == 0, "round \(round): abandoned")
        }
        #expect(world.logged("reload_failed").count == 3)
        let hints = world.logged("never_notified")
        #expect(hints.count == 1)
        #expect(hints.first?.message.hasSuffix(" never sent READY=1; does the app support sd_notify? use --ready exec")
            == true)
        #expect(!world.core.isStopping && world.exitStatus == nil)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func aStopDuringAFailedStartStillExitsThree() {
        var world = SimulatedWorld.booting(Plan(workers: 2, gracefulTimeout: .seconds(10), bootAttempts: 1))
        for pid in world.alive.keys { world.alive[pid]!.ignoresTerm = true }
        world.failBoots(slot: 1, times: 1)
        #expect(world.core.hasFailedToStart)
        world.send(.stop(quick: true))  // the operator hurries it along
        world.quiesce()
        #expect(world.exitStatus == 3 && world.alive.isEmpty)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }
}
