import Testing
@testable import Bellwether

@Suite("Supervisor core")
struct SupervisorCoreTests {
    func started(_ plan: Plan, seed: UInt64 = 1) -> SimulatedWorld {
        SimulatedWorld.started(plan, seed: seed)
    }

    func schedulerPID(_ world: SimulatedWorld) -> Int32? {
        world.alive.first { $0.value.role == .scheduler }?.key
    }

    @Test func startsNWorkersWithOneSchedulerInSlotZero() {
        let world = started(Plan(workers: 4))
        #expect(world.alive.count == 4)
        #expect(world.aliveSchedulers == 1)
        #expect(world.alive.values.first { $0.role == .scheduler }?.slot == 0)
        #expect(Set(world.alive.values.map(\.slot)) == [0, 1, 2, 3])
        #expect(world.violations.isEmpty)
    }

    @Test func noSchedulerMeansAllWorkers() {
        let world = started(Plan(workers: 3, scheduler: false))
        #expect(world.alive.count == 3)
        #expect(world.aliveSchedulers == 0)
    }

    @Test func deadSchedulerIsReplacedInItsSlotAfterTheReap() {
        var world = started(Plan(workers: 3))
        world.advance(to: world.now + .seconds(5))
        let old = schedulerPID(world)!
        world.die(old, status: .signaled(.kill, coreDumped: false))
        let new = schedulerPID(world)
        #expect(new != nil && new != old)
        #expect(world.alive[new!]?.slot == 0)
        #expect(world.alive.count == 3)
    }

    @Test func reloadRetiresTheOldSchedulerBeforeSpawningTheNew() {
        var world = started(Plan(workers: 3))
        let old = schedulerPID(world)!
        world.servingFloor = 3
        world.send(.reload(Plan(workers: 3)))
        // The old scheduler serves on beside its stand-in: no new one yet.
        #expect(world.aliveSchedulers == 1)
        #expect(schedulerPID(world) == old)
        #expect(world.core.workers.contains { $0.pid == old && !$0.isRetiring })
        #expect(world.alive.values.filter { $0.slot == 0 }.map(\.role).sorted { $0.rawValue < $1.rawValue }
                == [.scheduler, .worker])
        world.quiesce()
        #expect(schedulerPID(world) != old)
        #expect(world.core.generation == 1)
        #expect(world.alive.count == 3)
        #expect(world.core.workers.allSatisfy { $0.generation == 1 })
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    /// A core driven by hand, one event at a time; logs are left out of the
    /// actions it returns.
    struct Script {
        var core: SupervisorCore
        var now = Instant(nanoseconds: 1_000_000_000)

        init(_ plan: Plan) { core = SupervisorCore(plan: plan) }

        mutating func send(_ event: Event, after delay: Duration = .zero) -> [Action] {
            now = now + delay
            return core.handle(event, at: now).filter { if case .log = $0 { false } else { true } }
        }

        static func spawns(_ actions: [Action]) -> [SpawnOrder] {
            actions.compactMap { if case .spawn(let order) = $0 { order } else { nil } }
        }

        static func signals(_ actions: [Action]) -> [Action] {
            actions.filter { if case .signal = $0 { true } else { false } }
        }
    }

    /// With one worker, the worker is the scheduler. A reload must not leave
    /// its slot unserved: a stand-in first, the old scheduler TERMed only once
    /// the stand-in is ready, the new scheduler spawned beside the stand-in
    /// once the old one is reaped, the stand-in retired once it is ready.
    @Test func aReloadWithOneWorkerHandsSlotZeroOverThroughAStandIn() throws {
        let plan = Plan(workers: 1, notifyReadiness: true)
        var script = Script(plan)
        #expect(script.send(.start) == [.acquireToken])
        let first = try #require(Script.spawns(script.send(.token(.acquired))).first)
        #expect(first.role == .scheduler)
        _ = script.send(.spawned(first.ref, pid: 100))
        _ = script.send(.ready(first.ref))
        #expect(script.core.stableGeneration == 0)

        let reload = script.send(.reload(plan))
        let standIn = try #require(Script.spawns(reload).first)
        #expect(Script.spawns(reload).count == 1)
        #expect(standIn.role == .worker && standIn.slot == 0 && standIn.generation == 1 && standIn.background)
        #expect(Script.signals(reload).isEmpty, "the old scheduler serves on")
        #expect(Script.signals(script.send(.spawned(standIn.ref, pid: 101))).isEmpty)

        #expect(script.send(.ready(standIn.ref)) == [.signal(pid: 100, .terminate), .foreground(pid: 101)],
                "the stand-in serves: only now is the old scheduler sent TERM")
        #expect(script.send(.exited(first.ref, .exited(0))) == [.acquireToken], "its guard ended its tree before it exited")
        let handover = script.send(.token(.acquired))
        let scheduler = try #require(Script.spawns(handover).first)
        #expect(Script.spawns(handover).count == 1)
        #expect(scheduler.role == .scheduler && scheduler.slot == 0 && scheduler.generation == 1 && !scheduler.background)
        #expect(Script.signals(handover).isEmpty, "the stand-in serves while the scheduler boots")
        _ = script.send(.spawned(scheduler.ref, pid: 102))
        #expect(script.core.stableGeneration == 0, "not ready before the scheduler is")

