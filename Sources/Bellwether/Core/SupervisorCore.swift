/// The supervisor's decisions, as a pure state machine: `handle(event, at:)`
/// returns the actions to perform and never touches the system.
///
/// Invariants (checked by the randomized tests):
/// - at most one worker with `Role.scheduler` is in `workers` — alive, being
///   spawned, or retiring but not yet reaped; a new scheduler is ordered only
///   when no scheduler is left in the table, i.e. after the last one was reaped;
/// - a scheduler is ordered only while the master holds the scheduler token,
///   which passes to that worker and is freed only when it is reaped;
/// - the scheduler lives in slot 0, so resizing never retires it;
/// - once events stop, every slot 0..<N holds one worker of the current
///   generation and nothing else is left.
///
/// Each worker's life is a `Worker.Phase` and the supervisor's own a
/// `Lifecycle`; what the core tells the log is a `Happening`, worded in
/// `LogWords.swift`.
public struct SupervisorCore: Sendable {
    enum TokenState: Hashable, Sendable {
        case notHeld
        case acquiring
        /// The master holds the lock and has not passed it on yet.
        case held
        /// The lock belongs to this scheduler until it is reaped.
        case passed(WorkerRef)
    }

    struct TokenWait: Hashable, Sendable {
        var since: Instant
        var retryAt: Instant
        var attempts: Int
    }

    struct SlotHealth: Hashable, Sendable {
        var quickDeaths = 0
        var notBefore: Instant?
        /// Workers of the slot in a row that died before they were ready.
        var failedBoots = 0
    }

    /// What an operator asks of a slot (`bellwether status`): kept across
    /// reloads, unlike the back-off state.
    public struct SlotHistory: Hashable, Sendable {
        /// Workers of this slot that died on their own and were replaced.
        public var restarts = 0
        /// How the slot's last worker to exit ended, and when.
        public var lastExit: ExitStatus?
        public var lastExitAt: Instant?
        /// How many of the slot's workers exited, by how they ended.
        public var exits: [ExitStatus: Int] = [:]
        /// Workers of this slot replaced by recycling, by reason.
        public var recycled: [Worker.Recycling.Kind: Int] = [:]
        public var recyclings: Int { recycled.values.reduce(0, +) }
    }

    static let schedulerSlot = 0

    public internal(set) var plan: Plan
    public internal(set) var generation = 0
    /// Every process the master has ordered and not yet reaped, in spawn order.
    public internal(set) var workers: [Worker] = []
    public let timings: Timings

    var slots: [Int: SlotHealth] = [:]
    public internal(set) var history: [Int: SlotHistory] = [:]
    /// Counters for `--metrics-bind` (`SupervisorCore+Tally.swift`).
    public internal(set) var tally = Tally()
    var token: TokenState = .notHeld
    var tokenWait: TokenWait?
    /// Not started, running, stopping or finished.
    var lifecycle = Lifecycle.notStarted
    var reloadStartedAt: Instant?
    /// The last generation whose every slot became ready: the one a failed
    /// reload falls back to. nil until the first generation is ready.
    public internal(set) var stableGeneration: Int?
    /// The plan of the stable generation, restored when a reload is abandoned.
    var stablePlan: Plan?
    var nextGeneration = 1
    /// The instant of the last event handled: deadlines up to it were acted on.
    var lastHandledAt = Instant(nanoseconds: .min)
    var nextSerial: UInt64 = 1
    /// The status of the `.exit` that ends a stop: `ExitCode.failedStart`
    /// after a failed start.
    public internal(set) var exitStatus = ExitCode.success
    /// A worker has been ready since the master started (a failed start is
    /// one where none ever was, within the ready timeout).
    var someWorkerWasReady = false
    /// `memoryLimitTooLow` was logged.
    var warnedMemoryLimitTooLow = false
    /// A worker has sent READY=1 since the master started: if none has, a
    /// ready timeout under `--ready notify` suggests an app without sd_notify.
    var heardReadyNotification = false
    /// That suggestion is logged once per master.
    var notifyHintGiven = false
    /// With a network lease, whether this supervisor may designate a scheduler.
    public internal(set) var leasePermits = true
    /// Whether the `--scheduler-bind` socket should be bound: while this
    /// master designates the scheduler (see `updateSchedulerSocket`). The
    /// shell makes the world match after every batch of events.
    public internal(set) var schedulerSocketWanted = false

