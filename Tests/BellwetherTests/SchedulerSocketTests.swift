import Testing
@testable import Bellwether

/// The `--scheduler-bind` socket's wanted state and the generations whose
/// launch is still needed: decisions the core owns and the shell only
/// carries out.
@Suite("Scheduler socket and generations in use")
struct SchedulerSocketTests {
    @Test func wantedWhileThisMasterDesignatesAcrossAHandover() {
        var world = SimulatedWorld.started(Plan(workers: 2), seed: 1)
        #expect(world.core.schedulerSocketWanted)
        let old = world.alive.first { $0.value.role == .scheduler }!.key
        world.send(.reload(Plan(workers: 2)))
        world.quiesce()
        #expect(world.alive.first { $0.value.role == .scheduler }!.key != old)
        #expect(world.core.schedulerSocketWanted, "kept bound through the handover")
        world.die(world.alive.first { $0.value.role == .scheduler }!.key, status: .signaled(.kill, coreDumped: false))
        #expect(world.core.schedulerSocketWanted, "kept bound across a scheduler's death")
    }

    @Test func aBusyTokenLetsItGoOnlyAfterTheGrace() {
        var world = SimulatedWorld.started(Plan(workers: 2), seed: 1)
        world.externalHolder = true
        world.advance(to: world.now + .seconds(5))
        world.die(world.alive.first { $0.value.role == .scheduler }!.key, status: .signaled(.kill, coreDumped: false))
        #expect(world.core.tokenWaitingSince != nil)
        #expect(world.core.schedulerSocketWanted, "a moment's straggler keeps it")
        world.advance(to: world.now + world.core.timings.tokenWaitGrace + .milliseconds(1))
        #expect(!world.core.schedulerSocketWanted, "another holder is established")
        world.quiesce()
        #expect(world.core.schedulerSocketWanted, "designating again")
    }

    @Test func aMasterThatNeverHeldTheTokenNeverWantsIt() {
        var world = SimulatedWorld(plan: Plan(workers: 2), seed: 1)
        world.spawnFailureRate = 0
        world.externalHolder = true
        world.send(.start)
        #expect(!world.core.schedulerSocketWanted)
        world.advance(to: world.now + .seconds(5))
        #expect(!world.core.schedulerSocketWanted)
    }

    @Test func notWantedWhenStoppingWithoutTheLeaseOrWithoutAScheduler() {
        var stopping = SimulatedWorld.started(Plan(workers: 2), seed: 1)
        stopping.send(.stop(quick: false))
        #expect(!stopping.core.schedulerSocketWanted)

        var withdrawn = SimulatedWorld(plan: Plan(workers: 2), seed: 1, leased: true)
        withdrawn.spawnFailureRate = 0
        withdrawn.send(.start)
        withdrawn.lease(true)
        withdrawn.quiesce()
        #expect(withdrawn.core.schedulerSocketWanted)
        withdrawn.lease(false)
        #expect(!withdrawn.core.schedulerSocketWanted)

        var none = SimulatedWorld.started(Plan(workers: 2), seed: 1)
        none.send(.reload(Plan(workers: 2, scheduler: false)))
        #expect(!none.core.schedulerSocketWanted)
    }

    @Test func generationsInUseKeepWhatIsRunningAndWhatAFailedReloadFallsBackTo() {
        var world = SimulatedWorld.started(Plan(workers: 2), seed: 1)
        #expect(world.core.generationsInUse == [0])
        world.send(.reload(Plan(workers: 2)))
        #expect(world.core.generationsInUse == [0, 1], "the old generation still serves")
        world.quiesce()
        #expect(world.core.generationsInUse == [1])
    }
}
