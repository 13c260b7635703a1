@testable import Bellwether
import TestSupport

/// A fake operating system for the core: processes that live in simulated
/// time, a token that only one holder can take, and a queue of events. It
/// performs the core's actions the way the real shell does and records the
/// facts the invariants speak about.
struct SimulatedWorld {
    struct Process {
        var ref: WorkerRef
        var role: Role
        var slot: Int
        var ignoresTerm: Bool
        var exitAt: Instant?
        /// When it will send READY=1 (nil: never).
        var readyAt: Instant?
    }

    enum TokenHolder: Equatable { case nobody, master, process(Int32) }

    var core: SupervisorCore
    var now = Instant(nanoseconds: 1_000_000_000)
    var alive: [Int32: Process] = [:]
    /// Spawned in the background (`SpawnOrder.background`) and not yet foregrounded.
    var background: Set<Int32> = []
    var pending: [Event] = []
    var token = TokenHolder.nobody
    var externalHolder = false
    var nextPID: Int32 = 100
    var exitStatus: Int32?
    var rng: SplitMix
    var spawnFailureRate = 0.03
    /// Spawn failures are a fork server's (`--preload`): failed boots.
    var spawnFailuresAreFailedBoots = false
    var ignoreTermRate = 0.1
    /// With notify readiness: the share of processes that never send READY=1.
    var neverReadyRate = 0.05
    var violations: [String] = []
    var actionsSeen = 0
    var announcements: [Announcement] = []
    /// Every log record, in order.
    var logs: [LogRecord] = []

    /// When the network lease was last withdrawn, while it stays withdrawn.
    var leaseWithdrawnAt: Instant?
    /// While set, slots 0..<floor must each have a process that serves
    /// (alive, ready, not retiring) after every event: a reload's handovers
    /// leave no slot unserved.
    var servingFloor: Int?

    /// A started world with no failed spawns and no ignored TERM (and, if
    /// `alwaysReady`, no worker that never becomes ready), quiesced.
    static func started(_ plan: Plan, seed: UInt64, alwaysReady: Bool = false) -> SimulatedWorld {
        var world = SimulatedWorld(plan: plan, seed: seed)
        world.spawnFailureRate = 0
        world.ignoreTermRate = 0
        if alwaysReady { world.neverReadyRate = 0 }
        world.send(.start)
        world.quiesce()
        return world
    }

    init(plan: Plan, seed: UInt64, leased: Bool = false) {
        core = SupervisorCore(plan: plan, leased: leased)
        rng = SplitMix(seed: seed)
        if leased { leaseWithdrawnAt = now }
    }

    /// Grants or withdraws the network lease.
    mutating func lease(_ permitted: Bool) {
        if !permitted && leaseWithdrawnAt == nil { leaseWithdrawnAt = now }
        if permitted { leaseWithdrawnAt = nil }
        send(.lease(permitted: permitted))
    }

    var aliveSchedulers: Int { alive.values.filter { $0.role == .scheduler }.count }

    mutating func send(_ event: Event) {
        pending.append(event)
        drain()
    }

    mutating func drain() {
        while !pending.isEmpty {
            let event = pending.removeFirst()
            for action in core.handle(event, at: now) { perform(action) }
            check()
        }
    }

    mutating func perform(_ action: Action) {
        actionsSeen += 1
        switch action {
        case .spawn(let order):
            if rng.chance(spawnFailureRate) {
                pending.append(.spawnFailed(order.ref, reason: "simulated failure",
                                            failedBoot: spawnFailuresAreFailedBoots))
                return
            }
            if order.role == .scheduler {
                if token != .master { violations.append("scheduler spawned without the token (\(token))") }
                if leaseWithdrawnAt != nil { violations.append("scheduler spawned without the lease at \(now)") }
            }
            let pid = nextPID
            nextPID += 1
            let readyAt = rng.chance(neverReadyRate) ? nil : now + .milliseconds(Int64(rng.below(1500)))
            alive[pid] = Process(ref: order.ref, role: order.role, slot: order.slot,
                                 ignoresTerm: rng.chance(ignoreTermRate), readyAt: readyAt)
            if order.role == .scheduler { token = .process(pid) }
            if order.background {
                if order.role == .scheduler { violations.append("the scheduler spawned in the background") }
                background.insert(pid)
            }
            if aliveSchedulers > 1 { violations.append("two schedulers alive at \(now)") }
            pending.append(.spawned(order.ref, pid: pid))
        case .signal(let pid, let signal):
            guard signal == .terminate, var process = alive[pid], !process.ignoresTerm else { return }
            let exitAt = now + .milliseconds(Int64(rng.below(300)))
            process.exitAt = min(process.exitAt ?? exitAt, exitAt)
            alive[pid] = process
        case .killGroup(let pid):
            guard var process = alive[pid] else { return }
            process.exitAt = min(process.exitAt ?? now, now + .milliseconds(1))
            alive[pid] = process
        case .foreground(let pid):
            if background.remove(pid) == nil { violations.append("foreground of \(pid), not in the background") }
        case .acquireToken:
            if externalHolder || token != .nobody {
                pending.append(.token(.busy(holder: nil)))
            } else {
                token = .master
                pending.append(.token(.acquired))
            }
        case .releaseToken:
            if token == .master { token = .nobody }
        case .log(let record):
            logs.append(record)
            // A failed start ends only a start: never a master that had a ready generation.
            if record.event == "failed_start" && core.stableGeneration != nil {
                violations.append("failed start after generation \(core.stableGeneration!) was ready")
            }
        case .announce(let announcement):
            announcements.append(announcement)
        case .exit(let status):
            exitStatus = status
            if !alive.isEmpty { violations.append("exit \(status) with \(alive.count) workers alive") }
            let failedStart = logs.contains { $0.event == "failed_start" }
            if (status == ExitCode.failedStart.rawValue) != failedStart {
                violations.append("exit \(status), failed start logged: \(failedStart)")
            }
        }
    }