    /// `leased`: a network lease decides whether there is a scheduler here;
    /// none until it grants one (`Event.lease`).
    public init(plan: Plan, timings: Timings = Timings(), leased: Bool = false) {
        self.plan = plan
        self.timings = timings
        self.leasePermits = !leased
    }

    /// Since when the scheduler token has been found busy, if it is.
    public var tokenWaitingSince: Instant? { tokenWait?.since }

    /// The generations whose launch may still be needed: those of the
    /// workers not yet reaped, the current one and the stable one a failed
    /// reload falls back to.
    public var generationsInUse: Set<Int> {
        Set(workers.map(\.generation) + [generation] + [stableGeneration].compactMap { $0 })
    }

    /// The live scheduler's pid, if one is running.
    public var schedulerPID: Int32? { workers.first { $0.role == .scheduler }?.shownPID }

    /// A scheduler is being spawned, runs, or retires and is not yet reaped.
    public var hasScheduler: Bool { workers.contains { $0.role == .scheduler } }

    /// Handles one event and returns what to do about it.
    ///
    /// An event the shell can deliver at any time (a signal, a datagram on
    /// the notify socket, a lease's answer) is tolerated where it changes
    /// nothing, and ignored without a reconcile, as it always was. One the
    /// shell cannot deliver is a bug in the shell, and traps with the reason.
    public mutating func handle(_ event: Event, at now: Instant) -> [Action] {
        switch lifecycle {
        case .finished:
            // The shell lives on after `.exit` while a lease is released;
            // signals and ticks still come, and nothing is left to decide.
            return []
        case .notStarted:
            guard case .start = event else {
                preconditionFailure("\(event) before .start: the shell sends .start before it reads a signal, "
                    + "a socket or a child")
            }
        case .running, .stopping:
            if case .start = event { preconditionFailure("a second .start: the shell sends it once") }
        }
        lastHandledAt = max(lastHandledAt, now)
        var actions: [Action] = []
        switch event {
        case .start:
            lifecycle = .running
        case .spawned(let ref, let pid):
            let index = awaitingSpawn(ref, "spawned")
            workers[index].spawned(pid: pid, at: now)
            if workers[index].role == .scheduler {
                token = .passed(ref)  // ordered only while .held
                tally.schedulersSpawned += 1
            }
            actions.log(.spawned(workers[index], pid: pid))
            if workers[index].role == .scheduler {
                actions.append(.announce(.status("\(plan.workers) workers, generation \(generation)")))
            }
        case .spawnFailed(let ref, let reason, let failedBoot):
            let worker = workers.remove(at: awaitingSpawn(ref, "spawnFailed"))
            actions.log(.spawnFailed(worker, reason: reason))
            if failedBoot && worker.generation == generation {
                abandonReload(at: now, because: .notForked(worker, reason: reason), into: &actions)
            }
            noteDeath(of: worker, failedBoot: failedBoot, at: now, into: &actions)
        case .exited(let ref, let status):
            let worker = workers.remove(at: spawned(ref, "exited"))
            if token == .passed(ref) { token = .notHeld }
            actions.log(.exited(worker, status, uptime: now - worker.startedAt))
            var record = history[worker.slot] ?? SlotHistory()
            record.lastExit = status
            record.lastExitAt = now
            record.exits[status, default: 0] += 1
            if worker.diedUnasked && !isStopping && worker.slot < plan.workers { record.restarts += 1 }
            history[worker.slot] = record
            if !worker.ready && !worker.isRetiring && worker.generation == generation {
                abandonReload(at: now, because: .exitedBeforeReady(worker, status), into: &actions)
            }
            noteDeath(of: worker, ending: status, at: now, into: &actions)
        case .appStarted(let ref, let pid):
            // MAINPID= again (a guard is ours and sends it once) only says the same.
            workers[spawned(ref, "appStarted")].process?.appPID = pid
        case .appExited(let ref):
            let index = spawned(ref, "appExited")
            // A second datagram (the guard sends one) changes nothing.
            guard !workers[index].appGone else { return [] }
            workers[index].process?.appGone = true
            actions.log(.appExited(workers[index]))
        case .ready(let ref):
            let index = spawned(ref, "ready")
            heardReadyNotification = true
            // An app may say READY=1 again, or after the boot grace made it ready.
            guard !workers[index].ready else { return [] }
            workers[index].process?.ready = true
            someWorkerWasReady = true
            actions.log(.ready(workers[index]))
        case .memory(let ref, let bytes):
            let index = spawned(ref, "memory")
            let first = workers[index].process?.measured == false
            workers[index].process?.measured = true
            guard plan.maxWorkerMemory > 0, bytes > plan.maxWorkerMemory else { return [] }
            // Over the limit at its first measurement: a fresh worker is
            // bigger than the limit, and every worker will be replaced at
            // every measurement. Said once; the recycling goes on as asked.
            if first && !warnedMemoryLimitTooLow {
                warnedMemoryLimitTooLow = true
                actions.log(.memoryLimitTooLow(workers[index], bytes: bytes, limit: plan.maxWorkerMemory))
            }
            if workers[index].process?.recycleWanted == nil {
                workers[index].process?.recycleWanted = .memory(bytes: bytes, limit: plan.maxWorkerMemory)
            }
        case .recycleAsked(let ref):
            let index = spawned(ref, "recycle request")
            workers[index].process?.recycleWanted = .asked
        case .watchdog(let ref):
            let index = spawned(ref, "watchdog")
            // An app may send WATCHDOG=1 though no watchdog was asked for.
            guard plan.watchdog > .zero else { return [] }
            workers[index].process?.pinged(at: now)
        case .token(let answer):
            guard token == .acquiring else {
                preconditionFailure("a token answer while the token is \(token): the shell answers each "
                    + ".acquireToken once, and one is ordered only while the token is not held")
            }
            acceptToken(answer, at: now, into: &actions)
        case .lease(let permitted):
            // The lease says it again: a withdrawal before the grant, say.
            guard permitted != leasePermits else { return [] }
            leasePermits = permitted
            // A scheduler already on its way out must also be gone within G.
            for index in workers.indices where workers[index].role == .scheduler && !permitted {
                workers[index].hasten(to: now + timings.leaseGrace)
            }
        case .reload, .addWorker, .removeWorker, .resize:
            // A signal or a control request may come after a stop began.
            guard !isStopping else { return [] }
            resize(for: event, at: now, into: &actions)
        case .stop(let quick):
            beginStop(quick: quick, at: now, into: &actions)
        case .forward(let signal):
            for worker in workers { if let pid = worker.pid { actions.append(.signal(pid: pid, signal)) } }
        case .tick:
            break
        }
        reconcile(at: now, into: &actions)
        tallySchedulerPresence(at: now)
        return actions
    }

