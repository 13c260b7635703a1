import Testing
@testable import Bellwether

/// The supervisor's core and the lease's together, as `Supervision` composes
/// them for the master: a grant starts the scheduler, a withdrawal retires
/// it, a stop releases the key before the exit. No Redis, no processes: the
/// driver answers the actions as the shell would and feeds the lease's
/// replies by hand.
@Suite struct SupervisionTests {
    struct Driver {
        var supervision: Supervision
        var now = Instant(nanoseconds: 1_000_000_000)
        var pids: [WorkerRef: Int32] = [:]
        var roles: [Int32: Role] = [:]
        var sent: [LeaseCommand] = []
        var terminated: [Int32] = []
        var exit: Int32?
        var nextPID: Int32 = 100

        init(workers: Int) {
            let plan = Plan(workers: workers, gracefulTimeout: .seconds(3))
            supervision = Supervision(plan: plan, lease: LeaseCore(holder: "me", timings: LeaseCoreTests.timings))
        }

        mutating func at(_ milliseconds: Int64, _ input: Supervision.Input) {
            now = Instant(nanoseconds: 1_000_000_000 + milliseconds * 1_000_000)
            var pending = [input]
            while !pending.isEmpty {
                for output in supervision.handle(pending.removeFirst(), at: now) {
                    switch output {
                    case .send(let command): sent.append(command)
                    case .guardDeadline: break
                    case .act(let action): pending += answer(action)
                    }
                }
            }
        }

        /// What the shell would report back for `action`.
        mutating func answer(_ action: Action) -> [Supervision.Input] {
            switch action {
            case .spawn(let order):
                nextPID += 1
                pids[order.ref] = nextPID
                roles[nextPID] = order.role
                return [.supervisor(.spawned(order.ref, pid: nextPID)), .supervisor(.ready(order.ref))]
            case .acquireToken: return [.supervisor(.token(.acquired))]
            case .signal(let pid, .terminate):
                terminated.append(pid)
                return []
            case .exit(let status):
                exit = status
                return []
            default: return []
            }
        }

        /// The worker `pid` exits, as after a TERM.
        mutating func reap(_ pid: Int32, at milliseconds: Int64) {
            guard let ref = pids.first(where: { $0.value == pid })?.key else { return }
            pids[ref] = nil
            at(milliseconds, .supervisor(.exited(ref, .signaled(.terminate, coreDumped: false))))
        }

        var schedulers: [Int32] { pids.values.filter { roles[$0] == .scheduler } }
    }

    @Test func aGrantStartsTheSchedulerWithTheFence() {
        var d = Driver(workers: 2)
        d.at(0, .supervisor(.start))
        #expect(d.pids.count == 2 && d.schedulers.isEmpty, "no scheduler before the lease grants one")
        d.at(1, .lease(.tick))
        #expect(d.sent == [.acquire(floor: 1)])
        d.at(2, .lease(.reply(.acquired(fence: 9, clean: true))))
        #expect(d.supervision.grant == LeaseGrant(fence: 9, holder: "me"))
        #expect(d.supervision.supervisor.leasePermits)
        // Slot 0's worker is replaced by the scheduler once it is ready.
        #expect(d.schedulers.count == 1)
        #expect(d.terminated.count == 1)
    }

    @Test func aWithdrawnLeaseRetiresTheSchedulerWithinTheGrace() {
        var d = Driver(workers: 1)
        d.at(0, .supervisor(.start))
        d.at(1, .lease(.tick))
        d.at(2, .lease(.reply(.acquired(fence: 3, clean: true))))
        let scheduler = try! #require(d.schedulers.first)
        d.at(400, .lease(.tick))
        #expect(d.sent.last == .renew(value: "me|3"))
        d.at(401, .lease(.reply(.notOurs("other|4"))))
        #expect(d.supervision.grant == nil)
        #expect(!d.supervision.supervisor.leasePermits)
        #expect(d.terminated.contains(scheduler))
        let retiring = d.supervision.supervisor.workers.first { $0.pid == scheduler }
        #expect(retiring?.retireDeadline == d.now + d.supervision.supervisor.timings.leaseGrace)
    }

    @Test func aStopReleasesTheKeyBeforeTheMasterExits() {
        var d = Driver(workers: 2)
        d.at(0, .supervisor(.start))
        d.at(1, .lease(.tick))
        d.at(2, .lease(.reply(.acquired(fence: 5, clean: true))))
        #expect(d.supervision.changeRefusal == nil)
        d.at(100, .supervisor(.stop(quick: false)))
        #expect(d.supervision.changeRefusal == "the master is stopping")
        for pid in Array(d.pids.values) { d.reap(pid, at: 110) }
        #expect(d.supervision.supervisor.isFinished)
        #expect(d.exit == nil, "the key is still held")
        #expect(!d.supervision.isFinished)
        d.at(120, .lease(.tick))
        #expect(d.sent.last == .release(value: "me|5"))
        d.at(121, .lease(.reply(.released)))
        #expect(d.exit == 0)
        #expect(d.supervision.isFinished)
    }

    @Test func withoutALeaseTheSupervisorAloneDecides() {
        var supervision = Supervision(plan: Plan(workers: 1))
        let outputs = supervision.handle(.supervisor(.start), at: Instant(nanoseconds: 0))
        #expect(outputs.contains { if case .act(.acquireToken) = $0 { true } else { false } })
        #expect(!outputs.contains { if case .send = $0 { true } else { false } })
        #expect(supervision.handle(.lease(.tick), at: Instant(nanoseconds: 1)).isEmpty)
    }

    /// The shell keeps a generation's launch (command, environment) exactly
    /// while the core says it may still be needed: a worker of it is not yet
    /// reaped, it is current, or it is the stable one a failed reload falls back to.
    @Test func theGenerationsInUseAreTheCurrentTheStableAndThoseStillRunning() {
        var world = SimulatedWorld.started(Plan(workers: 2), seed: 7)
        #expect(world.core.generationsInUse == [0])
        world.send(.reload(Plan(workers: 2)))
        #expect(world.core.generationsInUse == [0, 1], "the old generation serves, the new one boots")
        world.quiesce()
        #expect(world.core.stableGeneration == 1)
        #expect(world.core.generationsInUse == [1], "generation 0 is reaped and no longer a fallback")
    }
}