    /// A process dies now (crash, or the exit it was scheduled for) and is reaped.
    mutating func die(_ pid: Int32, status: ExitStatus) {
        guard let process = alive.removeValue(forKey: pid) else { return }
        background.remove(pid)
        if token == .process(pid) { token = .nobody }
        send(.exited(process.ref, status))
    }

    /// Moves the clock to `instant`, delivering the exits and deadlines on the way.
    mutating func advance(to instant: Instant) {
        while true {
            let nextExit = alive.compactMap { pid, process in process.exitAt.map { (pid, $0) } }
                .min { $0.1 < $1.1 }
            let nextReady = core.plan.notifyReadiness
                ? alive.compactMap { pid, process in process.readyAt.map { (pid, $0) } }.min { $0.1 < $1.1 } : nil
            let nextTick = core.nextDeadline(after: now)
            let next = [nextExit?.1, nextReady?.1, nextTick].compactMap { $0 }.filter { $0 <= instant }.min()
            guard let next else { break }
            now = max(now, next)
            if let (pid, at) = nextExit, at <= now {
                die(pid, status: .signaled(.terminate, coreDumped: false))
            } else if let (pid, at) = nextReady, at <= now {
                alive[pid]!.readyAt = nil
                send(.ready(alive[pid]!.ref))
            } else {
                send(.tick)
            }
        }
        now = max(now, instant)
    }

    func logged(_ event: String) -> [LogRecord] { logs.filter { $0.event == event } }

    /// No more outside events: let every pending exit and deadline play out.
    mutating func quiesce() {
        externalHolder = false
        for _ in 0..<10_000 {
            let hasExit = alive.values.contains { $0.exitAt != nil || (core.plan.notifyReadiness && $0.readyAt != nil) }
            guard hasExit || core.nextDeadline(after: now) != nil else { return }
            advance(to: now + .seconds(60))
        }
        violations.append("did not settle")
    }

    /// Slots below `limit` that have a process serving them: alive, ready
    /// (in the core's view) and not retiring. A stand-in counts.
    func servedSlots(below limit: Int) -> Int {
        Set(core.workers.filter { worker in
            worker.slot < limit && worker.ready && !worker.isRetiring && worker.pid.map { alive[$0] != nil } == true
        }.map(\.slot)).count
    }

    mutating func check() {
        let schedulersInTable = core.workers.filter { $0.role == .scheduler }.count
        if schedulersInTable > 1 { violations.append("\(schedulersInTable) schedulers in the table at \(now)") }
        if aliveSchedulers > 1 { violations.append("\(aliveSchedulers) schedulers alive at \(now)") }
        // A withdrawn lease: the scheduler is gone within G (SIGKILL at G).
        if let withdrawn = leaseWithdrawnAt, aliveSchedulers > 0,
           now > withdrawn + core.timings.leaseGrace + .milliseconds(1) {
            violations.append("scheduler alive \((now - withdrawn).shortDescription) after the lease was withdrawn")
        }
        // A replacement stays in the background only while it boots beside
        // an older worker of its slot that is alive, ready and not retiring.
        for worker in core.workers {
            guard let pid = worker.pid, background.contains(pid) else { continue }
            let predecessorServes = core.workers.contains {
                $0.slot == worker.slot && $0.generation < worker.generation && $0.ready && !$0.isRetiring
                    && $0.pid.map { alive[$0] != nil } == true
            }
            if worker.ready || worker.isRetiring || !predecessorServes {
                violations.append("worker \(pid) still in the background at \(now)")
            }
        }
        if let floor = servingFloor, servedSlots(below: floor) < floor {
            violations.append("only \(servedSlots(below: floor)) of \(floor) slots served at \(now)")
        }
        // No busy loop: a tick at the same instant must find nothing to do.
        var copy = core
        let again = copy.handle(.tick, at: now).filter { if case .log = $0 { false } else { true } }
        if !again.isEmpty { violations.append("work left at the same instant: \(again)") }
        if let deadline = core.nextDeadline(after: now), deadline <= now {
            violations.append("deadline in the past")
        }
    }
}

/// Worlds whose first start is under way, for the failed-start tests.
extension SimulatedWorld {
    /// A world that has sent `.start`, without failed spawns, ignored TERM or
    /// READY=1 unless a test sends it.
    static func booting(_ plan: Plan, seed: UInt64 = 11) -> SimulatedWorld {
        var world = SimulatedWorld(plan: plan, seed: seed)
        world.spawnFailureRate = 0
        world.ignoreTermRate = 0
        world.neverReadyRate = 1
        world.send(.start)
        return world
    }

    /// Kills slot `slot`'s worker as soon as it runs, `times` times, moving the
    /// clock through each back-off.
    mutating func failBoots(slot: Int, times: Int) {
        for _ in 0..<times {
            guard let pid = running(slot: slot) else { return }
            die(pid, status: .exited(1))
        }
    }

    /// The pid of slot `slot`'s worker, once its back-off is over.
    mutating func running(slot: Int) -> Int32? {
        if let notBefore = core.slots[slot]?.notBefore, notBefore > now { advance(to: notBefore) }
        guard let pid = alive.first(where: { $0.value.slot == slot })?.key else {
            violations.append("slot \(slot) has no worker at \(now)")
            return nil
        }
        return pid
    }
}