    /// A reload or a change of the worker count.
    mutating func resize(for event: Event, at now: Instant, into actions: inout [Action]) {
        switch event {
        case .reload(let newPlan):
            plan = newPlan
            generation = nextGeneration
            nextGeneration += 1
            slots = [:]
            reloadStartedAt = now
            tally.reloadsStarted += 1
            actions.append(.announce(.reloading))
            actions.log(.reloadStarted(generation: generation, workers: plan.workers))
        case .addWorker:
            if plan.workers < Plan.maximumWorkers {
                plan.workers += 1
                actions.log(.resized(workers: plan.workers))
            }
        case .removeWorker:
            if plan.workers > 1 {
                plan.workers -= 1
                actions.log(.resized(workers: plan.workers))
            } else {
                actions.log(.resizeRefused)
            }
        case .resize(let count):
            let target = min(max(count, 1), Plan.maximumWorkers)
            if target != plan.workers {
                plan.workers = target
                actions.log(.resized(workers: plan.workers))
            }
        default:
            preconditionFailure("\(event) is no reload or resize")
        }
    }

    func index(of ref: WorkerRef) -> Int? { workers.firstIndex { $0.ref == ref } }

    /// The worker whose spawn the shell answers: the shell answers each
    /// `.spawn` exactly once, so it is still `ordered`.
    func awaitingSpawn(_ ref: WorkerRef, _ answer: String) -> Int {
        guard let index = index(of: ref), case .ordered = workers[index].phase else {
            preconditionFailure("\(answer) for \(ref), which awaits no spawn: the shell answers each .spawn once")
        }
        return index
    }

    /// The worker an event about a process is for: the shell maps only the
    /// pids of the workers it spawned and has not reaped to refs, and hears
    /// of a spawn before anything of its process.
    func spawned(_ ref: WorkerRef, _ event: String) -> Int {
        guard let index = index(of: ref), workers[index].pid != nil else {
            preconditionFailure("\(event) for \(ref), which is no spawned worker left to reap: the shell maps "
                + "only live workers' pids to refs")
        }
        return index
    }
}
