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
public struct SupervisorCore: Sendable {
    public struct Worker: Hashable, Sendable {
        public let ref: WorkerRef
        public let slot: Int
        public let generation: Int
        public let role: Role
        /// The worker's guard, which the master spawned, signals and reaps;
        /// known once the spawn has been confirmed.
        public var pid: Int32?
        /// The app's own pid, as its guard reported it: what operators see.
        public var appPID: Int32?
        /// The app has exited while its guard ends what it left behind: the
        /// worker serves nothing, but keeps its slot (and the token) until reaped.
        public var appGone = false
        public var startedAt: Instant
        /// Set when TERM was sent: SIGKILL to the group at this instant.
        public var retireDeadline: Instant?
        /// SIGKILL was sent to the group; only the reap is left.
        public var killed = false
        /// Ready to serve: READY=1 received, or up for the boot grace.
        public var ready = false
        /// The last WATCHDOG=1; the watchdog applies only once it has pinged.
        public var lastPing: Instant?
        /// When the watchdog sent SIGABRT.
        public var abortedAt: Instant?
        /// Killed for failing (ready timeout, watchdog): its death counts for back-off.
        public var failed = false
        /// Spawned in the background (a reload's replacement), not yet foregrounded.
        public var background = false

        public var isRetiring: Bool { retireDeadline != nil || killed }
        /// The pid logs and `bellwether status` name: the app's once known.
        public var shownPID: Int32? { appPID ?? pid }
        /// Its death was not asked for: it died on its own or was killed for failing.
        var diedUnasked: Bool { !isRetiring || failed }
    }

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
    }

    static let schedulerSlot = 0

    public internal(set) var plan: Plan
    public internal(set) var generation = 0
    /// Every process the master has ordered and not yet reaped, in spawn order.
    public internal(set) var workers: [Worker] = []
    public let timings: Timings

    var slots: [Int: SlotHealth] = [:]
    public internal(set) var history: [Int: SlotHistory] = [:]
    var token: TokenState = .notHeld
    var tokenWait: TokenWait?
    var stopDeadline: Instant?
    var reloadStartedAt: Instant?
    /// The last generation whose every slot became ready: the one a failed
    /// reload falls back to. nil until the first generation is ready.
    public internal(set) var stableGeneration: Int?
    /// The plan of the stable generation, restored when a reload is abandoned.
    var stablePlan: Plan?
    var nextGeneration = 1
    var started = false
    var finished = false
    /// The instant of the last event handled: deadlines up to it were acted on.
    var lastHandledAt = Instant(nanoseconds: .min)
    var nextSerial: UInt64 = 1
    /// The status of the `.exit` that ends a stop: `ExitCode.failedStart`
    /// after a failed start.
    public internal(set) var exitStatus = ExitCode.success
    /// A worker has been ready since the master started (a failed start is
    /// one where none ever was, within the ready timeout).
    var someWorkerWasReady = false
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

    public var isStopping: Bool { stopDeadline != nil }
    public var isFinished: Bool { finished }

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

    public mutating func handle(_ event: Event, at now: Instant) -> [Action] {
        guard !finished else { return [] }
        lastHandledAt = max(lastHandledAt, now)
        var actions: [Action] = []
        switch event {
        case .start:
            guard !started else { return [] }
            started = true
        case .spawned(let ref, let pid):
            guard let index = index(of: ref) else { return [] }
            workers[index].pid = pid
            workers[index].startedAt = now
            if workers[index].role == .scheduler { token = .passed(ref) }  // ordered only while .held
            actions.append(.log(Self.spawnedRecord(workers[index], pid: pid)))
            if workers[index].role == .scheduler {
                actions.append(.announce(.status("\(plan.workers) workers, generation \(generation)")))
            }
        case .spawnFailed(let ref, let reason):
            guard let index = index(of: ref) else { return [] }
            let worker = workers.remove(at: index)
            actions.append(.log(LogRecord(.error, "spawn_failed", "could not spawn worker \(worker.slot): \(reason)",
                                          Self.fields(worker) + [.init("reason", .string(reason))])))
            noteDeath(of: worker, at: now, into: &actions)
        case .exited(let ref, let status):
            guard let index = index(of: ref) else { return [] }
            let worker = workers.remove(at: index)
            if token == .passed(ref) { token = .notHeld }
            actions.append(.log(Self.exitedRecord(worker, status: status, at: now)))
            var record = history[worker.slot] ?? SlotHistory()
            record.lastExit = status
            record.lastExitAt = now
            if worker.diedUnasked && !isStopping && worker.slot < plan.workers { record.restarts += 1 }
            history[worker.slot] = record
            if !worker.ready && !worker.isRetiring && worker.generation == generation {
                abandonReload(at: now, reason: "\(worker.role.rawValue) \(worker.slot) exited with \(status) "
                    + "before it was ready", into: &actions)
            }
            noteDeath(of: worker, ending: status.description, at: now, into: &actions)
        case .appStarted(let ref, let pid):
            guard let index = index(of: ref) else { return [] }
            workers[index].appPID = pid
        case .appExited(let ref):
            guard let index = index(of: ref), !workers[index].appGone else { return [] }
            workers[index].appGone = true
            let worker = workers[index]
            actions.append(.log(LogRecord(.info, "app_exited", "\(worker.role.rawValue) \(worker.slot) "
                + "(pid \(worker.shownPID ?? 0)) exited; its guard ends what it left behind", Self.fields(worker))))
        case .ready(let ref):
            guard let index = index(of: ref) else { return [] }
            heardReadyNotification = true
            guard !workers[index].ready else { return [] }
            workers[index].ready = true
            someWorkerWasReady = true
            actions.append(.log(LogRecord(.info, "ready", "\(workers[index].role.rawValue) \(workers[index].slot) "
                + "(pid \(workers[index].shownPID ?? 0)) is ready", Self.fields(workers[index]))))
        case .watchdog(let ref):
            guard plan.watchdog > .zero, let index = index(of: ref) else { return [] }
            workers[index].lastPing = now
        case .token(let answer):
            guard token == .acquiring else { return [] }
            acceptToken(answer, at: now, into: &actions)
        case .lease(let permitted):
            guard permitted != leasePermits else { return [] }
            leasePermits = permitted
            // A scheduler already on its way out must also be gone within G.
            for index in workers.indices where workers[index].role == .scheduler {
                if let pending = workers[index].retireDeadline, !permitted {
                    workers[index].retireDeadline = min(pending, now + timings.leaseGrace)
                }
            }
        case .reload(let newPlan):
            guard started, !isStopping else { return [] }
            plan = newPlan
            generation = nextGeneration
            nextGeneration += 1
            slots = [:]
            reloadStartedAt = now
            actions.append(.announce(.reloading))
            actions.append(.log(LogRecord(.info, "reload_started",
                "reload started: generation \(generation), \(plan.workers) workers",
                [.init("generation", .int(generation)), .init("workers", .int(plan.workers))])))
        case .addWorker:
            guard started, !isStopping else { return [] }
            if plan.workers < Plan.maximumWorkers {
                plan.workers += 1
                actions.append(.log(Self.resizedRecord(plan.workers)))
            }
        case .removeWorker:
            guard started, !isStopping else { return [] }
            if plan.workers > 1 {
                plan.workers -= 1
                actions.append(.log(Self.resizedRecord(plan.workers)))
            } else {
                actions.append(.log(LogRecord(.warning, "resize_refused", "TTOU ignored: already at 1 worker")))
            }
        case .resize(let count):
            guard started, !isStopping else { return [] }
            let target = min(max(count, 1), Plan.maximumWorkers)
            if target != plan.workers {
                plan.workers = target
                actions.append(.log(Self.resizedRecord(plan.workers)))
            }
        case .stop(let quick):
            beginStop(quick: quick, at: now, into: &actions)
        case .forward(let signal):
            for worker in workers { if let pid = worker.pid { actions.append(.signal(pid: pid, signal)) } }
        case .tick:
            break
        }
        if started { reconcile(at: now, into: &actions) }
        return actions
    }

    func index(of ref: WorkerRef) -> Int? { workers.firstIndex { $0.ref == ref } }

    /// Book-keeping after a worker is gone: back-off for a current worker that
    /// died on its own, nothing for one that was retired or stopped.
    ///
    /// A worker that ran and died before it was ready is a failed boot of its
    /// slot; a spawn that failed is not (running out of processes passes, an
    /// app that cannot import stays). Before any generation was ready,
    /// `plan.bootAttempts` of them in a row are a failed start. `ending`: how
    /// it ended, for the log.
    mutating func noteDeath(of worker: Worker, ending: String? = nil, at now: Instant,
                            into actions: inout [Action]) {
        guard !isStopping, worker.diedUnasked, worker.generation == generation,
              worker.slot < plan.workers else { return }
        var health = slots[worker.slot] ?? SlotHealth()
        let failedBoots = worker.ready ? 0 : health.failedBoots + (worker.pid == nil ? 0 : 1)
        if stableGeneration == nil, worker.pid != nil, plan.bootAttempts > 0, failedBoots >= plan.bootAttempts {
            let reason = "\(worker.role.rawValue) \(worker.slot) failed to boot \(failedBoots) times in a row "
                + "(last: \(ending ?? "unknown"))"
            failStart(because: reason, slot: worker.slot, failedBoots: failedBoots, at: now, into: &actions)
            return
        }
        if now - worker.startedAt >= timings.stableUptime {
            health = SlotHealth()
        } else {
            health.quickDeaths += 1
            let delay = Backoff.delay(afterQuickDeaths: health.quickDeaths, timings: timings)
            health.notBefore = now + delay
            if delay > .zero {
                actions.append(.log(LogRecord(.warning, "backoff",
                    "worker \(worker.slot) died \(health.quickDeaths) times in a row within "
                        + "\(timings.stableUptime.shortDescription) of starting; next start in \(delay.shortDescription)",
                    [.init("slot", .int(worker.slot)), .init("failures", .int(health.quickDeaths)),
                     .init("delay", .double(delay.seconds))])))
            }
        }
        health.failedBoots = failedBoots  // kept past a long boot, which resets the back-off
        slots[worker.slot] = health
    }

    /// A reload whose new generation cannot become ready is abandoned: the
    /// last stable generation becomes current again and keeps serving (its
    /// workers were retired only as their replacements became ready).
    mutating func abandonReload(at now: Instant, reason: String, into actions: inout [Action]) {
        guard let stable = stableGeneration, generation != stable, !isStopping else { return }
        let failed = generation
        generation = stable
        if let stablePlan { plan = stablePlan }
        slots = [:]
        reloadStartedAt = nil
        let message = "reload to generation \(failed) failed: \(reason); generation \(stable) keeps serving"
        actions.append(.log(LogRecord(.error, "reload_failed", message,
            [.init("generation", .int(failed)), .init("serving", .int(stable)), .init("reason", .string(reason))])))
        actions.append(.announce(.ready(status: message)))
    }

    mutating func acceptToken(_ answer: TokenAnswer, at now: Instant, into actions: inout [Action]) {
        switch answer {
        case .acquired:
            token = .held
            if let wait = tokenWait {
                actions.append(.log(LogRecord(.info, "token_acquired",
                    "scheduler token acquired after waiting \((now - wait.since).shortDescription)",
                    [.init("waited", .double((now - wait.since).seconds))])))
            }
            tokenWait = nil
        case .busy, .stray:
            token = .notHeld
            var wait = tokenWait ?? TokenWait(since: now, retryAt: now, attempts: 0)
            if tokenWait == nil, case .busy(let holder) = answer {
                let who = holder.map { "pid \($0)" } ?? "another process"
                actions.append(.log(LogRecord(.warning, "token_busy",
                    "scheduler token is held by \(who); no scheduler until it is released",
                    holder.map { [.init("holder", .int(Int($0)))] } ?? [])))
            } else if tokenWait == nil, case .stray(let pid) = answer {
                actions.append(.log(LogRecord(.warning, "token_busy",
                    "pid \(pid), left of a worker whose guard died, is still being killed; no scheduler until it is gone",
                    [.init("stray", .int(Int(pid)))])))
            }
            wait.attempts += 1
            wait.retryAt = now + Backoff.tokenRetry(attempt: wait.attempts, timings: timings)
            tokenWait = wait
        }
    }

    mutating func beginStop(quick: Bool, at now: Instant, into actions: inout [Action]) {
        let grace = quick ? min(timings.quickStopGrace, plan.gracefulTimeout) : plan.gracefulTimeout
        let deadline = now + grace
        if let current = stopDeadline, current <= deadline { return }
        stopDeadline = deadline
        actions.append(.announce(.stopping))
        actions.append(.log(LogRecord(.info, "stopping",
            (quick ? "quick stop" : "graceful stop") + ": \(workers.count) workers, SIGKILL after \(grace.shortDescription)",
            [.init("quick", .bool(quick)), .init("grace", .double(grace.seconds))])))
        for index in workers.indices where !workers[index].killed {
            if let pending = workers[index].retireDeadline {
                workers[index].retireDeadline = min(pending, deadline)
            }
        }
        if token == .held {
            token = .notHeld
            actions.append(.releaseToken)
        }
        tokenWait = nil
    }
}
