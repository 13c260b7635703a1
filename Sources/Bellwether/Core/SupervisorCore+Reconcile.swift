/// Reconciliation: compare what is wanted (the plan, the generation) with what
/// is observed (the worker table) and order what closes the gap. It runs after
/// every event, so each decision is made in exactly one place.
extension SupervisorCore {
    var wantsScheduler: Bool { plan.scheduler && !isStopping && leasePermits }
    var schedulerExists: Bool { hasScheduler }

    /// The worker of the current generation that holds `slot`, if any. Slot 0
    /// may hold two for a while: a stand-in (role `worker`) that serves while
    /// the scheduler boots beside it; the scheduler is the one that stays.
    func current(in slot: Int) -> Worker? {
        let holders = workers.lazy.filter {
            $0.slot == slot && $0.generation == generation && !$0.isRetiring && !$0.appGone && !$0.isRecycling
        }
        return holders.first { $0.role == .scheduler } ?? holders.first
    }

    /// `slot` still wants a process: it has no worker of the current
    /// generation, or it is the scheduler's slot and only a stand-in serves it.
    func lacksWorker(_ slot: Int) -> Bool {
        guard let holder = current(in: slot) else { return true }
        return slot == Self.schedulerSlot && wantsScheduler && holder.role != .scheduler
    }

    /// A ready worker of the current generation, not retiring, serves `slot`
    /// (a stand-in counts): an older worker of the slot may go.
    func isServed(_ slot: Int) -> Bool {
        workers.contains {
            $0.slot == slot && $0.generation == generation && $0.ready && !$0.isRetiring && !$0.appGone && !$0.isRecycling
        }
    }

    /// A worker of `slot` whose app is gone while its guard drains the tree.
    func isDraining(_ slot: Int) -> Bool { workers.contains { $0.slot == slot && $0.appGone } }

    /// A scheduler of an older generation, or one being recycled, still
    /// serves, waiting for a ready worker of the current generation in its
    /// slot before it is retired.
    var schedulerAwaitsRelief: Bool {
        workers.contains { $0.role == .scheduler && ($0.generation != generation || $0.isRecycling) && !$0.isRetiring }
    }

    mutating func reconcile(at now: Instant, into actions: inout [Action]) {
        enforceDeadlines(at: now, into: &actions)
        if !isStopping { watchReadiness(at: now, into: &actions) }  // a failed start begins a stop
        defer { updateSchedulerSocket(at: now) }
        if let deadline = stopDeadline {
            reconcileStop(deadline: deadline, into: &actions)
            return
        }
        startRecycling(at: now, into: &actions)
        retireObsolete(at: now, into: &actions)
        manageToken(at: now, into: &actions)
        spawnMissing(at: now, into: &actions)
        foregroundReplacements(into: &actions)
        noteGenerationReady(at: now, into: &actions)
        enforceDeadlines(at: now, into: &actions)  // a zero graceful timeout is due at once
    }

    /// Boot grace (exec readiness), ready timeout and watchdog. A ready
    /// timeout of the current generation abandons a reload; before any worker
    /// was ever ready, it is a failed start.
    mutating func watchReadiness(at now: Instant, into actions: inout [Action]) {
        var abandon: Setback?
        var failedStart: (cause: FailedStart, slot: Int)?
        for index in workers.indices {
            // What the worker was at the start of the turn: a watchdog due
            // in the same turn as a ready timeout still acts on it.
            let worker = workers[index]
            guard let process = worker.process, !worker.isKilled else { continue }
            if !process.ready && !plan.notifyReadiness && now >= process.since + timings.bootGrace {
                workers[index].process?.ready = true
                someWorkerWasReady = true
            }
            if !workers[index].ready && !worker.isRetiring && now >= process.since + plan.readyTimeout {
                workers[index].kill(failing: true)
                actions.append(.killGroup(pid: process.pid))
                actions.log(.readyTimeout(worker, after: plan.readyTimeout))
                let silent = plan.notifyReadiness && !heardReadyNotification ? worker : nil
                if worker.generation == generation {
                    abandon = .notReady(worker, after: plan.readyTimeout)
                    if failedStart == nil && stableGeneration == nil && !someWorkerWasReady && plan.bootAttempts > 0 {
                        failedStart = (.noneReady(within: plan.readyTimeout, silent: silent), worker.slot)
                        if silent != nil { notifyHintGiven = true }
                    }
                }
                if silent != nil, failedStart == nil, !notifyHintGiven {
                    notifyHintGiven = true
                    actions.log(.neverNotified(worker))
                }
            }
            guard plan.watchdog > .zero else { continue }
            switch process.watchdog {
            case .silent:
                break
            case .pinged(let ping):
                if now >= ping + plan.watchdog {
                    workers[index].process?.watchdog = .aborted(at: now)
                    actions.append(.signal(pid: process.pid, .abort))
                    actions.log(.watchdogAbort(worker, silence: plan.watchdog))
                }
            case .aborted(let at):
                if now >= at + timings.abortGrace {
                    workers[index].kill(failing: true)
                    actions.append(.killGroup(pid: process.pid))
                }
            }
        }
        if let failedStart {
            failStart(because: failedStart.cause, slot: failedStart.slot, at: now, into: &actions)
        } else if let abandon {
            abandonReload(at: now, because: abandon, into: &actions)
        }
    }