        let ready = script.send(.ready(scheduler.ref))
        #expect(Script.signals(ready) == [.signal(pid: 101, .terminate)], "the stand-in goes once the scheduler is ready")
        #expect(script.core.stableGeneration == 1)
        #expect(ready.contains(.announce(.ready(status: "1 workers ready, generation 1"))))
        #expect(script.send(.exited(standIn.ref, .exited(0))).isEmpty)
        #expect(script.core.workers.map(\.pid) == [102])
    }

    /// `--no-scheduler` by reload: slot 0's new worker is an ordinary worker,
    /// and the old scheduler is retired once it is ready, as for a stand-in.
    @Test func aReloadToNoSchedulerRetiresTheSchedulerOnceSlotZeroServes() throws {
        var script = Script(Plan(workers: 1, notifyReadiness: true))
        _ = script.send(.start)
        let first = try #require(Script.spawns(script.send(.token(.acquired))).first)
        _ = script.send(.spawned(first.ref, pid: 100))
        _ = script.send(.ready(first.ref))
        let reload = script.send(.reload(Plan(workers: 1, scheduler: false, notifyReadiness: true)))
        let worker = try #require(Script.spawns(reload).first)
        #expect(worker.role == .worker && worker.slot == 0)
        #expect(Script.signals(reload).isEmpty)
        _ = script.send(.spawned(worker.ref, pid: 101))
        #expect(Script.signals(script.send(.ready(worker.ref))) == [.signal(pid: 100, .terminate)])
        #expect(Script.spawns(script.send(.exited(first.ref, .exited(0)))).isEmpty, "no scheduler wanted")
        #expect(script.core.stableGeneration == 1)
    }

    @Test func ttouNeverRetiresTheSchedulerAndStopsAtOne() {
        var world = started(Plan(workers: 2))
        let scheduler = schedulerPID(world)!
        for _ in 0..<5 { world.send(.removeWorker) }
        world.quiesce()
        #expect(world.core.plan.workers == 1)
        #expect(world.alive.count == 1)
        #expect(schedulerPID(world) == scheduler)
        for _ in 0..<3 { world.send(.addWorker) }
        world.quiesce()
        #expect(world.alive.count == 4)
        #expect(schedulerPID(world) == scheduler)
    }

    @Test func quickDeathsBackOffExponentially() {
        var world = started(Plan(workers: 2, scheduler: false))
        var delays: [Duration] = []
        for _ in 0..<7 {
            let pid = world.alive.first { $0.value.slot == 1 }!.key
            let diedAt = world.now
            world.die(pid, status: .exited(1))
            if let notBefore = world.core.slots[1]?.notBefore, notBefore > world.now { world.advance(to: notBefore) }
            let restarted = world.core.workers.first { $0.slot == 1 }!.startedAt
            delays.append(restarted - diedAt)
        }
        // The first worker had lived past the stable uptime: restarted at once.
        // Every later one died as soon as it started: 0, 0.1, 0.2, 0.4 ... capped at 10 s.
        #expect(delays.map { $0.nanoseconds / 1_000_000 } == [0, 0, 100, 200, 400, 800, 1600])
    }

    @Test func aStableWorkerResetsTheBackoff() {
        var world = started(Plan(workers: 1, scheduler: false))
        for _ in 0..<4 {
            world.die(world.alive.keys.first!, status: .exited(1))
            world.advance(to: world.now + .seconds(30))
        }
        world.advance(to: world.now + .seconds(2))  // lives past the stable uptime
        let diedAt = world.now
        world.die(world.alive.keys.first!, status: .exited(1))
        #expect(world.core.workers.first!.startedAt == diedAt)
    }

    @Test func busyTokenWaitsThenRunsAWorkerThenConverts() {
        var world = SimulatedWorld(plan: Plan(workers: 2), seed: 7)
        world.spawnFailureRate = 0
        world.ignoreTermRate = 0
        world.externalHolder = true
        world.send(.start)
        #expect(world.alive.count == 1)  // slot 0 kept free for a moment
        world.advance(to: world.now + .seconds(3))
        #expect(world.alive.count == 2)
        #expect(world.aliveSchedulers == 0)
        // Once the token is free the scheduler boots beside slot 0's worker,
        // which serves until the scheduler is ready.
        let ordinary = world.alive.first { $0.value.slot == 0 }!.key
        world.servingFloor = 2
        world.externalHolder = false
        world.advance(to: world.now + .milliseconds(300))
        #expect(world.aliveSchedulers == 1)
        #expect(world.alive[ordinary] != nil && world.core.workers.contains { $0.pid == ordinary && !$0.isRetiring })
        world.advance(to: world.now + .seconds(3))
        #expect(world.aliveSchedulers == 1)
        #expect(world.alive[ordinary] == nil, "replaced by the scheduler once it was ready")
        #expect(world.alive.count == 2)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    /// The converting path step by step: the scheduler is spawned while the
    /// ordinary worker serves, which is retired only once the scheduler is ready.
    @Test func aSchedulerIsSpawnedBesideTheWorkerThatServedSlotZeroWhileTheTokenWasBusy() throws {
        var script = Script(Plan(workers: 1))
        #expect(script.send(.start) == [.acquireToken])
        #expect(script.send(.token(.busy(holder: 7))).isEmpty, "slot 0 kept free a moment")
        #expect(script.send(.tick, after: .seconds(1)) == [.acquireToken])
        let ordinary = try #require(Script.spawns(script.send(.token(.busy(holder: 7)))).first)
        #expect(ordinary.role == .worker)
        _ = script.send(.spawned(ordinary.ref, pid: 100))
        #expect(script.send(.tick, after: .seconds(1)).first == .acquireToken, "still retrying")
        #expect(script.core.workers.first?.ready == true, "up for the boot grace")
        #expect(script.send(.token(.busy(holder: 7))).isEmpty)
        #expect(script.send(.tick, after: .milliseconds(250)) == [.acquireToken])
        let converting = script.send(.token(.acquired))
        let scheduler = try #require(Script.spawns(converting).first)
        #expect(scheduler.role == .scheduler && scheduler.slot == 0)
        #expect(Script.signals(converting).isEmpty, "the worker serves while the scheduler boots")
        _ = script.send(.spawned(scheduler.ref, pid: 101))
        #expect(Script.signals(script.send(.tick, after: .milliseconds(999))).isEmpty)
        #expect(Script.signals(script.send(.tick, after: .milliseconds(1))) == [.signal(pid: 100, .terminate)],
                "retired once the scheduler is ready")
    }

    /// A withdrawn lease does not wait for a stand-in: the scheduler is sent
    /// TERM at once, and slot 0 gets an ordinary worker at once.
    @Test func aWithdrawnLeaseRetiresTheSchedulerAtOnce() {
        var world = SimulatedWorld(plan: Plan(workers: 2), seed: 5, leased: true)
        world.spawnFailureRate = 0
        world.ignoreTermRate = 0
        world.send(.start)
        world.lease(true)
        world.quiesce()
        let scheduler = schedulerPID(world)!
        world.lease(false)
        let retiring = world.core.workers.first { $0.pid == scheduler }
        #expect(retiring?.retireDeadline.map { $0 <= world.now + world.core.timings.leaseGrace } == true)
        #expect(world.core.workers.contains { $0.slot == 0 && $0.role == .worker && $0.pid != nil })
        world.quiesce()
        #expect(world.aliveSchedulers == 0 && world.alive.count == 2)
        // Granted again: the scheduler boots beside slot 0's worker.
        world.servingFloor = 2
        world.lease(true)
        world.quiesce()
        #expect(world.aliveSchedulers == 1 && world.alive.count == 2)
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func gracefulStopKillsWorkersThatIgnoreTermAtTheDeadline() {
        var world = started(Plan(workers: 3, gracefulTimeout: .seconds(5)))
        for pid in world.alive.keys { world.alive[pid]!.ignoresTerm = true }
        let stoppedAt = world.now
        world.send(.stop(quick: false))
        world.advance(to: stoppedAt + .milliseconds(4900))
        #expect(world.alive.count == 3)
        #expect(world.exitStatus == nil)
        world.advance(to: stoppedAt + .seconds(6))
        #expect(world.alive.isEmpty)
        #expect(world.exitStatus == 0)
    }

    @Test(.inTheBackground, arguments: 0..<40)
    func randomEventSequencesKeepTheInvariants(batch: Int) {
        var failedStarts = 0
        for seed in 0..<100 {
            let id = UInt64(batch * 100 + seed)
            // Every third world has a network lease, granted and withdrawn at random.
            // Some give up their first start after 1 to 5 failed boots of a slot, some never do.
            var world = SimulatedWorld(plan: Plan(workers: 1 + Int(id % 5), gracefulTimeout: .seconds(id % 3 == 0 ? 20 : 2),
                                                  notifyReadiness: id % 2 == 1, readyTimeout: .seconds(3),
                                                  bootAttempts: id % 4 == 0 ? 0 : 1 + Int(id / 4 % 5)),
                                       seed: id, leased: id % 3 == 0)
            world.send(.start)
            if id % 10 == 7 {
                // A stop in the middle of things (a reload booting, say).
                for _ in 0..<40 { randomStep(&world, leased: id % 3 == 0) }
                world.send(.stop(quick: world.rng.chance(0.5)))
                world.quiesce()
                #expect(world.violations.isEmpty, "seed \(id), stopped midway: \(world.violations.prefix(3))")
                #expect(world.exitStatus == (world.core.hasFailedToStart ? 3 : 0) && world.alive.isEmpty,
                        "seed \(id), stopped midway")
                continue
            }
            for _ in 0..<60 { randomStep(&world, leased: id % 3 == 0) }
            if id % 3 == 0 { world.lease(true) }
            world.quiesce()
            let plan = world.core.plan
            let description = "seed \(id): \(world.violations.prefix(3))"
            #expect(world.violations.isEmpty, "\(description)")
            if world.core.hasFailedToStart {
                // The first generation never became ready: the master stopped everything and exits 3.
                failedStarts += 1
                #expect(plan.bootAttempts > 0, "seed \(id): a failed start with --boot-attempts 0")
                #expect(world.core.stableGeneration == nil, "seed \(id)")
                #expect(world.exitStatus == 3 && world.alive.isEmpty, "seed \(id)")
                continue
            }
            #expect(world.alive.count == plan.workers, "seed \(id): \(world.alive.count) alive, want \(plan.workers)")
            #expect(world.core.workers.count == plan.workers, "seed \(id)")
            #expect(Set(world.core.workers.map(\.slot)) == Set(0..<plan.workers), "seed \(id)")
            #expect(Dictionary(grouping: world.alive.values, by: \.slot).values.allSatisfy { $0.count == 1 },
                    "seed \(id): one process per slot, no stand-in left")
            #expect(world.core.workers.allSatisfy { $0.generation == world.core.generation && $0.pid != nil && $0.ready })
            #expect(world.core.stableGeneration == world.core.generation, "seed \(id)")
            #expect(world.aliveSchedulers == (plan.scheduler ? 1 : 0), "seed \(id)")
            if plan.scheduler { #expect(world.alive[world.core.schedulerPID ?? -1]?.slot == 0, "seed \(id)") }

            world.send(.stop(quick: world.rng.chance(0.5)))
            world.quiesce()
            #expect(world.exitStatus == 0, "seed \(id)")
            #expect(world.alive.isEmpty, "seed \(id)")
        }
        // Most worlds get through their start: the invariants above are tested on them.
        #expect(failedStarts < 30, "batch \(batch): \(failedStarts) failed starts in 100 worlds")
    }

    /// Reloads (storms of them, `--no-scheduler` toggled, the token busy at
    /// times) while every worker boots fine: after every event each slot
    /// 0..<N has a process that serves, and there is never a second scheduler.
    @Test(.inTheBackground, arguments: 0..<10)
    func reloadsNeverLeaveASlotUnserved(batch: Int) {
        for seed in 0..<100 {
            let id = UInt64(batch * 100 + seed)
            let workers = 1 + Int(id % 4)
            let notify = id % 2 == 1
            var world = SimulatedWorld(plan: Plan(workers: workers, notifyReadiness: notify, readyTimeout: .seconds(10)),
                                       seed: id)
            world.spawnFailureRate = 0
            world.neverReadyRate = 0
            world.send(.start)
            world.quiesce()
            world.servingFloor = workers
            for _ in 0..<40 {
                switch world.rng.below(10) {
                case 0..<5:
                    world.advance(to: world.now + .milliseconds(Int64(world.rng.below(1500))))
                case 5..<8:
                    world.send(.reload(Plan(workers: workers, scheduler: !world.rng.chance(0.2),
                                            gracefulTimeout: .milliseconds(Int64(200 + world.rng.below(3000))),
                                            notifyReadiness: notify, readyTimeout: .seconds(10))))
                case 8:
                    world.externalHolder.toggle()
                default:
                    world.send(.forward(.user1))
                }
            }
            world.quiesce()
            #expect(world.violations.isEmpty, "seed \(id): \(world.violations.prefix(3))")
            #expect(world.alive.count == workers && world.core.stableGeneration == world.core.generation, "seed \(id)")
            #expect(world.aliveSchedulers == (world.core.plan.scheduler ? 1 : 0), "seed \(id)")
        }
    }

    // MARK: readiness, failed reloads, watchdog, systemd

    func notifyWorld(_ plan: Plan) -> SimulatedWorld {
        SimulatedWorld.started(plan, seed: 3, alwaysReady: true)
    }

    @Test func oldWorkersRetireOnlyOnceTheirReplacementIsReady() throws {
        var world = notifyWorld(Plan(workers: 3, notifyReadiness: true))
        for pid in world.alive.keys { world.alive[pid]!.readyAt = nil }
        let old = Set(world.alive.filter { $0.value.role == .worker }.keys)
        world.neverReadyRate = 1  // the new generation does not say READY=1 yet
        let oldScheduler = schedulerPID(world)!
        world.send(.reload(Plan(workers: 3, notifyReadiness: true)))
        world.advance(to: world.now + .seconds(5))
        #expect(old.allSatisfy { world.alive[$0] != nil }, "old workers keep serving until replacements are ready")
        #expect(world.alive[oldScheduler] != nil, "and so does the old scheduler")
        let booting = world.core.workers.filter { $0.generation == 1 }.sorted { $0.slot < $1.slot }
        #expect(booting.map(\.slot) == [0, 1] && booting.map(\.role) == [.worker, .worker],
                "slot 0's stand-in (outside the batch) and one replacement at a time")
        let standIn = booting[0]
        world.send(.ready(standIn.ref))
        world.advance(to: world.now + .seconds(1))
        #expect(world.alive[oldScheduler] == nil, "the old scheduler goes once the stand-in serves")
        let scheduler = try #require(world.core.workers.first { $0.generation == 1 && $0.role == .scheduler })
        #expect(world.alive.values.filter { $0.slot == 1 }.count == 2, "slot 1's replacement boots beside its old worker")
        #expect(world.core.workers.filter { $0.slot == 2 }.map(\.generation) == [0], "slot 2 waits for the batch")
        world.send(.ready(booting[1].ref))
        world.send(.ready(scheduler.ref))
        world.advance(to: world.now + .seconds(1))
        #expect(world.alive[standIn.pid!] == nil, "the stand-in goes once the scheduler is ready")
        #expect(world.alive.values.filter { $0.slot == 1 }.count == 1, "slot 1's old worker retired")
        #expect(world.core.workers.filter { $0.slot == 2 }.map(\.generation).sorted() == [0, 1],
                "slot 2's replacement boots next, its old worker still serves")
    }

    @Test func aReplacementBootsInTheBackgroundOnlyBesideTheWorkerItReplaces() {
        var world = notifyWorld(Plan(workers: 3, notifyReadiness: true))
        #expect(world.background.isEmpty, "the first generation boots in the foreground")
        world.neverReadyRate = 1
        world.send(.reload(Plan(workers: 3, notifyReadiness: true)))
        world.advance(to: world.now + .seconds(2))
        let booting = world.core.workers.filter { $0.generation == 1 }.sorted { $0.slot < $1.slot }
        #expect(booting.map(\.slot) == [0, 1] && booting.map(\.role) == [.worker, .worker])
        #expect(world.background == Set(booting.map { $0.pid! }),
                "slot 0's stand-in boots beside the old scheduler, slot 1's replacement beside its old worker")
        world.send(.ready(booting[0].ref))
        #expect(world.background == [booting[1].pid!], "the stand-in is ready: back in the foreground")
        world.advance(to: world.now + .seconds(1))  // the old scheduler is reaped
        let scheduler = world.core.workers.first { $0.generation == 1 && $0.role == .scheduler }
        #expect(scheduler != nil && !world.background.contains(scheduler?.pid ?? -1),
                "the scheduler always boots in the foreground")
        world.send(.ready(booting[1].ref))
        // Slot 2's replacement boots next (the scheduler boots outside the
        // batch); its old worker dies meanwhile.
        let next = world.core.workers.first { $0.slot == 2 && $0.generation == 1 }!
        #expect(world.background == [next.pid!], "slot 1's replacement is ready: back in the foreground")
        let predecessor = world.core.workers.first { $0.slot == 2 && $0.generation == 0 }!.pid!
        world.die(predecessor, status: .signaled(.kill, coreDumped: false))
        #expect(world.background.isEmpty, "alone in its slot: foreground at once, though not ready")
        #expect(world.violations.isEmpty, "\(world.violations)")
    }

    @Test func aGenerationThatDiesAtBootIsAbandonedAndTheOldOneKeepsServing() {
        var world = notifyWorld(Plan(workers: 3, notifyReadiness: true))
        let old = Set(world.alive.filter { $0.value.role == .worker }.keys)
        world.neverReadyRate = 1
        let oldScheduler = schedulerPID(world)!
        world.send(.reload(Plan(workers: 3, notifyReadiness: true)))
        let failing = world.core.workers.first { $0.generation == 1 && $0.role == .worker && $0.pid != nil }!.pid!
        world.die(failing, status: .exited(1))
        #expect(world.core.generation == 0)
        #expect(world.core.stableGeneration == 0)
        world.neverReadyRate = 0
        world.quiesce()
        #expect(old.allSatisfy { world.alive[$0] != nil }, "the old workers were never retired")
        #expect(world.alive[oldScheduler] != nil, "nor the old scheduler: its stand-in never served")
        #expect(world.alive.count == 3)
        #expect(world.aliveSchedulers == 1)
        #expect(world.core.workers.allSatisfy { $0.generation == 0 })
        // The next reload gets a fresh generation number.
        world.send(.reload(Plan(workers: 3, notifyReadiness: true)))
        #expect(world.core.generation == 2)
    }

    @Test func aWorkerNeverReadyIsKilledAtTheReadyTimeout() {
        var world = notifyWorld(Plan(workers: 2, notifyReadiness: true, readyTimeout: .seconds(5)))
        world.neverReadyRate = 1
        world.send(.reload(Plan(workers: 2, notifyReadiness: true, readyTimeout: .seconds(5))))
        let reloadedAt = world.now
        world.advance(to: reloadedAt + .milliseconds(4900))
        #expect(world.core.generation == 1)
        world.advance(to: reloadedAt + .milliseconds(5100))
        #expect(world.core.generation == 0, "abandoned at the ready timeout")
    }

    @Test func theWatchdogAbortsThenKillsASilentWorker() {
        var world = notifyWorld(Plan(workers: 2, scheduler: false, watchdog: .seconds(2)))
        let (pid, process) = world.alive.first { $0.value.slot == 1 }!
        world.alive[pid]!.ignoresTerm = true
        world.send(.watchdog(process.ref))
        let pingedAt = world.now
        world.advance(to: pingedAt + .milliseconds(1900))
        #expect(world.alive[pid] != nil)
        world.advance(to: pingedAt + .seconds(3))
        #expect(world.alive[pid] == nil, "killed within timeout + abort grace")
        #expect(world.alive.values.filter { $0.slot == 1 }.count == 1, "and replaced")
    }

    @Test func systemdHearsReadyReloadingReadyStopping() {
        var world = notifyWorld(Plan(workers: 2))
        world.send(.reload(Plan(workers: 2)))
        world.quiesce()
        world.send(.stop(quick: false))
        world.quiesce()
        let kinds = world.announcements.compactMap { announcement -> String? in
            switch announcement {
            case .ready: "ready"
            case .reloading: "reloading"
            case .stopping: "stopping"
            case .status: nil
            }
        }
        #expect(kinds == ["ready", "reloading", "ready", "stopping"])
        #expect(world.announcements.contains { if case .status = $0 { true } else { false } },
                "a STATUS= line when a scheduler starts")
    }

    /// A deadline that passes while the shell is busy with something else must
    /// still be reported (behind `now`), or the master would sleep through it.
    @Test func aDeadlinePassedSinceTheLastEventIsStillDue() {
        var core = SupervisorCore(plan: Plan(workers: 1, scheduler: false))
        let start = Instant(nanoseconds: 1_000_000_000)
        let spawn = core.handle(.start, at: start)
        guard case .spawn(let order) = spawn.first(where: { if case .spawn = $0 { true } else { false } }) else {
            Issue.record("no spawn")
            return
        }
        _ = core.handle(.spawned(order.ref, pid: 42), at: start)
        let late = start + .seconds(2)
        #expect(core.nextDeadline(after: late) == start + .seconds(1), "the boot grace, already due")
        _ = core.handle(.tick, at: late)
        #expect(core.workers.first?.ready == true)
        #expect(core.nextDeadline(after: late) == nil)
    }

    @Test func aZeroGracefulTimeoutKillsAtOnce() {
        var world = notifyWorld(Plan(workers: 2, gracefulTimeout: .zero))
        for pid in world.alive.keys { world.alive[pid]!.ignoresTerm = true }
        world.send(.stop(quick: false))
        world.quiesce()
        #expect(world.alive.isEmpty)
        #expect(world.exitStatus == 0)
    }

    @Test func anAbandonedReloadRestoresTheStablePlan() {
        var world = notifyWorld(Plan(workers: 2, notifyReadiness: true))
        world.neverReadyRate = 1
        world.send(.reload(Plan(workers: 4, scheduler: false, notifyReadiness: true, readyTimeout: .seconds(2))))
        world.advance(to: world.now + .seconds(3))
        #expect(world.core.generation == 0)
        #expect(world.core.plan == Plan(workers: 2, notifyReadiness: true))
        world.neverReadyRate = 0
        world.quiesce()
        #expect(world.alive.count == 2 && world.aliveSchedulers == 1)
    }

    @Test func readyTimeoutKillsBackOff() {
        var world = SimulatedWorld(plan: Plan(workers: 1, scheduler: false, notifyReadiness: true,
                                              readyTimeout: .milliseconds(100)), seed: 3)
        world.spawnFailureRate = 0
        world.ignoreTermRate = 0
        world.neverReadyRate = 1
        world.send(.start)
        world.send(.ready(world.core.workers[0].ref))  // the first generation was ready once
        world.quiesce()
        let first = world.alive.keys.first!
        world.die(first, status: .exited(1))  // its replacement never gets ready
        let started = world.core.workers.count
        world.advance(to: world.now + .seconds(2))
        // Without back-off it would be restarted every 100 ms: 20 starts.
        #expect(world.nextPID - Int32(100) < 12, "\(world.nextPID - 100) starts, \(started)")
    }

    func randomStep(_ world: inout SimulatedWorld, leased: Bool = false) {
        if leased && world.rng.chance(0.08) {
            world.lease(!world.core.leasePermits)
            return
        }
        switch world.rng.below(100) {
        case 0..<35:
            world.advance(to: world.now + .milliseconds(Int64(world.rng.below(1500))))
        case 35..<55:
            if let pid = world.alive.keys.sorted().dropFirst(world.rng.below(max(world.alive.count, 1))).first {
                world.die(pid, status: world.rng.chance(0.5) ? .exited(1) : .signaled(.kill, coreDumped: false))
            }
        case 55..<67:
            let plan = Plan(workers: 1 + world.rng.below(6), scheduler: !world.rng.chance(0.15),
                            gracefulTimeout: .milliseconds(Int64(200 + world.rng.below(2000))),
                            notifyReadiness: world.core.plan.notifyReadiness, readyTimeout: .seconds(3),
                            bootAttempts: world.core.plan.bootAttempts)
            world.send(.reload(plan))
        case 67..<77:
            world.send(.addWorker)
        case 77..<87:
            world.send(.removeWorker)
        case 87..<92:
            world.send(.forward(.user1))
        default:
            world.externalHolder.toggle()
        }
    }
}
