import Testing
@testable import Bellwether

/// Recycling in the pure core: by age (with jitter), by memory, on the
/// app's request; one slot at a time, every slot served throughout, the
/// scheduler through the stand-in handover.
@Suite struct RecyclingTests {
    static func world(_ plan: Plan, seed: UInt64 = 3) -> SimulatedWorld {
        var world = SimulatedWorld(plan: plan, seed: seed)
        world.spawnFailureRate = 0
        world.ignoreTermRate = 0
        world.neverReadyRate = 0
        world.send(.start)
        world.advance(to: world.now + .seconds(3))
        return world
    }

    /// Advances in small steps, checking that at most one worker is being
    /// recycled, and that at most one tree beyond the N serving ones boots or
    /// drains at any moment (a scheduler's handover included).
    static func run(_ world: inout SimulatedWorld, for duration: Duration) {
        let end = world.now + duration
        while world.now < end {
            world.advance(to: min(end, world.now + .milliseconds(100)))
            #expect(world.core.workers.filter(\.isRecycling).count <= 1, "two recycles at once")
            #expect(world.core.workers.count <= world.core.plan.workers + 1,
                    "\(world.core.workers.count) trees for \(world.core.plan.workers) slots at \(world.now)")
        }
    }

    @Test func ageRecyclesEverySlotOneAtATimeAndLeavesNoSlotUnserved() {
        var plan = Plan(workers: 3, gracefulTimeout: .seconds(1))
        plan.maxWorkerAge = .seconds(10)
        plan.maxWorkerAgeJitter = .seconds(2)
        var world = Self.world(plan)
        world.servingFloor = 3
        Self.run(&world, for: .seconds(40))
        #expect(world.violations.isEmpty, "\(world.violations)")
        #expect(world.logged("recycling").count >= 6)
        for slot in 0..<3 { #expect((world.core.history[slot]?.recyclings ?? 0) >= 2, "slot \(slot)") }
        #expect(world.logged("stand_in").count >= 2, "the scheduler goes through the handover")
        #expect(world.logged("retiring").allSatisfy { record in
            !record.message.contains("recycled") || record.message.hasSuffix("recycled, its replacement is ready")
        })
    }

    @Test func theJitterSpreadsTheWorkersOfOneStart() {
        var plan = Plan(workers: 8)
        plan.maxWorkerAge = .seconds(100)
        plan.maxWorkerAgeJitter = .seconds(20)
        let world = Self.world(plan)
        let limits = Set(world.core.workers.compactMap { world.core.ageLimit(of: $0) })
        #expect(limits.count == 8)
        #expect(limits.allSatisfy { $0 >= .seconds(100) && $0 <= .seconds(120) })
    }

    @Test func memoryOverTheLimitRecyclesUnderItDoesNot() throws {
        var plan = Plan(workers: 2)
        plan.maxWorkerMemory = 100 << 20
        var world = Self.world(plan)
        let worker = try #require(world.core.workers.first { $0.role == .worker })
        world.send(.memory(worker.ref, bytes: 50 << 20))
        #expect(world.logged("recycling").isEmpty)
        world.send(.memory(worker.ref, bytes: 200 << 20))
        let record = try #require(world.logged("recycling").first)
        #expect(record.message.contains("200 MiB, over --max-worker-memory 100 MiB"))
        Self.run(&world, for: .seconds(5))
        #expect(!world.core.workers.contains { $0.ref == worker.ref }, "retired once its replacement was ready")
        #expect(world.core.workers.filter { $0.slot == worker.slot }.count == 1)
        #expect(world.violations.isEmpty, "\(world.violations)")
        #expect(world.logged("memory_limit_too_low").isEmpty, "it was under the limit at its first measurement")
    }

    /// A limit below what a fresh worker uses recycles every worker at every
    /// measurement: said once, as a warning.
    @Test func aLimitBelowAFreshWorkerIsWarnedOfOnce() throws {
        var plan = Plan(workers: 2)
        plan.maxWorkerMemory = 10 << 20
        var world = Self.world(plan)
        for worker in world.core.workers { world.send(.memory(worker.ref, bytes: 40 << 20)) }
        let warnings = world.logged("memory_limit_too_low")
        #expect(warnings.count == 1)
        #expect(warnings.first?.message.contains("40 MiB at its first measurement, over --max-worker-memory 10 MiB") == true)
    }

    @Test func theAppMayAskAndWaitsItsTurn() throws {
        var world = Self.world(Plan(workers: 3))
        let asking = world.core.workers.filter { $0.role == .worker }.map(\.ref)
        for ref in asking { world.send(.recycleAsked(ref)) }
        #expect(world.logged("recycling").count == 1, "one at a time")
        Self.run(&world, for: .seconds(10))
        #expect(world.logged("recycling").count == 2)
        #expect(world.core.nextDeadline(after: world.now) == nil, "nothing left to do")
    }

    @Test func withoutLimitsNoTimerIsArmed() {
        var world = SimulatedWorld.started(Plan(workers: 2), seed: 1)
        world.quiesce()
        #expect(world.core.nextDeadline(after: world.now) == nil)
    }

    @Test func noRecycleStartsDuringAReload() throws {
        var plan = Plan(workers: 2, notifyReadiness: true)
        plan.maxWorkerMemory = 1
        var world = Self.world(plan)
        world.send(.reload(plan))
        let old = try #require(world.core.workers.first { $0.generation == 0 && $0.role == .worker })
        world.send(.memory(old.ref, bytes: 10))
        #expect(world.logged("recycling").isEmpty)
    }
}