    /// SIGKILL to the tree of every worker that outlived its retire deadline.
    mutating func enforceDeadlines(at now: Instant, into actions: inout [Action]) {
        for index in workers.indices {
            guard case .retiring(let process, let deadline) = workers[index].phase, deadline <= now else { continue }
            workers[index].kill(failing: false)
            actions.append(.killGroup(pid: process.pid))
            actions.log(.kill(workers[index]))
        }
    }

    /// Retires what the plan no longer wants. A handover leaves no slot
    /// unserved: an old scheduler that serves goes only once a ready worker
    /// of the current generation serves its slot (the stand-in, or with
    /// `--no-scheduler` an ordinary worker), and a stand-in only once the
    /// scheduler beside it is ready. A withdrawn lease does not wait.
    mutating func retireObsolete(at now: Instant, into actions: inout [Action]) {
        let deadline = now + plan.gracefulTimeout
        let scheduler = current(in: Self.schedulerSlot)
        let schedulerReady = wantsScheduler && scheduler?.role == .scheduler && scheduler?.ready == true
        for index in workers.indices {
            let worker = workers[index]
            guard case .running = worker.phase else { continue }
            let removedSlot = worker.slot >= plan.workers
            let oldGeneration = worker.generation != generation
            let replaced = oldGeneration || worker.isRecycling
            var reason: Retirement?
            var retireBy = deadline
            if worker.role == .scheduler {
                if !leasePermits {
                    reason = .leaseWithdrawn
                    retireBy = min(deadline, now + timings.leaseGrace)
                } else if removedSlot || replaced || !plan.scheduler {
                    let serves = worker.ready && replaced && !removedSlot
                    if !serves || isServed(worker.slot) { reason = .schedulerHandover }
                }
            } else if removedSlot {
                reason = .slotRemoved
            } else if replaced {
                if isServed(worker.slot) { reason = oldGeneration ? .replaced(byGeneration: generation) : .recycled }
            } else if schedulerReady && worker.slot == Self.schedulerSlot {
                reason = .replacedByScheduler
            }
            if let reason { retire(at: index, deadline: retireBy, because: reason, into: &actions) }
        }
    }

    /// TERM to a running worker, SIGKILL to its tree at `deadline`.
    mutating func retire(at index: Int, deadline: Instant, because reason: Retirement, into actions: inout [Action]) {
        let pid = workers[index].retire(by: deadline)
        actions.append(.signal(pid: pid, .terminate))
        actions.log(.retiring(workers[index], reason))
    }

    /// Orders the processes the slots lack. The scheduler's slot is never
    /// left unserved by a handover: while an old scheduler serves, the new
    /// generation's slot 0 first gets a stand-in (role `worker`); the old
    /// scheduler goes once the stand-in is ready, and the new scheduler is
    /// spawned beside the stand-in once the old one is reaped and the token
    /// held. A scheduler that died is replaced at once when the token is
    /// free (a stand-in would boot no sooner); with the token busy, the slot
    /// runs an ordinary worker after `tokenWaitGrace`. A first start has
    /// nothing serving to bridge, and no stand-in.
    mutating func spawnMissing(at now: Instant, into actions: inout [Action]) {
        // A reload replaces serving workers one batch at a time: a slot whose
        // old worker still serves waits while `reloadBatch` replacements boot,
        // so that booting a generation does not starve the one serving. The
        // scheduler's slot is handed over outside the batch (its stand-in,
        // then the scheduler), so the stand-in makes a reload no longer.
        let rolling = stableGeneration != nil && generation != stableGeneration
        let handover = wantsScheduler ? Self.schedulerSlot : nil
        var booting = workers.filter {
            $0.generation == generation && !$0.ready && !$0.isRetiring && $0.slot != handover
        }.count
        for slot in 0..<plan.workers where lacksWorker(slot) {
            if let notBefore = slots[slot]?.notBefore, notBefore > now { continue }
            let stillServed = workers.contains { $0.slot == slot && $0.generation != generation && !$0.isRetiring }
            if rolling && stillServed && slot != handover && booting >= timings.reloadBatch { continue }
            // A worker's slot is filled again once its old tree is gone; the
            // scheduler's gets a stand-in meanwhile (below).
            if slot != handover && isDraining(slot) { continue }
            var role = Role.worker
            if slot == handover {
                if token == .held && !schedulerExists {
                    role = .scheduler  // beside the stand-in, if one serves
                } else if current(in: slot) != nil || token == .acquiring {
                    continue  // the stand-in serves on; or the token's answer comes this turn
                } else if schedulerExists && !schedulerAwaitsRelief && !isDraining(slot) {
                    continue  // the old scheduler is on its way out; its successor follows the reap
                } else if !schedulerExists, let wait = tokenWait, now < wait.since + timings.tokenWaitGrace {
                    continue  // keep the slot free a moment for a token about to be freed
                }
            }
            let order = SpawnOrder(ref: WorkerRef(nextSerial), slot: slot, role: role,
                                   generation: generation, workersCount: plan.workers,
                                   background: rolling && servedByOlder(slot, than: generation)
                                    && role != .scheduler)
            nextSerial += 1
            workers.append(Worker(ref: order.ref, slot: slot, generation: generation, role: role,
                                  orderedAt: now, background: order.background))
            actions.append(.spawn(order))
            if slot == handover && role == .worker && schedulerExists {
                actions.log(.standIn(slot: slot, generation: generation))
            }
            if slot != handover { booting += 1 }
        }
    }

    /// A ready worker of an older generation, not retiring, serves `slot`:
    /// a replacement for it may boot in the background.
    func servedByOlder(_ slot: Int, than generation: Int) -> Bool {
        workers.contains { $0.slot == slot && $0.generation < generation && $0.ready && !$0.isRetiring }
    }

    /// A replacement booting in the background while its slot's old worker
    /// serves comes to the foreground once it is ready, once that old worker
    /// is no longer serving (it died, or the reload was abandoned and it is
    /// all the slot has), or once it is itself retiring (so that it exits
    /// promptly).
    mutating func foregroundReplacements(into actions: inout [Action]) {
        for index in workers.indices where workers[index].background {
            let worker = workers[index]
            guard let pid = worker.pid else { continue }
            guard worker.ready || worker.isRetiring || !servedByOlder(worker.slot, than: worker.generation) else {
                continue
            }
            workers[index].background = false
            actions.append(.foreground(pid: pid))
        }
    }

    /// The current generation is ready once every slot has a ready worker
    /// (and the scheduler runs, unless the token is someone else's): then it
    /// becomes the stable generation, and systemd hears READY=1.
    mutating func noteGenerationReady(at now: Instant, into actions: inout [Action]) {
        guard stableGeneration != generation, everySlotReady else { return }
        let first = stableGeneration == nil
        stableGeneration = generation
        stablePlan = plan
        let status = "\(plan.workers) workers ready, generation \(generation)"
        if first {
            actions.log(.generationReady(generation: generation, workers: plan.workers))
        } else if let startedAt = reloadStartedAt {
            actions.log(.reloadFinished(generation: generation, took: now - startedAt))
            tallyReloadEnd(finished: true, at: now)
        }
        reloadStartedAt = nil
        actions.append(.announce(.ready(status: status)))
    }

    /// Every slot has a ready worker of this generation, and the scheduler
    /// runs (unless the token is someone else's).
    var everySlotReady: Bool {
        (0..<plan.workers).allSatisfy { current(in: $0)?.ready == true }
            && (!wantsScheduler || tokenWait != nil || workers.contains { $0.role == .scheduler && $0.ready
                && $0.generation == generation })
    }

    /// The earliest instant at which the core has something to do, or nil
    /// when only an event can change anything (the master then sleeps).
    ///
    /// Deadlines up to the last handled event were acted on and are left out
    /// (no busy loop on one that is waiting for something else). A deadline
    /// that passed after that event, while the shell was busy, is kept even
    /// if it is already behind `now`: the shell then ticks at once.
    public func nextDeadline(after now: Instant) -> Instant? {
        var candidates: [Instant] = []
        // A pending SIGKILL is always acted on when due (the worker becomes
        // `killed`), so it is reported even if it was already due at the last event.
        let kills = workers.compactMap(\.retireDeadline)
        if !isStopping {
            for slot in 0..<plan.workers where lacksWorker(slot) {
                if let notBefore = slots[slot]?.notBefore { candidates.append(notBefore) }
            }
            candidates += recyclingDeadlines
            if let wait = tokenWait, wantsScheduler, !schedulerExists {
                candidates.append(wait.retryAt)
                candidates.append(wait.since + timings.tokenWaitGrace)
            }
            for worker in workers where !worker.isKilled {
                guard let process = worker.process else { continue }
                if !process.ready {
                    if !plan.notifyReadiness { candidates.append(process.since + timings.bootGrace) }
                    if !worker.isRetiring { candidates.append(process.since + plan.readyTimeout) }
                }
                guard plan.watchdog > .zero else { continue }
                switch process.watchdog {
                case .silent: break
                case .pinged(let ping): candidates.append(ping + plan.watchdog)
                case .aborted(let at): candidates.append(at + timings.abortGrace)
                }
            }
        }
        return (candidates.filter { $0 > min(now, lastHandledAt) } + kills).min()
    }
}
